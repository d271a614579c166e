/**
 * LZ4, Kafka's compression codec 3: yak's own decoder and encoder for the LZ4
 * frame format (what Kafka's clients write for RecordBatch v2) and the LZ4
 * block format inside it.
 *
 * A frame: magic 0x184D2204 (little-endian), a descriptor (FLG, BD, optional
 * 8-byte content size, optional 4-byte dictionary id), a header-checksum byte,
 * then blocks, each a little-endian uint32 size (high bit: stored
 * uncompressed) and its data, ended by a zero size. Blocks and the whole
 * content may carry xxHash32 checksums; yak skips them without verifying: the
 * batch's CRC-32C already covers these bytes end to end, and hashing every
 * produced byte twice would cost the produce path for no new protection. The
 * header checksum is verified (it is one hash of at most 14 bytes).
 *
 * @module
 */

import { assert, YakError } from "../errors.ts";
import { corruptCompressed, decompressedTooLarge } from "./codec_errors.ts";
import { copyMatch } from "./lz_match.ts";

const FRAME_MAGIC = 0x184d2204;
/** Skippable frames use magics 0x184D2A50..0x184D2A5F; a decoder steps over them. */
const SKIPPABLE_MAGIC = 0x184d2a50;
/** FLG bits. */
const FLG_VERSION_MASK = 0xc0;
const FLG_VERSION_01 = 0x40;
const FLG_BLOCK_INDEPENDENCE = 0x20;
const FLG_BLOCK_CHECKSUM = 0x10;
const FLG_CONTENT_SIZE = 0x08;
const FLG_CONTENT_CHECKSUM = 0x04;
const FLG_RESERVED = 0x02;
const FLG_DICT_ID = 0x01;
/** BD bits 4-6 name the block maximum size; the rest are reserved. */
const BD_RESERVED = 0x8f;
const BLOCK_MAX_BYTES: Record<number, number> = { 4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22 };
const BLOCK_UNCOMPRESSED = 0x80000000;
/** What the encoder writes: 64 KiB independent blocks, Kafka's own default. */
const ENCODER_BLOCK_BYTES = 1 << 16;
const ENCODER_FLG = FLG_VERSION_01 | FLG_BLOCK_INDEPENDENCE;
const ENCODER_BD = 4 << 4;
/** The block format: the last 5 bytes are literals, and the last match starts 12 or more bytes before the end. */
const LAST_LITERALS = 5;
const MATCH_FIND_LIMIT = 12;
const MIN_MATCH = 4;
const MAX_OFFSET = 65535;
const HASH_BITS = 14;

const corrupt = (what: string) => corruptCompressed("lz4", what);
const tooLarge = (maxBytes: number) => decompressedTooLarge("lz4", maxBytes);

function readU32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

const PRIME1 = 2654435761;
const PRIME2 = 2246822519;
const PRIME3 = 3266489917;
const PRIME4 = 668265263;
const PRIME5 = 374761393;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** xxHash32 with seed 0 of fewer than 16 bytes: all a frame descriptor needs (no 16-byte stripes). */
function xxh32Short(b: Uint8Array, start: number, end: number): number {
  assert(end - start < 16, "xxh32Short hashes fewer than 16 bytes");
  let h = (PRIME5 + (end - start)) >>> 0;
  let p = start;
  for (; p + 4 <= end; p += 4) h = Math.imul(rotl((h + Math.imul(readU32(b, p), PRIME3)) >>> 0, 17), PRIME4);
  for (; p < end; p++) h = Math.imul(rotl((h + Math.imul(b[p], PRIME5)) >>> 0, 11), PRIME1);
  h ^= h >>> 15;
  h = Math.imul(h, PRIME2);
  h ^= h >>> 13;
  h = Math.imul(h, PRIME3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The header-checksum byte of a descriptor `b[start, end)`. */
function headerChecksum(b: Uint8Array, start: number, end: number): number {
  return (xxh32Short(b, start, end) >>> 8) & 0xff;
}

/**
 * Decodes one LZ4 block `src[sp, sEnd)` to `dst` from `dp`, writing no further
 * than `dEnd`; matches may reach back to `windowStart`. Returns the new write
 * position, or -1 if the block would pass `dEnd`.
 */
function decodeBlock(
  src: Uint8Array,
  sp: number,
  sEnd: number,
  dst: Uint8Array,
  dp: number,
  dEnd: number,
  windowStart: number,
): number {
  for (;;) {
    if (sp >= sEnd) throw corrupt("a block ends inside a sequence");
    const token = src[sp++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b: number;
      do {
        if (sp >= sEnd) throw corrupt("a literal length is truncated");
        b = src[sp++];
        lit += b;
      } while (b === 255);
    }
    if (lit > sEnd - sp) throw corrupt("a literal run passes the end of its block");
    if (lit > dEnd - dp) return -1;
    if (lit <= 16) {
      for (let k = 0; k < lit; k++) dst[dp + k] = src[sp + k];
    } else {
      dst.set(src.subarray(sp, sp + lit), dp);
    }
    sp += lit;
    dp += lit;
    // The last sequence of a block is literals only.
    if (sp === sEnd) return dp;
    if (sp + 2 > sEnd) throw corrupt("a match offset is truncated");
    const offset = src[sp] | (src[sp + 1] << 8);
    sp += 2;
    if (offset === 0 || offset > dp - windowStart) {
      throw corrupt(`a match reaches ${offset} bytes back, outside its window`);
    }
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (sp >= sEnd) throw corrupt("a match length is truncated");
        b = src[sp++];
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (len > dEnd - dp) return -1;
    copyMatch(dst, dp, offset, len);
    dp += len;
  }
}

function checkMaxBytes(maxBytes: number): void {
  assert(Number.isSafeInteger(maxBytes) && maxBytes >= 0, `maxBytes must be a non-negative integer, not ${maxBytes}`);
}

/**
 * Decompresses LZ4 frames (one or more, skippable frames stepped over).
 * Throws CORRUPT_MESSAGE on a malformed or truncated frame, an unsupported
 * feature (a dictionary), or output past `maxBytes`; memory grows with the
 * output and never past `maxBytes` (plus the copy made while growing).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lz4FrameCompress, lz4FrameDecompress } from "./lz4.ts";
 * const frame = lz4FrameCompress(new TextEncoder().encode("yak yak yak yak"));
 * assert.equal(new TextDecoder().decode(lz4FrameDecompress(frame, 1024)), "yak yak yak yak");
 * ```
 */
export function lz4FrameDecompress(input: Uint8Array, maxBytes: number): Uint8Array {
  checkMaxBytes(maxBytes);
  if (input.length === 0) throw corrupt("the input is empty");
  const out = new Output(maxBytes, Math.min(maxBytes, Math.max(1024, input.length * 4)));
  let pos = 0;
  while (pos < input.length) {
    if (input.length - pos < 4) throw corrupt("a frame's magic is truncated");
    const magic = readU32(input, pos);
    if ((magic & 0xfffffff0) >>> 0 === SKIPPABLE_MAGIC) {
      pos = skipFrame(input, pos);
      continue;
    }
    if (magic !== FRAME_MAGIC) throw corrupt(`0x${magic.toString(16)} is not the LZ4 frame magic`);
    const frame = readDescriptor(input, pos + 4, out);
    pos = decodeFrameBlocks(input, frame, out);
    if ((frame.flg & FLG_CONTENT_CHECKSUM) !== 0) {
      if (input.length - pos < 4) throw corrupt("the content checksum is truncated");
      pos += 4;
    }
    if (frame.contentBytes >= 0 && out.op - frame.outStart !== frame.contentBytes) {
      throw corrupt(`the frame holds ${out.op - frame.outStart} bytes, not the ${frame.contentBytes} it declares`);
    }
  }
  return out.bytes();
}

/** The decompressed bytes so far (`buf[0, op)`), grown as frames need, never past `maxBytes`. */
class Output {
  buf: Uint8Array;
  op = 0;
  constructor(readonly maxBytes: number, initialBytes: number) {
    this.buf = new Uint8Array(initialBytes);
  }

  /** Room for `need` bytes in all: at least doubled, at most `maxBytes`. */
  grow(need: number): void {
    if (need <= this.buf.length) return;
    const bigger = new Uint8Array(Math.min(this.maxBytes, Math.max(need, this.buf.length * 2)));
    bigger.set(this.buf.subarray(0, this.op));
    this.buf = bigger;
  }

  bytes(): Uint8Array {
    return this.buf.length === this.op ? this.buf : this.buf.slice(0, this.op);
  }
}

/** Steps over the skippable frame at `pos`; returns where the next frame starts. */
function skipFrame(input: Uint8Array, pos: number): number {
  if (input.length - pos < 8) throw corrupt("a skippable frame's size is truncated");
  const size = readU32(input, pos + 4);
  if (size > input.length - pos - 8) throw corrupt("a skippable frame passes the end of the input");
  return pos + 8 + size;
}

/** A frame's descriptor as read, and where its output starts. */
interface FrameDescriptor {
  flg: number;
  blockMaxBytes: number;
  /** The declared content size, or -1 without one. */
  contentBytes: number;
  /** Where the first block's size word is. */
  blocksAt: number;
  /** `out.op` at the frame's start: its output is `out.buf[outStart, out.op)`. */
  outStart: number;
  /** How far the frame may write: past it the frame is {@link frameOverrun}. */
  outLimit: number;
}

/**
 * Reads and checks the descriptor from `descStart` (after the magic) up to
 * its header checksum; a declared content size past `maxBytes` is too large,
 * and room for it is made at once.
 */
function readDescriptor(input: Uint8Array, descStart: number, out: Output): FrameDescriptor {
  if (input.length - descStart < 3) throw corrupt("the frame descriptor is truncated");
  const flg = input[descStart];
  const bd = input[descStart + 1];
  if ((flg & FLG_VERSION_MASK) !== FLG_VERSION_01) throw corrupt(`frame version bits ${flg >>> 6} are not 01`);
  if ((flg & FLG_RESERVED) !== 0 || (bd & BD_RESERVED) !== 0) throw corrupt("reserved descriptor bits are set");
  const blockMaxBytes = BLOCK_MAX_BYTES[(bd >>> 4) & 7];
  if (blockMaxBytes === undefined) throw corrupt(`block maximum size code ${(bd >>> 4) & 7} is not 4 to 7`);
  if ((flg & FLG_DICT_ID) !== 0) throw corrupt("the frame needs a dictionary, which Kafka never uses");
  let descEnd = descStart + 2;
  let contentBytes = -1;
  if ((flg & FLG_CONTENT_SIZE) !== 0) {
    if (input.length - descEnd < 8) throw corrupt("the content size is truncated");
    const lo = readU32(input, descEnd);
    const hi = readU32(input, descEnd + 4);
    if (hi >= 1 << 21 || lo + hi * 2 ** 32 > out.maxBytes - out.op) throw tooLarge(out.maxBytes);
    contentBytes = lo + hi * 2 ** 32;
    descEnd += 8;
  }
  if (input.length - descEnd < 1) throw corrupt("the header checksum is truncated");
  if (input[descEnd] !== headerChecksum(input, descStart, descEnd)) {
    throw corrupt("the header checksum does not match");
  }
  // Past the declared content size the frame is corrupt; without one, past maxBytes it is too large.
  const outLimit = contentBytes >= 0 ? out.op + contentBytes : out.maxBytes;
  if (contentBytes >= 0) out.grow(outLimit);
  return { flg, blockMaxBytes, contentBytes, blocksAt: descEnd + 1, outStart: out.op, outLimit };
}

/** A frame that writes past its limit: corrupt if it declared a content size, else too large. */
function frameOverrun(frame: FrameDescriptor, maxBytes: number): YakError {
  return frame.contentBytes >= 0
    ? corrupt(`the frame holds more than the ${frame.contentBytes} bytes it declares`)
    : tooLarge(maxBytes);
}

/** Decodes a frame's blocks up to its end mark into `out`; returns the position after the end mark. */
function decodeFrameBlocks(input: Uint8Array, frame: FrameDescriptor, out: Output): number {
  const { blockMaxBytes, outLimit } = frame;
  const blockChecksumBytes = (frame.flg & FLG_BLOCK_CHECKSUM) !== 0 ? 4 : 0;
  let pos = frame.blocksAt;
  for (;;) {
    if (input.length - pos < 4) throw corrupt("a block size is truncated (no end mark)");
    const word = readU32(input, pos);
    pos += 4;
    if (word === 0) return pos;
    const size = (word & ~BLOCK_UNCOMPRESSED) >>> 0;
    if (size > blockMaxBytes) {
      throw corrupt(`a block of ${size} bytes passes the frame's maximum of ${blockMaxBytes}`);
    }
    if (size + blockChecksumBytes > input.length - pos) throw corrupt("a block passes the end of the input");
    if ((word & BLOCK_UNCOMPRESSED) !== 0) {
      if (size > outLimit - out.op) throw frameOverrun(frame, out.maxBytes);
      out.grow(out.op + size);
      out.buf.set(input.subarray(pos, pos + size), out.op);
      out.op += size;
    } else {
      out.op = decodeBlockGrowing(input, pos, pos + size, frame, out);
    }
    pos += size + blockChecksumBytes;
  }
}

/**
 * Decodes a compressed block into `out`, returning its new end. The block's
 * output size is unknown until decoded: try in the room there is, grow and
 * retry on overflow, so a small frame with 4 MiB blocks costs a small buffer.
 */
function decodeBlockGrowing(input: Uint8Array, sp: number, sEnd: number, frame: FrameDescriptor, out: Output): number {
  const op = out.op;
  const limit = Math.min(op + frame.blockMaxBytes, frame.outLimit);
  const window = (frame.flg & FLG_BLOCK_INDEPENDENCE) !== 0 ? op : frame.outStart;
  let end = decodeBlock(input, sp, sEnd, out.buf, op, Math.min(out.buf.length, limit), window);
  while (end < 0 && out.buf.length < limit) {
    out.grow(Math.min(limit, out.buf.length * 2));
    end = decodeBlock(input, sp, sEnd, out.buf, op, Math.min(out.buf.length, limit), window);
  }
  if (end < 0) {
    throw op + frame.blockMaxBytes <= frame.outLimit
      ? corrupt("a block decodes past its maximum size")
      : frameOverrun(frame, out.maxBytes);
  }
  return end;
}

/**
 * Compresses into one LZ4 frame of 64 KiB independent blocks without
 * checksums, as Kafka's Java client frames them (a block that does not shrink
 * is stored as is).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lz4FrameCompress } from "./lz4.ts";
 * assert.ok(lz4FrameCompress(new Uint8Array(10_000)).length < 200);
 * ```
 */
export function lz4FrameCompress(input: Uint8Array): Uint8Array {
  const blocks = Math.ceil(input.length / ENCODER_BLOCK_BYTES);
  // Worst case: each block stored as is, with its size word; then the end mark.
  const out = new Uint8Array(7 + blocks * (4 + ENCODER_BLOCK_BYTES) + 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, FRAME_MAGIC, true);
  out[4] = ENCODER_FLG;
  out[5] = ENCODER_BD;
  out[6] = headerChecksum(out, 4, 6);
  let op = 7;
  const table = new Uint16Array(1 << HASH_BITS);
  const scratch = new Uint8Array(ENCODER_BLOCK_BYTES + ENCODER_BLOCK_BYTES / 255 + 16);
  for (let start = 0; start < input.length; start += ENCODER_BLOCK_BYTES) {
    const end = Math.min(start + ENCODER_BLOCK_BYTES, input.length);
    const size = compressBlock(input, start, end, scratch, table);
    if (size < end - start) {
      view.setUint32(op, size, true);
      out.set(scratch.subarray(0, size), op + 4);
      op += 4 + size;
    } else {
      view.setUint32(op, (end - start + BLOCK_UNCOMPRESSED) >>> 0, true);
      out.set(input.subarray(start, end), op + 4);
      op += 4 + end - start;
    }
  }
  view.setUint32(op, 0, true);
  return out.slice(0, op + 4);
}

/** Greedy LZ4 block compression of `src[start, end)` into `out` from 0; returns the block's size. */
function compressBlock(src: Uint8Array, start: number, end: number, out: Uint8Array, table: Uint16Array): number {
  table.fill(0);
  let op = 0;
  let lit = start;
  const matchEnd = end - LAST_LITERALS;
  const searchEnd = end - MATCH_FIND_LIMIT;
  let i = start + 1;
  while (i < searchEnd) {
    const v = readU32(src, i);
    const h = Math.imul(v, 0x9e3779b1) >>> (32 - HASH_BITS);
    const cand = start + table[h];
    table[h] = i - start;
    if (cand < i && i - cand <= MAX_OFFSET && readU32(src, cand) === v) {
      let len = MIN_MATCH;
      while (i + len < matchEnd && src[cand + len] === src[i + len]) len++;
      op = emitSequence(src, lit, i, i - cand, len, out, op);
      i += len;
      lit = i;
    } else {
      i += 1 + ((i - lit) >>> 6);
    }
  }
  return emitSequence(src, lit, end, 0, 0, out, op);
}

/** Writes literals `src[from, to)` and, if `len > 0`, a match; returns the new write position. */
function emitSequence(
  src: Uint8Array,
  from: number,
  to: number,
  offset: number,
  len: number,
  out: Uint8Array,
  op: number,
): number {
  const lit = to - from;
  const matchCode = len > 0 ? len - MIN_MATCH : 0;
  out[op++] = (Math.min(lit, 15) << 4) | Math.min(matchCode, 15);
  op = writeLengthTail(lit, out, op);
  out.set(src.subarray(from, to), op);
  op += lit;
  if (len === 0) return op;
  out[op++] = offset & 0xff;
  out[op++] = offset >>> 8;
  return writeLengthTail(matchCode, out, op);
}

/** A length of 15 or more continues in bytes of 255 and a final byte below 255. */
function writeLengthTail(n: number, out: Uint8Array, op: number): number {
  if (n < 15) return op;
  n -= 15;
  while (n >= 255) {
    out[op++] = 255;
    n -= 255;
  }
  out[op++] = n;
  return op;
}
