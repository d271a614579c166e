/**
 * Fetch (API 1): the one long-poll read (`readPartitions`, the same a native
 * consumer and a follower use) up to the high watermark, with the stored
 * lines turned into uncompressed RecordBatch v2, one batch per run of records
 * of one leader epoch and producer batch. read_committed reads up to the last
 * stable offset (below every undecided transaction) and gets the partition's
 * aborted transactions in that range; markers go as control batches, as
 * Kafka's clients expect them; read_uncommitted reads up to the high watermark.
 *
 * @module
 */
import type { PartitionOffsets, PartitionRead, ReadSpec } from "../broker/partition_ops.ts";
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import { type RecordBytes, recordBytesOf } from "../log/record.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import { encodeRecordBatch, RECORD_BATCH_OVERHEAD_BYTES } from "./record_batch.ts";
import type { Writer } from "./wire.ts";

interface PartitionOut {
  index: number;
  /** The request's partition_max_bytes for it. */
  maxBytes: number;
  error: number;
  offsets: PartitionOffsets | null;
  /** read_committed: the aborted transactions in what was read (null for read_uncommitted), and their markers' offsets. */
  aborted: { producerId: bigint; firstOffset: number; lastOffset: number }[] | null;
  batches: Uint8Array[];
  /** What to read; null when the partition failed its check. */
  spec: ReadSpec | null;
}

interface TopicOut {
  name: string;
  parts: PartitionOut[];
}

/**
 * The most bytes one record can take in a batch: its fields with each
 * varint at its widest (a header key counted at 3 bytes a UTF-16 unit).
 */
function recordBound(r: RecordBytes): number {
  let n = 5 + 1 + 10 + 5 + 5 + (r.key?.length ?? 0) + 5 + (r.value?.length ?? 0) + 5;
  for (const h of r.headers) n += 5 + h.key.length * 3 + 5 + (h.value?.length ?? 0);
  return n;
}

/** Whether `r` cannot join the batch of the records before it. */
function startsBatch(records: readonly RecordBytes[], start: number, i: number): boolean {
  const r = records[i];
  const prev = records[i - 1];
  return r.epoch !== records[start].epoch || r.offset !== prev.offset + 1 || r.producer !== prev.producer ||
    r.batchStart || r.control >= 0 || prev.control >= 0 || r.txn !== prev.txn || r.pepoch !== prev.pepoch ||
    (r.producer >= 0 && r.seq !== prev.seq + 1) ||
    // LogAppendTime: one batch per append time, as Kafka stores them (readers take its max timestamp for each record).
    r.logAppendTime !== prev.logAppendTime || (r.logAppendTime && r.ts !== prev.ts);
}

/** A marker's control record: key (version 0, type: 0 abort, 1 commit) and value (version 0, coordinator epoch). */
function controlRecord(r: RecordBytes): { key: Uint8Array; value: Uint8Array } {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setInt16(2, r.control);
  const value = new Uint8Array(6);
  new DataView(value.buffer).setInt32(2, r.epoch);
  return { key, value };
}

function encodeRun(records: readonly RecordBytes[], start: number, end: number): Uint8Array {
  const first = records[start];
  const base = first.offset;
  const control = first.control >= 0;
  return encodeRecordBatch({
    baseOffset: base,
    partitionLeaderEpoch: first.epoch,
    logAppendTime: first.logAppendTime,
    // A producer's batch says whose it is: its stored number (not the id it produces with, which stays
    // secret so no reader can write as it), its epoch (0 for an idempotent producer) and sequence.
    ...(first.producer >= 0
      ? { producerId: BigInt(first.producer), producerEpoch: Math.max(0, first.pepoch), baseSequence: first.seq }
      : {}),
    isTransactional: first.txn,
    isControl: control,
    records: records.slice(start, end).map((r) => ({
      offsetDelta: r.offset - base,
      timestamp: r.ts,
      ...(control ? controlRecord(r) : { key: r.key, value: r.value }),
      headers: r.headers,
    })),
  });
}

/**
 * Stored records as record batches of at most `limit` bytes in all:
 * consecutive records of one leader epoch share a batch (a gap in offsets,
 * a batch of an idempotent producer, or a LogAppendTime batch starts a new one). Records that would pass the limit are left for the next
 * fetch; with `atLeastOne` the first record goes whatever its size, as Kafka
 * lets the first batch of a response pass `fetch.max.bytes` so a consumer
 * can always progress. Keys and values go from the stored bytes into the
 * batch without being decoded.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordsToBatches } from "./fetch.ts";
 * const value = new Uint8Array(1000);
 * const records = [0, 1, 2].map((offset) => ({
 *   offset, epoch: 1, ts: 0, logAppendTime: false, key: null, value, headers: [], producer: -1, seq: -1,
 *   batchStart: false, pepoch: -1, txn: false, control: -1,
 * }));
 * assert.equal(recordsToBatches(records, 100_000, false).batches.length, 1); // one epoch: one batch
 * const { batches, bytes } = recordsToBatches(records, 2200, false);
 * assert.ok(bytes <= 2200 && batches.length === 1); // two records fit, the third waits
 * assert.equal(recordsToBatches(records, 10, true).batches.length, 1); // the first goes anyway
 * assert.equal(recordsToBatches(records, 10, false).batches.length, 0);
 * ```
 */
export function recordsToBatches(
  records: readonly RecordBytes[],
  limit: number,
  atLeastOne: boolean,
): { batches: Uint8Array[]; bytes: number; taken: number } {
  const batches: Uint8Array[] = [];
  let bytes = 0;
  let start = 0;
  /** The open batch's bound, its header included. */
  let open = 0;
  let i = 0;
  for (; i < records.length; i++) {
    const r = records[i];
    if (i > start && startsBatch(records, start, i)) {
      const batch = encodeRun(records, start, i);
      batches.push(batch);
      bytes += batch.length;
      start = i;
      open = 0;
    }
    const cost = recordBound(r) + (i === start ? RECORD_BATCH_OVERHEAD_BYTES : 0);
    if (bytes + open + cost > limit && !(atLeastOne && i === 0)) break;
    open += cost;
  }
  if (i > start) {
    const batch = encodeRun(records, start, i);
    batches.push(batch);
    bytes += batch.length;
  }
  return { batches, bytes, taken: i };
}

/**
 * A batch of no record covering the offsets from `from` to `next` (exclusive):
 * a compacted partition's records skip offsets, and a read may end in a gap,
 * or be one. Clients set their next fetch past a batch's last offset
 * (librdkafka and Kafka's own consumer; KAFKA-5443), so they move past it
 * instead of asking for those offsets again.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { gapBatch } from "./fetch.ts";
 * const batch = gapBatch(10, 15, 3);
 * assert.equal(new DataView(batch.buffer).getInt32(23), 4); // lastOffsetDelta: offsets 10 to 14
 * assert.equal(new DataView(batch.buffer).getInt32(57), 0); // no record
 * ```
 */
export function gapBatch(from: number, next: number, epoch: number): Uint8Array {
  return encodeRecordBatch({
    baseOffset: from,
    partitionLeaderEpoch: epoch,
    records: [],
    lastOffsetDelta: next - 1 - from,
  });
}

/** What a Fetch asks for, its limits already clamped to the broker's. */
interface FetchRequest {
  /** read_committed (isolation level 1). */
  committed: boolean;
  maxWaitMs: number;
  maxBytes: number;
  topics: { name: string; parts: { index: number; offset: number; maxBytes: number }[] }[];
}

/**
 * The partitions in the order this fetch serves them: the request's,
 * started one further along at each fetch of the connection, so the
 * partition that may pass the byte limits (the first with data) takes turns.
 */
function turnOrder(outs: TopicOut[], turn: number): PartitionOut[] {
  const all = outs.flatMap((t) => t.parts);
  const at = all.length === 0 ? 0 : turn % all.length;
  return [...all.slice(at), ...all.slice(0, at)];
}

/** Handles Fetch v0-12 (record batches are v2, so clients use v4 and later; v12 is flexible). */
export async function fetch(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const s = ctx.services;
  const { committed, maxWaitMs, maxBytes, topics } = readFetchRequest(req, s);
  // Checked one partition at a time, so one bad partition costs its own error only.
  const outs: TopicOut[] = topics.map((t) => ({
    name: t.name,
    parts: t.parts.map((p) => checkPartition(s, t.name, p.index, p.offset, p.maxBytes)),
  }));
  const order = turnOrder(outs, req.session.fetches++);
  const specs = order.flatMap((p) => p.spec ? [p.spec] : []);
  const anyError = order.some((p) => p.error !== 0);
  const damaged = new Map<ReadSpec, YakError>();
  const reads = specs.length === 0 ? [] : await s.partitions.readPartitions(specs, {
    maxBytes,
    maxWaitMs: anyError ? 0 : maxWaitMs,
    upTo: committed ? "lso" : "hw",
    damaged,
  });
  fillPartitions(s, outs, reads, damaged, committed);
  fillBatches(order, reads, maxBytes);
  writeFetchResponse(w, req.version, outs);
}

function readFetchRequest(req: ApiRequest, s: BrokerServices): FetchRequest {
  const { version: v, body: r } = req;
  r.int32(); // replica id: always a consumer here (followers replicate over the native protocol)
  const maxWaitMs = Math.max(0, Math.min(r.int32(), s.opts.maxFetchWaitMs));
  r.int32(); // min bytes: any data answers at once
  const maxBytes = v >= 3 ? Math.max(1, Math.min(r.int32(), s.opts.maxFetchBytes)) : s.opts.maxFetchBytes;
  const committed = v >= 4 && r.int8() === 1; // isolation level: 1 is read_committed
  if (v >= 7) {
    r.int32(); // session id: yak keeps no fetch sessions, so every fetch is a full one (answered with id 0)
    r.int32();
  }
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => {
      const index = r.int32();
      if (v >= 9) r.int32(); // current leader epoch
      const offset = r.int64();
      if (v >= 12) r.int32(); // last fetched epoch: yak's leader never truncates what it served, so no divergence
      if (v >= 5) r.int64(); // the follower's log start (consumers send -1)
      const maxBytes = Math.max(1, r.int32());
      return { index, offset, maxBytes };
    }, 16),
  }), 4);
  // Forgotten topics (v7+) and the rack id (v11+) need no answer without fetch sessions.
  return { committed, maxWaitMs, maxBytes, topics };
}

/** One partition of a Fetch, checked before any read: what to read, or its error. */
function checkPartition(
  s: BrokerServices,
  topic: string,
  index: number,
  offset: number,
  maxBytes: number,
): PartitionOut {
  const out = { index, maxBytes, error: 0, offsets: null, aborted: null, batches: [], spec: null };
  try {
    const below = new Map<number, PartitionOffsets>();
    const specs = s.partitions.consumerSpecs(topic, [[index, offset]], below);
    if (below.size > 0) return { ...out, error: KAFKA.OFFSET_OUT_OF_RANGE };
    return { ...out, spec: specs[0] ?? null };
  } catch (err) {
    return { ...out, error: kafkaErrorOf(err instanceof YakError ? err.code : "UNAVAILABLE") };
  }
}

/** Each partition's offsets, or its error. */
function fillPartitions(
  s: BrokerServices,
  outs: TopicOut[],
  reads: PartitionRead[],
  damaged: Map<ReadSpec, YakError>,
  committed: boolean,
): void {
  const read = new Set(reads.map((rd) => rd.spec));
  for (const t of outs) {
    for (const p of t.parts) {
      // A damaged record or a fenced log: KAFKA_STORAGE_ERROR (retriable) for its partition, never its bytes.
      if (p.spec && damaged.has(p.spec)) p.error = kafkaErrorOf(damaged.get(p.spec)!.code);
      if (p.error !== 0) continue;
      try {
        const tp = { topic: t.name, partition: p.index };
        p.offsets = s.partitions.offsets(tp);
        if (committed && p.spec) p.aborted = s.partitions.abortedTxns(tp, p.spec.from, p.offsets.lastStable);
      } catch (err) {
        p.error = kafkaErrorOf(err instanceof YakError ? err.code : "UNAVAILABLE");
        if (p.spec) read.delete(p.spec);
      }
    }
  }
}

/**
 * What was read, as batches within the fetch's byte limits (`max_bytes` for
 * the response, `partition_max_bytes` for each partition, counted in wire
 * bytes): only the first record of the first partition with data may pass
 * them, as Kafka allows.
 */
function fillBatches(order: PartitionOut[], reads: PartitionRead[], maxBytes: number): void {
  const bySpec = new Map(reads.map((rd) => [rd.spec, rd.read]));
  let left = maxBytes;
  let first = true;
  for (const p of order) {
    const read = p.spec && p.error === 0 ? bySpec.get(p.spec) : undefined;
    if (!read || read.nextOffset === read.baseOffset) continue;
    // Each chunk of a read holds whole lines, and the chunks run on from one another.
    const records = read.chunks.flatMap((chunk) => recordBytesOf(chunk));
    const out = recordsToBatches(records, Math.min(p.maxBytes, left), first);
    p.batches = out.batches;
    left -= out.bytes;
    // Every record sent, and the read went on past the last one (a compacted partition's gap): say where it ends.
    const end = records.length > 0 ? records[records.length - 1].offset + 1 : read.baseOffset;
    let sentEnd = out.taken === 0 ? read.baseOffset : records[out.taken - 1].offset + 1;
    if (out.taken === records.length && read.nextOffset > end && left >= RECORD_BATCH_OVERHEAD_BYTES) {
      const gap = gapBatch(end, read.nextOffset, Math.max(0, p.spec!.log.epochs.epochAt(read.nextOffset - 1)));
      p.batches.push(gap);
      left -= gap.length;
      sentEnd = read.nextOffset;
    }
    if (p.batches.length > 0) first = false;
    if (p.aborted) p.aborted = withMarkers(p.aborted, records, out.taken, sentEnd);
  }
}

/**
 * The aborted transactions a read_committed reader needs for what is sent:
 * a reader skips an aborted producer's records from the transaction's first
 * offset until that producer's abort marker, so a transaction whose marker
 * the cleaner removed (its records went before it) must not be named once
 * the answer reaches past the marker's offset: the producer's later
 * committed records would be skipped too. One that ends after what is sent
 * stays: the producer's records sent are that transaction's.
 */
function withMarkers<T extends { lastOffset: number }>(
  aborted: T[],
  records: readonly RecordBytes[],
  taken: number,
  sentEnd: number,
): T[] {
  if (aborted.every((a) => a.lastOffset >= sentEnd)) return aborted;
  const markers = new Set<number>();
  for (let i = 0; i < taken; i++) if (records[i].control === 0) markers.add(records[i].offset);
  return aborted.filter((a) => a.lastOffset >= sentEnd || markers.has(a.lastOffset));
}

function writeFetchResponse(w: Writer, v: number, outs: TopicOut[]): void {
  if (v >= 1) w.int32(0);
  if (v >= 7) w.int16(0).int32(0);
  w.array(outs, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => {
      const hw = p.offsets?.highWatermark ?? -1;
      w.int32(p.index).int16(p.error).int64(hw);
      if (v >= 4) w.int64(p.offsets?.lastStable ?? -1);
      if (v >= 5) w.int64(p.offsets?.logStart ?? -1);
      if (v >= 4) w.array(p.aborted, (w, a) => w.int64(a.producerId).int64(a.firstOffset));
      if (v >= 11) w.int32(-1); // preferred read replica: none
      w.bytesOf(p.batches);
    });
  });
}
