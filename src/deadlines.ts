/**
 * Timeouts for many pending things under one timer that is seldom touched.
 *
 * A request, a long poll or an `acks=all` wait used to set a timer when it
 * began and clear it when it ended, almost always long before the timer was
 * due: at a steady 1,000 requests a second that was a timer set and cleared
 * per message in every process (the leader's notifier alone set one at each
 * append), 3-5% of each process's CPU in the timers' own code. Here a
 * deadline is an entry in a map; the one timer is armed for the earliest
 * deadline known when it is armed and is left running when entries go. When
 * it fires it expires what is due and re-arms for the earliest left, so a
 * timer is set about once per timeout period, not once per request.
 *
 * The timer keeps the process alive while a key waits, as a timer per key
 * did, and not once none does (it is unref'd then, and ref'd again by the
 * next key: flags, a twentieth of the cost of a new timer).
 *
 * @module
 */
import { monotonicMs } from "./clock.ts";

/**
 * Keys with deadlines (monotonic ms, see {@link monotonicMs}); `expire(key)`
 * runs once a key's deadline has passed, unless it was deleted first.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { monotonicMs } from "./clock.ts";
 * import { Deadlines } from "./deadlines.ts";
 * const expired: string[] = [];
 * const d = new Deadlines<string>((key) => expired.push(key));
 * d.add("slow", monotonicMs() + 20);
 * d.add("answered", monotonicMs() + 20);
 * d.delete("answered");
 * await new Promise((r) => setTimeout(r, 60));
 * assert.deepEqual(expired, ["slow"]);
 * d.close();
 * ```
 */
export class Deadlines<K> {
  readonly #due = new Map<K, number>();
  readonly #expire: (key: K) => void;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  /** Whether the timer keeps the process alive (while some key waits). */
  #refed = false;

  constructor(expire: (key: K) => void) {
    this.#expire = expire;
  }

  /** Keys still waiting. */
  get size(): number {
    return this.#due.size;
  }

  /**
   * Expires `key` at `deadline` unless it is deleted first (a key added again
   * keeps only the new deadline). NaN counts as now, as a timer's NaN delay
   * did; Infinity never expires and keeps nothing alive.
   */
  add(key: K, deadline: number): void {
    if (Number.isNaN(deadline)) deadline = monotonicMs();
    this.#due.set(key, deadline);
    if (deadline < this.#timerAt) this.#arm(deadline);
    else if (!this.#refed) this.#ref(true);
  }

  /** Forgets `key` (its end came first); the timer is left running. True when it was waiting. */
  delete(key: K): boolean {
    const had = this.#due.delete(key);
    if (this.#due.size === 0 && this.#refed) this.#ref(false);
    return had;
  }

  /** Every key still waiting, forgotten here (for the caller to end them all some other way). */
  takeAll(): K[] {
    const keys = [...this.#due.keys()];
    this.#due.clear();
    if (this.#refed) this.#ref(false);
    return keys;
  }

  /** Forgets every key and stops the timer. */
  close(): void {
    this.#due.clear();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#refed = false;
  }

  /** A new timer for `at` (armed only while a key waits, so it keeps the process alive). */
  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    // Rounded up: a timer fires after whole milliseconds, and one a fraction early would only be armed again.
    // At most a timer's longest delay (~24.8 days; a longer one fires at once): a later deadline is armed again then.
    this.#timer = setTimeout(() => this.#fire(), Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(at - monotonicMs()))));
    this.#refed = true;
  }

  #ref(on: boolean): void {
    if (this.#timer === undefined) return;
    if (on) Deno.refTimer(this.#timer);
    else Deno.unrefTimer(this.#timer);
    this.#refed = on;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#refed = false;
    const now = monotonicMs();
    const due: [K, number][] = [];
    for (const [key, deadline] of this.#due) if (deadline <= now) due.push([key, deadline]);
    try {
      for (const [key, deadline] of due) {
        // Still waiting on that deadline: not deleted, closed or added again by a callback before it.
        if (this.#due.get(key) !== deadline) continue;
        this.#due.delete(key);
        this.#expire(key);
      }
    } finally {
      // For what is left (a callback that threw leaves the rest due: they go at once, in a next firing).
      let next = Infinity;
      for (const deadline of this.#due.values()) if (deadline < next) next = deadline;
      if (next !== Infinity && next < this.#timerAt) this.#arm(next);
    }
  }
}

/** setTimeout's longest delay (2^31 - 1 ms). */
const MAX_DELAY_MS = 2 ** 31 - 1;
