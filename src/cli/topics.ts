/**
 * `yak topics`: create, list, describe, and add partitions.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { connectLeader } from "../client/discovery.ts";
import { checkTopicName } from "../log/names.ts";
import { checkConfigKeys, parseTopicConfigs, TOPIC_CONFIGS } from "../broker/topic_config.ts";
import { YakError } from "../errors.ts";
import {
  bootstrapOf,
  CLUSTER_FLAGS,
  connectTimeoutOf,
  helpRequested,
  integer,
  parse,
  retryNotice,
  text,
} from "./args.ts";

const USAGE = `
yak topics --list
yak topics --create T [--partitions N] [--config KEY=VALUE ...]
yak topics --describe T
yak topics --alter T [--partitions M] [--config KEY=VALUE ...] [--delete-config KEY ...]
                                           (adds partitions; never removes)
yak topics --delete T                      (everywhere, with its group commits; a new topic of the name starts empty)
           [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

Topic configs:
${Object.entries(TOPIC_CONFIGS).map(([k, v]) => `  ${k}: ${v.doc}`).join("\n")}
`;

/** Runs `yak topics`. */
// deno-lint-ignore yak/max-function-lines
export async function topicsCommand(args: string[]): Promise<number> {
  const { values } = parse("topics", args, {
    ...CLUSTER_FLAGS,
    list: { type: "boolean" },
    create: { type: "string" },
    describe: { type: "string" },
    alter: { type: "string" },
    partitions: { type: "string" },
    config: { type: "string", multiple: true },
    "delete-config": { type: "string", multiple: true },
    delete: { type: "string" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const actions = ["list", "create", "describe", "alter", "delete"].filter((a) => values[a] !== undefined);
  if (actions.length !== 1) {
    throw new YakError(
      "INVALID_ARGUMENT",
      "give exactly one of --list, --create, --describe, --alter, --delete (see --help)",
    );
  }
  const { conn } = await connectLeader(
    bootstrapOf(values),
    monotonicMs() + connectTimeoutOf(values),
    retryNotice("topics", false),
  );
  try {
    if (values.delete !== undefined) {
      const topic = checkTopicName(text(values, "delete"));
      await conn.request({ type: "delete_topic", topic });
      console.log(`deleted topic '${topic}'`);
    } else if (values.list) {
      const meta = await conn.request({ type: "metadata" });
      for (
        const [name, n] of Object.entries(meta.topics as Record<string, number>)
      ) {
        console.log(`${name}\t${n} partitions`);
      }
    } else if (values.create !== undefined || values.alter !== undefined) {
      const alter = values.alter !== undefined;
      const topic = checkTopicName(text(values, alter ? "alter" : "create"));
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
      const res = await conn.request({
        type: alter ? "alter_topic" : "create_topic",
        topic,
        ...(partitions === undefined ? {} : { partitions }),
        ...(Object.keys(configs).length > 0 ? { configs } : {}),
        ...(deleteConfigs.length > 0 ? { deleteConfigs } : {}),
      });
      const set = Object.entries(res.configs as Record<string, string>).map(([k, v]) => `${k}=${v}`);
      console.log(
        `${alter ? "altered" : "created"} topic '${topic}' with ${res.partitions} partitions${
          set.length > 0 ? `, configs ${set.join(" ")}` : ""
        }`,
      );
    } else {
      const topic = checkTopicName(text(values, "describe"));
      const status = await conn.request({ type: "status" });
      const t = (status.topics as {
        name: string;
        configs?: Record<string, string>;
        partitions: Record<string, number>[];
      }[]).find((x) => x.name === topic);
      if (!t) {
        throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
      }
      const isr = (status.replication as { isr: number[] } | null)?.isr ?? [];
      console.log(
        `topic '${topic}': ${t.partitions.length} partitions, leader broker ${status.brokerId}, in sync ${isr}`,
      );
      const set = Object.entries(t.configs ?? {}).map(([k, v]) => `${k}=${v}`);
      console.log(`configs: ${set.length > 0 ? set.join(" ") : "(cluster defaults)"}`);
      console.log("partition\tlog-start\tlog-end\thigh-watermark\tsegments\tbytes");
      for (const p of t.partitions) {
        console.log(
          `${p.partition}\t${p.logStartOffset ?? 0}\t${p.logEndOffset}\t${p.highWatermark}\t${p.segments}\t${p.bytes}`,
        );
      }
    }
  } finally {
    conn.close();
  }
  return 0;
}
