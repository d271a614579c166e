/**
 * Aligned text tables for people (the CLI's `--json` is for tools).
 *
 * @module
 */

/**
 * Pads each column to its widest cell; numbers line up on the right.
 *
 * @example
 * ```ts
 * import { table } from "./table.ts";
 * console.log(table([["GROUP", "LAG"], ["audit", "12"]]));
 * // GROUP  LAG
 * // audit   12
 * ```
 */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const cells = rows.map((r) => r.map(String));
  const widths: number[] = [];
  for (const r of cells) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return cells.map((r, row) =>
    r.map((c, i) => {
      const last = i === r.length - 1;
      const numeric = row > 0 && /^-?\d+$/.test(c);
      return numeric ? c.padStart(widths[i]) : last ? c : c.padEnd(widths[i]);
    }).join("  ").trimEnd()
  ).join("\n");
}
