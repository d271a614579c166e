import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import {
  checkConfigKeys,
  effectiveConfig,
  incrementalChange,
  logAppendTimeOf,
  MAX_TOPIC_CONFIGS,
  maxMessageBytesOf,
  minInsyncReplicasOf,
  parseTopicConfigs,
  replacementChange,
  timestampLimitsOf,
  TOPIC_CONFIGS,
} from "./topic_config.ts";

const invalid = (mention: string) => (err: unknown) => {
  assert.ok(err instanceof YakError && err.code === "INVALID_CONFIG", String(err));
  assert.ok(err.message.includes(mention), err.message);
  return true;
};

Deno.test("topic configs from a request object or CLI key=value strings are checked and stored as text", () => {
  assert.deepEqual(parseTopicConfigs({ "retention.ms": 60000, "min.insync.replicas": "2" }), {
    "retention.ms": "60000",
    "min.insync.replicas": "2",
  });
  assert.deepEqual(parseTopicConfigs(["segment.bytes=1048576", "retention.bytes=-1"]), {
    "segment.bytes": "1048576",
    "retention.bytes": "-1",
  });
  assert.deepEqual(parseTopicConfigs(undefined), {});
});

Deno.test("an unknown key, a bad value, a missing value or too many configs: INVALID_CONFIG naming it", () => {
  assert.throws(() => parseTopicConfigs({ "retention.msec": "1" }), invalid("unknown topic config 'retention.msec'"));
  assert.throws(() => parseTopicConfigs({ "segment.bytes": "12" }), invalid("config 'segment.bytes' must be"));
  assert.throws(() => parseTopicConfigs({ "retention.ms": "1.5" }), invalid("'retention.ms'"));
  assert.throws(() => parseTopicConfigs({ "retention.ms": null }), invalid("needs a value"));
  assert.throws(() => parseTopicConfigs(["retention.ms"]), invalid("must be key=value"));
  assert.throws(() => parseTopicConfigs("retention.ms=1"), invalid("must be an object"));
  assert.throws(() => parseTopicConfigs({ ["__proto__"]: "1" }), invalid("unknown topic config"));
  const many = Array.from({ length: MAX_TOPIC_CONFIGS + 1 }, () => "retention.ms=1");
  assert.throws(() => parseTopicConfigs(many), invalid(`at most ${MAX_TOPIC_CONFIGS}`));
  assert.deepEqual(checkConfigKeys(["retention.ms"]), ["retention.ms"]);
  assert.throws(() => checkConfigKeys(["nope"]), invalid("unknown topic config 'nope'"));
});

Deno.test("a topic's effective configs: its own over the broker's defaults", () => {
  const defaults = {
    minInsyncReplicas: 2,
    retentionMs: 604800000,
    retentionBytes: -1,
    segmentBytes: 67108864,
    segmentMs: 604800000,
    maxMessageBytes: 1048576,
  };
  assert.deepEqual(effectiveConfig(undefined, defaults), defaults);
  assert.deepEqual(effectiveConfig({ "retention.bytes": "4096", "segment.ms": "0" }, defaults), {
    ...defaults,
    retentionBytes: 4096,
    segmentMs: 0,
  });
  assert.equal(minInsyncReplicasOf({ "min.insync.replicas": "3" }, 2), 3);
  assert.equal(minInsyncReplicasOf(undefined, 2), 2);
  assert.deepEqual(maxMessageBytesOf({ "max.message.bytes": "100" }, 1048576), { limit: 100, fromTopic: true });
  assert.deepEqual(maxMessageBytesOf({}, 1048576), { limit: 1048576, fromTopic: false });
});

Deno.test("every Kafka 3.x topic config is taken with Kafka's check; tiered storage is refused", () => {
  assert.ok(Object.keys(TOPIC_CONFIGS).length >= 36, "Kafka 3.x defines 36 topic configs");
  assert.deepEqual(
    parseTopicConfigs({
      "compression.type": "gzip",
      "delete.retention.ms": "100",
      "message.timestamp.difference.max.ms": "9223372036854775807",
      "cleanup.policy": " delete ",
      "preallocate": "TRUE",
      "min.cleanable.dirty.ratio": "0.25",
      "leader.replication.throttled.replicas": "0:1, 1:2",
      "message.format.version": "2.8-IV1",
    }),
    {
      "compression.type": "gzip",
      "delete.retention.ms": "100",
      "message.timestamp.difference.max.ms": "9223372036854775807",
      "cleanup.policy": "delete",
      "preallocate": "true",
      "min.cleanable.dirty.ratio": "0.25",
      "leader.replication.throttled.replicas": "0:1,1:2",
      "message.format.version": "2.8-IV1",
    },
  );
  assert.deepEqual(parseTopicConfigs({ "cleanup.policy": "compact" }), { "cleanup.policy": "compact" });
  assert.deepEqual(parseTopicConfigs({ "cleanup.policy": "delete, compact" }), { "cleanup.policy": "delete,compact" });
  assert.throws(
    () => parseTopicConfigs({ "cleanup.policy": "shred" }),
    invalid("must be delete, compact, or compact,delete"),
  );
  assert.throws(() => parseTopicConfigs(["retention.ms=1", "retention.ms=2"]), invalid("is given more than once"));
  assert.throws(() => parseTopicConfigs({ "remote.storage.enable": "true" }), invalid("no tiered storage"));
  assert.throws(() => parseTopicConfigs({ "compression.type": "GZIP" }), invalid("must be one of"));
  assert.throws(() => parseTopicConfigs({ "flush.messages": "9223372036854775808" }), invalid("from 1 to"));
  assert.throws(() => parseTopicConfigs({ "min.cleanable.dirty.ratio": "1.5" }), invalid("from 0 to 1"));
  assert.throws(() => parseTopicConfigs({ "message.timestamp.type": "logappendtime" }), invalid("CreateTime"));
  assert.throws(() => parseTopicConfigs({ "compression.gzip.level": "0" }), invalid("or -1"));
  assert.throws(() => parseTopicConfigs({ "segment.ms": "0" }), invalid("from 1 to"));
});

Deno.test("alters as Kafka's AlterConfigs (replace all) and IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT)", () => {
  assert.deepEqual(replacementChange({ "retention.ms": "5", "segment.ms": "9" }, [["segment.ms", "10"]]), {
    set: { "segment.ms": "10" },
    delete: ["retention.ms"],
  });
  assert.throws(() => replacementChange({}, [["nope", null]]), invalid("unknown topic config 'nope'"));
  const throttle = "follower.replication.throttled.replicas";
  assert.deepEqual(
    incrementalChange({ [throttle]: "0:1,1:1" }, [
      { name: throttle, op: "SUBTRACT", value: "0:1" },
      { name: "retention.ms", op: "SET", value: "60000" },
      { name: "segment.ms", op: "DELETE", value: null },
    ]),
    { set: { [throttle]: "1:1", "retention.ms": "60000" }, delete: ["segment.ms"] },
  );
  const request = (mention: string) => (err: unknown) => {
    assert.ok(err instanceof YakError && err.code === "INVALID_REQUEST", String(err));
    assert.ok(err.message.includes(mention), err.message);
    return true;
  };
  assert.throws(
    () => incrementalChange({}, [{ name: "retention.ms", op: "APPEND", value: "1" }]),
    request("not a list"),
  );
  const twice = [
    { name: "retention.ms", op: "SET", value: "1" },
    { name: "retention.ms", op: "DELETE", value: null },
  ] as const;
  assert.throws(() => incrementalChange({}, twice), request("given twice"));
  assert.deepEqual(
    incrementalChange({ "cleanup.policy": "delete" }, [{ name: "cleanup.policy", op: "APPEND", value: "compact" }]),
    { set: { "cleanup.policy": "delete,compact" }, delete: [] },
  );
});

Deno.test("timestamp limits: before and after fall back to difference; LogAppendTime has none", () => {
  assert.deepEqual(
    timestampLimitsOf({ "message.timestamp.difference.max.ms": "1000", "message.timestamp.after.max.ms": "50" }),
    { beforeMs: 1000, afterMs: 50 },
  );
  assert.equal(
    timestampLimitsOf({ "message.timestamp.type": "LogAppendTime", "message.timestamp.difference.max.ms": "1" }),
    null,
  );
  assert.equal(timestampLimitsOf({ "message.timestamp.before.max.ms": "9223372036854775807" }), null);
  assert.equal(logAppendTimeOf({ "message.timestamp.type": "CreateTime" }), false);
});
