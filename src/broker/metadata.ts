/**
 * Cluster metadata (topics, partition counts, committed group offsets) as the
 * state of the internal `__cluster` log. Every replica derives it by applying
 * the same records, so a new leader knows what the old one acknowledged.
 *
 * @module
 */

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

/** One metadata record's value. */
export type MetaOp = TopicOp | CommitOp | GroupDeleteOp | OffsetDeleteOp | TopicDeleteOp | SnapshotOp | ProducerIdsOp;

/** A topic as metadata knows it. */
export interface TopicMeta {
  partitions: number;
  createdAt: number;
  configs: Record<string, string>;
  id?: string;
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
      });
    } else if (op.op === "topic_delete") {
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
    } else if (op.op === "producer_ids") {
      // Reserved blocks only grow, and the first key stays: ids issued under it must stay valid.
      this.producerIds = {
        key: this.producerIds?.key ?? op.key,
        next: Math.max(this.producerIds?.next ?? 0, op.next),
      };
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
    return snap;
  }

  clear(): void {
    this.topics.clear();
    this.groups.clear();
    this.commitInfo.clear();
    this.producerIds = null;
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
