/**
 * Produce (API 0) and InitProducerId (API 22): record batches decoded (and
 * decompressed) into yak records and appended through the same
 * `appendBatch` the native codec calls, so ordering, acks, min.insync.replicas
 * and idempotence are the broker's, not this file's: the broker checks that a
 * batch's producer id was issued (InitProducerId, below), and its
 * per-partition sequence is Kafka's, so retries are answered as duplicates
 * with their first offsets.
 *
 * @module
 */
import type { Acks, AppendResult, ProducedBatch } from "../broker/partition_ops.ts";
import type { BrokerServices } from "../broker/services.ts";
import { monotonicMs } from "../clock.ts";
import { YakError } from "../errors.ts";
import { RecordRules } from "../broker/record_rules.ts";
import { checkTopicName } from "../log/names.ts";
import { type RecordHeader, type RecordInput, textOrBase64 } from "../log/record.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import { decodeRecordBatches, type KafkaRecord } from "./record_batch.ts";
import { initTransactionalProducer } from "./transactions.ts";
import type { Writer } from "./wire.ts";

interface PartitionResult {
  index: number;
  error: number;
  baseOffset: number;
  logStart: number;
  /** The leader's append time with LogAppendTime (v2+), else -1. */
  logAppendTime: number;
  /** Why it failed, for v8's error message. */
  message: string | null;
}

/** One Kafka record as a yak record: text where it is UTF-8, base64 where not (the value decided when it is stored). */
function toRecordInput(rec: KafkaRecord): RecordInput {
  const out: RecordInput = { key: null, ts: rec.timestamp };
  if (rec.key !== null) {
    const k = textOrBase64(rec.key);
    if ("text" in k) out.key = k.text;
    else out.keyB64 = k.b64;
  }
  // Stored as text (UTF-8) or base64 by the line writer, from the bytes.
  if (rec.value === null) out.value = null;
  else out.rawValue = rec.value;
  if (rec.headers.length > 0) {
    out.headers = rec.headers.map((h): RecordHeader => {
      if (h.value === null) return { key: h.key, value: null };
      const v = textOrBase64(h.value);
      return "text" in v ? { key: h.key, value: v.text } : { key: h.key, valueB64: v.b64 };
    });
  }
  return out;
}

/** Handles Produce v0-8 (v0-2 carry message formats yak does not store: UNSUPPORTED_VERSION). */
export async function produce(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void | "noReply"> {
  const { version: v, body: r } = req;
  const s = ctx.services;
  // The transactional id: a transactional batch is checked against its producer id's transaction instead.
  if (v >= 3) r.nullableString();
  const acksWire = r.int16();
  const timeoutMs = Math.max(0, Math.min(r.int32(), s.opts.requestTimeoutMs));
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => ({ index: r.int32(), records: r.nullableBytes() }), 8),
  }), 4);
  const acks: Acks | null = acksWire === -1 ? -1 : acksWire === 1 ? 1 : acksWire === 0 ? 0 : null;

  // Partition by partition, yielding between them when the connection's slice is spent: the next request
  // of this connection waits (session.ordered) until every batch of this one has its place in line.
  const session = req.session;
  let inLine!: () => void;
  session.ordered = new Promise<void>((resolve) => (inLine = resolve));
  const pending: { name: string; parts: Promise<PartitionResult>[] }[] = [];
  const startedMs = monotonicMs();
  const left = () => Math.max(0, timeoutMs - (monotonicMs() - startedMs));
  try {
    for (const t of topics) {
      const parts: Promise<PartitionResult>[] = [];
      for (const p of t.parts) {
        await session.slice.pause();
        parts.push((await produceOne(ctx, v, acks, left(), t.name, p.index, p.records)).answer);
      }
      pending.push({ name: t.name, parts });
    }
  } finally {
    session.ordered = null;
    inLine();
  }
  const results = await Promise.all(pending.map(async (t) => ({ name: t.name, parts: await Promise.all(t.parts) })));
  if (acks === 0) {
    // No answer to carry the error: Kafka closes the connection, so the client notices and refreshes its metadata
    // (a producer still sending to a former leader went on into nothing until its next periodic refresh).
    const failed = results.flatMap((t) => t.parts.filter((p) => p.error !== 0).map((p) => `${t.name}/${p.index}`));
    if (failed.length > 0) {
      throw new YakError("INVALID_REQUEST", `an acks=0 produce failed (${failed.join(", ")}): closing the connection`);
    }
    return "noReply";
  }
  w.array(results, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => {
      w.int32(p.index).int16(p.error).int64(p.baseOffset);
      if (v >= 2) w.int64(p.logAppendTime);
      if (v >= 5) w.int64(p.logStart);
      if (v >= 8) {
        // Per-record errors (KIP-467): a batch is stored whole or not at all, so the partition's error says it.
        w.array([], () => {});
        w.nullableString(p.message);
      }
    });
  });
  if (v >= 1) w.int32(0);
}

/**
 * One partition of a Produce: checked, decoded and put in line. Resolves
 * once its batches have their place in line (or it failed), with the
 * answer to come (wrapped, so awaiting this does not wait for the acks).
 */
async function produceOne(
  ctx: KafkaContext,
  v: number,
  acks: Acks | null,
  timeoutMs: number,
  topic: string,
  index: number,
  bytes: Uint8Array | null,
): Promise<{ answer: Promise<PartitionResult> }> {
  const s = ctx.services;
  const startedMs = performance.now();
  const result: PartitionResult = { index, error: 0, baseOffset: -1, logStart: -1, logAppendTime: -1, message: null };
  const now = (r: PartitionResult) => ({ answer: Promise.resolve(r) });
  try {
    if (v < 3) return now({ ...result, error: KAFKA.UNSUPPORTED_VERSION });
    if (acks === null) return now({ ...result, error: KAFKA.INVALID_REQUIRED_ACKS });
    checkTopicName(topic);
    s.requireLeader();
    // Decoded before any await: here the work is part of this request's turn, which the connection's time
    // slice bounds. Decoded after waiting for the topic's creation, every request that waited did it in one
    // synchronous run once the topic was there (288 ms for 24 pipelined requests of 0.9 MB).
    const produced = decodeProduced(s, topic, bytes);
    if (s.partitions.partitionCount(topic) === 0) await s.topics.ensure(topic);
    const count = s.partitions.partitionCount(topic);
    if (!Number.isInteger(index) || index < 0 || index >= count) {
      return now({ ...result, error: KAFKA.UNKNOWN_TOPIC_OR_PARTITION });
    }
    // Checked, an acks=all batch waits a moment while its partition's followers are far behind (see
    // roomToAppend), and so does this connection's next request; the wait counts against the request's timeout.
    const tp = { topic, partition: index };
    const room = acks === -1 ? s.partitions.roomToAppend(tp, timeoutMs) : null;
    if (room) await room;
    const left = Math.max(0, timeoutMs - (performance.now() - startedMs));
    // Not awaited one by one: each call takes its place in the partition's line at once, in this order.
    // Every outcome is awaited, so a batch that fails behind an earlier failure is never an unhandled
    // rejection.
    const settled = Promise.allSettled(s.partitions.appendBatches(tp, produced, acks, left, startedMs));
    return { answer: settled.then((outcomes) => answerOf(ctx, topic, result, outcomes)) };
  } catch (err) {
    return now(failure(ctx, topic, result, err));
  }
}

/**
 * A partition's record batches decoded into yak records. The header caps
 * apply while decoding, so a record that breaks one stops the work there;
 * sizes are checked by appendBatches, every batch before any is stored (so a
 * refused request stores nothing).
 */
function decodeProduced(s: BrokerServices, topic: string, bytes: Uint8Array | null): ProducedBatch[] {
  const batches = decodeRecordBatches(bytes ?? new Uint8Array(0), {
    maxRecords: s.opts.maxBatchRecords,
    maxUncompressedBytes: s.opts.maxFrameBytes,
    records: new RecordRules(topic, s.topics.configs(topic), s.opts.maxRecordBytes),
  });
  // Produce v3+ carries exactly one batch a partition, of at least one record (Kafka's ProduceRequest and
  // LogValidator): with two, the first could be stored while the request was answered with the second's error, and
  // an empty one was answered as stored.
  if (batches.length !== 1 || batches[0].records.length === 0) {
    throw new YakError(
      "INVALID_RECORD",
      batches.length === 1
        ? "the record batch holds no record"
        : `a partition of a produce request takes exactly one record batch, not ${batches.length}`,
    );
  }
  const [only] = batches;
  if (only.lastOffsetDelta !== only.records.length - 1) {
    // Deltas rise within [0, lastOffsetDelta] (checked while decoding): so they are 0..count-1 exactly when this
    // holds, as Kafka's LogValidator requires of a client's batch (before, other deltas were renumbered silently).
    throw new YakError(
      "INVALID_RECORD",
      `the record batch's offsets run to delta ${only.lastOffsetDelta} for ${only.records.length} records`,
    );
  }
  const inputs: RecordInput[][] = [];
  for (const b of batches) {
    if (b.isControl) {
      throw new YakError("INVALID_REQUEST", "a control batch (a transaction marker) is the coordinator's to write");
    }
    if (b.producerId >= 0n && b.baseSequence < 0) {
      // Kafka's LogValidator refuses it too. Read as sequence 0, it was answered as a duplicate of the producer's
      // first batch, with that batch's offset, and never stored.
      throw new YakError(
        "INVALID_RECORD",
        `a batch of producer ${b.producerId} has base sequence ${b.baseSequence}: an idempotent batch numbers its ` +
          `records from 0`,
      );
    }
    inputs.push(b.records.map(toRecordInput));
  }
  const produced: ProducedBatch[] = [];
  batches.forEach((b, i) => {
    if (b.records.length === 0) return;
    produced.push({
      records: inputs[i],
      producerId: b.producerId < 0n ? null : b.producerId,
      producerEpoch: b.producerEpoch,
      baseSeq: Math.max(0, b.baseSequence), // -1 only without a producer id (refused above otherwise)
      transactional: b.isTransactional,
    });
  });
  return produced;
}

/** The partition's answer once every batch is settled: the first batch's offset, or the first failure. */
function answerOf(
  ctx: KafkaContext,
  topic: string,
  result: PartitionResult,
  outcomes: PromiseSettledResult<AppendResult>[],
): PartitionResult {
  const failed = outcomes.find((o) => o.status === "rejected");
  if (failed) return failure(ctx, topic, result, failed.reason);
  const done = outcomes.map((o) => (o as PromiseFulfilledResult<AppendResult>).value);
  const offsets = ctx.services.partitions.offsets({ topic, partition: result.index });
  // With LogAppendTime, the first batch's append time (Kafka answers one per partition).
  const logAppendTime = done[0]?.logAppendTimeMs ?? -1;
  return { ...result, baseOffset: done[0]?.baseOffset ?? offsets.logEnd, logStart: offsets.logStart, logAppendTime };
}

/** A partition's error answer: a YakError's code and message; anything else is UNAVAILABLE, and logged. */
function failure(ctx: KafkaContext, topic: string, result: PartitionResult, err: unknown): PartitionResult {
  const code = err instanceof YakError ? err.code : "UNAVAILABLE";
  if (!(err instanceof YakError)) {
    ctx.onError("kafka produce failed", { topic, partition: result.index, error: String(err) });
  }
  return { ...result, error: kafkaErrorOf(code), message: err instanceof YakError ? err.message : null };
}

/**
 * Handles InitProducerId v0-4. Without a transactional id it always issues a
 * fresh, cluster-unique id with epoch 0, whatever id and epoch the request
 * carries (as Kafka does): a client that sends 0/0 to ask for a new id, or an
 * old id to bump, must never share another producer's sequences. With one,
 * the transaction coordinator answers: the id's own producer id, its epoch
 * bumped (transactions.ts).
 */
export async function initProducerId(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { body: r } = req;
  const transactionalId = r.nullableString();
  if (transactionalId !== null) return await initTransactionalProducer(ctx, req, transactionalId, w);
  w.int32(0);
  try {
    const id = await ctx.services.producerIds.issue(ctx.services.opts.requestTimeoutMs);
    w.int16(0).int64(id).int16(0);
  } catch (err) {
    const code = err instanceof YakError ? err.code : "UNAVAILABLE";
    if (!(err instanceof YakError)) ctx.onError("kafka init producer id failed", { error: String(err) });
    // Retriable for clients: no leader yet, or the leader could not reach its replicas.
    const wire = code === "NOT_ENOUGH_REPLICAS" || code === "TIMEOUT"
      ? kafkaErrorOf(code)
      : KAFKA.COORDINATOR_NOT_AVAILABLE;
    w.int16(wire).int64(-1).int16(-1);
  }
}
