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
