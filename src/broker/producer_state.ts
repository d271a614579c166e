/**
 * Idempotent produce: the last sequence each producer wrote to each
 * partition, so a retransmitted batch is answered, not appended again.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { assert } from "../errors.ts";
import { lineOffset, producerOf } from "../log/record.ts";
import { seqAdd, seqAtOrBefore } from "../log/sequence.ts";

/** Batches remembered per producer and partition (Kafka keeps five); producers send no more than this at once. */
const REMEMBERED_BATCHES = DEFAULTS.idempotenceWindowBatches;
/** Producers remembered per partition before the least recent is forgotten. */
const MAX_PRODUCERS = 10_000;

interface Batch {
  baseSeq: number;
  lastSeq: number;
  baseOffset: number;
}

interface Entry {
  /** The producer epoch these sequences are of: a transactional producer starts again at 0 in each new epoch. */
  epoch: number;
  /** The last sequence stored, or -1 (none yet; the next is 0). Sequences wrap (sequence.ts). */
  lastSeq: number;
  batches: Batch[];
}

/**
 * What to do with an incoming batch: append it (`next`), answer it with the
 * offset it was stored at (`duplicate`), or refuse it (`outOfOrder`: a gap
 * before it, or sequences that overlap a stored batch without being it).
 */
export type SeqCheck =
  | { kind: "next" }
  | { kind: "duplicate"; storedBaseOffset: number }
  | { kind: "outOfOrder"; expected: number };

/**
 * Producer sequences per partition, rebuilt lazily from the log tail on a new leader.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProducerState } from "./producer_state.ts";
 * const state = new ProducerState();
 * state.markReady("t/0");
 * state.record("t/0", "p-1", 0, 10, 0);
 * assert.deepEqual(state.check("t/0", "p-1", 0, 10), { kind: "duplicate", storedBaseOffset: 0 });
 * ```
 */
export class ProducerState {
  readonly #byPartition = new Map<string, Map<string, Entry>>();
  readonly #ready = new Set<string>();
  readonly #loading = new Map<string, Promise<void>>();
  /** Counts resets: a rebuild begun before one installs nothing (it read the log of another leadership). */
  #generation = 0;

  /** Forgets everything (on becoming leader: the log is the truth). */
  reset(): void {
    this.#generation++;
    this.#byPartition.clear();
    this.#ready.clear();
    this.#loading.clear();
  }

  isReady(key: string): boolean {
    return this.#ready.has(key);
  }

  markReady(key: string): void {
    this.#ready.add(key);
  }

  /**
   * Forgets sequences from `fromSeq` on (their write failed), keeping the
   * producer known, so a later batch cannot slip in before they are resent.
   */
  rollback(key: string, producer: string, fromSeq: number): void {
    let map = this.#byPartition.get(key);
    if (!map) this.#byPartition.set(key, map = new Map());
    const entry = map.get(producer);
    const before = seqAdd(fromSeq, -1);
    if (!entry) {
      map.set(producer, { epoch: 0, lastSeq: before, batches: [] });
      return;
    }
    // Nothing from `fromSeq` on is stored when the last sequence lies before it.
    if (entry.lastSeq === -1 || !seqAtOrBefore(fromSeq, entry.lastSeq)) return;
    entry.lastSeq = before;
    entry.batches = entry.batches.filter((b) => seqAtOrBefore(b.lastSeq, before));
  }

  /** Rebuilds a partition's state from its newest lines, once. */
  ensure(key: string, readTail: () => Promise<string>): Promise<void> {
    let loading = this.#loading.get(key);
    if (!loading) {
      const generation = this.#generation;
      loading = (async () => {
        const text = await readTail();
        // Reset while the tail was read (leadership lost and won again): what it read may lack the records the
        // broker copied as a follower since, and installed it would refuse the producer's next batch for good
        // (OUT_OF_ORDER_SEQUENCE, expecting a batch the log holds already). The caller's next ensure reads again.
        if (generation !== this.#generation) return;
        const map = new Map<string, Entry>();
        // A line with `batch` opens a batch of that many records; lines written before batches kept
        // their bounds (and a batch cut by the scan's start) fall back to runs of consecutive sequences.
        let run: { producer: string; epoch: number; first: number; last: number; offset: number } | null = null;
        const endRun = () => run && addBatch(map, run.producer, run.first, run.last, run.offset, run.epoch);
        for (const line of text.split("\n")) {
          const ps = line.length === 0 ? null : producerOf(line);
          if (!ps) continue;
          if (
            run && run.producer === ps.producer && run.epoch === ps.epoch && ps.seq === seqAdd(run.last, 1) &&
            ps.batch === 0
          ) {
            run.last = ps.seq;
            continue;
          }
          endRun();
          run = { producer: ps.producer, epoch: ps.epoch, first: ps.seq, last: ps.seq, offset: lineOffset(line) };
        }
        endRun();
        this.#byPartition.set(key, map);
        this.#ready.add(key);
        this.#loading.delete(key);
      })();
      this.#loading.set(key, loading);
    }
    return loading;
  }

  /**
   * Where an idempotent batch stands (Kafka's rule): the next sequence is
   * appended; exactly one of the last batches remembered (same first and
   * last sequence) is a duplicate; anything else is out of order. A producer
   * the partition does not know, or one in a newer epoch (a transactional
   * producer initialized again), is taken at any sequence.
   */
  check(key: string, producer: string, baseSeq: number, count: number, epoch = 0): SeqCheck {
    const entry = this.#byPartition.get(key)?.get(producer);
    const expected = seqAdd(entry?.lastSeq ?? -1, 1);
    if (!entry || epoch > entry.epoch || baseSeq === expected) return { kind: "next" };
    const lastSeq = seqAdd(baseSeq, count - 1);
    const batch = entry.batches.find((b) => b.baseSeq === baseSeq && b.lastSeq === lastSeq);
    if (batch) return { kind: "duplicate", storedBaseOffset: batch.baseOffset };
    return { kind: "outOfOrder", expected };
  }

  /**
   * Notes that `count` records from sequence `baseSeq` (wrapping) were given offsets from
   * `baseOffset`: right after the last batch of this producer here, unless
   * `gapAllowed` (acks=0, whose out-of-order batches are stored as sent).
   */
  record(
    key: string,
    producer: string,
    baseSeq: number,
    count: number,
    baseOffset: number,
    gapAllowed = false,
    epoch = 0,
  ): void {
    let map = this.#byPartition.get(key);
    if (!map) this.#byPartition.set(key, map = new Map());
    const known = map.get(producer);
    const last = known && known.epoch === epoch ? known.lastSeq : undefined;
    assert(
      gapAllowed || last === undefined || baseSeq === seqAdd(last, 1),
      `producer ${producer} on ${key}: sequences ${baseSeq}.. stored after ${last}`,
    );
    addBatch(map, producer, baseSeq, seqAdd(baseSeq, count - 1), baseOffset, epoch);
  }

  /** Producers known for a partition (for status). */
  producers(key: string): string[] {
    return [...(this.#byPartition.get(key)?.keys() ?? [])];
  }
}

function addBatch(
  map: Map<string, Entry>,
  producer: string,
  baseSeq: number,
  lastSeq: number,
  baseOffset: number,
  epoch: number,
) {
  let entry = map.get(producer);
  if (entry) {
    map.delete(producer); // re-insert: Map order is the recency order for eviction
  } else {
    if (map.size >= MAX_PRODUCERS) map.delete(map.keys().next().value!);
  }
  // A new epoch starts its sequences over; an older one's lines (read back from the log) change nothing.
  if (!entry || epoch > entry.epoch) entry = { epoch, lastSeq: -1, batches: [] };
  else if (epoch < entry.epoch) {
    map.set(producer, entry);
    return;
  }
  map.set(producer, entry);
  // The newest of the two (a batch of acks=0 may come out of order).
  if (entry.lastSeq === -1 || seqAtOrBefore(entry.lastSeq, lastSeq)) entry.lastSeq = lastSeq;
  entry.batches.push({ baseSeq, lastSeq, baseOffset });
  if (entry.batches.length > REMEMBERED_BATCHES) entry.batches.shift();
}
