/**
 * The console's record browser (`GET /api/records`): one partition's records
 * read from the leader with the native `fetch` a consumer sends, from the
 * log start, an offset, a time (the first record at or after it) or the end,
 * optionally only those whose key contains a text. Every read is bounded: at
 * most {@link MAX_LIMIT} records shown, {@link MAX_SCAN_RECORDS} scanned for a
 * key search, and {@link MAX_SHOWN_CHARS} of any key or value sent to the page
 * (the size of the whole is said).
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { parseLines, type RecordHeader, shownLines, type StoredRecord } from "../log/record.ts";
import { checkTopicName } from "../log/names.ts";
import type { Connection } from "../protocol/connection.ts";

/** The most records one read shows. */
export const MAX_LIMIT = 500;
/** The most records a key search reads before it stops (and says where it stopped). */
export const MAX_SCAN_RECORDS = 20_000;
/** The most characters of a key or value sent to the page; longer ones are cut and marked. */
export const MAX_SHOWN_CHARS = 16 * 1024;
/** Bytes asked for per fetch. */
const FETCH_BYTES = 1024 * 1024;
/** The most characters of keys, values and headers one answer carries; a read stops there (and says so). */
export const MAX_ANSWER_CHARS = 4 * 1024 * 1024;
/** Headers shown per record, and characters of each header's key and value. */
const MAX_HEADERS = 20;
const MAX_HEADER_CHARS = 1024;

/** Where a read starts. */
export type BrowseFrom = "beginning" | "offset" | "time" | "end";

/** A read the page asks for, checked. */
export interface BrowseRequest {
  topic: string;
  partition: number;
  from: BrowseFrom;
  /** With `from: "offset"`. */
  offset: number;
  /** With `from: "time"`: ms since the epoch. */
  timeMs: number;
  /** Only records whose key contains this (as text; base64 keys by their base64). */
  key: string;
  limit: number;
}

/** A record as the page gets it: text, or base64 for bytes that are not UTF-8. */
export interface BrowsedRecord {
  offset: number;
  ts: number;
  key: string | null;
  keyB64?: string;
  value: string | null;
  valueB64?: string;
  headers?: RecordHeader[];
  /** Characters of the value (or of its base64) when it was cut to {@link MAX_SHOWN_CHARS}. */
  valueChars?: number;
}

/** What a read found. */
export interface BrowseResult {
  topic: string;
  partition: number;
  logStart: number;
  highWatermark: number;
  /** The offset the read started at. */
  startedAt: number;
  /** The offset after the last one read (where "more" goes on). */
  next: number;
  /** Records read (for a key search, matched or not). */
  scanned: number;
  records: BrowsedRecord[];
  /** Something to tell the reader: where a search stopped, an offset moved into the log. */
  note: string | null;
}

function bad(message: string): YakError {
  return new YakError("INVALID_ARGUMENT", message);
}

function wholeNumber(url: URL, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER, min = 0): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) > max || Number(raw) < min) {
    throw bad(`${name} must be a whole number from ${min} to ${max}`);
  }
  return Number(raw);
}

/**
 * A time as ms since the epoch, or an ISO 8601 date (a date, with a time and
 * a zone if any): not whatever else Date.parse makes something of ("-5" and
 * "x 5" were read as May 2001).
 */
function timeOf(raw: string | null): number {
  const iso = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/;
  const ms = raw === null ? NaN : /^\d+$/.test(raw) ? Number(raw) : iso.test(raw) ? Date.parse(raw) : NaN;
  if (!Number.isSafeInteger(ms) || ms < 0) throw bad("time must be ms since the epoch or an ISO 8601 date");
  return ms;
}

/**
 * The read a `/api/records` query asks for, checked: `topic`, `partition`,
 * `from` (beginning, offset, time or end), `offset`, `time`, `key`, `limit`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { browseRequestOf } from "./record_browser.ts";
 * const q = browseRequestOf(new URL("http://h/api/records?topic=t&partition=1&from=end&limit=20"));
 * assert.deepEqual([q.topic, q.partition, q.from, q.limit], ["t", 1, "end", 20]);
 * assert.throws(() => browseRequestOf(new URL("http://h/api/records?topic=t&from=soon")), /from must be/);
 * ```
 */
export function browseRequestOf(url: URL): BrowseRequest {
  const topic = checkTopicName(url.searchParams.get("topic") ?? "");
  const from = (url.searchParams.get("from") ?? "beginning") as BrowseFrom;
  if (!["beginning", "offset", "time", "end"].includes(from)) {
    throw bad("from must be beginning, offset, time or end");
  }
  const key = url.searchParams.get("key") ?? "";
  if (key.length > 1024) throw bad("key is at most 1,024 characters");
  return {
    topic,
    partition: wholeNumber(url, "partition", 0, 100_000),
    from,
    offset: from === "offset" ? wholeNumber(url, "offset", 0) : 0,
    timeMs: from === "time" ? timeOf(url.searchParams.get("time")) : 0,
    key,
    limit: wholeNumber(url, "limit", 50, MAX_LIMIT, 1),
  };
}

/** The partition's log start, high watermark and where the read starts (with a note when it moved). */
async function startOf(conn: Connection, q: BrowseRequest) {
  const res = await conn.request({
    type: "list_offsets",
    topic: q.topic,
    ...(q.from === "time" ? { timestamp: q.timeMs, partition: q.partition } : {}),
  });
  const hw = (res.hw as Record<string, number>)[q.partition];
  if (hw === undefined) {
    const n = Object.keys(res.hw as object).length;
    throw new YakError("UNKNOWN_PARTITION", `topic '${q.topic}' has partitions 0 to ${n - 1}`);
  }
  const logStart = (res.start as Record<string, number>)[q.partition] ?? 0;
  let at = logStart;
  let note: string | null = null;
  if (q.from === "time") at = (res.at as Record<string, number>)[q.partition] ?? hw;
  else if (q.from === "end") at = Math.max(logStart, hw - (q.key ? MAX_SCAN_RECORDS : q.limit));
  else if (q.from === "offset") {
    at = Math.min(hw, Math.max(logStart, q.offset));
    if (at !== q.offset) note = `offset ${q.offset} is outside the log (${logStart} to ${hw}); read from ${at}`;
  }
  return { logStart, hw, at, note };
}

/** A stored record as the page gets it, with long keys and values cut. */
function shown(r: StoredRecord): BrowsedRecord {
  const out: BrowsedRecord = { offset: r.offset, ts: r.ts, key: cut(r.key), value: cut(r.value ?? null) };
  if (r.keyB64 !== undefined) out.keyB64 = cut(r.keyB64)!;
  if (r.valueB64 !== undefined) out.valueB64 = cut(r.valueB64)!;
  const whole = r.valueB64 ?? r.value;
  if (typeof whole === "string" && whole.length > MAX_SHOWN_CHARS) out.valueChars = whole.length;
  if (r.headers && r.headers.length > 0) {
    out.headers = r.headers.slice(0, MAX_HEADERS).map((h) => ({
      key: cut(h.key, MAX_HEADER_CHARS)!,
      value: cut(h.value ?? h.valueB64 ?? null, MAX_HEADER_CHARS),
    }));
  }
  return out;
}

function cut(text: string | null | undefined, max = MAX_SHOWN_CHARS): string | null {
  return text !== null && text !== undefined && text.length > max ? text.slice(0, max) : text ?? null;
}

/** About how many characters a shown record adds to the answer. */
function charsOf(r: BrowsedRecord): number {
  const headers = (r.headers ?? []).reduce((n, h) => n + h.key.length + (h.value?.length ?? 0), 0);
  return 64 + (r.keyB64 ?? r.key ?? "").length + (r.valueB64 ?? r.value ?? "").length + headers;
}

/** One fetch from `at`: the records there, and where the next read goes (an offset deleted meanwhile moves on). */
async function fetchFrom(conn: Connection, q: BrowseRequest, at: number) {
  const res = await conn.request({
    type: "fetch",
    topic: q.topic,
    offsets: { [q.partition]: at },
    maxBytes: FETCH_BYTES,
    maxWaitMs: 0,
    // What a consumer reads by default: no record of an open or aborted transaction.
    isolation: "read_committed",
  });
  const damaged = Object.values((res.damaged ?? {}) as Record<string, string>);
  if (damaged.length > 0) throw new YakError("CORRUPT_LOG", `${damaged[0]} (the broker is healing it; read again)`);
  const range = ((res.outOfRange ?? {}) as Record<string, [number, number]>)[q.partition];
  if (range) return { records: [], next: range[0] > at ? range[0] : at, moved: range[0] > at };
  const part = (res.parts as { p: number; base: number; count: number; len: number }[])[0];
  if (!part || part.count === 0) return { records: [], next: at, moved: false };
  const bytes = (res.attachment as Uint8Array | undefined) ?? new Uint8Array(0);
  const aborted = ((res.aborted ?? {}) as Record<string, [string, number, number][]>)[`${q.topic}/${q.partition}`] ??
    [];
  // Markers and aborted transactions' records are read past, never shown (as `yak consume` does).
  const text = shownLines(
    new TextDecoder("utf-8", { ignoreBOM: true }).decode(bytes.subarray(0, part.len)),
    aborted.map(([producer, first, last]) => ({ producer, first, last })),
  );
  return { records: parseLines(text), next: part.base + part.count, moved: false };
}

/** Whether a record's key contains `key` (text keys as text, others by their base64). */
function keyMatches(r: StoredRecord, key: string): boolean {
  const k = r.keyB64 ?? r.key;
  return k !== null && k !== undefined && k.includes(key);
}

/**
 * Reads the records `q` asks for from the leader on `conn`: up to `limit`
 * (from the end: the last `limit`), only those whose key contains `q.key`
 * when given, scanning at most {@link MAX_SCAN_RECORDS}.
 */
export async function browse(conn: Connection, q: BrowseRequest): Promise<BrowseResult> {
  const { logStart, hw, at, note } = await startOf(conn, q);
  const found: BrowsedRecord[] = [];
  let chars = 0;
  let next = at;
  let scanned = 0;
  // From the end: the newest (matches), so read to the end and keep the last ones.
  const keepLast = q.from === "end";
  const full = () => !keepLast && (found.length >= q.limit || chars >= MAX_ANSWER_CHARS);
  while (next < hw && scanned < MAX_SCAN_RECORDS && !full()) {
    const before = next;
    const got = await fetchFrom(conn, q, next);
    let stopped = false;
    for (const r of got.records) {
      if (r.offset >= hw || scanned >= MAX_SCAN_RECORDS || full()) {
        stopped = true;
        break;
      }
      scanned++;
      next = r.offset + 1;
      if (q.key && !keyMatches(r, q.key)) continue;
      const record = shown(r);
      found.push(record);
      chars += charsOf(record);
      if (keepLast && found.length > q.limit) chars -= charsOf(found.shift()!);
    }
    // Every line the fetch read was looked at: what follows the last one shown (markers, aborted records) too.
    if (got.moved || !stopped) next = Math.max(next, got.next);
    if (next === before) break; // nothing more to read below the high watermark
  }
  const records = keepLast ? lastWithin(found, MAX_ANSWER_CHARS) : found;
  return {
    topic: q.topic,
    partition: q.partition,
    logStart,
    highWatermark: hw,
    startedAt: at,
    next,
    scanned,
    records,
    note:
      [note, searchNote(q, { logStart, at, next, hw, scanned, records: records.length })].filter(Boolean).join("; ") ||
      null,
  };
}

/** The newest records whose characters fit in `max` (at least one). */
function lastWithin(records: BrowsedRecord[], max: number): BrowsedRecord[] {
  let chars = 0;
  let from = records.length;
  while (from > 0 && (from === records.length || chars + charsOf(records[from - 1]) <= max)) {
    chars += charsOf(records[--from]);
  }
  return records.slice(from);
}

/** Where a key search or a time lookup stopped or found nothing, for the reader. */
function searchNote(
  q: BrowseRequest,
  r: { logStart: number; at: number; next: number; hw: number; scanned: number; records: number },
) {
  const n = r.scanned.toLocaleString("en-US");
  if (q.from === "time" && r.at >= r.hw) return `no record at or after ${new Date(q.timeMs).toISOString()}`;
  if (!q.key && q.from !== "end" && r.next < r.hw && r.records < q.limit) {
    return `${r.records} records make an answer of ${MAX_ANSWER_CHARS / 1024 / 1024} MiB; more from ${r.next}`;
  }
  if (!q.key) return null;
  if (r.next < r.hw && r.scanned >= MAX_SCAN_RECORDS) {
    return `searched ${n} records (offsets ${r.at} to ${r.next - 1}); more from ${r.next}`;
  }
  if (q.from === "end" && r.at > r.logStart) return `searched the last ${n} records`;
  return null;
}
