/**
 * Topic and group names are checked here before they ever touch a path.
 *
 * @module
 */
import { YakError } from "../errors.ts";

/** Kafka's legal characters: letters, digits, `.`, `_`, `-`. */
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/;
/** Kafka's limit, so names fit in a file name with room for suffixes. */
export const MAX_NAME_CHARS = 249;
/** Names starting with this are yak's own (like Kafka's `__consumer_offsets`). */
export const INTERNAL_PREFIX = "__";

/**
 * Returns the name if it is a legal topic name, else throws INVALID_TOPIC with
 * the reason. Internal names are refused unless `allowInternal` is set.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTopicName } from "./names.ts";
 * assert.equal(checkTopicName("events"), "events");
 * assert.throws(() => checkTopicName("../etc"), { code: "INVALID_TOPIC" });
 * ```
 */
export function checkTopicName(name: unknown, allowInternal = false): string {
  const why = nameProblem(name);
  if (why) {
    throw new YakError(
      "INVALID_TOPIC",
      `invalid topic name ${show(name)}: ${why}`,
    );
  }
  if (!allowInternal && (name as string).startsWith(INTERNAL_PREFIX)) {
    throw new YakError(
      "INVALID_TOPIC",
      `invalid topic name ${show(name)}: names starting with '${INTERNAL_PREFIX}' are reserved for yak`,
    );
  }
  return name as string;
}

/**
 * Returns the name if it is a legal consumer group name, else throws
 * INVALID_ARGUMENT. Same rules as topics: groups are written into the log.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkGroupName } from "./names.ts";
 * assert.equal(checkGroupName("billing"), "billing");
 * ```
 */
export function checkGroupName(name: unknown): string {
  const why = nameProblem(name);
  if (why) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `invalid group name ${show(name)}: ${why}`,
    );
  }
  return name as string;
}

function nameProblem(name: unknown): string | null {
  if (typeof name !== "string") return "it must be a string";
  if (name.length === 0) return "it is empty";
  if (name.length > MAX_NAME_CHARS) {
    return `it is longer than ${MAX_NAME_CHARS} characters`;
  }
  if (name === "." || name === "..") return "'.' and '..' are not allowed";
  if (!NAME_PATTERN.test(name)) {
    return "use only letters, digits, '.', '_' and '-'";
  }
  return null;
}

function show(name: unknown): string {
  const text = typeof name === "string" ? name : String(name);
  return JSON.stringify(text.length > 60 ? text.slice(0, 60) + "..." : text);
}
