/**
 * A connection's answers on their way out: in request order (Kafka clients
 * match replies by order) or as each is ready (the native protocol matches by
 * id), whatever is queued while a write is under way going out in the next
 * one, with counts the pump uses to stop reading from a peer that does not
 * read its answers.
 *
 * @module
 */
import { type ByteSink, writeParts } from "./frame.ts";

/** Bytes to send: text (UTF-8, frames with their own delimiters), raw bytes, or parts of both in order. */
export type Outgoing = string | Uint8Array | readonly (string | Uint8Array)[];

interface Slot {
  out: Outgoing | null;
  done: boolean;
}

/** The bytes an answer counts for (a string's length stands for its UTF-8 size). */
function sizeOf(out: Outgoing): number {
  if (typeof out === "string" || out instanceof Uint8Array) return out.length;
  let n = 0;
  for (const part of out) n += part.length;
  return n;
}

/**
 * One connection's queue of answers.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Outbox } from "./outbox.ts";
 * const written: Uint8Array[] = [];
 * const sink = { write: (p: Uint8Array) => (written.push(p.slice()), Promise.resolve(p.length)) };
 * const out = new Outbox(sink, true, () => {}, () => {});
 * out.add(new Promise((r) => setTimeout(() => r("second\n"), 10)));
 * out.add("third\n"); // ready first, but waits for the answer before it
 * await out.drained();
 * const text = written.map((p) => new TextDecoder().decode(p)).join("");
 * assert.equal(text, "second\nthird\n"); // answers leave in request order
 * ```
 */
export class Outbox {
  readonly #sink: ByteSink;
  readonly #ordered: boolean;
  readonly #onProgress: () => void;
  readonly #onFail: () => void;
  /** Ordered only: answers behind one not ready yet. */
  #slots: Slot[] = [];
  #queue: (string | Uint8Array)[] = [];
  #queueBytes = 0;
  #writing = false;
  #failed = false;
  #drainWaiters: (() => void)[] = [];
  /** Answers not ready yet. */
  inFlight = 0;
  /** Bytes of ready answers not written yet. */
  unwritten = 0;

  /** `onProgress` runs whenever an answer settles or bytes go out; `onFail` when a write fails or an answer rejects. */
  constructor(sink: ByteSink, ordered: boolean, onProgress: () => void, onFail: () => void) {
    this.#sink = sink;
    this.#ordered = ordered;
    this.#onProgress = onProgress;
    this.#onFail = onFail;
  }

  /** Queues the answer to a request; `release` runs once it has settled. */
  add(answer: Outgoing | null | Promise<Outgoing | null>, release?: () => void): void {
    if (!(answer instanceof Promise)) {
      release?.();
      if (answer === null) return;
      this.unwritten += sizeOf(answer);
      if (this.#slots.length > 0) this.#slots.push({ out: answer, done: true });
      else this.#enqueue(answer);
      return;
    }
    this.inFlight++;
    const slot: Slot | null = this.#ordered ? { out: null, done: false } : null;
    if (slot) this.#slots.push(slot);
    answer.then((out) => {
      if (out !== null) this.unwritten += sizeOf(out);
      if (slot) {
        slot.out = out;
        slot.done = true;
        this.#shiftSlots();
      } else if (out !== null) {
        this.#enqueue(out);
      }
    }, () => {
      // A request that could not be answered: the peer is told by the connection closing.
      if (slot) slot.done = true;
      this.#fail();
    }).finally(() => {
      this.inFlight--;
      release?.();
      this.#onProgress();
      this.#checkDrained();
    });
  }

  /** Sends bytes nobody asked for, after what is queued now. */
  push(out: Outgoing): void {
    this.unwritten += sizeOf(out);
    this.#enqueue(out);
  }

  /** Resolves once every answer added so far is written (or the connection failed). */
  drained(): Promise<void> {
    if (this.#isDrained()) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #isDrained(): boolean {
    return this.#failed || (this.inFlight === 0 && this.#slots.length === 0 && this.#queue.length === 0 &&
      !this.#writing);
  }

  #checkDrained(): void {
    if (this.#drainWaiters.length === 0 || !this.#isDrained()) return;
    for (const w of this.#drainWaiters.splice(0)) w();
  }

  #shiftSlots(): void {
    while (this.#slots.length > 0 && this.#slots[0].done) {
      const { out } = this.#slots.shift()!;
      if (out !== null) this.#enqueue(out);
    }
  }

  #enqueue(out: Outgoing): void {
    if (this.#failed) return;
    if (typeof out === "string" || out instanceof Uint8Array) this.#queue.push(out);
    else this.#queue.push(...out);
    this.#queueBytes += sizeOf(out);
    if (!this.#writing) this.#flush();
  }

  #fail(): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#queue = [];
    this.#slots = [];
    this.#onFail();
    this.#checkDrained();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#failed) {
        const parts = this.#queue;
        const bytes = this.#queueBytes;
        this.#queue = [];
        this.#queueBytes = 0;
        await writeParts(this.#sink, parts);
        this.unwritten -= bytes;
        this.#onProgress();
      }
    } catch {
      this.#fail();
    } finally {
      this.#writing = false;
      this.#checkDrained();
    }
  }
}
