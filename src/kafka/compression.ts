/**
 * Kafka's compression codecs by their attribute id (the low 3 bits of a
 * RecordBatch's attributes): 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
 *
 * gzip and zstd come from node:zlib; snappy and lz4 are yak's own
 * ({@link snappyDecompress}, {@link lz4FrameDecompress}). Every decompressor
 * stops at `maxBytes`: a small batch that inflates to gigabytes fails with
 * CORRUPT_MESSAGE instead of taking the broker's memory. That error carries
 * `data.maxBytes`, which tells it apart from damaged input.
 *
 * @module
 */

import { gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { constants as bufferConstants } from "node:buffer";
import { assert, YakError } from "../errors.ts";
import { corruptCompressed, decompressedTooLarge } from "./codec_errors.ts";
import { snappyCompressXerial, snappyDecompress } from "./snappy.ts";
import { lz4FrameCompress, lz4FrameDecompress } from "./lz4.ts";
import { concatBytes } from "../bytes.ts";

/**
 * The codec ids of Kafka's batch attributes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Compression } from "./compression.ts";
 * const attributes = 0x0004;
 * assert.equal(attributes & 0x07, Compression.zstd);
 * ```
 */
export const Compression = { none: 0, gzip: 1, snappy: 2, lz4: 3, zstd: 4 } as const;

/**
 * One of Kafka's codec ids, 0 to 4.
 *
 * @example
 * ```ts
 * import type { CompressionCodec } from "./compression.ts";
 * const codec: CompressionCodec = 1; // gzip
 * ```
 */
export type CompressionCodec = typeof Compression[keyof typeof Compression];

const NAMES = ["none", "gzip", "snappy", "lz4", "zstd"];

/**
 * Whether `id` is a codec Kafka defines (0 to 4).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isCompressionCodec } from "./compression.ts";
 * assert.equal(isCompressionCodec(4), true);
 * assert.equal(isCompressionCodec(5), false);
 * ```
 */
export function isCompressionCodec(id: number): id is CompressionCodec {
  return Number.isInteger(id) && id >= 0 && id < NAMES.length;
}

const corrupt = corruptCompressed;
const tooLarge = decompressedTooLarge;

/**
 * Decompresses `input` written with codec `codec`, to at most `maxBytes`.
 * Throws CORRUPT_MESSAGE for an unknown codec, malformed or truncated input,
 * or output past `maxBytes`. Codec 0 returns `input` itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compress, Compression, decompress } from "./compression.ts";
 * const text = new TextEncoder().encode("yak ".repeat(100));
 * const packed = compress(Compression.zstd, text);
 * assert.deepEqual(decompress(Compression.zstd, packed, 1 << 20), text);
 * assert.throws(() => decompress(Compression.zstd, packed, 100), { code: "CORRUPT_MESSAGE" }); // past maxBytes
 * ```
 */
export function decompress(codec: number, input: Uint8Array, maxBytes: number): Uint8Array {
  assert(Number.isSafeInteger(maxBytes) && maxBytes >= 0, `maxBytes must be a non-negative integer, not ${maxBytes}`);
  switch (codec) {
    case Compression.none:
      if (input.length > maxBytes) throw tooLarge("none", maxBytes);
      return input;
    case Compression.gzip:
      return viaZlib("gzip", () => gunzipSync(input, { maxOutputLength: zlibLimit(maxBytes) }), maxBytes);
    case Compression.snappy:
      return snappyDecompress(input, maxBytes);
    case Compression.lz4:
      return lz4FrameDecompress(input, maxBytes);
    case Compression.zstd:
      return zstdDecompress(input, maxBytes);
    default:
      throw new YakError(
        "CORRUPT_MESSAGE",
        `compression codec ${codec} is unknown (Kafka's are 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)`,
      );
  }
}

/** zlib refuses a maxOutputLength of 0 or past its buffer limit; the result is checked against maxBytes after. */
function zlibLimit(maxBytes: number): number {
  return Math.max(1, Math.min(maxBytes, bufferConstants.MAX_LENGTH));
}

function viaZlib(codec: string, run: () => Uint8Array, maxBytes: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = run();
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") throw tooLarge(codec, maxBytes);
    throw corrupt(codec, err instanceof Error ? err.message : String(err));
  }
  if (out.length > maxBytes) throw tooLarge(codec, maxBytes);
  return plain(out);
}

const ZSTD_MAGIC = 0xfd2fb528;
const SKIPPABLE_MAGIC = 0x184d2a50;
const ZSTD_DICT_ID_BYTES = [0, 1, 2, 4];
const ZSTD_CONTENT_SIZE_BYTES = [0, 2, 4, 8];

/**
 * zlib's zstd returns what it has for a truncated frame without an error, and
 * decodes only the first of concatenated frames (the zstd tool decodes all):
 * so yak walks the frames itself and hands zlib one whole frame at a time.
 */
function zstdDecompress(input: Uint8Array, maxBytes: number): Uint8Array {
  const frames = zstdFrames(input, maxBytes);
  if (frames.length === 2 && frames[0] === 0 && frames[1] === input.length) {
    return viaZlib("zstd", () => zstdDecompressSync(input, { maxOutputLength: zlibLimit(maxBytes) }), maxBytes);
  }
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let k = 0; k < frames.length; k += 2) {
    const frame = input.subarray(frames[k], frames[k + 1]);
    const left = maxBytes - total;
    const part = viaZlib("zstd", () => zstdDecompressSync(frame, { maxOutputLength: zlibLimit(left) }), left);
    parts.push(part);
    total += part.length;
  }
  return concatBytes(parts, total);
}

/**
 * Walks zstd frames by their headers and block sizes without decoding: every
 * frame must be whole. Adds up declared content sizes to refuse a bomb before
 * any work. Returns the data frames as [start, end) pairs, skippable frames left out.
 */
function zstdFrames(input: Uint8Array, maxBytes: number): number[] {
  if (input.length === 0) throw corrupt("zstd", "the input is empty");
  const need = (pos: number, n: number, what: string): void => {
    if (input.length - pos < n) throw corrupt("zstd", `${what} is truncated`);
  };
  const u32 = (p: number): number =>
    (input[p] | (input[p + 1] << 8) | (input[p + 2] << 16) | (input[p + 3] << 24)) >>> 0;
  const frames: number[] = [];
  let declaredBytes = 0;
  let pos = 0;
  while (pos < input.length) {
    need(pos, 4, "a frame's magic");
    const magic = u32(pos);
    if ((magic & 0xfffffff0) >>> 0 === SKIPPABLE_MAGIC) {
      need(pos, 8, "a skippable frame's size");
      const size = u32(pos + 4);
      need(pos + 8, size, "a skippable frame");
      pos += 8 + size;
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw corrupt("zstd", `0x${magic.toString(16)} is not the zstd frame magic`);
    frames.push(pos);
    pos += 4;
    need(pos, 1, "a frame header");
    const fhd = input[pos++];
    if ((fhd & 0x08) !== 0) throw corrupt("zstd", "a reserved frame header bit is set");
    const singleSegment = (fhd >>> 5) & 1;
    const fcsFlag = fhd >>> 6;
    const fcsBytes = fcsFlag === 0 ? singleSegment : ZSTD_CONTENT_SIZE_BYTES[fcsFlag];
    const skip = (singleSegment ? 0 : 1) + ZSTD_DICT_ID_BYTES[fhd & 3];
    need(pos, skip + fcsBytes, "a frame header");
    pos += skip;
    if (fcsBytes > 0) {
      let size = 0;
      for (let k = 0; k < fcsBytes; k++) size += input[pos + k] * 2 ** (8 * k);
      if (fcsBytes === 2) size += 256;
      declaredBytes += size;
      if (declaredBytes > maxBytes) throw tooLarge("zstd", maxBytes);
      pos += fcsBytes;
    }
    for (;;) {
      need(pos, 3, "a block header");
      const header = input[pos] | (input[pos + 1] << 8) | (input[pos + 2] << 16);
      pos += 3;
      const type = (header >>> 1) & 3;
      if (type === 3) throw corrupt("zstd", "a block has the reserved type 3");
      const size = type === 1 ? 1 : header >>> 3; // an RLE block stores its one byte
      need(pos, size, "a block");
      pos += size;
      if ((header & 1) !== 0) break;
    }
    if ((fhd & 0x04) !== 0) {
      need(pos, 4, "a frame's checksum");
      pos += 4;
    }
    frames.push(pos);
  }
  if (frames.length === 0) throw corrupt("zstd", "there are only skippable frames");
  return frames;
}

/**
 * Compresses `input` with codec `codec`: gzip and zstd through node:zlib,
 * snappy in the xerial framing and lz4 as a frame, as Kafka's Java client
 * writes them. Codec 0 returns `input` itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compress, Compression } from "./compression.ts";
 * assert.ok(compress(Compression.gzip, new Uint8Array(1000)).length < 100);
 * ```
 */
export function compress(codec: number, input: Uint8Array): Uint8Array {
  switch (codec) {
    case Compression.none:
      return input;
    case Compression.gzip:
      return plain(gzipSync(input));
    case Compression.snappy:
      return snappyCompressXerial(input);
    case Compression.lz4:
      return lz4FrameCompress(input);
    case Compression.zstd:
      return plain(zstdCompressSync(input));
    default:
      throw new YakError("INVALID_ARGUMENT", `compression codec ${codec} is unknown (0 to 4)`);
  }
}

/** A node Buffer as a plain Uint8Array view (same bytes, no copy). */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
