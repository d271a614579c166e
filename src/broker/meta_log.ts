/**
 * Writing to the metadata log (`__cluster/0`) as the leader: topic changes
 * and group commits are records there, replicated like data, so every replica
 * and every later leader derives the same state.
 *
 * @module
 */
import { encodeBatch } from "../log/record.ts";
import type { BrokerContext } from "./context.ts";
import { CLUSTER_KEY, type MetaOp } from "./metadata.ts";

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
  const key = op.op === "topic" || op.op === "topic_delete" ? op.topic : op.op === "snapshot" ? "snapshot" : op.group;
  const appended = b.store.clusterLog.append(
    epoch,
    1,
    (base) => encodeBatch([{ key, value: JSON.stringify(op) }], base, epoch, Date.now(), null, 0),
  );
  await appended.done;
  await b.store.apply(op);
  leader.updateHw(CLUSTER_KEY);
  return appended.baseOffset + 1;
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
