/**
 * Log compaction with real processes (issue 23): one cluster of three
 * brokers, one compacted topic per step. Updates to a set of keys are
 * cleaned down to the latest value per key on every replica, byte for byte,
 * while a consumer reads; a follower away during the cleanings catches up;
 * tombstones go after delete.retention.ms and not before; transaction
 * markers go once their transactions' records are gone and
 * delete.retention.ms passed, read_committed readers still right; the leader killed
 * (kill -9) in the middle of cleaning passes loses nothing; a record without
 * a key is refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import {
  eventually,
  lastJsonLine,
  python,
  pythonModuleMissing,
  run,
  segmentHashes,
  skipWithout,
  TestCluster,
  withDeadline,
  yak,
} from "./harness.ts";

/** Cleaning every 100 ms; the cleaner at 16 MiB/s per broker, so a pass of a few MB takes long enough to be caught. */
const BROKER_ARGS = ["--cleaner-check-ms", "100", "--cleaner-io-bytes-per-sec", String(16 * 1024 * 1024)];

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    total += e.isDirectory
      ? await dirBytes(join(dir, e.name))
      : (await Deno.stat(join(dir, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** SHA-256 of each segment file of a topic on each broker (null while files change under the walk). */
async function topicHashes(cluster: TestCluster, topic: string): Promise<(string | null)[]> {
  return await Promise.all(
    [...cluster.brokers.keys()].sort().map(async (id) => {
      try {
        const h = await segmentHashes(join(cluster.topicsDir(id), topic));
        return JSON.stringify([...h].sort());
      } catch {
        return null;
      }
    }),
  );
}

/** Waits until every broker holds the same segment files of `topic`. */
async function identical(cluster: TestCluster, topic: string, timeoutMs = 20_000): Promise<string> {
  let hashes: (string | null)[] = [];
  await eventually(
    async () => {
      hashes = await topicHashes(cluster, topic);
      return hashes[0] !== null && hashes.every((h) => h === hashes[0]);
    },
    timeoutMs,
    `identical replicas of ${topic}`,
  );
  return hashes[0]!;
}

async function create(cluster: TestCluster, topic: string, configs: string[]): Promise<void> {
  const args = ["topics", "--create", topic, "--partitions", "1", "--config", "cleanup.policy=compact"];
  for (const c of configs) args.push("--config", c);
  const res = await yak([...args, ...cluster.zkFlag]);
  assert.equal(res.code, 0, res.stderr);
}

/** The leader's `--describe` line of partition 0: log start, end, and the cleaner's columns. */
async function describe(cluster: TestCluster, topic: string): Promise<string[]> {
  const res = await yak(["topics", "--describe", topic, ...cluster.zkFlag]);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.split("\n").find((l) => l.startsWith("0\t"))!.split("\t");
}

/** Every record from offset 0, as `yak consume --format json` prints them (read_committed, the default). */
async function readAll(
  cluster: TestCluster,
  topic: string,
  isolation = "read_committed",
): Promise<{ offset: number; key: string; value: string | null }[]> {
  const res = await yak(
    [
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--exit-at-end",
      "--format",
      "json",
      "--isolation-level",
      isolation,
      ...cluster.zkFlag,
    ],
    { timeoutMs: 30_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

/** Lines `k<i mod keys>:v<i>` for i in [from, to), for `yak produce --key-separator :`. */
function updates(from: number, to: number, keys: number, pad = ""): string {
  const lines: string[] = [];
  for (let i = from; i < to; i++) lines.push(`k${i % keys}:v${i}${pad}`);
  return lines.join("\n") + "\n";
}

async function produce(cluster: TestCluster, topic: string, stdin: string): Promise<void> {
  const res = await yak(["produce", "--topic", topic, "--key-separator", ":", ...cluster.zkFlag], {
    stdin,
    timeoutMs: 60_000,
  });
  assert.equal(res.code, 0, res.stderr);
}

/** The offset the leader's last cleaning of partition 0 reached, from `yak topics --describe` (0 before any). */
async function cleanedTo(cluster: TestCluster, topic: string): Promise<number> {
  const m = /to offset (\d+)/.exec((await describe(cluster, topic))[7] ?? "");
  return m ? Number(m[1]) : 0;
}

/**
 * Records after segment.ms roll the active segment, so everything before them is in closed segments:
 * a marker record is sent until the leader's cleaning reached `offset`.
 */
async function cleanedPast(cluster: TestCluster, topic: string, offset: number, timeoutMs = 30_000): Promise<void> {
  try {
    await eventually(
      async () => {
        const marker = await yak(["produce", "--topic", topic, "--key", "marker", "--message", "m", ...cluster.zkFlag]);
        assert.equal(marker.code, 0, marker.stderr);
        return await cleanedTo(cluster, topic) >= offset;
      },
      timeoutMs,
      `a cleaning of ${topic} past offset ${offset}`,
    );
  } catch (err) {
    // What each broker's cleaner did, to see why.
    for (const [id, proc] of cluster.brokers) {
      const said = proc.lines.filter((l) => /clean|became_leader|stepped_down|copying_cleaned/.test(l));
      console.log(`broker ${id}:\n  ${said.slice(-25).join("\n  ")}`);
    }
    console.log((await describe(cluster, topic)).join(" | "));
    throw err;
  }
}

/**
 * The stored lines of partition 0 of `topic` on broker `id`, parsed (as `cat ... | jq` reads them): read again
 * while the cleaner swaps, removes or merges segments under the walk (the files listed before and after differ).
 */
async function storedLines(cluster: TestCluster, id: number, topic: string): Promise<Record<string, unknown>[]> {
  const dir = join(cluster.topicsDir(id), topic, "0");
  const list = async () => {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    return names.sort();
  };
  for (let attempt = 0;; attempt++) {
    const before = await list();
    const out: Record<string, unknown>[] = [];
    let whole = true;
    for (const name of before.filter((n) => n.endsWith(".jsonl"))) {
      const text = await Deno.readTextFile(join(dir, name)).catch(() => null);
      if (text === null) whole = false;
      for (const line of text?.split("\n") ?? []) if (line !== "") out.push(JSON.parse(line));
    }
    if ((whole && (await list()).join() === before.join()) || attempt === 50) return out;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * confluent-kafka (librdkafka): `produce` writes, with transactional id `compact-txn`, a committed transaction
 * (a0..a4), an aborted one (a0..a4 and b0), a committed one (a5..a9), then plain records a0..a4 that supersede
 * the first transaction's; `read` prints [key, value] of every record from offset 0 to the end, per isolation level.
 */
const TXN_CLIENT = `
import json, sys
from confluent_kafka import Consumer, Producer, TopicPartition
b, topic, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "produce":
    p = Producer({"bootstrap.servers": b, "transactional.id": "compact-txn"})
    p.init_transactions(20)
    for name, keys in (("c1", range(5)), ("aborted", list(range(5)) + ["b"]), ("c3", range(5, 10))):
        p.begin_transaction()
        for k in keys:
            p.produce(topic, key="b0" if k == "b" else f"a{k}", value=f"{name}-{k}", partition=0)
        p.flush(20)
        if name == "aborted":
            p.abort_transaction(20)
        else:
            p.commit_transaction(20)
    plain = Producer({"bootstrap.servers": b})
    for k in range(5):
        plain.produce(topic, key=f"a{k}", value=f"plain-{k}", partition=0)
    plain.flush(20)
    print(json.dumps("produced"))
else:
    out = {}
    for isolation in ("read_committed", "read_uncommitted"):
        c = Consumer({"bootstrap.servers": b, "group.id": "compact-" + isolation, "isolation.level": isolation,
                      "enable.partition.eof": True, "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        while True:
            m = c.poll(10)
            if m is None:
                got.append("timed out")
                break
            if m.error():
                break
            got.append([m.key().decode(), m.value().decode()])
        c.close()
        out[isolation] = got
    print(json.dumps(out))
`;

async function txnClient(cluster: TestCluster, topic: string, mode: "produce" | "read"): Promise<unknown> {
  const r = await python(TXN_CLIENT, [cluster.bootstrapServers, topic, mode]);
  assert.equal(r.code, 0, r.out);
  return lastJsonLine(r.out);
}

async function leaderId(cluster: TestCluster): Promise<number> {
  return (await cluster.waitFor((l) => l.leaderId !== null)).leaderId!;
}

/**
 * `yak topics --alter T --config KV`, again while a broker just elected has not heard it leads (it answers
 * NOT_LEADER naming the leader before it, and yak topics does not retry that).
 */
async function alterConfig(cluster: TestCluster, topic: string, kv: string): Promise<void> {
  let last = "";
  await eventually(
    async () => {
      const res = await yak(["topics", "--alter", topic, "--config", kv, ...cluster.zkFlag]);
      last = res.stderr;
      if (res.code === 0) return true;
      assert.match(res.stderr, /is not the leader/);
      return false;
    },
    10_000,
    `yak topics --alter ${topic} --config ${kv} (last: ${last})`,
  );
}

async function restart(cluster: TestCluster, id: number): Promise<void> {
  await cluster.startBroker(id);
  await cluster.waitFor((l) => l.isr.length === 3, 20_000);
}

Deno.test("compaction: latest value per key on every replica, byte for byte; tombstones; kill -9 mid-pass; keyless records refused", async (t) => {
  await withDeadline(150_000, "compaction", async () => {
    const cluster = await TestCluster.start({ brokers: 3, brokerArgs: BROKER_ARGS });
    const timed = async (name: string, fn: () => Promise<void>) => {
      const started = performance.now();
      await t.step(name, fn);
      console.log(`    (${name.slice(0, 40)}...: ${((performance.now() - started) / 1000).toFixed(1)} s)`);
    };
    try {
      await timed("a record without a key is refused with INVALID_RECORD, by both protocols", async () => {
        await create(cluster, "keyless", []);
        const native = await yak(["produce", "--topic", "keyless", "--message", "x", ...cluster.zkFlag]);
        assert.notEqual(native.code, 0);
        assert.match(native.stderr, /has no key, and topic 'keyless' is compacted/);
        const kcat = await run("kcat", ["-P", "-b", cluster.bootstrapServers, "-t", "keyless"], { stdin: "x\n" });
        // librdkafka names Kafka's INVALID_RECORD (87) so.
        assert.match(new TextDecoder().decode(kcat.stdout) + kcat.stderr, /failed to validate record/);
        const keyed = await yak(["produce", "--topic", "keyless", "--key", "k", "--message", "x", ...cluster.zkFlag]);
        assert.equal(keyed.code, 0, keyed.stderr);
        assert.equal((await readAll(cluster, "keyless")).length, 1);
      });

      await timed(
        "200,000 updates to 1,000 keys: latest value per key from 0, replicas identical, a consumer and a follower away",
        async () => {
          const topic = "latest";
          const N = 200_000;
          await create(cluster, topic, ["segment.bytes=262144", "segment.ms=500", "min.cleanable.dirty.ratio=0.3"]);
          // A Kafka consumer reads from offset 0 while the updates arrive and the cleaner runs.
          const kafka = new Kafka({ brokers: cluster.bootstrapServers.split(","), logLevel: logLevel.NOTHING });
          const consumer = kafka.consumer({ groupId: "reader" });
          const seen = new Map<string, Set<string>>();
          await consumer.connect();
          await consumer.subscribe({ topic, fromBeginning: true });
          await consumer.run({
            eachMessage: ({ message }) => {
              const key = message.key!.toString();
              if (!seen.has(key)) seen.set(key, new Set());
              seen.get(key)!.add(message.value!.toString());
              return Promise.resolve();
            },
          });
          try {
            await produce(cluster, topic, updates(0, 30_000, 1000));
            // A follower is away (kill -9) while the rest arrives and is cleaned.
            const leader = await leaderId(cluster);
            const gone = [1, 2, 3].find((id) => id !== leader)!;
            cluster.brokers.get(gone)!.kill("SIGKILL");
            await cluster.brokers.get(gone)!.status;
            await produce(cluster, topic, updates(30_000, N, 1000));
            const raw = await dirBytes(join(cluster.topicsDir(leader), topic, "0"));
            await cleanedPast(cluster, topic, N);
            const records = await readAll(cluster, topic);
            const values = records.filter((r) => r.key !== "marker");
            assert.equal(values.length, 1000, "one record per key");
            for (const r of values) assert.equal(r.value, `v${N - 1000 + Number(r.key!.slice(1))}`);
            const offsets = records.map((r) => Number(r.offset));
            assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b));
            // Every key's latest value reached the consumer at least once.
            await eventually(
              () => {
                for (let k = 0; k < 1000; k++) if (!seen.get(`k${k}`)?.has(`v${N - 1000 + k}`)) return false;
                return true;
              },
              20_000,
              "the consumer seeing every key's latest value",
            );
            await restart(cluster, gone);
            await identical(cluster, topic);
            const after = await Promise.all([1, 2, 3].map((id) => dirBytes(join(cluster.topicsDir(id), topic, "0"))));
            console.log(
              `    ${N} updates to 1,000 keys: leader's partition directory ${(raw / 1024).toFixed(0)} KiB before ` +
                `cleaning, ${after.map((n) => (n / 1024).toFixed(0)).join(" / ")} KiB after on the 3 replicas; ` +
                `describe: ${(await describe(cluster, topic)).slice(6).join(" | ")}; broker ${gone} (away) ` +
                `${
                  cluster.brokers.get(gone)!.lines.some((l) => l.includes("copying_cleaned_log"))
                    ? "started over and copied"
                    : "copied"
                } the cleaned log`,
            );
            assert.ok(after.every((n) => n < raw / 10), `${after} of ${raw}`);
          } finally {
            await consumer.disconnect();
          }
        },
      );

      await timed(
        "a tombstone removes its key's records, and goes itself after delete.retention.ms, not before, backdated and future-dated ones too",
        async () => {
          const topic = "tombs";
          const retentionMs = 3000;
          await create(cluster, topic, [
            "segment.ms=300",
            "min.cleanable.dirty.ratio=0.01",
            `delete.retention.ms=${retentionMs}`,
          ]);
          const kafka = new Kafka({ brokers: cluster.bootstrapServers.split(","), logLevel: logLevel.NOTHING });
          const producer = kafka.producer();
          await producer.connect();
          try {
            const keys = Array.from({ length: 40 }, (_, i) => `t${i}`);
            await producer.send({ topic, messages: keys.map((key) => ({ key, value: `first-${key}` })) });
            await producer.send({ topic, messages: keys.map((key) => ({ key, value: `second-${key}` })) });
            const deletedAt = Date.now();
            await producer.send({ topic, messages: keys.slice(0, 20).map((key) => ({ key, value: null })) });
            // Deletes with an hour-old timestamp, as MirrorMaker copies them: their time counts from the cleaning
            // that first sees them (KIP-534), not from their timestamps.
            const hourAgo = String(deletedAt - 3_600_000);
            await producer.send({
              topic,
              messages: keys.slice(20, 30).map((key) => ({ key, value: null, timestamp: hourAgo })),
            });
            // And stamped an hour ahead (a producer's clock off): not kept until then.
            const hourAhead = String(deletedAt + 3_600_000);
            await producer.send({
              topic,
              messages: keys.slice(30, 35).map((key) => ({ key, value: null, timestamp: hourAhead })),
            });
            const end = (await readAll(cluster, topic)).at(-1)!.offset + 1;
            await cleanedPast(cluster, topic, end);
            // Cleaned once: the deleted keys' values are gone, their tombstones are there.
            const once = (await readAll(cluster, topic)).filter((r) => r.key !== "marker");
            assert.deepEqual(once.filter((r) => r.value === null).map((r) => r.key), keys.slice(0, 35));
            assert.deepEqual(
              once.filter((r) => r.value !== null).map((r) => r.value),
              keys.slice(35).map((k) => `second-${k}`),
            );
            assert.ok(Date.now() - deletedAt < retentionMs, "checked before delete.retention.ms passed");
            // When the first tombstone went, and when the last did.
            let firstGoneAt = 0;
            let goneAt = 0;
            await eventually(
              async () => {
                const records = (await readAll(cluster, topic)).filter((r) => r.key !== "marker");
                const tombstones = records.filter((r) => r.value === null).length;
                if (tombstones < 35 && firstGoneAt === 0) firstGoneAt = Date.now();
                if (tombstones > 0) return false;
                goneAt = Date.now();
                assert.equal(records.length, 5);
                return true;
              },
              20_000,
              "the tombstones removed",
            );
            console.log(
              `    tombstones seen for ${((firstGoneAt - deletedAt) / 1000).toFixed(1)}-${
                ((goneAt - deletedAt) / 1000).toFixed(1)
              } s after the deletes, the backdated and future-dated ones too (delete.retention.ms=${retentionMs})`,
            );
            assert.ok(
              firstGoneAt - deletedAt >= retentionMs,
              `a tombstone gone ${firstGoneAt - deletedAt} ms after the deletes`,
            );
            await identical(cluster, topic);
          } finally {
            await producer.disconnect();
          }
        },
      );

      await timed(
        "transaction markers go once their transaction's records are gone and delete.retention.ms passed; readers right",
        async () => {
          if (skipWithout(pythonModuleMissing("confluent_kafka", "python3-confluent-kafka"))) return;
          const topic = "txns";
          const retentionMs = 3000;
          await create(cluster, topic, [
            "segment.ms=300",
            "min.cleanable.dirty.ratio=0.01",
            `delete.retention.ms=${retentionMs}`,
          ]);
          await txnClient(cluster, topic, "produce");
          const producedAt = Date.now();
          const end = (await readAll(cluster, topic, "read_uncommitted")).at(-1)!.offset + 1;
          // What every reader must get once cleaned: the third transaction's a5..a9, then the plain a0..a4.
          const want = [
            ...[5, 6, 7, 8, 9].map((k) => [`a${k}`, `c3-${k}`]),
            ...[0, 1, 2, 3, 4].map((k) => [`a${k}`, `plain-${k}`]),
          ];
          const markersOf = async (id: number) =>
            (await storedLines(cluster, id, topic)).filter((l) => l.marker !== undefined).map((l) => l.marker);
          const check = async (what: string) => {
            const read = await txnClient(cluster, topic, "read") as Record<string, string[][]>;
            for (const isolation of ["read_committed", "read_uncommitted"]) {
              const got = read[isolation].filter((kv) => kv[0] !== "marker");
              assert.deepEqual(got, want, `${what}: confluent-kafka ${isolation}`);
            }
            for (const isolation of ["read_committed", "read_uncommitted"]) {
              const got = (await readAll(cluster, topic, isolation)).filter((r) => r.key !== "marker");
              assert.deepEqual(got.map((r) => [r.key, r.value]), want, `${what}: yak consume ${isolation}`);
            }
          };
          await cleanedPast(cluster, topic, end);
          // Cleaned: the aborted and superseded records are gone, the three markers still there.
          const leader = await leaderId(cluster);
          const cleanedAt = Date.now();
          assert.deepEqual(await markersOf(leader), ["commit", "abort", "commit"]);
          assert.ok(cleanedAt - producedAt < retentionMs, "checked before delete.retention.ms passed");
          await check("cleaned once");
          let goneAt = 0;
          await eventually(
            async () => {
              if ((await markersOf(leader)).length === 3) return false;
              goneAt = Date.now();
              return true;
            },
            20_000,
            "the markers of the transactions with no record left removed",
          );
          console.log(
            `    markers of transactions with no record left kept ${((goneAt - producedAt) / 1000).toFixed(1)} s ` +
              `after the transactions (delete.retention.ms=${retentionMs}); the one whose records stay kept`,
          );
          assert.ok(goneAt - producedAt >= retentionMs, `gone ${goneAt - producedAt} ms after the transactions`);
          await identical(cluster, topic);
          for (const id of [1, 2, 3]) assert.deepEqual(await markersOf(id), ["commit"], `broker ${id}`);
          await check("markers removed");
        },
      );

      await timed(
        "a cleaned log's gaps: kcat reads across them to the end, ListOffsets and DeleteRecords (kafkajs, yak) work",
        async () => {
          const topic = "gaps";
          // segment.bytes=3000: each produce below rolls the segment; the cleaned first segment (about 1.8 KB) and
          // the one of 60-79 together pass it, so they are not merged.
          await create(cluster, topic, ["segment.ms=300", "segment.bytes=3000", "min.cleanable.dirty.ratio=0.01"]);
          // Offsets 0-19 keep their values; 20-39 and 40-59 (the next segment) are replaced by 60-79, in the one
          // after: once cleaned, the first segment ends in a gap and the second is gone.
          const lines = (prefix: string, value: string) =>
            Array.from({ length: 20 }, (_, i) => `${prefix}${i}:${value}-${i}`).join("\n") + "\n";
          await produce(cluster, topic, lines("u", "kept") + lines("x", "old"));
          await produce(cluster, topic, lines("x", "mid"));
          await new Promise((r) => setTimeout(r, 20)); // a time after every earlier record's, and before the next's
          const newAt = Date.now();
          await produce(cluster, topic, lines("x", "new"));
          await cleanedPast(cluster, topic, 80);
          const leader = await leaderId(cluster);
          const offsets = (await storedLines(cluster, leader, topic)).map((l) => l.offset as number);
          assert.deepEqual(offsets.slice(0, 21), [...Array(20).keys(), 60], "the first segment ends in a gap");
          const files: string[] = [];
          for await (const e of Deno.readDir(join(cluster.topicsDir(leader), topic, "0"))) files.push(e.name);
          assert.ok(!files.includes("00000000000000000040.jsonl"), `the second segment removed: ${files.sort()}`);
          const want = [
            ...Array.from({ length: 20 }, (_, i) => `${i} u${i}=kept-${i}`),
            ...Array.from({ length: 20 }, (_, i) => `${60 + i} x${i}=new-${i}`),
          ];
          let hw = 0;
          const kcat = async (from: string, extra: string[] = []) => {
            const r = await run("kcat", [
              "-C",
              "-b",
              cluster.bootstrapServers,
              "-t",
              topic,
              "-p",
              "0",
              "-o",
              from,
              "-e",
              "-q",
              "-f",
              "%o %k=%s\n",
              ...extra,
            ], { timeoutMs: 20_000 });
            assert.equal(r.code, 0, `kcat -o ${from} ${extra.join(" ")}: ${r.stderr}`);
            const all = new TextDecoder().decode(r.stdout).trim().split("\n");
            // The marker records that rolled segments are the last ones: it read up to the high watermark.
            assert.equal(Number(all.at(-1)!.split(" ")[0]), hw - 1, `kcat -o ${from} ${extra.join(" ")}`);
            return all.filter((l) => !l.includes(" marker="));
          };
          // ListOffsets: earliest, latest, and by time (the first kept record at or after it).
          const kafka = new Kafka({ brokers: cluster.bootstrapServers.split(","), logLevel: logLevel.NOTHING });
          const admin = kafka.admin();
          await admin.connect();
          try {
            await admin.fetchTopicMetadata({ topics: [topic] });
            const listed = async () => (await admin.fetchTopicOffsets(topic))[0];
            hw = Number((await listed()).high);
            assert.ok(hw > 80, `high watermark ${hw}`);
            assert.deepEqual(await listed(), { partition: 0, offset: String(hw), high: String(hw), low: "0" });
            // kcat to the end (-e: it exits at the high watermark), whether a fetch ends at the gap or starts in it.
            assert.deepEqual(await kcat("beginning"), want);
            assert.deepEqual(await kcat("beginning", ["-X", "fetch.message.max.bytes=600"]), want);
            assert.deepEqual(await kcat("25"), want.slice(20));
            assert.deepEqual(await kcat("19", ["-X", "fetch.message.max.bytes=1"]), want.slice(19));
            assert.deepEqual(await kcat(`s@${newAt}`), want.slice(20), "kcat from a time (ListOffsets)");
            const byTime = async (ts: number) => (await admin.fetchTopicOffsetsByTimestamp(topic, ts))[0].offset;
            assert.equal(await byTime(newAt), "60");
            assert.equal(await byTime(newAt - 60_000), "0");
            // DeleteRecords into the removed segment's range: the log start is that offset, reads start at 60.
            await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "50" }] });
            assert.equal((await listed()).low, "50");
            assert.deepEqual(await kcat("beginning"), want.slice(20));
            const fromStart = (await readAll(cluster, topic)).filter((r) => r.key !== "marker");
            assert.equal(fromStart[0].offset, 60);
            assert.equal(fromStart.length, 20);
            // yak topics --delete-records among kept records.
            const del = await yak([
              "topics",
              "--delete-records",
              topic,
              "--partition",
              "0",
              "--offset",
              "65",
              ...cluster.zkFlag,
            ]);
            assert.equal(del.code, 0, del.stderr);
            assert.equal((await listed()).low, "65");
            assert.deepEqual(await kcat("beginning"), want.slice(25));
            assert.equal(await byTime(newAt - 60_000), "65");
          } finally {
            await admin.disconnect();
          }
          await identical(cluster, topic);
        },
      );

      await timed(
        "small cleaned segments are merged up to segment.bytes, the same on every replica",
        async () => {
          const topic = "merged";
          await create(cluster, topic, ["segment.bytes=16384", "segment.ms=1000", "min.cleanable.dirty.ratio=0.01"]);
          // 4,000 records of ~100 bytes, in sends of 40 (a batch is appended whole): every 20th of a key of its
          // own, the rest updates of 7 keys. Segments of 16 KiB (two sends) keep about 5 records once cleaned.
          const kafka = new Kafka({ brokers: cluster.bootstrapServers.split(","), logLevel: logLevel.NOTHING });
          const producer = kafka.producer();
          await producer.connect();
          try {
            for (let send = 0; send < 100; send++) {
              const messages = Array.from({ length: 40 }, (_, j) => {
                const i = send * 40 + j;
                return { key: i % 20 === 0 ? `u${i}` : `h${i % 7}`, value: `v${i}-${"p".repeat(80)}` };
              });
              await producer.send({ topic, acks: -1, messages });
            }
          } finally {
            await producer.disconnect();
          }
          const segmentFiles = async (id: number) => {
            let n = 0;
            for await (const e of Deno.readDir(join(cluster.topicsDir(id), topic, "0"))) {
              if (e.name.endsWith(".jsonl")) n++;
            }
            return n;
          };
          const before = await segmentFiles(await leaderId(cluster));
          await cleanedPast(cluster, topic, 4000);
          let after: number[] = [];
          await eventually(
            async () => {
              after = await Promise.all([1, 2, 3].map(segmentFiles));
              return after.every((n) => n <= 5);
            },
            20_000,
            "the cleaned segments merged",
          ).catch((err) => {
            throw new Error(`${err.message}: segment files ${after.join(" / ")}, ${before} before`);
          });
          await identical(cluster, topic);
          after = await Promise.all([1, 2, 3].map(segmentFiles));
          const values = (await readAll(cluster, topic)).filter((r) => r.key !== "marker");
          assert.equal(values.filter((r) => r.key.startsWith("u")).length, 200);
          const hot = new Map(values.filter((r) => r.key.startsWith("h")).map((r) => [r.key, r.value]));
          for (let k = 0; k < 7; k++) {
            let i = 3999;
            while (i % 7 !== k || i % 20 === 0) i--;
            assert.equal(hot.get(`h${k}`), `v${i}-${"p".repeat(80)}`);
          }
          console.log(`    ${before} segment files before cleaning, ${after.join(" / ")} after on the 3 replicas`);
        },
      );

      await timed(
        "kill -9 of the leader in the middle of cleaning passes, three times: nothing lost, replicas identical",
        async () => {
          const topic = "crash";
          const keys = 2000;
          const pad = "-" + "p".repeat(150);
          // The cleaner is held back (min.compaction.lag.ms) until each round's backlog is there, so its pass is long.
          await create(cluster, topic, [
            "segment.bytes=1048576",
            "segment.ms=300",
            "min.compaction.lag.ms=3600000",
            "min.cleanable.dirty.ratio=0.01",
          ]);
          let produced = 0;
          // A kill lands in the middle of its pass unless the pass outran the 100 ms wait (a loaded machine): every
          // round checks what is kept, and at least one of the three must have cut a pass short.
          let midPassKills = 0;
          for (let round = 1; round <= 3; round++) {
            await produce(cluster, topic, updates(produced, produced + 40_000, keys, pad));
            produced += 40_000;
            const leader = await leaderId(cluster);
            const proc = cluster.brokers.get(leader)!;
            const from = proc.lines.length;
            await alterConfig(cluster, topic, "min.compaction.lag.ms=0");
            // Records after segment.ms roll the active segment: the backlog is closed, and the leader decides.
            // This round's pass: a cleaning past every earlier one (an older decision may still be carried out here).
            const passOf = (l: string) => Number(/log_cleaning partition=crash\/0 to=(\d+)/.exec(l)?.[1] ?? -1);
            const before = Math.max(-1, ...[...cluster.brokers.values()].flatMap((p) => p.lines.map(passOf)));
            let at = -1;
            const rolling = (async () => {
              while (at === -1) {
                await yak(["produce", "--topic", topic, "--key", "marker", "--message", "m", ...cluster.zkFlag]);
                await new Promise((r) => setTimeout(r, 100));
              }
            })();
            await eventually(
              () => {
                at = proc.lines.findIndex((l, i) => i >= from && passOf(l) > before);
                return at !== -1;
              },
              15_000,
              "this round's cleaning begun",
            ).catch((err) => {
              for (const [id, p] of cluster.brokers) {
                console.log(
                  `broker ${id}:\n  ${p.lines.filter((l) => /clean|leader/.test(l)).slice(-30).join("\n  ")}`,
                );
              }
              throw err;
            }).finally(() => (at = Math.max(at, 0)));
            // Mid-pass: the pass began (log_cleaning), its log_cleaned has not come.
            await new Promise((r) => setTimeout(r, 100));
            const midPass = !proc.lines.slice(at).some((l) => /log_cleaned partition=crash\/0/.test(l));
            proc.kill("SIGKILL");
            await proc.status;
            await rolling;
            console.log(
              `    round ${round}: broker ${leader} killed ${midPass ? "in the middle of its pass" : "after its pass"}`,
            );
            if (midPass) midPassKills++;
            await cluster.waitFor((l) => l.leaderId !== null && l.leaderId !== leader);
            await alterConfig(cluster, topic, "min.compaction.lag.ms=3600000");
            await restart(cluster, leader);
          }
          assert.ok(midPassKills >= 1, "no kill landed while a pass ran");
          await alterConfig(cluster, topic, "min.compaction.lag.ms=0");
          await cleanedPast(cluster, topic, produced);
          const hashes = await identical(cluster, topic);
          for (const id of [1, 2, 3]) {
            for await (const e of Deno.readDir(join(cluster.topicsDir(id), topic, "0"))) {
              assert.doesNotMatch(e.name, /\.(cleaned|swap)$/, `broker ${id}: ${e.name}`);
            }
          }
          const values = (await readAll(cluster, topic)).filter((r) => r.key !== "marker");
          assert.equal(values.length, keys);
          for (const r of values) assert.equal(r.value, `v${produced - keys + Number(r.key!.slice(1))}${pad}`);
          console.log(
            `    ${produced} updates, 3 kills: ${keys} keys with their latest values, ${
              JSON.parse(hashes).length
            } identical segment files`,
          );
        },
      );
    } finally {
      await cluster.stop();
    }
  });
});
