/**
 * `yak status`: brokers, leader, epoch, topics, offsets, each replica's lag,
 * groups with their lag, and registered clients, in one view.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { answered, askZookeeper, type ClusterStatus, gatherStatus } from "../client/cluster_status.ts";
import { toYakError, YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import { bootstrapOf, connectTimeoutOf, helpRequested, parse, retryNotice, text } from "./args.ts";
import { table } from "./table.ts";

const USAGE = `
yak status [--topic T] [--watch] [--json] [--zookeeper HOST:PORT] [--connect-timeout-ms 10000]

Asks the zookeeper for brokers and the lease, then every broker for its own
view: topics, partitions (log start, log end, high watermark), each replica's
lag in records, groups with per-partition lag, and clients.

A broker is 'alive' (answers), 'not answering' (registered, or its port takes
connections, but no reply: busy, cut off, or paused), 'paused' (its process
on this machine is stopped, e.g. SIGSTOP) or 'dead' (nothing listens, or its
process is gone). A replica that does not answer shows the position the
leader last saw it at, marked '*'.
--topic shows one topic (and the groups reading it); --watch redraws every
second until Ctrl-C; --json prints the same as JSON (what the console's
GET /api/status returns).
`;

/** How long each broker has to answer: one that does not is reported, not waited for. */
const BROKER_ANSWER_MS = 1500;

/** The status, gathered as the console gathers it (src/client/cluster_status.ts). */
function snapshot(values: Record<string, unknown>, deadline: number): Promise<ClusterStatus> {
  const zk = bootstrapOf(values as Parameters<typeof bootstrapOf>[0]).zookeeper!;
  return gatherStatus(askZookeeper(zk, deadline, retryNotice("status", false)), BROKER_ANSWER_MS);
}

function ago(ms: number): string {
  return ms < 1000
    ? `${ms} ms ago`
    : ms < 120_000
    ? `${(ms / 1000).toFixed(1)} s ago`
    : `${Math.round(ms / 60_000)} min ago`;
}

/** The text view: aligned tables. */
// deno-lint-ignore yak/max-function-lines
export function renderStatus(s: ClusterStatus, topicFilter?: string): string {
  const out: string[] = [];
  const { lease } = s;
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
  const views = s.views.filter(answered);
  const leaderView = views.find((v) => v.brokerId === lease.leaderId) ?? views[0];
  if (!leaderView) {
    out.push("", "no broker answered: topics unknown");
    return out.join("\n");
  }
  const followers = leaderView.replication?.followers ?? [];
  const ids = s.brokers.map((b) => b.id);
  const topics = (leaderView.topics ?? []).filter((t) => topicFilter === undefined || t.name === topicFilter);
  if (topicFilter !== undefined && topics.length === 0) {
    out.push("", `no topic '${topicFilter}'`);
  } else if (topics.length > 0) {
    out.push("");
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
        rows.push([
          t.name,
          p.partition,
          p.logStartOffset ?? 0,
          p.logEndOffset,
          p.highWatermark,
          p.bytes,
          ...lags,
        ]);
      }
    }
    out.push(table(rows));
    out.push(
      `(lag: records behind the leader's log end${
        anyLastKnown ? "; * = as the leader last saw a replica that does not answer" : ""
      })`,
    );
  }
  const damage = views.flatMap((v) => (v.damage ?? []).map((d) => ({ broker: v.brokerId, ...d })));
  if (damage.length > 0) {
    out.push("", "damaged records found (checksums):");
    out.push(table([
      ["BROKER", "PARTITION", "OFFSET", "FOUND BY", "STATE", "SEGMENT"],
      ...damage.map((d) => [
        d.broker,
        d.partition,
        d.offset,
        d.found === "open" ? "start-up check" : d.found === "read" ? "a read" : "scrubber",
        d.healed ? "healed" : "not healed yet",
        d.segment,
      ]),
    ]));
  }
  const metaLog = leaderView.metadataLog;
  if (metaLog && topicFilter === undefined) {
    out.push(`metadata log (__cluster): ${metaLog.logStart}..${metaLog.logEnd}, ${metaLog.bytes} bytes`);
  }
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
  if (groupRows.length > 0) {
    out.push("");
    out.push(table([["GROUP", "STATE", "TOPIC", "PARTITION", "COMMITTED", "LAG", "MEMBER"], ...groupRows]));
  }
  if (memberRows.length > 0) {
    out.push("");
    out.push(table([["GROUP", "MEMBER", "PARTITIONS"], ...memberRows]));
  }
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

/** Runs `yak status`. */
// deno-lint-ignore yak/max-function-lines
export async function statusCommand(args: string[]): Promise<number> {
  const { values } = parse("status", args, {
    zookeeper: { type: "string" },
    "connect-timeout-ms": { type: "string" },
    topic: { type: "string" },
    watch: { type: "boolean" },
    json: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const topic = text(values, "topic") === undefined ? undefined : checkTopicName(text(values, "topic"));
  const connectMs = connectTimeoutOf(values);
  const show = (s: ClusterStatus) => {
    if (values.json) {
      const views = topic === undefined
        ? s.views
        : s.views.map((v) => answered(v) ? { ...v, topics: v.topics.filter((t) => t.name === topic) } : v);
      console.log(JSON.stringify({ lease: s.lease, brokers: s.brokers, views }, null, values.watch ? 0 : 2));
      return;
    }
    console.log(renderStatus(s, topic));
  };
  if (!values.watch) {
    const s = await snapshot(values, monotonicMs() + connectMs);
    const known = s.views.find(answered)?.topics;
    if (topic !== undefined && known && !known.some((t) => t.name === topic)) {
      throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    }
    show(s);
    return 0;
  }
  let stop = false;
  let wake = () => {};
  const onSignal = () => {
    stop = true;
    wake();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const terminal = Deno.stdout.isTerminal() && !values.json;
  try {
    while (!stop) {
      let text: string;
      try {
        const s = await snapshot(values, monotonicMs() + connectMs);
        if (values.json) {
          show(s);
          text = "";
        } else text = renderStatus(s, topic);
      } catch (err) {
        const yerr = toYakError(err);
        if (yerr.code === "INVALID_ARGUMENT") throw yerr;
        text = `yak status: ${yerr.message}`;
      }
      if (text) {
        // On a terminal the view is redrawn in place; in a pipe, views follow one another.
        if (terminal) console.log(`\x1b[H\x1b[2J${new Date().toISOString()}  (Ctrl-C to stop)\n${text}`);
        else console.log(`${new Date().toISOString()}\n${text}\n`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  return 0;
}
