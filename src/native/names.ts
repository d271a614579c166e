/**
 * The native handlers' checks of names as they arrive in JSON: a topic, a
 * group or a client id may be any JSON value until checked here.
 *
 * @module
 */
import * as names from "../log/names.ts";
import { YakError } from "../errors.ts";

const CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * names.ts quotes a bad name with String(), which throws on a JSON object
 * such as {"toString":1} or a 10,000-deep array: refuse those first, so they
 * get INVALID_TOPIC / INVALID_ARGUMENT rather than a retriable UNAVAILABLE.
 */
function notAnObject(name: unknown, what: "topic" | "group"): unknown {
  if (typeof name !== "object" || name === null) return name;
  throw new YakError(
    what === "topic" ? "INVALID_TOPIC" : "INVALID_ARGUMENT",
    `invalid ${what} name (${Array.isArray(name) ? "an array" : "an object"}): it must be a string`,
  );
}

/**
 * A topic name from a request, or INVALID_TOPIC.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkTopicName } from "./names.ts";
 * assert.equal(checkTopicName("orders"), "orders");
 * assert.throws(() => checkTopicName({ toString: 1 }), { code: "INVALID_TOPIC" });
 * ```
 */
export function checkTopicName(name: unknown, allowInternal = false): string {
  return names.checkTopicName(notAnObject(name, "topic"), allowInternal);
}

/**
 * A group name from a request, or INVALID_ARGUMENT.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkGroupName } from "./names.ts";
 * assert.equal(checkGroupName("billing"), "billing");
 * assert.throws(() => checkGroupName(["billing"]), { code: "INVALID_ARGUMENT" });
 * ```
 */
export function checkGroupName(name: unknown): string {
  return names.checkGroupName(notAnObject(name, "group"));
}

/**
 * A client id (`field` names it in the error): 1-64 letters, digits, '.', '_' or '-'.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkClientId } from "./names.ts";
 * assert.equal(checkClientId("p-1f3a", "client"), "p-1f3a");
 * assert.throws(() => checkClientId("a b", "client"), { code: "INVALID_REQUEST" });
 * ```
 */
export function checkClientId(id: string, field: string): string {
  if (!CLIENT_ID.test(id)) {
    throw new YakError("INVALID_REQUEST", `'${field}' must be 1-64 letters, digits, '.', '_' or '-'`);
  }
  return id;
}
