/**
 * `yak consume`: prints a topic's records to stdout, one per line.
 *
 * @module
 */
import { Consumer, PartitionRecords } from "../client/consumer.ts";
import { checkGroupName, checkTopicName } from "../log/names.ts";
import { YakError } from "../errors.ts";
import { bootstrapOf, CLUSTER_FLAGS, helpRequested, integer, parse, required, retryNotice, text } from "./args.ts";

const USAGE = `
yak consume --topic T [--from-beginning | --offset K] [--group G] [--partition N]
            [--group-protocol range|roundrobin] [--session-timeout-ms 10000]
            [--auto-offset-reset earliest|latest]
            [--max-messages N] [--timeout-ms MS] [--format value|json]
            [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--quiet]

Without --from-beginning (or a group's commit) it prints records produced from
now on. --group makes this consumer a member of the group: the group's
partitions are shared out among its members (range or roundrobin, as Kafka),
each member commits what it printed, and a member that stops (or goes silent
for --session-timeout-ms) has its partitions taken over from its last commit.
--bootstrap reads from that broker (any replica serves reads); otherwise from
the leader.
`;

const encoder = new TextEncoder();

function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Runs `yak consume`. */
export async function consumeCommand(args: string[]): Promise<number> {
  const { values } = parse("consume", args, {
    ...CLUSTER_FLAGS,
    topic: { type: "string" },
    group: { type: "string" },
    "group-protocol": { type: "string" },
    "session-timeout-ms": { type: "string" },
    "auto-offset-reset": { type: "string" },
    partition: { type: "string" },
    offset: { type: "string" },
    "from-beginning": { type: "boolean" },
    "max-messages": { type: "string" },
    "timeout-ms": { type: "string" },
    format: { type: "string" },
    quiet: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const topic = checkTopicName(required(values, "topic", "consume"));
  const group = text(values, "group") === undefined ? undefined : checkGroupName(text(values, "group"));
  const format = text(values, "format") ?? "value";
  if (format !== "value" && format !== "json") {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--format must be value or json, not '${format}'`,
    );
  }
  const maxMessages = integer(
    values,
    "max-messages",
    Infinity as number,
    1,
    Number.MAX_SAFE_INTEGER,
  );
  const timeoutMs = integer(values, "timeout-ms", undefined, 0, 2 ** 31 - 1);
  const quiet = values.quiet === true;
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
  const consumer = await Consumer.open({
    bootstrap: bootstrapOf(values),
    topic,
    group,
    partition: integer(values, "partition", undefined, 0, 100_000),
    offset: integer(values, "offset", undefined, 0, Number.MAX_SAFE_INTEGER),
    fromBeginning: values["from-beginning"] === true,
    maxWaitMs: timeoutMs === undefined ? undefined : Math.min(500, timeoutMs),
    // Exiting when idle includes waiting for the cluster or the topic.
    firstConnectTimeoutMs: timeoutMs === undefined ? undefined : Math.max(timeoutMs, 1000),
    onRetry: retryNotice("consume", quiet),
    groupProtocols: protocol === undefined ? undefined : [protocol],
    sessionTimeoutMs: integer(values, "session-timeout-ms", undefined, 100, 300_000),
    onGroupEvent: quiet ? undefined : (message) => console.error(`yak consume: ${message}`),
    autoOffsetReset: reset,
    // Said even with --quiet: records the reader expected are gone.
    onReset: (message) => console.error(`yak consume: ${message}`),
  });
  let stop = false;
  const onSignal = () => (stop = true);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let printed = 0;
  let lastRecordAt = Date.now();
  let pipeClosed = false;
  try {
    while (!stop && !pipeClosed && printed < maxMessages) {
      const polled = await consumer.poll();
      if (polled.length === 0) {
        if (timeoutMs !== undefined && Date.now() - lastRecordAt >= timeoutMs) {
          break;
        }
        continue;
      }
      lastRecordAt = Date.now();
      for (const part of polled) {
        const take = Math.min(part.count, maxMessages - printed);
        if (take === 0) break;
        const bytes = render(part, take, topic, format);
        const written = await writeUntilClosed(bytes);
        const whole = written === bytes.length ? take : wholeRecords(part, take, topic, format, written);
        // Only records whose bytes reached stdout count as consumed (and get committed).
        consumer.consumed(part.partition, part.base + whole);
        printed += whole;
        if (written < bytes.length) {
          pipeClosed = true; // e.g. `| head`: the reader is done
          break;
        }
      }
      await consumer.commit();
    }
    await consumer.commit();
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await consumer.close();
  }
  if (!quiet) console.error(`yak consume: ${printed} records from '${topic}'`);
  return 0;
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
 * import { STDOUT_WRITE_BYTES } from "./consume.ts";
 * console.log(`a closed pipe re-delivers at most ${STDOUT_WRITE_BYTES} bytes of records`);
 * ```
 */
export const STDOUT_WRITE_BYTES = 64 * 1024;

/**
 * Writes `bytes` to stdout in slices that end at a line break, and returns
 * how many bytes went out in writes that completed: all of them, or fewer
 * when the reader closed the pipe (EPIPE).
 */
async function writeUntilClosed(bytes: Uint8Array): Promise<number> {
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
  topic: string,
  format: string,
  writtenBytes: number,
): number {
  // One stored line per record: the lines are JSON, so a value's newlines are escaped in them.
  const lines = part.text.split("\n");
  let size = 0;
  for (let i = 0; i < take; i++) {
    size += render(new PartitionRecords(part.partition, part.base + i, 1, lines[i] + "\n"), 1, topic, format).length;
    if (size > writtenBytes) return i;
  }
  return take;
}

function render(part: PartitionRecords, take: number, topic: string, format: string): Uint8Array {
  const partition = part.partition;
  if (format === "value") {
    const values = part.values();
    if (values) return encoder.encode((take < values.length ? values.slice(0, take) : values).join("\n") + "\n");
  }
  const records = take < part.count ? part.records.slice(0, take) : part.records;
  if (format === "json") {
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
    return encoder.encode(out);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (const r of records) {
    const bytes = r.valueB64 !== undefined ? fromBase64(r.valueB64) : encoder.encode(r.value ?? "");
    chunks.push(bytes, encoder.encode("\n"));
    size += bytes.length + 1;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
