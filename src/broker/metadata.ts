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
}

/** A consumer group's committed offsets for some partitions of a topic. */
export interface CommitOp {
  op: "commit";
  group: string;
  topic: string;
  offsets: Record<string, number>;
}

/** A group's commits deleted (`yak groups --delete`). */
export interface GroupDeleteOp {
  op: "group_delete";
  group: string;
}

/** One metadata record's value. */
export type MetaOp = TopicOp | CommitOp | GroupDeleteOp;

/** A topic as metadata knows it. */
export interface TopicMeta {
  partitions: number;
  createdAt: number;
  configs: Record<string, string>;
}

/**
 * The state that metadata records build up.
 *
 * @example
 * ```ts
 * import { Metadata } from "./metadata.ts";
 * const meta = new Metadata();
 * meta.apply({ op: "topic", topic: "t", partitions: 3, createdAt: 0 });
 * meta.topics.get("t")?.partitions; // 3
 * ```
 */
export class Metadata {
  readonly topics = new Map<string, TopicMeta>();
  /** group -> topic -> partition -> next offset to read. */
  readonly groups = new Map<string, Map<string, Map<number, number>>>();

  apply(op: MetaOp): void {
    if (op.op === "topic") {
      const old = this.topics.get(op.topic);
      this.topics.set(op.topic, {
        // Partitions only grow; a replayed older record never shrinks a topic.
        partitions: Math.max(old?.partitions ?? 0, op.partitions),
        createdAt: old?.createdAt ?? op.createdAt,
        configs: { ...old?.configs, ...op.configs },
      });
    } else if (op.op === "group_delete") {
      this.groups.delete(op.group);
    } else if (op.op === "commit") {
      let byTopic = this.groups.get(op.group);
      if (!byTopic) this.groups.set(op.group, byTopic = new Map());
      let byPartition = byTopic.get(op.topic);
      if (!byPartition) byTopic.set(op.topic, byPartition = new Map());
      for (const [p, off] of Object.entries(op.offsets)) {
        byPartition.set(Number(p), off);
      }
    }
  }

  clear(): void {
    this.topics.clear();
    this.groups.clear();
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
