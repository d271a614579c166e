/**
 * `startCluster` (mod.ts; issue 25 §8): a cluster inside the test's process,
 * ready fast, with its addresses and a stop that removes its temp directory;
 * bad options refused before anything starts; and the README's two examples
 * run as they are written there: the Deno one with `deno test`, the Node one
 * with Node's test runner (scripts/start_cluster.mjs, kafkajs 2.2.4).
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Kafka, logLevel } from "kafkajs";
import { startCluster } from "../mod.ts";
import { run, skipWithout, withDeadline, yak } from "./harness.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const decoder = new TextDecoder();

/** The fenced block right after the README comment that starts with `marker`, and its language. */
async function readmeBlock(marker: string): Promise<string> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const at = readme.indexOf(marker);
  assert.notEqual(at, -1, `README.md has no '${marker}'`);
  const m = readme.slice(at).match(/```\w+[^\n]*\n([\s\S]*?)\n```/);
  assert.ok(m, `no code block after '${marker}'`);
  return m[1] + "\n";
}

/** Node 20 or newer, or why not. */
function nodeMissing(): string | null {
  try {
    const out = new Deno.Command("node", { args: ["--version"], stdout: "piped", stderr: "null" }).outputSync();
    const major = Number(decoder.decode(out.stdout).match(/^v(\d+)/)?.[1]);
    return major >= 20 ? null : `node ${decoder.decode(out.stdout).trim()} is older than 20`;
  } catch {
    return "node is not installed (apt-get install nodejs)";
  }
}

Deno.test({
  name: "startCluster: in-process, ready fast, addresses, stop cleans up; the README's examples run",
  // kafkajs keeps timers and sockets of its own past disconnect().
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    withDeadline(60_000, "startCluster", async () => {
      await t.step("one broker and three: ready, reachable, gone after stop()", async () => {
        for (const brokers of [1, 3]) {
          const cluster = await startCluster({ brokers, topics: ["t", { name: "u", partitions: 2 }] });
          try {
            console.log(`startCluster({ brokers: ${brokers} }): ready in ${cluster.readyMs} ms`);
            // The time is printed, not asserted (speed is shown by figures, not timed tests; the README states
            // this machine's): the first start after a code change includes Deno's type check of the worker.
            assert.ok(Number.isFinite(cluster.readyMs) && cluster.readyMs > 0, `ready in ${cluster.readyMs} ms`);
            assert.equal(cluster.kafkaBootstrap.split(",").length, brokers);
            assert.equal(cluster.bootstrap.split(",").length, brokers);
            // yak's own tools, through the addresses it gives.
            const listed = await yak(["topics", "--list", "--bootstrap", cluster.bootstrap]);
            assert.equal(listed.stdout, "t\t3 partitions\nu\t2 partitions\n", listed.stderr);
            const status = await yak(["status", "--json", "--zookeeper", cluster.zookeeper]);
            assert.deepEqual(JSON.parse(status.stdout).lease.isr.length, brokers, status.stderr);
            // A Kafka client, acks=all through every in-sync broker.
            const kafka = new Kafka({ brokers: cluster.kafkaBootstrap.split(","), logLevel: logLevel.NOTHING });
            const producer = kafka.producer();
            await producer.connect();
            const [sent] = await producer.send({ topic: "t", acks: -1, messages: [{ value: "hello" }] });
            await producer.disconnect();
            assert.equal(sent.errorCode, 0);
          } finally {
            await cluster.stop();
          }
          await assert.rejects(Deno.stat(cluster.dataDir), Deno.errors.NotFound, "the temp dir is removed");
          await cluster.stop(); // twice is fine
        }
      });

      await t.step("bad options are refused before anything starts", async () => {
        await assert.rejects(startCluster({ brokers: 0 }), /brokers must be a whole number from 1 to 9/);
        await assert.rejects(startCluster({ topics: ["a/b"] }), /invalid topic name "a\/b"/);
        await assert.rejects(
          startCluster({ topics: [{ name: "x", configs: { "retention.mss": "1" } }] }),
          /retention\.mss/,
        );
      });

      await t.step("the README's Deno example, as written there", async () => {
        const dir = await Deno.makeTempDir({ prefix: "yak-readme-" });
        try {
          const code = (await readmeBlock("<!-- tests/embed_test.ts runs this block as it is (with the path"))
            .replace('"../yak/mod.ts"', JSON.stringify(new URL("../mod.ts", import.meta.url).href));
          await Deno.writeTextFile(join(dir, "orders_test.ts"), code);
          const started = performance.now();
          const res = await run(Deno.execPath(), ["test", "-A", "orders_test.ts"], { cwd: dir, timeoutMs: 40_000 });
          const out = decoder.decode(res.stdout);
          console.log(`the README's Deno example: exit ${res.code} in ${Math.round(performance.now() - started)} ms`);
          assert.equal(res.code, 0, `${out}\n${res.stderr}`);
          assert.match(out, /an order goes through Kafka \.\.\. .*ok/);
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      });

      await t.step({
        name: "the README's Node example, as written there (Node 20, kafkajs 2.2.4)",
        ignore: skipWithout(nodeMissing()),
        fn: async () => {
          const dir = await Deno.makeTempDir({ prefix: "yak-readme-node-" });
          try {
            const script = join(ROOT, "scripts", "start_cluster.mjs");
            const code = (await readmeBlock("<!-- tests/embed_test.ts runs this block as it is too"))
              .replace('"../yak/scripts/start_cluster.mjs"', JSON.stringify(script));
            await Deno.writeTextFile(join(dir, "orders.test.mjs"), code);
            // kafkajs as Node finds it: the copy Deno's npm cache holds for this test's own import.
            await Deno.mkdir(join(dir, "node_modules"));
            await Deno.symlink(
              dirname(fileURLToPath(import.meta.resolve("kafkajs"))),
              join(dir, "node_modules/kafkajs"),
            );
            const started = performance.now();
            const res = await run("node", ["--test", "orders.test.mjs"], {
              cwd: dir,
              timeoutMs: 40_000,
              env: { YAK_DENO: Deno.execPath() },
            });
            const out = decoder.decode(res.stdout);
            console.log(`the README's Node example: exit ${res.code} in ${Math.round(performance.now() - started)} ms`);
            assert.equal(res.code, 0, `${out}\n${res.stderr}`);
            assert.match(out, /^# pass 1$/m);
          } finally {
            await Deno.remove(dir, { recursive: true });
          }
        },
      });
    }),
});
