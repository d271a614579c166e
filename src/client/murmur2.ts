/**
 * Kafka's murmur2 hash and default keyed partitioner, bit for bit, so a key
 * lands on the same partition whether a Java client or yak produced it.
 *
 * @module
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const R = 24;

const encoder = new TextEncoder();

/**
 * Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with Kafka's seed, returned as a
 * signed 32-bit integer exactly as Java's `int` would hold it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { murmur2 } from "./murmur2.ts";
 * assert.equal(murmur2(new TextEncoder().encode("21")), -973932308);
 * ```
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (SEED ^ length) | 0;
  const tail = length & ~3;

  for (let i = 0; i < tail; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) |
      (data[i + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> R;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }

  // Mirrors Kafka's fall-through switch so 1-3 trailing bytes mix identically.
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2] << 16;
    // falls through
    case 2:
      h ^= data[tail + 1] << 8;
    // falls through
    case 1:
      h ^= data[tail];
      h = Math.imul(h, M);
  }

  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * Kafka's `Utils.toPositive`: masks off the sign bit instead of taking an
 * absolute value, so even `-2**31` yields a valid (zero) index.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toPositive } from "./murmur2.ts";
 * assert.equal(toPositive(-973932308), 1173551340);
 * assert.equal(toPositive(-(2 ** 31)), 0);
 * ```
 */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/**
 * The partition Kafka's default partitioner picks for a record with this key:
 * murmur2 of the key's UTF-8 bytes, made positive, modulo the partition count.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { partitionForKey } from "./murmur2.ts";
 * assert.equal(partitionForKey("21", 3), 0); // as Kafka's default partitioner
 * ```
 */
export function partitionForKey(key: string, numPartitions: number): number {
  if (!Number.isInteger(numPartitions) || numPartitions <= 0) {
    throw new RangeError(
      `numPartitions must be a positive integer, got ${numPartitions}`,
    );
  }
  return toPositive(murmur2(encoder.encode(key))) % numPartitions;
}
