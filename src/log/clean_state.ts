/**
 * What the cleaner last did to a partition's log (`cleaner.json` beside its
 * segments): the cleaning it carried out (see cleaner.ts), so a restart
 * neither redoes it nor forgets it. The file also says the log may have
 * offset gaps: a log with one is read and checked as a compacted log even
 * when its topic's policy no longer says compact.
 *
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../files.ts";

/** The file, in the partition's directory. */
export const CLEAN_STATE_FILE = "cleaner.json";

/**
 * One cleaning, as the leader decided it (every replica carries out the
 * same, see docs/ARCHITECTURE.md, Compaction).
 */
export interface Cleaning {
  /** Records below this offset keep only the newest record of each key. A segment boundary. */
  to: number;
  /**
   * Tombstones below this offset may go... The leader decides it as the end
   * of a cleaning decided at least delete.retention.ms before (Kafka's
   * KIP-534: a tombstone's time counts from the first cleaning that saw it,
   * so a consumer behind has that long to read it whatever its timestamp);
   * decisions before that rule used the end of the last cleaning.
   */
  purgeBelow: number;
  /**
   * ...when their timestamp is below this (ms). The leader now decides the
   * largest safe integer (a tombstone's timestamp plays no part, as in
   * Kafka since KIP-534); decisions before held its clock minus
   * delete.retention.ms, which kept a tombstone stamped in the future.
   */
  horizonMs: number;
  /**
   * Transaction markers below this offset go once no record of their
   * transaction is left: the end of a cleaning decided at least
   * delete.retention.ms before this one, so a read_committed reader that
   * read an aborted transaction's records before they were cleaned had that
   * long to reach its marker. At most `purgeBelow`. Absent (0) in cleanings
   * decided before markers were removed.
   */
  markersBelow?: number;
  /**
   * Closed segments that end at or below this offset are merged: each one
   * whose base is not in `bases` joins the segment before it (the log's
   * first is always kept), so a long-lived compacted log does not keep
   * thousands of small files. `bases` are the leader's groups of its
   * segments up to segment.bytes each; every replica's segments there are
   * the same or finer (see docs/ARCHITECTURE.md, Compaction). Absent: no
   * merging.
   */
  mergeBelow?: number;
  bases?: number[];
}

/** A cleaning this replica carried out, and when (wall-clock ms, for `yak topics --describe`). */
export interface CleanState extends Cleaning {
  at: number;
  /**
   * A later cleaning under way may remove tombstones below this offset
   * (saved when it starts, see PartitionLog.notePurging). Absent: none.
   */
  purging?: number;
}

/**
 * The state saved in `dir`, or null when there is none (or it does not read).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadCleanState, saveCleanState } from "./clean_state.ts";
 * const dir = await Deno.makeTempDir();
 * assert.equal(await loadCleanState(dir), null);
 * await saveCleanState(dir, { to: 100, purgeBelow: 40, horizonMs: 5, markersBelow: 20, at: 7 });
 * assert.deepEqual(await loadCleanState(dir), { to: 100, purgeBelow: 40, horizonMs: 5, markersBelow: 20, at: 7 });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadCleanState(dir: string): Promise<CleanState | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(join(dir, CLEAN_STATE_FILE)));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    // There but unreadable: the log may have gaps, and nothing is known to be done.
    return { to: 0, purgeBelow: 0, horizonMs: 0, at: 0 };
  }
  const s = parsed as Record<string, unknown>;
  const ok = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  if (typeof s !== "object" || s === null || !ok(s.to) || !ok(s.purgeBelow) || !Number.isSafeInteger(s.horizonMs)) {
    return { to: 0, purgeBelow: 0, horizonMs: 0, at: 0 };
  }
  return {
    to: s.to as number,
    purgeBelow: s.purgeBelow as number,
    horizonMs: s.horizonMs as number,
    markersBelow: ok(s.markersBelow) ? s.markersBelow as number : 0,
    ...(ok(s.mergeBelow) && Array.isArray(s.bases) && s.bases.every(ok)
      ? { mergeBelow: s.mergeBelow as number, bases: s.bases as number[] }
      : {}),
    at: Number.isSafeInteger(s.at) ? s.at as number : 0,
    ...(ok(s.purging) ? { purging: s.purging as number } : {}),
  };
}

/** Saves the state (a temp file renamed over the old one). */
export async function saveCleanState(dir: string, state: CleanState): Promise<void> {
  await writeFileAtomic(join(dir, CLEAN_STATE_FILE), JSON.stringify(state) + "\n");
}
