/**
 * Kafka's primitive types, read and written with a bound on everything: a
 * length or count from the wire is checked against what is left of the frame
 * (and a cap) before anything is allocated, so a hostile frame costs an error,
 * never memory. Flexible versions (KIP-482) use compact strings, arrays and
 * bytes (unsigned varint lengths plus one) and tagged fields; `flexible` on
 * the reader and writer switches between the two encodings, so each API
 * describes its fields once.
 *
 * @module
 */
import { assert, YakError } from "../errors.ts";
import { strictUtf8 as decoder } from "../utf8.ts";

const encoder = new TextEncoder();

/** Whether an int64 is a safe integer. */
function safe(v: bigint): boolean {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER);
}
/** The largest length an int16 length field holds (older versions' strings). */
const INT16_MAX = 0x7fff;

/** Most elements one array on the wire may claim (the frame size bounds it too). */
export const MAX_ARRAY_ITEMS = 100_000;

function malformed(what: string): YakError {
  return new YakError("INVALID_REQUEST", `malformed Kafka request: ${what}`);
}

/**
 * Reads a Kafka request body.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Reader } from "./wire.ts";
 * const r = new Reader(new Uint8Array([0, 3, 0x61, 0x62, 0x63]), false);
 * assert.equal(r.string(), "abc");
 * ```
 */
export class Reader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;
  /** Compact encodings and tagged fields (the request's version is flexible). */
  flexible: boolean;

  constructor(buf: Uint8Array, flexible: boolean) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.flexible = flexible;
  }

  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  get position(): number {
    return this.#pos;
  }

  #need(n: number, what: string): number {
    if (n < 0 || this.#pos + n > this.#buf.length) throw malformed(`${what} runs past the end of the frame`);
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  int8(): number {
    return this.#view.getInt8(this.#need(1, "int8"));
  }

  bool(): boolean {
    return this.int8() !== 0;
  }

  int16(): number {
    return this.#view.getInt16(this.#need(2, "int16"));
  }

  int32(): number {
    return this.#view.getInt32(this.#need(4, "int32"));
  }

  /** An int64 that must fit a safe integer (offsets, timestamps, producer ids do). */
  int64(): number {
    const v = this.int64Big();
    if (!safe(v)) throw malformed(`int64 ${v} is out of range`);
    return Number(v);
  }

  /**
   * An int64 as a number, or null outside the safe-integer range: for a
   * value refused on its own (a committed offset yak's stored commits cannot
   * hold) rather than as a malformed request.
   */
  int64OrNull(): number | null {
    const v = this.int64Big();
    return safe(v) ? Number(v) : null;
  }

  /** An int64 as it is: ids compared as bigints, and fields read past. */
  int64Big(): bigint {
    return this.#view.getBigInt64(this.#need(8, "int64"));
  }

  /**
   * An int64 position compared against a log's (a fetch offset, a timestamp
   * to search for, an offset to delete below), saturated at the safe-integer
   * range: no offset or timestamp in a log lies past it, so any value beyond
   * means what the range's end means (past every record, or before all).
   */
  int64Saturated(): number {
    const v = this.#view.getBigInt64(this.#need(8, "int64"));
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    return Number(v > max ? max : v < -max ? -max : v);
  }

  /** An unsigned varint of at most 5 bytes (32 bits). */
  uvarint(): number {
    let out = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.#buf[this.#need(1, "varint")];
      out += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) {
        if (out > 0xffffffff) throw malformed("varint over 32 bits");
        return out;
      }
    }
    throw malformed("varint longer than 5 bytes");
  }

  uuid(): Uint8Array {
    return this.#buf.slice(this.#need(16, "uuid"), this.#pos);
  }

  /** A length: int16/int32 (classic) or uvarint-1 (compact); -1 means null. */
  #length(classic: "int16" | "int32"): number {
    if (this.flexible) return this.uvarint() - 1;
    return classic === "int16" ? this.int16() : this.int32();
  }

  nullableString(): string | null {
    const n = this.#length("int16");
    if (n === -1) return null;
    if (n < -1) throw malformed(`string length ${n}`);
    const at = this.#need(n, "string");
    try {
      return decoder.decode(this.#buf.subarray(at, at + n));
    } catch {
      throw malformed("a string is not UTF-8");
    }
  }

  string(): string {
    const s = this.nullableString();
    if (s === null) throw malformed("a string that may not be null is null");
    return s;
  }

  /** Bytes (a view into the frame, valid while the frame is). */
  nullableBytes(): Uint8Array | null {
    const n = this.#length("int32");
    if (n === -1) return null;
    if (n < -1) throw malformed(`bytes length ${n}`);
    const at = this.#need(n, "bytes");
    return this.#buf.subarray(at, at + n);
  }

  bytes(): Uint8Array {
    return this.nullableBytes() ?? new Uint8Array(0);
  }

  /** An array's element count, or -1 for null; each element takes at least `minItemBytes`. */
  arrayLength(minItemBytes = 1): number {
    const n = this.#length("int32");
    if (n < -1) throw malformed(`array length ${n}`);
    if (n > MAX_ARRAY_ITEMS || n * minItemBytes > this.remaining) {
      throw malformed(`an array of ${n} elements does not fit the frame`);
    }
    return n;
  }

  /** An array of structs (each ends in its tagged fields when flexible); null reads as empty. */
  array<T>(item: (r: Reader) => T, minItemBytes = 1): T[] {
    return this.nullableArray(item, minItemBytes) ?? [];
  }

  nullableArray<T>(item: (r: Reader) => T, minItemBytes = 1): T[] | null {
    const n = this.arrayLength(minItemBytes);
    if (n === -1) return null;
    const out: T[] = [];
    for (let i = 0; i < n; i++) {
      out.push(item(this));
      this.tags();
    }
    return out;
  }

  /** An array of strings (no tagged fields per element). */
  stringArray(): string[] {
    const n = this.arrayLength(this.flexible ? 1 : 2);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.string());
    return out;
  }

  /** An array of int32 (no tagged fields per element). */
  int32Array(): number[] {
    const n = this.arrayLength(4);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(this.int32());
    return out;
  }

  /** Skips a tagged-field section (flexible versions only); yak reads no tagged fields. */
  tags(): void {
    if (!this.flexible) return;
    const n = this.uvarint();
    if (n > MAX_ARRAY_ITEMS) throw malformed(`${n} tagged fields`);
    for (let i = 0; i < n; i++) {
      this.uvarint();
      this.#need(this.uvarint(), "tagged field");
    }
  }
}

/**
 * Writes a Kafka response body into a buffer that grows by doubling.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Writer } from "./wire.ts";
 * const w = new Writer(false);
 * w.int16(0).string("abc");
 * assert.deepEqual(w.finish(), new Uint8Array([0, 0, 0, 3, 97, 98, 99]));
 * ```
 */
export class Writer {
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  /** What comes before #buf[#runStart, #pos): runs of the buffer and pieces taken as they are (see bytesOf). */
  #parts: Uint8Array[] = [];
  #partsBytes = 0;
  #runStart = 0;
  flexible: boolean;

  constructor(flexible: boolean, initialBytes = 256) {
    this.#buf = new Uint8Array(initialBytes);
    this.#view = new DataView(this.#buf.buffer);
    this.flexible = flexible;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#partsBytes + this.#pos - this.#runStart;
  }

  #room(n: number): number {
    if (this.#pos + n > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < this.#pos + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(0, this.#pos));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    const at = this.#pos;
    this.#pos += n;
    return at;
  }

  int8(v: number): this {
    const at = this.#room(1);
    this.#view.setInt8(at, v);
    return this;
  }

  bool(v: boolean): this {
    return this.int8(v ? 1 : 0);
  }

  int16(v: number): this {
    const at = this.#room(2);
    this.#view.setInt16(at, v);
    return this;
  }

  int32(v: number): this {
    const at = this.#room(4);
    this.#view.setInt32(at, v);
    return this;
  }

  int64(v: number | bigint): this {
    const at = this.#room(8);
    this.#view.setBigInt64(at, BigInt(v));
    return this;
  }

  uvarint(v: number): this {
    // #room may replace the buffer: take the position first, then index the (new) buffer.
    while (v >= 0x80) {
      const at = this.#room(1);
      this.#buf[at] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    const at = this.#room(1);
    this.#buf[at] = v;
    return this;
  }

  uuid(v: Uint8Array | null): this {
    const at = this.#room(16);
    if (v) this.#buf.set(v.subarray(0, 16), at);
    else this.#buf.fill(0, at, at + 16);
    return this;
  }

  #length(n: number, classic: "int16" | "int32"): this {
    if (this.flexible) return this.uvarint(n + 1);
    // An int16 length would wrap (DataView keeps the low 16 bits), and the client would lose its place in the stream.
    assert(classic === "int32" || n <= INT16_MAX, `a string of ${n} bytes does not fit an int16 length`);
    return classic === "int16" ? this.int16(n) : this.int32(n);
  }

  raw(bytes: Uint8Array): this {
    const at = this.#room(bytes.length);
    this.#buf.set(bytes, at);
    return this;
  }

  nullableString(s: string | null): this {
    if (s === null) return this.#length(-1, "int16");
    const bytes = encoder.encode(s);
    return this.#length(bytes.length, "int16").raw(bytes);
  }

  string(s: string): this {
    return this.nullableString(s);
  }

  nullableBytes(b: Uint8Array | null): this {
    if (b === null) return this.#length(-1, "int32");
    return this.#length(b.length, "int32").raw(b);
  }

  /**
   * Bytes given as pieces (a fetch's record batches). Large ones are not
   * copied: they become parts of {@link finishParts} (a fetch of 4 MB copied
   * its batches into a buffer that doubled on the way, 5% of the leader's
   * CPU under kcat -C). The pieces must not change until the parts are sent.
   */
  bytesOf(pieces: readonly Uint8Array[]): this {
    let n = 0;
    for (const p of pieces) n += p.length;
    this.#length(n, "int32");
    if (n < PIECES_KEPT_FROM_BYTES) {
      for (const p of pieces) this.raw(p);
      return this;
    }
    const run = this.#buf.subarray(this.#runStart, this.#pos);
    this.#parts.push(run, ...pieces);
    this.#partsBytes += run.length + n;
    this.#runStart = this.#pos;
    return this;
  }

  /** An array of structs (each ends in its tagged fields when flexible). */
  array<T>(items: readonly T[] | null, item: (w: Writer, v: T) => void): this {
    if (items === null) return this.#length(-1, "int32");
    this.#length(items.length, "int32");
    for (const v of items) {
      item(this, v);
      this.tags();
    }
    return this;
  }

  /** An array of strings (no tagged fields per element). */
  stringArray(items: readonly string[]): this {
    this.#length(items.length, "int32");
    for (const v of items) this.string(v);
    return this;
  }

  /** An array of int32 (no tagged fields per element). */
  int32Array(items: readonly number[]): this {
    this.#length(items.length, "int32");
    for (const v of items) this.int32(v);
    return this;
  }

  /** An empty tagged-field section (flexible versions only). */
  tags(): this {
    return this.flexible ? this.uvarint(0) : this;
  }

  /** What was written, in one buffer (joined when {@link bytesOf} kept pieces). */
  finish(): Uint8Array {
    if (this.#parts.length === 0) return this.#buf.subarray(0, this.#pos);
    const out = new Uint8Array(this.length);
    let at = 0;
    for (const p of this.finishParts()) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** What was written, as parts to send in order, without joining them. */
  finishParts(): Uint8Array[] {
    const tail = this.#buf.subarray(this.#runStart, this.#pos);
    return tail.length > 0 || this.#parts.length === 0 ? [...this.#parts, tail] : [...this.#parts];
  }
}

/** Pieces of at least this many bytes in all go out as they are (see {@link Writer.bytesOf}). */
const PIECES_KEPT_FROM_BYTES = 16 * 1024;
