/**
 * Wakes long-polling requests when something they wait for changes.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";

/**
 * A broadcast signal with a timeout.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Notifier } from "./notifier.ts";
 * const n = new Notifier();
 * const start = performance.now();
 * setTimeout(() => n.notify(), 10);
 * await n.wait(1000); // resolves after ~10 ms
 * assert.ok(performance.now() - start < 1000);
 * ```
 */
export class Notifier {
  /** Each waiter's resolve, with when it stops waiting (monotonic ms). */
  #waiters = new Map<() => void, number>();
  /**
   * One timer for every waiter, armed for the earliest deadline: a timer
   * per wait cost the leader 5% of its CPU at 10,000 records/s, each of the
   * followers' and consumers' long polls setting and clearing its own.
   */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;

  /** Resolves at the next notify, or after `ms`, whichever comes first. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = monotonicMs() + Math.max(0, ms);
      this.#waiters.set(resolve, deadline);
      if (deadline < this.#timerAt) this.#arm(deadline);
    });
  }

  notify(): void {
    const waiters = [...this.#waiters.keys()];
    this.#waiters.clear();
    this.#disarm();
    for (const w of waiters) w();
  }

  /** Releases every waiter (on shutdown). */
  close(): void {
    this.notify();
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#timerAt = at;
    // Rounded up: a timer fires after whole milliseconds, and one a fraction early would only be armed again.
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, Math.ceil(at - monotonicMs())));
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** Releases the waiters whose time is up, and arms the timer for the next. */
  #expire(): void {
    this.#disarm();
    const now = monotonicMs();
    let next = Infinity;
    for (const [resolve, deadline] of this.#waiters) {
      if (deadline <= now) {
        this.#waiters.delete(resolve);
        resolve();
      } else if (deadline < next) next = deadline;
    }
    if (next !== Infinity) this.#arm(next);
  }
}
