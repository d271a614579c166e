/**
 * The one strict UTF-8 decoder for bytes a client sent (keys, values,
 * headers, names, lines read from stdin): `fatal`, so bytes that are not
 * UTF-8 throw (the caller keeps them as bytes, base64 when stored), and
 * `ignoreBOM`, so a leading U+FEFF is kept as the character it is. The
 * default decoder drops it: a key `\uFEFFa` became `a`, one key with `a`, and
 * compaction dropped one of the two records.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { strictUtf8 } from "./utf8.ts";
 * assert.equal(strictUtf8.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61])), "\uFEFFa");
 * assert.throws(() => strictUtf8.decode(new Uint8Array([0xff])));
 * ```
 *
 * @module
 */
export const strictUtf8: TextDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
