/**
 * Where a group's committed offsets move on a reset: `yak groups
 * --reset-offsets` and the console's admin action compute it the same way,
 * from the topic's offsets on the leader.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import type { Connection } from "../protocol/connection.ts";

/** Where a reset moves a group's offsets (`yak groups --reset-offsets`' flags). */
export type Reset = "to-earliest" | "to-latest" | "to-offset" | "shift-by";

/** Each partition's log start and high watermark, from the leader's `list_offsets`. */
export async function offsetsOf(conn: Connection, topic: string): Promise<{ start: number[]; hw: number[] }> {
  const res = await conn.request({ type: "list_offsets", topic });
  const hw = res.hw as Record<string, number>;
  const start = (res.start ?? {}) as Record<string, number>;
  const n = Object.keys(hw).length;
  return {
    hw: Array.from({ length: n }, (_, p) => hw[p] ?? 0),
    start: Array.from({ length: n }, (_, p) => start[p] ?? 0),
  };
}

/**
 * The offset each partition moves to, within its log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resetOffsetsOf } from "./group_offsets.ts";
 * assert.deepEqual(resetOffsetsOf("shift-by", "-5", [0, 10], [20, 12], { 0: 8 }), { 0: 3, 1: 10 });
 * ```
 */
export function resetOffsetsOf(
  reset: Reset,
  amount: string,
  start: number[],
  hw: number[],
  committed: Record<string, number>,
): Record<string, number> {
  const number = () => {
    if (!/^-?\d+$/.test(amount)) throw new YakError("INVALID_ARGUMENT", `--${reset} needs an integer, not '${amount}'`);
    return Number(amount);
  };
  const offsets: Record<string, number> = {};
  for (let p = 0; p < hw.length; p++) {
    let to: number;
    if (reset === "to-earliest") to = start[p];
    else if (reset === "to-latest") to = hw[p];
    else if (reset === "to-offset") to = number();
    else to = (committed[p] ?? start[p]) + number();
    offsets[p] = Math.min(hw[p], Math.max(start[p], to));
  }
  return offsets;
}
