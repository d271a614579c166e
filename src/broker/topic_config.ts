/**
 * Topic configs: every name Kafka 3.x defines for a topic, each with its
 * type, Kafka's default and Kafka's check, whether yak enforces it (and why
 * not when it does not), and how a broker reads the ones it enforces. They
 * are kept in `__cluster` with the topic, so every replica and every future
 * leader applies the same ones. A name Kafka does not define is refused.
 *
 * @module
 */
import { YakError } from "../errors.ts";

/** A config's type as Kafka's ConfigDef names it (DescribeConfigs v3+ sends it as a number). */
export type ConfigType = "BOOLEAN" | "STRING" | "INT" | "LONG" | "DOUBLE" | "LIST";

/** One topic config. */
export interface ConfigSpec {
  type: ConfigType;
  /** Kafka's default, in force when neither the topic nor a broker flag sets the value. */
  kafkaDefault: string;
  /** The broker config Kafka falls back to when a topic leaves this one unset (its server default property). */
  brokerName?: string;
  /** The `yak broker` flag that sets the cluster's default instead (yak's value then replaces Kafka's). */
  flag?: string;
  /** Checks a value as Kafka does and returns it in its stored form, or throws an Error saying what it must be. */
  check: (value: string) => string;
  doc: string;
  /** Why yak keeps the value without acting on it; absent for the configs yak enforces. */
  notEnforced?: string;
}

const INT32_MAX = 2n ** 31n - 1n;
const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
/** Kafka's default for the limits that are off unless set (Long.MAX_VALUE). */
const NO_LIMIT = String(INT64_MAX);

/** An integer (Kafka's INT or LONG) from `min` to `max`, stored in decimal. */
function integer(min: bigint, max: bigint): (value: string) => string {
  return (value) => {
    const t = value.trim();
    const n = /^[+-]?\d{1,19}$/.test(t) ? BigInt(t) : null;
    if (n === null || n < min || n > max) throw new Error(`must be an integer from ${min} to ${max}`);
    return n.toString();
  };
}

/** A boolean, in any case, stored as `true` or `false`. */
function boolean(value: string): string {
  const t = value.trim().toLowerCase();
  if (t !== "true" && t !== "false") throw new Error("must be true or false");
  return t;
}

/** One of the given strings, exactly (Kafka's ValidString is case-sensitive). */
function oneOf(...allowed: string[]): (value: string) => string {
  return (value) => {
    const t = value.trim();
    if (!allowed.includes(t)) throw new Error(`must be one of ${allowed.join(", ")}`);
    return t;
  };
}

/** A number from `min` to `max` (Kafka's DOUBLE). */
function double(min: number, max: number): (value: string) => string {
  return (value) => {
    const t = value.trim();
    const n = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : NaN;
    if (!(n >= min && n <= max)) throw new Error(`must be a number from ${min} to ${max}`);
    return String(n);
  };
}

/** A comma-separated list (Kafka's LIST), each item checked, stored without the spaces around items. */
function list(item: (value: string) => string): (value: string) => string {
  return (value) => {
    const t = value.trim();
    return t === "" ? "" : t.split(",").map((s) => item(s.trim())).join(",");
  };
}

/** Kafka's compression levels: gzip 1-9 or -1 (the codec's default). */
function gzipLevel(value: string): string {
  const t = value.trim();
  if (t === "-1") return t;
  try {
    return integer(1n, 9n)(t);
  } catch {
    throw new Error("must be an integer from 1 to 9, or -1");
  }
}

/** `cleanup.policy`: `delete`, `compact`, or both (src/broker/compaction_config.ts reads it). */
function cleanupPolicy(value: string): string {
  let items: string;
  try {
    items = list(oneOf("compact", "delete"))(value);
  } catch {
    throw new Error("must be delete, compact, or compact,delete");
  }
  if (items === "") throw new Error("must name a policy: delete, compact, or compact,delete");
  return [...new Set(items.split(","))].join(",");
}

/** A replication throttle list: `*`, or `partition:broker` pairs. */
function throttledReplicas(value: string): string {
  if (value.trim() === "*") return "*";
  return list((item) => {
    if (!/^\d+:\d+$/.test(item)) throw new Error("must be * or a list of partition:broker pairs");
    return item;
  })(value);
}

/** A message format version, as Kafka 3.x names them (0.8.0 ... 3.0-IV1). */
function formatVersion(value: string): string {
  const t = value.trim();
  if (!/^\d+\.\d+(\.\d+){0,2}(-IV\d+)?$/.test(t)) throw new Error("must be a Kafka version such as 3.0-IV1");
  return t;
}

/** `remote.storage.enable`: only false, as a Kafka broker without tiered storage answers. */
function remoteStorage(value: string): string {
  const b = boolean(value);
  if (b === "true") throw new Error("cannot be true: yak has no tiered storage (remote log storage)");
  return b;
}

const NO_COMPRESSION = "yak stores records uncompressed as JSON lines and fetches send them uncompressed";
const NO_TIERED = "yak has no tiered storage";

/** Every topic config of Kafka 3.x, by name. */
export const TOPIC_CONFIGS: Readonly<Record<string, ConfigSpec>> = {
  "cleanup.policy": {
    type: "LIST",
    kafkaDefault: "delete",
    brokerName: "log.cleanup.policy",
    check: cleanupPolicy,
    doc: "delete: old segments are deleted by retention.ms and retention.bytes; compact: the cleaner keeps the " +
      "newest record of each key (records need keys); compact,delete: both",
  },
  "compression.gzip.level": {
    type: "INT",
    kafkaDefault: "-1",
    brokerName: "compression.gzip.level",
    check: gzipLevel,
    doc: "the gzip level when compression.type is gzip",
    notEnforced: NO_COMPRESSION,
  },
  "compression.lz4.level": {
    type: "INT",
    kafkaDefault: "9",
    brokerName: "compression.lz4.level",
    check: integer(1n, 17n),
    doc: "the lz4 level when compression.type is lz4",
    notEnforced: NO_COMPRESSION,
  },
  "compression.type": {
    type: "STRING",
    kafkaDefault: "producer",
    brokerName: "compression.type",
    check: oneOf("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    doc: "the codec the log keeps batches in (producer: the producer's own)",
    notEnforced: NO_COMPRESSION,
  },
  "compression.zstd.level": {
    type: "INT",
    kafkaDefault: "3",
    brokerName: "compression.zstd.level",
    check: integer(-131072n, 22n),
    doc: "the zstd level when compression.type is zstd",
    notEnforced: NO_COMPRESSION,
  },
  "delete.retention.ms": {
    type: "LONG",
    kafkaDefault: "86400000",
    brokerName: "log.cleaner.delete.retention.ms",
    check: integer(0n, INT64_MAX),
    doc: "compacted topics: a tombstone (null value) is removed this long after the cleaning that first saw it " +
      "(its own timestamp plays no part)",
  },
  "file.delete.delay.ms": {
    type: "LONG",
    kafkaDefault: "60000",
    brokerName: "log.segment.delete.delay.ms",
    check: integer(0n, INT64_MAX),
    doc: "how long a deleted segment's files stay on disk",
    notEnforced: "yak removes a segment's files as soon as retention moves the log start past it",
  },
  "flush.messages": {
    type: "LONG",
    kafkaDefault: NO_LIMIT,
    brokerName: "log.flush.interval.messages",
    check: integer(1n, INT64_MAX),
    doc: "fsync the log after this many records",
    notEnforced: "yak never fsyncs partition logs by count or time: durability comes from replication",
  },
  "flush.ms": {
    type: "LONG",
    kafkaDefault: NO_LIMIT,
    brokerName: "log.flush.interval.ms",
    check: integer(0n, INT64_MAX),
    doc: "fsync the log at least this often",
    notEnforced: "yak never fsyncs partition logs by count or time: durability comes from replication",
  },
  "follower.replication.throttled.replicas": {
    type: "LIST",
    kafkaDefault: "",
    check: throttledReplicas,
    doc: "replicas whose replication is throttled on the follower's side",
    notEnforced: "yak has no replication quotas",
  },
  "index.interval.bytes": {
    type: "INT",
    kafkaDefault: "4096",
    brokerName: "log.index.interval.bytes",
    check: integer(0n, INT32_MAX),
    doc: "bytes of log between two offset index entries",
    notEnforced: "yak's index takes an entry every 4 KiB for every topic",
  },
  "leader.replication.throttled.replicas": {
    type: "LIST",
    kafkaDefault: "",
    check: throttledReplicas,
    doc: "replicas whose replication is throttled on the leader's side",
    notEnforced: "yak has no replication quotas",
  },
  "local.retention.bytes": {
    type: "LONG",
    kafkaDefault: "-2",
    brokerName: "log.local.retention.bytes",
    check: integer(-2n, INT64_MAX),
    doc: "retention.bytes for the local part of a tiered log (-2: retention.bytes)",
    notEnforced: NO_TIERED,
  },
  "local.retention.ms": {
    type: "LONG",
    kafkaDefault: "-2",
    brokerName: "log.local.retention.ms",
    check: integer(-2n, INT64_MAX),
    doc: "retention.ms for the local part of a tiered log (-2: retention.ms)",
    notEnforced: NO_TIERED,
  },
  "max.compaction.lag.ms": {
    type: "LONG",
    kafkaDefault: NO_LIMIT,
    brokerName: "log.cleaner.max.compaction.lag.ms",
    check: integer(1n, INT64_MAX),
    doc: "compacted topics: records older than this are cleaned whatever the dirty ratio, and the active segment " +
      "rolls at this age",
  },
  "max.message.bytes": {
    type: "INT",
    kafkaDefault: "1048588",
    brokerName: "message.max.bytes",
    flag: "max-message-bytes",
    check: integer(1n, BigInt(16 * 1024 * 1024 - 64 * 1024)),
    doc: "the largest record (key, value and headers) a producer may send; yak's limit is below its 16 MiB frames",
  },
  "message.downconversion.enable": {
    type: "BOOLEAN",
    kafkaDefault: "true",
    brokerName: "log.message.downconversion.enable",
    check: boolean,
    doc: "whether fetches of old clients get records converted to older message formats",
    notEnforced: "yak never converts: Fetch sends RecordBatch v2, so clients fetch with v4 and later",
  },
  "message.format.version": {
    type: "STRING",
    kafkaDefault: "3.0-IV1",
    brokerName: "log.message.format.version",
    check: formatVersion,
    doc: "the message format the log keeps (deprecated in Kafka 3.0)",
    notEnforced: "yak keeps its own stored format and sends RecordBatch v2",
  },
  "message.timestamp.after.max.ms": {
    type: "LONG",
    kafkaDefault: NO_LIMIT,
    brokerName: "log.message.timestamp.after.max.ms",
    check: integer(0n, INT64_MAX),
    doc: "with CreateTime, a batch with a record more than this ahead of the broker's clock is refused " +
      "(INVALID_TIMESTAMP)",
  },
  "message.timestamp.before.max.ms": {
    type: "LONG",
    kafkaDefault: NO_LIMIT,
    brokerName: "log.message.timestamp.before.max.ms",
    check: integer(0n, INT64_MAX),
    doc: "with CreateTime, a batch with a record more than this behind the broker's clock is refused " +
      "(INVALID_TIMESTAMP)",
  },
  "message.timestamp.difference.max.ms": {
    type: "LONG",
    kafkaDefault: NO_LIMIT,
    brokerName: "log.message.timestamp.difference.max.ms",
    check: integer(0n, INT64_MAX),
    doc: "with CreateTime, the before and after limits when those are not set (deprecated in Kafka 3.6)",
  },
  "message.timestamp.type": {
    type: "STRING",
    kafkaDefault: "CreateTime",
    brokerName: "log.message.timestamp.type",
    check: oneOf("CreateTime", "LogAppendTime"),
    doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch with the leader's " +
      "clock as it is appended",
  },
  "min.cleanable.dirty.ratio": {
    type: "DOUBLE",
    kafkaDefault: "0.5",
    brokerName: "log.cleaner.min.cleanable.ratio",
    check: double(0, 1),
    doc: "compacted topics: the cleaner runs once this share of the closed segments' bytes is not cleaned yet",
  },
  "min.compaction.lag.ms": {
    type: "LONG",
    kafkaDefault: "0",
    brokerName: "log.cleaner.min.compaction.lag.ms",
    check: integer(0n, INT64_MAX),
    doc: "compacted topics: a segment whose newest record is younger than this is not cleaned yet",
  },
  "min.insync.replicas": {
    type: "INT",
    kafkaDefault: "1",
    brokerName: "min.insync.replicas",
    flag: "min-insync-replicas",
    check: integer(1n, INT32_MAX),
    doc: "acks=all needs this many brokers in the in-sync set",
  },
  "preallocate": {
    type: "BOOLEAN",
    kafkaDefault: "false",
    brokerName: "log.preallocate",
    check: boolean,
    doc: "whether a new segment file is allocated at its full size",
    notEnforced: "yak's segment files grow as they are written",
  },
  "remote.log.copy.disable": {
    type: "BOOLEAN",
    kafkaDefault: "false",
    check: boolean,
    doc: "stop copying segments to tiered storage",
    notEnforced: NO_TIERED,
  },
  "remote.log.delete.on.disable": {
    type: "BOOLEAN",
    kafkaDefault: "false",
    check: boolean,
    doc: "delete the tiered copy when tiered storage is turned off",
    notEnforced: NO_TIERED,
  },
  "remote.storage.enable": {
    type: "BOOLEAN",
    kafkaDefault: "false",
    check: remoteStorage,
    doc: "keep closed segments in tiered storage (true is refused, as by a Kafka broker without it)",
    notEnforced: NO_TIERED,
  },
  "retention.bytes": {
    type: "LONG",
    kafkaDefault: "-1",
    brokerName: "log.retention.bytes",
    flag: "retention-bytes",
    check: integer(INT64_MIN, INT64_MAX),
    doc: "per partition: delete the oldest whole segments while the rest stay above this; negative: no limit",
  },
  "retention.ms": {
    type: "LONG",
    kafkaDefault: "604800000",
    brokerName: "log.retention.ms",
    flag: "retention-ms",
    check: integer(-1n, INT64_MAX),
    doc: "delete whole segments whose newest record is older than this; -1 keeps them",
  },
  "segment.bytes": {
    type: "INT",
    kafkaDefault: "1073741824",
    brokerName: "log.segment.bytes",
    flag: "segment-bytes",
    check: integer(1024n, INT32_MAX),
    doc: "roll a new segment file past this size (yak's least is 1024)",
  },
  "segment.index.bytes": {
    type: "INT",
    kafkaDefault: "10485760",
    brokerName: "log.index.size.max.bytes",
    check: integer(4n, INT32_MAX),
    doc: "the most an offset index file may hold",
    notEnforced: "yak's sparse index grows with its segment; it is never allocated ahead",
  },
  "segment.jitter.ms": {
    type: "LONG",
    kafkaDefault: "0",
    brokerName: "log.roll.jitter.ms",
    check: integer(0n, INT64_MAX),
    doc: "a random time taken off segment.ms, so partitions do not all roll at once",
    notEnforced: "yak rolls at segment.ms exactly",
  },
  "segment.ms": {
    type: "LONG",
    kafkaDefault: "604800000",
    brokerName: "log.roll.ms",
    flag: "segment-ms",
    check: integer(1n, INT64_MAX),
    doc: "roll a new segment file when the active one is older than this, so time retention can delete it",
  },
  "unclean.leader.election.enable": {
    type: "BOOLEAN",
    kafkaDefault: "false",
    brokerName: "unclean.leader.election.enable",
    check: boolean,
    doc: "whether a broker out of the in-sync set may become leader",
    notEnforced: "the zookeeper elects only in-sync brokers, always",
  },
};

/** A topic's configs with the broker's defaults filled in. */
export interface EffectiveConfig {
  minInsyncReplicas: number;
  retentionMs: number;
  retentionBytes: number;
  segmentBytes: number;
  segmentMs: number;
  maxMessageBytes: number;
}

/**
 * A topic's configs over the broker's defaults.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { effectiveConfig } from "./topic_config.ts";
 * const defaults = { minInsyncReplicas: 2, retentionMs: 604800000, retentionBytes: -1, segmentBytes: 67108864,
 *   segmentMs: 604800000, maxMessageBytes: 1048576 };
 * assert.equal(effectiveConfig({ "retention.bytes": "1048576" }, defaults).retentionBytes, 1048576);
 * ```
 */
export function effectiveConfig(
  configs: Record<string, string> | undefined,
  defaults: EffectiveConfig,
): EffectiveConfig {
  const num = (key: string, fallback: number) => configs?.[key] === undefined ? fallback : Number(configs[key]);
  return {
    minInsyncReplicas: num("min.insync.replicas", defaults.minInsyncReplicas),
    retentionMs: num("retention.ms", defaults.retentionMs),
    retentionBytes: num("retention.bytes", defaults.retentionBytes),
    segmentBytes: num("segment.bytes", defaults.segmentBytes),
    segmentMs: num("segment.ms", defaults.segmentMs),
    maxMessageBytes: num("max.message.bytes", defaults.maxMessageBytes),
  };
}

/** The refusal of a name Kafka does not define for topics. */
function unknownConfig(key: unknown): YakError {
  return new YakError(
    "INVALID_CONFIG",
    `unknown topic config '${String(key).slice(0, 100)}' (yak takes Kafka 3.x's topic configs; ` +
      "'yak topics --help' lists them)",
  );
}

/** The spec of a known name, or undefined. */
export function configSpec(name: string): ConfigSpec | undefined {
  return Object.hasOwn(TOPIC_CONFIGS, name) ? TOPIC_CONFIGS[name] : undefined;
}

/**
 * Checks config keys to delete (`--delete-config`): each must be a known key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkConfigKeys } from "./topic_config.ts";
 * assert.deepEqual(checkConfigKeys(["retention.ms"]), ["retention.ms"]);
 * assert.throws(() => checkConfigKeys(["retention.mss"]), { code: "INVALID_CONFIG" });
 * ```
 */
export function checkConfigKeys(keys: unknown): string[] {
  if (keys === undefined || keys === null) return [];
  if (!Array.isArray(keys) || keys.length > MAX_TOPIC_CONFIGS) {
    throw new YakError("INVALID_CONFIG", `config keys to delete must be a list of at most ${MAX_TOPIC_CONFIGS}`);
  }
  return keys.map((k) => {
    if (typeof k !== "string" || !configSpec(k)) throw unknownConfig(k);
    return k;
  });
}

/** The longest config value, in UTF-8 bytes: what an int16 string length holds (DescribeConfigs v0-3). */
export const MAX_CONFIG_VALUE_BYTES = 32767;

/** At most this many configs per topic: each travels in every metadata record of the topic. */
export const MAX_TOPIC_CONFIGS = 64;

/**
 * Checks configs from a request (`{"key": "value"}`) or the CLI (`key=value`
 * strings), and returns them as stored. Unknown keys and bad values get
 * INVALID_CONFIG naming the key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTopicConfigs } from "./topic_config.ts";
 * assert.deepEqual(parseTopicConfigs(["min.insync.replicas=2"]), { "min.insync.replicas": "2" });
 * assert.deepEqual(parseTopicConfigs(["compression.type=gzip"]), { "compression.type": "gzip" });
 * ```
 */
export function parseTopicConfigs(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  let pairs: [string, unknown][];
  if (Array.isArray(raw)) {
    pairs = raw.map((item) => {
      const s = String(item);
      const eq = s.indexOf("=");
      if (eq <= 0) throw new YakError("INVALID_CONFIG", `config '${s.slice(0, 100)}' must be key=value`);
      return [s.slice(0, eq), s.slice(eq + 1)];
    });
  } else if (typeof raw === "object") {
    pairs = Object.entries(raw as Record<string, unknown>);
  } else {
    throw new YakError("INVALID_CONFIG", "'configs' must be an object of key: value");
  }
  if (pairs.length > MAX_TOPIC_CONFIGS) {
    throw new YakError("INVALID_CONFIG", `at most ${MAX_TOPIC_CONFIGS} configs per topic`);
  }
  // `--config k=1 --config k=2`: which one was meant is unknown (before, the last was kept without a word).
  const twice = pairs.find(([key], i) => pairs.findIndex(([k]) => k === key) !== i);
  if (twice) throw new YakError("INVALID_CONFIG", `config '${twice[0]}' is given more than once`);
  const out: Record<string, string> = {};
  for (const [key, value] of pairs) out[key] = checkConfig(key, value);
  return out;
}

/** One config's value checked as Kafka checks it, in its stored form; INVALID_CONFIG naming the key. */
export function checkConfig(key: string, value: unknown): string {
  const spec = configSpec(key);
  if (!spec) throw unknownConfig(key);
  if (typeof value !== "string" && typeof value !== "number") {
    throw new YakError("INVALID_CONFIG", `config '${key}' needs a value`);
  }
  const text = String(value);
  // Kafka's older versions answer a value in an int16 string: one longer than that could never be described to them.
  const bytes = text.length <= MAX_CONFIG_VALUE_BYTES / 3 ? text.length : new TextEncoder().encode(text).length;
  if (bytes > MAX_CONFIG_VALUE_BYTES) {
    throw new YakError(
      "INVALID_CONFIG",
      `config '${key}' is ${bytes} bytes: a value is at most ${MAX_CONFIG_VALUE_BYTES}`,
    );
  }
  try {
    return spec.check(text);
  } catch (err) {
    throw new YakError("INVALID_CONFIG", `config '${key}' ${err instanceof Error ? err.message : err}`);
  }
}

/**
 * The topic's min.insync.replicas, or the broker's default.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { minInsyncReplicasOf } from "./topic_config.ts";
 * assert.equal(minInsyncReplicasOf({ "min.insync.replicas": "3" }, 2), 3);
 * ```
 */
export function minInsyncReplicasOf(configs: Record<string, string> | undefined, fallback: number): number {
  const v = configs?.["min.insync.replicas"];
  return v === undefined ? fallback : Number(v);
}

/**
 * The largest record a topic takes, in bytes (key, value and headers): its
 * max.message.bytes, else the broker's `--max-message-bytes`, and which of
 * the two it is (for the error that names the setting to raise).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maxMessageBytesOf } from "./topic_config.ts";
 * assert.deepEqual(maxMessageBytesOf({ "max.message.bytes": "100" }, 1048576), { limit: 100, fromTopic: true });
 * ```
 */
export function maxMessageBytesOf(
  configs: Record<string, string> | undefined,
  fallback: number,
): { limit: number; fromTopic: boolean } {
  const configured = Number(configs?.["max.message.bytes"]);
  const fromTopic = Number.isSafeInteger(configured) && configured > 0;
  return { limit: fromTopic ? configured : fallback, fromTopic };
}

/**
 * Whether the leader stamps the topic's batches with its own clock
 * (`message.timestamp.type=LogAppendTime`) instead of keeping the producer's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { logAppendTimeOf } from "./topic_config.ts";
 * assert.equal(logAppendTimeOf({ "message.timestamp.type": "LogAppendTime" }), true);
 * assert.equal(logAppendTimeOf(undefined), false);
 * ```
 */
export function logAppendTimeOf(configs: Record<string, string> | undefined): boolean {
  return configs?.["message.timestamp.type"] === "LogAppendTime";
}

/**
 * How far a produced record's timestamp may be behind and ahead of the
 * leader's clock, or null for no limit (also with LogAppendTime, whose
 * timestamps are the leader's). As Kafka 3.6+: the before and after limits,
 * each falling back to `message.timestamp.difference.max.ms`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timestampLimitsOf } from "./topic_config.ts";
 * const limits = timestampLimitsOf({ "message.timestamp.difference.max.ms": "60000" });
 * assert.deepEqual(limits, { beforeMs: 60000, afterMs: 60000 });
 * assert.equal(timestampLimitsOf({}), null);
 * ```
 */
export function timestampLimitsOf(
  configs: Record<string, string> | undefined,
): { beforeMs: number; afterMs: number } | null {
  if (configs === undefined || logAppendTimeOf(configs)) return null;
  const limit = (key: string) => {
    const v = configs[key];
    return v === undefined || v === NO_LIMIT ? undefined : Number(v);
  };
  const difference = limit("message.timestamp.difference.max.ms") ?? Infinity;
  const beforeMs = limit("message.timestamp.before.max.ms") ?? difference;
  const afterMs = limit("message.timestamp.after.max.ms") ?? difference;
  return beforeMs === Infinity && afterMs === Infinity ? null : { beforeMs, afterMs };
}

/** IncrementalAlterConfigs' operations, by their numbers on the wire. */
export const CONFIG_OPS = ["SET", "DELETE", "APPEND", "SUBTRACT"] as const;

/** One operation of an incremental alter. */
export interface ConfigOp {
  name: string;
  op: typeof CONFIG_OPS[number];
  value: string | null;
}

/** What an alter does to a topic's stored configs: values to set and names to remove. */
export interface ConfigChange {
  set: Record<string, string>;
  delete: string[];
}

/**
 * An incremental alter (Kafka's IncrementalAlterConfigs) as a change of the
 * stored configs: SET checks and sets, DELETE removes (the default comes
 * back), APPEND and SUBTRACT add items to or take them from a list config's
 * current value. A name twice, APPEND or SUBTRACT on a config that is not a
 * list, and SET without a value are INVALID_REQUEST, as in Kafka.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { incrementalChange } from "./topic_config.ts";
 * const change = incrementalChange({ "retention.ms": "1000" }, [
 *   { name: "retention.ms", op: "DELETE", value: null },
 *   { name: "leader.replication.throttled.replicas", op: "APPEND", value: "0:1" },
 * ]);
 * assert.deepEqual(change, { set: { "leader.replication.throttled.replicas": "0:1" }, delete: ["retention.ms"] });
 * ```
 */
export function incrementalChange(current: Record<string, string>, ops: readonly ConfigOp[]): ConfigChange {
  const change: ConfigChange = { set: {}, delete: [] };
  const seen = new Set<string>();
  for (const { name, op, value } of ops) {
    if (seen.has(name)) throw new YakError("INVALID_REQUEST", `config '${name.slice(0, 100)}' is given twice`);
    seen.add(name);
    const spec = configSpec(name);
    if (!spec) throw unknownConfig(name);
    if (op === "DELETE") {
      change.delete.push(name);
      continue;
    }
    if (value === null) throw new YakError("INVALID_REQUEST", `config '${name}': ${op} needs a value`);
    if (op === "SET") {
      change.set[name] = checkConfig(name, value);
      continue;
    }
    if (spec.type !== "LIST") {
      throw new YakError("INVALID_REQUEST", `config '${name}' is not a list: ${op} is only for list configs`);
    }
    const have = splitList(current[name] ?? spec.kafkaDefault);
    const items = splitList(value);
    const next = op === "APPEND"
      ? [...have, ...items.filter((i) => !have.includes(i))]
      : have.filter((i) => !items.includes(i));
    change.set[name] = checkConfig(name, next.join(","));
  }
  return change;
}

function splitList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/**
 * A whole-set alter (Kafka's AlterConfigs) as a change: the given configs
 * replace the stored ones, so a stored name not given is removed. A null
 * value leaves its name unset.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { replacementChange } from "./topic_config.ts";
 * const change = replacementChange({ "retention.ms": "1000" }, [["segment.ms", "5000"]]);
 * assert.deepEqual(change, { set: { "segment.ms": "5000" }, delete: ["retention.ms"] });
 * ```
 */
export function replacementChange(
  current: Record<string, string>,
  wanted: readonly [name: string, value: string | null][],
): ConfigChange {
  const seen = new Set<string>();
  for (const [name] of wanted) {
    if (seen.has(name)) throw new YakError("INVALID_REQUEST", `config '${name.slice(0, 100)}' is given twice`);
    if (!configSpec(name)) throw unknownConfig(name);
    seen.add(name);
  }
  const set = parseTopicConfigs(Object.fromEntries(wanted.filter(([, v]) => v !== null)));
  return { set, delete: Object.keys(current).filter((k) => !Object.hasOwn(set, k)) };
}
