/**
 * The replication contract, both sides, in one place: the `replicate` fetch
 * (a follower's log ends -> the leader's stored bytes after them) and the
 * `epoch_end` query (a follower's last epochs -> where the leader's end).
 *
 * The leader decodes requests and encodes replies (src/native/replication.ts
 * calls it); the follower encodes requests and decodes replies
 * (leader_endpoint.ts). Each side checks what it decodes: a follower refuses a
 * malformed reply whole, before it truncates or appends anything, since it
 * would otherwise write what the leader's counts claim into its log.
 *
 * On the wire a `replicate` reply is a small JSON frame and an attachment:
 * `{"epoch":E,"parts":[{"k":KEY,"base":B,"count":N,"len":L,"epochs":[[E,START]],
 * "rolls":[OFFSET]}],"hw":{KEY:HW},"truncate":{KEY:END},"logStart":{KEY:START}}`,
 * then the parts' stored bytes, `len` each, in the parts' order.
 *
 * @module
 */
import { assert, YakError } from "../errors.ts";
import type { EpochEntry } from "../log/epoch_cache.ts";
import { int, offsetMap, optInt, RawReply, type Reply, type Request } from "../protocol/messages.ts";
import type { BrokerOptions } from "./context.ts";

/** A follower's fetch (`replicate`): what it holds, and how long it may wait. */
export interface FollowerFetch {
  followerId: number;
  epoch: number;
  /** Partition key -> the follower's log end. */
  offsets: Map<string, number>;
  /** Partition key -> the high watermark the follower knows. */
  knownHw: Map<string, number>;
  /**
   * Partition key -> the follower's log start, where it is above 0: the
   * leader's low watermark (a DeleteRecords answers once every in-sync
   * replica's start has moved). Absent from followers older than it.
   */
  logStarts?: Map<string, number>;
  maxBytes: number;
  maxWaitMs: number;
  /** The follower's last append failed (a full disk), it is copying a cut range again, or a log is fenced: not in sync. */
  failing: boolean;
  /** Partitions whose log is fenced at the follower: nothing is sent for them until it restarts. */
  fenced?: ReadonlySet<string>;
}

/** One partition's stored bytes for a follower, as the leader read them (slices, not copies). */
export interface FollowerPart {
  key: string;
  base: number;
  count: number;
  chunks: Uint8Array[];
  byteLength: number;
  epochs: EpochEntry[];
  /** Where the leader's segments start inside this part: the follower rolls there too. */
  rolls: number[];
}

/** The leader's answer to a follower's fetch, before it is encoded. */
export interface FollowerFetchResult {
  epoch: number;
  parts: FollowerPart[];
  /** Partition key -> the leader's high watermark. */
  hw: Record<string, number>;
  /** Partition key -> where a follower ahead of the leader must cut its log. */
  truncate: Record<string, number>;
  /** Partition key -> the leader's log start: a follower deletes (or skips) what lies below it. */
  logStart: Record<string, number>;
}

/** One partition's chunk as the follower receives it: its own slice of the reply's attachment. */
export interface ReplicaPart {
  key: string;
  base: number;
  count: number;
  bytes: Uint8Array;
  epochs: EpochEntry[];
  /** Where the leader's segments start inside this part; null from a leader that does not say. */
  rolls: number[] | null;
}

/** A `replicate` reply, decoded and checked by the follower. */
export interface ReplicaFetchReply {
  epoch: number;
  parts: ReplicaPart[];
  /** Partition key -> the leader's high watermark. */
  hw: Map<string, number>;
  /** Partition key -> where this follower, ahead of the leader, must cut its log. */
  truncate: Map<string, number>;
  /** Partition key -> the leader's log start (only where it is above 0). */
  logStart: Map<string, number>;
}

/** Where a leader's epoch ends in a partition (for a follower's truncation). */
export interface EpochEnd {
  epoch: number;
  endOffset: number;
}

/** A follower's `epoch_end` query: its last epoch per partition, under the leader's epoch. */
export interface EpochEndQuery {
  epoch: number;
  lastEpochs: Map<string, number>;
}

/** The limits a leader decodes replication requests with. */
export type ReplicaLimits = Pick<
  BrokerOptions,
  "maxPartitions" | "replicaFetchMaxBytes" | "maxFetchBytes" | "maxFetchWaitMs"
>;

/** Partition keys a replication request may name: every partition of every topic, and `__cluster/0`. */
function maxKeys(limits: ReplicaLimits): number {
  return limits.maxPartitions * 100 + 1;
}

// ---------------------------------------------------------------- the leader's side

/**
 * Decodes a follower's `replicate` request, or throws INVALID_REQUEST naming the field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFetchRequest } from "./replica_protocol.ts";
 * const limits = { maxPartitions: 1000, replicaFetchMaxBytes: 1 << 20, maxFetchBytes: 1 << 24, maxFetchWaitMs: 30_000 };
 * const req = { id: 1, type: "replicate", epoch: 4, brokerId: 2, offsets: { "t/0": 10 }, hw: { "t/0": 8 } };
 * const fetch = decodeFetchRequest(req, limits);
 * assert.equal(fetch.offsets.get("t/0"), 10);
 * assert.equal(fetch.maxBytes, limits.replicaFetchMaxBytes);
 * assert.throws(() => decodeFetchRequest({ ...req, epoch: "4" }, limits), { code: "INVALID_REQUEST" });
 * ```
 */
export function decodeFetchRequest(req: Request, limits: ReplicaLimits): FollowerFetch {
  return {
    epoch: int(req, "epoch"),
    followerId: int(req, "brokerId", 0, 1_000_000),
    offsets: offsetMap(req, "offsets", maxKeys(limits)),
    knownHw: offsetMap(req, "hw", maxKeys(limits)),
    logStarts: req.logStart === undefined ? undefined : offsetMap(req, "logStart", maxKeys(limits)),
    maxBytes: optInt(req, "maxBytes", limits.replicaFetchMaxBytes, 1, limits.maxFetchBytes),
    maxWaitMs: optInt(req, "maxWaitMs", 0, 0, limits.maxFetchWaitMs),
    failing: req.failing === true,
    fenced: fencedKeys(req.fenced, limits),
  };
}

/** A follower's fenced partitions (`"fenced":["t/0"]`), as many as there can be partitions. */
function fencedKeys(value: unknown, limits: ReplicaLimits): Set<string> | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length > maxKeys(limits) || value.some((k) => typeof k !== "string")) {
    throw new YakError("INVALID_REQUEST", "'fenced' must be a list of partition keys");
  }
  return new Set(value as string[]);
}

/**
 * Encodes the leader's answer: the parts' numbers as JSON, their stored bytes
 * as the attachment, as they are (never escaped, never parsed; the first
 * version's JSON.stringify of the records took 28% of the leader's CPU).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFetchReply } from "./replica_protocol.ts";
 * const lines = new TextEncoder().encode("line 10\nline 11\n");
 * const part = { key: "t/0", base: 10, count: 2, chunks: [lines], byteLength: lines.length, epochs: [], rolls: [] };
 * const reply = encodeFetchReply({ epoch: 4, parts: [part], hw: { "t/0": 12 }, truncate: {}, logStart: {} });
 * assert.match(reply.fields, /"parts":\[\{"k":"t\/0","base":10,"count":2,"len":16/);
 * assert.equal(reply.attachmentBytes, 16);
 * ```
 */
export function encodeFetchReply(res: FollowerFetchResult): RawReply {
  const data: Uint8Array[] = [];
  const parts = res.parts.map((part) => {
    let len = 0;
    for (const chunk of part.chunks) {
      data.push(chunk);
      len += chunk.length;
    }
    // The follower trusts `len` to cut the attachment; a part always holds a record.
    assert(len === part.byteLength && part.count > 0, `replica part ${part.key} claims ${part.byteLength} bytes`);
    return { k: part.key, base: part.base, count: part.count, len, epochs: part.epochs, rolls: part.rolls };
  });
  const head = JSON.stringify({ epoch: res.epoch, parts, hw: res.hw, truncate: res.truncate, logStart: res.logStart });
  return new RawReply(head.slice(1, -1), data);
}

/**
 * Decodes a follower's `epoch_end` query, or throws INVALID_REQUEST naming the field.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeEpochEndQuery } from "./replica_protocol.ts";
 * const limits = { maxPartitions: 1000, replicaFetchMaxBytes: 1 << 20, maxFetchBytes: 1 << 24, maxFetchWaitMs: 30_000 };
 * const query = decodeEpochEndQuery({ id: 1, type: "epoch_end", epoch: 4, epochs: { "t/0": 3 } }, limits);
 * assert.deepEqual(query, { epoch: 4, lastEpochs: new Map([["t/0", 3]]) });
 * ```
 */
export function decodeEpochEndQuery(req: Request, limits: ReplicaLimits): EpochEndQuery {
  return { epoch: int(req, "epoch"), lastEpochs: offsetMap(req, "epochs", maxKeys(limits)) };
}

/**
 * Encodes where the leader's epochs end, per partition asked.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeEpochEnds } from "./replica_protocol.ts";
 * assert.deepEqual(encodeEpochEnds({ "t/0": { epoch: 3, endOffset: 120 } }), {
 *   ends: { "t/0": { epoch: 3, endOffset: 120 } },
 * });
 * ```
 */
export function encodeEpochEnds(ends: Record<string, EpochEnd>): Reply {
  return { ends };
}

// ---------------------------------------------------------------- the follower's side

/**
 * The frame of a follower's `replicate` request (the connection adds its id).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeFetchRequest } from "./replica_protocol.ts";
 * const frame = encodeFetchRequest({
 *   followerId: 2,
 *   epoch: 4,
 *   offsets: new Map([["t/0", 10]]),
 *   knownHw: new Map([["t/0", 8]]),
 *   maxBytes: 1 << 20,
 *   maxWaitMs: 200,
 *   failing: false,
 * });
 * assert.deepEqual(frame.offsets, { "t/0": 10 });
 * assert.equal("failing" in frame, false);
 * ```
 */
export function encodeFetchRequest(f: FollowerFetch): Record<string, unknown> {
  return {
    type: "replicate",
    brokerId: f.followerId,
    epoch: f.epoch,
    offsets: Object.fromEntries(f.offsets),
    hw: Object.fromEntries(f.knownHw),
    ...(f.logStarts !== undefined && f.logStarts.size > 0 ? { logStart: Object.fromEntries(f.logStarts) } : {}),
    maxBytes: f.maxBytes,
    maxWaitMs: f.maxWaitMs,
    // Only when there is something to say.
    ...(f.failing ? { failing: true } : {}),
    ...(f.fenced !== undefined && f.fenced.size > 0 ? { fenced: [...f.fenced] } : {}),
  };
}

/**
 * The frame of a follower's `epoch_end` query.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeEpochEndQuery } from "./replica_protocol.ts";
 * const frame = encodeEpochEndQuery({ epoch: 4, lastEpochs: new Map([["t/0", 3]]) });
 * assert.deepEqual(frame, { type: "epoch_end", epoch: 4, epochs: { "t/0": 3 } });
 * ```
 */
export function encodeEpochEndQuery(q: EpochEndQuery): Record<string, unknown> {
  return { type: "epoch_end", epoch: q.epoch, epochs: Object.fromEntries(q.lastEpochs) };
}

/** Refuses a malformed reply: the follower logs it and fetches again, having written nothing. */
function malformed(what: string, problem: string): YakError {
  return new YakError(
    "CORRUPT_MESSAGE",
    `the leader's ${what} reply is malformed: ${problem}; check that every broker runs the same yak version`,
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function atLeast(v: unknown, name: string, min = 0): number {
  if (!Number.isSafeInteger(v) || (v as number) < min) {
    throw malformed("replicate", `'${name}' must be an integer of at least ${min}, not ${JSON.stringify(v)}`);
  }
  return v as number;
}

/** `{key: offset}` with non-negative integer offsets, as a Map (a key such as `__proto__` stays a key). */
function offsetsOf(v: unknown, name: string, what: string, optional = false): Map<string, number> {
  const out = new Map<string, number>();
  if (optional && v === undefined) return out;
  if (!isObject(v)) throw malformed(what, `'${name}' must be an object of partition -> offset`);
  for (const key of Object.keys(v)) {
    const off = v[key];
    if (!Number.isSafeInteger(off) || (off as number) < 0) {
      throw malformed(what, `'${name}.${key}' must be a non-negative integer, not ${JSON.stringify(off)}`);
    }
    out.set(key, off as number);
  }
  return out;
}

/** Offsets inside a part (`[base, base + count)`), in order: its epochs' starts or its segment starts. */
function inPart(offset: unknown, base: number, n: number, name: string): number {
  const at = atLeast(offset, name);
  if (at < base || at >= base + n) {
    throw malformed("replicate", `'${name}' is ${at}, outside the part's offsets ${base} to ${base + n - 1}`);
  }
  return at;
}

function epochsOf(v: unknown, base: number, n: number, where: string): EpochEntry[] {
  if (!Array.isArray(v)) throw malformed("replicate", `'${where}.epochs' must be a list of [epoch, start]`);
  return v.map((e, i): EpochEntry => {
    if (!Array.isArray(e) || e.length !== 2) {
      throw malformed("replicate", `'${where}.epochs[${i}]' must be [epoch, start]`);
    }
    return [atLeast(e[0], `${where}.epochs[${i}][0]`), inPart(e[1], base, n, `${where}.epochs[${i}][1]`)];
  });
}

function rollsOf(v: unknown, base: number, n: number, where: string): number[] | null {
  if (v === undefined) return null; // a leader from before segment boundaries travelled
  if (!Array.isArray(v)) throw malformed("replicate", `'${where}.rolls' must be a list of offsets`);
  return v.map((r, i) => inPart(r, base, n, `${where}.rolls[${i}]`));
}

/**
 * Cuts the attachment into the parts the frame names, checking each part's
 * numbers: `len` bytes each, in order, covering the attachment exactly.
 */
function partsOf(v: unknown, attachment: Uint8Array): ReplicaPart[] {
  if (!Array.isArray(v)) throw malformed("replicate", "'parts' must be a list");
  const seen = new Set<string>();
  let at = 0;
  const parts = v.map((p, i): ReplicaPart => {
    const where = `parts[${i}]`;
    if (!isObject(p)) throw malformed("replicate", `'${where}' must be an object`);
    const key = p.k;
    if (typeof key !== "string" || key.length === 0 || seen.has(key)) {
      throw malformed("replicate", `'${where}.k' must name a partition once, not ${JSON.stringify(key)}`);
    }
    seen.add(key);
    const base = atLeast(p.base, `${where}.base`);
    const n = atLeast(p.count, `${where}.count`, 1);
    // Every record is a line, so at least its newline.
    const len = atLeast(p.len, `${where}.len`, n);
    if (at + len > attachment.length) {
      throw malformed("replicate", `'${where}' ends at byte ${at + len} of an attachment of ${attachment.length}`);
    }
    const bytes = attachment.subarray(at, at + len);
    at += len;
    return {
      key,
      base,
      count: n,
      bytes,
      epochs: epochsOf(p.epochs, base, n, where),
      rolls: rollsOf(p.rolls, base, n, where),
    };
  });
  if (at !== attachment.length) {
    throw malformed("replicate", `its parts hold ${at} bytes, its attachment ${attachment.length}`);
  }
  return parts;
}

/**
 * Decodes and checks the leader's answer to a fetch under `epoch`, or throws
 * CORRUPT_MESSAGE naming the first bad field. Nothing is written before this
 * returns, so a malformed reply leaves the follower's log as it was.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeFetchReply } from "./replica_protocol.ts";
 * const frame = {
 *   epoch: 4,
 *   parts: [{ k: "t/0", base: 10, count: 2, len: 16, epochs: [[4, 11]], rolls: [] }],
 *   hw: { "t/0": 12 },
 *   truncate: {},
 *   logStart: {},
 *   attachment: new TextEncoder().encode("line 10\nline 11\n"),
 * };
 * const reply = decodeFetchReply(frame, 4);
 * assert.equal(new TextDecoder().decode(reply.parts[0].bytes), "line 10\nline 11\n");
 * // A part claiming more bytes than came is refused, before anything is written.
 * const short = { ...frame, parts: [{ ...frame.parts[0], len: 17 }] };
 * assert.throws(() => decodeFetchReply(short, 4), { code: "CORRUPT_MESSAGE" });
 * ```
 */
export function decodeFetchReply(res: Record<string, unknown>, epoch: number): ReplicaFetchReply {
  if (res.epoch !== epoch) {
    throw malformed("replicate", `it is for epoch ${JSON.stringify(res.epoch)}, the fetch was for ${epoch}`);
  }
  const attachment = res.attachment ?? new Uint8Array(0);
  if (!(attachment instanceof Uint8Array)) throw malformed("replicate", "its attachment is not bytes");
  return {
    epoch,
    parts: partsOf(res.parts, attachment),
    hw: offsetsOf(res.hw, "hw", "replicate"),
    truncate: offsetsOf(res.truncate, "truncate", "replicate"),
    // Absent from leaders older than retention.
    logStart: offsetsOf(res.logStart, "logStart", "replicate", true),
  };
}

/**
 * Decodes and checks the leader's `epoch_end` answer, or throws CORRUPT_MESSAGE.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeEpochEnds } from "./replica_protocol.ts";
 * const ends = decodeEpochEnds({ ends: { "t/0": { epoch: 3, endOffset: 120 } } });
 * assert.deepEqual(ends.get("t/0"), { epoch: 3, endOffset: 120 });
 * assert.throws(() => decodeEpochEnds({ ends: { "t/0": { epoch: 3 } } }), { code: "CORRUPT_MESSAGE" });
 * ```
 */
export function decodeEpochEnds(res: Record<string, unknown>): Map<string, EpochEnd> {
  const ends = res.ends;
  if (!isObject(ends)) throw malformed("epoch_end", "'ends' must be an object of partition -> {epoch, endOffset}");
  const out = new Map<string, EpochEnd>();
  for (const key of Object.keys(ends)) {
    const end = ends[key];
    // -1: the leader has no epoch at or below the one asked (the follower keeps nothing).
    if (
      !isObject(end) || !Number.isSafeInteger(end.epoch) || (end.epoch as number) < -1 ||
      !Number.isSafeInteger(end.endOffset) || (end.endOffset as number) < 0
    ) {
      throw malformed("epoch_end", `'ends.${key}' must be {epoch: -1 or more, endOffset: 0 or more}`);
    }
    out.set(key, { epoch: end.epoch as number, endOffset: end.endOffset as number });
  }
  return out;
}
