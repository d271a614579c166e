/**
 * Native transactions: `init_producer` with a `transactionalId`,
 * `add_partitions_to_txn`, `end_txn` and `transactions` (what `yak
 * transactions` lists), translated onto the one transaction coordinator the
 * Kafka codec uses too (src/broker/txn_coordinator.ts).
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import { int, optInt, type Reply, type Request, str } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";

/** A transactional producer's id and epoch as a request carries them (`producer` as decimal text). */
function producerOf(req: Request): { producerId: bigint; epoch: number } {
  const producer = str(req, "producer", 20);
  if (!/^[0-9]{1,16}$/.test(producer)) {
    throw new YakError("INVALID_PRODUCER_ID_MAPPING", "'producer' must be the id 'init_producer' answered");
  }
  return { producerId: BigInt(producer), epoch: int(req, "producerEpoch", 0, 32767) };
}

/** `init_producer` with `transactionalId` (and `transactionTimeoutMs`): the id's producer id, its epoch bumped. */
export async function initTransactionalProducer(s: BrokerServices, req: Request): Promise<Reply> {
  const id = str(req, "transactionalId");
  const timeoutMs = optInt(req, "transactionTimeoutMs", DEFAULTS.transactionDefaultTimeoutMs, 0, 2 ** 31 - 1);
  const { producerId, epoch } = await s.transactions.initProducer(id, timeoutMs);
  return { producerId: String(producerId), producerEpoch: epoch };
}

/** `add_partitions_to_txn`: `partitions` of `topic` join the transaction of `transactionalId`. */
export async function addPartitionsToTxn(s: BrokerServices, req: Request): Promise<Reply> {
  const id = str(req, "transactionalId");
  const { producerId, epoch } = producerOf(req);
  const parts = partitionsOf(req.topic, req.partitions, "partitions");
  const out = await s.transactions.addPartitions(id, producerId, epoch, parts);
  for (const err of out.values()) if (err) throw err;
  return {};
}

/** A topic's partitions a request lists (`field` names them in errors). */
function partitionsOf(topicField: unknown, raw: unknown, field: string): { topic: string; partition: number }[] {
  const topic = checkTopicName(topicField);
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > DEFAULTS.maxPartitionsPerTransaction) {
    throw new YakError("INVALID_REQUEST", `'${field}' must list 1 to ${DEFAULTS.maxPartitionsPerTransaction}`);
  }
  return raw.map((p) => {
    if (!Number.isInteger(p)) throw new YakError("INVALID_REQUEST", `'${field}' must list partition numbers`);
    return { topic, partition: p as number };
  });
}

/**
 * `end_txn`: commits (`commit: true`) or aborts the open transaction;
 * answered once its markers are in. With `next` (`{topic, partitions}`),
 * the record that decides it opens the next transaction with those
 * partitions, and the answer goes once its markers are placed (what the
 * producer sends next lands after them); read_committed readers see it once
 * the in-sync replicas hold them.
 */
export async function endTxn(s: BrokerServices, req: Request): Promise<Reply> {
  const id = str(req, "transactionalId");
  const { producerId, epoch } = producerOf(req);
  if (typeof req.commit !== "boolean") throw new YakError("INVALID_REQUEST", "'commit' must be true or false");
  let next: { topic: string; partition: number }[] = [];
  if (req.next !== undefined) {
    if (typeof req.next !== "object" || req.next === null) {
      throw new YakError("INVALID_REQUEST", "'next' must be {topic, partitions}");
    }
    const n = req.next as Record<string, unknown>;
    next = partitionsOf(n.topic, n.partitions, "next.partitions");
  }
  await s.transactions.endTxn(id, producerId, epoch, req.commit, next);
  return {};
}

/** `transactions`: every transactional id the leader coordinates, with its transaction. */
export function transactions(s: BrokerServices): Reply {
  s.requireLeader();
  const now = Date.now();
  return {
    transactions: s.transactions.describe().map((t) => ({
      id: t.id,
      state: t.state,
      producer: t.producer,
      epoch: t.epoch,
      timeoutMs: t.timeoutMs,
      startedAt: t.startedAt,
      ageMs: t.startedAt >= 0 ? Math.max(0, now - t.startedAt) : null,
      partitions: t.partitions.map((tp) => `${tp.topic}/${tp.partition}`),
      groups: t.groups,
    })),
  };
}
