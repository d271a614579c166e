/**
 * Fetch's byte limits (issue 21 §4): a response stays within the request's
 * max_bytes and each partition within its partition_max_bytes, counted in
 * wire bytes; only the first record of the first partition with data may
 * pass them. Through librdkafka (kcat) and requests built field by field.
 */
import assert from "node:assert/strict";
import { kcatMissing, run, skipWithout, TestCluster, withDeadline } from "./harness.ts";
import { ends, KafkaConn, produceBody, produceError, textBatch } from "./kafka_conn.ts";
import type { Reader, Writer } from "../src/kafka/wire.ts";

/** A Fetch v11 request: each partition of `topic` from its offset, with the limits given (and max_wait_ms). */
function fetchBody(topic: string, from: number[], maxBytes: number, partitionMaxBytes: number, maxWaitMs = 0) {
  return (w: Writer) => {
    w.int32(-1).int32(maxWaitMs).int32(1).int32(maxBytes).int8(0).int32(0).int32(-1);
    w.array([topic], (w, name) => {
      w.string(name);
      w.array(from.map((offset, p) => [p, offset] as const), (w, [p, offset]) => {
        w.int32(p).int32(-1).int64(offset).int64(-1).int32(partitionMaxBytes);
      });
    });
    w.array([], () => {}); // forgotten topics
    w.string(""); // rack
  };
}

/** One fetched batch's header fields. */
interface BatchHead {
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
  records: number;
}

/** A Fetch v11 answer: each partition's record bytes, how many records those hold, and its batches. */
function fetchAnswer(r: Reader): { partition: number; bytes: number; records: number; batches: BatchHead[] }[] {
  r.int32(); // throttle
  assert.equal(r.int16(), 0, "fetch error");
  r.int32(); // session id
  const parts = r.array((r) => {
    r.string();
    return r.array((r) => {
      const partition = r.int32();
      assert.equal(r.int16(), 0, `partition ${partition}'s error`);
      r.int64(); // high watermark
      r.int64(); // last stable offset
      r.int64(); // log start
      r.array((r) => [r.int64(), r.int64()]); // aborted transactions
      r.int32(); // preferred read replica
      const bytes = r.nullableBytes() ?? new Uint8Array(0);
      const batches: BatchHead[] = [];
      for (let at = 0; at < bytes.length;) {
        const view = new DataView(bytes.buffer, bytes.byteOffset + at);
        batches.push({
          producerId: view.getBigInt64(43),
          producerEpoch: view.getInt16(51),
          baseSequence: view.getInt32(53),
          records: view.getInt32(57),
        });
        at += 12 + view.getInt32(8);
      }
      const records = batches.reduce((n, b) => n + b.records, 0);
      return { partition, bytes: bytes.length, records, batches };
    });
  }).flat();
  ends(r);
  return parts;
}

Deno.test({
  name: "Fetch keeps to max_bytes and partition_max_bytes in wire bytes; only the first record may pass them",
  ignore: skipWithout(kcatMissing()),
  fn: (t) =>
    withDeadline(60_000, "fetch limits", async () => {
      const c = await TestCluster.start({ brokers: 1, partitions: 3 });
      const k = await KafkaConn.open([...c.kafkaPorts.values()][0]);
      try {
        const big = "x".repeat(900_000);
        for (const p of [0, 1, 2]) {
          for (let i = 0; i < 2; i++) {
            assert.equal(produceError(await k.call(0, 7, false, produceBody("big", p, [textBatch([big])]))), 0);
          }
        }
        const small = Array.from({ length: 100 }, (_, i) => `record ${i} `.padEnd(100, "."));
        for (const p of [0, 1, 2]) {
          assert.equal(produceError(await k.call(0, 7, false, produceBody("small", p, [textBatch(small)]))), 0);
        }

        await t.step("max_bytes: one 900 KB record in a 1,000,000-byte fetch, never two", async () => {
          const seen = new Map<number, number>([[0, 0], [1, 0], [2, 0]]);
          for (let i = 0; i < 6; i++) {
            const from = [0, 1, 2].map((p) => seen.get(p)!);
            const parts = fetchAnswer(await k.call(1, 11, false, fetchBody("big", from, 1_000_000, 1 << 20)));
            const total = parts.reduce((n, p) => n + p.bytes, 0);
            assert.ok(total <= 1_000_000, `fetch ${i} sent ${total} bytes of records`);
            assert.equal(parts.reduce((n, p) => n + p.records, 0), 1, `fetch ${i}: one record fits`);
            for (const p of parts) seen.set(p.partition, seen.get(p.partition)! + p.records);
          }
          // The partition allowed past the limit takes turns: none starves behind partition 0.
          assert.deepEqual([...seen.values()], [2, 2, 2]);
        });

        await t.step("partition_max_bytes: each partition within its limit; the first record goes anyway", async () => {
          const parts = fetchAnswer(await k.call(1, 11, false, fetchBody("small", [0, 0, 0], 1 << 20, 3000)));
          for (const p of parts) {
            assert.ok(p.bytes <= 3000, `partition ${p.partition} sent ${p.bytes} bytes`);
            assert.ok(p.records >= 20, `partition ${p.partition} sent ${p.records} records`);
          }
          const tiny = fetchAnswer(await k.call(1, 11, false, fetchBody("small", [0, 0, 0], 1 << 20, 10)));
          assert.deepEqual(tiny.map((p) => p.records).sort(), [0, 0, 1], "one record passes, in one partition");
        });

        await t.step("an idempotent producer's batches come back with its number, epoch 0 and sequences", async () => {
          const init = await k.call(22, 4, true, (w) => w.nullableString(null).int32(60_000).int64(-1n).int16(-1));
          init.int32();
          assert.equal(init.int16(), 0);
          const id = BigInt(init.int64());
          assert.equal(init.int16(), 0);
          ends(init);
          const by = (baseSequence: number) => ({ producerId: id, producerEpoch: 0, baseSequence });
          for (const [seq, values] of [[0, ["a", "b", "c"]], [3, ["d", "e"]]] as const) {
            const batch = textBatch([...values], by(seq));
            assert.equal(produceError(await k.call(0, 7, false, produceBody("owned", 0, [batch]))), 0);
          }
          assert.equal(produceError(await k.call(0, 7, false, produceBody("owned", 0, [textBatch(["f"])]))), 0);
          const [p] = fetchAnswer(await k.call(1, 11, false, fetchBody("owned", [0], 1 << 20, 1 << 20)));
          const [first, second, plain] = p.batches;
          assert.equal(p.batches.length, 3, "one batch per producer batch, then the plain record");
          assert.deepEqual([first.producerEpoch, first.baseSequence, first.records], [0, 0, 3]);
          assert.deepEqual([second.producerEpoch, second.baseSequence, second.records], [0, 3, 2]);
          assert.equal(second.producerId, first.producerId);
          assert.ok(first.producerId >= 0n, "the producer's stored number");
          assert.notEqual(first.producerId, id, "not the id it writes with, which stays the producer's secret");
          assert.deepEqual([plain.producerId, plain.producerEpoch, plain.baseSequence], [-1n, -1, -1]);
        });

        await t.step(
          "a reader catching up learns at once that it reached the end; one already there long-polls",
          async () => {
            // A connection of its own: what a connection read before decides how its fetch at the end is answered.
            const reader = await KafkaConn.open([...c.kafkaPorts.values()][0]);
            try {
              const at = [0, 0, 0];
              const fetchAt = async (maxWaitMs: number) => {
                const started = performance.now();
                const parts = fetchAnswer(
                  await reader.call(1, 11, false, fetchBody("small", at, 1 << 20, 3000, maxWaitMs)),
                );
                for (const p of parts) at[p.partition] += p.records;
                return { records: parts.reduce((n, p) => n + p.records, 0), ms: performance.now() - started };
              };
              // 3,000 bytes a partition: 100 records take several fetches, each with more left to read.
              for (let i = 0; i < 20 && at.some((n) => n < 100); i++) await fetchAt(3000);
              assert.deepEqual(at, [100, 100, 100]);
              const end = await fetchAt(3000);
              assert.equal(end.records, 0);
              // librdkafka reports the end of a partition only from an empty answer: kcat -e waited 500 ms for it.
              assert.ok(end.ms < 1500, `the fetch at the end was answered after ${end.ms.toFixed(0)} ms`);
              const again = await fetchAt(3000);
              assert.equal(again.records, 0);
              assert.ok(again.ms >= 2500, `a reader at the end long-polls: answered after ${again.ms.toFixed(0)} ms`);
            } finally {
              reader.close();
            }
          },
        );

        await t.step("librdkafka with fetch.max.bytes=1000000 reads every 900 KB record", async () => {
          const out = await run("kcat", [
            "-C",
            "-b",
            c.bootstrapServers,
            "-t",
            "big",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p %o %S\\n",
            "-X",
            "fetch.max.bytes=1000000",
            "-X",
            "receive.message.max.bytes=1000512",
          ], { timeoutMs: 20_000 });
          const lines = new TextDecoder().decode(out.stdout).trim().split("\n").sort();
          assert.deepEqual(lines, [
            "0 0 900000",
            "0 1 900000",
            "1 0 900000",
            "1 1 900000",
            "2 0 900000",
            "2 1 900000",
          ], out.stderr);
          assert.equal(out.code, 0, out.stderr);
        });
      } finally {
        k.close();
        await c.stop();
      }
    }),
});
