/**
 * The Kafka contract admin tools rely on (issue 21), through real clients:
 * kafka-python's admin client from Debian, unchanged.
 */
import assert from "node:assert/strict";
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

const DESCRIBE = `
import sys, json, time
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient
boot, topic = sys.argv[1].split(","), sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=boot)
[dead] = admin.describe_consumer_groups(["nobody-joined"])
c = KafkaConsumer(topic, bootstrap_servers=boot, group_id="described", auto_offset_reset="earliest")
deadline = time.time() + 20
while not c.assignment() and time.time() < deadline:
    c.poll(200)
[live] = admin.describe_consumer_groups(["described"])
m = live.members[0]
print(json.dumps({
    "dead": [dead.state, dead.protocol_type, len(dead.members)],
    "live": [live.state, live.protocol_type, live.protocol, len(live.members)],
    "subscription": list(m.member_metadata.subscription) if m.member_metadata else None,
    "assigned": sorted(p for t, ps in m.member_assignment.assignment for p in ps) if m.member_assignment else None,
}))
c.close()
admin.close()
`;

const missing = pythonModuleMissing("kafka", "python3-kafka");

Deno.test({
  name: "DescribeGroups: a group nobody joined is Dead with no protocol type; a member's subscription is returned",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(60_000, "describe groups", async () => {
      const c = await TestCluster.start({ brokers: 1, partitions: 2 });
      try {
        const r = await python(DESCRIBE, [c.bootstrapServers, "described-topic"]);
        assert.equal(r.code, 0, r.out);
        const got = lastJsonLine(r.out);
        assert.deepEqual(got.dead, ["Dead", "", 0], "Kafka's answer for a group that does not exist");
        assert.deepEqual(got.live, ["Stable", "consumer", "range", 1]);
        assert.deepEqual(got.subscription, ["described-topic"], "the member's metadata, not empty bytes");
        assert.deepEqual(got.assigned, [0, 1]);
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "broker id 0 (Kafka numbers brokers from 0): it registers, leads, and Kafka clients see node 0",
  ignore: skipWithout(kcatMissing()),
  fn: () =>
    withDeadline(60_000, "broker id 0", async () => {
      const c = await TestCluster.start({ brokers: 1, minInsyncReplicas: 1 });
      try {
        await c.startBroker(0);
        await c.waitFor((l) => l.isr.includes(0), 15_000);
        c.brokers.get(1)!.kill("SIGKILL");
        await c.waitFor((l) => l.leaderId === 0, 15_000);
        const meta = await run("kcat", ["-L", "-b", `127.0.0.1:${c.kafkaPorts.get(0)}`, "-J"], { timeoutMs: 20_000 });
        assert.equal(meta.code, 0, meta.stderr);
        const brokers = JSON.parse(new TextDecoder().decode(meta.stdout)).brokers.map((b: { id: number }) => b.id);
        assert.ok(brokers.includes(0), `node 0 in ${JSON.stringify(brokers)}`);
        const produced = await run("kcat", ["-P", "-b", `127.0.0.1:${c.kafkaPorts.get(0)}`, "-t", "zero"], {
          stdin: "a\nb\n",
          timeoutMs: 20_000,
        });
        assert.equal(produced.code, 0, produced.stderr);
        const read = await yak(["consume", "--topic", "zero", "--from-beginning", "--max-messages", "2", ...c.zkFlag]);
        assert.equal(read.code, 0, read.stderr);
        assert.deepEqual(read.stdout.split("\n").filter(Boolean).sort(), ["a", "b"]);
      } finally {
        await c.stop();
      }
    }),
});

const CREATE_ASSIGNED = `
import sys, json
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError
boot = sys.argv[1].split(",")
admin = KafkaAdminClient(bootstrap_servers=boot)
out = {}
admin.create_topics([NewTopic("assigned", num_partitions=-1, replication_factor=-1, replica_assignments={0: [1]})])
try:
    admin.create_topics([NewTopic("gapped", num_partitions=-1, replication_factor=-1, replica_assignments={0: [1], 2: [1]})])
    out["gapped"] = "created"
except KafkaError as e:
    out["gapped"] = type(e).__name__
c = KafkaConsumer(bootstrap_servers=boot)
out["assigned"] = sorted(c.partitions_for_topic("assigned") or [])
out["gapped_partitions"] = sorted(c.partitions_for_topic("gapped") or [])
c.close()
admin.close()
print(json.dumps(out))
`;

Deno.test({
  name: "CreateTopics with a replica assignment: the partition count follows it; a gap in it is refused",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(60_000, "create with assignment", async () => {
      const c = await TestCluster.start({ brokers: 1, partitions: 4 });
      try {
        const r = await python(CREATE_ASSIGNED, [c.bootstrapServers]);
        assert.equal(r.code, 0, r.out);
        const got = lastJsonLine(r.out);
        assert.deepEqual(got.assigned, [0], "one partition, as assigned (not the broker's 4)");
        assert.equal(
          got.gapped,
          "InvalidReplicationAssignmentError",
          "kafka-python's name for INVALID_REPLICA_ASSIGNMENT (39)",
        );
        assert.deepEqual(got.gapped_partitions, []);
      } finally {
        await c.stop();
      }
    }),
});

Deno.test("CreateTopics sent to a follower is handed to the leader, not answered NOT_CONTROLLER", () =>
  withDeadline(60_000, "create on a follower", async () => {
    const c = await TestCluster.start({ brokers: 2 });
    try {
      const leader = (await c.lease()).leaderId!;
      const follower = [...c.kafkaPorts.keys()].find((id) => id !== leader)!;
      const k = await KafkaConn.open(c.kafkaPorts.get(follower)!);
      try {
        const r = await k.call(19, 5, true, (w) => {
          w.array(["made-on-a-follower"], (w, name) => {
            w.string(name).int32(2).int16(-1);
            w.array([], () => {}); // assignments
            w.array([], () => {}); // configs
          });
          w.int32(10_000).bool(false);
        });
        r.int32(); // throttle
        const [answer] = r.array((r) => {
          const out = { name: r.string(), error: r.int16(), message: r.nullableString(), partitions: r.int32() };
          r.int16();
          r.nullableArray(() => {});
          return out;
        });
        ends(r);
        assert.deepEqual(answer, { name: "made-on-a-follower", error: 0, message: null, partitions: 2 });
      } finally {
        k.close();
      }
      const listed = await yak(["topics", "--describe", "made-on-a-follower", ...c.zkFlag]);
      assert.equal(listed.code, 0, listed.stderr);
    } finally {
      await c.stop();
    }
  }));

Deno.test({
  name: "a group id with any characters (librdkafka's 'roundrobin,range'): members join, read and commit under it",
  ignore: skipWithout(kcatMissing()),
  fn: () =>
    withDeadline(60_000, "group ids", async () => {
      const c = await TestCluster.start({ brokers: 1 });
      try {
        const stored = await yak(["produce", "--topic", "gid", ...c.zkFlag], { stdin: "1\n2\n3\n" });
        assert.equal(stored.code, 0, stored.stderr);
        const group = "roundrobin,range";
        const read = await run("kcat", [
          "-b",
          c.bootstrapServers,
          "-G",
          group,
          "-X",
          "auto.offset.reset=earliest",
          "-q",
          "-e",
          "gid",
        ], { timeoutMs: 30_000 });
        assert.equal(read.code, 0, read.stderr);
        assert.deepEqual(new TextDecoder().decode(read.stdout).split("\n").filter(Boolean).sort(), ["1", "2", "3"]);
        const listed = await yak(["groups", "--describe", group, "--json", ...c.zkFlag]);
        assert.equal(listed.code, 0, listed.stderr);
        assert.equal(JSON.parse(listed.stdout).group, group, "shown as given");
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name:
    "--auto-create-topics-enable false: a first produce or metadata request makes no topic; an explicit create does",
  ignore: skipWithout(kcatMissing()),
  fn: () =>
    withDeadline(60_000, "no auto-create", async () => {
      const c = await TestCluster.start({ brokers: 1, brokerArgs: ["--auto-create-topics-enable", "false"] });
      try {
        const kafka = await run("kcat", [
          "-P",
          "-b",
          c.bootstrapServers,
          "-t",
          "nowhere",
          "-X",
          "message.timeout.ms=3000",
        ], {
          stdin: "a\n",
          timeoutMs: 20_000,
        });
        assert.notEqual(kafka.code, 0, `kcat's produce is not delivered: ${kafka.stderr}`);
        const meta = await run("kcat", ["-L", "-b", c.bootstrapServers, "-t", "nowhere"], { timeoutMs: 20_000 });
        assert.match(new TextDecoder().decode(meta.stdout), /topic "nowhere" with 0 partitions: Broker: Unknown topic/);
        const native = await yak(["produce", "--topic", "nowhere", ...c.zkFlag], { stdin: "a\n" });
        assert.notEqual(native.code, 0);
        assert.match(native.stderr, /creates topics only on request.*yak topics --create nowhere/);
        const listed = await yak(["topics", "--list", ...c.zkFlag]);
        assert.ok(!listed.stdout.includes("nowhere"), listed.stdout);
        const made = await yak(["topics", "--create", "nowhere", "--partitions", "1", ...c.zkFlag]);
        assert.equal(made.code, 0, made.stderr);
        const stored = await yak(["produce", "--topic", "nowhere", ...c.zkFlag], { stdin: "a\n" });
        assert.equal(stored.code, 0, stored.stderr);
      } finally {
        await c.stop();
      }
    }),
});
