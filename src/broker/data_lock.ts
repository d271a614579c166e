/**
 * One process per broker data directory: an exclusive OS lock (flock) on
 * `broker.lock` inside it, taken before anything in the directory is opened.
 * Two brokers appending to the same segments would interleave records and
 * corrupt both logs; the OS drops the lock when its holder dies (even on
 * SIGKILL), so a crash never leaves the directory locked.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { join } from "node:path";
import { YakError } from "../errors.ts";
import { dataModes, refuseSymlink } from "../files.ts";

/**
 * The lock file's name inside a data directory; it holds the holder's pid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { join } from "node:path";
 * import { LOCK_FILE } from "./data_lock.ts";
 * assert.equal(join("data", "broker-1", LOCK_FILE), "data/broker-1/broker.lock");
 * ```
 */
export const LOCK_FILE = "broker.lock";

/** How long a refused process waits for the holder to write its pid into the lock file. */
const HOLDER_PID_WAIT_MS = 500;

/**
 * A held lock on a data directory, from {@link lockDataDir}.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { type DataLock, LOCK_FILE, lockDataDir } from "./data_lock.ts";
 * const dir = await Deno.makeTempDir();
 * const lock: DataLock = await lockDataDir(dir);
 * assert.equal(lock.path, `${dir}/${LOCK_FILE}`);
 * await lock.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export interface DataLock {
  /** The lock file. */
  readonly path: string;
  /** Releases the lock (the OS also releases it when the process exits). Idempotent. */
  release(): Promise<void>;
}

/**
 * Takes the exclusive lock on `dir` (created if missing) without waiting,
 * and writes this process's pid into the lock file. Throws
 * `BROKER_ID_IN_USE`, naming the holder's pid, when another process (or
 * another open in this one) holds it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { lockDataDir } from "./data_lock.ts";
 * const dir = await Deno.makeTempDir();
 * const lock = await lockDataDir(dir);
 * await assert.rejects(lockDataDir(dir), { code: "BROKER_ID_IN_USE", message: /in use by another process \(pid \d+/ });
 * await lock.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function lockDataDir(dir: string): Promise<DataLock> {
  await Deno.mkdir(dir, { recursive: true, mode: dataModes().dir });
  const path = join(dir, LOCK_FILE);
  // Opened in place (a lock must stay on one file), and truncated below: never through a link.
  refuseSymlink(path, "lock file");
  // No truncate on open: the file names the holder, which a refused process must still read.
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: dataModes().file });
  let locked = false;
  try {
    locked = await file.tryLock(true);
    if (locked) {
      await file.truncate(0);
      // The pid only names the holder in a refusal: a full disk must not stop the broker here.
      await file.write(new TextEncoder().encode(`${Deno.pid}\n`)).catch(() => 0);
    }
  } catch (err) {
    file.close();
    throw err;
  }
  if (!locked) {
    file.close();
    const pid = await holderPid(path);
    throw new YakError(
      "BROKER_ID_IN_USE",
      `${dir} is in use by another process (pid ${pid ?? "unknown"}, holding ${path}); ` +
        `stop that broker first, or give this one its own --data or --id`,
      pid === null ? {} : { pid },
    );
  }
  let held = true;
  return {
    path,
    async release() {
      if (!held) return;
      held = false;
      try {
        await file.unlock();
      } finally {
        file.close();
      }
    },
  };
}

/** The pid in a lock file, waiting briefly for a holder that has the lock but has not written it yet. */
async function holderPid(path: string): Promise<number | null> {
  const deadline = monotonicMs() + HOLDER_PID_WAIT_MS;
  while (true) {
    const text = await Deno.readTextFile(path).catch(() => "");
    const pid = Number(text.trim());
    if (text.trim() !== "" && Number.isInteger(pid) && pid > 0) return pid;
    if (monotonicMs() > deadline) return null;
    await new Promise((r) => setTimeout(r, 25));
  }
}
