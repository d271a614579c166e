/**
 * Finding the cluster: the leader through the zookeeper, or through any
 * broker given with `--bootstrap`.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
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
  /** How a first contact refused everywhere ends (the CLI's commands set it); without it, it retries to the deadline. */
  firstContact?: FirstContact;
}

/**
 * A client's first contact with the cluster: when every address it was given
 * refuses the connection, nothing listens there, and retrying to the
 * deadline (10 s) only delays the advice. Such a first contact gives up once
 * it has been refused for `graceMs`, unless `starting()` says a cluster is on
 * its way (a local `yak cluster` that has not opened its ports yet). Silence
 * (a time-out), a cluster without a leader yet, and anything after the first
 * contact succeeded (a cluster restarting under a running client) keep the
 * whole deadline.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { retryUntil, type FirstContact } from "./discovery.ts";
 * import { monotonicMs } from "../clock.ts";
 * import { YakError } from "../errors.ts";
 * const first: FirstContact = { graceMs: 300, reached: false };
 * const started = monotonicMs();
 * const refused = () => Promise.reject(new YakError("CONNECTION", "cannot connect", { refused: true }));
 * await assert.rejects(retryUntil(started + 10_000, refused, undefined, first), /is the cluster running\?/);
 * assert.ok(monotonicMs() - started < 1000);
 * ```
 */
export interface FirstContact {
  /** How long a first contact refused everywhere keeps trying. */
  graceMs: number;
  /** Whether a cluster is starting where the client looks (then refusals are waited out to the deadline). */
  starting?: () => Promise<boolean>;
  /** Set once any call with this first contact reached the cluster. */
  reached: boolean;
}

/** The leader as discovery found it. */
export interface LeaderAddress extends Address {
  id: number;
  epoch: number;
}

/** The advice every "cannot reach the cluster" error ends with. */
export const CLUSTER_HINT =
  "is the cluster running? start one with 'yak cluster', or name its zookeeper with --zookeeper HOST:PORT " +
  "(or $YAK_ZOOKEEPER)";

function addr(a: Address): string {
  return `${a.host}:${a.port}`;
}

/**
 * Asks the zookeeper at `zk`, checking that it is one: a broker answers
 * `metadata` too, with other fields (the CLI once said `brokers is not
 * iterable`). A broker there is a non-retriable INVALID_ARGUMENT that names
 * the flag to use instead; a lost connection says it was the zookeeper.
 *
 * @example
 * ```ts ignore
 * const { lease, brokers } = await askZookeeper({ host: "127.0.0.1", port: 2181 }, { type: "status" });
 * ```
 */
export async function askZookeeper(
  zk: Address,
  body: Record<string, unknown>,
  timeoutMs = 3000,
): Promise<Record<string, unknown>> {
  let res: Record<string, unknown>;
  try {
    res = await ask(zk, body, timeoutMs);
  } catch (err) {
    const yerr = toYakError(err);
    if (yerr.data?.unresolved === true) {
      const why = yerr.message.match(/ \((.*)\)$/)?.[1];
      throw new YakError(
        "CONNECTION",
        `cannot resolve the zookeeper's host '${zk.host}'${why ? ` (${why})` : ""}`,
        yerr.data,
      );
    }
    if (yerr.code === "CONNECTION" && /^cannot connect to /.test(yerr.message)) {
      const why = yerr.message.match(/ \((.*)\)$/)?.[1];
      throw new YakError(
        "CONNECTION",
        `cannot connect to the zookeeper at ${addr(zk)}${why ? ` (${why})` : ""}`,
        yerr.data,
      );
    }
    if (yerr.code === "CONNECTION" || yerr.code === "TIMEOUT") {
      throw new YakError(
        yerr.code,
        `the zookeeper at ${addr(zk)} does not answer (nothing within ${Math.round(timeoutMs)} ms)`,
      );
    }
    if (yerr.code === "UNKNOWN_REQUEST" || yerr.code === "INVALID_REQUEST") throw notZookeeper(zk, null);
    if (yerr.data?.kafkaPort === true) {
      // A broker's Kafka port named as the zookeeper: both ways out.
      throw new YakError(yerr.code, `${yerr.message}, or --zookeeper with the zookeeper's address`, yerr.data);
    }
    throw yerr;
  }
  if (typeof res.lease !== "object" || res.lease === null || !Array.isArray(res.brokers)) {
    throw notZookeeper(zk, typeof res.brokerId === "number" ? res.brokerId : null);
  }
  return res;
}

function notZookeeper(zk: Address, brokerId: number | null): YakError {
  return new YakError(
    "INVALID_ARGUMENT",
    brokerId !== null
      ? `${addr(zk)} is a broker (broker ${brokerId}), not the zookeeper: use --bootstrap ${addr(zk)}, ` +
        `or --zookeeper with the zookeeper's address`
      : `${addr(zk)} does not answer as a yak zookeeper; check --zookeeper`,
  );
}

/**
 * Asks a broker named by `--bootstrap`, checking that it is one: the
 * zookeeper answers `metadata` with other fields.
 */
export async function askBroker(
  given: Address,
  body: Record<string, unknown>,
  timeoutMs = 3000,
): Promise<Record<string, unknown>> {
  let broker = given;
  let res: Record<string, unknown>;
  try {
    res = await ask(broker, body, timeoutMs);
  } catch (err) {
    // A broker's Kafka port (kafka-topics.sh's --bootstrap-server habit): it names its native port, asked instead.
    const native = nativeAddressOf(err);
    if (native === null) throw err;
    broker = native;
    res = await ask(broker, body, timeoutMs);
  }
  if (typeof res.brokerId !== "number") {
    throw new YakError(
      "INVALID_ARGUMENT",
      res.lease !== undefined
        ? `${addr(broker)} is the zookeeper, not a broker: use --zookeeper ${addr(broker)}`
        : `${addr(broker)} does not answer as a yak broker; check --bootstrap`,
    );
  }
  return res;
}

/**
 * The native address a broker's Kafka port answered a yak tool with (see
 * src/kafka/server.ts), or null when `err` is no such answer.
 */
export function nativeAddressOf(err: unknown): Address | null {
  const data = err instanceof YakError ? err.data : undefined;
  if (data?.kafkaPort !== true || typeof data.nativeHost !== "string" || typeof data.nativePort !== "number") {
    return null;
  }
  return { host: data.nativeHost, port: data.nativePort };
}

/**
 * Asks the zookeeper (or each bootstrap broker in turn) who leads. Throws
 * NO_LEADER when the cluster has none, CONNECTION when nobody answers,
 * INVALID_ARGUMENT when `--zookeeper` names a broker (or the reverse).
 *
 * @example
 * ```ts ignore
 * import { findLeader } from "./discovery.ts";
 * const leader = await findLeader({ zookeeper: { host: "127.0.0.1", port: 2181 } });
 * ```
 */
export async function findLeader(
  boot: Bootstrap,
  timeoutMs = 3000,
): Promise<LeaderAddress> {
  const errors: YakError[] = [];
  if (boot.brokers && boot.brokers.length > 0) {
    for (const broker of boot.brokers) {
      try {
        const meta = await askBroker(broker, { type: "metadata" }, timeoutMs);
        const leader = meta.leader as LeaderAddress | null;
        if (leader) return leader;
        errors.push(new YakError("NO_LEADER", `broker ${meta.brokerId} at ${addr(broker)} knows no leader`));
      } catch (err) {
        const yerr = toYakError(err);
        if (!isRetriable(yerr)) throw yerr;
        errors.push(yerr);
      }
    }
    // Connection errors first: they are what to fix.
    const reached = errors.every((e) => e.code !== "CONNECTION");
    throw new YakError(
      reached ? "NO_LEADER" : "CONNECTION",
      boot.brokers.length === 1
        ? errors[0].message
        : `no bootstrap broker ${reached ? "named a leader" : "answers"} (${errors.map((e) => e.message).join("; ")})`,
      everyRefused(errors),
    );
  }
  const zk = boot.zookeeper ?? { host: "127.0.0.1", port: 2181 };
  const meta = await askZookeeper(zk, { type: "metadata" }, timeoutMs);
  const lease = meta.lease as Lease;
  if (lease.leaderId === null) {
    throw new YakError(
      "NO_LEADER",
      `the zookeeper at ${addr(zk)} names no leader right now (is any in-sync broker running?)`,
    );
  }
  return {
    id: lease.leaderId,
    host: lease.host,
    port: lease.port,
    epoch: lease.epoch,
  };
}

/** `{refused: true}` when every address refused the connection (nothing listens at any), else undefined. */
function everyRefused(errors: readonly YakError[]): { refused: true; unresolved?: true } | undefined {
  if (errors.length === 0 || !errors.every((e) => e.data?.refused === true)) return undefined;
  // Every name unresolved: the advice is the names, not a cluster to start.
  return errors.every((e) => e.data?.unresolved === true) ? { refused: true, unresolved: true } : { refused: true };
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
 * The error a client gives up with at its deadline: a connection error gets
 * the one piece of advice (is the cluster running?), said once.
 */
export function giveUp(err: YakError, waitedMs: number): YakError {
  if (err.code !== "CONNECTION" && err.code !== "TIMEOUT") return err;
  const tried = `tried for ${Math.round(waitedMs / 1000)} s`;
  // One parenthesis: "(connection refused; tried for 10 s)", not "(connection refused) (tried for 10 s)".
  const message = waitedMs < 1000
    ? err.message
    : err.message.endsWith(")")
    ? `${err.message.slice(0, -1)}; ${tried})`
    : `${err.message} (${tried})`;
  const hint = err.data?.unresolved === true ? "check the host name" : CLUSTER_HINT;
  // Marked, so callers with the same deadline do not retry (and say) it again.
  return new YakError(err.code, `${message}; ${hint}`, { ...err.data, gaveUp: true });
}

/**
 * Retries `fn` on retriable errors (a lost connection, no leader yet) with
 * backoff until `deadline` (on the monotonic clock, `monotonicMs`), telling `onRetry` why.
 *
 * @example
 * ```ts ignore
 * const res = await retryUntil(monotonicMs() + 10_000, () => askZookeeper(zk, { type: "status" }));
 * ```
 */
export async function retryUntil<T>(
  deadline: number,
  fn: (timeoutMs: number) => Promise<T>,
  onRetry?: (why: string) => void,
  firstContact?: FirstContact,
): Promise<T> {
  const started = monotonicMs();
  let delayMs = 50;
  // Whether every attempt so far was refused at every address: nothing listens (see FirstContact).
  let refusedOnly = firstContact !== undefined && !firstContact.reached;
  while (true) {
    try {
      const value = await fn(Math.max(500, Math.min(3000, deadline - monotonicMs())));
      if (firstContact) firstContact.reached = true;
      return value;
    } catch (err) {
      const yerr = toYakError(err);
      if (!isRetriable(yerr)) throw yerr;
      if (monotonicMs() + delayMs > deadline) throw giveUp(yerr, monotonicMs() - started);
      refusedOnly &&= yerr.data?.refused === true;
      if (refusedOnly && monotonicMs() + delayMs - started > firstContact!.graceMs) {
        if (!(await firstContact!.starting?.())) throw giveUp(yerr, monotonicMs() - started);
        refusedOnly = false; // a cluster is starting there: its ports open soon, the deadline stands
      }
      // Within the grace nothing is said: the answer (nothing listens) comes in a moment.
      if (!refusedOnly) onRetry?.(yerr.message);
      await new Promise((r) => setTimeout(r, delayMs));
      delayMs = Math.min(500, delayMs * 2);
    }
  }
}

/**
 * Connects to the current leader, rediscovering and retrying retriable
 * failures until `deadline` (on the monotonic clock, `monotonicMs`).
 *
 * @example
 * ```ts ignore
 * import { monotonicMs } from "../clock.ts";
 * import { connectLeader } from "./discovery.ts";
 * const { conn, leader } = await connectLeader({}, monotonicMs() + 10_000);
 * ```
 */
export async function connectLeader(
  boot: Bootstrap,
  deadline: number,
  onRetry?: (why: string) => void,
): Promise<{ conn: Connection; leader: LeaderAddress }> {
  return await retryUntil(
    deadline,
    async (timeoutMs) => {
      const leader = await findLeader(boot, timeoutMs);
      try {
        const conn = await Connection.open(leader.host, leader.port, {
          connectTimeoutMs: Math.min(timeoutMs, 3000),
        });
        return { conn, leader };
      } catch (err) {
        throw leaderUnreachable(leader, toYakError(err));
      }
    },
    onRetry,
    boot.firstContact,
  );
}

/**
 * The leader discovery named cannot be reached: in a failover the lease
 * still names the dead leader until the zookeeper misses its heartbeats, so
 * the error says it is gone and a new leader is awaited, rather than naming
 * it the leader. Not `refused`: the cluster answered.
 */
function leaderUnreachable(leader: LeaderAddress, err: YakError): YakError {
  if (err.code !== "CONNECTION") return err;
  const why = err.message.match(/ \((.*)\)$/)?.[1] ?? err.message;
  return new YakError(
    "CONNECTION",
    `broker ${leader.id} at ${leader.host}:${leader.port}, the leader of epoch ${leader.epoch}, is unreachable ` +
      `(${why}); no new leader is known yet`,
  );
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
  const brokers = boot.brokers;
  return await retryUntil(
    deadline,
    async (timeoutMs) => {
      const errors: YakError[] = [];
      for (const broker of brokers) {
        try {
          return await openBroker(broker, timeoutMs);
        } catch (err) {
          const yerr = toYakError(err);
          if (!isRetriable(yerr)) throw yerr;
          errors.push(yerr);
        }
      }
      const messages = errors.map((e) => e.message);
      throw new YakError(
        "CONNECTION",
        brokers.length === 1 ? messages[0] : `no bootstrap broker answers (${messages.join("; ")})`,
        everyRefused(errors),
      );
    },
    onRetry,
    boot.firstContact,
  );
}

/**
 * A connection to the broker at `broker`, checked to be one (the zookeeper
 * accepts connections too), or to the native port its Kafka port names.
 */
async function openBroker(broker: Address, timeoutMs: number, followKafkaPort = true): Promise<Connection> {
  const conn = await Connection.open(broker.host, broker.port, { connectTimeoutMs: Math.min(timeoutMs, 2000) });
  try {
    const meta = await conn.request({ type: "metadata" }, timeoutMs);
    if (typeof meta.brokerId !== "number") await askBroker(broker, { type: "metadata" }, timeoutMs);
    return conn;
  } catch (err) {
    conn.close();
    const native = followKafkaPort ? nativeAddressOf(err) : null;
    if (native === null) throw err;
    return await openBroker(native, timeoutMs, false);
  }
}
