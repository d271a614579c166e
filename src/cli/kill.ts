/**
 * `yak kill`: signals a broker (by id, or whichever leads) to show failover.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { join } from "node:path";
import { type Address, askZookeeper, type FirstContact, retryUntil } from "../client/discovery.ts";
import { YakError } from "../errors.ts";
import type { BrokerInfo, Lease } from "../protocol/messages.ts";
import { readLease } from "../zookeeper/lease_file.ts";
import { identify, type Identity } from "./broker_process.ts";
import {
  connectTimeoutOf,
  dataRootOf,
  type Flags,
  helpRequested,
  integer,
  parse,
  retryNotice,
  text,
  type Values,
  zookeeperOf,
} from "./args.ts";

const USAGE = `
yak kill (--broker N | --leader) [--signal KILL|TERM|STOP|CONT|INT] [--data DIR]
         [--zookeeper HOST:PORT] [--connect-timeout-ms 10000]

Finds the broker's process through DIR/broker-N/broker.pid and signals it
(SIGKILL by default). The data root is --data, else $YAK_DATA, else ./data
(the repository's data/ through 'deno task' or ./yak).
--leader asks the zookeeper (--zookeeper, else $YAK_ZOOKEEPER, else
127.0.0.1:2181) which broker leads, and signals it only if that broker's
process is the one in DIR's pid file: never a broker of another cluster, and
never a guess from a lease file when the zookeeper does not answer.
Refuses, and signals nothing, when the pid file is stale: the process has
exited, or the pid now belongs to something other than \`yak broker --id N\`
on that data directory.
`;

const SIGNALS = {
  KILL: "SIGKILL",
  TERM: "SIGTERM",
  STOP: "SIGSTOP",
  CONT: "SIGCONT",
  INT: "SIGINT",
} as const;

const FLAGS: Flags = {
  broker: { type: "string" },
  leader: { type: "boolean" },
  signal: { type: "string" },
  data: { type: "string" },
  zookeeper: { type: "string" },
  "connect-timeout-ms": { type: "string" },
};

/** What `yak kill`'s flags ask for. */
interface KillOptions {
  dataDir: string;
  signal: Deno.Signal;
  /** `--broker N`, or with `--leader` the zookeeper to ask which broker leads. */
  target: { broker: number } | { zookeeper: Address; firstContact?: FirstContact; connectTimeoutMs: number };
}

/** The leader as the zookeeper named it. */
interface Leader {
  epoch: number;
  /** The zookeeper that named it, as HOST:PORT. */
  zookeeper: string;
  info: BrokerInfo | undefined;
}

/** The broker to signal: the one given, or the leader the zookeeper named. */
interface Target {
  id: number;
  leader: Leader | null;
}

/** Runs `yak kill`. */
export async function killCommand(args: string[]): Promise<number> {
  const { values } = parse("kill", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const { dataDir, signal, target: given } = killOptionsOf(values);
  const target = "broker" in given
    ? { id: given.broker, leader: null }
    : await leaderOf(given.zookeeper, given.connectTimeoutMs, given.firstContact);
  const { pid, pidFile } = await brokerPid(target, dataDir);
  sendSignal(target, pid, pidFile, signal);
  const { id, leader } = target;
  const role = leader === null ? "" : `, the leader of epoch ${leader.epoch} per the zookeeper at ${leader.zookeeper}`;
  console.log(`sent ${signal} to broker ${id} (pid ${pid}${role}; data ${dataDir})`);
  return 0;
}

/** The flags, checked. */
function killOptionsOf(values: Values): KillOptions {
  const dataDir = dataRootOf(values);
  const sigName = (text(values, "signal") ?? "KILL").toUpperCase().replace(
    /^SIG/,
    "",
  );
  const signal = SIGNALS[sigName as keyof typeof SIGNALS];
  if (!signal) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--signal must be one of ${Object.keys(SIGNALS).join(", ")}`,
    );
  }
  const broker = integer(values, "broker", undefined, 0, 1_000_000);
  if (values.leader) {
    if (broker !== undefined) {
      throw new YakError(
        "INVALID_ARGUMENT",
        "use --broker N or --leader, not both",
      );
    }
    return { dataDir, signal, target: { ...zookeeperOf(values), connectTimeoutMs: connectTimeoutOf(values) } };
  }
  if (broker === undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "say which broker: --broker N or --leader",
    );
  }
  return { dataDir, signal, target: { broker } };
}

/** The broker the zookeeper names as the leader. */
async function leaderOf(zk: Address, connectTimeoutMs: number, firstContact?: FirstContact): Promise<Target> {
  const zookeeper = `${zk.host}:${zk.port}`;
  // The zookeeper's answer or nothing: a lease file may belong to a stopped or another cluster.
  const meta = await retryUntil(
    monotonicMs() + connectTimeoutMs,
    (timeoutMs) => askZookeeper(zk, { type: "status" }, timeoutMs),
    retryNotice("kill", false),
    firstContact,
  );
  const lease = meta.lease as Lease;
  if (lease.leaderId === null) {
    throw new YakError("NO_LEADER", `the zookeeper at ${zookeeper} names no leader; nothing was signalled`);
  }
  const info = (meta.brokers as BrokerInfo[]).find((b) => b.id === lease.leaderId);
  return { id: lease.leaderId, leader: { epoch: lease.epoch, zookeeper, info } };
}

/** After the zookeeper answered, every refusal says where the id came from: the user gave none. */
function chosen({ id, leader }: Target): string {
  return leader === null ? "" : `; broker ${id} was chosen as the leader per the zookeeper at ${leader.zookeeper}`;
}

/**
 * The pid in the broker's pid file, once it is known to be that broker (and,
 * for the leader, the one the zookeeper named); refused otherwise.
 */
async function brokerPid(target: Target, dataDir: string): Promise<{ pid: number; pidFile: string }> {
  const { id, leader } = target;
  const pidFile = join(dataDir, `broker-${id}`, "broker.pid");
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(pidFile)).trim());
  } catch {
    throw new YakError(
      "INVALID_ARGUMENT",
      `no pid file at ${pidFile}${chosen(target)}: is broker ${id} running with --data ${dataDir}?`,
    );
  }
  if (!Number.isInteger(pid) || pid <= 1) {
    // Pid 1 is the system's init, never a broker: refused, and said so (before: "does not hold a pid").
    const what = pid === 1 ? "holds pid 1 (the system's init), not a broker's" : "does not hold a pid";
    throw new YakError("INVALID_ARGUMENT", `${pidFile} ${what}${chosen(target)}`);
  }
  // A pid file outlives its broker after a crash or kill -9, and the pid may since belong to anything.
  const who = await identify(pid, id, dataDir);
  const refusal = refusalOf(who, pid, id, pidFile, dataDir);
  if (refusal !== null) throw new YakError("INVALID_ARGUMENT", `${refusal}${chosen(target)}`);
  if (leader !== null) await checkSameCluster(leader, id, pid, pidFile, dataDir);
  return { pid, pidFile };
}

/** Signals the broker; one that exited since it was identified is refused as stale. */
function sendSignal(target: Target, pid: number, pidFile: string, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `broker ${target.id} (pid ${pid}) is not running; ${pidFile} is stale${chosen(target)}`,
      );
    }
    throw err;
  }
}

/** Why a pid that is not (or cannot be told to be) the broker is not signalled; null when it is the broker. */
function refusalOf(who: Identity, pid: number, id: number, pidFile: string, dataDir: string): string | null {
  switch (who.kind) {
    case "broker":
      return null;
    case "gone":
      return `broker ${id} is not running: ${pidFile} is stale (pid ${pid} has exited); nothing was signalled`;
    case "other":
      return `${pidFile} is stale: pid ${pid} is not broker ${id} of ${dataDir} but \`${who.command}\`` +
        `${who.why ? ` (${who.why})` : ""}; nothing was signalled`;
    case "unknown":
      return `cannot tell whether pid ${pid} (from ${pidFile}) is broker ${id}: ${who.why}; nothing was signalled`;
  }
}

/**
 * The leader the zookeeper named must be the process in this data root's
 * pid file: a zookeeper of one cluster and `--data` of another would
 * otherwise kill a broker that leads nothing. The zookeeper knows each
 * broker's pid from its registration; a broker that did not say (older
 * versions) is checked against this data root's lease file instead.
 */
async function checkSameCluster(
  leader: Leader,
  id: number,
  pid: number,
  pidFile: string,
  dataDir: string,
): Promise<void> {
  const where = leader.info ? ` (at ${leader.info.host}:${leader.info.port}` : " (";
  const theirs = leader.info?.pid;
  if (theirs !== undefined) {
    if (theirs === pid) return;
    throw new YakError(
      "INVALID_ARGUMENT",
      `the zookeeper at ${leader.zookeeper} names broker ${id}${where}, pid ${theirs}) as the leader, but ${pidFile} ` +
        `holds pid ${pid}: ${dataDir} is another cluster's data; nothing was signalled. Give --data of the cluster ` +
        `whose zookeeper is ${leader.zookeeper}, or --zookeeper of the cluster in ${dataDir}`,
    );
  }
  const path = join(dataDir, "zookeeper", "leader.lease");
  const lease = await readLease(path);
  if (lease !== null && typeof lease !== "string" && lease.leaderId === id && lease.epoch === leader.epoch) return;
  throw new YakError(
    "INVALID_ARGUMENT",
    `cannot tell that broker ${id} of ${dataDir} is the leader the zookeeper at ${leader.zookeeper} names ` +
      `(epoch ${leader.epoch}): ${path} does not name it; nothing was signalled`,
  );
}
