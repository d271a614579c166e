/**
 * Consumer groups on the leader. Today: committed offsets, kept in the
 * metadata log (`__cluster`) so they are replicated and survive failovers.
 * Membership, generations and assignment (Kafka's classic protocol) come here
 * next, for the native and the Kafka codec alike.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import type { BrokerContext } from "./context.ts";
import { appendMetaReplicated } from "./meta_log.ts";

/** A group's committed offset and lag in one partition. */
export interface GroupPartitionLag {
  committed: number;
  lag: number;
}

/**
 * Commits and reads groups' offsets.
 *
 * @example
 * ```ts ignore
 * const groups = new GroupCoordinator(broker);
 * await groups.commit("audit", "events", new Map([[0, 120]]));
 * groups.committed("audit", "events"); // { "0": 120 }
 * ```
 */
export class GroupCoordinator {
  readonly #b: BrokerContext;

  constructor(b: BrokerContext) {
    this.#b = b;
  }

  /**
   * Commits `partition -> next offset to read` for a group (as the leader);
   * resolves once the in-sync replicas hold the commit.
   */
  async commit(group: string, topic: string, offsets: Map<number, number>): Promise<Record<string, number>> {
    const b = this.#b;
    b.requireLeader();
    const n = b.store.partitionCount(topic);
    if (n === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    const out: Record<string, number> = {};
    for (const [p, off] of offsets) {
      if (p < 0 || p >= n) throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition '${p}'`);
      // A commit past the end would make every later fetch of the group fail.
      const logEnd = b.store.partition(topic, p).logEndOffset;
      if (off > logEnd) {
        throw new YakError("OUT_OF_RANGE", `offset ${off} is past the end (${logEnd}) of ${topic}/${p}`);
      }
      out[p] = off;
    }
    await appendMetaReplicated(b, { op: "commit", group, topic, offsets: out }, b.opts.requestTimeoutMs);
    return out;
  }

  /** The group's committed offsets in a topic, by partition. */
  committed(group: string, topic: string): Record<string, number> {
    return Object.fromEntries(this.#b.store.meta.groups.get(group)?.get(topic) ?? []);
  }

  /** Every group's committed offsets and lag (to the high watermark), for status. */
  lags(): Record<string, Record<string, Record<string, GroupPartitionLag>>> {
    const b = this.#b;
    const out: Record<string, Record<string, Record<string, GroupPartitionLag>>> = {};
    for (const [group, byTopic] of b.store.meta.groups) {
      out[group] = {};
      for (const [topic, byPartition] of byTopic) {
        out[group][topic] = {};
        for (const [p, off] of byPartition) {
          const hw = b.store.partitionCount(topic) > p ? b.store.partition(topic, p).highWatermark : off;
          out[group][topic][p] = { committed: off, lag: Math.max(0, hw - off) };
        }
      }
    }
    return out;
  }
}
