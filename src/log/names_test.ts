import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import { checkGroupName, checkTopicName, MAX_NAME_CHARS } from "./names.ts";

/** Asserts that `fn` throws a YakError with `code`, and returns it. */
function throwsYak(fn: () => unknown, code: string, label: string): YakError {
  let caught: unknown = null;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof YakError,
    `${label}: expected a YakError, got ${caught}`,
  );
  assert.equal(caught.code, code, label);
  return caught;
}

const BAD_NAMES: unknown[] = [
  "",
  ".",
  "..",
  "../x",
  "a/b",
  "/abs",
  "a\\b",
  "x\u0000y",
  "tab\tname",
  "new\nline",
  "sp ace",
  "é",
  "a".repeat(MAX_NAME_CHARS + 1),
  42,
  null,
  undefined,
  {},
  ["events"],
];

Deno.test("checkTopicName returns legal names unchanged", () => {
  assert.equal(MAX_NAME_CHARS, 249);
  for (
    const name of [
      "events",
      "a.b_c-1",
      "A-Z.0_9",
      "...x",
      "_single",
      "a".repeat(249),
    ]
  ) {
    assert.equal(checkTopicName(name), name);
  }
});

Deno.test("checkTopicName throws INVALID_TOPIC for illegal names", () => {
  for (const name of BAD_NAMES) {
    const label = JSON.stringify(String(name));
    const err = throwsYak(() => checkTopicName(name), "INVALID_TOPIC", label);
    assert.match(err.message, /^invalid topic name /, label);
    // Internal names being allowed must not let illegal ones through.
    throwsYak(() => checkTopicName(name, true), "INVALID_TOPIC", label);
  }
});

Deno.test("checkTopicName explains why a name is refused", () => {
  assert.match(
    throwsYak(() => checkTopicName(""), "INVALID_TOPIC", "empty").message,
    /empty/,
  );
  assert.match(
    throwsYak(() => checkTopicName(".."), "INVALID_TOPIC", "..").message,
    /'\.' and '\.\.'/,
  );
  assert.match(
    throwsYak(() => checkTopicName("a".repeat(250)), "INVALID_TOPIC", "long")
      .message,
    /longer than 249/,
  );
  assert.match(
    throwsYak(() => checkTopicName(7), "INVALID_TOPIC", "number").message,
    /must be a string/,
  );
  assert.match(
    throwsYak(() => checkTopicName("a/b"), "INVALID_TOPIC", "slash").message,
    /only letters, digits/,
  );
});

Deno.test("checkTopicName reserves the internal topics unless allowed; other names may start with __, as in Kafka", () => {
  assert.equal(checkTopicName("__debezium-heartbeat.db1"), "__debezium-heartbeat.db1");
  for (const name of ["__consumer_offsets", "__transaction_state"]) {
    throwsYak(() => checkTopicName(name), "INVALID_TOPIC", name);
  }
  const err = throwsYak(
    () => checkTopicName("__cluster"),
    "INVALID_TOPIC",
    "__cluster",
  );
  assert.match(err.message, /internal topics/);
  throwsYak(() => checkTopicName("__cluster", false), "INVALID_TOPIC", "false");
  assert.equal(checkTopicName("__cluster", true), "__cluster");
  assert.equal(checkTopicName("_not_internal"), "_not_internal");
});

Deno.test("checkGroupName takes any non-empty string up to its bound, as Kafka does; group ids never touch a path", () => {
  for (const name of ["billing", "g.1_x-2", "roundrobin,range", "../etc", "a b/c", "ü😀", "a".repeat(1024)]) {
    assert.equal(checkGroupName(name), name);
  }
  for (const name of ["", "a".repeat(1025), 7, null, undefined, ["g"]]) {
    const label = JSON.stringify(String(name)).slice(0, 40);
    const err = throwsYak(() => checkGroupName(name), "INVALID_ARGUMENT", label);
    assert.match(err.message, /^invalid group id /, label);
  }
});
