/**
 * Newline-delimited JSON frames over a byte stream: a bounded reader and a
 * coalescing writer.
 *
 * @module
 */
import { YakError } from "./errors.ts";

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
 * import { FrameReader } from "./frame.ts";
 * const file = await Deno.open("frames.jsonl");
 * const reader = new FrameReader(file, 1 << 20);
 * for (let batch = await reader.next(); batch; batch = await reader.next()) {
 *   for (const line of batch) console.log(JSON.parse(line));
 * }
 * ```
 */
export class FrameReader {
  readonly #source: ByteSource;
  readonly #maxFrameBytes: number;
  readonly #buf = new Uint8Array(READ_CHUNK_BYTES);
  // Bytes of an unfinished line, kept as parts to avoid copying on every read.
  #partial: Uint8Array[] = [];
  #partialBytes = 0;

  constructor(source: ByteSource, maxFrameBytes: number) {
    this.#source = source;
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Bytes received but not yet returned as a frame. */
  get pendingBytes(): number {
    return this.#partialBytes;
  }

  /**
   * The next complete lines (at least one), or null at the end of the stream.
   * Throws FRAME_TOO_LARGE when a line exceeds the limit: the stream can no
   * longer be trusted and should be closed.
   */
  async next(): Promise<string[] | null> {
    while (true) {
      const n = await this.#source.read(this.#buf);
      if (n === null) return null;
      const chunk = this.#buf.subarray(0, n);
      const lines: string[] = [];
      let start = 0;
      let nl = chunk.indexOf(NEWLINE);
      while (nl !== -1) {
        if (this.#partialBytes + (nl - start) > this.#maxFrameBytes) {
          throw this.#tooLarge();
        }
        lines.push(this.#take(chunk.subarray(start, nl)));
        start = nl + 1;
        nl = chunk.indexOf(NEWLINE, start);
      }
      if (start < n) {
        this.#partial.push(chunk.slice(start, n));
        this.#partialBytes += n - start;
        if (this.#partialBytes > this.#maxFrameBytes) throw this.#tooLarge();
      }
      if (lines.length > 0) return lines;
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

/**
 * Writes every byte, looping over short writes.
 *
 * @example
 * ```ts
 * import { writeAll } from "./frame.ts";
 * await writeAll(Deno.stdout, new TextEncoder().encode("hi\n"));
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
 * Queues frames and writes whatever has queued in one write, so concurrent
 * responses never interleave and small frames share a syscall.
 *
 * @example
 * ```ts
 * import { FrameWriter } from "./frame.ts";
 * const writer = new FrameWriter(Deno.stdout);
 * await writer.send('{"id":1,"ok":true}');
 * ```
 */
export class FrameWriter {
  readonly #sink: ByteSink;
  #queue: string[] = [];
  #waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #flushing = false;
  #failed: unknown = null;

  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  /** Queues one frame (without its newline); resolves once it is written. */
  send(frame: string): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    this.#queue.push(frame);
    const done = new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
    });
    if (!this.#flushing) this.#flush();
    return done;
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    while (this.#queue.length > 0) {
      const text = this.#queue.join("\n") + "\n";
      const waiters = this.#waiters;
      this.#queue = [];
      this.#waiters = [];
      try {
        await writeAll(this.#sink, encoder.encode(text));
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
