/**
 * The two errors every decompressor gives (gzip, zstd, snappy, LZ4): damaged
 * input, and output past the limit. Both are CORRUPT_MESSAGE to the client;
 * the limit's carries `data.maxBytes`, which is how record_batch.ts tells it
 * apart and answers MESSAGE_TOO_LARGE (a Java producer splits the batch then).
 *
 * @module
 */
import { YakError } from "../errors.ts";

/**
 * A producer's compressed records that do not decode.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { corruptCompressed } from "./codec_errors.ts";
 * assert.equal(corruptCompressed("lz4", "a block runs past the input").code, "CORRUPT_MESSAGE");
 * ```
 */
export function corruptCompressed(codec: string, what: string): YakError {
  return new YakError("CORRUPT_MESSAGE", `${codec}: ${what}; the producer's compressed records are damaged`);
}

/**
 * Records that would decompress past `maxBytes` (a bomb, or a batch too big).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decompressedTooLarge } from "./codec_errors.ts";
 * assert.equal(decompressedTooLarge("gzip", 1024).data?.maxBytes, 1024);
 * ```
 */
export function decompressedTooLarge(codec: string, maxBytes: number): YakError {
  return new YakError(
    "CORRUPT_MESSAGE",
    `${codec}: the records decompress to more than ${maxBytes} bytes, the limit; send smaller batches`,
    { maxBytes },
  );
}
