/**
 * `yak kill`: signals a broker (by id, or whichever leads) to show failover.
 *
 * @module
 */
import { join } from "node:path";
import { ask } from "../client/discovery.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../protocol/errors.ts";
import type { Lease } from "../protocol/messages.ts";
import { readLease } from "../zookeeper/lease_file.ts";
import { bootstrapOf, helpRequested, integer, parse, text } from "./args.ts";

const USAGE = `
yak kill (--broker N | --leader) [--signal KILL|TERM|STOP|CONT] [--data data]
         [--zookeeper HOST:PORT]

Finds the broker's process through DATA/broker-N/broker.pid and signals it
(SIGKILL by default). --leader asks the zookeeper (or reads the lease file).
`;

const SIGNALS = {
  KILL: "SIGKILL",
  TERM: "SIGTERM",
  STOP: "SIGSTOP",
  CONT: "SIGCONT",
  INT: "SIGINT",
} as const;

/** Runs `yak kill`. */
export async function killCommand(args: string[]): Promise<number> {
  const { values } = parse("kill", args, {
    broker: { type: "string" },
    leader: { type: "boolean" },
    signal: { type: "string" },
    data: { type: "string" },
    zookeeper: { type: "string" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const dataDir = text(values, "data") ?? DEFAULTS.dataDir;
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
  let id = integer(values, "broker", undefined, 1, 1_000_000);
  let epoch: number | null = null;
  if (values.leader) {
    if (id !== undefined) {
      throw new YakError(
        "INVALID_ARGUMENT",
        "use --broker N or --leader, not both",
      );
    }
    const lease = await currentLease(values, dataDir);
    if (lease.leaderId === null) {
      throw new YakError("NO_LEADER", "the cluster has no leader to kill");
    }
    id = lease.leaderId;
    epoch = lease.epoch;
  }
  if (id === undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "say which broker: --broker N or --leader",
    );
  }
  const pidFile = join(dataDir, `broker-${id}`, "broker.pid");
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(pidFile)).trim());
  } catch {
    throw new YakError(
      "INVALID_ARGUMENT",
      `no pid file at ${pidFile}: is broker ${id} running with --data ${dataDir}?`,
    );
  }
  if (!Number.isInteger(pid) || pid <= 1) {
    throw new YakError("INVALID_ARGUMENT", `${pidFile} does not hold a pid`);
  }
  try {
    Deno.kill(pid, signal);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `broker ${id} (pid ${pid}) is not running; ${pidFile} is stale`,
      );
    }
    throw err;
  }
  const role = epoch === null ? "" : `, leader of epoch ${epoch}`;
  console.log(`sent ${signal} to broker ${id} (pid ${pid}${role})`);
  return 0;
}

async function currentLease(
  values: Record<string, unknown>,
  dataDir: string,
): Promise<Lease> {
  try {
    const boot = bootstrapOf(values as Parameters<typeof bootstrapOf>[0]);
    const meta = await ask(boot.zookeeper!, { type: "metadata" }, 2000);
    return meta.lease as Lease;
  } catch {
    const path = join(dataDir, "zookeeper", "leader.lease");
    const lease = await readLease(path);
    if (lease === null || typeof lease === "string") {
      throw new YakError(
        "NO_LEADER",
        `the zookeeper does not answer and ${path} holds no lease`,
      );
    }
    return lease;
  }
}
