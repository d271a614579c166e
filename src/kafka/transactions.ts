/**
 * The transaction APIs (KIP-98) as translators over the one transaction
 * coordinator (src/broker/txn_coordinator.ts): InitProducerId with a
 * transactional id, AddPartitionsToTxn (24), AddOffsetsToTxn (25), EndTxn
 * (26), TxnOffsetCommit (28), DescribeTransactions (65) and
 * ListTransactions (66). The coordinator runs on the leader; elsewhere the
 * answer is NOT_COORDINATOR and the client asks FindCoordinator again.
 *
 * @module
 */
import type { TopicPartition } from "../broker/partition_ops.ts";
import type { TxnView } from "../broker/txn_coordinator.ts";
import { YakError } from "../errors.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

/**
 * A transaction API's error code. A follower (or no leader) is not the
 * coordinator; a replicated write that did not get through is retriable
 * (COORDINATOR_NOT_AVAILABLE); a fenced producer is PRODUCER_FENCED from the
 * version `fencedFrom` on (KIP-588) and INVALID_PRODUCER_EPOCH before it.
 */
function txnErrorOf(ctx: KafkaContext, api: string, err: unknown, version: number, fencedFrom: number): number {
  if (!(err instanceof YakError)) {
    ctx.onError(`kafka ${api} failed`, { error: String(err) });
    return KAFKA.UNKNOWN_SERVER_ERROR;
  }
  switch (err.code) {
    case "NOT_LEADER":
    case "STALE_EPOCH":
      return KAFKA.NOT_COORDINATOR;
    case "NO_LEADER":
    case "TIMEOUT":
    case "NOT_ENOUGH_REPLICAS":
    case "NOT_ENOUGH_REPLICAS_AFTER_APPEND":
    case "STORAGE":
    case "UNAVAILABLE":
      return KAFKA.COORDINATOR_NOT_AVAILABLE;
    case "PRODUCER_FENCED":
      return version >= fencedFrom ? KAFKA.PRODUCER_FENCED : KAFKA.INVALID_PRODUCER_EPOCH;
    case "INVALID_ARGUMENT":
      return KAFKA.INVALID_GROUP_ID;
    default:
      return kafkaErrorOf(err.code);
  }
}

/** InitProducerId with a transactional id (the rest of produce.ts's initProducerId): v0-4. */
export async function initTransactionalProducer(
  ctx: KafkaContext,
  req: ApiRequest,
  id: string,
  w: Writer,
): Promise<void> {
  const { version: v, body: r } = req;
  const timeoutMs = r.int32();
  const expected = v >= 3 ? { producerId: r.int64Big(), epoch: r.int16() } : null;
  let error = 0;
  let answer = { producerId: -1n, epoch: -1 };
  try {
    answer = await ctx.services.transactions.initProducer(id, timeoutMs, expected);
  } catch (err) {
    error = txnErrorOf(ctx, "init producer id", err, v, 4);
  }
  w.int32(0).int16(error).int64(answer.producerId).int16(answer.epoch);
}

/** Handles AddPartitionsToTxn v0-3 (v3 flexible): per partition, an error code. */
export async function addPartitionsToTxn(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const id = r.string();
  const producerId = r.int64Big();
  const epoch = r.int16();
  const topics = r.array((r) => ({ name: r.string(), parts: r.int32Array() }), 4);
  const asked: TopicPartition[] = topics.flatMap((t) => t.parts.map((partition) => ({ topic: t.name, partition })));
  const errors = new Map<string, number>();
  try {
    const out = await ctx.services.transactions.addPartitions(id, producerId, epoch, asked);
    const failed = [...out.values()].some((e) => e !== null);
    for (const [key, err] of out) {
      // As Kafka: when one partition cannot join, the others are not attempted (nothing was added).
      errors.set(key, err ? kafkaErrorOf(err.code) : failed ? KAFKA.OPERATION_NOT_ATTEMPTED : 0);
    }
  } catch (err) {
    const code = txnErrorOf(ctx, "add partitions to txn", err, v, 2);
    for (const tp of asked) errors.set(`${tp.topic}/${tp.partition}`, code);
  }
  w.int32(0);
  w.array(topics, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => w.int32(p).int16(errors.get(`${t.name}/${p}`) ?? 0));
  });
}

/** Handles AddOffsetsToTxn v0-3 (v3 flexible). */
export async function addOffsetsToTxn(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const id = r.string();
  const producerId = r.int64Big();
  const epoch = r.int16();
  const group = r.string();
  let error = 0;
  try {
    await ctx.services.transactions.addOffsets(id, producerId, epoch, group);
  } catch (err) {
    error = txnErrorOf(ctx, "add offsets to txn", err, v, 2);
  }
  w.int32(0).int16(error);
}

/** Handles EndTxn v0-3 (v3 flexible): answered once every marker is written and replicated. */
export async function endTxn(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const id = r.string();
  const producerId = r.int64Big();
  const epoch = r.int16();
  const committed = r.bool();
  let error = 0;
  try {
    await ctx.services.transactions.endTxn(id, producerId, epoch, committed);
  } catch (err) {
    error = txnErrorOf(ctx, "end txn", err, v, 2);
  }
  w.int32(0).int16(error);
}

/**
 * Handles TxnOffsetCommit v0-3 (v3 flexible; v2 adds the leader epoch, v3
 * the member, checked as a commit's): the offsets become the group's commits
 * when the transaction commits.
 */
export async function txnOffsetCommit(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const id = r.string();
  const group = r.string();
  const producerId = r.int64Big();
  const epoch = r.int16();
  const generation = v >= 3 ? r.int32() : -1;
  const memberId = v >= 3 ? r.string() : "";
  const instance = v >= 3 ? r.nullableString() : null;
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => {
      const partition = r.int32();
      const offset = r.int64OrNull();
      const leaderEpoch = v >= 2 ? r.int32() : -1;
      const metadata = r.nullableString() ?? "";
      return { partition, offset, leaderEpoch, metadata };
    }, 14),
  }), 4);
  const member = memberId !== "" && generation >= 0 ? { memberId, generation, groupInstanceId: instance } : null;
  // An offset past what stored commits hold is refused on its own partition (Reader.int64OrNull); the rest go on.
  const offsets = topics.flatMap((t) =>
    t.parts.flatMap((p) => p.offset === null ? [] : [{ topic: t.name, ...p, offset: p.offset }])
  );
  let error = 0;
  try {
    if (offsets.length > 0) {
      await ctx.services.transactions.txnOffsetCommit(id, group, producerId, epoch, member, offsets);
    }
  } catch (err) {
    error = txnErrorOf(ctx, "txn offset commit", err, v, Infinity);
  }
  w.int32(0);
  w.array(topics, (w, t) => {
    w.string(t.name);
    w.array(
      t.parts,
      (w, p) => w.int32(p.partition).int16(p.offset === null ? KAFKA.INVALID_COMMIT_OFFSET_SIZE : error),
    );
  });
}

/** The coordinator's transactions, or NOT_COORDINATOR on a follower (its view may lag the leader's). */
function transactionsHere(ctx: KafkaContext, ids?: string[]): { error: number; txns: TxnView[] } {
  try {
    ctx.services.requireLeader();
    return { error: 0, txns: ctx.services.transactions.describe(ids) };
  } catch (err) {
    return { error: txnErrorOf(ctx, "describe transactions", err, 0, Infinity), txns: [] };
  }
}

/** Topic -> partition indexes, as DescribeTransactions lists a transaction's partitions. */
function byTopic(parts: readonly TopicPartition[]): [string, number[]][] {
  const out = new Map<string, number[]>();
  for (const tp of parts) (out.get(tp.topic) ?? out.set(tp.topic, []).get(tp.topic)!).push(tp.partition);
  return [...out];
}

/** Handles DescribeTransactions v0 (flexible): each id's state, producer, timeout, start and partitions. */
export function describeTransactions(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const ids = req.body.stringArray();
  const { error, txns } = transactionsHere(ctx, ids);
  const found = new Map(txns.map((t) => [t.id, t]));
  w.int32(0);
  w.array(ids, (w, id) => {
    const t = found.get(id);
    // An id the coordinator does not know: TRANSACTIONAL_ID_NOT_FOUND, as Kafka answers.
    w.int16(error !== 0 ? error : t ? 0 : KAFKA.TRANSACTIONAL_ID_NOT_FOUND).string(id);
    w.string(t?.state ?? "").int32(t?.timeoutMs ?? -1).int64(t?.startedAt ?? -1);
    w.int64(t?.producerId ?? -1n).int32(t?.epoch ?? -1);
    w.array(byTopic(t?.partitions ?? []), (w, [topic, parts]) => w.string(topic).int32Array(parts));
  });
}

/** Handles ListTransactions v0 (flexible): every id, filtered by state and producer id when asked. */
export function listTransactions(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { body: r } = req;
  const states = r.stringArray();
  const n = r.arrayLength(8);
  const producers = new Set<bigint>();
  for (let i = 0; i < n; i++) producers.add(r.int64Big());
  const { error, txns } = transactionsHere(ctx);
  const shown = txns.filter((t) =>
    (states.length === 0 || states.includes(t.state)) && (producers.size === 0 || producers.has(t.producerId))
  );
  w.int32(0).int16(error);
  w.array(shown, (w, t) => w.string(t.id).int64(t.producerId).string(t.state));
}
