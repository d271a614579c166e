/**
 * Snappy, Kafka's compression codec 2: yak's own decoder and encoder for the
 * raw block format, and for the xerial (snappy-java) framing that the Java
 * client writes: magic `82 'SNAPPY' 00`, int32 version, int32 compatible
 * version, then blocks of [int32 big-endian length][raw snappy block].
 * librdkafka reads both and may write raw blocks; the magic tells them apart
 * (no valid raw block starts with it: its first tag would be a copy with
 * nothing to copy from).
 *
 * A raw block is a varint of the uncompressed length, then tags: literals
 * (the bytes follow) and copies (length, offset back into the output).
 *
 * @module
 */

import { assert } from "../errors.ts";
import { corruptCompressed, decompressedTooLarge } from "./codec_errors.ts";
import { copyMatch } from "./lz_match.ts";

/** The first 8 bytes of a xerial-framed stream. */
const XERIAL_MAGIC = [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00];
/** Magic, then int32 version and int32 compatible version. */
const XERIAL_HEADER_BYTES = 16;
/** snappy-java's default block size; Kafka's Java client uses it. */
const XERIAL_BLOCK_BYTES = 32 * 1024;
/** The encoder matches within fragments this long, so every offset fits a 2-byte copy. */
const FRAGMENT_BYTES = 1 << 16;
const HASH_BITS = 14;

const corrupt = (what: string) => corruptCompressed("snappy", what);
const tooLarge = (maxBytes: number) => decompressedTooLarge("snappy", maxBytes);

/**
 * The most a byte of raw block can stand for: a 3-byte copy writes at most 64
 * bytes. A block declaring more than this times its size is a lie, refused
 * before its declared length is allocated.
 */
const MAX_EXPANSION = 22;

/** Reads the uncompressed length at the start of a raw block: [length, position after it]. */
function readBlockLength(src: Uint8Array, pos: number, end: number): [number, number] {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (pos >= end) throw corrupt("the block's length is truncated");
    const b = src[pos++];
    value += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) {
      if (value > 0xffffffff) throw corrupt("the block's length does not fit 32 bits");
      return [value, pos];
    }
  }
  throw corrupt("the block's length varint never ends");
}

/**
 * Decodes the tags in `src[sp, sEnd)` into exactly `dst[dStart, dEnd)`; copies
 * may not reach before `dStart` (each block stands alone).
 */
function decodeTags(src: Uint8Array, sp: number, sEnd: number, dst: Uint8Array, dStart: number, dEnd: number): void {
  let dp = dStart;
  while (sp < sEnd) {
    const tag = src[sp++];
    const kind = tag & 3;
    if (kind === 0) {
      let len = tag >>> 2;
      if (len >= 60) {
        const n = len - 59;
        if (sp + n > sEnd) throw corrupt("a literal's length is truncated");
        len = 0;
        for (let k = 0; k < n; k++) len += src[sp + k] * 2 ** (8 * k);
        sp += n;
      }
      len += 1;
      if (len > sEnd - sp) throw corrupt("a literal runs past the end of the input");
      if (len > dEnd - dp) throw corrupt("a literal runs past the block's declared length");
      dst.set(src.subarray(sp, sp + len), dp);
      sp += len;
      dp += len;
      continue;
    }
    let len: number;
    let offset: number;
    if (kind === 1) {
      if (sp + 1 > sEnd) throw corrupt("a copy is truncated");
      len = 4 + ((tag >>> 2) & 7);
      offset = ((tag >>> 5) << 8) | src[sp++];
    } else if (kind === 2) {
      if (sp + 2 > sEnd) throw corrupt("a copy is truncated");
      len = 1 + (tag >>> 2);
      offset = src[sp] | (src[sp + 1] << 8);
      sp += 2;
    } else {
      if (sp + 4 > sEnd) throw corrupt("a copy is truncated");
      len = 1 + (tag >>> 2);
      offset = (src[sp] | (src[sp + 1] << 8) | (src[sp + 2] << 16) | (src[sp + 3] << 24)) >>> 0;
      sp += 4;
    }
    if (offset === 0 || offset > dp - dStart) throw corrupt(`a copy reaches ${offset} bytes back, before the block`);
    if (len > dEnd - dp) throw corrupt("a copy runs past the block's declared length");
    copyMatch(dst, dp, offset, len);
    dp += len;
  }
  if (dp !== dEnd) throw corrupt(`the block holds ${dp - dStart} bytes, not the ${dEnd - dStart} it declares`);
}

function checkPlausible(length: number, tagBytes: number): void {
  if (length > tagBytes * MAX_EXPANSION) {
    throw corrupt(`a block declares ${length} bytes, more than its ${tagBytes} bytes of tags can hold`);
  }
}

function isXerial(input: Uint8Array): boolean {
  if (input.length < XERIAL_MAGIC.length) return false;
  for (let k = 0; k < XERIAL_MAGIC.length; k++) if (input[k] !== XERIAL_MAGIC[k]) return false;
  return true;
}

function checkMaxBytes(maxBytes: number): void {
  assert(Number.isSafeInteger(maxBytes) && maxBytes >= 0, `maxBytes must be a non-negative integer, not ${maxBytes}`);
}

/**
 * Decompresses Kafka snappy data: xerial-framed (detected by its magic) or one
 * raw block. Throws CORRUPT_MESSAGE if the input is malformed or truncated, or
 * if the output would pass `maxBytes` (checked before allocating: each block
 * declares its length up front).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { snappyCompressBlock, snappyDecompress } from "./snappy.ts";
 * const packed = snappyCompressBlock(new TextEncoder().encode("aaaaaaaaaaaaaaaa"));
 * assert.equal(new TextDecoder().decode(snappyDecompress(packed, 1024)), "aaaaaaaaaaaaaaaa");
 * ```
 */
export function snappyDecompress(input: Uint8Array, maxBytes: number): Uint8Array {
  checkMaxBytes(maxBytes);
  if (isXerial(input)) return decodeXerial(input, maxBytes);
  const [length, sp] = readBlockLength(input, 0, input.length);
  if (length > maxBytes) throw tooLarge(maxBytes);
  checkPlausible(length, input.length - sp);
  const out = new Uint8Array(length);
  decodeTags(input, sp, input.length, out, 0, length);
  return out;
}

function decodeXerial(input: Uint8Array, maxBytes: number): Uint8Array {
  if (input.length < XERIAL_HEADER_BYTES) throw corrupt("the xerial header is truncated");
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  // First pass: walk the frames and add up the declared lengths, so the output is one allocation within the limit.
  const blocks: number[] = []; // triples: tag start, tag end, output length
  let total = 0;
  let pos = XERIAL_HEADER_BYTES;
  while (pos < input.length) {
    if (pos + 4 > input.length) throw corrupt("a xerial block's length is truncated");
    const blockBytes = view.getInt32(pos);
    pos += 4;
    if (blockBytes <= 0 || blockBytes > input.length - pos) {
      throw corrupt(`a xerial block claims ${blockBytes} bytes where ${input.length - pos} remain`);
    }
    const [length, tagStart] = readBlockLength(input, pos, pos + blockBytes);
    total += length;
    if (total > maxBytes) throw tooLarge(maxBytes);
    checkPlausible(length, pos + blockBytes - tagStart);
    blocks.push(tagStart, pos + blockBytes, length);
    pos += blockBytes;
  }
  const out = new Uint8Array(total);
  let dp = 0;
  for (let k = 0; k < blocks.length; k += 3) {
    decodeTags(input, blocks[k], blocks[k + 1], out, dp, dp + blocks[k + 2]);
    dp += blocks[k + 2];
  }
  return out;
}

/**
 * Compresses into one raw snappy block (greedy matching on a 4-byte hash,
 * 64 KiB fragments like the reference encoder). Inputs are capped at 4 GiB - 1
 * by the format.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { snappyCompressBlock } from "./snappy.ts";
 * assert.ok(snappyCompressBlock(new Uint8Array(1000)).length < 100);
 * ```
 */
export function snappyCompressBlock(input: Uint8Array): Uint8Array {
  assert(input.length <= 0xffffffff, "a snappy block holds at most 4 GiB - 1 bytes");
  // The worst case of the format: literals cost 1 byte per 60 plus a few for long runs.
  const out = new Uint8Array(32 + input.length + Math.ceil(input.length / 6));
  let op = 0;
  let n = input.length;
  while (n >= 0x80) {
    out[op++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[op++] = n;
  const table = new Uint16Array(1 << HASH_BITS);
  for (let frag = 0; frag < input.length; frag += FRAGMENT_BYTES) {
    op = compressFragment(input, frag, Math.min(frag + FRAGMENT_BYTES, input.length), out, op, table);
  }
  return out.slice(0, op);
}

function compressFragment(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  op: number,
  table: Uint16Array,
): number {
  table.fill(0);
  let lit = start;
  let i = start + 1;
  while (i + 4 <= end) {
    const v = src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24);
    const h = Math.imul(v, 0x1e35a7bd) >>> (32 - HASH_BITS);
    const cand = start + table[h];
    table[h] = i - start;
    if (
      cand < i && src[cand] === src[i] && src[cand + 1] === src[i + 1] && src[cand + 2] === src[i + 2] &&
      src[cand + 3] === src[i + 3]
    ) {
      let len = 4;
      while (i + len < end && src[cand + len] === src[i + len]) len++;
      op = emitLiteral(src, lit, i, out, op);
      op = emitCopy(i - cand, len, out, op);
      i += len;
      lit = i;
    } else {
      // Step faster through bytes that do not compress.
      i += 1 + ((i - lit) >>> 5);
    }
  }
  return emitLiteral(src, lit, end, out, op);
}

function emitLiteral(src: Uint8Array, from: number, to: number, out: Uint8Array, op: number): number {
  const len = to - from;
  if (len === 0) return op;
  const n = len - 1;
  if (n < 60) {
    out[op++] = n << 2;
  } else {
    const bytes = n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
    out[op++] = (59 + bytes) << 2;
    for (let k = 0; k < bytes; k++) out[op++] = Math.floor(n / 2 ** (8 * k)) & 0xff;
  }
  out.set(src.subarray(from, to), op);
  return op + len;
}

function emitCopy(offset: number, len: number, out: Uint8Array, op: number): number {
  // A 2-byte-offset copy carries at most 64 bytes; keep at least 4 for the last piece.
  while (len >= 68) {
    op = emitCopy2(offset, 64, out, op);
    len -= 64;
  }
  if (len > 64) {
    op = emitCopy2(offset, 60, out, op);
    len -= 60;
  }
  if (len < 12 && offset < 2048) {
    out[op++] = 1 | ((len - 4) << 2) | ((offset >>> 8) << 5);
    out[op++] = offset & 0xff;
    return op;
  }
  return emitCopy2(offset, len, out, op);
}

function emitCopy2(offset: number, len: number, out: Uint8Array, op: number): number {
  out[op++] = 2 | ((len - 1) << 2);
  out[op++] = offset & 0xff;
  out[op++] = offset >>> 8;
  return op;
}

/**
 * Compresses into the xerial framing, as Kafka's Java producer writes it
 * (version 1, compatible version 1, 32 KiB blocks).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { snappyCompressXerial, snappyDecompress } from "./snappy.ts";
 * const framed = snappyCompressXerial(new Uint8Array(100_000));
 * assert.equal(snappyDecompress(framed, 100_000).length, 100_000);
 * ```
 */
export function snappyCompressXerial(input: Uint8Array, blockBytes: number = XERIAL_BLOCK_BYTES): Uint8Array {
  assert(
    Number.isSafeInteger(blockBytes) && blockBytes > 0,
    `blockBytes must be a positive integer, not ${blockBytes}`,
  );
  const parts: Uint8Array[] = [];
  let total = XERIAL_HEADER_BYTES;
  for (let pos = 0; pos < input.length; pos += blockBytes) {
    const block = snappyCompressBlock(input.subarray(pos, Math.min(pos + blockBytes, input.length)));
    parts.push(block);
    total += 4 + block.length;
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(XERIAL_MAGIC, 0);
  view.setInt32(8, 1);
  view.setInt32(12, 1);
  let op = XERIAL_HEADER_BYTES;
  for (const block of parts) {
    view.setInt32(op, block.length);
    out.set(block, op + 4);
    op += 4 + block.length;
  }
  return out;
}
