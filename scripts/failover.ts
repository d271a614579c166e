/**
 * `deno task failover`: how long a leader's death interrupts writes. Starts a
 * real zookeeper and 3 brokers, then, run after run, SIGKILLs the leader and
 * times (a) the kill to the lease rewrite and (b) the kill to the first record
 * acknowledged (acks=all) by the new leader. Prints median and worst.
 *
 * deno task failover [--runs 5] [--heartbeat-ms 250] [--session-timeout-ms 1000] [--out FILE]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { findLeader } from "../src/client/discovery.ts";
import { Connection } from "../src/protocol/connection.ts";
import { TestCluster } from "../tests/harness.ts";

/** Times of one failover, in ms from the kill. */
export interface FailoverRun {
  killToLeaseMs: number;
  killToAckMs: number;
  newLeader: number;
}

/** Median and worst of a list. */
export function summarize(values: number[]): { median: number; worst: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  return { median, worst: sorted[sorted.length - 1] };
}

/** Sends one record with acks=all to whoever leads; resolves with the leader's id, or throws. */
async function probe(cluster: TestCluster, topic: string): Promise<number> {
  const leader = await findLeader({
    zookeeper: { host: "127.0.0.1", port: cluster.zkPort },
  }, 500);
  const conn = await Connection.open(leader.host, leader.port, {
    connectTimeoutMs: 500,
  });
  try {
    await conn.request({
      type: "produce",
      topic,
      partition: 0,
      acks: "all",
      records: [{ v: "probe" }],
    }, 3000);
    return leader.id;
  } finally {
    conn.close();
  }
}

/**
 * Kills the leader `runs` times (restarting it in between) and times each failover.
 *
 * @example
 * ```ts ignore
 * const runs = await measureFailover(cluster, 3);
 * ```
 */
export async function measureFailover(
  cluster: TestCluster,
  runs: number,
  topic = "failover-probe",
): Promise<FailoverRun[]> {
  const results: FailoverRun[] = [];
  await probe(cluster, topic);
  for (let run = 0; run < runs; run++) {
    const n = cluster.brokers.size;
    const before = await cluster.waitFor(
      (l) => l.leaderId !== null && l.isr.length === n,
      30_000,
    );
    const victim = before.leaderId!;
    const proc = cluster.brokers.get(victim)!;
    const killedAt = Date.now();
    const t0 = performance.now();
    proc.kill("SIGKILL");
    // (b): keep probing; the first success from another broker is the first ack of the new leader.
    let killToAckMs = NaN;
    let newLeader = -1;
    while (performance.now() - t0 < 30_000) {
      try {
        const id = await probe(cluster, topic);
        if (id !== victim) {
          killToAckMs = performance.now() - t0;
          newLeader = id;
          break;
        }
      } catch { /* no leader yet, or the old one: try again */ }
      await new Promise((r) => setTimeout(r, 5));
    }
    // (a): the lease records when the zookeeper rewrote it.
    const after = await cluster.waitFor((l) => l.epoch > before.epoch, 30_000);
    results.push({
      killToLeaseMs: after.issuedAt - killedAt,
      killToAckMs,
      newLeader,
    });
    await proc.status;
    await cluster.startBroker(victim);
  }
  return results;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runs: { type: "string", default: "5" },
      "heartbeat-ms": { type: "string" },
      "session-timeout-ms": { type: "string" },
      out: { type: "string" },
    },
  });
  const cluster = await TestCluster.start({
    heartbeatMs: values["heartbeat-ms"] ? Number(values["heartbeat-ms"]) : undefined,
    sessionTimeoutMs: values["session-timeout-ms"] ? Number(values["session-timeout-ms"]) : undefined,
  });
  try {
    const runs = await measureFailover(cluster, Number(values.runs));
    console.log(
      "run  kill->lease rewrite (ms)  kill->first ack by new leader (ms)  new leader",
    );
    runs.forEach((r, i) =>
      console.log(
        `${String(i + 1).padStart(3)}  ${String(r.killToLeaseMs).padStart(24)}  ${
          r.killToAckMs.toFixed(0).padStart(34)
        }  ${r.newLeader}`,
      )
    );
    const lease = summarize(runs.map((r) => r.killToLeaseMs));
    const ack = summarize(runs.map((r) => r.killToAckMs));
    console.log(
      `kill->lease: median ${lease.median.toFixed(0)} ms, worst ${lease.worst.toFixed(0)} ms`,
    );
    console.log(
      `kill->first ack: median ${ack.median.toFixed(0)} ms, worst ${ack.worst.toFixed(0)} ms (aim: < 1500 ms median)`,
    );
    if (values.out) {
      await Deno.writeTextFile(
        values.out,
        JSON.stringify({ runs, lease, ack }, null, 2) + "\n",
      );
    }
  } finally {
    await cluster.stop();
  }
}
