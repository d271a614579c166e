/**
 * The console's live feed. The zookeeper gathers the cluster's status on its
 * own timer, at most once per interval and only while someone watches, and
 * sends each snapshot to every viewer: ten open pages cost the brokers what
 * one does, and none costs anything once they close. Lease and membership
 * changes (an election, a death) are pushed at once from the zookeeper's own
 * memory, which asks no broker.
 *
 * @module
 */
import { assembleStatus, type ClusterStatus, type Probe, type ZookeeperStatus } from "../client/cluster_status.ts";
import type { BrokerInfo } from "../protocol/messages.ts";
import type { OpLogEntry } from "../op_log.ts";

/** Produced and consumed records per second at one moment. */
export interface RatePoint {
  /** Wall-clock ms. */
  t: number;
  produce: number;
  consume: number;
}

/** What every viewer gets on each update. */
export interface FeedSnapshot {
  /** Grows with every gather (pushes of zookeeper changes keep it). */
  seq: number;
  /** Wall-clock ms of the gather. */
  gatheredAt: number;
  status: ClusterStatus;
  /** Oldest first, at most `historyPoints`. */
  rates: RatePoint[];
  /** Newest first. */
  timeline: OpLogEntry[];
}

/** One connected viewer: `send` returns false when it cannot keep up (it is then dropped). */
export interface Viewer {
  send(data: string): boolean;
  close(): void;
}

/** Options of {@link StatusFeed}. */
export interface StatusFeedOptions {
  /** The zookeeper's part, from its memory. */
  zookeeper: () => ZookeeperStatus;
  /** Asks the brokers (the only part that costs them anything). */
  probe: (brokers: readonly BrokerInfo[]) => Promise<Map<number, Probe>>;
  timeline: () => Promise<OpLogEntry[]>;
  /** At most one gather per this many ms. */
  intervalMs: number;
  maxViewers: number;
  /** Rate points kept (at one per interval: the minutes the charts show). */
  historyPoints: number;
  /** Wall clock (injectable for tests). */
  now?: () => number;
}

/** Rates are measured over this many gathers. */
const RATE_WINDOW_GATHERS = 3;

interface Sample {
  recordsIn: number;
  recordsOut: number;
  at: number;
}

/**
 * Gathers while viewers are connected and fans the result out.
 *
 * @example
 * ```ts ignore
 * const feed = new StatusFeed({ zookeeper: () => zk.status(), probe: (b) => probeBrokers(b, 800),
 *   timeline: () => timeline.read(), intervalMs: 1000, maxViewers: 64, historyPoints: 180 });
 * const stop = feed.subscribe({ send: (data) => { console.log(data); return true; }, close() {} });
 * ```
 */
export class StatusFeed {
  readonly #o: StatusFeedOptions;
  readonly #now: () => number;
  readonly #viewers = new Set<Viewer>();
  #probes = new Map<number, Probe>();
  /** Whether the zookeeper called each broker alive when `#probes` were taken. */
  #aliveWhenProbed = new Map<number, boolean>();
  /** Per broker, its counters at the gathers of the last rate window, oldest first. */
  #samples = new Map<number, Sample[]>();
  #rates: RatePoint[] = [];
  #timeline: OpLogEntry[] = [];
  #seq = 0;
  #gatheredAt = 0;
  /** Monotonic-enough start of the last gather (wall ms). */
  #lastStart = -Infinity;
  #inflight: Promise<void> | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #pushTimer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Gathers so far (for tests and the page's footer). */
  gathers = 0;

  constructor(opts: StatusFeedOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  get viewers(): number {
    return this.#viewers.size;
  }

  /**
   * Adds a viewer; it gets the latest snapshot at once (when there is one)
   * and every later one. Returns what removes it. False when full.
   */
  subscribe(viewer: Viewer): (() => void) | null {
    if (this.#closed || this.#viewers.size >= this.#o.maxViewers) return null;
    this.#viewers.add(viewer);
    if (this.#seq > 0) this.#send(viewer, this.#encode());
    this.#schedule();
    return () => this.#drop(viewer);
  }

  /** The status, gathered now unless a gather started less than an interval ago. */
  async status(): Promise<ClusterStatus> {
    if (this.#now() - this.#lastStart >= this.#o.intervalMs) await this.#gather();
    else if (this.#inflight) await this.#inflight;
    return this.#snapshot().status;
  }

  /** The zookeeper's lease or members changed: viewers hear it now (from memory, no broker is asked). */
  zookeeperChanged(): void {
    if (this.#viewers.size === 0 || this.#seq === 0 || this.#pushTimer !== undefined || this.#closed) return;
    // A death and the election it causes come a few ms apart: one push for both.
    this.#pushTimer = setTimeout(async () => {
      // The operation log says why (an election, a death): read its tail too, it costs no broker anything.
      this.#timeline = await this.#o.timeline().catch(() => this.#timeline);
      this.#pushTimer = undefined;
      this.#broadcast();
    }, 20);
  }

  /** Stops the timer and ends every viewer's stream. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#pushTimer);
    for (const v of [...this.#viewers]) this.#drop(v);
  }

  #drop(viewer: Viewer): void {
    if (!this.#viewers.delete(viewer)) return;
    try {
      viewer.close();
    } catch { /* already closed */ }
    if (this.#viewers.size === 0) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #schedule(): void {
    if (this.#closed || this.#timer !== undefined || this.#inflight || this.#viewers.size === 0) return;
    const waitMs = Math.max(0, this.#lastStart + this.#o.intervalMs - this.#now());
    this.#timer = setTimeout(async () => {
      this.#timer = undefined;
      if (this.#viewers.size === 0 || this.#closed) return;
      await this.#gather();
      this.#broadcast();
      this.#schedule();
    }, waitMs);
  }

  /** Never rejects: a failed gather keeps the last probes (the timer must go on). */
  #gather(): Promise<void> {
    if (this.#inflight) return this.#inflight;
    this.#lastStart = this.#now();
    this.#inflight = (async () => {
      try {
        const zk = this.#o.zookeeper();
        this.#probes = await this.#o.probe(zk.brokers);
        this.#aliveWhenProbed = new Map(zk.brokers.map((b) => [b.id, b.alive]));
        this.#timeline = await this.#o.timeline().catch(() => this.#timeline);
        this.#gatheredAt = this.#now();
        this.#addRates(this.#gatheredAt);
        this.#seq++;
        this.gathers++;
      } catch {
        /* the next tick tries again */
      } finally {
        this.#inflight = null;
      }
    })();
    return this.#inflight;
  }

  /**
   * Records in and out per second: each answering broker's counters over the
   * last few gathers (one gather apart, batches landing just before or after
   * a sample made the rate swing by half), summed over brokers.
   */
  #addRates(at: number): void {
    const windowMs = this.#o.intervalMs * RATE_WINDOW_GATHERS + this.#o.intervalMs / 2;
    let produce = 0;
    let consume = 0;
    let measured = false;
    const next = new Map<number, Sample[]>();
    for (const probe of this.#probes.values()) {
      if (probe.outcome !== "answered" || !probe.view.traffic) continue;
      const { recordsIn, recordsOut } = probe.view.traffic;
      const id = probe.view.brokerId;
      const last = this.#samples.get(id)?.at(-1);
      // A counter that went down: the broker restarted and counts from zero.
      const restarted = last !== undefined && (recordsIn < last.recordsIn || recordsOut < last.recordsOut);
      // Samples from before a gap (nobody watched in between) would average over it.
      const kept = restarted ? [] : (this.#samples.get(id) ?? []).filter((x) => at - x.at <= windowMs && x.at < at);
      const base = kept[0];
      kept.push({ recordsIn, recordsOut, at });
      next.set(id, kept);
      if (!base) continue;
      const seconds = (at - base.at) / 1000;
      produce += (recordsIn - base.recordsIn) / seconds;
      consume += (recordsOut - base.recordsOut) / seconds;
      measured = true;
    }
    this.#samples = next;
    if (!measured) return;
    this.#rates.push({ t: at, produce: Math.round(produce), consume: Math.round(consume) });
    if (this.#rates.length > this.#o.historyPoints) this.#rates.splice(0, this.#rates.length - this.#o.historyPoints);
  }

  #snapshot(): FeedSnapshot {
    const zk = this.#o.zookeeper();
    // A broker the zookeeper declared dead since it was last asked: its answer is older than that word, so the
    // zookeeper's word stands (a death shows at once, not a gather later) until it is asked again.
    const probes = new Map(this.#probes);
    for (const b of zk.brokers) if (!b.alive && this.#aliveWhenProbed.get(b.id)) probes.delete(b.id);
    return {
      seq: this.#seq,
      gatheredAt: this.#gatheredAt,
      status: assembleStatus(zk, probes),
      rates: this.#rates,
      timeline: this.#timeline,
    };
  }

  #encode(): string {
    return JSON.stringify(this.#snapshot());
  }

  #broadcast(): void {
    if (this.#viewers.size === 0 || this.#seq === 0) return;
    const data = this.#encode();
    for (const v of [...this.#viewers]) this.#send(v, data);
  }

  #send(viewer: Viewer, data: string): void {
    let ok = false;
    try {
      ok = viewer.send(data);
    } catch { /* its stream is gone */ }
    if (!ok) this.#drop(viewer);
  }
}
