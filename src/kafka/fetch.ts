/**
 * Fetch (API 1): the one long-poll read (`readPartitions`, the same a native
 * consumer and a follower use) up to the high watermark, with the stored
 * lines turned into uncompressed RecordBatch v2, one batch per run of records
 * of one leader epoch. Clients read with read_committed, so the last stable
 * offset is the high watermark (yak has no transactions).
 *
 * @module
 */
import type { PartitionOffsets, PartitionRead, ReadSpec } from "../broker/partition_ops.ts";
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import { recordBytesOf } from "../log/record.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import { encodeRecordBatch } from "./record_batch.ts";
import type { Writer } from "./wire.ts";

interface PartitionOut {
  index: number;
  error: number;
  offsets: PartitionOffsets | null;
  batches: Uint8Array[];
  /** What to read; null when the partition failed its check. */
  spec: ReadSpec | null;
}

interface TopicOut {
  name: string;
  parts: PartitionOut[];
}

/**
 * Stored lines as record batches: consecutive records of one leader epoch
 * share a batch (offsets within a batch are consecutive, as stored). Keys and
 * values go from the stored bytes into the batch without being decoded.
 */
export function linesToBatches(lines: Uint8Array): Uint8Array[] {
  const records = recordBytesOf(lines);
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 1; i <= records.length; i++) {
    if (i < records.length && records[i].epoch === records[start].epoch) continue;
    const base = records[start].offset;
    out.push(encodeRecordBatch({
      baseOffset: base,
      partitionLeaderEpoch: records[start].epoch,
      records: records.slice(start, i).map((r) => ({
        offsetDelta: r.offset - base,
        timestamp: r.ts,
        key: r.key,
        value: r.value,
        headers: r.headers,
      })),
    }));
    start = i;
  }
  return out;
}

/** What a Fetch asks for, its limits already clamped to the broker's. */
interface FetchRequest {
  maxWaitMs: number;
  maxBytes: number;
  topics: { name: string; parts: { index: number; offset: number }[] }[];
}

/** Handles Fetch v0-12 (record batches are v2, so clients use v4 and later; v12 is flexible). */
export async function fetch(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const s = ctx.services;
  const { maxWaitMs, maxBytes, topics } = readFetchRequest(req, s);
  // Checked one partition at a time, so one bad partition costs its own error only.
  const outs: TopicOut[] = topics.map((t) => ({
    name: t.name,
    parts: t.parts.map((p) => checkPartition(s, t.name, p.index, p.offset)),
  }));
  const specs = outs.flatMap((t) => t.parts.flatMap((p) => p.spec ? [p.spec] : []));
  const anyError = outs.some((t) => t.parts.some((p) => p.error !== 0));
  const damaged = new Map<ReadSpec, YakError>();
  const reads = specs.length === 0 ? [] : await s.partitions.readPartitions(specs, {
    maxBytes,
    maxWaitMs: anyError ? 0 : maxWaitMs,
    upTo: "hw",
    damaged,
  });
  fillPartitions(s, outs, reads, damaged);
  writeFetchResponse(w, req.version, outs);
}

function readFetchRequest(req: ApiRequest, s: BrokerServices): FetchRequest {
  const { version: v, body: r } = req;
  r.int32(); // replica id: always a consumer here (followers replicate over the native protocol)
  const maxWaitMs = Math.max(0, Math.min(r.int32(), s.opts.maxFetchWaitMs));
  r.int32(); // min bytes: any data answers at once
  const maxBytes = v >= 3 ? Math.max(1, Math.min(r.int32(), s.opts.maxFetchBytes)) : s.opts.maxFetchBytes;
  if (v >= 4) r.int8(); // isolation: read_committed and read_uncommitted both end at the high watermark
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
      r.int32(); // partition max bytes: the request's budget is shared fairly instead
      return { index, offset };
    }, 16),
  }), 4);
  // Forgotten topics (v7+) and the rack id (v11+) need no answer without fetch sessions.
  return { maxWaitMs, maxBytes, topics };
}

/** One partition of a Fetch, checked before any read: what to read, or its error. */
function checkPartition(s: BrokerServices, topic: string, index: number, offset: number): PartitionOut {
  const out = { index, error: 0, offsets: null, batches: [], spec: null };
  try {
    const below = new Map<number, PartitionOffsets>();
    const specs = s.partitions.consumerSpecs(topic, [[index, offset]], below);
    if (below.size > 0) return { ...out, error: KAFKA.OFFSET_OUT_OF_RANGE };
    return { ...out, spec: specs[0] ?? null };
  } catch (err) {
    return { ...out, error: kafkaErrorOf(err instanceof YakError ? err.code : "UNAVAILABLE") };
  }
}

/** Each partition's offsets and what was read from it, as batches; or its error. */
function fillPartitions(
  s: BrokerServices,
  outs: TopicOut[],
  reads: PartitionRead[],
  damaged: Map<ReadSpec, YakError>,
): void {
  const bySpec = new Map(reads.map((rd) => [rd.spec, rd.read]));
  for (const t of outs) {
    for (const p of t.parts) {
      // A damaged record or a fenced log: KAFKA_STORAGE_ERROR (retriable) for its partition, never its bytes.
      if (p.spec && damaged.has(p.spec)) p.error = kafkaErrorOf(damaged.get(p.spec)!.code);
      if (p.error !== 0) continue;
      try {
        p.offsets = s.partitions.offsets({ topic: t.name, partition: p.index });
        const read = p.spec ? bySpec.get(p.spec) : undefined;
        if (read && read.count > 0) {
          // Each chunk of a read holds whole lines.
          p.batches = read.chunks.flatMap((chunk) => linesToBatches(chunk));
        }
      } catch (err) {
        p.error = kafkaErrorOf(err instanceof YakError ? err.code : "UNAVAILABLE");
      }
    }
  }
}

function writeFetchResponse(w: Writer, v: number, outs: TopicOut[]): void {
  if (v >= 1) w.int32(0);
  if (v >= 7) w.int16(0).int32(0);
  w.array(outs, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => {
      const hw = p.offsets?.highWatermark ?? -1;
      w.int32(p.index).int16(p.error).int64(hw);
      if (v >= 4) w.int64(hw); // last stable offset
      if (v >= 5) w.int64(p.offsets?.logStart ?? -1);
      if (v >= 4) w.array([], () => {}); // aborted transactions: none
      if (v >= 11) w.int32(-1); // preferred read replica: none
      w.bytesOf(p.batches);
    });
  });
}
