/**
 * The text view of `yak status`: aligned tables of brokers, partitions with
 * each replica's lag, damaged records, fenced partitions, groups and clients.
 *
 * @module
 */
import { answered, type ClusterStatus } from "../client/cluster_status.ts";
import type { BrokerStatus } from "../protocol/status.ts";
import { table } from "./table.ts";

function ago(ms: number): string {
  return ms < 1000
    ? `${ms} ms ago`
    : ms < 120_000
    ? `${(ms / 1000).toFixed(1)} s ago`
    : `${Math.round(ms / 60_000)} min ago`;
}

/**
 * The text view: aligned tables, of one topic (and what reads it) when
 * `topicFilter` names one.
 *
 * @example
 * ```ts ignore
 * import { renderStatus } from "./render_status.ts";
 * console.log(renderStatus(await gatherStatus(zookeeper, 1500), "orders"));
 * ```
 */
export function renderStatus(s: ClusterStatus, topicFilter?: string): string {
  const out = brokerLines(s);
  const views = s.views.filter(answered);
  const leaderView = views.find((v) => v.brokerId === s.lease.leaderId) ?? views[0];
  if (!leaderView) {
    out.push("", "no broker answered: topics unknown");
    return out.join("\n");
  }
  out.push(...partitionLines(s, views, leaderView, topicFilter));
  out.push(...damageLines(views));
  out.push(...fencedLines(views));
  out.push(...transactionLines(leaderView, topicFilter));
  const metaLog = leaderView.metadataLog;
  if (metaLog && topicFilter === undefined) {
    out.push(`metadata log (__cluster): ${metaLog.logStart}..${metaLog.logEnd}, ${metaLog.bytes} bytes`);
  }
  out.push(...groupLines(leaderView, topicFilter));
  const clients = views.flatMap((v) =>
    v.clients
      .filter((c) => topicFilter === undefined || c.topic === topicFilter)
      .map((c) => [c.role, c.client, c.topic, c.group ?? "-", v.brokerId])
  );
  if (clients.length > 0) {
    out.push("");
    out.push(table([["CLIENT", "ID", "TOPIC", "GROUP", "VIA BROKER"], ...clients]));
  }
  return out.join("\n");
}

/** The lease, and a row per broker. */
function brokerLines(s: ClusterStatus): string[] {
  const { lease } = s;
  const out: string[] = [];
  out.push(`leader: ${lease.leaderId ?? "none"}  epoch: ${lease.epoch}  in sync: [${lease.isr.join(", ")}]`);
  out.push("");
  out.push(table([
    ["BROKER", "ADDRESS", "STATE", "ROLE", "HEARTBEAT", "LOG END TOTAL"],
    ...s.brokers.map((b) => [
      b.id,
      `${b.host}:${b.port}`,
      b.state === "alive" && !b.alive ? "alive (zookeeper: dead)" : b.state,
      b.id === lease.leaderId ? "leader" : lease.isr.includes(b.id) ? "follower" : "out of sync",
      ago(b.lastSeenMsAgo),
      b.logEndTotalNow ?? `${b.logEndTotal}*`,
    ]),
  ]));
  if (s.brokers.some((b) => b.logEndTotalNow === null)) {
    out.push("(* = from its last heartbeat: it does not answer)");
  }
  return out;
}

/** A row per partition as the leader sees it, with each replica's lag behind it. */
function partitionLines(
  s: ClusterStatus,
  views: BrokerStatus[],
  leaderView: BrokerStatus,
  topicFilter: string | undefined,
): string[] {
  const ids = s.brokers.map((b) => b.id);
  const topics = (leaderView.topics ?? []).filter((t) => topicFilter === undefined || t.name === topicFilter);
  if (topicFilter !== undefined && topics.length === 0) return ["", `no topic '${topicFilter}'`];
  if (topics.length === 0) return [];
  const followers = leaderView.replication?.followers ?? [];
  const rows: (string | number)[][] = [[
    "TOPIC",
    "PARTITION",
    "LOG START",
    "LOG END",
    "HW",
    "BYTES",
    ...ids.map((id) => `LAG@${id}`),
  ]];
  let anyLastKnown = false;
  for (const t of topics) {
    for (const p of t.partitions) {
      const lags = ids.map((id) => {
        const v = views.find((x) => x.brokerId === id);
        const own = v?.topics.find((x) => x.name === t.name)?.partitions[p.partition];
        if (own) return String(Math.max(0, p.logEndOffset - own.logEndOffset));
        // Not answering: where the leader last saw it.
        const seen = followers.find((f) => f.id === id)?.logEnds?.[`${t.name}/${p.partition}`];
        if (seen === undefined) return "-";
        anyLastKnown = true;
        return `${Math.max(0, p.logEndOffset - seen)}*`;
      });
      rows.push([t.name, p.partition, p.logStartOffset ?? 0, p.logEndOffset, p.highWatermark, p.bytes, ...lags]);
    }
  }
  return [
    "",
    table(rows),
    `(lag: records behind the leader's log end${
      anyLastKnown ? "; * = as the leader last saw a replica that does not answer" : ""
    })`,
  ];
}

/** Damaged records every broker that answered found. */
function damageLines(views: BrokerStatus[]): string[] {
  const damage = views.flatMap((v) => (v.damage ?? []).map((d) => ({ broker: v.brokerId, ...d })));
  if (damage.length === 0) return [];
  return [
    "",
    "damaged records found (checksums):",
    table([
      ["BROKER", "PARTITION", "OFFSET", "FOUND BY", "STATE", "SEGMENT"],
      ...damage.map((d) => [
        d.broker,
        d.partition,
        d.offset,
        d.found === "open" ? "start-up check" : d.found === "read" ? "a read" : "scrubber",
        d.healed ? "healed" : "not healed yet",
        d.segment,
      ]),
    ]),
  ];
}

/** Partitions fenced on every broker that answered: they answer STORAGE until that broker restarts. */
function fencedLines(views: BrokerStatus[]): string[] {
  const fenced = views.flatMap((v) => (v.fenced ?? []).map((f) => ({ broker: v.brokerId, ...f })));
  if (fenced.length === 0) return [];
  return [
    "",
    "fenced partitions (an I/O error left the log uncertain; restart the broker to recover it):",
    table([
      ["BROKER", "PARTITION", "SINCE", "WHAT FAILED", "ERROR"],
      ...fenced.map((f) => [f.broker, f.partition, new Date(f.at).toISOString(), f.failed, f.error]),
    ]),
  ];
}

/** The leader's open transactions (of the topic, with a filter), each with how long it has been open. */
function transactionLines(leaderView: BrokerStatus, topicFilter: string | undefined): string[] {
  const open = (leaderView.transactions ?? [])
    .filter((t) => topicFilter === undefined || t.partitions.some((p) => p.startsWith(`${topicFilter}/`)));
  if (open.length === 0) return [];
  const now = Date.now();
  return [
    "",
    "open transactions (read_committed consumers of their partitions wait for them):",
    table([
      ["TRANSACTIONAL ID", "STATE", "PRODUCER", "OPEN FOR", "TIMEOUT", "PARTITIONS"],
      ...open.map((t) => [
        t.id,
        t.state,
        `${t.producer} epoch ${t.epoch}`,
        `${(Math.max(0, now - t.startedAt) / 1000).toFixed(1)} s`,
        `${(t.timeoutMs / 1000).toFixed(1)} s`,
        t.partitions.join(","),
      ]),
    ]),
  ];
}

/** A row per partition a group has a commit in, and one per member. */
function groupLines(leaderView: BrokerStatus, topicFilter: string | undefined): string[] {
  const groups = leaderView.groups ?? {};
  const members = leaderView.groupMembers ?? [];
  const names = [...new Set([...Object.keys(groups), ...members.map((m) => m.group)])].sort();
  const groupRows: (string | number)[][] = [];
  const memberRows: (string | number)[][] = [];
  for (const g of names) {
    const m = members.find((x) => x.group === g);
    const state = m && m.members.length > 0 ? `${m.state}, generation ${m.generation}` : (m?.state ?? "Empty");
    for (const member of m?.members ?? []) {
      const parts = Object.entries(member.partitions)
        .filter(([t]) => topicFilter === undefined || t === topicFilter)
        .map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ");
      memberRows.push([g, member.clientId, parts || "-"]);
    }
    for (const [t, byP] of Object.entries(groups[g] ?? {})) {
      if (topicFilter !== undefined && t !== topicFilter) continue;
      for (const [p, x] of Object.entries(byP)) {
        const owner = m?.members.find((mm) => mm.partitions[t]?.includes(Number(p)))?.clientId ?? "-";
        groupRows.push([g, state, t, p, x.committed, x.lag, owner]);
      }
    }
  }
  const out: string[] = [];
  if (groupRows.length > 0) {
    out.push("", table([["GROUP", "STATE", "TOPIC", "PARTITION", "COMMITTED", "LAG", "MEMBER"], ...groupRows]));
  }
  if (memberRows.length > 0) out.push("", table([["GROUP", "MEMBER", "PARTITIONS"], ...memberRows]));
  return out;
}
