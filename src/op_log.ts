/**
 * The operation log every process keeps: JSON lines of what it did and why
 * (registrations, elections, repairs), for people to read with `yak logs`.
 *
 * @module
 */

/** One entry: when, what, and the details. */
export interface OpLogEntry {
  ts: string;
  event: string;
  [field: string]: unknown;
}

/**
 * Appends operation-log entries to a file (synchronously: they are rare and
 * must survive a crash that follows them) and echoes them to stderr.
 *
 * @example
 * ```ts
 * import { OpLog } from "./op_log.ts";
 * const log = new OpLog("/tmp/broker.log", "broker-1");
 * log.write("started", { port: 9092 });
 * log.close();
 * ```
 */
export class OpLog {
  readonly path: string;
  readonly #who: string;
  readonly #echo: boolean;
  #file: Deno.FsFile | null;

  constructor(path: string, who: string, echo = true) {
    this.path = path;
    this.#who = who;
    this.#echo = echo;
    this.#file = Deno.openSync(path, { append: true, create: true });
  }

  write(event: string, fields: Record<string, unknown> = {}): void {
    const entry: OpLogEntry = {
      ts: new Date().toISOString(),
      event,
      ...fields,
    };
    const bytes = new TextEncoder().encode(JSON.stringify(entry) + "\n");
    const file = this.#file;
    let written = 0;
    try {
      while (file && written < bytes.length) written += file.writeSync(bytes.subarray(written));
    } catch {
      // A full disk must not take the process down; the echo still shows it.
      // Nor may it leave the part of the line that fit: the next entry would
      // continue it, and readers parse each line (a tmpfs took a line up to its
      // page's end and refused the rest, 3 full-disk test runs in 25).
      try {
        if (file && written > 0) file.truncateSync(file.statSync().size - written);
      } catch { /* the torn line stays: yak logs shows it as it is */ }
    }
    if (this.#echo) console.error(formatEntry(entry, this.#who));
  }

  close(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/**
 * Formats an entry for people: time, who, event, then key=value pairs.
 *
 * @example
 * ```ts
 * import { formatEntry } from "./op_log.ts";
 * formatEntry({ ts: "2026-11-21T10:00:00.000Z", event: "elected", leader: 2 });
 * // "10:00:00.000 elected leader=2"
 * ```
 */
export function formatEntry(
  entry: OpLogEntry,
  who?: string,
  withDate = false,
): string {
  const { ts, event, ...rest } = entry;
  const time = typeof ts === "string" ? (withDate ? ts.replace("T", " ").slice(0, 23) : ts.slice(11, 23)) : "";
  const pairs = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return [time, who, event, pairs].filter((s) => s).join(" ");
}
