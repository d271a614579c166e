/**
 * `yak produce`: publishes stdin lines (or --message values) to a topic.
 *
 * @module
 */
import { Producer } from "../client/producer.ts";
import { checkTopicName } from "../log/names.ts";
import { toYakError, YakError } from "../errors.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  helpRequested,
  integer,
  parse,
  required,
  retryNotice,
  text,
} from "./args.ts";

const USAGE = `
yak produce --topic T [--message TEXT ...] [--key K | --key-separator SEP [--ignore-missing-separator]]
            [--header KEY=VALUE ...] [--partition N] [--acks all|1|0|-1] [--batch-records 2000] [--linger-ms 5]
            [--progress] [--quiet]
            [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

Reads stdin line by line (one record per line; a CR before the line break is
dropped) unless --message is given. --key-separator splits each line into
key and value at the first SEP; a line without SEP is an error (as Kafka's
parse.key), unless --ignore-missing-separator sends it with no key.
--header KEY=VALUE (repeatable, as kcat -H) adds a Kafka record header to
every record, split at the first '='; Kafka consumers see the headers, and
'yak consume --format json' or '%h' print them.
Retransmits until the leader acknowledges; retries never duplicate.
Records without a key start on a random partition and move on batch by batch.
A topic that does not exist is created by the first record stored in it.

Prints a summary on stderr: records and bytes (keys, values, headers) acknowledged,
and which were not. --progress prints progress every second (it is on by
itself when stderr is a terminal, stdin is not, and the run takes a while).
Ctrl-C or SIGTERM: stops reading, waits up to 5 s for what was read to be
acknowledged, prints the summary, and exits 130 (a second Ctrl-C exits at once).
Exits 0 only if every record was acknowledged.
`;

const NEWLINE = 10;
const CR = 13;
const READ_BYTES = 1024 * 1024;
/** How long an interrupted producer waits for what it already read to be acknowledged. */
const INTERRUPT_FLUSH_MS = 5000;
/** Progress starts by itself on a terminal after this long. */
const AUTO_PROGRESS_AFTER_MS = 2000;
const INTERRUPTED_EXIT = 130;

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const utf8 = new TextEncoder();

/** A line as read: text where the bytes are UTF-8, else the bytes; `ascii` when bytes = characters. */
interface Line {
  value: string | Uint8Array;
  ascii: boolean;
}

/** Runs `yak produce`. */
// deno-lint-ignore yak/max-function-lines
export async function produceCommand(args: string[]): Promise<number> {
  const { values } = parse("produce", args, {
    ...CLUSTER_FLAGS,
    topic: { type: "string" },
    message: { type: "string", multiple: true },
    key: { type: "string" },
    "key-separator": { type: "string" },
    "ignore-missing-separator": { type: "boolean" },
    header: { type: "string", multiple: true },
    partition: { type: "string" },
    acks: { type: "string" },
    "batch-records": { type: "string" },
    "linger-ms": { type: "string" },
    progress: { type: "boolean" },
    quiet: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const topic = checkTopicName(required(values, "topic", "produce"));
  const acksText = text(values, "acks") ?? "all";
  if (!["all", "1", "0", "-1"].includes(acksText)) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--acks must be all, 1 or 0, not '${acksText}' (-1 is Kafka's all)`,
    );
  }
  const acks = acksText === "all" || acksText === "-1" ? "all" : (Number(acksText) as 0 | 1);
  const fixedKey = text(values, "key") ?? null;
  const separator = text(values, "key-separator");
  if (fixedKey !== null && separator !== undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "use --key or --key-separator, not both",
    );
  }
  if (separator === "") {
    throw new YakError("INVALID_ARGUMENT", "--key-separator must not be empty");
  }
  if (values["ignore-missing-separator"] && separator === undefined) {
    throw new YakError("INVALID_ARGUMENT", "--ignore-missing-separator goes with --key-separator");
  }
  const keepKeyless = values["ignore-missing-separator"] === true;
  const headers = headersOf((values.header as string[] | undefined) ?? []);
  const quiet = values.quiet === true;
  const messages = (values.message as string[] | undefined) ?? [];
  const unit = messages.length > 0 ? "message" : "line";

  // Signals first: a Ctrl-C while connecting must not lose the summary either.
  let interrupted: Deno.Signal | null = null;
  let onInterrupt = () => {};
  const interruptedPromise = new Promise<void>((resolve) => (onInterrupt = resolve));
  let producer: Producer | null = null;
  const started = performance.now();
  let read = 0;
  let unfinishedBytes = 0;
  // The line the input stopped at, when an error ended the reading: what came after it was never read.
  let stoppedAt: number | null = null;
  const summary = (): string =>
    summaryOf(producer, topic, acks, read, unit, unfinishedBytes, started, interrupted !== null, stoppedAt);
  const onSignal = (signal: Deno.Signal) => () => {
    if (interrupted !== null) {
      // A second Ctrl-C: no more waiting.
      progress.stop();
      console.error(`yak produce: interrupted again; ${summary()}`);
      Deno.exit(INTERRUPTED_EXIT);
    }
    interrupted = signal;
    onInterrupt();
  };
  const listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => [sig, onSignal(sig)] as const);
  for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  const progress = new Progress(
    values.progress === true,
    !quiet && Deno.stderr.isTerminal() && !Deno.stdin.isTerminal(),
    () => producer,
    () => read,
    started,
  );

  let failure: YakError | null = null;
  try {
    producer = await Promise.race([
      Producer.open({
        bootstrap: bootstrapOf(values),
        topic,
        acks,
        partition: integer(values, "partition", undefined, 0, 100_000),
        batchRecords: integer(values, "batch-records", undefined, 1, 10_000),
        lingerMs: integer(values, "linger-ms", undefined, 0, 60_000),
        connectTimeoutMs: connectTimeoutOf(values),
        onRetry: retryNotice("produce", quiet),
      }),
      interruptedPromise.then(() => null),
    ]);
  } catch (err) {
    progress.stop();
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
    throw err;
  }
  try {
    if (producer === null) {
      console.error(`yak produce: interrupted while connecting; ${summary()}`);
      return INTERRUPTED_EXIT;
    }
    const p = producer;
    progress.start();
    let lastLine = 0;
    const add = (line: Line) => {
      const number = read + 1; // this line's number, for errors
      lastLine = number;
      let { value } = line;
      let key = fixedKey;
      if (separator !== undefined) {
        const split = splitKey(value, separator);
        if (split === null) {
          if (!keepKeyless) {
            throw new YakError(
              "INVALID_ARGUMENT",
              `${unit} ${number} has no key separator '${separator}' (--key-separator); ` +
                `use --ignore-missing-separator to send such lines without a key`,
            );
          }
        } else {
          key = split.key;
          value = split.value;
        }
      }
      read++;
      // ASCII: the byte count is the character count, nothing to measure.
      const bytes = line.ascii
        ? (typeof value === "string" ? value.length : value.length) + (key?.length ?? 0)
        : undefined;
      p.add(key, value, bytes, headers);
    };
    try {
      try {
        if (messages.length > 0) {
          for (const m of messages) {
            if (interrupted) break;
            add({ value: m, ascii: false });
          }
        } else {
          // Typing at a terminal: a prompt says when the next line is wanted, as Kafka's console producer does.
          const prompt = Deno.stdin.isTerminal() && !quiet ? () => Deno.stderr.writeSync(utf8.encode(">")) : undefined;
          unfinishedBytes = await readLines(
            Deno.stdin,
            async (lines) => {
              for (const line of lines) add(line);
              await Promise.race([p.waitForRoom(), interruptedPromise]);
            },
            interruptedPromise,
            prompt,
          );
        }
      } catch (err) {
        // Bad input (a line without a separator, a record too large for any frame): what came before it
        // is still sent, as Kafka's console producer does.
        failure = toYakError(err);
        stoppedAt = lastLine;
      }
      const flushed = p.flush();
      flushed.catch(() => {});
      await Promise.race([flushed, interruptedPromise]);
      if (interrupted) await p.flush(INTERRUPT_FLUSH_MS);
      else await flushed;
    } catch (err) {
      failure ??= toYakError(err);
    }
    progress.stop();
    if (failure && !(interrupted && failure.code === "TIMEOUT")) {
      // Answers to what was already sent still count: wait for them (briefly).
      await p.settle(INTERRUPT_FLUSH_MS);
      console.error(`yak produce: ${describeFailure(failure, unit, p.ackedRecords > 0)}`);
    }
    const allAcked = p.ackedRecords === read && unfinishedBytes === 0;
    if (interrupted) {
      console.error(`yak produce: interrupted (${interrupted}); ${summary()}`);
      return INTERRUPTED_EXIT;
    }
    if (!quiet || !allAcked || failure) console.error(`yak produce: ${summary()}`);
    return allAcked && !failure ? 0 : 1;
  } finally {
    progress.stop();
    for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
    await producer?.close();
  }
}

/** `--header KEY=VALUE` flags as `[key, value]` pairs, split at the first '='; undefined for none. */
function headersOf(flags: readonly string[]): [string, string][] | undefined {
  if (flags.length === 0) return undefined;
  return flags.map((flag) => {
    const at = flag.indexOf("=");
    if (at <= 0) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `--header '${flag}' must be KEY=VALUE with a non-empty KEY (see 'yak produce --help')`,
      );
    }
    return [flag.slice(0, at), flag.slice(at + 1)];
  });
}

/**
 * The error, with a record's index turned into its line (or message)
 * number. A topic the broker said did not exist yet was created by records
 * stored after the refusal when some were acknowledged: then the limit is
 * raised with --alter, not --create.
 */
function describeFailure(err: YakError, unit: string, someStored: boolean): string {
  let message = err.message;
  if (err.data?.topicExists === false && someStored) {
    message = message.replace(
      /'yak topics --create (\S+) --config max\.message\.bytes=N' \(the topic does not exist yet\)/,
      "'yak topics --alter $1 --config max.message.bytes=N'",
    );
  }
  const index = err.data?.index;
  if (typeof index !== "number") return message;
  return message.replace(/^record \d+/, `${unit} ${index + 1}`);
}

function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

/** "3-5, 9" from sorted numbers; at most a few ranges. */
function ranges(numbers: number[], limit = 5): string {
  const out: string[] = [];
  for (let i = 0; i < numbers.length && out.length < limit; i++) {
    let j = i;
    while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) j++;
    out.push(i === j ? `${numbers[i]}` : `${numbers[i]}-${numbers[j]}`);
    i = j;
  }
  const shown = out.join(", ");
  return out.length === limit && numbers.length > 0 ? `${shown}, ...` : shown;
}

/**
 * The summary line: what was acknowledged (records, and bytes of keys and
 * values), what was not and which lines those were, the time, and a rate
 * only for runs of a second or more.
 */
function summaryOf(
  p: Producer | null,
  topic: string,
  acks: "all" | 0 | 1,
  read: number,
  unit: string,
  unfinishedBytes: number,
  started: number,
  interrupted: boolean,
  stoppedAt: number | null,
): string {
  const seconds = (performance.now() - started) / 1000;
  const acked = p?.ackedRecords ?? 0;
  let out = `${plural(acked, "record")} (${plural(p?.ackedBytes ?? 0, "byte")}) ` +
    `${acks === 0 ? "sent" : "acknowledged"} to '${topic}'`;
  const missing = p ? p.unacknowledged() : [];
  // Lines read but never handed to the producer (it failed first) are not acknowledged either.
  for (let i = p?.added ?? 0; i < read; i++) missing.push(i);
  // Interrupted, both counts are said, even a zero: the user asked what became of the input.
  if (missing.length > 0 || interrupted) {
    out += `, ${missing.length} not ${acks === 0 ? "sent" : "acknowledged"}`;
    if (missing.length > 0) {
      out += ` (${missing.length === 1 ? unit : `${unit}s`} ${ranges(missing.map((i) => i + 1))})`;
    }
  }
  if (stoppedAt !== null) out += `, ${unit}s after ${unit} ${stoppedAt} not read`;
  if (unfinishedBytes > 0) out += `, an unfinished last line (${plural(unfinishedBytes, "byte")}) not sent`;
  const listed = missing.length > 0 || unfinishedBytes > 0 || interrupted || stoppedAt !== null;
  out += `${listed ? "," : ""} in ${seconds.toFixed(2)} s`;
  if (seconds >= 1) out += `, ${plural(Math.round(acked / seconds), "record")}/s`;
  if (p && p.retries > 0) {
    out += `, ${plural(p.retries, "batch", "batches")} resent, ${plural(p.duplicates, "duplicate")} dropped`;
  }
  return out;
}

/**
 * Progress on stderr, once a second: on a terminal one line rewritten in
 * place, else one line per report.
 */
class Progress {
  #timer: ReturnType<typeof setInterval> | undefined;
  #onLine = false;
  constructor(
    readonly asked: boolean,
    readonly auto: boolean,
    readonly producer: () => Producer | null,
    readonly read: () => number,
    readonly started: number,
  ) {}

  start(): void {
    if (!this.asked && !this.auto) return;
    this.#timer = setInterval(() => this.#report(), 1000);
  }

  #report(): void {
    const p = this.producer();
    const ms = performance.now() - this.started;
    if (!p || (!this.asked && ms < AUTO_PROGRESS_AFTER_MS)) return;
    const line = `yak produce: ${p.ackedRecords} of ${plural(this.read(), "record")} read acknowledged ` +
      `(${plural(p.ackedBytes, "byte")}), ${plural(Math.round(p.ackedRecords / (ms / 1000)), "record")}/s, ${
        Math.round(ms / 1000)
      } s`;
    if (Deno.stderr.isTerminal()) {
      Deno.stderr.writeSync(utf8.encode(`\r\x1b[K${line}`));
      this.#onLine = true;
    } else console.error(line);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#onLine) Deno.stderr.writeSync(utf8.encode("\r\x1b[K"));
    this.#onLine = false;
  }
}

/** Splits a line at the first `separator`; null when there is none. A key must be text. */
function splitKey(line: string | Uint8Array, separator: string): { key: string; value: string | Uint8Array } | null {
  if (typeof line === "string") {
    const i = line.indexOf(separator);
    return i === -1 ? null : { key: line.slice(0, i), value: line.slice(i + separator.length) };
  }
  const sep = utf8.encode(separator);
  for (let i = 0; i + sep.length <= line.length; i++) {
    let match = true;
    for (let j = 0; j < sep.length && match; j++) match = line[i + j] === sep[j];
    if (!match) continue;
    let key: string;
    try {
      key = strictUtf8.decode(line.subarray(0, i));
    } catch {
      throw new YakError("INVALID_ARGUMENT", "a key is not valid UTF-8 (keys are text; values may be bytes)");
    }
    const rest = line.slice(i + sep.length);
    try {
      return { key, value: strictUtf8.decode(rest) };
    } catch {
      return { key, value: rest };
    }
  }
  return null;
}

/**
 * Reads a stream in large chunks and hands over its lines: text where the
 * bytes are UTF-8, else the raw bytes (sent as base64, never mangled); a CR
 * before a line break is dropped. Stops early when `stop` resolves. Returns
 * the size of an unfinished last line left when it stopped early (a line
 * without its line break at the end of the input is a line).
 */
export async function readLines(
  source: { read(p: Uint8Array): Promise<number | null> },
  onLines: (lines: Line[]) => Promise<void>,
  stop?: Promise<void>,
  beforeRead?: () => void,
): Promise<number> {
  const buf = new Uint8Array(READ_BYTES);
  // The unfinished line, as the pieces it came in: joined once when its newline comes. Joining at every read
  // copied a long line over and over (a 16 MB line through a pipe took 15 s, not 1 s).
  let carry: Uint8Array[] = [];
  let carryBytes = 0;
  const join = (tail: Uint8Array): Uint8Array => {
    if (carryBytes === 0) return tail;
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
    await onLines(splitLines(lines));
  }
  if (carryBytes > 0) await onLines(splitLines(join(new Uint8Array(0))));
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
