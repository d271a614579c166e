/**
 * Topic configs and the config APIs (issue 21 §2) through real clients, on
 * one cluster of two brokers (the second shows a follower handing a change
 * to the leader): kafkajs 2.2.4's admin (createTopics with Kafka's standard
 * configs, describeConfigs of a topic and a broker, alterConfigs),
 * confluent-kafka's AdminClient from Debian (librdkafka 2.0.2: refusals with
 * the broker's message, describe_configs, alter_configs), LogAppendTime seen
 * by kcat and yak consume, IncrementalAlterConfigs sent to a follower, and
 * `yak topics --describe`.
 */
import assert from "node:assert/strict";
import { ConfigResourceTypes, Kafka, logLevel } from "kafkajs";
import {
  kcatMissing,
  lastJsonLine,
  python,
  pythonModuleMissing,
  run,
  skipWithout,
  TestCluster,
  withDeadline,
  yak,
} from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

/** DescribeConfigs' sources. */
const TOPIC_CONFIG = 1;
const STATIC_BROKER_CONFIG = 4;
const DEFAULT_CONFIG = 5;

/** The standard configs a Kafka user creates a topic with; every one was refused as INVALID_CONFIG before. */
const STANDARD = {
  "compression.type": "gzip",
  "delete.retention.ms": "100000",
  "message.timestamp.difference.max.ms": "60000",
  "cleanup.policy": "delete",
  "retention.ms": "3600000",
};

const CONFLUENT = `
import sys, json
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource
boot, leader = sys.argv[1], sys.argv[2]
a = AdminClient({"bootstrap.servers": boot})
def error(f):
    try:
        f.result(timeout=20)
        return None
    except KafkaException as e:
        return e.args[0].str()
out = {}
made = a.create_topics([
    NewTopic("compacted", 1, 1, config={"cleanup.policy": "compact"}),
    NewTopic("typo", 1, 1, config={"retention.msec": "1"}),
    NewTopic("rf3", 1, 3),
    NewTopic("rf0", 1, 0),
    NewTopic("__heartbeat-db1", 1, 1),
], request_timeout=20)
out["compact"], out["typo"] = error(made["compacted"]), error(made["typo"])
out["rf3"], out["rf0"], out["dunder"] = error(made["rf3"]), error(made["rf0"]), error(made["__heartbeat-db1"])
def described():
    topic, broker = ConfigResource("topic", "std"), ConfigResource("broker", leader)
    fs = a.describe_configs([topic, broker], request_timeout=20)
    pick = lambda e: [e.value, int(e.source), e.is_read_only]
    t, b = fs[topic].result(timeout=20), fs[broker].result(timeout=20)
    return {"count": len(t), "retention.ms": pick(t["retention.ms"]), "compression.type": pick(t["compression.type"]),
            "min.insync.replicas": pick(t["min.insync.replicas"]), "broker.id": pick(b["broker.id"]),
            "log.retention.ms": pick(b["log.retention.ms"])}
out["before"] = described()
r = ConfigResource("topic", "std", set_config={"retention.ms": "5400000", "segment.ms": "600000"})
out["alter"] = error(a.alter_configs([r], request_timeout=20)[r])
out["after"] = described()
b = ConfigResource("broker", leader, set_config={"min.insync.replicas": "2"})
out["alter_broker"] = error(a.alter_configs([b], request_timeout=20)[b])
gone = ConfigResource("topic", "nowhere")
out["unknown"] = error(a.describe_configs([gone], request_timeout=20)[gone])
print(json.dumps(out))
`;

const missing = pythonModuleMissing("confluent_kafka", "python3-confluent-kafka") ?? kcatMissing();

Deno.test({
  name: "topic configs: Kafka's names taken and described with their sources, altered by three APIs, LogAppendTime",
  ignore: skipWithout(missing),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    withDeadline(90_000, "topic configs", async () => {
      const c = await TestCluster.start({ brokers: 2, minInsyncReplicas: 1 });
      const kafka = new Kafka({ brokers: c.bootstrapServers.split(","), logLevel: logLevel.NOTHING });
      const admin = kafka.admin();
      const producer = kafka.producer();
      try {
        const leader = (await c.lease()).leaderId!;
        const follower = [...c.kafkaPorts.keys()].find((id) => id !== leader)!;
        await admin.connect();
        await producer.connect();

        await t.step(
          "kafkajs: createTopics with standard configs, describeConfigs (topic, broker), alterConfigs",
          async () => {
            const entries = (configs: Record<string, string>) =>
              Object.entries(configs).map(([name, value]) => ({ name, value }));
            await admin.createTopics({
              topics: [
                { topic: "std", numPartitions: 1, configEntries: entries(STANDARD) },
                {
                  topic: "lat",
                  numPartitions: 1,
                  configEntries: entries({ "message.timestamp.type": "LogAppendTime" }),
                },
                {
                  topic: "strict",
                  numPartitions: 1,
                  configEntries: entries({ "message.timestamp.before.max.ms": "60000" }),
                },
              ],
            });
            const describe = async () => {
              const got = await admin.describeConfigs({
                includeSynonyms: true,
                resources: [
                  { type: ConfigResourceTypes.TOPIC, name: "std" },
                  { type: ConfigResourceTypes.BROKER, name: String(leader) },
                ],
              });
              const [topic, broker] = ["std", String(leader)].map((name) =>
                new Map(
                  got.resources.find((r) => r.resourceName === name)!.configEntries.map((e) => [e.configName, e]),
                )
              );
              return { topic, broker };
            };
            const { topic, broker } = await describe();
            assert.equal(topic.size, 36, "every Kafka 3.x topic config");
            for (const [name, value] of Object.entries(STANDARD)) {
              assert.deepEqual(
                [topic.get(name)?.configValue, topic.get(name)?.configSource],
                [value, TOPIC_CONFIG],
                name,
              );
            }
            const mir = topic.get("min.insync.replicas")!;
            assert.deepEqual([mir.configValue, mir.configSource], ["1", STATIC_BROKER_CONFIG], "the broker's flag");
            assert.deepEqual(mir.configSynonyms.map((s) => [s.configName, s.configValue, s.configSource]), [
              ["min.insync.replicas", "1", STATIC_BROKER_CONFIG],
              ["min.insync.replicas", "2", DEFAULT_CONFIG],
            ]);
            const index = topic.get("segment.index.bytes")!;
            assert.deepEqual([index.configValue, index.configSource], ["10485760", DEFAULT_CONFIG], "Kafka's default");
            const id = broker.get("broker.id")!;
            assert.deepEqual([id.configValue, id.configSource, id.readOnly], [
              String(leader),
              STATIC_BROKER_CONFIG,
              true,
            ]);
            assert.equal(broker.get("log.message.timestamp.type")?.configValue, "CreateTime");

            // AlterConfigs replaces the topic's whole set: what it does not name goes back to its default.
            await admin.alterConfigs({
              validateOnly: false,
              resources: [{
                type: ConfigResourceTypes.TOPIC,
                name: "std",
                configEntries: entries({ ...STANDARD, "retention.ms": "7200000", "compression.type": "producer" }),
              }],
            });
            const after = (await describe()).topic;
            assert.deepEqual([after.get("retention.ms")?.configValue, after.get("retention.ms")?.configSource], [
              "7200000",
              TOPIC_CONFIG,
            ]);
            await admin.alterConfigs({
              validateOnly: true,
              resources: [{
                type: ConfigResourceTypes.TOPIC,
                name: "std",
                configEntries: entries({ "retention.ms": "1" }),
              }],
            });
            assert.equal(
              (await describe()).topic.get("retention.ms")?.configValue,
              "7200000",
              "validate_only: unchanged",
            );
          },
        );

        await t.step(
          "confluent-kafka AdminClient: refusals name the reason; describe_configs, alter_configs",
          async () => {
            const r = await python(CONFLUENT, [c.bootstrapServers, String(leader)]);
            assert.equal(r.code, 0, r.out);
            const got = lastJsonLine(r.out);
            console.log(`confluent-kafka: compact -> ${got.compact} | typo -> ${got.typo}`);
            assert.equal(got.compact, null, "cleanup.policy=compact is taken (issue 23)");
            assert.match(got.typo, /unknown topic config 'retention\.msec'/);
            // As Kafka: a replication factor past the brokers there are, or below 1, is refused; a name may start
            // with __ unless it is an internal topic.
            assert.match(got.rf3, /replication factor: 3 larger than available brokers: 2/);
            assert.match(got.rf0, /replication factor must be larger than 0/);
            assert.equal(got.dunder, null);
            assert.equal(got.before.count, 36);
            assert.deepEqual(got.before["retention.ms"], ["7200000", TOPIC_CONFIG, false]);
            assert.deepEqual(got.before["min.insync.replicas"], ["1", STATIC_BROKER_CONFIG, false]);
            assert.deepEqual(got.before["broker.id"], [String(leader), STATIC_BROKER_CONFIG, true]);
            assert.deepEqual(got.before["log.retention.ms"], ["604800000", DEFAULT_CONFIG, true]);
            assert.equal(got.alter, null);
            assert.deepEqual(got.after["retention.ms"], ["5400000", TOPIC_CONFIG, false]);
            assert.deepEqual(
              got.after["compression.type"],
              ["producer", DEFAULT_CONFIG, false],
              "replaced, not merged",
            );
            assert.match(got.alter_broker, /broker configs are flags of 'yak broker'/);
            assert.match(got.unknown, /topic 'nowhere' does not exist/);
          },
        );

        await t.step(
          "LogAppendTime: the broker's clock, in the produce answer and as kcat and yak consume see it",
          async () => {
            const old = "1000000000000"; // 2001: the producer's own timestamp
            const before = Date.now();
            const [sent] = await producer.send({
              topic: "lat",
              acks: -1,
              messages: [{ value: "stamped", timestamp: old }],
            });
            const after = Date.now();
            const appendTime = Number(sent.logAppendTime);
            assert.ok(appendTime >= before && appendTime <= after, `log_append_time ${sent.logAppendTime}`);
            const read = await run(
              "kcat",
              ["-C", "-b", c.bootstrapServers, "-t", "lat", "-e", "-q", "-f", "%T %s\\n"],
              {
                timeoutMs: 20_000,
              },
            );
            assert.equal(read.code, 0, read.stderr);
            const kcatLine = new TextDecoder().decode(read.stdout).trim();
            assert.equal(kcatLine, `${appendTime} stamped`, "kcat: the append time, not the producer's");
            const native = await yak([
              "consume",
              "--topic",
              "lat",
              "--from-beginning",
              "--max-messages",
              "1",
              "--format",
              "%T %v\\n",
              ...c.zkFlag,
            ]);
            assert.equal(native.code, 0, native.stderr);
            assert.equal(native.stdout.trim(), `${appendTime} stamped`);
            // A CreateTime topic with message.timestamp.before.max.ms=60000 refuses the 2001 timestamp.
            const refused = await producer.send({
              topic: "strict",
              acks: -1,
              messages: [{ value: "x", timestamp: old }],
            })
              .then(() => null, (err) => err as { type?: string });
            assert.equal(refused?.type, "INVALID_TIMESTAMP");
            console.log(`LogAppendTime: produced with ${old}, kcat read "${kcatLine}"`);
          },
        );

        await t.step("IncrementalAlterConfigs v1 sent to a follower: the leader applies it", async () => {
          const k = await KafkaConn.open(c.kafkaPorts.get(follower)!);
          try {
            const ops = [
              ["segment.ms", 0, "120000"],
              ["leader.replication.throttled.replicas", 2, "0:1"],
              ["delete.retention.ms", 1, null],
            ] as const;
            const r = await k.call(44, 1, true, (w) => {
              w.array([{ type: 2, name: "std" }, { type: 2, name: "nowhere" }], (w, res) => {
                w.int8(res.type).string(res.name);
                w.array([...ops], (w, [name, op, value]) => w.string(name).int8(op).nullableString(value));
              });
              w.bool(false);
            });
            r.int32();
            const answers = r.array((r) => [r.int16(), r.nullableString(), r.int8(), r.string()]);
            ends(r);
            assert.deepEqual(answers[0], [0, null, 2, "std"]);
            assert.deepEqual(answers[1].slice(0, 1), [3], "UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist");
          } finally {
            k.close();
          }
          const described = await yak(["topics", "--describe", "std", ...c.zkFlag]);
          assert.equal(described.code, 0, described.stderr);
          assert.match(described.stdout, /^segment\.ms +120000 +topic +enforced$/m);
          assert.match(described.stdout, /^leader\.replication\.throttled\.replicas +0:1 +topic +stored only$/m);
          assert.match(described.stdout, /^delete\.retention\.ms +86400000 +default +enforced$/m);
        });

        await t.step(
          "yak topics: --describe shows every config and its source; --alter takes Kafka's names",
          async () => {
            const altered = await yak(["topics", "--alter", "std", "--config", "compression.type=zstd", ...c.zkFlag]);
            assert.equal(altered.code, 0, altered.stderr);
            const compact = await yak(["topics", "--alter", "std", "--config", "cleanup.policy=compact", ...c.zkFlag]);
            assert.equal(compact.code, 0, compact.stderr);
            const described = await yak(["topics", "--describe", "std", ...c.zkFlag]);
            assert.equal(described.code, 0, described.stderr);
            const rows = described.stdout.split("\n").filter((l) => /^[a-z0-9.]+ /.test(l) && !l.startsWith("topic '"));
            assert.equal(rows.length, 36, described.stdout);
            assert.match(described.stdout, /^CONFIG +VALUE +SOURCE +YAK$/m);
            assert.match(described.stdout, /^compression\.type +zstd +topic +stored only$/m);
            assert.match(described.stdout, /^min\.insync\.replicas +1 +broker flag --min-insync-replicas +enforced$/m);
            assert.match(described.stdout, /^message\.timestamp\.type +CreateTime +default +enforced$/m);
            assert.match(described.stdout, /^cleanup\.policy +compact +topic +enforced$/m);
            console.log(described.stdout.split("\n").slice(0, 6).join("\n"));
          },
        );
      } finally {
        await producer.disconnect().catch(() => {});
        await admin.disconnect().catch(() => {});
        await c.stop();
      }
    }),
});

Deno.test("DescribeConfigs v0 for a broker named by 32,767 characters answers an error the client can read", () =>
  withDeadline(60_000, "long names", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
    try {
      // The error quotes the name; its message went out with an int16 length that wrapped (-32718), and the client
      // lost its place in the stream.
      const name = "2".repeat(32767);
      const r = await k.call(32, 0, false, (w) => {
        w.array([name], (w, n) => w.int8(4).string(n).int32(-1));
      });
      r.int32(); // throttle
      const [result] = r.array((r) => ({
        error: r.int16(),
        message: r.nullableString(),
        type: r.int8(),
        name: r.string(),
        configs: r.array((r) => [r.string(), r.nullableString(), r.bool(), r.bool(), r.bool()]),
      }));
      ends(r);
      assert.equal(result.error, 42, "INVALID_REQUEST");
      assert.equal(result.name, name);
      assert.match(result.message ?? "", /^this is broker 1: ask broker '2222.*characters in all\)$/);
      // The connection is still in step: the next request is answered.
      const again = await k.call(32, 0, false, (w) => w.array(["1"], (w, n) => w.int8(4).string(n).int32(-1)));
      again.int32();
      assert.equal(again.array((r) => r.int16())[0], 0);
    } finally {
      k.close();
      await c.stop();
    }
  }));

Deno.test("what older Kafka versions answer in int16 strings cannot be stored longer: a config value, a group's protocol", () =>
  withDeadline(60_000, "int16 limits", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
    try {
      const made = await yak(["topics", "--create", "lt", "--partitions", "1", ...c.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      // IncrementalAlterConfigs v1 (flexible, no length limit of its own) of a list of 10,000 pairs: 68,889 bytes.
      const pairs = Array.from({ length: 10_000 }, (_, i) => `${i % 2}:${i}`).join(",");
      const alter = await k.call(44, 1, true, (w) => {
        w.array(["lt"], (w, name) => {
          w.int8(2).string(name);
          w.array(
            [pairs],
            (w, value) => w.string("follower.replication.throttled.replicas").int8(0).nullableString(value),
          );
        });
        w.bool(false);
      });
      alter.int32();
      const [[error, message]] = alter.array((r) => {
        const answer = [r.int16(), r.nullableString()] as const;
        r.int8();
        r.string();
        return answer;
      });
      assert.equal(error, 40, "INVALID_CONFIG");
      assert.match(message ?? "", /is \d+ bytes: a value is at most 32767/);
      // DescribeConfigs v0 of the topic still answers.
      const described = await k.call(32, 0, false, (w) => w.array(["lt"], (w, n) => w.int8(2).string(n).int32(-1)));
      described.int32();
      assert.equal(described.array((r) => r.int16())[0], 0);

      // JoinGroup v7 (flexible) with a protocol type of 40,000 characters: refused; ListGroups v0 still answers.
      const join = await k.call(11, 7, true, (w) => {
        w.string("lg").int32(10_000).int32(10_000).string("").nullableString(null).string("x".repeat(40_000));
        w.array([{ name: "range", metadata: new Uint8Array(0) }], (w, p) => w.string(p.name).nullableBytes(p.metadata));
      });
      join.int32();
      assert.equal(join.int16(), 42, "INVALID_REQUEST");
      const listed = await k.call(16, 0, false, () => {});
      assert.equal(listed.int16(), 0);
      assert.deepEqual(listed.array((r) => [r.string(), r.string()]), []);
      ends(listed);
    } finally {
      k.close();
      await c.stop();
    }
  }));
