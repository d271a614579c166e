/**
 * Rate-limited operation-log lines for events a peer can repeat at will
 * (failed logins, refused connections): the first of a kind from an address
 * is written at once, the rest of its window only counted and reported with
 * the next line written, so a flood cannot flood the log.
 *
 * @module
 */

/** Where a line goes (an operation log's `onError`). */
export type LogSink = (message: string, fields: Record<string, unknown>) => void;

/**
 * One log line per key per window, with the count of those left out.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LogWindow } from "./log_window.ts";
 * const lines: string[] = [];
 * const w = new LogWindow(10_000, (message) => lines.push(message));
 * w.note("127.0.0.1", "authentication failed", {});
 * w.note("127.0.0.1", "authentication failed", {});
 * assert.equal(lines.length, 1); // the second is counted, not written
 * ```
 */
export class LogWindow {
  readonly #windowMs: number;
  readonly #sink: LogSink;
  readonly #seen = new Map<string, { unlogged: number; sinceMs: number }>();

  constructor(windowMs: number, sink: LogSink) {
    this.#windowMs = windowMs;
    this.#sink = sink;
  }

  /** Writes the line unless one with this key went out in the current window (then counts it). */
  note(key: string, message: string, fields: Record<string, unknown>): void {
    const now = performance.now();
    const seen = this.#seen.get(key);
    if (seen && now - seen.sinceMs < this.#windowMs) {
      seen.unlogged++;
      return;
    }
    const more = seen?.unlogged ?? 0;
    this.#sink(message, {
      ...fields,
      ...(more > 0 ? { alsoFromThisAddress: more, inSeconds: Math.round((now - seen!.sinceMs) / 1000) } : {}),
    });
    // Bounded: keys of windows long past are dropped when the map grows.
    if (this.#seen.size >= 10_000) this.#forgetOld(now);
    this.#seen.set(key, { unlogged: 0, sinceMs: now });
  }

  #forgetOld(now: number): void {
    for (const [key, seen] of this.#seen) {
      if (now - seen.sinceMs >= this.#windowMs) this.#seen.delete(key);
    }
    if (this.#seen.size >= 10_000) this.#seen.clear();
  }
}

/**
 * The address part of a `host:port` peer name (IPv6 hosts keep their colons).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { peerAddress } from "./log_window.ts";
 * assert.equal(peerAddress("127.0.0.1:53122"), "127.0.0.1");
 * assert.equal(peerAddress("[::1]:53122"), "[::1]");
 * ```
 */
export function peerAddress(remote: string): string {
  return remote.replace(/:\d+$/, "");
}
