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
import { type Address, ask } from "./discovery.ts";

/**
 * How a broker is doing: `alive` (registered and answering), `paused`
 * (its port takes connections but nothing answers: stopped, frozen, or cut
 * off), `dead` (its port refuses connections, or the zookeeper gave up on it
 * and it does not answer either).
 */
export type BrokerState = "alive" | "paused" | "dead";

/** A broker as the zookeeper sees it, with the state its own answer (or silence) adds. */
export type BrokerEntry = BrokerInfo & { state: BrokerState };

/** A broker that did not answer `status`, and why. */
export type BrokerUnreachable = { brokerId: number; error: string };

/** A broker's answer to `status`, or why there is none. */
export type BrokerView = BrokerStatus | BrokerUnreachable;

/** The zookeeper's part: the lease and the members. */
export type ZookeeperStatus = { lease: Lease; brokers: BrokerInfo[] };

/** Everything `yak status --json` prints. */
export type ClusterStatus = { lease: Lease; brokers: BrokerEntry[]; views: BrokerView[] };

/** What asking one broker found: an answer, a refused connection, or silence. */
export type Probe =
  | { outcome: "answered"; view: BrokerStatus }
  | { outcome: "refused" | "silent"; view: BrokerUnreachable };

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
 * import { brokerState } from "./cluster_status.ts";
 * brokerState(true, "silent"); // "paused"
 * brokerState(true, "refused"); // "dead": gone before the zookeeper noticed
 * ```
 */
export function brokerState(aliveAtZookeeper: boolean, probe: Probe["outcome"] | undefined): BrokerState {
  if (probe === "silent") return "paused";
  if (probe === "refused") return "dead";
  return aliveAtZookeeper ? "alive" : "dead";
}

/** Asks every broker the zookeeper knows (dead ones too, to tell paused from gone), all at once. */
export async function probeBrokers(brokers: readonly BrokerInfo[], timeoutMs: number): Promise<Map<number, Probe>> {
  const probes = await Promise.all(brokers.map((b) => probeBroker(b, timeoutMs)));
  return new Map(brokers.map((b, i) => [b.id, probes[i]]));
}

/** The zookeeper's part and the probes as one status. */
export function assembleStatus(zk: ZookeeperStatus, probes: ReadonlyMap<number, Probe>): ClusterStatus {
  const brokers = zk.brokers.map((b) => ({ ...b, state: brokerState(b.alive, probes.get(b.id)?.outcome) }));
  const views = zk.brokers.flatMap((b) => {
    const p = probes.get(b.id);
    // A broker the zookeeper calls dead and that is not there either adds no view.
    return p && (b.alive || p.outcome === "answered") ? [p.view] : [];
  });
  return { lease: zk.lease, brokers, views };
}

/**
 * Gathers the status: the zookeeper's part from `zookeeper` (a request, or
 * the zookeeper's own memory in its process), then every broker at once.
 *
 * @example
 * ```ts ignore
 * const status = await gatherStatus(askZookeeper({ host: "127.0.0.1", port: 2181 }));
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

/** The zookeeper's part, asked over the network. */
export function askZookeeper(zk: Address, timeoutMs = 3000): () => Promise<ZookeeperStatus> {
  return async () => {
    const meta = await ask(zk, { type: "status" }, timeoutMs);
    return { lease: meta.lease as Lease, brokers: meta.brokers as BrokerInfo[] };
  };
}
