/**
 * The back-reference copy that snappy and LZ4 decoders share: `len` bytes from
 * `offset` bytes behind the write position. When the source overlaps the
 * destination the bytes repeat with period `offset`, which is how both formats
 * spell a run ("copy 1000 bytes from 1 back" is 1000 copies of one byte).
 *
 * @module
 */

/**
 * Copies `dst[dp - offset, dp - offset + len)` to `dp` forward, byte by byte in
 * effect. The caller has checked `0 < offset <= dp` and `dp + len <= dst.length`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { copyMatch } from "./lz_match.ts";
 * const out = new Uint8Array(6);
 * out.set([1, 2]);
 * copyMatch(out, 2, 2, 4);
 * assert.deepEqual(out, new Uint8Array([1, 2, 1, 2, 1, 2]));
 * ```
 */
export function copyMatch(dst: Uint8Array, dp: number, offset: number, len: number): void {
  const from = dp - offset;
  if (len <= 16) {
    for (let k = 0; k < len; k++) dst[dp + k] = dst[from + k];
    return;
  }
  // Everything written from `from` on repeats with period `offset`, so each pass
  // may copy all of it at once: the runs double, and copyWithin never overlaps itself.
  const end = dp + len;
  let d = dp;
  while (d < end) {
    const n = Math.min(d - from, end - d);
    dst.copyWithin(d, from, from + n);
    d += n;
  }
}
