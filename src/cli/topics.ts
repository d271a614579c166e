/**
 * `yak topics`: create, list, describe, and add partitions.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { connectLeader } from "../client/discovery.ts";
import { checkTopicName } from "../log/names.ts";
import { checkConfigKeys, parseTopicConfigs, TOPIC_CONFIGS } from "../broker/topic_config.ts";
import type { Connection } from "../protocol/connection.ts";
import type { ConfigEntry } from "../broker/describe_configs.ts";
import { table } from "./table.ts";
import { YakError } from "../errors.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  type Flags,
  helpRequested,
  integer,
  parse,
  retryNotice,
  text,
  type Values,
} from "./args.ts";

const USAGE = `
yak topics --list
yak topics --create T [--partitions N] [--config KEY=VALUE ...]
yak topics --describe T
yak topics --alter T [--partitions M] [--config KEY=VALUE ...] [--delete-config KEY ...]
                                           (adds partitions; never removes)
yak topics --delete T                      (everywhere, with its group commits; a new topic of the name starts empty)
yak topics --delete-records T --partition P --offset N
                                           (the records below offset N, -1 for the high watermark, on every replica:
                                           the partition's log start moves there, as Kafka's DeleteRecords does)
           [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

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
  config: { type: "string", multiple: true },
  "delete-config": { type: "string", multiple: true },
  delete: { type: "string" },
  "delete-records": { type: "string" },
  partition: { type: "string" },
  offset: { type: "string" },
};

const ACTIONS = ["list", "create", "describe", "alter", "delete", "delete-records"] as const;

/** What `yak topics` does: one of its actions. */
type TopicsAction = typeof ACTIONS[number];

/** What `yak topics`' flags ask for. */
type TopicsOptions =
  | { action: "list" }
  | { action: "describe" | "delete"; topic: string }
  | { action: "delete-records"; topic: string; partition: number; offset: number }
  | {
    action: "create" | "alter";
    topic: string;
    /** Undefined with --alter: the topic keeps its count. */
    partitions: number | undefined;
    configs: Record<string, string>;
    deleteConfigs: string[];
  };

/** A topic as the leader's `status` shows it. */
interface TopicView {
  name: string;
  configs?: Record<string, string>;
  partitions: Record<string, number>[];
}

/** What the leader answered. */
type TopicsResult =
  | { action: "list"; topics: Record<string, number> }
  | { action: "delete"; topic: string }
  | { action: "delete-records"; topic: string; partition: number; logStart: number }
  | { action: "create" | "alter"; topic: string; partitions: unknown; configs: Record<string, string> }
  | { action: "describe"; topic: TopicView; leaderId: unknown; isr: number[]; configs: ConfigEntry[] };

/** Runs `yak topics`. */
export async function topicsCommand(args: string[]): Promise<number> {
  const { values } = parse("topics", args, FLAGS);
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
    printTopics(await runTopics(conn, options));
  } finally {
    conn.close();
  }
  return 0;
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

/** The action's flags, checked. */
function topicsOptionsOf(action: TopicsAction, values: Values): TopicsOptions {
  if (action === "list") return { action };
  if (action === "delete" || action === "describe") return { action, topic: checkTopicName(text(values, action)) };
  if (action === "delete-records") return deleteRecordsOptionsOf(values);
  const alter = action === "alter";
  const topic = checkTopicName(text(values, action));
  // Checked here too, so a typo is reported before anything is sent.
  const configs = parseTopicConfigs((values.config as string[] | undefined) ?? []);
  const deleteConfigs = checkConfigKeys((values["delete-config"] as string[] | undefined) ?? []);
  if (!alter && deleteConfigs.length > 0) {
    throw new YakError("INVALID_ARGUMENT", "--delete-config goes with --alter");
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
  return { action, topic, partitions, configs, deleteConfigs };
}

/** `--delete-records T --partition P --offset N`: both numbers are needed (nothing is deleted by default). */
function deleteRecordsOptionsOf(values: Values): TopicsOptions {
  const topic = checkTopicName(text(values, "delete-records"));
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
      return { action: "delete-records", topic, partition, logStart: res.logStart as number };
    }
    case "list": {
      const meta = await conn.request({ type: "metadata" });
      return { action: "list", topics: meta.topics as Record<string, number> };
    }
    case "create":
    case "alter": {
      const { action, topic, partitions, configs, deleteConfigs } = options;
      const res = await conn.request({
        type: action === "alter" ? "alter_topic" : "create_topic",
        topic,
        ...(partitions === undefined ? {} : { partitions }),
        ...(Object.keys(configs).length > 0 ? { configs } : {}),
        ...(deleteConfigs.length > 0 ? { deleteConfigs } : {}),
      });
      return { action, topic, partitions: res.partitions, configs: res.configs as Record<string, string> };
    }
    case "describe": {
      const status = await conn.request({ type: "status" });
      const topic = (status.topics as TopicView[]).find((x) => x.name === options.topic);
      if (!topic) {
        throw new YakError("UNKNOWN_TOPIC", `topic '${options.topic}' does not exist`);
      }
      const isr = (status.replication as { isr: number[] } | null)?.isr ?? [];
      const described = await conn.request({ type: "describe_configs", topic: options.topic });
      const configs = described.configs as ConfigEntry[];
      return { action: "describe", topic, leaderId: status.brokerId, isr, configs };
    }
  }
}

/** Prints the answer. */
function printTopics(result: TopicsResult): void {
  switch (result.action) {
    case "delete":
      console.log(`deleted topic '${result.topic}'`);
      return;
    case "delete-records":
      console.log(
        `deleted the records of '${result.topic}' partition ${result.partition} below offset ${result.logStart}: ` +
          `its log start is ${result.logStart} on every in-sync replica`,
      );
      return;
    case "list":
      for (const [name, n] of Object.entries(result.topics)) console.log(`${name}\t${n} partitions`);
      return;
    case "create":
    case "alter": {
      const set = Object.entries(result.configs).map(([k, v]) => `${k}=${v}`);
      console.log(
        `${result.action === "alter" ? "altered" : "created"} topic '${result.topic}' with ${result.partitions} ` +
          `partitions${set.length > 0 ? `, configs ${set.join(" ")}` : ""}`,
      );
      return;
    }
    case "describe":
      printDescription(result.topic, result.leaderId, result.isr);
      printConfigs(result.configs);
      printPartitions(result.topic);
  }
}

/** `--describe`: the topic and the configs it sets. */
function printDescription(t: TopicView, leaderId: unknown, isr: number[]): void {
  console.log(`topic '${t.name}': ${t.partitions.length} partitions, leader broker ${leaderId}, in sync ${isr}`);
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

/** `--describe`: a line per partition. */
function printPartitions(t: TopicView): void {
  console.log("partition\tlog-start\tlog-end\thigh-watermark\tsegments\tbytes");
  for (const p of t.partitions) {
    console.log(
      `${p.partition}\t${p.logStartOffset ?? 0}\t${p.logEndOffset}\t${p.highWatermark}\t${p.segments}\t${p.bytes}`,
    );
  }
}
