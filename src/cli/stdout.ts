/**
 * Writing to stdout when the reader may be gone: `console.log` drops the
 * error of a write to a closed pipe (EPIPE) silently, so a command that
 * prints until stopped (`yak status --watch | head -1`) never learned that
 * nobody reads any more and printed every second to the closed pipe.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Writes `text` to stdout, all of it; returns false when the reader has
 * closed the pipe (EPIPE: the caller stops, as `yak consume | head` does),
 * true otherwise. Other errors are thrown.
 *
 * @example
 * ```ts ignore
 * import { writeStdout } from "./stdout.ts";
 * if (!await writeStdout("a line\n")) return 0; // `| head` is done reading
 * ```
 */
export async function writeStdout(text: string): Promise<boolean> {
  const bytes = encoder.encode(text);
  try {
    for (let at = 0; at < bytes.length;) at += await Deno.stdout.write(bytes.subarray(at));
  } catch (err) {
    if (err instanceof Deno.errors.BrokenPipe) return false;
    throw err;
  }
  return true;
}
