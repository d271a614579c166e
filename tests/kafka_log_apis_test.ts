/**
 * Deleting records and reading across a leader change (issue 21), through
 * real clients on one shared cluster of two brokers: kafkajs 2.2.4's admin
 * `deleteTopicRecords` (DeleteRecords v1) and `fetchTopicOffsets`, kcat
 * (librdkafka 2.0.2) reading from the new log start and across a leader
 * kill, `yak topics --delete-records`, and OffsetForLeaderEpoch, built field
 * by field (no client here sends it: librdkafka validates positions from 2.1
 * on), on the new leader after the kill.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { kcatMissing, run, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

const OFFSET_OUT_OF_RANGE = 1;
const FENCED_LEADER_EPOCH = 74;
const TOPIC = "dr";

/** ListOffsets v1 of one partition at `timestamp` (-2: earliest, -1: latest), on the broker at `port`. */
async function listOffset(port: number, partition: number, timestamp: number): Promise<number> {
  const k = await KafkaConn.open(port);
  try {
    const r = await k.call(2, 1, false, (w) => {
      w.int32(-1);
      w.array([TOPIC], (w, t) => w.string(t).array([partition], (w, p) => w.int32(p).int64(timestamp)));
    });
    const [[error, offset]] = r.array((r) => {
      r.string();
      return r.array((r) => {
        r.int32();
        const e = r.int16();
        r.int64(); // timestamp
        return [e, r.int64()];
      });
    }).flat();
    ends(r);
    assert.equal(error, 0, `ListOffsets error ${error}`);
    return offset;
  } finally {
    k.close();
  }
}

/** The error of a Fetch v4 of one partition from `offset`. */
async function fetchError(port: number, partition: number, offset: number): Promise<number> {
  const k = await KafkaConn.open(port);
  try {
    const r = await k.call(1, 4, false, (w) => {
      w.int32(-1).int32(0).int32(1).int32(1 << 20).int8(0);
      w.array([TOPIC], (w, t) => w.string(t).array([partition], (w, p) => w.int32(p).int64(offset).int32(1 << 20)));
    });
    r.int32(); // throttle
    const [error] = r.array((r) => {
      r.string();
      return r.array((r) => {
        r.int32();
        const e = r.int16();
        r.int64(); // high watermark
        r.int64(); // last stable offset
        r.nullableArray((r) => [r.int64(), r.int64()]);
        r.nullableBytes();
        return e;
      });
    }).flat();
    ends(r);
    return error;
  } finally {
    k.close();
  }
}

/** OffsetForLeaderEpoch v4 of partition 0: [error, leader epoch, end offset]. */
async function epochEnd(port: number, current: number, epoch: number): Promise<number[]> {
  const k = await KafkaConn.open(port);
  try {
    const r = await k.call(23, 4, true, (w) => {
      w.int32(-1); // a consumer
      w.array([TOPIC], (w, t) => w.string(t).array([0], (w, p) => w.int32(p).int32(current).int32(epoch)));
    });
    r.int32(); // throttle
    const [answer] = r.array((r) => {
      r.string();
      return r.array((r) => {
        const error = r.int16();
        r.int32(); // partition
        return [error, r.int32(), r.int64()];
      });
    }).flat();
    ends(r);
    return answer;
  } finally {
    k.close();
  }
}

/** The base offsets of a partition's segment files on broker `id`. */
async function segmentBases(c: TestCluster, id: number, partition: number): Promise<number[]> {
  const bases: number[] = [];
  for await (const e of Deno.readDir(`${c.topicsDir(id)}/${TOPIC}/${partition}`)) {
    const m = e.name.match(/^(\d{20})\.jsonl$/);
    if (m) bases.push(Number(m[1]));
  }
  return bases.sort((a, b) => a - b);
}

Deno.test({
  name: "DeleteRecords moves the log start on every replica and through a leader kill; OffsetForLeaderEpoch after it",
  ignore: skipWithout(kcatMissing()),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    withDeadline(60_000, "delete records", async () => {
      // Small segments (the smallest yak takes) of about three records each, so a deletion removes whole ones too.
      const c = await TestCluster.start({ brokers: 2, minInsyncReplicas: 1, segmentBytes: 1024 });
      const kafka = new Kafka({
        clientId: "yak-test",
        brokers: c.bootstrapServers.split(","),
        logLevel: logLevel.NOTHING,
        retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      const admin = kafka.admin();
      const producer = kafka.producer();
      try {
        const leader = (await c.lease()).leaderId!;
        const follower = leader === 1 ? 2 : 1;
        const leaderPort = c.kafkaPorts.get(leader)!;
        const followerPort = c.kafkaPorts.get(follower)!;
        await admin.connect();
        await producer.connect();
        await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 2 }] });
        const value = (offset: number) => `v${offset}.${"x".repeat(250)}`;
        const values = (from: number, n: number) => Array.from({ length: n }, (_, i) => value(from + i));
        await producer.send({
          topic: TOPIC,
          acks: -1,
          messages: values(0, 10).map((value) => ({ partition: 0, value })),
        });
        await producer.send({
          topic: TOPIC,
          acks: -1,
          messages: values(0, 4).map((value) => ({ partition: 1, value })),
        });

        await t.step("kafkajs deleteTopicRecords: the log start moves on the leader and the follower", async () => {
          const t0 = Date.now();
          // kafkajs finds the partition's leader in the metadata it has: load the topic's first.
          await admin.fetchTopicMetadata({ topics: [TOPIC] });
          await admin.deleteTopicRecords({ topic: TOPIC, partitions: [{ partition: 0, offset: "6" }] });
          const offsets = await admin.fetchTopicOffsets(TOPIC);
          assert.deepEqual(offsets.find((o) => o.partition === 0), {
            partition: 0,
            offset: "10",
            high: "10",
            low: "6",
          });
          // Answered once every in-sync replica's start had moved: the follower says so at once.
          assert.equal(await listOffset(followerPort, 0, -2), 6);
          // Reads below it are out of range (a consumer resets); whole segments below it are gone everywhere.
          assert.equal(await fetchError(leaderPort, 0, 2), OFFSET_OUT_OF_RANGE);
          for (const id of [leader, follower]) {
            const bases = await segmentBases(c, id, 0);
            assert.ok(bases[0] <= 6 && (bases[1] ?? Infinity) > 6, `broker ${id} segments ${bases}`);
          }
          // kcat from the beginning starts at the new log start.
          const k = await run("kcat", [
            "-C",
            "-b",
            `127.0.0.1:${leaderPort}`,
            "-t",
            TOPIC,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
          ], {
            timeoutMs: 20_000,
          });
          assert.equal(k.code, 0, k.stderr);
          assert.deepEqual(new TextDecoder().decode(k.stdout).trim().split("\n"), values(6, 4));
          // Past the high watermark: OFFSET_OUT_OF_RANGE, and nothing moves.
          const past = await admin.deleteTopicRecords({ topic: TOPIC, partitions: [{ partition: 0, offset: "11" }] })
            .then(() => null, (e) => e);
          // kafkajs gives up at once (not retriable) and wraps the partition's error.
          assert.equal(past?.cause?.partitions?.[0]?.error?.type, "OFFSET_OUT_OF_RANGE", String(past));
          assert.equal(await listOffset(leaderPort, 0, -2), 6);
          console.log(`deleteTopicRecords step: ${Date.now() - t0} ms`);
        });

        await t.step("yak topics --delete-records, -1 for the high watermark", async () => {
          const t0 = Date.now();
          const deleteRecords = (offset: string) =>
            yak(["topics", "--delete-records", TOPIC, "--partition", "1", "--offset", offset, ...c.zkFlag]);
          const out = await deleteRecords("-1");
          assert.equal(out.code, 0, out.stderr);
          assert.match(out.stdout, /below offset 4: its log start is 4 on every in-sync replica/);
          assert.equal(await listOffset(followerPort, 1, -2), 4);
          // Bad input: a clear error, nothing deleted.
          const missing = await yak(["topics", "--delete-records", TOPIC, "--partition", "1", ...c.zkFlag]);
          assert.equal(missing.code, 1);
          assert.match(missing.stderr, /--delete-records needs --partition P and --offset N/);
          const past = await deleteRecords("9");
          assert.equal(past.code, 1);
          assert.match(past.stderr, /below offset 9: it must be from 0 to the high watermark 4/);
          assert.equal(await listOffset(followerPort, 1, -2), 4);
          // Below the log start already, or -1 again: nothing goes, and it says so (it said "deleted" before).
          for (const offset of ["2", "-1"]) {
            const again = await deleteRecords(offset);
            assert.equal(again.code, 0, again.stderr);
            assert.match(again.stdout, /nothing to delete: '\S+' partition 1 starts at offset 4 already/, offset);
          }
          console.log(`yak topics step: ${Date.now() - t0} ms`);
        });

        await t.step(
          "through a leader kill: the log start holds, kcat reads on, OffsetForLeaderEpoch answers",
          async () => {
            const t0 = Date.now();
            const oldEpoch = (await c.lease()).epoch;
            // A consumer reading across the kill: the 4 records left, then 2 produced to the new leader.
            const reading = run(
              "kcat",
              ["-C", "-b", c.bootstrapServers, "-t", TOPIC, "-p", "0", "-o", "beginning", "-c", "6", "-f", "%o %s\\n"],
              { timeoutMs: 30_000 },
            );
            c.brokers.get(leader)!.kill("SIGKILL");
            const lease = await c.waitFor((l) => l.leaderId === follower, 15_000);
            assert.equal(await listOffset(followerPort, 0, -2), 6, "the new leader keeps the log start");
            const p = await run("kcat", ["-P", "-b", `127.0.0.1:${followerPort}`, "-t", TOPIC, "-p", "0"], {
              stdin: `${value(10)}\n${value(11)}\n`,
              timeoutMs: 20_000,
            });
            assert.equal(p.code, 0, p.stderr);
            const read = await reading;
            assert.equal(read.code, 0, read.stderr);
            // Read on from where it was, no reset (a reset from the start would repeat 6..; to the end, skip to 12).
            assert.doesNotMatch(read.stderr, /out of range|reset|truncat/i, read.stderr);
            assert.deepEqual(
              new TextDecoder().decode(read.stdout).trim().split("\n"),
              [6, 7, 8, 9, 10, 11].map((o) => `${o} ${value(o)}`),
            );
            // The old leader's epoch ends where the new one began (10); the new one at the log end.
            assert.deepEqual(await epochEnd(followerPort, lease.epoch, oldEpoch), [0, oldEpoch, 10]);
            assert.deepEqual(await epochEnd(followerPort, lease.epoch, lease.epoch), [0, lease.epoch, 12]);
            assert.deepEqual(await epochEnd(followerPort, oldEpoch, oldEpoch), [FENCED_LEADER_EPOCH, -1, -1]);
            console.log(`failover step: ${Date.now() - t0} ms`);
          },
        );
      } finally {
        await producer.disconnect().catch(() => {});
        await admin.disconnect().catch(() => {});
        await c.stop();
      }
    }),
});
