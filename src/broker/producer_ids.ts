/**
 * Issued producer ids: the broker, never the client, names an idempotent
 * producer. An id is a counter passed through a keyed permutation of
 * [0, 2^53) (safe integers, which every Kafka client decodes intact), so it
 * is unique (a permutation of unique counters), not guessable (without the
 * key, a made-up id is valid with odds of the reserved counters in 2^53:
 * about one in 9e12 per thousand producers), and checked without any
 * per-producer state (decrypt, then the counter must lie below what was
 * reserved). The key and the
 * reserved counter blocks live in `__cluster`, so every later leader checks
 * the ids of earlier ones: retries after a reconnect or a failover still find
 * their producer. Stored lines name a producer by its counter (`p<counter>`),
 * which tells a reader nothing that lets it write as that producer.
 *
 * @module
 */
import { createHmac, randomBytes } from "node:crypto";
import { Connection } from "../protocol/connection.ts";
import { YakError } from "../errors.ts";
import type { BrokerContext } from "./context.ts";
import type { LeaderState } from "./leader_state.ts";
import { appendMetaReplicated } from "./meta_log.ts";

/** Counters reserved in `__cluster` per record: one replicated write per this many producers. */
export const PRODUCER_ID_BLOCK = 1000;
/** Verified ids remembered, so the permutation runs once per producer, not once per batch. */
const VERIFIED_CACHE = 100_000;
/** Feistel rounds of the permutation (a secure PRP needs at least 4). */
const ROUNDS = 8;
/** Ids are below 2^53: safe integers, for clients that decode an int64 into a JS number. */
const ID_BITS = 53;
/** The Feistel network runs on 54 bits, two halves of 27, walked until the result is below 2^53. */
const HALF_BITS = 27;
const HALF_MASK = 2 ** HALF_BITS - 1;

/**
 * A keyed permutation of [0, 2^53): a balanced Feistel network over 54 bits
 * with HMAC-SHA256 rounds, walked until the result falls below 2^53 (cycle
 * walking keeps it a permutation of the smaller range).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ProducerIdCipher } from "./producer_ids.ts";
 * const c = new ProducerIdCipher("00112233445566778899aabbccddeeff");
 * assert.equal(c.decrypt(c.encrypt(42)), 42);
 * ```
 */
export class ProducerIdCipher {
  readonly #key: Uint8Array;

  constructor(keyHex: string) {
    this.#key = Uint8Array.fromHex(keyHex);
  }

  encrypt(counter: number): number {
    return this.#walk(counter, false);
  }

  decrypt(id: number): number {
    return this.#walk(id, true);
  }

  #walk(x: number, inverse: boolean): number {
    if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`${x} is not in [0, 2^${ID_BITS})`);
    let l = Math.floor(x / 2 ** HALF_BITS);
    let r = x % 2 ** HALF_BITS;
    // The 54-bit value is below 2^53 exactly when its high half is below 2^26.
    do [l, r] = this.#permute(l, r, inverse); while (l >= 2 ** (ID_BITS - HALF_BITS));
    return l * 2 ** HALF_BITS + r;
  }

  #permute(l: number, r: number, inverse: boolean): [number, number] {
    if (!inverse) {
      for (let i = 0; i < ROUNDS; i++) [l, r] = [r, (l ^ this.#round(i, r)) & HALF_MASK];
    } else {
      for (let i = ROUNDS - 1; i >= 0; i--) [l, r] = [(r ^ this.#round(i, l)) & HALF_MASK, l];
    }
    return [l, r];
  }

  #round(i: number, half: number): number {
    const input = new Uint8Array(5);
    input[0] = i;
    new DataView(input.buffer).setUint32(1, half);
    const mac = createHmac("sha256", this.#key).update(input).digest();
    return mac.readUInt32BE(0);
  }
}

/** The name stored lines and producer state use for an issued producer. */
export function producerName(counter: number): string {
  return `p${counter}`;
}

/**
 * Issues producer ids as the leader (a follower asks the leader) and checks
 * the ids batches carry.
 *
 * @example
 * ```ts ignore
 * const id = await broker.producerIds.issue(10_000);
 * broker.producerIds.verify(id, 0); // "p1000"
 * ```
 */
export class ProducerIds {
  readonly #b: BrokerContext;
  #cipher: { key: string; cipher: ProducerIdCipher } | null = null;
  readonly #verified = new Map<bigint, string>();
  /** The block this leader reserved: counters [#next, #end), valid while #leader leads. */
  #next = 0;
  #end = 0;
  #leader: LeaderState | null = null;
  #reserving: Promise<void> | null = null;

  constructor(b: BrokerContext) {
    this.#b = b;
  }

  /** A fresh id with epoch 0: issued here when this broker leads, else asked of the leader. */
  async issue(timeoutMs: number): Promise<bigint> {
    const b = this.#b;
    if (b.role() !== "leader") return await this.#askLeader(timeoutMs);
    while (true) {
      const leader = b.requireLeader();
      if (this.#leader === leader && this.#next < this.#end) {
        return BigInt(this.#cipherOf(b.store.meta.producerIds!.key).encrypt(this.#next++));
      }
      this.#reserving ??= this.#reserve(leader, timeoutMs).finally(() => (this.#reserving = null));
      await this.#reserving;
    }
  }

  /**
   * The stored name of an issued producer id, or UNKNOWN_PRODUCER_ID /
   * INVALID_PRODUCER_EPOCH for one the cluster never issued. An idempotent
   * producer's epoch is 0; a transactional producer's must be its
   * transactional id's current epoch (an older one is a zombie, fenced).
   */
  verify(id: bigint, epoch: number): string {
    const name = this.nameOf(id);
    if (name === null) {
      throw new YakError(
        "UNKNOWN_PRODUCER_ID",
        `producer id ${id} was not issued by this cluster: ask for one first (Kafka's InitProducerId, ` +
          `or 'init_producer')`,
      );
    }
    const meta = this.#b.store.meta;
    const txnId = meta.txnOfProducer.get(Number(name.slice(1)));
    const txn = txnId === undefined ? undefined : meta.txns.get(txnId);
    if (txn !== undefined && epoch !== txn.epoch) {
      throw new YakError(
        "INVALID_PRODUCER_EPOCH",
        epoch < txn.epoch
          ? `producer epoch ${epoch} is fenced: transactional id '${txnId}' was initialized again (epoch ${txn.epoch})`
          : `producer epoch ${epoch} was not issued: transactional id '${txnId}' is at epoch ${txn.epoch}`,
      );
    }
    if (txn === undefined && epoch !== 0) {
      throw new YakError(
        "INVALID_PRODUCER_EPOCH",
        `producer epoch ${epoch} was not issued: yak issues every producer id with epoch 0`,
      );
    }
    return name;
  }

  /**
   * The stored name (`p<counter>`) of an issued id, or null for one the
   * cluster never issued. Remembered: deciphering runs 8 HMAC rounds or
   * more (0.29 ms per EndTxn in a profile, when the coordinator enciphered
   * the stored counter instead), and every batch and transaction request
   * names its producer.
   */
  nameOf(id: bigint): string | null {
    let name = this.#verified.get(id);
    if (name === undefined) {
      const state = this.#b.store.meta.producerIds;
      const safe = id >= 0n && id <= BigInt(Number.MAX_SAFE_INTEGER);
      const counter = state && safe ? this.#cipherOf(state.key).decrypt(Number(id)) : -1;
      if (!state || counter < 0 || counter >= state.next) return null;
      name = producerName(counter);
      if (this.#verified.size >= VERIFIED_CACHE) this.#verified.delete(this.#verified.keys().next().value!);
      this.#verified.set(id, name);
    }
    return name;
  }

  /** The id of an issued counter (the transaction coordinator names a transactional id's producer by its counter). */
  idOf(counter: number): bigint {
    const state = this.#b.store.meta.producerIds;
    if (!state || counter >= state.next) throw new YakError("INTERNAL", `producer counter ${counter} was not reserved`);
    return BigInt(this.#cipherOf(state.key).encrypt(counter));
  }

  /** A fresh producer's counter (the stored number behind its id), issued as {@link issue} does. */
  async issueCounter(timeoutMs: number): Promise<number> {
    const id = await this.issue(timeoutMs);
    return Number(this.verify(id, 0).slice(1));
  }

  #cipherOf(key: string): ProducerIdCipher {
    if (this.#cipher?.key !== key) {
      this.#cipher = { key, cipher: new ProducerIdCipher(key) };
      this.#verified.clear();
    }
    return this.#cipher.cipher;
  }

  /**
   * Reserves the next block in `__cluster` and waits until the in-sync
   * replicas hold it: an id is handed out only once every later leader will
   * know its block (and the key), so it is never issued twice nor refused.
   */
  async #reserve(leader: LeaderState, timeoutMs: number): Promise<void> {
    const b = this.#b;
    const state = b.store.meta.producerIds;
    const from = state?.next ?? 0;
    const key = state?.key ?? randomBytes(32).toString("hex");
    await appendMetaReplicated(b, { op: "producer_ids", key, next: from + PRODUCER_ID_BLOCK }, timeoutMs);
    if (b.requireLeader() !== leader) return; // the caller loops and sees the new leader
    this.#leader = leader;
    this.#next = from;
    this.#end = from + PRODUCER_ID_BLOCK;
  }

  async #askLeader(timeoutMs: number): Promise<bigint> {
    const l = this.#b.leader();
    if (!l) throw new YakError("NO_LEADER", `broker ${this.#b.opts.id} knows no leader to issue a producer id`);
    const conn = await Connection.open(l.host, l.port, { connectTimeoutMs: Math.min(timeoutMs, 3000) });
    try {
      const res = await conn.request({ type: "init_producer" }, timeoutMs);
      return BigInt(res.producerId as string);
    } finally {
      conn.close();
    }
  }
}
