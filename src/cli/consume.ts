/**
 * `yak consume`: prints a topic's records to stdout, one per line.
 *
 * @module
 */
import { Consumer, type PartitionRecords } from "../client/consumer.ts";
import { checkGroupName, checkTopicName } from "../log/names.ts";
import { writeAll } from "../protocol/frame.ts";
import { YakError } from "../protocol/errors.ts";
import { bootstrapOf, CLUSTER_FLAGS, helpRequested, integer, parse, required, retryNotice, text } from "./args.ts";

const USAGE = `
yak consume --topic T [--from-beginning | --offset K] [--group G] [--partition N]
            [--max-messages N] [--timeout-ms MS] [--format value|json]
            [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--quiet]

Without --from-beginning (or a group's commit) it prints records produced from
now on. --group commits offsets as records are printed; the next consumer of
the group resumes after the last commit. --bootstrap reads from that broker
(any replica serves reads); otherwise from the leader.
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
  });
  let stop = false;
  const onSignal = () => (stop = true);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let printed = 0;
  let lastRecordAt = Date.now();
  try {
    while (!stop && printed < maxMessages) {
      const polled = await consumer.poll();
      if (polled.length === 0) {
        if (timeoutMs !== undefined && Date.now() - lastRecordAt >= timeoutMs) {
          break;
        }
        continue;
      }
      lastRecordAt = Date.now();
      const parts: Uint8Array[] = [];
      for (const part of polled) {
        const take = Math.min(part.count, maxMessages - printed);
        // Only what was printed counts as consumed (and committed).
        if (take < part.count) consumer.positions.set(part.partition, part.base + take);
        if (take === 0) continue;
        parts.push(render(part, take, topic, format));
        printed += take;
        if (printed >= maxMessages) break;
      }
      try {
        for (const p of parts) await writeAll(Deno.stdout, p);
      } catch (err) {
        if (err instanceof Deno.errors.BrokenPipe) break; // e.g. `| head`: the reader is done
        throw err;
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
        key: r.key,
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
