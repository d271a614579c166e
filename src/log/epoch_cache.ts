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

  /** Forgets epochs that start at or after `offset` (after a truncation). */
  truncateFrom(offset: number): boolean {
    const before = this.#entries.length;
    this.#entries = this.#entries.filter(([, start]) => start < offset);
    return this.#entries.length !== before;
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
