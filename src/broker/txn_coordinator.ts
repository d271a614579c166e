/**
 * The transaction coordinator (Kafka's KIP-98), run by the leader as the
 * group coordinator is. A transactional id owns one producer id for good
 * (issued as any producer id is: secret, unguessable) and an epoch that every
 * InitProducerId bumps, so a zombie with the old epoch is fenced. A
 * transaction is Ongoing from its first partition; EndTxn decides it
 * (`PrepareCommit`/`PrepareAbort`, replicated before anything else happens),
 * then a marker goes into each of its partitions, then it is `Complete*`:
 * with a commit its group offsets become the groups' commits in that same
 * step; with an abort each partition's range joins the aborted index that
 * read_committed fetches answer with. Every state is a `txn` record in
 * `__cluster`, so a new leader finishes what the old one decided.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import { checkGroupName } from "../log/names.ts";
import { parseLines } from "../log/record.ts";
import type { BrokerContext } from "./context.ts";
import type { GroupCoordinator } from "./group_coordinator.ts";
import { appendMetaReplicated } from "./meta_log.ts";
import {
  type CompletingTxn,
  OPEN_TXN_STATES,
  type TxnMeta,
  type TxnOffset,
  type TxnOp,
  type TxnStateName,
} from "./metadata.ts";
import type { PartitionOps, TopicPartition } from "./partition_ops.ts";
import { producerName } from "./producer_ids.ts";

/** The highest producer epoch (an int16): past it, a transactional id gets a new producer id at epoch 0. */
const MAX_EPOCH = 32_767;
/** A transactional id's length at most (Kafka sets none; its ids name producers in logs and records). */
const MAX_TXN_ID_CHARS = 1024;
/** How often idle transactional ids are looked for (they expire after days). */
const EXPIRY_CHECK_MS = 60_000;

/** A transaction as DescribeTransactions, ListTransactions and `yak transactions` show it. */
export interface TxnView {
  id: string;
  state: TxnStateName;
  /** The producer's stored number (as fetched batches carry it), never the id it writes with. */
  producerId: bigint;
  /** The stored producer name of its lines and markers (`p<n>`). */
  producer: string;
  epoch: number;
  timeoutMs: number;
  /** Wall-clock ms the open transaction started, -1 when none is open. */
  startedAt: number;
  partitions: TopicPartition[];
  groups: string[];
}

/** One offset of a TxnOffsetCommit. */
export interface TxnOffsetInput {
  topic: string;
  partition: number;
  offset: number;
  metadata: string;
  leaderEpoch: number;
}

/** The member a TxnOffsetCommit names (v3+), checked as a commit's. */
export interface TxnMember {
  memberId: string;
  generation: number;
  groupInstanceId: string | null;
}

/** The key of a partition in transaction state. */
function keyOf(tp: TopicPartition): string {
  return `${tp.topic}/${tp.partition}`;
}

function partOf(key: string): TopicPartition {
  const at = key.lastIndexOf("/");
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) };
}

function checkTxnId(id: string): void {
  if (id.length === 0 || id.length > MAX_TXN_ID_CHARS) {
    throw new YakError("INVALID_REQUEST", `a transactional id has 1 to ${MAX_TXN_ID_CHARS} characters`);
  }
}

/**
 * Checks a batch against its producer's transaction, in the synchronous step
 * that gives it offsets (`PartitionOps`): a transactional producer's batch
 * must be transactional, of its current epoch, into a partition its open
 * transaction holds; any other producer's must not be transactional.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Metadata } from "./metadata.ts";
 * import { checkTransactionalAppend } from "./txn_coordinator.ts";
 * const meta = new Metadata();
 * assert.throws(() => checkTransactionalAppend(meta, 7, 0, "t/0", true), { code: "INVALID_TXN_STATE" });
 * checkTransactionalAppend(meta, 7, 0, "t/0", false); // an idempotent producer's batch
 * ```
 */
export function checkTransactionalAppend(
  meta: { txnOfProducer: ReadonlyMap<number, string>; txns: ReadonlyMap<string, TxnMeta> },
  producer: number,
  epoch: number,
  key: string,
  transactional: boolean,
): void {
  const id = meta.txnOfProducer.get(producer);
  if (id === undefined) {
    if (!transactional) return;
    throw new YakError(
      "INVALID_TXN_STATE",
      `a transactional batch from producer p${producer}, which has no transactional id: ` +
        `initialize the producer with one (InitProducerId) first`,
    );
  }
  const txn = meta.txns.get(id)!;
  if (epoch !== txn.epoch) {
    throw new YakError(
      "INVALID_PRODUCER_EPOCH",
      `producer epoch ${epoch} of transactional id '${id}' is fenced: it is at epoch ${txn.epoch}`,
    );
  }
  if (!transactional) {
    throw new YakError("INVALID_TXN_STATE", `transactional id '${id}': its producer's batches must be transactional`);
  }
  if (txn.state !== "Ongoing" || txn.partitions[key] === undefined) {
    throw new YakError(
      "INVALID_TXN_STATE",
      `partition ${key} is not in an open transaction of '${id}' (${txn.state}): add it first (AddPartitionsToTxn)`,
    );
  }
}

/**
 * The coordinator: every request of one transactional id runs alone, in
 * arrival order; each change is a replicated `txn` record.
 *
 * @example
 * ```ts ignore
 * const { producerId, epoch } = await txns.initProducer("loader", 60_000);
 * await txns.addPartitions("loader", producerId, epoch, [{ topic: "t", partition: 0 }]);
 * // ... transactional batches into t/0 ...
 * await txns.endTxn("loader", producerId, epoch, true);
 * ```
 */
export class TxnCoordinator {
  readonly #b: BrokerContext;
  readonly #partitions: PartitionOps;
  readonly #groups: GroupCoordinator;
  /** Per transactional id, the end of its line of requests. */
  readonly #turns = new Map<string, Promise<unknown>>();
  /** Monotonic ms by which each open transaction must end (set by this leader; a new one starts afresh). */
  readonly #deadlines = new Map<string, number>();
  /** Decided transactions whose markers are being written. */
  readonly #completing = new Set<string>();
  /**
   * Per transactional id, a transaction completing while the next one is
   * open (`TxnMeta.completing`): resolves once the record that ends it is
   * written (or its writing failed: the timer tries again). Every request of
   * the id waits for it.
   */
  readonly #finishing = new Map<string, Promise<void>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #expiryCheckedMs = 0;

  constructor(b: BrokerContext, partitions: PartitionOps, groups: GroupCoordinator) {
    this.#b = b;
    this.#partitions = partitions;
    this.#groups = groups;
  }

  /** Becoming the leader: finishes what the old leader decided, and times the open transactions from now. */
  lead(): void {
    this.reset();
    const now = monotonicMs();
    const decided: string[] = [];
    for (const [id, txn] of this.#b.store.meta.txns) {
      if (txn.state === "Ongoing") this.#deadlines.set(id, now + txn.timeoutMs);
      if (txn.state === "PrepareCommit" || txn.state === "PrepareAbort") decided.push(id);
      // In this same step, before any write is taken: the markers this leader's logs lack go in first.
      if (txn.completing) {
        decided.push(id);
        this.#finishCompleting(id, txn.completing);
      }
    }
    if (decided.length > 0) this.#b.log.write("txn_completing_decided", { transactionalIds: decided });
    this.#timer = setInterval(() => this.#tick(), DEFAULTS.transactionCheckMs);
    this.#tick();
  }

  /** Stepping down: the next leader takes over from `__cluster`. */
  reset(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#deadlines.clear();
    this.#partitions.forgetDueMarkers();
  }

  #meta(id: string): TxnMeta | undefined {
    return this.#b.store.meta.txns.get(id);
  }

  /**
   * Runs `fn` once every earlier request of transactional id `id` is done,
   * and the transaction completing before its open one, if one is.
   */
  #serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const finishing = this.#finishing.get(id);
    return finishing ? finishing.then(() => this.#serial(id, fn)) : this.#line(id, fn);
  }

  /** Runs `fn` once every earlier request of transactional id `id` is done. */
  #line<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const mine = (this.#turns.get(id) ?? Promise.resolve()).then(fn);
    const done = mine.then(() => {}, () => {});
    this.#turns.set(id, done);
    void done.then(() => {
      if (this.#turns.get(id) === done) this.#turns.delete(id);
    });
    return mine;
  }

  async #write(id: string, txn: TxnMeta | null, extra: Pick<TxnOp, "commit" | "aborted"> = {}): Promise<void> {
    await appendMetaReplicated(this.#b, { op: "txn", id, txn, ...extra }, this.#b.opts.requestTimeoutMs);
  }

  /** The id's state, checked against the producer id and epoch a request carries. */
  #owned(id: string, producerId: bigint, epoch: number): TxnMeta {
    this.#b.requireLeader();
    const txn = this.#meta(id);
    if (!txn || this.#b.producerIds.nameOf(producerId) !== producerName(txn.producer)) {
      throw new YakError(
        "INVALID_PRODUCER_ID_MAPPING",
        `producer id ${producerId} is not transactional id '${id}''s: initialize the producer (InitProducerId) first`,
      );
    }
    if (epoch < txn.epoch) {
      throw new YakError(
        "PRODUCER_FENCED",
        `transactional id '${id}' was initialized again (epoch ${txn.epoch}); this producer (epoch ${epoch}) is fenced`,
      );
    }
    if (epoch > txn.epoch) {
      throw new YakError("INVALID_PRODUCER_EPOCH", `epoch ${epoch} of '${id}' was not issued (it is at ${txn.epoch})`);
    }
    return txn;
  }

  /**
   * InitProducerId with a transactional id: the id's producer id (a new one
   * the first time) with its epoch bumped; a transaction the previous epoch
   * left open is aborted first, and one decided is completed first. Given
   * `expected` (KIP-360), it must be the id's current producer and epoch.
   */
  initProducer(
    id: string,
    timeoutMs: number,
    expected: { producerId: bigint; epoch: number } | null = null,
  ): Promise<{ producerId: bigint; epoch: number }> {
    checkTxnId(id);
    const max = this.#b.opts.transactionMaxTimeoutMs ?? DEFAULTS.transactionMaxTimeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > max) {
      throw new YakError(
        "INVALID_TRANSACTION_TIMEOUT",
        `transaction timeout ${timeoutMs} ms is outside 1..${max} ms (the broker's transaction.max.timeout.ms)`,
      );
    }
    return this.#serial(id, async () => {
      this.#b.requireLeader();
      let txn = this.#meta(id);
      if (txn && expected && expected.producerId >= 0n) this.#owned(id, expected.producerId, expected.epoch);
      if (txn && txn.state === "Ongoing") await this.#decide(id, txn, false);
      else if (txn && (txn.state === "PrepareCommit" || txn.state === "PrepareAbort")) await this.#complete(id);
      txn = this.#meta(id);
      if (!txn && this.#b.store.meta.txns.size >= DEFAULTS.maxTransactionalIds) {
        throw new YakError(
          "POLICY_VIOLATION",
          `the cluster keeps at most ${DEFAULTS.maxTransactionalIds} transactional ids; reuse one, or wait for ` +
            `idle ones to expire`,
        );
      }
      const fresh = !txn || txn.epoch >= MAX_EPOCH - 1;
      const producer = fresh ? await this.#b.producerIds.issueCounter(this.#b.opts.requestTimeoutMs) : txn!.producer;
      const epoch = fresh ? 0 : txn!.epoch + 1;
      const now = Date.now();
      const next: TxnMeta = {
        producer,
        epoch,
        timeoutMs,
        state: "Empty",
        partitions: {},
        startedAt: 0,
        updatedAt: now,
      };
      await this.#write(id, next);
      this.#b.log.write("txn_producer_initialized", { transactionalId: id, producer: producerName(producer), epoch });
      return { producerId: this.#b.producerIds.idOf(producer), epoch };
    });
  }

  /**
   * AddPartitionsToTxn: the partitions join the transaction (which opens
   * with its first); each remembers its log end now, where the
   * transaction's records there can start. A partition that does not exist
   * fails alone, and the others are not added (Kafka's OPERATION_NOT_ATTEMPTED).
   */
  addPartitions(
    id: string,
    producerId: bigint,
    epoch: number,
    parts: readonly TopicPartition[],
  ): Promise<Map<string, YakError | null>> {
    return this.#serial(id, async () => {
      const txn = this.#owned(id, producerId, epoch);
      this.#refuseDeciding(id, txn);
      const out = this.#missingOf(parts);
      if ([...out.values()].some((e) => e !== null)) return out;
      await this.#join(id, txn, parts);
      return out;
    });
  }

  /** Why each partition cannot join a transaction, or null, by key. */
  #missingOf(parts: readonly TopicPartition[]): Map<string, YakError | null> {
    return new Map<string, YakError | null>(parts.map((tp) => [keyOf(tp), this.#missing(tp)]));
  }

  /**
   * The partitions (which exist) join the transaction, opening it if it was
   * not open; written with `extra`, the completion of the one before, when
   * it opens the next transaction as the last one completes.
   */
  async #join(
    id: string,
    txn: TxnMeta,
    parts: readonly TopicPartition[],
    extra: Pick<TxnOp, "commit" | "aborted"> = {},
  ): Promise<void> {
    const ongoing = txn.state === "Ongoing";
    const added = parts.map(keyOf).filter((key) => !ongoing || txn.partitions[key] === undefined);
    if (added.length === 0 && ongoing) return;
    const partitions = ongoing ? { ...txn.partitions } : {};
    for (const key of added) {
      const tp = partOf(key);
      partitions[key] = this.#b.store.partition(tp.topic, tp.partition).logEndOffset;
    }
    if (Object.keys(partitions).length > DEFAULTS.maxPartitionsPerTransaction) {
      throw new YakError(
        "POLICY_VIOLATION",
        `a transaction writes to at most ${DEFAULTS.maxPartitionsPerTransaction} partitions; commit and start another`,
      );
    }
    await this.#open(id, txn, { ...txn, partitions }, extra);
  }

  /** Why a partition cannot join a transaction, or null. */
  #missing(tp: TopicPartition): YakError | null {
    const n = this.#b.store.partitionCount(tp.topic);
    if (n === 0) return new YakError("UNKNOWN_TOPIC", `topic '${tp.topic}' does not exist`);
    if (!Number.isInteger(tp.partition) || tp.partition < 0 || tp.partition >= n) {
      return new YakError("UNKNOWN_PARTITION", `topic '${tp.topic}' has partitions 0..${n - 1}`);
    }
    return null;
  }

  #refuseDeciding(id: string, txn: TxnMeta): void {
    if (txn.state === "PrepareCommit" || txn.state === "PrepareAbort") {
      throw new YakError(
        "CONCURRENT_TRANSACTIONS",
        `transactional id '${id}' is completing its last transaction; retry shortly`,
      );
    }
  }

  /**
   * Writes `next` as the Ongoing state of `txn`, opening the transaction if
   * it was not (checked against the limits); `extra` completes the one before.
   */
  async #open(id: string, txn: TxnMeta, next: TxnMeta, extra: Pick<TxnOp, "commit" | "aborted"> = {}): Promise<void> {
    const opening = txn.state !== "Ongoing";
    if (opening) {
      let open = 0;
      for (const [other, t] of this.#b.store.meta.txns) if (other !== id && OPEN_TXN_STATES.has(t.state)) open++;
      if (open >= DEFAULTS.maxOpenTransactions) {
        throw new YakError(
          "POLICY_VIOLATION",
          `${open} transactions are open, the most the coordinator keeps (each holds read_committed consumers back)`,
        );
      }
    }
    const now = Date.now();
    const state: TxnMeta = { ...next, state: "Ongoing", startedAt: opening ? now : txn.startedAt, updatedAt: now };
    const bytes = JSON.stringify(state).length;
    if (bytes > DEFAULTS.maxTransactionStateBytes) {
      throw new YakError(
        "POLICY_VIOLATION",
        `transaction '${id}' would take ${bytes} bytes of state, past ${DEFAULTS.maxTransactionStateBytes}`,
      );
    }
    await this.#write(id, state, extra);
    if (opening) this.#deadlines.set(id, monotonicMs() + txn.timeoutMs);
  }

  /** AddOffsetsToTxn: the group's offsets may join the transaction (TxnOffsetCommit); opens it if it was not. */
  addOffsets(id: string, producerId: bigint, epoch: number, group: string): Promise<void> {
    checkGroupName(group);
    return this.#serial(id, async () => {
      const txn = this.#owned(id, producerId, epoch);
      this.#refuseDeciding(id, txn);
      if (txn.state === "Ongoing" && txn.groups?.includes(group)) return;
      await this.#open(id, txn, { ...txn, groups: [...(txn.groups ?? []), group] });
    });
  }

  /**
   * TxnOffsetCommit: offsets a group commits when the transaction commits
   * (and never, when it aborts). A member, when named, is checked as a
   * commit's member is.
   */
  txnOffsetCommit(
    id: string,
    group: string,
    producerId: bigint,
    epoch: number,
    member: TxnMember | null,
    offsets: readonly TxnOffsetInput[],
  ): Promise<void> {
    checkGroupName(group);
    return this.#serial(id, async () => {
      const txn = this.#owned(id, producerId, epoch);
      this.#refuseDeciding(id, txn);
      if (txn.state !== "Ongoing" || !txn.groups?.includes(group)) {
        throw new YakError("INVALID_TXN_STATE", `group '${group}' is not in a transaction of '${id}': AddOffsetsToTxn`);
      }
      if (member) this.#groups.checkCommitter(group, member);
      const all = structuredClone(txn.offsets ?? {});
      const byTopic = all[group] ??= {};
      for (const o of offsets) {
        const missing = this.#missing(o);
        if (missing) throw missing;
        (byTopic[o.topic] ??= {})[o.partition] = [o.offset, o.metadata, o.leaderEpoch] as TxnOffset;
      }
      let count = 0;
      for (const t of Object.values(all)) for (const p of Object.values(t)) count += Object.keys(p).length;
      if (count > DEFAULTS.maxOffsetsPerTransaction) {
        throw new YakError(
          "POLICY_VIOLATION",
          `a transaction carries at most ${DEFAULTS.maxOffsetsPerTransaction} offsets`,
        );
      }
      await this.#open(id, txn, { ...txn, offsets: all });
    });
  }

  /**
   * EndTxn: commits or aborts the open transaction and answers once every
   * marker is written and replicated. A retry of an end already done is
   * answered as done; the other end of a decided transaction is refused.
   *
   * `next` (yak's own producer, which writes transaction after transaction):
   * the partitions of the next transaction, opened by the same record that
   * completes this one, so the producer sends on without an
   * AddPartitionsToTxn and the coordinator writes one record less. A retry
   * after the end was done opens them then; one that finds the next
   * transaction already open commits it (it holds nothing yet: its records
   * wait for this answer) and opens another.
   */
  endTxn(
    id: string,
    producerId: bigint,
    epoch: number,
    commit: boolean,
    next: readonly TopicPartition[] = [],
  ): Promise<void> {
    return this.#serial(id, async () => {
      const txn = this.#owned(id, producerId, epoch);
      const missing = [...this.#missingOf(next).values()].find((e) => e !== null);
      if (missing) throw missing;
      const want = commit ? "Commit" : "Abort";
      if (txn.state === `Complete${want}`) return next.length > 0 ? await this.#join(id, txn, next) : undefined;
      if (txn.state === `Prepare${want}`) return await this.#complete(id, next);
      if (txn.state !== "Ongoing") {
        throw new YakError(
          "INVALID_TXN_STATE",
          `transactional id '${id}' has no open transaction to ${commit ? "commit" : "abort"} (it is ${txn.state})`,
        );
      }
      await this.#decide(id, txn, commit, txn.epoch, next);
    });
  }

  /** The decision, replicated before any marker is written, then the markers (and the next transaction, if asked). */
  async #decide(
    id: string,
    txn: TxnMeta,
    commit: boolean,
    epoch = txn.epoch,
    next: readonly TopicPartition[] = [],
  ): Promise<void> {
    if (txn.completing) {
      // Its markers were not all on the in-sync replicas in time: the timer waits for them again.
      throw new YakError("CONCURRENT_TRANSACTIONS", `transactional id '${id}' is completing its last transaction`);
    }
    if (next.length > 0) return await this.#decideOpeningNext(id, txn, commit, next);
    const state = commit ? "PrepareCommit" : "PrepareAbort";
    await this.#write(id, { ...txn, epoch, state, updatedAt: Date.now() });
    this.#b.log.write("txn_decided", { transactionalId: id, state, partitions: Object.keys(txn.partitions).length });
    await this.#complete(id, next);
  }

  /**
   * Writes a decided transaction's markers into each of its partitions,
   * waits until the in-sync replicas hold them, then completes it (and with
   * a commit, its offsets become the groups' commits in the same record).
   * With `next`, that record opens the next transaction with those
   * partitions instead of leaving the id Complete: its records start after
   * the markers, which are in by then.
   */
  async #complete(id: string, next: readonly TopicPartition[] = []): Promise<void> {
    const txn = this.#meta(id)!;
    // Asked by the timer while the decision was being replicated, then run after the end it raced: done already
    // (and with `next`, the id has moved on to an open transaction that must not be ended here).
    if (txn.state !== "PrepareCommit" && txn.state !== "PrepareAbort") return void this.#completing.delete(id);
    if (next.length > 0) return await this.#decideOpeningNext(id, txn, txn.state === "PrepareCommit", next);
    const commit = txn.state === "PrepareCommit";
    this.#completing.add(id);
    try {
      const name = producerName(txn.producer);
      const timeoutMs = this.#b.opts.requestTimeoutMs;
      const keys = this.#keysOf(txn.partitions);
      const markers = await Promise.all(
        keys.map((key) => this.#partitions.appendMarker(partOf(key), name, txn.epoch, commit, timeoutMs)),
      );
      const done = this.#ended(txn, commit ? "CompleteCommit" : "CompleteAbort");
      this.#deadlines.delete(id);
      const placed = Object.fromEntries(keys.map((key, i) => [key, markers[i]]));
      await this.#write(id, done, this.#completionOf(commit, txn.partitions, placed, txn.offsets));
      this.#b.notifier.notify(); // read_committed long polls: the last stable offset moved

      this.#b.log.write("txn_completed", { transactionalId: id, state: done.state, markers: keys.length });
    } finally {
      this.#completing.delete(id);
    }
  }

  /** The partitions of `partitions` that still exist (a deleted topic gets no marker). */
  #keysOf(partitions: Record<string, number>): string[] {
    return Object.keys(partitions).filter((key) => this.#missing(partOf(key)) === null);
  }

  /** What a completion brings: with a commit the offsets become the groups'; with an abort, the aborted ranges. */
  #completionOf(
    commit: boolean,
    partitions: Record<string, number>,
    markers: Record<string, number>,
    offsets: TxnMeta["offsets"],
  ): Pick<TxnOp, "commit" | "aborted"> {
    if (commit) return offsets ? { commit: offsets } : {};
    return { aborted: Object.fromEntries(Object.keys(markers).map((key) => [key, [partitions[key], markers[key]]])) };
  }

  /** `txn` ended in `state`: no partitions, no groups, nothing open. */
  #ended(txn: TxnMeta, state: TxnStateName): TxnMeta {
    return {
      producer: txn.producer,
      epoch: txn.epoch,
      timeoutMs: txn.timeoutMs,
      state,
      partitions: {},
      startedAt: 0,
      updatedAt: Date.now(),
    };
  }

  /**
   * The end of transaction N when its producer has N+1's partitions ready
   * (`next`): one record decides N (kept as `completing`) and opens N+1, and
   * once it is on the in-sync replicas N's markers are placed in the
   * leader's logs and the answer goes; the record that ends N follows once
   * the in-sync replicas hold every marker. Read_committed readers see N
   * then, as they would have when EndTxn waited for the markers. Until each
   * marker is placed the producer's batches into its partition are refused
   * (`PartitionOps.expectMarker`), so none of N+1 lies before N's marker.
   * Why: the producer waited for two replicated records per commit (the
   * decision, then the one opening N+1 after the markers); now one.
   */
  async #decideOpeningNext(id: string, txn: TxnMeta, commit: boolean, next: readonly TopicPartition[]): Promise<void> {
    const name = producerName(txn.producer);
    const keys = this.#keysOf(txn.partitions);
    const logEnd = (key: string) => {
      const tp = partOf(key);
      return this.#b.store.partition(tp.topic, tp.partition).logEndOffset;
    };
    const completing: CompletingTxn = {
      state: commit ? "PrepareCommit" : "PrepareAbort",
      partitions: Object.fromEntries(keys.map((key) => [key, txn.partitions[key]])),
      from: Object.fromEntries(keys.map((key) => [key, logEnd(key)])),
      ...(txn.offsets ? { offsets: txn.offsets } : {}),
    };
    // N+1 starts at N's start where N is completing (its records lie after N's marker, whose offset is not known
    // yet: the record that ends N moves the start past it), elsewhere at the log end now.
    const partitions: Record<string, number> = {};
    for (const key of next.map(keyOf)) partitions[key] = completing.partitions[key] ?? logEnd(key);
    const ended = { ...this.#ended(txn, txn.state), completing };
    // Before the record applies here: no batch of the producer, and no timer, gets ahead of the markers.
    for (const key of keys) this.#partitions.expectMarker(key, name);
    let decided!: () => void;
    let failed!: (err: unknown) => void;
    const decision = new Promise<void>((resolve, reject) => [decided, failed] = [resolve, reject]);
    const placing = keys.map((key) => decision.then(() => this.#place(partOf(key), name, txn.epoch, commit)));
    this.#awaitMarkers(id, completing, keys, placing.map((p) => p.then((m) => m.replicated.then(() => m.offset))));
    const deadline = this.#deadlines.get(id);
    this.#deadlines.delete(id);
    try {
      await this.#open(id, ended, { ...ended, partitions });
      decided();
    } catch (err) {
      failed(err);
      if (!this.#meta(id)?.completing) {
        // Not decided here: its batches are the producer's to send again, its timeout runs on.
        for (const key of keys) this.#partitions.markerIn(key, name);
        if (deadline !== undefined) this.#deadlines.set(id, deadline);
      }
      throw err;
    }
    this.#b.log.write("txn_decided", {
      transactionalId: id,
      state: completing.state,
      partitions: keys.length,
      next: true,
    });
    await Promise.all(placing); // offsets taken here: the producer's next records land, and are written, after them
  }

  /**
   * Places `producer`'s marker in `tp` and, its offset taken, takes its
   * batches there again (they land after it). Should its write fail, its
   * offset and those of every batch behind it are freed, and in that same
   * step the batches are refused again until the timer places it anew.
   */
  async #place(
    tp: TopicPartition,
    producer: string,
    pepoch: number,
    commit: boolean,
  ): Promise<{ offset: number; replicated: Promise<void> }> {
    const key = keyOf(tp);
    const timeoutMs = this.#b.opts.requestTimeoutMs;
    const refuse = () => this.#partitions.expectMarker(key, producer);
    const placed = await this.#partitions.placeMarker(tp, producer, pepoch, commit, timeoutMs, refuse);
    this.#partitions.markerIn(key, producer);
    return placed;
  }

  /**
   * A new leader's part (or the timer's, after a failure) of a transaction
   * completing while the next is open. A marker whose offset the record
   * names is in a log that ends past it, else placed again (in the step that
   * makes this broker leader, no write taken yet, nothing of the next
   * transaction lies there: the old leader's log was the same up to there).
   * One the record does not name is looked for from where it was decided
   * (the producer's batches there refused meanwhile), and placed if absent:
   * nothing of the next transaction lies after a marker that is absent.
   */
  #finishCompleting(id: string, c: CompletingTxn): void {
    const leader = this.#b.requireLeader();
    const txn = this.#meta(id)!;
    const name = producerName(txn.producer);
    const commit = c.state === "PrepareCommit";
    const timeoutMs = this.#b.opts.requestTimeoutMs;
    const keys = this.#keysOf(c.partitions);
    const waits: Promise<number>[] = [];
    for (const key of keys) {
      const tp = partOf(key);
      const known = c.markers?.[key];
      if (known === undefined) {
        this.#partitions.expectMarker(key, name);
        const from = c.from?.[key] ?? c.partitions[key];
        waits.push(this.#findOrPlace(tp, name, txn.epoch, commit, from));
      } else if (this.#b.store.partition(tp.topic, tp.partition).logEndOffset > known) {
        waits.push(leader.waitForHw(key, known + 1, timeoutMs).then(() => known));
      } else {
        waits.push(this.#place(tp, name, txn.epoch, commit).then((m) => m.replicated.then(() => m.offset)));
      }
    }
    this.#awaitMarkers(id, c, keys, waits);
  }

  /**
   * The offset of `producer`'s marker in `tp` at or after `from`, once on
   * the in-sync replicas; placed now when the log holds none.
   */
  async #findOrPlace(
    tp: TopicPartition,
    producer: string,
    pepoch: number,
    commit: boolean,
    from: number,
  ): Promise<number> {
    const key = keyOf(tp);
    const log = this.#b.store.partition(tp.topic, tp.partition);
    const end = log.logEndOffset;
    const kind = commit ? "commit" : "abort";
    let found = -1;
    for (let at = Math.max(from, log.logStartOffset); found === -1 && at < end;) {
      const read = await log.read(at, 256 * 1024, end);
      for (const r of parseLines(read.text)) {
        if (found === -1 && r.marker === kind && r.producer === producer && r.pepoch === pepoch) found = r.offset;
      }
      if (read.nextOffset <= at) break; // nothing more to read (a bound, not expected)
      at = read.nextOffset;
    }
    this.#b.log.write(found === -1 ? "txn_marker_missing" : "txn_marker_found", {
      partition: key,
      producer,
      from,
      ...(found === -1 ? {} : { offset: found }),
    });
    if (found === -1) {
      const placed = await this.#place(tp, producer, pepoch, commit);
      await placed.replicated;
      return placed.offset;
    }
    this.#partitions.markerIn(key, producer);
    await this.#b.requireLeader().waitForHw(key, found + 1, this.#b.opts.requestTimeoutMs);
    return found;
  }

  /**
   * Once every marker of a completing transaction is on the in-sync replicas
   * (`replicated`: each one's offset, in the order of `keys`), the record
   * that ends it: the next transaction's starts move past the markers.
   */
  #awaitMarkers(id: string, c: CompletingTxn, keys: string[], replicated: Promise<number>[]): void {
    const end = async () => {
      const offsets = await Promise.all(replicated);
      const markers = Object.fromEntries(keys.map((key, i) => [key, offsets[i]]));
      await this.#line(id, async () => {
        const txn = this.#meta(id);
        if (!txn?.completing) return;
        const { completing: _, ...open } = txn;
        const partitions = { ...open.partitions };
        for (const [key, at] of Object.entries(markers)) {
          if (partitions[key] !== undefined) partitions[key] = Math.max(partitions[key], at + 1);
        }
        const commit = c.state === "PrepareCommit";
        const extra = this.#completionOf(commit, c.partitions, markers, c.offsets);
        await this.#write(id, { ...open, partitions, updatedAt: Date.now() }, extra);
        this.#b.notifier.notify(); // read_committed long polls: the last stable offset moved
      });
    };
    const finishing = end().catch((err) => {
      this.#b.log.write("txn_complete_failed", {
        transactionalId: id,
        error: err instanceof Error ? err.message : String(err),
      });
    });
    this.#finishing.set(id, finishing);
    void finishing.then(() => {
      if (this.#finishing.get(id) === finishing) this.#finishing.delete(id);
    });
  }

  /** The timer: transactions past their timeout are aborted (their producer fenced); decided ones completed. */
  #tick(): void {
    if (this.#b.role() !== "leader" || !this.#b.leaseValid()) return;
    const now = monotonicMs();
    for (const [id, txn] of this.#b.store.meta.txns) {
      const deadline = this.#deadlines.get(id);
      if (txn.state === "Ongoing" && deadline !== undefined && now >= deadline) {
        this.#deadlines.delete(id);
        this.#background(id, "txn_timeout_abort_failed", () => this.#expire(id, txn.epoch));
      } else if ((txn.state === "PrepareCommit" || txn.state === "PrepareAbort") && !this.#completing.has(id)) {
        this.#completing.add(id);
        this.#background(id, "txn_complete_failed", () => this.#complete(id));
      } else if (txn.completing && !this.#finishing.has(id)) {
        this.#finishCompleting(id, txn.completing); // its markers are in this leader's logs: they are waited for again
      }
    }
    if (now - this.#expiryCheckedMs >= EXPIRY_CHECK_MS) {
      this.#expiryCheckedMs = now;
      this.#forgetIdle();
    }
  }

  #background(id: string, failed: string, fn: () => Promise<void>): void {
    this.#serial(id, fn).catch((err) => {
      this.#completing.delete(id);
      this.#b.log.write(failed, { transactionalId: id, error: err instanceof Error ? err.message : String(err) });
    });
  }

  /**
   * A transaction open past its timeout: aborted under a bumped epoch, so its
   * producer, if it still runs, is fenced rather than writing on into a
   * transaction that no longer exists.
   */
  async #expire(id: string, epoch: number): Promise<void> {
    const txn = this.#meta(id);
    if (!txn || txn.state !== "Ongoing" || txn.epoch !== epoch) return;
    this.#b.log.write("txn_timed_out", { transactionalId: id, timeoutMs: txn.timeoutMs });
    await this.#decide(id, txn, false, Math.min(MAX_EPOCH, txn.epoch + 1));
  }

  /** Forgets ids idle past transactional.id.expiration.ms (Kafka's, 7 days). */
  #forgetIdle(): void {
    const cutoff = Date.now() - DEFAULTS.transactionalIdExpirationMs;
    for (const [id, txn] of this.#b.store.meta.txns) {
      if (OPEN_TXN_STATES.has(txn.state) || txn.updatedAt > cutoff) continue;
      this.#background(id, "txn_expire_failed", async () => {
        const now = this.#meta(id);
        if (now && !OPEN_TXN_STATES.has(now.state) && now.updatedAt <= cutoff) await this.#write(id, null);
      });
    }
  }

  /** The transactional ids, or those named, with their transactions (only the leader's view is current). */
  describe(ids?: readonly string[]): TxnView[] {
    const meta = this.#b.store.meta;
    const names = ids ?? [...meta.txns.keys()].sort();
    const out: TxnView[] = [];
    for (const id of names) {
      const t = meta.txns.get(id);
      if (!t) continue;
      out.push({
        id,
        state: t.state,
        // The stored number, as fetched batches carry it: the id a producer writes with stays its secret.
        producerId: BigInt(t.producer),
        producer: producerName(t.producer),
        epoch: t.epoch,
        timeoutMs: t.timeoutMs,
        startedAt: OPEN_TXN_STATES.has(t.state) ? t.startedAt : -1,
        partitions: Object.keys(t.partitions).map(partOf),
        groups: t.groups ?? [],
      });
    }
    return out;
  }

  /**
   * Whether a group's committed offset of a partition may still change with
   * an undecided transaction (OffsetFetch with require_stable answers
   * UNSTABLE_OFFSET_COMMIT then, so a read_committed consumer waits for it).
   */
  pendingOffset(group: string, topic: string, partition: number): boolean {
    for (const t of this.#b.store.meta.txns.values()) {
      if (OPEN_TXN_STATES.has(t.state) && t.offsets?.[group]?.[topic]?.[partition] !== undefined) return true;
      if (t.completing?.offsets?.[group]?.[topic]?.[partition] !== undefined) return true;
    }
    return false;
  }
}
