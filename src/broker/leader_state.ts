/**
 * What a leader tracks about its followers: how far each has fetched, the
 * high watermark that follows from it, the acks=all waiters, and when a
 * follower should leave or join the in-sync set.
 *
 * @module
 */
import { YakError } from "../protocol/errors.ts";
import type { TopicStore } from "./topic_store.ts";

interface Waiter {
  offset: number;
  resolve: () => void;
  reject: (e: YakError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Options of {@link LeaderState}. */
export interface LeaderStateOptions {
  selfId: number;
  epoch: number;
  store: TopicStore;
  isr: number[];
  replicaLagMs: number;
  /** Called when a high watermark moves (to wake long polls). */
  onHwChange: () => void;
}

/**
 * The leader's view of replication for one epoch.
 *
 * @example
 * ```ts ignore
 * const state = new LeaderState({ selfId: 1, epoch: 3, store, isr: [1, 2, 3], replicaLagMs: 3000, onHwChange });
 * state.followerFetched(2, new Map([["t/0", 120]]));
 * await state.waitForHw("t/0", 120, 10_000);
 * ```
 */
export class LeaderState {
  readonly selfId: number;
  readonly epoch: number;
  readonly #o: LeaderStateOptions;
  #isr: number[];
  readonly #fetched = new Map<number, Map<string, number>>();
  readonly #lastCaughtUp = new Map<number, number>();
  readonly #lastFetch = new Map<number, number>();
  readonly #waiters = new Map<string, Waiter[]>();
  #stopped: YakError | null = null;

  constructor(opts: LeaderStateOptions) {
    this.#o = opts;
    this.selfId = opts.selfId;
    this.epoch = opts.epoch;
    this.#isr = opts.isr;
    // Every follower in the set gets a full lag period to show up.
    const now = Date.now();
    for (const id of opts.isr) this.#lastCaughtUp.set(id, now);
  }

  get isr(): readonly number[] {
    return this.#isr;
  }

  /** Adopts the in-sync set from a new lease and re-derives every watermark. */
  setIsr(isr: number[]): void {
    const now = Date.now();
    for (const id of isr) {
      if (!this.#isr.includes(id)) this.#lastCaughtUp.set(id, now);
    }
    this.#isr = isr;
    for (const ref of this.#o.store.all()) this.updateHw(ref.key);
  }

  /** Records a follower's fetch position for every partition it asked about. */
  followerFetched(followerId: number, offsets: Map<string, number>): void {
    const now = Date.now();
    this.#fetched.set(followerId, offsets);
    this.#lastFetch.set(followerId, now);
    let caughtUp = true;
    for (const ref of this.#o.store.all()) {
      if ((offsets.get(ref.key) ?? 0) < ref.log.logEndOffset) {
        caughtUp = false;
        break;
      }
    }
    if (caughtUp) this.#lastCaughtUp.set(followerId, now);
    if (this.#isr.includes(followerId)) {
      for (const ref of this.#o.store.all()) this.updateHw(ref.key);
    }
  }

  /** High watermark = the lowest log end among the in-sync replicas. */
  updateHw(key: string): void {
    const ref = this.#o.store.byKey(key);
    if (!ref) return;
    let hw = ref.log.logEndOffset;
    for (const id of this.#isr) {
      if (id === this.selfId) continue;
      hw = Math.min(hw, this.#fetched.get(id)?.get(key) ?? 0);
    }
    const before = ref.log.highWatermark;
    ref.log.highWatermark = hw; // the setter never moves it back
    if (ref.log.highWatermark === before) return;
    const list = this.#waiters.get(key);
    if (list) {
      const keep: Waiter[] = [];
      for (const w of list) {
        if (w.offset <= ref.log.highWatermark) {
          clearTimeout(w.timer);
          w.resolve();
        } else keep.push(w);
      }
      if (keep.length > 0) this.#waiters.set(key, keep);
      else this.#waiters.delete(key);
    }
    this.#o.onHwChange();
  }

  /** Resolves once the partition's high watermark reaches `offset` (acks=all). */
  waitForHw(key: string, offset: number, timeoutMs: number): Promise<void> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const ref = this.#o.store.byKey(key);
    if (!ref || ref.log.highWatermark >= offset) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        offset,
        resolve,
        reject,
        timer: setTimeout(() => {
          const list = this.#waiters.get(key) ?? [];
          const i = list.indexOf(waiter);
          if (i !== -1) list.splice(i, 1);
          reject(
            new YakError(
              "TIMEOUT",
              `replicas did not confirm offset ${offset - 1} of ${key} in ${timeoutMs} ms (in sync: ${this.#isr})`,
            ),
          );
        }, timeoutMs),
      };
      const list = this.#waiters.get(key);
      if (list) list.push(waiter);
      else this.#waiters.set(key, [waiter]);
    });
  }

  /**
   * The in-sync set this leader wants now: followers silent or behind for
   * longer than the lag limit leave; followers at the high watermark join.
   * Returns null when nothing should change.
   */
  desiredIsr(liveFollowers: readonly number[]): number[] | null {
    const now = Date.now();
    const next = new Set(this.#isr);
    next.add(this.selfId);
    for (const id of this.#isr) {
      if (id === this.selfId) continue;
      if (now - (this.#lastCaughtUp.get(id) ?? 0) > this.#o.replicaLagMs) {
        next.delete(id);
      }
    }
    for (const id of liveFollowers) {
      if (next.has(id)) continue;
      const offsets = this.#fetched.get(id);
      if (
        !offsets || now - (this.#lastFetch.get(id) ?? 0) > this.#o.replicaLagMs
      ) continue;
      let atHw = true;
      for (const ref of this.#o.store.all()) {
        if ((offsets.get(ref.key) ?? 0) < ref.log.highWatermark) {
          atHw = false;
          break;
        }
      }
      if (atHw) next.add(id);
    }
    const sorted = [...next].sort((a, b) => a - b);
    return sorted.join() === [...this.#isr].sort((a, b) => a - b).join() ? null : sorted;
  }

  /** Followers that fetched recently, with their lag, for status. */
  followers(): {
    id: number;
    lastFetchMsAgo: number;
    caughtUpMsAgo: number;
    inSync: boolean;
  }[] {
    const now = Date.now();
    return [...this.#lastFetch.keys()].sort((a, b) => a - b).map((id) => ({
      id,
      lastFetchMsAgo: now - this.#lastFetch.get(id)!,
      caughtUpMsAgo: now - (this.#lastCaughtUp.get(id) ?? 0),
      inSync: this.#isr.includes(id),
    }));
  }

  /** Fails every waiter: this broker no longer leads. */
  stop(err: YakError): void {
    this.#stopped = err;
    for (const list of this.#waiters.values()) {
      for (const w of list) {
        clearTimeout(w.timer);
        w.reject(err);
      }
    }
    this.#waiters.clear();
  }
}
