/**
 * OffsetForLeaderEpoch (API 23, KIP-320): where a leader epoch ends in a
 * partition, so a consumer that read up to some offset in an epoch can check,
 * after a leader change, that the new leader's log still holds it (and
 * truncate its position otherwise). The answer comes from the leader epoch
 * cache replication keeps (the native `epoch_end` asks the same of it for
 * followers), on the leader only, as Kafka answers it.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

/**
 * Handles OffsetForLeaderEpoch v0-4 (v2+ the reader's current leader epoch,
 * fenced as Kafka fences it; v3+ the replica id, -1 for a consumer; v4
 * flexible). Followers and consumers get the same answer.
 */
export function offsetForLeaderEpoch(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  if (v >= 3) r.int32(); // replica id: a follower and a consumer are answered alike
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => ({
      index: r.int32(),
      current: v >= 2 ? r.int32() : -1,
      epoch: r.int32(),
    }), 8),
  }), 2);
  const s = ctx.services;
  const answers = topics.map((t) => ({
    name: t.name,
    parts: t.parts.map((p) => {
      try {
        const end = s.replication.readerEpochEnd({ topic: t.name, partition: p.index }, p.epoch, p.current);
        return { index: p.index, error: 0, ...end };
      } catch (err) {
        const error = err instanceof YakError ? kafkaErrorOf(err.code) : KAFKA.UNKNOWN_SERVER_ERROR;
        return { index: p.index, error, epoch: -1, endOffset: -1 };
      }
    }),
  }));
  if (v >= 2) w.int32(0);
  w.array(answers, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => {
      w.int16(p.error).int32(p.index);
      if (v >= 1) w.int32(p.epoch);
      w.int64(p.endOffset);
    });
  });
}
