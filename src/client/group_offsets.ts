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
 * The offset each partition moves to, as a reset sends it: `{partition: offset}` of {@link resetTargets}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { resetTargets, targetOffsets } from "./group_offsets.ts";
 * assert.deepEqual(targetOffsets(resetTargets("shift-by", "-5", [0, 10], [20, 12], { 0: 8 })), { 0: 3, 1: 10 });
 * assert.deepEqual(targetOffsets(resetTargets("to-earliest", "", [0, 10], [20, 12], {}, [1])), { 1: 10 });
 * ```
 */
export function targetOffsets(targets: readonly ResetTarget[]): Record<string, number> {
  const offsets: Record<string, number> = {};
  for (const t of targets) offsets[t.partition] = t.to;
  return offsets;
}

/** Where one partition's offset goes on a reset: `asked` before it was kept within the log (`to`). */
export interface ResetTarget {
  partition: number;
  asked: number;
  to: number;
}

/**
 * Where each partition's offset moves on a reset, within its log (`only`:
 * just these partitions, each of which must exist), and what was asked
 * where the log's bounds changed it.
 */
export function resetTargets(
  reset: Reset,
  amount: string,
  start: number[],
  hw: number[],
  committed: Record<string, number>,
  only?: readonly number[],
): ResetTarget[] {
  const number = () => {
    if (!/^-?\d+$/.test(amount)) throw new YakError("INVALID_ARGUMENT", `--${reset} needs an integer, not '${amount}'`);
    return Number(amount);
  };
  if (reset === "to-offset" && number() < 0) {
    throw new YakError("INVALID_ARGUMENT", `--to-offset needs an offset of 0 or more, not ${amount}`);
  }
  for (const p of only ?? []) {
    if (p >= hw.length) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `the topic has ${hw.length} partition${hw.length === 1 ? "" : "s"} (0-${
          hw.length - 1
        }); there is no partition ${p}`,
      );
    }
  }
  const partitions = only ?? hw.map((_, p) => p);
  return partitions.map((p) => {
    let asked: number;
    if (reset === "to-earliest") asked = start[p];
    else if (reset === "to-latest") asked = hw[p];
    else if (reset === "to-offset") asked = number();
    else asked = (committed[p] ?? start[p]) + number();
    return { partition: p, asked, to: Math.min(hw[p], Math.max(start[p], asked)) };
  });
}
