/**
 * How yak writes its own files safely on a machine shared with other users:
 * never through a symbolic link planted at its path (a link at `broker.pid`
 * once had its target truncated and overwritten).
 *
 * @module
 */
import { dirname } from "node:path";
import { YakError } from "./errors.ts";

/**
 * Throws STORAGE when `path` is a symbolic link: for files yak opens in place
 * to append or lock (operation logs, the lock file), where writing through a
 * link would write into its target. (The check and the open are two steps;
 * the data directory being this user's alone is what closes the gap.)
 *
 * @example
 * ```ts
 * import { refuseSymlink } from "./files.ts";
 * refuseSymlink("/tmp/no-such-broker.log", "operation log"); // missing: no error
 * ```
 */
export function refuseSymlink(path: string, what: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSymlink) return;
  let target = "";
  try {
    target = ` to ${Deno.readLinkSync(path)}`;
  } catch { /* named without its target */ }
  throw new YakError(
    "STORAGE",
    `${path} is a symbolic link${target}; yak writes its ${what} only to a regular file, never through a link ` +
      `into another file: remove the link (rm ${path}) and start again`,
    { path },
  );
}

let tempCount = 0;

/**
 * Writes `data` to `path` whole: into a new temp file beside it (created
 * exclusively, so a link planted there fails the write instead of being
 * followed), then renamed over `path` (which replaces a link there rather
 * than writing into its target). A reader sees the old file or the new one,
 * never half of one. With `sync`, the file and then the directory are
 * fsynced, so a power cut cannot undo the rename.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { writeFileAtomic } from "./files.ts";
 * await writeFileAtomic(join(await Deno.makeTempDir(), "broker.pid"), `${Deno.pid}\n`);
 * ```
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: { sync?: boolean } = {},
): Promise<void> {
  // Unique per write: two writes of one file at once each rename a whole file of their own.
  const tmp = `${path}.${Deno.pid}-${++tempCount}.tmp`;
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
      if (opts.sync) await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  if (!opts.sync) return;
  const dir = await Deno.open(dirname(path), { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}
