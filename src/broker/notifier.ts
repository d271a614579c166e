/**
 * Wakes long-polling requests when something they wait for changes.
 *
 * @module
 */

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
  #waiters = new Set<() => void>();

  /** Resolves at the next notify, or after `ms`, whichever comes first. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.#waiters.add(done);
    });
  }

  notify(): void {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const w of waiters) w();
  }

  /** Releases every waiter (on shutdown). */
  close(): void {
    this.notify();
  }
}
