/**
 * How a broker reads the topic configs of log compaction (Kafka's names:
 * `cleanup.policy`, `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`,
 * `max.compaction.lag.ms`, `delete.retention.ms`; topic_config.ts checks
 * them) over its defaults, and the rule they put on produced records: a
 * compacted topic keeps the latest value per key, so every record needs a key.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import type { RecordInput } from "../log/record.ts";

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
