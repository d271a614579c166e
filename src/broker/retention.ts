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
import { compactionConfigOf } from "./compaction_config.ts";

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

  /** Deletes the closed segments of one partition past its topic's retention.bytes and retention.ms, and those below its log start. */
  async #applyTo(log: PartitionLog, topic: string, nowMs: number): Promise<void> {
    const configs = this.#b.store.meta.topics.get(topic)?.configs;
    // cleanup.policy=compact alone: the cleaner bounds the log, retention.ms and retention.bytes do not apply. Whole
    // segments below the log start (records deleted) go whatever the policy, as they do on the followers.
    const deletes = compactionConfigOf(configs).delete;
    const cfg = effectiveConfig(configs, this.defaults());
    const closed = log.closedSegments();
    const segments: RetainedSegment[] = [];
    for (let i = 0; i < closed.length; i++) {
      const seg = closed[i];
      const nextBase = i + 1 < closed.length ? closed[i + 1].base : log.segmentBasesIn(seg.base + 1, Infinity)[0];
      if (nextBase === undefined) break;
      segments.push({ size: seg.size, nextBase });
    }
    const cut = await retentionCut(segments, {
      totalBytes: log.sizeBytes,
      highWatermark: log.highWatermark,
      logStart: log.logStartOffset,
      retentionBytes: deletes ? cfg.retentionBytes : -1,
      retentionMs: deletes ? cfg.retentionMs : -1,
      nowMs,
      // A closed segment's file was last written with its newest record.
      mtimeOf: async (i) => (await Deno.stat(closed[i].dataPath).catch(() => null))?.mtime?.getTime(),
    });
    if (cut) await log.deleteSegmentsBefore(cut.before, cut.why);
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

/** A closed segment as retention sees it: its bytes, and the base of the segment after it. */
export interface RetainedSegment {
  size: number;
  nextBase: number;
}

/** The partition and the topic's limits, for {@link retentionCut}. */
export interface RetentionState {
  totalBytes: number;
  highWatermark: number;
  logStart: number;
  /** -1: no limit. */
  retentionBytes: number;
  /** -1: no limit. */
  retentionMs: number;
  nowMs: number;
  /** When segment i's file was last written (its newest record); undefined when it cannot be looked at. */
  mtimeOf: (i: number) => Promise<number | undefined>;
}

/**
 * Where retention cuts a partition: the offset before which its oldest
 * closed segments go (each segment's records end where the next begins),
 * and why; null when none goes. Segments go oldest first while each is
 * below the log start already, or past retention.bytes (the log stays at
 * least that big without it), or older than retention.ms (a file's time is
 * looked at only then; one that cannot be is kept: never deleted on a
 * guess); the first that is none of these stops the cut, and so does one
 * holding records at or above the high watermark (not yet on every in-sync
 * replica).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { retentionCut } from "./retention.ts";
 * const segments = [100, 200, 300].map((nextBase) => ({ size: 1000, nextBase }));
 * const state = {
 *   totalBytes: 3500, highWatermark: 350, logStart: 0, retentionBytes: 1500, retentionMs: -1, nowMs: 0,
 *   mtimeOf: () => Promise.resolve(0),
 * };
 * assert.deepEqual(await retentionCut(segments, state), { before: 200, why: "retention.bytes=1500" });
 * assert.equal(await retentionCut(segments, { ...state, retentionBytes: -1 }), null);
 * ```
 */
export async function retentionCut(
  segments: readonly RetainedSegment[],
  o: RetentionState,
): Promise<{ before: number; why: string } | null> {
  let total = o.totalBytes;
  let before = -1;
  let why = "";
  for (const [i, seg] of segments.entries()) {
    // Never past what every in-sync replica holds.
    if (seg.nextBase > o.highWatermark) break;
    if (seg.nextBase <= o.logStart) {
      // Below the log start already (records deleted there, or an earlier deletion of its files failed).
      why ||= "below the log start";
    } else if (o.retentionBytes >= 0 && total - seg.size >= o.retentionBytes) {
      why = `retention.bytes=${o.retentionBytes}`;
    } else if (o.retentionMs >= 0 && await olderThan(o, i)) {
      why = `retention.ms=${o.retentionMs}`;
    } else break;
    total -= seg.size;
    before = seg.nextBase;
  }
  return before === -1 ? null : { before, why };
}

async function olderThan(o: RetentionState, i: number): Promise<boolean> {
  const mtime = await o.mtimeOf(i);
  return mtime !== undefined && o.nowMs - mtime > o.retentionMs;
}
