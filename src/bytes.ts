/**
 * Byte helpers shared by the codecs, the log and the command line.
 *
 * @module
 */

/**
 * `parts` as one buffer, in order (the part itself when there is one, not a
 * copy). `total`, when the caller knows it, is their summed length.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { concatBytes } from "./bytes.ts";
 * assert.deepEqual(concatBytes([new Uint8Array([1, 2]), new Uint8Array([3])]), new Uint8Array([1, 2, 3]));
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[], total?: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  let size = total ?? 0;
  if (total === undefined) { for (const part of parts) size += part.length; }
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
