/**
 * Topic configs: the keys a topic may set (Kafka's names), how each is
 * checked, and how a broker reads them. They are kept in `__cluster` with the
 * topic, so every replica and every future leader applies the same ones.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { COMPACTION_CONFIGS } from "./compaction_config.ts";

interface ConfigSpec {
  /** Checks a value and returns it in its stored form, or throws. */
  check: (value: string) => string;
  doc: string;
}

function intIn(min: number, max: number): (value: string) => string {
  return (value) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new Error(`must be an integer from ${min} to ${max}`);
    }
    return String(n);
  };
}

/** The configs a topic may set. */
export const TOPIC_CONFIGS: Readonly<Record<string, ConfigSpec>> = {
  "min.insync.replicas": {
    check: intIn(1, 1000),
    doc: "acks=all needs this many brokers in the in-sync set (default: the broker's --min-insync-replicas)",
  },
  "retention.ms": {
    check: intIn(-1, Number.MAX_SAFE_INTEGER),
    doc: "delete whole segments whose newest record is older than this; -1 keeps them (default 7 days)",
  },
  "retention.bytes": {
    check: intIn(-1, Number.MAX_SAFE_INTEGER),
    doc: "per partition: delete the oldest whole segments while the rest stay above this; -1 = no limit (default)",
  },
  "segment.bytes": {
    check: intIn(1024, 2 ** 31 - 1),
    doc: "roll a new segment file past this size (default: the broker's --segment-bytes)",
  },
  "segment.ms": {
    check: intIn(0, Number.MAX_SAFE_INTEGER),
    doc:
      "roll a new segment file when the active one is older than this, so time retention can delete it (default 7 days)",
  },
  "max.message.bytes": {
    check: intIn(1, 16 * 1024 * 1024 - 64 * 1024),
    doc: "the largest record (key and value) a producer may send (default 1 MiB)",
  },
  ...COMPACTION_CONFIGS,
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
    if (typeof k !== "string" || !Object.hasOwn(TOPIC_CONFIGS, k)) {
      throw new YakError(
        "INVALID_CONFIG",
        `unknown topic config '${String(k).slice(0, 100)}'; known: ${Object.keys(TOPIC_CONFIGS).join(", ")}`,
      );
    }
    return k;
  });
}

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
 * ```
 */
export function parseTopicConfigs(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  let pairs: [string, unknown][];
  if (Array.isArray(raw)) {
    pairs = raw.map((item) => {
      const s = String(item);
      const eq = s.indexOf("=");
      if (eq <= 0) throw new YakError("INVALID_CONFIG", `config '${s}' must be key=value`);
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
  const out: Record<string, string> = {};
  for (const [key, value] of pairs) {
    const spec = Object.hasOwn(TOPIC_CONFIGS, key) ? TOPIC_CONFIGS[key] : undefined;
    if (!spec) {
      throw new YakError(
        "INVALID_CONFIG",
        `unknown topic config '${String(key).slice(0, 100)}'; known: ${Object.keys(TOPIC_CONFIGS).join(", ")}`,
      );
    }
    if (typeof value !== "string" && typeof value !== "number") {
      throw new YakError("INVALID_CONFIG", `config '${key}' needs a value`);
    }
    try {
      out[key] = spec.check(String(value));
    } catch (err) {
      throw new YakError("INVALID_CONFIG", `config '${key}' ${err instanceof Error ? err.message : err}`);
    }
  }
  return out;
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
