/**
 * Opening a partition's log from what is on disk: its segments in offset
 * order, a start-up check of the newest one (or of every one after an
 * unclean stop), a torn or damaged tail cut off (damaged bytes set aside,
 * never deleted), and the epoch cache rebuilt when it is missing. What
 * {@link PartitionLog.open} runs before it builds the log (Kafka's
 * LogLoader).
 *
 * @module
 */
import { join } from "node:path";
import { dataModes } from "../files.ts";
import { EpochCache } from "./epoch_cache.ts";
import type { LogOptions, OpenCheck } from "./partition_log.ts";
import { claimedOffset, lineEpoch, lineOffset } from "./record.ts";
import { type ScanResult, Segment } from "./segment.ts";
import { type CleanState, loadCleanState } from "./clean_state.ts";

/** What a log's files held at open. */
export interface Recovered {
  segments: Segment[];
  /** The offset after the last whole record. */
  logEnd: number;
  epochs: EpochCache;
  /** Damaged records found by the check (below `logEnd`: the rest was cut). */
  damaged: { offset: number; file: string }[];
  check: OpenCheck;
  /** The log may have offset gaps (its topic is compacted, or a cleaning left its state here). */
  gaps: boolean;
  /** The last cleaning this replica carried out, or null. */
  cleanState: CleanState | null;
}

/**
 * Opens the segments in `dir` (creating the first when there is none),
 * checks them and cuts a torn tail; see the module doc.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recoverLog } from "./recovery.ts";
 * const dir = await Deno.makeTempDir();
 * const r = await recoverLog(dir, { segmentBytes: 1 << 20, indexIntervalBytes: 4096 });
 * assert.equal(r.logEnd, 0);
 * assert.equal(r.segments.length, 1);
 * for (const s of r.segments) s.closeHandles();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function recoverLog(dir: string, opts: LogOptions, savedLogStart = 0): Promise<Recovered> {
  await Deno.mkdir(dir, { recursive: true, mode: dataModes().dir });
  await finishSwaps(dir, opts);
  const cleanState = await loadCleanState(dir);
  const gaps = opts.compacted === true || cleanState !== null;
  const bases = await segmentBases(dir);
  const segments: Segment[] = [];
  const damaged: { offset: number; file: string }[] = [];
  const check: OpenCheck = { checked: 0, unsealed: 0 };
  let logEnd = 0;
  if (bases.length === 0) segments.push(await Segment.create(dir, 0));
  for (let i = 0; i < bases.length; i++) {
    const last = i === bases.length - 1;
    const { segment, scan, indexRebuilt } = await Segment.open(
      dir,
      bases[i],
      opts.indexIntervalBytes,
      last || opts.verifyAll === true,
      gaps,
    );
    if (indexRebuilt) opts.onEvent?.("index_rebuilt", { file: segment.indexPath });
    segments.push(segment);
    if (scan) noteScan(segment, scan, last, check, damaged);
    if (last && scan) logEnd = await cutTail(segment, scan, opts);
  }
  const logStart = Math.max(segments[0].base, savedLogStart);
  const epochs = await loadEpochs(dir, segments, logEnd, logStart, opts);
  return { segments, logEnd, epochs, damaged, check, gaps, cleanState };
}

/**
 * Ends the swaps of cleaned segments a crash interrupted (cleaner.ts writes
 * `<base>.jsonl.cleaned`, syncs it, renames it to `.swap`, then over the
 * segment): a `.swap` is whole and takes the segment's place (its index is
 * rebuilt); a `.cleaned` may be partial and is removed. A merge's swap,
 * `.swap.<end>`, takes the place of every segment from its base to `end`. The old segment or
 * the new one, never a mix; the cleaning is carried out again anyway, since
 * its state was not saved.
 */
async function finishSwaps(dir: string, opts: LogOptions): Promise<void> {
  const entries: Deno.DirEntry[] = [];
  for await (const entry of Deno.readDir(dir)) entries.push(entry);
  for (const entry of entries) {
    const m = /^(\d{20})\.jsonl\.(cleaned|swap)(?:\.(\d{20}))?$/.exec(entry.name);
    if (!m || !entry.isFile || (m[3] !== undefined && m[2] !== "swap")) continue;
    const path = join(dir, entry.name);
    const segment = join(dir, `${m[1]}.jsonl`);
    const there = await Deno.stat(segment).then(() => true, () => false);
    if (m[2] === "swap" && there) {
      // A merge's swap (`.swap.<end>`) replaces every segment from its base to `end`: the later ones go first.
      const end = m[3] === undefined ? Number(m[1]) + 1 : Number(m[3]);
      for (const e of entries) {
        const later = /^(\d{20})\.(jsonl|index)$/.exec(e.name);
        if (later && Number(later[1]) > Number(m[1]) && Number(later[1]) < end) {
          await Deno.remove(join(dir, e.name)).catch((err) => {
            if (!(err instanceof Deno.errors.NotFound)) throw err;
          });
        }
      }
      await Deno.remove(join(dir, `${m[1]}.index`)).catch(() => {});
      await Deno.rename(path, segment);
    } else {
      await Deno.remove(path);
    }
    opts.onEvent?.(m[2] === "swap" && there ? "clean_swap_finished" : "clean_swap_discarded", { file: path });
  }
}

/** The base offsets of the segment files in `dir`, in order. */
async function segmentBases(dir: string): Promise<number[]> {
  const bases: number[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const m = /^(\d{20})\.jsonl$/.exec(entry.name);
    if (m && entry.isFile) bases.push(Number(m[1]));
  }
  return bases.sort((a, b) => a - b);
}

/** Counts what a segment's check found, and where it found damage. */
function noteScan(
  segment: Segment,
  scan: ScanResult,
  last: boolean,
  check: OpenCheck,
  damaged: { offset: number; file: string }[],
): void {
  check.checked += scan.count;
  check.unsealed += scan.unsealed;
  if (scan.damagedAt !== null) damaged.push({ offset: scan.damagedAt, file: segment.dataPath });
  if (scan.corrupt && !last) {
    // A line that is not its record, in a closed segment: damaged from there (the reads stop
    // at it); a follower copies it again from the leader, a leader hands the partition over.
    damaged.push({ offset: scan.lastOffset + 1, file: segment.dataPath });
  }
}

/**
 * Cuts the newest segment after its last whole record (a torn write, or a
 * last line that is not its record); returns the log end: the offset after
 * the last record it keeps (the segment's base when it keeps none).
 */
async function cutTail(segment: Segment, scan: ScanResult, opts: LogOptions): Promise<number> {
  let { count, validBytes, corrupt, lastOffset } = scan;
  if (!corrupt && scan.lastLine !== null) {
    // The newest line is the one a crash most likely hurt: parse it fully, once.
    if (claimedOffset(scan.lastLine) !== lastOffset) {
      corrupt = true;
      count--;
      validBytes = scan.lastLineStart;
      lastOffset = scan.prevOffset;
    }
  }
  const logEnd = count > 0 ? lastOffset + 1 : segment.base;
  const cutBytes = segment.size - validBytes;
  if (cutBytes <= 0) return logEnd;
  let savedTo: string | undefined;
  let cutLines = 0;
  if (corrupt) {
    // Damaged records are set aside, not deleted: a replica copies them
    // again from the leader, and a person can still look at the bytes.
    savedTo = `${segment.dataPath}.corrupt-${Date.now()}`;
    const bytes = await segment.readAt(validBytes, cutBytes);
    for (let i = bytes.indexOf(0x0a); i !== -1; i = bytes.indexOf(0x0a, i + 1)) cutLines++;
    // createNew: a file (or a link) already there is never written through.
    await Deno.writeFile(savedTo, bytes, { createNew: true, mode: dataModes().file });
  }
  await segment.truncate(validBytes);
  opts.onEvent?.(corrupt ? "corrupt_records_cut" : "torn_tail_cut", {
    file: segment.dataPath,
    cutBytes,
    keptRecords: count,
    ...(savedTo ? { atOffset: lastOffset + 1, savedTo, cutLines } : {}),
  });
  return logEnd;
}

/**
 * The epoch cache: as saved (cut to the log end, keeping the epoch in force at
 * the log start of a log whose every record was deleted), or rebuilt from the
 * records when missing.
 */
async function loadEpochs(
  dir: string,
  segments: Segment[],
  logEnd: number,
  logStart: number,
  opts: LogOptions,
): Promise<EpochCache> {
  let epochs = await EpochCache.load(dir);
  if (epochs === null) {
    epochs = new EpochCache(dir);
    if (logEnd > 0) {
      await rebuildEpochs(segments, epochs);
      opts.onEvent?.("epochs_rebuilt", { dir });
    }
    await epochs.save();
  } else if (epochs.truncateFrom(logEnd, logStart)) {
    await epochs.save();
  }
  return epochs;
}

const decoder = new TextDecoder();

async function rebuildEpochs(segments: Segment[], epochs: EpochCache): Promise<void> {
  for (const seg of segments) {
    const text = decoder.decode(await seg.readAt(0, seg.size));
    for (let at = 0; at < text.length;) {
      const nl = text.indexOf("\n", at);
      if (nl === -1) break;
      const line = text.slice(at, nl);
      const epoch = lineEpoch(line);
      // A line of an older epoch than one before it is not a new epoch (a log from before epochs were checked).
      if (epoch !== null && epoch >= epochs.lastEpoch) epochs.assign(epoch, lineOffset(line));
      at = nl + 1;
    }
  }
}
