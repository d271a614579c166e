/**
 * Time for durations. Leases, heartbeat silence, lag limits and timeouts are
 * measured on a monotonic clock: the wall clock can be set back or jump ahead
 * (NTP, an operator, a VM resumed), and a leader whose clock went back 30 s
 * kept calling an expired lease valid. `Date.now()` is for record timestamps
 * and logs only.
 *
 * @module
 */

/**
 * Milliseconds on a clock that only moves forward (not since the epoch):
 * compare two readings, never show one.
 *
 * @example
 * ```ts
 * import { monotonicMs } from "./clock.ts";
 * const start = monotonicMs();
 * const elapsedMs = monotonicMs() - start; // unaffected by wall-clock changes
 * ```
 */
export function monotonicMs(): number {
  return performance.now();
}
