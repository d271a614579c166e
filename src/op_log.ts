/**
 * The operation log every process keeps: JSON lines of what it did and why
 * (registrations, elections, repairs), for people to read with `yak logs`.
 *
 * @module
 */
import { dataModes, refuseSymlink } from "./files.ts";

/** One entry: when, what, and the details. */
export interface OpLogEntry {
  ts: string;
  event: string;
  [field: string]: unknown;
}

/** What the operation log needs of its file (a `Deno.FsFile` opened for append; tests pass a fake). */
export interface OpLogFile {
  writeSync(p: Uint8Array): number;
  truncateSync(len?: number): void;
  statSync(): { size: number };
  close(): void;
}

const encoder = new TextEncoder();

/** How large an operation log grows before it is rotated, and how many rotated files are kept beside it. */
export interface OpLogLimits {
  maxBytes: number;
  keep: number;
}

/**
 * 16 MiB, then `broker.log.1` .. `.3`: at most 64 MiB a process. A short-lived
 * client adds ~240 bytes (registered, deregistered), so one a second would
 * otherwise add ~20 MB a day for good.
 */
export const OP_LOG_LIMITS: OpLogLimits = { maxBytes: 16 * 1024 * 1024, keep: 3 };

/**
 * Appends operation-log entries to a file (synchronously: they are rare and
 * must survive a crash that follows them) and echoes them to stderr.
 *
 * Each entry is written whole or not at all. A write can stop part way (a
 * full disk takes what fits and then fails); the file is cut back to where
 * the entry began, so no half line is glued to the next entry. If even the
 * cut fails, the next entry starts on a new line, so it stays whole.
 *
 * A symbolic link at `path` is refused (STORAGE) rather than appended
 * through: the log would otherwise grow whatever file the link names.
 *
 * Past `limits.maxBytes` the file is renamed `PATH.1` (`.1` to `.2`, and so
 * on; the oldest past `limits.keep` goes) and a new one begins, as log4j's
 * rolling files do; an entry is never split across two files.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { OpLog } from "./op_log.ts";
 * const dir = await Deno.makeTempDir();
 * const log = new OpLog(`${dir}/broker.log`, "broker-1", false); // false: no echo to stderr
 * log.write("started", { port: 9092 });
 * log.close();
 * assert.match(await Deno.readTextFile(`${dir}/broker.log`), /"event":"started","port":9092\}\n$/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class OpLog {
  readonly path: string;
  readonly #who: string;
  readonly #echo: boolean;
  #file: OpLogFile | null;
  /** Bytes of whole entries in the file: where the next entry begins. */
  #size: number;
  /** A torn entry could not be cut: the next one must begin with a line break. */
  #torn = false;
  /** Entries that could not be written (a full disk), for tests and status. */
  dropped = 0;
  /** Rotation, for a log this process opened from its path (not a file a test passed). */
  readonly #limits: OpLogLimits | null;
  /** Closed by {@link close}: no more entries. */
  #closed = false;

  constructor(path: string, who: string, echo = true, file?: OpLogFile, limits: OpLogLimits = OP_LOG_LIMITS) {
    this.path = path;
    this.#who = who;
    this.#echo = echo;
    this.#limits = file ? null : limits;
    this.#file = file ?? OpLog.#open(path);
    this.#size = this.#file.statSync().size;
  }

  static #open(path: string): OpLogFile {
    refuseSymlink(path, "operation log");
    return Deno.openSync(path, { append: true, create: true, mode: dataModes().file });
  }

  /**
   * The file is full: `.k` becomes `.k+1` (the last kept is replaced), the
   * file `.1`, and a new file begins. A failed rename leaves the files as
   * they are and the entries go on in the old one; a failed open is tried
   * again at the next entry.
   */
  #rotate(limits: OpLogLimits): void {
    try {
      for (let k = limits.keep; k >= 1; k--) {
        const from = k === 1 ? this.path : `${this.path}.${k - 1}`;
        try {
          Deno.renameSync(from, `${this.path}.${k}`);
        } catch (err) {
          if (!(err instanceof Deno.errors.NotFound)) throw err;
        }
      }
    } catch {
      return;
    }
    this.#file?.close();
    this.#file = null;
    this.#reopen();
  }

  #reopen(): void {
    try {
      this.#file = OpLog.#open(this.path);
      this.#size = this.#file.statSync().size;
      this.#torn = false;
    } catch {
      this.#file = null;
    }
  }

  write(event: string, fields: Record<string, unknown> = {}): void {
    const entry: OpLogEntry = {
      ts: new Date().toISOString(),
      event,
      ...fields,
    };
    this.#append(JSON.stringify(entry) + "\n");
    if (this.#echo) console.error(formatEntry(entry, this.#who));
  }

  #append(line: string): void {
    if (this.#closed) return;
    const limits = this.#limits;
    if (limits && !this.#file) this.#reopen();
    if (limits && this.#file && this.#size > 0 && this.#size + line.length > limits.maxBytes) this.#rotate(limits);
    const file = this.#file;
    if (!file) {
      this.dropped++;
      return;
    }
    const bytes = encoder.encode(this.#torn ? "\n" + line : line);
    let done = 0;
    try {
      while (done < bytes.length) {
        const n = file.writeSync(bytes.subarray(done));
        if (n <= 0) throw new Error("the write made no progress");
        done += n;
      }
      this.#size += bytes.length;
      this.#torn = false;
    } catch {
      // A full disk must not take the process down; the echo still shows it.
      this.dropped++;
      if (done === 0) return;
      try {
        file.truncateSync(this.#size);
      } catch {
        this.#size += done;
        this.#torn = true;
      }
    }
  }

  close(): void {
    this.#closed = true;
    this.#file?.close();
    this.#file = null;
  }
}

/**
 * Formats an entry for people: time, who, event, then key=value pairs.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatEntry } from "./op_log.ts";
 * const line = formatEntry({ ts: "2026-11-21T10:00:00.000Z", event: "elected", leader: 2 });
 * assert.equal(line, "10:00:00.000 elected leader=2");
 * assert.equal(formatEntry({ ts: "2026-11-21T10:00:00.000Z", event: "left", handedTo: undefined }), "10:00:00.000 left");
 * ```
 */
export function formatEntry(
  entry: OpLogEntry,
  who?: string,
  withDate = false,
): string {
  const { ts, event, ...rest } = entry;
  const time = typeof ts === "string" ? (withDate ? ts.replace("T", " ").slice(0, 23) : ts.slice(11, 23)) : "";
  // An undefined field is not written to the file (JSON drops it): the readable line leaves it out too.
  const pairs = Object.entries(rest)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return [time, who, event, pairs].filter((s) => s).join(" ");
}
