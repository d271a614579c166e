/**
 * How `yak consume` prints records: values (kafka-console-consumer's
 * layout), JSON lines, or a kcat-style `--format` template.
 *
 * @module
 */
import type { PartitionRecords } from "../client/consumer.ts";
import type { FetchedRecord } from "../protocol/messages.ts";
import { keyBytes, valueBytes } from "../log/record.ts";
import { YakError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";

/** How records are printed. */
export interface Format {
  kind: "value" | "json" | "template";
  printKey: boolean;
  printTimestamp: boolean;
  keySeparator: string;
  template: TemplatePart[];
}

/** A piece of a `--format` template: literal text, or a field. */
export type TemplatePart = string | { field: string };

const TEMPLATE_FIELDS = new Set(["t", "p", "o", "k", "v", "T", "h", "K", "S"]);

const encoder = new TextEncoder();
const NOTHING = new Uint8Array(0);

/**
 * Compiles a kcat-style template (`%k=%v\n`) into literal text and fields.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compileTemplate } from "./render_records.ts";
 * assert.deepEqual(compileTemplate("%k=%v\\n"), [{ field: "k" }, "=", { field: "v" }, "\n"]);
 * ```
 */
export function compileTemplate(template: string): TemplatePart[] {
  const out: TemplatePart[] = [];
  let text = "";
  for (let i = 0; i < template.length; i++) {
    const c = template[i];
    if (c === "\\") {
      text += escaped(template[++i]);
    } else if (c === "%") {
      const f = template[++i];
      if (f === "%") text += "%";
      else if (f !== undefined && TEMPLATE_FIELDS.has(f)) {
        if (text) out.push(text);
        text = "";
        out.push({ field: f });
      } else throw unknownField(f);
    } else text += c;
  }
  if (text) out.push(text);
  return out;
}

/** The character `\e` stands for in a template; any other escape is refused, not taken as `e` itself. */
function escaped(e: string | undefined): string {
  const known: Record<string, string> = { n: "\n", t: "\t", r: "\r", "0": "\0", "\\": "\\" };
  if (e !== undefined && known[e] !== undefined) return known[e];
  throw new YakError(
    "INVALID_ARGUMENT",
    e === undefined
      ? "--format: a lone \\ at the end (escapes: \\n \\t \\r \\0, and \\\\ for a backslash)"
      : `--format: unknown escape \\${e} (escapes: \\n \\t \\r \\0, and \\\\ for a backslash)`,
  );
}

/** A `%` not followed by a field (`f`: what follows it, if anything). */
function unknownField(f: string | undefined): YakError {
  const fields = "fields: %t %p %o %k %v %T %h %K %S, and %% for a percent";
  if (f === undefined) return new YakError("INVALID_ARGUMENT", `--format: a lone % at the end (${fields})`);
  const kcat = f === "s" ? "; kcat's %s (the value) is %v here" : "";
  return new YakError("INVALID_ARGUMENT", `--format: unknown field %${f} (${fields})${kcat}`);
}

/**
 * The first `take` records of `part`, printed as `format` says, as the bytes
 * for stdout.
 *
 * @example
 * ```ts ignore
 * import { renderRecords } from "./render_records.ts";
 * await Deno.stdout.write(renderRecords(part, part.count, format));
 * ```
 */
export function renderRecords(part: PartitionRecords, take: number, format: Format): Uint8Array {
  if (format.kind === "value" && !format.printKey && !format.printTimestamp) {
    const lines = part.valueLines(take);
    if (lines) return lines;
    const values = part.values();
    if (values) return encoder.encode((take < values.length ? values.slice(0, take) : values).join("\n") + "\n");
  }
  const records = take < part.count ? part.records.slice(0, take) : part.records;
  if (format.kind === "json") return encoder.encode(jsonLines(part, records));
  const chunks: Uint8Array[] = [];
  if (format.kind === "template") {
    for (const r of records) pushTemplated(chunks, part, r, format.template);
    return concatBytes(chunks);
  }
  // Values, each on its line, after the timestamp and key when asked (kafka-console-consumer's layout).
  for (const r of records) {
    let prefix = "";
    if (format.printTimestamp) prefix += `CreateTime:${r.ts}\t`;
    if (prefix) chunks.push(encoder.encode(prefix));
    if (format.printKey) chunks.push(keyBytes(r) ?? encoder.encode("null"), encoder.encode(format.keySeparator));
    chunks.push(valueOf(r), encoder.encode("\n"));
  }
  return concatBytes(chunks);
}

/** `--format json`: one object per record, every field. */
function jsonLines({ topic, partition }: PartitionRecords, records: FetchedRecord[]): string {
  let out = "";
  for (const r of records) {
    out += JSON.stringify({
      topic,
      partition,
      offset: r.offset,
      epoch: r.epoch,
      ts: r.ts,
      ...(r.keyB64 !== undefined ? { keyB64: r.keyB64 } : { key: r.key }),
      ...(r.headers !== undefined ? { headers: r.headers } : {}),
      ...(r.valueB64 !== undefined ? { valueB64: r.valueB64 } : { value: r.value }),
    }) + "\n";
  }
  return out;
}

/** One record through a template: its pieces, as bytes, onto `chunks`. */
function pushTemplated(
  chunks: Uint8Array[],
  { topic, partition }: PartitionRecords,
  r: FetchedRecord,
  template: TemplatePart[],
): void {
  for (const piece of template) {
    if (typeof piece === "string") {
      chunks.push(encoder.encode(piece));
      continue;
    }
    switch (piece.field) {
      case "t":
        chunks.push(encoder.encode(topic));
        break;
      case "p":
        chunks.push(encoder.encode(String(partition)));
        break;
      case "o":
        chunks.push(encoder.encode(String(r.offset)));
        break;
      case "k":
        chunks.push(keyBytes(r) ?? NOTHING);
        break;
      case "v":
        chunks.push(valueOf(r));
        break;
      case "T":
        chunks.push(encoder.encode(String(r.ts)));
        break;
      case "h":
        chunks.push(encoder.encode(headersText(r)));
        break;
      case "K":
        chunks.push(encoder.encode(String(keyBytes(r)?.length ?? -1)));
        break;
      case "S":
        chunks.push(encoder.encode(String(valueBytes(r)?.length ?? -1)));
        break;
    }
  }
}

/** A record's value as printed: its bytes (text as UTF-8, `valueB64` decoded), nothing for a null value. */
function valueOf(r: FetchedRecord): Uint8Array {
  return valueBytes(r) ?? NOTHING;
}

/** Header values as text (not-UTF-8 bytes replaced), a leading U+FEFF kept. */
const headerText = new TextDecoder("utf-8", { ignoreBOM: true });

/** Headers as kcat prints them: `k1=v1,k2=v2` (from Kafka clients, or `yak produce --header`). */
function headersText(r: FetchedRecord): string {
  return (r.headers ?? []).map((h) => `${h.key}=${headerText.decode(valueBytes(h) ?? NOTHING)}`).join(",");
}
