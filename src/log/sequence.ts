/**
 * Producer sequence numbers as Kafka counts them: from 0 to 2^31 - 1, then
 * 0 again (Kafka's `DefaultRecordBatch.incrementSequence`). A producer that
 * sends more than 2^31 records to a partition under one id and epoch goes
 * on from 0, and a batch may wrap in its middle.
 *
 * @module
 */

/** How many sequence numbers there are: the largest is this less one. */
export const SEQ_MODULUS = 2 ** 31;

/**
 * `seq` moved by `n` (either way), wrapping.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seqAdd } from "./sequence.ts";
 * assert.equal(seqAdd(2147483646, 1), 2147483647);
 * assert.equal(seqAdd(2147483646, 2), 0);
 * assert.equal(seqAdd(0, -1), 2147483647);
 * assert.equal(seqAdd(-1, 1), 0); // -1: none yet
 * ```
 */
export function seqAdd(seq: number, n: number): number {
  const sum = seq + n;
  // Nearly always in range: the two floating-point remainders only for a wrap (a Kafka fetch's conversion takes one
  // step a record: 437-440 -> 425-437 ns a record in one process).
  return sum >= 0 && sum < SEQ_MODULUS ? sum : ((sum % SEQ_MODULUS) + SEQ_MODULUS) % SEQ_MODULUS;
}

/**
 * Whether `a` comes at or before `b`: `b` is less than half the sequence
 * space ahead of it (as TCP compares its sequence numbers).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seqAtOrBefore } from "./sequence.ts";
 * assert.ok(seqAtOrBefore(5, 5) && seqAtOrBefore(5, 9) && !seqAtOrBefore(9, 5));
 * assert.ok(seqAtOrBefore(2147483600, 3)); // across the wrap
 * ```
 */
export function seqAtOrBefore(a: number, b: number): boolean {
  return seqAdd(b, -a) < SEQ_MODULUS / 2;
}
