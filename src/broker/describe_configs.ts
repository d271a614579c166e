/**
 * Configs as Kafka's DescribeConfigs and `yak topics --describe` show them:
 * every config of a topic or a broker with the value in force, where it
 * comes from (the topic's own override, a `yak broker` flag, or the
 * default), the values it overrides (synonyms), its type and what it does.
 * A broker's configs are its start-time flags under Kafka's names.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import type { BrokerOptions } from "./context.ts";
import { type ConfigType, TOPIC_CONFIGS } from "./topic_config.ts";

/** Where a value comes from, as DescribeConfigs names it. */
export type ConfigSource = "TOPIC_CONFIG" | "STATIC_BROKER_CONFIG" | "DEFAULT_CONFIG";

/** One of the values a config could take, in order of precedence. */
export interface ConfigSynonym {
  name: string;
  value: string | null;
  source: ConfigSource;
}

/** A config as described. */
export interface ConfigEntry {
  name: string;
  value: string | null;
  source: ConfigSource;
  /** Broker configs are start-time flags: read-only. Topic configs can be altered. */
  readOnly: boolean;
  sensitive: boolean;
  /** Every value that applies, the one in force first. */
  synonyms: ConfigSynonym[];
  type: ConfigType;
  doc: string;
  /** Whether yak acts on the value (false: accepted and stored only). */
  enforced: boolean;
  /** The `yak broker` flag the value comes from, when its source is STATIC_BROKER_CONFIG. */
  flag?: string;
}

/** A broker setting under Kafka's name: the flag that sets it, yak's built-in default, and where its value is. */
interface BrokerSetting {
  name: string;
  flag: string;
  builtIn: string;
  type: ConfigType;
  doc: string;
  of(o: DescribedOptions): unknown;
}

/** The broker options the descriptions read. */
export type DescribedOptions = Pick<
  BrokerOptions,
  | "id"
  | "defaultPartitions"
  | "autoCreateTopics"
  | "minInsyncReplicas"
  | "retentionMs"
  | "retentionBytes"
  | "segmentBytes"
  | "segmentMs"
  | "maxRecordBytes"
  | "retentionCheckMs"
  | "replicaLagMs"
  | "connections"
  | "givenFlags"
>;

function setting(
  name: string,
  flag: string,
  builtIn: unknown,
  type: ConfigType,
  doc: string,
  of: (o: DescribedOptions) => unknown,
): BrokerSetting {
  return { name, flag, builtIn: String(builtIn), type, doc, of };
}

/** The broker's settings that have Kafka names, with the flags that set them. */
const BROKER_SETTINGS: readonly BrokerSetting[] = [
  setting("broker.id", "id", "", "INT", "this broker's id", (o) => o.id),
  setting(
    "num.partitions",
    "partitions",
    DEFAULTS.defaultPartitions,
    "INT",
    "partitions of a topic created with no count",
    (o) => o.defaultPartitions,
  ),
  setting(
    "auto.create.topics.enable",
    "auto-create-topics-enable",
    DEFAULTS.autoCreateTopics,
    "BOOLEAN",
    "whether a topic is created on its first use",
    (o) => o.autoCreateTopics ?? true,
  ),
  setting(
    "min.insync.replicas",
    "min-insync-replicas",
    DEFAULTS.minInsyncReplicas,
    "INT",
    "acks=all needs this many brokers in the in-sync set",
    (o) => o.minInsyncReplicas,
  ),
  setting(
    "log.retention.ms",
    "retention-ms",
    DEFAULTS.retentionMs,
    "LONG",
    "topics' default retention.ms",
    (o) => o.retentionMs,
  ),
  setting(
    "log.retention.bytes",
    "retention-bytes",
    DEFAULTS.retentionBytes,
    "LONG",
    "topics' default retention.bytes",
    (o) => o.retentionBytes,
  ),
  setting(
    "log.segment.bytes",
    "segment-bytes",
    DEFAULTS.segmentBytes,
    "INT",
    "topics' default segment.bytes",
    (o) => o.segmentBytes,
  ),
  setting("log.roll.ms", "segment-ms", DEFAULTS.segmentMs, "LONG", "topics' default segment.ms", (o) => o.segmentMs),
  setting(
    "message.max.bytes",
    "max-message-bytes",
    DEFAULTS.maxRecordBytes,
    "INT",
    "topics' default max.message.bytes",
    (o) => o.maxRecordBytes,
  ),
  setting(
    "log.retention.check.interval.ms",
    "retention-check-ms",
    DEFAULTS.retentionCheckMs,
    "LONG",
    "how often the leader applies retention",
    (o) => o.retentionCheckMs,
  ),
  setting(
    "replica.lag.time.max.ms",
    "replica-lag-ms",
    DEFAULTS.replicaLagMs,
    "LONG",
    "a follower behind for this long leaves the in-sync set",
    (o) => o.replicaLagMs,
  ),
  setting(
    "max.connections",
    "max-connections",
    DEFAULTS.maxConnections,
    "INT",
    "connections per listener",
    (o) => o.connections.maxConnections,
  ),
  setting(
    "max.connections.per.ip",
    "max-connections-per-ip",
    DEFAULTS.maxConnectionsPerPeer,
    "INT",
    "connections per listener from one address",
    (o) => o.connections.maxConnectionsPerPeer,
  ),
  setting(
    "connections.max.idle.ms",
    "connections-max-idle-ms",
    DEFAULTS.connectionsMaxIdleMs,
    "LONG",
    "an idle connection is closed after this long",
    (o) => o.connections.connectionsMaxIdleMs,
  ),
];

/** Whether the setting was given as a flag (without the list of flags: whether it differs from yak's default). */
function given(o: DescribedOptions, s: BrokerSetting): boolean {
  if (s.builtIn === "") return true; // a required flag (--id)
  return o.givenFlags ? o.givenFlags.includes(s.flag) : String(s.of(o)) !== s.builtIn;
}

/** The value a broker setting stands for, and the default below it. */
function brokerSynonyms(o: DescribedOptions, s: BrokerSetting): ConfigSynonym[] {
  const out: ConfigSynonym[] = [];
  if (given(o, s)) out.push({ name: s.name, value: String(s.of(o)), source: "STATIC_BROKER_CONFIG" });
  if (s.builtIn !== "") out.push({ name: s.name, value: s.builtIn, source: "DEFAULT_CONFIG" });
  return out;
}

function entryOf(
  name: string,
  synonyms: ConfigSynonym[],
  rest: Omit<ConfigEntry, "name" | "value" | "source" | "synonyms" | "flag">,
  flag: string | undefined,
): ConfigEntry {
  const top = synonyms[0];
  return {
    name,
    value: top.value,
    source: top.source,
    synonyms,
    ...rest,
    ...(top.source === "STATIC_BROKER_CONFIG" && flag ? { flag } : {}),
  };
}

/**
 * Every config of a topic (or those in `names`), by name: its override,
 * else the broker's flag, else the default (yak's where a flag has one,
 * Kafka's otherwise).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectionLimits } from "../protocol/listener.ts";
 * import { describeTopicConfigs } from "./describe_configs.ts";
 * const broker = { id: 1, defaultPartitions: 3, minInsyncReplicas: 1, retentionMs: 604800000, retentionBytes: -1,
 *   segmentBytes: 67108864, segmentMs: 604800000, maxRecordBytes: 1048576, retentionCheckMs: 60000,
 *   replicaLagMs: 10000, connections: connectionLimits(), givenFlags: ["id", "min-insync-replicas"] };
 * const [mir, ret] = describeTopicConfigs({ "retention.ms": "1000" }, broker, ["min.insync.replicas", "retention.ms"]);
 * assert.deepEqual([mir.value, mir.source, mir.flag], ["1", "STATIC_BROKER_CONFIG", "min-insync-replicas"]);
 * assert.deepEqual([ret.value, ret.source], ["1000", "TOPIC_CONFIG"]);
 * ```
 */
export function describeTopicConfigs(
  configs: Record<string, string>,
  o: DescribedOptions,
  names: readonly string[] | null = null,
): ConfigEntry[] {
  const settings = new Map(BROKER_SETTINGS.map((s) => [s.name, s]));
  const out: ConfigEntry[] = [];
  for (const [name, spec] of Object.entries(TOPIC_CONFIGS)) {
    if (names !== null && !names.includes(name)) continue;
    const synonyms: ConfigSynonym[] = [];
    if (Object.hasOwn(configs, name)) synonyms.push({ name, value: configs[name], source: "TOPIC_CONFIG" });
    const setting = spec.flag && spec.brokerName ? settings.get(spec.brokerName) : undefined;
    if (setting) synonyms.push(...brokerSynonyms(o, setting));
    else synonyms.push({ name: spec.brokerName ?? name, value: spec.kafkaDefault, source: "DEFAULT_CONFIG" });
    const doc = spec.notEnforced
      ? `${spec.doc} (accepted and stored; yak does not enforce it: ${spec.notEnforced})`
      : spec.doc;
    const rest = { readOnly: false, sensitive: false, type: spec.type, doc, enforced: !spec.notEnforced };
    out.push(entryOf(name, synonyms, rest, setting?.flag));
  }
  return out;
}

/**
 * A broker's configs (or those in `names`) under Kafka's names: its flags,
 * and the broker-side defaults of the topic configs no flag sets. All are
 * read-only: a broker takes them when it starts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectionLimits } from "../protocol/listener.ts";
 * import { describeBrokerConfigs } from "./describe_configs.ts";
 * const broker = { id: 1, defaultPartitions: 3, minInsyncReplicas: 1, retentionMs: 604800000, retentionBytes: -1,
 *   segmentBytes: 67108864, segmentMs: 604800000, maxRecordBytes: 1048576, retentionCheckMs: 60000,
 *   replicaLagMs: 10000, connections: connectionLimits(), givenFlags: ["id", "min-insync-replicas"] };
 * const [id] = describeBrokerConfigs(broker, ["broker.id"]);
 * assert.deepEqual([id.value, id.source, id.readOnly], ["1", "STATIC_BROKER_CONFIG", true]);
 * ```
 */
export function describeBrokerConfigs(o: DescribedOptions, names: readonly string[] | null = null): ConfigEntry[] {
  const out: ConfigEntry[] = [];
  const fixed = { readOnly: true, sensitive: false, enforced: true };
  const settings = BROKER_SETTINGS;
  for (const s of settings) {
    const synonyms = brokerSynonyms(o, s);
    out.push(entryOf(s.name, synonyms, { ...fixed, type: s.type, doc: `${s.doc} (yak broker --${s.flag})` }, s.flag));
  }
  const named = new Set(settings.map((s) => s.name));
  for (const [topicName, spec] of Object.entries(TOPIC_CONFIGS)) {
    if (!spec.brokerName || named.has(spec.brokerName)) continue;
    named.add(spec.brokerName);
    const synonyms: ConfigSynonym[] = [{ name: spec.brokerName, value: spec.kafkaDefault, source: "DEFAULT_CONFIG" }];
    const doc = `topics' default ${topicName}${spec.notEnforced ? ` (not enforced: ${spec.notEnforced})` : ""}`;
    out.push(
      entryOf(spec.brokerName, synonyms, { ...fixed, type: spec.type, doc, enforced: !spec.notEnforced }, undefined),
    );
  }
  out.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return names === null ? out : out.filter((e) => names.includes(e.name));
}
