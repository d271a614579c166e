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
import { groupStateOf } from "../broker/group_coordinator.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  type Flags,
  helpRequested,
  parse,
  refuseOtherActionsFlags,
  retryNotice,
  text,
  type Values,
} from "./args.ts";
import { table } from "./table.ts";
import { offsetsOf, resetTargets, targetOffsets } from "../client/group_offsets.ts";

const USAGE = `
yak groups --list [--state S[,S...]] [--json]
yak groups --describe G [--json]
yak groups --reset-offsets G --topic T[:P,P...] [--partition P]
           (--to-earliest | --to-latest | --to-offset N | --shift-by N) [--dry-run | --execute] [--json]
yak groups --delete G [--json]
yak groups --delete-offsets G --topic T[:P,P...] [--partition P] [--json]
           [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

--describe shows the group's state, generation and strategy, its members
with their partitions (and a static member's group.instance.id), and per
partition the committed offset, the log end (high watermark), the lag and
the member that reads it; a partition the group has no commit in shows '-'
as its offset and lag (null in --json), as kafka-consumer-groups does.
--reset-offsets and --delete are refused while the group has active members
(stop them first).
--reset-offsets G applies at once; --dry-run shows the new offsets and
changes nothing. kafka-consumer-groups' spelling works too: --group G beside
the action (--describe --group G), and then --reset-offsets, as there, only
shows the plan unless --execute is given.
--shift-by takes a negative number as --shift-by -10 or --shift-by=-10.
--topic T:0,2 (kafka-consumer-groups' spelling) or --partition P resets or
deletes only those partitions; an offset outside a partition's log goes to
its nearer end, and stderr says so.
--state lists only groups in these states (any case, comma-separated or
repeated): Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
--delete-offsets deletes the group's committed offsets in the topic (every
partition, or those named); it is refused while the group's active
members subscribe to the topic, as Kafka does.
`;

interface Member {
  memberId: string;
  /** A static member's group instance id; null (or absent, from an older leader) for a dynamic one. */
  groupInstanceId?: string | null;
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

const FLAGS: Flags = {
  ...CLUSTER_FLAGS,
  list: { type: "boolean" },
  describe: { type: "string" },
  "reset-offsets": { type: "string" },
  delete: { type: "string" },
  "delete-offsets": { type: "string" },
  topic: { type: "string" },
  partition: { type: "string" },
  state: { type: "string", multiple: true },
  "to-earliest": { type: "boolean" },
  "to-latest": { type: "boolean" },
  "to-offset": { type: "string" },
  "shift-by": { type: "string" },
  json: { type: "boolean" },
  group: { type: "string" },
  "dry-run": { type: "boolean" },
  execute: { type: "boolean" },
};

const ACTIONS = ["list", "describe", "reset-offsets", "delete", "delete-offsets"] as const;

/** What `yak groups` does: one of its actions. */
type GroupsAction = typeof ACTIONS[number];

const RESETS = ["to-earliest", "to-latest", "to-offset", "shift-by"] as const;

/** Where `--reset-offsets` moves a group's offsets. */
type Reset = typeof RESETS[number];

/** What `yak groups`' flags ask for. */
type GroupsOptions =
  | { action: "list"; states: string[] }
  | { action: "describe" | "delete"; group: string }
  | { action: "delete-offsets"; group: string; topic: string; partitions: number[] | null }
  | {
    action: "reset-offsets";
    group: string;
    topic: string;
    /** The partitions named (`--partition P`, `--topic T:P,P`); null: all of the topic's. */
    partitions: number[] | null;
    reset: Reset;
    /** The text of --to-offset or --shift-by, read as a number once the partitions are known. */
    amount: string;
    /** Show the new offsets, change nothing. */
    dryRun: boolean;
  };

/** A partition a group reads, as `--describe` shows it. */
interface PartitionRow {
  topic: string;
  partition: number;
  committed: number | null;
  logEnd: number;
  /** Records from the commit to the log end; null without a commit (Kafka's tool prints '-'). */
  lag: number | null;
  member: Member | null;
}

/** What the leader answered. */
type GroupsResult =
  | { action: "list"; groups: { group: string; state: string; members: number }[] }
  | { action: "describe"; group: string; description: GroupDescription; rows: PartitionRow[] }
  | {
    action: "reset-offsets";
    group: string;
    topic: string;
    offsets: Record<string, number>;
    dryRun: boolean;
    /** Offsets asked for outside a partition's log, and where they went instead. */
    notes: string[];
  }
  | { action: "delete"; group: string }
  | { action: "delete-offsets"; group: string; topic: string; partitions: number[]; committed: number[] };

/** Runs `yak groups`. */
export async function groupsCommand(args: string[]): Promise<number> {
  const kafka = kafkaSpelling(args);
  const { values } = parse("groups", kafka?.args ?? args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const action = actionOf(values);
  const { conn } = await connectLeader(
    bootstrapOf(values),
    monotonicMs() + connectTimeoutOf(values),
    retryNotice("groups", false),
  );
  try {
    // The action's own flags are checked once the leader is reached, before anything is sent.
    const options = groupsOptionsOf(action, values, kafka !== null);
    printGroups(await runGroups(conn, options), values.json === true);
  } finally {
    conn.close();
  }
  return 0;
}

/**
 * kafka-consumer-groups' spelling, `--describe --group G` (the group in its
 * own flag, anywhere): the arguments with G given to the action flag that
 * has no value, as yak spells it (`--describe G`); null when `--group` is
 * not used.
 */
function kafkaSpelling(args: readonly string[]): { args: string[] } | null {
  const at = args.findIndex((a) => a === "--group" || a.startsWith("--group="));
  if (at === -1) return null;
  const joined = args[at].startsWith("--group=");
  const group = joined ? args[at].slice("--group=".length) : args[at + 1];
  if (group === undefined) throw new YakError("INVALID_ARGUMENT", "--group needs a group id");
  const rest = [...args.slice(0, at), ...args.slice(at + (joined ? 1 : 2))];
  const action = rest.findIndex((a, i) =>
    ACTIONS.some((name) => a === `--${name}`) && (rest[i + 1] === undefined || rest[i + 1].startsWith("-"))
  );
  if (action === -1) {
    if (rest.some((a) => ACTIONS.some((name) => a === `--${name}` || a.startsWith(`--${name}=`)))) {
      throw new YakError("INVALID_ARGUMENT", "give the group once: --describe G, or --describe --group G");
    }
    throw new YakError(
      "INVALID_ARGUMENT",
      "--group G goes with --describe, --reset-offsets, --delete or --delete-offsets (or: --describe G)",
    );
  }
  return { args: [...rest.slice(0, action + 1), group, ...rest.slice(action + 1)] };
}

/** The one action the flags name. */
function actionOf(values: Values): GroupsAction {
  const actions = ACTIONS.filter((a) => values[a] !== undefined);
  if (actions.length !== 1) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "give exactly one of --list, --describe, --reset-offsets, --delete, --delete-offsets (see --help)",
    );
  }
  return actions[0];
}

/** The action's flags, checked; `kafka`: spelled as kafka-consumer-groups (a reset then needs --execute). */
function groupsOptionsOf(action: GroupsAction, values: Values, kafka: boolean): GroupsOptions {
  const execute = values.execute === true;
  const dry = values["dry-run"] === true;
  if ((execute || dry) && action !== "reset-offsets") {
    throw new YakError("INVALID_ARGUMENT", "--dry-run and --execute go with --reset-offsets");
  }
  if (execute && dry) throw new YakError("INVALID_ARGUMENT", "give --dry-run or --execute, not both");
  refuseOtherActionsFlags(action, values, ACTION_FLAGS);
  if (action === "list") return { action, states: statesOf(values) };
  const group = checkGroupName(text(values, action));
  if (action === "delete-offsets") return { action, group, ...topicPartitionsOf(values, action) };
  if (action !== "reset-offsets") return { action, group };
  const { topic, partitions } = topicPartitionsOf(values, action);
  const how = RESETS.filter((k) => values[k] !== undefined);
  if (how.length !== 1) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset N, --shift-by N",
    );
  }
  const dryRun = dry || (kafka && !execute);
  return { action, group, topic, partitions, reset: how[0], amount: text(values, how[0]) ?? "", dryRun };
}

/** `--state` of `--list`: each state named (comma-separated or repeated), as Kafka spells it. */
function statesOf(values: Values): string[] {
  const given = (values.state ?? []) as string[];
  return given.flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s !== "").map(groupStateOf);
}

/** Each action's own flags: any other action's is refused, not ignored (a typo such as --partition for --partitions). */
const ACTION_FLAGS: Record<GroupsAction, readonly string[]> = {
  list: ["state"],
  describe: [],
  "reset-offsets": ["topic", "partition", ...RESETS, "dry-run", "execute"],
  delete: [],
  "delete-offsets": ["topic", "partition"],
};

/**
 * The topic of `--reset-offsets` or `--delete-offsets`, and the partitions
 * named: `--partition P`, or kafka-consumer-groups' `--topic T:P[,P...]`
 * (null: all of the topic's).
 */
function topicPartitionsOf(values: Values, action: GroupsAction): { topic: string; partitions: number[] | null } {
  const given = text(values, "topic");
  if (given === undefined || given === "") {
    throw new YakError("INVALID_ARGUMENT", `--${action} needs --topic T (see --help)`);
  }
  // A topic name has no ':' (names.ts), so one here starts Kafka's partition list.
  const colon = given.indexOf(":");
  let partitions = colon === -1 ? null : given.slice(colon + 1).split(",").map(partitionNumber);
  const one = text(values, "partition");
  if (one !== undefined) {
    if (partitions !== null) {
      throw new YakError("INVALID_ARGUMENT", "name the partitions once: --topic T:P,P or --partition P");
    }
    partitions = [partitionNumber(one)];
  }
  const topic = checkTopicName(colon === -1 ? given : given.slice(0, colon));
  return { topic, partitions: partitions === null ? null : [...new Set(partitions)].sort((a, b) => a - b) };
}

function partitionNumber(text: string): number {
  if (!/^\d{1,9}$/.test(text.trim())) {
    throw new YakError("INVALID_ARGUMENT", `a partition is a number from 0, not '${text}'`);
  }
  return Number(text.trim());
}

/** Asks the leader. */
async function runGroups(conn: Connection, options: GroupsOptions): Promise<GroupsResult> {
  switch (options.action) {
    case "list": {
      const res = await conn.request({
        type: "list_groups",
        ...(options.states.length > 0 ? { states: options.states } : {}),
      });
      const groups = res.groups as { group: string; state: string; members: number }[];
      return { action: "list", groups: groups.map(({ group, state, members }) => ({ group, state, members })) };
    }
    case "describe":
      return { action: "describe", group: options.group, ...await describeGroup(conn, options.group) };
    case "reset-offsets": {
      const { group, topic, dryRun } = options;
      const { start, hw } = await offsetsOf(conn, topic);
      const committed = (await conn.request({ type: "committed", group, topic })).offsets as Record<string, number>;
      const targets = resetTargets(
        options.reset,
        options.amount,
        start,
        hw,
        committed,
        options.partitions ?? undefined,
      );
      const offsets = targetOffsets(targets);
      // As kafka-consumer-groups says it: an offset past either end of a partition's log goes to that end.
      const notes = targets.filter((t) => t.asked !== t.to).map((t) =>
        `partition ${t.partition}: offset ${t.asked} is ${
          t.asked > t.to ? "past the log end" : "before the log start"
        }` +
        ` (${t.to}); it goes to ${t.to}`
      );
      if (dryRun) return { action: "reset-offsets", group, topic, offsets, dryRun, notes };
      const res = await conn.request({ type: "reset_offsets", group, topic, offsets });
      return { action: "reset-offsets", group, topic, offsets: res.committed as Record<string, number>, dryRun, notes };
    }
    case "delete":
      await conn.request({ type: "delete_group", group: options.group });
      return { action: "delete", group: options.group };
    case "delete-offsets": {
      const { group, topic, partitions: named } = options;
      const res = await conn.request({
        type: "delete_offsets",
        group,
        topic,
        ...(named === null ? {} : { partitions: named }),
      });
      const partitions = res.partitions as number[];
      // A broker from before `deleted` was answered: every partition asked.
      const committed = (res.deleted as number[] | undefined) ?? partitions;
      return { action: "delete-offsets", group, topic, partitions, committed };
    }
  }
}

/** The group, and a row for each partition it has a commit in or a member reading. */
async function describeGroup(
  conn: Connection,
  group: string,
): Promise<{ description: GroupDescription; rows: PartitionRow[] }> {
  const d = await conn.request({ type: "describe_group", group }) as unknown as GroupDescription;
  if (d.state === "Dead") throw new YakError("GROUP_ID_NOT_FOUND", `group '${group}' does not exist`);
  const status = await conn.request({ type: "status" });
  const lags = ((status.groups ?? {}) as Record<string, Record<string, Record<string, { committed: number }>>>)[
    group
  ] ?? {};
  const topics = new Set([...Object.keys(lags), ...d.members.flatMap((m) => Object.keys(m.partitions))]);
  const rows: PartitionRow[] = [];
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
      rows.push({
        topic,
        partition: p,
        committed,
        logEnd: offsets.hw[p],
        // No commit: where the group would start depends on its reset policy, so there is no lag to give.
        lag: committed === null ? null : Math.max(0, offsets.hw[p] - Math.max(committed, offsets.start[p])),
        member,
      });
    }
  }
  return { description: d, rows };
}

/** Prints the answer: as JSON with --json, else as tables. */
function printGroups(result: GroupsResult, json: boolean): void {
  switch (result.action) {
    case "list": {
      const { groups } = result;
      if (json) console.log(JSON.stringify({ groups }, null, 2));
      else if (groups.length === 0) console.log("no groups");
      else console.log(table([["GROUP", "STATE", "MEMBERS"], ...groups.map((g) => [g.group, g.state, g.members])]));
      return;
    }
    case "describe":
      if (json) console.log(JSON.stringify(descriptionJson(result.group, result.description, result.rows), null, 2));
      else printDescription(result.group, result.description, result.rows);
      return;
    case "reset-offsets": {
      const { group, topic, offsets, dryRun } = result;
      if (json) console.log(JSON.stringify({ group, topic, offsets, ...(dryRun ? { dryRun } : {}) }, null, 2));
      else {
        console.log(table([
          ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"],
          ...Object.entries(offsets).map(([p, o]) => [group, topic, p, o]),
        ]));
      }
      for (const note of result.notes) console.error(`yak groups: ${note}`);
      if (dryRun) console.error("yak groups: a dry run: nothing changed (--execute applies it)");
      return;
    }
    case "delete":
      if (json) console.log(JSON.stringify({ group: result.group, deleted: true }, null, 2));
      else console.log(`deleted group '${result.group}'`);
      return;
    case "delete-offsets": {
      const { group, topic, partitions, committed } = result;
      const rows = partitions.map((p) => [group, topic, p, committed.includes(p) ? "deleted" : "no commit"]);
      if (json) console.log(JSON.stringify({ group, topic, partitions, committed, deleted: true }, null, 2));
      else console.log(table([["GROUP", "TOPIC", "PARTITION", "STATUS"], ...rows]));
    }
  }
}

/** `--describe --json`: the group, its members and its partitions. */
function descriptionJson(group: string, d: GroupDescription, rows: PartitionRow[]): unknown {
  return {
    group,
    state: d.state,
    generation: d.generation,
    protocol: d.protocol,
    members: d.members.map(({ memberId, groupInstanceId, clientId, host, partitions }) => ({
      memberId,
      groupInstanceId: groupInstanceId ?? null,
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
  };
}

/** `--describe`: a line for the group, a table of its members and one of its partitions, as Kafka's tool prints. */
function printDescription(group: string, d: GroupDescription, rows: PartitionRow[]): void {
  console.log(
    `group '${group}': ${d.state}, generation ${d.generation}${d.protocol ? `, strategy ${d.protocol}` : ""}, ` +
      `${d.members.length} member(s)`,
  );
  if (d.members.length > 0) {
    console.log(table([
      ["MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "PARTITIONS"],
      ...d.members.map((m) => [
        m.memberId,
        m.groupInstanceId ?? "-",
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
        r.lag ?? "-",
        r.member?.memberId ?? "-",
        r.member?.host ?? "-",
        r.member?.clientId ?? "-",
      ]),
    ]));
  }
}
