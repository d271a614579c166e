/**
 * The stored form of a record: one JSON line, the same bytes on every replica.
 *
 * `{"offset":42,"epoch":3,"ts":1763764800123,"key":"user-7","value":"hello","producer":"p1f3a","seq":17,"crc":"1c2d3e4f"}`
 *
 * The last field is the line's checksum: the CRC-32C of every byte before
 * `,"crc":"`, in 8 hex digits. The leader adds it when it appends
 * ({@link sealLines}); followers copy the line as it is; every read from disk
 * checks it ({@link verifyLine}), so a changed byte is found, never served.
 * Lines written before checksums (yak 0.x) have no such field and are still
 * read: they are checked by parsing instead.
 *
 * An idempotent producer's batch keeps its bounds: its first line ends in
 * `"seq":17,"batch":3` (the batch's record count), so a new leader knows
 * exactly which batches a retry may repeat (Kafka stores first and last
 * sequence in every batch for the same reason).
 *
 * A transactional producer's lines also carry its epoch and say they belong
 * to a transaction: `"seq":17,"pepoch":2,"txn":true` (the epoch fences a
 * zombie; the flag is Kafka's transactional batch attribute). A transaction's
 * end is a control line of its own in each partition, a marker:
 * `{"offset":58,"epoch":3,"ts":...,"marker":"commit","producer":"p12","pepoch":2,"crc":"..."}`
 * (or `"abort"`), which readers skip and read_committed readers use to know
 * what was committed.
 *
 * Text values go in `value`; bytes that are not UTF-8 go base64 in `valueB64`,
 * so nothing is silently mangled.
 *
 * A record of a topic with `message.timestamp.type=LogAppendTime` carries the
 * leader's clock at its append as `ts`, marked so: `"ts":1763764800123,"logAppendTime":true`
 * (Kafka marks the batch the same way, and a fetched batch says so).
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { crc32cLine, crc32cRange, type LineCrc } from "./crc32c.ts";
import { SEQ_MODULUS, seqAdd } from "./sequence.ts";
import { strictUtf8 } from "../utf8.ts";

const encoder = new TextEncoder();
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const NEWLINE = 0x0a;
const COMMA = 0x2c;

/** A record header: a text key, and a value as text, base64 bytes, or null. */
export interface RecordHeader {
  key: string;
  value?: string | null;
  valueB64?: string;
}

/**
 * A record as a leader receives it from a producer. Keys and values that are
 * not UTF-8 come base64 (`keyB64`, `valueB64`); `value: null` is Kafka's null
 * value (a tombstone); `ts` is the producer's timestamp (Kafka's CreateTime),
 * else the leader's clock.
 */
export interface RecordInput {
  key: string | null;
  keyB64?: string;
  value?: string | null;
  valueB64?: string;
  /**
   * The value's bytes as a Kafka producer sent them, in place of `value` or
   * `valueB64`: {@link writeBatch} stores them as text when they are UTF-8,
   * else base64, without decoding them to a string and encoding it again
   * (TextDecoder alone took 14% of the leader under `kcat -P`).
   */
  rawValue?: Uint8Array;
  headers?: RecordHeader[];
  ts?: number;
}

/** A stored line, parsed. */
export interface StoredRecord extends RecordInput {
  offset: number;
  epoch: number;
  ts: number;
  producer?: string;
  seq?: number;
  /** On the first record of an idempotent batch: the batch's record count. */
  batch?: number;
  /** A transactional producer's epoch (on its records and its markers). */
  pepoch?: number;
  /** The record belongs to a transaction (decided by a marker after it). */
  txn?: boolean;
  /** A control line: the end of a transaction of `producer`, committed or aborted. */
  marker?: "commit" | "abort";
  /** The line's checksum (absent on lines written before checksums). */
  crc?: string;
  /** `ts` is the leader's clock at the append (the topic's message.timestamp.type was LogAppendTime). */
  logAppendTime?: true;
}

/**
 * The stored lines of a batch as text, unsealed ({@link writeBatch} without
 * checksums): for tests and examples; the leader appends what writeBatch
 * writes. `producer` is already checked to need no escaping.
 * `ts` is the leader's clock, each record's own `ts` (the producer's) taking
 * its place, except with `logAppendTime`: then every record carries `ts`, marked.
 * `txnEpoch` is a transactional producer's epoch (null for any other batch).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch } from "./record.ts";
 * assert.equal(
 *   encodeBatch([{ key: null, value: "hi" }], 0, 1, 1763764800123, "p-1", 0),
 *   '{"offset":0,"epoch":1,"ts":1763764800123,"key":null,"value":"hi","producer":"p-1","seq":0,"batch":1}\n',
 * );
 * ```
 */
export function encodeBatch(
  records: readonly RecordInput[],
  baseOffset: number,
  epoch: number,
  ts: number,
  producer: string | null,
  baseSeq: number,
  logAppendTime = false,
  txnEpoch: number | null = null,
): string {
  return utf8.decode(writeBatch(records, baseOffset, epoch, ts, producer, baseSeq, logAppendTime, txnEpoch, false));
}

/**
 * A batch's stored lines written straight to bytes, each line sealed with its
 * checksum as it is written (unless `seal` is false): what the leader appends.
 * It replaced building the lines as one string, encoding it and copying every
 * line again to seal it ({@link sealLines}), which took 29% of the leader's
 * samples under `deno task profile` (1M records of 100 bytes); the leader's
 * CPU per record fell from 2.40-2.68 to 1.98-2.11 us. Text that is ASCII and
 * needs no JSON escape is copied a character at a time (faster here than
 * `encodeInto` on a view, or a regex test first); anything else goes through
 * JSON.stringify.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeBatch } from "./record.ts";
 * const bytes = writeBatch([{ key: null, value: "hi" }], 0, 1, 1763764800123, null, 0);
 * assert.equal(
 *   new TextDecoder().decode(bytes),
 *   '{"offset":0,"epoch":1,"ts":1763764800123,"key":null,"value":"hi","crc":"f4bfc2cd"}\n',
 * );
 * ```
 */
export function writeBatch(
  records: readonly RecordInput[],
  baseOffset: number,
  epoch: number,
  ts: number,
  producer: string | null,
  baseSeq: number,
  logAppendTime = false,
  txnEpoch: number | null = null,
  seal = true,
): Uint8Array {
  const epochTs = encoder.encode(`,"epoch":${epoch},"ts":`);
  const head = encoder.encode(`,"epoch":${epoch},"ts":${ts},${logAppendTime ? LOG_APPEND_TIME_TEXT : ""}`);
  const tail = new ProducerFields(producer, baseSeq, txnEpoch, records.length);
  let chars = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    chars += (r.keyB64 ?? r.key ?? "").length + (r.rawValue ?? r.valueB64 ?? r.value ?? "").length;
  }
  // What its lines need at most but for headers and escapes (the writer grows for those).
  const fields = Math.max(head.length, epochTs.length + MAX_TS_DIGITS + 1) + KEY_B64_FIELD.length + 2 +
    VALUE_B64_FIELD.length + 2;
  const w = new LineWriter(chars + records.length * (lineFrameBytes(baseOffset, records.length) + fields) + tail.bytes);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const start = w.at;
    w.bytes(OFFSET_PREFIX);
    w.uint(baseOffset + i);
    if (r.ts === undefined || logAppendTime) w.bytes(head);
    else w.recordTs(epochTs, r.ts);
    if (r.keyB64 !== undefined) {
      w.bytes(KEY_B64_FIELD);
      w.jsonString(r.keyB64);
    } else if (r.key === null || r.key === undefined) w.bytes(KEY_NULL);
    else {
      w.bytes(KEY_FIELD_COLON);
      w.jsonString(r.key);
    }
    // Headers go before the value, which then runs to the producer field or the line end.
    if (r.headers !== undefined && r.headers.length > 0) {
      w.bytes(HEADERS_FIELD_COLON);
      w.utf8(JSON.stringify(r.headers));
    }
    if (r.rawValue !== undefined) w.rawValue(r.rawValue);
    else if (r.valueB64 !== undefined) {
      w.bytes(VALUE_B64_FIELD);
      w.jsonString(r.valueB64);
    } else if (r.value === null) w.bytes(VALUE_NULL);
    else {
      w.bytes(VALUE_FIELD_COLON);
      w.jsonString(r.value ?? "");
    }
    tail.write(w, i);
    if (seal) w.seal(start);
    else w.bytes(LINE_END);
    if (w.at - start > MAX_STORED_LINE_BYTES) throw storedTooLarge(i, w.at - start);
  }
  return w.done();
}

/**
 * The stored lines of a batch of keyless values given as lines, each ending
 * in a newline (`yak produce`'s attached lines): what {@link writeBatch}
 * writes for the records `{ key: null, rawValue }` of those values (text
 * where they are UTF-8, else base64), read and copied in one pass with no
 * object per record. Cutting the lines into records first, then checking and
 * copying each value, was 20% of the leader's samples under `deno task
 * profile`. Throws INVALID_REQUEST when `lines` does not hold exactly `count`
 * lines; the leader calls it before it takes the batch's offsets, so such a
 * batch stores nothing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeBatch, writeLines } from "./record.ts";
 * const lines = new Uint8Array([0x68, 0x69, 0x0a, 0xff, 0x0a]); // "hi", then a byte that is not UTF-8
 * const records = [{ key: null, rawValue: lines.subarray(0, 2) }, { key: null, rawValue: lines.subarray(3, 4) }];
 * assert.deepEqual(writeLines(lines, 2, 7, 1, 5, "p3", 0), writeBatch(records, 7, 1, 5, "p3", 0));
 * assert.throws(() => writeLines(lines, 3, 7, 1, 5, null, 0), /holds 2/);
 * ```
 */
export function writeLines(
  lines: Uint8Array,
  count: number,
  baseOffset: number,
  epoch: number,
  ts: number,
  producer: string | null,
  baseSeq: number,
  logAppendTime = false,
  txnEpoch: number | null = null,
): Uint8Array {
  // Every byte between a line's offset and its value's first byte, in one copy.
  const head = encoder.encode(
    `,"epoch":${epoch},"ts":${ts},${logAppendTime ? LOG_APPEND_TIME_TEXT : ""}"key":null,"value":"`,
  );
  const tail = new ProducerFields(producer, baseSeq, txnEpoch, count);
  // Exact for plain values: each value's bytes but its newline, in its line's fields; a sixteenth more for escapes
  // before the writer has to grow. The buffer is what the tail cache holds, so room to spare is memory: 256 bytes a
  // line made it half again the bytes written.
  const w = new LineWriter(
    lines.length - count + count * (lineFrameBytes(baseOffset, count) + head.length + 1) + tail.bytes +
      (lines.length >> 4),
  );
  const n = lines.length;
  let at = 0;
  for (let i = 0; i < count; i++) {
    const start = w.at;
    w.bytes(OFFSET_PREFIX);
    w.uint(baseOffset + i);
    // Room for the head and the rest of the lines, so the copy below needs no check per byte.
    w.need(head.length + n - at + 1);
    w.bytes(head);
    const b = w.buf;
    let o = w.at;
    let p = at;
    while (p < n && NOT_PLAIN[lines[p]] === 0) b[o++] = lines[p++];
    if (p < n && lines[p] === NEWLINE) {
      b[o++] = QUOTE;
      w.at = o;
    } else {
      // An escape, a control, a non-ASCII byte or no newline: this value the general way, from its field name on.
      const nl = lines.indexOf(NEWLINE, at);
      if (nl === -1) throw fewerLines(count, i);
      w.at = o - (p - at) - VALUE_TEXT.length;
      w.rawValue(lines.subarray(at, nl));
      p = nl;
    }
    at = p + 1;
    tail.write(w, i);
    w.seal(start);
    if (w.at - start > MAX_STORED_LINE_BYTES) throw storedTooLarge(i, w.at - start);
  }
  if (at !== n) throw moreLines(count);
  return w.done();
}

/**
 * Throws as {@link writeLines} does unless `lines` holds exactly `count`
 * lines (each ending in a newline): for a batch of lines that is not written.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkLines } from "./record.ts";
 * checkLines(new TextEncoder().encode("a\nb\n"), 2);
 * assert.throws(() => checkLines(new TextEncoder().encode("a\nb\n"), 1), /holds more/);
 * ```
 */
export function checkLines(lines: Uint8Array, count: number): void {
  let at = 0;
  for (let i = 0; i < count; i++) {
    const nl = lines.indexOf(NEWLINE, at);
    if (nl === -1) throw fewerLines(count, i);
    at = nl + 1;
  }
  if (at !== lines.length) throw moreLines(count);
}

function fewerLines(count: number, found: number): YakError {
  return new YakError("INVALID_REQUEST", `'lines' says ${count} values, the attachment holds ${found}`);
}

/**
 * The longest stored line a leader writes: a follower's fetch must carry a
 * whole line, and its frame limit is made from this (leader_endpoint.ts). A
 * record within max.message.bytes can be six times that stored (a control
 * character is `\u0001` in JSON text), so this is checked on the line itself.
 */
export const MAX_STORED_LINE_BYTES: number = 32 * 1024 * 1024;

function storedTooLarge(i: number, bytes: number): YakError {
  return new YakError(
    "MESSAGE_TOO_LARGE",
    `record ${i} of the batch takes ${bytes} bytes once stored (JSON escapes a control character in 6), ` +
      `more than the ${MAX_STORED_LINE_BYTES} a replica takes in one fetch`,
  );
}

function moreLines(count: number): YakError {
  return new YakError("INVALID_REQUEST", `'lines' says ${count} values, the attachment holds more`);
}

/**
 * The fields a batch's lines end with when a producer sent it: its name and
 * each line's sequence, the batch's size on its first line, and a
 * transactional producer's epoch; encoded once per batch.
 */
class ProducerFields {
  readonly #producerSeq: Uint8Array | null;
  readonly #txn: Uint8Array | null;

  constructor(producer: string | null, readonly baseSeq: number, txnEpoch: number | null, readonly count: number) {
    this.#producerSeq = producer === null ? null : encoder.encode(`,"producer":"${producer}","seq":`);
    this.#txn = txnEpoch === null ? null : encoder.encode(`,"pepoch":${txnEpoch},"txn":true`);
  }

  /** The bytes {@link write} adds to all `count` lines, at most. */
  get bytes(): number {
    if (this.#producerSeq === null) return 0;
    const last = this.baseSeq + this.count - 1;
    const seqDigits = last < SEQ_MODULUS ? decimalDigits(last) : decimalDigits(SEQ_MODULUS - 1);
    const perLine = this.#producerSeq.length + seqDigits + (this.#txn?.length ?? 0);
    return this.count * perLine + BATCH_FIELD.length + decimalDigits(this.count);
  }

  /** Line `i`'s fields (none without a producer). */
  write(w: LineWriter, i: number): void {
    if (this.#producerSeq === null) return;
    w.bytes(this.#producerSeq);
    // Kafka's sequences wrap after 2^31 - 1 (sequence.ts), in a batch's middle too.
    const seq = this.baseSeq + i;
    w.uint(seq < SEQ_MODULUS ? seq : seqAdd(seq, 0));
    if (i === 0) {
      w.bytes(BATCH_FIELD);
      w.uint(this.count);
    }
    if (this.#txn !== null) w.bytes(this.#txn);
  }
}

/** The bytes of a line's offset field, checksum field and newline, at most, in a batch of `count` from `baseOffset`. */
function lineFrameBytes(baseOffset: number, count: number): number {
  return OFFSET_PREFIX.length + decimalDigits(baseOffset + count - 1) + CRC_TAIL_BYTES + 1;
}

/** The digits of `n` as LineWriter.uint writes it. */
function decimalDigits(n: number): number {
  return String(n).length;
}

/** A record's own timestamp, in ms, has at most this many digits (Kafka's are 64-bit; 2^53 has 16). */
const MAX_TS_DIGITS = 16;
const KEY_FIELD_COLON = encoder.encode('"key":');
const KEY_B64_FIELD = encoder.encode('"keyB64":');
const VALUE_FIELD_COLON = encoder.encode(',"value":');
const VALUE_B64_FIELD = encoder.encode(',"valueB64":');
const HEADERS_FIELD_COLON = encoder.encode(',"headers":');
const LINE_END = encoder.encode("}\n");

/** 1 for the bytes a JSON string cannot hold as they are (controls, quote, backslash) and for non-ASCII ones. */
const NOT_PLAIN: Uint8Array = (() => {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = c < 0x20 || c === QUOTE || c === BACKSLASH || c >= 0x80 ? 1 : 0;
  return t;
})();

/** Scratch for {@link LineWriter.uint}: a safe integer has at most 16 digits. */
const DIGITS = new Uint8Array(16);

/** Bytes appended to a buffer that grows when a guess of its size was short. */
class LineWriter {
  buf: Uint8Array;
  at = 0;

  constructor(bytes: number) {
    this.buf = new Uint8Array(bytes);
  }

  /** Room for `n` more bytes. */
  need(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.at + n));
    grown.set(this.buf.subarray(0, this.at));
    this.buf = grown;
  }

  byte(c: number): void {
    this.need(1);
    this.buf[this.at++] = c;
  }

  /** Where the last {@link recordTs} wrote its fields, and for which timestamp. */
  #lastTs = NaN;
  #tsFrom = 0;
  #tsTo = 0;

  /**
   * `epochTs` (the epoch field and the ts field's name), a record's own
   * timestamp and a comma. The records of a Kafka batch mostly share their
   * millisecond: a repeat copies the bytes written for the one before
   * (a short run: a loop, as {@link bytes}) instead of its 13 digits again.
   */
  recordTs(epochTs: Uint8Array, ts: number): void {
    if (ts === this.#lastTs) {
      const from = this.#tsFrom;
      const to = this.#tsTo;
      this.need(to - from);
      const b = this.buf;
      let o = this.at;
      for (let i = from; i < to; i++) b[o++] = b[i];
      this.at = o;
      return;
    }
    this.#tsFrom = this.at;
    this.bytes(epochTs);
    this.uint(ts);
    this.byte(COMMA);
    this.#tsTo = this.at;
    this.#lastTs = ts;
  }

  /** A short constant (a field name): a loop beats `set`'s call for a few bytes. */
  bytes(src: Uint8Array): void {
    this.need(src.length);
    if (src.length > 16) {
      this.buf.set(src, this.at);
      this.at += src.length;
      return;
    }
    const b = this.buf;
    let o = this.at;
    for (let i = 0; i < src.length; i++) b[o++] = src[i];
    this.at = o;
  }

  /**
   * A non-negative safe integer in decimal; any other number (a producer's
   * timestamp may be negative) as `String`, and so a template literal, writes it. In two halves below 2^31, so each digit is integer arithmetic
   * (a 13-digit timestamp in floating point was 14% of the leader under kcat -P).
   */
  uint(n: number): void {
    if (!(n >= 0 && Number.isSafeInteger(n))) return this.utf8(String(n));
    const d = DIGITS;
    let k = d.length;
    let high = n >= 1e9 ? Math.floor(n / 1e9) : 0;
    if (high > 0) {
      // The low nine digits, leading zeros kept; then the rest (below 2^53 / 1e9, under 2^31).
      let low = n - high * 1e9;
      for (let j = 0; j < 9; j++) {
        const q = (low / 10) | 0;
        d[--k] = 0x30 + low - q * 10;
        low = q;
      }
    } else high = n;
    do {
      const q = (high / 10) | 0;
      d[--k] = 0x30 + high - q * 10;
      high = q;
    } while (high > 0);
    this.need(d.length - k);
    const b = this.buf;
    let o = this.at;
    while (k < d.length) b[o++] = d[k++];
    this.at = o;
  }

  /** `s` as a JSON string: copied as it is when it is ASCII with nothing to escape, else JSON.stringify's text. */
  jsonString(s: string): void {
    const n = s.length;
    this.need(n + 2);
    const b = this.buf;
    let o = this.at;
    b[o++] = QUOTE;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x20 || c === QUOTE || c === BACKSLASH || c >= 0x80) return this.utf8(JSON.stringify(s));
      b[o++] = c;
    }
    b[o++] = QUOTE;
    this.at = o;
  }

  /**
   * A producer's value bytes as the value field: copied as they are when
   * they are ASCII with nothing to escape, else as text or base64
   * ({@link textOrBase64}).
   */
  rawValue(v: Uint8Array): void {
    // Checked without a branch per byte, then copied in one `set`: half the time of a loop that checks and
    // copies each byte (72 against 138 ns for 100 bytes here).
    let plain = 0;
    for (let i = 0; i < v.length; i++) plain |= NOT_PLAIN[v[i]];
    if (plain !== 0) {
      const field = textOrBase64(v);
      if ("text" in field) {
        this.bytes(VALUE_FIELD_COLON);
        this.jsonString(field.text);
      } else {
        this.bytes(VALUE_B64_FIELD);
        this.jsonString(field.b64);
      }
      return;
    }
    this.bytes(VALUE_TEXT);
    this.need(v.length + 1);
    this.buf.set(v, this.at);
    this.at += v.length;
    this.buf[this.at++] = QUOTE;
  }

  /** `s`'s UTF-8 bytes, as they are (JSON text already). */
  utf8(s: string): void {
    const n = s.length;
    this.need(n);
    const b = this.buf;
    let o = this.at;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) {
        this.at = o;
        // A UTF-16 unit is at most 3 UTF-8 bytes.
        this.need(3 * (n - i));
        this.at += encoder.encodeInto(s.slice(i), this.buf.subarray(this.at)).written;
        return;
      }
      b[o++] = c;
    }
    this.at = o;
  }

  /** Ends the line that began at `start` with its checksum field: the CRC-32C of every byte before it. */
  seal(start: number): void {
    let crc = crc32cRange(this.buf, start, this.at);
    // The checksum field, its closing bytes and the newline (CRC_TAIL_BYTES leaves the newline out).
    this.need(CRC_TAIL_BYTES + 1);
    this.bytes(CRC_FIELD);
    const b = this.buf;
    const o = this.at;
    for (let k = 7; k >= 0; k--) {
      b[o + k] = HEX[crc & 15];
      crc >>>= 4;
    }
    b[o + 8] = QUOTE;
    b[o + 9] = CLOSE_BRACE;
    b[o + 10] = NEWLINE;
    this.at = o + 11;
  }

  done(): Uint8Array {
    return this.buf.subarray(0, this.at);
  }
}
/**
 * The stored line of a transaction marker (a control record): the end of
 * `producer`'s transaction in one partition, committed or aborted.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeMarker } from "./record.ts";
 * assert.equal(
 *   encodeMarker(9, 3, 1763764800123, "p12", 2, true),
 *   '{"offset":9,"epoch":3,"ts":1763764800123,"marker":"commit","producer":"p12","pepoch":2}\n',
 * );
 * ```
 */
export function encodeMarker(
  offset: number,
  epoch: number,
  ts: number,
  producer: string,
  pepoch: number,
  commit: boolean,
): string {
  const marker = commit ? "commit" : "abort";
  return `{"offset":${offset},"epoch":${epoch},"ts":${ts},"marker":"${marker}","producer":"${producer}","pepoch":${pepoch}}\n`;
}

/**
 * Parses stored lines (each ending in "\n") in one JSON.parse.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch, parseLines } from "./record.ts";
 * assert.equal(parseLines(encodeBatch([{ key: "k", value: "v" }], 7, 1, 0, null, 0))[0].offset, 7);
 * ```
 */
export function parseLines(text: string): StoredRecord[] {
  if (text.length === 0) return [];
  return JSON.parse(`[${text.slice(0, -1).replaceAll("\n", ",")}]`);
}

/** A stored record's key as bytes (null for no key). */
export function keyBytes(r: RecordInput): Uint8Array | null {
  if (r.keyB64 !== undefined) return Uint8Array.fromBase64(r.keyB64);
  return r.key === null || r.key === undefined ? null : encoder.encode(r.key);
}

/** A stored record's value as bytes (null for a null value). */
export function valueBytes(r: { value?: string | null; valueB64?: string }): Uint8Array | null {
  if (r.valueB64 !== undefined) return Uint8Array.fromBase64(r.valueB64);
  return r.value === null || r.value === undefined ? null : encoder.encode(r.value);
}

/**
 * Bytes as a stored field: text when they are UTF-8, else base64, so nothing
 * is mangled and `cat`/`jq` still read text.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { textOrBase64 } from "./record.ts";
 * assert.deepEqual(textOrBase64(new Uint8Array([0x68, 0x69])), { text: "hi" });
 * assert.deepEqual(textOrBase64(new Uint8Array([0xff])), { b64: "/w==" });
 * ```
 */
export function textOrBase64(bytes: Uint8Array): { text: string } | { b64: string } {
  try {
    return { text: strictUtf8.decode(bytes) };
  } catch {
    return { b64: bytes.toBase64() };
  }
}

/**
 * The producer, sequence, (on a batch's first line) batch size and producer
 * epoch of a stored line, read without a full parse. `batch` is 0 on the
 * other lines of a batch, and on lines written before batches kept their
 * bounds; `epoch` is 0 for an idempotent producer (only transactional lines
 * store theirs). Null for a line without a producer, and for a marker.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch, producerOf } from "./record.ts";
 * const line = encodeBatch([{ key: null, value: "a" }], 0, 1, 0, "p7", 4).trimEnd();
 * assert.deepEqual(producerOf(line), { producer: "p7", seq: 4, batch: 1, epoch: 0 });
 * const txn = encodeBatch([{ key: null, value: "a" }], 0, 1, 0, "p7", 4, false, 3).trimEnd();
 * assert.deepEqual(producerOf(txn), { producer: "p7", seq: 4, batch: 1, epoch: 3 });
 * ```
 */
export function producerOf(
  line: string,
): { producer: string; seq: number; batch: number; epoch: number } | null {
  const p = line.lastIndexOf(',"producer":"');
  if (p === -1) return null;
  const q = line.indexOf('"', p + 13);
  const s = line.indexOf(',"seq":', q);
  if (q === -1 || s === -1) return null;
  const end = fieldsEnd(line);
  const b = line.indexOf(',"batch":', s);
  const e = line.indexOf(',"pepoch":', s);
  const seqEnd = b !== -1 ? b : e !== -1 ? e : end;
  const seq = Number(line.slice(s + 7, seqEnd));
  const batch = b === -1 ? 0 : Number(line.slice(b + 9, e !== -1 ? e : end));
  const epoch = e === -1 ? 0 : Number(line.slice(e + 10, line.indexOf(",", e + 10)));
  return Number.isSafeInteger(seq) && Number.isSafeInteger(batch) && Number.isSafeInteger(epoch)
    ? { producer: line.slice(p + 13, q), seq, batch, epoch }
    : null;
}

/** Where a line's own fields end (text form, no newline): before the checksum field, or before the closing brace. */
function fieldsEnd(line: string): number {
  const end = line.length - CRC_TAIL_BYTES;
  return end > 0 && line.startsWith(CRC_FIELD_TEXT, end) ? end : line.length - 1;
}

const VALUE_FIELD = ',"value":"';
const PRODUCER_FIELD = '","producer":"';
const HEADERS_FIELD = ',"headers":[';

/**
 * The text values of stored lines (each ending in "\n"), read without
 * parsing whole records, or null when a record holds bytes (`valueB64`) or
 * headers (whose values would match the value's marker) and needs the full
 * parse. Strings inside a line escape their quotes, so the
 * field markers only match the fields themselves.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch, valuesOf } from "./record.ts";
 * assert.deepEqual(valuesOf(encodeBatch([{ key: null, value: "hi" }], 0, 1, 0, null, 0)), ["hi"]);
 * ```
 */
export function valuesOf(text: string): string[] | null {
  const lines = text.split("\n");
  lines.pop();
  const out = new Array<string>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const at = line.indexOf(VALUE_FIELD);
    if (at === -1 || line.includes(HEADERS_FIELD)) return null;
    const p = line.lastIndexOf(PRODUCER_FIELD);
    const raw = line.slice(at + VALUE_FIELD.length, p === -1 ? fieldsEnd(line) - 1 : p);
    out[i] = raw.includes("\\") ? JSON.parse(`"${raw}"`) : raw;
  }
  return out;
}

/** A stored record with its key, value and header values as bytes, for codecs that send bytes (Kafka). */
export interface RecordBytes {
  offset: number;
  epoch: number;
  ts: number;
  /** `ts` is the leader's append time (see {@link StoredRecord.logAppendTime}). */
  logAppendTime: boolean;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: { key: string; value: Uint8Array | null }[];
  /** The idempotent producer's stored number (`p<n>` in the line), or -1. */
  producer: number;
  /** Its sequence number of this record, or -1. */
  seq: number;
  /** The first record of a producer's batch (the line carries `batch`). */
  batchStart: boolean;
  /** A transactional producer's epoch, or -1 (an idempotent producer's is 0, and not stored). */
  pepoch: number;
  /** Part of a transaction (Kafka's transactional batch attribute). */
  txn: boolean;
  /** A marker: 1 a commit, 0 an abort (Kafka's control record types); -1 for a record. */
  control: number;
}

/** A stored producer name's number: `p<n>` is producer n; anything else, -1. */
function producerNumber(name: string | undefined): number {
  return name !== undefined && /^p\d{1,15}$/.test(name) ? Number(name.slice(1)) : -1;
}

const OFFSET_PREFIX = encoder.encode('{"offset":');
const EPOCH_FIELD = encoder.encode('"epoch":');
const TS_FIELD = encoder.encode('"ts":');
const LOG_APPEND_TIME_TEXT = '"logAppendTime":true,';
const LOG_APPEND_TIME = encoder.encode(LOG_APPEND_TIME_TEXT);
const KEY_NULL = encoder.encode('"key":null');
const KEY_TEXT = encoder.encode('"key":"');
const KEY_B64 = encoder.encode('"keyB64":"');
const VALUE_NULL = encoder.encode(',"value":null');
const VALUE_TEXT = encoder.encode(',"value":"');
const VALUE_B64 = encoder.encode(',"valueB64":"');
const PRODUCER_BYTES = encoder.encode(',"producer":"p');
const SEQ_FIELD = encoder.encode('","seq":');
const BATCH_FIELD = encoder.encode(',"batch":');
const PEPOCH_FIELD = encoder.encode(',"pepoch":');
const TXN_FIELD = encoder.encode(',"txn":true');
const latin1 = new TextDecoder("latin1");

/** Digits at `at`: [value, index after them], or null when there are none (or too many). */
function digitsAt(b: Uint8Array, at: number, end: number): [number, number] | null {
  let n = 0;
  const start = at;
  while (at < end && b[at] >= 0x30 && b[at] <= 0x39 && at - start < 16) n = n * 10 + (b[at++] - 0x30);
  return at === start ? null : [n, at];
}

function startsAt(b: Uint8Array, at: number, field: Uint8Array): boolean {
  if (at + field.length > b.length) return false;
  for (let i = 0; i < field.length; i++) if (b[at + i] !== field[i]) return false;
  return true;
}

/** An integer at `at` ending at the next comma: [value, index of the comma], or null. */
function intAt(b: Uint8Array, at: number, end: number): [number, number] | null {
  let neg = false;
  if (b[at] === 0x2d) {
    neg = true;
    at++;
  }
  let n = 0;
  const start = at;
  while (at < end && b[at] >= 0x30 && b[at] <= 0x39) n = n * 10 + (b[at++] - 0x30);
  return at === start || b[at] !== 0x2c ? null : [neg ? -n : n, at];
}

/** The offset the stored line starting at `s` carries, or -1 when it does not start as one. */
function offsetOfLineAt(b: Uint8Array, s: number): number {
  if (!startsAt(b, s, OFFSET_PREFIX)) return -1;
  const off = intAt(b, s + OFFSET_PREFIX.length, Math.min(b.length, s + OFFSET_PREFIX.length + 20));
  return off === null ? -1 : off[0];
}

/**
 * The offset the stored line starting at byte `s` of `b` claims in its fixed
 * prefix (`{"offset":N,`), or -1 when it does not start as a stored line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { offsetAt } from "./record.ts";
 * const b = new TextEncoder().encode('{"offset":7,"value":"a"}\n{"offset":9,"value":"b"}\n');
 * assert.equal(offsetAt(b, 0), 7);
 * assert.equal(offsetAt(b, 25), 9);
 * assert.equal(offsetAt(b, 3), -1);
 * ```
 */
export function offsetAt(b: Uint8Array, s: number): number {
  return offsetOfLineAt(b, s);
}

/**
 * The offset of the stored line `b[s, e)` (`e` at its newline) when it is
 * intact ({@link verifyLine}) and in its place: exactly `min` in a log
 * without gaps, `min` or more in one with gaps (a compacted log, where
 * cleaning removed the records between); -1 otherwise. `crc`, when given,
 * is the line's checksum as its reader computed it ({@link nextIntactLine}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { intactOffset, sealLines } from "./record.ts";
 * const line = sealLines(new TextEncoder().encode('{"offset":5,"value":"v"}\n'));
 * assert.equal(intactOffset(line, 0, line.length - 1, 5, false), 5);
 * assert.equal(intactOffset(line, 0, line.length - 1, 3, false), -1); // 3 belongs here: a line is missing
 * assert.equal(intactOffset(line, 0, line.length - 1, 3, true), 5); // a gap left by cleaning
 * assert.equal(intactOffset(line, 0, line.length - 1, 6, true), -1); // behind the line before it
 * ```
 */
export function intactOffset(b: Uint8Array, s: number, e: number, min: number, gaps: boolean, crc?: number): number {
  const claimed = offsetOfLineAt(b, s);
  if (claimed < 0 || claimed < min || (!gaps && claimed !== min)) return -1;
  return verifyLine(b, s, e, claimed, crc) === "damaged" ? -1 : claimed;
}

/**
 * The index of the newline that ends the stored line from `s` (-1 when none
 * follows), with the line's checksum up to its checksum field left in
 * `out.crc` for {@link verifyLine}: both in one pass ({@link crc32cLine}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sealLines, storedLineEnd, verifyLine } from "./record.ts";
 * const line = sealLines(new TextEncoder().encode('{"offset":5,"value":"v"}\n'));
 * const out = { crc: 0 };
 * const e = storedLineEnd(line, 0, out);
 * assert.equal(e, line.length - 1);
 * assert.equal(verifyLine(line, 0, e, 5, out.crc), "sealed");
 * ```
 */
export function storedLineEnd(b: Uint8Array, s: number, out: LineCrc): number {
  return crc32cLine(b, s, CRC_TAIL_BYTES, out);
}

/** What {@link nextIntactLine} found: the line's offset, or -1 when it is damaged or out of place. */
export interface IntactLine extends LineCrc {
  offset: number;
}

/**
 * The stored line from `s`: returns the index of its newline (-1 when none
 * follows), and leaves in `out.offset` what {@link intactOffset} says of it
 * (-1 too for a line with no newline: not a whole line).
 * Its end and its checksum are found in one pass over its bytes
 * ({@link crc32cLine}), for the reads from disk that check every line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nextIntactLine, sealLines } from "./record.ts";
 * const line = sealLines(new TextEncoder().encode('{"offset":5,"value":"v"}\n'));
 * const out = { offset: 0, crc: 0 };
 * assert.equal(nextIntactLine(line, 0, 5, false, out), line.length - 1);
 * assert.equal(out.offset, 5);
 * line[12] ^= 1;
 * nextIntactLine(line, 0, 5, false, out);
 * assert.equal(out.offset, -1);
 * ```
 */
export function nextIntactLine(b: Uint8Array, s: number, min: number, gaps: boolean, out: IntactLine): number {
  const e = storedLineEnd(b, s, out);
  out.offset = e === -1 ? -1 : intactOffset(b, s, e, min, gaps, out.crc);
  return e;
}

/** What the cleaner reads of a stored line (see {@link compactionFieldsAt}); one object, reused line after line. */
export interface CompactionFields {
  offset: number;
  ts: number;
  /** Where the key's stored field (`"key":"..."` or `"keyB64":"..."`) lies in the line; -1 for no key. */
  keyStart: number;
  keyEnd: number;
  /** The record's value is null: a tombstone. */
  tombstone: boolean;
  /** A transaction marker (a control line): no key, no value. */
  control: boolean;
  /** A transactional record's or a marker's producer number (the `p<n>` of its line), or -1 for any other line. */
  txnProducer: number;
}

const KEY_FIELD = encoder.encode('"key');
const MARKER_START = encoder.encode('"marker":"');
const COMMIT_PRODUCER = encoder.encode('commit","producer":"p');
const ABORT_PRODUCER = encoder.encode('abort","producer":"p');
const TXN_END = encoder.encode(',"txn":true');
const COLON = 0x3a;
const HEADERS_START = encoder.encode(',"headers":[');

/**
 * Reads what the cleaner needs of the stored line `b[s, e)` into `out`,
 * without decoding it: the offset, the timestamp, where the key field lies
 * (its bytes are the key's identity: a key is stored one way only, as text
 * when it is UTF-8 and base64 otherwise, through JSON.stringify) and whether
 * the value is null, or that it is a transaction marker, and whose
 * transaction a transactional record or a marker is. False when the line
 * does not read as a stored record.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compactionFieldsAt, encodeBatch } from "./record.ts";
 * const b = new TextEncoder().encode(encodeBatch([{ key: "k\"1", value: null }], 4, 1, 99, null, 0));
 * const f = { offset: 0, ts: 0, keyStart: 0, keyEnd: 0, tombstone: false, control: false, txnProducer: -1 };
 * assert.equal(compactionFieldsAt(b, 0, b.length - 1, f), true);
 * assert.equal(f.offset, 4);
 * assert.equal(f.ts, 99);
 * assert.equal(new TextDecoder().decode(b.subarray(f.keyStart, f.keyEnd)), '"key":"k\\"1"');
 * assert.equal(f.tombstone, true);
 * ```
 */
export function compactionFieldsAt(b: Uint8Array, s: number, e: number, out: CompactionFields): boolean {
  if (!startsAt(b, s, OFFSET_PREFIX)) return false;
  const off = intAt(b, s + OFFSET_PREFIX.length, e);
  if (!off || !startsAt(b, off[1] + 1, EPOCH_FIELD)) return false;
  const ep = intAt(b, off[1] + 1 + EPOCH_FIELD.length, e);
  if (!ep || !startsAt(b, ep[1] + 1, TS_FIELD)) return false;
  const ts = intAt(b, ep[1] + 1 + TS_FIELD.length, e);
  if (!ts) return false;
  out.offset = off[0];
  out.ts = ts[0];
  out.tombstone = false;
  let at = ts[1] + 1;
  if (startsAt(b, at, LOG_APPEND_TIME)) at += LOG_APPEND_TIME.length;
  out.control = startsAt(b, at, MARKER_START);
  if (out.control) {
    // `"marker":"commit","producer":"p12"` (encodeMarker's order): whose transaction it ends.
    at += MARKER_START.length;
    const field = startsAt(b, at, ABORT_PRODUCER) ? ABORT_PRODUCER : COMMIT_PRODUCER;
    const n = startsAt(b, at, field) ? digitsAt(b, at + field.length, e) : null;
    if (!n) return false;
    out.txnProducer = n[0];
    out.keyStart = out.keyEnd = -1;
    return true;
  }
  out.txnProducer = txnProducerOf(b, s, e);
  if (startsAt(b, at, KEY_NULL)) {
    out.keyStart = out.keyEnd = -1;
    at += KEY_NULL.length;
  } else {
    if (!startsAt(b, at, KEY_FIELD)) return false;
    const colon = b.indexOf(COLON, at + KEY_FIELD.length); // after `"key"` or `"keyB64"`
    const close = colon === -1 || b[colon + 1] !== QUOTE ? -1 : stringEnd(b, colon + 2, e);
    if (close === -1) return false;
    out.keyStart = at;
    out.keyEnd = at = close;
  }
  if (startsAt(b, at, HEADERS_START)) {
    // Header values could hold anything: the value field is found by a full parse (rare: headers on a compacted topic).
    try {
      const r = JSON.parse(new TextDecoder().decode(b.subarray(s, e))) as StoredRecord;
      out.tombstone = r.value === null && r.valueB64 === undefined;
      return true;
    } catch {
      return false;
    }
  }
  out.tombstone = startsAt(b, at, VALUE_NULL);
  return true;
}

/**
 * The producer number of a transactional record (its fields end in
 * `,"txn":true`, before the checksum), or -1. A quote inside a value is
 * escaped, so the producer field found from the end is the line's own.
 */
function txnProducerOf(b: Uint8Array, s: number, e: number): number {
  const sealed = e - CRC_TAIL_BYTES > s && startsAt(b, e - CRC_TAIL_BYTES, CRC_FIELD);
  const end = sealed ? e - CRC_TAIL_BYTES : e - 1;
  if (end - TXN_END.length < s || !startsAt(b, end - TXN_END.length, TXN_END)) return -1;
  const line = latin1.decode(b.subarray(s, end));
  const p = line.lastIndexOf(',"producer":"p');
  const n = p === -1 ? null : digitsAt(b, s + p + 14, end);
  return n ? n[0] : -1;
}

/** The index just past the closing quote of the JSON string whose first character is at `at`, or -1. */
function stringEnd(b: Uint8Array, at: number, end: number): number {
  for (let i = at; i < end; i++) {
    if (b[i] === BACKSLASH) i++;
    else if (b[i] === QUOTE) return i + 1;
  }
  return -1;
}

/** The offset a stored line claims, read from its fixed prefix without parsing it all. */
export function lineOffset(line: string): number {
  // Lines start with {"offset":N, by construction (see record.ts).
  const end = line.indexOf(",", 10);
  return Number(line.slice(10, end));
}

/**
 * Whether bytes[from..to) begin with `{"offset":N,` for the expected N: the
 * cheap check that a stored line is the record it should be.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startsWithOffset } from "./record.ts";
 * const line = new TextEncoder().encode('{"offset":7,"value":"a"}');
 * assert.equal(startsWithOffset(line, 0, line.length, 7), true);
 * assert.equal(startsWithOffset(line, 0, line.length, 8), false);
 * ```
 */
export function startsWithOffset(bytes: Uint8Array, from: number, to: number, expected: number): boolean {
  if (to - from < OFFSET_PREFIX.length + 2) return false;
  for (let k = 0; k < OFFSET_PREFIX.length; k++) if (bytes[from + k] !== OFFSET_PREFIX[k]) return false;
  let at = from + OFFSET_PREFIX.length;
  let n = 0;
  const digitsFrom = at;
  while (at < to && bytes[at] >= 48 && bytes[at] <= 57 && at - digitsFrom < 16) n = n * 10 + (bytes[at++] - 48);
  return at > digitsFrom && at < to && bytes[at] === 44 && n === expected;
}

/**
 * The offset a whole stored line claims, by a full parse (NaN when it does not
 * parse): the check of the newest line at start-up, the one a crash most
 * likely hurt.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { claimedOffset } from "./record.ts";
 * assert.equal(claimedOffset('{"offset":7,"value":"a"}'), 7);
 * assert.ok(Number.isNaN(claimedOffset('{"offset":7,"val')));
 * ```
 */
export function claimedOffset(line: string): number {
  try {
    const offset = JSON.parse(line).offset;
    return typeof offset === "number" ? offset : NaN;
  } catch {
    return NaN;
  }
}

/**
 * The leader epoch a stored line carries (read from its fixed head), or null.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lineEpoch } from "./record.ts";
 * assert.equal(lineEpoch('{"offset":7,"epoch":3,"ts":1}'), 3);
 * ```
 */
export function lineEpoch(line: string): number | null {
  const m = /"epoch":(\d+)/.exec(line.slice(0, 80));
  return m ? Number(m[1]) : null;
}

/**
 * The offset of the first stored line in `lines` (-1 if it is not one):
 * for checking a chunk against its header without parsing it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstLineOffset } from "./record.ts";
 * assert.equal(firstLineOffset('{"offset":7,"value":"a"}\n{"offset":8,"value":"b"}\n'), 7);
 * ```
 */
export function firstLineOffset(lines: string | Uint8Array): number {
  const b = typeof lines === "string" ? encoder.encode(lines.slice(0, 40)) : lines;
  return offsetOfLineAt(b, 0);
}

/**
 * The offset of the last stored line in `lines` (which end in a newline), or -1.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lastLineOffset } from "./record.ts";
 * assert.equal(lastLineOffset('{"offset":7,"value":"a"}\n{"offset":8,"value":"b"}\n'), 8);
 * ```
 */
export function lastLineOffset(lines: string | Uint8Array): number {
  if (typeof lines === "string") {
    const start = lines.lastIndexOf("\n", lines.length - 2) + 1;
    return offsetOfLineAt(encoder.encode(lines.slice(start, start + 40)), 0);
  }
  return offsetOfLineAt(lines, lines.lastIndexOf(NEWLINE, lines.length - 2) + 1);
}

function bytesOfParsed(line: Uint8Array): RecordBytes {
  const r = JSON.parse(new TextDecoder().decode(line)) as StoredRecord;
  const producer = producerNumber(r.producer);
  return {
    offset: r.offset,
    epoch: r.epoch,
    ts: r.ts,
    logAppendTime: r.logAppendTime === true,
    key: keyBytes(r),
    value: valueBytes(r),
    headers: (r.headers ?? []).map((h) => ({ key: h.key, value: valueBytes(h) })),
    producer,
    seq: r.seq ?? -1,
    batchStart: r.batch !== undefined,
    pepoch: r.pepoch ?? (producer >= 0 ? 0 : -1),
    txn: r.txn === true || r.marker !== undefined,
    control: r.marker === "commit" ? 1 : r.marker === "abort" ? 0 : -1,
  };
}

/** Where the last {@link uintAt} or {@link plainEnd} stopped: the fast line reader's cursor. */
let cursor = 0;

/**
 * A non-negative integer at `at` (at most 16 digits are read), its end left in
 * {@link cursor}; -1 when there is no digit.
 */
function uintAt(b: Uint8Array, at: number, end: number): number {
  const start = at;
  // Nine digits in integer arithmetic, then the rest (a 13-digit timestamp) in a second integer joined once:
  // half the time of a floating-point step per digit (13 against 25 ns a number here).
  const stop9 = Math.min(end, start + 9);
  let n = 0;
  while (at < stop9) {
    const c = b[at] - 0x30;
    if (!(c >= 0 && c <= 9)) break;
    n = (n * 10 + c) | 0;
    at++;
  }
  if (at === stop9 && at < end) {
    const stop = Math.min(end, start + 16);
    let low = 0;
    let scale = 1;
    while (at < stop) {
      const c = b[at] - 0x30;
      if (!(c >= 0 && c <= 9)) break;
      low = (low * 10 + c) | 0;
      scale *= 10;
      at++;
    }
    n = n * scale + low;
  }
  cursor = at;
  return at === start ? -1 : n;
}

/** The headers of a record that has none (shared: readers never change them). */
const NO_HEADERS: { key: string; value: Uint8Array | null }[] = [];

/**
 * One stored line's fields, read in place into a reused object (the Kafka
 * fetch path reads a million lines a second without an object per record):
 * the key and the value are spans of `keySrc` and `valueSrc` (the line's own
 * bytes for text; a decoded array for base64 or a parsed line), null when
 * absent.
 */
export class LineFields {
  offset = 0;
  epoch = 0;
  ts = 0;
  logAppendTime = false;
  keySrc: Uint8Array | null = null;
  keyStart = 0;
  keyEnd = 0;
  valueSrc: Uint8Array | null = null;
  valueStart = 0;
  valueEnd = 0;
  headers: { key: string; value: Uint8Array | null }[] = NO_HEADERS;
  /** As in {@link RecordBytes}. */
  producer = -1;
  seq = -1;
  batchStart = false;
  pepoch = -1;
  txn = false;
  control = -1;

  /** Takes a record read the slow way (a full parse). */
  setFrom(r: RecordBytes): void {
    this.setScalars(r);
    this.keySrc = r.key;
    this.keyStart = 0;
    this.keyEnd = r.key?.length ?? 0;
    this.valueSrc = r.value;
    this.valueStart = 0;
    this.valueEnd = r.value?.length ?? 0;
    this.headers = r.headers;
  }

  /** Takes another record's fields but its key, value and headers (a reader keeps the record before). */
  setScalars(r: Omit<RecordBytes, "key" | "value" | "headers">): void {
    this.offset = r.offset;
    this.epoch = r.epoch;
    this.ts = r.ts;
    this.logAppendTime = r.logAppendTime;
    this.producer = r.producer;
    this.seq = r.seq;
    this.batchStart = r.batchStart;
    this.pepoch = r.pepoch;
    this.txn = r.txn;
    this.control = r.control;
  }
}

/**
 * Reads the stored line that starts at byte `s` of `b` into `f`, in one pass
 * with a cursor, and returns where it ends: the index of its newline (or
 * `b.length` for a last line without one). Every line is read: the common
 * ones in place, the rest (escapes, headers, markers, negative or very long
 * numbers) by a full parse. A sealed line read in place ends in its checksum
 * field right after the fields read, so its newline is found without a
 * search (`indexOf` costs about as much as reading the fields).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch, LineFields, readLine, sealLines } from "./record.ts";
 * const b = sealLines(new TextEncoder().encode(encodeBatch([{ key: "k", value: "hi" }], 7, 1, 5, null, 0)));
 * const f = new LineFields();
 * assert.equal(readLine(b, 0, f), b.length - 1);
 * assert.equal(f.offset, 7);
 * assert.equal(new TextDecoder().decode(f.valueSrc!.subarray(f.valueStart, f.valueEnd)), "hi");
 * ```
 */
export function readLine(b: Uint8Array, s: number, f: LineFields): number {
  if (lineInPlace(b, s, b.length, f)) {
    // Where the fields read in place end: a sealed line's checksum field and its closing brace come next.
    const rest = cursor;
    const nl = rest + CRC_TAIL_BYTES;
    if (b[nl] === NEWLINE && endsSealed(b, nl)) return nl;
    const e = b.indexOf(NEWLINE, rest);
    return e === -1 ? b.length : e;
  }
  let e = b.indexOf(NEWLINE, s);
  if (e === -1) e = b.length;
  f.setFrom(bytesOfParsed(b.subarray(s, e)));
  return e;
}

/** {@link readLine}'s fast path; false when the line needs the full parse. */
function lineInPlace(b: Uint8Array, s: number, e: number, f: LineFields): boolean {
  if (!startsAt(b, s, OFFSET_PREFIX)) return false;
  const offset = uintAt(b, s + OFFSET_PREFIX.length, e);
  if (offset < 0 || b[cursor] !== COMMA || !startsAt(b, cursor + 1, EPOCH_FIELD)) return false;
  const epoch = uintAt(b, cursor + 1 + EPOCH_FIELD.length, e);
  if (epoch < 0 || b[cursor] !== COMMA || !startsAt(b, cursor + 1, TS_FIELD)) return false;
  const ts = uintAt(b, cursor + 1 + TS_FIELD.length, e);
  if (ts < 0 || b[cursor] !== COMMA) return false;
  let at = cursor + 1;
  // Each optional form told by one byte first (as plainValues): most lines have neither.
  const logAppendTime = b[at + 1] === LOWER_L && startsAt(b, at, LOG_APPEND_TIME);
  if (logAppendTime) at += LOG_APPEND_TIME.length;
  if (b[at + 6] === LOWER_N && startsAt(b, at, KEY_NULL)) {
    f.keySrc = null;
    at += KEY_NULL.length;
  } else {
    const text = startsAt(b, at, KEY_TEXT);
    if (!text && !startsAt(b, at, KEY_B64)) return false; // a marker, or a field this reader does not know
    const from = at + (text ? KEY_TEXT.length : KEY_B64.length);
    if (plainEnd(b, from) < 0) return false;
    spanInto(f, true, b, from, cursor, text);
    at = cursor + 1;
  }
  if (b[at + 9] === LOWER_N && startsAt(b, at, VALUE_NULL)) {
    f.valueSrc = null;
    at += VALUE_NULL.length;
  } else {
    const text = startsAt(b, at, VALUE_TEXT);
    if (!text && !startsAt(b, at, VALUE_B64)) return false; // headers, or a field this reader does not know
    const from = at + (text ? VALUE_TEXT.length : VALUE_B64.length);
    if (plainEnd(b, from) < 0) return false;
    spanInto(f, false, b, from, cursor, text);
    at = cursor + 1;
  }
  f.offset = offset;
  f.epoch = epoch;
  f.ts = ts;
  f.logAppendTime = logAppendTime;
  f.headers = NO_HEADERS;
  f.control = -1;
  cursor = producerInto(b, at, e, f);
  return true;
}

/** The key's or the value's bytes: a span of the line for text, the decoded bytes for base64. */
function spanInto(f: LineFields, key: boolean, b: Uint8Array, from: number, to: number, text: boolean): void {
  const src = text ? b : Uint8Array.fromBase64(latin1.decode(b.subarray(from, to)));
  const start = text ? from : 0;
  const end = text ? to : src.length;
  if (key) {
    f.keySrc = src;
    f.keyStart = start;
    f.keyEnd = end;
  } else {
    f.valueSrc = src;
    f.valueStart = start;
    f.valueEnd = end;
  }
}

/**
 * The producer fields from `at`: `,"producer":"p<n>","seq":S`, maybe `,"batch":N`, maybe `,"pepoch":E,"txn":true`.
 * Returns where they end (`at` when there are none).
 */
function producerInto(b: Uint8Array, at: number, e: number, f: LineFields): number {
  f.producer = -1;
  f.seq = -1;
  f.batchStart = false;
  f.pepoch = -1;
  f.txn = false;
  if (!startsAt(b, at, PRODUCER_BYTES)) return at;
  const n = uintAt(b, at + PRODUCER_BYTES.length, e);
  const seq = n >= 0 && startsAt(b, cursor, SEQ_FIELD) ? uintAt(b, cursor + SEQ_FIELD.length, e) : -1;
  if (seq < 0) return at;
  f.producer = n;
  f.seq = seq;
  f.pepoch = 0;
  at = cursor;
  f.batchStart = startsAt(b, at, BATCH_FIELD);
  if (f.batchStart && uintAt(b, at + BATCH_FIELD.length, e) >= 0) at = cursor;
  if (startsAt(b, at, PEPOCH_FIELD)) {
    const pe = uintAt(b, at + PEPOCH_FIELD.length, e);
    if (pe >= 0) {
      f.pepoch = pe;
      f.txn = startsAt(b, cursor, TXN_FIELD);
      at = f.txn ? cursor + TXN_FIELD.length : cursor;
    }
  }
  return at;
}

/**
 * The text values of stored lines `b` (each ending in "\n"), each followed
 * by a newline, as `yak consume` prints them, and where each one's newline
 * ends (`ends[i]`: the bytes of the first i + 1 values); null unless every
 * line is a plain record (no marker, no headers, no base64, no null value,
 * no escape in its key or value). A text value with no escape is its own
 * UTF-8 bytes, so they are copied as they are, in the pass that finds them:
 * no decoding to text and back, no object or view per line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch, plainValues } from "./record.ts";
 * const b = new TextEncoder().encode(encodeBatch([{ key: "k", value: "hi" }, { key: null, value: "yo" }], 0, 1, 5, null, 0));
 * const { values, ends } = plainValues(b)!;
 * assert.equal(new TextDecoder().decode(values), "hi\nyo\n");
 * assert.deepEqual([...ends], [3, 6]);
 * assert.equal(plainValues(new TextEncoder().encode(encodeBatch([{ key: null, value: 'a"b' }], 0, 1, 5, null, 0))), null);
 * ```
 */
export function plainValues(b: Uint8Array): { values: Uint8Array; ends: Int32Array } | null {
  // A value is never longer than its line, so `values` has room for all of them.
  const values = new Uint8Array(b.length);
  let ends = new Int32Array(Math.max(16, b.length >> 7));
  let s = 0;
  let o = 0;
  let n = 0;
  while (s < b.length) {
    // {"offset":N,"epoch":N,"ts":N,  then maybe the append-time flag, then the key and the value. The numbers are
    // only stepped over (their digits and the comma after them): the values are what is wanted here.
    if (!startsAt(b, s, OFFSET_PREFIX)) return null;
    let at = commaAfterDigits(b, s + OFFSET_PREFIX.length);
    if (at < 0 || !startsAt(b, at + 1, EPOCH_FIELD)) return null;
    at = commaAfterDigits(b, at + 1 + EPOCH_FIELD.length);
    if (at < 0 || !startsAt(b, at + 1, TS_FIELD)) return null;
    at = commaAfterDigits(b, at + 1 + TS_FIELD.length);
    if (at < 0) return null;
    at++;
    // Each field told by one byte first (its name's first letter, or null's n): most lines have neither.
    if (b[at + 1] === LOWER_L && startsAt(b, at, LOG_APPEND_TIME)) at += LOG_APPEND_TIME.length;
    if (b[at + 6] === LOWER_N && startsAt(b, at, KEY_NULL)) at += KEY_NULL.length;
    else {
      if (!startsAt(b, at, KEY_TEXT) || plainEnd(b, at + KEY_TEXT.length) < 0) return null;
      at = cursor + 1;
    }
    if (!startsAt(b, at, VALUE_TEXT)) return null;
    at += VALUE_TEXT.length;
    // Copied while looking for its closing quote: one pass over the value.
    let c = b[at];
    while (IN_PLAIN_STRING[c] === 1) {
      values[o++] = c;
      c = b[++at];
    }
    if (c !== QUOTE) return null;
    values[o++] = NEWLINE;
    if (n === ends.length) {
      const grown = new Int32Array(n * 2);
      grown.set(ends);
      ends = grown;
    }
    ends[n++] = o;
    // The rest of the line: its producer fields and its checksum (26 to 60 bytes), or just `}` before checksums.
    const nl = b.indexOf(NEWLINE, at + 1);
    if (nl === -1) return null;
    s = nl + 1;
  }
  return { values: values.subarray(0, o), ends: ends.subarray(0, n) };
}

const LOWER_L = 0x6c;
const LOWER_N = 0x6e;

/**
 * The index of the comma after the digits of a whole number at `at` (at
 * most 16 of them, as a safe integer has), or -1 when anything else comes
 * first (a sign, a fraction, no digit at all).
 */
function commaAfterDigits(b: Uint8Array, at: number): number {
  const start = at;
  let c = b[at];
  while (c >= 0x30 && c <= 0x39) c = b[++at];
  return at > start && at - start <= 16 && c === COMMA ? at : -1;
}

/** 1 for a byte that may stand in a stored JSON string without ending it or starting an escape (or a line). */
const IN_PLAIN_STRING: Uint8Array = (() => {
  const t = new Uint8Array(256).fill(1);
  t[QUOTE] = t[BACKSLASH] = t[NEWLINE] = 0;
  return t;
})();

/**
 * The index of the closing quote of the JSON string from `at` (just past its
 * opening quote), also left in {@link cursor}; -1 when an escape comes first
 * (or no quote does).
 */
function plainEnd(b: Uint8Array, at: number): number {
  let i = at;
  while (i < b.length && IN_PLAIN_STRING[b[i]] === 1) i++;
  return i < b.length && b[i] === QUOTE ? cursor = i : -1;
}

const CRC_FIELD_TEXT = ',"crc":"';
const CRC_FIELD = encoder.encode(CRC_FIELD_TEXT);
/** `,"crc":"` + 8 hex digits + `"}`: a sealed line's tail. */
const CRC_TAIL_BYTES = CRC_FIELD.length + 8 + 2;
/** The bytes {@link sealLines} adds to each line (the closing brace was there already). */
export const SEAL_BYTES: number = CRC_TAIL_BYTES - 1;
const HEX = encoder.encode("0123456789abcdef");
const utf8 = new TextDecoder();
const CLOSE_BRACE = 0x7d;

/**
 * Lines (each a JSON object ending in `}\n`; `lineCount` of them, when the
 * caller knows) with a checksum added as each one's last field: the CRC-32C
 * of the line's bytes before the field, in hex. The leader seals what it
 * appends; nothing else writes lines.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sealLines } from "./record.ts";
 * const sealed = sealLines(new TextEncoder().encode('{"offset":0,"value":"hi"}\n'));
 * assert.equal(new TextDecoder().decode(sealed), '{"offset":0,"value":"hi","crc":"3cf1b30f"}\n');
 * ```
 */
export function sealLines(bytes: Uint8Array, lineCount?: number): Uint8Array {
  let lines = lineCount ?? 0;
  if (lineCount === undefined) {
    for (let i = bytes.indexOf(NEWLINE); i !== -1; i = bytes.indexOf(NEWLINE, i + 1)) lines++;
  }
  // Each line's closing brace goes and comes back after the field (LineWriter.seal writes both).
  const w = new LineWriter(bytes.length + lines * SEAL_BYTES);
  let sealed = 0;
  for (let s = 0, nl = 0; s < bytes.length; s = nl + 1) {
    nl = bytes.indexOf(NEWLINE, s);
    if (nl === -1 || bytes[nl - 1] !== CLOSE_BRACE || ++sealed > lines) {
      throw new Error(`sealLines: expected ${lines} lines, each ending in '}' and a newline`);
    }
    const start = w.at;
    w.need(nl - 1 - s);
    w.buf.set(bytes.subarray(s, nl - 1), start);
    w.at += nl - 1 - s;
    w.seal(start);
  }
  return w.done();
}

/** Whether the line ending at `e` (its newline) ends in a checksum field: `,"crc":"<8 hex>"}` (the digits not read). */
function endsSealed(b: Uint8Array, e: number): boolean {
  return b[e - 1] === CLOSE_BRACE && b[e - 2] === QUOTE && startsAt(b, e - CRC_TAIL_BYTES, CRC_FIELD);
}

/** The value of each byte as a lower-case hex digit, -1 for the rest. */
const HEX_VALUE: Int8Array = (() => {
  const v = new Int8Array(256).fill(-1);
  for (let i = 0; i < 16; i++) v[HEX[i]] = i;
  return v;
})();

/**
 * Whether the stored line `b[s, e)` (`e` at its newline, which is not part
 * of it) is the record at `offset`, intact: "sealed" when its checksum
 * matches (the checksum covers the `{"offset":` prefix, so only the offset's
 * digits are read after it), "unsealed" when it carries no checksum but
 * parses and names `offset` (a line from before checksums, or one whose
 * checksum field itself was hit), "damaged" otherwise. One check for every
 * reader: reads from disk, the start-up scan and the scrubber. `crc`, when
 * given, is the checksum of `b[s, e)` up to its checksum field, computed by
 * the caller as it found the line's end ({@link nextIntactLine}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sealLines, verifyLine } from "./record.ts";
 * const line = sealLines(new TextEncoder().encode('{"offset":0,"value":"v"}\n'));
 * assert.equal(verifyLine(line, 0, line.length - 1, 0), "sealed");
 * line[3] ^= 1;
 * assert.equal(verifyLine(line, 0, line.length - 1, 0), "damaged");
 * ```
 */
export function verifyLine(
  b: Uint8Array,
  s: number,
  e: number,
  offset: number,
  crc?: number,
): "sealed" | "unsealed" | "damaged" {
  if (e <= s || b[e - 1] !== CLOSE_BRACE) return "damaged";
  const t = e - CRC_TAIL_BYTES;
  if (t > s && endsSealed(b, e)) {
    let want = 0;
    for (let k = t + CRC_FIELD.length; k < e - 2; k++) {
      const d = HEX_VALUE[b[k]];
      if (d < 0) return "damaged";
      want = want * 16 + d;
    }
    if ((crc ?? crc32cRange(b, s, t)) !== want) return "damaged";
    let n = 0;
    let at = s + OFFSET_PREFIX.length;
    for (let c = b[at]; c >= 0x30 && c <= 0x39; c = b[++at]) n = n * 10 + (c - 0x30);
    return b[at] === 0x2c && n === offset ? "sealed" : "damaged";
  }
  try {
    return JSON.parse(utf8.decode(b.subarray(s, e))).offset === offset ? "unsealed" : "damaged";
  } catch {
    return "damaged";
  }
}

/** An aborted transaction in one partition: `producer`'s transactional lines from `first` to `last` (its marker). */
export interface AbortedRange {
  /** The stored producer name (`p<n>`). */
  producer: string;
  first: number;
  last: number;
}

const MARKER_FIELD = ',"marker":"';
const TXN_FLAG = ',"txn":true';

/**
 * Stored lines (each ending in "\n") without their markers and without the
 * records of `aborted` transactions: what a reader shows. Lines are looked
 * at one by one only when the text holds a marker or a transaction was
 * aborted here (a quote inside a value is escaped, so the field markers
 * only match fields).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeBatch, encodeMarker, shownLines } from "./record.ts";
 * const text = encodeBatch([{ key: null, value: "a" }], 0, 1, 0, "p7", 0, false, 1) + encodeMarker(1, 1, 0, "p7", 1, false) +
 *   encodeBatch([{ key: null, value: "b" }], 2, 1, 0, null, 0);
 * assert.equal(shownLines(text, []).split("\n").length, 3); // the marker goes
 * assert.equal(shownLines(text, [{ producer: "p7", first: 0, last: 1 }]), encodeBatch([{ key: null, value: "b" }], 2, 1, 0, null, 0));
 * ```
 */
export function shownLines(text: string, aborted: readonly AbortedRange[]): string {
  if (aborted.length === 0 && !text.includes(MARKER_FIELD)) return text;
  const lines = text.split("\n");
  lines.pop();
  let out = "";
  for (const line of lines) {
    if (line.includes(MARKER_FIELD)) continue;
    if (aborted.length > 0 && line.includes(TXN_FLAG)) {
      const producer = producerOf(line)?.producer;
      const offset = lineOffset(line);
      if (aborted.some((a) => a.producer === producer && offset >= a.first && offset <= a.last)) continue;
    }
    out += line + "\n";
  }
  return out;
}
