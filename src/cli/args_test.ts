import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import { editDistance, integer, nearest, parse, required } from "./args.ts";

const usage = (mention: string) => (err: unknown) => {
  assert.ok(err instanceof YakError && err.code === "INVALID_ARGUMENT", String(err));
  assert.ok(err.message.includes(mention), err.message);
  return true;
};

const FLAGS = {
  topic: { type: "string" as const },
  offset: { type: "string" as const },
  bootstrap: { type: "string" as const },
  "from-beginning": { type: "boolean" as const },
};

Deno.test("flags: values, negative numbers as values, Kafka's spellings", () => {
  const { values } = parse("consume", ["--topic", "t", "--offset", "-10", "--bootstrap-server", "h:1"], FLAGS);
  assert.equal(values.topic, "t");
  assert.equal(values.offset, "-10", "a negative number after a flag that takes a value is its value");
  assert.equal(values.bootstrap, "h:1", "--bootstrap-server is --bootstrap");
  assert.equal(parse("consume", ["--from-beginning"], FLAGS).values["from-beginning"], true);
});

Deno.test("flags: an unknown one suggests the nearest; a missing value and a repeated flag are errors", () => {
  assert.throws(() => parse("consume", ["--from-begining"], FLAGS), usage("--from-beginning"));
  assert.throws(() => parse("consume", ["--topic"], FLAGS), usage("yak consume --help"));
  assert.throws(() => parse("consume", ["--topic", "a", "--topic", "b"], FLAGS), usage("yak consume --help"));
  assert.throws(() => parse("consume", ["stray"], FLAGS), usage("yak consume --help"));
  assert.deepEqual(parse("topics", ["stray"], FLAGS, true).positionals, ["stray"]);
  // Before: node's "Unknown option '-1'. To specify a positional argument starting with a '-', place it...".
  assert.throws(() => parse("logs", ["broker", "-1"], FLAGS, true), usage("'-1' is not a flag"));
});

Deno.test("integers within bounds, required flags, and the typo distance", () => {
  assert.equal(integer({ n: "42" }, "n", 7, 0, 100), 42);
  assert.equal(integer({}, "n", 7, 0, 100), 7);
  assert.equal(integer({}, "n", undefined), undefined);
  assert.throws(() => integer({ n: "101" }, "n", 7, 0, 100), usage("--n must be a whole number from 0 to 100"));
  assert.throws(() => integer({ n: "1e3" }, "n", 7), usage("not '1e3'"));
  assert.equal(required({ topic: "t" }, "topic", "produce"), "t");
  assert.throws(() => required({ topic: "" }, "topic", "produce"), usage("--topic needs a value, not ''"));
  assert.throws(() => required({}, "topic", "produce"), usage("--topic is required"));
  assert.equal(editDistance("mesage", "message"), 1);
  assert.equal(editDistance("ab", "ba"), 1, "a swap of neighbours is one edit");
  assert.equal(nearest("offest", ["offset", "topic"]), "offset");
  assert.equal(nearest("zzzzzz", ["offset", "topic"]), undefined);
  assert.equal(nearest("DEMO", ["demo", "other"]), "demo", "only the case differs (four letters changed)");
  assert.equal(nearest("from", ["from-beginning", "offset"]), "from-beginning", "a prefix of one candidate");
});
