/**
 * Topic configs: the keys a topic may set (Kafka's names), how each is
 * checked, and how a broker reads them. They are kept in `__cluster` with the
 * topic, so every replica and every future leader applies the same ones.
 *
 * @module
 */
import { YakError } from "../errors.ts";

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
};

/** At most this many configs per topic: each travels in every metadata record of the topic. */
export const MAX_TOPIC_CONFIGS = 64;

/**
 * Checks configs from a request (`{"key": "value"}`) or the CLI (`key=value`
 * strings), and returns them as stored. Unknown keys and bad values get
 * INVALID_CONFIG naming the key.
 *
 * @example
 * ```ts
 * import { parseTopicConfigs } from "./topic_config.ts";
 * parseTopicConfigs(["min.insync.replicas=2"]); // { "min.insync.replicas": "2" }
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
 * import { minInsyncReplicasOf } from "./topic_config.ts";
 * minInsyncReplicasOf({ "min.insync.replicas": "3" }, 2); // 3
 * ```
 */
export function minInsyncReplicasOf(configs: Record<string, string> | undefined, fallback: number): number {
  const v = configs?.["min.insync.replicas"];
  return v === undefined ? fallback : Number(v);
}
