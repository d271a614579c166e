/**
 * The leader epochs of one partition: where each epoch's records begin. A
 * returning broker compares its epochs with the new leader's to find where
 * their logs part, and truncates there.
 *
 * @module
 */
import { assert } from "../errors.ts";
import { join } from "node:path";
import { writeFileAtomic } from "../files.ts";

/** `[epoch, startOffset]`, in increasing order of both. */
export type EpochEntry = [epoch: number, startOffset: number];

const FILE = "leader-epochs.json";

/**
 * The epoch → start offset list of a partition, persisted beside its segments.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EpochCache } from "./epoch_cache.ts";
 * const cache = new EpochCache("/tmp/p0", [[1, 0], [3, 120]]);
 * assert.deepEqual(cache.endOffsetFor(1, 200), { epoch: 1, endOffset: 120 });
 * ```
 */
export class EpochCache {
  readonly #dir: string;
  #entries: EpochEntry[];

  constructor(dir: string, entries: EpochEntry[] = []) {
    this.#dir = dir;
    this.#entries = entries;
  }

  /** Loads the list, or null when the file is missing or unreadable. */
  static async load(dir: string): Promise<EpochCache | null> {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(join(dir, FILE)));
      if (!Array.isArray(parsed)) return null;
      const entries: EpochEntry[] = [];
      for (const e of parsed) {
        if (
          !Array.isArray(e) || !Number.isSafeInteger(e[0]) ||
          !Number.isSafeInteger(e[1])
        ) return null;
        const last = entries.at(-1);
        if (last && (e[0] <= last[0] || e[1] < last[1])) return null;
        entries.push([e[0], e[1]]);
      }
      return new EpochCache(dir, entries);
    } catch {
      return null;
    }
  }

  get entries(): readonly EpochEntry[] {
    return this.#entries;
  }

  /** The epoch of the newest record, or -1 for an empty log. */
  get lastEpoch(): number {
    return this.#entries.at(-1)?.[0] ?? -1;
  }

  /** Records that `epoch` starts at `startOffset`; a no-op for a known epoch. */
  assign(epoch: number, startOffset: number): boolean {
    const last = this.#entries.at(-1);
    // Epochs only grow: records of an older epoch than the newest one here mean two leaders wrote.
    assert(!last || epoch >= last[0], `epoch ${epoch} appended after epoch ${last?.[0]}`);
    if (last && epoch === last[0]) return false;
    assert(
      !last || startOffset >= last[1],
      `epoch ${epoch} would start at ${startOffset}, before epoch ${last?.[0]} at ${last?.[1]}`,
    );
    this.#entries.push([epoch, startOffset]);
    return true;
  }

  /**
   * Forgets epochs that start at or after `offset` (after a truncation). A
   * log cut to its start `logStart` (above 0: the records below it were
   * deleted) keeps the epoch in force there: {@link truncateFromStart} moved
   * its entry to the log start, and no record is left to say it again.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { EpochCache } from "./epoch_cache.ts";
   * const cache = new EpochCache("/tmp/p0", [[2, 10], [3, 10]]); // epoch 3 assigned at 10, its record cut
   * assert.equal(cache.truncateFrom(10, 10), true);
   * assert.deepEqual(cache.entries, [[2, 10]]); // what the deleted records below 10 were written in
   * assert.equal(new EpochCache("/tmp/p0", [[1, 0]]).truncateFrom(0, 0), true); // nothing below 0: forgotten
   * ```
   */
  truncateFrom(offset: number, logStart = 0): boolean {
    const before = this.#entries.length;
    const first = this.#entries[0];
    this.#entries = this.#entries.filter(([, start]) => start < offset);
    if (this.#entries.length === 0 && first && logStart > 0 && first[1] === logStart && offset === logStart) {
      this.#entries = [first];
    }
    return this.#entries.length !== before;
  }

  /**
   * Forgets the epochs that end at or below `offset` (the log start moved
   * there); the epoch in force at `offset` then starts there, as Kafka's
   * cache does. True when anything changed.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { EpochCache } from "./epoch_cache.ts";
   * const cache = new EpochCache("/tmp/p0", [[1, 0], [2, 100], [3, 200]]);
   * assert.equal(cache.truncateFromStart(150), true);
   * assert.deepEqual(cache.entries, [[2, 150], [3, 200]]);
   * ```
   */
  truncateFromStart(offset: number): boolean {
    let floor = -1;
    for (let i = 0; i < this.#entries.length && this.#entries[i][1] <= offset; i++) floor = i;
    if (floor === -1 || (floor === 0 && this.#entries[0][1] === offset)) return false;
    this.#entries = [[this.#entries[floor][0], offset], ...this.#entries.slice(floor + 1)];
    return true;
  }

  /**
   * Kafka's answer to OffsetsForLeaderEpoch (KIP-320) on the leader of
   * `leaderEpoch`, for a reader whose last record was of epoch `epoch`: the
   * largest epoch not above it and where it ends (the start of the next
   * higher epoch, or the log end for the current one); `epoch` itself with
   * the first later epoch's start when it is older than every epoch kept;
   * -1 and -1 for an unknown or future epoch. The leader's own epoch counts
   * as begun at the log end when it has written nothing yet (Kafka's leader
   * writes an entry when it is elected; yak's cache learns an epoch from its
   * first record).
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { EpochCache } from "./epoch_cache.ts";
   * const cache = new EpochCache("/tmp/p0", [[2, 10], [4, 30]]);
   * assert.deepEqual(cache.endOffsetForReader(3, 5, 40), { epoch: 2, endOffset: 30 });
   * assert.deepEqual(cache.endOffsetForReader(4, 5, 40), { epoch: 4, endOffset: 40 }); // 5 has no records yet
   * assert.deepEqual(cache.endOffsetForReader(5, 5, 40), { epoch: 5, endOffset: 40 });
   * assert.deepEqual(cache.endOffsetForReader(1, 5, 40), { epoch: 1, endOffset: 10 });
   * assert.deepEqual(cache.endOffsetForReader(6, 5, 40), { epoch: -1, endOffset: -1 });
   * ```
   */
  endOffsetForReader(epoch: number, leaderEpoch: number, logEndOffset: number): { epoch: number; endOffset: number } {
    if (epoch < 0 || epoch > leaderEpoch) return { epoch: -1, endOffset: -1 };
    if (epoch === leaderEpoch) return { epoch, endOffset: logEndOffset };
    const entries: EpochEntry[] = [...this.#entries];
    if (this.lastEpoch < leaderEpoch) entries.push([leaderEpoch, logEndOffset]);
    // There is a higher epoch: at least the leader's own.
    const higher = entries.find(([e]) => e > epoch)!;
    const floor = entries.findLast(([e]) => e <= epoch);
    return { epoch: floor ? floor[0] : epoch, endOffset: higher[1] };
  }

  /**
   * Where `epoch` ends in this log: the largest known epoch not above it, and
   * the start of the next one (or the log end). Kafka's OffsetsForLeaderEpoch.
   */
  endOffsetFor(
    epoch: number,
    logEndOffset: number,
  ): { epoch: number; endOffset: number } {
    let found = -1;
    for (let i = 0; i < this.#entries.length; i++) {
      if (this.#entries[i][0] <= epoch) found = i;
      else break;
    }
    if (found === -1) {
      return { epoch: -1, endOffset: this.#entries[0]?.[1] ?? logEndOffset };
    }
    const next = this.#entries[found + 1];
    return {
      epoch: this.#entries[found][0],
      endOffset: next ? next[1] : logEndOffset,
    };
  }

  /** The entries whose start lies in [from, to). */
  within(from: number, to: number): EpochEntry[] {
    return this.#entries.filter(([, start]) => start >= from && start < to);
  }

  /** The epoch in force at `offset` (for the first record of a replicated chunk). */
  epochAt(offset: number): number {
    let epoch = -1;
    for (const [e, start] of this.#entries) {
      if (start <= offset) epoch = e;
      else break;
    }
    return epoch;
  }

  /** Writes the list atomically: temp file, then rename. */
  async save(): Promise<void> {
    await writeFileAtomic(join(this.#dir, FILE), JSON.stringify(this.#entries));
  }
}
