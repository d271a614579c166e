/**
 * The broker's storage: one directory per topic, one partition log per
 * partition directory, plus the `__cluster` metadata log that says which
 * topics exist. Names are checked before they become paths.
 *
 * @module
 */
import { join } from "node:path";
import { checkTopicName } from "../log/names.ts";
import { type LogOptions, PartitionLog } from "../log/partition_log.ts";
import { YakError } from "../errors.ts";
import { CLUSTER_KEY, CLUSTER_TOPIC, Metadata, type MetaOp } from "./metadata.ts";

/** A partition log with its names. */
export interface PartitionRef {
  key: string;
  topic: string;
  partition: number;
  log: PartitionLog;
}

/**
 * Topics and partitions on disk, opened from the metadata log.
 *
 * @example
 * ```ts
 * import { TopicStore } from "./topic_store.ts";
 * const store = await TopicStore.open("/tmp/broker-1/topics", { segmentBytes: 1 << 26, indexIntervalBytes: 4096 });
 * store.partition("events", 0); // throws UNKNOWN_TOPIC until the topic exists
 * ```
 */
export class TopicStore {
  readonly dir: string;
  readonly meta = new Metadata();
  readonly clusterLog: PartitionLog;
  readonly #logOpts: LogOptions;
  readonly #logs = new Map<string, PartitionLog[]>();
  /** All partition logs by replication key (`topic/partition`), the metadata log included. */
  readonly #byKey = new Map<string, PartitionRef>();

  private constructor(
    dir: string,
    clusterLog: PartitionLog,
    logOpts: LogOptions,
  ) {
    this.dir = dir;
    this.clusterLog = clusterLog;
    this.#logOpts = logOpts;
    this.#byKey.set(CLUSTER_KEY, {
      key: CLUSTER_KEY,
      topic: CLUSTER_TOPIC,
      partition: 0,
      log: clusterLog,
    });
  }

  /** Opens the store and every topic the metadata log names. */
  static async open(dir: string, logOpts: LogOptions): Promise<TopicStore> {
    await Deno.mkdir(dir, { recursive: true });
    const clusterLog = await PartitionLog.open(
      join(dir, CLUSTER_TOPIC, "0"),
      logOpts,
    );
    const store = new TopicStore(dir, clusterLog, logOpts);
    await store.replay();
    return store;
  }

  /** Rebuilds metadata from the whole `__cluster` log (at start and after it is truncated). */
  async replay(): Promise<void> {
    this.meta.clear();
    const log = this.clusterLog;
    for (let at = 0; at < log.logEndOffset;) {
      const read = await log.read(at, 4 * 1024 * 1024, log.logEndOffset);
      if (read.count === 0) break;
      for (const op of Metadata.parseLines(read.text)) await this.apply(op);
      at += read.count;
    }
  }

  /** Applies a metadata op: creates directories and opens logs for new partitions. */
  async apply(op: MetaOp): Promise<void> {
    this.meta.apply(op);
    if (op.op !== "topic") return;
    const name = checkTopicName(op.topic);
    const want = this.meta.topics.get(name)!.partitions;
    const logs = this.#logs.get(name) ?? [];
    if (logs.length >= want) return;
    const topicDir = join(this.dir, name);
    await Deno.mkdir(topicDir, { recursive: true });
    for (let p = logs.length; p < want; p++) {
      const log = await PartitionLog.open(
        join(topicDir, String(p)),
        this.#logOpts,
      );
      logs.push(log);
      const key = `${name}/${p}`;
      this.#byKey.set(key, { key, topic: name, partition: p, log });
    }
    this.#logs.set(name, logs);
    const info = {
      name,
      partitions: want,
      createdAt: new Date(this.meta.topics.get(name)!.createdAt).toISOString(),
    };
    await Deno.writeTextFile(
      join(topicDir, "topic.json"),
      JSON.stringify(info, null, 2) + "\n",
    );
  }

  /** Applies the ops in a chunk of `__cluster` lines. */
  async applyLines(text: string): Promise<void> {
    for (const op of Metadata.parseLines(text)) await this.apply(op);
  }

  has(topic: string): boolean {
    return this.#logs.has(topic);
  }

  /** Partition count of a topic, or 0 if unknown. */
  partitionCount(topic: string): number {
    return this.#logs.get(topic)?.length ?? 0;
  }

  /** The log of one partition, or UNKNOWN_TOPIC / UNKNOWN_PARTITION. */
  partition(topic: string, partition: number): PartitionLog {
    const logs = this.#logs.get(topic);
    if (!logs) {
      throw new YakError(
        "UNKNOWN_TOPIC",
        `topic '${topic}' does not exist; produce to it or create it first`,
      );
    }
    const log = logs[partition];
    if (!log) {
      throw new YakError(
        "UNKNOWN_PARTITION",
        `topic '${topic}' has partitions 0..${logs.length - 1}; there is no partition ${partition}`,
      );
    }
    return log;
  }

  /** A log by replication key, or undefined. */
  byKey(key: string): PartitionRef | undefined {
    return this.#byKey.get(key);
  }

  /**
   * Every partition, the metadata log last: a leader that reads in this order
   * ships the records that created every topic whose data it ships.
   */
  all(): PartitionRef[] {
    const refs = [...this.#byKey.values()].filter((r) => r.key !== CLUSTER_KEY);
    refs.push(this.#byKey.get(CLUSTER_KEY)!);
    return refs;
  }

  topicNames(): string[] {
    return [...this.#logs.keys()].sort();
  }

  /** Sum of log end offsets: how much this replica holds, for elections. */
  logEndTotal(): number {
    let sum = 0;
    for (const ref of this.#byKey.values()) sum += ref.log.logEndOffset;
    return sum;
  }

  async close(): Promise<void> {
    for (const ref of this.#byKey.values()) await ref.log.close();
  }
}
