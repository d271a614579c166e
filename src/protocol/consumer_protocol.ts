/**
 * Kafka's consumer protocol: the bytes a group member sends as its
 * subscription (JoinGroup metadata) and the leader hands out as assignments
 * (SyncGroup). yak's native consumer uses the same bytes as Kafka clients, so
 * one group can mix `yak consume` and Kafka consumers, and the coordinator can
 * read which topics a group subscribes to. Version 0 fields are written; later
 * versions are read (their extra fields are ignored).
 *
 * Subscription: version int16, topics [string], userData bytes.
 * Assignment:   version int16, [topic string, partitions [int32]], userData bytes.
 * (string: int16 length + UTF-8; array: int32 count; bytes: int32 length, -1 = null.)
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { strictUtf8 as decoder } from "../utf8.ts";

const encoder = new TextEncoder();

/** At most this many topics in a subscription or an assignment (a bound on what a peer can make us allocate). */
export const MAX_PROTOCOL_TOPICS = 10_000;
/** At most this many partitions per topic in an assignment. */
export const MAX_PROTOCOL_PARTITIONS = 100_000;

class Writer {
  #parts: number[] = [];
  int16(n: number) {
    this.#parts.push((n >> 8) & 0xff, n & 0xff);
  }
  int32(n: number) {
    this.#parts.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  }
  string(s: string) {
    const b = encoder.encode(s);
    this.int16(b.length);
    for (const x of b) this.#parts.push(x);
  }
  bytes() {
    return new Uint8Array(this.#parts);
  }
}

class Reader {
  #at = 0;
  constructor(readonly b: Uint8Array) {}
  #need(n: number) {
    if (this.#at + n > this.b.length) throw new YakError("INVALID_REQUEST", "consumer protocol bytes end too soon");
  }
  int16(): number {
    this.#need(2);
    const v = (this.b[this.#at] << 8 | this.b[this.#at + 1]) << 16 >> 16;
    this.#at += 2;
    return v;
  }
  int32(): number {
    this.#need(4);
    const v = (this.b[this.#at] << 24) | (this.b[this.#at + 1] << 16) | (this.b[this.#at + 2] << 8) |
      this.b[this.#at + 3];
    this.#at += 4;
    return v;
  }
  string(): string {
    const n = this.int16();
    if (n < 0) throw new YakError("INVALID_REQUEST", "a null string in consumer protocol bytes");
    this.#need(n);
    const s = decoder.decode(this.b.subarray(this.#at, this.#at + n));
    this.#at += n;
    return s;
  }
  count(max: number): number {
    const n = this.int32();
    if (n < 0 || n > max) throw new YakError("INVALID_REQUEST", `consumer protocol array of ${n} (at most ${max})`);
    return n;
  }
}

/**
 * A member's subscription as JoinGroup metadata bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeSubscription, encodeSubscription } from "./consumer_protocol.ts";
 * assert.deepEqual(decodeSubscription(encodeSubscription(["events"])), ["events"]);
 * ```
 */
export function encodeSubscription(topics: readonly string[]): Uint8Array {
  const w = new Writer();
  w.int16(0);
  w.int32(topics.length);
  for (const t of topics) w.string(t);
  w.int32(-1); // no user data
  return w.bytes();
}

/** The topics of a subscription (any version); throws INVALID_REQUEST on bad bytes. */
export function decodeSubscription(bytes: Uint8Array): string[] {
  try {
    const r = new Reader(bytes);
    r.int16(); // version: v0 fields come first in every version
    const n = r.count(MAX_PROTOCOL_TOPICS);
    const topics: string[] = [];
    for (let i = 0; i < n; i++) topics.push(r.string());
    return topics;
  } catch (err) {
    if (err instanceof YakError) throw err;
    throw new YakError("INVALID_REQUEST", "consumer protocol subscription is not valid UTF-8");
  }
}

/** topic -> partitions. */
export type Assignment = Record<string, number[]>;

/**
 * An assignment as SyncGroup bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeAssignment, encodeAssignment } from "./consumer_protocol.ts";
 * assert.deepEqual(decodeAssignment(encodeAssignment({ events: [0, 2] })), { events: [0, 2] });
 * ```
 */
export function encodeAssignment(assignment: Assignment): Uint8Array {
  const w = new Writer();
  w.int16(0);
  const topics = Object.keys(assignment).sort();
  w.int32(topics.length);
  for (const t of topics) {
    w.string(t);
    w.int32(assignment[t].length);
    for (const p of assignment[t]) w.int32(p);
  }
  w.int32(-1);
  return w.bytes();
}

/** The partitions of an assignment (any version); an empty assignment for no bytes. */
export function decodeAssignment(bytes: Uint8Array): Assignment {
  if (bytes.length === 0) return {};
  try {
    const r = new Reader(bytes);
    r.int16();
    const out: Assignment = {};
    const n = r.count(MAX_PROTOCOL_TOPICS);
    for (let i = 0; i < n; i++) {
      const topic = r.string();
      const m = r.count(MAX_PROTOCOL_PARTITIONS);
      const parts: number[] = [];
      for (let j = 0; j < m; j++) parts.push(r.int32());
      out[topic] = parts;
    }
    return out;
  } catch (err) {
    if (err instanceof YakError) throw err;
    throw new YakError("INVALID_REQUEST", "consumer protocol assignment is not valid UTF-8");
  }
}
