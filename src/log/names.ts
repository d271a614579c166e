/**
 * Topic names are checked here before they ever touch a path; group ids, which never do, only for length.
 *
 * @module
 */
import { YakError } from "../errors.ts";

/** Kafka's legal characters: letters, digits, `.`, `_`, `-`. */
const NAME_PATTERN = /^[A-Za-z0-9._-]+$/;
/** Kafka's limit, so names fit in a file name with room for suffixes. */
export const MAX_NAME_CHARS = 249;
/**
 * Topic names that are not a user's: yak's own metadata log, and Kafka's
 * internal topics, which Kafka tools take for the broker's. Other names may
 * start with `__`, as in Kafka (Debezium's `__debezium-heartbeat...`).
 */
export const INTERNAL_TOPICS: readonly string[] = ["__cluster", "__consumer_offsets", "__transaction_state"];

/** Whether `name` is one of {@link INTERNAL_TOPICS}. */
export function isInternalTopic(name: string): boolean {
  return INTERNAL_TOPICS.includes(name);
}

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
  if (!allowInternal && isInternalTopic(name as string)) {
    throw new YakError(
      "INVALID_TOPIC",
      `invalid topic name ${show(name)}: ${INTERNAL_TOPICS.join(", ")} are internal topics`,
    );
  }
  return name as string;
}

/**
 * Group ids may be any non-empty string, as in Kafka (librdkafka users name
 * groups such as `roundrobin,range`): they never touch a path, only JSON
 * records in `__cluster` and escaped labels in /metrics. Bounded in length,
 * since every commit record carries the id.
 */
export const MAX_GROUP_ID_CHARS = 1024;

/**
 * Returns the group id if it is one, else throws INVALID_ARGUMENT: a string of
 * 1 to {@link MAX_GROUP_ID_CHARS} characters.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkGroupName } from "./names.ts";
 * assert.equal(checkGroupName("billing"), "billing");
 * assert.equal(checkGroupName("roundrobin,range"), "roundrobin,range");
 * assert.throws(() => checkGroupName(""), { code: "INVALID_ARGUMENT" });
 * ```
 */
export function checkGroupName(name: unknown): string {
  const why = typeof name !== "string"
    ? "it must be a string"
    : name.length === 0
    ? "it is empty"
    : name.length > MAX_GROUP_ID_CHARS
    ? `it is longer than ${MAX_GROUP_ID_CHARS} characters`
    : null;
  if (why) throw new YakError("INVALID_ARGUMENT", `invalid group id ${show(name)}: ${why}`);
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
