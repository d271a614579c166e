/**
 * Where a partition's log starts, kept beside its segments (as Kafka keeps
 * its log-start-offset checkpoint). Deleting records (Kafka's DeleteRecords)
 * may move the start into the middle of a segment, where no file name can
 * say it; retention and a follower matching its leader's start move it the
 * same way. Missing, the log starts where its first segment does.
 *
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../files.ts";

const FILE = "log-start.json";

/** What the file held: the offset, `null` when there is no file, or the reason it cannot be read. */
export type SavedLogStart = { offset: number } | null | { unreadable: string };

/**
 * Reads the saved log start of the log in `dir`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadLogStart, saveLogStart } from "./log_start.ts";
 * const dir = await Deno.makeTempDir();
 * assert.equal(await loadLogStart(dir), null);
 * await saveLogStart(dir, 42);
 * assert.deepEqual(await loadLogStart(dir), { offset: 42 });
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadLogStart(dir: string): Promise<SavedLogStart> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, FILE));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    return { unreadable: err instanceof Error ? err.message : String(err) };
  }
  try {
    const offset = JSON.parse(text)?.logStart;
    if (Number.isSafeInteger(offset) && offset >= 0) return { offset };
  } catch { /* said below */ }
  return { unreadable: `${join(dir, FILE)} does not hold {"logStart": OFFSET}` };
}

/** Saves the log start (a temp file, synced, renamed over the old one), before the log acts on it. */
export async function saveLogStart(dir: string, offset: number): Promise<void> {
  await writeFileAtomic(join(dir, FILE), JSON.stringify({ logStart: offset }) + "\n", { sync: true });
}

/** Removes the saved log start: the log starts where its first segment does again (a reset, a truncation below it). */
export async function clearLogStart(dir: string): Promise<void> {
  await Deno.remove(join(dir, FILE)).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}
