/**
 * The stored form of a record: one JSON line, the same bytes on every replica.
 *
 * `{"offset":42,"epoch":3,"ts":1763764800123,"key":"user-7","value":"hello","producer":"p-1f3a","seq":17}`
 *
 * Text values go in `value`; bytes that are not UTF-8 go base64 in `valueB64`,
 * so nothing is silently mangled.
 *
 * @module
 */

/** A record as a leader receives it from a producer. */
export interface RecordInput {
  key: string | null;
  value?: string;
  valueB64?: string;
}

/**
 * Builds the stored lines of a batch in one string. `producer` is already
 * checked to need no escaping; keys and values go through JSON.stringify.
 *
 * @example
 * ```ts
 * import { encodeBatch } from "./record.ts";
 * encodeBatch([{ key: null, value: "hi" }], 0, 1, 1763764800123, "p-1", 0);
 * // '{"offset":0,"epoch":1,"ts":1763764800123,"key":null,"value":"hi","producer":"p-1","seq":0}\n'
 * ```
 */
export function encodeBatch(
  records: readonly RecordInput[],
  baseOffset: number,
  epoch: number,
  ts: number,
  producer: string | null,
  baseSeq: number,
): string {
  const head = `,"epoch":${epoch},"ts":${ts},"key":`;
  let out = "";
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const key = r.key === null ? "null" : JSON.stringify(r.key);
    const value = r.valueB64 !== undefined
      ? `"valueB64":${JSON.stringify(r.valueB64)}`
      : `"value":${JSON.stringify(r.value ?? "")}`;
    const tail = producer === null ? "}\n" : `,"producer":"${producer}","seq":${baseSeq + i}}\n`;
    out += `{"offset":${baseOffset + i}${head}${key},${value}${tail}`;
  }
  return out;
}

/** The producer id and sequence of a stored line, read without a full parse when possible. */
export function producerOf(
  line: string,
): { producer: string; seq: number } | null {
  const p = line.lastIndexOf(',"producer":"');
  if (p === -1) return null;
  const q = line.indexOf('"', p + 13);
  const s = line.indexOf(',"seq":', q);
  if (q === -1 || s === -1) return null;
  const seq = Number(line.slice(s + 7, line.length - 1));
  return Number.isSafeInteger(seq) ? { producer: line.slice(p + 13, q), seq } : null;
}

const VALUE_FIELD = ',"value":"';
const PRODUCER_FIELD = '","producer":"';

/**
 * The text values of stored lines (each ending in "\n"), read without
 * parsing whole records, or null when a record holds bytes (`valueB64`) and
 * needs the full parse. Strings inside a line escape their quotes, so the
 * field markers only match the fields themselves.
 *
 * @example
 * ```ts
 * import { encodeBatch, valuesOf } from "./record.ts";
 * valuesOf(encodeBatch([{ key: null, value: "hi" }], 0, 1, 0, null, 0)); // ["hi"]
 * ```
 */
export function valuesOf(text: string): string[] | null {
  const lines = text.split("\n");
  lines.pop();
  const out = new Array<string>(lines.length);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const at = line.indexOf(VALUE_FIELD);
    if (at === -1) return null;
    const p = line.lastIndexOf(PRODUCER_FIELD);
    const raw = line.slice(at + VALUE_FIELD.length, p === -1 ? line.length - 2 : p);
    out[i] = raw.includes("\\") ? JSON.parse(`"${raw}"`) : raw;
  }
  return out;
}
