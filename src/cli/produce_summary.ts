/**
 * What `yak produce` tells the user on stderr: the summary of what was and
 * was not acknowledged, progress while it runs, and why it stopped.
 *
 * @module
 */
import type { Producer } from "../client/producer.ts";
import type { YakError } from "../errors.ts";

/** Progress starts by itself on a terminal after this long. */
const AUTO_PROGRESS_AFTER_MS = 2000;

const utf8 = new TextEncoder();

/**
 * The error, with a record's index turned into its line (or message)
 * number. A topic the broker said did not exist yet was created by records
 * stored after the refusal when some were acknowledged: then the limit is
 * raised with --alter, not --create.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { YakError } from "../errors.ts";
 * import { describeFailure } from "./produce_summary.ts";
 * const err = new YakError("MESSAGE_TOO_LARGE", "record 2 is too large", { index: 6 });
 * assert.equal(describeFailure(err, "line", true), "line 7 is too large");
 * ```
 */
export function describeFailure(err: YakError, unit: string, someStored: boolean): string {
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
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { produceSummary } from "./produce_summary.ts";
 * assert.match(
 *   produceSummary(null, "orders", "all", 0, "line", 0, performance.now(), true, null),
 *   /^0 records \(0 bytes\) acknowledged to 'orders', 0 not acknowledged, in 0\.\d\d s$/,
 * );
 * // Stopped by a line the producer refused, or by its failure after the last line handed over:
 * assert.match(
 *   produceSummary(null, "orders", "all", 4, "line", 0, performance.now(), false, { line: 4, at: true }),
 *   /, 4 not acknowledged \(lines 1-4\), reading stopped at line 4, in /,
 * );
 * assert.match(
 *   produceSummary(null, "orders", "all", 9, "line", 0, performance.now(), false, { line: 9, at: false }),
 *   /, reading stopped after line 9, in /,
 * );
 * ```
 */
export function produceSummary(
  p: Producer | null,
  topic: string,
  acks: "all" | 0 | 1,
  read: number,
  unit: string,
  unfinishedBytes: number,
  started: number,
  interrupted: boolean,
  stoppedAt: { line: number; at: boolean } | null,
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
  if (stoppedAt !== null) out += `, reading stopped ${stoppedAt.at ? "at" : "after"} ${unit} ${stoppedAt.line}`;
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
 *
 * @example
 * ```ts ignore
 * import { Progress } from "./produce_summary.ts";
 * const progress = new Progress(true, false, () => producer, () => read, performance.now());
 * progress.start();
 * ```
 */
export class Progress {
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
