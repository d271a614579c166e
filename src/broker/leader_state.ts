/**
 * What a leader tracks about its followers: how far each has fetched, when
 * each was last caught up, the high watermark that follows, the acks=all
 * waiters, and when a follower should leave or join the in-sync set.
 *
 * The rules are Kafka's (ReplicaManager / Partition, KIP-497):
 * - A follower is caught up at the time of a fetch that reached the leader's
 *   log end; or, under steady load, at the time of its previous fetch when
 *   this fetch reached the log end the leader had then. A follower not
 *   caught up within `replicaLagMs` leaves the in-sync set, unless each of
 *   its fetches still copies more (a burst the leader cannot serve as fast
 *   as it takes it): that one leaves after {@link COPYING_LAG_FACTOR} times
 *   as long, Kafka's 30 s with the default.
 * - The high watermark is the lowest log end among the "maximal" in-sync set
 *   (the committed set plus additions the zookeeper may already have
 *   committed) and the followers that are caught up but not yet in the set.
 *   Counting those is what lets a follower join under continuous load: the
 *   high watermark waits for it, so its position reaches it.
 * - A follower joins once it is caught up and at or past the high watermark
 *   on every partition, so a new member holds everything acknowledged.
 * - acks=all is answered only while the committed set has at least
 *   `minInsyncReplicas` brokers, so no acknowledged record has one copy.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { Deadlines } from "../deadlines.ts";
import { YakError } from "../errors.ts";
import type { TopicStore } from "./topic_store.ts";

interface Waiter {
  offset: number;
  minIsr: number;
  /** Waits for the low watermark (every in-sync replica's log start), not the high watermark. */
  logStart?: boolean;
  /** Monotonic ms when it times out (kept when a new leader state of this broker adopts it). */
  deadlineMs: number;
  resolve: () => void;
  reject: (e: YakError) => void;
  /** The partition it waits on. */
  key: string;
}

interface Follower {
  /** Partition key -> the follower's log end, as of its last fetch. */
  fetched: Map<string, number>;
  /** Partition key -> the leader's log end when that fetch arrived. */
  leaderEndAtFetch: Map<string, number>;
  /** Partition key -> the follower's log start, as of its last fetch (absent: 0). */
  logStarts: ReadonlyMap<string, number>;
  lastFetchMs: number;
  lastCaughtUpMs: number;
  /** The last fetch at which it had moved on, since the one before, on a partition it is behind on. */
  lastProgressMs: number;
  /** Its last fetch reached the leader's log end, or the end the leader had at its fetch before. */
  keepingUp: boolean;
  /** The follower said its last write failed (e.g. a full disk). */
  failing: boolean;
  /**
   * The share of recent time (an average over about half `replicaLagMs`) in
   * which this follower alone held the high watermark below where another
   * in-sync follower had already copied, from 0 to 1 (see desiredIsr).
   */
  holdShare: number;
  /** When holdShare was last sampled (-Infinity: never). */
  holdSampledMs: number;
}

/**
 * How many times `replicaLagMs` a member not caught up stays while it keeps
 * copying (its log end moving on at every fetch). A burst of large records
 * keeps healthy followers behind the leader's moving end for as long as it
 * lasts, since the leader's CPU, not theirs, sets their pace: 1000 records of
 * 500 KB through kcat took 8-16 s here (docs/ARCHITECTURE.md), and at 10 s a
 * follower left mid-burst. One that stops fetching or copying still leaves at
 * `replicaLagMs` (a leader cut from its followers must not wait longer).
 */
export const COPYING_LAG_FACTOR = 3;

/**
 * A follower that held the high watermark back alone for more than this share
 * of the recent window leaves the in-sync set (see desiredIsr).
 */
const HOLD_SHARE_LIMIT = 0.8;

/** Options of {@link LeaderState}. */
export interface LeaderStateOptions {
  selfId: number;
  epoch: number;
  store: TopicStore;
  isr: number[];
  replicaLagMs: number;
  /**
   * How long a caught-up follower outside the set may keep the high
   * watermark waiting since its last fetch (a long poll waits up to
   * replicaFetchWaitMs at the leader, so a bit more than that).
   */
  joinWaitMs: number;
  /** Called when a high watermark moves (to wake long polls). */
  onHwChange: () => void;
  /** Brokers the zookeeper knows, alive or not: a min.insync.replicas above it cannot be met by waiting. */
  brokersKnown?: () => number;
  /** The monotonic clock (injectable for tests). */
  clock?: () => number;
}

/**
 * The leader's view of replication for one epoch.
 *
 * @example
 * ```ts ignore
 * const state = new LeaderState({ selfId: 1, epoch: 3, store, isr: [1, 2, 3], replicaLagMs: 3000, joinWaitMs: 600,
 *   onHwChange });
 * state.followerFetched(2, new Map([["t/0", 120]]));
 * await state.waitForHw("t/0", 120, 10_000, 2);
 * ```
 */
export class LeaderState {
  readonly selfId: number;
  readonly epoch: number;
  readonly #o: LeaderStateOptions;
  readonly #now: () => number;
  #isr: number[];
  /** Additions proposed to the zookeeper and not yet seen in a lease. */
  #pendingAdds: number[] = [];
  readonly #followers = new Map<number, Follower>();
  readonly #waiters = new Map<string, Waiter[]>();
  /** When each waiter times out: one timer for them all (deadlines.ts), not one set and cleared per produce. */
  readonly #deadlines = new Deadlines<Waiter>((w) => this.#timedOut(w));
  #stopped: YakError | null = null;
  /** The state that took over this one's waiters (the same broker, named leader again). */
  #successor: LeaderState | null = null;

  constructor(opts: LeaderStateOptions) {
    this.#o = opts;
    this.#now = opts.clock ?? monotonicMs;
    this.selfId = opts.selfId;
    this.epoch = opts.epoch;
    this.#isr = [...opts.isr];
    // Every follower in the set gets a full lag period to show up.
    for (const id of opts.isr) {
      if (id !== this.selfId) this.#follower(id).lastCaughtUpMs = this.#now();
    }
  }

  /** The committed in-sync set (from the newest lease). */
  get isr(): readonly number[] {
    return this.#isr;
  }

  /** The committed set plus additions that may be committed already (KIP-497's "maximal ISR"). */
  get maximalIsr(): readonly number[] {
    return [...new Set([...this.#isr, ...this.#pendingAdds])].sort((a, b) => a - b);
  }

  #follower(id: number): Follower {
    let f = this.#followers.get(id);
    if (!f) {
      f = {
        fetched: new Map(),
        leaderEndAtFetch: new Map(),
        logStarts: new Map(),
        lastFetchMs: -Infinity,
        lastCaughtUpMs: -Infinity,
        lastProgressMs: -Infinity,
        keepingUp: false,
        failing: false,
        holdShare: 0,
        holdSampledMs: -Infinity,
      };
      this.#followers.set(id, f);
    }
    return f;
  }

  /** Adopts the in-sync set from a newer lease and re-derives every watermark. */
  setIsr(isr: number[]): void {
    const now = this.#now();
    for (const id of isr) {
      // A member the zookeeper added (or kept) gets a lag period to fetch.
      if (id !== this.selfId && !this.#isr.includes(id)) {
        const f = this.#follower(id);
        f.lastCaughtUpMs = Math.max(f.lastCaughtUpMs, now);
        // A member starts with a clean record: what it held back before it left does not count again.
        f.holdShare = 0;
        f.holdSampledMs = now;
      }
    }
    for (const id of this.#isr) {
      // Removed by the zookeeper (dead, or leaving): the high watermark stops waiting for it now.
      if (!isr.includes(id)) this.#follower(id).lastCaughtUpMs = -Infinity;
    }
    this.#isr = [...isr];
    this.#pendingAdds = [];
    this.#updateAll();
  }

  /**
   * Before proposing `wanted` to the zookeeper: from now until a lease
   * answers, the high watermark also waits for the members being added,
   * because the zookeeper may commit them (and elect one) before we hear back.
   */
  proposing(wanted: readonly number[]): void {
    const adds = wanted.filter((id) => !this.#isr.includes(id));
    this.#pendingAdds = [...new Set([...this.#pendingAdds, ...adds])];
  }

  /**
   * Records a follower's fetch: its log end on every partition it asked
   * about, whether its writes are failing, and its log starts.
   */
  followerFetched(
    followerId: number,
    offsets: Map<string, number>,
    failing = false,
    logStarts: ReadonlyMap<string, number> = new Map(),
  ): void {
    const now = this.#now();
    const f = this.#follower(followerId);
    let caughtUpAt = now;
    // It moved on since its last fetch on some partition it is behind on (a fetch's bytes are shared out, so with
    // large records some get none), and names every partition (one it never made is no progress: its writes
    // failing say so too, see `failing`).
    let moved = false;
    let missing = false;
    const ends = new Map<string, number>();
    for (const ref of this.#o.store.all()) {
      const end = ref.log.logEndOffset;
      ends.set(ref.key, end);
      const at = offsets.get(ref.key) ?? 0;
      if (at >= end) continue;
      if (!offsets.has(ref.key)) missing = true;
      else if (at > (f.fetched.get(ref.key) ?? Infinity)) moved = true;
      if (at >= (f.leaderEndAtFetch.get(ref.key) ?? Infinity)) caughtUpAt = Math.min(caughtUpAt, f.lastFetchMs);
      else caughtUpAt = -Infinity;
    }
    f.failing = failing;
    if (!failing && caughtUpAt > f.lastCaughtUpMs) f.lastCaughtUpMs = caughtUpAt;
    if (!failing && moved && !missing) f.lastProgressMs = now;
    f.keepingUp = !failing && caughtUpAt > -Infinity;
    f.fetched = offsets;
    f.logStarts = logStarts;
    f.leaderEndAtFetch = ends;
    f.lastFetchMs = now;
    this.#updateAll();
  }

  #caughtUp(f: Follower, now: number): boolean {
    return !f.failing && now - f.lastCaughtUpMs <= this.#o.replicaLagMs;
  }

  /** A member not caught up that still copies at every fetch, within {@link COPYING_LAG_FACTOR} times the limit. */
  #copying(f: Follower, now: number): boolean {
    const lag = this.#o.replicaLagMs;
    return !f.failing && now - f.lastProgressMs <= lag && now - f.lastCaughtUpMs <= COPYING_LAG_FACTOR * lag;
  }

  /** The followers the high watermark waits for. */
  #hwMembers(now: number): number[] {
    const out = new Set(this.maximalIsr);
    for (const [id, f] of this.#followers) {
      // A caught-up follower not in the set yet is waited for only while it
      // keeps fetching: one that just started (JIT, a big catch-up write)
      // stalled acks=all for 585 ms in a rolling restart before this.
      if (this.#caughtUp(f, now) && now - f.lastFetchMs <= this.#o.joinWaitMs) out.add(id);
    }
    out.delete(this.selfId);
    return [...out];
  }

  #updateAll(): void {
    const members = this.#hwMembers(this.#now());
    for (const ref of this.#o.store.all()) this.#updateHw(ref.key, members);
    this.#settleWaiters();
  }

  /** Re-derives one partition's high watermark (after an append on the leader). */
  updateHw(key: string): void {
    this.#updateHw(key, this.#hwMembers(this.#now()));
  }

  #updateHw(key: string, members: number[]): void {
    const ref = this.#o.store.byKey(key);
    if (!ref) return;
    let hw = ref.log.logEndOffset;
    for (const id of members) {
      hw = Math.min(hw, this.#followers.get(id)?.fetched.get(key) ?? 0);
    }
    const before = ref.log.highWatermark;
    ref.log.highWatermark = hw; // the setter never moves it back
    if (ref.log.highWatermark === before) return;
    this.#settle(key);
    this.#o.onHwChange();
  }

  #settleWaiters(): void {
    for (const key of [...this.#waiters.keys()]) this.#settle(key);
  }

  /** Answers the acks=all waiters of a partition whose offset the high watermark passed. */
  #settle(key: string): void {
    const list = this.#waiters.get(key);
    const ref = this.#o.store.byKey(key);
    if (!list || !ref) return;
    const keep: Waiter[] = [];
    const low = list.some((w) => w.logStart) ? this.lowWatermark(key) : 0;
    for (const w of list) {
      if (w.offset > (w.logStart ? low : ref.log.highWatermark)) {
        keep.push(w);
        continue;
      }
      this.#deadlines.delete(w);
      // The high watermark may have passed because the set shrank: then the
      // record may be on fewer brokers than promised (Kafka's
      // NOT_ENOUGH_REPLICAS_AFTER_APPEND). The producer retries; its retry is
      // a duplicate and is answered once the set is large enough again.
      if (this.#isr.length < w.minIsr) w.reject(this.notEnoughReplicas(w.minIsr, key, true));
      else w.resolve();
    }
    if (keep.length > 0) this.#waiters.set(key, keep);
    else this.#waiters.delete(key);
  }

  /**
   * The error for acks=all to partition `key` while the in-sync set is
   * smaller than `minIsr`; `afterAppend` when the batch is in the log
   * already (Kafka's error 20, so a client knows a retry may store it twice
   * unless it is idempotent).
   */
  notEnoughReplicas(minIsr: number, key: string, afterAppend = false): YakError {
    const known = this.#o.brokersKnown?.() ?? 0;
    // More than the cluster has: no follower catching up helps, the topic's config (or the cluster) must change.
    const topic = key.slice(0, key.lastIndexOf("/"));
    const advice = known > 0 && minIsr > known
      ? `the cluster has ${known} broker(s), so acks=all cannot succeed until the topic's min.insync.replicas is ` +
        `lowered (yak topics --alter ${topic} --config min.insync.replicas=${known}) or brokers are added`
      : "acks=all waits until a follower catches up (use acks=1 to accept one copy)";
    return new YakError(
      afterAppend ? "NOT_ENOUGH_REPLICAS_AFTER_APPEND" : "NOT_ENOUGH_REPLICAS",
      `${afterAppend ? "appended, but " : ""}only ${this.#isr.length} broker(s) in sync (${
        this.#isr.join(", ")
      }), min.insync.replicas is ${minIsr}; ${advice}`,
      { isr: this.#isr, minInsyncReplicas: minIsr },
    );
  }

  /**
   * Resolves once the partition's high watermark reaches `offset` while at
   * least `minIsr` brokers are in sync (acks=all).
   */
  waitForHw(key: string, offset: number, timeoutMs: number, minIsr = 1): Promise<void> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const ref = this.#o.store.byKey(key);
    if (!ref) return Promise.resolve();
    if (ref.log.highWatermark >= offset) {
      return this.#isr.length < minIsr ? Promise.reject(this.notEnoughReplicas(minIsr, key, true)) : Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.#addWaiter(key, { offset, minIsr, deadlineMs: monotonicMs() + timeoutMs, resolve, reject });
    });
  }

  /**
   * The partition's low watermark: the lowest log start of this leader and
   * the in-sync followers (Kafka's, over the replicas a new leader may come
   * from), as of their last fetches.
   */
  lowWatermark(key: string): number {
    let low = this.#o.store.byKey(key)?.log.logStartOffset ?? 0;
    for (const id of this.maximalIsr) {
      if (id !== this.selfId) low = Math.min(low, this.#followers.get(id)?.logStarts.get(key) ?? 0);
    }
    return low;
  }

  /**
   * Resolves once every in-sync replica's log start has reached `offset`
   * (records deleted: then no later leader serves them).
   */
  waitForLogStart(key: string, offset: number, timeoutMs: number): Promise<void> {
    if (this.#stopped) return Promise.reject(this.#stopped);
    if (this.lowWatermark(key) >= offset) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#addWaiter(key, {
        offset,
        minIsr: 1,
        logStart: true,
        deadlineMs: monotonicMs() + timeoutMs,
        resolve,
        reject,
      });
    });
  }

  #addWaiter(key: string, w: Omit<Waiter, "key">): void {
    const waiter: Waiter = { ...w, key };
    this.#deadlines.add(waiter, w.deadlineMs);
    const list = this.#waiters.get(key);
    if (list) list.push(waiter);
    else this.#waiters.set(key, [waiter]);
  }

  #timedOut(w: Waiter): void {
    const list = this.#waiters.get(w.key) ?? [];
    const i = list.indexOf(w);
    if (i !== -1) list.splice(i, 1);
    w.reject(
      new YakError(
        "TIMEOUT",
        w.logStart
          ? `replicas did not move the log start of ${w.key} to ${w.offset} in time (in sync: ${this.#isr})`
          : `replicas did not confirm offset ${w.offset - 1} of ${w.key} in time (in sync: ${this.#isr})`,
      ),
    );
  }

  /**
   * Takes over the acks=all waiters of this broker's previous leader state
   * (a new lease named this broker again): they are answered as this state's
   * high watermarks move, not left to time out.
   */
  adoptWaiters(previous: LeaderState): void {
    for (const [key, list] of previous.#waiters) {
      for (const w of list) this.#addWaiter(key, w);
    }
    previous.#waiters.clear();
    previous.#deadlines.close();
    previous.#successor = this;
    this.#settleWaiters();
  }

  /** Whether this broker led without a break from this state to `current` (the same, or adopted on). */
  continuesAs(current: LeaderState): boolean {
    if (this === current) return true;
    return this.#successor !== null && this.#successor.continuesAs(current);
  }

  /**
   * Answers every waiter with `err` at once, without stopping: the lease
   * lapsed, so no acknowledgement may come from here, and Kafka clients must
   * look for the new leader now, not at their request timeout.
   */
  failWaiters(err: YakError): void {
    for (const list of this.#waiters.values()) {
      for (const w of list) {
        this.#deadlines.delete(w);
        w.reject(err);
      }
    }
    this.#waiters.clear();
  }

  /**
   * The in-sync set this leader wants now, or null when nothing should
   * change: members not caught up within the lag limit (or failing writes)
   * leave; live followers caught up and at the high watermark join.
   */
  desiredIsr(liveFollowers: readonly number[]): number[] | null {
    const now = this.#now();
    // Watermarks first: time alone can change who the high watermark waits for.
    this.#updateAll();
    const next = new Set(this.#isr);
    next.add(this.selfId);
    this.#sampleHolding(now);
    for (const id of this.#isr) {
      if (id === this.selfId) continue;
      const f = this.#follower(id);
      // Two ways out. Not caught up for replicaLagMs (dead, stuck, or hopelessly behind), as Kafka; one that
      // still copies at every fetch, for COPYING_LAG_FACTOR times that (Kafka's 30 s by default). Or
      // holding the high watermark back alone most of the time while another follower keeps up: a
      // follower behind a slow link reaches, at every fetch, what the leader had at its previous one
      // (acks=all producers wait for it, so the log grows only as fast as it copies), so it never counted
      // as lagging, and acks=all for everyone ran at its pace (39,592 -> 1,746 records/s behind 2 Mbit/s).
      const staying = this.#caughtUp(f, now) || this.#copying(f, now);
      if (!staying || f.holdShare > HOLD_SHARE_LIMIT) next.delete(id);
    }
    for (const id of liveFollowers) {
      // Only followers outside the set join: one this check just removed stays out.
      if (next.has(id) || id === this.selfId || this.#isr.includes(id)) continue;
      const f = this.#followers.get(id);
      if (!f || !this.#caughtUp(f, now)) continue;
      let atHw = true;
      for (const ref of this.#o.store.all()) {
        if ((f.fetched.get(ref.key) ?? 0) < ref.log.highWatermark) {
          atHw = false;
          break;
        }
      }
      if (atHw) next.add(id);
    }
    const sorted = [...next].sort((a, b) => a - b);
    return sorted.join() === [...this.#isr].sort((a, b) => a - b).join() ? null : sorted;
  }

  /**
   * Samples, for each in-sync follower, whether it alone holds some
   * partition's high watermark back: below the leader's log end and below
   * every other in-sync follower, each of which had everything the leader had
   * at its last fetch. Followers copying at the same pace take
   * turns at this for moments (the one whose fetch arrives second); a follower
   * behind a slow link does it nearly all the time.
   */
  #sampleHolding(now: number): void {
    const followers = this.#isr.filter((id) => id !== this.selfId);
    const windowMs = this.#o.replicaLagMs / 2;
    for (const id of followers) {
      const f = this.#follower(id);
      // Only others that keep up count: in a burst the leader serves more slowly than it takes, no follower is
      // caught up and one of two is always a little behind the other (a CI run dropped one that way).
      const others = followers.filter((o) => o !== id).map((o) => this.#follower(o)).filter((o) => o.keepingUp);
      let holding = false;
      for (const ref of others.length === 0 ? [] : this.#o.store.all()) {
        const mine = f.fetched.get(ref.key) ?? 0;
        if (mine >= ref.log.logEndOffset) continue;
        // ...and each of them had all the leader had when it last fetched. Behind a slow link the log grows only
        // as fast as the slow follower copies (acks=all waits for it), so the other has it all; in a burst the log
        // grows whatever they copy, and a healthy follower a fetch behind the other is copying, not holding it
        // back (a CI run dropped one that way: 1000 records of 500 KB, the longest lag 9.4 s).
        const ahead = (o: Follower) => {
          const at = o.fetched.get(ref.key) ?? 0;
          return at > mine && at >= (o.leaderEndAtFetch.get(ref.key) ?? Infinity);
        };
        if (others.every(ahead)) {
          holding = true;
          break;
        }
      }
      const dt = f.holdSampledMs === -Infinity ? 0 : Math.max(0, now - f.holdSampledMs);
      const weight = 1 - Math.exp(-dt / windowMs);
      f.holdShare = f.holdShare * (1 - weight) + (holding ? weight : 0);
      f.holdSampledMs = now;
    }
  }

  /** Followers that fetched in this epoch, with their lag, for status. */
  followers(): {
    id: number;
    lastFetchMsAgo: number;
    caughtUpMsAgo: number;
    inSync: boolean;
    failing: boolean;
    /** Each partition's log end on that follower as of its last fetch (`topic/partition` -> offset). */
    logEnds: Record<string, number>;
  }[] {
    const now = this.#now();
    return [...this.#followers.entries()]
      .filter(([, f]) => f.lastFetchMs > -Infinity)
      .sort(([a], [b]) => a - b)
      .map(([id, f]) => ({
        id,
        lastFetchMsAgo: Math.round(now - f.lastFetchMs),
        caughtUpMsAgo: f.lastCaughtUpMs === -Infinity ? -1 : Math.round(now - f.lastCaughtUpMs),
        inSync: this.#isr.includes(id),
        failing: f.failing,
        logEnds: Object.fromEntries(f.fetched),
      }));
  }

  /** Each follower that fetched in this epoch -> partition key -> its log end as of that fetch (for metrics). */
  fetchedOffsets(): Map<number, ReadonlyMap<string, number>> {
    const out = new Map<number, ReadonlyMap<string, number>>();
    for (const [id, f] of this.#followers) if (f.lastFetchMs > -Infinity) out.set(id, f.fetched);
    return out;
  }

  /** Fails every waiter: this broker no longer leads. */
  stop(err: YakError): void {
    this.#stopped = err;
    this.failWaiters(err);
    this.#deadlines.close();
  }
}
