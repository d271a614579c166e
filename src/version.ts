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
 * import { YAK_VERSION } from "./version.ts";
 * console.log(`yak ${YAK_VERSION}`);
 * ```
 */
export const YAK_VERSION = "0.9.0";
