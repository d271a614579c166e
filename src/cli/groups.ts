/**
 * `yak groups`: list, describe, reset offsets and delete consumer groups, as
 * kafka-consumer-groups does.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { connectLeader } from "../client/discovery.ts";
import type { Connection } from "../protocol/connection.ts";
import { YakError } from "../errors.ts";
import { checkGroupName, checkTopicName } from "../log/names.ts";
import { bootstrapOf, CLUSTER_FLAGS, connectTimeoutOf, helpRequested, parse, retryNotice, text } from "./args.ts";
import { table } from "./table.ts";

const USAGE = `
yak groups --list [--json]
yak groups --describe G [--json]
yak groups --reset-offsets G --topic T (--to-earliest | --to-latest | --to-offset N | --shift-by N) [--json]
yak groups --delete G [--json]
           [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

--describe shows the group's state, generation and strategy, its members
with their partitions, and per partition the committed offset, the log end
(high watermark), the lag and the member that reads it. --reset-offsets and
--delete are refused while the group has active members (stop them first).
--shift-by takes a negative number as --shift-by=-10.
`;

interface Member {
  memberId: string;
  clientId: string;
  host: string;
  partitions: Record<string, number[]>;
}

interface GroupDescription {
  group: string;
  state: string;
  generation: number;
  protocol: string;
  members: Member[];
}

async function offsetsOf(conn: Connection, topic: string): Promise<{ start: number[]; hw: number[] }> {
  const res = await conn.request({ type: "list_offsets", topic });
  const hw = res.hw as Record<string, number>;
  const start = (res.start ?? {}) as Record<string, number>;
  const n = Object.keys(hw).length;
  return {
    hw: Array.from({ length: n }, (_, p) => hw[p] ?? 0),
    start: Array.from({ length: n }, (_, p) => start[p] ?? 0),
  };
}

/** Runs `yak groups`. */
// deno-lint-ignore yak/max-function-lines
export async function groupsCommand(args: string[]): Promise<number> {
  const { values } = parse("groups", args, {
    ...CLUSTER_FLAGS,
    list: { type: "boolean" },
    describe: { type: "string" },
    "reset-offsets": { type: "string" },
    delete: { type: "string" },
    topic: { type: "string" },
    "to-earliest": { type: "boolean" },
    "to-latest": { type: "boolean" },
    "to-offset": { type: "string" },
    "shift-by": { type: "string" },
    json: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const actions = ["list", "describe", "reset-offsets", "delete"].filter((a) => values[a] !== undefined);
  if (actions.length !== 1) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "give exactly one of --list, --describe, --reset-offsets, --delete (see --help)",
    );
  }
  const { conn } = await connectLeader(
    bootstrapOf(values),
    monotonicMs() + connectTimeoutOf(values),
    retryNotice("groups", false),
  );
  try {
    if (values.list) {
      const res = await conn.request({ type: "list_groups" });
      const groups = res.groups as { group: string; state: string; members: number }[];
      if (values.json) console.log(JSON.stringify({ groups }, null, 2));
      else if (groups.length === 0) console.log("no groups");
      else console.log(table([["GROUP", "STATE", "MEMBERS"], ...groups.map((g) => [g.group, g.state, g.members])]));
    } else if (values.describe !== undefined) {
      await describe(conn, checkGroupName(text(values, "describe")), values.json === true);
    } else if (values["reset-offsets"] !== undefined) {
      const group = checkGroupName(text(values, "reset-offsets"));
      const topic = checkTopicName(text(values, "topic") ?? "");
      const how = ["to-earliest", "to-latest", "to-offset", "shift-by"].filter((k) => values[k] !== undefined);
      if (how.length !== 1) {
        throw new YakError(
          "INVALID_ARGUMENT",
          "--reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset N, --shift-by N",
        );
      }
      const number = (name: string) => {
        const raw = text(values, name) ?? "";
        if (!/^-?\d+$/.test(raw)) throw new YakError("INVALID_ARGUMENT", `--${name} needs an integer, not '${raw}'`);
        return Number(raw);
      };
      const { start, hw } = await offsetsOf(conn, topic);
      const committed = (await conn.request({ type: "committed", group, topic })).offsets as Record<string, number>;
      const offsets: Record<string, number> = {};
      for (let p = 0; p < hw.length; p++) {
        let to: number;
        if (values["to-earliest"]) to = start[p];
        else if (values["to-latest"]) to = hw[p];
        else if (values["to-offset"] !== undefined) to = number("to-offset");
        else to = (committed[p] ?? start[p]) + number("shift-by");
        offsets[p] = Math.min(hw[p], Math.max(start[p], to));
      }
      const res = await conn.request({ type: "reset_offsets", group, topic, offsets });
      const done = res.committed as Record<string, number>;
      if (values.json) console.log(JSON.stringify({ group, topic, offsets: done }, null, 2));
      else {
        console.log(table([
          ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
          ...Object.entries(done).map(([p, o]) => [group, topic, p, o]),
        ]));
      }
    } else {
      const group = checkGroupName(text(values, "delete"));
      await conn.request({ type: "delete_group", group });
      if (values.json) console.log(JSON.stringify({ group, deleted: true }, null, 2));
      else console.log(`deleted group '${group}'`);
    }
  } finally {
    conn.close();
  }
  return 0;
}

// deno-lint-ignore yak/max-function-lines
async function describe(conn: Connection, group: string, json: boolean): Promise<void> {
  const d = await conn.request({ type: "describe_group", group }) as unknown as GroupDescription;
  if (d.state === "Dead") throw new YakError("GROUP_ID_NOT_FOUND", `group '${group}' does not exist`);
  const status = await conn.request({ type: "status" });
  const lags = ((status.groups ?? {}) as Record<string, Record<string, Record<string, { committed: number }>>>)[
    group
  ] ?? {};
  const topics = new Set([...Object.keys(lags), ...d.members.flatMap((m) => Object.keys(m.partitions))]);
  const rows: {
    topic: string;
    partition: number;
    committed: number | null;
    logEnd: number;
    lag: number;
    member: Member | null;
  }[] = [];
  for (const topic of [...topics].sort()) {
    let offsets: { start: number[]; hw: number[] };
    try {
      offsets = await offsetsOf(conn, topic);
    } catch {
      continue; // deleted since
    }
    for (let p = 0; p < offsets.hw.length; p++) {
      const committed = lags[topic]?.[p]?.committed ?? null;
      const member = d.members.find((m) => m.partitions[topic]?.includes(p)) ?? null;
      if (committed === null && !member) continue;
      const from = Math.max(committed ?? offsets.start[p], offsets.start[p]);
      rows.push({
        topic,
        partition: p,
        committed,
        logEnd: offsets.hw[p],
        lag: Math.max(0, offsets.hw[p] - from),
        member,
      });
    }
  }
  if (json) {
    console.log(JSON.stringify(
      {
        group,
        state: d.state,
        generation: d.generation,
        protocol: d.protocol,
        members: d.members.map(({ memberId, clientId, host, partitions }) => ({
          memberId,
          clientId,
          host,
          partitions,
        })),
        partitions: rows.map((r) => ({
          topic: r.topic,
          partition: r.partition,
          committed: r.committed,
          logEnd: r.logEnd,
          lag: r.lag,
          memberId: r.member?.memberId ?? null,
        })),
      },
      null,
      2,
    ));
    return;
  }
  console.log(
    `group '${group}': ${d.state}, generation ${d.generation}${d.protocol ? `, strategy ${d.protocol}` : ""}, ` +
      `${d.members.length} member(s)`,
  );
  if (d.members.length > 0) {
    console.log(table([
      ["MEMBER-ID", "CLIENT-ID", "HOST", "PARTITIONS"],
      ...d.members.map((m) => [
        m.memberId,
        m.clientId,
        m.host,
        Object.entries(m.partitions).map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ") || "-",
      ]),
    ]));
  }
  if (rows.length > 0) {
    console.log(table([
      ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"],
      ...rows.map((r) => [
        r.topic,
        r.partition,
        r.committed ?? "-",
        r.logEnd,
        r.lag,
        r.member?.memberId ?? "-",
        r.member?.host ?? "-",
        r.member?.clientId ?? "-",
      ]),
    ]));
  }
}
