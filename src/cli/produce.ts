/**
 * `yak produce`: publishes stdin lines (or --message values) to a topic.
 *
 * @module
 */
import { Producer } from "../client/producer.ts";
import { checkTopicName } from "../log/names.ts";
import { YakError } from "../errors.ts";
import { bootstrapOf, CLUSTER_FLAGS, helpRequested, integer, parse, required, retryNotice, text } from "./args.ts";

const USAGE = `
yak produce --topic T [--message TEXT ...] [--key K | --key-separator SEP]
            [--partition N] [--acks all|1|0] [--batch-records 2000] [--linger-ms 5]
            [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--quiet]

Reads stdin line by line (one record per line) unless --message is given.
Retransmits until the leader acknowledges; retries never duplicate.
Prints a summary on stderr; exits 0 only if every record was acknowledged.
`;

const NEWLINE = 10;
const READ_BYTES = 1024 * 1024;

/** Runs `yak produce`. */
export async function produceCommand(args: string[]): Promise<number> {
  const { values } = parse("produce", args, {
    ...CLUSTER_FLAGS,
    topic: { type: "string" },
    message: { type: "string", multiple: true },
    key: { type: "string" },
    "key-separator": { type: "string" },
    partition: { type: "string" },
    acks: { type: "string" },
    "batch-records": { type: "string" },
    "linger-ms": { type: "string" },
    quiet: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const topic = checkTopicName(required(values, "topic", "produce"));
  const acksText = text(values, "acks") ?? "all";
  if (!["all", "1", "0", "-1"].includes(acksText)) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--acks must be all, 1 or 0, not '${acksText}'`,
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
  const quiet = values.quiet === true;
  const producer = await Producer.open({
    bootstrap: bootstrapOf(values),
    topic,
    acks,
    partition: integer(values, "partition", undefined, 0, 100_000),
    batchRecords: integer(values, "batch-records", undefined, 1, 10_000),
    lingerMs: integer(values, "linger-ms", undefined, 0, 60_000),
    onRetry: retryNotice("produce", quiet),
  });
  const started = performance.now();
  let records = 0;
  const add = (line: string | Uint8Array) => {
    if (separator !== undefined && typeof line === "string") {
      const i = line.indexOf(separator);
      if (i !== -1) {
        producer.add(line.slice(0, i), line.slice(i + separator.length));
        records++;
        return;
      }
    }
    producer.add(fixedKey, line);
    records++;
  };
  try {
    const messages = values.message as string[] | undefined;
    if (messages && messages.length > 0) {
      for (const m of messages) add(m);
    } else {
      await readLines(Deno.stdin, async (lines) => {
        for (const line of lines) add(line);
        await producer.waitForRoom();
      });
    }
    await producer.flush();
  } finally {
    await producer.close();
  }
  const seconds = (performance.now() - started) / 1000;
  if (!quiet) {
    const rate = seconds > 0 ? Math.round(producer.ackedRecords / seconds) : producer.ackedRecords;
    console.error(
      `yak produce: ${producer.ackedRecords} records (${producer.ackedBytes} bytes) ` +
        `${acks === 0 ? "sent" : "acknowledged"} to '${topic}' in ${seconds.toFixed(2)} s, ${rate} records/s` +
        (producer.retries > 0 ? `, ${producer.retries} batches resent, ${producer.duplicates} duplicates dropped` : ""),
    );
  }
  return producer.ackedRecords === records ? 0 : 1;
}

/**
 * Reads a stream in large chunks and hands over its lines: text where the
 * bytes are UTF-8, else the raw bytes (sent as base64, never mangled).
 */
export async function readLines(
  source: { read(p: Uint8Array): Promise<number | null> },
  onLines: (lines: (string | Uint8Array)[]) => Promise<void>,
): Promise<void> {
  const strict = new TextDecoder("utf-8", { fatal: true });
  const buf = new Uint8Array(READ_BYTES);
  let carry = new Uint8Array(0);
  while (true) {
    const n = await source.read(buf);
    if (n === null) break;
    let chunk = buf.subarray(0, n);
    if (carry.length > 0) {
      const joined = new Uint8Array(carry.length + n);
      joined.set(carry);
      joined.set(chunk, carry.length);
      chunk = joined;
    }
    const last = chunk.lastIndexOf(NEWLINE);
    if (last === -1) {
      carry = chunk.slice();
      continue;
    }
    carry = chunk.slice(last + 1);
    await onLines(splitLines(chunk.subarray(0, last), strict));
  }
  if (carry.length > 0) await onLines(splitLines(carry, strict));
}

function splitLines(
  bytes: Uint8Array,
  strict: TextDecoder,
): (string | Uint8Array)[] {
  try {
    // One decode per chunk, not per line: the common case is all text.
    return strict.decode(bytes).split("\n");
  } catch {
    const out: (string | Uint8Array)[] = [];
    let start = 0;
    while (start <= bytes.length) {
      let nl = bytes.indexOf(NEWLINE, start);
      if (nl === -1) nl = bytes.length;
      const line = bytes.subarray(start, nl);
      try {
        out.push(strict.decode(line));
      } catch {
        out.push(line.slice());
      }
      start = nl + 1;
    }
    return out;
  }
}
