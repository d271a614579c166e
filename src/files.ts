/**
 * How yak writes its own files safely on a machine shared with other users:
 * who may read them (modes), whose directory it writes into (owner), and how
 * a file is written without following a symbolic link planted at its path
 * (a link at `broker.pid` once had its target truncated and overwritten).
 *
 * @module
 */
import { dirname } from "node:path";
import { DEFAULTS } from "./config.ts";
import { YakError } from "./errors.ts";

/** Permission bits of the directories and files a process creates under the data root. */
export interface FileModes {
  readonly dir: number;
  readonly file: number;
}

/**
 * The modes of data directories and files: the owner's alone, or with
 * `shared` (`--shared-files`) readable by the owner's group too.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fileModes } from "./files.ts";
 * assert.equal(fileModes(false).dir.toString(8), "700");
 * assert.equal(fileModes(true).file.toString(8), "640");
 * ```
 */
export function fileModes(shared: boolean): FileModes {
  return shared
    ? { dir: DEFAULTS.sharedDataDirMode, file: DEFAULTS.sharedDataFileMode }
    : { dir: DEFAULTS.dataDirMode, file: DEFAULTS.dataFileMode };
}

/** The modes of this process's new data directories and files: one setting per process, like its security. */
let current: FileModes = fileModes(false);

/**
 * Sets the modes every data directory and file this process creates from
 * now on gets (segments, indexes, logs, metadata); the CLI's server commands
 * set them from `--shared-files`. (Not the umask: setting that needs Deno's
 * --allow-sys; the umask still takes bits away, as for any program.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataModes, fileModes, useFileModes } from "./files.ts";
 * useFileModes(fileModes(true)); // new files 0640, new directories 0750
 * assert.equal(dataModes().dir, 0o750);
 * ```
 */
export function useFileModes(modes: FileModes): void {
  current = modes;
}

/**
 * The modes to create data directories (`dir`) and files (`file`) with, as
 * set by {@link useFileModes}; the owner's alone unless set.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { dataModes } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/p0`, { mode: dataModes().dir });
 * assert.equal((await Deno.stat(`${dir}/p0`)).mode! & 0o777, 0o700);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function dataModes(): FileModes {
  return current;
}

/**
 * Creates `dir` (and missing parents) with the data directory mode, and sets
 * that mode on it when it already existed: a directory an older yak made
 * 0755 is closed too, and with it every file inside.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ensureDataDir } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.chmod(dir, 0o755);
 * await ensureDataDir(dir); // closed to others, though it existed
 * assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
 * await Deno.remove(dir);
 * ```
 */
export async function ensureDataDir(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: current.dir });
  if (Deno.build.os !== "windows") await Deno.chmod(dir, current.dir);
}

/**
 * Throws STORAGE when `path` exists and belongs to another user: its owner
 * could swap the files in it for links to this user's files (or read them).
 * Skipped where the platform has no user ids (Windows).
 *
 * @example
 * ```ts
 * import { refuseForeignOwner } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * refuseForeignOwner(dir, "the data root"); // ours: no error
 * await Deno.remove(dir);
 * ```
 */
export function refuseForeignOwner(path: string, what: string): void {
  let uid: number | null;
  try {
    uid = Deno.uid();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotCapable)) throw err;
    throw new YakError(
      "STORAGE",
      `cannot tell whether ${what} ${path} is this user's: run deno with --allow-sys=uid (as ./yak, deno task ` +
        `and yak cluster do)`,
    );
  }
  if (uid === null) return;
  let owner: number | null;
  try {
    owner = Deno.statSync(path).uid;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return; // created by this process, so its own
    throw err;
  }
  if (owner === null || owner === uid) return;
  throw new YakError(
    "STORAGE",
    `${what} ${path} belongs to uid ${owner}, not to this process's uid ${uid}: its owner could replace ` +
      `the files in it with links to yours. Use a data directory of your own (--data), or run as its owner`,
    { path, owner, uid },
  );
}

/**
 * Throws STORAGE when `path` is a symbolic link: for files yak opens in place
 * to append or lock (operation logs, the lock file), where writing through a
 * link would write into its target. (The check and the open are two steps;
 * the data directory being this user's alone is what closes the gap.)
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { refuseSymlink } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * refuseSymlink(`${dir}/broker.log`, "operation log"); // missing: no error
 * await Deno.symlink("/etc/passwd", `${dir}/broker.log`);
 * assert.throws(() => refuseSymlink(`${dir}/broker.log`, "operation log"), { code: "STORAGE" });
 * await Deno.remove(dir, { recursive: true });
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
 * exclusively with the data file mode, so a link planted there fails the
 * write instead of being followed), then renamed over `path` (which replaces a link there rather
 * than writing into its target). A reader sees the old file or the new one,
 * never half of one. With `sync`, the file and then the directory are
 * fsynced, so a power cut cannot undo the rename.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { writeFileAtomic } from "./files.ts";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(join(dir, "broker.pid"), `${Deno.pid}\n`);
 * assert.equal(await Deno.readTextFile(join(dir, "broker.pid")), `${Deno.pid}\n`);
 * await Deno.remove(dir, { recursive: true });
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
    const file = await Deno.open(tmp, { write: true, createNew: true, mode: current.file });
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
