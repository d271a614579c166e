/**
 * ListOffsets as Kafka answers it (issue 21 §5): a time with no record at or
 * after it is offset -1 (not the end), MAX_TIMESTAMP (-3, KIP-734) is the
 * record with the largest timestamp, and the earliest local offset (-4,
 * KIP-405) is the log start: raw requests at v8, and kcat's offsets-for-times.
 */
import assert from "node:assert/strict";
import { encodeRecordBatch } from "../src/kafka/record_batch.ts";
import type { Reader } from "../src/kafka/wire.ts";
import { Kafka, logLevel } from "kafkajs";
import { kcatMissing, run, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn, produceBody, produceError } from "./kafka_conn.ts";

const missing = kcatMissing();

/** One batch whose records carry these producer timestamps (CreateTime). */
function timedBatch(times: number[]): Uint8Array {
  return encodeRecordBatch({
    baseOffset: 0,
    partitionLeaderEpoch: -1,
    records: times.map((timestamp, i) => ({
      offsetDelta: i,
      timestamp,
      key: null,
      value: new TextEncoder().encode(`at ${timestamp}`),
      headers: [],
    })),
  });
}

/** ListOffsets v8 for one partition of `topic` at `timestamp`: [error, timestamp, offset] (the leader epoch to `epochs`). */
async function listOffset(
  k: KafkaConn,
  topic: string,
  timestamp: number,
  partition = 0,
  readCommitted = false,
  epochs: number[] = [],
): Promise<[number, number, number]> {
  const r: Reader = await k.call(2, 8, true, (w) => {
    w.int32(-1).int8(readCommitted ? 1 : 0);
    w.array([topic], (w, t) => {
      w.string(t);
      w.array([timestamp], (w, ts) => w.int32(partition).int32(-1).int64(ts));
    });
  });
  r.int32(); // throttle
  const [[p]] = r.array((r) => {
    r.string();
    return r.array((r) => {
      assert.equal(r.int32(), partition);
      const out: [number, number, number] = [r.int16(), Number(r.int64()), Number(r.int64())];
      epochs.push(r.int32());
      return out;
    });
  });
  ends(r);
  return p;
}

Deno.test({
  name: "ListOffsets v8: no record that new is -1; MAX_TIMESTAMP is the newest record by time; -4 is the log start",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(60_000, "list offsets", async () => {
      const c = await TestCluster.start({ brokers: 1 });
      const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
      try {
        // Producer timestamps out of order: the largest (3000) is at offset 1.
        const base = 1_700_000_000_000;
        const stored = await k.call(
          0,
          7,
          false,
          produceBody("times", 0, [timedBatch([base + 1000, base + 3000, base + 2000])]),
        );
        assert.equal(produceError(stored), 0);
        assert.deepEqual(await listOffset(k, "times", base + 2500), [0, base + 3000, 1], "first at or after the time");
        const epochs: number[] = [];
        assert.deepEqual(
          await listOffset(k, "times", base + 9000, 0, false, epochs),
          [0, -1, -1],
          "none that new: -1, not the end",
        );
        await listOffset(k, "times", base + 2500, 0, false, epochs);
        assert.deepEqual(epochs, [-1, 1], "no offset, no epoch (Kafka's -1); a found one has its leader's");
        assert.deepEqual(await listOffset(k, "times", -3), [0, base + 3000, 1], "MAX_TIMESTAMP");
        assert.deepEqual(await listOffset(k, "times", -4), [0, -1, 0], "earliest local: the log start");
        assert.deepEqual(await listOffset(k, "times", -1), [0, -1, 3], "latest");
        assert.deepEqual(await listOffset(k, "times", -3, 1), [0, -1, -1], "an empty partition has no newest");

        // kcat's offsets-for-times (-Q): a time past every record is -1, as librdkafka expects from Kafka.
        const q = await run("kcat", ["-Q", "-b", c.bootstrapServers, "-t", `times:0:${base + 9000}`], {
          timeoutMs: 20_000,
        });
        assert.equal(q.code, 0, q.stderr);
        assert.match(new TextDecoder().decode(q.stdout), /times \[0\] offset -1\b/);
        const hit = await run("kcat", ["-Q", "-b", c.bootstrapServers, "-t", `times:0:${base + 1500}`], {
          timeoutMs: 20_000,
        });
        assert.match(new TextDecoder().decode(hit.stdout), /times \[0\] offset 1\b/);
      } finally {
        k.close();
        await c.stop();
      }
    }),
});

Deno.test("ListOffsets read_committed by time: a record of a transaction still open is not found (-1), as Kafka filters it at the last stable offset", () =>
  withDeadline(60_000, "list offsets read_committed", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
    const kafka = new Kafka({ brokers: c.bootstrapServers.split(","), logLevel: logLevel.NOTHING });
    const plain = kafka.producer();
    const txnal = kafka.producer({ transactionalId: "lo-txn", maxInFlightRequests: 1, idempotent: true });
    try {
      const base = 1_700_000_000_000;
      await plain.connect();
      await plain.send({
        topic: "lotx",
        messages: [0, 1, 2].map((i) => ({ partition: 0, value: `c${i}`, timestamp: String(base + i) })),
      });
      // Offsets 3 and 4, newer, in a transaction left open.
      await txnal.connect();
      const txn = await txnal.transaction();
      await txn.send({
        topic: "lotx",
        messages: [10, 11].map((i) => ({ partition: 0, value: `o${i}`, timestamp: String(base + i) })),
      });
      assert.deepEqual(await listOffset(k, "lotx", base + 10, 0, false), [0, base + 10, 3], "read_uncommitted sees it");
      assert.deepEqual(await listOffset(k, "lotx", base + 10, 0, true), [0, -1, -1], "read_committed: not yet");
      assert.deepEqual(await listOffset(k, "lotx", base + 1, 0, true), [0, base + 1, 1], "below the LSO: found");
      assert.deepEqual(await listOffset(k, "lotx", -3, 0, true), [0, -1, -1], "the newest is in the open transaction");
      assert.deepEqual(await listOffset(k, "lotx", -1, 0, true), [0, -1, 3], "latest: the last stable offset");
      await txn.commit();
      assert.deepEqual(await listOffset(k, "lotx", base + 10, 0, true), [0, base + 10, 3], "committed: found");
    } finally {
      await txnal.disconnect().catch(() => {});
      await plain.disconnect().catch(() => {});
      k.close();
      await c.stop();
    }
  }));

Deno.test({
  name: "records whose timestamps lie 2^52 ms apart, produced one after the other, are read back by kcat",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(60_000, "far timestamps", async () => {
      const c = await TestCluster.start({ brokers: 1 });
      const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
      try {
        // Kafka takes any producer timestamp. Stored, these two are consecutive offsets of one epoch; a fetch that
        // put them in one batch failed with an internal error every time, so no consumer got past them.
        const far = -(2 ** 52) + 1_000_000_000_000;
        const now = 1_700_000_000_000;
        for (const ts of [far, now]) {
          assert.equal(produceError(await k.call(0, 7, false, produceBody("far", 0, [timedBatch([ts])]))), 0);
        }
        const read = await run(
          "kcat",
          ["-C", "-b", c.bootstrapServers, "-t", "far", "-p", "0", "-e", "-f", "%T %s\\n"],
          {
            timeoutMs: 20_000,
          },
        );
        assert.equal(read.code, 0, read.stderr);
        assert.equal(new TextDecoder().decode(read.stdout), `${far} at ${far}\n${now} at ${now}\n`);
      } finally {
        k.close();
        await c.stop();
      }
    }),
});

Deno.test("ListOffsets by time past the first 64 MiB: the right offset, segments known to be older skipped, TIMEOUT to retry", () =>
  withDeadline(120_000, "list offsets by time, large", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
    try {
      const made = await yak([
        "topics",
        "--create",
        "big",
        "--partitions",
        "1",
        "--config",
        "segment.bytes=8388608",
        ...c.zkFlag,
      ]);
      assert.equal(made.code, 0, made.stderr);
      // 100 records of ~1 MB, a second apart by their producer timestamps: 12 segments of 8 MiB.
      const base = 1_000_000_000_000;
      const value = new TextEncoder().encode("x".repeat(1_000_000));
      for (let i = 0; i < 100; i++) {
        const batch = encodeRecordBatch({
          baseOffset: 0,
          partitionLeaderEpoch: -1,
          records: [{ offsetDelta: 0, timestamp: base + i * 1000, key: null, value, headers: [] }],
        });
        assert.equal(produceError(await k.call(0, 7, false, produceBody("big", 0, [batch]))), 0);
      }
      // The first lookup of record 99 reads 64 MiB of segments it did not know, then says to retry (before: the
      // high watermark, 100, with no timestamp: a consumer seeking there skipped record 99); a retry goes on.
      let answer = await listOffset(k, "big", base + 99_000);
      const tries = [answer];
      while (answer[0] === 7 && tries.length < 5) tries.push(answer = await listOffset(k, "big", base + 99_000));
      console.log(`record 99 by time: ${JSON.stringify(tries)}`);
      assert.equal(tries[0][0], 7, "REQUEST_TIMED_OUT first: 64 MiB read");
      assert.deepEqual(answer, [0, base + 99_000, 99]);
      // Known segments are skipped now: one lookup each, anywhere.
      assert.deepEqual(await listOffset(k, "big", base + 50_000), [0, base + 50_000, 50]);
      assert.deepEqual(await listOffset(k, "big", base + 70_500), [0, base + 71_000, 71]);
      assert.deepEqual(await listOffset(k, "big", base + 100_000), [0, -1, -1]);
    } finally {
      k.close();
      await c.stop();
    }
  }));
