/**
 * Replication, both sides. The leader answers "what follows my log end" with
 * its stored bytes (long-polled) and "where does epoch E end"; the follower
 * truncates where its log parts from the leader's, then appends the leader's
 * bytes verbatim so replicas stay byte-identical. What travels between them,
 * and its checks, is replica_protocol.ts; the follower asks through a
 * LeaderEndpoint (leader_endpoint.ts), so it never sees a frame.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { monotonicMs } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { toYakError, YakError } from "../errors.ts";
import type { BrokerContext, LeaderInfo } from "./context.ts";
import { type LeaderEndpoint, type OpenLeaderEndpoint, RemoteLeaderEndpoint } from "./leader_endpoint.ts";
import type { PartitionOps, ReadSpec } from "./partition_ops.ts";
import { CLUSTER_KEY } from "./metadata.ts";
import type {
  EpochEnd,
  FollowerFetch,
  FollowerFetchResult,
  ReplicaFetchReply,
  ReplicaPart,
} from "./replica_protocol.ts";

/** How often a follower whose writes failed as the leader tries a probe write (see Replication's #probeWrites). */
const WRITE_PROBE_INTERVAL_MS = 1000;
/** A probe write's size: about what one fetch appends, so a disk with a few pages left does not pass for healed. */
const WRITE_PROBE_BYTES = 256 * 1024;
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
    leader.followerFetched(f.followerId, f.offsets, f.failing, f.logStarts);
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
    // Records deleted here (the log start moved): a DeleteRecords waits for the follower to move its own.
    // Only where it can (it has the partition and an open log), or it would be woken again at once.
    const startMoved = () =>
      f.logStarts !== undefined && b.store.all().some((ref) =>
        f.offsets.has(ref.key) && !f.fenced?.has(ref.key) &&
        ref.log.logStartOffset > (f.logStarts!.get(ref.key) ?? 0)
      );
    const reads = await this.#partitions.readPartitions(specs, {
      maxBytes: f.maxBytes,
      maxWaitMs: f.maxWaitMs,
      upTo: "logEnd",
      wakeIf: () => Object.keys(truncate).length > 0 || startMoved(),
      softWakeIf: hwMoved,
      softWakeMs: DEFAULTS.followerHwWakeMs,
      // A damaged record here holds only its partition back (this leader hands over to heal it).
      damaged: new Map(),
      recheck: () => {
        if (b.role() !== "leader" || b.epoch() !== leader.epoch) this.#checkEpoch(f.epoch);
      },
    });
    const hw: Record<string, number> = {};
    const logStart: Record<string, number> = {};
    const purged: Record<string, number> = {};
    for (const ref of b.store.all()) {
      hw[ref.key] = ref.log.highWatermark;
      if (ref.log.logStartOffset > 0) logStart[ref.key] = ref.log.logStartOffset;
      if (ref.log.purgedBelow > 0) purged[ref.key] = ref.log.purgedBelow;
    }
    return {
      epoch: leader.epoch,
      truncate,
      hw,
      logStart,
      purged,
      parts: reads.map(({ spec, read }) => ({
        key: spec.key,
        base: read.baseOffset,
        count: read.count,
        next: read.nextOffset,
        chunks: read.chunks,
        byteLength: read.byteLength,
        epochs: spec.log.epochs.within(read.baseOffset, read.nextOffset),
        rolls: spec.log.segmentBasesIn(read.baseOffset, read.nextOffset),
      })),
    };
  }

  /**
   * Where a reader's epoch ends in a partition (Kafka's OffsetsForLeaderEpoch,
   * KIP-320: a consumer checks its position after a leader change), from the
   * same epoch cache {@link epochEnds} answers followers from; on the leader
   * only, and FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH when the reader's
   * current leader epoch (-1: unchecked) is older or newer than this one.
   */
  readerEpochEnd(tp: { topic: string; partition: number }, epoch: number, currentLeaderEpoch: number): EpochEnd {
    const leader = this.#b.requireLeader();
    if (currentLeaderEpoch !== -1 && currentLeaderEpoch < leader.epoch) {
      throw new YakError(
        "FENCED_LEADER_EPOCH",
        `leader epoch ${currentLeaderEpoch} is older than broker ${this.#b.opts.id}'s ${leader.epoch}: refresh the metadata`,
      );
    }
    if (currentLeaderEpoch > leader.epoch) {
      throw new YakError(
        "UNKNOWN_LEADER_EPOCH",
        `leader epoch ${currentLeaderEpoch} is newer than broker ${this.#b.opts.id}'s ${leader.epoch}`,
      );
    }
    const log = this.#b.store.partition(tp.topic, tp.partition);
    if (log.fenced) throw log.fenced;
    return log.epochs.endOffsetForReader(epoch, leader.epoch, log.logEndOffset);
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

const decoder = new TextDecoder();

/**
 * The follower side: one instance per (leader, epoch), stopped on any lease
 * change. It talks to the leader through a {@link LeaderEndpoint} (a native
 * connection unless a test hands it another), which hands it checked values.
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
  readonly #open: OpenLeaderEndpoint;
  #stopped = false;
  #endpoint: LeaderEndpoint | null = null;
  #loop: Promise<void> | null = null;
  /**
   * Partition key -> the leader's purge point this follower last started
   * over for (see #followLogEnds): the copy made since then is the leader's.
   */
  readonly #copiedSince = new Map<string, number>();
  /**
   * Our last append failed (a full disk): the leader is told with every
   * fetch, so it drops us from the in-sync set at once instead of stalling
   * acks=all on a replica that cannot keep up.
   */
  #writeFailing = false;
  /** Opening a topic's files failed, and was said (see #openUnopened). */
  #openFailing = false;
  /** When the next write probe may run (see #probeWrites). */
  #nextProbeMs = 0;
  /** Called after each fetch whose answer was taken (the broker's young-generation check, young_gc.ts). */
  readonly #afterFetch: () => void;

  constructor(
    b: BrokerContext,
    leader: LeaderInfo,
    open: OpenLeaderEndpoint = RemoteLeaderEndpoint.opener(b.opts),
    afterFetch: () => void = () => {},
  ) {
    this.#b = b;
    this.leader = leader;
    this.#open = open;
    this.#afterFetch = afterFetch;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#endpoint?.close();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const b = this.#b;
    let reconciled = false;
    let lastError = "";
    let attempts = 0;
    while (!this.#stopped) {
      try {
        const leader = this.#endpoint = await this.#open(this.leader);
        if (!reconciled) {
          await this.#truncateToLeader(leader);
          reconciled = true;
        }
        while (!this.#stopped) {
          await this.#fetchOnce(leader);
          this.#afterFetch();
        }
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
        this.#endpoint?.close();
        this.#endpoint = null;
      }
    }
  }

  /** Cuts whatever this replica holds past the point where the leader's log differs. */
  async #truncateToLeader(leader: LeaderEndpoint): Promise<void> {
    const b = this.#b;
    // Appends this broker queued as the leader land first (or fail): they took their offsets before it stepped
    // down, and deciding on the log end before them kept records the new leader never had, in an old epoch, at
    // offsets it filled with others (a leader paused with writes queued: replicas no longer byte-identical).
    await Promise.all(b.store.all().map((ref) => ref.log.writesSettled()));
    const lastEpochs = new Map<string, number>();
    for (const ref of b.store.all()) {
      // A fenced log cannot be cut: it is reconciled after the restart that recovers it. A log that knows no
      // epoch holds no record (every one deleted, and the epoch in force at its start not known): nothing in it
      // can differ from the leader's, and -1 is no epoch to ask about (the leader refuses the whole question).
      const { epochs } = ref.log;
      if (ref.log.logEndOffset > 0 && !ref.log.fenced && epochs.lastEpoch >= 0) {
        lastEpochs.set(ref.key, epochs.lastEpoch);
      }
    }
    const ends = await leader.fetchEpochEnds({ epoch: this.leader.epoch, lastEpochs }, b.opts.requestTimeoutMs);
    for (const [key, end] of ends) await this.#truncateToEpochEnd(key, end);
    b.log.write("following", {
      leader: this.leader.id,
      epoch: this.leader.epoch,
      logEndTotal: b.store.logEndTotal(),
    });
  }

  /** Cuts a partition where the leader's epoch ends, or where ours does if it ends first. */
  async #truncateToEpochEnd(key: string, end: EpochEnd): Promise<void> {
    const b = this.#b;
    const log = b.store.byKey(key)?.log;
    if (!log || log.fenced) return;
    const mine = end.epoch === -1 ? { endOffset: 0 } : log.epochs.endOffsetFor(end.epoch, log.logEndOffset);
    const cut = Math.min(end.endOffset, mine.endOffset, log.logEndOffset);
    if (cut >= log.logEndOffset) return;
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

  async #fetchOnce(leader: LeaderEndpoint): Promise<void> {
    const b = this.#b;
    if (b.failingWrites.size > 0) await this.#probeWrites();
    const offsets = new Map<string, number>();
    const knownHw = new Map<string, number>();
    const logStarts = new Map<string, number>();
    const fenced = new Set<string>();
    for (const ref of b.store.all()) {
      offsets.set(ref.key, ref.log.logEndOffset);
      knownHw.set(ref.key, ref.log.highWatermark);
      if (ref.log.logStartOffset > 0) logStarts.set(ref.key, ref.log.logStartOffset);
      if (ref.log.fenced) fenced.add(ref.key);
    }
    const fetch: FollowerFetch = {
      followerId: b.opts.id,
      epoch: this.leader.epoch,
      offsets,
      knownHw,
      logStarts,
      maxBytes: b.opts.replicaFetchMaxBytes,
      maxWaitMs: b.opts.replicaFetchWaitMs,
      // Failing writes (here, or as the leader before: until one succeeds, a leader that resigned because its disk
      // is full is not taken back into the set, nor elected again), a topic whose files could not be opened, a
      // range cut to be copied again, or a fenced log: not in sync, say so.
      failing: this.#writeFailing || b.failingWrites.size > 0 || b.store.hasUnopened || b.healing.size > 0 ||
        fenced.size > 0,
      fenced,
    };
    const reply = await leader.fetchRecords(fetch, b.opts.replicaFetchWaitMs + b.opts.requestTimeoutMs);
    if (this.#stopped) return;
    await this.#followLogEnds(reply);
    const appended = await this.#appendParts(reply.parts);
    this.#applyHighWatermarks(reply.hw);
    if (appended || reply.parts.length === 0) b.notifier.notify();
  }

  /** Cuts partitions where this replica is ahead of the leader, and follows the leader's log starts. */
  async #followLogEnds(reply: ReplicaFetchReply): Promise<void> {
    const b = this.#b;
    for (const [key, to] of reply.truncate) {
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
    // The leader's log start moved (retention, deleted records): move ours there too (deleting the same
    // segments), or start over there when our whole log lies below it. At the same start, segments a roll
    // closed below it since are deleted: the leader's retention pass deletes its own, and a follower's
    // stayed for good (records deleted to the end of an active segment: the replicas' files differed).
    for (const [key, start] of reply.logStart) {
      const log = b.store.byKey(key)?.log;
      if (!log || log.fenced || start < log.logStartOffset) continue;
      if (start === log.logStartOffset && !log.hasSegmentsBelowStart) continue;
      if (log.logEndOffset < start) await log.resetTo(start, "behind the leader's log start");
      else await log.advanceLogStart(start, "the leader's log start");
    }
    await this.#followPurges(reply);
  }

  /**
   * A compacted partition whose log ends below where the leader's cleaning
   * may have removed tombstones: the records this replica holds may include
   * older values those tombstones deleted, and appending the leader's
   * cleaned bytes (without the tombstones) would keep them for good, so it
   * starts over at the leader's log start and copies the cleaned log. A log
   * that holds nothing yet, or only what it copied since it last started over
   * for this point, goes on. In-sync followers never do this: the leader
   * cleans only below the high watermark.
   */
  async #followPurges(reply: ReplicaFetchReply): Promise<void> {
    for (const [key, purged] of reply.purged) {
      const log = this.#b.store.byKey(key)?.log;
      if (!log || log.fenced || log.logEndOffset >= purged) continue;
      if (log.logEndOffset > log.logStartOffset && this.#copiedSince.get(key) !== purged) {
        const start = reply.logStart.get(key) ?? 0;
        this.#b.log.write("copying_cleaned_log", {
          partition: key,
          logEnd: log.logEndOffset,
          purgedBelow: purged,
          from: start,
        });
        await log.resetTo(start, "behind the leader's cleaning");
      }
      this.#copiedSince.set(key, purged);
    }
  }

  /** Appends the leader's bytes as they are, metadata first; true if anything was appended. */
  async #appendParts(parts: ReplicaPart[]): Promise<boolean> {
    const b = this.#b;
    // Metadata first: it may create the topics whose data follows.
    parts.sort((x, y) => (x.key === CLUSTER_KEY ? -1 : y.key === CLUSTER_KEY ? 1 : 0));
    let appended = false;
    // Topics whose files failed to open here (a full disk) are opened again before their records come; while one
    // fails, the others' records are still appended (and `__cluster`'s, which may delete it).
    if (b.store.hasUnopened) await this.#openUnopened();
    for (const part of parts) {
      const ref = b.store.byKey(part.key);
      if (!ref || ref.log.fenced || part.base !== ref.log.logEndOffset) continue; // learned next round
      try {
        await ref.log.appendReplica(part.base, part.count, part.bytes, part.epochs, part.rolls, part.next);
      } catch (err) {
        this.#writeFailed(part.key, err);
      }
      if (this.#writeFailing || b.failingWrites.size > 0) {
        this.#writeFailing = false;
        // Writes as the leader failed too: this disk takes writes again.
        b.failingWrites.clear();
        b.log.write("replica_writes_resumed", { partition: part.key });
      }
      if (part.key === CLUSTER_KEY) {
        // The ops are all applied; a topic whose files failed is opened again before the next append.
        await b.store.applyLines(decoder.decode(part.bytes)).catch((err) => this.#openFailed(err));
      }
      appended = true;
    }
    return appended;
  }

  /**
   * Writes failed here as the leader (a full disk): until a write succeeds
   * this broker says it is failing, so it is not elected again. With nothing
   * to copy (the new leader's disk may be full too, or no producer writes)
   * no append would show that space came back, so a file of
   * {@link WRITE_PROBE_BYTES} is written (and removed) at most every
   * {@link WRITE_PROBE_INTERVAL_MS}.
   */
  async #probeWrites(): Promise<void> {
    const b = this.#b;
    const now = monotonicMs();
    if (now < this.#nextProbeMs) return;
    this.#nextProbeMs = now + WRITE_PROBE_INTERVAL_MS;
    const path = join(dirname(b.store.dir), "write-probe");
    try {
      await Deno.writeFile(path, new Uint8Array(WRITE_PROBE_BYTES));
      b.failingWrites.clear();
      b.log.write("replica_writes_resumed", { probe: path });
    } catch {
      // Still failing.
    } finally {
      await Deno.remove(path).catch(() => {});
    }
  }

  /** Opens the topics whose files could not be opened; a failure is said once until they open. */
  async #openUnopened(): Promise<void> {
    try {
      await this.#b.store.openUnopened();
      this.#openFailing = false;
    } catch (err) {
      this.#openFailed(err);
    }
  }

  /** A topic's files could not be opened here: said once until they open, retried before the next append. */
  #openFailed(err: unknown): void {
    if (!this.#openFailing) {
      this.#b.log.write("replica_topic_open_failed", { error: err instanceof Error ? err.message : String(err) });
    }
    this.#openFailing = true;
  }

  /** A write here failed: said once until writes succeed again (the leader is told by our fetches), and thrown. */
  #writeFailed(key: string, err: unknown): never {
    if (!this.#writeFailing) {
      this.#b.log.write("replica_write_failed", {
        partition: key,
        error: err instanceof Error ? err.message : String(err),
      });
    }
    this.#writeFailing = true;
    throw err;
  }

  /** Takes the leader's high watermarks, never past our own log end. */
  #applyHighWatermarks(hw: Map<string, number>): void {
    const b = this.#b;
    for (const [key, mark] of hw) {
      const log = b.store.byKey(key)?.log;
      if (log) log.highWatermark = Math.min(mark, log.logEndOffset);
      if (log && b.healing.has(key)) b.healProgress(key, log.logEndOffset, mark);
    }
  }
}
