/**
 * Request and response shapes of the native protocol, and the checks that
 * turn untrusted JSON into them.
 *
 * Every request is `{"id": <int>, "type": <string>, ...}`; a response echoes
 * the id with `"ok": true` and its fields, or `"ok": false` with an error
 * `code` and `message`. A request with `"noReply": true` gets no response.
 *
 * @module
 */
import type { StoredRecord } from "../log/record.ts";
import { YakError } from "../errors.ts";

/** A decoded request frame: its id, its type, and the type's own fields. */
export interface Request {
  id: number;
  type: string;
  noReply?: boolean;
  /**
   * The raw bytes that followed the frame, when it announced them
   * (`{"attach":N,`): a produce's values as lines (see native/produce.ts).
   */
  attachment?: Uint8Array;
  [field: string]: unknown;
}

/** A response body before it is framed (the id and `ok` are added on send). */
export type Reply = Record<string, unknown> | RawReply;

/**
 * A response body that is already JSON (fields without the outer braces), so
 * hot paths can splice stored record lines into a frame without re-parsing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RawReply } from "./messages.ts";
 * import { encodeReply } from "./server.ts";
 * const reply = new RawReply('"records":[{"offset":0}]');
 * assert.equal(encodeReply(7, reply), '{"id":7,"ok":true,"records":[{"offset":0}]}');
 * ```
 */
export class RawReply {
  /**
   * `fields` are JSON object members without braces; `attachment` are raw
   * bytes sent right after the frame (announced in it), never re-encoded.
   */
  constructor(readonly fields: string, readonly attachment?: Uint8Array[]) {}

  /** Bytes in the attachment. */
  get attachmentBytes(): number {
    return this.attachment?.reduce((sum, part) => sum + part.length, 0) ?? 0;
  }
}

/** The leader lease as the zookeeper writes it and pushes it to brokers. */
export interface Lease {
  epoch: number;
  leaderId: number | null;
  host: string;
  port: number;
  isr: number[];
  /** Wall-clock time of writing, for people; never compared. */
  issuedAt: number;
  ttlMs: number;
  /**
   * Grows with every lease the zookeeper writes (kept in the file): brokers
   * adopt a lease only if (epoch, version) is newer, never by timestamps.
   */
  version: number;
}

/**
 * The newest lease with an in-sync set that a broker followed, as it tells
 * the zookeeper when it registers (kept in its data directory, `lease.json`,
 * across restarts). A zookeeper whose own lease file was lost, garbled or
 * older than the cluster elects from the newest of these, not from whoever
 * holds the most.
 */
export interface LeaseView {
  epoch: number;
  version: number;
  isr: number[];
}

/**
 * `raw` as a lease view (the fields checked: whole epoch and version, an
 * in-sync set of 1 to 1,000 broker ids), else null.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { leaseViewOf } from "./messages.ts";
 * assert.deepEqual(leaseViewOf({ epoch: 3, version: 9, isr: [1, 2] }), { epoch: 3, version: 9, isr: [1, 2] });
 * assert.equal(leaseViewOf({ epoch: 3, version: 9, isr: [] }), null);
 * assert.equal(leaseViewOf("garbage"), null);
 * ```
 */
export function leaseViewOf(raw: unknown): LeaseView | null {
  if (typeof raw !== "object" || raw === null) return null;
  const { epoch, version, isr } = raw as Record<string, unknown>;
  const whole = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;
  if (!whole(epoch) || !whole(version) || !Array.isArray(isr) || isr.length === 0 || isr.length > 1000) return null;
  if (!isr.every((id) => whole(id) && id <= 1_000_000)) return null;
  return { epoch, version, isr: [...isr] };
}

/** A broker as the zookeeper sees it. */
export interface BrokerInfo {
  id: number;
  host: string;
  port: number;
  /** The broker's Kafka-protocol port, when it has one. */
  kafkaPort?: number;
  /**
   * The host Kafka clients reach it by (its --advertised-host, else its
   * --host), with `kafkaPort`. Absent from brokers older than this field:
   * then `host`.
   */
  kafkaHost?: string;
  alive: boolean;
  lastSeenMsAgo: number;
  logEndTotal: number;
  /** The broker's process id, as it registered (for `yak kill` and `yak status` on its machine). */
  pid?: number;
}

/** A record as clients see it after a fetch. */
export type FetchedRecord = StoredRecord;

/**
 * A record as a producer sends it: text `v` or base64 bytes `b`, optional key
 * `k`, optional headers `h` as `[key, value]` pairs in order (a key may
 * repeat, as in Kafka; a null value is Kafka's null header value).
 */
export interface OutgoingRecord {
  k?: string | null;
  v?: string;
  b?: string;
  h?: [string, string | null][];
}

/**
 * Parses one frame into a {@link Request}, or throws INVALID_REQUEST.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseRequest } from "./messages.ts";
 * assert.equal(parseRequest('{"id":1,"type":"metadata"}').type, "metadata");
 * assert.throws(() => parseRequest("{"), { code: "INVALID_REQUEST" });
 * ```
 */
export function parseRequest(line: string): Request {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new YakError("INVALID_REQUEST", "frame is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new YakError("INVALID_REQUEST", "frame must be a JSON object");
  }
  const req = value as Request;
  if (!Number.isSafeInteger(req.id) || req.id < 0) {
    throw new YakError(
      "INVALID_REQUEST",
      "request id must be a non-negative integer",
    );
  }
  if (typeof req.type !== "string" || req.type.length > 64) {
    throw new YakError(
      "INVALID_REQUEST",
      "request type must be a short string",
    );
  }
  return req;
}

/** Reads a required string field, or throws INVALID_REQUEST naming it. */
export function str(
  req: Record<string, unknown>,
  name: string,
  maxChars = 1024,
): string {
  const v = req[name];
  if (typeof v !== "string" || v.length > maxChars) {
    throw new YakError(
      "INVALID_REQUEST",
      `'${name}' must be a string of at most ${maxChars} chars`,
    );
  }
  return v;
}

/** Reads an optional string field. */
export function optStr(
  req: Record<string, unknown>,
  name: string,
  maxChars = 1024,
): string | undefined {
  return req[name] === undefined || req[name] === null ? undefined : str(req, name, maxChars);
}

/** Reads a required integer field within [min, max], or throws INVALID_REQUEST. */
export function int(
  req: Record<string, unknown>,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const v = req[name];
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
    throw new YakError(
      "INVALID_REQUEST",
      `'${name}' must be an integer from ${min} to ${max}`,
    );
  }
  return v as number;
}

/** Reads an optional integer field, with a default. */
export function optInt(
  req: Record<string, unknown>,
  name: string,
  fallback: number,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  return req[name] === undefined || req[name] === null ? fallback : int(req, name, min, max);
}

/**
 * Reads an object whose keys are partition numbers (or other names) and whose
 * values are non-negative integers, e.g. `{"0": 12, "1": 40}`.
 */
export function offsetMap(
  req: Record<string, unknown>,
  name: string,
  maxEntries: number,
): Map<string, number> {
  const v = req[name];
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new YakError(
      "INVALID_REQUEST",
      `'${name}' must be an object of offsets`,
    );
  }
  const out = new Map<string, number>();
  for (const [k, off] of Object.entries(v)) {
    if (out.size >= maxEntries) {
      throw new YakError(
        "INVALID_REQUEST",
        `'${name}' has more than ${maxEntries} entries`,
      );
    }
    if (!Number.isSafeInteger(off) || (off as number) < 0) {
      throw new YakError(
        "INVALID_REQUEST",
        `'${name}.${k}' must be a non-negative integer`,
      );
    }
    out.set(k, off as number);
  }
  return out;
}
