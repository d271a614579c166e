/**
 * `yak status`: brokers, leader, epoch, topics, offsets, each replica's lag,
 * groups with their lag, and registered clients, in one view.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { answered, askZookeeper, type ClusterStatus, gatherStatus } from "../client/cluster_status.ts";
import { toYakError, YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import type { Address, FirstContact } from "../client/discovery.ts";
import {
  connectTimeoutOf,
  type Flags,
  helpRequested,
  parse,
  retryNotice,
  text,
  type Values,
  zookeeperOf,
} from "./args.ts";
import { renderStatus } from "./render_status.ts";
import { writeStdout } from "./stdout.ts";

const USAGE = `
yak status [--topic T] [--watch] [--json] [--zookeeper HOST:PORT] [--connect-timeout-ms 10000]

Asks the zookeeper for brokers and the lease, then every broker for its own
view: topics, partitions (log start, log end, high watermark), each replica's
lag in records, groups with per-partition lag, and clients.

A broker is 'alive' (answers), 'not answering' (registered, or its port takes
connections, but no reply: busy, cut off, or paused), 'paused' (its process
on this machine is stopped, e.g. SIGSTOP) or 'dead' (nothing listens, or its
process is gone). A replica that does not answer shows the position the
leader last saw it at, marked '*'.
--topic shows one topic (and the groups reading it); --watch redraws every
second until Ctrl-C; --json prints the same as JSON (what the console's
GET /api/status returns).
Exits 1 when no broker answers (the view is still printed).
`;

/** How long each broker has to answer: one that does not is reported, not waited for. */
const BROKER_ANSWER_MS = 1500;

const FLAGS: Flags = {
  zookeeper: { type: "string" },
  "connect-timeout-ms": { type: "string" },
  topic: { type: "string" },
  watch: { type: "boolean" },
  json: { type: "boolean" },
};

/** What `yak status`' flags ask for. */
interface StatusOptions {
  /** `--topic`: that topic alone. */
  topic: string | undefined;
  connectTimeoutMs: number;
  zookeeper: Address;
  /** A zookeeper that refuses the first contact is not waited for (nothing listens). */
  firstContact?: FirstContact;
  /** `--watch`: again every second, until Ctrl-C. */
  watch: boolean;
  json: boolean;
}

/** Runs `yak status`. */
export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parse("status", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const options = statusOptionsOf(values);
  if (options.watch) {
    await watchStatus(options);
    return 0;
  }
  const s = await snapshot(options);
  const known = s.views.find(answered)?.topics;
  if (options.topic !== undefined && known && !known.some((t) => t.name === options.topic)) {
    throw new YakError("UNKNOWN_TOPIC", `topic '${options.topic}' does not exist`);
  }
  printStatus(s, options);
  if (!s.views.some(answered)) {
    // The zookeeper answered, no broker did: a script's `yak status && ...` must not read that as a working cluster.
    console.error(
      s.brokers.length === 0
        ? "yak status: no broker is registered with the zookeeper"
        : "yak status: no broker answered (see the BROKER table)",
    );
    return 1;
  }
  return 0;
}

/** The flags, checked. */
function statusOptionsOf(values: Values): StatusOptions {
  const topic = text(values, "topic") === undefined ? undefined : checkTopicName(text(values, "topic"));
  return {
    topic,
    connectTimeoutMs: connectTimeoutOf(values),
    ...zookeeperOf(values),
    watch: values.watch === true,
    json: values.json === true,
  };
}

/** The status, gathered as the console gathers it (src/client/cluster_status.ts). */
function snapshot(options: StatusOptions): Promise<ClusterStatus> {
  const deadline = monotonicMs() + options.connectTimeoutMs;
  const ask = askZookeeper(options.zookeeper, deadline, retryNotice("status", false), options.firstContact);
  return gatherStatus(ask, BROKER_ANSWER_MS);
}

/** Prints the status: as tables, or with --json as `GET /api/status` answers. */
function printStatus(s: ClusterStatus, options: StatusOptions): void {
  console.log(options.json ? statusJson(s, options) : renderStatus(s, options.topic));
}

/** The status as `GET /api/status` answers it (on one line with --watch, a view a line). */
function statusJson(s: ClusterStatus, { topic, watch }: StatusOptions): string {
  const views = topic === undefined
    ? s.views
    : s.views.map((v) => answered(v) ? { ...v, topics: v.topics.filter((t) => t.name === topic) } : v);
  return JSON.stringify({ lease: s.lease, brokers: s.brokers, views }, null, watch ? 0 : 2);
}

/**
 * `--watch`: a view every second until SIGINT or SIGTERM, or until stdout's
 * reader closes the pipe (`| head -1`); a view that fails is an error line,
 * not the end.
 */
async function watchStatus(options: StatusOptions): Promise<void> {
  let stop = false;
  let wake = () => {};
  const onSignal = () => {
    stop = true;
    wake();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const terminal = Deno.stdout.isTerminal() && !options.json;
  try {
    while (!stop) {
      let out: string;
      try {
        const s = await snapshot(options);
        out = options.json ? `${statusJson(s, options)}\n` : viewText(renderStatus(s, options.topic), terminal);
      } catch (err) {
        const yerr = toYakError(err);
        if (yerr.code === "INVALID_ARGUMENT") throw yerr;
        out = viewText(`yak status: ${yerr.message}`, terminal);
      }
      if (!await writeStdout(out)) return; // the reader is done (`| head`): so is the watch
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

/** A view as --watch prints it: on a terminal redrawn in place; in a pipe, views follow one another. */
function viewText(text: string, terminal: boolean): string {
  const at = new Date().toISOString();
  return terminal ? `\x1b[H\x1b[2J${at}  (Ctrl-C to stop)\n${text}\n` : `${at}\n${text}\n\n`;
}
