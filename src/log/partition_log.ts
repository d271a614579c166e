/**
 * A partition log: an append-only list of segments, each a JSON-lines file
 * plus a sparse index. Appends are whole batches in one write; reads seek
 * through the index; recovery and truncation live here, nowhere else.
 *
 * @module
 */
import { join } from "node:path";
import { assert, YakError } from "../errors.ts";
import { EpochCache, type EpochEntry } from "./epoch_cache.ts";
import { clearLogStart, loadLogStart, saveLogStart } from "./log_start.ts";
import { firstLineOffset, type IntactLine, lastLineOffset, nextIntactLine, offsetAt, sealLines } from "./record.ts";
import { recoverLog } from "./recovery.ts";
import { Segment, segmentStem, UncertainFileError } from "./segment.ts";
import { type CleanState, saveCleanState } from "./clean_state.ts";

const NEWLINE = 10;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Options of {@link PartitionLog.open}. */
export interface LogOptions {
  segmentBytes: number;
  /** A leader rolls a non-empty active segment older than this (0: never by age), so time retention can delete it. */
  segmentMs?: number;
  indexIntervalBytes: number;
  /** Recent appends kept in memory so tail readers (followers, consumers) skip the disk. */
  tailCacheBytes?: number;
  /**
   * How far past `tailCacheBytes` the cache may grow to keep appends at or
   * above the high watermark: records an in-sync follower has not fetched
   * yet, so its next fetch reads memory (see {@link PartitionLog.highWatermark}).
   */
  tailHoldBytes?: number;
  /** Told about repairs (torn tail cut, index rebuilt), for the operation log. */
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
  /** Told once per damaged record found (a checksum that does not match, a line that is not its record). */
  onDamage?: (damage: Damage) => void;
  /** The partition's name (`topic/partition`), for messages; the directory when not given. */
  name?: string;
  /** Told once when an I/O error leaves the log uncertain and it fences itself (see {@link PartitionLog.fenced}). */
  onFenced?: (fence: Fence) => void;
  /**
   * Told of every write that failed and was taken back whole (a full disk):
   * the log goes on, and takes writes again once they succeed.
   */
  onWriteFailed?: (failure: WriteFailure) => void;
  /**
   * At open, check every record of every segment (not only the last one):
   * the broker did not close this log cleanly, so any of its bytes may be hurt.
   */
  verifyAll?: boolean;
  /**
   * The topic is compacted: offsets may skip (the cleaner removes records
   * and keeps the others' offsets), so reads and checks take any increasing
   * offsets. A log with a cleaner state file is read so whatever this says.
   */
  compacted?: boolean;
}

/** A damaged record: where it is and who found it. */
export interface Damage {
  dir: string;
  offset: number;
  file: string;
  /** "open" (the start-up check), "read" (a read for a consumer or follower), "scrub" (the background check). */
  found: "open" | "read" | "scrub";
}

/** Why a log fenced itself: what failed, and the error. */
export interface Fence {
  dir: string;
  /** What was being done, e.g. "a write to FILE" or "cutting the log at offset 120". */
  what: string;
  error: string;
}

/** A write that failed without leaving the files uncertain (see {@link LogOptions.onWriteFailed}). */
export interface WriteFailure {
  dir: string;
  error: string;
}

/** What a start-up check of a log found, for the broker's log. */
export interface OpenCheck {
  /** Records checked at open (the last segment's, or all of them with `verifyAll`). */
  checked: number;
  /** Of those, lines from before checksums (read, checked by parsing). */
  unsealed: number;
}

/**
 * Lines read from a log: `count` records at `baseOffset` or after, each
 * ending in "\n", as the stored bytes (slices, not copies), so they can be
 * sent on as they are. `nextOffset` is where the next read starts: after
 * the last record, or further when the read met a gap (offsets a cleaning
 * removed) that runs to its end; a read of no records may still move it.
 */
export class ReadResult {
  readonly nextOffset: number;

  constructor(
    readonly baseOffset: number,
    readonly count: number,
    readonly chunks: Uint8Array[] = [],
    readonly byteLength = 0,
    nextOffset = baseOffset + count,
  ) {
    assert(nextOffset >= baseOffset + Math.min(count, 1), `a read from ${baseOffset} ending at ${nextOffset}`);
    this.nextOffset = nextOffset;
  }

  /** The lines as text (decoded on demand: the send paths never need it). */
  get text(): string {
    return this.chunks.map((c) => decoder.decode(c)).join("");
  }
}

/** Bytes appended together: `count` lines covering offsets [base, next) (fewer than that in a log with gaps). */
/** A cleaned segment's data file, written beside the segment, and its index entries (see PartitionLog.swapCleaned). */
export interface CleanedSegment {
  path: string;
  size: number;
  offsets: number[];
  positions: number[];
}

/** A closed segment as {@link PartitionLog.closedSegments} lists it. */
export interface ClosedSegment {
  base: number;
  size: number;
  dataPath: string;
  id: number;
}

/** What {@link nextIntactLine} found of the line a disk read checks (one object, reused line after line). */
const intact: IntactLine = { offset: -1, crc: 0 };

/** A disk read under way (see PartitionLog.#takeFrom). */
interface DiskRead {
  parts: Uint8Array[];
  count: number;
  bytes: number;
  /** The offset of the last line skipped or taken. */
  last: number;
  stop: "more" | "full" | "end" | "damaged";
}

interface Chunk {
  base: number;
  next: number;
  count: number;
  bytes: Uint8Array;
  /** Where each line starts, and then the end: found once, by the first read that takes part of the chunk. */
  starts?: Int32Array | null;
  /** The bytes remembered in this log's tail cache up to and with this chunk, ever (see {@link PartitionLog.hwToAppend}). */
  upTo: number;
}

/**
 * One partition's log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { PartitionLog } from "./partition_log.ts";
 * const dir = await Deno.makeTempDir();
 * const log = await PartitionLog.open(`${dir}/t-0`, { segmentBytes: 1 << 26, indexIntervalBytes: 4096 });
 * const { baseOffset, done } = log.append(1, 1, (base) => `{"offset":${base},"epoch":1}\n`);
 * await done;
 * const read = await log.read(baseOffset, 1 << 20, log.logEndOffset);
 * assert.equal(read.count, 1);
 * assert.match(read.text, /^\{"offset":0,"epoch":1,"crc":"[0-9a-f]{8}"\}\n$/); // sealed on append
 * await log.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class PartitionLog {
  readonly dir: string;
  readonly epochs: EpochCache;
  readonly #opts:
    & Required<
      Omit<LogOptions, "onEvent" | "onDamage" | "verifyAll" | "name" | "onFenced" | "onWriteFailed" | "compacted">
    >
    & Pick<LogOptions, "onEvent" | "onDamage" | "name" | "onFenced" | "onWriteFailed">;
  #segments: Segment[];
  /** Offset after the last record on disk. */
  #logEnd: number;
  /** Offset the next append will get (ahead of #logEnd while writes are queued). */
  #next: number;
  #hw = 0;
  #writeChain: Promise<void> = Promise.resolve();
  /** Leader appends taken and not yet written that asked to be told if their offsets become void. */
  #pending = new Set<{ onVoid: () => void }>();
  #tail: Chunk[] = [];
  #tailBytes = 0;
  /** Bytes ever remembered in the tail cache: each chunk's `upTo`. */
  #remembered = 0;
  #listeners = new Set<() => void>();
  #closed = false;
  /** Monotonic ms of the first write into the active segment (for segment.ms). */
  #activeSinceMs = -1;
  /** Damaged offsets known (each reported once, however often reads meet it). */
  #reported = new Set<number>();
  /** What the start-up check saw. */
  openCheck: OpenCheck = { checked: 0, unsealed: 0 };
  /** Set once an I/O error left the files uncertain: what every later call throws (see {@link fenced}). */
  #fence: YakError | null = null;
  /**
   * The log start when it lies above the first segment's base (records
   * deleted inside a segment, or a segment whose files could not be deleted
   * yet), saved in `log-start.json`; 0 otherwise. See {@link logStartOffset}.
   */
  #logStart = 0;
  /** Offsets may skip (a compacted log); see {@link LogOptions.compacted}. */
  #gaps: boolean;
  /** The last cleaning carried out here (see clean_state.ts), or null. */
  #cleanState: CleanState | null;
  /** See {@link purgedBelow}. */
  #purging = 0;
  /** Reads of segment files under way; a cleaned segment is swapped in only when there are none. */
  #readers = 0;
  #readersIdle: (() => void) | null = null;
  /** A swap waiting for reads to end, or under way: new reads wait for it. */
  #swapping: Promise<void> | null = null;

  private constructor(
    dir: string,
    segments: Segment[],
    logEnd: number,
    epochs: EpochCache,
    opts: LogOptions,
    cleanState: CleanState | null,
    gaps: boolean,
  ) {
    this.dir = dir;
    this.#segments = segments;
    this.#logEnd = logEnd;
    this.#next = logEnd;
    this.epochs = epochs;
    this.#opts = { tailCacheBytes: 8 * 1024 * 1024, tailHoldBytes: 0, segmentMs: 0, ...opts };
    this.#cleanState = cleanState;
    this.#gaps = gaps;
  }

  /** Changes this log's segment size and age limits (a topic's configs). */
  setSegmentLimits(limits: { segmentBytes: number; segmentMs: number }): void {
    this.#opts.segmentBytes = limits.segmentBytes;
    this.#opts.segmentMs = limits.segmentMs;
  }

  /** Opens (creating if needed) the log in `dir`, repairing a torn tail (see recovery.ts). */
  static async open(dir: string, opts: LogOptions): Promise<PartitionLog> {
    const saved = await loadLogStart(dir);
    const savedStart = saved !== null && "offset" in saved ? saved.offset : 0;
    const { segments, logEnd, epochs, damaged, check, cleanState, gaps } = await recoverLog(dir, opts, savedStart);
    const log = new PartitionLog(dir, segments, logEnd, epochs, opts, cleanState, gaps);
    log.openCheck = check;
    if (saved !== null && "unreadable" in saved) {
      // The records it deleted come back into view until the leader's start (or a later deletion) moves it again.
      opts.onEvent?.("log_start_unreadable", { dir, error: saved.unreadable, logStart: log.logStartOffset });
    } else if (saved !== null && saved.offset > logEnd) {
      // What lay below the start is deleted, and what was above it is gone (an unsynced tail lost with the
      // machine): nothing of this log is left, so it starts over there, as Kafka's log loader does.
      await log.resetTo(saved.offset, "its saved log start is past its log end");
    } else if (saved !== null) {
      log.#logStart = saved.offset;
    }
    for (const d of damaged) if (d.offset < logEnd) log.#markDamaged(d.offset, d.file, "open");
    return log;
  }

  /**
   * The STORAGE error every append, read, truncation and deletion throws
   * once an I/O error left this log uncertain (its files may not hold what
   * it holds in memory: a partial line that could not be cut off, segments
   * half deleted), or null. Nothing clears it: a restart opens the log from
   * what is on disk, with the usual recovery (a torn tail cut), as Kafka
   * takes a log directory offline after an IOException until a restart.
   */
  get fenced(): YakError | null {
    return this.#fence;
  }

  get #label(): string {
    return this.#opts.name === undefined ? this.dir : `partition ${this.#opts.name} (${this.dir})`;
  }

  /** Fences this log after `what` failed with `err` (once; later calls return the first fence). */
  #fenceFor(what: string, err: unknown): YakError {
    if (this.#fence) return this.#fence;
    const error = err instanceof UncertainFileError ? err.detail : err instanceof Error ? err.message : String(err);
    this.#fence = new YakError(
      "STORAGE",
      `${this.#label} is fenced: ${what} failed (${error}), so its files may not hold what the broker ` +
        `holds in memory; restart the broker to recover it`,
      { dir: this.dir },
    );
    // Nothing more goes into these files until the restart.
    for (const seg of this.#segments) seg.closeHandles();
    this.#opts.onFenced?.({ dir: this.dir, what, error });
    return this.#fence;
  }

  #checkFence(): void {
    if (this.#fence) throw this.#fence;
  }

  /** The lowest offset known to hold a damaged record, Infinity when none is known. */
  get damagedFrom(): number {
    return Math.min(Infinity, ...this.#reported);
  }

  #markDamaged(offset: number, file: string, found: Damage["found"]): void {
    // Below the log start a record is deleted already: nothing to heal (the scrubber still walks such segments).
    if (this.#reported.has(offset) || offset < this.logStartOffset) return;
    this.#reported.add(offset);
    this.#opts.onDamage?.({ dir: this.dir, offset, file, found });
  }

  /** Forgets damage at or above `offset` (those records are gone: truncated, or deleted by retention below). */
  #forgetDamage(keep: (offset: number) => boolean): void {
    for (const o of [...this.#reported]) if (!keep(o)) this.#reported.delete(o);
  }

  /**
   * The first offset a reader may have: records below it were deleted
   * (retention, DeleteRecords, or a leader's log start a follower matches;
   * see {@link advanceLogStart}), so reads below it are OUT_OF_RANGE. It is
   * the first segment's base, or above it inside that segment.
   */
  get logStartOffset(): number {
    return Math.max(this.#segments[0].base, this.#logStart);
  }

  /** Offset after the last record written. */
  get logEndOffset(): number {
    return this.#logEnd;
  }

  /** The offset consumers may read up to (exclusive). Never above the log end. */
  get highWatermark(): number {
    return this.#hw;
  }

  set highWatermark(hw: number) {
    // Nothing above the log end is ever committed; a lower mark is ignored (it never goes back but by truncation).
    assert(hw <= this.#logEnd, `high watermark ${hw} above log end ${this.#logEnd} of ${this.dir}`);
    if (hw <= this.#hw) return;
    this.#hw = hw;
    // Chunks held for followers that have now fetched them go.
    if (this.#tailBytes > this.#opts.tailCacheBytes) this.#trimTail();
  }

  /** Bytes stored, over all segments. */
  get sizeBytes(): number {
    return this.#segments.reduce((sum, s) => sum + s.size, 0);
  }

  get segmentCount(): number {
    return this.#segments.length;
  }

  /**
   * The first offsets of the segments that start in [from, to): sent with
   * replicated bytes, so followers roll at the same offsets and every
   * replica's segment files are the same files (retention deletes whole
   * segments, and replicas must agree on where they start).
   */
  segmentBasesIn(from: number, to: number): number[] {
    const out: number[] = [];
    for (const seg of this.#segments) {
      if (seg.base >= from && seg.base < to) out.push(seg.base);
    }
    return out;
  }

  /** The files of this log's segments (for hashing replicas in tests). */
  get segmentPaths(): string[] {
    return this.#segments.map((s) => s.dataPath);
  }

  /**
   * Appends `count` records as a leader: `build(baseOffset)` makes their lines,
   * as text (sealed here) or as bytes `writeBatch` sealed already.
   * The offset is taken synchronously, so callers keep their order; `done`
   * settles once the bytes are written. `onVoid` runs if the offsets become
   * void (this write or an earlier queued one failed): synchronously with the
   * rewind that frees them, before any other append can take them.
   */
  append(
    epoch: number,
    count: number,
    build: (baseOffset: number) => string | Uint8Array,
    onVoid?: () => void,
  ): { baseOffset: number; done: Promise<void>; bytes: number } {
    this.#checkFence();
    assert(count > 0, `an append of ${count} records`);
    assert(epoch >= this.epochs.lastEpoch, `an append in epoch ${epoch} after epoch ${this.epochs.lastEpoch}`);
    const baseOffset = this.#next;
    // Encoded now, not when the write runs: the built string still points at
    // every record's parts, and a queued write would keep them all alive.
    const built = build(baseOffset);
    const bytes = typeof built === "string" ? sealLines(encoder.encode(built), count) : built;
    assert(bytes[bytes.length - 1] === 0x0a, `an append of ${count} records whose bytes do not end a line`);
    this.#next += count;
    const pending = onVoid ? { onVoid } : null;
    if (pending) this.#pending.add(pending);
    const done = this.#enqueue(baseOffset, count, bytes, [[epoch, baseOffset]], null, pending);
    return { baseOffset, done, bytes: bytes.length };
  }

  /**
   * Appends a leader's bytes verbatim as a follower: `count` lines covering
   * offsets [baseOffset, next) (next defaults to baseOffset + count; in a
   * compacted log fewer lines than offsets, or none: a gap the leader's
   * cleaning left). `epochs` are the leader's epoch entries that start
   * inside the chunk; `rolls`, where the leader's segments start inside it:
   * given, the follower rolls there and only there.
   */
  appendReplica(
    baseOffset: number,
    count: number,
    text: string | Uint8Array,
    epochs: EpochEntry[],
    rolls: number[] | null = null,
    next = baseOffset + count,
  ): Promise<void> {
    if (this.#fence) return Promise.reject(this.#fence);
    if (baseOffset !== this.#next) {
      return Promise.reject(
        new YakError(
          "OUT_OF_RANGE",
          `replica chunk starts at ${baseOffset}, log ends at ${this.#next}`,
        ),
      );
    }
    const problem = replicaChunkProblem(baseOffset, count, text, next);
    if (problem !== null) {
      return Promise.reject(
        new YakError("INTERNAL", `internal error: replica chunk at ${baseOffset} of ${count} records ${problem}`),
      );
    }
    // Offsets that skip come from a compacted leader: this log reads them so from now on, after restarts too.
    const gapped = next - baseOffset !== count || (count > 0 && firstLineOffset(text) !== baseOffset);
    this.#next = next;
    const done = this.#enqueue(baseOffset, count, text, epochs, rolls, null, next);
    return gapped && !this.#gaps ? done.then(() => this.allowGaps()) : done;
  }

  #enqueue(
    baseOffset: number,
    count: number,
    text: string | Uint8Array,
    epochs: EpochEntry[],
    rolls: number[] | null = null,
    pending: { onVoid: () => void } | null = null,
    next = baseOffset + count,
  ): Promise<void> {
    const run = async () => {
      if (this.#closed) throw new YakError("UNAVAILABLE", "log is closed");
      // Fenced while this write waited (its offsets went back with the failed write's rewind).
      if (this.#fence) {
        if (pending && this.#pending.delete(pending)) pending.onVoid();
        throw this.#fence;
      }
      // An earlier write failed and rewound the log: this one's offsets are void.
      if (baseOffset !== this.#logEnd) {
        // Told at the rewind already, unless a truncation (not a failed write) voided it.
        if (pending && this.#pending.delete(pending)) pending.onVoid();
        throw new YakError(
          "STORAGE",
          `write at ${baseOffset} dropped after an earlier failed write`,
        );
      }
      const bytes = typeof text === "string" ? encoder.encode(text) : text;
      let changed = false;
      for (const [e, start] of epochs) {
        changed = this.epochs.assign(e, start) || changed;
      }
      const written = { offset: baseOffset, bytes: 0 };
      try {
        if (changed) await this.epochs.save();
        await this.#write(bytes, baseOffset, next, rolls, written);
      } catch (err) {
        throw this.#writeFailed(err, baseOffset, bytes, written, changed);
      }
      this.#logEnd = next;
      if (pending) this.#pending.delete(pending);
      this.#remember({ base: baseOffset, next, count, bytes });
      for (const fn of this.#listeners) fn();
    };
    const done = this.#writeChain.then(run);
    this.#writeChain = done.catch(() => {}); // the queue goes on; `done` carries the error to the caller
    return done;
  }

  /**
   * Writes a batch's lines at the log end. A leader (`rolls` null) rolls by
   * size and age; a follower cuts the chunk where the leader's segments
   * start, and `written` follows the parts that are in their segments.
   */
  async #write(
    bytes: Uint8Array,
    baseOffset: number,
    next: number,
    rolls: number[] | null,
    written: { offset: number; bytes: number },
  ): Promise<void> {
    const interval = this.#opts.indexIntervalBytes;
    if (rolls === null) {
      const active = this.#segments[this.#segments.length - 1];
      const old = this.#opts.segmentMs > 0 && this.#activeSinceMs >= 0 &&
        performance.now() - this.#activeSinceMs > this.#opts.segmentMs;
      if (active.size > 0 && (old || active.size + bytes.length > this.#opts.segmentBytes)) {
        await this.#roll(baseOffset);
      }
      if (this.#activeSinceMs < 0) this.#activeSinceMs = performance.now();
      await this.#segments[this.#segments.length - 1].append(bytes, baseOffset, interval);
      return;
    }
    let at = 0;
    let offset = baseOffset;
    for (const roll of [...rolls.filter((r) => r > baseOffset && r < next), Infinity]) {
      const end = roll === Infinity ? bytes.length : lineAtOrAfter(bytes, at, roll);
      if (rolls.includes(offset)) await this.#rollTo(offset);
      if (end > at) {
        await this.#segments[this.#segments.length - 1].append(bytes.subarray(at, end), offsetAt(bytes, at), interval);
      }
      at = end;
      offset = roll;
      if (roll !== Infinity) Object.assign(written, { offset: roll, bytes: at });
    }
  }

  /**
   * A follower's roll where the leader's segment `base` starts. Nothing to
   * do when the active segment starts there; an empty active segment that is
   * not the first is moved there (the leader has no segment at its base:
   * its cleaning removed it, empty), and otherwise a new segment begins.
   */
  async #rollTo(base: number): Promise<void> {
    const active = this.#segments[this.#segments.length - 1];
    if (active.base === base) return;
    if (active.size > 0 || this.#segments.length === 1) return await this.#roll(base);
    this.#segments[this.#segments.length - 1] = await Segment.create(this.dir, base);
    this.#activeSinceMs = -1;
    try {
      await active.remove();
    } catch (err) {
      // Left on disk, the empty file would be a segment of its own at the next open.
      throw new UncertainFileError(`removing ${active.dataPath}`, err instanceof Error ? err.message : String(err));
    }
  }

  /**
   * After a failed write: the log end goes back to what is written, and the
   * error to throw. A follower's chunk that crossed a roll keeps the parts
   * written before the failed one (they are in their own segments, and
   * writing them again would put them there twice). When the failure left
   * the files uncertain (see UncertainFileError), the log is fenced.
   */
  #writeFailed(
    err: unknown,
    baseOffset: number,
    bytes: Uint8Array,
    written: { offset: number; bytes: number },
    epochsChanged: boolean,
  ): YakError {
    if (written.offset > baseOffset) {
      this.#logEnd = written.offset;
      const kept = bytes.subarray(0, written.bytes);
      this.#remember({ base: baseOffset, next: written.offset, count: lineCount(kept), bytes: kept });
      for (const fn of this.#listeners) fn();
    }
    this.#next = this.#logEnd;
    // In the same synchronous step as the rewind: this append and every one
    // queued behind it are void, and their owners must undo what they noted
    // (producer sequences) before another append can take these offsets.
    // Told later, when each rejection reached its caller, a pipelined batch
    // taken in between passed the sequence check on the failed batch's
    // sequences, was written, and then had its own sequences rolled back:
    // its resend was stored twice (the full-disk test, 1 run in 10-20).
    const voided = [...this.#pending];
    this.#pending.clear();
    for (const p of voided) p.onVoid();
    if (epochsChanged) this.epochs.truncateFrom(this.#logEnd, this.logStartOffset);
    if (err instanceof UncertainFileError) return this.#fenceFor(err.what, err);
    const failed = err instanceof YakError ? err : new YakError(
      "STORAGE",
      `cannot write to ${this.#label}: ${err instanceof Error ? err.message : err}`,
    );
    if (failed.code === "STORAGE") this.#opts.onWriteFailed?.({ dir: this.dir, error: failed.message });
    return failed;
  }

  async #roll(baseOffset: number): Promise<void> {
    this.#segments[this.#segments.length - 1].closeHandles();
    this.#segments.push(await Segment.create(this.dir, baseOffset));
    this.#activeSinceMs = -1;
  }

  /** Starts a new segment at the log end (in the write queue), unless the active one is empty. */
  roll(): Promise<void> {
    const done = this.#writeChain.then(async () => {
      this.#checkFence();
      try {
        if (this.#segments[this.#segments.length - 1].size > 0) await this.#roll(this.#logEnd);
      } catch (err) {
        // A failed roll leaves the active segment as it was, unless its new file could not be taken back.
        if (err instanceof UncertainFileError) throw this.#fenceFor(err.what, err);
        throw err;
      }
    });
    this.#writeChain = done.catch(() => {});
    return done;
  }

  /**
   * The segments that are no longer written (all but the active one): base
   * offset, bytes, file, and the segment's identity (a cleaned segment, its
   * file replaced, is another one).
   */
  closedSegments(): ClosedSegment[] {
    return this.#segments.slice(0, -1).map((s) => ({ base: s.base, size: s.size, dataPath: s.dataPath, id: s.id }));
  }

  /**
   * Moves the log start up to `offset` (never down, never past the log end),
   * in the write queue like truncation, and deletes the whole segments below
   * it (never the active one); resolves with the log start. The one way a
   * log start moves: records deleted on the leader (Kafka's DeleteRecords),
   * a follower matching its leader's start, retention, the metadata log's
   * snapshot. The start is saved first (`log-start.json`, see log_start.ts),
   * so it holds across a restart even inside a segment. A segment whose
   * files cannot be deleted stays below the start, unread, and the call
   * fails with STORAGE; a later call deletes it.
   */
  advanceLogStart(offset: number, reason: string): Promise<number> {
    return this.#moveStart(() => offset, reason);
  }

  /**
   * Deletes whole segments that end at or below `offset` (never the active
   * one): the log start moves to the first segment left, as
   * {@link advanceLogStart} moves it. Retention and the metadata snapshot.
   */
  deleteSegmentsBefore(offset: number, reason: string): Promise<number> {
    return this.#moveStart(() => this.#segmentFor(offset).base, reason);
  }

  #moveStart(target: () => number, reason: string): Promise<number> {
    const done = this.#writeChain.then(async () => {
      this.#checkFence();
      const offset = target();
      if (offset > this.#logEnd) {
        throw new YakError(
          "OUT_OF_RANGE",
          `${this.#label} ends at ${this.#logEnd}: its start cannot move to ${offset}`,
        );
      }
      const moved = offset > this.logStartOffset;
      if (moved) {
        try {
          await saveLogStart(this.dir, offset);
        } catch (err) {
          // Nothing moved: the old file (or none) still says where the log starts.
          throw new YakError(
            "STORAGE",
            `cannot save the log start of ${this.#label} (${err}); it stays at ${this.logStartOffset}`,
          );
        }
        this.#logStart = offset;
        await this.#startMoved();
      }
      return await this.#deleteBelowStart(reason, moved);
    });
    this.#writeChain = done.then(() => {}, () => {});
    return done;
  }

  /** After the log start moved: what lies below it is forgotten (damage, cached lines, epochs before it). */
  async #startMoved(): Promise<void> {
    const start = this.logStartOffset;
    this.#forgetDamage((o) => o >= start);
    this.#tail = this.#tail.filter((c) => c.next > start);
    this.#tailBytes = this.#tail.reduce((n, c) => n + c.bytes.length, 0);
    if (this.epochs.truncateFromStart(start)) await this.epochs.save();
  }

  /** Deletes the whole segments below the log start, oldest first; resolves with the log start. */
  async #deleteBelowStart(reason: string, moved: boolean): Promise<number> {
    let segments = 0;
    let bytes = 0;
    let failed: { path: string; err: unknown } | null = null;
    while (this.#segments.length > 1 && this.#segments[1].base <= this.logStartOffset) {
      // Out of the list before its files go, so no read starts on it meanwhile.
      const seg = this.#segments.shift()!;
      try {
        await seg.remove();
      } catch (err) {
        // Its data file is still there (Segment.remove): it stays the log's first segment, whole and below
        // the start, and a later call deletes it. Counted as deleted, it came back at the next start.
        this.#segments.unshift(seg);
        failed = { path: seg.dataPath, err };
        break;
      }
      segments++;
      bytes += seg.size;
    }
    const start = this.logStartOffset;
    if (segments > 0) {
      this.#opts.onEvent?.("segments_deleted", { dir: this.dir, reason, segments, bytes, logStart: start });
    } else if (moved) {
      this.#opts.onEvent?.("log_start_moved", { dir: this.dir, reason, logStart: start });
    }
    if (failed) {
      const why = failed.err instanceof Error ? failed.err.message : String(failed.err);
      throw new YakError(
        "STORAGE",
        `cannot delete ${failed.path} (${why}); ${this.#label} starts at ${start}, and a later try deletes it`,
      );
    }
    return start;
  }

  /**
   * Drops everything and starts empty at `offset` (a follower whose whole log
   * lies below the leader's log start: what it lacks was deleted there).
   */
  resetTo(offset: number, reason: string): Promise<void> {
    const done = this.#writeChain.then(() =>
      this.#uncertainUnlessDone(`starting over at offset ${offset}`, () => this.#reset(offset, reason))
    );
    this.#writeChain = done.catch(() => {});
    return done;
  }

  /**
   * Runs a change of many files (a truncation, a reset) that cannot be
   * undone halfway: a failure fences the log, since memory and disk may
   * then disagree (segments removed from one and not the other).
   */
  async #uncertainUnlessDone(what: string, change: () => Promise<void>): Promise<void> {
    this.#checkFence();
    try {
      await change();
    } catch (err) {
      throw this.#fenceFor(what, err);
    }
  }

  async #reset(offset: number, reason: string): Promise<void> {
    // Oldest first: a failure leaves the newest segments, still a whole log from its first one.
    for (const seg of this.#segments) await seg.remove();
    this.#segments = [await Segment.create(this.dir, offset)];
    await this.#startAtFirstSegment();
    this.#activeSinceMs = -1;
    this.#logEnd = offset;
    this.#next = offset;
    if (offset > this.#hw) this.#hw = offset;
    this.#tail = [];
    this.#tailBytes = 0;
    this.#forgetDamage(() => false);
    if (this.epochs.truncateFrom(0)) await this.epochs.save();
    await this.#uncleanFrom(0);
    this.#opts.onEvent?.("log_reset", { dir: this.dir, reason, logStart: offset });
  }

  /** The log starts where its (new) first segment does: the saved start goes. */
  async #startAtFirstSegment(): Promise<void> {
    this.#logStart = 0;
    await clearLogStart(this.dir);
  }

  #remember(fields: Omit<Chunk, "upTo">): void {
    this.#remembered += fields.bytes.length;
    const chunk: Chunk = { ...fields, upTo: this.#remembered };
    this.#tail.push(chunk);
    this.#tailBytes += chunk.bytes.length;
    this.#trimTail();
  }

  /**
   * Drops the oldest cached chunks while the cache is over its size, except
   * those above the high watermark while it is within the hold: on the
   * leader, the high watermark is the in-sync followers' lowest fetch, and
   * under kcat -P (a produce of 2 MB per partition) each fetch found its
   * chunk pushed out by the next one already, so the leader read it back
   * from the segment files and checked every line (26% of its CPU).
   */
  #trimTail(): void {
    const { tailCacheBytes, tailHoldBytes } = this.#opts;
    while (this.#tailBytes > tailCacheBytes && this.#tail.length > 1) {
      if (this.#tail[0].next > this.#hw && this.#tailBytes <= tailHoldBytes) break;
      this.#tailBytes -= this.#tail.shift()!.bytes.length;
    }
  }

  /**
   * The offset the high watermark must reach for the records above it to
   * fill at most half the tail hold (`tailHoldBytes`); -1 when they fill no
   * more now, or nothing is held. A leader holds an acks=all batch back
   * while this is not -1 (see `PartitionOps.roomToAppend`).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { PartitionLog } from "./partition_log.ts";
   * const dir = await Deno.makeTempDir();
   * const log = await PartitionLog.open(dir, { segmentBytes: 1 << 20, indexIntervalBytes: 4096, tailHoldBytes: 200 });
   * const line = (base: number) => `{"offset":${base},"epoch":1,"value":"${"v".repeat(47)}"}\n`; // 98 bytes sealed
   * await log.append(1, 1, line).done;
   * assert.equal(log.hwToAppend(), -1); // 98 bytes above the high watermark: within half the hold
   * await log.append(1, 1, line).done;
   * assert.equal(log.hwToAppend(), 1); // 196: the first record must be replicated first
   * log.highWatermark = 1;
   * assert.equal(log.hwToAppend(), -1);
   * await log.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  hwToAppend(): number {
    const tail = this.#tail;
    if (this.#opts.tailHoldBytes <= 0 || tail.length === 0) return -1;
    const room = this.#opts.tailHoldBytes / 2;
    const end = tail[tail.length - 1].upTo;
    const before = (c: Chunk) => c.upTo - c.bytes.length;
    // Two binary searches, not a walk: a producer of small batches leaves thousands of chunks in 4 MiB.
    // The first chunk not wholly below the high watermark (chunks run in offset order):
    const above = firstWhere(tail, (c) => c.next > this.#hw);
    if (above === tail.length || end - before(tail[above]) <= room) return -1;
    // The newest chunk from which on the cache holds more than `room`: the high watermark must pass it.
    return tail[firstWhere(tail, (c) => before(c) >= end - room) - 1].next;
  }

  /** The size past which the active segment rolls (the topic's segment.bytes). */
  get segmentBytes(): number {
    return this.#opts.segmentBytes;
  }

  /** Whether offsets in this log may skip (a compacted log). */
  get gaps(): boolean {
    return this.#gaps;
  }

  /**
   * From now on offsets may skip in this log, after restarts too (the
   * clean-state file says so): its topic is compacted, or a leader's chunk
   * skipped offsets its cleaning removed.
   */
  async allowGaps(): Promise<void> {
    this.#gaps = true;
    if (this.#cleanState !== null) return;
    this.#cleanState = { to: 0, purgeBelow: 0, horizonMs: 0, at: 0 };
    await saveCleanState(this.dir, this.#cleanState);
  }

  /**
   * Whole segments lie below the log start: it moved while the segment it
   * fell in was still the active one, which a later roll closed. The next
   * move of the start (or the same start again) deletes them.
   */
  get hasSegmentsBelowStart(): boolean {
    return this.#segments.length > 1 && this.#segments[1].base <= this.logStartOffset;
  }

  /** The last cleaning carried out here, or null (see clean_state.ts). */
  get cleanState(): CleanState | null {
    return this.#cleanState;
  }

  /**
   * Below this offset a cleaning here may have removed tombstones (it is
   * carrying one out, or did): a follower whose log ends below it starts
   * over (see replication.ts).
   */
  get purgedBelow(): number {
    return Math.max(this.#purging, this.#cleanState?.purgeBelow ?? 0, this.#cleanState?.purging ?? 0);
  }

  /**
   * A cleaning that may remove tombstones below `offset` starts here: saved
   * before it removes anything, so that after a restart in its middle a
   * follower whose log ends below it still starts over (kept in memory only,
   * a follower rejoined after the restart and kept a value a tombstone here
   * had deleted, for good).
   */
  async notePurging(offset: number): Promise<void> {
    if (offset <= this.purgedBelow) return;
    this.#purging = offset;
    this.#cleanState = { ...(this.#cleanState ?? { to: 0, purgeBelow: 0, horizonMs: 0, at: 0 }), purging: offset };
    this.#gaps = true;
    await saveCleanState(this.dir, this.#cleanState);
  }

  /** Notes a cleaning as carried out here, once every segment of it is in place. */
  async setCleanState(state: CleanState): Promise<void> {
    this.#checkFence();
    this.#gaps = true;
    // A cleaning started after this one (its purge point saved) is still under way.
    const purging = Math.max(this.#cleanState?.purging ?? 0, this.#purging);
    this.#cleanState = purging > state.purgeBelow ? { ...state, purging } : state;
    await saveCleanState(this.dir, this.#cleanState);
  }

  /**
   * Bytes of a closed segment, for the cleaner: up to `length` from byte
   * `position`, read while no swap runs; null once the segment is no longer
   * here as it was (deleted, truncated away, or replaced by a cleaned copy).
   */
  async readClosed(seg: ClosedSegment, position: number, length: number): Promise<Uint8Array | null> {
    await this.#lockRead();
    try {
      const here = this.#segments.slice(0, -1).find((s) => s.id === seg.id);
      if (!here || this.#fence || this.#closed) return null;
      return await here.readAt(position, length);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    } finally {
      this.#unlockRead();
    }
  }

  /**
   * Puts the cleaned copy of the closed segment `seg` in its place:
   * `cleaned.path` is its whole data file, written and synced beside it
   * (`<base>.jsonl.cleaned`), with its index entries; null removes the
   * segment instead (it keeps no record, and is not the log's first). Runs
   * in the write queue (after the appends, truncations and deletions queued
   * before it), while no read of the files is under way. The data file is
   * renamed to `.swap` and then over the segment's file, so a crash leaves
   * the old file or the new one (recovery.ts ends or drops the swap).
   * Resolves false, the cleaned file removed, when the segment is no longer
   * here as it was.
   */
  swapCleaned(seg: ClosedSegment, cleaned: CleanedSegment | null): Promise<boolean> {
    const done = this.#writeChain.then(() => this.#exclusive(() => this.#swap(seg, cleaned)));
    this.#writeChain = done.then(() => {}, () => {});
    return done;
  }

  async #swap(seg: ClosedSegment, cleaned: CleanedSegment | null): Promise<boolean> {
    const i = this.#segments.findIndex((s) => s.id === seg.id);
    // Removing the first segment would move the log start: one that became first since the cleaner looked (the
    // log start moved: retention, a deletion of records) is not here as it was.
    if (this.#fence || this.#closed || i === -1 || i === this.#segments.length - 1 || (cleaned === null && i === 0)) {
      if (cleaned) await Deno.remove(cleaned.path).catch(() => {});
      return false;
    }
    const old = this.#segments[i];
    const end = this.#segments[i + 1].base;
    if (cleaned === null) {
      this.#segments.splice(i, 1);
      try {
        await old.remove();
      } catch (err) {
        // Its data file is still there (Segment.remove): it stays, whole, and a later pass goes on.
        this.#segments.splice(i, 0, old);
        throw err;
      }
    } else {
      const swap = `${old.dataPath}.swap`;
      await Deno.rename(cleaned.path, swap);
      old.closeHandles();
      await Deno.remove(old.indexPath).catch(() => {});
      await Deno.rename(swap, old.dataPath);
      this.#segments[i] = await Segment.adopt(this.dir, old.base, cleaned.size, cleaned.offsets, cleaned.positions);
    }
    // The tail cache must not serve the old lines of what was cleaned.
    this.#tail = this.#tail.filter((c) => c.base >= end);
    this.#tailBytes = this.#tail.reduce((n, c) => n + c.bytes.length, 0);
    return true;
  }

  /**
   * Puts one file in the place of the consecutive closed segments `group`
   * (merged by the cleaner: `merged.path` holds their lines, written and
   * synced as `<first base>.jsonl.cleaned`), under the first one's base. As
   * {@link swapCleaned}, in the write queue while no read is under way. The
   * file is renamed to `<first base>.jsonl.swap.<end>` (`end` the base of the
   * segment after the group), then the group's later segments are deleted
   * and the file renamed over the first: a crash after the first rename
   * leaves the swap, which recovery.ts finishes (it deletes the segments
   * from the first's base to `end`), before it the old segments. Resolves
   * false, the file removed, when the group is no longer here as it was.
   */
  swapMerged(group: ClosedSegment[], merged: CleanedSegment): Promise<boolean> {
    const done = this.#writeChain.then(() => this.#exclusive(() => this.#merge(group, merged)));
    this.#writeChain = done.then(() => {}, () => {});
    return done;
  }

  async #merge(group: ClosedSegment[], merged: CleanedSegment): Promise<boolean> {
    const i = this.#segments.findIndex((s) => s.id === group[0].id);
    const here = i === -1 ? [] : this.#segments.slice(i, i + group.length);
    if (
      this.#fence || this.#closed || group.length < 2 || i + group.length >= this.#segments.length ||
      here.some((s, j) => s.id !== group[j].id)
    ) {
      await Deno.remove(merged.path).catch(() => {});
      return false;
    }
    const first = here[0];
    const end = this.#segments[i + group.length].base;
    const swap = `${first.dataPath}.swap.${String(end).padStart(20, "0")}`;
    await Deno.rename(merged.path, swap);
    for (const s of here.slice(1).reverse()) await s.remove();
    first.closeHandles();
    await Deno.remove(first.indexPath).catch(() => {});
    await Deno.rename(swap, first.dataPath);
    const adopted = await Segment.adopt(this.dir, first.base, merged.size, merged.offsets, merged.positions);
    this.#segments.splice(i, group.length, adopted);
    this.#tail = this.#tail.filter((c) => c.base >= end);
    this.#tailBytes = this.#tail.reduce((n, c) => n + c.bytes.length, 0);
    return true;
  }

  /** Runs `fn` while no read of segment files is under way; reads that come meanwhile wait for it. */
  async #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#swapping) await this.#swapping;
    let release!: () => void;
    this.#swapping = new Promise((resolve) => (release = resolve));
    try {
      if (this.#readers > 0) await new Promise<void>((resolve) => (this.#readersIdle = resolve));
      this.#readersIdle = null;
      return await fn();
    } finally {
      this.#swapping = null;
      release();
    }
  }

  /** Calls `fn` after every append; returns the unsubscribe function. */
  onAppend(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Reads whole records from `from`, below `end` (exclusive), about `maxBytes`
   * of them but always at least one. Throws OUT_OF_RANGE past the log end.
   */
  async read(from: number, maxBytes: number, end: number): Promise<ReadResult> {
    this.#checkFence();
    end = Math.min(end, this.#logEnd);
    if (from < this.logStartOffset || from > this.#logEnd) {
      throw new YakError(
        "OUT_OF_RANGE",
        `offset ${from} is outside ${this.logStartOffset}..${this.#logEnd}`,
        { logStart: this.logStartOffset, logEnd: this.#logEnd },
      );
    }
    if (from >= end) return new ReadResult(from, 0);
    const first = this.#tail[0];
    if (first && from >= first.base) return this.#readTail(from, maxBytes, end);
    await this.#lockRead();
    try {
      return await this.#readDisk(from, maxBytes, end);
    } finally {
      this.#unlockRead();
    }
  }

  /** Waits for a swap of cleaned segments under way, then counts this read of segment files. */
  async #lockRead(): Promise<void> {
    while (this.#swapping) await this.#swapping;
    this.#readers++;
  }

  #unlockRead(): void {
    if (--this.#readers === 0) this.#readersIdle?.();
  }

  /**
   * The first tail chunk that ends past `from` (the tail's length: none).
   * A binary search: chunks are in offset order, and small batches make
   * a thousand of them in a tail, which every fetch read scanned.
   */
  #tailIndex(from: number): number {
    const tail = this.#tail;
    let lo = 0;
    let hi = tail.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (tail[mid].next > from) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  #readTail(from: number, maxBytes: number, end: number): ReadResult {
    const parts: Uint8Array[] = [];
    let count = 0;
    let bytes = 0;
    let next = from;
    for (let i = this.#tailIndex(from); i < this.#tail.length; i++) {
      const chunk = this.#tail[i];
      if (chunk.base >= end || (count > 0 && bytes >= maxBytes)) break;
      if (chunk.base >= next && chunk.next <= end && bytes + chunk.bytes.length <= maxBytes) {
        parts.push(chunk.bytes);
        bytes += chunk.bytes.length;
        count += chunk.count;
        next = chunk.next;
        continue;
      }
      const budget = count === 0 ? Math.max(1, maxBytes - bytes) : maxBytes - bytes;
      const cut = takeIndexed(chunk, next, end, budget) ?? takeLines(chunk.bytes, next, end, budget);
      if (cut.count > 0) {
        parts.push(cut.bytes);
        bytes += cut.bytes.length;
        count += cut.count;
        next = cut.last + 1;
      }
      if (!cut.complete) break;
      // Every line of the chunk below `end` is taken: what follows them up to its end is a gap.
      next = Math.min(chunk.next, end);
    }
    return new ReadResult(from, count, parts, bytes, next);
  }

  /** Reads from the segment files, checking each line's checksum; see {@link read}. */
  async #readDisk(from: number, maxBytes: number, end: number): Promise<ReadResult> {
    const seg = this.#segmentFor(from);
    const start = seg.lookup(from);
    const out: DiskRead = { parts: [], count: 0, bytes: 0, last: start.offset - 1, stop: "more" };
    let position = start.position;
    while (out.stop === "more" && position < seg.size) {
      const chunk = await seg.readAt(position, Math.max(64 * 1024, maxBytes - out.bytes + 4096));
      const lastNl = chunk.lastIndexOf(NEWLINE);
      // One record longer than the chunk: read it whole.
      const lines = lastNl === -1 ? await this.#readLongLine(seg, position) : chunk.subarray(0, lastNl + 1);
      position += this.#takeFrom(seg, lines, from, end, maxBytes, out);
    }
    const next = out.stop === "end" ? end : out.last + 1;
    const read = new ReadResult(from, out.count, out.parts, out.bytes, Math.max(from, next));
    if (out.stop !== "more" || (out.count > 0 && out.bytes >= maxBytes)) return read;
    // Ran off the segment's end: the next segment goes on (past the gap up to its base), or the log ends here.
    const after = this.#segments[this.#segments.indexOf(seg) + 1];
    if (after === undefined || after.base >= end) return new ReadResult(from, out.count, out.parts, out.bytes, end);
    return await this.#readOn(read, after.base, maxBytes, end);
  }

  /**
   * Takes the lines of `lines` (whole lines read from `seg`) that a read from
   * `from` below `end` wants, into `out`; each is checked before it is served.
   * Returns the bytes consumed (skipped or taken), and says in `out.stop` why
   * it stopped: "full" (the budget), "end" (a line at `end` or past it),
   * "damaged", or "more" (it wants the next lines).
   */
  #takeFrom(seg: Segment, lines: Uint8Array, from: number, end: number, maxBytes: number, out: DiskRead): number {
    let at = 0;
    // Lines below `from` (after the index entry) are skipped, not served.
    // Without gaps the line after `last` is `last + 1`: counted, not parsed (as a damaged one is).
    while (at < lines.length && out.count === 0) {
      const offset = this.#gaps ? offsetAt(lines, at) : out.last + 1;
      if (offset < 0 || offset >= from) break;
      out.last = offset;
      at = lines.indexOf(NEWLINE, at) + 1;
    }
    let stop = at;
    while (stop < lines.length) {
      if (out.count > 0 && out.bytes + (stop - at) >= maxBytes) {
        out.stop = "full";
        break;
      }
      if (!this.#gaps && out.last + 1 >= end) {
        out.stop = "end";
        break;
      }
      // Every line read from disk proves itself before it is served (its checksum, its place).
      const nl = nextIntactLine(lines, stop, out.last + 1, this.#gaps, intact);
      const offset = intact.offset;
      if (offset < 0) {
        this.#damaged(seg, out.last + 1, out.count > 0);
        out.stop = "damaged";
        break;
      }
      if (offset >= end) {
        out.stop = "end";
        break;
      }
      out.last = offset;
      out.count++;
      stop = nl + 1;
    }
    if (stop > at) {
      out.parts.push(lines.subarray(at, stop));
      out.bytes += stop - at;
    }
    return stop;
  }

  /** A disk read that ran off its segment's end goes on in the next one, from its base. */
  async #readOn(read: ReadResult, base: number, maxBytes: number, end: number): Promise<ReadResult> {
    let more: ReadResult;
    try {
      more = await this.#readDisk(base, maxBytes - read.byteLength, end);
    } catch (err) {
      // The next segment starts with a damaged record: serve what came before it.
      if (read.count > 0 && err instanceof YakError && err.code === "CORRUPT_LOG") return read;
      throw err;
    }
    if (read.count > 0 && more.count === 0 && more.nextOffset === base) return read;
    return new ReadResult(
      read.baseOffset,
      read.count + more.count,
      [...read.chunks, ...more.chunks],
      read.byteLength + more.byteLength,
      more.nextOffset,
    );
  }

  /**
   * Refuses to serve a damaged record: reports it, and throws CORRUPT_LOG
   * with its offset unless `servedBefore` (the read ends before it, with
   * the records it has).
   */
  #damaged(seg: Segment, offset: number, servedBefore = false): void {
    this.#markDamaged(offset, seg.dataPath, "read");
    if (servedBefore) return;
    throw new YakError(
      "CORRUPT_LOG",
      `the record at offset ${offset} in ${seg.dataPath} is damaged`,
      { offset, dir: this.dir },
    );
  }

  /**
   * Checks part of a closed segment for the scrubber: about `maxBytes` of
   * the segment whose base is `base`, from byte `position` (where the record
   * after `offset - 1` starts). A damaged record is reported as a read
   * reports it (found "scrub"). Resolves with where the next step starts and
   * the bytes checked, or null once the segment is done (or no longer closed
   * and here: deleted, or replaced by its cleaned copy, `id` tells).
   */
  async scrub(
    base: number,
    position: number,
    offset: number,
    maxBytes: number,
    id?: number,
  ): Promise<{ position: number; offset: number; bytes: number } | null> {
    await this.#lockRead();
    try {
      const seg = this.#segments.slice(0, -1).find((s) => s.base === base && (id === undefined || s.id === id));
      if (!seg || position >= seg.size || this.#closed || this.#fence) return null;
      return await this.#scrubStep(seg, position, offset, maxBytes);
    } finally {
      this.#unlockRead();
    }
  }

  async #scrubStep(
    seg: Segment,
    position: number,
    offset: number,
    maxBytes: number,
  ): Promise<{ position: number; offset: number; bytes: number } | null> {
    let chunk: Uint8Array;
    try {
      chunk = await seg.readAt(position, maxBytes);
      let lastNl = chunk.lastIndexOf(NEWLINE);
      if (lastNl === -1) {
        chunk = await this.#readLongLine(seg, position);
        lastNl = chunk.length - 1;
      }
      let at = 0;
      let next = offset;
      while (at <= lastNl) {
        const nl = nextIntactLine(chunk, at, next, this.#gaps, intact);
        const found = intact.offset;
        if (found < 0) {
          // The rest of this segment is re-copied with it when it heals.
          this.#markDamaged(next, seg.dataPath, "scrub");
          return null;
        }
        next = found + 1;
        at = nl + 1;
      }
      return { position: position + at, offset: next, bytes: at };
    } catch (err) {
      // Deleted by retention or truncated under us: nothing left to check there.
      if (err instanceof Deno.errors.NotFound) return null;
      if (err instanceof YakError && err.code === "CORRUPT_LOG") {
        this.#markDamaged(offset, seg.dataPath, "scrub");
        return null;
      }
      throw err;
    }
  }

  async #readLongLine(seg: Segment, position: number): Promise<Uint8Array> {
    for (let len = 1024 * 1024;; len *= 2) {
      const bytes = await seg.readAt(position, len);
      const nl = bytes.indexOf(NEWLINE);
      if (nl !== -1) return bytes.subarray(0, nl + 1);
      if (bytes.length < len) {
        throw new YakError(
          "CORRUPT_LOG",
          `unterminated record in ${seg.dataPath} at byte ${position}`,
        );
      }
    }
  }

  #segmentFor(offset: number): Segment {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#segments[mid].base <= offset) lo = mid;
      else hi = mid - 1;
    }
    return this.#segments[lo];
  }

  /** Up to `maxBytes` of the newest whole lines (to rebuild producer state on a new leader). */
  async readTailText(maxBytes: number): Promise<string> {
    await this.#writeChain;
    this.#checkFence();
    const seg = this.#segments.at(-1)!;
    const position = Math.max(0, seg.size - maxBytes);
    const bytes = await seg.readAt(position, seg.size - position);
    const start = position === 0 ? 0 : bytes.indexOf(NEWLINE) + 1;
    return decoder.decode(bytes.subarray(start));
  }

  /**
   * Removes every record at or after `offset`: whole segments past it, then
   * the bytes within the segment that holds it. Waits for queued writes.
   */
  truncateTo(offset: number): Promise<void> {
    // In the write queue: an append taken before the truncation lands before
    // it; one taken after fails (its offset is void) rather than vanishing.
    const done = this.#writeChain.then(() =>
      this.#uncertainUnlessDone(`cutting the log at offset ${offset}`, () => this.#truncate(offset))
    );
    this.#writeChain = done.catch(() => {});
    return done;
  }

  async #truncate(offset: number): Promise<void> {
    if (offset >= this.#logEnd) return;
    if (offset < this.logStartOffset) {
      // Below what retention or a deletion kept: nothing of this log is left.
      for (const seg of this.#segments) await seg.remove();
      this.#segments = [await Segment.create(this.dir, offset)];
      await this.#startAtFirstSegment();
      this.#activeSinceMs = -1;
    }
    if (offset < this.#hw) this.#hw = offset;
    while (this.#segments.length > 1 && this.#segments.at(-1)!.base >= offset) {
      await this.#segments.pop()!.remove();
    }
    const seg = this.#segments.at(-1)!;
    await seg.truncate(offset <= seg.base ? 0 : await this.#positionOf(seg, offset));
    this.#logEnd = offset;
    this.#next = offset;
    this.#tail = [];
    this.#tailBytes = 0;
    this.#forgetDamage((o) => o < offset);
    if (this.epochs.truncateFrom(offset, this.logStartOffset)) await this.epochs.save();
    await this.#uncleanFrom(offset);
  }

  /** Where in `seg` the first record at `offset` or after starts (its size when there is none). */
  async #positionOf(seg: Segment, offset: number): Promise<number> {
    const start = seg.lookup(offset);
    let position = start.position;
    let last = start.offset - 1;
    while (position < seg.size) {
      const chunk = await seg.readAt(position, 1024 * 1024);
      let at = 0;
      while (true) {
        const nl = chunk.indexOf(NEWLINE, at);
        if (nl === -1) break;
        const claimed = this.#gaps ? offsetAt(chunk, at) : last + 1;
        if (claimed < 0) throw new YakError("CORRUPT_LOG", `cannot find offset ${offset} in ${seg.dataPath}`);
        if (claimed >= offset) return position + at;
        last = claimed;
        at = nl + 1;
      }
      if (at === 0) throw new YakError("CORRUPT_LOG", `cannot find offset ${offset} in ${seg.dataPath}`);
      position += at;
    }
    return seg.size;
  }

  /**
   * Records at `offset` and after are gone (a truncation, a reset): a
   * cleaning that reached past there is no longer all carried out here, so
   * it is carried out again when the log holds its range again.
   */
  async #uncleanFrom(offset: number): Promise<void> {
    if (this.#cleanState === null || this.#cleanState.to <= offset) return;
    this.#cleanState = { ...this.#cleanState, to: 0 };
    await saveCleanState(this.dir, this.#cleanState);
  }

  /**
   * Resolves once every write queued so far has landed or failed (not those
   * queued later). A leader takes offsets before it writes: a broker that
   * stepped down with appends still queued (paused with a SIGSTOP, say) has
   * a log end that grows after it stopped leading, and it must reconcile
   * with the new leader on the log those writes leave.
   */
  writesSettled(): Promise<void> {
    return this.#writeChain;
  }

  /** Closes file handles; pending writes finish first. */
  async close(): Promise<void> {
    await this.#writeChain;
    this.#closed = true;
    for (const s of this.#segments) s.close();
    this.#listeners.clear();
  }

  /** The data file name of the segment with this base (for messages and tests). */
  static segmentFile(dir: string, base: number): string {
    return join(dir, segmentStem(base) + ".jsonl");
  }
}

/**
 * The lines of `bytes` whose offsets lie in [from, end), stopping near
 * `maxBytes` (at least one line): `last` is the offset of the last one taken,
 * and `complete` says every such line was taken (the budget did not stop it).
 */
function takeLines(
  bytes: Uint8Array,
  from: number,
  end: number,
  maxBytes: number,
): { bytes: Uint8Array; count: number; last: number; complete: boolean } {
  const at = lineAtOrAfter(bytes, 0, from);
  let stop = at;
  let count = 0;
  let last = -1;
  while (stop < bytes.length) {
    const offset = offsetAt(bytes, stop);
    if (offset >= end) break;
    const next = bytes.indexOf(NEWLINE, stop) + 1;
    if (count > 0 && next - at > maxBytes) return { bytes: bytes.subarray(at, stop), count, last, complete: false };
    stop = next;
    last = offset;
    count++;
  }
  return { bytes: bytes.subarray(at, stop), count, last, complete: true };
}

/**
 * {@link takeLines} for a chunk of one line per offset (no gap): its lines'
 * starts are found once, and each read that takes part of it finds where to
 * start and stop by index, not by reading every line before (under kcat -P
 * each 2 MB chunk was split for the followers' 4 MiB fetches, and reading
 * line after line to the split was 11% of the leader's samples). Null for a
 * chunk with gaps.
 */
function takeIndexed(
  chunk: Chunk,
  from: number,
  end: number,
  maxBytes: number,
): { bytes: Uint8Array; count: number; last: number; complete: boolean } | null {
  if (chunk.count !== chunk.next - chunk.base) return null;
  if (chunk.starts === undefined) chunk.starts = lineStarts(chunk.bytes, chunk.count);
  const starts = chunk.starts;
  if (starts === null) return null;
  const first = Math.max(0, from - chunk.base);
  const stop = Math.max(first, Math.min(chunk.count, end - chunk.base));
  // The most lines from `first` within maxBytes (the first one whatever its size): a binary search.
  let lo = Math.min(first + 1, stop);
  let hi = stop;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid] - starts[first] <= maxBytes) lo = mid;
    else hi = mid - 1;
  }
  return {
    bytes: chunk.bytes.subarray(starts[first], starts[lo]),
    count: lo - first,
    last: lo > first ? chunk.base + lo - 1 : -1,
    complete: lo === stop,
  };
}

/** The first index of `items` where `test` holds, which holds from some index on (`items.length` if nowhere). */
function firstWhere<T>(items: readonly T[], test: (item: T) => boolean): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (test(items[mid])) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Where each of a chunk's `count` lines starts, then its end; null when it does not hold `count` whole lines. */
function lineStarts(bytes: Uint8Array, count: number): Int32Array | null {
  const starts = new Int32Array(count + 1);
  let at = 0;
  for (let i = 0; i < count; i++) {
    starts[i] = at;
    const nl = bytes.indexOf(NEWLINE, at);
    if (nl === -1) return null;
    at = nl + 1;
  }
  starts[count] = at;
  return at === bytes.length ? starts : null;
}

/** Where, from byte `at` on, the first line with an offset of `offset` or more starts (the end when none does). */
function lineAtOrAfter(bytes: Uint8Array, at: number, offset: number): number {
  while (at < bytes.length && offsetAt(bytes, at) < offset) {
    const nl = bytes.indexOf(NEWLINE, at);
    if (nl === -1) return bytes.length;
    at = nl + 1;
  }
  return at;
}

function lineCount(bytes: Uint8Array): number {
  let n = 0;
  for (let i = bytes.indexOf(NEWLINE); i !== -1; i = bytes.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

/**
 * What is wrong with a follower's chunk of `count` lines said to cover
 * offsets [base, next), or null: its lines must lie in that range, one per
 * offset at most (none for a gap).
 */
function replicaChunkProblem(base: number, count: number, text: string | Uint8Array, next: number): string | null {
  if (count < 0 || next < base + count || next <= base) return `covering offsets ${base} to ${next}`;
  if (count === 0) return text.length === 0 ? null : "holds bytes but no lines";
  const first = firstLineOffset(text);
  const last = lastLineOffset(text);
  if (first < base || last >= next || last - first + 1 < count) {
    return `holds lines ${first}..${last}${next !== base + count ? ` (said to end before ${next})` : ""}`;
  }
  return null;
}
