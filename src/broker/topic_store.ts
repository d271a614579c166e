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
import { dataModes, writeFileAtomic } from "../files.ts";
import { CLUSTER_KEY, CLUSTER_TOPIC, Metadata, type MetaOp } from "./metadata.ts";
import { compactionConfigOf } from "./compaction_config.ts";

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
 * import assert from "node:assert/strict";
 * import { TopicStore } from "./topic_store.ts";
 * const dir = await Deno.makeTempDir();
 * const store = await TopicStore.open(`${dir}/topics`, { segmentBytes: 1 << 26, indexIntervalBytes: 4096 });
 * assert.throws(() => store.partition("events", 0), { code: "UNKNOWN_TOPIC" }); // until the topic exists
 * await store.apply({ op: "topic", topic: "events", partitions: 3, createdAt: 0 });
 * assert.equal(store.partition("events", 2).logEndOffset, 0);
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
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
  /** Run on every partition log, those open now and every one opened later (see {@link onEveryLog}). */
  readonly #everyLog: ((log: PartitionLog) => void)[] = [];
  /** Told when a cleaning was decided (a `clean` record applied, or replayed). */
  onCleaning: () => void = () => {};
  /**
   * Topics the metadata names whose files could not be made or opened here
   * (a full disk): opened again by {@link openUnopened}, never made anew.
   */
  readonly #unopened = new Set<string>();
  /** The id each open topic's logs were opened under: a record with another id is another incarnation. */
  readonly #openIds = new Map<string, string | undefined>();
  /** Open topics whose topic.json says what is open (a failed write of it is tried again at the next open). */
  readonly #described = new Set<string>();
  /** Each topic's open or removal under way: the next one waits for it (a produce may open what an op removes). */
  readonly #busy = new Map<string, Promise<void>>();

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
    await Deno.mkdir(dir, { recursive: true, mode: dataModes().dir });
    const clusterLog = await PartitionLog.open(join(dir, CLUSTER_TOPIC, "0"), { ...logOpts, name: CLUSTER_KEY });
    const store = new TopicStore(dir, clusterLog, logOpts);
    await store.replay();
    return store;
  }

  /** Rebuilds metadata from the `__cluster` log, from its start (a snapshot once it was compacted). */
  async replay(): Promise<void> {
    this.meta.clear();
    const log = this.clusterLog;
    // Up to a damaged metadata record, if one is known: the state before it stands, and
    // healing copies the rest again from the leader and replays.
    const end = () => Math.min(log.logEndOffset, log.damagedFrom);
    for (let at = log.logStartOffset; at < end();) {
      let read;
      try {
        read = await log.read(at, 4 * 1024 * 1024, end());
      } catch (err) {
        // Found by this read (and reported): read again up to it.
        if (err instanceof YakError && err.code === "CORRUPT_LOG" && log.damagedFrom > at) continue;
        if (err instanceof YakError && err.code === "CORRUPT_LOG") break;
        throw err;
      }
      if (read.nextOffset === at) break;
      // The state first, the files after: a topic deleted and created again
      // must not have its new directory removed by replaying the old delete.
      for (const op of Metadata.parseLines(read.text)) this.meta.apply(op);
      at = read.nextOffset;
    }
    await this.#reconcile();
    this.onCleaning();
  }

  /** Makes the files match the metadata: open what it names, remove what it no longer does. */
  async #reconcile(): Promise<void> {
    for (const name of [...this.#logs.keys()]) {
      if (!this.meta.topics.has(name)) await this.#removeGone(name, "deleted");
    }
    for await (const entry of Deno.readDir(this.dir)) {
      if (entry.isDirectory && entry.name !== CLUSTER_TOPIC && !this.meta.topics.has(entry.name)) {
        await this.#removeGone(entry.name, "deleted while this broker was away");
      }
    }
    await this.#openAll([...this.meta.topics.keys()]);
  }

  /**
   * Applies a metadata op: creates directories and opens logs for new
   * partitions, removes deleted topics (and a stale incarnation of a name),
   * and sets each log's segment limits from its topic's configs.
   */
  async apply(op: MetaOp): Promise<void> {
    this.meta.apply(op);
    if (op.op === "topic_delete") {
      await this.#removeGone(op.topic, "deleted");
      return;
    }
    if (op.op === "snapshot") {
      await this.#reconcile();
      this.onCleaning();
      return;
    }
    if (op.op === "clean") this.onCleaning();
    if (op.op !== "topic") return;
    await this.#openNoting(checkTopicName(op.topic));
  }

  /**
   * Opens a topic's files (one open or removal of a topic at a time), noting
   * a failure in {@link unopened} and throwing it: an I/O error as STORAGE
   * naming the topic and the directory, of which the broker is told as of a
   * failed write.
   */
  #openNoting(name: string): Promise<void> {
    return this.#locked(name, async () => {
      // Deleted while this open waited: nothing to open.
      if (!this.meta.topics.has(name)) {
        this.#unopened.delete(name);
        return;
      }
      try {
        await this.#open(name);
        this.#unopened.delete(name);
      } catch (err) {
        this.#unopened.add(name);
        const dir = join(this.dir, name);
        const failed = err instanceof YakError ? err : new YakError(
          "STORAGE",
          `cannot open the files of topic '${name}' in ${dir}: ${err instanceof Error ? err.message : String(err)}`,
        );
        if (failed.code === "STORAGE") this.#logOpts.onWriteFailed?.({ dir, error: failed.message });
        throw failed;
      }
    });
  }

  /** Runs `fn` once every open or removal of topic `name` before it is done, and before any after it. */
  async #locked(name: string, fn: () => Promise<void>): Promise<void> {
    const run = (this.#busy.get(name) ?? Promise.resolve()).then(fn);
    const settled = run.catch(() => {});
    this.#busy.set(name, settled);
    try {
      await run;
    } finally {
      if (this.#busy.get(name) === settled) this.#busy.delete(name);
    }
  }

  /** Opens each of `names`, all of them even when one fails; throws the first failure. */
  async #openAll(names: readonly string[]): Promise<void> {
    let first: unknown = null;
    for (const name of names) {
      try {
        await this.#openNoting(name);
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  }

  /** Whether `topic`'s files failed to open here and wait for {@link openUnopened}. */
  isUnopened(topic: string): boolean {
    return this.#unopened.has(topic);
  }

  /** Whether any topic's files wait for {@link openUnopened}. */
  get hasUnopened(): boolean {
    return this.#unopened.size > 0;
  }

  /**
   * Opens again the topics (or only `topic`) whose records were applied but
   * whose files could not be opened then: the record is in `__cluster`, so
   * the topic is opened as it says, under its id, never made anew. Throws
   * the first that still fails.
   */
  async openUnopened(topic?: string): Promise<void> {
    if (this.#unopened.size === 0) return;
    const names = topic === undefined ? [...this.#unopened] : this.#unopened.has(topic) ? [topic] : [];
    for (const name of names) if (!this.meta.topics.has(name)) this.#unopened.delete(name);
    await this.#openAll(names.filter((name) => this.meta.topics.has(name)));
  }

  /**
   * Where a topic's segment limits come from: its configs, else the broker's
   * defaults. A compacted topic's active segment also rolls at
   * max.compaction.lag.ms, since only closed segments are cleaned.
   */
  #limits(name: string): { segmentBytes: number; segmentMs: number } {
    const configs = this.meta.topics.get(name)?.configs ?? {};
    const segmentMs = configs["segment.ms"] === undefined
      ? this.#logOpts.segmentMs ?? 0
      : Number(configs["segment.ms"]);
    const { compact, maxCompactionLagMs } = compactionConfigOf(configs);
    return {
      segmentBytes: configs["segment.bytes"] === undefined
        ? this.#logOpts.segmentBytes
        : Number(configs["segment.bytes"]),
      segmentMs: compact && maxCompactionLagMs < (segmentMs || Infinity) ? maxCompactionLagMs : segmentMs,
    };
  }

  async #remove(name: string, reason: string): Promise<void> {
    const logs = this.#logs.get(name);
    if (logs) {
      for (let p = 0; p < logs.length; p++) {
        await logs[p].close();
        this.#byKey.delete(`${name}/${p}`);
      }
      this.#logs.delete(name);
      this.#openIds.delete(name);
      this.#described.delete(name);
    }
    const dir = join(this.dir, name);
    try {
      await Deno.remove(dir, { recursive: true });
    } catch (err) {
      // Already gone is what was wanted. Anything else is thrown: files left behind came back, as the
      // records of a new topic of the same name once (see #open).
      if (!(err instanceof Deno.errors.NotFound)) {
        throw new YakError(
          "STORAGE",
          `cannot delete ${dir}, the files of topic '${name}' (${reason}): ${err instanceof Error ? err.message : err}`,
        );
      }
    }
    this.#logOpts.onEvent?.("topic_removed", { topic: name, reason });
  }

  /**
   * Removes a topic the metadata no longer names. A failure is said in the
   * log and the broker goes on: nothing opens those files, and the next
   * start (or a new topic of the name, which refuses them) tries again.
   */
  #removeGone(name: string, reason: string): Promise<void> {
    return this.#locked(name, async () => {
      try {
        await this.#remove(name, reason);
      } catch (err) {
        if (!(err instanceof YakError)) throw err;
        this.#logOpts.onEvent?.("topic_remove_failed", { topic: name, reason, error: err.message });
      }
    });
  }

  /**
   * Runs `fn` on every partition log: those open now and each one opened
   * later, however it comes (created by this leader, or by replaying
   * `__cluster` as a follower). A hook set only where a leader creates a
   * topic missed the partitions a follower created, whose appends then never
   * woke long polls after a failover (acks=all 10 times slower on them).
   */
  onEveryLog(fn: (log: PartitionLog) => void): void {
    this.#everyLog.push(fn);
    for (const ref of this.#byKey.values()) fn(ref.log);
  }

  async #open(name: string): Promise<void> {
    const meta = this.meta.topics.get(name)!;
    const topicDir = join(this.dir, name);
    // A directory left by another incarnation of this name (deleted while this broker was down) goes first,
    // and so do open logs of another one: what a restart would find in topic.json and remove.
    if (meta.id !== undefined) {
      let onDiskId: unknown = meta.id;
      if (this.#logs.has(name)) onDiskId = this.#openIds.get(name);
      else {
        try {
          onDiskId = JSON.parse(await Deno.readTextFile(join(topicDir, "topic.json"))).id;
        } catch { /* no topic.json (or not one yak wrote whole): nothing of an older incarnation */ }
      }
      // Thrown when it fails: the new topic must not open the old one's segments as its own.
      if (onDiskId !== meta.id) await this.#remove(name, "another incarnation of the name");
    }
    const want = meta.partitions;
    const logs = this.#logs.get(name) ?? [];
    const limits = this.#limits(name);
    // A compacted topic's logs take offset gaps, for good: its cleaner.json says so even if the policy changes.
    const compacted = compactionConfigOf(meta.configs).compact;
    for (const log of logs) {
      log.setSegmentLimits(limits);
      if (compacted && log.cleanState === null) await log.allowGaps();
    }
    if (logs.length >= want && this.#openIds.get(name) === meta.id && this.#described.has(name)) return;
    await Deno.mkdir(topicDir, { recursive: true, mode: dataModes().dir });
    // Known before the partitions open: when one fails, those opened stay this topic's (never opened twice).
    this.#logs.set(name, logs);
    this.#openIds.set(name, meta.id);
    for (let p = logs.length; p < want; p++) {
      const key = `${name}/${p}`;
      const log = await PartitionLog.open(join(topicDir, String(p)), {
        ...this.#logOpts,
        ...limits,
        name: key,
        compacted,
      });
      if (compacted && log.cleanState === null) await log.allowGaps();
      logs.push(log);
      this.#byKey.set(key, { key, topic: name, partition: p, log });
      for (const fn of this.#everyLog) fn(log);
    }
    const info = {
      name,
      partitions: want,
      createdAt: new Date(meta.createdAt).toISOString(),
      ...(meta.id !== undefined ? { id: meta.id } : {}),
    };
    this.#described.delete(name);
    await writeFileAtomic(join(topicDir, "topic.json"), JSON.stringify(info, null, 2) + "\n");
    this.#described.add(name);
  }

  /** Applies the ops in a chunk of `__cluster` lines. */
  async applyLines(text: string): Promise<void> {
    // Every op is applied even when the files of one fail (they are opened again later, see openUnopened):
    // stopping there would leave the state without the ops after it until a restart.
    let first: unknown = null;
    for (const op of Metadata.parseLines(text)) {
      try {
        await this.apply(op);
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  }

  /** Whether the topic's partitions are open here (some of them, when opening the rest failed). */
  has(topic: string): boolean {
    return (this.#logs.get(topic)?.length ?? 0) > 0;
  }

  /** Partition count of a topic, or 0 if unknown. */
  partitionCount(topic: string): number {
    return this.#logs.get(topic)?.length ?? 0;
  }

  /** The log of one partition, or UNKNOWN_TOPIC / UNKNOWN_PARTITION. */
  partition(topic: string, partition: number): PartitionLog {
    const logs = this.#logs.get(topic);
    if (!logs || logs.length === 0) {
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
    return [...this.#logs.keys()].filter((name) => this.has(name)).sort();
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
