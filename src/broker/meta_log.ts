/**
 * Writing to the metadata log (`__cluster/0`) as the leader: topic changes
 * and group commits are records there, replicated like data, so every replica
 * and every later leader derives the same state.
 *
 * @module
 */
import { writeBatch } from "../log/record.ts";
import type { PartitionLog } from "../log/partition_log.ts";
import type { BrokerContext } from "./context.ts";
import { CLUSTER_KEY, Metadata, type MetaOp, type SnapshotOp } from "./metadata.ts";

/**
 * Ops whose offsets are taken in the metadata log but whose writes are not
 * done, so the in-memory state does not hold them yet; in log order.
 */
const unapplied = new WeakMap<PartitionLog, Set<{ op: MetaOp }>>();

/**
 * Appends one metadata op as the leader and applies it locally; resolves with
 * the metadata log's new end once the write is done (not yet replicated:
 * wait for the high watermark to pass it, see {@link appendMetaReplicated}).
 *
 * @example
 * ```ts ignore
 * const end = await appendMeta(broker, { op: "commit", group: "g", topic: "t", offsets: { "0": 5 } });
 * ```
 */
export async function appendMeta(b: BrokerContext, op: MetaOp): Promise<number> {
  const leader = b.requireLeader();
  const epoch = leader.epoch;
  const key = op.op === "topic" || op.op === "topic_delete" || op.op === "clean"
    ? op.topic
    : op.op === "snapshot" || op.op === "producer_ids"
    ? op.op
    : op.op === "txn"
    ? `txn:${op.id}`
    : op.group;
  const log = b.store.clusterLog;
  const appended = log.append(
    epoch,
    1,
    (base) => writeBatch([{ key, value: JSON.stringify(op) }], base, epoch, Date.now(), null, 0),
  );
  let pending = unapplied.get(log);
  if (!pending) unapplied.set(log, pending = new Set());
  const entry = { op };
  pending.add(entry);
  try {
    await appended.done;
  } finally {
    pending.delete(entry);
  }
  // In the same synchronous step as leaving `unapplied` (the state changes before store.apply's first await).
  await b.store.apply(op);
  leader.updateHw(CLUSTER_KEY);
  return appended.baseOffset + 1;
}

/**
 * The whole metadata state as of the log's end: what is applied plus the ops
 * still being written. A snapshot appended now must hold those too, or
 * applying it (and every replay after) would erase them.
 *
 * @example
 * ```ts ignore
 * await appendMeta(broker, snapshotAtLogEnd(broker));
 * ```
 */
export function snapshotAtLogEnd(b: BrokerContext): SnapshotOp {
  const pending = unapplied.get(b.store.clusterLog);
  let snap = b.store.meta.snapshot();
  if (pending && pending.size > 0) {
    const state = new Metadata();
    state.apply(snap);
    for (const { op } of pending) state.apply(op);
    snap = state.snapshot();
  }
  // An aborted transaction whose records retention deleted is no reader's concern any more: the
  // aborted index stays as long as the partitions' records, no longer.
  for (const [key, list] of Object.entries(snap.aborted ?? {})) {
    const log = b.store.byKey(key)?.log;
    const kept = log ? list.filter(([, , last]) => last >= log.logStartOffset) : [];
    if (kept.length > 0) snap.aborted![key] = kept;
    else delete snap.aborted![key];
  }
  return snap;
}

/**
 * Appends a metadata op and resolves once the in-sync replicas hold it.
 *
 * @example
 * ```ts ignore
 * await appendMetaReplicated(broker, op, 10_000);
 * ```
 */
export async function appendMetaReplicated(b: BrokerContext, op: MetaOp, timeoutMs: number): Promise<void> {
  const end = await appendMeta(b, op);
  await b.requireLeader().waitForHw(CLUSTER_KEY, end, timeoutMs);
}
