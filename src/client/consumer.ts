/**
 * The consumer: long-polls a topic's partitions from a replica, remembers
 * where it is, and commits a group's offsets to the leader.
 *
 * @module
 */
import { parseLines } from "../log/record.ts";
import { DEFAULTS } from "../config.ts";
import { valuesOf } from "../log/record.ts";
import type { Connection } from "../protocol/connection.ts";
import { isRetriable, toYakError, YakError } from "../errors.ts";
import type { FetchedRecord } from "../protocol/messages.ts";
import type { AssignorName } from "./assignors.ts";
import { type Bootstrap, connectAny, connectLeader } from "./discovery.ts";
import { GroupMember } from "./group_member.ts";

/** Options of {@link Consumer.open}. */
export interface ConsumerOptions {
  bootstrap: Bootstrap;
  topic: string;
  /**
   * Join this consumer group: read only the partitions the group assigns to
   * this member, commit under it, and resume from its last commit.
   */
  group?: string;
  /** Assignment strategies offered to the group, preferred first (default range, roundrobin). */
  groupProtocols?: AssignorName[];
  /** The group removes this member after this long without a heartbeat (default 10 s). */
  sessionTimeoutMs?: number;
  /** Told of joins and rebalances. */
  onGroupEvent?: (message: string) => void;
  /** Read only this partition. */
  partition?: number;
  /** Start here (in every partition read) instead of the end. */
  offset?: number;
  fromBeginning?: boolean;
  /** Where to go when a position was deleted by retention: the log start (default) or the end. */
  autoOffsetReset?: "earliest" | "latest";
  /** Told when a position is reset (retention deleted it). */
  onReset?: (message: string) => void;
  maxWaitMs?: number;
  maxBytes?: number;
  requestTimeoutMs?: number;
  /** Give up when no replica answers for this long. */
  retryTimeoutMs?: number;
  /** Give up when the cluster (or the topic) cannot be reached at the start for this long. */
  firstConnectTimeoutMs?: number;
  onRetry?: (why: string) => void;
}

const decoder = new TextDecoder();

/**
 * A long poll is answered within its wait; past that much more, the replica
 * is taken for frozen (SIGSTOP, a cut link) and the consumer rediscovers the
 * cluster, instead of waiting out the whole request timeout.
 */
const FETCH_GRACE_MS = 2000;

/**
 * Records of one partition from one poll: `count` stored lines from offset
 * `base`, parsed only when asked for.
 */
export class PartitionRecords {
  #records: FetchedRecord[] | null = null;

  constructor(readonly partition: number, readonly base: number, readonly count: number, readonly text: string) {}

  /** The records, parsed (once) from the stored lines. */
  get records(): FetchedRecord[] {
    // The stored lines are JSON objects: one parse for the whole part.
    this.#records ??= parseLines(this.text);
    return this.#records;
  }

  /**
   * Just the text values, read from the stored lines without parsing whole
   * records (the common `--format value` case), or null when a record holds
   * bytes (`valueB64`) and needs the full parse.
   */
  values(): string[] | null {
    return valuesOf(this.text);
  }
}

/**
 * A consumer of one topic.
 *
 * @example
 * ```ts
 * import { Consumer } from "./consumer.ts";
 * const consumer = await Consumer.open({ bootstrap: {}, topic: "events", fromBeginning: true, group: "audit" });
 * for (const part of await consumer.poll()) {
 *   console.log(part.partition, part.records.length);
 *   consumer.consumed(part.partition, part.base + part.count);
 * }
 * await consumer.commit();
 * await consumer.close();
 * ```
 */
export class Consumer {
  readonly id = `c-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  readonly topic: string;
  readonly #o: ConsumerOptions;
  #conn: Connection | null = null;
  #leaderConn: Connection | null = null;
  /**
   * partition -> offset after the last record the caller reported as used
   * through {@link consumed}: what {@link commit} commits. {@link poll}
   * never moves it, so records fetched but not printed (the rest of a batch
   * after `--max-messages`, or what a closed pipe refused) stay uncommitted.
   */
  readonly #positions = new Map<number, number>();
  /** partition -> next offset to fetch (ahead of `#positions` while records are being handled or prefetched). */
  #cursor = new Map<number, number>();
  #prefetch: Promise<PartitionRecords[]> | null = null;
  #committed = new Map<number, number>();
  #lastMetaMs = 0;
  /**
   * Set when the topic did not exist at the first connection: it appeared
   * later, so everything in it is newer than this consumer and is read from
   * offset 0 rather than from the end found when it appears.
   */
  #topicWasMissing = false;

  /** This consumer's membership when it reads as part of a group (not with a fixed --partition). */
  readonly #member: GroupMember | null;

  private constructor(o: ConsumerOptions) {
    this.#o = o;
    this.topic = o.topic;
    this.#member = o.group && o.partition === undefined
      ? new GroupMember({
        bootstrap: o.bootstrap,
        group: o.group,
        topics: [o.topic],
        clientId: this.id,
        sessionTimeoutMs: o.sessionTimeoutMs,
        protocols: o.groupProtocols,
        requestTimeoutMs: o.requestTimeoutMs,
        retryTimeoutMs: o.retryTimeoutMs,
        onRetry: o.onRetry,
        onEvent: o.onGroupEvent,
      })
      : null;
  }

  /** Connects, joins its group (if any), finds the starting offsets, and registers. */
  static async open(opts: ConsumerOptions): Promise<Consumer> {
    const c = new Consumer(opts);
    try {
      await c.#member?.join();
      await c.#connect();
    } catch (err) {
      c.#member?.close();
      throw err;
    }
    return c;
  }

  /** The partitions this consumer reads now (its group assignment, or all). */
  get partitions(): number[] {
    return [...this.#cursor.keys()].sort((a, b) => a - b);
  }

  get #timeoutMs(): number {
    return this.#o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  }

  async #connect(): Promise<void> {
    // The first connection fails fast on a wrong address; later ones ride out failovers.
    const first = this.#cursor.size === 0;
    const deadline = Date.now() +
      (first
        ? this.#o.firstConnectTimeoutMs ?? DEFAULTS.firstConnectTimeoutMs
        : this.#o.retryTimeoutMs ?? DEFAULTS.deliveryTimeoutMs);
    while (true) {
      try {
        this.#conn = await connectAny(
          this.#o.bootstrap,
          deadline,
          this.#o.onRetry,
        );
        await this.#refresh();
        await this.#conn.request({
          type: "register",
          role: "consumer",
          client: this.id,
          topic: this.topic,
          ...(this.#o.group ? { group: this.#o.group } : {}),
        }, this.#timeoutMs);
        return;
      } catch (err) {
        this.#conn?.close();
        this.#conn = null;
        const yerr = toYakError(err);
        // A topic not replicated here yet is worth waiting for, like a lost connection.
        if (!isRetriable(yerr) && yerr.code !== "UNKNOWN_TOPIC") throw yerr;
        if (yerr.code === "UNKNOWN_TOPIC" && first) this.#topicWasMissing = true;
        if (yerr.code === "UNKNOWN_TOPIC" && Date.now() > deadline) throw yerr;
        if (Date.now() > deadline) throw yerr;
        this.#o.onRetry?.(yerr.message);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Learns the partition count and sets a start offset for partitions not yet read. */
  async #refresh(): Promise<void> {
    const conn = this.#conn!;
    const meta = await conn.request(
      { type: "metadata", topic: this.topic },
      this.#timeoutMs,
    );
    const n = (meta.topics as Record<string, number>)[this.topic];
    this.#lastMetaMs = Date.now();
    const wanted = this.#member
      ? (this.#member.assignment[this.topic] ?? []).filter((p) => p < n)
      : this.#o.partition === undefined
      ? [...Array(n).keys()]
      : [this.#o.partition];
    if (this.#member) {
      // Partitions given to another member are forgotten (committed before the switch).
      for (const p of [...this.#cursor.keys()]) {
        if (!wanted.includes(p)) {
          this.#cursor.delete(p);
          this.#positions.delete(p);
          this.#committed.delete(p);
        }
      }
    }
    if (this.#o.partition !== undefined && this.#o.partition >= n) {
      throw new YakError(
        "UNKNOWN_PARTITION",
        `topic '${this.topic}' has partitions 0..${n - 1}; there is no partition ${this.#o.partition}`,
      );
    }
    const missing = wanted.filter((p) => !this.#cursor.has(p));
    if (missing.length === 0) return;
    let committed: Record<string, number> = {};
    if (this.#o.group) {
      const res = await this.#leaderRequest({
        type: "committed",
        group: this.#o.group,
        topic: this.topic,
      });
      committed = res.offsets as Record<string, number>;
    }
    let offsets: Record<string, Record<string, number>> | null = null;
    const listOffsets = async () =>
      offsets ??= (await conn.request({ type: "list_offsets", topic: this.topic }, this.#timeoutMs)) as Record<
        string,
        Record<string, number>
      >;
    // "From the beginning" is the log start: retention may have deleted what came before.
    const earliest = async (p: number) => (await listOffsets()).start?.[p] ?? 0;
    const latest = async (p: number) => (await listOffsets()).hw[p] ?? 0;
    const firstTime = this.#cursor.size === 0 && !this.#member;
    // A group that committed some partitions of the topic and not this one:
    // the partition came later (added to the topic), so all of it is new.
    const groupStarted = Object.keys(committed).length > 0;
    for (const p of missing) {
      let start: number;
      if (committed[p] !== undefined) start = committed[p];
      else if (this.#member && groupStarted) start = await earliest(p);
      else if (this.#member && this.#o.offset === undefined && !this.#o.fromBeginning && !this.#topicWasMissing) {
        start = await latest(p);
      } else if (this.#o.offset !== undefined) start = this.#o.offset;
      // Partitions added later, and a topic created after this consumer started, hold only new records.
      else if (this.#o.fromBeginning || !firstTime || this.#topicWasMissing) start = await earliest(p);
      else start = await latest(p);
      this.#positions.set(p, start);
      this.#cursor.set(p, start);
      if (committed[p] !== undefined) this.#committed.set(p, committed[p]);
    }
  }

  /**
   * partition -> offset after the last record reported through
   * {@link consumed} (or the start offset): what {@link commit} commits.
   */
  get positions(): ReadonlyMap<number, number> {
    return this.#positions;
  }

  /**
   * One long-poll: records from any partition that has some, in offset order
   * per partition. The next fetch starts at once, while the caller handles
   * these, so fetching and printing overlap. Nothing counts as consumed (or
   * gets committed) until the caller says so with {@link consumed}.
   */
  async poll(): Promise<PartitionRecords[]> {
    if (this.#member?.needsRejoin) await this.#rebalance();
    const batch = await (this.#prefetch ?? this.#fetch());
    this.#prefetch = null;
    if (batch.length > 0) {
      this.#prefetch = this.#fetch();
      this.#prefetch.catch(() => {}); // its error is met by the next poll
    }
    return batch;
  }

  /**
   * Records that the records of `partition` before `nextOffset` have been
   * used (printed, stored, ...): the next {@link commit} commits up to there.
   * Call it after the records are safely out of your hands, never before.
   *
   * @example
   * ```ts ignore
   * for (const part of await consumer.poll()) {
   *   await writeAll(Deno.stdout, new TextEncoder().encode(part.text));
   *   consumer.consumed(part.partition, part.base + part.count);
   * }
   * await consumer.commit();
   * ```
   */
  consumed(partition: number, nextOffset: number): void {
    const at = this.#positions.get(partition);
    const fetched = this.#cursor.get(partition);
    // Offsets only grow, and never past what has been fetched.
    if (at === undefined || fetched === undefined || !Number.isInteger(nextOffset)) {
      throw new YakError("INVALID_ARGUMENT", `partition ${partition} of '${this.topic}' is not being read`);
    }
    if (nextOffset < at || nextOffset > fetched) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `offset ${nextOffset} of ${this.topic}/${partition} is outside ${at}..${fetched} (consumed..fetched)`,
      );
    }
    this.#positions.set(partition, nextOffset);
  }

  /**
   * The group is rebalancing: commit what was handed out while the
   * partitions are still ours, drop what was fetched ahead, rejoin, and
   * start reading the new assignment.
   */
  async #rebalance(): Promise<void> {
    const member = this.#member!;
    await this.commit();
    if (this.#prefetch) {
      await this.#prefetch.catch(() => []);
      this.#prefetch = null;
    }
    // Fetched ahead but not handed out: read again, by us or the next owner.
    for (const [p, at] of this.#positions) this.#cursor.set(p, at);
    await member.join();
    if (!this.#conn || this.#conn.isClosed) await this.#connect();
    else await this.#refresh();
  }

  async #fetch(): Promise<PartitionRecords[]> {
    while (true) {
      try {
        if (!this.#conn || this.#conn.isClosed) await this.#connect();
        if (Date.now() - this.#lastMetaMs > 5000) await this.#refresh();
        if (this.#cursor.size === 0) {
          // Nothing assigned to this member (more members than partitions): wait, heartbeating.
          await new Promise((r) => setTimeout(r, this.#o.maxWaitMs ?? DEFAULTS.consumerFetchWaitMs));
          return [];
        }
        const maxWaitMs = this.#o.maxWaitMs ?? DEFAULTS.consumerFetchWaitMs;
        const res = await this.#conn!.request({
          type: "fetch",
          topic: this.topic,
          offsets: Object.fromEntries(this.#cursor),
          maxBytes: this.#o.maxBytes ?? DEFAULTS.consumerFetchMaxBytes,
          maxWaitMs,
        }, maxWaitMs + Math.min(this.#timeoutMs, FETCH_GRACE_MS));
        const attachment = (res.attachment as Uint8Array | undefined) ?? new Uint8Array(0);
        const out: PartitionRecords[] = [];
        let at = 0;
        for (const part of res.parts as { p: number; base: number; count: number; len: number }[]) {
          const bytes = attachment.subarray(at, at + part.len);
          at += part.len;
          if (part.base !== this.#cursor.get(part.p) || part.count === 0) continue;
          this.#cursor.set(part.p, part.base + part.count);
          out.push(new PartitionRecords(part.p, part.base, part.count, decoder.decode(bytes)));
        }
        for (const [p, [logStart, hw]] of Object.entries((res.outOfRange ?? {}) as Record<string, number[]>)) {
          const partition = Number(p);
          const from = this.#cursor.get(partition);
          // Only a position nothing was fetched past: records handed out are never skipped here.
          if (from === undefined || from >= logStart || this.#positions.get(partition) !== from) continue;
          const to = this.#o.autoOffsetReset === "latest" ? hw : logStart;
          this.#cursor.set(partition, to);
          this.#positions.set(partition, to);
          this.#o.onReset?.(
            `offset ${from} of ${this.topic}/${partition} was deleted by retention (the log starts at ${logStart}); ` +
              `resetting to the ${this.#o.autoOffsetReset === "latest" ? "latest" : "earliest"} offset, ${to}`,
          );
        }
        return out;
      } catch (err) {
        const yerr = toYakError(err);
        if (!isRetriable(yerr)) throw yerr;
        this.#o.onRetry?.(yerr.message);
        this.#conn?.close();
        this.#conn = null;
      }
    }
  }

  async #leaderRequest(
    body: Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() +
      (this.#o.retryTimeoutMs ?? DEFAULTS.deliveryTimeoutMs);
    while (true) {
      try {
        if (!this.#leaderConn || this.#leaderConn.isClosed) {
          this.#leaderConn = (await connectLeader(this.#o.bootstrap, deadline, this.#o.onRetry))
            .conn;
        }
        return await this.#leaderConn.request(body, this.#timeoutMs);
      } catch (err) {
        const yerr = toYakError(err);
        this.#leaderConn?.close();
        this.#leaderConn = null;
        if (!isRetriable(yerr) || Date.now() > deadline) throw yerr;
        this.#o.onRetry?.(yerr.message);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /**
   * Commits the group's positions (what the caller reported through
   * {@link consumed}), retrying through failovers. A no-op without a group
   * or when nothing moved.
   */
  async commit(): Promise<void> {
    if (!this.#o.group) return;
    const offsets: Record<string, number> = {};
    for (const [p, off] of this.#positions) {
      if (this.#committed.get(p) !== off) offsets[p] = off;
    }
    if (Object.keys(offsets).length === 0) return;
    if (this.#member) {
      try {
        await this.#member.commit(this.topic, offsets);
      } catch (err) {
        // The member lost these partitions (a rebalance it missed): the next
        // poll rejoins; their new owner reads from the last good commit.
        if (this.#member.needsRejoin) return;
        throw err;
      }
    } else {
      await this.#leaderRequest({
        type: "commit",
        group: this.#o.group,
        topic: this.topic,
        offsets,
      });
    }
    for (const [p, off] of Object.entries(offsets)) {
      this.#committed.set(Number(p), off);
    }
  }

  /** Leaves the group, deregisters and closes. Commit first if the group should resume here. */
  async close(): Promise<void> {
    await this.#member?.leave();
    try {
      if (this.#conn && !this.#conn.isClosed) {
        await this.#conn.request({ type: "deregister" }, 1000);
      }
    } catch { /* leaving anyway */ }
    this.#conn?.close();
    this.#leaderConn?.close();
  }
}
