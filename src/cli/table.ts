/**
 * Aligned text tables for people (the CLI's `--json` is for tools).
 *
 * @module
 */

/** A number, maybe followed by a marker (`50*`: a figure as last seen); the parts line up separately. */
const NUMBER = /^(-?\d+)([*]*)$/;

/**
 * Pads each column to its widest cell; numbers line up on the right, also
 * when some carry a marker (`50*`): the digits of every number in a column
 * end at the same place, and markers stand after them.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { table } from "./table.ts";
 * assert.equal(
 *   table([["GROUP", "LAG"], ["audit", "12"], ["audit", "7*"]]),
 *   [
 *     "GROUP  LAG",
 *     "audit  12",
 *     "audit   7*",
 *   ].join("\n"),
 * );
 * ```
 */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map(String));
  const widths: number[] = [];
  const digitWidths: number[] = [];
  const markWidths: number[] = [];
  cells.forEach((r, row) =>
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
      const m = row > 0 ? NUMBER.exec(c) : null;
      if (m) {
        digitWidths[i] = Math.max(digitWidths[i] ?? 0, m[1].length);
        markWidths[i] = Math.max(markWidths[i] ?? 0, m[2].length);
      }
    })
  );
  cells.forEach((_, i) => {
    if (digitWidths[i] !== undefined) widths[i] = Math.max(widths[i], digitWidths[i] + markWidths[i]);
  });
  return cells.map((r, row) =>
    r.map((c, i) => {
      const last = i === r.length - 1;
      const m = row > 0 ? NUMBER.exec(c) : null;
      if (m) return (m[1].padStart(digitWidths[i]) + m[2].padEnd(markWidths[i])).padStart(widths[i]);
      return last ? c : c.padEnd(widths[i]);
    }).join("  ").trimEnd()
  ).join("\n");
}
