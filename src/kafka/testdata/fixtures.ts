/**
 * Test helpers for the Kafka codec tests: the committed fixtures (see
 * README.md beside this file), seeded bytes, and an error matcher.
 *
 * @module
 */

import { YakError } from "../../errors.ts";

/**
 * The bytes of a committed fixture in this folder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fixture } from "./fixtures.ts";
 * assert.equal(fixture("sample.txt").length, 648);
 * ```
 */
export function fixture(name: string): Uint8Array {
  return Deno.readFileSync(new URL(`./${name}`, import.meta.url));
}

/**
 * `sample.txt` repeated `times` times (256 times is `repeated.txt` of the README).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { repeatedSample } from "./fixtures.ts";
 * assert.equal(repeatedSample(4).length, 4 * 648);
 * ```
 */
export function repeatedSample(times: number): Uint8Array {
  const sample = fixture("sample.txt");
  const out = new Uint8Array(sample.length * times);
  for (let k = 0; k < times; k++) out.set(sample, k * sample.length);
  return out;
}

/**
 * `n` pseudo-random bytes from `seed` (a linear congruential generator): the same bytes on every run.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { seededBytes } from "./fixtures.ts";
 * assert.equal(seededBytes(1, 16).length, 16);
 * assert.deepEqual(seededBytes(1, 16), seededBytes(1, 16)); // the same on every run
 * ```
 */
export function seededBytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[k] = s >>> 24;
  }
  return out;
}

/**
 * A predicate for `assert.throws`: a YakError with `code`, whose message mentions `mention` if given.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isYak } from "./fixtures.ts";
 * import { YakError } from "../../errors.ts";
 * assert.throws(() => { throw new YakError("CORRUPT_MESSAGE", "bad crc"); }, isYak("CORRUPT_MESSAGE", "crc"));
 * ```
 */
export function isYak(code: string, mention?: string): (err: unknown) => boolean {
  return (err) => {
    if (!(err instanceof YakError) || err.code !== code) throw err;
    if (mention !== undefined && !err.message.includes(mention)) {
      throw new Error(`expected "${mention}" in: ${err.message}`);
    }
    return true;
  };
}

/**
 * Whether two byte arrays hold the same bytes (faster and terser than deepEqual on large arrays).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sameBytes } from "./fixtures.ts";
 * assert.equal(sameBytes(new Uint8Array([1, 2]), Uint8Array.of(1, 2)), true);
 * ```
 */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
