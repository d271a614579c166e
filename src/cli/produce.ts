/**
 * `yak produce`: publishes stdin lines (or --message values) to a topic.
 *
 * @module
 */
import { Producer, type ProducerOptions } from "../client/producer.ts";
import { checkTopicName } from "../log/names.ts";
import { toYakError, YakError } from "../errors.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  type Flags,
  helpRequested,
  integer,
  parse,
  required,
  retryNotice,
  text,
  type Values,
} from "./args.ts";
import { type Line, readLineBlocks, readLines } from "./read_lines.ts";
import { describeFailure, produceSummary, Progress } from "./produce_summary.ts";
import { strictUtf8 } from "../utf8.ts";

const USAGE = `
yak produce --topic T [--message TEXT ...] [--key K | --key-separator SEP [--ignore-missing-separator]]
            [--header KEY=VALUE ...] [--partition N] [--acks all|1|0|-1] [--batch-records 2000] [--linger-ms 5]
            [--transactional-id ID [--transaction-records N] [--transaction-timeout-ms 60000]]
            [--progress] [--quiet]
            [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

Reads stdin line by line (one record per line; a CR before the line break is
dropped) unless --message is given. --key-separator splits each line into
key and value at the first SEP; a line without SEP is an error (as Kafka's
parse.key), unless --ignore-missing-separator sends it with no key.
--header KEY=VALUE (repeatable, as kcat -H) adds a Kafka record header to
every record, split at the first '='; Kafka consumers see the headers, and
'yak consume --format json' or '%h' print them.
--message, --key and --header take UTF-8 text: an argument that is not is
refused (stdin keeps any bytes: a line that is not UTF-8 is stored as bytes).
Retransmits until the leader acknowledges; retries never duplicate.
Records without a key start on a random partition and move on batch by batch.
A topic that does not exist is created by the first record stored in it.
--transactional-id sends the whole input as ONE transaction: consumers that
read committed records (yak consume's default) see all of it or none of it,
even if this producer is killed midway (its transaction is aborted when
another producer starts with the same id, or after --transaction-timeout-ms).
--transaction-records N commits every N records instead (long streams); a
bad line or Ctrl-C aborts the open transaction.

Prints a summary on stderr: records and bytes (keys, values, headers) acknowledged,
and which were not. --progress prints progress every second (it is on by
itself when stderr is a terminal, stdin is not, and the run takes a while).
Ctrl-C or SIGTERM: stops reading, waits up to 5 s for what was read to be
acknowledged, prints the summary, and exits 130 (a second Ctrl-C exits at once).
Exits 0 only if every record was acknowledged.
`;

/** How long an interrupted producer waits for what it already read to be acknowledged. */
const INTERRUPT_FLUSH_MS = 5000;
const INTERRUPTED_EXIT = 130;

const utf8 = new TextEncoder();

const FLAGS: Flags = {
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
  "transactional-id": { type: "string" },
  "transaction-records": { type: "string" },
  "transaction-timeout-ms": { type: "string" },
  progress: { type: "boolean" },
  quiet: { type: "boolean" },
};

/** What `yak produce`'s flags ask for. */
interface ProduceOptions {
  /** Where the records go, and how they are batched and acknowledged. */
  producer: ProducerOptions & { acks: "all" | 0 | 1 };
  /** `--message` values; none: stdin's lines. */
  messages: string[];
  /** What the input is made of ("message" or "line"), as errors and the summary name it. */
  unit: string;
  /** `--key`: every record's key. */
  fixedKey: string | null;
  /** `--key-separator`: each line's key is what comes before it. */
  separator: string | undefined;
  /** `--ignore-missing-separator`: a line without the separator goes without a key. */
  keepKeyless: boolean;
  headers: [string, string][] | undefined;
  /** `--transaction-records`: records per transaction (Infinity: the whole input is one). */
  transactionRecords: number;
  /** `--progress`. */
  progress: boolean;
  quiet: boolean;
}

/** Runs `yak produce`. */
export async function produceCommand(args: string[]): Promise<number> {
  const { values } = parse("produce", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const options = produceOptionsOf(values);
  // Signals first: a Ctrl-C while connecting must not lose the summary either.
  const run = new ProduceRun(options);
  try {
    const p = await run.open();
    if (p === null) {
      console.error(`yak produce: interrupted while connecting; ${run.summary()}`);
      return INTERRUPTED_EXIT;
    }
    run.progress.start();
    return await run.report(p, await run.send(p));
  } finally {
    await run.close();
  }
}

/** The flags, checked, in the order they are reported. */
function produceOptionsOf(values: Values): ProduceOptions {
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
  const producer: ProduceOptions["producer"] = {
    bootstrap: bootstrapOf(values),
    topic,
    acks,
    partition: integer(values, "partition", undefined, 0, 100_000),
    batchRecords: integer(values, "batch-records", undefined, 1, 10_000),
    lingerMs: integer(values, "linger-ms", undefined, 0, 60_000),
    connectTimeoutMs: connectTimeoutOf(values),
    onRetry: retryNotice("produce", quiet),
    ...transactionOf(values, acks),
  };
  const unit = messages.length > 0 ? "message" : "line";
  return {
    producer,
    messages,
    unit,
    fixedKey,
    separator,
    keepKeyless,
    headers,
    transactionRecords: integer(values, "transaction-records", Infinity as number, 1, Number.MAX_SAFE_INTEGER),
    progress: values.progress === true,
    quiet,
  };
}

/** `--transactional-id` and `--transaction-timeout-ms` (and `--transaction-records`, checked to go with them). */
function transactionOf(
  values: Values,
  acks: "all" | 0 | 1,
): Pick<ProducerOptions, "transactionalId" | "transactionTimeoutMs"> {
  const transactionalId = text(values, "transactional-id");
  if (transactionalId === undefined) {
    for (const flag of ["transaction-records", "transaction-timeout-ms"]) {
      if (values[flag] !== undefined) throw new YakError("INVALID_ARGUMENT", `--${flag} goes with --transactional-id`);
    }
    return {};
  }
  if (transactionalId === "") throw new YakError("INVALID_ARGUMENT", "--transactional-id must not be empty");
  if (acks !== "all") throw new YakError("INVALID_ARGUMENT", "--transactional-id needs --acks all (as Kafka's)");
  return {
    transactionalId,
    transactionTimeoutMs: integer(values, "transaction-timeout-ms", undefined, 1, 2 ** 31 - 1),
  };
}

/**
 * One run of `yak produce`: what was read and what became of it. Ctrl-C or
 * SIGTERM stops the reading and waits (at most {@link INTERRUPT_FLUSH_MS})
 * for what was read to be acknowledged; a second one exits at once.
 */
class ProduceRun {
  /** The signal that interrupted the run, if one did. */
  interrupted: Deno.Signal | null = null;
  /** Resolves when a signal interrupts the run. */
  readonly interruptedPromise: Promise<void>;
  producer: Producer | null = null;
  readonly started = performance.now();
  /** Lines (or messages) read. */
  read = 0;
  /** The size of an unfinished last line left when the reading stopped early. */
  unfinishedBytes = 0;
  /**
   * Where an error ended the reading: at a line the producer refused (`at`:
   * that line is not stored, and what came after it was never read), or
   * after the last line handed over (the producer failed while it waited).
   */
  stoppedAt: { line: number; at: boolean } | null = null;
  /** The line the producer refused, when one ended the reading. */
  #refused: number | null = null;
  readonly progress: Progress;
  /** The number of the line last handed over, for errors. */
  #lastLine = 0;
  /** Records added to the open transaction (--transactional-id). */
  #inTransaction = 0;
  /** The commit under way while the next transaction is read (--transaction-records). */
  #committing: Promise<void> | null = null;
  #onInterrupt = () => {};
  readonly #listeners: (readonly [Deno.Signal, () => void])[];

  constructor(readonly options: ProduceOptions) {
    this.interruptedPromise = new Promise<void>((resolve) => (this.#onInterrupt = resolve));
    const onSignal = (signal: Deno.Signal) => () => {
      if (this.interrupted !== null) {
        // A second Ctrl-C: no more waiting.
        this.progress.stop();
        console.error(`yak produce: interrupted again; ${this.summary()}`);
        Deno.exit(INTERRUPTED_EXIT);
      }
      this.interrupted = signal;
      this.#onInterrupt();
    };
    this.#listeners = (["SIGINT", "SIGTERM"] as const).map((sig) => [sig, onSignal(sig)] as const);
    for (const [sig, fn] of this.#listeners) Deno.addSignalListener(sig, fn);
    this.progress = new Progress(
      options.progress,
      !options.quiet && Deno.stderr.isTerminal() && !Deno.stdin.isTerminal(),
      () => this.producer,
      () => this.read,
      this.started,
    );
  }

  /** The summary line as it stands. */
  summary(): string {
    const { producer: { topic, acks }, unit } = this.options;
    const { producer, read, unfinishedBytes, started, interrupted, stoppedAt } = this;
    return produceSummary(producer, topic, acks, read, unit, unfinishedBytes, started, interrupted !== null, stoppedAt);
  }

  /** Connects; null when a signal came first. */
  async open(): Promise<Producer | null> {
    this.producer = await Promise.race([
      Producer.open(this.options.producer),
      this.interruptedPromise.then(() => null),
    ]);
    return this.producer;
  }

  /**
   * Hands the messages or stdin's lines to the producer and waits for them
   * to be acknowledged (with a signal, a bounded while); returns the error
   * that ended it early, if one did.
   */
  async send(p: Producer): Promise<YakError | null> {
    let failure: YakError | null = null;
    try {
      try {
        await this.#readInput(p);
      } catch (err) {
        // Bad input (a line without a separator, a record too large for any frame): what came before it
        // is still sent, as Kafka's console producer does; in a transaction, none of it is committed.
        failure = toYakError(err);
        this.stoppedAt = { line: this.#refused ?? this.#lastLine, at: this.#refused !== null };
      }
      const txn = this.options.producer.transactionalId !== undefined;
      if (txn && (failure || this.interrupted)) throw failure ?? new YakError("TIMEOUT", "interrupted");
      const flushed = txn ? p.commitTransaction() : p.flush();
      flushed.catch(() => {});
      await Promise.race([flushed, this.interruptedPromise]);
      if (this.interrupted && !txn) await p.flush(INTERRUPT_FLUSH_MS);
      else await flushed;
    } catch (err) {
      failure ??= toYakError(err);
      // The open transaction ends aborted: read_committed readers never see a part of it.
      if (this.options.producer.transactionalId !== undefined) await p.abortTransaction().catch(() => {});
    }
    return failure;
  }

  async #readInput(p: Producer): Promise<void> {
    const { messages, quiet } = this.options;
    if (messages.length > 0) {
      for (const m of messages) {
        if (this.interrupted) break;
        this.#add(p, { value: m, ascii: false });
        if (++this.#inTransaction < this.options.transactionRecords) continue;
        this.#inTransaction = 0;
        if (!await this.#commitReadSoFar(p)) return;
      }
      return;
    }
    // Typing at a terminal: a prompt says when the next line is wanted, as Kafka's console producer does.
    const prompt = Deno.stdin.isTerminal() && !quiet ? () => Deno.stderr.writeSync(utf8.encode(">")) : undefined;
    const { fixedKey, separator, headers, transactionRecords } = this.options;
    if (fixedKey === null && separator === undefined && headers === undefined && transactionRecords === Infinity) {
      // Keyless lines with nothing to split off: handed over as bytes, never decoded here (the broker stores
      // each as text where it is UTF-8, else as base64, as it would the decoded line).
      this.unfinishedBytes = await readLineBlocks(
        Deno.stdin,
        async (block) => {
          const before = p.added;
          try {
            p.addLines(block);
          } catch (err) {
            // The line that failed is read too, as #add counts it: the one after the last added.
            this.read += p.added - before + 1;
            this.#lastLine = this.read;
            this.#refused = this.read;
            throw err;
          }
          this.read += p.added - before;
          this.#lastLine = this.read;
          await Promise.race([p.waitForRoom(), this.interruptedPromise]);
        },
        this.interruptedPromise,
        prompt,
        true,
      );
      return;
    }
    this.unfinishedBytes = await readLines(
      Deno.stdin,
      async (lines) => {
        const perTransaction = this.options.transactionRecords;
        for (const line of lines) {
          this.#add(p, line);
          if (++this.#inTransaction < perTransaction) continue;
          this.#inTransaction = 0;
          if (!await this.#commitReadSoFar(p)) return;
        }
        await Promise.race([p.waitForRoom(), this.interruptedPromise]);
      },
      this.interruptedPromise,
      prompt,
    );
  }

  /**
   * `--transaction-records`: commits what was read so far, and lets the
   * reading go on into the next transaction while it commits (its records
   * are sent once the commit is done); only one commit is under way at a
   * time, so the reading stays at most one transaction ahead. False when a
   * signal interrupted the wait.
   */
  async #commitReadSoFar(p: Producer): Promise<boolean> {
    const previous = this.#committing;
    if (previous) {
      await Promise.race([previous, this.interruptedPromise]);
      if (this.interrupted) return false;
      await previous; // its failure ends the reading
    }
    const committing = p.commitTransaction();
    committing.catch(() => {}); // awaited at the next commit, or by the last one (which runs after it)
    this.#committing = committing;
    return true;
  }

  /** One line (or message) to the producer, with its key split off when --key-separator asks. */
  #add(p: Producer, line: Line): void {
    const number = this.read + 1; // this line's number, for errors
    this.#lastLine = number;
    try {
      this.#addLine(p, line, number);
    } catch (err) {
      // The line that failed was read: the summary lists it with those not stored.
      this.read = number;
      this.#refused = number;
      throw err;
    }
  }

  #addLine(p: Producer, line: Line, number: number): void {
    const { fixedKey, separator, keepKeyless, unit, headers } = this.options;
    let { value } = line;
    let key = fixedKey;
    if (separator !== undefined) {
      const split = splitKey(value, separator, `${unit} ${number}`);
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
    this.read++;
    // ASCII: the byte count is the character count, nothing to measure.
    const bytes = line.ascii
      ? (typeof value === "string" ? value.length : value.length) + (key?.length ?? 0)
      : undefined;
    p.add(key, value, bytes, headers);
  }

  /** Says what became of the input (and why it stopped, if it did); returns the exit code. */
  async report(p: Producer, failure: YakError | null): Promise<number> {
    const { unit, quiet } = this.options;
    this.progress.stop();
    if (failure && !(this.interrupted && failure.code === "TIMEOUT")) {
      // Answers to what was already sent still count: wait for them (briefly).
      await p.settle(INTERRUPT_FLUSH_MS);
      console.error(`yak produce: ${describeFailure(failure, unit, p.ackedRecords > 0)}`);
    }
    const allAcked = p.ackedRecords === this.read && this.unfinishedBytes === 0;
    if (this.interrupted) {
      console.error(`yak produce: interrupted (${this.interrupted}); ${this.summary()}`);
      return INTERRUPTED_EXIT;
    }
    if (!quiet || !allAcked || failure) console.error(`yak produce: ${this.summary()}`);
    return allAcked && !failure ? 0 : 1;
  }

  /** Stops the progress and the signal listeners, and closes the producer. */
  async close(): Promise<void> {
    this.progress.stop();
    for (const [sig, fn] of this.#listeners) Deno.removeSignalListener(sig, fn);
    await this.producer?.close();
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

/** Splits a line at the first `separator`; null when there is none. A key must be text (`where`: the line's name). */
function splitKey(
  line: string | Uint8Array,
  separator: string,
  where: string,
): { key: string; value: string | Uint8Array } | null {
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
      throw new YakError(
        "INVALID_ARGUMENT",
        `the key of ${where} is not valid UTF-8 (keys are text; values may be bytes)`,
      );
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
