/**
 * Time for durations. Leases, heartbeat silence, lag limits and timeouts are
 * measured on a monotonic clock: the wall clock can be set back or jump ahead
 * (NTP, an operator, a VM resumed), and a leader whose clock went back 30 s
 * kept calling an expired lease valid. `Date.now()` is for record timestamps
 * and logs only.
 *
 * @module
 */
import { clearImmediate, setImmediate } from "node:timers";

/**
 * Milliseconds on a clock that only moves forward (not since the epoch):
 * compare two readings, never show one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { monotonicMs } from "./clock.ts";
 * const start = monotonicMs();
 * const elapsedMs = monotonicMs() - start; // unaffected by wall-clock changes
 * assert.ok(elapsedMs >= 0);
 * ```
 */
export function monotonicMs(): number {
  return performance.now();
}

/**
 * Cuts a run of synchronous work into turns of the event loop: call
 * {@link TimeSlice.pause} between items, and once the turn has run for
 * `budgetMs` it yields (a macrotask), so timers, other connections and
 * replies run in between. A connection whose buffer held dozens of pipelined
 * produce requests decoded them all in one stretch, and everything else on the
 * broker thread waited behind it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { TimeSlice } from "./clock.ts";
 * const slice = new TimeSlice(20);
 * const done: number[] = [];
 * for (const item of [1, 2, 3]) {
 *   await slice.pause();
 *   done.push(item);
 * }
 * assert.deepEqual(done, [1, 2, 3]);
 * ```
 */
export class TimeSlice {
  readonly budgetMs: number;
  #startMs = monotonicMs();

  constructor(budgetMs: number) {
    this.budgetMs = budgetMs;
  }

  /** Whether this turn has used its budget (then {@link pause} yields). */
  get spent(): boolean {
    return monotonicMs() - this.#startMs >= this.budgetMs;
  }

  /**
   * Yields to the event loop if this turn has used its budget; otherwise
   * returns at once. The budget runs across other awaits on purpose: an
   * await on a socket read whose bytes are already there resolves without
   * the event loop's timers getting a turn, so a connection sending one
   * large request per read was never cut when each read started a new
   * budget (the leader's timers waited 396 ms in a librdkafka burst).
   * `setImmediate`, not `setTimeout(0)`: a zero timeout
   * waits for the timer tick (2.1 ms per yield here, which cost the Kafka
   * produce path 10% at one yield per 20 ms), an immediate 5 µs, and due
   * timers and I/O still run in between.
   */
  async pause(): Promise<void> {
    if (!this.spent) return;
    await new Promise((r) => setImmediate(r));
    this.#startMs = monotonicMs();
  }
}

/**
 * Runs `fn` after `ms` milliseconds, or, for 0, once the events already due
 * have run (`setImmediate`): a zero `setTimeout` waits for Deno's timer tick,
 * 2.2 ms here, which a producer with `linger.ms=0` paid on every batch.
 * Returns the cancel.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { after } from "./clock.ts";
 * let ran = false;
 * after(0, () => (ran = true));
 * await new Promise((r) => setTimeout(r, 5));
 * assert.ok(ran);
 * const cancel = after(0, () => assert.fail("cancelled"));
 * cancel();
 * ```
 */
export function after(ms: number, fn: () => void): () => void {
  if (ms <= 0) {
    const immediate = setImmediate(fn);
    return () => clearImmediate(immediate);
  }
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
}
