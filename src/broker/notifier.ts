/**
 * Wakes long-polling requests when something they wait for changes.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { Deadlines } from "../deadlines.ts";

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
  /**
   * Each waiter's resolve, released at its deadline unless a notify comes
   * first. One timer for every waiter (deadlines.ts), left armed across
   * notifies: a timer per wait cost the leader 5% of its CPU at 10,000
   * records/s, and one re-armed at every notify (each append) still
   * set and cleared a timer per append.
   */
  readonly #waiters = new Deadlines<() => void>((resolve) => resolve());

  /** Resolves at the next notify, or after `ms`, whichever comes first. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => this.#waiters.add(resolve, monotonicMs() + Math.max(0, ms)));
  }

  notify(): void {
    for (const resolve of this.#waiters.takeAll()) resolve();
  }

  /** Releases every waiter (on shutdown), and stops the timer. */
  close(): void {
    this.notify();
    this.#waiters.close();
  }
}
