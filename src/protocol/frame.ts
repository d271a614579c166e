/**
 * Newline-delimited JSON frames over a byte stream: a bounded reader and a
 * coalescing writer.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import { YakError } from "../errors.ts";

const NEWLINE = 10;
const READ_CHUNK_BYTES = 256 * 1024;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Anything frames can be read from (a `Deno.Conn`, a file, stdin). */
export interface ByteSource {
  read(p: Uint8Array): Promise<number | null>;
}

/** Anything frames can be written to. */
export interface ByteSink {
  write(p: Uint8Array): Promise<number>;
}

/**
 * Splits a byte stream into lines, refusing any line longer than
 * `maxFrameBytes` so a peer cannot make us buffer without limit.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameReader } from "./frame.ts";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await Deno.writeTextFile(path, '{"id":1}\n{"id":2}\n');
 * const file = await Deno.open(path);
 * const reader = new FrameReader(file, 1 << 20);
 * const ids: number[] = [];
 * for (let batch = await reader.next(); batch; batch = await reader.next()) {
 *   for (const line of batch) ids.push(JSON.parse(line).id);
 * }
 * file.close();
 * await Deno.remove(path);
 * assert.deepEqual(ids, [1, 2]);
 * ```
 */
export class FrameReader {
  readonly #source: ByteSource;
  readonly #maxFrameBytes: number;
  readonly #maxAttachmentBytes: number;
  readonly #buf: Uint8Array;
  // Bytes of an unfinished line, kept as parts to avoid copying on every read.
  #partial: Uint8Array[] = [];
  #partialBytes = 0;
  #attaching: { line: string; data: Uint8Array; got: number } | null = null;

  /**
   * `maxAttachmentBytes` > 0 lets frames that start with `{"attach":N,` carry
   * N raw bytes after their newline (replies only: stored records, sent as
   * they are). 0 reads every line as a plain frame.
   */
  constructor(source: ByteSource, maxFrameBytes: number, maxAttachmentBytes = 0, readChunkBytes = READ_CHUNK_BYTES) {
    this.#buf = new Uint8Array(readChunkBytes);
    this.#source = source;
    this.#maxFrameBytes = maxFrameBytes;
    this.#maxAttachmentBytes = maxAttachmentBytes;
  }

  /**
   * The next complete lines (at least one), or null at the end of the stream.
   * Throws FRAME_TOO_LARGE when a line exceeds the limit: the stream can no
   * longer be trusted and should be closed.
   */
  async next(): Promise<string[] | null> {
    const frames = await this.nextFrames();
    return frames === null ? null : frames.map((f) => f.line);
  }

  /** Like {@link next}, with each frame's attachment when it has one. */
  async nextFrames(): Promise<Frame[] | null> {
    const out: Frame[] = [];
    while (true) {
      const pending = this.#attaching;
      if (pending !== null && out.length === 0 && pending.data.length - pending.got >= this.#buf.length) {
        // The rest of a large attachment is read into it directly: no copy through the read buffer, and a read
        // can take more than the buffer's size at once. It never reads past the attachment's end.
        const n = await this.#source.read(pending.data.subarray(pending.got));
        if (n === null) return null;
        pending.got += n;
        if (pending.got === pending.data.length) {
          this.#attaching = null;
          return [{ line: pending.line, attachment: pending.data }];
        }
        continue;
      }
      const n = await this.#source.read(this.#buf);
      if (n === null) return null;
      const chunk = this.#buf.subarray(0, n);
      let start = 0;
      while (start < n) {
        const att = this.#attaching;
        if (att) {
          const take = Math.min(att.data.length - att.got, n - start);
          att.data.set(chunk.subarray(start, start + take), att.got);
          att.got += take;
          start += take;
          if (att.got === att.data.length) {
            out.push({ line: att.line, attachment: att.data });
            this.#attaching = null;
          }
          continue;
        }
        const nl = chunk.indexOf(NEWLINE, start);
        if (nl === -1) {
          this.#partial.push(chunk.slice(start, n));
          this.#partialBytes += n - start;
          if (this.#partialBytes > this.#maxFrameBytes) throw this.#tooLarge();
          break;
        }
        if (this.#partialBytes + (nl - start) > this.#maxFrameBytes) throw this.#tooLarge();
        const line = this.#take(chunk.subarray(start, nl));
        start = nl + 1;
        const size = this.#maxAttachmentBytes > 0 ? attachmentSize(line) : -1;
        if (size > this.#maxAttachmentBytes) throw this.#tooLarge();
        if (size > 0) this.#attaching = { line, data: new Uint8Array(size), got: 0 };
        else out.push(size === 0 ? { line, attachment: new Uint8Array(0) } : { line });
      }
      if (out.length > 0) return out;
    }
  }

  #take(tail: Uint8Array): string {
    if (this.#partialBytes === 0) return decoder.decode(tail);
    const whole = new Uint8Array(this.#partialBytes + tail.length);
    let at = 0;
    for (const part of this.#partial) {
      whole.set(part, at);
      at += part.length;
    }
    whole.set(tail, at);
    this.#partial = [];
    this.#partialBytes = 0;
    return decoder.decode(whole);
  }

  #tooLarge(): YakError {
    return new YakError(
      "FRAME_TOO_LARGE",
      `frame exceeds ${this.#maxFrameBytes} bytes; closing the connection`,
    );
  }
}

/** A frame as read: its JSON line, and the raw bytes that followed it, if it announced any. */
export interface Frame {
  line: string;
  attachment?: Uint8Array;
}

const ATTACH_PREFIX = '{"attach":';

/** The attachment size a frame announces in its first field, or -1. */
function attachmentSize(line: string): number {
  if (!line.startsWith(ATTACH_PREFIX)) return -1;
  const end = line.indexOf(",", ATTACH_PREFIX.length);
  const n = Number(line.slice(ATTACH_PREFIX.length, end));
  return end > 0 && Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

const ATTACH_PREFIX_BYTES = encoder.encode(ATTACH_PREFIX);

/** Whether the frame in `b` starts with an attachment announcement, `{"attach":`. */
export function announcesAttachment(b: Uint8Array, at = 0, end: number = b.length): boolean {
  if (end - at < ATTACH_PREFIX_BYTES.length) return false;
  for (let i = 0; i < ATTACH_PREFIX_BYTES.length; i++) if (b[at + i] !== ATTACH_PREFIX_BYTES[i]) return false;
  return true;
}

/**
 * The size a frame `buf[at, nl)`, not yet decoded, announces for its
 * attachment (its first field, `{"attach":N,`): 0 for a frame without one,
 * -1 when N is not a whole number of at most 15 digits (the server reads
 * requests this way, before it knows where the next frame starts).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { announcedAttachmentBytes } from "./frame.ts";
 * const frame = new TextEncoder().encode('{"attach":12,"id":1}');
 * assert.equal(announcedAttachmentBytes(frame, 0, frame.length), 12);
 * ```
 */
export function announcedAttachmentBytes(buf: Uint8Array, at: number, nl: number): number {
  if (!announcesAttachment(buf, at, nl)) return 0;
  const from = at + ATTACH_PREFIX_BYTES.length;
  let n = 0;
  let i = from;
  for (; i < nl && i < from + 15 && buf[i] >= 0x30 && buf[i] <= 0x39; i++) n = n * 10 + buf[i] - 0x30;
  return i > from && buf[i] === 0x2c ? n : -1;
}

/**
 * Puts the attachment announcement in front of a JSON object frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { withAttachment } from "./frame.ts";
 * assert.equal(withAttachment('{"id":1,"ok":true}', 12), '{"attach":12,"id":1,"ok":true}');
 * ```
 */
export function withAttachment(frame: string, bytes: number): string {
  return `${ATTACH_PREFIX}${bytes},${frame.slice(1)}`;
}

/**
 * Writes every byte, looping over short writes.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { writeAll } from "./frame.ts";
 * const written: number[] = [];
 * const sink = { // takes at most 2 bytes a write, as a full socket buffer may
 *   write: (p: Uint8Array) => (written.push(...p.subarray(0, 2)), Promise.resolve(Math.min(p.length, 2))),
 * };
 * await writeAll(sink, new TextEncoder().encode("hello\n"));
 * assert.equal(new TextDecoder().decode(new Uint8Array(written)), "hello\n");
 * ```
 */
export async function writeAll(
  sink: ByteSink,
  bytes: Uint8Array,
): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    at += await sink.write(at === 0 ? bytes : bytes.subarray(at));
  }
}

/**
 * The most bytes {@link writeParts} copies into one write. A part larger
 * than this goes in a write of its own, uncopied (a fetch reply's stored
 * bytes); smaller ones are copied together.
 */
export const COALESCE_BYTES = 64 * 1024;

/**
 * Writes `parts` in order in as few writes as {@link COALESCE_BYTES} allows:
 * text in a row is encoded once, and small parts share a buffer. Each write
 * to a loopback socket wakes the reader: a small reply written as its frame
 * and then each attachment part woke the peer two or three times, each
 * time for part of a frame (at 10,000 records/s the leader spent a quarter
 * of its CPU in socket writes).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { COALESCE_BYTES, writeParts } from "./frame.ts";
 * const writes: number[] = [];
 * const sink = { write: (p: Uint8Array) => (writes.push(p.length), Promise.resolve(p.length)) };
 * const big = new Uint8Array(COALESCE_BYTES + 1);
 * await writeParts(sink, ["{}\n", new Uint8Array(10), "{}\n", big, new Uint8Array(5)]);
 * assert.deepEqual(writes, [16, COALESCE_BYTES + 1, 5]);
 * ```
 */
export async function writeParts(sink: ByteSink, parts: readonly (string | Uint8Array)[]): Promise<void> {
  let run: Uint8Array[] = [];
  let runBytes = 0;
  let text = "";
  const take = async (bytes: Uint8Array) => {
    if (runBytes + bytes.length > COALESCE_BYTES && run.length > 0) {
      await writeAll(sink, concatBytes(run, runBytes));
      run = [];
      runBytes = 0;
    }
    if (bytes.length > COALESCE_BYTES) await writeAll(sink, bytes);
    else {
      run.push(bytes);
      runBytes += bytes.length;
    }
  };
  for (const part of parts) {
    if (typeof part === "string") {
      text += part;
      continue;
    }
    if (text !== "") await take(encoder.encode(text));
    text = "";
    await take(part);
  }
  if (text !== "") await take(encoder.encode(text));
  if (run.length > 0) await writeAll(sink, concatBytes(run, runBytes));
}

/**
 * Queues frames and writes whatever has queued in one write, so concurrent
 * responses never interleave and small frames share a syscall.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { FrameWriter } from "./frame.ts";
 * const writes: string[] = [];
 * const sink = { write: (p: Uint8Array) => (writes.push(new TextDecoder().decode(p)), Promise.resolve(p.length)) };
 * const writer = new FrameWriter(sink);
 * await Promise.all([writer.send('{"id":1}'), writer.send('{"id":2}'), writer.send('{"id":3}')]);
 * assert.deepEqual(writes, ['{"id":1}\n', '{"id":2}\n{"id":3}\n']); // queued behind the first write: one write
 * ```
 */
export class FrameWriter {
  readonly #sink: ByteSink;
  #queue: { text: string; attachment?: Uint8Array[] }[] = [];
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #flushing = false;
  #failed: unknown = null;

  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  /**
   * Queues one frame (without its newline) and, optionally, raw bytes to
   * follow it (the frame must announce them: {@link withAttachment});
   * resolves once written.
   */
  send(frame: string, attachment?: Uint8Array[]): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    this.#queue.push({ text: frame, attachment });
    const done = new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
    if (!this.#flushing) this.#flush();
    return done;
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    while (this.#queue.length > 0) {
      const queue = this.#queue;
      const waiters = this.#waiters;
      this.#queue = [];
      this.#waiters = [];
      try {
        const parts: (string | Uint8Array)[] = [];
        for (const item of queue) {
          parts.push(item.text + "\n");
          if (item.attachment) parts.push(...item.attachment);
        }
        await writeParts(this.#sink, parts);
        for (const w of waiters) w.resolve();
      } catch (err) {
        this.#failed = err;
        for (const w of waiters) w.reject(err);
        for (const w of this.#waiters) w.reject(err);
        this.#waiters = [];
        this.#queue = [];
      }
    }
    this.#flushing = false;
  }
}
