/**
 * `yak status`: brokers, leader, epoch, topics, offsets, replicas in sync,
 * registered clients, and consumer lag, in one view.
 *
 * @module
 */
import { ask } from "../client/discovery.ts";
import { toYakError } from "../errors.ts";
import type { ClientInfo } from "../broker/context.ts";
import type { BrokerInfo, Lease } from "../protocol/messages.ts";
import { bootstrapOf, helpRequested, parse } from "./args.ts";

const USAGE = `
yak status [--json] [--zookeeper HOST:PORT]

Asks the zookeeper for brokers and the lease, then every live broker for its
view: topics, partitions (log end, high watermark), clients, groups and lag.
`;

/** Runs `yak status`. */
export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parse("status", args, {
    zookeeper: { type: "string" },
    json: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const zk = bootstrapOf(values).zookeeper!;
  const meta = await ask(zk, { type: "status" });
  const lease = meta.lease as Lease;
  const brokers = meta.brokers as BrokerInfo[];
  const views: Record<string, unknown>[] = [];
  for (const b of brokers) {
    if (!b.alive) continue;
    try {
      views.push(await ask(b, { type: "status" }, 2000));
    } catch (err) {
      views.push({ brokerId: b.id, error: toYakError(err).message });
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ lease, brokers, views }, null, 2));
    return 0;
  }
  console.log(
    `leader: ${lease.leaderId ?? "none"}  epoch: ${lease.epoch}  in sync: [${lease.isr.join(", ")}]`,
  );
  console.log("brokers:");
  for (const b of brokers) {
    const role = b.id === lease.leaderId ? "leader" : "follower";
    console.log(
      `  ${b.id}  ${b.host}:${b.port}  ${b.alive ? "alive" : "DEAD"}  ${b.alive ? role : ""}  ` +
        `heard ${b.lastSeenMsAgo} ms ago  log end total ${b.logEndTotal}`,
    );
  }
  const leaderView = views.find((v) => v.brokerId === lease.leaderId) ??
    views[0];
  if (!leaderView || leaderView.error) return 0;
  console.log("topics (leader's view; hw = high watermark):");
  for (
    const t of leaderView.topics as {
      name: string;
      partitions: Record<string, number>[];
    }[]
  ) {
    console.log(`  ${t.name}`);
    for (const p of t.partitions) {
      const replicas = views.map((v) => {
        const vt = (v.topics as
          | { name: string; partitions: Record<string, number>[] }[]
          | undefined)?.find((x) => x.name === t.name);
        return `${v.brokerId}:${vt?.partitions[p.partition]?.logEndOffset ?? "-"}`;
      });
      console.log(
        `    p${p.partition}  start ${p.logStartOffset ?? 0}  end ${p.logEndOffset}  hw ${p.highWatermark}  ` +
          `${p.bytes} bytes  replicas ${replicas.join(" ")}`,
      );
    }
  }
  const metaLog = leaderView.metadataLog as { logStart: number; logEnd: number; bytes: number } | undefined;
  if (metaLog) {
    console.log(`metadata log (__cluster): ${metaLog.logStart}..${metaLog.logEnd}, ${metaLog.bytes} bytes`);
  }
  const groups = leaderView.groups as Record<
    string,
    Record<string, Record<string, { committed: number; lag: number }>>
  >;
  const members = (leaderView.groupMembers ?? []) as {
    group: string;
    state: string;
    generation: number;
    members: { memberId: string; clientId: string; partitions: Record<string, number[]> }[];
  }[];
  const names = [...new Set([...Object.keys(groups), ...members.map((m) => m.group)])].sort();
  if (names.length > 0) console.log("groups:");
  for (const g of names) {
    const m = members.find((x) => x.group === g);
    console.log(`  ${g}: ${m ? `${m.state}, generation ${m.generation}, ${m.members.length} member(s)` : "Empty"}`);
    for (const member of m?.members ?? []) {
      const parts = Object.entries(member.partitions).map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ");
      console.log(`    member ${member.clientId}  ${parts || "no partitions"}`);
    }
    for (const [t, byP] of Object.entries(groups[g] ?? {})) {
      const lag = Object.values(byP).reduce((sum, x) => sum + x.lag, 0);
      const detail = Object.entries(byP).map(([p, x]) => `p${p} committed ${x.committed} lag ${x.lag}`).join(", ");
      console.log(`    ${t}: lag ${lag} (${detail})`);
    }
  }
  const clients = views.flatMap((v) =>
    ((v.clients as ClientInfo[] | undefined) ?? []).map((c) => ({
      ...c,
      broker: v.brokerId,
    }))
  );
  if (clients.length > 0) console.log("clients:");
  for (const c of clients) {
    console.log(
      `  ${c.role} ${c.client} on ${c.topic}${c.group ? ` group ${c.group}` : ""} via broker ${c.broker}`,
    );
  }
  return 0;
}
