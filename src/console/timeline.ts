/**
 * The failover timeline: the membership and leadership events of the
 * zookeeper's operation log (JSON lines), newest first. Only the log's tail
 * is read, and only when the file has grown since the last look.
 *
 * @module
 */
import type { OpLogEntry } from "../op_log.ts";

/** The events a failover is told by. */
export const TIMELINE_EVENTS: ReadonlySet<string> = new Set([
  "started",
  "stopped",
  "broker_registered",
  "broker_alive",
  "broker_dead",
  "broker_left",
  "broker_id_refused",
  "leader_elected",
  "no_leader",
  "isr_changed",
  "zookeeper_paused",
  "lease_invalid",
  "lease_write_failed",
]);

/** Options of {@link Timeline}. */
export interface TimelineOptions {
  /** The operation log, e.g. data/zookeeper/zookeeper.log. */
  path: string;
  /** How much of the file's end is read. */
  tailBytes: number;
  /** Entries kept, newest first. */
  maxEntries: number;
}

/**
 * Reads the newest timeline entries of an operation log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Timeline } from "./timeline.ts";
 * const path = await Deno.makeTempFile(); // a zookeeper's is data/zookeeper/zookeeper.log
 * await Deno.writeTextFile(path, '{"ts":"2026-01-01T00:00:00.000Z","event":"broker_dead","broker":2}\n');
 * const timeline = new Timeline({ path, tailBytes: 256 * 1024, maxEntries: 100 });
 * assert.deepEqual((await timeline.read()).map((e) => e.event), ["broker_dead"]);
 * await Deno.remove(path);
 * ```
 */
export class Timeline {
  readonly #o: TimelineOptions;
  #size = -1;
  #entries: OpLogEntry[] = [];

  constructor(opts: TimelineOptions) {
    this.#o = opts;
  }

  /** The entries, newest first (the last ones read when the file has not grown). */
  async read(): Promise<OpLogEntry[]> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#o.path, { read: true });
    } catch {
      return this.#entries;
    }
    try {
      const { size } = await file.stat();
      if (size === this.#size) return this.#entries;
      const start = Math.max(0, size - this.#o.tailBytes);
      await file.seek(start, Deno.SeekMode.Start);
      const buf = new Uint8Array(size - start);
      let got = 0;
      while (got < buf.length) {
        const n = await file.read(buf.subarray(got));
        if (n === null) break;
        got += n;
      }
      const lines = new TextDecoder().decode(buf.subarray(0, got)).split("\n");
      if (start > 0) lines.shift(); // began mid-line
      this.#entries = parseTimeline(lines, this.#o.maxEntries);
      this.#size = size;
      return this.#entries;
    } finally {
      file.close();
    }
  }
}

/**
 * The timeline entries among operation-log lines (oldest first), newest
 * first; lines that are not entries are skipped.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTimeline } from "./timeline.ts";
 * const lines = ['{"ts":"2026-01-01T00:00:00.000Z","event":"broker_dead","broker":2}', "torn"];
 * assert.equal(parseTimeline(lines, 10).length, 1);
 * ```
 */
export function parseTimeline(lines: readonly string[], maxEntries: number): OpLogEntry[] {
  const out: OpLogEntry[] = [];
  for (let i = lines.length - 1; i >= 0 && out.length < maxEntries; i--) {
    const line = lines[i];
    if (!line.startsWith("{")) continue;
    try {
      const entry = JSON.parse(line);
      if (typeof entry?.event === "string" && typeof entry.ts === "string" && TIMELINE_EVENTS.has(entry.event)) {
        out.push(entry);
      }
    } catch { /* a torn or foreign line */ }
  }
  return out;
}
