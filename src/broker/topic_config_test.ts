import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import {
  checkConfigKeys,
  effectiveConfig,
  MAX_TOPIC_CONFIGS,
  maxMessageBytesOf,
  minInsyncReplicasOf,
  parseTopicConfigs,
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
