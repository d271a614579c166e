/**
 * The partition services every codec calls: append a producer's batch, read
 * stored bytes (one long-poll read for consumers and followers alike), and a
 * partition's offsets. They take typed values and return typed values; no
 * codec's framing or field names appear here, so the native JSON codec and
 * the Kafka codec are two translators over the same code (as Kafka's
 * `KafkaApis` calls `ReplicaManager.appendRecords` and `readFromLocalLog`).
 *
 * @module
 */
import { statfs } from "node:fs/promises";
import { monotonicMs, TimeSlice } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { assert, YakError } from "../errors.ts";
import type { PartitionLog, ReadResult } from "../log/partition_log.ts";
import { seqAdd } from "../log/sequence.ts";
import {
  type AbortedRange,
  checkLines,
  encodeMarker,
  type RecordInput,
  writeBatch,
  writeLines,
} from "../log/record.ts";
import type { BrokerContext } from "./context.ts";
import type { LeaderState } from "./leader_state.ts";
import type { TopicAdmin } from "./topic_admin.ts";
import { RecordRules } from "./record_rules.ts";
import { requireKeys } from "./compaction_config.ts";
import { logAppendTimeOf, minInsyncReplicasOf } from "./topic_config.ts";
import { CLUSTER_TOPIC } from "./metadata.ts";
import { checkTransactionalAppend } from "./txn_coordinator.ts";

/** A topic and one of its partitions. */
export interface TopicPartition {
  topic: string;
  partition: number;
}

/** A producer's batch as a codec decoded it. */
export interface ProducedBatch {
  /** Emptied once the batch's lines are built, so a waiting request does not keep them alive. */
  records: RecordInput[];
  /**
   * Keyless values as they came, each ending in a newline (a native
   * produce's attached lines, see writeLines), `count` of them: the batch's
   * records in place of `records` (then empty), never cut into objects.
   */
  lines?: { bytes: Uint8Array; count: number };
  /**
   * The issued producer id (idempotence), or null for an anonymous producer.
   * Checked here, for every codec: an id the cluster did not issue is refused.
   */
  producerId: bigint | null;
  /** The producer epoch: 0 for an idempotent producer, its transactional id's current epoch for a transactional one. */
  producerEpoch: number;
  /** Sequence of the first record (ignored without a producer). */
  baseSeq: number;
  /** Part of the producer's open transaction (Kafka's transactional batch attribute); checked against it. */
  transactional?: boolean;
}

/** -1 (all in-sync replicas), 1 (the leader), 0 (no answer). */
export type Acks = -1 | 0 | 1;

/** Where a batch landed. */
export interface AppendResult {
  baseOffset: number;
  count: number;
  /** The batch (or part of it) was stored before: a retry. */
  duplicate: boolean;
  /** The leader epoch under which this broker acknowledged it (its lease was valid then). */
  epoch: number;
  /** Wall-clock ms just before the last lease check that allowed the acknowledgement (for comparing with logs). */
  ackedAt: number;
  /**
   * The leader's clock stamped on the records (the topic's
   * message.timestamp.type is LogAppendTime), else -1; -1 for a retry
   * answered as a duplicate too.
   */
  logAppendTimeMs: number;
}

/** One partition to read from. */
export interface ReadSpec {
  key: string;
  log: PartitionLog;
  from: number;
  /** The most stored bytes this partition's reader can take (a Kafka fetch's partition_max_bytes, as stored bytes). */
  maxBytes?: number;
}

/** What a poll read from one partition: stored lines, as bytes. */
export interface PartitionRead {
  spec: ReadSpec;
  read: ReadResult;
}

/** Options of {@link PartitionOps.readPartitions}. */
export interface ReadOptions {
  /** Bytes over all partitions (at least one record is always returned). */
  maxBytes: number;
  /** How long to wait for data when there is none. */
  maxWaitMs: number;
  /**
   * Consumers read up to the high watermark (read_uncommitted), or to the
   * last stable offset (read_committed: below every undecided transaction);
   * followers up to the log end.
   */
  upTo: "hw" | "lso" | "logEnd";
  /** Answer at once, even without data, when this holds (the follower must truncate, or delete records). */
  wakeIf?: () => boolean;
  /**
   * Answer without data when this holds, but not before `softWakeMs` from
   * the read's start, in case data comes: a follower's stale high
   * watermark, most often moved by this very fetch (its offsets acknowledge
   * what it took last), which would otherwise come back at once, empty.
   */
  softWakeIf?: () => boolean;
  softWakeMs?: number;
  /** Run after each wait; throws to end the poll (the reader's epoch went stale). */
  recheck?: () => void;
  /**
   * Given, a partition whose next record is damaged (CORRUPT_LOG), or whose
   * log is fenced (STORAGE, until a restart), is put here and skipped, and
   * the poll answers at once: the other partitions are still served, and the
   * caller says which one failed. Without it the error ends the whole read.
   */
  damaged?: Map<ReadSpec, YakError>;
}

/** A partition's offsets. */
export interface PartitionOffsets {
  logStart: number;
  highWatermark: number;
  logEnd: number;
  /** The last stable offset: the high watermark, or the first offset an undecided transaction may hold. */
  lastStable: number;
}

/**
 * Each partition's part of a read's byte budget, so the first partitions
 * cannot take it all and starve the others (a follower fell 300,000 records
 * behind on its third partition before this).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fairShare } from "./partition_ops.ts";
 * assert.equal(fairShare(2 * 1024 * 1024, 4), 512 * 1024);
 * assert.equal(fairShare(2 * 1024 * 1024, 100), 64 * 1024); // never below 64 KiB
 * ```
 */
export function fairShare(maxBytes: number, partitionsWithData: number): number {
  return Math.max(Math.min(64 * 1024, maxBytes), Math.floor(maxBytes / Math.max(1, partitionsWithData)));
}

/** A batch's offsets, taken synchronously (see {@link PartitionOps.appendBatch}). */
interface Taken {
  leader: LeaderState;
  key: string;
  minIsr: number;
  baseOffset: number;
  endOffset: number;
  /** The batch was stored before (a retry): nothing is written. */
  duplicate: boolean;
  /** The write of the fresh records, or null when all were stored before. */
  done: Promise<void> | null;
  /** Bytes of the fresh records' lines. */
  bytes: number;
  /** See {@link AppendResult.logAppendTimeMs}. */
  logAppendTimeMs: number;
}

/** A retried batch's place: where it was stored before, with nothing to write. */
function duplicateTaken(leader: LeaderState, key: string, minIsr: number, baseOffset: number, count: number): Taken {
  // The original may still be queued for writing: acknowledge the retry only past the
  // original's own end, which its failure would rewind (then the retry times out and is resent).
  return {
    leader,
    key,
    minIsr,
    baseOffset,
    endOffset: baseOffset + count,
    duplicate: true,
    done: null,
    bytes: 0,
    logAppendTimeMs: -1,
  };
}

/** How many records a batch holds. */
function countOf(batch: ProducedBatch): number {
  return batch.lines?.count ?? batch.records.length;
}

/** A keyless record, for the checks of a batch of lines. */
const KEYLESS: RecordInput[] = [{ key: null }];

/** The longest an acks=all batch waits for room above its partition's high watermark (see roomToAppend). */
const ROOM_WAIT_MAX_MS = 1000;
/** Partitions remembered with a wait for room that ran out; past it they are forgotten (and may wait once more). */
const STALLED_KEPT = 10_000;

/** The epoch a transactional batch's lines carry, or null for any other batch. */
function txnEpochOf(batch: ProducedBatch): number | null {
  return batch.transactional ? batch.producerEpoch : null;
}

/**
 * Appends, reads and offsets of a broker's partitions.
 *
 * @example
 * ```ts ignore
 * const ops = new PartitionOps(broker, topicAdmin);
 * const { baseOffset } = await ops.appendBatch({ topic: "t", partition: 0 },
 *   { records: [{ key: null, value: "hi" }], producerId: null, producerEpoch: -1, baseSeq: 0 }, -1, 10_000);
 * ```
 */
export class PartitionOps {
  readonly #b: BrokerContext;
  readonly #topics: TopicAdmin;
  /** Per partition, the place in line of the last batch that asked (see #inLine). */
  readonly #lines = new Map<string, Promise<void>>();
  /** The produce path's share of the broker thread between yields (see #appendBatch). */
  readonly #slice = new TimeSlice(DEFAULTS.requestSliceMs);
  /**
   * Per partition, the transactional producers (`p<n>`) whose marker must go
   * in before any more of their batches: a transaction decided by the record
   * that opens the next one (this leader's, not replicated state).
   */
  readonly #markersDue = new Map<string, Set<string>>();
  /** Partitions whose last wait for room ran out, with their high watermark then (see roomToAppend). */
  readonly #stalled = new Map<string, number>();

  constructor(b: BrokerContext, topics: TopicAdmin) {
    this.#b = b;
    this.#topics = topics;
  }

  /** From now, `producer`'s batches into `key` are refused until {@link markerIn} (its marker is due there). */
  expectMarker(key: string, producer: string): void {
    let due = this.#markersDue.get(key);
    if (!due) this.#markersDue.set(key, due = new Set());
    due.add(producer);
  }

  /** `producer`'s marker is in `key` (or no longer due): its batches are taken again. */
  markerIn(key: string, producer: string): void {
    const due = this.#markersDue.get(key);
    if (due?.delete(producer) && due.size === 0) this.#markersDue.delete(key);
  }

  /** Forgets every due marker (leadership changed: a new leader learns them from `__cluster`). */
  forgetDueMarkers(): void {
    this.#markersDue.clear();
  }

  /**
   * Appends a producer's batches to one partition as the leader, in order,
   * each resolving once `acks` is met. Every record of every batch is checked
   * first (one {@link RecordRules.validateBatch} for both protocols), so a
   * request refused for one record stores nothing; the codecs only map the
   * typed error. `startedMs` (`performance.now()`) is when the request's
   * wait began, for the produce latency metric: a Kafka produce may have
   * waited for room first (see {@link roomToAppend}).
   */
  appendBatches(
    tp: TopicPartition,
    batches: ProducedBatch[],
    acks: Acks,
    timeoutMs: number,
    startedMs: number = performance.now(),
  ): Promise<AppendResult>[] {
    const b = this.#b;
    const exists = b.store.has(tp.topic);
    const rules = new RecordRules(
      tp.topic,
      b.store.meta.topics.get(tp.topic)?.configs,
      b.opts.maxRecordBytes,
      `; split it, or raise the limit with ${raiseLimitHint(tp.topic, exists)}`,
      { topicExists: exists },
    );
    for (const batch of batches) {
      if (batch.lines) rules.validateLines(batch.lines.bytes, batch.lines.count);
      else rules.validateBatch(batch.records);
    }
    const configs = b.store.meta.topics.get(tp.topic)?.configs;
    for (const batch of batches) requireKeys(tp.topic, configs, batch.lines ? KEYLESS : batch.records);
    // Every batch's producer (id and epoch) is checked before any batch is appended, as its records are:
    // a request holding a batch of a producer the cluster never issued stores nothing.
    for (const batch of batches) {
      if (batch.producerId !== null) b.producerIds.verify(batch.producerId, batch.producerEpoch);
    }
    return batches.map((batch) => this.#appendChecked(tp, batch, acks, timeoutMs, startedMs));
  }

  /**
   * Null when an acks=all batch may go to `tp` now; else a wait until the
   * records above its high watermark fill at most half the tail hold (see
   * `PartitionLog.hwToAppend`). Why: an acks=all batch is acknowledged only
   * once the followers have it, so appending it sooner gains its producer
   * nothing, while a leader that runs far ahead of its followers pushes
   * what they have not fetched out of the tail cache and then reads it
   * back from disk for them, every line checked. A Kafka producer with a
   * deep queue did that: kcat -P of 1M records, the leader's CPU 0.93-1.01
   * s with 30,000 messages queued (librdkafka's
   * queue.buffering.max.messages), 1.1-1.3 s with its default 100,000,
   * 1.6-1.7 s with 300,000, while it read 387 MB back from disk for the
   * followers.
   *
   * The wait never fails (the append then goes ahead) and is short: at most
   * {@link ROOM_WAIT_MAX_MS}, and half of `leftMs` (the request's time left,
   * so the acknowledgement keeps the other half). A follower that stopped
   * fetching while still in the set holds the high watermark until it is
   * dropped; once a wait has run out, the partition's batches wait no more
   * until its high watermark moves, so the requests queued behind one
   * another on a connection do not each wait in turn.
   */
  roomToAppend(tp: TopicPartition, leftMs: number): Promise<void> | null {
    const key = `${tp.topic}/${tp.partition}`;
    const log = this.#b.store.byKey(key)?.log;
    if (!log) return null;
    const stalledAt = this.#stalled.get(key);
    if (stalledAt !== undefined) {
      if (log.highWatermark === stalledAt) return null;
      this.#stalled.delete(key);
    }
    const hw = log.hwToAppend();
    if (hw < 0) return null;
    let leader: LeaderState;
    try {
      leader = this.#b.requireLeader();
    } catch {
      return null; // the append says why
    }
    return leader.waitForHw(key, hw, Math.min(ROOM_WAIT_MAX_MS, leftMs / 2)).catch(() => {
      if (this.#stalled.size >= STALLED_KEPT) this.#stalled.clear();
      this.#stalled.set(key, log.highWatermark);
    });
  }

  /**
   * Appends one producer's batch as the leader and resolves once `acks` is
   * met: the offsets are taken in one synchronous step after the last await,
   * so pipelined batches of a connection keep their order whatever codec
   * sent them; a retried batch (same producer and sequences) is answered
   * with its original offsets and not stored twice.
   */
  async appendBatch(tp: TopicPartition, batch: ProducedBatch, acks: Acks, timeoutMs: number): Promise<AppendResult> {
    return await this.appendBatches(tp, [batch], acks, timeoutMs)[0];
  }

  async #appendChecked(
    tp: TopicPartition,
    batch: ProducedBatch,
    acks: Acks,
    timeoutMs: number,
    startedMs: number,
  ): Promise<AppendResult> {
    let code: string | null = null;
    try {
      return await this.#appendBatch(tp, batch, acks, timeoutMs);
    } catch (err) {
      code = err instanceof YakError ? err.code : "UNAVAILABLE";
      throw err;
    } finally {
      this.#b.metrics.produceDone((performance.now() - startedMs) / 1000, code);
    }
  }

  /**
   * Makes the topic ready for a batch: created on first use, its files open
   * (or this throws why not). Null when it is ready now, as it nearly always
   * is: no await on the way of every batch.
   */
  #topicReady(topic: string, batch: ProducedBatch): Promise<void> | null {
    const b = this.#b;
    if (!this.#topics.changing(topic) && !b.store.isUnopened(topic) && b.store.has(topic)) return null;
    return this.#readyTopic(topic, batch);
  }

  async #readyTopic(topic: string, batch: ProducedBatch): Promise<void> {
    const b = this.#b;
    const changing = this.#topics.changing(topic);
    if (changing) await changing;
    // Its files failed to open (a full disk): opened now, or this write fails as they do.
    if (b.store.isUnopened(topic)) await b.store.openUnopened(topic);
    if (!b.store.has(topic)) {
      // Lines are counted as they are written, after this: a batch that would be refused makes no topic.
      if (batch.lines) checkLines(batch.lines.bytes, batch.lines.count);
      await this.#topics.ensure(topic);
    }
  }

  async #appendBatch(tp: TopicPartition, batch: ProducedBatch, acks: Acks, timeoutMs: number): Promise<AppendResult> {
    const b = this.#b;
    b.requireLeader();
    const count = countOf(batch);
    assert(count > 0, "an empty batch reached appendBatch");
    const producer = batch.producerId === null ? null : b.producerIds.verify(batch.producerId, batch.producerEpoch);
    const key = `${tp.topic}/${tp.partition}`;
    // In line for the partition, in call order, before the first await: batches take their offsets in the
    // order they arrived, whatever each waits for first (see #inLine).
    const turn = this.#inLine(key);
    let taken: Taken;
    let log: PartitionLog;
    try {
      await turn.ready;
      // A batch that arrives while the first batch's creation of the topic is under way waits for it too:
      // the topic is in the store before the creation ends, and a later batch of the same producer must not
      // take its offsets first (a producer the partition does not know yet is taken at any sequence, so the
      // first batch would then look like a duplicate and be dropped).
      const ready = this.#topicReady(tp.topic, batch);
      if (ready) await ready;
      log = b.store.partition(tp.topic, tp.partition);
      if (log.fenced) throw log.fenced;
      // Again when a change of leadership reset the state while its tail was read (that read installs nothing).
      while (producer !== null && !b.producers.isReady(key)) {
        await b.producers.ensure(key, () => log.readTailText(b.opts.producerStateScanBytes));
      }
      // The batches behind this one wait in line, so the broker thread may have a turn first.
      await this.#slice.pause();
      taken = this.#take(tp.topic, key, log, batch, producer, acks);
    } finally {
      turn.done();
    }
    const { leader } = taken;
    if (taken.done) {
      try {
        await taken.done;
        b.metrics.appended(tp.topic, count, taken.bytes);
        if (b.failingWrites.delete(key)) b.log.write("writes_resumed", { partition: key });
      } catch (err) {
        // The producer's sequences went back already, with the log's rewind (see #take).
        // Said once per failing partition, not once per retried batch.
        if (!b.failingWrites.has(key)) {
          b.failingWrites.add(key);
          b.log.write("write_failed", { partition: key, error: err instanceof Error ? err.message : String(err) });
        }
        throw err;
      }
      leader.updateHw(key);
    }
    if (acks === -1) await leader.waitForHw(key, taken.endOffset, timeoutMs, taken.minIsr);
    else if (acks === 1 && taken.done === null && log.logEndOffset < taken.endOffset) {
      // A retry of a batch whose first write is still queued: acks=1 waits for that write (the
      // high watermark cannot pass records that are not written).
      await leader.waitForHw(key, taken.endOffset, timeoutMs, 1);
    }
    // Taken before the check, so an acknowledgement's time is never later than a check that passed.
    const ackedAt = Date.now();
    // A leader that lost its lease while waiting must not acknowledge; one named leader again
    // without a break (its waiters were carried over) may, under its new epoch.
    const current = b.requireLeader();
    if (!leader.continuesAs(current)) throw this.#notLeader("it lost its leadership");
    if (!b.leaseValid()) throw this.#notLeader(b.leaseProblem());
    const { baseOffset, duplicate, logAppendTimeMs } = taken;
    return { baseOffset, count, duplicate, epoch: current.epoch, ackedAt, logAppendTimeMs };
  }

  /**
   * A place in the line of batches for partition `key`: `ready` resolves
   * once every batch that called before this one has taken its offsets (or
   * failed), and `done` lets the next one go. Without it, batches that
   * waited for something (a topic being created) all went on in one
   * synchronous run when it came (372 ms of the broker thread for 23
   * pipelined requests of 0.9 MB), and a batch could not yield its turn
   * without letting a later one take its offsets first.
   */
  #inLine(key: string): { ready: Promise<void>; done: () => void } {
    const before = this.#lines.get(key);
    let done!: () => void;
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.#lines.set(key, mine);
    return {
      ready: before ?? Promise.resolve(),
      done: () => {
        done();
        if (this.#lines.get(key) === mine) this.#lines.delete(key);
      },
    };
  }

  /**
   * The one place where a batch gets its offsets. Synchronous on purpose:
   * nothing may await between the checks and the append, or two pipelined
   * batches could swap places.
   */
  #take(
    topic: string,
    key: string,
    log: PartitionLog,
    batch: ProducedBatch,
    producer: string | null,
    acks: Acks,
  ): Taken {
    const b = this.#b;
    const leader = b.requireLeader();
    if (!b.leaseValid()) throw this.#notLeader(b.leaseProblem());
    const configs = b.store.meta.topics.get(topic)?.configs;
    const minIsr = minInsyncReplicasOf(configs, b.opts.minInsyncReplicas);
    // Refused before the append, like Kafka: an acks=all write is never stored with fewer copies than promised.
    if (acks === -1 && leader.isr.length < minIsr) throw leader.notEnoughReplicas(minIsr, key);
    const { baseSeq } = batch;
    const count = countOf(batch);
    this.#checkTransaction(batch, producer, key);
    const seen = producer === null ? null : b.producers.check(key, producer, baseSeq, count, batch.producerEpoch);
    if (seen?.kind === "outOfOrder" && acks !== 0) throw outOfOrder(producer!, baseSeq, count, key, seen.expected);
    if (seen?.kind === "duplicate") {
      // A retry's lines are not written, so not read by writeLines either: checked here, as the first send's were.
      if (batch.lines) checkLines(batch.lines.bytes, count);
      return duplicateTaken(leader, key, minIsr, seen.storedBaseOffset, count);
    }
    const { records, lines } = batch;
    const epoch = leader.epoch;
    const ts = Date.now();
    // LogAppendTime: the leader's clock replaces the producer's timestamps, taken with the offsets.
    const appendTime = logAppendTimeOf(configs);
    const appended = log.append(
      epoch,
      count,
      // A batch of lines is read as it is written: writeLines throws, before the offsets are taken, when it does
      // not hold `count` lines.
      (base) =>
        lines
          ? writeLines(lines.bytes, count, base, epoch, ts, producer, baseSeq, appendTime, txnEpochOf(batch))
          : writeBatch(records, base, epoch, ts, producer, baseSeq, appendTime, txnEpochOf(batch)),
      // A failed write (this one or an earlier queued one) voids these offsets:
      // the producer's sequence goes back in the same synchronous step as the
      // log's rewind, never later, or a batch taken in between is stored twice.
      producer === null ? undefined : () => b.producers.rollback(key, producer, baseSeq),
    );
    // Only offsets are needed from here on: while this waits for replicas,
    // the parsed records can already be collected.
    batch.records = [];
    batch.lines = undefined;
    if (producer !== null) {
      b.producers.record(key, producer, baseSeq, count, appended.baseOffset, acks === 0, batch.producerEpoch);
    }
    return {
      leader,
      key,
      minIsr,
      baseOffset: appended.baseOffset,
      endOffset: appended.baseOffset + count,
      duplicate: false,
      done: appended.done,
      bytes: appended.bytes,
      logAppendTimeMs: appendTime ? ts : -1,
    };
  }

  /**
   * Checks a batch against its producer's transaction as it stands now, in
   * the step that takes the offsets: a batch taken after its transaction was
   * decided (its markers may be in) is refused, never stored behind them.
   */
  #checkTransaction(batch: ProducedBatch, producer: string | null, key: string): void {
    if (producer !== null) {
      if (this.#markersDue.get(key)?.has(producer)) {
        throw new YakError(
          "CONCURRENT_TRANSACTIONS",
          `producer ${producer}'s last transaction is completing: its marker in ${key} is not in yet; retry shortly`,
        );
      }
      const transactional = batch.transactional === true;
      checkTransactionalAppend(this.#b.store.meta, Number(producer.slice(1)), batch.producerEpoch, key, transactional);
    } else if (batch.transactional) {
      throw new YakError("INVALID_TXN_STATE", "a transactional batch needs its producer id");
    }
  }

  /**
   * Appends a transaction's marker (a control line: `producer`'s transaction
   * committed or aborted) as the leader, in the partition's line like any
   * batch, and resolves with its offset once the in-sync replicas hold it.
   */
  async appendMarker(
    tp: TopicPartition,
    producer: string,
    pepoch: number,
    commit: boolean,
    timeoutMs: number,
  ): Promise<number> {
    const placed = await this.placeMarker(tp, producer, pepoch, commit, timeoutMs);
    await placed.replicated;
    return placed.offset;
  }

  /**
   * Places a transaction's marker as {@link appendMarker} does, but resolves
   * once its offset is taken here (what comes into the partition after it
   * lies after it, and is written after it); `replicated` resolves once the
   * in-sync replicas hold it, and rejects if its write fails. `onVoid` runs
   * if the write fails, in the step that frees its offset (and those of
   * every append queued behind it), before any other append can take it.
   */
  async placeMarker(
    tp: TopicPartition,
    producer: string,
    pepoch: number,
    commit: boolean,
    timeoutMs: number,
    onVoid?: () => void,
  ): Promise<{ offset: number; replicated: Promise<void> }> {
    const b = this.#b;
    const key = `${tp.topic}/${tp.partition}`;
    const turn = this.#inLine(key);
    let appended: { baseOffset: number; done: Promise<void> };
    let leader: LeaderState;
    try {
      await turn.ready;
      leader = b.requireLeader();
      if (!b.leaseValid()) throw this.#notLeader(b.leaseProblem());
      const log = b.store.partition(tp.topic, tp.partition);
      if (log.fenced) throw log.fenced;
      const epoch = leader.epoch;
      const line = (base: number) => encodeMarker(base, epoch, Date.now(), producer, pepoch, commit);
      appended = log.append(epoch, 1, line, onVoid);
    } finally {
      turn.done();
    }
    const replicated = appended.done.then(() => {
      leader.updateHw(key);
      return leader.waitForHw(key, appended.baseOffset + 1, timeoutMs);
    });
    replicated.catch(() => {}); // awaited by the caller, which may fail before it does
    return { offset: appended.baseOffset, replicated };
  }

  #notLeader(why: string): YakError {
    const l = this.#b.leader();
    return new YakError(
      "NOT_LEADER",
      `broker ${this.#b.opts.id} cannot take writes: ${why}`,
      l ? { leaderId: l.id, host: l.host, port: l.port, epoch: l.epoch } : {},
    );
  }

  /**
   * Long-polls stored bytes from several partitions: whatever follows each
   * `from`, below the high watermark (consumers) or the log end (followers),
   * the byte budget shared fairly, waiting up to `maxWaitMs` while there is
   * nothing. The bytes are the stored lines as they are: codecs send them on
   * (native) or translate them (Kafka), never a second read path.
   */
  async readPartitions(specs: readonly ReadSpec[], o: ReadOptions): Promise<PartitionRead[]> {
    const startedMs = performance.now();
    const reads = await this.#readPartitions(specs, o);
    const m = this.#b.metrics;
    if (o.upTo !== "logEnd") {
      for (const { spec, read } of reads) {
        m.sent(spec.key.slice(0, spec.key.lastIndexOf("/")), read.count, read.byteLength);
      }
    } else {
      for (const { read } of reads) m.replicated(read.count, read.byteLength);
    }
    m.fetchDone(o.upTo === "logEnd" ? "follower" : "consumer", (performance.now() - startedMs) / 1000);
    return reads;
  }

  async #readPartitions(specs: readonly ReadSpec[], o: ReadOptions): Promise<PartitionRead[]> {
    const b = this.#b;
    const started = monotonicMs();
    const deadline = started + o.maxWaitMs;
    const softDeadline = started + (o.softWakeMs ?? 0);
    const meta = b.store.meta;
    const endOf = (s: ReadSpec) =>
      o.upTo === "hw"
        ? s.log.highWatermark
        : o.upTo === "lso"
        ? Math.min(s.log.highWatermark, meta.firstOpenOffset(s.key))
        : s.log.logEndOffset;
    while (true) {
      const out: PartitionRead[] = [];
      let budget = o.maxBytes;
      const share = fairShare(o.maxBytes, specs.filter((s) => s.from < endOf(s)).length);
      for (const spec of specs) {
        if (spec.log.fenced) {
          // Said even to a reader with nothing to read: it waits for records that cannot come until a restart.
          if (!o.damaged) throw spec.log.fenced;
          o.damaged.set(spec, spec.log.fenced);
          continue;
        }
        const end = endOf(spec);
        if (spec.from >= end || budget <= 0) continue;
        if (spec.from < spec.log.logStartOffset) continue; // retention got there first; the next fetch says so
        let read: ReadResult;
        try {
          read = await b.readLog(spec.log, spec.from, Math.min(share, budget, spec.maxBytes ?? Infinity), end);
        } catch (err) {
          // Retention deleted the segment while this read waited for it (a consumer far behind a
          // busy topic): skip it like the check above, and the next fetch tells the consumer to reset.
          // Before, the OUT_OF_RANGE reached the consumer as a fatal error (seen in the soak).
          if (err instanceof YakError && err.code === "OUT_OF_RANGE" && spec.from < spec.log.logStartOffset) continue;
          // A damaged record fails its partition only; the broker is healing it already. So does a
          // log that fenced itself during this read.
          if (err instanceof YakError && (err.code === "CORRUPT_LOG" || err === spec.log.fenced) && o.damaged) {
            o.damaged.set(spec, err);
            continue;
          }
          throw err;
        }
        // No record, but offsets a compaction removed up to the end: the reader moves past them.
        if (read.count === 0 && read.nextOffset === spec.from) continue;
        assert(read.baseOffset === spec.from, `read of ${spec.key} from ${spec.from} began at ${read.baseOffset}`);
        budget -= read.byteLength;
        out.push({ spec, read });
      }
      const now = monotonicMs();
      const remaining = deadline - now;
      if (out.length > 0 || remaining <= 0 || o.wakeIf?.() || (o.damaged?.size ?? 0) > 0) return out;
      const soft = o.softWakeIf?.() ? softDeadline - now : Infinity;
      if (soft <= 0) return out;
      await b.notifier.wait(Math.min(remaining, soft));
      o.recheck?.();
    }
  }

  /**
   * Where a consumer's fetch of `topic` reads from, checked: the topic must be
   * here and each partition must exist. An offset below the log start
   * (retention) goes into `outOfRange` with the partition's offsets, and so
   * does one past the log end on the leader (a committed offset may be: Kafka
   * stores any), so the consumer resets; without the map that is OUT_OF_RANGE.
   * A follower may simply be behind the consumer: it skips that partition.
   */
  consumerSpecs(
    topic: string,
    wanted: readonly [partition: number, offset: number][],
    outOfRange?: Map<number, PartitionOffsets>,
  ): ReadSpec[] {
    const b = this.#b;
    if (!b.store.has(topic)) {
      throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist on broker ${b.opts.id}`);
    }
    const count = b.store.partitionCount(topic);
    const specs: ReadSpec[] = [];
    for (const [p, from] of wanted) {
      if (!Number.isInteger(p) || p < 0 || p >= count) {
        throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has partitions 0..${count - 1}; there is no '${p}'`);
      }
      const log = b.store.partition(topic, p);
      if (from < log.logStartOffset) {
        // Deleted by retention: the consumer resets (earliest or latest) and says so.
        outOfRange?.set(p, this.offsets({ topic, partition: p }));
        continue;
      }
      if (from > log.logEndOffset) {
        if (b.role() !== "leader") continue;
        if (!outOfRange) {
          throw new YakError("OUT_OF_RANGE", `offset ${from} is past the end (${log.logEndOffset}) of ${topic}/${p}`);
        }
        outOfRange.set(p, this.offsets({ topic, partition: p }));
        continue;
      }
      specs.push({ key: `${topic}/${p}`, log, from });
    }
    return specs;
  }

  /**
   * A partition's aborted transactions that may hold records in [from, to):
   * each producer's stored number (as fetched batches carry it) and the
   * transaction's first offset, as Kafka's Fetch answers read_committed, and
   * its marker's offset.
   */
  abortedTxns(
    tp: TopicPartition,
    from: number,
    to: number,
  ): { producerId: bigint; firstOffset: number; lastOffset: number }[] {
    return this.#b.store.meta.abortedIn(`${tp.topic}/${tp.partition}`, from, to)
      .map((a) => ({ producerId: BigInt(a.producer), firstOffset: a.first, lastOffset: a.last }));
  }

  /** The same, as ranges of stored lines (`p<n>`, first offset, marker offset): native readers drop those lines. */
  abortedRanges(tp: TopicPartition, from: number, to: number): AbortedRange[] {
    return this.#b.store.meta.abortedIn(`${tp.topic}/${tp.partition}`, from, to)
      .map((a) => ({ producer: `p${a.producer}`, first: a.first, last: a.last }));
  }

  /** The topic's partition count here, 0 when this broker does not have it. */
  partitionCount(topic: string): number {
    return this.#b.store.partitionCount(topic);
  }

  /** A partition's log start, high watermark and log end. */
  /**
   * A partition's closed segments, oldest first: each one's offsets
   * [base, end) and identity (a cleaned or merged segment is another one).
   */
  closedSegments(tp: TopicPartition): { id: number; base: number; end: number }[] {
    const log = this.#b.store.partition(tp.topic, tp.partition);
    const closed = log.closedSegments();
    const after = closed.length === 0 ? [] : log.segmentBasesIn(closed[closed.length - 1].base + 1, Infinity);
    return closed.map((c, i) => ({ id: c.id, base: c.base, end: closed[i + 1]?.base ?? after[0] }));
  }

  offsets(tp: TopicPartition): PartitionOffsets {
    const log = this.#b.store.partition(tp.topic, tp.partition);
    const hw = log.highWatermark;
    const lastStable = Math.min(hw, this.#b.store.meta.firstOpenOffset(`${tp.topic}/${tp.partition}`));
    return { logStart: log.logStartOffset, highWatermark: hw, logEnd: log.logEndOffset, lastStable };
  }

  /**
   * Deletes a partition's records below `offset` (-1: the high watermark),
   * as the leader (Kafka's DeleteRecords): its log start moves there, on
   * every replica, through the one mechanism retention uses
   * (`PartitionLog.advanceLogStart`: saved beside the segments, whole
   * segments below deleted, followers matching it from replication). Resolves
   * with the low watermark once every in-sync replica's log start is there,
   * so no later leader serves those records. OUT_OF_RANGE past the high
   * watermark; an offset below the log start changes nothing.
   */
  async deleteRecords(tp: TopicPartition, offset: number, timeoutMs: number): Promise<number> {
    const b = this.#b;
    const leader = b.requireLeader();
    const log = b.store.partition(tp.topic, tp.partition);
    if (log.fenced) throw log.fenced;
    const key = `${tp.topic}/${tp.partition}`;
    const hw = log.highWatermark;
    const to = offset === -1 ? hw : offset;
    if (!Number.isSafeInteger(to) || to < 0 || to > hw) {
      throw new YakError(
        "OUT_OF_RANGE",
        `cannot delete the records of ${key} below offset ${offset}: it must be from 0 to the high watermark ${hw}, ` +
          "or -1 for the high watermark",
        { logStart: log.logStartOffset, highWatermark: hw },
      );
    }
    if (to > log.logStartOffset) {
      const from = log.logStartOffset;
      const start = await log.advanceLogStart(to, "records deleted");
      b.log.write("records_deleted", { partition: key, from, logStart: start });
      b.notifier.notify(); // followers in a long poll learn the new start now
    }
    await leader.waitForLogStart(key, to, timeoutMs);
    const current = b.requireLeader();
    if (!leader.continuesAs(current)) throw this.#notLeader("it lost its leadership");
    if (!b.leaseValid()) throw this.#notLeader(b.leaseProblem());
    return current.lowWatermark(key);
  }

  /**
   * What this broker stores, as Kafka's DescribeLogDirs tells it: its one log
   * directory (the topics directory under its data directory) and, for each
   * partition asked (`topics` null: every topic, the internal `__cluster`
   * left out as Metadata leaves it out), its bytes on disk and how far its log
   * end is behind the high watermark it knows (Kafka's offset lag: 0 unless
   * the high watermark is past the log end); the file system's total and
   * usable bytes, -1 when they cannot be read. Any broker answers for itself.
   */
  async logDir(topics: ReadonlyMap<string, readonly number[]> | null): Promise<LogDirInfo> {
    const b = this.#b;
    const partitions: LogDirPartition[] = [];
    for (const ref of b.store.all()) {
      if (ref.topic === CLUSTER_TOPIC) continue;
      if (topics !== null && !topics.get(ref.topic)?.includes(ref.partition)) continue;
      const log = ref.log;
      partitions.push({
        topic: ref.topic,
        partition: ref.partition,
        sizeBytes: log.sizeBytes,
        offsetLag: Math.max(0, log.highWatermark - log.logEndOffset),
      });
    }
    return { dir: b.store.dir, ...await diskSpace(b.store.dir), partitions };
  }
}

/** One partition in {@link PartitionOps.logDir}. */
export interface LogDirPartition {
  topic: string;
  partition: number;
  sizeBytes: number;
  offsetLag: number;
}

/** A broker's log directory, as {@link PartitionOps.logDir} describes it. */
export interface LogDirInfo {
  dir: string;
  /** The file system's size and what this process may still write, in bytes; -1 when unknown. */
  totalBytes: number;
  usableBytes: number;
  partitions: LogDirPartition[];
}

/**
 * The size of the file system holding `dir` and the bytes still free to an
 * unprivileged writer, -1 and -1 when it cannot be asked (statfs needs
 * `--allow-sys=statfs`, which RUN_FLAGS and ./yak give).
 */
async function diskSpace(dir: string): Promise<{ totalBytes: number; usableBytes: number }> {
  try {
    const s = await statfs(dir);
    return { totalBytes: s.blocks * s.bsize, usableBytes: s.bavail * s.bsize };
  } catch {
    return { totalBytes: -1, usableBytes: -1 };
  }
}

/**
 * A batch whose sequences do not follow: a gap (an earlier batch of this
 * producer is missing here: its write failed, or it went to a lost leader;
 * it must be resent first) or an overlap with a stored batch that is not that batch.
 */
function outOfOrder(producer: string, baseSeq: number, count: number, key: string, expected: number): YakError {
  return new YakError(
    "OUT_OF_ORDER_SEQUENCE",
    `producer ${producer} sent sequences ${baseSeq}-${
      seqAdd(baseSeq, count - 1)
    } on ${key}; the next expected is ${expected}`,
  );
}

/**
 * The command that raises a topic's max.message.bytes: `--alter` when the
 * topic exists, else `--create` (altering a topic not made yet fails).
 */
function raiseLimitHint(topic: string, exists: boolean): string {
  return `'yak topics ${exists ? "--alter" : "--create"} ${topic} --config max.message.bytes=N'` +
    (exists ? "" : " (the topic does not exist yet)");
}
