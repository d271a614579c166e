/**
 * @platformatic/kafka 1.x and the kafka-console CLI built on it, unchanged,
 * against yak. They implement only CreateTopics v7 and DeleteTopics v6 (and
 * Metadata v9-12), so while yak stopped at CreateTopics v5 and DeleteTopics
 * v4 neither could create or delete a topic ("No usable implementation found
 * for API CreateTopics."). Both packages come from the npm registry, pinned,
 * installed once into a cache directory under the system temp dir (about
 * 3 s and 25 MB) and reused by later runs; they run under Node (20.19+).
 */
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Connection } from "../src/protocol/connection.ts";
import type { BrokerStatus } from "../src/protocol/status.ts";
import { run, skipWithout, TestCluster, withDeadline } from "./harness.ts";

const PACKAGES = ["@platformatic/kafka@1.35.0", "kafka-console@3.1.55"];
const CACHE = join(tmpdir(), "yak-test-npm", PACKAGES.join("+").replaceAll("/", "_"));
const MODULES = join(CACHE, "node_modules");

/**
 * Installs the packages into the cache unless they are there: into a
 * directory of its own first, renamed into place when complete, so a run
 * killed mid-install leaves no half-installed cache. Null when ready, else
 * why not (for skipWithout).
 */
function installPackages(): string | null {
  const ready = () => PACKAGES.every((p) => exists(join(MODULES, p.slice(0, p.lastIndexOf("@")), "package.json")));
  if (ready()) return null;
  const staging = `${CACHE}.${crypto.randomUUID()}`;
  try {
    const out = new Deno.Command("timeout", {
      args: [
        "120",
        "npm",
        "install",
        "--prefix",
        staging,
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--loglevel=error",
        ...PACKAGES,
      ],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!out.success) {
      const why = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" ");
      return `npm could not install ${PACKAGES.join(" ")} (${why || `exit ${out.code}`})`;
    }
    Deno.mkdirSync(join(CACHE, ".."), { recursive: true });
    Deno.renameSync(staging, CACHE);
  } catch (err) {
    if (!ready()) return `npm and node are needed to install ${PACKAGES.join(" ")} (${err})`;
  } finally {
    try {
      Deno.removeSync(staging, { recursive: true });
    } catch { /* renamed into place, or never made */ }
  }
  return ready() ? null : `${PACKAGES.join(" ")} did not install into ${CACHE}`;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const MISSING = installPackages();

/** The Admin client's calls, as a Node script (`create` or `delete`): each result is printed as a JSON line. */
const ADMIN_SCRIPT = `
const [moduleUrl, broker, action, topic] = process.argv.slice(2);
const { Admin } = await import(moduleUrl);
const admin = new Admin({ clientId: 'yak-test', bootstrapBrokers: [broker], retries: 2, timeout: 10000 });
const say = (what, value) => console.log(JSON.stringify({ what, value }));
try {
  if (action === 'create') say('created', await admin.createTopics({ topics: [topic], partitions: 2, replicas: 1 }));
  else say('deleted', await admin.deleteTopics({ topics: [topic] }) ?? null);
  say('listed', await admin.listTopics());
} catch (err) {
  say('error', [err.message, ...(err.errors ?? []).map((e) => e.message)]);
} finally {
  await admin.close();
}
`;

/** The topics the broker holds, with their ids, from its native status. */
async function topicsOf(c: TestCluster): Promise<Map<string, { id?: string; partitions: number }>> {
  const conn = await Connection.open("127.0.0.1", c.brokerPorts.get(1)!, { connectTimeoutMs: 5000 });
  try {
    const status = await conn.request({ type: "status" }, 5000) as unknown as BrokerStatus;
    return new Map(
      status.topics.filter((t) => t.name !== "__cluster").map((
        t,
      ) => [t.name, { id: t.id, partitions: t.partitions.length }]),
    );
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "@platformatic/kafka and kafka-console create and delete topics (CreateTopics v7, DeleteTopics v6)",
  ignore: skipWithout(MISSING),
  fn: (t) =>
    withDeadline(60_000, "platformatic", async () => {
      const c = await TestCluster.start({ brokers: 1 });
      const broker = `127.0.0.1:${c.kafkaPorts.get(1)}`;
      const node = async (args: string[]) => {
        const r = await run("node", args, { timeoutMs: 30_000 });
        return { code: r.code, out: new TextDecoder().decode(r.stdout).trim(), err: r.stderr.trim() };
      };
      try {
        await t.step("kafka-console topic:create and topic:delete", async () => {
          const cli = (...args: string[]) =>
            node([join(MODULES, "kafka-console", "build", "cli.js"), "-b", broker, "-t", "10000", ...args]);
          const created = await cli("topic:create", "kc-topic", "-p", "3");
          assert.equal(created.code, 0, `topic:create: ${created.out} ${created.err}`);
          assert.equal((await topicsOf(c)).get("kc-topic")?.partitions, 3);
          const deleted = await cli("topic:delete", "kc-topic");
          assert.equal(deleted.code, 0, `topic:delete: ${deleted.out} ${deleted.err}`);
          assert.equal((await topicsOf(c)).has("kc-topic"), false, "deleted");
        });

        await t.step("@platformatic/kafka Admin: createTopics answers the topic id; deleteTopics", async () => {
          const moduleUrl = new URL(`file://${join(MODULES, "@platformatic", "kafka", "dist", "index.js")}`).href;
          const dir = await Deno.makeTempDir({ prefix: "yak-platformatic-" });
          const script = join(dir, "admin.mjs");
          await Deno.writeTextFile(script, ADMIN_SCRIPT);
          const admin = async (action: "create" | "delete") => {
            const r = await node([script, moduleUrl, broker, action, "pf-topic"]);
            assert.equal(r.code, 0, r.err);
            return r.out.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { what: string; value: unknown });
          };
          try {
            const created = await admin("create");
            assert.deepEqual(created.map((l) => l.what), ["created", "listed"], JSON.stringify(created));
            // The id is the one yak keeps for the topic: platformatic read it from the answer's 16 bytes.
            const id = (await topicsOf(c)).get("pf-topic")?.id;
            assert.match(id ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
            assert.deepEqual(created[0].value, [{
              id,
              name: "pf-topic",
              partitions: 2,
              replicas: 1,
              configuration: {},
            }]);
            assert.deepEqual(created[1].value, ["pf-topic"]);
            const deleted = await admin("delete");
            assert.deepEqual(deleted, [{ what: "deleted", value: null }, { what: "listed", value: [] }]);
            assert.equal((await topicsOf(c)).has("pf-topic"), false, "deleted");
          } finally {
            await Deno.remove(dir, { recursive: true });
          }
        });
      } finally {
        await c.stop();
      }
    }),
});
