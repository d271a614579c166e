/**
 * Retention: a timer on the leader, not a request. It deletes whole closed
 * segments past each topic's `retention.bytes` (per partition) and
 * `retention.ms`, never above the high watermark, by advancing the
 * partition's log start offset (the one mechanism DeleteRecords uses too:
 * `PartitionLog.advanceLogStart`), and deletes segments left below the log
 * start. Followers learn the leader's log start with every replication reply
 * and move theirs the same way (they roll where the leader did, so they
 * delete the same segments), so replicas agree on it. `__cluster` is kept small by
 * snapshots (see {@link Retention.compactMetadata}).
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import type { PartitionLog } from "../log/partition_log.ts";
import type { BrokerContext } from "./context.ts";
import { appendMeta, snapshotAtLogEnd } from "./meta_log.ts";
import { CLUSTER_TOPIC } from "./metadata.ts";
import { type EffectiveConfig, effectiveConfig } from "./topic_config.ts";

/**
 * Runs retention on its own timer while this broker leads.
 *
 * @example
 * ```ts ignore
 * const retention = new Retention(broker);
 * retention.start();
 * await retention.runOnce(); // what the timer does
 * retention.stop();
 * ```
 */
export class Retention {
  readonly #b: BrokerContext;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | null = null;
  /** Partitions whose last deletion failed, with the error (said once until it changes or succeeds). */
  readonly #failing = new Map<string, string>();

  constructor(b: BrokerContext) {
    this.#b = b;
  }

  #metaTimer: ReturnType<typeof setInterval> | undefined;
  #unwatch: (() => void) | null = null;

  start(): void {
    const run = (pass: () => Promise<void>) => {
      if (this.#running) return;
      this.#running = pass()
        .catch((err) =>
          this.#b.log.write("retention_failed", { error: err instanceof Error ? err.message : String(err) })
        )
        .finally(() => (this.#running = null));
    };
    this.#timer ??= setInterval(() => run(() => this.runOnce()), this.#b.opts.retentionCheckMs);
    // Commits can arrive by the thousand per second: the metadata log is compacted as it grows past
    // its limit (a one-second timer alone let 10,000 commits a second pile up between looks), and
    // looked at every second for what a watcher can miss (a pass already running).
    this.#metaTimer ??= setInterval(() => run(() => this.compactMetadata()), 1000);
    const log = this.#b.store.clusterLog;
    this.#unwatch ??= log.onAppend(() => {
      if (log.logEndOffset - log.logStartOffset > DEFAULTS.clusterSnapshotRecords) run(() => this.compactMetadata());
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    clearInterval(this.#metaTimer);
    this.#unwatch?.();
    this.#unwatch = null;
    this.#timer = undefined;
    this.#metaTimer = undefined;
    await this.#running;
  }

  /** The broker's defaults for topics that set nothing. */
  defaults(): EffectiveConfig {
    const o = this.#b.opts;
    return {
      minInsyncReplicas: o.minInsyncReplicas,
      retentionMs: o.retentionMs,
      retentionBytes: o.retentionBytes,
      segmentBytes: o.segmentBytes,
      segmentMs: o.segmentMs,
      maxMessageBytes: o.maxRecordBytes,
    };
  }

  /**
   * One pass over every partition (leader only). A deletion that fails (a
   * segment file that cannot be removed) is logged and tried again next
   * pass; the other partitions go on. A fenced log is left alone.
   */
  async runOnce(): Promise<void> {
    const b = this.#b;
    if (b.role() !== "leader") return;
    const nowMs = Date.now(); // record and file times are wall-clock
    for (const ref of b.store.all()) {
      if (ref.topic === CLUSTER_TOPIC || ref.log.fenced) continue;
      try {
        await this.#applyTo(ref.log, ref.topic, nowMs);
        if (this.#failing.delete(ref.key)) b.log.write("retention_resumed", { partition: ref.key });
      } catch (err) {
        const error = err instanceof Error ? err.message : String(err);
        if (this.#failing.get(ref.key) !== error) {
          this.#failing.set(ref.key, error);
          b.log.write("retention_failed", { partition: ref.key, error, retry: "next pass" });
        }
      }
    }
    await this.compactMetadata();
  }

  /** Deletes the closed segments of one partition past its topic's retention.bytes and retention.ms. */
  async #applyTo(log: PartitionLog, topic: string, nowMs: number): Promise<void> {
    const cfg = effectiveConfig(this.#b.store.meta.topics.get(topic)?.configs, this.defaults());
    const closed = log.closedSegments();
    let total = log.sizeBytes;
    let cutBefore = -1;
    let why = "";
    for (let i = 0; i < closed.length; i++) {
      const seg = closed[i];
      const nextBase = i + 1 < closed.length ? closed[i + 1].base : log.segmentBasesIn(seg.base + 1, Infinity)[0];
      // Never past what every in-sync replica holds.
      if (nextBase === undefined || nextBase > log.highWatermark) break;
      let expired = false;
      if (nextBase <= log.logStartOffset) {
        // Below the log start already (records deleted there, or an earlier deletion of its files failed).
        expired = true;
        why ||= "below the log start";
      } else if (cfg.retentionBytes >= 0 && total - seg.size >= cfg.retentionBytes) {
        expired = true;
        why = `retention.bytes=${cfg.retentionBytes}`;
      } else if (cfg.retentionMs >= 0) {
        // A closed segment's file was last written with its newest record. One that cannot be
        // looked at is kept this pass: never deleted on a guess.
        const mtime = (await Deno.stat(seg.dataPath).catch(() => null))?.mtime?.getTime();
        if (mtime !== undefined && nowMs - mtime > cfg.retentionMs) {
          expired = true;
          why = `retention.ms=${cfg.retentionMs}`;
        }
      }
      if (!expired) break;
      total -= seg.size;
      cutBefore = nextBase;
    }
    if (cutBefore !== -1) await log.deleteSegmentsBefore(cutBefore, why);
  }

  /**
   * Keeps `__cluster` bounded: once it holds more than
   * `clusterSnapshotRecords` records after its start, the whole state goes
   * into one snapshot record at the start of a new segment, and the segments
   * before it are deleted (on followers too, through the log start).
   */
  async compactMetadata(): Promise<void> {
    const b = this.#b;
    const log = b.store.clusterLog;
    if (b.role() !== "leader" || log.fenced) return;
    if (log.logEndOffset - log.logStartOffset <= DEFAULTS.clusterSnapshotRecords) return;
    await log.roll();
    // Commits keep arriving while the roll runs: the snapshot must be of the state at its own offset.
    const end = await appendMeta(b, snapshotAtLogEnd(b));
    const snapshotAt = end - 1;
    const start = await log.deleteSegmentsBefore(snapshotAt, "metadata snapshot");
    b.log.write("metadata_compacted", { snapshotAt, logStart: start, bytes: log.sizeBytes });
  }
}
