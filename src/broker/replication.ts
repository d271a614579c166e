/**
 * Replication, both sides. The leader answers "what follows my log end" with
 * its stored bytes (long-polled) and "where does epoch E end"; the follower
 * truncates where its log parts from the leader's, then appends the leader's
 * bytes verbatim so replicas stay byte-identical.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import type { EpochEntry } from "../log/epoch_cache.ts";
import { toYakError, YakError } from "../errors.ts";
import { Connection } from "../protocol/connection.ts";
import { int, offsetMap, optInt, RawReply, type Reply, type Request } from "../protocol/messages.ts";
import type { BrokerContext, LeaderInfo } from "./context.ts";
import { CLUSTER_KEY } from "./metadata.ts";

/** One partition's chunk in a replication response. */
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

function checkEpoch(b: BrokerContext, req: Request): void {
  const epoch = int(req, "epoch");
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

/**
 * Each partition's part of a fetch's byte budget, so the first partitions
 * cannot take it all and starve the others (a follower fell 300,000 records
 * behind on its third partition before this).
 *
 * @example
 * ```ts
 * import { fairShare } from "./replication.ts";
 * fairShare(2 * 1024 * 1024, 4); // 524288
 * ```
 */
export function fairShare(maxBytes: number, partitionsWithData: number): number {
  return Math.max(Math.min(64 * 1024, maxBytes), Math.floor(maxBytes / Math.max(1, partitionsWithData)));
}

/**
 * Leader side of a follower's fetch: sends what follows each of the
 * follower's log ends, waiting up to `maxWaitMs` when there is nothing new.
 *
 * @example
 * ```ts ignore
 * await replicate(broker, { id: 1, type: "replicate", brokerId: 2, epoch: 4, offsets: { "t/0": 10 } });
 * ```
 */
export async function replicate(
  b: BrokerContext,
  req: Request,
): Promise<Reply> {
  checkEpoch(b, req);
  const follower = int(req, "brokerId", 1, 1_000_000);
  const offsets = offsetMap(req, "offsets", b.opts.maxPartitions * 100 + 1);
  const maxBytes = optInt(
    req,
    "maxBytes",
    b.opts.replicaFetchMaxBytes,
    1,
    b.opts.maxFetchBytes,
  );
  const maxWaitMs = optInt(req, "maxWaitMs", 0, 0, b.opts.maxFetchWaitMs);
  const leader = b.requireLeader();
  leader.followerFetched(follower, offsets, req.failing === true);
  const knownHw = offsetMap(req, "hw", b.opts.maxPartitions * 100 + 1);
  const deadline = monotonicMs() + maxWaitMs;
  while (true) {
    const parts: ReplicaPart[] = [];
    const data: Uint8Array[] = [];
    const hw: Record<string, number> = {};
    const truncate: Record<string, number> = {};
    let budget = maxBytes;
    let hwMoved = false;
    const refs = b.store.all();
    const share = fairShare(maxBytes, refs.filter((r) => (offsets.get(r.key) ?? 0) < r.log.logEndOffset).length);
    for (const ref of refs) {
      const log = ref.log;
      hw[ref.key] = log.highWatermark;
      if (log.highWatermark > (knownHw.get(ref.key) ?? -1)) hwMoved = true;
      const from = offsets.get(ref.key) ?? 0;
      if (from > log.logEndOffset) {
        truncate[ref.key] = log.logEndOffset;
        continue;
      }
      if (from === log.logEndOffset || budget <= 0) continue;
      const read = await b.readLog(log, from, Math.min(share, budget), log.logEndOffset);
      if (read.count === 0) continue;
      budget -= read.byteLength;
      data.push(...read.chunks);
      parts.push({
        k: ref.key,
        base: read.baseOffset,
        count: read.count,
        len: read.byteLength,
        epochs: log.epochs.within(read.baseOffset, read.baseOffset + read.count),
        rolls: log.segmentBasesIn(read.baseOffset, read.baseOffset + read.count),
      });
    }
    const remaining = deadline - monotonicMs();
    if (
      parts.length > 0 || hwMoved || Object.keys(truncate).length > 0 ||
      remaining <= 0
    ) {
      // The stored bytes go as they are, after the frame: never escaped, never parsed.
      const head = JSON.stringify({ epoch: leader.epoch, parts, hw, truncate });
      return new RawReply(head.slice(1, -1), data);
    }
    await b.notifier.wait(remaining);
    if (b.role() !== "leader" || b.epoch() !== leader.epoch) checkEpoch(b, req);
  }
}

/**
 * Leader side of truncation: for each partition and the follower's last
 * epoch, the largest epoch the leader has at or below it and where it ends.
 */
export function epochEnds(b: BrokerContext, req: Request): Reply {
  checkEpoch(b, req);
  const asked = offsetMap(req, "epochs", b.opts.maxPartitions * 100 + 1);
  const ends: Record<string, { epoch: number; endOffset: number }> = {};
  for (const [key, epoch] of asked) {
    const ref = b.store.byKey(key);
    ends[key] = ref ? ref.log.epochs.endOffsetFor(epoch, ref.log.logEndOffset) : { epoch: -1, endOffset: 0 };
  }
  return { ends };
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
      if (ref.log.logEndOffset > 0) epochs[ref.key] = ref.log.epochs.lastEpoch;
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
      if (!ref) continue;
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

  async #fetchOnce(): Promise<void> {
    const b = this.#b;
    const offsets: Record<string, number> = {};
    const hw: Record<string, number> = {};
    for (const ref of b.store.all()) {
      offsets[ref.key] = ref.log.logEndOffset;
      hw[ref.key] = ref.log.highWatermark;
    }
    const res = await this.#conn!.request({
      type: "replicate",
      brokerId: b.opts.id,
      epoch: this.leader.epoch,
      offsets,
      hw,
      maxBytes: b.opts.replicaFetchMaxBytes,
      maxWaitMs: b.opts.replicaFetchWaitMs,
      ...(this.#writeFailing ? { failing: true } : {}),
    }, b.opts.replicaFetchWaitMs + b.opts.requestTimeoutMs);
    if (this.#stopped) return;
    const truncate = res.truncate as Record<string, number>;
    for (const [key, to] of Object.entries(truncate)) {
      const log = b.store.byKey(key)?.log;
      if (log && to < log.logEndOffset) {
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
      if (!ref || part.base !== ref.log.logEndOffset) continue; // learned next round
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
    }
    if (appended || parts.length === 0) b.notifier.notify();
  }
}
