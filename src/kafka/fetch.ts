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
import { LineFields, readLine } from "../log/record.ts";
import { seqAdd } from "../log/sequence.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import {
  type BatchHead,
  BatchWriter,
  encodeRecordBatch,
  type HeaderBytes,
  MAX_TIMESTAMP_DELTA,
  RECORD_BATCH_OVERHEAD_BYTES,
} from "./record_batch.ts";
import { readerEpochError } from "./metadata.ts";
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
  /** Records were sent and more were there to read (see `Session.caughtUp`). */
  behind?: boolean;
}

interface TopicOut {
  name: string;
  parts: PartitionOut[];
}

/**
 * How many stored bytes a Kafka fetch reads for each byte a partition may
 * send: a stored line is larger than its record in a batch (JSON field names,
 * the checksum, base64 for bytes), so twice covers it. Reading only that much
 * keeps a fetch with a small partition_max_bytes from reading and parsing a
 * whole share of the response's budget to send a slice of it (librdkafka with
 * 256 KiB per partition: 23 ms a fetch of 5,747 records, 4.0 us a record).
 */
const STORED_PER_WIRE_BYTE = 2;

/**
 * Per partition, the stored bytes per wire byte of the records its last
 * answer sent: the next read takes that (and a tenth more) rather than
 * twice. Why: 100-byte records are ~1.35 stored bytes per wire byte, so a
 * third of each read was checked (every stored line's checksum) and thrown
 * away, to be read again by the next fetch. A guess too low only sends less
 * that once: the answer measures the records it sent, so the next guess
 * follows them. Bounded: a cluster with more partitions than this starts
 * over.
 */
const storedPerWire = new Map<string, number>();
const STORED_PER_WIRE_KEPT = 10_000;

/** Stored bytes to read for a partition that may send `maxBytes` (see {@link storedPerWire}). */
function readBudget(key: string, maxBytes: number): number {
  const seen = storedPerWire.get(key);
  return Math.ceil(maxBytes * (seen === undefined ? STORED_PER_WIRE_BYTE : Math.min(STORED_PER_WIRE_BYTE, seen * 1.1)));
}

/** Whether the record in `f` cannot join the open batch, whose first record was `first` and last `prev`. */
function startsBatch(first: LineFields, prev: LineFields, f: LineFields): boolean {
  return f.epoch !== first.epoch || f.offset !== prev.offset + 1 || f.producer !== prev.producer ||
    f.batchStart || f.control >= 0 || prev.control >= 0 || f.txn !== prev.txn || f.pepoch !== prev.pepoch ||
    (f.producer >= 0 && f.seq !== seqAdd(prev.seq, 1)) ||
    // LogAppendTime: one batch per append time, as Kafka stores them (readers take its max timestamp for each record).
    f.logAppendTime !== prev.logAppendTime || (f.logAppendTime && f.ts !== prev.ts) ||
    // A batch holds each record's timestamp as a delta from its first: one too far away opens a batch of its own
    // (producers may send any timestamp, negative ones too, and Kafka takes them).
    Math.abs(f.ts - first.ts) > MAX_TIMESTAMP_DELTA;
}

/** A marker's control record: key (version 0, type: 0 abort, 1 commit) and value (version 0, coordinator epoch). */
function controlRecord(f: LineFields): { key: Uint8Array; value: Uint8Array } {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setInt16(2, f.control);
  const value = new Uint8Array(6);
  new DataView(value.buffer).setInt32(2, f.epoch);
  return { key, value };
}

/** The head of the batch `f` opens. */
function headOf(f: LineFields): BatchHead {
  // A producer's batch says whose it is: its stored number (not the id it produces with, which stays
  // secret so no reader can write as it), its epoch (0 for an idempotent producer) and sequence.
  const producer = f.producer >= 0;
  return {
    baseOffset: f.offset,
    partitionLeaderEpoch: f.epoch,
    baseTimestamp: f.ts,
    producerId: producer ? f.producer : -1,
    producerEpoch: producer ? Math.max(0, f.pepoch) : -1,
    baseSequence: producer ? f.seq : -1,
    logAppendTime: f.logAppendTime,
    isTransactional: f.txn,
    isControl: f.control >= 0,
  };
}

const ENCODER = new TextEncoder();

/**
 * Stored lines (chunks of whole lines) as record batches of at most `limit`
 * bytes in all, written straight from the stored bytes into one buffer:
 * consecutive records of one leader epoch share a batch (a gap in offsets,
 * a batch of an idempotent producer, a marker, or a LogAppendTime batch
 * starts a new one). Records that would pass the limit are left for the next
 * fetch; with `atLeastOne` the first record goes whatever its size, as Kafka
 * lets the first batch of a response pass `fetch.max.bytes` so a consumer
 * can always progress. Text keys and values go from the stored lines into
 * the batch without being decoded. Returns the batches, how many records
 * they hold (`taken`), and the offset of the last line read (-1 if none)
 * and whether every line went.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch } from "../log/record.ts";
 * import { linesToBatches } from "./fetch.ts";
 * const value = "v".repeat(1000);
 * const lines = new TextEncoder().encode(encodeBatch([0, 1, 2].map(() => ({ key: null, value })), 0, 1, 0, null, 0));
 * assert.equal(linesToBatches([lines], 100_000, false).taken, 3); // one epoch: one batch of three
 * const two = linesToBatches([lines], 2200, false);
 * assert.ok(two.bytes.length <= 2200 && two.taken === 2); // two records fit, the third waits
 * assert.equal(linesToBatches([lines], 10, true).taken, 1); // the first goes anyway
 * assert.equal(linesToBatches([lines], 10, false).taken, 0);
 * ```
 */
export function linesToBatches(
  chunks: readonly Uint8Array[],
  limit: number,
  atLeastOne: boolean,
): { bytes: Uint8Array; taken: number; lastOffset: number; all: boolean; abortMarkers: number[] } {
  let stored = 0;
  for (const c of chunks) stored += c.length;
  // A record takes fewer bytes in a batch than its stored line (but for batch headers): one buffer mostly suffices.
  const w = new BatchWriter(Math.min(limit, stored) + RECORD_BATCH_OVERHEAD_BYTES);
  const f = new LineFields();
  const first = new LineFields();
  const prev = new LineFields();
  let taken = 0;
  const abortMarkers: number[] = [];
  for (const chunk of chunks) {
    let s = 0;
    while (s < chunk.length) {
      s = readLine(chunk, s, f) + 1;
      const opens = taken === 0 || startsBatch(first, prev, f);
      const control = f.control >= 0 ? controlRecord(f) : null;
      const headers = f.headers.length === 0 ? NO_HEADER_BYTES : f.headers.map((h) => ({
        key: ENCODER.encode(h.key),
        value: h.value,
      }));
      const keySrc = control ? control.key : f.keySrc;
      const valueSrc = control ? control.value : f.valueSrc;
      const ks = control ? 0 : f.keyStart;
      const ke = control ? control.key.length : f.keyEnd;
      const vs = control ? 0 : f.valueStart;
      const ve = control ? control.value.length : f.valueEnd;
      const base = opens ? f : first;
      const size = w.recordSize(
        f.ts - base.ts,
        f.offset - base.offset,
        keySrc === null ? -1 : ke - ks,
        valueSrc === null ? -1 : ve - vs,
        headers,
      );
      const cost = size + (opens ? RECORD_BATCH_OVERHEAD_BYTES : 0);
      if (w.size + cost > limit && !(atLeastOne && taken === 0)) {
        return { bytes: w.bytes(), taken, lastOffset: taken > 0 ? prev.offset : -1, all: false, abortMarkers };
      }
      if (opens) {
        w.open(headOf(f));
        first.setScalars(f);
      }
      w.add(f.offset, f.ts, keySrc, ks, ke, valueSrc, vs, ve, headers, size);
      if (f.control === 0) abortMarkers.push(f.offset);
      prev.setScalars(f);
      taken++;
    }
  }
  return { bytes: w.bytes(), taken, lastOffset: taken > 0 ? prev.offset : -1, all: true, abortMarkers };
}

const NO_HEADER_BYTES: HeaderBytes[] = [];

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
  /** Each partition's `epoch` is the reader's current leader epoch (-1: unchecked). */
  topics: { name: string; parts: { index: number; epoch: number; offset: number; maxBytes: number }[] }[];
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
    parts: t.parts.map((p) => checkPartition(s, t.name, p, readerEpochError(s.view().epoch, p.epoch))),
  }));
  const order = turnOrder(outs, req.session.fetches++);
  const specs = order.flatMap((p) => p.spec ? [p.spec] : []);
  const anyError = order.some((p) => p.error !== 0);
  // A catching-up reader that reached the end of a partition is told at once (see Session.caughtUp).
  const { caughtUp } = req.session;
  const atEnd = specs.some((spec) => caughtUp.has(spec.key) && spec.from >= spec.log.highWatermark);
  const damaged = new Map<ReadSpec, YakError>();
  const reads = specs.length === 0 ? [] : await s.partitions.readPartitions(specs, {
    maxBytes,
    maxWaitMs: anyError || atEnd ? 0 : maxWaitMs,
    upTo: committed ? "lso" : "hw",
    damaged,
  });
  fillPartitions(s, outs, reads, damaged, committed);
  fillBatches(order, reads, maxBytes);
  for (const p of order) {
    if (!p.spec) continue;
    if (p.behind) caughtUp.add(p.spec.key);
    else if (p.batches.length === 0) caughtUp.delete(p.spec.key);
  }
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
      const epoch = v >= 9 ? r.int32() : -1; // the reader's current leader epoch (KIP-320)
      const offset = r.int64Saturated(); // past the safe range: past the end, OFFSET_OUT_OF_RANGE as any such
      if (v >= 12) r.int32(); // last fetched epoch: yak's leader never truncates what it served, so no divergence
      if (v >= 5) r.int64Big(); // the follower's log start (consumers send -1)
      const maxBytes = Math.max(1, r.int32());
      return { index, epoch, offset, maxBytes };
    }, 16),
  }), 4);
  // Forgotten topics (v7+) and the rack id (v11+) need no answer without fetch sessions.
  return { committed, maxWaitMs, maxBytes, topics };
}

/** One partition of a Fetch, checked before any read: what to read, or its error. */
function checkPartition(
  s: BrokerServices,
  topic: string,
  { index, offset, maxBytes }: { index: number; offset: number; maxBytes: number },
  epochError: number,
): PartitionOut {
  const out = { index, maxBytes, error: 0, offsets: null, aborted: null, batches: [], spec: null };
  if (epochError !== 0) return { ...out, error: epochError };
  try {
    const below = new Map<number, PartitionOffsets>();
    const specs = s.partitions.consumerSpecs(topic, [[index, offset]], below);
    if (below.size > 0) return { ...out, error: KAFKA.OFFSET_OUT_OF_RANGE };
    // Read no more than the partition can take: a stored line takes more bytes than its record on the wire
    // (field names, the checksum; base64 is 4/3 of the bytes), at most twice (see readBudget).
    const spec = specs[0] ? { ...specs[0], maxBytes: readBudget(specs[0].key, maxBytes) } : null;
    return { ...out, spec };
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
    const out = linesToBatches(read.chunks, Math.min(p.maxBytes, left), first);
    p.batches = out.taken > 0 ? [out.bytes] : [];
    // How many stored bytes a wire byte took, for the records sent (the next read's budget).
    if (out.taken > 0 && out.bytes.length > 0) {
      if (storedPerWire.size >= STORED_PER_WIRE_KEPT) storedPerWire.clear();
      storedPerWire.set(p.spec!.key, (read.byteLength * out.taken / read.count) / out.bytes.length);
    }
    left -= out.bytes.length;
    // Every record sent, and the read went on past the last one (a compacted partition's gap): say where it ends.
    const end = out.taken > 0 ? out.lastOffset + 1 : read.baseOffset;
    let sentEnd = end;
    if (out.all && read.nextOffset > end && left >= RECORD_BATCH_OVERHEAD_BYTES) {
      const gap = gapBatch(end, read.nextOffset, Math.max(0, p.spec!.log.epochs.epochAt(read.nextOffset - 1)));
      p.batches.push(gap);
      left -= gap.length;
      sentEnd = read.nextOffset;
    }
    if (p.batches.length > 0) first = false;
    p.behind = out.taken > 0 && sentEnd < (p.offsets?.highWatermark ?? 0);
    if (p.aborted) p.aborted = withMarkers(p.aborted, out.abortMarkers, sentEnd);
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
function withMarkers<T extends { lastOffset: number }>(aborted: T[], abortMarkers: number[], sentEnd: number): T[] {
  if (aborted.every((a) => a.lastOffset >= sentEnd)) return aborted;
  const markers = new Set(abortMarkers);
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
