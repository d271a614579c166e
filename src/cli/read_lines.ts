/**
 * Reads `yak produce`'s input in large chunks and hands it over as lines:
 * text where the bytes are UTF-8, else the bytes themselves.
 *
 * @module
 */
import { strictUtf8 } from "../utf8.ts";

const NEWLINE = 10;
const CR = 13;
const READ_BYTES = 1024 * 1024;

/** A line as read: text where the bytes are UTF-8, else the bytes; `ascii` when bytes = characters. */
export interface Line {
  value: string | Uint8Array;
  ascii: boolean;
}

/**
 * Reads a stream in large chunks and hands over its lines: text where the
 * bytes are UTF-8, else the raw bytes (sent as base64, never mangled); a CR
 * before a line break is dropped. Stops early when `stop` resolves. Returns
 * the size of an unfinished last line left when it stopped early (a line
 * without its line break at the end of the input is a line).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLines } from "./read_lines.ts";
 * const path = await Deno.makeTempFile(); // `yak produce` reads Deno.stdin
 * await Deno.writeTextFile(path, "first\r\nsecond\nlast");
 * const file = await Deno.open(path);
 * const values: (string | Uint8Array)[] = [];
 * await readLines(file, async (lines) => {
 *   values.push(...lines.map((l) => l.value));
 * });
 * file.close();
 * await Deno.remove(path);
 * assert.deepEqual(values, ["first", "second", "last"]); // the CR before a line break is dropped
 * ```
 */
export function readLines(
  source: { read(p: Uint8Array): Promise<number | null> },
  onLines: (lines: Line[]) => Promise<void>,
  stop?: Promise<void>,
  beforeRead?: () => void,
): Promise<number> {
  return readLineBlocks(source, (block) => onLines(splitLines(block)), stop, beforeRead, false);
}

/**
 * {@link readLines} without splitting or decoding: hands over blocks of
 * whole lines as bytes, each block one or more lines joined by newlines
 * (without the last one's; CRs kept), for `Producer.addLines`. With `keep`,
 * each block is the caller's to keep (never a view of the read buffer).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLineBlocks } from "./read_lines.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "first\nsecond\nlast");
 * const file = await Deno.open(path);
 * const blocks: string[] = [];
 * await readLineBlocks(file, async (b) => void blocks.push(new TextDecoder().decode(b)), undefined, undefined, true);
 * file.close();
 * await Deno.remove(path);
 * assert.deepEqual(blocks, ["first\nsecond", "last"]);
 * ```
 */
export async function readLineBlocks(
  source: { read(p: Uint8Array): Promise<number | null> },
  onBlock: (block: Uint8Array) => Promise<void>,
  stop: Promise<void> | undefined,
  beforeRead: (() => void) | undefined,
  keep: boolean,
): Promise<number> {
  const buf = new Uint8Array(READ_BYTES);
  // The unfinished line, as the pieces it came in: joined once when its newline comes. Joining at every read
  // copied a long line over and over (a 16 MB line through a pipe took 15 s, not 1 s).
  let carry: Uint8Array[] = [];
  let carryBytes = 0;
  const join = (tail: Uint8Array): Uint8Array => {
    if (carryBytes === 0) return keep ? tail.slice() : tail;
    const out = new Uint8Array(carryBytes + tail.length);
    let at = 0;
    for (const part of carry) {
      out.set(part, at);
      at += part.length;
    }
    out.set(tail, at);
    return out;
  };
  const stopped = stop?.then(() => "stop" as const);
  while (true) {
    beforeRead?.();
    const got = await (stopped ? Promise.race([source.read(buf), stopped]) : source.read(buf));
    if (got === "stop") return carryBytes;
    const n = got;
    if (n === null) break;
    const piece = buf.subarray(0, n);
    const last = piece.lastIndexOf(NEWLINE);
    if (last === -1) {
      carry.push(piece.slice());
      carryBytes += n;
      continue;
    }
    const lines = join(piece.subarray(0, last));
    const rest = piece.slice(last + 1);
    carry = rest.length > 0 ? [rest] : [];
    carryBytes = rest.length;
    await onBlock(lines);
  }
  if (carryBytes > 0) await onBlock(join(new Uint8Array(0)));
  return 0;
}

function splitLines(bytes: Uint8Array): Line[] {
  try {
    // One decode per chunk, not per line: the common case is all text.
    const text = strictUtf8.decode(bytes);
    const ascii = text.length === bytes.length;
    return text.split("\n").map((l) => ({
      value: l.charCodeAt(l.length - 1) === CR ? l.slice(0, -1) : l,
      ascii,
    }));
  } catch {
    const out: Line[] = [];
    let start = 0;
    while (start <= bytes.length) {
      let nl = bytes.indexOf(NEWLINE, start);
      if (nl === -1) nl = bytes.length;
      const end = nl > start && bytes[nl - 1] === CR ? nl - 1 : nl;
      const line = bytes.subarray(start, end);
      try {
        out.push({ value: strictUtf8.decode(line), ascii: false });
      } catch {
        out.push({ value: line.slice(), ascii: false });
      }
      start = nl + 1;
    }
    return out;
  }
}
