/**
 * The admin APIs for partitions and groups (issue 21: CreatePartitions,
 * DeleteGroups, OffsetDelete, ListGroups v4's state filter) through real
 * clients on one cluster of two brokers (a follower takes CreatePartitions
 * and lists no groups): kafkajs 2.2.4's admin, confluent-kafka 1.7's
 * AdminClient, and librdkafka 2.0.2's own admin calls for what that
 * AdminClient does not wrap (ListConsumerGroups with a states filter,
 * DeleteGroups, DeleteConsumerGroupOffsets), called through ctypes from
 * Debian's Python; then `yak groups`, which goes through the same services.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { Connection } from "../src/protocol/connection.ts";
import { eventually, python, pythonModuleMissing, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

/**
 * confluent-kafka 1.7's AdminClient (CreatePartitions, list_groups), then
 * librdkafka's C admin API (the same library underneath) for what 1.7 has
 * no method for. Prints one JSON object.
 */
const LIBRDKAFKA = String.raw`
import sys, json, ctypes as C
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions
boot = sys.argv[1]
out = {}
def say(key, value):  # each answer as it comes, so a client that crashes still shows how far it got
    out[key] = value
    print("#", key, json.dumps(value), flush=True)
admin = AdminClient({"bootstrap.servers": boot})
def grow(n, **kw):
    try:
        admin.create_partitions([NewPartitions("grown", n)], **kw)["grown"].result(15)
        return "ok"
    except KafkaException as e:
        return [e.args[0].name(), e.args[0].str()]
say("grow6", grow(6))
say("grow6_again", grow(6))
say("validate9", grow(9, validate_only=True))
say("legacy_list", sorted([g.id, g.state] for g in admin.list_groups(timeout=15)))

L = C.CDLL("librdkafka.so.1")
P, S, I = C.c_void_p, C.c_char_p, C.c_int
def sig(name, res, *args):
    f = getattr(L, name); f.restype = res; f.argtypes = list(args); return f
conf = sig("rd_kafka_conf_new", P)()
errstr = C.create_string_buffer(512)
sig("rd_kafka_conf_set", I, P, S, S, P, C.c_size_t)(conf, b"bootstrap.servers", boot.encode(), errstr, 512)
rk = sig("rd_kafka_new", P, I, P, P, C.c_size_t)(0, conf, errstr, 512)
queue = sig("rd_kafka_queue_new", P, P)(rk)
options = sig("rd_kafka_AdminOptions_new", P, P, I)
poll = sig("rd_kafka_queue_poll", P, P, I)
event_error = sig("rd_kafka_event_error", I, P)
err2name = sig("rd_kafka_err2name", S, I)
error_code = sig("rd_kafka_error_code", I, P)
group_name = sig("rd_kafka_group_result_name", S, P)
group_error = sig("rd_kafka_group_result_error", P, P)
ADMIN_OP_ANY = 0
STATES = {"PreparingRebalance": 1, "CompletingRebalance": 2, "Stable": 3, "Dead": 4, "Empty": 5}
STATE_NAMES = {v: k for k, v in STATES.items()}

def result(event_result):
    ev = poll(queue, 15000)
    assert ev, "no answer in 15 s"
    if event_error(ev):
        return ev, None, err2name(event_error(ev)).decode()
    return ev, sig(event_result, P, P)(ev), None

def list_groups(states):
    opts = options(rk, ADMIN_OP_ANY)
    if states:
        arr = (I * len(states))(*[STATES[s] for s in states])
        sig("rd_kafka_AdminOptions_set_match_consumer_group_states", P, P, C.POINTER(I), C.c_size_t)(opts, arr, len(states))
    sig("rd_kafka_ListConsumerGroups", None, P, P, P)(rk, opts, queue)
    ev, res, err = result("rd_kafka_event_ListConsumerGroups_result")
    if err: return err
    n = C.c_size_t()
    valid = sig("rd_kafka_ListConsumerGroups_result_valid", C.POINTER(P), P, C.POINTER(C.c_size_t))(res, C.byref(n))
    gid = sig("rd_kafka_ConsumerGroupListing_group_id", S, P)
    state = sig("rd_kafka_ConsumerGroupListing_state", I, P)
    listed = sorted([gid(valid[i]).decode(), STATE_NAMES.get(state(valid[i]), "?")] for i in range(n.value))
    sig("rd_kafka_ListConsumerGroups_result_errors", C.POINTER(P), P, C.POINTER(C.c_size_t))(res, C.byref(n))
    return {"groups": listed, "errors": n.value}

def group_errors(results_fn, res):
    n = C.c_size_t()
    groups = sig(results_fn, C.POINTER(P), P, C.POINTER(C.c_size_t))(res, C.byref(n))
    return [groups[i] for i in range(n.value)]

def delete_groups(names):
    new = sig("rd_kafka_DeleteGroup_new", P, S)
    arr = (P * len(names))(*[new(g.encode()) for g in names])
    sig("rd_kafka_DeleteGroups", None, P, C.POINTER(P), C.c_size_t, P, P)(rk, arr, len(names), options(rk, ADMIN_OP_ANY), queue)
    ev, res, err = result("rd_kafka_event_DeleteGroups_result")
    if err: return err
    out = {}
    for g in group_errors("rd_kafka_DeleteGroups_result_groups", res):
        e = group_error(g)
        out[group_name(g).decode()] = err2name(error_code(e)).decode() if e else "NO_ERROR"
    return out

class TP(C.Structure):
    _fields_ = [("topic", S), ("partition", C.c_int32), ("offset", C.c_int64), ("metadata", P),
                ("metadata_size", C.c_size_t), ("opaque", P), ("err", I), ("_private", P)]
class TPList(C.Structure):
    _fields_ = [("cnt", I), ("size", I), ("elems", C.POINTER(TP))]

def delete_offsets(group, partitions):
    tpl = sig("rd_kafka_topic_partition_list_new", P, I)(len(partitions))
    add = sig("rd_kafka_topic_partition_list_add", P, P, S, C.c_int32)
    for topic, p in partitions: add(tpl, topic.encode(), p)
    d = sig("rd_kafka_DeleteConsumerGroupOffsets_new", P, S, P)(group.encode(), tpl)
    sig("rd_kafka_DeleteConsumerGroupOffsets", None, P, C.POINTER(P), C.c_size_t, P, P)(rk, (P * 1)(d), 1, options(rk, ADMIN_OP_ANY), queue)
    ev, res, err = result("rd_kafka_event_DeleteConsumerGroupOffsets_result")
    if err: return err
    [g] = group_errors("rd_kafka_DeleteConsumerGroupOffsets_result_groups", res)
    e = group_error(g)
    if e: return err2name(error_code(e)).decode()
    parts = C.cast(sig("rd_kafka_group_result_partitions", P, P)(g), C.POINTER(TPList)).contents
    return sorted(["%s/%d" % (parts.elems[i].topic.decode(), parts.elems[i].partition), err2name(parts.elems[i].err).decode()]
                  for i in range(parts.cnt))

say("all", list_groups([]))
say("stable", list_groups(["Stable"]))
say("empty_or_dead", list_groups(["Empty", "Dead"]))
say("offsets", delete_offsets("live", [("gt", 0), ("other", 0)]))
say("unknown_group_offsets", delete_offsets("ghost", [("other", 0)]))
say("deleted", delete_groups(["idle", "ghost"]))
print(json.dumps(out))
`;

const missing = pythonModuleMissing("confluent_kafka", "python3-confluent-kafka");

/**
 * Commits offset 0 for a group with no members (OffsetCommit v2 to the leader, as an admin tool does); kafkajs's
 * setOffsets runs a whole consumer for it, 5 s each.
 */
async function commitOffsets(c: TestCluster, group: string, partitions: [string, number][]): Promise<void> {
  const k = await KafkaConn.open(c.kafkaPorts.get((await c.lease()).leaderId!)!);
  try {
    const r = await k.call(8, 2, false, (w) => {
      w.string(group).int32(-1).string("").int64(-1);
      w.array(
        partitions,
        (w, [topic, p]) => w.string(topic).array([p], (w, p) => w.int32(p).int64(0).nullableString(null)),
      );
    });
    const errors = r.array((r) => {
      r.string();
      return r.array((r) => [r.int32(), r.int16()]);
    }).flat();
    ends(r);
    assert.ok(errors.every(([, error]) => error === 0), JSON.stringify(errors));
  } finally {
    k.close();
  }
}

Deno.test({
  name:
    "CreatePartitions, DeleteGroups, OffsetDelete and ListGroups' states through kafkajs, librdkafka and yak groups",
  ignore: skipWithout(missing),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    withDeadline(60_000, "group and partition admin", async () => {
      const c = await TestCluster.start({ brokers: 2, partitions: 2 });
      const kafka = new Kafka({
        clientId: "yak-admin",
        brokers: c.bootstrapServers.split(","),
        logLevel: logLevel.NOTHING,
      });
      const admin = kafka.admin();
      const consumer = kafka.consumer({ groupId: "live", sessionTimeout: 10_000, maxWaitTimeInMs: 200 });
      const partitionsOf = async (topic: string) =>
        (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length;
      try {
        await admin.connect();
        await admin.createTopics({
          topics: [{ topic: "grown", numPartitions: 2 }, { topic: "gt" }, { topic: "other" }],
        });

        await t.step(
          "CreatePartitions (kafkajs): grows a topic; validate-only changes nothing; a smaller count is refused",
          async () => {
            await admin.createPartitions({ topicPartitions: [{ topic: "grown", count: 4 }] });
            assert.equal(await partitionsOf("grown"), 4);
            await admin.createPartitions({ validateOnly: true, topicPartitions: [{ topic: "grown", count: 8 }] });
            assert.equal(await partitionsOf("grown"), 4, "validate-only adds nothing");
            await assert.rejects(
              admin.createPartitions({ topicPartitions: [{ topic: "grown", count: 3 }] }),
              (err: { type?: string }) => err.type === "INVALID_PARTITIONS",
            );
          },
        );

        await t.step("CreatePartitions sent to a follower (v1, with assignments) is handed to the leader", async () => {
          const leader = (await c.lease()).leaderId!;
          const follower = [...c.kafkaPorts.keys()].find((id) => id !== leader)!;
          const k = await KafkaConn.open(c.kafkaPorts.get(follower)!);
          try {
            const r = await k.call(37, 1, false, (w) => {
              w.array([{ name: "grown", count: 5 }], (w, t) => {
                w.string(t.name).int32(t.count);
                w.array([[follower, leader]], (w, brokers) => w.int32Array(brokers));
              });
              w.int32(10_000).bool(false);
            });
            r.int32(); // throttle
            const answers = r.array((r) => [r.string(), r.int16(), r.nullableString()]);
            ends(r);
            assert.deepEqual(answers, [[
              "grown",
              0,
              "partitions added for the assignments' count; yak places every partition on every broker",
            ]]);
          } finally {
            k.close();
          }
          assert.equal(await partitionsOf("grown"), 5);
        });

        // Two groups: "idle" has commits only; "live" has a commit on a topic it does not subscribe to, then a member.
        await commitOffsets(c, "idle", [["gt", 0]]);
        await commitOffsets(c, "live", [["other", 0], ["gt", 0]]);
        const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve));
        await consumer.connect();
        await consumer.subscribe({ topic: "gt" });
        await consumer.run({ eachMessage: () => Promise.resolve() });
        await joined;

        await t.step(
          "ListGroups (kafkajs, every broker asked): each group once, as the leader alone coordinates",
          async () => {
            const { groups } = await admin.listGroups();
            assert.deepEqual(groups.map((g) => [g.groupId, g.protocolType]).sort(), [
              ["idle", "consumer"],
              ["live", "consumer"],
            ]);
          },
        );

        await t.step(
          "DeleteGroups (kafkajs): a group with a member is NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND",
          async () => {
            await assert.rejects(admin.deleteGroups(["live", "ghost"]), (err: { groups?: unknown[] }) => {
              const got = (err.groups as { groupId: string; error: { type: string } }[])
                .map((g) => [g.groupId, g.error.type]).sort();
              assert.deepEqual(got, [["ghost", "GROUP_ID_NOT_FOUND"], ["live", "NON_EMPTY_GROUP"]]);
              return true;
            });
          },
        );

        await t.step("librdkafka: CreatePartitions, ListGroups v4 by state, OffsetDelete, DeleteGroups", async () => {
          const r = await python(LIBRDKAFKA, [c.bootstrapServers]);
          assert.equal(r.code, 0, r.out);
          const got = JSON.parse(r.out.split("\n").findLast((line) => line.startsWith("{"))!);
          assert.equal(got.grow6, "ok");
          assert.equal(got.grow6_again[0], "INVALID_PARTITIONS");
          assert.match(got.grow6_again[1], /has 6 partitions.*only be added.*more than 6/);
          assert.equal(got.validate9, "ok");
          assert.deepEqual(got.legacy_list, [["idle", "Empty"], ["live", "Stable"]]);
          assert.deepEqual(got.all, { groups: [["idle", "Empty"], ["live", "Stable"]], errors: 0 });
          assert.deepEqual(got.stable, { groups: [["live", "Stable"]], errors: 0 });
          assert.deepEqual(got.empty_or_dead, { groups: [["idle", "Empty"]], errors: 0 });
          assert.deepEqual(got.offsets, [["gt/0", "GROUP_SUBSCRIBED_TO_TOPIC"], ["other/0", "NO_ERROR"]]);
          assert.equal(got.unknown_group_offsets, "GROUP_ID_NOT_FOUND");
          assert.deepEqual(got.deleted, { idle: "NO_ERROR", ghost: "GROUP_ID_NOT_FOUND" });
          assert.equal(await partitionsOf("grown"), 6, "validate-only added nothing");
          const left = await admin.fetchOffsets({ groupId: "live", topics: ["gt", "other"] });
          assert.deepEqual(
            left.map((t) => [
              t.topic,
              t.partitions.find((p) => p.partition === 0)!.offset,
            ]).sort(),
            [["gt", "0"], ["other", "-1"]],
          );
        });

        await t.step(
          "yak groups: --list --state, --delete-offsets refused for a subscribed topic, then done",
          async () => {
            const stable = await yak(["groups", "--list", "--state", "stable", "--json", ...c.zkFlag]);
            assert.equal(stable.code, 0, stable.stderr);
            assert.deepEqual(JSON.parse(stable.stdout).groups, [{ group: "live", state: "Stable", members: 1 }]);
            const refused = await yak(["groups", "--delete-offsets", "live", "--topic", "gt", ...c.zkFlag]);
            assert.equal(refused.code, 1);
            assert.match(refused.stderr, /group 'live' has active members subscribed to topic 'gt'/);
            await consumer.disconnect(); // a clean leave: the group is Empty at once
            const deleted = await yak(["groups", "--delete-offsets", "live", "--topic", "gt", "--json", ...c.zkFlag]);
            assert.equal(deleted.code, 0, deleted.stderr);
            assert.deepEqual(JSON.parse(deleted.stdout).partitions, [0, 1]);
            // The deletion is in the metadata log: the follower's copy has no commit of the group left either.
            const leader = (await c.lease()).leaderId!;
            const follower = [...c.brokerPorts.keys()].find((id) => id !== leader)!;
            const conn = await Connection.open("127.0.0.1", c.brokerPorts.get(follower)!);
            try {
              await eventually(
                async () => {
                  const groups = (await conn.request({ type: "status" })).groups as Record<string, unknown>;
                  return groups.live === undefined;
                },
                5000,
                "the follower applies the deletion",
              );
            } finally {
              conn.close();
            }
          },
        );
      } finally {
        await consumer.disconnect().catch(() => {});
        await admin.disconnect().catch(() => {});
        await c.stop();
      }
    }),
});
