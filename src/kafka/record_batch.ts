/**
 * Kafka's RecordBatch v2 (magic 2), the unit of Produce requests, Fetch
 * replies and Kafka's own log. One batch:
 *
 * ```
 * baseOffset int64 | batchLength int32 (bytes after this field) | partitionLeaderEpoch int32
 * magic int8 = 2 | crc uint32 (CRC-32C of everything from attributes to the end)
 * attributes int16 (bits 0-2 codec, 3 log-append time, 4 transactional, 5 control)
 * lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64
 * producerId int64 | producerEpoch int16 | baseSequence int32 | recordCount int32
 * records (compressed as one block when the codec is not 0)
 * ```
 *
 * A record: length varint, attributes int8, timestampDelta varlong,
 * offsetDelta varint, key (varint length, -1 for null, then bytes), value
 * (likewise), header count varint, and headers (key: varint length and UTF-8;
 * value: varint length, -1 for null, and bytes). Varints are zigzag-encoded
 * (Protocol Buffers' sint32 and sint64).
 *
 * Older magics (0 and 1, the message sets before Kafka 0.11) are refused as
 * CORRUPT_MESSAGE, naming the magic: Produce v3 and later carry magic 2 only,
 * Kafka 4 dropped the Produce versions before 3, and clients since Kafka 0.11
 * (2017) write magic 2.
 *
 * @module
 */

import { assert, YakError } from "../errors.ts";
import { crc32c, crc32cRange } from "../log/crc32c.ts";
import { compress, Compression, type CompressionCodec, decompress, isCompressionCodec } from "./compression.ts";
import { strictUtf8 as DECODER } from "../utf8.ts";

/**
 * A record header: a UTF-8 key and bytes, possibly null.
 *
 * @example
 * ```ts
 * import type { KafkaHeader } from "./record_batch.ts";
 * const h: KafkaHeader = { key: "trace-id", value: new TextEncoder().encode("abc") };
 * ```
 */
export interface KafkaHeader {
  key: string;
  value: Uint8Array | null;
}

/**
 * One record of a batch, its timestamp made absolute (ms since the epoch).
 * Decoded keys, values and header values are views into the bytes given to
 * {@link decodeRecordBatches} (or into the decompressed records): copy them to
 * keep them past that buffer.
 *
 * @example
 * ```ts
 * import type { KafkaRecord } from "./record_batch.ts";
 * const r: KafkaRecord = { offsetDelta: 0, timestamp: 1763764800123, key: null, value: new Uint8Array(3), headers: [] };
 * ```
 */
export interface KafkaRecord {
  offsetDelta: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: KafkaHeader[];
}

/**
 * A decoded batch: its header fields and its records.
 *
 * @example
 * ```ts
 * import type { RecordBatch } from "./record_batch.ts";
 * const lastOffset = (b: RecordBatch): number => b.baseOffset + b.lastOffsetDelta;
 * ```
 */
export interface RecordBatch {
  baseOffset: number;
  partitionLeaderEpoch: number;
  /** The raw attributes; the fields below spell out its bits. */
  attributes: number;
  compression: CompressionCodec;
  /** Whether the broker set the timestamps at append time (then every record's timestamp is maxTimestamp). */
  isLogAppendTime: boolean;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  /** -1 without an idempotent producer. */
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
  isTransactional: boolean;
  isControl: boolean;
  records: KafkaRecord[];
}

/**
 * Limits on one {@link decodeRecordBatches} call, over all its batches.
 *
 * @example
 * ```ts
 * import type { DecodeLimits } from "./record_batch.ts";
 * const limits: DecodeLimits = { maxRecords: 100_000, maxUncompressedBytes: 64 * 1024 * 1024 };
 * ```
 */
export interface DecodeLimits {
  /** Records in all batches together; more is MESSAGE_TOO_LARGE. */
  maxRecords: number;
  /** Bytes that compressed records may inflate to, all batches together; more is MESSAGE_TOO_LARGE. */
  maxUncompressedBytes: number;
  /**
   * The record rules (headers, size), applied as each record is decoded, so
   * decoding stops at the first record that breaks one (the broker's
   * `RecordRules`).
   */
  records?: RecordChecks;
}

/**
 * Checks on each record as it is decoded; each throws to refuse it. Only the
 * header count, which bounds the work a record can cost: a record's size is
 * checked by the service, once for both protocols (RecordRules.validateBatch).
 */
export interface RecordChecks {
  /** Record `i` announces `count` headers (called before any is decoded). */
  checkHeaders(i: number, count: number): void;
}

/**
 * What {@link encodeRecordBatch} writes: one batch of records with offsets
 * `baseOffset + offsetDelta`, in increasing offsetDelta order.
 *
 * @example
 * ```ts
 * import type { RecordBatchInput } from "./record_batch.ts";
 * const input: RecordBatchInput = {
 *   baseOffset: 42,
 *   partitionLeaderEpoch: 3,
 *   records: [{ offsetDelta: 0, timestamp: 1763764800123, key: null, value: new Uint8Array(1), headers: [] }],
 * };
 * ```
 */
export interface RecordBatchInput {
  baseOffset: number;
  partitionLeaderEpoch: number;
  /** Defaults to -1 (no idempotent producer), with epoch -1 and sequence -1. */
  producerId?: bigint;
  producerEpoch?: number;
  baseSequence?: number;
  /** Defaults to none; others compress the records section as Kafka's Java client does. */
  compression?: CompressionCodec;
  /**
   * The timestamps are the broker's append time (attribute bit 3): readers
   * then take maxTimestamp as every record's, so the records should carry it.
   */
  logAppendTime?: boolean;
  /** Part of a transaction (attribute bit 4). */
  isTransactional?: boolean;
  /** A control batch: a transaction marker (attribute bit 5). */
  isControl?: boolean;
  records: KafkaRecord[];
  /**
   * Where the batch ends when that is past its last record (or it has none):
   * offsets a compaction removed, which a consumer then moves past (Kafka's
   * cleaner keeps a batch's last offset for the same reason).
   */
  lastOffsetDelta?: number;
}

/** Bytes before the records: Kafka's RECORD_BATCH_OVERHEAD. */
export const RECORD_BATCH_OVERHEAD_BYTES = 61;
/** baseOffset and batchLength: the part of a batch that batchLength does not count. */
const LOG_OVERHEAD_BYTES = 12;
const MAGIC = 2;
const MAGIC_AT = 16;
const CRC_AT = 17;
const ATTRIBUTES_AT = 21;
const ATTR_CODEC_MASK = 0x07;
const ATTR_LOG_APPEND_TIME = 0x08;
const ATTR_TRANSACTIONAL = 0x10;
const ATTR_CONTROL = 0x20;
/** The smallest record: a length byte and six one-byte fields (all empty). */
const MIN_RECORD_BYTES = 7;
const INT32_MAX = 0x7fffffff;
const TWO_32 = 4294967296;
/** A zigzag varlong of a number stays exact while |n| < 2^52. */
const VARLONG_SAFE = 2 ** 52;
/** How far a record's timestamp may be from its batch's first (a zigzag varlong delta kept exact). */
export const MAX_TIMESTAMP_DELTA: number = VARLONG_SAFE - 1;

function corrupt(at: number, what: string): YakError {
  return new YakError("CORRUPT_MESSAGE", `record batch at byte ${at}: ${what}; the producer sent damaged records`);
}

/**
 * A timestamp yak cannot keep exactly (past 2^53 ms, some 285,000 years
 * away): INVALID_TIMESTAMP, as Kafka answers a timestamp outside its limits,
 * not a corrupt batch (which a Java producer retries until its timeout).
 */
function timestampOutOfRange(at: number, what: string, ts: number | bigint): YakError {
  return new YakError(
    "INVALID_TIMESTAMP",
    `record batch at byte ${at}: ${what} ${ts} is outside what yak stores (timestamps within +/-2^53 ms)`,
  );
}

/**
 * Reads an int64 as a number; outside the safe integers it is corrupt (no yak
 * offset gets there), or for a timestamp INVALID_TIMESTAMP.
 */
function readInt64(view: DataView, pos: number, batchAt: number, what: string, timestamp = false): number {
  const hi = view.getInt32(pos);
  if (hi < -0x200000 || hi >= 0x200000) {
    if (timestamp) throw timestampOutOfRange(batchAt, what, view.getBigInt64(pos));
    throw corrupt(batchAt, `${what} is outside the safe integers`);
  }
  return hi * TWO_32 + view.getUint32(pos + 4);
}

/** A cursor over records: one instance per batch, so V8 keeps its methods monomorphic. */
class Reader {
  pos: number;
  end: number;
  constructor(readonly buf: Uint8Array, start: number, end: number, readonly batchAt: number) {
    this.pos = start;
    this.end = end;
  }

  /** A zigzag varint of at most 5 bytes and 32 bits. */
  varint(what: string): number {
    const buf = this.buf;
    let u = 0;
    for (let shift = 0;; shift += 7) {
      if (this.pos >= this.end) throw corrupt(this.batchAt, `${what} is truncated`);
      const b = buf[this.pos++];
      if (shift === 28) {
        if (b > 0x0f) throw corrupt(this.batchAt, `${what} is a varint longer than 5 bytes or 32 bits`);
        u |= b << 28;
        break;
      }
      u |= (b & 0x7f) << shift;
      if (b < 0x80) break;
    }
    return (u >>> 1) ^ -(u & 1);
  }

  /** A zigzag varlong of at most 10 bytes, as a number: past 2^52 it is refused. */
  varlong(what: string): number {
    const buf = this.buf;
    let u = 0;
    let scale = 1;
    for (let k = 0; k < 10; k++) {
      if (this.pos >= this.end) throw corrupt(this.batchAt, `${what} is truncated`);
      const b = buf[this.pos++];
      u += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (u >= 2 * VARLONG_SAFE) throw corrupt(this.batchAt, `${what} is past 2^52`);
        return u % 2 === 0 ? u / 2 : -(u + 1) / 2;
      }
      scale *= 128;
    }
    throw corrupt(this.batchAt, `${what} is a varlong longer than 10 bytes`);
  }

  /** Length-prefixed bytes; -1 is null, any other negative length is corrupt. */
  bytes(what: string): Uint8Array | null {
    const len = this.varint(`${what} length`);
    if (len === -1) return null;
    if (len < 0) throw corrupt(this.batchAt, `${what} length ${len} is negative`);
    if (len > this.end - this.pos) throw corrupt(this.batchAt, `${what} of ${len} bytes passes the end of its record`);
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  /** A header key: length-prefixed UTF-8, never null. */
  string(what: string): string {
    const len = this.varint(`${what} length`);
    if (len < 0) throw corrupt(this.batchAt, `${what} length ${len} is negative (a header key is never null)`);
    if (len > this.end - this.pos) throw corrupt(this.batchAt, `${what} of ${len} bytes passes the end of its record`);
    const s = utf8(this.buf, this.pos, this.pos + len);
    // Header keys are strings in every Kafka client; bytes that are not UTF-8 would be stored altered.
    if (s === null) throw corrupt(this.batchAt, `a ${what} is not UTF-8`);
    this.pos += len;
    return s;
  }
}

const ENCODER = new TextEncoder();

/**
 * Header keys are short and mostly ASCII; building those directly skips
 * TextDecoder's call cost. Null when the bytes are not UTF-8.
 */
function utf8(buf: Uint8Array, start: number, end: number): string | null {
  if (end - start <= 32) {
    let s = "";
    for (let k = start; k < end; k++) {
      const c = buf[k];
      if (c >= 0x80) return strictUtf8(buf.subarray(start, end));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return strictUtf8(buf.subarray(start, end));
}

function strictUtf8(bytes: Uint8Array): string | null {
  try {
    return DECODER.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Decodes every batch in `bytes` (a Produce request's `records` field, or a
 * log's bytes): checks lengths against the buffer, the magic (only 2), the
 * CRC-32C, the codec, record counts and offset deltas, and decompresses.
 * Throws CORRUPT_MESSAGE for anything malformed or truncated, and
 * MESSAGE_TOO_LARGE past `limits` (Kafka's producers split a batch on that
 * error and resend, where CORRUPT_MESSAGE would make them retry it as is).
 * Empty `bytes` decode to no batches.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeRecordBatches, encodeRecordBatch } from "./record_batch.ts";
 * const bytes = encodeRecordBatch({
 *   baseOffset: 0,
 *   partitionLeaderEpoch: 0,
 *   records: [{ offsetDelta: 0, timestamp: 1763764800123, key: null, value: new Uint8Array([1]), headers: [] }],
 * });
 * const [batch] = decodeRecordBatches(bytes, { maxRecords: 1000, maxUncompressedBytes: 1 << 20 });
 * assert.equal(batch.records[0].timestamp, 1763764800123);
 * ```
 */
export function decodeRecordBatches(bytes: Uint8Array, limits: DecodeLimits): RecordBatch[] {
  assert(Number.isSafeInteger(limits.maxRecords) && limits.maxRecords >= 0, "maxRecords is a non-negative integer");
  assert(
    Number.isSafeInteger(limits.maxUncompressedBytes) && limits.maxUncompressedBytes >= 0,
    "maxUncompressedBytes is a non-negative integer",
  );
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const budget = new DecodeBudget(limits);
  const batches: RecordBatch[] = [];
  let at = 0;
  while (at < bytes.length) {
    const end = checkBatchFrame(bytes, view, at);
    const batch = readBatchHeader(view, at);
    const count = readRecordCount(view, at, end, batch.compression, budget);
    const reader = recordsReader(bytes, at, end, batch.compression, count, budget);
    batch.records = readRecords(reader, count, batch, limits.records);
    batches.push(batch);
    at = end;
  }
  return batches;
}

/** What is left of one {@link decodeRecordBatches} call's limits, spent batch by batch. */
class DecodeBudget {
  recordsLeft: number;
  inflateLeft: number;
  constructor(readonly limits: DecodeLimits) {
    this.recordsLeft = limits.maxRecords;
    this.inflateLeft = limits.maxUncompressedBytes;
  }

  /** Takes the batch at `at`'s `count` records; past the limit is MESSAGE_TOO_LARGE. */
  takeRecords(count: number, at: number): void {
    if (count > this.recordsLeft) {
      throw new YakError(
        "MESSAGE_TOO_LARGE",
        `record batch at byte ${at}: ${count} records pass the limit of ${this.limits.maxRecords} per request; ` +
          `send smaller batches`,
      );
    }
    this.recordsLeft -= count;
  }
}

/**
 * Checks the framing of the batch at `at` before anything in it is trusted:
 * room for a header, the magic, the batch length against the buffer, and the
 * CRC-32C. Returns where the batch ends.
 */
function checkBatchFrame(bytes: Uint8Array, view: DataView, at: number): number {
  const left = bytes.length - at;
  if (left < LOG_OVERHEAD_BYTES + 5) throw corrupt(at, `${left} bytes are too few for a batch header`);
  const batchLength = view.getInt32(at + 8);
  // Magics 0 and 1 keep theirs at the same place, so this check is safe before trusting the rest.
  const magic = view.getInt8(at + MAGIC_AT);
  if (magic !== MAGIC) {
    throw new YakError(
      "CORRUPT_MESSAGE",
      `record batch at byte ${at}: magic ${magic} is not supported, only 2 (Kafka 0.11 and later); upgrade the client`,
      { magic },
    );
  }
  if (batchLength < RECORD_BATCH_OVERHEAD_BYTES - LOG_OVERHEAD_BYTES) {
    throw corrupt(at, `batch length ${batchLength} is shorter than a batch header`);
  }
  if (batchLength > left - LOG_OVERHEAD_BYTES) {
    throw corrupt(at, `batch length ${batchLength} passes the ${left - LOG_OVERHEAD_BYTES} bytes that follow it`);
  }
  const end = at + LOG_OVERHEAD_BYTES + batchLength;
  const storedCrc = view.getUint32(at + CRC_AT);
  const crc = crc32c(bytes, at + ATTRIBUTES_AT, end);
  if (crc !== storedCrc) {
    throw corrupt(at, `CRC-32C is 0x${crc.toString(16)}, the batch says 0x${storedCrc.toString(16)}`);
  }
  return end;
}

/** The header fields of the batch at `at` (its framing checked), with no records yet. */
function readBatchHeader(view: DataView, at: number): RecordBatch {
  const attributes = view.getInt16(at + ATTRIBUTES_AT);
  const codec = attributes & ATTR_CODEC_MASK;
  if (!isCompressionCodec(codec)) throw corrupt(at, `compression codec ${codec} is unknown`);
  const baseTimestamp = readInt64(view, at + 27, at, "baseTimestamp", true);
  const maxTimestamp = readInt64(view, at + 35, at, "maxTimestamp", true);
  return {
    baseOffset: readInt64(view, at, at, "baseOffset"),
    partitionLeaderEpoch: view.getInt32(at + 12),
    attributes,
    compression: codec,
    isLogAppendTime: (attributes & ATTR_LOG_APPEND_TIME) !== 0,
    lastOffsetDelta: view.getInt32(at + 23),
    baseTimestamp,
    maxTimestamp,
    producerId: view.getBigInt64(at + 43),
    producerEpoch: view.getInt16(at + 51),
    baseSequence: view.getInt32(at + 53),
    isTransactional: (attributes & ATTR_TRANSACTIONAL) !== 0,
    isControl: (attributes & ATTR_CONTROL) !== 0,
    records: [],
  };
}

/**
 * The batch's record count, checked against the bytes that could hold it
 * (uncompressed batches; a compressed one is checked once inflated) and taken
 * from the call's budget.
 */
function readRecordCount(
  view: DataView,
  at: number,
  end: number,
  codec: CompressionCodec,
  budget: DecodeBudget,
): number {
  const count = view.getInt32(at + 57);
  if (count < 0) throw corrupt(at, `record count ${count} is negative`);
  const packedBytes = end - at - RECORD_BATCH_OVERHEAD_BYTES;
  if (codec === Compression.none && count > packedBytes / MIN_RECORD_BYTES) {
    throw corrupt(at, `${count} records cannot fit in ${packedBytes} bytes`);
  }
  budget.takeRecords(count, at);
  return count;
}

/**
 * A cursor over the batch's records: in place when uncompressed, else over
 * the records inflated within what is left of the call's budget.
 */
function recordsReader(
  bytes: Uint8Array,
  at: number,
  end: number,
  codec: CompressionCodec,
  count: number,
  budget: DecodeBudget,
): Reader {
  const start = at + RECORD_BATCH_OVERHEAD_BYTES;
  if (codec === Compression.none) return new Reader(bytes, start, end, at);
  const section = inflate(
    codec,
    bytes.subarray(start, end),
    budget.inflateLeft,
    budget.limits.maxUncompressedBytes,
    at,
  );
  budget.inflateLeft -= section.length;
  if (count > section.length / MIN_RECORD_BYTES) {
    throw corrupt(at, `${count} records cannot fit in the ${section.length} bytes they decompress to`);
  }
  return new Reader(section, 0, section.length, at);
}

function inflate(codec: CompressionCodec, packed: Uint8Array, budget: number, limit: number, at: number): Uint8Array {
  try {
    return decompress(codec, packed, budget);
  } catch (err) {
    if (err instanceof YakError && err.data?.maxBytes !== undefined) {
      throw new YakError(
        "MESSAGE_TOO_LARGE",
        `record batch at byte ${at}: the records decompress past the limit of ${limit} bytes per request; ` +
          `send smaller batches`,
      );
    }
    if (err instanceof YakError) {
      throw new YakError("CORRUPT_MESSAGE", `record batch at byte ${at}: ${err.message}`, err.data);
    }
    throw err;
  }
}

function readRecords(r: Reader, count: number, batch: RecordBatch, checks?: RecordChecks): KafkaRecord[] {
  const records: KafkaRecord[] = new Array(count);
  const logAppendTime = batch.isLogAppendTime;
  let prevDelta = -1;
  for (let i = 0; i < count; i++) {
    const length = r.varint("record length");
    if (length < 0) throw corrupt(r.batchAt, `record ${i} has length ${length}`);
    if (length > r.end - r.pos) throw corrupt(r.batchAt, `record ${i} of ${length} bytes passes the end of the batch`);
    const sectionEnd = r.end;
    const recordEnd = r.pos + length;
    r.end = recordEnd;
    if (r.pos >= recordEnd) throw corrupt(r.batchAt, `record ${i} is empty`);
    r.pos++; // attributes: unused in magic 2
    const timestampDelta = r.varlong("timestamp delta");
    const offsetDelta = r.varint("offset delta");
    if (offsetDelta <= prevDelta || offsetDelta > batch.lastOffsetDelta) {
      throw corrupt(
        r.batchAt,
        `record ${i} has offset delta ${offsetDelta}, after ${prevDelta} and with the batch's last at ${batch.lastOffsetDelta}`,
      );
    }
    prevDelta = offsetDelta;
    const timestamp = logAppendTime ? batch.maxTimestamp : batch.baseTimestamp + timestampDelta;
    if (!Number.isSafeInteger(timestamp)) throw timestampOutOfRange(r.batchAt, `record ${i}'s timestamp`, timestamp);
    const key = r.bytes("key");
    const value = r.bytes("value");
    const headerCount = r.varint("header count");
    if (headerCount < 0) throw corrupt(r.batchAt, `record ${i} has header count ${headerCount}`);
    // Each header takes at least 2 bytes: a count past that is a lie, caught before the loop.
    if (headerCount > (r.end - r.pos) / 2) throw corrupt(r.batchAt, `record ${i} cannot hold ${headerCount} headers`);
    checks?.checkHeaders(i, headerCount);
    const headers: KafkaHeader[] = [];
    for (let h = 0; h < headerCount; h++) {
      const hk = r.string("header key");
      headers.push({ key: hk, value: r.bytes("header value") });
    }
    if (r.pos !== recordEnd) throw corrupt(r.batchAt, `record ${i} has ${recordEnd - r.pos} bytes left over`);
    r.end = sectionEnd;
    records[i] = { offsetDelta, timestamp, key, value, headers };
  }
  if (r.pos !== r.end) throw corrupt(r.batchAt, `${r.end - r.pos} bytes follow the last of ${count} records`);
  return records;
}

/** Bytes of a zigzag varint of an int32. */
function varintBytes(n: number): number {
  const u = ((n << 1) ^ (n >> 31)) >>> 0;
  return u < 0x80 ? 1 : u < 0x4000 ? 2 : u < 0x200000 ? 3 : u < 0x10000000 ? 4 : 5;
}

function zigzagLong(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

/** Bytes of an unsigned varint of a number below 2^53. */
function uvarlongBytes(u: number): number {
  let bytes = 1;
  while (u >= 0x80) {
    u = Math.floor(u / 128);
    bytes++;
  }
  return bytes;
}

function writeVarint(out: Uint8Array, pos: number, n: number): number {
  let u = ((n << 1) ^ (n >> 31)) >>> 0;
  while (u >= 0x80) {
    out[pos++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  out[pos++] = u;
  return pos;
}

function writeUvarlong(out: Uint8Array, pos: number, u: number): number {
  while (u >= 0x80) {
    out[pos++] = (u % 128) | 0x80;
    u = Math.floor(u / 128);
  }
  out[pos++] = u;
  return pos;
}

function writeInt64(view: DataView, pos: number, n: number): void {
  const hi = Math.floor(n / TWO_32);
  view.setInt32(pos, hi);
  view.setUint32(pos + 4, n - hi * TWO_32);
}

function isInt(n: number, bits: number): boolean {
  return Number.isInteger(n) && n >= -(2 ** (bits - 1)) && n < 2 ** (bits - 1);
}

/**
 * Encodes one batch (magic 2; create-time timestamps unless `logAppendTime`), by default
 * uncompressed as yak's Fetch replies send it. Sizes everything first and
 * writes into one buffer. `baseTimestamp` is the first record's timestamp and
 * `maxTimestamp` the largest, as Kafka's producer writes them. Records must be
 * given in increasing offsetDelta order, at least one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeRecordBatch, RECORD_BATCH_OVERHEAD_BYTES } from "./record_batch.ts";
 * const bytes = encodeRecordBatch({
 *   baseOffset: 42,
 *   partitionLeaderEpoch: 3,
 *   records: [{ offsetDelta: 0, timestamp: 1763764800123, key: null, value: new Uint8Array([1]), headers: [] }],
 * });
 * assert.equal(bytes.length, RECORD_BATCH_OVERHEAD_BYTES + 8); // 61 + the one record
 * ```
 */
export function encodeRecordBatch(b: RecordBatchInput): Uint8Array {
  const codec = b.compression ?? Compression.none;
  checkBatchInput(b, codec);
  const sizes = sizeRecords(b.records);
  // Records go straight into the batch when uncompressed.
  const plain = codec === Compression.none;
  const recordsAt = plain ? RECORD_BATCH_OVERHEAD_BYTES : 0;
  const recordsOut = new Uint8Array(recordsAt + sizes.recordsBytes);
  const pos = writeRecords(recordsOut, recordsAt, b.records, sizes);
  assert(pos === recordsOut.length, `record batch sized ${recordsOut.length} bytes, wrote ${pos}`);
  const out = plain ? recordsOut : packRecords(codec, recordsOut);
  writeBatchHeader(out, b, codec, sizes);
  return out;
}

/** The header fields of a batch that {@link BatchWriter} opens. */
export interface BatchHead {
  baseOffset: number;
  partitionLeaderEpoch: number;
  /** The first record's timestamp. */
  baseTimestamp: number;
  /** -1 (and epoch and sequence -1) without an idempotent producer. */
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  logAppendTime: boolean;
  isTransactional: boolean;
  isControl: boolean;
}

/**
 * Uncompressed record batches written a record at a time into one growing
 * buffer: the Kafka fetch path's encoder, which makes no object per record
 * and no batch of its own to copy into the reply. Each record comes as
 * scalars and spans of byte arrays (a stored line's own bytes), and costs
 * exactly {@link recordSize} bytes; a batch's header and CRC-32C are written
 * when it closes. {@link encodeRecordBatch} encodes the same format from
 * record objects.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BatchWriter, decodeRecordBatches, RECORD_BATCH_OVERHEAD_BYTES } from "./record_batch.ts";
 * const value = new TextEncoder().encode("xhix");
 * const w = new BatchWriter(256);
 * w.open({ baseOffset: 9, partitionLeaderEpoch: 1, baseTimestamp: 5, producerId: -1, producerEpoch: -1,
 *   baseSequence: -1, logAppendTime: false, isTransactional: false, isControl: false });
 * w.add(9, 5, null, 0, 0, value, 1, 3, [], w.recordSize(0, 0, -1, 2, []));
 * w.close();
 * const [batch] = decodeRecordBatches(w.bytes(), { maxRecords: 10, maxUncompressedBytes: 1000 });
 * assert.deepEqual([batch.baseOffset, new TextDecoder().decode(batch.records[0].value!)], [9, "hi"]);
 * assert.equal(w.size, RECORD_BATCH_OVERHEAD_BYTES + w.recordSize(0, 0, -1, 2, []));
 * ```
 */
export class BatchWriter {
  #out: Uint8Array;
  #pos = 0;
  /** The open batch: where it starts (-1: none), its head, and what its header will say. */
  #start = -1;
  #head: BatchHead | null = null;
  #maxTimestamp = 0;
  #count = 0;
  #lastOffsetDelta = 0;

  constructor(capacity: number) {
    this.#out = new Uint8Array(Math.max(capacity, RECORD_BATCH_OVERHEAD_BYTES + 64));
  }

  /** Bytes written so far, the open batch's header included. */
  get size(): number {
    return this.#pos;
  }

  /**
   * The bytes a record takes in a batch (its length varint included), with
   * these deltas from the batch's base, key and value lengths (-1: null) and
   * headers (keys as UTF-8).
   */
  recordSize(tsDelta: number, offsetDelta: number, keyLen: number, valueLen: number, headers: HeaderBytes[]): number {
    const n = bodySize(tsDelta, offsetDelta, keyLen, valueLen, headers);
    return varintBytes(n) + n;
  }

  /** Opens a batch (closing the open one). */
  open(head: BatchHead): void {
    if (this.#head) this.close();
    this.#room(RECORD_BATCH_OVERHEAD_BYTES);
    this.#start = this.#pos;
    this.#pos += RECORD_BATCH_OVERHEAD_BYTES;
    this.#head = head;
    this.#maxTimestamp = head.baseTimestamp;
    this.#count = 0;
    this.#lastOffsetDelta = -1;
  }

  /**
   * Adds a record to the open batch: `key` and `value` are `src[start, end)`
   * (null src: a null key or value); header keys as UTF-8; `size` is what
   * {@link recordSize} said of it (checked as it is written).
   */
  add(
    offset: number,
    timestamp: number,
    keySrc: Uint8Array | null,
    keyStart: number,
    keyEnd: number,
    valueSrc: Uint8Array | null,
    valueStart: number,
    valueEnd: number,
    headers: HeaderBytes[],
    size: number,
  ): void {
    const head = this.#head;
    assert(head !== null, "a record added with no batch open");
    const offsetDelta = offset - head.baseOffset;
    assert(offsetDelta > this.#lastOffsetDelta && offsetDelta <= INT32_MAX, "records in offset order within a batch");
    const tsDelta = timestamp - head.baseTimestamp;
    assert(Math.abs(tsDelta) < VARLONG_SAFE, "a timestamp near the batch's first");
    // The caller measured the record (recordSize) to check its limits: its length varint and body follow from that.
    let body = size - 1;
    while (body >= size - 5 && varintBytes(body) !== size - body) body--;
    assert(body >= size - 5, `no record of ${size} bytes`);
    this.#room(size);
    const out = this.#out;
    let pos = this.#pos;
    pos = writeVarint(out, pos, body);
    out[pos++] = 0; // attributes: unused in magic 2
    pos = writeUvarlong(out, pos, zigzagLong(tsDelta));
    pos = writeVarint(out, pos, offsetDelta);
    pos = writeSpan(out, pos, keySrc, keyStart, keyEnd);
    pos = writeSpan(out, pos, valueSrc, valueStart, valueEnd);
    pos = writeVarint(out, pos, headers.length);
    for (const h of headers) {
      pos = writeBytes(out, pos, h.key);
      pos = writeBytes(out, pos, h.value);
    }
    assert(pos === this.#pos + size, `a record sized ${size} bytes took ${pos - this.#pos}`);
    this.#pos = pos;
    if (timestamp > this.#maxTimestamp) this.#maxTimestamp = timestamp;
    this.#lastOffsetDelta = offsetDelta;
    this.#count++;
  }

  /** Closes the open batch: its header and CRC-32C. `lastOffset` (default: its last record's) may reach past it. */
  close(lastOffset?: number): void {
    const head = this.#head;
    if (head === null) return;
    const start = this.#start;
    const out = this.#out;
    const view = new DataView(out.buffer, out.byteOffset + start, RECORD_BATCH_OVERHEAD_BYTES);
    const lastOffsetDelta = Math.max(this.#lastOffsetDelta, (lastOffset ?? -Infinity) - head.baseOffset);
    writeInt64(view, 0, head.baseOffset);
    view.setInt32(8, this.#pos - start - LOG_OVERHEAD_BYTES);
    view.setInt32(12, head.partitionLeaderEpoch);
    view.setInt8(MAGIC_AT, MAGIC);
    view.setInt16(
      ATTRIBUTES_AT,
      (head.logAppendTime ? ATTR_LOG_APPEND_TIME : 0) | (head.isTransactional ? ATTR_TRANSACTIONAL : 0) |
        (head.isControl ? ATTR_CONTROL : 0),
    );
    view.setInt32(23, lastOffsetDelta);
    // A batch with no record (offsets a compaction removed) has no timestamp: -1, as Kafka writes none.
    writeInt64(view, 27, this.#count > 0 ? head.baseTimestamp : -1);
    writeInt64(view, 35, this.#count > 0 ? this.#maxTimestamp : -1);
    writeInt64(view, 43, head.producerId);
    view.setInt16(51, head.producerEpoch);
    view.setInt32(53, head.baseSequence);
    view.setInt32(57, this.#count);
    view.setUint32(CRC_AT, crc32cRange(out, start + ATTRIBUTES_AT, this.#pos));
    this.#head = null;
    this.#start = -1;
  }

  /** The batches written (the open one closed first). */
  bytes(): Uint8Array {
    this.close();
    return this.#out.subarray(0, this.#pos);
  }

  #room(n: number): void {
    if (this.#pos + n <= this.#out.length) return;
    const grown = new Uint8Array(Math.max(this.#out.length * 2, this.#pos + n));
    grown.set(this.#out.subarray(0, this.#pos));
    this.#out = grown;
  }
}

/** A header for {@link BatchWriter}: its key as UTF-8. */
export interface HeaderBytes {
  key: Uint8Array;
  value: Uint8Array | null;
}

/** A record's bytes after its length varint (see {@link BatchWriter.recordSize}). */
function bodySize(
  tsDelta: number,
  offsetDelta: number,
  keyLen: number,
  valueLen: number,
  headers: HeaderBytes[],
): number {
  let n = 1 + uvarlongBytes(zigzagLong(tsDelta)) + varintBytes(offsetDelta);
  n += keyLen < 0 ? 1 : varintBytes(keyLen) + keyLen;
  n += valueLen < 0 ? 1 : varintBytes(valueLen) + valueLen;
  n += varintBytes(headers.length);
  for (const h of headers) {
    n += varintBytes(h.key.length) + h.key.length +
      (h.value === null ? 1 : varintBytes(h.value.length) + h.value.length);
  }
  return n;
}

/** Below this many bytes a span is copied by a loop; from it, by one set of a view (the view costs about as much). */
const SPAN_LOOP_BYTES = 64;

function writeSpan(out: Uint8Array, pos: number, src: Uint8Array | null, start: number, end: number): number {
  if (src === null) {
    out[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  pos = writeVarint(out, pos, end - start);
  if (end - start < SPAN_LOOP_BYTES) {
    for (let i = start; i < end; i++) out[pos++] = src[i];
    return pos;
  }
  out.set(src.subarray(start, end), pos);
  return pos + end - start;
}

/** Without an idempotent producer, a batch carries -1 as its producer id, epoch and base sequence. */
const NO_PRODUCER_ID = -1n;
const NO_PRODUCER_EPOCH = -1;
const NO_SEQUENCE = -1;

function checkBatchInput(b: RecordBatchInput, codec: CompressionCodec): void {
  const producerId = b.producerId ?? NO_PRODUCER_ID;
  const producerEpoch = b.producerEpoch ?? NO_PRODUCER_EPOCH;
  const baseSequence = b.baseSequence ?? NO_SEQUENCE;
  assert(b.records.length > 0 || b.lastOffsetDelta !== undefined, "a record batch holds at least one record");
  assert(Number.isSafeInteger(b.baseOffset) && b.baseOffset >= 0, `baseOffset ${b.baseOffset} is not an offset`);
  assert(isInt(b.partitionLeaderEpoch, 32), `partitionLeaderEpoch ${b.partitionLeaderEpoch} is not an int32`);
  assert(isInt(producerEpoch, 16), `producerEpoch ${producerEpoch} is not an int16`);
  assert(isInt(baseSequence, 32), `baseSequence ${baseSequence} is not an int32`);
  assert(
    producerId >= -(2n ** 63n) && producerId < 2n ** 63n,
    `producerId ${producerId} is not an int64`,
  );
  assert(isCompressionCodec(codec), `compression codec ${codec} is unknown`);
}

/** Pass 1 of encoding: what the records take, and the figures the batch header carries. */
class RecordSizes {
  /** Each record's bytes after its length varint. */
  readonly bodyBytes: number[];
  /** Every header key as UTF-8, in order (encoded once here, written in pass 2). */
  readonly headerKeys: Uint8Array[] = [];
  /** The records section, uncompressed. */
  recordsBytes = 0;
  readonly baseTimestamp: number;
  maxTimestamp: number;
  lastOffsetDelta = -1;

  constructor(count: number, baseTimestamp: number) {
    this.bodyBytes = new Array<number>(count);
    this.baseTimestamp = baseTimestamp;
    this.maxTimestamp = baseTimestamp;
  }
}

/** Sizes every record, checking offset deltas and timestamps (`baseTimestamp` is the first record's). */
function sizeRecords(records: KafkaRecord[]): RecordSizes {
  const count = records.length;
  // A batch with no record (offsets a compaction removed) has no timestamp: -1, as Kafka writes none.
  const baseTimestamp = count > 0 ? records[0].timestamp : -1;
  const sizes = new RecordSizes(count, baseTimestamp);
  const { bodyBytes, headerKeys } = sizes;
  let maxTimestamp = baseTimestamp;
  let recordsBytes = 0;
  let prevDelta = -1;
  for (let i = 0; i < count; i++) {
    const r = records[i];
    assert(
      Number.isInteger(r.offsetDelta) && r.offsetDelta > prevDelta && r.offsetDelta <= INT32_MAX,
      `record ${i}: offsetDelta ${r.offsetDelta} does not follow ${prevDelta}`,
    );
    prevDelta = r.offsetDelta;
    assert(Number.isSafeInteger(r.timestamp), `record ${i}: timestamp ${r.timestamp} is not an integer`);
    if (r.timestamp > maxTimestamp) maxTimestamp = r.timestamp;
    const tsDelta = r.timestamp - baseTimestamp;
    assert(Math.abs(tsDelta) < VARLONG_SAFE, `record ${i}: timestamp ${r.timestamp} is too far from the first`);
    let n = 1 + uvarlongBytes(zigzagLong(tsDelta)) + varintBytes(r.offsetDelta);
    n += r.key === null ? 1 : varintBytes(r.key.length) + r.key.length;
    n += r.value === null ? 1 : varintBytes(r.value.length) + r.value.length;
    n += varintBytes(r.headers.length);
    for (const h of r.headers) {
      const k = ENCODER.encode(h.key);
      headerKeys.push(k);
      n += varintBytes(k.length) + k.length;
      n += h.value === null ? 1 : varintBytes(h.value.length) + h.value.length;
    }
    assert(n <= INT32_MAX, `record ${i} is larger than 2 GiB`);
    bodyBytes[i] = n;
    recordsBytes += varintBytes(n) + n;
  }
  assert(recordsBytes + RECORD_BATCH_OVERHEAD_BYTES <= INT32_MAX, "a record batch is smaller than 2 GiB");
  sizes.recordsBytes = recordsBytes;
  sizes.maxTimestamp = maxTimestamp;
  sizes.lastOffsetDelta = prevDelta;
  return sizes;
}

/** Pass 2 of encoding: the records into `out` from `pos`, as sized; returns where they end. */
function writeRecords(out: Uint8Array, pos: number, records: KafkaRecord[], sizes: RecordSizes): number {
  const { bodyBytes, headerKeys, baseTimestamp } = sizes;
  let hk = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    pos = writeVarint(out, pos, bodyBytes[i]);
    out[pos++] = 0;
    pos = writeUvarlong(out, pos, zigzagLong(r.timestamp - baseTimestamp));
    pos = writeVarint(out, pos, r.offsetDelta);
    pos = writeBytes(out, pos, r.key);
    pos = writeBytes(out, pos, r.value);
    pos = writeVarint(out, pos, r.headers.length);
    for (const h of r.headers) {
      pos = writeBytes(out, pos, headerKeys[hk++]);
      pos = writeBytes(out, pos, h.value);
    }
  }
  return pos;
}

/** The records section compressed as one block, behind room for the batch header. */
function packRecords(codec: CompressionCodec, records: Uint8Array): Uint8Array {
  const packed = compress(codec, records);
  const out = new Uint8Array(RECORD_BATCH_OVERHEAD_BYTES + packed.length);
  out.set(packed, RECORD_BATCH_OVERHEAD_BYTES);
  return out;
}

/** The batch header into the first 61 bytes of `out`, the CRC-32C last (it covers the header's tail and the records). */
function writeBatchHeader(out: Uint8Array, b: RecordBatchInput, codec: CompressionCodec, sizes: RecordSizes): void {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  writeInt64(view, 0, b.baseOffset);
  view.setInt32(8, out.length - LOG_OVERHEAD_BYTES);
  view.setInt32(12, b.partitionLeaderEpoch);
  view.setInt8(MAGIC_AT, MAGIC);
  view.setInt16(
    ATTRIBUTES_AT,
    codec | (b.logAppendTime ? ATTR_LOG_APPEND_TIME : 0) | (b.isTransactional ? ATTR_TRANSACTIONAL : 0) |
      (b.isControl ? ATTR_CONTROL : 0),
  );
  view.setInt32(23, Math.max(sizes.lastOffsetDelta, b.lastOffsetDelta ?? -1));
  writeInt64(view, 27, sizes.baseTimestamp);
  writeInt64(view, 35, sizes.maxTimestamp);
  view.setBigInt64(43, b.producerId ?? NO_PRODUCER_ID);
  view.setInt16(51, b.producerEpoch ?? NO_PRODUCER_EPOCH);
  view.setInt32(53, b.baseSequence ?? NO_SEQUENCE);
  view.setInt32(57, b.records.length);
  view.setUint32(CRC_AT, crc32c(out, ATTRIBUTES_AT, out.length));
}

function writeBytes(out: Uint8Array, pos: number, b: Uint8Array | null): number {
  if (b === null) {
    out[pos] = 1; // zigzag(-1)
    return pos + 1;
  }
  const len = b.length;
  pos = writeVarint(out, pos, len);
  // set() costs more than a loop for the short keys most records carry.
  if (len <= 16) {
    for (let k = 0; k < len; k++) out[pos + k] = b[k];
  } else {
    out.set(b, pos);
  }
  return pos + len;
}
