/**
 * Log compaction on a broker (cleanup.policy=compact): the leader decides
 * when a partition is cleaned and how far, and every replica, the leader
 * included, carries out each decision on its own copy (src/log/cleaner.ts).
 *
 * A decision is a `clean` record in `__cluster` (`to`, `purgeBelow`,
 * `horizonMs`, `markersBelow`, and the groups small cleaned segments are
 * merged into, `mergeBelow` and `bases`), so every replica learns the same
 * decisions in the same order, a later leader knows them all, and a
 * replica that was away replays them (a snapshot keeps the last one per
 * partition, which is all that counts: the cleaning of a later decision
 * keeps exactly what the two would). The leader
 * carries it out only once the record is replicated, so no replica ever
 * holds cleaned segments of a decision the others could lose in a failover.
 * The cleaning being a function of the records below `to` and the decision,
 * every replica ends with the same segment files. Why not each replica on its
 * own timer, or the leader's cleaned files copied: docs/ARCHITECTURE.md,
 * Compaction.
 *
 * One partition is cleaned at a time per broker, its work cut into slices of
 * `cleanerSliceMs` and paced to `cleanerIoBytesPerSec` (src/config.ts).
 *
 * @module
 */
import { monotonicMs, TimeSlice } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import type { Cleaning } from "../log/clean_state.ts";
import { cleanLog, type CleanRun, mergePlan } from "../log/cleaner.ts";
import type { PartitionLog } from "../log/partition_log.ts";
import type { BrokerContext } from "./context.ts";
import { compactionConfigOf } from "./compaction_config.ts";
import { appendMetaReplicated } from "./meta_log.ts";
import { type CleanDecision, CLUSTER_TOPIC, MAX_CLEAN_ENDS } from "./metadata.ts";
import type { PartitionRef } from "./topic_store.ts";

/** What `yak topics --describe` shows of a compacted partition on this broker. */
export interface CleanerStatus {
  /** Share of the closed segments' bytes not cleaned yet. */
  dirtyRatio: number;
  /** Records below this offset were cleaned here (the last cleaning carried out). */
  cleanedTo: number;
  /** When this broker last cleaned the partition (wall-clock ms), how long it took, and the bytes before and after. */
  lastRun: { at: number; ms: number; bytesBefore: number; bytesAfter: number } | null;
}

/**
 * What the leader remembers of its own last cleaning of a partition: the
 * tombstones it had to keep, and the lowest marker kept only for not lying
 * below markersBelow yet (Infinity: none).
 */
interface Kept {
  tombstones: number;
  /** See CleanRun: the oldest timestamp of a tombstone held by it alone, the lowest one not below purgeBelow yet. */
  oldestTombstoneTs: number;
  lowestWaitingTombstone: number;
  lowestWaitingMarker: number;
}

/**
 * The cleaner of one broker: the leader's decisions and every replica's work.
 *
 * @example
 * ```ts ignore
 * const compactor = new Compactor(broker);
 * compactor.start();
 * compactor.wake(); // a `clean` record was applied
 * await compactor.stop();
 * ```
 */
export class Compactor {
  readonly #b: BrokerContext;
  #stopped = true;
  #loop: Promise<void> | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #wake: (() => void) | null = null;
  #woken = false;
  #deciding: Promise<void> | null = null;
  /** Partition key -> this broker's last run there. */
  readonly #lastRun = new Map<string, CleanerStatus["lastRun"]>();
  readonly #kept = new Map<string, Kept>();
  /** Partition key -> the error its last cleaning failed with (said once until it changes), and when to retry. */
  readonly #failing = new Map<string, { error: string; retryAt: number }>();
  /**
   * Partition key -> its decision as first seen here, and the metadata log's
   * end then: the decision is carried out once the metadata high watermark
   * passes that, that is once its record is committed (see #committed).
   */
  readonly #seen = new Map<string, { decision: CleanDecision; need: number }>();

  constructor(b: BrokerContext) {
    this.#b = b;
  }

  get #checkMs(): number {
    return this.#b.opts.cleanerCheckMs ?? DEFAULTS.cleanerCheckMs;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#loop = this.#run();
    // Followers not yet rolled past a decision's end are looked at again; the leader decides.
    this.#timer = setInterval(() => {
      this.wake();
      if (this.#b.role() === "leader" && !this.#deciding) {
        this.#deciding = this.decide()
          .catch((err) => {
            // A leader stepping down or stopping mid-decision: the next leader decides again.
            if (!this.#stopped && this.#b.role() === "leader") {
              this.#b.log.write("cleaner_failed", { step: "decide", error: messageOf(err) });
            }
          })
          .finally(() => (this.#deciding = null));
      }
    }, Math.min(1000, this.#checkMs));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.wake();
    await this.#loop;
    await this.#deciding;
  }

  /** Looks for work now: a `clean` record was applied, or a follower's log moved. */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /** The decision of `ref`'s partition this replica has not carried out yet, or null. */
  #pending(ref: PartitionRef): CleanDecision | null {
    const d = this.#b.store.meta.topics.get(ref.topic)?.cleaned?.[String(ref.partition)];
    if (!d || ref.log.fenced) return null;
    const s = ref.log.cleanState;
    if (s === null || d.to > s.to || d.purgeBelow > s.purgeBelow || d.horizonMs > s.horizonMs) return d;
    if ((d.markersBelow ?? 0) > (s.markersBelow ?? 0)) return d;
    const merging = d.mergeBelow !== undefined && d.bases !== undefined;
    return merging && (d.mergeBelow !== s.mergeBelow || d.bases!.join() !== s.bases?.join()) ? d : null;
  }

  /**
   * The next partition this replica can clean now: a decision pending and
   * committed, and every segment below its end closed.
   */
  #next(): { ref: PartitionRef; decision: CleanDecision } | null {
    const now = monotonicMs();
    for (const ref of this.#b.store.all()) {
      if (ref.topic === CLUSTER_TOPIC || (this.#failing.get(ref.key)?.retryAt ?? 0) > now) continue;
      const decision = this.#pending(ref);
      if (!decision || !this.#committed(ref.key, decision)) continue;
      if (ref.log.segmentBasesIn(decision.to, Infinity).length > 0) return { ref, decision };
    }
    return null;
  }

  /**
   * Whether the record of `decision` is committed (below the metadata high
   * watermark). Applied as soon as it is written (the leader) or copied (a
   * follower), a decision could still be lost in a failover, and a replica
   * that cleaned by it would then differ from the others for good. Its
   * record lies below the metadata log's end at the moment it is first seen.
   */
  #committed(key: string, decision: CleanDecision): boolean {
    const log = this.#b.store.clusterLog;
    let seen = this.#seen.get(key);
    if (seen?.decision !== decision) this.#seen.set(key, seen = { decision, need: log.logEndOffset });
    return log.highWatermark >= seen.need;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const work = this.#next();
      if (!work) {
        if (!this.#woken) await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = null;
        this.#woken = false;
        continue;
      }
      try {
        await this.#clean(work.ref, work.decision);
        const failed = this.#failing.get(work.ref.key);
        if (failed && work.ref.log.cleanState !== null && !this.#pending(work.ref)) {
          this.#failing.delete(work.ref.key);
          if (failed.error) this.#b.log.write("cleaner_resumed", { partition: work.ref.key });
        }
      } catch (err) {
        if (this.#stopped) break;
        const error = messageOf(err);
        if (this.#failing.get(work.ref.key)?.error !== error) {
          this.#b.log.write("cleaner_failed", { partition: work.ref.key, error, retry: "in a while" });
        }
        this.#failing.set(work.ref.key, { error, retryAt: monotonicMs() + this.#checkMs });
      }
    }
  }

  /** Carries out one decision on this replica's copy. */
  async #clean(ref: PartitionRef, d: CleanDecision): Promise<void> {
    const started = monotonicMs();
    const cleaning: Cleaning = {
      to: d.to,
      purgeBelow: d.purgeBelow,
      horizonMs: d.horizonMs,
      markersBelow: d.markersBelow ?? 0,
      ...(d.mergeBelow !== undefined && d.bases ? { mergeBelow: d.mergeBelow, bases: d.bases } : {}),
    };
    // Followers fetching below here must start over: this copy may lose tombstones below it (see replication.ts).
    await ref.log.notePurging(d.purgeBelow);
    this.#b.log.write("log_cleaning", { partition: ref.key, to: d.to, purgeBelow: d.purgeBelow });
    const run = await cleanLog(ref.log, cleaning, {
      aborted: this.#b.store.meta.abortedIn(ref.key, 0, d.to),
      keyMapBytes: DEFAULTS.cleanerKeyMapBytes,
      indexIntervalBytes: this.#b.opts.indexIntervalBytes,
      pause: pacer(this.#b.opts.cleanerIoBytesPerSec ?? DEFAULTS.cleanerIoBytesPerSec, () => this.#stopped),
    });
    if (run === null) {
      // The log changed under it (a truncation, retention), or is behind: looked at again in a while.
      this.#failing.set(ref.key, { error: this.#failing.get(ref.key)?.error ?? "", retryAt: monotonicMs() + 1000 });
      return;
    }
    this.#noteRun(ref, run, started);
  }

  #noteRun(ref: PartitionRef, run: CleanRun, started: number): void {
    const ms = Math.round(monotonicMs() - started);
    const m = this.#b.metrics;
    m.cleanerRuns++;
    m.cleanerBytesRead += run.bytesRead;
    m.cleanerBytesWritten += run.bytesWritten;
    m.cleanerRecordsRemoved += run.recordsRemoved;
    this.#lastRun.set(ref.key, { at: Date.now(), ms, bytesBefore: run.bytesBefore, bytesAfter: run.bytesAfter });
    this.#kept.set(ref.key, {
      tombstones: run.tombstonesKept,
      oldestTombstoneTs: run.oldestTombstoneTs,
      lowestWaitingTombstone: run.lowestWaitingTombstone,
      lowestWaitingMarker: run.lowestWaitingMarker,
    });
    this.#b.log.write("log_cleaned", {
      partition: ref.key,
      to: ref.log.cleanState?.to,
      ms,
      passes: run.passes,
      bytesRead: run.bytesRead,
      bytesWritten: run.bytesWritten,
      bytesBefore: run.bytesBefore,
      bytesAfter: run.bytesAfter,
      recordsRemoved: run.recordsRemoved,
      tombstonesRemoved: run.tombstonesRemoved,
      markersRemoved: run.markersRemoved,
      segmentsRemoved: run.segmentsRemoved,
      segmentsMerged: run.segmentsMerged,
    });
  }

  /**
   * The leader's look at every compacted partition: a new cleaning when the
   * dirty share of its closed segments (those older than
   * min.compaction.lag.ms, all below the high watermark) reaches
   * min.cleanable.dirty.ratio or its oldest dirty segment passed
   * max.compaction.lag.ms; or, with nothing new to clean, one that only
   * removes tombstones once the oldest one kept has passed delete.retention.ms,
   * or transaction markers once the cleaning that took their transaction's
   * records did (see {@link markersBelowAt}). One decision per partition at
   * a time: the next waits until this broker carried out the last.
   */
  async decide(): Promise<void> {
    const b = this.#b;
    for (const ref of b.store.all()) {
      if (b.role() !== "leader" || this.#stopped) return;
      const cfg = compactionConfigOf(b.store.meta.topics.get(ref.topic)?.configs);
      if (ref.topic === CLUSTER_TOPIC || !cfg.compact || ref.log.fenced || this.#pending(ref)) continue;
      const decision = await this.#decision(ref, cfg);
      if (!decision) continue;
      const id = b.store.meta.topics.get(ref.topic)?.id;
      await appendMetaReplicated(
        b,
        { op: "clean", topic: ref.topic, partition: ref.partition, ...(id ? { id } : {}), ...decision },
        b.opts.requestTimeoutMs,
      );
      b.log.write("clean_decided", { partition: ref.key, ...decision });
      this.wake(); // committed: this broker carries it out now
    }
  }

  async #decision(
    ref: PartitionRef,
    cfg: ReturnType<typeof compactionConfigOf>,
  ): Promise<CleanDecision | null> {
    const log = ref.log;
    const prev = this.#b.store.meta.topics.get(ref.topic)?.cleaned?.[String(ref.partition)];
    const prevTo = prev?.to ?? 0;
    const now = Date.now();
    // A tombstone's own timestamp plays no part (KIP-534): purgeBelow alone says when it goes. Decisions before
    // held the leader's clock minus delete.retention.ms here, so one stamped in the future stayed until then.
    const horizonMs = NO_TIMESTAMP_HORIZON;
    // Never past an undecided transaction (the last stable offset): its records may yet be aborted.
    const stable = Math.min(log.highWatermark, this.#b.store.meta.firstOpenOffset(ref.key));
    const { to, dirty, clean, oldestDirtyMs } = await cleanable(
      log,
      stable,
      prevTo,
      cfg.minCompactionLagMs > 0 ? now - cfg.minCompactionLagMs : Infinity,
      cfg.maxCompactionLagMs < Infinity,
    );
    const forced = to > prevTo && oldestDirtyMs < now - cfg.maxCompactionLagMs;
    const markers = markersBelowAt(prev, now - cfg.deleteRetentionMs);
    // What the last cleaning cleaned is merged into groups up to segment.bytes (every decision names the groups
    // from the log start: a replica that skipped earlier ones merges the same way).
    const { merges, ...merge } = mergePlan(log, prevTo, log.segmentBytes, DEFAULTS.cleanerMergeGroupsMax);
    // Tombstones go below the end of a cleaning decided delete.retention.ms ago (as markers do): their time counts
    // from the first cleaning that saw them, not from their timestamps, which may be old (MirrorMaker keeps them).
    const purgeBelow = markers.markersBelow;
    if (to > prevTo && (forced || dirty / Math.max(1, dirty + clean) >= cfg.minCleanableDirtyRatio)) {
      return { to, purgeBelow, horizonMs, ...markers, ...merge, at: now, ends: [...markers.ends, [to, now]] };
    }
    if (!prev) return null;
    // Nothing new: tombstones the last cleaning kept may be due now, held by their timestamps or now below the
    // purge point (after a restart the leader does not know what it kept, so it looks once the last decision is
    // that old).
    const kept = this.#kept.get(ref.key);
    const tombstonesDue = kept
      ? kept.tombstones > 0 &&
        (kept.oldestTombstoneTs < now - cfg.deleteRetentionMs || kept.lowestWaitingTombstone < purgeBelow)
      : prev.at < now - cfg.deleteRetentionMs && (prev.purgeBelow < prev.to || prev.horizonMs < prev.at);
    const markersDue = markers.markersBelow > (prev.markersBelow ?? 0) &&
      (kept ? kept.lowestWaitingMarker < markers.markersBelow : true);
    if (!tombstonesDue && !markersDue && merges === 0) return null;
    return { to: prev.to, purgeBelow, horizonMs, ...markers, ...merge, at: now };
  }

  /** The share of a partition's closed segment bytes above its last cleaning here (0 with none). */
  dirtyRatio(log: PartitionLog): number {
    const cleanedTo = log.cleanState?.to ?? 0;
    let dirty = 0;
    let all = 0;
    for (const s of log.closedSegments()) {
      all += s.size;
      if (s.base >= cleanedTo) dirty += s.size;
    }
    return all === 0 ? 0 : dirty / all;
  }

  /** What `yak topics --describe` shows of a partition, or undefined when its topic is not compacted. */
  status(ref: PartitionRef): CleanerStatus | undefined {
    if (!compactionConfigOf(this.#b.store.meta.topics.get(ref.topic)?.configs).compact) return undefined;
    return {
      dirtyRatio: Math.round(this.dirtyRatio(ref.log) * 1000) / 1000,
      cleanedTo: ref.log.cleanState?.to ?? 0,
      lastRun: this.#lastRun.get(ref.key) ?? null,
    };
  }

  /** The largest dirty ratio over the compacted partitions here (for /metrics). */
  maxDirtyRatio(): number {
    let max = 0;
    for (const ref of this.#b.store.all()) {
      if (ref.topic === CLUSTER_TOPIC) continue;
      if (!compactionConfigOf(this.#b.store.meta.topics.get(ref.topic)?.configs).compact) continue;
      max = Math.max(max, this.dirtyRatio(ref.log));
    }
    return max;
  }
}

/**
 * The `horizonMs` of every decision now: above any record's timestamp, so
 * only `purgeBelow` decides when a tombstone goes.
 */
export const NO_TIMESTAMP_HORIZON = Number.MAX_SAFE_INTEGER;

/**
 * The markersBelow of a cleaning decided after `prev` (see
 * Cleaning.markersBelow in src/log/clean_state.ts): the end of the newest
 * earlier cleaning decided at or before `maturedBeforeMs` (the leader's
 * clock minus delete.retention.ms), so a marker goes no sooner than
 * delete.retention.ms after a cleaning took its transaction's records; and
 * the ends not yet below it, at most MAX_CLEAN_ENDS less one (room for the
 * new one's). It is also the new cleaning's purgeBelow: tombstones wait as
 * markers do, delete.retention.ms from the first cleaning that saw them
 * (KIP-534). A follower whose log ends below it starts over, so no replica
 * appends a leader's log that lost a marker or tombstone its own part still
 * needs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { markersBelowAt } from "./compactor.ts";
 * import type { CleanDecision } from "./metadata.ts";
 * const ends: [number, number][] = [[100, 1000], [200, 3000], [300, 5000]];
 * const prev: CleanDecision = { to: 300, purgeBelow: 200, horizonMs: 0, at: 5000, ends };
 * // delete.retention.ms after the cleaning up to 200 was decided (at 3000), but not after the one up to 300:
 * assert.deepEqual(markersBelowAt(prev, 4000), { markersBelow: 200, ends: [[300, 5000]] });
 * ```
 */
export function markersBelowAt(
  prev: CleanDecision | undefined,
  maturedBeforeMs: number,
): { markersBelow: number; ends: [number, number][] } {
  const candidates: [number, number][] = prev ? [...(prev.ends ?? []), [prev.to, prev.at]] : [];
  let markersBelow = prev?.markersBelow ?? 0;
  for (const [to, at] of candidates) if (at <= maturedBeforeMs) markersBelow = Math.max(markersBelow, to);
  // Increasing ends only (a decision from before ends were kept has its own end only as `prev`).
  const ends: [number, number][] = [];
  for (const [to, at] of candidates) if (to > markersBelow && to > (ends.at(-1)?.[0] ?? -1)) ends.push([to, at]);
  // The oldest matures first: the ones after it thin out.
  while (ends.length > MAX_CLEAN_ENDS - 1) ends.splice(1, 1);
  return { markersBelow, ends };
}

/**
 * Where a new cleaning of `log` could end: the end of the closed segments
 * from the start that lie below `stable` (the high watermark, and the first
 * offset an undecided transaction may hold) and whose newest record
 * is older than `newestBeforeMs` (min.compaction.lag.ms; a segment's file was
 * last written with its newest record); their bytes below and above
 * `cleanedTo`, and (with `oldest`, for max.compaction.lag.ms) when the
 * oldest dirty one was last written. Files are looked at only when a lag asks.
 */
async function cleanable(
  log: PartitionLog,
  stable: number,
  cleanedTo: number,
  newestBeforeMs: number,
  oldest: boolean,
): Promise<{ to: number; dirty: number; clean: number; oldestDirtyMs: number }> {
  const bases = log.segmentBasesIn(0, Infinity);
  let to = log.logStartOffset;
  let dirty = 0;
  let clean = 0;
  let oldestDirtyMs = Infinity;
  for (const seg of log.closedSegments()) {
    const end = bases[bases.indexOf(seg.base) + 1];
    if (end === undefined || end > stable) break;
    const timed = newestBeforeMs < Infinity || (oldest && seg.base >= cleanedTo && oldestDirtyMs === Infinity);
    const mtime = timed ? (await Deno.stat(seg.dataPath).catch(() => null))?.mtime?.getTime() : 0;
    // One that cannot be looked at is left for the next look: never cleaned on a guess.
    if (mtime === undefined || mtime > newestBeforeMs) break;
    if (seg.base >= cleanedTo) {
      dirty += seg.size;
      if (timed) oldestDirtyMs = Math.min(oldestDirtyMs, mtime);
    } else clean += seg.size;
    to = end;
  }
  return { to, dirty, clean, oldestDirtyMs };
}

/**
 * The cleaner's pause between chunks of work: a turn for the rest of the
 * broker thread every `cleanerSliceMs`, and waits that hold its reads and
 * writes to `bytesPerSec` (0: no limit). It throws once the broker stops.
 */
function pacer(bytesPerSec: number, stopped: () => boolean): (bytes: number) => Promise<void> {
  const slice = new TimeSlice(DEFAULTS.cleanerSliceMs);
  const startedMs = monotonicMs();
  let total = 0;
  return async (bytes) => {
    if (stopped()) throw new YakError("UNAVAILABLE", "the broker is stopping; the cleaning goes on at its next start");
    total += bytes;
    const aheadMs = bytesPerSec > 0 ? (total / bytesPerSec) * 1000 - (monotonicMs() - startedMs) : 0;
    if (aheadMs > 1) await new Promise((resolve) => setTimeout(resolve, aheadMs));
    else await slice.pause();
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
