/**
 * `yak topics`: create, list, describe, and add partitions.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { connectLeader } from "../client/discovery.ts";
import { checkTopicName, isInternalTopic } from "../log/names.ts";
import { checkConfigKeys, parseTopicConfigs, TOPIC_CONFIGS } from "../broker/topic_config.ts";
import { kafkaTopicIdText } from "../broker/topic_id.ts";
import type { Connection } from "../protocol/connection.ts";
import type { ConfigEntry } from "../broker/describe_configs.ts";
import { table } from "./table.ts";
import type { PartitionStatus } from "../protocol/status.ts";
import { YakError } from "../errors.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  type Flags,
  helpRequested,
  integer,
  parse,
  refuseOtherActionsFlags,
  retryNotice,
  text,
  type Values,
} from "./args.ts";

const USAGE = `
yak topics --list [--json]
yak topics --create T [--partitions N] [--replication-factor R] [--config KEY=VALUE ...] [--json]
yak topics --describe [T] [--json]         (no name: every topic)
yak topics --alter T [--partitions M] [--config KEY=VALUE ...] [--delete-config KEY ...] [--json]
                                           (adds partitions; never removes)
yak topics --delete T [--json]             (everywhere, with its group commits; a new topic of the name starts empty)
yak topics --delete-records T --partition P --offset N [--json]
                                           (the records below offset N, -1 for the high watermark, on every replica:
                                           the partition's log start moves there, as Kafka's DeleteRecords does)
           [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

kafka-topics.sh's spellings work too: the name as --topic T (--create --topic T,
--describe --topic T), --bootstrap-server for --bootstrap, --config repeated.
--bootstrap takes brokers' native ports (9092-9094 under 'yak cluster') or their
Kafka ports (9192-9194): a Kafka port names its broker's native port, which is used.
--replication-factor R: yak keeps every partition on every broker, so a topic
has as many replicas as the cluster has brokers. R up to that is accepted; R
larger is refused, as Kafka refuses a factor larger than its broker count.
--json prints the answer as JSON.

Topic configs yak enforces:
${configHelp(false)}
Accepted and stored (so Kafka tools may set them) but not enforced by yak:
${configHelp(true)}
`;

/** The topic configs for --help: name, what it does, and (for those not enforced) why not. */
function configHelp(notEnforced: boolean): string {
  return Object.entries(TOPIC_CONFIGS)
    .filter(([, spec]) => (spec.notEnforced !== undefined) === notEnforced)
    .map(([k, spec]) => `  ${k}: ${spec.notEnforced ?? spec.doc}`)
    .join("\n");
}

const FLAGS: Flags = {
  ...CLUSTER_FLAGS,
  list: { type: "boolean" },
  create: { type: "string" },
  describe: { type: "string" },
  alter: { type: "string" },
  partitions: { type: "string" },
  "replication-factor": { type: "string" },
  config: { type: "string", multiple: true },
  "delete-config": { type: "string", multiple: true },
  delete: { type: "string" },
  "delete-records": { type: "string" },
  topic: { type: "string" },
  partition: { type: "string" },
  offset: { type: "string" },
  json: { type: "boolean" },
};

const ACTIONS = ["list", "create", "describe", "alter", "delete", "delete-records"] as const;

/** The actions that name a topic: after the flag (`--create T`) or, as kafka-topics.sh has it, with `--topic T`. */
const NAMING = ["create", "describe", "alter", "delete", "delete-records"] as const;

/** What `yak topics` does: one of its actions. */
type TopicsAction = typeof ACTIONS[number];

/** What `yak topics`' flags ask for. */
type TopicsOptions =
  | { action: "list" }
  | { action: "delete"; topic: string }
  /** A null topic: every topic. */
  | { action: "describe"; topic: string | null }
  | { action: "delete-records"; topic: string; partition: number; offset: number }
  | {
    action: "create" | "alter";
    topic: string;
    /** Undefined with --alter: the topic keeps its count. */
    partitions: number | undefined;
    /** --replication-factor, checked by the leader against the broker count. */
    replicationFactor: number | undefined;
    configs: Record<string, string>;
    deleteConfigs: string[];
  };

/** A topic as the leader's `status` shows it. */
interface TopicView {
  name: string;
  id?: string;
  configs?: Record<string, string>;
  partitions: (Record<string, number> & { cleaner?: PartitionStatus["cleaner"] })[];
}

/** What the leader answered. */
type TopicsResult =
  | { action: "list"; topics: Record<string, number> }
  | { action: "delete"; topic: string }
  | { action: "delete-records"; topic: string; partition: number; logStart: number; before: number | null }
  | {
    action: "create" | "alter";
    topic: string;
    partitions: unknown;
    configs: Record<string, string>;
    /** How many replicas each partition has (every broker holds every partition). */
    replicas: unknown;
    replicationFactor: number | undefined;
  }
  | { action: "describe"; topics: DescribedTopic[]; leaderId: unknown; isr: number[] };

/** A topic as `--describe` shows it: the leader's view and every config. */
interface DescribedTopic {
  topic: TopicView;
  configs: ConfigEntry[];
}

/** Runs `yak topics`. */
export async function topicsCommand(args: string[]): Promise<number> {
  const { values } = parse("topics", bareActions(args), FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const action = actionOf(values);
  const { conn } = await connectLeader(
    bootstrapOf(values),
    monotonicMs() + connectTimeoutOf(values),
    retryNotice("topics", false),
  );
  try {
    // The action's own flags are checked once the leader is reached, before anything is sent.
    const options = topicsOptionsOf(action, values);
    const result = await runTopics(conn, options);
    printTopics(result, values.json === true);
    warnUnmeetable(result);
  } finally {
    conn.close();
  }
  return 0;
}

/**
 * `args` with an action flag that has no name after it (`--describe` alone,
 * `--create --topic T`) given an empty value, so the parser takes it; the
 * name then comes from `--topic` (or, for `--describe`, means every topic).
 */
function bareActions(args: string[]): string[] {
  const bare = new Set(NAMING.map((a) => `--${a}`));
  return args.map((arg, i) => {
    const next = args[i + 1];
    return bare.has(arg) && (next === undefined || next.startsWith("--") || next === "-h") ? `${arg}=` : arg;
  });
}

/** The one action the flags name. */
function actionOf(values: Values): TopicsAction {
  const actions = ACTIONS.filter((a) => values[a] !== undefined);
  if (actions.length !== 1) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "give exactly one of --list, --create, --describe, --alter, --delete, --delete-records (see --help)",
    );
  }
  return actions[0];
}

/** The topic an action names: after its flag or as `--topic`, once; null when neither names one. */
function topicOf(action: TopicsAction, values: Values): string | null {
  const after = action === "list" ? undefined : text(values, action) || undefined;
  const flag = text(values, "topic");
  if (after !== undefined && flag !== undefined && after !== flag) {
    throw new YakError("INVALID_ARGUMENT", `--${action} ${after} and --topic ${flag} name two topics; give one`);
  }
  const name = after ?? flag;
  if (name === undefined) return null;
  if (action === "list") {
    throw new YakError("INVALID_ARGUMENT", "--list takes no topic; use --describe T for one topic");
  }
  return checkTopicName(name);
}

/** The action's flags, checked. */
function topicsOptionsOf(action: TopicsAction, values: Values): TopicsOptions {
  const named = topicOf(action, values);
  if (action !== "create" && values["replication-factor"] !== undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--replication-factor goes with --create (every broker holds every partition, so there is nothing to alter)",
    );
  }
  refuseOtherActionsFlags(action, values, ACTION_FLAGS);
  if (action === "list") return { action };
  if (action === "describe") return { action, topic: named };
  if (named === null) {
    throw new YakError("INVALID_ARGUMENT", `--${action} needs a topic: --${action} T, or --${action} --topic T`);
  }
  const topic = named;
  if (action === "delete") return { action, topic };
  if (action === "delete-records") return deleteRecordsOptionsOf(topic, values);
  const alter = action === "alter";
  // Checked here too, so a typo is reported before anything is sent.
  const configs = parseTopicConfigs((values.config as string[] | undefined) ?? []);
  const deleteConfigs = checkConfigKeys((values["delete-config"] as string[] | undefined) ?? []);
  const both = deleteConfigs.filter((k) => k in configs);
  if (both.length > 0) {
    throw new YakError("INVALID_ARGUMENT", `${both.join(", ")}: given to both --config and --delete-config; give one`);
  }
  if (alter && values.partitions === undefined && Object.keys(configs).length === 0 && deleteConfigs.length === 0) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--alter needs --partitions M, --config KEY=VALUE or --delete-config KEY",
    );
  }
  const partitions = alter
    ? (values.partitions === undefined ? undefined : integer(values, "partitions", 0, 1, 1000))
    : integer(values, "partitions", 3, 1, 1000);
  const replicationFactor = integer(values, "replication-factor", undefined, 1, 32767);
  return { action, topic, partitions, replicationFactor, configs, deleteConfigs };
}

/** Each action's own flags: any other action's is refused, not ignored (a typo such as --partition for --partitions). */
const ACTION_FLAGS: Record<TopicsAction, readonly string[]> = {
  list: [],
  create: ["partitions", "replication-factor", "config"],
  describe: [],
  alter: ["partitions", "config", "delete-config"],
  delete: [],
  "delete-records": ["partition", "offset"],
};

/** `--delete-records T --partition P --offset N`: both numbers are needed (nothing is deleted by default). */
function deleteRecordsOptionsOf(topic: string, values: Values): TopicsOptions {
  const partition = integer(values, "partition", undefined, 0, 999);
  const offset = integer(values, "offset", undefined, -1, Number.MAX_SAFE_INTEGER);
  if (partition === undefined || offset === undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "--delete-records needs --partition P and --offset N (the records below N go; -1 for the high watermark)",
    );
  }
  return { action: "delete-records", topic, partition, offset };
}

/** Asks the leader. */
async function runTopics(conn: Connection, options: TopicsOptions): Promise<TopicsResult> {
  switch (options.action) {
    case "delete":
      await conn.request({ type: "delete_topic", topic: options.topic });
      return { action: "delete", topic: options.topic };
    case "delete-records": {
      const { topic, partition, offset } = options;
      const res = await conn.request({ type: "delete_records", topic, partition, offset });
      const before = typeof res.before === "number" ? res.before : null; // null: a broker from before it said
      return { action: "delete-records", topic, partition, logStart: res.logStart as number, before };
    }
    case "list": {
      const meta = await conn.request({ type: "metadata" });
      return { action: "list", topics: meta.topics as Record<string, number> };
    }
    case "create":
    case "alter": {
      const { action, topic, partitions, replicationFactor, configs, deleteConfigs } = options;
      const res = await conn.request({
        type: action === "alter" ? "alter_topic" : "create_topic",
        topic,
        ...(partitions === undefined ? {} : { partitions }),
        ...(replicationFactor === undefined ? {} : { replicationFactor }),
        ...(Object.keys(configs).length > 0 ? { configs } : {}),
        ...(deleteConfigs.length > 0 ? { deleteConfigs } : {}),
      });
      const answer = { partitions: res.partitions, configs: res.configs as Record<string, string> };
      return { action, topic, ...answer, replicas: res.replicas, replicationFactor };
    }
    case "describe":
      return await describeTopics(conn, options.topic);
  }
}

/**
 * Says on stderr when a created or altered topic's min.insync.replicas is
 * more than the cluster's brokers: accepted (as Kafka accepts it, and
 * brokers may be added), but no acks=all write can succeed until it changes.
 */
function warnUnmeetable(result: TopicsResult): void {
  if (result.action !== "create" && result.action !== "alter") return;
  const minIsr = Number(result.configs["min.insync.replicas"]);
  if (typeof result.replicas !== "number" || !(minIsr > result.replicas)) return;
  console.error(
    `yak topics: warning: min.insync.replicas=${minIsr} is more than the cluster's ${result.replicas} broker(s): ` +
      `acks=all writes to '${result.topic}' are refused until it is lowered ` +
      `(--alter ${result.topic} --config min.insync.replicas=${result.replicas}) or brokers are added`,
  );
}

/** `--describe`: one topic, or every topic (the internal ones, such as __cluster, only when named). */
async function describeTopics(conn: Connection, name: string | null): Promise<TopicsResult> {
  const status = await conn.request({ type: "status" });
  const all = status.topics as TopicView[];
  const topics = name === null ? all.filter((t) => !isInternalTopic(t.name)) : all.filter((t) => t.name === name);
  if (name !== null && topics.length === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${name}' does not exist`);
  const isr = (status.replication as { isr: number[] } | null)?.isr ?? [];
  const described: DescribedTopic[] = [];
  for (const topic of topics) {
    const res = await conn.request({ type: "describe_configs", topic: topic.name });
    described.push({ topic, configs: res.configs as ConfigEntry[] });
  }
  return { action: "describe", topics: described, leaderId: status.brokerId, isr };
}

/** Prints the answer: as JSON with --json, else for people. */
function printTopics(result: TopicsResult, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(topicsJson(result), null, 2));
    return;
  }
  switch (result.action) {
    case "delete":
      console.log(`deleted topic '${result.topic}'`);
      return;
    case "delete-records":
      console.log(
        result.before !== null && result.logStart <= result.before
          // The log started there already (retention or an earlier deletion got there first): nothing went.
          ? `nothing to delete: '${result.topic}' partition ${result.partition} starts at offset ${result.logStart} ` +
            `already`
          : `deleted the records of '${result.topic}' partition ${result.partition} below offset ${result.logStart}: ` +
            `its log start is ${result.logStart} on every in-sync replica`,
      );
      return;
    case "list":
      for (const [name, n] of Object.entries(result.topics)) console.log(`${name}\t${n} partitions`);
      return;
    case "create":
    case "alter": {
      const set = Object.entries(result.configs).map(([k, v]) => `${k}=${v}`);
      const factor = result.replicationFactor === undefined
        ? ""
        : `, ${result.replicas} replica${result.replicas === 1 ? "" : "s"} each ` +
          `(--replication-factor ${result.replicationFactor}: yak keeps every partition on every broker)`;
      console.log(
        `${result.action === "alter" ? "altered" : "created"} topic '${result.topic}' with ${result.partitions} ` +
          `partition${result.partitions === 1 ? "" : "s"}${factor}${
            set.length > 0 ? `, configs ${set.join(" ")}` : ""
          }`,
      );
      return;
    }
    case "describe":
      if (result.topics.length === 0) console.log("no topics");
      result.topics.forEach(({ topic, configs }, i) => {
        if (i > 0) console.log("");
        printDescription(topic, result.leaderId, result.isr);
        printConfigs(configs);
        printPartitions(topic);
      });
  }
}

/** `--json`: the answer for tools. */
function topicsJson(result: TopicsResult): unknown {
  switch (result.action) {
    case "delete":
      return { topic: result.topic, deleted: true };
    case "delete-records":
      return { topic: result.topic, partition: result.partition, logStart: result.logStart };
    case "list":
      return { topics: Object.entries(result.topics).map(([name, partitions]) => ({ name, partitions })) };
    case "create":
    case "alter": {
      const { topic, partitions, replicas, configs } = result;
      return { topic, partitions, replicas, configs };
    }
    case "describe":
      return {
        leader: result.leaderId,
        isr: result.isr,
        topics: result.topics.map(({ topic, configs }) => ({
          name: topic.name,
          ...(topic.id ? { id: topic.id } : {}),
          configs: topic.configs ?? {},
          // Every config: its value, where it comes from, and whether yak enforces it.
          allConfigs: configs,
          partitions: topic.partitions,
        })),
      };
  }
}

/** `--describe`: the topic and the configs it sets. */
function printDescription(t: TopicView, leaderId: unknown, isr: number[]): void {
  console.log(`topic '${t.name}': ${t.partitions.length} partitions, leader broker ${leaderId}, in sync ${isr}`);
  // Kafka's tools print the id in base64 (kafka-topics' TopicId); `__cluster` and topic.json hold the UUID.
  if (t.id) console.log(`id: ${kafkaTopicIdText(t.id)} (${t.id})`);
  const set = Object.entries(t.configs ?? {}).map(([k, v]) => `${k}=${v}`);
  console.log(`configs: ${set.length > 0 ? set.join(" ") : "(cluster defaults)"}`);
}

/** Where a value comes from, for people. */
function sourceOf(c: ConfigEntry): string {
  if (c.source === "TOPIC_CONFIG") return "topic";
  if (c.source === "STATIC_BROKER_CONFIG") return `broker flag --${c.flag ?? c.synonyms[0]?.name}`;
  return "default";
}

/** `--describe`: every config with its value, where it comes from, and whether yak enforces it. */
function printConfigs(configs: ConfigEntry[]): void {
  const rows = configs.map((c) => [c.name, c.value ?? "", sourceOf(c), c.enforced ? "enforced" : "stored only"]);
  console.log(table([["CONFIG", "VALUE", "SOURCE", "YAK"], ...rows]));
}

/** `--describe`: a line per partition; a compacted topic's also show what the leader's cleaner left and did last. */
function printPartitions(t: TopicView): void {
  const compacted = t.partitions.some((p) => p.cleaner !== undefined);
  console.log(`partition\tlog-start\tlog-end\thigh-watermark\tsegments\tbytes${compacted ? CLEANER_COLUMNS : ""}`);
  for (const p of t.partitions) {
    console.log(
      `${p.partition}\t${p.logStartOffset ?? 0}\t${p.logEndOffset}\t${p.highWatermark}\t${p.segments}\t${p.bytes}` +
        (compacted ? cleanerCells(p.cleaner) : ""),
    );
  }
}

const CLEANER_COLUMNS = "\tdirty-ratio\tlast-cleaned";

/** `dirty-ratio` and `last-cleaned` of a compacted partition: when, up to where, how long, bytes before and after. */
function cleanerCells(c: PartitionStatus["cleaner"]): string {
  if (!c) return "\t-\t-";
  const run = c.lastRun;
  const last = run
    ? `${
      new Date(run.at).toISOString()
    } (to offset ${c.cleanedTo}, ${run.ms} ms, ${run.bytesBefore} -> ${run.bytesAfter} bytes)`
    : c.cleanedTo > 0
    ? `before this leader started (to offset ${c.cleanedTo})`
    : "never";
  return `\t${c.dirtyRatio.toFixed(3)}\t${last}`;
}
