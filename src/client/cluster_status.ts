/**
 * The cluster's status in one typed value: the zookeeper's lease and members,
 * and every broker's own answer to `status`. `yak status` prints it, `yak
 * status --json` and the console's `GET /api/status` return it as JSON, and
 * the console's live view is built from it; all of them gather it here.
 *
 * @module
 */
import { Connection } from "../protocol/connection.ts";
import { toYakError } from "../errors.ts";
import type { BrokerInfo, Lease } from "../protocol/messages.ts";
import type { BrokerStatus } from "../protocol/status.ts";
import { type Address, askZookeeper as askZookeeperOnce, type FirstContact, retryUntil } from "./discovery.ts";
import { isLocalHost, localProcessState, type ProcessState } from "./process_state.ts";

/**
 * How a broker is doing: `alive` (it answers), `not answering` (registered,
 * or its port takes connections, but no reply: busy, cut off, or paused on
 * another machine), `paused` (its process on this machine is stopped, e.g.
 * SIGSTOP), `dead` (its port refuses connections, its process is gone, or the
 * zookeeper gave up on it before anyone asked).
 */
export type BrokerState = "alive" | "not answering" | "paused" | "dead";

/**
 * A broker as the zookeeper sees it, with the state its own answer (or
 * silence) adds, and its log end total as it reports it now (`null` when it
 * does not answer: `logEndTotal`, from its last heartbeat, is all there is).
 */
export type BrokerEntry = BrokerInfo & { state: BrokerState; logEndTotalNow: number | null };

/** A broker that did not answer `status`, and why (the message starts with its state). */
export type BrokerUnreachable = { brokerId: number; error: string };

/** A broker's answer to `status`, or why there is none. */
export type BrokerView = BrokerStatus | BrokerUnreachable;

/** The zookeeper's part: the lease and the members. */
export type ZookeeperStatus = { lease: Lease; brokers: BrokerInfo[] };

/**
 * Everything `yak status --json` prints and `GET /api/status` returns: the
 * lease, every registered broker, and one view per broker asked (an answer or
 * why there is none, dead brokers included).
 */
export type ClusterStatus = { lease: Lease; brokers: BrokerEntry[]; views: BrokerView[] };

/**
 * What asking one broker found: an answer, a refused connection, or silence;
 * for the last two, what /proc says of its process when it runs on this
 * machine.
 */
export type Probe =
  | { outcome: "answered"; view: BrokerStatus }
  | { outcome: "refused" | "silent"; view: BrokerUnreachable; process?: ProcessState };

/** Whether a view is a broker's answer (not an error). */
export function answered(view: BrokerView | undefined): view is BrokerStatus {
  return view !== undefined && !("error" in view);
}

/**
 * Asks one broker for its status. A connection that opens but gets no answer
 * in time is `silent` (SIGSTOP leaves the port accepting); one refused or
 * dropped is `refused`.
 */
export async function probeBroker(addr: Address & { id: number }, timeoutMs: number): Promise<Probe> {
  let conn: Connection;
  try {
    conn = await Connection.open(addr.host, addr.port, { connectTimeoutMs: timeoutMs });
  } catch (err) {
    // A connect or TLS handshake that timed out, or an auth exchange that got no answer, is silence.
    const e = toYakError(err);
    const outcome = e.code === "TIMEOUT" || e.message.includes(": no answer from ") ? "silent" : "refused";
    return { outcome, view: { brokerId: addr.id, error: e.message } };
  }
  try {
    // The frame's id and ok are the connection's business, not the status.
    const { id: _id, ok: _ok, ...view } = await conn.request({ type: "status" }, timeoutMs);
    return { outcome: "answered", view: view as BrokerStatus };
  } catch (err) {
    const e = toYakError(err);
    return { outcome: e.code === "TIMEOUT" ? "silent" : "refused", view: { brokerId: addr.id, error: e.message } };
  } finally {
    conn.close();
  }
}

/**
 * A broker's state from the zookeeper's word and what asking it found (no
 * probe yet: the zookeeper's word alone).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { brokerState } from "./cluster_status.ts";
 * assert.equal(brokerState(true, { outcome: "silent", process: "stopped" }), "paused");
 * assert.equal(brokerState(true, { outcome: "silent" }), "not answering");
 * assert.equal(brokerState(true, { outcome: "refused" }), "dead"); // gone before the zookeeper noticed
 * ```
 */
export function brokerState(
  aliveAtZookeeper: boolean,
  probe: { outcome: Probe["outcome"]; process?: ProcessState } | undefined,
): BrokerState {
  if (probe === undefined) return aliveAtZookeeper ? "alive" : "dead";
  if (probe.outcome === "answered") return "alive";
  if (probe.process === "stopped") return "paused";
  if (probe.process === "gone" || probe.outcome === "refused") return "dead";
  return "not answering";
}

/**
 * Asks every broker the zookeeper knows (dead ones too, to tell paused from
 * gone), all at once; for one that does not answer and runs on this machine,
 * reads its process state.
 */
export async function probeBrokers(brokers: readonly BrokerInfo[], timeoutMs: number): Promise<Map<number, Probe>> {
  const probes = await Promise.all(brokers.map(async (b): Promise<Probe> => {
    const probe = await probeBroker(b, timeoutMs);
    if (probe.outcome === "answered" || b.pid === undefined || !isLocalHost(b.host)) return probe;
    const process = await localProcessState(b.pid);
    return process === undefined ? probe : { ...probe, process };
  }));
  return new Map(brokers.map((b, i) => [b.id, probes[i]]));
}

/** A broker's log end total as the zookeeper counts it (every partition, the metadata log too). */
function logEndTotalOf(view: BrokerStatus): number {
  const partitions = view.topics.reduce((sum, t) => sum + t.partitions.reduce((s, p) => s + p.logEndOffset, 0), 0);
  return partitions + view.metadataLog.logEnd;
}

/** The zookeeper's part and the probes as one status. */
export function assembleStatus(zk: ZookeeperStatus, probes: ReadonlyMap<number, Probe>): ClusterStatus {
  const brokers: BrokerEntry[] = [];
  const views: BrokerView[] = [];
  for (const b of zk.brokers) {
    const probe = probes.get(b.id);
    const state = brokerState(b.alive, probe);
    // The broker's own figure: heartbeats lag behind it.
    brokers.push({ ...b, state, logEndTotalNow: probe?.outcome === "answered" ? logEndTotalOf(probe.view) : null });
    if (probe?.outcome === "answered") views.push(probe.view);
    else if (probe) views.push({ brokerId: b.id, error: `${state}: ${probe.view.error}` });
  }
  return { lease: zk.lease, brokers, views };
}

/**
 * Gathers the status: the zookeeper's part from `zookeeper` (a request, or
 * the zookeeper's own memory in its process), then every broker at once.
 *
 * @example
 * ```ts ignore
 * const status = await gatherStatus(askZookeeper({ host: "127.0.0.1", port: 2181 }, monotonicMs() + 10_000));
 * console.log(status.lease.leaderId, status.brokers.map((b) => b.state));
 * ```
 */
export async function gatherStatus(
  zookeeper: () => Promise<ZookeeperStatus> | ZookeeperStatus,
  timeoutMs = 2000,
): Promise<ClusterStatus> {
  const zk = await zookeeper();
  return assembleStatus(zk, await probeBrokers(zk.brokers, timeoutMs));
}

/**
 * The zookeeper's part, asked over the network, and asked again (with
 * `onRetry` told why) until `deadline` (wall-clock ms) while it does not answer
 * (a refused first contact ends sooner: see {@link FirstContact}).
 */
export function askZookeeper(
  zk: Address,
  deadline: number,
  onRetry?: (why: string) => void,
  firstContact?: FirstContact,
): () => Promise<ZookeeperStatus> {
  return async () => {
    const meta = await retryUntil(
      deadline,
      (timeoutMs) => askZookeeperOnce(zk, { type: "status" }, timeoutMs),
      onRetry,
      firstContact,
    );
    return { lease: meta.lease as Lease, brokers: meta.brokers as BrokerInfo[] };
  };
}
