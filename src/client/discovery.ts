/**
 * Finding the cluster: the leader through the zookeeper, or through any
 * broker given with `--bootstrap`.
 *
 * @module
 */
import { Connection } from "../protocol/connection.ts";
import { isRetriable, toYakError, YakError } from "../errors.ts";
import type { Lease } from "../protocol/messages.ts";

/** A host and port. */
export interface Address {
  host: string;
  port: number;
}

/** Where a client starts looking: the zookeeper, or a list of brokers. */
export interface Bootstrap {
  zookeeper?: Address;
  brokers?: Address[];
}

/** The leader as discovery found it. */
export interface LeaderAddress extends Address {
  id: number;
  epoch: number;
}

/**
 * Asks the zookeeper (or each bootstrap broker in turn) who leads. Throws
 * NO_LEADER when the cluster has none, CONNECTION when nobody answers.
 *
 * @example
 * ```ts
 * import { findLeader } from "./discovery.ts";
 * const leader = await findLeader({ zookeeper: { host: "127.0.0.1", port: 2181 } });
 * ```
 */
export async function findLeader(
  boot: Bootstrap,
  timeoutMs = 3000,
): Promise<LeaderAddress> {
  const errors: string[] = [];
  if (boot.brokers && boot.brokers.length > 0) {
    for (const addr of boot.brokers) {
      try {
        const meta = await ask(addr, { type: "metadata" }, timeoutMs);
        const leader = meta.leader as LeaderAddress | null;
        if (leader) return leader;
        errors.push(`${addr.host}:${addr.port} knows no leader`);
      } catch (err) {
        errors.push(toYakError(err).message);
      }
    }
    throw new YakError(
      "NO_LEADER",
      `no broker named a leader (${errors.join("; ")})`,
    );
  }
  const zk = boot.zookeeper ?? { host: "127.0.0.1", port: 2181 };
  const meta = await ask(zk, { type: "metadata" }, timeoutMs);
  const lease = meta.lease as Lease;
  if (lease.leaderId === null) {
    throw new YakError(
      "NO_LEADER",
      "the cluster has no leader right now (is any in-sync broker running?)",
    );
  }
  return {
    id: lease.leaderId,
    host: lease.host,
    port: lease.port,
    epoch: lease.epoch,
  };
}

/** Sends one request on a fresh connection and closes it. */
export async function ask(
  addr: Address,
  body: Record<string, unknown>,
  timeoutMs = 3000,
): Promise<Record<string, unknown>> {
  const conn = await Connection.open(addr.host, addr.port, {
    connectTimeoutMs: timeoutMs,
  });
  try {
    return await conn.request(body, timeoutMs);
  } finally {
    conn.close();
  }
}

/**
 * Connects to the current leader, rediscovering and retrying retriable
 * failures until `deadline` (ms since the epoch).
 *
 * @example
 * ```ts
 * import { connectLeader } from "./discovery.ts";
 * const { conn, leader } = await connectLeader({}, Date.now() + 10_000);
 * ```
 */
export async function connectLeader(
  boot: Bootstrap,
  deadline: number,
  onRetry?: (why: string) => void,
): Promise<{ conn: Connection; leader: LeaderAddress }> {
  let delayMs = 50;
  while (true) {
    try {
      const leader = await findLeader(
        boot,
        Math.max(500, Math.min(3000, deadline - Date.now())),
      );
      const conn = await Connection.open(leader.host, leader.port, {
        connectTimeoutMs: 3000,
      });
      return { conn, leader };
    } catch (err) {
      const yerr = toYakError(err);
      if (!isRetriable(yerr) || Date.now() + delayMs > deadline) throw yerr;
      onRetry?.(yerr.message);
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(500, delayMs * 2);
    }
  }
}

/**
 * Connects to the first bootstrap broker that answers (any replica can serve
 * reads), or to the leader when only the zookeeper is known.
 */
export async function connectAny(
  boot: Bootstrap,
  deadline: number,
  onRetry?: (why: string) => void,
): Promise<Connection> {
  if (!boot.brokers || boot.brokers.length === 0) {
    return (await connectLeader(boot, deadline, onRetry)).conn;
  }
  let delayMs = 50;
  while (true) {
    for (const addr of boot.brokers) {
      try {
        return await Connection.open(addr.host, addr.port, {
          connectTimeoutMs: 2000,
        });
      } catch (err) {
        onRetry?.(toYakError(err).message);
      }
    }
    if (Date.now() + delayMs > deadline) {
      throw new YakError(
        "CONNECTION",
        `no bootstrap broker answers (${boot.brokers.map((a) => `${a.host}:${a.port}`)})`,
      );
    }
    await new Promise((r) => setTimeout(r, delayMs));
    delayMs = Math.min(500, delayMs * 2);
  }
}
