/**
 * The topic configs of log compaction (Kafka's names: `cleanup.policy`,
 * `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`,
 * `max.compaction.lag.ms`, `delete.retention.ms`), how each is checked, how
 * a broker reads them over its defaults, and the rule they put on produced
 * records: a compacted topic keeps the latest value per key, so every record
 * needs a key.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import type { RecordInput } from "../log/record.ts";

/** Checks a value and returns it in its stored form, or throws an Error saying what it must be. */
type Check = (value: string) => string;

function millis(min: number): Check {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
      throw new Error(`must be an integer from ${min} to ${Number.MAX_SAFE_INTEGER}`);
    }
    return String(n);
  };
}

function ratio(value: string): string {
  const n = Number(value);
  if (!/^(\d+\.?\d*|\.\d+)$/.test(value.trim()) || !(n >= 0 && n <= 1)) {
    throw new Error("must be a number from 0 to 1");
  }
  return String(n);
}

/** `delete`, `compact`, or both (a comma-separated list, as Kafka takes it); stored without repeats or spaces. */
function cleanupPolicy(value: string): string {
  const items = value.split(",").map((s) => s.trim());
  if (items.some((s) => s !== "delete" && s !== "compact")) {
    throw new Error("must be delete, compact, or compact,delete");
  }
  return [...new Set(items)].join(",");
}

/** The compaction configs a topic may set (merged into topic_config.ts's table). */
export const COMPACTION_CONFIGS: Readonly<Record<string, { check: Check; doc: string }>> = {
  "cleanup.policy": {
    check: cleanupPolicy,
    doc: "delete: retention deletes old segments; compact: the cleaner keeps the latest record per key " +
      "(records need keys); compact,delete: both (default delete)",
  },
  "min.cleanable.dirty.ratio": {
    check: ratio,
    doc: "compacted topics: the cleaner runs once this share of the closed segments' bytes is not cleaned yet " +
      `(default ${DEFAULTS.minCleanableDirtyRatio})`,
  },
  "min.compaction.lag.ms": {
    check: millis(0),
    doc: "compacted topics: a segment whose newest record is younger than this is not cleaned yet (default 0)",
  },
  "max.compaction.lag.ms": {
    check: millis(1),
    doc: "compacted topics: records older than this are cleaned whatever the dirty ratio, and the active " +
      "segment rolls at this age (default: no limit)",
  },
  "delete.retention.ms": {
    check: millis(0),
    doc: "compacted topics: a tombstone (a null value) is removed once it is older than this, and a cleaning " +
      `has seen it (default ${DEFAULTS.deleteRetentionMs} ms, one day)`,
  },
};

/** A topic's compaction settings, the broker's defaults filled in. */
export interface CompactionConfig {
  /** cleanup.policy includes compact: the cleaner runs, and records need keys. */
  compact: boolean;
  /** cleanup.policy includes delete: retention.ms and retention.bytes delete old segments. */
  delete: boolean;
  minCleanableDirtyRatio: number;
  minCompactionLagMs: number;
  /** Infinity when not set. */
  maxCompactionLagMs: number;
  deleteRetentionMs: number;
}

/**
 * A topic's compaction settings from its configs over the defaults of src/config.ts.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { compactionConfigOf } from "./compaction_config.ts";
 * assert.equal(compactionConfigOf({ "cleanup.policy": "compact" }).compact, true);
 * assert.equal(compactionConfigOf({ "cleanup.policy": "compact" }).delete, false);
 * assert.equal(compactionConfigOf(undefined).delete, true);
 * ```
 */
export function compactionConfigOf(configs: Record<string, string> | undefined): CompactionConfig {
  const num = (key: string, fallback: number) => configs?.[key] === undefined ? fallback : Number(configs[key]);
  const policy = (configs?.["cleanup.policy"] ?? "delete").split(",");
  return {
    compact: policy.includes("compact"),
    delete: policy.includes("delete"),
    minCleanableDirtyRatio: num("min.cleanable.dirty.ratio", DEFAULTS.minCleanableDirtyRatio),
    minCompactionLagMs: num("min.compaction.lag.ms", 0),
    maxCompactionLagMs: num("max.compaction.lag.ms", Infinity),
    deleteRetentionMs: num("delete.retention.ms", DEFAULTS.deleteRetentionMs),
  };
}

/**
 * Whether a topic's cleanup.policy includes compact.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isCompacted } from "./compaction_config.ts";
 * assert.equal(isCompacted({ "cleanup.policy": "compact,delete" }), true);
 * assert.equal(isCompacted({}), false);
 * ```
 */
export function isCompacted(configs: Record<string, string> | undefined): boolean {
  return (configs?.["cleanup.policy"] ?? "").split(",").includes("compact");
}

/**
 * Refuses a batch holding a record without a key when the topic is
 * compacted (INVALID_RECORD, Kafka's 87): the cleaner keeps the latest
 * record per key, so a keyless one has nothing to be kept under.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { requireKeys } from "./compaction_config.ts";
 * const compacted = { "cleanup.policy": "compact" };
 * requireKeys("t", compacted, [{ key: "k", value: "v" }]); // fine
 * requireKeys("t", {}, [{ key: null, value: "v" }]); // fine: not compacted
 * assert.throws(() => requireKeys("t", compacted, [{ key: null, value: "v" }]), { code: "INVALID_RECORD" });
 * ```
 */
export function requireKeys(
  topic: string,
  configs: Record<string, string> | undefined,
  records: readonly RecordInput[],
): void {
  if (!isCompacted(configs)) return;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (r.key !== null && r.key !== undefined || r.keyB64 !== undefined) continue;
    throw new YakError(
      "INVALID_RECORD",
      `record ${i} of the batch has no key, and topic '${topic}' is compacted (cleanup.policy=` +
        `${configs?.["cleanup.policy"]}): the cleaner keeps the latest record per key, so every record needs one ` +
        `(yak produce --key K, or --key-separator SEP for a key per line)`,
      { record: i },
    );
  }
}
