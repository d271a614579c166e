/**
 * The rules a produced record must meet, in one place for both protocols:
 * its size (key, value and headers, each header counted with 2 bytes of
 * framing, as Kafka counts a record's encoded size) against the topic's
 * max.message.bytes, at most `maxRecordHeaders` headers on one record, and
 * at most `maxRequestHeaders` headers in one request. The codecs apply them
 * while they decode, so work stops at the first record that breaks one: a
 * Kafka record with four million empty headers (8 KB of gzip) once held the
 * leader for 7 s and took it to 909 MB, because each codec checked records
 * its own way and the Kafka one counted no headers at all.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import type { RecordInput } from "../log/record.ts";
import { maxMessageBytesOf, timestampLimitsOf } from "./topic_config.ts";

/** What each header adds to a record's size besides its key and value: the two lengths that frame them. */
export const HEADER_OVERHEAD_BYTES = 2;

/**
 * The rules for the records of one produce request to one topic; it keeps
 * the request's header budget, so make one per request.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RecordRules } from "./record_rules.ts";
 * const rules = new RecordRules("t", {}, 1048576);
 * rules.checkHeaders(0, 3); // fine
 * rules.checkSize(0, 100); // fine
 * assert.throws(() => rules.checkSize(1, 2_000_000), { code: "MESSAGE_TOO_LARGE" });
 * ```
 */
export class RecordRules {
  readonly topic: string;
  /** The largest record in bytes, and whether the topic's own max.message.bytes set it. */
  readonly limit: number;
  readonly fromTopic: boolean;
  /** Added to a size error: how to raise the limit (the CLI's command), and data for the client. */
  readonly #hint: string;
  readonly #data: Record<string, unknown>;
  #headersLeft: number = DEFAULTS.maxRequestHeaders;
  /** How far a record's timestamp may be from the broker's clock (the topic's message.timestamp limits), or null. */
  readonly #timestamps: { beforeMs: number; afterMs: number } | null;

  constructor(
    topic: string,
    configs: Record<string, string> | undefined,
    brokerLimit: number,
    hint = "",
    data: Record<string, unknown> = {},
  ) {
    this.topic = topic;
    const { limit, fromTopic } = maxMessageBytesOf(configs, brokerLimit);
    this.limit = limit;
    this.fromTopic = fromTopic;
    this.#hint = hint;
    this.#data = data;
    this.#timestamps = timestampLimitsOf(configs);
  }

  /** Record `i` announces `count` headers: refused past either cap, before any is decoded. */
  checkHeaders(i: number, count: number): void {
    const max = DEFAULTS.maxRecordHeaders;
    if (count > max) {
      throw new YakError("MESSAGE_TOO_LARGE", `record ${i} has ${count} headers; a record may carry at most ${max}`, {
        record: i,
        headers: count,
      });
    }
    this.#headersLeft -= count;
    if (this.#headersLeft < 0) {
      throw new YakError(
        "MESSAGE_TOO_LARGE",
        `the records up to record ${i} carry more than ${DEFAULTS.maxRequestHeaders} headers in one request; ` +
          `send fewer at a time`,
        { record: i },
      );
    }
  }

  /**
   * Every record of a batch against the topic's max.message.bytes, by
   * {@link recordSize}: MESSAGE_TOO_LARGE naming the first one over it. Most
   * records are passed on their lengths alone (a UTF-16 unit is at most 3
   * UTF-8 bytes, a base64 character less than one byte).
   */
  validateBatch(records: readonly RecordInput[]): void {
    const third = this.limit / 3;
    const limits = this.#timestamps;
    const nowMs = limits === null ? 0 : Date.now();
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      if (charsOf(r) > third) this.checkSize(i, recordSize(r), `record ${i} of the batch`);
      if (limits !== null && r.ts !== undefined && r.ts >= 0) this.#checkTimestamp(i, r.ts, nowMs, limits);
    }
  }

  /**
   * Keyless values given as `count` lines (see writeLines) against the
   * topic's max.message.bytes, as {@link validateBatch} checks records: no
   * value is longer than the lines less their newlines, so they are looked
   * at one by one only when that is over the limit.
   */
  validateLines(lines: Uint8Array, count: number): void {
    if (lines.length - count <= this.limit) return;
    let at = 0;
    for (let i = 0; i < count && at < lines.length; i++) {
      let nl = lines.indexOf(0x0a, at);
      if (nl === -1) nl = lines.length;
      this.checkSize(i, nl - at, `record ${i} of the batch`);
      at = nl + 1;
    }
  }

  /**
   * A producer's timestamp (CreateTime) against the topic's
   * message.timestamp.before.max.ms and after.max.ms (each defaulting to
   * message.timestamp.difference.max.ms): INVALID_TIMESTAMP past either, as
   * Kafka refuses the batch.
   */
  #checkTimestamp(i: number, ts: number, nowMs: number, limits: { beforeMs: number; afterMs: number }): void {
    const behind = nowMs - ts;
    const [over, limit, name] = behind > limits.beforeMs
      ? [`${behind} ms behind`, limits.beforeMs, "before"]
      : -behind > limits.afterMs
      ? [`${-behind} ms ahead of`, limits.afterMs, "after"]
      : [null, 0, ""];
    if (over === null) return;
    throw new YakError(
      "INVALID_TIMESTAMP",
      `record ${i} of the batch has timestamp ${ts}, ${over} the broker's clock; topic '${this.topic}' takes ` +
        `${limit} ms at most (message.timestamp.${name}.max.ms, else message.timestamp.difference.max.ms)`,
      { record: i, timestamp: ts, ...this.#data },
    );
  }

  /** Record `i` is `bytes` big (key, value, headers with their framing): refused past the topic's limit. */
  checkSize(i: number, bytes: number, what = `record ${i}`): void {
    if (bytes <= this.limit) return;
    throw new YakError(
      "MESSAGE_TOO_LARGE",
      `${what} (${bytes} bytes) is larger than topic '${this.topic}' takes (${this.limit} bytes, ` +
        `${this.fromTopic ? "its max.message.bytes" : "the broker's --max-message-bytes"})${this.#hint}`,
      { record: i, bytes, limit: this.limit, ...this.#data },
    );
  }
}

const utf8 = new TextEncoder();

/** Bytes of a text (UTF-8) or base64 field. */
function fieldBytes(text: string | null | undefined, b64: string | undefined): number {
  if (b64 !== undefined) return Math.floor(b64.length * 3 / 4) - (b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0);
  return text ? utf8.encode(text).length : 0;
}

/**
 * A record's size as max.message.bytes counts it, for both protocols: its
 * key and value bytes, and each header's key and value with
 * {@link HEADER_OVERHEAD_BYTES} of framing (Kafka counts a record's encoded size).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordSize } from "./record_rules.ts";
 * assert.equal(recordSize({ key: "k", value: "ü", headers: [{ key: "h", value: null }] }), 1 + 2 + 1 + 2);
 * assert.equal(recordSize({ key: null, valueB64: "AP8=" }), 2);
 * assert.equal(recordSize({ key: null, rawValue: new Uint8Array([0xff, 0]) }), 2);
 * ```
 */
export function recordSize(r: RecordInput): number {
  let n = fieldBytes(r.key, r.keyB64) + (r.rawValue?.length ?? fieldBytes(r.value, r.valueB64));
  for (const h of r.headers ?? []) {
    n += fieldBytes(h.key, undefined) + fieldBytes(h.value, h.valueB64) + HEADER_OVERHEAD_BYTES;
  }
  return n;
}

/** An upper bound of a record's size over 3, from string lengths alone. */
function charsOf(r: RecordInput): number {
  let n = (r.keyB64 ?? r.key ?? "").length + (r.rawValue ?? r.valueB64 ?? r.value ?? "").length;
  const headers = r.headers;
  if (headers !== undefined) {
    for (const h of headers) n += h.key.length + (h.valueB64 ?? h.value ?? "").length + HEADER_OVERHEAD_BYTES;
  }
  return n;
}
