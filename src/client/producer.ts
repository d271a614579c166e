/**
 * The producer: batches records per partition, pipelines batches to the
 * leader, and resends every unacknowledged batch (in order, with the same
 * sequence numbers) after any failure, so nothing is lost or duplicated.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import type { Connection } from "../protocol/connection.ts";
import { isRetriable, toYakError, YakError } from "../errors.ts";
import type { OutgoingRecord } from "../protocol/messages.ts";
import { after, monotonicMs } from "../clock.ts";
import { type Bootstrap, connectLeader, findLeader, type LeaderAddress } from "./discovery.ts";
import { partitionForKey } from "./murmur2.ts";
import { seqAdd } from "../log/sequence.ts";
import { strictUtf8 } from "../utf8.ts";

/** Options of {@link Producer.open}. */
export interface ProducerOptions {
  bootstrap: Bootstrap;
  topic: string;
  acks?: "all" | 1 | 0;
  /** Send everything to this partition. */
  partition?: number;
  batchRecords?: number;
  batchBytes?: number;
  lingerMs?: number;
  maxInFlight?: number;
  requestTimeoutMs?: number;
  /** Give up when nothing has been acknowledged for this long. */
  deliveryTimeoutMs?: number;
  /** Give up when the cluster cannot be reached at the start for this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Told why the producer is reconnecting (for a one-line notice). */
  onRetry?: (why: string) => void;
  /** Told of every batch the leader acknowledged, with who acknowledged it (not with acks=0); must not throw. */
  onAck?: (ack: Acknowledgement) => void;
  /**
   * Transactional: records are sent inside transactions of this id (Kafka's
   * transactional.id), each ended by {@link Producer.commitTransaction} or
   * {@link Producer.abortTransaction}; read_committed consumers see a
   * transaction's records only once it commits. Opening initializes the id,
   * which fences an earlier producer of the same id and aborts its open
   * transaction.
   */
  transactionalId?: string;
  /** The coordinator aborts a transaction open longer than this (default 60 s). */
  transactionTimeoutMs?: number;
  /**
   * Send batches of keyless text as attached lines where the leader takes
   * them (the default); false: always as JSON records, as a broker older
   * than attached lines gets them.
   */
  attachLines?: boolean;
}

/**
 * One acknowledged batch as the broker answered it: which broker took it,
 * under which leader epoch, and where it landed. A leader that lost its lease
 * must never answer, so every acknowledgement names a leader the zookeeper
 * had not yet replaced when the broker answered.
 */
export interface Acknowledgement {
  partition: number;
  baseOffset: number;
  /** Records in the batch. */
  records: number;
  /** The batch was stored before (a retry answered with its original offsets). */
  duplicate: boolean;
  brokerId: number;
  epoch: number;
  /** The broker's wall-clock ms at the lease check that allowed it: for comparing with logs, not for timing. */
  ackedAt: number;
}

type ResolvedOptions =
  & Required<
    Omit<
      ProducerOptions,
      "partition" | "onRetry" | "onAck" | "transactionalId" | "transactionTimeoutMs" | "attachLines"
    >
  >
  & Pick<
    ProducerOptions,
    "partition" | "onRetry" | "onAck" | "transactionalId" | "transactionTimeoutMs" | "attachLines"
  >;

interface Batch {
  partition: number;
  records: OutgoingRecord[];
  /** Each record's number in the order it was added (from 0): errors and summaries name it. */
  indexes: number[];
  /** Size estimate for batching (JSON overhead included). */
  bytes: number;
  /** The bytes of the keys and values themselves. */
  payloadBytes: number;
  seq: number;
  order: number;
  /** Transactional: the number of the transaction it belongs to (0 for every batch of a plain producer). */
  txn: number;
  acked: boolean;
  /** Monotonic ms of the last send. */
  sentAtMs: number;
  /**
   * Every record is a keyless, header-less text value without a newline (and
   * well-formed UTF-16): the batch may go as attached lines, not JSON records.
   */
  plain: boolean;
  /** The values as attached lines, once encoded (a retry sends the same bytes). */
  lines: Uint8Array | null;
  /**
   * Lines added as bytes ({@link Producer.addLines}), not yet joined into
   * `lines`: runs of consecutive lines of the caller's buffer, each run
   * without its last newline; null for a batch of {@link Producer.add}'s records.
   */
  raw: Uint8Array[] | null;
  /** The run being extended: its buffer and where it starts and ends in it. */
  runSrc: Uint8Array | null;
  runStart: number;
  runEnd: number;
}

const lineEncoder = new TextEncoder();
const NEWLINE = 0x0a;
const CR = 0x0d;

/** Batches of one partition in flight at most: the batches the leader remembers to answer a resend (Kafka's five). */
const WINDOW_BATCHES = DEFAULTS.idempotenceWindowBatches;
/** Past maxInFlight, small batches still go while those in flight hold less than this (see #roomInFlight). */
const SMALL_IN_FLIGHT_BYTES = 1024 * 1024;
/** At most this many batches in flight, however small. */
const MAX_SMALL_IN_FLIGHT = 256;
/** An answer slower than this makes the producer ask who leads now. */
const LEADER_CHECK_AFTER_MS = 400;
/** How often it asks while an answer is late. */
const LEADER_CHECK_EVERY_MS = 200;
/**
 * Reconnects without progress back off up to this: a broker that cannot
 * reach the zookeeper refuses writes at once, and reconnecting at full speed
 * made one producer register 15,231 times in 30 s (4 MB of broker log).
 */
const RECONNECT_BACKOFF_MAX_MS = 1000;
/** A record larger than this can never be sent: it would not fit in a frame (16 MiB). */
const MAX_RECORD_BYTES = 16 * 1024 * 1024 - 64 * 1024;
// deno-lint-ignore no-control-regex -- the ASCII range starts at NUL
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * The UTF-8 length of a string without encoding it (a regex first: most
 * records are ASCII, and testing is 6 times faster than counting).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { utf8Length } from "./producer.ts";
 * assert.equal(utf8Length("é!"), 3);
 * ```
 */
export function utf8Length(s: string): number {
  if (!NON_ASCII.test(s)) return s.length;
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 2; // a surrogate pair: 2 units, 4 bytes
      i++;
    } else n += 2;
  }
  return n;
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** A record no broker would take: its index and size, and the limit. */
function encodedTooLarge(index: number, encoded: number): YakError {
  return new YakError(
    "MESSAGE_TOO_LARGE",
    `record ${index} is ${encoded} bytes sent as JSON (its escapes, or base64), more than a request carries ` +
      `(${MAX_RECORD_BYTES} bytes); split it, or send it as a keyless line without headers`,
    { index, bytes: encoded, limit: MAX_RECORD_BYTES },
  );
}

function recordTooLarge(index: number, payload: number): YakError {
  return new YakError(
    "MESSAGE_TOO_LARGE",
    `record ${index} (${payload} bytes) is larger than any broker takes (${MAX_RECORD_BYTES} bytes); split it`,
    { index, bytes: payload, limit: MAX_RECORD_BYTES },
  );
}

/**
 * An idempotent producer for one topic.
 *
 * @example
 * ```ts ignore
 * import { Producer } from "./producer.ts";
 * const producer = await Producer.open({ bootstrap: {}, topic: "events" });
 * producer.add("user-7", "hello");
 * await producer.flush();
 * await producer.close();
 * ```
 */
export class Producer {
  /** This producer's client id, as `yak status` lists it (not its producer id, which is a secret). */
  readonly id: string;
  readonly topic: string;
  #o: ResolvedOptions;
  #conn: Connection;
  #leader: LeaderAddress;
  #watchTimer: ReturnType<typeof setInterval> | undefined;
  #checkingLeader = false;
  #partitions: number;
  #open = new Map<number, Batch>();
  #queue: Batch[] = [];
  #inflight: Batch[] = [];
  /** Batches given up on after a failure (never acknowledged). */
  #abandoned: Batch[] = [];
  #nextSeq = new Map<number, number>();
  /**
   * The producer id the leader issued (decimal text): with a per-partition
   * sequence it makes retries idempotent. Kept across reconnects and
   * failovers, and known to no one else, so no other client can write as
   * this producer.
   */
  #producerId: string | null = null;
  /** A transactional producer's epoch (0 for an idempotent one). */
  #producerEpoch = 0;
  /** Transactional: whether the partitions of the transaction being sent have been added to it. */
  #txnOpen = false;
  #openingTxn: Promise<void> | null = null;
  /** Transactional: records and bytes acknowledged in the open transaction (counted as acknowledged at its commit). */
  #txnRecords = 0;
  #txnBytes = 0;
  /** Transactional: the acknowledged batches of the open transaction (not acknowledged, should it abort). */
  #txnBatches: Batch[] = [];
  /** Transactional: the transaction records are added to now (one past the one committing, if one is). */
  #addingTxn = 0;
  /**
   * Transactional: the transaction whose batches may be sent. A later one's
   * batches wait in the queue until this one is committed: its records must
   * not be stored before the commit's markers.
   */
  #sendingTxn = 0;
  /** Transactional: the commit under way, if one is. */
  #committing: Promise<void> | null = null;
  /** Transactional: the transactions numbered below this were aborted: a commit of one under way must fail. */
  #abortedBelow = 0;
  #order = 0;
  #sticky = 0;
  /** Whether the sticky partition was picked (at random, once the partition count is known). */
  #stickyPicked = false;
  /** Records added so far: the next record's index. */
  #added = 0;
  /** Consecutive reconnects without an acknowledgement in between. */
  #reconnectsWithoutProgress = 0;
  /** The topic did not exist at open: the first batch creates it (so a produce that fails creates nothing). */
  #topicMissing = false;
  #generation = 0;
  #reconnecting: Promise<void> | null = null;
  /** Cancels the linger of the open batches (see {@link after}). */
  #lingerTimer: (() => void) | undefined;
  #progress = new Set<() => void>();
  #lastProgressMs = monotonicMs();
  #failed: YakError | null = null;
  #closed = false;
  /** The leader takes a produce's values as attached lines (it said `produce_lines` when registered). */
  #brokerTakesLines = false;
  /** Records and bytes acknowledged so far (or sent, with acks=0). */
  ackedRecords = 0;
  ackedBytes = 0;
  /** Batches sent again after a failure. */
  retries = 0;
  duplicates = 0;

  private constructor(
    o: ResolvedOptions,
    conn: Connection,
    leader: LeaderAddress,
    partitions: number,
  ) {
    this.#o = o;
    this.topic = o.topic;
    this.#conn = conn;
    this.#leader = leader;
    this.#partitions = partitions;
    this.id = `p-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  }

  /** Connects to the leader, creates the topic if it is new, and registers. */
  static async open(opts: ProducerOptions): Promise<Producer> {
    const o = {
      acks: "all" as const,
      batchRecords: DEFAULTS.batchRecords,
      batchBytes: DEFAULTS.batchBytes,
      lingerMs: DEFAULTS.lingerMs,
      maxInFlight: DEFAULTS.maxInFlightBatches,
      requestTimeoutMs: DEFAULTS.requestTimeoutMs,
      deliveryTimeoutMs: DEFAULTS.deliveryTimeoutMs,
      // An absent flag arrives as undefined and must not override a default.
      ...Object.fromEntries(
        Object.entries(opts).filter(([, v]) => v !== undefined),
      ),
    } as ResolvedOptions;
    const deadline = monotonicMs() +
      Math.min(o.deliveryTimeoutMs, o.connectTimeoutMs ?? DEFAULTS.firstConnectTimeoutMs);
    let p: Producer | null = null;
    while (true) {
      const { conn, leader } = await connectLeader(o.bootstrap, deadline, o.onRetry);
      p ??= new Producer(o, conn, leader, 1);
      p.#conn = conn;
      p.#leader = leader;
      try {
        await p.#setup(conn);
        break;
      } catch (err) {
        conn.close();
        // Right after a failover the zookeeper may name a leader that has not taken its lease yet
        // (it answers NOT_LEADER for a few ms): ask again until the deadline, as a reconnect does.
        const yerr = toYakError(err);
        if (!isRetriable(yerr) || monotonicMs() >= deadline) throw yerr;
        o.onRetry?.(yerr.message);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    p.#watchTimer = setInterval(() => p.#watchLeader(), LEADER_CHECK_EVERY_MS);
    return p;
  }

  get partitions(): number {
    return this.#partitions;
  }

  /** Batches and records not yet acknowledged. */
  get pendingBatches(): number {
    return this.#queue.length + this.#inflight.length + this.#open.size;
  }

  /**
   * Learns the partition count without creating the topic: a missing topic
   * is created by the leader with its first batch, so a produce that fails
   * or sends nothing leaves no topic behind.
   */
  async #setup(conn: Connection): Promise<void> {
    let n: number;
    try {
      // A transaction adds every partition of the topic first, so the topic must exist before anything is sent.
      const create = this.#o.transactionalId !== undefined;
      const meta = await conn.request({ type: "metadata", topic: this.topic, create }, this.#o.requestTimeoutMs);
      n = (meta.topics as Record<string, number>)[this.topic];
      this.#topicMissing = false;
    } catch (err) {
      const yerr = toYakError(err);
      const fallback = yerr.data?.defaultPartitions;
      if (yerr.code !== "UNKNOWN_TOPIC" || typeof fallback !== "number") throw yerr;
      n = fallback;
      this.#topicMissing = true;
    }
    if (this.#o.partition !== undefined && this.#o.partition >= n) {
      throw new YakError(
        "UNKNOWN_PARTITION",
        this.#topicMissing
          ? `topic '${this.topic}' does not exist and would be created with ${n} partitions (0..${n - 1}); ` +
            `there would be no partition ${this.#o.partition}: create it first with ` +
            `'yak topics --create ${this.topic} --partitions ${this.#o.partition + 1}'`
          : `topic '${this.topic}' has partitions 0..${n - 1}; there is no partition ${this.#o.partition}`,
      );
    }
    this.#partitions = n;
    // Kafka's sticky partitioner starts each producer on a random partition, so producers spread.
    if (!this.#stickyPicked) {
      this.#sticky = Math.floor(Math.random() * n);
      this.#stickyPicked = true;
    } else if (this.#sticky >= n) this.#sticky = 0;
    const registered = await conn.request({
      type: "register",
      role: "producer",
      client: this.id,
      topic: this.topic,
    }, this.#o.requestTimeoutMs);
    // A broker older than attached lines says nothing, and gets JSON records.
    this.#brokerTakesLines = this.#o.attachLines !== false && Array.isArray(registered.features) &&
      registered.features.includes("produce_lines");
    if (this.#producerId === null) {
      // Once: a transactional id initialized again would fence this very producer.
      const txn = this.#o.transactionalId === undefined
        ? {}
        : { transactionalId: this.#o.transactionalId, transactionTimeoutMs: this.#o.transactionTimeoutMs };
      const issued = await conn.request({ type: "init_producer", ...txn }, this.#o.requestTimeoutMs);
      this.#producerId = String(issued.producerId);
      this.#producerEpoch = typeof issued.producerEpoch === "number" ? issued.producerEpoch : 0;
    }
  }

  /** Records added so far (each record's index is its place in this count, from 0). */
  get added(): number {
    return this.#added;
  }

  /**
   * Adds one record (text, or bytes stored as base64). Cheap and synchronous;
   * call {@link waitForRoom} now and then to bound memory. `payloadBytes`,
   * when the caller knows it, is the UTF-8 size of key and value (counted
   * otherwise). `headers` are Kafka record headers, `[key, value]` in order;
   * their bytes count toward the record's size (and are added to
   * `payloadBytes`). A record too large for any frame is refused here
   * (MESSAGE_TOO_LARGE); the broker refuses records over the topic's limit.
   */
  add(
    key: string | null,
    value: string | Uint8Array,
    payloadBytes?: number,
    headers?: readonly (readonly [string, string | null])[],
  ): void {
    if (this.#failed) throw this.#failed;
    const index = this.#added;
    let headerBytes = 0;
    let headerChars = 0;
    if (headers !== undefined) {
      for (const [k, v] of headers) {
        headerBytes += utf8Length(k) + (v === null ? 0 : utf8Length(v));
        headerChars += k.length + (v?.length ?? 0) + 8;
      }
    }
    const payload = headerBytes + (payloadBytes ??
      ((typeof value === "string" ? utf8Length(value) : value.length) + (key === null ? 0 : utf8Length(key))));
    if (payload > MAX_RECORD_BYTES) throw recordTooLarge(index, payload);
    const record: OutgoingRecord = typeof value === "string" ? { v: value } : { b: toBase64(value) };
    if (key !== null) record.k = key;
    if (headers !== undefined && headers.length > 0) record.h = headers.map(([k, v]) => [k, v]);
    let size = (typeof value === "string" ? value.length : Math.ceil(value.length * 4 / 3)) +
      (key?.length ?? 0) + headerChars + 16;
    // A record that cannot go as a line is sent as JSON: escapes take up to 6 bytes a character, base64 4 for 3. One
    // large enough to pass the frame that way is measured as it will go, and refused now: the broker closes a
    // connection that sends a frame over its limit, and a resent batch would be refused the same way, for ever.
    // Scanned only when it matters: a large record, or a batch still of lines.
    const isLine = () =>
      key === null && headers === undefined && typeof value === "string" && !value.includes("\n") &&
      value.isWellFormed();
    if (size > MAX_RECORD_BYTES / 6 && !isLine()) {
      size = utf8Length(JSON.stringify(record));
      if (size > MAX_RECORD_BYTES) throw encodedTooLarge(index, size);
    }
    this.#added++;
    let partition: number;
    if (this.#o.partition !== undefined) partition = this.#o.partition;
    else if (key !== null) partition = partitionForKey(key, this.#partitions);
    else partition = this.#sticky;
    let batch = this.#open.get(partition);
    // A large record is not added to a batch it would push past the batch limit (and maybe the frame limit);
    // nor is it added to a batch of lines added as bytes.
    if (batch && (batch.bytes + size > this.#o.batchBytes || batch.raw !== null)) {
      this.#seal(batch);
      batch = undefined;
      // The sticky partition may have moved on with the seal; keyless records follow it.
      if (this.#o.partition === undefined && key === null) partition = this.#sticky;
      batch = this.#open.get(partition);
    }
    batch ??= this.#openBatch(partition, false);
    if (batch.plain && !isLine()) batch.plain = false;
    batch.records.push(record);
    batch.indexes.push(index);
    batch.bytes += size;
    batch.payloadBytes += payload;
    if (
      batch.records.length >= this.#o.batchRecords ||
      batch.bytes >= this.#o.batchBytes
    ) {
      this.#seal(batch);
    } else if (this.#lingerTimer === undefined) {
      this.#startLinger();
    }
  }

  /**
   * Adds every line of `bytes` as a keyless record without headers, as
   * {@link add} would each line's text, without decoding it: lines end at
   * newlines and the last one at the end of `bytes` (so `bytes` holds at
   * least one line), and a CR before a line's end is dropped. Each value is
   * stored as text where it is UTF-8, else as base64. `bytes` is kept until
   * its records are sent: the caller must not reuse it. Returns how many
   * records were added; a line too large for any frame is refused
   * (MESSAGE_TOO_LARGE) and the lines before it are added.
   */
  addLines(bytes: Uint8Array): number {
    if (this.#failed) throw this.#failed;
    let s = 0;
    let added = 0;
    while (true) {
      let nl = bytes.indexOf(NEWLINE, s);
      const last = nl === -1;
      if (last) nl = bytes.length;
      this.#addLine(bytes, s, nl > s && bytes[nl - 1] === CR ? nl - 1 : nl);
      added++;
      if (last) return added;
      s = nl + 1;
    }
  }

  #addLine(src: Uint8Array, start: number, end: number): void {
    const index = this.#added;
    const size = end - start;
    if (size > MAX_RECORD_BYTES) throw recordTooLarge(index, size);
    this.#added++;
    let partition = this.#o.partition ?? this.#sticky;
    let batch = this.#open.get(partition);
    if (batch && (batch.raw === null || batch.bytes + size + 1 > this.#o.batchBytes)) {
      this.#seal(batch);
      partition = this.#o.partition ?? this.#sticky;
      batch = this.#open.get(partition);
    }
    batch ??= this.#openBatch(partition, true);
    // Consecutive lines of one buffer make one run: the newline between them is the one the attachment needs.
    if (batch.runSrc === src && start === batch.runEnd + 1) batch.runEnd = end;
    else {
      if (batch.runSrc !== null) batch.raw!.push(batch.runSrc.subarray(batch.runStart, batch.runEnd));
      batch.runSrc = src;
      batch.runStart = start;
      batch.runEnd = end;
    }
    batch.indexes.push(index);
    batch.bytes += size + 1;
    batch.payloadBytes += size;
    if (batch.indexes.length >= this.#o.batchRecords || batch.bytes >= this.#o.batchBytes) this.#seal(batch);
    else if (this.#lingerTimer === undefined) this.#startLinger();
  }

  /** A batch's values as attached lines, built once (and its raw runs let go). */
  #linesOf(batch: Batch): Uint8Array {
    if (batch.lines !== null) return batch.lines;
    if (batch.raw === null) {
      batch.lines = lineEncoder.encode(batch.records.map((r) => r.v).join("\n") + "\n");
      return batch.lines;
    }
    const runs = batch.runSrc === null
      ? batch.raw
      : [...batch.raw, batch.runSrc.subarray(batch.runStart, batch.runEnd)];
    const out = new Uint8Array(runs.reduce((n, r) => n + r.length + 1, 0));
    let at = 0;
    for (const run of runs) {
      out.set(run, at);
      at += run.length;
      out[at++] = NEWLINE;
    }
    batch.raw = [];
    batch.runSrc = null;
    batch.lines = out;
    return out;
  }

  /** A batch's records as JSON records, for a broker that does not take lines (lines added as bytes made into them). */
  #recordsOf(batch: Batch): OutgoingRecord[] {
    if (batch.raw === null) return batch.records;
    const lines = this.#linesOf(batch);
    const out: OutgoingRecord[] = [];
    for (let s = 0; s < lines.length;) {
      const nl = lines.indexOf(NEWLINE, s);
      const line = lines.subarray(s, nl);
      try {
        out.push({ v: strictUtf8.decode(line) });
      } catch {
        out.push({ b: toBase64(line) });
      }
      s = nl + 1;
    }
    return out;
  }

  /** A new, empty batch for the partition, open for records (`raw`: for lines added as bytes). */
  #openBatch(partition: number, raw: boolean): Batch {
    const batch: Batch = {
      partition,
      records: [],
      indexes: [],
      bytes: 0,
      payloadBytes: 0,
      seq: 0,
      order: 0,
      txn: this.#addingTxn,
      acked: false,
      sentAtMs: 0,
      plain: true,
      lines: null,
      raw: raw ? [] : null,
      runSrc: null,
      runStart: 0,
      runEnd: 0,
    };
    this.#open.set(partition, batch);
    return batch;
  }

  /** In lingerMs every open batch is sealed, full or not. */
  #startLinger(): void {
    this.#lingerTimer = after(this.#o.lingerMs, () => {
      this.#lingerTimer = undefined;
      for (const b of [...this.#open.values()]) this.#seal(b);
    });
  }

  #seal(batch: Batch): void {
    this.#open.delete(batch.partition);
    batch.seq = this.#nextSeq.get(batch.partition) ?? 0;
    this.#nextSeq.set(batch.partition, seqAdd(batch.seq, batch.indexes.length));
    batch.order = this.#order++;
    this.#queue.push(batch);
    // Keyless records spread batch by batch (Kafka's sticky partitioner).
    if (batch.partition === this.#sticky) {
      this.#sticky = (this.#sticky + 1) % this.#partitions;
    }
    this.#pump();
  }

  #pump(): void {
    if (this.#reconnecting || this.#failed) return;
    const transactional = this.#o.transactionalId !== undefined;
    if (transactional) {
      // The queue is in add order: a later transaction's batches wait behind this one's commit.
      if (this.#queue.length === 0 || this.#queue[0].txn !== this.#sendingTxn) return;
      if (!this.#txnOpen) return this.#openTransaction();
    }
    while (this.#queue.length > 0 && this.#roomInFlight()) {
      // The first batch of each partition in the queue is that partition's next: one whose partition has the
      // leader's whole duplicate window in flight waits, so a resend of any of them is still known there.
      const at = this.#queue.findIndex((b) =>
        (!transactional || b.txn === this.#sendingTxn) && this.#inflightOn(b.partition) < WINDOW_BATCHES
      );
      if (at === -1) break;
      const [batch] = this.#queue.splice(at, 1);
      this.#inflight.push(batch);
      this.#send(batch, this.#conn, this.#generation);
    }
  }

  /**
   * Whether another batch may go: up to maxInFlight batches, and past that
   * small ones while those in flight hold less than SMALL_IN_FLIGHT_BYTES.
   * Keyed records over many partitions make batches of a record or two; 8 in
   * flight in all held 20,000 of them over 1,000 partitions to 4,756 records/s
   * (0.4 s with 256 in flight).
   */
  #roomInFlight(): boolean {
    const n = this.#inflight.length;
    if (n < this.#o.maxInFlight) return true;
    if (n >= MAX_SMALL_IN_FLIGHT) return false;
    let bytes = 0;
    for (const b of this.#inflight) bytes += b.bytes;
    return bytes < SMALL_IN_FLIGHT_BYTES;
  }

  /** Batches of `partition` in flight. */
  #inflightOn(partition: number): number {
    let n = 0;
    for (const b of this.#inflight) if (b.partition === partition) n++;
    return n;
  }

  #send(batch: Batch, conn: Connection, generation: number): void {
    batch.sentAtMs = monotonicMs();
    // Keyless text lines go as they are after the frame (the broker stores their bytes): no JSON per record
    // on either side.
    const asLines = batch.plain && this.#brokerTakesLines;
    const attachment = asLines ? this.#linesOf(batch) : undefined;
    const body = {
      type: "produce",
      topic: this.topic,
      partition: batch.partition,
      acks: this.#o.acks,
      producer: this.#producerId,
      seq: batch.seq,
      ...(asLines ? { lines: batch.indexes.length } : { records: this.#recordsOf(batch) }),
      ...(this.#o.transactionalId === undefined ? {} : { producerEpoch: this.#producerEpoch, txn: true }),
    };
    if (this.#o.acks === 0) {
      conn.send(body, attachment).then(
        () => this.#acked(batch, false),
        (err) => this.#failedSend(err, generation, batch),
      );
      return;
    }
    conn.request(body, this.#o.requestTimeoutMs + 2000, attachment).then(
      (res) => {
        const fresh = !batch.acked;
        this.#acked(batch, res.duplicate === true);
        if (!fresh || !this.#o.onAck) return;
        try {
          this.#o.onAck(this.#acknowledgement(batch, res));
        } catch { /* the caller's callback must not stop the producer */ }
      },
      (err) => this.#failedSend(err, generation, batch),
    );
  }

  #acknowledgement(batch: Batch, res: Record<string, unknown>): Acknowledgement {
    const num = (v: unknown) => (typeof v === "number" ? v : -1);
    return {
      partition: batch.partition,
      baseOffset: num(res.baseOffset),
      records: batch.indexes.length,
      duplicate: res.duplicate === true,
      // -1 from a broker too old to say.
      brokerId: num(res.brokerId),
      epoch: num(res.epoch),
      ackedAt: num(res.ackedAt),
    };
  }

  #acked(batch: Batch, duplicate: boolean): void {
    if (batch.acked) return;
    batch.acked = true;
    if (duplicate) this.duplicates++;
    if (this.#o.transactionalId !== undefined) {
      // Acknowledged, but visible to read_committed readers only once the transaction commits.
      this.#txnRecords += batch.indexes.length;
      this.#txnBytes += batch.payloadBytes;
      this.#txnBatches.push(batch);
    } else {
      this.ackedRecords += batch.indexes.length;
      this.ackedBytes += batch.payloadBytes;
    }
    this.#reconnectsWithoutProgress = 0;
    if (this.#topicMissing) {
      // The first batch created the topic: its partition count is the truth from here on.
      this.#topicMissing = false;
      this.#refreshPartitions();
    }
    const i = this.#inflight.indexOf(batch);
    if (i !== -1) this.#inflight.splice(i, 1);
    else {
      const j = this.#queue.indexOf(batch);
      if (j !== -1) this.#queue.splice(j, 1);
    }
    this.#lastProgressMs = monotonicMs();
    this.#notify();
    this.#pump();
  }

  /** A batch that will not be sent again: out of flight, still counted as not acknowledged. */
  #abandon(batch: Batch): void {
    const i = this.#inflight.indexOf(batch);
    if (i === -1) return;
    this.#inflight.splice(i, 1);
    this.#abandoned.push(batch);
    this.#notify();
  }

  #refreshPartitions(): void {
    this.#conn.request({ type: "metadata", topic: this.topic }, this.#o.requestTimeoutMs).then((meta) => {
      const n = (meta.topics as Record<string, number>)[this.topic];
      if (typeof n === "number" && n > 0) this.#partitions = n;
    }, () => {/* the next reconnect learns it */});
  }

  #failedSend(err: unknown, generation: number, batch: Batch): void {
    if (this.#failed) {
      this.#abandon(batch); // given up: its answer came, and it was not an acknowledgement
      return;
    }
    if (generation !== this.#generation || this.#closed) return; // already being retried
    const yerr = toYakError(err);
    if (!isRetriable(yerr)) {
      this.#abandon(batch);
      this.#fail(this.#named(yerr, batch));
      return;
    }
    this.#reconnect(
      yerr.message,
      yerr.code === "NOT_ENOUGH_REPLICAS" || yerr.code === "NOT_ENOUGH_REPLICAS_AFTER_APPEND" ? 100 : 0,
    );
  }

  /**
   * While an answer is late, asks the cluster who leads: a leader that froze
   * (SIGSTOP, a full GC, a cut link) never answers, and waiting out the
   * request timeout stalled producers 12 s after a new leader was elected in 1.
   */
  async #watchLeader(): Promise<void> {
    if (this.#checkingLeader || this.#reconnecting || this.#closed || this.#failed) return;
    const now = monotonicMs();
    if (!this.#inflight.some((b) => !b.acked && now - b.sentAtMs > LEADER_CHECK_AFTER_MS)) return;
    this.#checkingLeader = true;
    const generation = this.#generation;
    try {
      const leader = await findLeader(this.#o.bootstrap, 500);
      if (generation !== this.#generation || this.#reconnecting) return;
      if (leader.id !== this.#leader.id || leader.epoch > this.#leader.epoch) {
        this.#reconnect(`broker ${leader.id} leads now (epoch ${leader.epoch}); resending to it`);
      }
    } catch {
      /* no answer either: the request's own timeout decides */
    } finally {
      this.#checkingLeader = false;
    }
  }

  /**
   * The broker's error about "record i of the batch", told as the record's
   * index among everything added (`data.index`), so the CLI can name the line.
   */
  #named(err: YakError, batch: Batch): YakError {
    const i = err.data?.record;
    if (err.code !== "MESSAGE_TOO_LARGE" || typeof i !== "number" || batch.indexes[i] === undefined) return err;
    const index = batch.indexes[i];
    return new YakError(
      err.code,
      err.message.replace(/^record \d+ of the batch/, `record ${index}`),
      { ...err.data, index },
    );
  }

  #reconnect(why: string, backoffMs = 0): void {
    if (this.#reconnecting || this.#failed) return;
    // The first reconnect is at once (a failover); more without progress back off.
    const n = this.#reconnectsWithoutProgress++;
    if (n > 0) backoffMs = Math.max(backoffMs, Math.min(RECONNECT_BACKOFF_MAX_MS, 25 * 2 ** n));
    this.#generation++;
    this.#conn.close();
    // Everything unacknowledged goes again, in its original order and sequence.
    const retry = this.#inflight.filter((b) => !b.acked);
    this.retries += retry.length;
    this.#queue = [...retry, ...this.#queue].sort((a, b) => a.order - b.order);
    this.#inflight = [];
    this.#o.onRetry?.(why);
    this.#reconnecting = (async () => {
      try {
        if (backoffMs > 0) await new Promise((r) => setTimeout(r, backoffMs));
        while (true) {
          if (this.#closed || this.#failed) return;
          if (monotonicMs() - this.#lastProgressMs > this.#o.deliveryTimeoutMs) {
            throw new YakError(
              "TIMEOUT",
              `nothing acknowledged for ${this.#o.deliveryTimeoutMs} ms (last error: ${why})`,
            );
          }
          try {
            const { conn, leader } = await connectLeader(
              this.#o.bootstrap,
              monotonicMs() + Math.max(0, this.#lastProgressMs + this.#o.deliveryTimeoutMs - monotonicMs()),
              this.#o.onRetry,
            );
            this.#conn = conn;
            this.#leader = leader;
            await this.#setup(conn);
            return;
          } catch (err) {
            const yerr = toYakError(err);
            if (!isRetriable(yerr)) throw yerr;
            why = yerr.message;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      } catch (err) {
        this.#fail(toYakError(err));
      } finally {
        this.#reconnecting = null;
      }
    })().then(() => this.#pump());
  }

  #fail(err: YakError): void {
    if (this.#failed) return;
    this.#failed = err;
    clearInterval(this.#watchTimer);
    this.#notify();
  }

  #notify(): void {
    const waiters = [...this.#progress];
    this.#progress.clear();
    for (const w of waiters) w();
  }

  #waitProgress(deadline = Infinity): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#progress.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, Math.min(1000, deadline - monotonicMs())));
      this.#progress.add(done);
    });
  }

  /** Waits while too many batches are outstanding (backpressure for fast readers). */
  async waitForRoom(): Promise<void> {
    while (!this.#failed && !this.#roomToAdd()) {
      await this.#waitProgress();
      this.#checkStalled();
    }
    if (this.#failed) throw this.#failed;
  }

  /** Whether more may be read: twice what may be in flight, in batches or (for small ones) bytes. */
  #roomToAdd(): boolean {
    const n = this.#queue.length + this.#inflight.length;
    if (n <= this.#o.maxInFlight * 2) return true;
    if (n > MAX_SMALL_IN_FLIGHT * 2) return false;
    let bytes = 0;
    for (const b of this.#queue) bytes += b.bytes;
    for (const b of this.#inflight) bytes += b.bytes;
    return bytes < SMALL_IN_FLIGHT_BYTES * 2;
  }

  #checkStalled(): void {
    if (
      !this.#reconnecting &&
      monotonicMs() - this.#lastProgressMs > this.#o.deliveryTimeoutMs
    ) {
      this.#fail(
        new YakError(
          "TIMEOUT",
          `nothing acknowledged for ${this.#o.deliveryTimeoutMs} ms`,
        ),
      );
    }
  }

  /**
   * Sends everything added so far and waits until all of it is
   * acknowledged. With `timeoutMs`, stops waiting then with TIMEOUT (what
   * is not acknowledged by then stays so: see {@link unacknowledged}).
   */
  async flush(timeoutMs = Infinity): Promise<void> {
    this.#lingerTimer?.();
    this.#lingerTimer = undefined;
    for (const b of [...this.#open.values()]) this.#seal(b);
    const deadline = monotonicMs() + timeoutMs;
    while (
      !this.#failed &&
      (this.#queue.length > 0 || this.#inflight.length > 0 ||
        this.#reconnecting)
    ) {
      if (monotonicMs() >= deadline) {
        throw new YakError("TIMEOUT", `not everything was acknowledged within ${timeoutMs} ms`);
      }
      this.#pump();
      await this.#waitProgress(deadline);
      this.#checkStalled();
    }
    if (this.#failed) throw this.#failed;
  }

  /**
   * After a failure: waits (up to `timeoutMs`) for the answers to batches
   * already sent, so the acknowledged count is final. Sends nothing new.
   */
  async settle(timeoutMs: number): Promise<void> {
    const deadline = monotonicMs() + timeoutMs;
    while (this.#inflight.some((b) => !b.acked) && monotonicMs() < deadline) {
      await this.#waitProgress(deadline);
    }
  }

  /** The indexes (order of {@link add}, from 0) of the records not acknowledged, ascending. */
  unacknowledged(): number[] {
    const out: number[] = [];
    for (const b of [...this.#open.values(), ...this.#queue, ...this.#inflight, ...this.#abandoned]) {
      if (!b.acked) out.push(...b.indexes);
    }
    // A transaction not committed: none of it counts.
    for (const b of this.#txnBatches) out.push(...b.indexes);
    return out.sort((a, b) => a - b);
  }

  /** Every partition of the topic: a transaction holds them all, wherever its records go. */
  #allPartitions(): number[] {
    return Array.from({ length: this.#partitions }, (_, p) => p);
  }

  /** Adds every partition of the topic to the transaction about to be sent, then lets its batches go. */
  #openTransaction(): void {
    if (this.#openingTxn) return;
    this.#openingTxn = (async () => {
      try {
        const partitions = this.#allPartitions();
        await this.#txnRequest({ type: "add_partitions_to_txn", topic: this.topic, partitions });
        this.#txnOpen = true;
      } catch (err) {
        this.#fail(toYakError(err));
      } finally {
        this.#openingTxn = null;
      }
    })().then(() => this.#pump());
  }

  /**
   * A transaction request to the leader, retried through failovers (the
   * coordinator's state is in the cluster) and while the id's previous
   * transaction is still being completed.
   */
  async #txnRequest(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    while (true) {
      if (this.#failed) throw this.#failed;
      if (this.#reconnecting) {
        await this.#reconnecting;
        continue;
      }
      try {
        return await this.#conn.request({
          ...body,
          transactionalId: this.#o.transactionalId,
          producer: this.#producerId,
          producerEpoch: this.#producerEpoch,
        }, this.#o.requestTimeoutMs + 2000);
      } catch (err) {
        const yerr = toYakError(err);
        if (!isRetriable(yerr)) throw yerr;
        if (yerr.code === "CONCURRENT_TRANSACTIONS") await new Promise((r) => setTimeout(r, 50));
        else this.#reconnect(yerr.message);
      }
    }
  }

  /**
   * Transactional: sends everything added, then commits the transaction;
   * resolves once it is committed (its decision durable in the cluster), when
   * read_committed readers see all of it. The next record added starts the
   * next transaction, and need not wait for this promise: its records are
   * batched while this one commits and sent once it has (so a reader can keep
   * reading). A commit asked for while one is under way runs after it, and
   * fails if it failed.
   */
  commitTransaction(): Promise<void> {
    this.#lingerTimer?.();
    this.#lingerTimer = undefined;
    for (const b of [...this.#open.values()]) this.#seal(b);
    const txn = this.#addingTxn++;
    const previous = this.#committing;
    const commit = (async () => {
      if (previous) await previous;
      await this.#drain(txn);
      if (txn < this.#abortedBelow) throw new YakError("TIMEOUT", "the transaction was aborted before its commit");
      // Records already added for the next transaction: the commit opens it too (one request, one record less).
      const following = (b: Batch) => b.txn === txn + 1;
      const next = this.#queue.some(following) || [...this.#open.values()].some(following);
      if (this.#txnOpen) {
        await this.#txnRequest({
          type: "end_txn",
          commit: true,
          ...(next ? { next: { topic: this.topic, partitions: this.#allPartitions() } } : {}),
        });
      }
      this.#txnOpen = this.#txnOpen && next;
      this.ackedRecords += this.#txnRecords;
      this.ackedBytes += this.#txnBytes;
      this.#txnRecords = 0;
      this.#txnBytes = 0;
      this.#txnBatches = [];
      this.#sendingTxn = txn + 1;
      this.#notify();
      this.#pump(); // the next transaction's batches, waiting in the queue
    })();
    this.#committing = commit;
    const settled = () => {
      if (this.#committing === commit) this.#committing = null;
    };
    commit.then(settled, settled);
    return commit;
  }

  /** Waits until every batch of transaction `txn` (and before) is acknowledged. */
  async #drain(txn: number): Promise<void> {
    const pending = (b: Batch) => b.txn <= txn;
    while (!this.#failed && (this.#queue.some(pending) || this.#inflight.some(pending) || this.#reconnecting)) {
      this.#pump();
      await this.#waitProgress();
      this.#checkStalled();
    }
    if (this.#failed) throw this.#failed;
  }

  /**
   * Transactional: aborts the open transaction (after the answers to what
   * is in flight, at most `timeoutMs`), so nothing of it is ever seen by
   * read_committed readers; records added for a next transaction are dropped
   * too (never sent). A commit under way ends first: one that has not sent
   * its end yet fails, and the transaction is aborted. Best effort: if the
   * cluster cannot be reached, the coordinator aborts it at its timeout.
   */
  async abortTransaction(timeoutMs = 5000): Promise<void> {
    this.#lingerTimer?.();
    this.#lingerTimer = undefined;
    // The open transaction is aborted, and any still committing that has not sent its end: records added
    // from here on start a new one, sent once this abort is done.
    this.#abortedBelow = ++this.#addingTxn;
    for (const b of [...this.#open.values()]) {
      this.#open.delete(b.partition);
      this.#abandoned.push(b);
    }
    this.#abandoned.push(...this.#queue.filter((b) => b.txn < this.#abortedBelow));
    this.#queue = this.#queue.filter((b) => b.txn >= this.#abortedBelow);
    this.#notify(); // a commit draining its batches: they are gone
    const deadline = monotonicMs() + timeoutMs;
    if (this.#committing) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#committing.catch(() => {}),
        new Promise((r) => (timer = setTimeout(r, timeoutMs))),
      ]);
      clearTimeout(timer);
    }
    await this.settle(Math.max(0, deadline - monotonicMs()));
    try {
      if (!this.#txnOpen || this.#conn.isClosed) return;
      await this.#conn.request({
        type: "end_txn",
        commit: false,
        transactionalId: this.#o.transactionalId,
        producer: this.#producerId,
        producerEpoch: this.#producerEpoch,
      }, Math.max(1, deadline - monotonicMs()));
      this.#txnOpen = false;
    } catch (err) {
      // Still open: nothing more may be sent into it (the coordinator aborts it at its timeout).
      this.#fail(toYakError(err));
      throw err;
    } finally {
      this.#sendingTxn = Math.max(this.#sendingTxn, this.#abortedBelow);
      this.#pump();
    }
  }

  /** Deregisters and closes the connection (after {@link flush}). */
  async close(): Promise<void> {
    this.#closed = true;
    this.#lingerTimer?.();
    clearInterval(this.#watchTimer);
    try {
      if (!this.#conn.isClosed) {
        await this.#conn.request({ type: "deregister" }, 1000);
      }
    } catch { /* leaving anyway */ }
    this.#conn.close();
  }
}
