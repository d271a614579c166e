/**
 * ListOffsets (API 2): a partition's earliest (-2, and -4, the earliest
 * local) and latest (-1) offsets, the record with the largest timestamp (-3),
 * or the first offset whose timestamp is at or after a given time (-1 when
 * none is). yak keeps no time index on disk: a time is found by reading the
 * partition from its start, skipping each closed segment whose newest time,
 * learnt by reading it once and kept in memory, is older; a lookup begins no
 * segment not known yet past {@link MAX_TIME_SCAN_BYTES} read, and answers
 * TIMEOUT there (retriable: the retry skips what is known by then).
 *
 * @module
 */
import type { TopicPartition } from "../broker/partition_ops.ts";
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import { parseLines } from "../log/record.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { kafkaErrorOf } from "./errors.ts";
import { readerEpochError } from "./metadata.ts";
import type { Writer } from "./wire.ts";

/** What a timestamp lookup reads of one partition before it begins no other segment (or, for -3, stops). */
export const MAX_TIME_SCAN_BYTES = 64 * 1024 * 1024;
const SCAN_CHUNK_BYTES = 1024 * 1024;

/**
 * Visits the partition's records from its start, at most {@link MAX_TIME_SCAN_BYTES},
 * until `visit` returns true; "stopped", "end" (every record seen) or "limit".
 */
async function scanRecords(
  s: BrokerServices,
  tp: TopicPartition,
  visit: (rec: { offset: number; ts: number }) => boolean,
): Promise<"stopped" | "end" | "limit"> {
  let { logStart: from, highWatermark } = s.partitions.offsets(tp);
  let scanned = 0;
  while (from < highWatermark) {
    if (scanned >= MAX_TIME_SCAN_BYTES) return "limit";
    const specs = s.partitions.consumerSpecs(tp.topic, [[tp.partition, from]]);
    const [got] = await s.partitions.readPartitions(specs, { maxBytes: SCAN_CHUNK_BYTES, maxWaitMs: 0, upTo: "hw" });
    if (!got || got.read.nextOffset === from) break;
    for (const rec of parseLines(got.read.text)) if (visit(rec)) return "stopped";
    // Past a compacted partition's gaps too.
    from = got.read.nextOffset;
    scanned += got.read.byteLength;
    highWatermark = s.partitions.offsets(tp).highWatermark;
  }
  return "end";
}

/**
 * The newest time of each closed segment read whole by a lookup, by the
 * segment's id (PartitionLog.closedSegments: a cleaned segment is another
 * one). A segment's records only leave (log start, cleaning), so a time kept
 * is never below what it holds. Emptied when it holds {@link KNOWN_SEGMENTS}.
 */
const segmentNewest = new Map<number, number>();
const KNOWN_SEGMENTS = 100_000;

/**
 * The first offset at or after `timestampMs`, with its timestamp; offset and
 * timestamp -1 when no record is that new (as Kafka answers). Closed segments
 * known to hold nothing that new are skipped; one not known yet is read
 * whole, and none is begun past the scan limit (TIMEOUT). Before, the answer
 * past the first 64 MiB was the high watermark, and a consumer seeking by
 * time skipped the records between.
 */
export async function offsetForTime(
  s: BrokerServices,
  tp: TopicPartition,
  timestampMs: number,
): Promise<{ offset: number; timestamp: number }> {
  let from = s.partitions.offsets(tp).logStart;
  let scanned = 0;
  for (const seg of s.partitions.closedSegments(tp)) {
    if (seg.end <= from) continue;
    const newest = segmentNewest.get(seg.id);
    if (newest !== undefined && newest < timestampMs) {
      from = seg.end;
      continue;
    }
    // A segment begun is read to its end (at most its segment.bytes): its newest time is known then.
    if (scanned >= MAX_TIME_SCAN_BYTES) throw scanLimit(tp);
    const part = await scanSpan(s, tp, from, seg.end, timestampMs);
    if (part.found) return part.found;
    if (segmentNewest.size >= KNOWN_SEGMENTS) segmentNewest.clear();
    segmentNewest.set(seg.id, part.newest);
    scanned += part.bytes;
    from = seg.end;
  }
  // The active segment (and a closed one that rolled meanwhile): read to the high watermark.
  const tail = await scanSpan(s, tp, from, s.partitions.offsets(tp).highWatermark, timestampMs);
  return tail.found ?? { offset: -1, timestamp: -1 };
}

function scanLimit(tp: TopicPartition): YakError {
  return new YakError(
    "TIMEOUT",
    `${tp.topic}/${tp.partition}: the time lookup read ${MAX_TIME_SCAN_BYTES / 1024 / 1024} MiB of segments not ` +
      `read before; retry (it goes on past them)`,
  );
}

/**
 * Reads offsets [from, to) for the first record at or after `timestampMs`:
 * the record (if found), the newest time before it and the bytes read.
 */
async function scanSpan(
  s: BrokerServices,
  tp: TopicPartition,
  from: number,
  to: number,
  timestampMs: number,
): Promise<{ found: { offset: number; timestamp: number } | null; newest: number; bytes: number }> {
  let newest = -Infinity;
  let bytes = 0;
  while (from < to) {
    const specs = s.partitions.consumerSpecs(tp.topic, [[tp.partition, from]]);
    const [got] = await s.partitions.readPartitions(specs, { maxBytes: SCAN_CHUNK_BYTES, maxWaitMs: 0, upTo: "hw" });
    if (!got || got.read.nextOffset === from) break;
    for (const rec of parseLines(got.read.text)) {
      if (rec.offset >= to) break;
      if (rec.ts >= timestampMs) return { found: { offset: rec.offset, timestamp: rec.ts }, newest, bytes };
      newest = Math.max(newest, rec.ts);
    }
    // Past a compacted partition's gaps too.
    from = got.read.nextOffset;
    bytes += got.read.byteLength;
  }
  return { found: null, newest, bytes };
}

/**
 * The record with the largest timestamp (the first of them), KIP-734's
 * MAX_TIMESTAMP; -1 and -1 for an empty partition. Past the scan limit, the
 * newest record stands in for it (its time is the append time unless the
 * producer set one).
 */
export async function offsetOfMaxTime(
  s: BrokerServices,
  tp: TopicPartition,
): Promise<{ offset: number; timestamp: number }> {
  let best = { offset: -1, timestamp: -1 };
  const how = await scanRecords(s, tp, (rec) => {
    if (rec.ts > best.timestamp) best = { offset: rec.offset, timestamp: rec.ts };
    return false;
  });
  if (how !== "limit") return best;
  const { highWatermark } = s.partitions.offsets(tp);
  const specs = s.partitions.consumerSpecs(tp.topic, [[tp.partition, highWatermark - 1]]);
  const [got] = await s.partitions.readPartitions(specs, { maxBytes: SCAN_CHUNK_BYTES, maxWaitMs: 0, upTo: "hw" });
  const last = got && got.read.count > 0 ? parseLines(got.read.text)[0] : null;
  return last ? { offset: last.offset, timestamp: last.ts } : best;
}

/**
 * What ListOffsets answers for one partition and timestamp (or special
 * timestamp). A record found by time counts only below where the reader's
 * reads end, the last stable offset for read_committed (as Kafka filters
 * it): one of a transaction still open is not there for that reader yet.
 */
async function lookUp(s: BrokerServices, tp: TopicPartition, timestamp: number, committedOnly = false) {
  const o = s.partitions.offsets(tp);
  const end = committedOnly ? o.lastStable : o.highWatermark;
  if (timestamp === LATEST) return { timestamp: -1, offset: end };
  // Every record is "local" in yak (no tiered storage): KIP-405's earliest local offset is the log start.
  if (timestamp === EARLIEST || timestamp === EARLIEST_LOCAL) return { timestamp: -1, offset: o.logStart };
  const found = timestamp === MAX_TIMESTAMP ? await offsetOfMaxTime(s, tp) : await offsetForTime(s, tp, timestamp);
  return found.offset < end ? found : { offset: -1, timestamp: -1 };
}

const LATEST = -1;
const EARLIEST = -2;
const MAX_TIMESTAMP = -3;
const EARLIEST_LOCAL = -4;

/** Handles ListOffsets v0-8 (v6+ flexible; v7 adds MAX_TIMESTAMP, v8 the earliest local offset). */
export async function listOffsets(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const s = ctx.services;
  r.int32(); // replica id
  // read_committed (1): the latest offset is the last stable one, below every undecided transaction.
  const committedOnly = v >= 2 && r.int8() === 1;
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => {
      const index = r.int32();
      const epoch = v >= 4 ? r.int32() : -1; // the reader's current leader epoch (KIP-320)
      const timestamp = r.int64Saturated(); // past every record's, or one of the -1/-2/-3 specials
      if (v === 0) r.int32(); // max number of offsets
      return { index, epoch, timestamp };
    }, 12),
  }), 4);
  const answers = await Promise.all(topics.map(async (t) => ({
    name: t.name,
    parts: await Promise.all(t.parts.map(async (p) => {
      const epochError = readerEpochError(s.view().epoch, p.epoch);
      if (epochError !== 0) return { index: p.index, error: epochError, timestamp: -1, offset: -1 };
      try {
        const count = s.partitions.partitionCount(t.name);
        if (!Number.isInteger(p.index) || p.index < 0 || p.index >= count) {
          throw new YakError(count === 0 ? "UNKNOWN_TOPIC" : "UNKNOWN_PARTITION", `${t.name}/${p.index}`);
        }
        return {
          index: p.index,
          error: 0,
          ...await lookUp(s, { topic: t.name, partition: p.index }, p.timestamp, committedOnly),
        };
      } catch (err) {
        const error = kafkaErrorOf(err instanceof YakError ? err.code : "UNAVAILABLE");
        return { index: p.index, error, timestamp: -1, offset: -1 };
      }
    })),
  })));
  if (v >= 2) w.int32(0);
  w.array(answers, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => {
      w.int32(p.index).int16(p.error);
      if (v === 0) w.array(p.offset >= 0 ? [p.offset] : [], (w, o) => w.int64(o));
      else w.int64(p.timestamp).int64(p.offset);
      // No offset (an error, or no record at or after the timestamp): no epoch either, as Kafka answers -1.
      if (v >= 4) w.int32(p.error === 0 && p.offset >= 0 ? s.view().epoch : -1);
    });
  });
}
