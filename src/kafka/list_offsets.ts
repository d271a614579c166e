/**
 * ListOffsets (API 2): a partition's earliest (-2) and latest (-1) offsets,
 * or the first offset whose timestamp is at or after a given time. yak keeps
 * no time index, so a time is found by reading the partition from its start,
 * at most {@link MAX_TIME_SCAN_BYTES}; past that the answer is the latest
 * offset (a consumer then starts at the end rather than waiting on a scan).
 *
 * @module
 */
import type { TopicPartition } from "../broker/partition_ops.ts";
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import { parseLines } from "../log/record.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

/** The most a timestamp lookup reads of one partition. */
export const MAX_TIME_SCAN_BYTES = 64 * 1024 * 1024;
const SCAN_CHUNK_BYTES = 1024 * 1024;

/** The first offset at or after `timestampMs`, with its timestamp; the high watermark and -1 when none. */
export async function offsetForTime(
  s: BrokerServices,
  tp: TopicPartition,
  timestampMs: number,
): Promise<{ offset: number; timestamp: number }> {
  let { logStart: from, highWatermark } = s.partitions.offsets(tp);
  let scanned = 0;
  while (from < highWatermark && scanned < MAX_TIME_SCAN_BYTES) {
    const specs = s.partitions.consumerSpecs(tp.topic, [[tp.partition, from]]);
    const [got] = await s.partitions.readPartitions(specs, { maxBytes: SCAN_CHUNK_BYTES, maxWaitMs: 0, upTo: "hw" });
    if (!got || got.read.count === 0) break;
    for (const rec of parseLines(got.read.text)) {
      if (rec.ts >= timestampMs) return { offset: rec.offset, timestamp: rec.ts };
    }
    from = got.read.baseOffset + got.read.count;
    scanned += got.read.byteLength;
    highWatermark = s.partitions.offsets(tp).highWatermark;
  }
  return { offset: highWatermark, timestamp: -1 };
}

/** Handles ListOffsets v0-5. */
export async function listOffsets(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const s = ctx.services;
  r.int32(); // replica id
  if (v >= 2) r.int8(); // isolation level: both end at the high watermark
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => {
      const index = r.int32();
      if (v >= 4) r.int32(); // current leader epoch
      const timestamp = r.int64();
      if (v === 0) r.int32(); // max number of offsets
      return { index, timestamp };
    }, 12),
  }), 4);
  const answers = await Promise.all(topics.map(async (t) => ({
    name: t.name,
    parts: await Promise.all(t.parts.map(async (p) => {
      try {
        const count = s.partitions.partitionCount(t.name);
        if (!Number.isInteger(p.index) || p.index < 0 || p.index >= count) {
          throw new YakError(count === 0 ? "UNKNOWN_TOPIC" : "UNKNOWN_PARTITION", `${t.name}/${p.index}`);
        }
        const o = s.partitions.offsets({ topic: t.name, partition: p.index });
        if (p.timestamp === -1) return { index: p.index, error: 0, timestamp: -1, offset: o.highWatermark };
        if (p.timestamp === -2) return { index: p.index, error: 0, timestamp: -1, offset: o.logStart };
        const found = await offsetForTime(s, { topic: t.name, partition: p.index }, p.timestamp);
        return { index: p.index, error: 0, ...found };
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
      if (v >= 4) w.int32(s.view().epoch);
    });
  });
}
