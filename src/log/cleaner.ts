/**
 * The cleaner: carries out one cleaning of a compacted partition's log
 * (Kafka's LogCleaner). Below the cleaning's `to` (a segment boundary, the
 * active segment never touched) it keeps, for each key, only the record with
 * the highest offset; a tombstone (null value) below `purgeBelow` whose
 * timestamp is below `horizonMs` goes too, and records without a key go.
 * Records of aborted transactions go (they never were a key's value); a
 * transaction marker goes once no record of its transaction is left and it
 * lies below the cleaning's `markersBelow` (Kafka's rule: see
 * {@link Cleaning.markersBelow}). Kept records keep their offsets and their
 * bytes (their checksums hold): the log has gaps afterwards, as Kafka's has.
 *
 * The result is a function of the log's records below `to` and the cleaning
 * alone: every replica that carries out the same cleaning ends with the same
 * segment files, byte for byte (see docs/ARCHITECTURE.md, Compaction). The
 * key map is bounded: past `keyMapBytes` the dirty range is cleaned in
 * several passes, segment by segment, and a pass up to m followed by one up
 * to `to` keeps exactly what one pass up to `to` keeps (a record a pass keeps
 * has no later record of its key below m, so the later pass judges it alone).
 *
 * Each cleaned segment is written beside the old one (`<base>.jsonl.cleaned`,
 * synced) and swapped in by rename (PartitionLog.swapCleaned): a crash leaves
 * the old file or the new one, and the cleaning is carried out again at the
 * next start, since its state (clean_state.ts) is saved only at the end.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { dataModes } from "../files.ts";
import type { Cleaning } from "./clean_state.ts";
import { crc32cRange } from "./crc32c.ts";
import type { ClosedSegment, PartitionLog } from "./partition_log.ts";
import { type CompactionFields, compactionFieldsAt, type IntactLine, nextIntactLine } from "./record.ts";

const NEWLINE = 10;
const READ_CHUNK_BYTES = 1024 * 1024;
/** What {@link nextIntactLine} found of the line being read (one object, reused line after line). */
const intact: IntactLine = { offset: -1, crc: 0 };
const WRITE_BUFFER_BYTES = 1024 * 1024;
/** A key's place in the map: three 32-bit words of its digest and its offset (a float64). */
const SLOT_BYTES = 20;

/**
 * Key digests (96 bits) -> the highest offset seen, in typed arrays (20
 * bytes a slot, at most 3/4 full; it doubles past that). A digest, not the
 * key, so the map's size does not depend on the keys': two keys whose 96-bit
 * digests collide (about 1 in 10^16 for a million keys) would count as one,
 * on every replica alike (Kafka's map holds 128-bit MD5 digests).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { KeyMap } from "./cleaner.ts";
 * const map = new KeyMap(4);
 * map.put(1, 2, 3, 10);
 * map.put(1, 2, 3, 12);
 * assert.equal(map.get(1, 2, 3), 12);
 * assert.equal(map.get(1, 2, 4), -1);
 * assert.equal(map.size, 1);
 * ```
 */
export class KeyMap {
  #a: Uint32Array;
  #b: Uint32Array;
  #c: Uint32Array;
  /** -1: the slot is free. */
  #offsets: Float64Array;
  size = 0;

  constructor(slots: number) {
    const n = 1 << Math.max(4, Math.ceil(Math.log2(slots)));
    this.#a = new Uint32Array(n);
    this.#b = new Uint32Array(n);
    this.#c = new Uint32Array(n);
    this.#offsets = new Float64Array(n).fill(-1);
  }

  /** Bytes the map holds now. */
  get bytes(): number {
    return this.#offsets.length * SLOT_BYTES;
  }

  #slot(a: number, b: number, c: number): number {
    const mask = this.#offsets.length - 1;
    for (let i = a & mask;; i = (i + 1) & mask) {
      if (this.#offsets[i] === -1 || (this.#a[i] === a && this.#b[i] === b && this.#c[i] === c)) return i;
    }
  }

  /** The highest offset put for the digest, or -1. */
  get(a: number, b: number, c: number): number {
    return this.#offsets[this.#slot(a, b, c)];
  }

  /** Notes `offset` for the digest (offsets come in increasing order, so the last one is the highest). */
  put(a: number, b: number, c: number, offset: number): void {
    let i = this.#slot(a, b, c);
    if (this.#offsets[i] === -1) {
      if ((this.size + 1) * 4 > this.#offsets.length * 3) {
        this.#grow();
        i = this.#slot(a, b, c);
      }
      this.size++;
      this.#a[i] = a;
      this.#b[i] = b;
      this.#c[i] = c;
    }
    this.#offsets[i] = offset;
  }

  #grow(): void {
    const [a, b, c, offsets] = [this.#a, this.#b, this.#c, this.#offsets];
    const n = offsets.length * 2;
    this.#a = new Uint32Array(n);
    this.#b = new Uint32Array(n);
    this.#c = new Uint32Array(n);
    this.#offsets = new Float64Array(n).fill(-1);
    for (let i = 0; i < offsets.length; i++) {
      if (offsets[i] === -1) continue;
      const j = this.#slot(a[i], b[i], c[i]);
      [this.#a[j], this.#b[j], this.#c[j], this.#offsets[j]] = [a[i], b[i], c[i], offsets[i]];
    }
  }
}

/** A key's digest: three 32-bit hashes of its stored field's bytes (CRC-32C, FNV-1a and a multiply-shift). */
function digestOf(b: Uint8Array, s: number, e: number, out: Uint32Array): void {
  let fnv = 0x811c9dc5;
  let mix = 0x9747b28c ^ (e - s);
  for (let i = s; i < e; i++) {
    fnv = Math.imul(fnv ^ b[i], 0x01000193);
    mix = Math.imul(mix ^ b[i], 0x5bd1e995);
    mix ^= mix >>> 15;
  }
  out[0] = crc32cRange(b, s, e);
  out[1] = fnv >>> 0;
  out[2] = mix >>> 0;
}

/** How the cleaner runs: its key map's budget, and the pause that slices its work and paces its I/O. */
export interface CleanOptions {
  /**
   * The aborted transactions with records below the cleaning's end (producer
   * number, first offset, marker offset): their records go, and never count
   * as a key's newest. Every transaction there is decided (the leader cleans
   * only below the last stable offset), so every replica has the same list.
   */
  aborted?: readonly { producer: number; first: number; last: number }[];
  /** The key map's size for one pass, in bytes (see {@link KeyMap}); one segment's keys may take it past. */
  keyMapBytes: number;
  indexIntervalBytes: number;
  /** Called after each chunk of work with the bytes read or written: yields, and waits to keep the pace. */
  pause: (bytes: number) => Promise<void>;
}

/** What one cleaning did. */
export interface CleanRun {
  passes: number;
  segmentsRewritten: number;
  segmentsRemoved: number;
  bytesRead: number;
  bytesWritten: number;
  recordsRemoved: number;
  tombstonesRemoved: number;
  /** Tombstones kept below `to` (too new, or not yet below purgeBelow). */
  tombstonesKept: number;
  /** The oldest timestamp of those kept below purgeBelow, for their timestamp alone (Infinity: none). */
  oldestTombstoneTs: number;
  /** The lowest offset of those kept for not lying below purgeBelow yet (Infinity: none). */
  lowestWaitingTombstone: number;
  markersRemoved: number;
  /** The lowest marker kept only for not lying below markersBelow (its transaction has no record left), or Infinity. */
  lowestWaitingMarker: number;
  /** Segments merged into the one before them (see Cleaning.mergeBelow). */
  segmentsMerged: number;
  /** Closed bytes below `to` before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * Carries out `cleaning` on `log` (see the module doc). Resolves with what
 * it did, or null when it cannot yet: the log does not hold the whole range
 * below `to` in closed segments (a follower behind), or its segments changed
 * under it (truncated, deleted, fenced); a later call does it then. A
 * damaged record stops it with CORRUPT_LOG (the log heals, and a later call
 * goes on). The log's clean state is saved once every segment is in place.
 */
export async function cleanLog(log: PartitionLog, cleaning: Cleaning, o: CleanOptions): Promise<CleanRun | null> {
  // The closed segments that end at `to` or before (the active segment's base ends the last closed one).
  const closedBelow = () => {
    const bases = log.segmentBasesIn(0, Infinity);
    return log.closedSegments().filter((s) => bases[bases.indexOf(s.base) + 1] <= cleaning.to);
  };
  // Every segment below `to` closed: the active one starts at `to` or after.
  if (log.fenced || log.segmentBasesIn(cleaning.to, Infinity).length === 0) return null;
  const run: CleanRun = {
    passes: 0,
    segmentsRewritten: 0,
    segmentsRemoved: 0,
    bytesRead: 0,
    bytesWritten: 0,
    recordsRemoved: 0,
    tombstonesRemoved: 0,
    tombstonesKept: 0,
    oldestTombstoneTs: Infinity,
    lowestWaitingTombstone: Infinity,
    markersRemoved: 0,
    lowestWaitingMarker: Infinity,
    segmentsMerged: 0,
    bytesBefore: closedBelow().reduce((n, s) => n + s.size, 0),
    bytesAfter: 0,
  };
  // What an earlier cleaning here left holds each key once: the map needs only what lies after it.
  let done = Math.min(log.cleanState?.to ?? 0, cleaning.to);
  do {
    const segments = closedBelow();
    const { map, end } = await buildMap(log, segments, done, cleaning.to, o, run);
    if (end === null) return null;
    // What the last pass keeps is what stays.
    run.tombstonesKept = 0;
    run.oldestTombstoneTs = Infinity;
    run.lowestWaitingTombstone = Infinity;
    run.lowestWaitingMarker = Infinity;
    // Producer -> whether a record of its transaction in progress (since its last marker) is kept: a pass reads
    // the log from its start, so a marker is judged after every record of its transaction.
    const txns = new Map<number, boolean>();
    for (const seg of segments.filter((s) => s.base < end)) {
      if (!await cleanSegment(log, seg, seg === segments[0], { map, txns }, cleaning, o, run)) return null;
    }
    run.passes++;
    // No closed segment ends past `done` below `to` (the segment there reaches past it): nothing more to clean.
    if (end <= done && done < cleaning.to) break;
    done = end;
  } while (done < cleaning.to);
  if (cleaning.mergeBelow !== undefined && !await mergeSegments(log, cleaning, o, run)) return null;
  run.bytesAfter = closedBelow().reduce((n, s) => n + s.size, 0);
  await log.setCleanState({ ...cleaning, at: Date.now() });
  return run;
}

/**
 * The key map of one pass: the highest offset of each key in the segments
 * from `from` on, segment by segment, until the map is full (a segment is
 * taken whole, so one may take it past its budget); `end` is where the pass
 * ends (a segment boundary), null when a segment went away under it.
 */
async function buildMap(
  log: PartitionLog,
  segments: ClosedSegment[],
  from: number,
  to: number,
  o: CleanOptions,
  run: CleanRun,
): Promise<{ map: KeyMap; end: number | null }> {
  const map = new KeyMap(Math.floor(o.keyMapBytes / SLOT_BYTES / 2));
  const capacity = Math.floor((o.keyMapBytes / SLOT_BYTES) * 3 / 4);
  const digest = new Uint32Array(3);
  let end = from;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    const segEnd = segments[i + 1]?.base ?? to;
    if (segEnd <= from) continue;
    if (map.size >= capacity && end > from) break;
    const ok = await eachLine(log, seg, o, run, (b, _s, _e, f) => {
      if (f.offset >= from && f.keyStart >= 0 && !aborted(o, f)) {
        digestOf(b, f.keyStart, f.keyEnd, digest);
        map.put(digest[0], digest[1], digest[2], f.offset);
      }
    });
    if (!ok) return { map, end: null };
    end = segEnd;
  }
  return { map, end: from >= to ? to : end };
}

/**
 * Rewrites one closed segment keeping what the pass keeps (see the module
 * doc); a segment that loses nothing is left as it is, and one that keeps
 * nothing is removed unless it is the log's first (the log start stays).
 * False when the segment went away under it.
 */
async function cleanSegment(
  log: PartitionLog,
  seg: ClosedSegment,
  first: boolean,
  pass: { map: KeyMap; txns: Map<number, boolean> },
  cleaning: Cleaning,
  o: CleanOptions,
  run: CleanRun,
): Promise<boolean> {
  const out = new CleanedWriter(`${seg.dataPath}.cleaned`, o.indexIntervalBytes);
  const digest = new Uint32Array(3);
  const { map, txns } = pass;
  let dropped = 0;
  try {
    const ok = await eachLine(log, seg, o, run, (b, s, e, f) => {
      if (f.control) {
        // A marker whose transaction left no record: nothing of it to decide for a reader, once one that read
        // its records before they were cleaned had delete.retention.ms to reach it (markersBelow).
        const recordsLeft = txns.get(f.txnProducer) ?? false;
        txns.delete(f.txnProducer);
        if (!recordsLeft && f.offset < (cleaning.markersBelow ?? 0)) {
          dropped++;
          run.markersRemoved++;
          return;
        }
        if (!recordsLeft) run.lowestWaitingMarker = Math.min(run.lowestWaitingMarker, f.offset);
        return out.add(b, s, e + 1, f.offset);
      }
      let keep = f.keyStart >= 0 && !aborted(o, f);
      if (keep) {
        digestOf(b, f.keyStart, f.keyEnd, digest);
        keep = !(map.get(digest[0], digest[1], digest[2]) > f.offset);
      }
      const purge = keep && f.tombstone && f.offset < cleaning.purgeBelow && f.ts < cleaning.horizonMs;
      if (keep && !purge) {
        if (f.tombstone) {
          run.tombstonesKept++;
          if (f.offset < cleaning.purgeBelow) run.oldestTombstoneTs = Math.min(run.oldestTombstoneTs, f.ts);
          else run.lowestWaitingTombstone = Math.min(run.lowestWaitingTombstone, f.offset);
        }
        if (f.txnProducer >= 0) txns.set(f.txnProducer, true);
        return out.add(b, s, e + 1, f.offset);
      }
      dropped++;
      if (purge) run.tombstonesRemoved++;
    }, () => out.flush(o, run));
    if (!ok) return false;
    if (dropped === 0) {
      await out.discard();
      return true;
    }
    run.recordsRemoved += dropped;
    if (out.size === 0 && !first) {
      await out.discard();
      if (!await log.swapCleaned(seg, null)) return false;
      run.segmentsRemoved++;
      return true;
    }
    const cleaned = await out.finish(o, run, await lastWritten([seg]));
    if (!await log.swapCleaned(seg, cleaned)) return false;
    run.segmentsRewritten++;
    return true;
  } catch (err) {
    await out.discard();
    throw err;
  }
}

/** The closed segments of `log` that end at or below `offset`, in order. */
function closedEndingBy(log: PartitionLog, offset: number): ClosedSegment[] {
  const closed = log.closedSegments();
  const active = log.segmentBasesIn(0, Infinity).at(-1)!;
  let n = 0;
  while (n < closed.length && (closed[n + 1]?.base ?? active) <= offset) n++;
  return closed.slice(0, n);
}

/**
 * The merging a cleaning of `log` should carry out below `below` (the end
 * of the cleaning before, so only cleaned segments are looked at): its
 * closed segments there in groups of consecutive ones of at most
 * `limitBytes` together (a larger one alone), as Kafka's cleaner groups
 * segments up to segment.bytes; `bases` are the groups' first bases. The
 * sizes are those before this cleaning, which only shrinks them. At most
 * `maxGroups` groups: past them `mergeBelow` ends the merging (it never
 * moves back: the groups before it stay at most as many);
 * `merges` is how many segments here would join the one before them.
 *
 * @example
 * ```ts ignore
 * const { mergeBelow, bases } = mergePlan(log, prev.to, log.segmentBytes, 256);
 * ```
 */
export function mergePlan(
  log: PartitionLog,
  below: number,
  limitBytes: number,
  maxGroups: number,
): { mergeBelow: number; bases: number[]; merges: number } {
  const bases: number[] = [];
  let size = 0;
  let segments = 0;
  for (const seg of closedEndingBy(log, below)) {
    if (bases.length === 0 || size + seg.size > limitBytes) {
      if (bases.length === maxGroups) return { mergeBelow: seg.base, bases, merges: segments - bases.length };
      bases.push(seg.base);
      size = 0;
    }
    size += seg.size;
    segments++;
  }
  return { mergeBelow: below, bases, merges: segments - bases.length };
}

/**
 * Merges the closed segments that end at or below `cleaning.mergeBelow`:
 * each group (a segment whose base is in `cleaning.bases`, or the first,
 * and the segments after it up to the next such) becomes one file under its
 * first base, its lines as they are. Runs after the cleaning's passes, so
 * the groups hold what the cleaning kept, the same on every replica; a base
 * of `bases` with no segment here (one the cleaning left empty and removed)
 * starts no group. False when a segment went away under it.
 */
async function mergeSegments(log: PartitionLog, cleaning: Cleaning, o: CleanOptions, run: CleanRun): Promise<boolean> {
  const closed = closedEndingBy(log, cleaning.mergeBelow ?? 0);
  const starts = new Set(cleaning.bases ?? []);
  const groups: ClosedSegment[][] = [];
  for (const seg of closed) {
    if (groups.length === 0 || starts.has(seg.base)) groups.push([seg]);
    else groups[groups.length - 1].push(seg);
  }
  for (const group of groups) {
    if (group.length < 2) continue;
    const out = new CleanedWriter(`${group[0].dataPath}.cleaned`, o.indexIntervalBytes);
    try {
      for (const seg of group) {
        const ok = await eachLine(
          log,
          seg,
          o,
          run,
          (b, s, e, f) => out.add(b, s, e + 1, f.offset),
          () => out.flush(o, run),
        );
        if (!ok) {
          await out.discard();
          return false;
        }
      }
      if (!await log.swapMerged(group, await out.finish(o, run, await lastWritten(group)))) return false;
    } catch (err) {
      await out.discard();
      throw err;
    }
    run.segmentsMerged += group.length - 1;
  }
  return true;
}

/**
 * Calls `fn` for each record of a closed segment, in order, each line checked
 * (its checksum, and an offset above the one before); `flush` after each
 * chunk. False when the segment went away under it.
 */
async function eachLine(
  log: PartitionLog,
  seg: ClosedSegment,
  o: CleanOptions,
  run: CleanRun,
  fn: (b: Uint8Array, s: number, e: number, f: CompactionFields) => void,
  flush?: () => Promise<void>,
): Promise<boolean> {
  const f: CompactionFields = {
    offset: 0,
    ts: 0,
    keyStart: -1,
    keyEnd: -1,
    tombstone: false,
    control: false,
    txnProducer: -1,
  };
  let last = seg.base - 1;
  for (let position = 0; position < seg.size;) {
    const chunk = await log.readClosed(seg, position, READ_CHUNK_BYTES);
    if (chunk === null) return false;
    let lines = chunk.subarray(0, chunk.lastIndexOf(NEWLINE) + 1);
    if (lines.length === 0) {
      // One record longer than a chunk: read it whole.
      const whole = await log.readClosed(seg, position, seg.size - position);
      if (whole === null) return false;
      lines = whole.subarray(0, whole.indexOf(NEWLINE) + 1);
      if (lines.length === 0) throw damaged(log, seg, last + 1);
    }
    for (let s = 0; s < lines.length;) {
      const e = nextIntactLine(lines, s, last + 1, true, intact);
      const offset = intact.offset;
      if (offset < 0 || !compactionFieldsAt(lines, s, e, f)) throw damaged(log, seg, last + 1);
      fn(lines, s, e, f);
      last = offset;
      s = e + 1;
    }
    position += lines.length;
    run.bytesRead += lines.length;
    await flush?.();
    await o.pause(lines.length);
  }
  return true;
}

/** When the newest of `segments` was last written (null when one cannot be looked at: the file's own time stays). */
async function lastWritten(segments: ClosedSegment[]): Promise<Date | null> {
  let newest: Date | null = null;
  for (const seg of segments) {
    const mtime = (await Deno.stat(seg.dataPath).catch(() => null))?.mtime;
    if (!mtime) return null;
    if (newest === null || mtime > newest) newest = mtime;
  }
  return newest;
}

/** Whether a record belongs to an aborted transaction. */
function aborted(o: CleanOptions, f: CompactionFields): boolean {
  if (f.txnProducer < 0 || !o.aborted) return false;
  return o.aborted.some((a) => a.producer === f.txnProducer && f.offset >= a.first && f.offset <= a.last);
}

function damaged(log: PartitionLog, seg: ClosedSegment, offset: number): YakError {
  return new YakError(
    "CORRUPT_LOG",
    `the cleaner found the record after offset ${offset - 1} of ${seg.dataPath} damaged; it stops until the ` +
      `log is healed`,
    { offset, dir: log.dir },
  );
}

/** The cleaned copy of a segment being written: kept lines, buffered, and its index entries. */
class CleanedWriter {
  readonly path: string;
  readonly #interval: number;
  #file: Deno.FsFile | null = null;
  #buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  #buffered = 0;
  size = 0;
  readonly offsets: number[] = [];
  readonly positions: number[] = [];
  #lastIndexed = -Infinity;

  constructor(path: string, interval: number) {
    this.path = path;
    this.#interval = interval;
  }

  /** Adds the line `b[s, e)` (its newline included), the record at `offset`. */
  add(b: Uint8Array, s: number, e: number, offset: number): void {
    // Index entries as the start-up scan makes them, so a rebuilt index is the same.
    if (this.size - this.#lastIndexed >= this.#interval) {
      this.offsets.push(offset);
      this.positions.push(this.size);
      this.#lastIndexed = this.size;
    }
    const n = e - s;
    if (this.#buffered + n > this.#buffer.length) {
      const grown = new Uint8Array(Math.max(this.#buffer.length * 2, this.#buffered + n));
      grown.set(this.#buffer.subarray(0, this.#buffered));
      this.#buffer = grown;
    }
    this.#buffer.set(b.subarray(s, e), this.#buffered);
    this.#buffered += n;
    this.size += n;
  }

  /** Writes what is buffered once it is past the buffer's size. */
  async flush(o: CleanOptions, run: CleanRun, force = false): Promise<void> {
    if (this.#buffered === 0 || (!force && this.#buffered < WRITE_BUFFER_BYTES)) return;
    this.#file ??= await Deno.open(this.path, { write: true, create: true, truncate: true, mode: dataModes().file });
    const bytes = this.#buffer.subarray(0, this.#buffered);
    for (let at = 0; at < bytes.length;) at += await this.#file.write(bytes.subarray(at));
    run.bytesWritten += bytes.length;
    this.#buffered = 0;
    await o.pause(bytes.length);
  }

  /**
   * The whole file, synced: a swap never puts a file whose bytes are not on
   * disk in a segment's place. Its modification time is `mtime` (the
   * segments' it replaces), as Kafka's cleaner keeps a segment's last
   * modified time: retention.ms and min.compaction.lag.ms read a closed
   * segment's as the time of its newest record, and a rewrite is not one.
   */
  async finish(
    o: CleanOptions,
    run: CleanRun,
    mtime: Date | null,
  ): Promise<{ path: string; size: number; offsets: number[]; positions: number[] }> {
    await this.flush(o, run, true);
    this.#file ??= await Deno.open(this.path, { write: true, create: true, truncate: true, mode: dataModes().file });
    await this.#file.sync();
    this.#file.close();
    this.#file = null;
    if (mtime) await Deno.utime(this.path, mtime, mtime);
    return { path: this.path, size: this.size, offsets: this.offsets, positions: this.positions };
  }

  async discard(): Promise<void> {
    this.#file?.close();
    this.#file = null;
    await Deno.remove(this.path).catch(() => {});
  }
}
