/**
 * The consumer: long-polls the partitions of one or more topics from a
 * replica, remembers where it is in each, and commits a group's offsets to
 * the leader.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { type AbortedRange, lineOffset, parseLines, plainValues, shownLines, valuesOf } from "../log/record.ts";
import { DEFAULTS } from "../config.ts";
import type { Connection } from "../protocol/connection.ts";
import { isRetriable, toYakError, YakError } from "../errors.ts";
import type { FetchedRecord } from "../protocol/messages.ts";
import type { AssignorName } from "./assignors.ts";
import { type Bootstrap, connectAny, connectLeader } from "./discovery.ts";
import { GroupMember } from "./group_member.ts";

/**
 * Where to start reading a partition (without a group): the log start, the
 * end, an offset, or `n` records before the end.
 */
export type StartOffset =
  | { kind: "earliest" }
  | { kind: "latest" }
  | { kind: "offset"; offset: number }
  | { kind: "fromEnd"; count: number };

/** Options of {@link Consumer.open}. */
export interface ConsumerOptions {
  bootstrap: Bootstrap;
  /** The topic to read (or use `topics`, or `topicPattern`). */
  topic?: string;
  /** Several topics to read. */
  topics?: string[];
  /** Every topic whose whole name matches, now or later (checked with each metadata refresh). */
  topicPattern?: RegExp;
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
  /** Read only this partition (of the one topic). */
  partition?: number;
  /** Start here, in every partition read, instead of the end (not with a group). */
  offset?: number | StartOffset;
  fromBeginning?: boolean;
  /** Where to go when a position was deleted by retention: the log start (default) or the end. */
  autoOffsetReset?: "earliest" | "latest";
  /**
   * read_committed (the default) reads up to the last stable offset and
   * never shows a record of an aborted transaction; read_uncommitted reads
   * up to the high watermark, transactions decided or not. Markers are never shown.
   */
  isolationLevel?: "read_committed" | "read_uncommitted";
  /**
   * Told when a position is reset (retention deleted it, or it was past the
   * end), or dropped (its topic was deleted and created again).
   */
  onReset?: (message: string) => void;
  maxWaitMs?: number;
  maxBytes?: number;
  requestTimeoutMs?: number;
  /** Give up when no replica answers for this long. */
  retryTimeoutMs?: number;
  /** Give up when the cluster cannot be reached at the start for this long (default 10 s). */
  firstConnectTimeoutMs?: number;
  /**
   * Give up when the topic does not exist at the start for this long (default: firstConnectTimeoutMs). 0: at
   * once, when the leader says so (a follower is given a moment to replicate a topic just made).
   */
  topicWaitMs?: number;
  onRetry?: (why: string) => void;
  /**
   * Stops the consumer when aborted (Ctrl-C): a poll under way returns no
   * records at once, and so does every poll after it. A group join under way
   * (in {@link Consumer.open} or a poll: the group may be waiting for a slow
   * member) is ended by leaving the group, so the others go on without this
   * member instead of waiting out its session; `open` then returns the
   * consumer, which is only to be closed. Otherwise the caller commits and
   * closes as usual.
   */
  signal?: AbortSignal;
}

const decoder = new TextDecoder();

/**
 * A long poll is answered within its wait; past that much more, the replica
 * is taken for frozen (SIGSTOP, a cut link) and the consumer rediscovers the
 * cluster, instead of waiting out the whole request timeout.
 */
const FETCH_GRACE_MS = 2000;
/** How long to wait before asking again when every partition with records left is damaged at the broker. */
const DAMAGED_RETRY_MS = 250;
/** How long a refresh asks the leader which incarnation of a topic is current before skipping it for now. */
const INCARNATION_CHECK_MS = 2000;
/** The pause before fetching again when a broker has only another incarnation of a topic to offer. */
const RECREATED_RETRY_MS = 200;
/** How often the consumer re-reads metadata (new partitions, new topics matching a pattern). */
const METADATA_REFRESH_MS = 5000;
/**
 * Fetches a consumer keeps under way, each for its share of the partitions
 * with records left (see {@link Consumer.poll}). With one, the broker read
 * the next 4 MiB (from disk, each line checked) only while the consumer
 * handled the last: 1M records waited ~16 ms for each 19.5k-record answer
 * and spent ~10 ms on it.
 */
const FETCH_LANES = 2;

/** A partition a consumer reads, as {@link laneShare} sees it. */
export interface LaneCandidate<T> {
  id: T;
  /** Records are left in it: its position is below its end as last heard. */
  left: boolean;
  /** A fetch under way holds it (until the poll that hands out its records). */
  held: boolean;
}

/**
 * What an idle lane's fetch takes, of `lanes` lanes: its share (all over
 * the lanes) of the partitions with records left that no fetch holds, and
 * those with none left only beside them, or when no partition has any left:
 * alone, they would hold a long poll while others have records. So when one
 * of 3 partitions is read to its end, the other two go to a lane each (with
 * p % 2 they shared one, and the last third of a read from the beginning had
 * one fetch under way, not two).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { laneShare } from "./consumer.ts";
 * const p = (id: number, left: boolean, held = false) => ({ id, left, held });
 * assert.deepEqual(laneShare([p(0, true), p(1, true), p(2, true)], 2), [0, 1]);
 * assert.deepEqual(laneShare([p(0, true, true), p(1, true, true), p(2, true)], 2), [2]);
 * // Partition 2 is read to its end: the other two are shared, 2 goes along.
 * assert.deepEqual(laneShare([p(0, true), p(1, true, true), p(2, false)], 2), [0, 2]);
 * assert.deepEqual(laneShare([p(0, true, true), p(1, false)], 2), []);
 * assert.deepEqual(laneShare([p(0, false), p(1, false)], 2), [0, 1]);
 * ```
 */
export function laneShare<T>(partitions: readonly LaneCandidate<T>[], lanes: number): T[] {
  const leftInAll = partitions.filter((p) => p.left).length;
  const free = partitions.filter((p) => !p.held);
  const take = free.filter((p) => p.left).slice(0, Math.ceil(leftInAll / lanes));
  if (take.length > 0 || leftInAll === 0) take.push(...free.filter((p) => !p.left));
  return take.map((p) => p.id);
}
/** With topicWaitMs 0, how long a follower's "no such topic" is waited out: it may not have replicated it yet. */
const FOLLOWER_TOPIC_GRACE_MS = 1000;

/**
 * Records of one partition from one poll: `count` stored lines from offset
 * `base`, parsed only when asked for. Transaction markers and the records of
 * aborted transactions are not among them, so a part's records may stop
 * short of `end` (the offset after everything the poll read).
 */
export class PartitionRecords {
  #records: FetchedRecord[] | null = null;
  #text: string | null;
  /** The stored lines as fetched, when every one is shown (see {@link PartitionRecords.fetched}). */
  #bytes: Uint8Array | null = null;
  /** Every line's value and a newline, and where each ends, when every line is a plain record (see plainValues). */
  #values: { values: Uint8Array; ends: Int32Array } | null = null;
  /** The offset after the last line read (shown or not). */
  readonly end: number;
  /** Which incarnation of its topic this consumer fetched it from (see Consumer.consumed). */
  incarnation = 0;

  constructor(
    readonly partition: number,
    readonly base: number,
    readonly count: number,
    text: string,
    readonly topic = "",
    end?: number,
  ) {
    this.#text = text;
    this.end = end ?? base + count;
  }

  /**
   * The part of a fetch reply: `lines` stored lines (`bytes`) from `base`,
   * up to `end`. Markers and the lines of `aborted` transactions are left
   * out; when the lines are all plain records, their text is decoded only if
   * asked for, and {@link valueLines} prints from the bytes.
   */
  static fetched(
    topic: string,
    partition: number,
    base: number,
    lines: number,
    bytes: Uint8Array,
    aborted: readonly AbortedRange[],
    end: number,
  ): PartitionRecords {
    const values = aborted.length === 0 ? plainValues(bytes) : null;
    if (values !== null && values.ends.length === lines) {
      const part = new PartitionRecords(partition, base, lines, "", topic, end);
      part.#text = null;
      part.#bytes = bytes;
      part.#values = values;
      return part;
    }
    const text = decoder.decode(bytes);
    // Markers and aborted transactions' records are read past, never shown.
    const shown = shownLines(text, aborted);
    const count = shown === text ? lines : shown.split("\n").length - 1;
    return new PartitionRecords(partition, base, count, shown, topic, end);
  }

  /** The stored lines shown, each ending in a newline. */
  get text(): string {
    this.#text ??= decoder.decode(this.#bytes!);
    return this.#text;
  }

  /**
   * The first `take` values, each followed by a newline, as bytes copied
   * from the fetched lines when they came (see {@link plainValues}); null
   * when a line needs parsing (see {@link values}).
   */
  valueLines(take: number): Uint8Array | null {
    const v = this.#values;
    if (v === null) return null;
    const n = Math.min(take, this.count);
    return v.values.subarray(0, n === 0 ? 0 : v.ends[n - 1]);
  }

  /** The position after the first `n` records are handled: the next record's offset, or {@link end}. */
  offsetAfter(n: number): number {
    if (n >= this.count) return this.end;
    if (this.end === this.base + this.count) return this.base + n;
    let at = 0;
    for (let i = 0; i < n; i++) at = this.text.indexOf("\n", at) + 1;
    return lineOffset(this.text.slice(at, at + 40));
  }

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

/** What the consumer keeps per topic. */
interface TopicState {
  /** partition -> next offset to fetch (ahead of `positions` while records are being handled or prefetched). */
  cursor: Map<number, number>;
  /**
   * partition -> offset after the last record the caller reported as used
   * through {@link Consumer.consumed}: what {@link Consumer.commit} commits.
   * Polling never moves it, so records fetched but not printed stay uncommitted.
   */
  positions: Map<number, number>;
  committed: Map<number, number>;
  /** partition -> the high watermark when the partition was first read (for "read to the end"). */
  endAtStart: Map<number, number>;
  /**
   * partition -> where its records end, as last heard (a fetch's high watermark, or for read_committed its last
   * stable offset): below it, records are left.
   */
  readEnd: Map<number, number>;
  /**
   * The topic did not exist when this consumer started: it appeared later,
   * so everything in it is newer than this consumer and is read from offset
   * 0 rather than from the end found when it appears.
   */
  wasMissing: boolean;
  /**
   * The topic's id (incarnation) the positions are in, as metadata said; sent
   * with fetches and commits so that a topic deleted and created again under
   * its name is not read or committed from the old one's positions.
   */
  id?: string;
  /**
   * How many times the topic was found deleted and created again since this
   * consumer started: batches fetched before the last time are dropped.
   */
  gen: number;
}

/** Forgets where the consumer is in partition `p` of a topic, or in all of them. */
function forget(s: TopicState, p?: number): void {
  for (const m of [s.cursor, s.positions, s.committed, s.endAtStart, s.readEnd]) {
    if (p === undefined) m.clear();
    else m.delete(p);
  }
}

function startOffsetOf(o: ConsumerOptions): StartOffset | undefined {
  if (o.offset === undefined) return undefined;
  return typeof o.offset === "number" ? { kind: "offset", offset: o.offset } : o.offset;
}

/**
 * A consumer of one or more topics.
 *
 * @example
 * ```ts ignore
 * import { Consumer } from "./consumer.ts";
 * const consumer = await Consumer.open({ bootstrap: {}, topic: "events", fromBeginning: true, group: "audit" });
 * for (const part of await consumer.poll()) {
 *   console.log(part.topic, part.partition, part.records.length);
 *   consumer.consumed(part.topic, part.partition, part.end, part);
 * }
 * await consumer.commit();
 * await consumer.close();
 * ```
 */
export class Consumer {
  readonly id = `c-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  /** The first topic named (for messages); see {@link topics} for all. */
  readonly topic: string;
  readonly #o: ConsumerOptions;
  readonly #start: StartOffset | undefined;
  #conn: Connection | null = null;
  #leaderConn: Connection | null = null;
  readonly #topics = new Map<string, TopicState>();
  /** Topic -> the incarnation (TopicState.gen) of its last batch {@link poll} handed out. */
  readonly #handedOut = new Map<string, number>();
  /**
   * The fetches under way, one per lane, so while the caller handles one
   * answer the broker works on another (see {@link poll}).
   */
  readonly #lanes: (Promise<PartitionRecords[]> | null)[] = new Array(FETCH_LANES).fill(null);
  /**
   * `topic/partition` -> the lane whose fetch holds it, from the fetch's
   * start until the poll that hands its records out: a partition is in one
   * fetch at a time, so its records come out in order.
   */
  readonly #claims = new Map<string, number>();
  /**
   * Lanes whose fetch has settled, in the order they did: a poll hands out
   * the one that answered first. Taken by position in a race, lane 0 won
   * whenever both had answered, and a caller slower than a fetch never got
   * lane 1's records (nor were its partitions fetched again).
   */
  readonly #answered: number[] = [];
  /** Closed: no fetch starts, and a fetch under way does not connect again. */
  #closed = false;
  /** A connection (or a metadata refresh) under way, which every lane waits for. */
  #connecting: Promise<void> | null = null;
  #refreshing: Promise<void> | null = null;
  #lastMetaMs = 0;
  /** Damage reports already passed on (each names its partition and offset). */
  readonly #damageSeen = new Set<string>();
  #connected = false;
  /** On the `signal` option's abort: a join under way ends by leaving the group. */
  readonly #onAbort = () => {
    if (this.#member?.joining) void this.#member.leave();
  };

  /** This consumer's membership when it reads as part of a group (not with a fixed --partition). */
  readonly #member: GroupMember | null;

  private constructor(o: ConsumerOptions, topics: string[]) {
    this.#o = o;
    this.#start = startOffsetOf(o);
    this.topic = topics[0] ?? o.topicPattern?.source ?? "";
    for (const t of topics) this.#topics.set(t, Consumer.#state());
    this.#member = o.group && o.partition === undefined
      ? new GroupMember({
        bootstrap: o.bootstrap,
        group: o.group,
        topics,
        clientId: this.id,
        sessionTimeoutMs: o.sessionTimeoutMs,
        protocols: o.groupProtocols,
        requestTimeoutMs: o.requestTimeoutMs,
        retryTimeoutMs: o.retryTimeoutMs,
        onRetry: o.onRetry,
        onEvent: o.onGroupEvent,
      })
      : null;
    o.signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  static #state(wasMissing = false): TopicState {
    return {
      cursor: new Map(),
      positions: new Map(),
      committed: new Map(),
      endAtStart: new Map(),
      readEnd: new Map(),
      wasMissing,
      gen: 0,
    };
  }

  /** Connects, joins its group (if any), finds the starting offsets, and registers. */
  static async open(opts: ConsumerOptions): Promise<Consumer> {
    const named = [...new Set([...(opts.topic === undefined ? [] : [opts.topic]), ...(opts.topics ?? [])])];
    if (named.length === 0 && opts.topicPattern === undefined) {
      throw new YakError("INVALID_ARGUMENT", "name a topic (topic, topics or topicPattern)");
    }
    if (opts.partition !== undefined && (named.length !== 1 || opts.topicPattern !== undefined)) {
      throw new YakError("INVALID_ARGUMENT", "a partition can be chosen only when reading one topic");
    }
    let topics = named;
    let madeSince: string[] = [];
    if (opts.topicPattern !== undefined) {
      const matching = await Consumer.#matching(opts);
      topics = [...new Set([...named, ...matching.topics])].sort();
      if (matching.waited) madeSince = matching.topics;
    }
    const c = new Consumer(opts, topics);
    // Made after this consumer started (it waited for a match): read from their start, as a named topic
    // that did not exist yet is, and as later matches are. Before, the first match was read from its end.
    for (const t of madeSince) c.#topics.get(t)!.wasMissing = true;
    try {
      // Stopped already (while waiting for a topic to match): a consumer to close, that never joined.
      if (opts.signal?.aborted) return c;
      // The first join reaches the cluster within the first-connect deadline, like the first connection.
      await c.#member?.join(opts.firstConnectTimeoutMs ?? DEFAULTS.firstConnectTimeoutMs);
      await c.#connect();
    } catch (err) {
      // Stopped while joining (the join ended by leaving the group) or after it, while waiting for a topic to
      // exist: a clean leave either way (a member with no partitions yet is still one the group would wait for).
      if (opts.signal?.aborted) {
        await c.#member?.leave();
        return c;
      }
      c.#member?.close();
      throw err;
    }
    return c;
  }

  /**
   * The topics matching the pattern now (waiting, up to the first-connect
   * deadline, for one to exist), and whether it waited: then they were made
   * after this consumer started.
   */
  static async #matching(o: ConsumerOptions): Promise<{ topics: string[]; waited: boolean }> {
    const firstMs = o.firstConnectTimeoutMs ?? DEFAULTS.firstConnectTimeoutMs;
    const { conn } = await connectLeader(o.bootstrap, monotonicMs() + firstMs, o.onRetry);
    const deadline = monotonicMs() + (o.topicWaitMs ?? firstMs);
    try {
      for (let waited = false;; waited = true) {
        const meta = await conn.request({ type: "metadata" }, o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs);
        const found = Object.keys(meta.topics as Record<string, number>).filter((t) => o.topicPattern!.test(t));
        // Stopped while waiting: open returns a consumer with nothing to read, to be closed.
        if (found.length > 0 || o.topics?.length || o.topic !== undefined || o.signal?.aborted) {
          return { topics: found, waited };
        }
        const why = `no topic matches /${o.topicPattern!.source}/ yet`;
        if (monotonicMs() > deadline) throw new YakError("UNKNOWN_TOPIC", why);
        o.onRetry?.(why);
        await new Promise((r) => setTimeout(r, 500));
      }
    } finally {
      conn.close();
    }
  }

  /** The topics this consumer reads (those named, and those matching its pattern so far). */
  get topics(): string[] {
    return [...this.#topics.keys()];
  }

  /** The partitions this consumer reads now (its group assignment, or all) of its first topic. */
  get partitions(): number[] {
    return [...(this.#topics.get(this.topic)?.cursor.keys() ?? [])].sort((a, b) => a - b);
  }

  /** Every partition this consumer reads now, per topic. */
  get assignment(): Record<string, number[]> {
    const out: Record<string, number[]> = {};
    for (const [t, s] of this.#topics) {
      if (s.cursor.size > 0) out[t] = [...s.cursor.keys()].sort((a, b) => a - b);
    }
    return out;
  }

  get #timeoutMs(): number {
    return this.#o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  }

  async #connect(): Promise<void> {
    // The first connection fails fast on a wrong address; later ones ride out failovers.
    const first = !this.#connected;
    const firstMs = this.#o.firstConnectTimeoutMs ?? DEFAULTS.firstConnectTimeoutMs;
    const deadline = monotonicMs() + (first ? firstMs : this.#o.retryTimeoutMs ?? DEFAULTS.deliveryTimeoutMs);
    // Waiting for a topic that does not exist yet is a separate wait (for `yak consume`, part of being idle).
    const topicWaitMs = this.#o.topicWaitMs ?? firstMs;
    const topicDeadline = first ? monotonicMs() + topicWaitMs : deadline;
    const followerTopicDeadline = Math.max(topicDeadline, monotonicMs() + FOLLOWER_TOPIC_GRACE_MS);
    while (true) {
      // Closed meanwhile (a reconnection riding out a failover, or a rebalance's): no connection is kept.
      if (this.#closed) throw closedError();
      try {
        // A close() while the cluster is rediscovered ends the retries at the next one.
        const conn = await connectAny(this.#o.bootstrap, deadline, (why) => {
          if (this.#closed) throw closedError();
          this.#o.onRetry?.(why);
        });
        if (this.#closed) {
          conn.close();
          throw closedError();
        }
        this.#conn = conn;
        await this.#refresh(first);
        await this.#conn.request({
          type: "register",
          role: "consumer",
          client: this.id,
          topic: this.topic,
          ...(this.#o.group ? { group: this.#o.group } : {}),
        }, this.#timeoutMs);
        this.#connected = true;
        return;
      } catch (err) {
        this.#conn?.close();
        this.#conn = null;
        const yerr = toYakError(err);
        if (this.#closed) throw closedError();
        // A topic not replicated here yet is worth waiting for, like a lost connection.
        if (!isRetriable(yerr) && yerr.code !== "UNKNOWN_TOPIC") throw yerr;
        if (yerr.data?.gaveUp === true) throw yerr; // connecting already took the whole deadline
        const fromFollower = yerr.data?.fromLeader === false;
        const topicGiveUp = fromFollower ? followerTopicDeadline : topicDeadline;
        if (monotonicMs() > (yerr.code === "UNKNOWN_TOPIC" ? topicGiveUp : deadline)) throw yerr;
        if (this.#o.signal?.aborted) throw yerr; // stopped: no more waiting (open returns the consumer, to be closed)
        this.#o.onRetry?.(yerr.message);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /**
   * Learns the topics and their partition counts and sets a start offset for
   * partitions not yet read. At the first connection a consumer of topics
   * that do not exist yet waits (UNKNOWN_TOPIC, retried); later, a topic
   * that is still missing is simply looked for again at the next refresh.
   */
  async #refresh(first = false): Promise<void> {
    const conn = this.#conn!;
    const meta = await conn.request({ type: "metadata" }, this.#timeoutMs);
    const counts = { ...meta.topics as Record<string, number> };
    this.#lastMetaMs = monotonicMs();
    const pattern = this.#o.topicPattern;
    if (pattern) {
      const found = Object.keys(counts).filter((t) => pattern.test(t) && !this.#topics.has(t));
      for (const t of found) this.#topics.set(t, Consumer.#state(true));
      if (found.length > 0 && this.#member) {
        // A new topic for the group: resubscribe (the next poll rejoins with it).
        this.#member.subscribe([...this.#topics.keys()].sort());
      }
    }
    await this.#incarnations(meta, counts);
    const present = [...this.#topics.keys()].filter((t) => counts[t] !== undefined);
    if (first && !this.#connected) {
      for (const [t, s] of this.#topics) if (counts[t] === undefined) s.wasMissing = true;
      const missing = [...this.#topics.keys()].filter((t) => counts[t] === undefined);
      // topicWaitMs 0 (`yak consume --exit-at-end`) waits for no topic: one missing among several is as missing as
      // one alone (before, the others were read and it was silently left out).
      if (present.length === 0 || (missing.length > 0 && this.#o.topicWaitMs === 0)) {
        const names = present.length === 0 ? [...this.#topics.keys()] : missing;
        throw new YakError(
          "UNKNOWN_TOPIC",
          names.length === 1
            ? `topic '${names[0]}' does not exist; produce to it or create it first`
            : `${present.length === 0 ? "none of the topics" : "topics"} ${names.map((t) => `'${t}'`).join(", ")} ${
              present.length === 0 ? "exists yet" : "do not exist"
            }`,
          // The topics there are (for a "did you mean"), and whether the leader said so (a follower may lag).
          { topics: Object.keys(counts), fromLeader: meta.role === "leader" },
        );
      }
    }
    for (const topic of present) await this.#refreshTopic(conn, topic, counts[topic]);
  }

  /**
   * Takes each topic's id (incarnation) from a metadata answer. Another id
   * than the one the positions are in means the topic was deleted and
   * created again, or that this broker is behind: ids have no order, so the
   * leader's answer decides. The positions of an incarnation the leader no
   * longer has are dropped; a broker that does not have the leader's yet is
   * not read for that topic (removed from `counts`) until it does.
   */
  async #incarnations(meta: Record<string, unknown>, counts: Record<string, number>): Promise<void> {
    const ids = (meta.ids ?? {}) as Record<string, string>;
    const changed = [...this.#topics].some(([t, s]) => ids[t] !== undefined && s.id !== undefined && s.id !== ids[t]);
    let current = ids;
    if (changed && meta.role !== "leader") {
      // Asked briefly: with no leader to ask, the topic is skipped here for now (not every topic stalled).
      try {
        current = ((await this.#leaderRequest({ type: "metadata" }, INCARNATION_CHECK_MS)).ids ?? {}) as Record<
          string,
          string
        >;
      } catch {
        current = {};
      }
    }
    for (const [t, s] of this.#topics) {
      const id = ids[t];
      if (id === undefined || s.id === id) continue;
      if (s.id === undefined) s.id = id;
      else if (current[t] !== undefined && current[t] !== s.id) this.#recreated(t, s, current[t]);
      if (s.id !== id) delete counts[t];
    }
  }

  /**
   * Forgets the positions of a topic deleted and created again as `id`:
   * everything in the new one is newer than this consumer, so it is read
   * from its start, or from the group's commits to it.
   */
  #recreated(topic: string, s: TopicState, id: string): void {
    const had = [...s.positions].map(([p, at]) => `${p}:${at}`).join(",");
    s.gen++;
    s.id = id;
    forget(s);
    s.wasMissing = true;
    this.#o.onReset?.(
      `topic '${topic}' was deleted and created again; dropping the old one's positions` +
        `${had === "" ? "" : ` (${had})`} and reading the new one from its start`,
    );
  }

  async #refreshTopic(conn: Connection, topic: string, n: number): Promise<void> {
    const s = this.#topics.get(topic)!;
    const wanted = this.#member
      ? (this.#member.assignment[topic] ?? []).filter((p) => p < n)
      : this.#o.partition === undefined
      ? [...Array(n).keys()]
      : [this.#o.partition];
    if (this.#member) {
      // Partitions given to another member are forgotten (committed before the switch).
      for (const p of [...s.cursor.keys()]) {
        if (!wanted.includes(p)) forget(s, p);
      }
    }
    if (this.#o.partition !== undefined && this.#o.partition >= n) {
      throw new YakError(
        "UNKNOWN_PARTITION",
        `topic '${topic}' has partitions 0..${n - 1}; there is no partition ${this.#o.partition}`,
      );
    }
    const missing = wanted.filter((p) => !s.cursor.has(p));
    if (missing.length === 0) return;
    let committed: Record<string, number> = {};
    if (this.#o.group) {
      const res = await this.#leaderRequest({
        type: "committed",
        group: this.#o.group,
        topic,
      });
      committed = res.offsets as Record<string, number>;
    }
    const offsets = (await conn.request({ type: "list_offsets", topic }, this.#timeoutMs)) as Record<
      string,
      Record<string, number>
    >;
    // "From the beginning" is the log start: retention may have deleted what came before.
    const earliest = (p: number) => offsets.start?.[p] ?? 0;
    // read_committed ends at the last stable offset (brokers before transactions say only `hw`).
    const committedOnly = (this.#o.isolationLevel ?? "read_committed") === "read_committed";
    const latest = (p: number) => (committedOnly ? offsets.lso?.[p] : undefined) ?? offsets.hw[p] ?? 0;
    const firstTime = s.cursor.size === 0 && !this.#member && !this.#connected;
    // A group that committed some partitions of the topic and not this one:
    // the partition came later (added to the topic), so all of it is new.
    const groupStarted = Object.keys(committed).length > 0;
    const start = this.#start;
    for (const p of missing) {
      let at: number;
      if (committed[p] !== undefined) at = committed[p];
      else if (this.#member && groupStarted) at = earliest(p);
      else if (this.#member && start === undefined && !this.#o.fromBeginning && !s.wasMissing) {
        at = latest(p);
      } else if (start !== undefined && firstTime) at = this.#startAt(topic, p, start, earliest(p), latest(p));
      // Partitions added later, and a topic created after this consumer started, hold only new records.
      else if (this.#o.fromBeginning || !firstTime || s.wasMissing) at = earliest(p);
      else at = latest(p);
      s.positions.set(p, at);
      s.cursor.set(p, at);
      s.endAtStart.set(p, latest(p));
      s.readEnd.set(p, latest(p));
      if (committed[p] !== undefined) s.committed.set(p, committed[p]);
    }
  }

  /** Where `start` puts the reading of a partition whose records lie in [logStart, end). */
  #startAt(topic: string, p: number, start: StartOffset, logStart: number, end: number): number {
    switch (start.kind) {
      case "earliest":
        return logStart;
      case "latest":
        return end;
      case "fromEnd":
        return Math.max(logStart, end - start.count);
      case "offset":
        if (start.offset > end) {
          // Not quietly moved: the reader asked for records that are not there.
          throw new YakError(
            "OUT_OF_RANGE",
            `offset ${start.offset} is past the end of ${topic}/${p} (its log ends at ${end}); ` +
              `use --offset latest to wait for new records`,
          );
        }
        return start.offset; // below the log start: the first fetch resets it and says so
    }
  }

  /**
   * partition -> offset after the last record reported through
   * {@link consumed} (or the start offset) of the first topic: what
   * {@link commit} commits.
   */
  get positions(): ReadonlyMap<number, number> {
    return this.#topics.get(this.topic)?.positions ?? new Map();
  }

  /**
   * Whether every partition read has been consumed up to where its end was
   * when this consumer started reading it (kcat's `-e`). False while nothing
   * is assigned.
   */
  atEnd(): boolean {
    let any = false;
    for (const s of this.#topics.values()) {
      for (const [p, end] of s.endAtStart) {
        any = true;
        if ((s.positions.get(p) ?? 0) < end) return false;
      }
    }
    return any;
  }

  /**
   * One long-poll: records from any partition that has some, in offset order
   * per partition. The next fetch starts at once, while the caller handles
   * these, so fetching and printing overlap. Nothing counts as consumed (or
   * gets committed) until the caller says so with {@link consumed}.
   */
  async poll(): Promise<PartitionRecords[]> {
    const signal = this.#o.signal;
    if (signal === undefined) return await this.#poll();
    if (signal.aborted) return [];
    // Whatever the poll waited for goes on after an abort: its records are not handed out, its error not thrown.
    // A promise of this poll's own: one shared by every poll would keep each poll's records alive in its reactions.
    let onAbort = () => {};
    const stopped = new Promise<PartitionRecords[]>((resolve) => {
      onAbort = () => resolve([]);
      signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([this.#poll(), stopped]);
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  async #poll(): Promise<PartitionRecords[]> {
    if (this.#closed) throw closedError();
    if (this.#member?.needsRejoin) await this.#rebalance();
    this.#startLanes();
    // Whichever lane answered first; the others' answers wait for the next polls.
    while (this.#answered.length === 0) {
      await Promise.race(this.#lanes.filter((l) => l !== null).map((l) => l.catch(() => {})));
    }
    const lane = this.#answered[0];
    // A failed fetch stays first in line, so every poll after it throws its error too.
    const fetched = await this.#lanes[lane]!;
    this.#answered.shift();
    this.#lanes[lane] = null;
    for (const [key, k] of this.#claims) if (k === lane) this.#claims.delete(key);
    if (this.#member?.needsRejoin && !this.#closed) {
      // Out of the group since this fetch was sent (a heartbeat said so while it waited): its partitions may be
      // another member's already, so nothing of it is handed out; the rebalance reads them again if they stay ours.
      await this.#rebalance();
      return [];
    }
    if (fetched.length > 0) this.#startLanes();
    // Not what was fetched of a topic found deleted and created again since.
    const batch = fetched.filter((part) => this.#topics.get(part.topic)?.gen === part.incarnation);
    for (const part of batch) this.#handedOut.set(part.topic, part.incarnation);
    return batch;
  }

  /** Starts a fetch in each idle lane that has partitions to take (see {@link laneShare}). */
  #startLanes(): void {
    if (this.#closed) return;
    for (let k = 0; k < FETCH_LANES; k++) {
      if (this.#lanes[k] !== null) continue;
      const partitions: LaneCandidate<[string, number]>[] = [];
      for (const [t, s] of this.#topics) {
        for (const [p, at] of s.cursor) {
          partitions.push({
            id: [t, p],
            left: at < (s.readEnd.get(p) ?? Infinity),
            held: this.#claims.has(`${t}/${p}`),
          });
        }
      }
      const take = laneShare(partitions, FETCH_LANES);
      // Nothing to take: lane 0 waits out a poll (for an assignment) when no fetch is under way at all.
      if (take.length === 0 && (k > 0 || this.#lanes.some((l) => l !== null))) continue;
      for (const [t, p] of take) this.#claims.set(`${t}/${p}`, k);
      const fetching = this.#fetch(take);
      const answered = () => {
        // Not a fetch a rebalance has dropped since.
        if (this.#lanes[k] === fetching) this.#answered.push(k);
      };
      fetching.then(answered, answered);
      this.#lanes[k] = fetching;
    }
  }

  /**
   * Records that the records of a partition before `nextOffset` have been
   * used (printed, stored, ...): the next {@link commit} commits up to there.
   * Call it after the records are safely out of your hands, never before.
   * `from`, the batch they came from, lets a batch of a topic deleted and
   * created again since it was handed out be ignored.
   *
   * @example
   * ```ts ignore
   * for (const part of await consumer.poll()) {
   *   await writeAll(Deno.stdout, new TextEncoder().encode(part.text));
   *   consumer.consumed(part.topic, part.partition, part.end, part);
   * }
   * await consumer.commit();
   * ```
   */
  consumed(topic: string, partition: number, nextOffset: number, from?: PartitionRecords): void {
    const s = this.#topics.get(topic);
    // Records of a topic found deleted and created again after they were handed out: nothing of the new one.
    // Without the batch, the incarnation of the topic's last batch handed out stands in for it.
    const handed = from?.incarnation ?? this.#handedOut.get(topic);
    if (s !== undefined && handed !== undefined && handed !== s.gen) return;
    const at = s?.positions.get(partition);
    const fetched = s?.cursor.get(partition);
    // Offsets only grow, and never past what has been fetched.
    if (at === undefined || fetched === undefined || !Number.isInteger(nextOffset)) {
      throw new YakError("INVALID_ARGUMENT", `partition ${partition} of '${topic}' is not being read`);
    }
    if (nextOffset < at || nextOffset > fetched) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `offset ${nextOffset} of ${topic}/${partition} is outside ${at}..${fetched} (consumed..fetched)`,
      );
    }
    s!.positions.set(partition, nextOffset);
  }

  /**
   * The group is rebalancing: commit what was handed out while the
   * partitions are still ours, drop what was fetched ahead, rejoin, and
   * start reading the new assignment.
   */
  async #rebalance(): Promise<void> {
    const member = this.#member!;
    await this.commit();
    await Promise.all(this.#lanes.map((fetching) => fetching?.catch(() => [])));
    this.#lanes.fill(null);
    this.#claims.clear();
    this.#answered.length = 0;
    // Fetched ahead but not handed out: read again, by us or the next owner.
    for (const s of this.#topics.values()) for (const [p, at] of s.positions) s.cursor.set(p, at);
    const before = member.generation;
    await member.join();
    if (member.generation !== before + 1) {
      // A generation went by without this member (the group dropped it, or its coordinator moved and numbers
      // afresh): its partitions may have been another's meanwhile, which read and committed past our positions.
      // So every partition starts again from the group's commit, as a partition newly assigned does.
      for (const s of this.#topics.values()) forget(s);
    }
    if (!this.#conn || this.#conn.isClosed) await this.#connectOnce();
    else await this.#refreshOnce();
    // What was handed out of partitions still ours: its commit above was refused when the member had to rejoin
    // first (its coordinator moved, or the group dropped it), and records that come no more would not carry it.
    await this.commit();
  }

  /** Connects, or waits for the connection another lane is making. */
  #connectOnce(): Promise<void> {
    return this.#connecting ??= this.#connect().finally(() => (this.#connecting = null));
  }

  /** Refreshes the metadata, or waits for the refresh another lane started. */
  #refreshOnce(): Promise<void> {
    return this.#refreshing ??= this.#refresh().finally(() => (this.#refreshing = null));
  }

  /** One long-poll for the partitions `taken` (topic, partition), from where each is. */
  async #fetch(taken: readonly [string, number][]): Promise<PartitionRecords[]> {
    while (true) {
      // Closed (its connection with it): a fetch under way ends rather than connecting again, which kept the
      // process of a library user alive, reading on, after close().
      if (this.#closed) return [];
      let conn: Connection | null = null;
      try {
        if (!this.#conn || this.#conn.isClosed) await this.#connectOnce();
        if (monotonicMs() - this.#lastMetaMs > METADATA_REFRESH_MS) await this.#refreshOnce();
        conn = this.#conn!;
        const maxWaitMs = this.#o.maxWaitMs ?? DEFAULTS.consumerFetchWaitMs;
        const wanted: Record<string, Record<string, number>> = {};
        const ids: Record<string, string> = {};
        for (const [t, p] of taken) {
          const s = this.#topics.get(t);
          const at = s?.cursor.get(p);
          if (at === undefined) continue;
          (wanted[t] ??= {})[p] = at;
          if (s!.id !== undefined) ids[t] = s!.id;
        }
        if (Object.keys(wanted).length === 0) {
          // Nothing assigned to this member (more members than partitions), or no topic yet: wait.
          await new Promise((r) => setTimeout(r, maxWaitMs));
          return [];
        }
        const res = await conn.request({
          type: "fetch",
          topics: wanted,
          maxBytes: this.#o.maxBytes ?? DEFAULTS.consumerFetchMaxBytes,
          maxWaitMs,
          isolation: this.#o.isolationLevel ?? "read_committed",
          ids,
        }, maxWaitMs + Math.min(this.#timeoutMs, FETCH_GRACE_MS));
        const parts = this.#parts(res, ids);
        if (Array.isArray(res.recreated) && res.recreated.length > 0) {
          // A topic of another id there: the metadata says which is newer (this consumer's positions are dropped
          // if the broker's is, the topic skipped there if it is behind).
          await this.#refreshOnce();
          if (parts.length === 0) await new Promise((r) => setTimeout(r, RECREATED_RETRY_MS));
        }
        const damaged = Object.entries((res.damaged ?? {}) as Record<string, string>);
        for (const [key, why] of damaged) {
          // Said once per partition and offset; the other partitions go on meanwhile.
          if (this.#damageSeen.has(why)) continue;
          this.#damageSeen.add(why);
          this.#o.onRetry?.(`${key}: ${why}; the broker is healing it, retrying`);
        }
        if (parts.length === 0 && damaged.length > 0) await new Promise((r) => setTimeout(r, DAMAGED_RETRY_MS));
        return parts;
      } catch (err) {
        const yerr = toYakError(err);
        if (!isRetriable(yerr)) throw yerr;
        this.#o.onRetry?.(yerr.message);
        // Only the connection this fetch used: another lane may have made a new one meanwhile.
        const failed = conn ?? this.#conn;
        failed?.close();
        if (this.#conn === failed) this.#conn = null;
      }
    }
  }

  /**
   * The records of a fetch reply, and positions deleted by retention reset
   * (said through onReset). Nothing of a topic whose id is no longer `ids`'
   * (dropped since the fetch was sent, or listed in `recreated`) is taken.
   */
  #parts(res: Record<string, unknown>, ids: Record<string, string>): PartitionRecords[] {
    const recreated = new Set(Array.isArray(res.recreated) ? res.recreated as string[] : []);
    const stateOf = (topic: string) => {
      const s = this.#topics.get(topic);
      return !s || recreated.has(topic) || s.id !== ids[topic] ? undefined : s;
    };
    const attachment = (res.attachment as Uint8Array | undefined) ?? new Uint8Array(0);
    const aborted: Record<string, AbortedRange[]> = {};
    for (const [key, list] of Object.entries((res.aborted ?? {}) as Record<string, [string, number, number][]>)) {
      aborted[key] = list.map(([producer, first, last]) => ({ producer, first, last }));
    }
    // Where each partition's records end now (for read_committed its last stable offset, which a broker before
    // it does not say): which have records left decides the next fetches' shares.
    const lso = (res.lso ?? {}) as Record<string, Record<string, number>>;
    for (const [topic, ends] of Object.entries((res.hw ?? {}) as Record<string, Record<string, number>>)) {
      const s = stateOf(topic);
      for (const [p, hw] of Object.entries(ends)) {
        if (s?.cursor.has(Number(p))) s.readEnd.set(Number(p), lso[topic]?.[p] ?? hw);
      }
    }
    const out: PartitionRecords[] = [];
    let at = 0;
    type Part = { t: string; p: number; base: number; count: number; len: number; next?: number };
    for (const part of res.parts as Part[]) {
      const bytes = attachment.subarray(at, at + part.len);
      at += part.len;
      const s = stateOf(part.t);
      // `next` is there when compaction left offsets out after the records: the position moves past them.
      const next = part.next ?? part.base + part.count;
      if (!s || part.base !== s.cursor.get(part.p) || next <= part.base) continue;
      s.cursor.set(part.p, next);
      const records = PartitionRecords.fetched(
        part.t,
        part.p,
        part.base,
        part.count,
        bytes,
        aborted[`${part.t}/${part.p}`] ?? [],
        next,
      );
      records.incarnation = s.gen;
      out.push(records);
    }
    const ranges = (res.outOfRange ?? {}) as Record<string, Record<string, number[]>>;
    for (const [topic, byPartition] of Object.entries(ranges)) {
      const s = stateOf(topic);
      if (!s) continue;
      for (const [p, [logStart, hw]] of Object.entries(byPartition)) {
        const partition = Number(p);
        const from = s.cursor.get(partition);
        // Only a position nothing was fetched past: records handed out are never skipped here.
        if (from === undefined || (from >= logStart && from <= hw) || s.positions.get(partition) !== from) continue;
        const to = this.#o.autoOffsetReset === "latest" ? hw : logStart;
        s.cursor.set(partition, to);
        s.positions.set(partition, to);
        const why = from < logStart
          ? `was deleted (by retention or a deletion of records: the log starts at ${logStart})`
          : `is past the end (${hw}; a commit may name any offset)`;
        this.#o.onReset?.(
          `offset ${from} of ${topic}/${partition} ${why}; ` +
            `resetting to the ${this.#o.autoOffsetReset === "latest" ? "latest" : "earliest"} offset, ${to}`,
        );
      }
    }
    return out;
  }

  async #leaderRequest(
    body: Record<string, unknown>,
    withinMs = this.#o.retryTimeoutMs ?? DEFAULTS.deliveryTimeoutMs,
  ): Promise<Record<string, unknown>> {
    const deadline = monotonicMs() + withinMs;
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
        if (!isRetriable(yerr) || monotonicMs() > deadline) throw yerr;
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
    for (const [topic, s] of this.#topics) {
      const offsets: Record<string, number> = {};
      for (const [p, off] of s.positions) {
        if (s.committed.get(p) !== off) offsets[p] = off;
      }
      if (Object.keys(offsets).length === 0) continue;
      const gen = s.gen;
      try {
        if (this.#member) await this.#member.commit(topic, offsets, s.id);
        else {
          await this.#leaderRequest({
            type: "commit",
            group: this.#o.group,
            topic,
            offsets,
            ...(s.id === undefined ? {} : { topicId: s.id }),
          });
        }
      } catch (err) {
        // The member lost these partitions (a rebalance it missed): the next
        // poll rejoins; their new owner reads from the last good commit.
        if (this.#member?.needsRejoin) return;
        const yerr = toYakError(err);
        // The topic was deleted and created again: these positions are the old one's, never committed to the new
        // (dropped here, unless a refresh dropped them while the commit was out).
        const id = yerr.data?.topicId;
        if (yerr.code === "UNKNOWN_TOPIC_ID") {
          if (s.gen === gen && typeof id === "string" && id !== s.id) this.#recreated(topic, s, id);
          continue;
        }
        throw yerr;
      }
      if (s.gen !== gen) continue; // committed to the old one, whose positions are gone
      for (const [p, off] of Object.entries(offsets)) {
        s.committed.set(Number(p), off);
      }
    }
  }

  /** Leaves the group, deregisters and closes. Commit first if the group should resume here. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#o.signal?.removeEventListener("abort", this.#onAbort);
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

/** What a closed consumer answers (not retriable: nothing will change). */
function closedError(): YakError {
  return new YakError("INVALID_REQUEST", "the consumer is closed");
}
