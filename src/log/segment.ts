/**
 * One segment of a partition log: a JSON-lines data file named by its first
 * offset, and its sparse offset index (offset -> byte position).
 *
 * @module
 */
import { join } from "node:path";
import { offsetAt, startsWithOffset, storedLineEnd, verifyLine } from "./record.ts";
import type { LineCrc } from "./crc32c.ts";
import { dataModes } from "../files.ts";
import { concatBytes } from "../bytes.ts";

/** Appends up to this size are written synchronously (see Segment.append). */
export const SYNC_WRITE_BYTES = 64 * 1024;

const NEWLINE = 10;
const CLOSE_BRACE = 0x7d;
const SCAN_CHUNK_BYTES = 1024 * 1024;
/** Index entries are two little-endian uint32: offset - base, byte position. */
const INDEX_ENTRY_BYTES = 8;

/**
 * The file name stem of a segment: its base offset in 20 digits, so names
 * sort in offset order (Kafka's convention).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { segmentStem } from "./segment.ts";
 * assert.equal(segmentStem(42), "00000000000000000042");
 * ```
 */
export function segmentStem(base: number): string {
  return String(base).padStart(20, "0");
}

/**
 * An I/O error after which a segment's files may no longer hold what the
 * segment says they hold: a failed write whose partial bytes could not be cut
 * off, or a new segment file that could not be removed again. The log that
 * owns the segment must stop using it (it fences itself) until a restart
 * recovers it from what is really on disk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { UncertainFileError } from "./segment.ts";
 * const err = new UncertainFileError("a write to /tmp/p0/x.jsonl", "no space left");
 * assert.equal(err.message, "a write to /tmp/p0/x.jsonl failed (no space left)");
 * ```
 */
export class UncertainFileError extends Error {
  /** What was being done when the error came, e.g. "a write to FILE". */
  readonly what: string;
  /** The errors, as the system gave them. */
  readonly detail: string;

  constructor(what: string, detail: string) {
    super(`${what} failed (${detail})`);
    this.name = "UncertainFileError";
    this.what = what;
    this.detail = detail;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** What a scan of a segment's bytes found. */
export interface ScanResult {
  /** Complete lines (records). */
  count: number;
  /** Bytes up to and including the last newline. */
  validBytes: number;
  /** Bytes after the last newline: a torn write. */
  tornBytes: number;
  /** The last complete line, for checks. */
  lastLine: string | null;
  /** Where the last complete line starts. */
  lastLineStart: number;
  /** A complete line that is not a record (or not the expected offset) was found at `validBytes`. */
  corrupt: boolean;
  /** The first record whose checksum does not match (its line framed as a record), or null. */
  damagedAt: number | null;
  /** Lines from before checksums (checked by parsing instead). */
  unsealed: number;
  /** The offset of the last complete line (the base minus one when there is none). */
  lastOffset: number;
  /** The offset of the line before it (the base minus one when there is none). */
  prevOffset: number;
}

/** Where a scan is (see Segment.#scan). */
interface ScanState {
  count: number;
  /** The offset of the last line scanned, and of the one before it. */
  prev: number;
  beforeLast: number;
  /** The file position where the next line starts. */
  lineStart: number;
  lastLineStart: number;
  corrupt: boolean;
  damagedAt: number | null;
  unsealed: number;
}

let segmentIds = 0;

/**
 * A segment's files and in-memory index. The log owns the ordering of calls.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Segment } from "./segment.ts";
 * const dir = await Deno.makeTempDir();
 * const seg = await Segment.create(dir, 0);
 * await seg.append(new TextEncoder().encode('{"offset":0}\n'), 0, 4096);
 * assert.equal(seg.size, 13);
 * seg.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Segment {
  readonly dir: string;
  readonly base: number;
  /** This object's identity: a segment cleaned (its file replaced) is a new Segment with a new id. */
  readonly id: number = ++segmentIds;
  size = 0;
  /** Sparse entries, ascending: [offset, position]. */
  offsets: number[] = [];
  positions: number[] = [];
  #lastIndexedPos = -Infinity;
  #file: Deno.FsFile | null = null;
  #indexFile: Deno.FsFile | null = null;
  /** Where {@link storedLineEnd} leaves a scanned line's checksum (one object, reused). */
  readonly #found: LineCrc = { crc: 0 };
  /**
   * An index append failed (or wrote part of an entry): no more entries are
   * appended to the file until it is rewritten whole, so a torn entry stays
   * the file's last bytes and the next open sees it (a length that is not a
   * multiple of the entry size) and rebuilds the index.
   */
  #indexTorn = false;

  private constructor(dir: string, base: number) {
    this.dir = dir;
    this.base = base;
  }

  get dataPath(): string {
    return join(this.dir, segmentStem(this.base) + ".jsonl");
  }

  get indexPath(): string {
    return join(this.dir, segmentStem(this.base) + ".index");
  }

  /**
   * Creates an empty segment (files included). The index comes first and the
   * data file last: only a data file makes a segment at the next open, and an
   * empty one left behind by a failed roll, named by an offset the log then
   * went on writing past in the older segment, would become the log's end at
   * that open (and hide every record after its name). So a data file whose
   * creation failed is removed again; if even that fails, the error is an
   * {@link UncertainFileError}.
   */
  static async create(dir: string, base: number): Promise<Segment> {
    const seg = new Segment(dir, base);
    await Deno.writeFile(seg.indexPath, new Uint8Array(0), { mode: dataModes().file });
    try {
      await Deno.writeFile(seg.dataPath, new Uint8Array(0), { mode: dataModes().file });
    } catch (err) {
      try {
        await Deno.remove(seg.dataPath);
      } catch (removeErr) {
        // Never created: nothing to take back.
        if (!(removeErr instanceof Deno.errors.NotFound)) {
          throw new UncertainFileError(
            `creating ${seg.dataPath}`,
            `${messageOf(err)}; removing it: ${messageOf(removeErr)}`,
          );
        }
      }
      throw err;
    }
    return seg;
  }

  /**
   * A segment whose data file was just put in place whole (a cleaned copy,
   * see PartitionLog.swapCleaned), with its index entries; the index file is
   * written from them (when that fails, the next open rebuilds it).
   */
  static async adopt(
    dir: string,
    base: number,
    size: number,
    offsets: number[],
    positions: number[],
  ): Promise<Segment> {
    const seg = new Segment(dir, base);
    seg.size = size;
    seg.offsets = offsets;
    seg.positions = positions;
    seg.#lastIndexedPos = positions.at(-1) ?? -Infinity;
    await seg.#writeIndex().catch(() => Deno.remove(seg.indexPath).catch(() => {}));
    return seg;
  }

  /**
   * Opens an existing segment. With `scan`, reads every byte: counts records,
   * rebuilds the index and reports a torn tail (the caller decides to cut it).
   * Without, trusts the index file if it is consistent, else rebuilds it.
   * With `gaps` (a compacted log), offsets must grow from line to line but
   * may skip: cleaning removed the records between.
   */
  static async open(
    dir: string,
    base: number,
    indexIntervalBytes: number,
    scan: boolean,
    gaps = false,
  ): Promise<
    { segment: Segment; scan: ScanResult | null; indexRebuilt: boolean }
  > {
    const seg = new Segment(dir, base);
    seg.size = (await Deno.stat(seg.dataPath)).size;
    if (!scan && await seg.#loadIndex()) {
      return { segment: seg, scan: null, indexRebuilt: false };
    }
    const result = await seg.#scan(indexIntervalBytes, gaps);
    await seg.#writeIndex();
    return { segment: seg, scan: result, indexRebuilt: !scan };
  }

  /**
   * Appends bytes that hold whole lines starting at `firstOffset`. A failed
   * write is cut off again (the file stays whole lines, and the segment's
   * size holds); when that cut fails too, the error is an
   * {@link UncertainFileError}: part of a line may be left in the file, where
   * the next append would follow it.
   */
  async append(
    bytes: Uint8Array,
    firstOffset: number,
    indexIntervalBytes: number,
  ): Promise<void> {
    this.#file ??= await Deno.open(this.dataPath, { append: true });
    const startSize = this.size;
    try {
      let at = 0;
      // A small append is written at once: a page-cache copy of a few KiB costs less than the thread-pool
      // round trip of an async write, which every acks=all hop (leader, then each follower) waited for.
      if (bytes.length <= SYNC_WRITE_BYTES) {
        while (at < bytes.length) at += this.#file.writeSync(bytes.subarray(at));
      }
      while (at < bytes.length) {
        at += await this.#file.write(bytes.subarray(at));
      }
    } catch (err) {
      try {
        await this.#file.truncate(startSize);
      } catch (cutErr) {
        throw new UncertainFileError(
          `a write to ${this.dataPath}`,
          `${messageOf(err)}; cutting its partial bytes off: ${messageOf(cutErr)}`,
        );
      }
      throw err;
    }
    this.size += bytes.length;
    if (startSize - this.#lastIndexedPos >= indexIntervalBytes) {
      this.offsets.push(firstOffset);
      this.positions.push(startSize);
      this.#lastIndexedPos = startSize;
      const entry = new Uint8Array(INDEX_ENTRY_BYTES);
      const view = new DataView(entry.buffer);
      view.setUint32(0, firstOffset - this.base, true);
      view.setUint32(4, startSize, true);
      // The data is written: a failed index write (a full disk) must not undo
      // that. The index is only a shortcut, rebuilt at the next open when torn;
      // it stays torn (see #indexTorn), and the in-memory index is whole.
      if (!this.#indexTorn) {
        try {
          this.#indexFile ??= await Deno.open(this.indexPath, { append: true });
          // Written at once, as a small append is: every ~4 KiB of appends (500 a second at 10,000 records/s)
          // an async write cost each broker a thread-pool round trip on the way to the acknowledgement.
          if (this.#indexFile.writeSync(entry) !== entry.length) this.#indexTorn = true;
        } catch {
          this.#indexTorn = true;
        }
      }
    }
  }

  /** The indexed position at or before `offset`: where a read starts scanning. */
  lookup(offset: number): { offset: number; position: number } {
    let lo = 0;
    let hi = this.offsets.length - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.offsets[mid] <= offset) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best === -1
      ? { offset: this.base, position: 0 }
      : { offset: this.offsets[best], position: this.positions[best] };
  }

  /** Reads up to `length` bytes from `position` (positional, so reads can overlap). */
  async readAt(position: number, length: number): Promise<Uint8Array> {
    const file = await Deno.open(this.dataPath, { read: true });
    try {
      await file.seek(position, Deno.SeekMode.Start);
      const out = new Uint8Array(
        Math.max(0, Math.min(length, this.size - position)),
      );
      let at = 0;
      while (at < out.length) {
        const n = await file.read(out.subarray(at));
        if (n === null) break;
        at += n;
      }
      return out.subarray(0, at);
    } finally {
      file.close();
    }
  }

  /** Cuts the data file to `bytes` and drops index entries past it. */
  async truncate(bytes: number): Promise<void> {
    this.closeHandles();
    await Deno.truncate(this.dataPath, bytes);
    this.size = bytes;
    let keep = this.positions.length;
    while (keep > 0 && this.positions[keep - 1] >= bytes) keep--;
    this.offsets.length = keep;
    this.positions.length = keep;
    this.#lastIndexedPos = keep > 0 ? this.positions[keep - 1] : -Infinity;
    await this.#writeIndex();
  }

  closeHandles(): void {
    this.#file?.close();
    this.#indexFile?.close();
    this.#file = null;
    this.#indexFile = null;
  }

  close(): void {
    this.closeHandles();
  }

  /**
   * Deletes the segment's files, the index first: when the data file cannot
   * be deleted the error is thrown and the segment is whole (its index is
   * rebuilt at the next open), so a caller never counts as deleted a segment
   * that would come back at the next start. A file that is already gone is
   * what was wanted.
   */
  async remove(): Promise<void> {
    this.closeHandles();
    for (const path of [this.indexPath, this.dataPath]) {
      try {
        await Deno.remove(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
  }

  async #loadIndex(): Promise<boolean> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.indexPath);
    } catch {
      // Missing or unreadable: harmless, the caller rebuilds it from the data file (and says so).
      return false;
    }
    if (bytes.length % INDEX_ENTRY_BYTES !== 0) return false;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let lastOffset = -1;
    let lastPos = -1;
    for (let at = 0; at < bytes.length; at += INDEX_ENTRY_BYTES) {
      const offset = this.base + view.getUint32(at, true);
      const pos = view.getUint32(at + 4, true);
      // A stale index (from before a truncation or a crash) is rebuilt, not trusted.
      if (offset <= lastOffset || pos <= lastPos || pos >= this.size) {
        return false;
      }
      this.offsets.push(offset);
      this.positions.push(pos);
      lastOffset = offset;
      lastPos = pos;
    }
    this.#lastIndexedPos = lastPos === -1 ? -Infinity : lastPos;
    // A believable but wrong index (entries pointing into lines) is rebuilt too.
    for (const i of this.offsets.length > 0 ? [0, this.offsets.length - 1] : []) {
      const head = await this.readAt(this.positions[i], 32);
      if (!startsWithOffset(head, 0, head.length, this.offsets[i])) {
        this.offsets = [];
        this.positions = [];
        return false;
      }
    }
    return true;
  }

  async #scan(indexIntervalBytes: number, gaps: boolean): Promise<ScanResult> {
    this.offsets = [];
    this.positions = [];
    this.#lastIndexedPos = -Infinity;
    const st: ScanState = {
      count: 0,
      prev: this.base - 1,
      beforeLast: this.base - 1,
      lineStart: 0,
      lastLineStart: -1,
      corrupt: false,
      damagedAt: null,
      unsealed: 0,
    };
    const file = await Deno.open(this.dataPath, { read: true });
    try {
      const buf = new Uint8Array(SCAN_CHUNK_BYTES);
      let carry: Uint8Array | null = null;
      for (let pos = 0; !st.corrupt;) {
        const n = await file.read(buf);
        if (n === null) break;
        carry = this.#scanChunk(buf.subarray(0, n), pos, carry, st, indexIntervalBytes, gaps);
        pos += n;
      }
    } finally {
      file.close();
    }
    return {
      count: st.count,
      validBytes: st.lineStart,
      tornBytes: this.size - st.lineStart,
      lastLine: await this.#lastLine(st.count, st.lastLineStart, st.lineStart),
      lastLineStart: Math.max(0, st.lastLineStart),
      corrupt: st.corrupt,
      damagedAt: st.damagedAt,
      unsealed: st.unsealed,
      lastOffset: st.prev,
      prevOffset: st.beforeLast,
    };
  }

  /**
   * Scans the whole lines of one chunk read at file position `pos`; `carry`
   * holds the start of a line begun in earlier chunks. Returns what of the
   * chunk starts a line not finished yet (null at a corrupt line).
   */
  #scanChunk(
    chunk: Uint8Array,
    pos: number,
    carry: Uint8Array | null,
    st: ScanState,
    interval: number,
    gaps: boolean,
  ): Uint8Array | null {
    let from = 0;
    if (carry !== null) {
      const i = chunk.indexOf(NEWLINE);
      if (i === -1) return concatBytes([carry, chunk]);
      // A line that spans chunks is checked whole, like any other.
      const whole = concatBytes([carry, chunk.subarray(0, i)]);
      if (!this.#scanLine(whole, 0, whole.length, st, interval, gaps)) return null;
      st.lineStart = pos + i + 1;
      from = i + 1;
    }
    // Each line's end and its checksum in one pass over its bytes (a search for the newline, then the checksum,
    // took two).
    const found = this.#found;
    for (let i = storedLineEnd(chunk, from, found); i !== -1; i = storedLineEnd(chunk, from, found)) {
      if (!this.#scanLine(chunk, from, i, st, interval, gaps, found.crc)) return null;
      st.lineStart = pos + i + 1;
      from = i + 1;
    }
    return from === chunk.length ? null : chunk.slice(from);
  }

  /**
   * One whole line `bytes[s, e)`: framed as the record that belongs here
   * (the next offset, or a later one in a log with gaps) or the scan stops
   * (corrupt); framed right but failing its checksum, it is counted as damage.
   */
  #scanLine(
    bytes: Uint8Array,
    s: number,
    e: number,
    st: ScanState,
    interval: number,
    gaps: boolean,
    crc?: number,
  ): boolean {
    const claimed = e > s && bytes[e - 1] === CLOSE_BRACE ? offsetAt(bytes, s) : -1;
    if (claimed < 0 || claimed <= st.prev || (!gaps && claimed !== st.prev + 1)) {
      st.corrupt = true;
      return false;
    }
    const verdict = verifyLine(bytes, s, e, claimed, crc);
    if (verdict === "unsealed") st.unsealed++;
    if (verdict === "damaged" && st.damagedAt === null) st.damagedAt = claimed;
    if (st.lineStart - this.#lastIndexedPos >= interval) {
      this.offsets.push(claimed);
      this.positions.push(st.lineStart);
      this.#lastIndexedPos = st.lineStart;
    }
    st.lastLineStart = st.lineStart;
    st.count++;
    st.beforeLast = st.prev;
    st.prev = claimed;
    return true;
  }

  /** The last whole line, for the caller's full parse, or null when there is none. */
  async #lastLine(count: number, lastLineStart: number, lineStart: number): Promise<string | null> {
    if (count === 0 || lastLineStart < 0 || lastLineStart >= lineStart) return null;
    return new TextDecoder().decode(await this.readAt(lastLineStart, lineStart - lastLineStart - 1));
  }

  async #writeIndex(): Promise<void> {
    const out = new Uint8Array(this.offsets.length * INDEX_ENTRY_BYTES);
    const view = new DataView(out.buffer);
    for (let i = 0; i < this.offsets.length; i++) {
      view.setUint32(i * INDEX_ENTRY_BYTES, this.offsets[i] - this.base, true);
      view.setUint32(i * INDEX_ENTRY_BYTES + 4, this.positions[i], true);
    }
    this.#indexFile?.close();
    this.#indexFile = null;
    await Deno.writeFile(this.indexPath, out, { mode: dataModes().file });
    this.#indexTorn = false;
  }
}
