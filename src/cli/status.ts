/**
 * `yak status`: brokers, leader, epoch, topics, offsets, replicas in sync,
 * registered clients, and consumer lag, in one view.
 *
 * @module
 */
import { answered, askZookeeper, gatherStatus } from "../client/cluster_status.ts";
import { bootstrapOf, helpRequested, parse } from "./args.ts";

const USAGE = `
yak status [--json] [--zookeeper HOST:PORT]

Asks the zookeeper for brokers and the lease, then every broker for its
view: topics, partitions (log end, high watermark), clients, groups and lag.
A broker is alive, PAUSED (its port takes connections but it does not answer)
or DEAD.
`;

/** Runs `yak status`. */
export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parse("status", args, {
    zookeeper: { type: "string" },
    json: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const status = await gatherStatus(askZookeeper(bootstrapOf(values).zookeeper!));
  const { lease, brokers, views } = status;
  if (values.json) {
    console.log(JSON.stringify(status, null, 2));
    return 0;
  }
  console.log(
    `leader: ${lease.leaderId ?? "none"}  epoch: ${lease.epoch}  in sync: [${lease.isr.join(", ")}]`,
  );
  console.log("brokers:");
  for (const b of brokers) {
    const role = b.id === lease.leaderId ? "leader" : "follower";
    const state = b.state === "alive" ? "alive" : b.state.toUpperCase();
    console.log(
      `  ${b.id}  ${b.host}:${b.port}  ${state}  ${b.state === "alive" ? role : ""}  ` +
        `heard ${b.lastSeenMsAgo} ms ago  log end total ${b.logEndTotal}`,
    );
  }
  const answers = views.filter(answered);
  const leaderView = answers.find((v) => v.brokerId === lease.leaderId) ?? answers[0];
  if (!answered(leaderView)) return 0;
  console.log("topics (leader's view; hw = high watermark):");
  for (const t of leaderView.topics) {
    console.log(`  ${t.name}`);
    for (const p of t.partitions) {
      const replicas = views.map((v) => {
        const vt = answered(v) ? v.topics.find((x) => x.name === t.name) : undefined;
        return `${v.brokerId}:${vt?.partitions[p.partition]?.logEndOffset ?? "-"}`;
      });
      console.log(
        `    p${p.partition}  start ${p.logStartOffset ?? 0}  end ${p.logEndOffset}  hw ${p.highWatermark}  ` +
          `${p.bytes} bytes  replicas ${replicas.join(" ")}`,
      );
    }
  }
  const metaLog = leaderView.metadataLog;
  if (metaLog) {
    console.log(`metadata log (__cluster): ${metaLog.logStart}..${metaLog.logEnd}, ${metaLog.bytes} bytes`);
  }
  const groups = leaderView.groups;
  const members = leaderView.groupMembers ?? [];
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
  const clients = answers.flatMap((v) => v.clients.map((c) => ({ ...c, broker: v.brokerId })));
  if (clients.length > 0) console.log("clients:");
  for (const c of clients) {
    console.log(
      `  ${c.role} ${c.client} on ${c.topic}${c.group ? ` group ${c.group}` : ""} via broker ${c.broker}`,
    );
  }
  return 0;
}
