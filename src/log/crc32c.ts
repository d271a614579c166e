/**
 * CRC-32C (Castagnoli): the checksum of every stored line (see record.ts),
 * and of Kafka's RecordBatch v2, where it covers a batch from its attributes
 * to its end.
 *
 * Table-driven, sixteen bytes per step ("slicing by 16"): the fetch path
 * checksums every batch it encodes. Measured on this project's 2-core machine,
 * 1 MiB takes 0.73 ms this way against 1.1 ms eight bytes per step.
 *
 * @module
 */

import { assert } from "../errors.ts";

/** The reflected Castagnoli polynomial. */
const POLY = 0x82f63b78;

/** Sixteen 256-entry tables; table k advances a byte through k more zero bytes. */
const TABLES: Uint32Array = buildTables();

function buildTables(): Uint32Array {
  const t = new Uint32Array(16 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 16; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
}

/**
 * The CRC-32C of `bytes[start, end)`, as an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32c } from "./crc32c.ts";
 * assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
 * ```
 */
export function crc32c(bytes: Uint8Array, start = 0, end: number = bytes.length): number {
  // The message is built only on failure: this runs once per stored line.
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= bytes.length)) {
    assert(false, `crc32c range [${start}, ${end}) outside a buffer of ${bytes.length} bytes`);
  }
  return crc32cRange(bytes, start, end);
}

/**
 * {@link crc32c} without the range check, for callers that have just found
 * the range inside `bytes` (the per-line checks of stored records).
 */
export function crc32cRange(bytes: Uint8Array, start: number, end: number): number {
  const t = TABLES;
  let crc = 0xffffffff;
  let i = start;
  const end16 = end - ((end - start) & 15);
  while (i < end16) {
    const a = crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    crc = t[3840 + (a & 0xff)] ^ t[3584 + ((a >>> 8) & 0xff)] ^ t[3328 + ((a >>> 16) & 0xff)] ^ t[3072 + (a >>> 24)] ^
      t[2816 + bytes[i + 4]] ^ t[2560 + bytes[i + 5]] ^ t[2304 + bytes[i + 6]] ^ t[2048 + bytes[i + 7]] ^
      t[1792 + bytes[i + 8]] ^ t[1536 + bytes[i + 9]] ^ t[1280 + bytes[i + 10]] ^ t[1024 + bytes[i + 11]] ^
      t[768 + bytes[i + 12]] ^ t[512 + bytes[i + 13]] ^ t[256 + bytes[i + 14]] ^ t[bytes[i + 15]];
    i += 16;
  }
  // Four bytes per step for what is left (a stored line ends in up to 15 of them).
  const end4 = end - ((end - i) & 3);
  while (i < end4) {
    const a = crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    crc = t[768 + (a & 0xff)] ^ t[512 + ((a >>> 8) & 0xff)] ^ t[256 + ((a >>> 16) & 0xff)] ^ t[a >>> 24];
    i += 4;
  }
  while (i < end) crc = t[(crc ^ bytes[i++]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const NL = 0x0a;

/** Where {@link crc32cLine} leaves the checksum it found beside the newline it returns (reused, not allocated). */
export interface LineCrc {
  crc: number;
}

/**
 * Finds the first newline at or after `start` and, in the same pass, the
 * CRC-32C of the line from `start` to `tail` bytes before that newline (a
 * stored line's checksum covers it up to its checksum field), left in
 * `out.crc`. Returns the newline's index, or -1 when none follows (then
 * `out.crc` is not set). Reading a stored line from disk needs both: a
 * search for its end and then its checksum cost two passes over its bytes,
 * the search (`indexOf`, a byte at a time) a fifth of the pair.
 *
 * Sixteen bytes a step, as {@link crc32cRange}; a step whose bytes hold a
 * newline is not taken, and the checksum is finished a byte at a time from
 * the last step boundary at or before its end. That boundary is at most
 * two steps back while `tail` is at most 32 bytes (a stored line's is 18);
 * with a longer tail the checksum starts over from `start`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { crc32c, crc32cLine } from "./crc32c.ts";
 * const line = new TextEncoder().encode('{"offset":7,"value":"v","crc":"00000000"}\n');
 * const out = { crc: 0 };
 * assert.equal(crc32cLine(line, 0, 18, out), line.length - 1);
 * assert.equal(out.crc, crc32c(line, 0, line.length - 1 - 18));
 * ```
 */
export function crc32cLine(bytes: Uint8Array, start: number, tail: number, out: LineCrc): number {
  const t = TABLES;
  let crc = 0xffffffff;
  let i = start;
  // The checksum at the last two step boundaries, for an end that falls before the step that found the newline.
  let crc1 = crc;
  let at1 = i;
  let crc2 = crc;
  let at2 = i;
  const end16 = bytes.length - 15;
  while (i < end16) {
    const b0 = bytes[i], b1 = bytes[i + 1], b2 = bytes[i + 2], b3 = bytes[i + 3];
    const b4 = bytes[i + 4], b5 = bytes[i + 5], b6 = bytes[i + 6], b7 = bytes[i + 7];
    const b8 = bytes[i + 8], b9 = bytes[i + 9], b10 = bytes[i + 10], b11 = bytes[i + 11];
    const b12 = bytes[i + 12], b13 = bytes[i + 13], b14 = bytes[i + 14], b15 = bytes[i + 15];
    if (
      b0 === NL || b1 === NL || b2 === NL || b3 === NL || b4 === NL || b5 === NL || b6 === NL || b7 === NL ||
      b8 === NL || b9 === NL || b10 === NL || b11 === NL || b12 === NL || b13 === NL || b14 === NL || b15 === NL
    ) break;
    crc2 = crc1;
    at2 = at1;
    crc1 = crc;
    at1 = i;
    const a = crc ^ (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24));
    crc = t[3840 + (a & 0xff)] ^ t[3584 + ((a >>> 8) & 0xff)] ^ t[3328 + ((a >>> 16) & 0xff)] ^ t[3072 + (a >>> 24)] ^
      t[2816 + b4] ^ t[2560 + b5] ^ t[2304 + b6] ^ t[2048 + b7] ^ t[1792 + b8] ^ t[1536 + b9] ^ t[1280 + b10] ^
      t[1024 + b11] ^ t[768 + b12] ^ t[512 + b13] ^ t[256 + b14] ^ t[b15];
    i += 16;
  }
  let nl = i;
  while (nl < bytes.length && bytes[nl] !== NL) nl++;
  if (nl === bytes.length) return -1;
  const stop = nl - tail;
  let c = 0xffffffff;
  let at = start;
  if (stop >= i) {
    c = crc;
    at = i;
  } else if (stop >= at1) {
    c = crc1;
    at = at1;
  } else if (stop >= at2) {
    c = crc2;
    at = at2;
  }
  while (at < stop) c = t[(c ^ bytes[at++]) & 0xff] ^ (c >>> 8);
  out.crc = (c ^ 0xffffffff) >>> 0;
  return nl;
}
