/**
 * `yak consume`: prints a topic's records to stdout, one per line.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { Consumer, type ConsumerOptions, PartitionRecords, type StartOffset } from "../client/consumer.ts";
import { checkGroupName, checkTopicName, isInternalTopic } from "../log/names.ts";
import { toYakError, YakError } from "../errors.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  type Flags,
  helpRequested,
  integer,
  nearest,
  parse,
  retryNotice,
  text,
  type Values,
} from "./args.ts";
import { compileTemplate, type Format, renderRecords } from "./render_records.ts";

const USAGE = `
yak consume (--topic T [--topic T2 ...] | --topic-regex REGEX)
            [--from-beginning | --offset earliest|latest|N|-N] [--partition N]
            [--group G [--group-protocol range|roundrobin] [--session-timeout-ms 10000]]
            [--auto-offset-reset earliest|latest] [--isolation-level read_committed|read_uncommitted]
            [--max-messages N] [--timeout-ms MS] [--exit-at-end]
            [--format value|json|'TEMPLATE'] [--print-key] [--print-timestamp] [--key-separator SEP]
            [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000] [--quiet]

Without --from-beginning or --offset (or a group's commit) it prints records
produced from now on. --offset: earliest, latest, an offset N, or -N for the
last N records, in every partition read (or the one --partition names).
--group makes this consumer a member of the group: the group's partitions are
shared out among its members (range or roundrobin, as Kafka), each member
commits what it printed, and a member that stops (or goes silent for
--session-timeout-ms) has its partitions taken over from its last commit; a
group starts where it committed, so --offset does not go with --group.
--partition N with --group reads partition N alone without joining the group
(Kafka's assign()): it starts where the group committed and commits there.
--exit-at-end exits once every partition read is printed up to where its end
was when reading began (kcat -e); a topic that does not exist is then an
error at once (with the name it may have meant). --timeout-ms exits after that
long with nothing new; --max-messages after N records.
--format value (default) prints values, one per line; with --print-timestamp
and --print-key as kafka-console-consumer does ('CreateTime:TS<tab>KEY<tab>VALUE',
--key-separator instead of the tab). --format json prints one JSON object per
record (topic, partition, offset, epoch, ts, key, headers if any, value). A
TEMPLATE is printed per record like kcat -f (but the value is %v, kcat's %s):
%t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms),
%h headers, %K and %S key and value length, %% a percent;
\\n \\t \\r \\0 \\\\ escapes (add \\n yourself). Any other %-field or escape,
or a lone % or \\ at the end, is refused.
--isolation-level read_committed (the default) shows a transaction's records
only once it commits, never those of an aborted one, and stops where an
undecided transaction starts; read_uncommitted shows every record up to the
high watermark. Transaction markers are never printed.
--topic-regex reads every topic whose whole name matches, also those made later.
--bootstrap reads from that broker (any replica serves reads); otherwise from
the leader.
--auto-offset-reset earliest|latest: where a partition with no committed
position starts (as Kafka's auto.offset.reset: the start or the end; without
the flag the end, or the start with --from-beginning), and where a position
goes that retention deleted (or that is past the end; there the default is
earliest). With --offset it is only the latter.
Ctrl-C or SIGTERM stops after a last commit of what was written to stdout; a
record counts as consumed once written, so what a reader that exits early
(| head) left unread in the pipe is not read again by the group.
`;

/** How long Ctrl-C or SIGTERM waits for the last poll and commit before the consumer exits anyway. */
const STOP_GRACE_MS = 5_000;
/** With stdout blocked at the end of the grace period, how long the last commit and the leave may take. */
const LAST_COMMIT_MS = 2000;

const FLAGS: Flags = {
  ...CLUSTER_FLAGS,
  topic: { type: "string", multiple: true },
  "topic-regex": { type: "string" },
  group: { type: "string" },
  "group-protocol": { type: "string" },
  "session-timeout-ms": { type: "string" },
  "auto-offset-reset": { type: "string" },
  "isolation-level": { type: "string" },
  partition: { type: "string" },
  offset: { type: "string" },
  "from-beginning": { type: "boolean" },
  "max-messages": { type: "string" },
  "timeout-ms": { type: "string" },
  "exit-at-end": { type: "boolean" },
  format: { type: "string" },
  "print-key": { type: "boolean" },
  "print-timestamp": { type: "boolean" },
  "key-separator": { type: "string" },
  quiet: { type: "boolean" },
};

/** What `yak consume`'s flags ask for. */
interface ConsumeOptions {
  /** What the consumer reads, and from where. */
  consumer: ConsumerOptions;
  format: Format;
  /** `--max-messages`; Infinity without it. */
  maxMessages: number;
  /** `--timeout-ms`: exit after this long with nothing new. */
  timeoutMs: number | undefined;
  /** `--exit-at-end`: exit once every partition is printed up to where its end was at the start. */
  exitAtEnd: boolean;
  quiet: boolean;
  /** `--topic-regex` as given, for the summary. */
  regexText: string | undefined;
}

/** `--offset`: earliest, latest (or kcat's beginning, end), N, or -N (N before the end). */
function startOffsetOf(raw: string | undefined): StartOffset | undefined {
  if (raw === undefined) return undefined;
  if (raw === "earliest" || raw === "beginning") return { kind: "earliest" };
  if (raw === "latest" || raw === "end") return { kind: "latest" };
  if (/^-\d+$/.test(raw) && Number.isSafeInteger(-Number(raw))) return { kind: "fromEnd", count: -Number(raw) };
  if (/^\d+$/.test(raw) && Number.isSafeInteger(Number(raw))) return { kind: "offset", offset: Number(raw) };
  throw new YakError("INVALID_ARGUMENT", `--offset must be earliest, latest, an offset N or -N, not '${raw}'`);
}

/** Runs `yak consume`. */
export async function consumeCommand(args: string[]): Promise<number> {
  const { values } = parse("consume", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const options = consumeOptionsOf(values);
  // Listening before the consumer opens: a signal while it joins its group counts too.
  const stop = new StopSignal();
  stop.grouped = options.consumer.group !== undefined;
  const opening = Consumer.open({ ...options.consumer, signal: stop.signal });
  const consumer = await (stop.grouped ? opening : Promise.race([opening, stop.stoppedWhile()])).catch((err) => {
    stop.unlisten();
    stop.done();
    throw withTopicHint(err);
  });
  if (consumer === null) {
    // Stopped while still reaching the cluster, with no group: nothing was printed and there is nothing to commit,
    // so no reason to wait for a cluster that may never answer (before: 5 s, then "without a last commit").
    opening.then((c) => c.close(), () => {});
    stop.unlisten();
    stop.done();
    if (!options.quiet) console.error(`yak consume: 0 records from ${namesOf(options.consumer.topics ?? [], options)}`);
    return 0;
  }
  stop.onBlockedWrite = async () => {
    // The slices of the blocked write that went out whole count too (the reader may still read them).
    const w = stop.current;
    if (w !== null && w.written > 0) {
      const whole = wholeRecords(w.part, w.take, options.format, w.written);
      consumer.consumed(w.part.topic, w.part.partition, w.part.offsetAfter(whole), w.part);
      stop.printed += whole;
    }
    await consumer.commit();
    await consumer.close();
  };
  let printed: number;
  try {
    printed = await printRecords(consumer, options, stop);
  } finally {
    stop.unlisten();
    await consumer.close();
    stop.done();
  }
  if (!options.quiet) {
    console.error(
      `yak consume: ${printed} record${printed === 1 ? "" : "s"} from ${namesOf(consumer.topics, options)}`,
    );
  }
  return 0;
}

/** The topics read, as the summary names them (the regex when none matched). */
function namesOf(topics: string[], options: ConsumeOptions): string {
  return topics.map((t) => `'${t}'`).join(", ") || `/${options.regexText}/`;
}

/**
 * A topic that does not exist, with the one it was probably meant to be
 * (`topic 'demoo' does not exist (did you mean 'demo'?); ...`).
 */
function withTopicHint(err: unknown): unknown {
  const yerr = toYakError(err);
  const known = yerr.data?.topics;
  const wanted = yerr.message.match(/^topic '([^']+)' does not exist/)?.[1];
  if (yerr.code !== "UNKNOWN_TOPIC" || !Array.isArray(known) || wanted === undefined) return err;
  const hint = nearest(wanted, known.filter((t): t is string => typeof t === "string" && !isInternalTopic(t)));
  if (hint === undefined) return err;
  return new YakError(yerr.code, yerr.message.replace(/ does not exist/, ` does not exist (did you mean '${hint}'?)`));
}

/** The flags, checked, in the order they are reported. */
function consumeOptionsOf(values: Values): ConsumeOptions {
  const { topics, topicPattern, regexText } = topicsOf(values);
  const group = text(values, "group") === undefined ? undefined : checkGroupName(text(values, "group"));
  const format = formatOf(values);
  const start = startOf(values, group);
  const partition = integer(values, "partition", undefined, 0, 100_000);
  if (partition !== undefined && (topics.length !== 1 || topicPattern !== undefined)) {
    throw new YakError("INVALID_ARGUMENT", "--partition goes with exactly one --topic");
  }
  const maxMessages = integer(values, "max-messages", Infinity as number, 1, Number.MAX_SAFE_INTEGER);
  const timeoutMs = integer(values, "timeout-ms", undefined, 0, 2 ** 31 - 1);
  const quiet = values.quiet === true;
  const { autoOffsetReset, groupProtocols } = groupFlagsOf(values, group);
  const resetGiven = text(values, "auto-offset-reset");
  if (resetGiven === "latest" && values["from-beginning"] === true) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--from-beginning starts where there is no commit at the earliest offset: not with --auto-offset-reset latest",
    );
  }
  const consumer: ConsumerOptions = {
    bootstrap: bootstrapOf(values),
    topics,
    topicPattern,
    group,
    partition,
    offset: start,
    // As Kafka's auto.offset.reset=earliest: what has no committed position starts at the start.
    fromBeginning: values["from-beginning"] === true || (resetGiven === "earliest" && start === undefined),
    maxWaitMs: timeoutMs === undefined ? undefined : Math.min(500, timeoutMs),
    // Reaching the cluster: the one deadline of every command. Waiting for a topic that does not exist yet is
    // being idle, so --timeout-ms bounds it too; --exit-at-end does not wait (its end is known: there is none).
    firstConnectTimeoutMs: connectTimeoutOf(values),
    topicWaitMs: values["exit-at-end"] === true ? 0 : timeoutMs === undefined ? undefined : Math.max(timeoutMs, 1000),
    onRetry: retryNotice("consume", quiet),
    groupProtocols,
    sessionTimeoutMs: integer(values, "session-timeout-ms", undefined, 100, 300_000),
    onGroupEvent: quiet ? undefined : (message) => console.error(`yak consume: ${message}`),
    autoOffsetReset,
    isolationLevel: isolationOf(values),
    // Said even with --quiet: records the reader expected are gone.
    onReset: (message) => console.error(`yak consume: ${message}`),
  };
  return { consumer, format, maxMessages, timeoutMs, exitAtEnd: values["exit-at-end"] === true, quiet, regexText };
}

/**
 * `--isolation-level`: read_committed by default, the careful choice (Kafka's
 * own console consumer defaults to read_uncommitted): a pipeline's output
 * never shows records its producer may still abort.
 */
function isolationOf(values: Values): "read_committed" | "read_uncommitted" {
  const level = text(values, "isolation-level") ?? "read_committed";
  if (level !== "read_committed" && level !== "read_uncommitted") {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--isolation-level must be read_committed or read_uncommitted, not '${level}'`,
    );
  }
  return level;
}

/** `--topic` (any number) and `--topic-regex`: at least one of them. */
function topicsOf(values: Values): { topics: string[]; topicPattern: RegExp | undefined; regexText?: string } {
  const topics = ((values.topic as string[] | undefined) ?? []).map((t) => checkTopicName(t));
  const regexText = text(values, "topic-regex");
  let topicPattern: RegExp | undefined;
  if (regexText !== undefined) {
    try {
      topicPattern = new RegExp(`^(?:${regexText})$`);
    } catch (err) {
      throw new YakError("INVALID_ARGUMENT", `--topic-regex: ${err instanceof Error ? err.message : err}`);
    }
  }
  if (topics.length === 0 && topicPattern === undefined) {
    throw new YakError("INVALID_ARGUMENT", "--topic is required (or --topic-regex) (see 'yak consume --help')");
  }
  if (topics.length > 0 && topicPattern !== undefined) {
    // As Kafka's console consumer: one way of naming the topics (the regex can list names: 'a|b').
    throw new YakError("INVALID_ARGUMENT", "--topic or --topic-regex, not both (a regex can name topics: 'a|b|c')");
  }
  return { topics, topicPattern, regexText };
}

/** `--format`, `--print-key`, `--print-timestamp` and `--key-separator`. */
function formatOf(values: Values): Format {
  const formatText = text(values, "format") ?? "value";
  const format: Format = {
    kind: formatText === "value" || formatText === "json" ? formatText : "template",
    printKey: values["print-key"] === true,
    printTimestamp: values["print-timestamp"] === true,
    keySeparator: text(values, "key-separator") ?? "\t",
    template: [],
  };
  if (format.kind === "template") {
    if (!formatText.includes("%")) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `--format must be value, json or a template with %-fields such as '%k %v\\n', not '${formatText}'`,
      );
    }
    format.template = compileTemplate(formatText);
  }
  if (format.kind !== "value" && (format.printKey || format.printTimestamp || values["key-separator"] !== undefined)) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--print-key, --print-timestamp and --key-separator go with --format value (json has every field; " +
        "a template names its own, e.g. '%k %v\\n')",
    );
  }
  if (values["key-separator"] !== undefined && !format.printKey) {
    throw new YakError("INVALID_ARGUMENT", "--key-separator goes with --print-key");
  }
  return format;
}

/** `--offset` (or `--from-beginning`, not both), which a group does not take. */
function startOf(values: Values, group: string | undefined): StartOffset | undefined {
  const start = startOffsetOf(text(values, "offset"));
  if (start !== undefined && values["from-beginning"]) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "use --offset or --from-beginning, not both (--offset earliest is the same)",
    );
  }
  if (start !== undefined && group !== undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--offset does not go with --group: a group starts where it committed; move its offsets with " +
        "'yak groups --reset-offsets'",
    );
  }
  return start;
}

/** `--auto-offset-reset`, and `--group-protocol` (which, like `--session-timeout-ms`, needs `--group`). */
function groupFlagsOf(
  values: Values,
  group: string | undefined,
): Pick<ConsumerOptions, "autoOffsetReset" | "groupProtocols"> {
  const reset = text(values, "auto-offset-reset") ?? "earliest";
  if (reset !== "earliest" && reset !== "latest") {
    throw new YakError("INVALID_ARGUMENT", `--auto-offset-reset must be earliest or latest, not '${reset}'`);
  }
  const protocol = text(values, "group-protocol");
  if (protocol !== undefined && protocol !== "range" && protocol !== "roundrobin") {
    throw new YakError("INVALID_ARGUMENT", `--group-protocol must be range or roundrobin, not '${protocol}'`);
  }
  if (group === undefined && (protocol !== undefined || values["session-timeout-ms"] !== undefined)) {
    throw new YakError("INVALID_ARGUMENT", "--group-protocol and --session-timeout-ms need --group");
  }
  return { autoOffsetReset: reset, groupProtocols: protocol === undefined ? undefined : [protocol] };
}

/**
 * Ctrl-C or SIGTERM asks the consumer to stop after its last poll and
 * commit (a poll under way ends at once, a group join under way by leaving
 * the group: see ConsumerOptions.signal); a second one, or {@link STOP_GRACE_MS} without an answer, exits
 * at once (130).
 */
class StopSignal {
  stopped = false;
  /** A write to stdout is under way (it blocks while the reader does not read). */
  writing = false;
  /** Run when the grace period ends during a blocked write: the last commit and a clean leave. */
  onBlockedWrite: (() => Promise<void>) | null = null;
  /** Whether the consumer is a group member (what the message at a blocked write says it did). */
  grouped = false;
  /** The write under way: its records, and the bytes of it that went out in whole slices so far. */
  current: { part: PartitionRecords; take: number; written: number } | null = null;
  /** Records written whole so far (what a blocked write's message says was committed). */
  printed = 0;
  readonly #abort = new AbortController();
  #grace: ReturnType<typeof setTimeout> | undefined;
  #onSignal = () => {
    if (this.stopped) Deno.exit(130); // a second Ctrl-C: at once
    this.stopped = true;
    // A poll waiting for records, or a group join waiting for the other members, ends now (the join by leaving).
    this.#abort.abort();
    // A poll or the last commit may be retrying a cluster that is gone (a consumer left running
    // after its cluster stopped ignored SIGTERM for an hour): bounded, as yak produce's flush is.
    this.#grace = setTimeout(() => this.#graceEnded(), STOP_GRACE_MS);
  };

  async #graceEnded(): Promise<void> {
    if (this.writing && this.onBlockedWrite) {
      // The cluster answers but stdout's reader does not read: what was written before counts, and the group goes
      // on without this member now rather than when its session ends.
      const left = await Promise.race([
        this.onBlockedWrite().then(() => true, () => false),
        new Promise<boolean>((r) => setTimeout(() => r(false), LAST_COMMIT_MS)),
      ]);
      console.error(
        `yak consume: stopped: stdout was not read for ${STOP_GRACE_MS} ms; ` +
          (!this.grouped
            ? "exiting"
            : left
            ? `committed the ${this.printed} record${this.printed === 1 ? "" : "s"} written before and left the group`
            : "the last commit did not complete"),
      );
    } else {
      console.error(`yak consume: stopped without a last commit: the cluster did not answer in ${STOP_GRACE_MS} ms`);
    }
    Deno.exit(130);
  }

  constructor() {
    Deno.addSignalListener("SIGINT", this.#onSignal);
    Deno.addSignalListener("SIGTERM", this.#onSignal);
  }

  /** Resolves null at the first signal (to race a step that does not end at it). */
  stoppedWhile(): Promise<null> {
    return new Promise((resolve) => {
      if (this.#abort.signal.aborted) resolve(null);
      else this.#abort.signal.addEventListener("abort", () => resolve(null), { once: true });
    });
  }

  /** Aborted at the first signal (the consumer's `signal`). */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Stops listening; a stop already asked still has its grace period. */
  unlisten(): void {
    Deno.removeSignalListener("SIGINT", this.#onSignal);
    Deno.removeSignalListener("SIGTERM", this.#onSignal);
  }

  /** The consumer is closed: the grace period no longer runs. */
  done(): void {
    clearTimeout(this.#grace);
  }
}

/**
 * Polls and prints until a stop, a closed pipe, --max-messages, --timeout-ms
 * or (--exit-at-end) the end; commits what reached stdout. Returns how many
 * records were printed.
 */
async function printRecords(consumer: Consumer, options: ConsumeOptions, stop: StopSignal): Promise<number> {
  const { format, maxMessages, timeoutMs } = options;
  let lastRecordAt = monotonicMs();
  let pipeClosed = false;
  while (!stop.stopped && !pipeClosed && stop.printed < maxMessages) {
    if (options.exitAtEnd && consumer.atEnd()) break;
    const polled = await consumer.poll();
    if (polled.length === 0) {
      if (timeoutMs !== undefined && monotonicMs() - lastRecordAt >= timeoutMs) {
        break;
      }
      continue;
    }
    lastRecordAt = monotonicMs();
    for (const part of polled) {
      if (stop.printed >= maxMessages) break;
      // A part may hold nothing to show (only markers, or an aborted transaction's records): read past it.
      const take = Math.min(part.count, maxMessages - stop.printed);
      const bytes = take === 0 ? new Uint8Array(0) : renderRecords(part, take, format);
      stop.writing = true;
      const current = { part, take, written: 0 };
      stop.current = current;
      const written = await writeUntilClosed(bytes, (done) => (current.written = done));
      stop.writing = false;
      stop.current = null;
      const whole = written === bytes.length ? take : wholeRecords(part, take, format, written);
      // Only records whose bytes reached stdout count as consumed (and get committed).
      consumer.consumed(part.topic, part.partition, part.offsetAfter(whole), part);
      stop.printed += whole;
      if (written < bytes.length) {
        pipeClosed = true; // e.g. `| head`: the reader is done
        break;
      }
    }
    await consumer.commit();
  }
  await consumer.commit();
  return stop.printed;
}

/**
 * The most bytes `yak consume` hands to one stdout write: also the most
 * that a closed pipe can leave uncommitted (and delivered again to the next
 * member of the group). A write cut short by a closed pipe reports no count
 * in Deno (std's line buffer flushes and fails), so only whole writes count
 * as printed. 64 KiB, a pipe's default capacity, costs about 1.7 ms per
 * 1 MiB more than a single write; 4 KiB writes would cost 15 ms per 1 MiB.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { STDOUT_WRITE_BYTES } from "./consume.ts";
 * assert.equal(STDOUT_WRITE_BYTES, 64 * 1024); // a closed pipe re-delivers at most this many bytes of records
 * ```
 */
export const STDOUT_WRITE_BYTES = 64 * 1024;

/**
 * Writes `bytes` to stdout in slices that end at a line break, and returns
 * how many bytes went out in writes that completed: all of them, or fewer
 * when the reader closed the pipe (EPIPE). `onSlice` is told that count
 * after each slice.
 */
async function writeUntilClosed(bytes: Uint8Array, onSlice?: (done: number) => void): Promise<number> {
  let done = 0;
  while (done < bytes.length) {
    let end = Math.min(bytes.length, done + STDOUT_WRITE_BYTES);
    if (end < bytes.length) {
      const lineEnd = bytes.lastIndexOf(10, end - 1);
      // A line longer than a slice goes in one write, up to its end.
      end = lineEnd >= done ? lineEnd + 1 : bytes.indexOf(10, end) + 1 || bytes.length;
    }
    const slice = bytes.subarray(done, end);
    try {
      for (let at = 0; at < slice.length;) at += await Deno.stdout.write(at === 0 ? slice : slice.subarray(at));
    } catch (err) {
      if (err instanceof Deno.errors.BrokenPipe) return done;
      throw err;
    }
    done = end;
    onSlice?.(done);
  }
  return done;
}

/**
 * How many of the first `take` records of `part` were rendered entirely
 * within the first `writtenBytes` bytes. Renders record by record, which is
 * slow but only runs once, when the pipe has closed.
 */
function wholeRecords(
  part: PartitionRecords,
  take: number,
  format: Format,
  writtenBytes: number,
): number {
  // One stored line per record: the lines are JSON, so a value's newlines are escaped in them.
  const lines = part.text.split("\n");
  let size = 0;
  for (let i = 0; i < take; i++) {
    const one = new PartitionRecords(part.partition, part.base + i, 1, lines[i] + "\n", part.topic);
    size += renderRecords(one, 1, format).length;
    if (size > writtenBytes) return i;
  }
  return take;
}
