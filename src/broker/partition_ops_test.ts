/**
 * PartitionOps.appendBatch on a real partition log with a fake broker core:
 * an idempotent producer's retries after a failed write (a full disk) never
 * store a record twice or out of order, wherever a pipelined batch arrives
 * while the failure unwinds, and a retry is never acknowledged before its
 * original is written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { YakError } from "../errors.ts";
import { Segment } from "../log/segment.ts";
import { encodeBatch, parseLines, producerOf } from "../log/record.ts";
import { OpLog } from "../op_log.ts";
import type { BrokerContext } from "./context.ts";
import { LeaderState } from "./leader_state.ts";
import { Notifier } from "./notifier.ts";
import { BrokerMetrics } from "./metrics.ts";
import { PartitionOps, type ProducedBatch } from "./partition_ops.ts";
import { ProducerState } from "./producer_state.ts";
import { TopicStore } from "./topic_store.ts";

const TP = { topic: "t", partition: 0 };

/** A batch of producer `p<producer>` (the fake broker takes id N as issued, named `pN`). */
function batch(producer: number, baseSeq: number, n: number): ProducedBatch {
  const records = Array.from({ length: n }, (_, i) => ({ key: null, value: `v${baseSeq + i}` }));
  return { records, producerId: BigInt(producer), producerEpoch: 0, baseSeq };
}

/**
 * Runs `fn` with partition ops over a one-broker leader whose first segment
 * write fails like a full disk when `failWrite` is called (`writing` resolves
 * once that write has begun).
 */
async function withOps(
  fn: (ctx: {
    ops: PartitionOps;
    store: TopicStore;
    writing: Promise<void>;
    failWrite: () => void;
    metrics: BrokerMetrics;
  }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "yak-partition-ops-" });
  const store = await TopicStore.open(join(dir, "topics"), { segmentBytes: 1 << 20, indexIntervalBytes: 4096 });
  await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0 });
  const leader = new LeaderState({
    selfId: 1,
    epoch: 1,
    store,
    isr: [1],
    replicaLagMs: 1000,
    joinWaitMs: 300,
    onHwChange: () => {},
  });
  const producers = new ProducerState();
  producers.markReady("t/0");
  const log = new OpLog(join(dir, "broker.log"), "broker-1", false);
  const metrics = new BrokerMetrics();
  const b = {
    opts: { producerStateScanBytes: 1 << 20, minInsyncReplicas: 1 },
    store,
    log,
    producers,
    producerIds: { verify: (id: bigint) => `p${id}` },
    failingWrites: new Set<string>(),
    metrics,
    requireLeader: () => leader,
    leaseValid: () => true,
  } as unknown as BrokerContext;
  // The first data write fails (at `failWrite`); later ones reach the disk.
  const original = Segment.prototype.append;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let began!: () => void;
  const writing = new Promise<void>((r) => (began = r));
  let failed = false;
  Segment.prototype.append = function (this: Segment, ...args: Parameters<Segment["append"]>) {
    if (failed) return original.apply(this, args);
    failed = true;
    began();
    return gate.then(() => {
      throw new Error("No space left on device (os error 28)");
    });
  };
  try {
    await fn({
      ops: new PartitionOps(b, { changing: () => null } as never),
      store,
      writing,
      failWrite: release,
      metrics,
    });
  } finally {
    Segment.prototype.append = original;
    leader.stop(new YakError("NOT_LEADER", "test over"));
    log.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("batches taken while a failed write unwinds are never stored twice or ahead of the failed ones", async () => {
  // The failed write is p1's; p2's batch is queued behind it. The next batch
  // of each arrives 0, 1, 2, ... microtasks after the write's error: before
  // the log rewinds, between the rewind and the errors reaching appendBatch,
  // and after. Every arrival point must end the same.
  for (let ticks = 0; ticks <= 12; ticks++) {
    await withOps(async ({ ops, store, writing, failWrite }) => {
      const failed = ops.appendBatch(TP, batch(1, 0, 2), 1, 1000);
      const queued = ops.appendBatch(TP, batch(2, 0, 2), 1, 1000);
      await writing;
      failWrite();
      for (let i = 0; i < ticks; i++) await Promise.resolve();
      const next = [ops.appendBatch(TP, batch(1, 2, 2), 1, 1000), ops.appendBatch(TP, batch(2, 2, 2), 1, 1000)];
      const outcomes = await Promise.allSettled([failed, queued, ...next]);
      assert.deepEqual(outcomes.slice(0, 2).map((o) => o.status), ["rejected", "rejected"], `${ticks} ticks`);
      // Each producer resends both batches, in order and with the same
      // sequences (an answer to the second is lost with the connection it
      // closes to resend).
      for (const producer of ["p1", "p2"]) {
        await ops.appendBatch(TP, batch(Number(producer.slice(1)), 0, 2), 1, 1000);
        await ops.appendBatch(TP, batch(Number(producer.slice(1)), 2, 2), 1, 1000);
      }
      const log = store.partition("t", 0);
      const stored = (await log.read(0, 1 << 20, log.logEndOffset)).text.trimEnd().split("\n").map(producerOf);
      for (const producer of ["p1", "p2"]) {
        const seqs = stored.filter((ps) => ps?.producer === producer).map((ps) => ps!.seq);
        assert.deepEqual(seqs, [0, 1, 2, 3], `${ticks} ticks, ${producer}`);
      }
    });
  }
});

Deno.test("a read that retention overtakes skips the partition (the next fetch says reset), never fails the fetch", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-partition-ops-" });
  const store = await TopicStore.open(join(dir, "topics"), { segmentBytes: 1024, indexIntervalBytes: 4096 });
  try {
    await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0 });
    const log = store.partition("t", 0);
    for (let i = 0; i < 20; i++) {
      await log.append(1, 10, (base) => encodeBatch(batch(1, i * 10, 10).records, base, 1, 0, null, 0)).done;
    }
    const b = {
      store,
      metrics: new BrokerMetrics(),
      // Retention runs between the check and the read, as it did in the soak (a consumer far behind).
      readLog: async (l: typeof log, from: number, maxBytes: number, end: number) => {
        await l.deleteSegmentsBefore(l.logEndOffset - 10, "test");
        return l.read(from, maxBytes, end);
      },
    } as unknown as BrokerContext;
    const ops = new PartitionOps(b, { changing: () => null } as never);
    const reads = await ops.readPartitions([{ key: "t/0", log, from: 0 }], {
      maxBytes: 1 << 20,
      maxWaitMs: 0,
      upTo: "logEnd",
    });
    assert.deepEqual(reads, []);
    assert.ok(log.logStartOffset > 0, "retention did delete the offset being read");
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a read whose only news is soft (a follower's stale high watermark) waits softWakeMs for records, not longer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-partition-ops-" });
  const store = await TopicStore.open(join(dir, "topics"), { segmentBytes: 1 << 20, indexIntervalBytes: 4096 });
  try {
    await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0 });
    const log = store.partition("t", 0);
    await log.append(1, 10, (base) => encodeBatch(batch(1, 0, 10).records, base, 1, 0, null, 0)).done;
    const notifier = new Notifier();
    const b = {
      store,
      metrics: new BrokerMetrics(),
      notifier,
      readLog: (l: typeof log, from: number, maxBytes: number, end: number) => l.read(from, maxBytes, end),
    } as unknown as BrokerContext;
    const ops = new PartitionOps(b, { changing: () => null } as never);
    const read = () =>
      ops.readPartitions([{ key: "t/0", log, from: log.logEndOffset }], {
        maxBytes: 1 << 20,
        maxWaitMs: 20_000,
        upTo: "logEnd",
        softWakeIf: () => true,
        softWakeMs: 2_000,
      });
    // Nothing comes: answered empty after the soft wait (it used to be at once), long before maxWaitMs.
    let started = performance.now();
    assert.deepEqual(await read(), []);
    const waited = performance.now() - started;
    assert.ok(waited >= 1_950 && waited < 15_000, `answered after ${waited.toFixed(0)} ms`);
    // Records come within the soft wait: answered with them, at once.
    started = performance.now();
    const reading = read();
    setTimeout(async () => {
      await log.append(1, 10, (base) => encodeBatch(batch(1, 10, 10).records, base, 1, 0, null, 0)).done;
      notifier.notify();
    }, 20);
    const reads = await reading;
    assert.equal(reads.length, 1);
    assert.equal(reads[0].read.count, 10);
    assert.ok(performance.now() - started < 1_500, "the records waited for the soft wait to end");
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a retry of a batch whose write is still queued is not acknowledged before that write; when it fails, neither is", async () => {
  await withOps(async ({ ops, store, writing, failWrite }) => {
    const original = ops.appendBatch(TP, batch(1, 0, 2), 1, 300);
    await writing;
    // The producer's retry (same sequences) arrives while the first write is on its way to the disk.
    let retryAnswered = false;
    const retry = ops.appendBatch(TP, batch(1, 0, 2), 1, 300).finally(() => (retryAnswered = true));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(retryAnswered, false, "the retry was answered before the records were written");
    failWrite();
    const outcomes = await Promise.allSettled([original, retry]);
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected"], "a record not stored was acknowledged");
    // The producer resends: stored once.
    await ops.appendBatch(TP, batch(1, 0, 2), 1, 1000);
    const log = store.partition("t", 0);
    const stored = (await log.read(0, 1 << 20, log.logEndOffset)).text.trimEnd().split("\n").map(producerOf);
    assert.deepEqual(stored.map((ps) => ps?.seq), [0, 1]);
  });
});

Deno.test("only an exact retry is a duplicate: a batch that overlaps a stored one is refused, nothing dropped", async () => {
  await withOps(async ({ ops, store, failWrite }) => {
    failWrite(); // the gate of withOps: its first write fails at once
    await ops.appendBatch(TP, batch(1, 0, 1), 1, 1000).catch(() => {});
    const first = await ops.appendBatch(TP, batch(1, 0, 3), 1, 1000);
    assert.equal(first.duplicate, false);
    // Different records whose sequences start inside the stored batch: Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER.
    const overlap = { ...batch(1, 1, 3), records: [1, 2, 3].map((i) => ({ key: null, value: `other-${i}` })) };
    await assert.rejects(ops.appendBatch(TP, overlap, 1, 1000), (e: YakError) => e.code === "OUT_OF_ORDER_SEQUENCE");
    // A gap, and a batch that ends inside the stored one, likewise.
    await assert.rejects(
      ops.appendBatch(TP, batch(1, 5, 1), 1, 1000),
      (e: YakError) => e.code === "OUT_OF_ORDER_SEQUENCE",
    );
    await assert.rejects(
      ops.appendBatch(TP, batch(1, 0, 2), 1, 1000),
      (e: YakError) => e.code === "OUT_OF_ORDER_SEQUENCE",
    );
    // The exact retry is answered with the original offset; the next batch appends.
    const retry = await ops.appendBatch(TP, batch(1, 0, 3), 1, 1000);
    assert.deepEqual([retry.duplicate, retry.baseOffset], [true, first.baseOffset]);
    const next = await ops.appendBatch(TP, batch(1, 3, 3), 1, 1000);
    assert.deepEqual([next.duplicate, next.baseOffset], [false, first.baseOffset + 3]);
    const log = store.partition("t", 0);
    const values = parseLines((await log.read(0, 1 << 20, log.logEndOffset)).text).map((r) => r.value);
    assert.deepEqual(values, ["v0", "v1", "v2", "v3", "v4", "v5"]);
  });
});

Deno.test("a due marker holds its producer's batches back; one whose write fails frees the batches behind it and holds them again", async () => {
  await withOps(async ({ ops, store, writing, failWrite }) => {
    const refused = (e: YakError) => e.code === "CONCURRENT_TRANSACTIONS";
    ops.expectMarker("t/0", "p1");
    await assert.rejects(ops.appendBatch(TP, batch(1, 0, 1), 1, 1000), refused);
    // The marker's offset is taken (its write, the first, will fail): the producer's batch goes in behind it.
    const again = () => ops.expectMarker("t/0", "p1");
    const placed = await ops.placeMarker(TP, "p1", 0, true, 1000, again);
    ops.markerIn("t/0", "p1");
    const behind = ops.appendBatch(TP, batch(1, 0, 1), 1, 1000);
    await writing;
    failWrite();
    await assert.rejects(placed.replicated);
    await assert.rejects(behind);
    await assert.rejects(ops.appendBatch(TP, batch(1, 0, 1), 1, 1000), refused);
    // Placed anew, the marker is first again; the batch lands after it.
    const anew = await ops.placeMarker(TP, "p1", 0, true, 1000, again);
    ops.markerIn("t/0", "p1");
    await ops.appendBatch(TP, batch(1, 0, 1), 1, 1000);
    await anew.replicated;
    const log = store.partition("t", 0);
    const lines = parseLines((await log.read(0, 1 << 20, log.logEndOffset)).text);
    assert.deepEqual(lines.map((r) => [r.offset, r.marker ?? r.value]), [[0, "commit"], [1, "v0"]]);
  });
});

Deno.test("an acks=all batch waits for room above the high watermark, until the followers fetch or the wait's end, and never fails for it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-partition-ops-" });
  // Half the hold is 2,000 bytes; each append below is ~730.
  const store = await TopicStore.open(join(dir, "topics"), {
    segmentBytes: 1 << 20,
    indexIntervalBytes: 4096,
    tailHoldBytes: 4000,
  });
  const leader = new LeaderState({
    selfId: 1,
    epoch: 1,
    store,
    isr: [1, 2],
    replicaLagMs: 60_000,
    joinWaitMs: 300,
    onHwChange: () => {},
  });
  try {
    await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0 });
    const log = store.partition("t", 0);
    const b = { store, requireLeader: () => leader } as unknown as BrokerContext;
    const ops = new PartitionOps(b, { changing: () => null } as never);
    const append = async () => {
      await log.append(1, 10, (base) => encodeBatch(batch(1, base, 10).records, base, 1, 0, null, 0)).done;
      leader.updateHw("t/0");
    };
    await append();
    await append();
    assert.equal(ops.roomToAppend(TP, 10_000), null, "two appends are within half the hold: room for the next");
    await append();
    await append();
    const waiting = ops.roomToAppend(TP, 10_000);
    assert.ok(waiting !== null, "four appends above the high watermark: the next waits");
    let done = false;
    waiting.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(done, false, "no fetch yet");
    // The follower fetched up to the end of the second append: two appends above the mark, room again.
    leader.followerFetched(2, new Map([["t/0", 20]]));
    await waiting;
    assert.equal(log.highWatermark, 20);
    // With no fetch at all, the wait ends at its bound (half the time left), resolved.
    await append();
    await append();
    const started = performance.now();
    await ops.roomToAppend(TP, 100);
    assert.ok(performance.now() - started >= 40, "waited out its bound");
    assert.equal(log.highWatermark, 20);
    // The high watermark has not moved since: the next batches do not wait again (a stalled follower).
    assert.equal(ops.roomToAppend(TP, 10_000), null);
    assert.equal(ops.roomToAppend(TP, 10_000), null);
    // It moved, and is still far behind: they wait again.
    leader.followerFetched(2, new Map([["t/0", 30]]));
    assert.equal(log.highWatermark, 30);
    const again = ops.roomToAppend(TP, 10_000);
    assert.ok(again !== null, "a moving high watermark is waited for again");
    leader.followerFetched(2, new Map([["t/0", 60]]));
    await again;
  } finally {
    leader.stop(new YakError("NOT_LEADER", "test over"));
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a produce's latency counts from when its request began to wait for room, not from its append", async () => {
  await withOps(async ({ ops, failWrite, metrics }) => {
    failWrite(); // the gate of withOps: its first write fails at once
    await ops.appendBatch(TP, batch(1, 0, 1), 1, 1000).catch(() => {});
    const before = metrics.produceSeconds.sum;
    await ops.appendBatches(TP, [batch(1, 0, 1)], 1, 1000, performance.now() - 400)[0];
    assert.ok(metrics.produceSeconds.sum - before >= 0.4, "the wait before the append is counted");
    const after = metrics.produceSeconds.sum;
    await ops.appendBatch(TP, batch(1, 1, 1), 1, 1000);
    assert.ok(metrics.produceSeconds.sum - after < 0.4, "without a start given, from the call");
  });
});
