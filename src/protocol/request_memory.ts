/**
 * One budget for the bytes of large requests held at once by every
 * connection of a process (Kafka's queued.max.request.bytes): a connection
 * whose next frame would pass it stops reading until others give bytes back,
 * instead of allocating.
 *
 * @module
 */
import { assert } from "../errors.ts";

/** What one connection holds of the budget. */
export interface MemoryAccount {
  held: number;
}

interface Waiter {
  bytes: number;
  account: MemoryAccount;
  resolve: () => void;
  reject: (err: unknown) => void;
  signal?: AbortSignal;
  onAbort: () => void;
}

/**
 * Bytes granted first come, first served. A frame whose size is not known
 * in advance (a native JSON line) grows its buffer step by step, so waiters
 * may hold bytes: when every byte held belongs to a waiter, nobody would give
 * any back, and the waiter holding the most (the frame nearest its end) is
 * let through past the budget; only one frame at a time gets there that way.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RequestMemory } from "./request_memory.ts";
 * const memory = new RequestMemory(1024);
 * const a = { held: 0 }, b = { held: 0 };
 * await memory.take(1000, a);
 * const waiting = memory.take(100, b); // waits: 1100 would pass the budget
 * memory.give(1000, a);
 * await waiting;
 * assert.equal(memory.usedBytes, 100);
 * assert.equal(b.held, 100);
 * ```
 */
export class RequestMemory {
  readonly budgetBytes: number;
  #used = 0;
  #waiters: Waiter[] = [];

  constructor(budgetBytes: number) {
    this.budgetBytes = budgetBytes;
  }

  /** Bytes granted and not yet given back. */
  get usedBytes(): number {
    return this.#used;
  }

  /** Connections waiting for bytes. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /**
   * Resolves once `bytes` are granted to `account`; rejects if `signal`
   * aborts first. A request larger than the whole budget is granted when
   * nothing else is held, so every frame within the frame limit gets through
   * in the end.
   */
  take(bytes: number, account: MemoryAccount, signal?: AbortSignal): Promise<void> {
    if (bytes <= 0) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#waiters.length === 0 && this.#fits(bytes)) {
      this.#grantTo(account, bytes);
      return Promise.resolve();
    }
    const granted = new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        account,
        resolve,
        reject,
        signal,
        onAbort: () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(signal!.reason);
          this.#grant();
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
    this.#grant();
    return granted;
  }

  /** Takes bytes already in memory (read before they could be refused), even past the budget. */
  force(bytes: number, account: MemoryAccount | null): void {
    if (bytes <= 0) return;
    this.#used += bytes;
    if (account) account.held += bytes;
  }

  /** Moves bytes out of an account (they leave with a request) without giving them back yet. */
  detach(bytes: number, account: MemoryAccount): void {
    account.held -= bytes;
    assert(account.held >= 0, `request memory detached twice (${account.held} bytes held)`);
  }

  /** Gives bytes back (from `account`, or detached ones with null) and wakes whoever they let through. */
  give(bytes: number, account: MemoryAccount | null): void {
    if (bytes <= 0) return;
    this.#used -= bytes;
    if (account) account.held -= bytes;
    assert(this.#used >= 0 && (account?.held ?? 0) >= 0, `request memory given back twice (${this.#used} held)`);
    this.#grant();
  }

  #fits(bytes: number): boolean {
    return this.#used + bytes <= this.budgetBytes || this.#used === 0;
  }

  #grantTo(account: MemoryAccount, bytes: number): void {
    this.#used += bytes;
    account.held += bytes;
  }

  #grant(): void {
    while (this.#waiters.length > 0) {
      let next = this.#fits(this.#waiters[0].bytes) ? 0 : -1;
      if (next === -1) next = this.#stuck();
      if (next === -1) return;
      const [w] = this.#waiters.splice(next, 1);
      w.signal?.removeEventListener("abort", w.onAbort);
      this.#grantTo(w.account, w.bytes);
      w.resolve();
    }
  }

  /** When all bytes held are held by waiters: the index of the one holding the most; else -1. */
  #stuck(): number {
    let heldByWaiters = 0;
    let most = -1;
    for (const [i, w] of this.#waiters.entries()) {
      heldByWaiters += w.account.held;
      if (most === -1 || w.account.held > this.#waiters[most].account.held) most = i;
    }
    return heldByWaiters === this.#used ? most : -1;
  }
}
