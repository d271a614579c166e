/**
 * yak's version, printed by `yak --version`.
 *
 * @module
 */

/**
 * The version of yak (semantic versioning; raised with each release).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { YAK_VERSION } from "./version.ts";
 * assert.match(YAK_VERSION, /^\d+\.\d+\.\d+$/);
 * ```
 */
export const YAK_VERSION = "0.9.0";
