/**
 * Cluster metadata (topics, partition counts, committed group offsets) as the
 * state of the internal `__cluster` log. Every replica derives it by applying
 * the same records, so a new leader knows what the old one acknowledged.
 *
 * @module
 */
import { derivedTopicId } from "./topic_id.ts";

/** The internal topic that holds metadata records; like Kafka's `__consumer_offsets`. */
export const CLUSTER_TOPIC = "__cluster";
/** The replication key of the metadata log. */
export const CLUSTER_KEY = `${CLUSTER_TOPIC}/0`;

/** A topic creation or partition increase. */
export interface TopicOp {
  op: "topic";
  topic: string;
  partitions: number;
  createdAt: number;
  /** Configs set (merged over the topic's), e.g. `{"min.insync.replicas": "2"}`. */
  configs?: Record<string, string>;
  /** Configs removed (back to the broker's defaults). */
  deleteConfigs?: string[];
  /**
   * The topic's incarnation, fixed at creation: a topic deleted and created
   * again under the same name is another topic, and a replica that missed
   * the deletion must not keep the old one's records.
   */
  id?: string;
}

/** A topic deleted everywhere (`yak topics --delete`), with the group commits on it. */
export interface TopicDeleteOp {
  op: "topic_delete";
  topic: string;
  id?: string;
}

/**
 * The whole metadata state at one point: written as the first record of a
 * new `__cluster` segment, after which the older segments are deleted, so the
 * metadata log stays bounded and a restart replays only from here.
 */
export interface SnapshotOp {
  op: "snapshot";
  topics: Record<string, TopicMeta>;
  groups: Record<string, Record<string, Record<string, number>>>;
  /** What commits said beside their offsets, where they said anything (same nesting as `groups`). */
  commitInfo?: Record<string, Record<string, Record<string, CommitInfo>>>;
  producerIds?: ProducerIdsState;
  /** Transactional ids and their transactions (see {@link TxnOp}). */
  txns?: Record<string, TxnMeta>;
  /** Aborted transactions by partition key: [producer number, first offset, marker offset]. */
  aborted?: Record<string, [number, number, number][]>;
}

/** What the producer-id records add up to. */
export interface ProducerIdsState {
  key: string;
  next: number;
}

/**
 * The producer-id block the leader reserved (see producer_ids.ts): counters
 * below `next` may have been issued; `key` (hex) is the secret of the keyed
 * permutation that turns a counter into an id. The first key stays for good.
 */
export interface ProducerIdsOp {
  op: "producer_ids";
  key: string;
  next: number;
}

/** A consumer group's committed offsets for some partitions of a topic. */
export interface CommitOp {
  op: "commit";
  group: string;
  topic: string;
  offsets: Record<string, number>;
  /** By partition, what a Kafka commit said beside the offset (absent: nothing). */
  info?: Record<string, CommitInfo>;
}

/** A Kafka commit's metadata string (`m`) and the leader epoch of the committed offset (`e`), when given. */
export interface CommitInfo {
  m?: string;
  e?: number;
}

/** A group's commits deleted (`yak groups --delete`). */
export interface GroupDeleteOp {
  op: "group_delete";
  group: string;
}

/**
 * Some of a group's committed offsets deleted (Kafka's OffsetDelete, `yak groups --delete-offsets`): topic ->
 * partitions. A group left with no commit (and no member) is gone, as Kafka's cleanup ends such a group.
 */
export interface OffsetDeleteOp {
  op: "offset_delete";
  group: string;
  offsets: Record<string, number[]>;
}

/**
 * Where a transactional id's transaction stands: Kafka's states. `Ongoing`
 * from its first partition; `PrepareCommit`/`PrepareAbort` once the
 * coordinator decided (the markers are being written); `Complete*` once
 * every marker is in.
 */
export type TxnStateName = "Empty" | "Ongoing" | "PrepareCommit" | "PrepareAbort" | "CompleteCommit" | "CompleteAbort";

/** A transaction's states in which its partitions are not decided yet (the last stable offset waits for it). */
export const OPEN_TXN_STATES: ReadonlySet<TxnStateName> = new Set(["Ongoing", "PrepareCommit", "PrepareAbort"]);

/** An offset a TxnOffsetCommit sent: [offset, metadata, leader epoch]. */
export type TxnOffset = [number, string, number];

/** A transactional id as the coordinator keeps it in `__cluster`. */
export interface TxnMeta {
  /** The producer's stored number (its `p<n>`): the secret id is derived from it by the leader, never stored. */
  producer: number;
  epoch: number;
  timeoutMs: number;
  state: TxnStateName;
  /** Partition key ("t/0") -> the partition's log end when it joined: the transaction's records lie at or after it. */
  partitions: Record<string, number>;
  /** Groups added (AddOffsetsToTxn), and the offsets sent for them: group -> topic -> partition -> offset. */
  groups?: string[];
  offsets?: Record<string, Record<string, Record<string, TxnOffset>>>;
  /** Wall-clock ms the open transaction started (0 when none is open), and of the last change. */
  startedAt: number;
  updatedAt: number;
  /**
   * The transaction before this one, decided by the same record that opened
   * this one (yak produce's `next`): its markers go in once that record is
   * on the in-sync replicas, and a later record takes it away once they are.
   * Until then it is open to readers, and this one's partitions that it
   * shares start at its start (a bound below the truth: the record that
   * takes it away moves them past its markers).
   */
  completing?: CompletingTxn;
}

/** A decided transaction whose markers are being placed, completing while the next one is open. */
export interface CompletingTxn {
  state: "PrepareCommit" | "PrepareAbort";
  partitions: Record<string, number>;
  /**
   * Partition key -> the log end when it was decided: its marker lies at or
   * after it, and no record of the next transaction lies between the two
   * (a new leader looks for the marker from there, and places it if it is
   * not in its log).
   */
  from?: Record<string, number>;
  /**
   * Partition key -> its marker's offset, when known as the record was
   * written (records of yak before one record both decided and opened).
   */
  markers?: Record<string, number>;
  offsets?: Record<string, Record<string, Record<string, TxnOffset>>>;
}

/**
 * A transactional id's new state (null: expired, forgotten). With `commit`,
 * the transaction's group offsets become the groups' commits in the same
 * step; with `aborted`, each partition's aborted range ([first offset, marker
 * offset]) joins the aborted index that read_committed fetches answer with.
 */
export interface TxnOp {
  op: "txn";
  id: string;
  txn: TxnMeta | null;
  commit?: Record<string, Record<string, Record<string, TxnOffset>>>;
  aborted?: Record<string, [number, number]>;
}

/**
 * A cleaning of a compacted partition, as the leader decided it (see
 * src/broker/compactor.ts and src/log/cleaner.ts): every replica carries it
 * out on its copy. `at` is the leader's clock when it decided.
 */
export interface CleanDecision {
  to: number;
  purgeBelow: number;
  horizonMs: number;
  /** See Cleaning.markersBelow (src/log/clean_state.ts); absent (0) in decisions from before markers were removed. */
  markersBelow?: number;
  at: number;
  /**
   * The ends of the recent cleanings and when they were decided ([to, at]),
   * this one's last, those not yet below markersBelow: the next decision's
   * markersBelow is the highest one decided delete.retention.ms before it.
   * At most {@link MAX_CLEAN_ENDS}.
   */
  ends?: [number, number][];
  /** See Cleaning.mergeBelow and Cleaning.bases (src/log/clean_state.ts). */
  mergeBelow?: number;
  bases?: number[];
}

/** The most cleaning ends a decision carries: past it the oldest but one goes (markers then wait a little longer). */
export const MAX_CLEAN_ENDS = 8;

/** A {@link CleanDecision} for one partition of a topic (of incarnation `id`). */
export interface CleanOp extends CleanDecision {
  op: "clean";
  topic: string;
  partition: number;
  id?: string;
}

/** One metadata record's value. */
export type MetaOp =
  | TopicOp
  | CommitOp
  | GroupDeleteOp
  | OffsetDeleteOp
  | TopicDeleteOp
  | SnapshotOp
  | ProducerIdsOp
  | TxnOp
  | CleanOp;

/** An aborted transaction in one partition: the producer's number, its first offset and its marker's. */
export interface AbortedTxn {
  producer: number;
  first: number;
  last: number;
}

/** A topic as metadata knows it. */
export interface TopicMeta {
  partitions: number;
  createdAt: number;
  configs: Record<string, string>;
  /** Absent in records written before topics had ids: see {@link topicIdOf}. */
  id?: string;
  /** Partition -> the last cleaning decided (compacted topics): a snapshot keeps it. */
  cleaned?: Record<string, CleanDecision>;
}

/**
 * A topic's id: the one its record carries, else (a topic created before
 * ids were recorded) one derived from its name and creation time, the same
 * on every replica and after every restart (see topic_id.ts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { topicIdOf } from "./metadata.ts";
 * const id = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0";
 * assert.equal(topicIdOf("t", { partitions: 1, createdAt: 0, configs: {}, id }), id);
 * assert.equal(topicIdOf("t", { partitions: 1, createdAt: 0, configs: {} }).length, 36);
 * ```
 */
export function topicIdOf(topic: string, meta: TopicMeta): string {
  return meta.id ?? derivedTopicId(topic, meta.createdAt);
}

/**
 * The state that metadata records build up.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Metadata } from "./metadata.ts";
 * const meta = new Metadata();
 * meta.apply({ op: "topic", topic: "t", partitions: 3, createdAt: 0 });
 * assert.equal(meta.topics.get("t")?.partitions, 3);
 * // A cleaning decided for partition 1 stays with the topic (through config changes and snapshots).
 * meta.apply({ op: "clean", topic: "t", partition: 1, to: 100, purgeBelow: 40, horizonMs: 5, at: 9 });
 * meta.apply({ op: "topic", topic: "t", partitions: 3, createdAt: 0, configs: { "cleanup.policy": "compact" } });
 * assert.equal(meta.topics.get("t")?.cleaned?.["1"].to, 100);
 * ```
 */
export class Metadata {
  readonly topics = new Map<string, TopicMeta>();
  /** group -> topic -> partition -> next offset to read. */
  readonly groups = new Map<string, Map<string, Map<number, number>>>();
  /** group -> topic -> partition -> what the commit said beside the offset, for the commits that said anything. */
  readonly commitInfo = new Map<string, Map<string, Map<number, CommitInfo>>>();
  /** Producer ids reserved so far, and the key that makes them; null until the first is issued. */
  producerIds: ProducerIdsState | null = null;
  /** Transactional id -> its producer and transaction. */
  readonly txns = new Map<string, TxnMeta>();
  /** Producer number -> the transactional id it belongs to. */
  readonly txnOfProducer = new Map<number, string>();
  /** Partition key -> transactional id -> where its open transaction's records start there. */
  readonly openTxns = new Map<string, Map<string, number>>();
  /** Partition key -> its aborted transactions, in marker order. */
  readonly aborted = new Map<string, AbortedTxn[]>();

  apply(op: MetaOp): void {
    if (op.op === "topic") {
      // Another incarnation of the name replaces the old one whole.
      const known = this.topics.get(op.topic);
      const old = op.id !== undefined && known?.id !== undefined && known.id !== op.id ? undefined : known;
      const configs = { ...old?.configs, ...op.configs };
      for (const key of op.deleteConfigs ?? []) delete configs[key];
      this.topics.set(op.topic, {
        // Partitions only grow; a replayed older record never shrinks a topic.
        partitions: Math.max(old?.partitions ?? 0, op.partitions),
        createdAt: old?.createdAt ?? op.createdAt,
        configs,
        id: op.id ?? old?.id,
        ...(old?.cleaned ? { cleaned: old.cleaned } : {}),
      });
    } else if (op.op === "txn") {
      this.#applyTxn(op);
    } else if (op.op === "topic_delete") {
      for (const map of [this.openTxns, this.aborted]) {
        for (const key of map.keys()) if (key.slice(0, key.lastIndexOf("/")) === op.topic) map.delete(key);
      }
      this.topics.delete(op.topic);
      for (const byTopic of this.groups.values()) byTopic.delete(op.topic);
      for (const byTopic of this.commitInfo.values()) byTopic.delete(op.topic);
    } else if (op.op === "snapshot") {
      this.clear();
      for (const [name, t] of Object.entries(op.topics)) this.topics.set(name, { ...t, configs: { ...t.configs } });
      for (const [group, byTopic] of Object.entries(op.groups)) {
        const m = new Map<string, Map<number, number>>();
        for (const [topic, offsets] of Object.entries(byTopic)) {
          m.set(topic, new Map(Object.entries(offsets).map(([p, o]) => [Number(p), o])));
        }
        this.groups.set(group, m);
      }
      for (const [group, byTopic] of Object.entries(op.commitInfo ?? {})) {
        for (const [topic, info] of Object.entries(byTopic)) this.#setInfo(group, topic, info, Object.keys(info));
      }
      if (op.producerIds) this.producerIds = { ...op.producerIds };
      for (const [id, txn] of Object.entries(op.txns ?? {})) this.#applyTxn({ op: "txn", id, txn });
      for (const [key, list] of Object.entries(op.aborted ?? {})) {
        this.aborted.set(key, list.map(([producer, first, last]) => ({ producer, first, last })));
      }
    } else if (op.op === "producer_ids") {
      // Reserved blocks only grow, and the first key stays: ids issued under it must stay valid.
      this.producerIds = {
        key: this.producerIds?.key ?? op.key,
        next: Math.max(this.producerIds?.next ?? 0, op.next),
      };
    } else if (op.op === "clean") {
      this.#applyClean(op);
    } else if (op.op === "group_delete") {
      this.groups.delete(op.group);
      this.commitInfo.delete(op.group);
    } else if (op.op === "offset_delete") {
      this.#deleteOffsets(op);
    } else if (op.op === "commit") {
      let byTopic = this.groups.get(op.group);
      if (!byTopic) this.groups.set(op.group, byTopic = new Map());
      let byPartition = byTopic.get(op.topic);
      if (!byPartition) byTopic.set(op.topic, byPartition = new Map());
      for (const [p, off] of Object.entries(op.offsets)) {
        byPartition.set(Number(p), off);
      }
      // A commit that says nothing beside an offset clears what an earlier one said.
      this.#setInfo(op.group, op.topic, op.info ?? {}, Object.keys(op.offsets));
    }
  }

  /** A cleaning decided for a partition: the newest stands (replayed older ones never undo it). */
  #applyClean(op: CleanOp): void {
    const t = this.topics.get(op.topic);
    if (!t || (op.id !== undefined && t.id !== undefined && op.id !== t.id)) return;
    const p = String(op.partition);
    const old = t.cleaned?.[p];
    const newer = old === undefined || op.at >= old.at ? op : old;
    const markersBelow = Math.max(old?.markersBelow ?? 0, op.markersBelow ?? 0);
    const merged: CleanDecision = {
      to: Math.max(old?.to ?? 0, op.to),
      purgeBelow: Math.max(old?.purgeBelow ?? 0, op.purgeBelow),
      horizonMs: Math.max(old?.horizonMs ?? 0, op.horizonMs),
      ...(markersBelow > 0 ? { markersBelow } : {}),
      at: Math.max(old?.at ?? 0, op.at),
      ...(newer.ends ? { ends: newer.ends.map(([to, at]) => [to, at] as [number, number]) } : {}),
      ...(newer.mergeBelow !== undefined && newer.bases
        ? { mergeBelow: newer.mergeBelow, bases: [...newer.bases] }
        : old?.mergeBelow !== undefined && old.bases
        ? { mergeBelow: old.mergeBelow, bases: [...old.bases] }
        : {}),
    };
    t.cleaned = { ...t.cleaned, [p]: merged };
  }

  /** A transactional id's new state, with the commits or aborted ranges its completion brings. */
  #applyTxn(op: TxnOp): void {
    const old = this.txns.get(op.id);
    if (old) {
      for (const key of Object.keys({ ...old.partitions, ...old.completing?.partitions })) {
        this.openTxns.get(key)?.delete(op.id);
      }
      if (old.producer !== op.txn?.producer) this.txnOfProducer.delete(old.producer);
    }
    if (op.txn === null) this.txns.delete(op.id);
    else {
      const txn = structuredClone(op.txn);
      this.txns.set(op.id, txn);
      this.txnOfProducer.set(txn.producer, op.id);
      const starts = [
        ...Object.entries(OPEN_TXN_STATES.has(txn.state) ? txn.partitions : {}),
        ...Object.entries(txn.completing?.partitions ?? {}),
      ];
      for (const [key, start] of starts) {
        let open = this.openTxns.get(key);
        if (!open) this.openTxns.set(key, open = new Map());
        open.set(op.id, Math.min(start, open.get(op.id) ?? Infinity));
      }
    }
    for (const [group, byTopic] of Object.entries(op.commit ?? {})) {
      for (const [topic, parts] of Object.entries(byTopic)) {
        const offsets = Object.fromEntries(Object.entries(parts).map(([p, [off]]) => [p, off]));
        const info = Object.fromEntries(Object.entries(parts).map(([p, [, m, e]]) => [p, { m, e }]));
        this.apply({ op: "commit", group, topic, offsets, info });
      }
    }
    for (const [key, [first, last]] of Object.entries(op.aborted ?? {})) {
      let list = this.aborted.get(key);
      if (!list) this.aborted.set(key, list = []);
      // Kept sorted by marker offset (two transactions' completions may land in the other order than their markers).
      let at = list.length;
      while (at > 0 && list[at - 1].last > last) at--;
      list.splice(at, 0, { producer: op.txn?.producer ?? -1, first, last });
    }
  }

  /** The first offset of a partition that an open transaction may still hold (Infinity: none). */
  firstOpenOffset(key: string): number {
    let first = Infinity;
    for (const start of this.openTxns.get(key)?.values() ?? []) first = Math.min(first, start);
    return first;
  }

  /**
   * A partition's aborted transactions that may hold records in [from, to).
   * The list is sorted by `last`: a binary search finds the first that ends
   * at or after `from`.
   */
  abortedIn(key: string, from: number, to: number): AbortedTxn[] {
    const list = this.aborted.get(key) ?? [];
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].last < from) lo = mid + 1;
      else hi = mid;
    }
    const out: AbortedTxn[] = [];
    for (let i = lo; i < list.length; i++) if (list[i].first < to) out.push(list[i]);
    return out;
  }

  /** Removes the partitions' commits (and what they said); a topic, or a group, with none left goes too. */
  #deleteOffsets(op: OffsetDeleteOp): void {
    for (const state of [this.groups, this.commitInfo] as Map<string, Map<string, Map<number, unknown>>>[]) {
      const byTopic = state.get(op.group);
      if (!byTopic) continue;
      for (const [topic, partitions] of Object.entries(op.offsets)) {
        const byPartition = byTopic.get(topic);
        for (const p of partitions) byPartition?.delete(p);
        if (byPartition?.size === 0) byTopic.delete(topic);
      }
      if (byTopic.size === 0) state.delete(op.group);
    }
  }

  /** Sets (or, where `info` has none, clears) the commit info of `partitions`. */
  #setInfo(group: string, topic: string, info: Record<string, CommitInfo>, partitions: string[]): void {
    let byTopic = this.commitInfo.get(group);
    let byPartition = byTopic?.get(topic);
    for (const p of partitions) {
      const said = info[p];
      if (said === undefined) {
        byPartition?.delete(Number(p));
        continue;
      }
      if (!byTopic) this.commitInfo.set(group, byTopic = new Map());
      if (!byPartition) byTopic.set(topic, byPartition = new Map());
      byPartition.set(Number(p), { ...said });
    }
  }

  /** The whole state as one op (see {@link SnapshotOp}). */
  snapshot(): SnapshotOp {
    const groups: SnapshotOp["groups"] = {};
    for (const [group, byTopic] of this.groups) {
      groups[group] = {};
      for (const [topic, offsets] of byTopic) groups[group][topic] = Object.fromEntries(offsets);
    }
    const snap: SnapshotOp = { op: "snapshot", topics: Object.fromEntries(this.topics), groups };
    const commitInfo: NonNullable<SnapshotOp["commitInfo"]> = {};
    for (const [group, byTopic] of this.commitInfo) {
      for (const [topic, info] of byTopic) {
        if (info.size > 0) (commitInfo[group] ??= {})[topic] = Object.fromEntries(info);
      }
    }
    if (Object.keys(commitInfo).length > 0) snap.commitInfo = commitInfo;
    if (this.producerIds) snap.producerIds = { ...this.producerIds };
    if (this.txns.size > 0) snap.txns = structuredClone(Object.fromEntries(this.txns));
    if (this.aborted.size > 0) {
      snap.aborted = Object.fromEntries(
        [...this.aborted].map(([key, list]) => [key, list.map((a) => [a.producer, a.first, a.last])]),
      );
    }
    return snap;
  }

  clear(): void {
    this.topics.clear();
    this.groups.clear();
    this.commitInfo.clear();
    this.producerIds = null;
    this.txns.clear();
    this.txnOfProducer.clear();
    this.openTxns.clear();
    this.aborted.clear();
  }

  /** Parses the ops stored in a chunk of `__cluster` lines (the op is each record's value). */
  static parseLines(text: string): MetaOp[] {
    const ops: MetaOp[] = [];
    for (const line of text.split("\n")) {
      if (line.length === 0) continue;
      const record = JSON.parse(line);
      ops.push(JSON.parse(record.value) as MetaOp);
    }
    return ops;
  }
}
