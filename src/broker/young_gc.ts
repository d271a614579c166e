/**
 * Scavenges V8's young generation on a follower when the process's
 * ArrayBuffers have grown by a step, so that stored bytes that died young are
 * freed then.
 *
 * A follower receives the leader's records as fetch replies, one new
 * ArrayBuffer each (up to 4 MiB), writes them and keeps them in its tail
 * cache a few fetches long. V8 frees a dead young ArrayBuffer only at the
 * next scavenge, and starts one when its young generation fills with
 * JavaScript objects, of which a follower makes few: its buffers grew by
 * about 100 MB/s between scavenges, and its RSS kept each climb's high
 * (docs/PERFORMANCE.md, "Where a broker's memory goes"). Scavenging every
 * 16 MiB of growth took a follower's peak RSS in a 1M-record produce from
 * 149-154 to 111-123 MB, for 5-8 more scavenges and 0-3 more mark-compacts
 * (together 5-15 ms) per 1M records.
 *
 * A leader makes JavaScript garbage enough to be scavenged 17 times in the
 * same run; scavenging it at each step as well gave no lower peak (141-151
 * against 145-169 MB) and 5-9 mark-compacts more, as objects that live
 * through an `acks=all` wait were promoted. So only a follower does it.
 *
 * The follower reads the growth after each fetch reply it appends (about
 * 10 us a reading), so an idle broker does nothing.
 *
 * V8 gives the means only to a process started with `--expose-gc`
 * (RUN_FLAGS, ./yak, deno.json's tasks and `deno task compile` give it);
 * without it nothing runs, and the broker works as before, with more memory.
 *
 * @module
 */

/** Growth of the process's ArrayBuffers that starts a scavenge. */
export const YOUNG_GC_STEP_BYTES = 16 * 1024 * 1024;

/**
 * The least time between two readings of the process's memory (see
 * {@link YoungCollector.check}): at 100 MB/s of fetch replies (a follower in
 * a bulk load) a step is 160 ms of growth, so a reading every 25 ms
 * overshoots it by 2.5 MB at most.
 */
export const YOUNG_GC_CHECK_MS = 25;

/**
 * Says when to scavenge: once the bytes read have grown by `step` above the
 * lowest reading since the last scavenge. A scavenge's ArrayBuffers are
 * swept on another thread, so the drop shows in a later reading; the lowest
 * one is where the next step counts from.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { GrowthTrigger } from "./young_gc.ts";
 * const t = new GrowthTrigger(10);
 * assert.equal(t.observe(5), false);
 * assert.equal(t.observe(14), false);
 * assert.equal(t.observe(15), true); // 10 above the lowest, 5
 * assert.equal(t.observe(16), false); // counts from 15 now
 * assert.equal(t.observe(6), false); // the sweep's drop
 * assert.equal(t.observe(16), true);
 * ```
 */
export class GrowthTrigger {
  readonly #step: number;
  #floor = Infinity;

  constructor(step: number) {
    this.#step = step;
  }

  /** One reading; true when it is time to scavenge. */
  observe(bytes: number): boolean {
    if (bytes < this.#floor) this.#floor = bytes;
    if (bytes - this.#floor < this.#step) return false;
    this.#floor = bytes;
    return true;
  }
}

/** V8's `gc` as `--expose-gc` installs it, with the options this module uses. */
type ExposedGc = (options: { type: "minor" }) => void;

/** The exposed `gc`, or null when the process was started without `--expose-gc`. */
export function exposedGc(): ExposedGc | null {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === "function" ? gc as ExposedGc : null;
}

/**
 * Scavenges at each {@link YOUNG_GC_STEP_BYTES} of the process's ArrayBuffer
 * growth, read when {@link check} is called.
 *
 * @example
 * ```ts ignore
 * const young = new YoungCollector();
 * // after each fetch reply appended:
 * if (young.check()) scavenges++; // never true without --expose-gc
 * ```
 */
export class YoungCollector {
  readonly #gc = exposedGc();
  readonly #trigger: GrowthTrigger;
  #readAt = -Infinity;

  constructor(step = YOUNG_GC_STEP_BYTES) {
    this.#trigger = new GrowthTrigger(step);
  }

  /** False when the process was started without `--expose-gc`: {@link check} does nothing. */
  get available(): boolean {
    return this.#gc !== null;
  }

  /**
   * Reads the ArrayBuffer bytes and scavenges if they grew by a step; true
   * when it did. At most one reading every {@link YOUNG_GC_CHECK_MS}:
   * `Deno.memoryUsage()` reads /proc too, and a follower fetching a
   * thousand times a second (small batches at a steady rate) spent 2% of its
   * CPU in it with no bound, and 3% with one reading every 5 ms (a profile
   * at 530 fetches a second).
   */
  check(): boolean {
    if (this.#gc === null) return false;
    const now = performance.now();
    if (now - this.#readAt < YOUNG_GC_CHECK_MS) return false;
    this.#readAt = now;
    if (!this.#trigger.observe(Deno.memoryUsage().external)) return false;
    this.#gc({ type: "minor" });
    return true;
  }
}
