/**
 * DeleteRecords (API 21) and DescribeLogDirs (API 35): what admin tools and
 * Kafka UIs do with partition logs, over the broker's partition services.
 * A deletion moves the partition's log start on every replica (the
 * mechanism retention uses); a log dir is the broker's topics directory,
 * with each partition's bytes.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

/** The longest a DeleteRecords waits for the replicas, whatever timeout it asks for. */
const MAX_DELETE_WAIT_MS = 300_000;

function errorOf(err: unknown): number {
  return err instanceof YakError ? kafkaErrorOf(err.code) : KAFKA.UNKNOWN_SERVER_ERROR;
}

/**
 * Handles DeleteRecords v0-2 (v2 flexible): each partition's records below
 * the offset asked (-1: the high watermark) are deleted on the leader and,
 * before the answer, on every in-sync replica; the answer is each
 * partition's low watermark.
 */
export async function deleteRecords(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const r = req.body;
  const s = ctx.services;
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => ({ index: r.int32(), offset: r.int64Saturated() }), 12),
  }), 2);
  const timeoutMs = Math.min(Math.max(r.int32(), 0), MAX_DELETE_WAIT_MS);
  const answers = await Promise.all(topics.map(async (t) => ({
    name: t.name,
    parts: await Promise.all(t.parts.map(async (p) => {
      try {
        const low = await s.partitions.deleteRecords({ topic: t.name, partition: p.index }, p.offset, timeoutMs);
        return { index: p.index, low, error: 0 };
      } catch (err) {
        return { index: p.index, low: -1, error: errorOf(err) };
      }
    })),
  })));
  w.int32(0);
  w.array(answers, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => w.int32(p.index).int64(p.low).int16(p.error));
  });
}

/**
 * Handles DescribeLogDirs v0-4 (v2+ flexible, v3 a top-level error code,
 * v4 the file system's total and usable bytes): this broker's one log
 * directory and the partitions asked (null: all), with their sizes. The
 * partitions are this broker's replicas, so every broker answers.
 */
export async function describeLogDirs(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const asked = r.nullableArray((r) => [r.string(), r.int32Array()] as const, 2);
  const dir = await ctx.services.partitions.logDir(asked === null ? null : new Map(asked));
  const byTopic = new Map<string, typeof dir.partitions>();
  for (const p of dir.partitions) byTopic.set(p.topic, [...byTopic.get(p.topic) ?? [], p]);
  w.int32(0);
  if (v >= 3) w.int16(0);
  w.array([dir], (w, d) => {
    w.int16(0).string(d.dir);
    w.array([...byTopic], (w, [name, parts]) => {
      w.string(name);
      w.array(parts, (w, p) => w.int32(p.partition).int64(p.sizeBytes).int64(p.offsetLag).bool(false));
    });
    if (v >= 4) w.int64(d.totalBytes).int64(d.usableBytes);
  });
}
