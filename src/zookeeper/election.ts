/**
 * Choosing a leader: among live in-sync brokers, the one holding the most
 * (highest log end total), ties to the lowest id.
 *
 * @module
 */

/** What the election needs to know of a broker. */
export interface Candidate {
  id: number;
  alive: boolean;
  logEndTotal: number;
}

/**
 * Picks the next leader, or null when no in-sync broker is alive (yak never
 * elects a broker that may miss acknowledged records). With no ISR yet (a new
 * cluster) every live broker is eligible.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { electLeader } from "./election.ts";
 * const leader = electLeader([
 *   { id: 1, alive: false, logEndTotal: 90 },
 *   { id: 2, alive: true, logEndTotal: 80 },
 *   { id: 3, alive: true, logEndTotal: 80 },
 * ], [1, 2, 3]);
 * assert.equal(leader, 2); // the live broker holding the most; a tie goes to the lowest id
 * ```
 */
export function electLeader(
  brokers: Iterable<Candidate>,
  isr: readonly number[] | null,
): number | null {
  let best: Candidate | null = null;
  for (const b of brokers) {
    if (!b.alive) continue;
    if (isr !== null && isr.length > 0 && !isr.includes(b.id)) continue;
    if (
      best === null || b.logEndTotal > best.logEndTotal ||
      (b.logEndTotal === best.logEndTotal && b.id < best.id)
    ) {
      best = b;
    }
  }
  return best?.id ?? null;
}
