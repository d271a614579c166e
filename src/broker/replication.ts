/**
 * Replication, both sides. The leader answers "what follows my log end" with
 * its stored bytes (long-polled) and "where does epoch E end"; the follower
 * truncates where its log parts from the leader's, then appends the leader's
 * bytes verbatim so replicas stay byte-identical.
 *
 * @module
 */
import type { EpochEntry } from "../log/epoch_cache.ts";
import { toYakError, YakError } from "../errors.ts";
import { Connection } from "../protocol/connection.ts";

import type { BrokerContext, LeaderInfo } from "./context.ts";
import type { PartitionOps, ReadSpec } from "./partition_ops.ts";
import { CLUSTER_KEY } from "./metadata.ts";

/** One partition's chunk in a replication response, as the native codec frames it. */
interface ReplicaPart {
  k: string;
  base: number;
  count: number;
  /** Bytes of this part in the reply's attachment (parts follow each other in order). */
  len: number;
  epochs: EpochEntry[];
  /** Where the leader's segments start inside this part: the follower rolls there too. */
  rolls: number[];
}

/** A follower's fetch, decoded. */
export interface FollowerFetch {
  followerId: number;
  epoch: number;
  /** Partition key -> the follower's log end. */
  offsets: Map<string, number>;
  /** Partition key -> the high watermark the follower knows. */
  knownHw: Map<string, number>;
  maxBytes: number;
  maxWaitMs: number;
  /** The follower's last append failed (a full disk), or one of its logs is fenced. */
  failing: boolean;
  /** Partitions whose log is fenced at the follower: nothing is sent for them until it restarts. */
  fenced?: ReadonlySet<string>;
}

/** One partition's stored bytes for a follower. */
export interface FollowerPart {
  key: string;
  base: number;
  count: number;
  chunks: Uint8Array[];
  byteLength: number;
  epochs: EpochEntry[];
  rolls: number[];
}

/** The answer to a follower's fetch. */
export interface FollowerFetchResult {
  epoch: number;
  parts: FollowerPart[];
  /** Partition key -> the leader's high watermark. */
  hw: Record<string, number>;
  /** Partition key -> where a follower ahead of the leader must cut its log. */
  truncate: Record<string, number>;
  /** Partition key -> the leader's log start: a follower deletes (or skips) what lies below it. */
  logStart: Record<string, number>;
}

/** Where a leader's epoch ends in a partition (for a follower's truncation). */
export interface EpochEnd {
  epoch: number;
  endOffset: number;
}

/**
 * The leader side of replication: answers followers' fetches with stored
 * bytes through the same long-poll read consumers use, and tells a follower
 * where an epoch ends.
 *
 * @example
 * ```ts ignore
 * const replication = new Replication(broker, partitionOps);
 * const res = await replication.serveFetch({ followerId: 2, epoch: 4, offsets, knownHw, maxBytes, maxWaitMs: 200, failing: false });
 * ```
 */
export class Replication {
  readonly #b: BrokerContext;
  readonly #partitions: PartitionOps;

  constructor(b: BrokerContext, partitions: PartitionOps) {
    this.#b = b;
    this.#partitions = partitions;
  }

  #checkEpoch(epoch: number): void {
    const b = this.#b;
    const mine = b.epoch();
    if (epoch !== mine || b.role() !== "leader") {
      // Either side may be behind; both refresh their lease and try again.
      throw new YakError(
        "STALE_EPOCH",
        `broker ${b.opts.id} leads epoch ${b.role() === "leader" ? mine : "none"}, request is for epoch ${epoch}`,
        { epoch: mine },
      );
    }
  }

  /** Sends what follows each of the follower's log ends, waiting up to `maxWaitMs` when there is nothing new. */
  async serveFetch(f: FollowerFetch): Promise<FollowerFetchResult> {
    const b = this.#b;
    this.#checkEpoch(f.epoch);
    const leader = b.requireLeader();
    leader.followerFetched(f.followerId, f.offsets, f.failing);
    const truncate: Record<string, number> = {};
    const specs: ReadSpec[] = [];
    for (const ref of b.store.all()) {
      // Fenced here or there: no bytes to send, or none it can take (sent anyway, they came back at once
      // with every poll, and the follower's fetches spun).
      if (ref.log.fenced || f.fenced?.has(ref.key)) continue;
      const from = f.offsets.get(ref.key) ?? 0;
      if (from > ref.log.logEndOffset) truncate[ref.key] = ref.log.logEndOffset;
      // Below our log start the follower starts over there (it learns where from `logStart`).
      else if (from >= ref.log.logStartOffset) specs.push({ key: ref.key, log: ref.log, from });
    }
    const hwMoved = () => b.store.all().some((ref) => ref.log.highWatermark > (f.knownHw.get(ref.key) ?? -1));
    const reads = await this.#partitions.readPartitions(specs, {
      maxBytes: f.maxBytes,
      maxWaitMs: f.maxWaitMs,
      upTo: "logEnd",
      wakeIf: () => Object.keys(truncate).length > 0 || hwMoved(),
      // A damaged record here holds only its partition back (this leader hands over to heal it).
      damaged: new Map(),
      recheck: () => {
        if (b.role() !== "leader" || b.epoch() !== leader.epoch) this.#checkEpoch(f.epoch);
      },
    });
    const hw: Record<string, number> = {};
    const logStart: Record<string, number> = {};
    for (const ref of b.store.all()) {
      hw[ref.key] = ref.log.highWatermark;
      if (ref.log.logStartOffset > 0) logStart[ref.key] = ref.log.logStartOffset;
    }
    return {
      epoch: leader.epoch,
      truncate,
      hw,
      logStart,
      parts: reads.map(({ spec, read }) => ({
        key: spec.key,
        base: read.baseOffset,
        count: read.count,
        chunks: read.chunks,
        byteLength: read.byteLength,
        epochs: spec.log.epochs.within(read.baseOffset, read.baseOffset + read.count),
        rolls: spec.log.segmentBasesIn(read.baseOffset, read.baseOffset + read.count),
      })),
    };
  }

  /**
   * For each partition and the follower's last epoch there, the largest epoch
   * the leader has at or below it and where it ends.
   */
  epochEnds(epoch: number, asked: Map<string, number>): Record<string, EpochEnd> {
    this.#checkEpoch(epoch);
    const ends: Record<string, EpochEnd> = {};
    for (const [key, e] of asked) {
      const ref = this.#b.store.byKey(key);
      ends[key] = ref ? ref.log.epochs.endOffsetFor(e, ref.log.logEndOffset) : { epoch: -1, endOffset: 0 };
    }
    return ends;
  }
}

/**
 * The follower side: one instance per (leader, epoch), stopped on any lease change.
 *
 * @example
 * ```ts ignore
 * const fetcher = new ReplicaFetcher(broker, { id: 1, host: "127.0.0.1", port: 9092, epoch: 4 });
 * fetcher.start();
 * await fetcher.stop();
 * ```
 */
export class ReplicaFetcher {
  readonly leader: LeaderInfo;
  readonly #b: BrokerContext;
  #stopped = false;
  #conn: Connection | null = null;
  #loop: Promise<void> | null = null;
  /**
   * Our last append failed (a full disk): the leader is told with every
   * fetch, so it drops us from the in-sync set at once instead of stalling
   * acks=all on a replica that cannot keep up.
   */
  #writeFailing = false;

  constructor(b: BrokerContext, leader: LeaderInfo) {
    this.#b = b;
    this.leader = leader;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#conn?.close();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const b = this.#b;
    let reconciled = false;
    let lastError = "";
    let attempts = 0;
    while (!this.#stopped) {
      try {
        this.#conn = await Connection.open(this.leader.host, this.leader.port, {
          connectTimeoutMs: b.opts.sessionTimeoutMs,
          maxFrameBytes: b.opts.maxFetchBytes * 8 + 1024 * 1024,
        });
        if (!reconciled) {
          await this.#truncateToLeader();
          reconciled = true;
        }
        while (!this.#stopped) await this.#fetchOnce();
      } catch (err) {
        if (this.#stopped) break;
        const yerr = toYakError(err);
        if (yerr.message !== lastError) {
          b.log.write("replication_retry", {
            leader: this.leader.id,
            epoch: this.leader.epoch,
            error: yerr.message,
          });
          lastError = yerr.message;
        }
        // Right after a failover the new leader may not have its lease yet:
        // retry soon at first (acks=all waits for us), then back off.
        attempts++;
        await new Promise((r) => setTimeout(r, attempts <= 10 ? 20 : b.opts.heartbeatMs / 2));
      } finally {
        this.#conn?.close();
        this.#conn = null;
      }
    }
  }

  /** Cuts whatever this replica holds past the point where the leader's log differs. */
  async #truncateToLeader(): Promise<void> {
    const b = this.#b;
    const epochs: Record<string, number> = {};
    for (const ref of b.store.all()) {
      // A fenced log cannot be cut: it is reconciled after the restart that recovers it.
      if (ref.log.logEndOffset > 0 && !ref.log.fenced) epochs[ref.key] = ref.log.epochs.lastEpoch;
    }
    const res = await this.#conn!.request(
      { type: "epoch_end", epoch: this.leader.epoch, epochs },
      b.opts.requestTimeoutMs,
    );
    const ends = res.ends as Record<
      string,
      { epoch: number; endOffset: number }
    >;
    for (const [key, end] of Object.entries(ends)) {
      const ref = b.store.byKey(key);
      if (!ref || ref.log.fenced) continue;
      const log = ref.log;
      const mine = end.epoch === -1 ? { endOffset: 0 } : log.epochs.endOffsetFor(end.epoch, log.logEndOffset);
      const cut = Math.min(end.endOffset, mine.endOffset, log.logEndOffset);
      if (cut < log.logEndOffset) {
        const before = log.logEndOffset;
        await log.truncateTo(cut);
        b.log.write("truncated", {
          partition: key,
          from: before,
          to: cut,
          leader: this.leader.id,
          epoch: this.leader.epoch,
        });
        if (key === CLUSTER_KEY) await b.store.replay();
      }
    }
    b.log.write("following", {
      leader: this.leader.id,
      epoch: this.leader.epoch,
      logEndTotal: b.store.logEndTotal(),
    });
  }

  // deno-lint-ignore yak/max-function-lines
  async #fetchOnce(): Promise<void> {
    const b = this.#b;
    const offsets: Record<string, number> = {};
    const hw: Record<string, number> = {};
    const fenced: string[] = [];
    for (const ref of b.store.all()) {
      offsets[ref.key] = ref.log.logEndOffset;
      hw[ref.key] = ref.log.highWatermark;
      if (ref.log.fenced) fenced.push(ref.key);
    }
    const res = await this.#conn!.request({
      type: "replicate",
      brokerId: b.opts.id,
      epoch: this.leader.epoch,
      offsets,
      hw,
      maxBytes: b.opts.replicaFetchMaxBytes,
      maxWaitMs: b.opts.replicaFetchWaitMs,
      // Failing writes, a range cut to be copied again, or a fenced log: not in sync, say so.
      ...(this.#writeFailing || b.healing.size > 0 || fenced.length > 0 ? { failing: true } : {}),
      ...(fenced.length > 0 ? { fenced } : {}),
    }, b.opts.replicaFetchWaitMs + b.opts.requestTimeoutMs);
    if (this.#stopped) return;
    const truncate = res.truncate as Record<string, number>;
    for (const [key, to] of Object.entries(truncate)) {
      const log = b.store.byKey(key)?.log;
      if (log && !log.fenced && to < log.logEndOffset) {
        b.log.write("truncated", {
          partition: key,
          from: log.logEndOffset,
          to,
          reason: "ahead of the leader",
        });
        await log.truncateTo(to);
        if (key === CLUSTER_KEY) await b.store.replay();
      }
    }
    // The leader deleted old segments (retention): delete the same ones, or start over at its log start.
    for (const [key, start] of Object.entries((res.logStart ?? {}) as Record<string, number>)) {
      const log = b.store.byKey(key)?.log;
      if (!log || log.fenced || start <= log.logStartOffset) continue;
      if (log.logEndOffset < start) await log.resetTo(start, "behind the leader's log start");
      else await log.deleteSegmentsBefore(start, "the leader's log start");
    }
    const attachment = (res.attachment as Uint8Array | undefined) ?? new Uint8Array(0);
    let at = 0;
    const parts = (res.parts as ReplicaPart[]).map((part) => {
      const bytes = attachment.subarray(at, at + part.len);
      at += part.len;
      return { ...part, bytes };
    });
    // Metadata first: it may create the topics whose data follows.
    parts.sort((x, y) => (x.k === CLUSTER_KEY ? -1 : y.k === CLUSTER_KEY ? 1 : 0));
    let appended = false;
    for (const part of parts) {
      const ref = b.store.byKey(part.k);
      if (!ref || ref.log.fenced || part.base !== ref.log.logEndOffset) continue; // learned next round
      try {
        await ref.log.appendReplica(part.base, part.count, part.bytes, part.epochs, part.rolls ?? null);
      } catch (err) {
        if (!this.#writeFailing) {
          b.log.write("replica_write_failed", {
            partition: part.k,
            error: err instanceof Error ? err.message : String(err),
          });
        }
        this.#writeFailing = true;
        throw err;
      }
      if (this.#writeFailing) {
        this.#writeFailing = false;
        b.log.write("replica_writes_resumed", { partition: part.k });
      }
      if (part.k === CLUSTER_KEY) await b.store.applyLines(new TextDecoder().decode(part.bytes));
      appended = true;
    }
    for (
      const [key, mark] of Object.entries(res.hw as Record<string, number>)
    ) {
      const log = b.store.byKey(key)?.log;
      if (log) log.highWatermark = Math.min(mark, log.logEndOffset);
      if (log && b.healing.has(key)) b.healProgress(key, log.logEndOffset, mark);
    }
    if (appended || parts.length === 0) b.notifier.notify();
  }
}
