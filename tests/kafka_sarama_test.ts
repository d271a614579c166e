/**
 * Issue 21's admin APIs through sarama 1.22, the Go Kafka client (Debian's
 * golang-github-shopify-sarama-dev, built offline with golang-go in GOPATH
 * mode): tests/sarama/main.go runs ClusterAdmin's calls, a produce, a
 * partition consume and a consumer group against a two-broker cluster and
 * prints one JSON line per call; this test checks every line.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run, skipWithout, TestCluster, withDeadline } from "./harness.ts";

const SOURCE = fileURLToPath(new URL("./sarama/main.go", import.meta.url));
/** Where Debian installs Go libraries' sources: sarama and what it imports. */
const GOPATH = "/usr/share/gocode";
const SARAMA = join(GOPATH, "src/github.com/Shopify/sarama");

/** Why the sarama test cannot run here, or null when go, gcc (cgo) and sarama are installed. */
function saramaMissing(): string | null {
  const tools = [
    ["go", "version", "go is not installed (apt-get install golang-go golang-github-shopify-sarama-dev)"],
    ["gcc", "--version", "gcc is not installed: cgo builds sarama's zstd binding (apt-get install gcc)"],
  ];
  for (const [tool, arg, reason] of tools) {
    try {
      new Deno.Command(tool, { args: [arg], stdout: "null", stderr: "null" }).outputSync();
    } catch {
      return reason;
    }
  }
  try {
    Deno.statSync(SARAMA);
    return null;
  } catch {
    return "sarama is not installed (apt-get install golang-github-shopify-sarama-dev)";
  }
}

/**
 * The program's binary, built once per source and Go version: it is kept
 * under the temp directory by their hash (a build takes about 4 s on this
 * machine, a cached run nothing), its build cache in a temp directory removed
 * after. Binaries of older sources are removed when a new one is built.
 */
async function saramaBinary(): Promise<string> {
  const goVersion = new TextDecoder().decode((await run("go", ["version"])).stdout);
  const bytes = new TextEncoder().encode(goVersion + (await Deno.readTextFile(SOURCE)));
  const hash = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("").slice(0, 16);
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const binary = join(tmp, `yak-sarama-bin-${hash}`, "sarama");
  try {
    await Deno.stat(binary);
    return binary;
  } catch { /* not built yet */ }
  for await (const entry of Deno.readDir(tmp)) {
    if (entry.isDirectory && entry.name.startsWith("yak-sarama-bin-")) {
      await Deno.remove(join(tmp, entry.name), { recursive: true }).catch(() => {});
    }
  }
  await Deno.mkdir(join(tmp, `yak-sarama-bin-${hash}`), { recursive: true });
  const work = await Deno.makeTempDir({ prefix: "yak-sarama-build-" });
  try {
    const partial = join(work, "sarama");
    const env = { GOPATH, GO111MODULE: "off", GOCACHE: join(work, "cache"), GOFLAGS: "", HOME: work };
    const started = performance.now();
    const built = await run("go", ["build", "-o", partial, SOURCE], { env, timeoutMs: 120_000 });
    // Its stderr, when it works, is cgo's warning about a deprecated call in Debian's zstd binding.
    assert.equal(built.code, 0, `go build failed:\n${built.stderr}`);
    console.error(`built tests/sarama in ${Math.round(performance.now() - started)} ms`);
    await Deno.rename(partial, binary);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return binary;
}

/** One line the program printed: the call, its error or null, and what it returned. */
interface Line {
  call: string;
  error: string | null;
  [field: string]: unknown;
}

/** What each line must say, in the order the program prints them. */
function checks(leader: number, kafkaPorts: Map<number, number>): [string, (l: Line) => void][] {
  const ok = (l: Line) => assert.equal(l.error, null);
  const fails = (pattern: RegExp) => (l: Line) => assert.match(l.error ?? "(no error)", pattern);
  const topicsHas = (present: boolean) => (l: Line) => {
    ok(l);
    assert.equal((l.topics as string[]).includes("sarama-t"), present);
  };
  const partitions = (n: number) => (l: Line) => {
    ok(l);
    assert.deepEqual([l.partitions, l.topicError], [n, ""]);
  };
  const records = (from: number) => (l: Line) => {
    ok(l);
    assert.deepEqual(l.records, [0, 1, 2, 3, 4].filter((i) => i >= from).map((i) => `${i}:k${i}=v${i}`));
  };
  const group = (state: string, protocol: string, members: unknown[]) => (l: Line) => {
    ok(l);
    assert.deepEqual(l.groups, [{ group: "sarama-g", error: "", state, protocolType: "consumer", protocol, members }]);
  };
  return [
    // First on purpose: sarama sends DescribeConfigs without asking ApiVersions. Before issue 21 the broker
    // closed the connection (EOF) and every later admin call of this client failed (broken pipe).
    ["ListTopics", topicsHas(false)],
    ["CreateTopic", ok],
    ["CreateTopic again", fails(/already exists/)],
    ["CreateTopic unknown config", fails(/Configuration is invalid.*unknown topic config 'retention\.msec'/)],
    ["ListTopics after create", (l) => {
      topicsHas(true)(l);
      // Replication factor 2 though 1 was asked for: yak places every partition on every broker.
      assert.deepEqual(l.topic, {
        partitions: 2,
        replicationFactor: 2,
        configs: { "retention.ms": "3600000", "compression.type": "gzip", "cleanup.policy": "delete" },
      });
    }],
    ["DescribeTopics", partitions(2)],
    ["DescribeConfig topic", (l) => {
      ok(l);
      assert.equal(l.count, 36, "every Kafka 3.x topic config");
      const configs = l.configs as Record<string, [string, boolean]>;
      assert.deepEqual(configs["retention.ms"], ["3600000", false]);
      assert.deepEqual(configs["compression.type"], ["gzip", false]);
      assert.deepEqual(configs["cleanup.policy"], ["delete", false]);
      assert.equal(configs["max.message.bytes"][1], true, "not set on the topic: a default");
      assert.equal(configs["segment.bytes"][1], true);
    }],
    ["DescribeConfig unknown topic", fails(/topic 'sarama-none' does not exist/)],
    ["AlterConfig", ok],
    ["AlterConfig validateOnly", ok],
    ["AlterConfig unknown config", fails(/unknown topic config 'retention\.msec'/)],
    ["DescribeConfig after alter", (l) => {
      ok(l);
      const configs = l.configs as Record<string, [string, boolean]>;
      assert.deepEqual(configs["retention.ms"], ["7200000", false], "validate-only and a refused alter change nothing");
      // AlterConfigs replaces the topic's set: what it left out is back to its default.
      assert.deepEqual(configs["compression.type"], ["producer", true]);
      assert.deepEqual(configs["cleanup.policy"], ["delete", true]);
    }],
    ["CreatePartitions", ok],
    ["CreatePartitions same count", fails(/Number of partitions is invalid.*has 3 partitions/)],
    ["DescribeTopics after CreatePartitions", partitions(3)],
    ["DescribeCluster", (l) => {
      ok(l);
      assert.deepEqual(
        l.brokers,
        [...kafkaPorts].sort(([a], [b]) => a - b).map(([id, port]) => [id, `127.0.0.1:${port}`]),
      );
      assert.equal(l.controller, -1, "sarama's DescribeCluster sends Metadata v0, which has no controller");
    }],
    ["Controller", (l) => {
      ok(l);
      assert.equal(l.controller, leader);
    }],
    // sarama 1.22's BrokerResource is 5 (KIP-133's draft); Kafka's BROKER is 4, refused as Kafka refuses 5.
    ["DescribeConfig BrokerResource", fails(/resource type 5/)],
    ["DescribeConfig broker", (l) => {
      ok(l);
      assert.ok((l.count as number) > 3, `${l.count} broker configs`);
      assert.deepEqual((l.configs as Record<string, unknown>)["broker.id"], [String(leader), true, false]);
    }],
    ["SendMessages", (l) => {
      ok(l);
      assert.deepEqual(l.offsets, [0, 1, 2, 3, 4]);
    }],
    ["ConsumePartition", records(0)],
    ["DeleteRecords", ok],
    ["GetOffset oldest", (l) => {
      ok(l);
      assert.equal(l.offset, 2, "DeleteRecords moved the log start");
    }],
    ["ConsumePartition after DeleteRecords", records(2)],
    ["ConsumerGroup Setup", (l) => {
      ok(l);
      assert.deepEqual(l.claims, { "sarama-t": [0, 1, 2] });
    }],
    [
      "DescribeConsumerGroups live",
      group("Stable", "range", [{
        clientId: "yak-sarama",
        topics: ["sarama-t"],
        assignment: { "sarama-t": [0, 1, 2] },
      }]),
    ],
    ["ConsumerGroup", (l) => {
      ok(l);
      assert.deepEqual(l.records, ["0/2:v2", "0/3:v3", "0/4:v4"]);
    }],
    ["ListConsumerGroups", (l) => {
      ok(l);
      assert.deepEqual(l.groups, { "sarama-g": "consumer" });
    }],
    ["DescribeConsumerGroups", group("Empty", "", [])],
    ["ListConsumerGroupOffsets", (l) => {
      ok(l);
      assert.deepEqual(l.offsets, { "0": [5, "sarama-meta", ""], "1": [-1, "", ""], "2": [-1, "", ""] });
    }],
    ["DeleteGroups", (l) => {
      ok(l);
      assert.deepEqual(l.groups, { "sarama-g": "" });
    }],
    ["ListConsumerGroups after delete", (l) => {
      ok(l);
      assert.deepEqual(l.groups, {});
    }],
    ["DeleteTopic", ok],
    ["ListTopics after delete", topicsHas(false)],
    ["done", ok],
  ];
}

Deno.test({
  name: "sarama 1.22: ClusterAdmin's topic, config, partition, record and group calls, produce and consume",
  ignore: skipWithout(saramaMissing()),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDeadline(90_000, "sarama", async () => {
      const binary = await saramaBinary();
      const c = await TestCluster.start({ brokers: 2, partitions: 2 });
      try {
        const out = await run(binary, [c.bootstrapServers], { timeoutMs: 60_000 });
        const text = new TextDecoder().decode(out.stdout);
        const shown = `sarama printed:\n${text}${out.stderr}`;
        assert.equal(out.code, 0, shown);
        const lines: Line[] = text.trim().split("\n").map((l) => JSON.parse(l));
        const expected = checks((await c.lease()).leaderId!, c.kafkaPorts);
        assert.deepEqual(lines.map((l) => l.call), expected.map(([call]) => call), shown);
        const failed: string[] = [];
        expected.forEach(([call, check], i) => {
          try {
            check(lines[i]);
          } catch (err) {
            failed.push(`${call}: ${(err as Error).message}\n  ${JSON.stringify(lines[i])}`);
          }
        });
        assert.deepEqual(failed, [], `sarama's calls answered wrongly:\n${failed.join("\n")}`);
      } finally {
        await c.stop();
      }
    }),
});
