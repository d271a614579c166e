/**
 * The newest version of each Kafka API yak advertises, byte by byte, over a
 * real TCP connection to a real broker. The clients here (librdkafka 2.0.2,
 * kafkajs 2.2.4, kafka-python 2.0.2) stop below these versions, and
 * @platformatic/kafka (tests/kafka_platformatic_test.ts) sends only a few of
 * them, so this test is their full user: every request is built field by
 * field from Kafka's message schemas, and every response is read field by
 * field to its last byte (a missing or extra field, or a missing
 * tagged-field section, leaves bytes over or runs short).
 */
import assert from "node:assert/strict";
import { crc32c } from "../src/log/crc32c.ts";
import { kafkaTopicIdText, topicIdBytes, topicIdOfBytes } from "../src/broker/topic_id.ts";
import { decodeRecordBatches, encodeRecordBatch } from "../src/kafka/record_batch.ts";
import { Reader, Writer } from "../src/kafka/wire.ts";
import { TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn, produceBody, produceError } from "./kafka_conn.ts";

const OFFSET_OUT_OF_RANGE = 1;
const UNKNOWN_TOPIC_OR_PARTITION = 3;
const ILLEGAL_GENERATION = 22;
const INCONSISTENT_GROUP_PROTOCOL = 23;
const TOPIC_ALREADY_EXISTS = 36;
const INVALID_REQUEST = 42;
const UNKNOWN_LEADER_EPOCH = 75;
const MEMBER_ID_REQUIRED = 79;
const FENCED_INSTANCE_ID = 82;
const UNKNOWN_TOPIC_ID = 100;
/** Kafka's "authorized operations not asked for" (INT32_MIN). */
const NOT_ASKED = -2147483648;
/** Every operation Kafka defines on a topic, a group, the cluster (AclOperation codes as bits): yak has no ACLs. */
const TOPIC_OPERATIONS = 0b1101_1111_1000; // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
const GROUP_OPERATIONS = 0b1_0100_1000; // READ DELETE DESCRIBE
const CLUSTER_OPERATIONS = 0b1_1111_1010_0000; // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE

/** What the consumer-groups and Kafka-protocol issues ask yak to support at least (API key -> [min, max]). */
const AT_LEAST: Record<number, [number, number]> = {
  18: [0, 3], // ApiVersions
  3: [0, 12], // Metadata
  0: [3, 8], // Produce
  1: [4, 12], // Fetch
  2: [1, 8], // ListOffsets
  10: [0, 4], // FindCoordinator
  11: [0, 9], // JoinGroup
  14: [0, 5], // SyncGroup
  12: [0, 4], // Heartbeat
  13: [0, 5], // LeaveGroup
  8: [2, 9], // OffsetCommit
  9: [1, 9], // OffsetFetch
  22: [0, 4], // InitProducerId
  19: [2, 7], // CreateTopics
  20: [1, 6], // DeleteTopics
  15: [0, 5], // DescribeGroups
  16: [0, 4], // ListGroups
  21: [0, 2], // DeleteRecords
  23: [0, 4], // OffsetForLeaderEpoch
  35: [0, 4], // DescribeLogDirs
  60: [0, 1], // DescribeCluster
  37: [0, 3], // CreatePartitions
  42: [0, 2], // DeleteGroups
  47: [0, 0], // OffsetDelete
  32: [0, 4], // DescribeConfigs
  33: [0, 2], // AlterConfigs
  44: [0, 1], // IncrementalAlterConfigs
};

const text = new TextEncoder();
const ZERO_ID = new Uint8Array(16);

function subscription(topics: string[]): Uint8Array {
  const w = new Writer(false);
  w.int16(0).stringArray(topics).nullableBytes(null);
  return w.finish().slice();
}

/** A ConsumerProtocolAssignment v0. */
function assignment(topic: string, partitions: number[]): Uint8Array {
  const w = new Writer(false);
  w.int16(0).int32(1).string(topic).int32Array(partitions).nullableBytes(null);
  return w.finish().slice();
}

/**
 * DeleteRecords v2, OffsetForLeaderEpoch v4, DescribeLogDirs v4 and
 * DescribeCluster v1 on topic `vt` (3 partitions; 3 records in partition 0,
 * written in leader epoch `epoch`), broker 1 alone.
 */
async function logApis(k: KafkaConn, port: number, host: string, epoch: number): Promise<void> {
  // DeleteRecords v2: vt/0 below 2; vt/1 is empty, so 5 is past its high watermark.
  let r = await k.call(21, 2, true, (w) => {
    w.array(["vt"], (w, name) => w.string(name).array([[0, 2], [1, 5]], (w, [p, o]) => w.int32(p).int64(o)));
    w.int32(10_000);
  });
  r.int32();
  const deleted = r.array((r) => [r.string(), r.array((r) => [r.int32(), r.int64(), r.int16()])]);
  ends(r);
  assert.deepEqual(deleted, [["vt", [[0, 2, 0], [1, -1, OFFSET_OUT_OF_RANGE]]]]);

  // OffsetForLeaderEpoch v4: the current epoch ends at the log end; an older one where the log starts
  // (nothing of it is kept); a current epoch newer than the broker's is UNKNOWN_LEADER_EPOCH.
  const asked = [[0, epoch, epoch], [0, epoch, epoch - 1], [0, epoch + 1, epoch], [9, -1, epoch]];
  r = await k.call(23, 4, true, (w) => {
    w.int32(-1);
    w.array(["vt"], (w, name) => w.string(name).array(asked, (w, [p, cur, e]) => w.int32(p).int32(cur).int32(e)));
  });
  r.int32();
  const epochEnds = r.array((r) => [r.string(), r.array((r) => [r.int16(), r.int32(), r.int32(), r.int64()])]);
  ends(r);
  assert.deepEqual(epochEnds, [["vt", [
    [0, 0, epoch, 3],
    [0, 0, epoch - 1, 2],
    [UNKNOWN_LEADER_EPOCH, 0, -1, -1],
    [UNKNOWN_TOPIC_OR_PARTITION, 9, -1, -1],
  ]]]);

  // DescribeLogDirs v4: every topic, then one partition.
  const logDirs = async (topics: [string, number[]][] | null) => {
    const r = await k.call(35, 4, true, (w) => w.array(topics, (w, [t, ps]) => w.string(t).int32Array(ps)));
    r.int32();
    const out = {
      error: r.int16(),
      results: r.array((r) => ({
        error: r.int16(),
        dir: r.string(),
        topics: r.array((r) => ({
          name: r.string(),
          parts: r.array((r) => ({ index: r.int32(), size: r.int64(), lag: r.int64(), future: r.bool() })),
        })),
        totalBytes: r.int64(),
        usableBytes: r.int64(),
      })),
    };
    ends(r);
    return out;
  };
  const all = await logDirs(null);
  assert.equal(all.error, 0);
  assert.equal(all.results.length, 1, "one log dir");
  const [dir] = all.results;
  assert.equal(dir.error, 0);
  assert.match(dir.dir, /\/broker-1\/topics$/);
  assert.ok(dir.totalBytes > 0 && dir.usableBytes > 0 && dir.usableBytes <= dir.totalBytes, JSON.stringify(dir));
  assert.deepEqual(dir.topics.map((t) => [t.name, t.parts.map((p) => [p.index, p.lag, p.future])]), [
    ["vt", [[0, 0, false], [1, 0, false], [2, 0, false]]],
  ]);
  const size = dir.topics[0].parts[0].size;
  assert.ok(size > 0, "partition 0 holds bytes");
  assert.equal(dir.topics[0].parts[1].size, 0, "partition 1 holds none");
  const one = await logDirs([["vt", [0]], ["nope", [0]]]);
  assert.deepEqual(one.results[0].topics, [{ name: "vt", parts: [{ index: 0, size, lag: 0, future: false }] }]);

  // DescribeCluster v1: the brokers, the cluster id Metadata answers, the leader as the controller.
  const describe = async (operations: boolean, endpointType: number) => {
    const r = await k.call(60, 1, true, (w) => w.bool(operations).int8(endpointType));
    r.int32();
    const out = [
      r.int16(),
      r.nullableString(),
      r.int8(),
      r.string(),
      r.int32(),
      r.array((r) => [r.int32(), r.string(), r.int32(), r.nullableString()]),
      r.int32(),
    ];
    ends(r);
    return out;
  };
  assert.deepEqual(await describe(false, 1), [0, null, 1, "yak", 1, [[1, host, port, null]], -2147483648]);
  // Asked, every cluster operation (yak has no ACLs): CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
  // DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
  assert.equal((await describe(true, 1))[6], 8096);
  // yak has no controller endpoints (KIP-919): MISMATCHED_ENDPOINT_TYPE.
  assert.equal((await describe(false, 2))[0], 114);
}

/** A topic id (UUID text) from 16 wire bytes, null for all zero ("none"). */
function idOf(bytes: Uint8Array): string | null {
  return bytes.every((b) => b === 0) ? null : topicIdOfBytes(bytes);
}

/** A Metadata v10+ response's topics, every field; `v` says whether names are nullable (12) and cluster ops there (10). */
function readMetadata(r: Reader, v: number) {
  r.int32(); // throttle
  const brokers = r.array((r) => ({ id: r.int32(), host: r.string(), port: r.int32(), rack: r.nullableString() }));
  const clusterId = r.nullableString();
  const controller = r.int32();
  const topics = r.array((r) => ({
    error: r.int16(),
    name: v >= 12 ? r.nullableString() : r.string(),
    id: idOf(r.uuid()),
    internal: r.bool(),
    partitions: r.array((
      r,
    ) => [r.int16(), r.int32(), r.int32(), r.int32(), r.int32Array(), r.int32Array(), r.int32Array()]),
    operations: r.int32(),
  }));
  const clusterOperations = v <= 10 ? r.int32() : undefined;
  ends(r);
  return { brokers, clusterId, controller, topics, clusterOperations };
}

/** A JoinGroup v8 or v9 response, every field (v8 has no SkipAssignment: read as undefined). */
function readJoin(r: Reader, v = 9) {
  r.int32();
  const out = {
    error: r.int16(),
    generation: r.int32(),
    protocolType: r.nullableString(),
    protocol: r.nullableString(),
    leader: r.string(),
    skipAssignment: v >= 9 ? r.bool() : undefined,
    memberId: r.string(),
    members: r.array((r) => ({ id: r.string(), instance: r.nullableString(), metadata: r.bytes().slice() })),
  };
  ends(r);
  return out;
}

/** A SyncGroup v5 response, every field. */
function readSync(r: Reader) {
  r.int32();
  const out = [r.int16(), r.nullableString(), r.nullableString(), r.bytes().slice()];
  ends(r);
  return out;
}

/** A CreateTopics v7 response's topics, every field. */
function readCreated(r: Reader) {
  r.int32(); // throttle
  const topics = r.array((r) => ({
    name: r.string(),
    id: idOf(r.uuid()),
    error: r.int16(),
    message: r.nullableString(),
    partitions: r.int32(),
    replication: r.int16(),
    configs: r.nullableArray((r) => [r.string(), r.nullableString(), r.bool(), r.int8(), r.bool()]),
  }));
  ends(r);
  return topics;
}

/** A CreateTopics v7 request: each topic with `partitions` and retention.ms set. */
function createBody(names: string[], partitions: number, validateOnly: boolean): (w: Writer) => void {
  return (w) => {
    w.array(names, (w, name) => {
      w.string(name).int32(partitions).int16(-1);
      w.array([], () => {}); // assignments
      w.array([["retention.ms", "600000"]], (w, [key, value]) => w.string(key).nullableString(value));
    });
    w.int32(10_000).bool(validateOnly);
  };
}

Deno.test("the newest advertised Kafka API versions, field by field, on a live broker", (t) =>
  withDeadline(90_000, "kafka versions", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const port = c.kafkaPorts.get(1)!;
    const k = await KafkaConn.open(port);
    try {
      await t.step("ApiVersions v3: every range the issues ask for is advertised", async () => {
        const r = await k.call(18, 3, true, (w) => w.string("yak-test").string("1.0"));
        assert.equal(r.int16(), 0);
        const table = new Map(r.array((r) => [r.int16(), [r.int16(), r.int16()]] as const, 7));
        r.int32();
        ends(r);
        for (const [key, [min, max]] of Object.entries(AT_LEAST)) {
          const got = table.get(Number(key));
          assert.ok(got, `API ${key} is advertised`);
          assert.ok(got[0] <= min && got[1] >= max, `API ${key}: ${got[0]}-${got[1]} covers ${min}-${max}`);
        }
      });

      let vtId = "";
      await t.step("CreateTopics v7 answers the topic id, which yak topics --describe shows", async () => {
        const created = readCreated(await k.call(19, 7, true, createBody(["vt", "vt"], 3, false)));
        vtId = created[0].id ?? "";
        assert.match(vtId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        const made = { error: 0, message: null, partitions: 3, replication: 1, configs: null };
        assert.deepEqual(created[0], { name: "vt", id: vtId, ...made });
        // The second "vt" finds the first: no id.
        assert.deepEqual({ ...created[1], message: null }, {
          name: "vt",
          id: null,
          error: TOPIC_ALREADY_EXISTS,
          message: null,
          partitions: -1,
          replication: -1,
          configs: null,
        });
        assert.match(created[1].message ?? "", /already exists/);
        // validate_only: checked, not made, so no id.
        const checked = readCreated(await k.call(19, 7, true, createBody(["not-made"], 2, true)));
        assert.deepEqual(checked, [{ name: "not-made", id: null, ...made, partitions: 2 }]);

        const described = await yak(["topics", "--describe", "vt", ...c.zkFlag]);
        assert.equal(described.code, 0, described.stderr);
        assert.match(described.stdout, new RegExp(`^id: ${kafkaTopicIdText(vtId)} \\(${vtId}\\)$`, "m"));
      });

      let epoch = -1;
      let host = "";
      await t.step(
        "Metadata v12 by name and by id (an unknown id: UNKNOWN_TOPIC_ID, no name); v10's fields",
        async () => {
          const unknownId = crypto.randomUUID();
          let r = await k.call(3, 12, true, (w) => {
            w.array(
              [[ZERO_ID, "vt"], [topicIdBytes(vtId), null], [topicIdBytes(unknownId), null]] as const,
              (w, [id, name]) => w.uuid(id).nullableString(name),
            );
            w.bool(false).bool(true); // no auto-creation; topic authorized operations
          });
          const m = readMetadata(r, 12);
          assert.deepEqual(m.brokers, [{ id: 1, host: "127.0.0.1", port, rack: null }]);
          assert.deepEqual([m.clusterId, m.controller, m.clusterOperations], ["yak", 1, undefined]);
          epoch = (await c.lease()).epoch;
          host = m.brokers[0].host;
          const partitions = [0, 1, 2].map((p) => [0, p, 1, epoch, [1], [1], []]);
          const vt = { error: 0, name: "vt", id: vtId, internal: false, partitions, operations: TOPIC_OPERATIONS };
          assert.deepEqual(m.topics, [vt, vt, {
            error: UNKNOWN_TOPIC_ID,
            name: null,
            id: unknownId,
            internal: false,
            partitions: [],
            operations: NOT_ASKED,
          }]);
          // v10 carries the topic id and the cluster's authorized operations, and takes no ids (Kafka: v12 on).
          r = await k.call(3, 10, true, (w) => {
            w.array(
              [[ZERO_ID, "vt"], [topicIdBytes(vtId), "vt"]] as const,
              (w, [id, name]) => w.uuid(id).nullableString(name),
            );
            w.bool(false).bool(true).bool(false); // no auto-creation; cluster operations; no topic operations
          });
          const m10 = readMetadata(r, 10);
          assert.equal(m10.clusterOperations, CLUSTER_OPERATIONS);
          assert.deepEqual(m10.topics.map((t) => [t.error, t.name, t.id, t.partitions.length, t.operations]), [
            [0, "vt", vtId, 3, NOT_ASKED],
            [INVALID_REQUEST, "vt", null, 0, NOT_ASKED],
          ]);
        },
      );

      await t.step("Produce v8 and Fetch v12: three records stored and read back", async () => {
        const batch = encodeRecordBatch({
          baseOffset: 0,
          partitionLeaderEpoch: -1,
          records: ["one", "two", "three"].map((v, i) => ({
            offsetDelta: i,
            timestamp: Date.now(),
            key: text.encode(`k${i}`),
            value: text.encode(v),
            headers: [],
          })),
        });
        let r = await k.call(0, 8, false, (w) => {
          w.nullableString(null).int16(-1).int32(10_000);
          w.array(["vt"], (w, name) => {
            w.string(name);
            w.array([0, 99], (w, p) => w.int32(p).nullableBytes(batch));
          });
        });
        const produced = r.array((r) => ({
          name: r.string(),
          parts: r.array((r) => ({
            index: r.int32(),
            error: r.int16(),
            base: Number(r.int64()),
            appendTime: Number(r.int64()),
            logStart: Number(r.int64()),
            recordErrors: r.array((r) => [r.int32(), r.nullableString()]),
            message: r.nullableString(),
          })),
        }));
        r.int32(); // throttle
        ends(r);
        assert.deepEqual(produced[0].parts[0], {
          index: 0,
          error: 0,
          base: 0,
          appendTime: -1,
          logStart: 0,
          recordErrors: [],
          message: null,
        });
        assert.equal(produced[0].parts[1].index, 99);
        assert.equal(produced[0].parts[1].error, UNKNOWN_TOPIC_OR_PARTITION);

        r = await k.call(1, 12, true, (w) => {
          w.int32(-1).int32(100).int32(1).int32(1 << 20).int8(0).int32(0).int32(-1);
          w.array(["vt"], (w, name) => {
            w.string(name);
            w.array([0], (w, p) => w.int32(p).int32(-1).int64(0).int32(-1).int64(-1).int32(1 << 20));
          });
          w.array([], () => {}); // forgotten topics
          w.string(""); // rack
        });
        r.int32();
        assert.equal(r.int16(), 0, "fetch error");
        r.int32(); // session id
        const fetched = r.array((r) => ({
          name: r.string(),
          parts: r.array((r) => ({
            index: r.int32(),
            error: r.int16(),
            hw: Number(r.int64()),
            lso: Number(r.int64()),
            logStart: Number(r.int64()),
            aborted: r.nullableArray((r) => [r.int64(), r.int64()]),
            preferred: r.int32(),
            records: r.nullableBytes()?.slice() ?? null,
          })),
        }));
        ends(r);
        const p0 = fetched[0].parts[0];
        assert.deepEqual([p0.index, p0.error, p0.hw, p0.lso, p0.logStart, p0.preferred], [0, 0, 3, 3, 0, -1]);
        const records = decodeRecordBatches(p0.records!, { maxRecords: 100, maxUncompressedBytes: 1 << 20 })
          .flatMap((b) => b.records.map((rec) => new TextDecoder().decode(rec.value!)));
        assert.deepEqual(records, ["one", "two", "three"]);
      });

      await t.step("FindCoordinator v3 (one key) and v4 (several): broker 1", async () => {
        let r = await k.call(10, 3, true, (w) => w.string("g1").int8(0));
        r.int32();
        const one = [r.int16(), r.nullableString(), r.int32(), r.string(), r.int32()];
        ends(r);
        assert.deepEqual([one[0], one[2], one[4]], [0, 1, port]);
        r = await k.call(10, 4, true, (w) => w.int8(0).stringArray(["g1", "g2"]));
        r.int32();
        const several = r.array((r) => [r.string(), r.int32(), r.string(), r.int32(), r.int16(), r.nullableString()]);
        ends(r);
        assert.deepEqual(several.map((c) => [c[0], c[1], c[3], c[4]]), [["g1", 1, port, 0], ["g2", 1, port, 0]]);
      });

      const join = (version: number, memberId: string, instance: string | null, group = "g1") =>
        k.call(11, version, true, (w) => {
          w.string(group).int32(10_000).int32(10_000).string(memberId).nullableString(instance).string("consumer");
          w.array(
            [{ name: "range", metadata: subscription(["vt"]) }],
            (w, p) => w.string(p.name).nullableBytes(p.metadata),
          );
          w.nullableString(`test join as '${memberId}'`); // reason (v8+)
        });
      const sync = (
        group: string,
        generation: number,
        member: string,
        instance: string | null,
        name: string,
        give: Uint8Array | null,
      ) =>
        k.call(14, 5, true, (w) => {
          w.string(group).int32(generation).string(member).nullableString(instance);
          w.nullableString("consumer").nullableString(name);
          w.array(give ? [{ member, give }] : [], (w, a) => w.string(a.member).nullableBytes(a.give));
        });
      let member = "";
      let generation = -1;
      const mine = assignment("vt", [0, 1, 2]);
      await t.step("JoinGroup v9 (the member id round trip, protocol type), SyncGroup v5, Heartbeat v4", async () => {
        const first = readJoin(await join(9, "", null));
        assert.ok(first.memberId.length > 0, "a member id is handed out");
        member = first.memberId;
        assert.deepEqual(first, {
          error: MEMBER_ID_REQUIRED,
          generation: -1,
          protocolType: null,
          protocol: null,
          leader: "",
          skipAssignment: false,
          memberId: member,
          members: [],
        });
        const joined = readJoin(await join(9, member, null));
        generation = joined.generation;
        assert.deepEqual(joined, {
          error: 0,
          generation,
          protocolType: "consumer",
          protocol: "range",
          leader: member,
          skipAssignment: false,
          memberId: member,
          members: [{ id: member, instance: null, metadata: subscription(["vt"]) }],
        });
        // SyncGroup v5 naming another protocol than the group's is refused (KIP-559); with the group's, the
        // leader's assignment comes back to it with the protocol type and name.
        assert.deepEqual(readSync(await sync("g1", generation, member, null, "roundrobin", mine)), [
          INCONSISTENT_GROUP_PROTOCOL,
          null,
          null,
          new Uint8Array(0),
        ]);
        assert.deepEqual(readSync(await sync("g1", generation, member, null, "range", mine)), [
          0,
          "consumer",
          "range",
          mine,
        ]);

        const beat = async (gen: number) => {
          const r = await k.call(12, 4, true, (w) => w.string("g1").int32(gen).string(member).nullableString(null));
          r.int32();
          const error = r.int16();
          ends(r);
          return error;
        };
        assert.equal(await beat(generation), 0);
        assert.equal(await beat(generation - 1), ILLEGAL_GENERATION);
      });

      await t.step("OffsetCommit v9 and OffsetFetch v9 (two groups; member id and epoch not checked)", async () => {
        let r = await k.call(8, 9, true, (w) => {
          w.string("g1").int32(generation).string(member).nullableString(null);
          w.array(["vt"], (w, name) => {
            w.string(name);
            w.array(
              [[0, 3, 1, "m0"], [1, 0, -1, null]] as const,
              (w, [p, offset, epoch, metadata]) => w.int32(p).int64(offset).int32(epoch).nullableString(metadata),
            );
          });
        });
        r.int32();
        const committed = r.array((r) => [r.string(), r.array((r) => [r.int32(), r.int16()])]);
        ends(r);
        assert.deepEqual(committed, [["vt", [[0, 0], [1, 0]]]]);

        r = await k.call(9, 9, true, (w) => {
          const groups = [
            { group: "g1", member: member as string | null, epoch: generation, topics: null },
            { group: "nobody", member: null, epoch: -1, topics: [["vt", [0]]] as const },
          ];
          w.array(groups, (w, g) => {
            w.string(g.group).nullableString(g.member).int32(g.epoch);
            w.array(g.topics, (w, [name, parts]) => w.string(name).int32Array(parts));
          });
          w.bool(false); // require stable
        });
        r.int32();
        const offsets = r.array((r) => ({
          group: r.string(),
          topics: r.array((r) => ({
            name: r.string(),
            parts: r.array((r) => [r.int32(), Number(r.int64()), r.int32(), r.nullableString(), r.int16()]),
          })),
          error: r.int16(),
        }));
        ends(r);
        assert.deepEqual(offsets, [
          { group: "g1", topics: [{ name: "vt", parts: [[0, 3, 1, "m0", 0], [1, 0, -1, "", 0]] }], error: 0 },
          { group: "nobody", topics: [{ name: "vt", parts: [[0, -1, -1, "", 0]] }], error: 0 },
        ]);
      });

      await t.step("DescribeGroups v5 (authorized operations asked), then LeaveGroup v5 with a reason", async () => {
        let r = await k.call(15, 5, true, (w) => w.stringArray(["g1", "nobody"]).bool(true));
        r.int32();
        const described = r.array((r) => ({
          error: r.int16(),
          group: r.string(),
          state: r.string(),
          protocolType: r.string(),
          protocol: r.string(),
          members: r.array((
            r,
          ) => [r.string(), r.nullableString(), r.string(), r.string(), r.bytes().slice(), r.bytes().slice()]),
          operations: r.int32(),
        }));
        ends(r);
        const common = { error: 0, operations: GROUP_OPERATIONS };
        assert.deepEqual(described, [
          {
            ...common,
            group: "g1",
            state: "Stable",
            protocolType: "consumer",
            protocol: "range",
            members: [[member, null, "versions-test", "127.0.0.1", subscription(["vt"]), mine]],
          },
          { ...common, group: "nobody", state: "Dead", protocolType: "", protocol: "", members: [] },
        ]);

        r = await k.call(13, 5, true, (w) => {
          w.string("g1");
          w.array([member], (w, id) => w.string(id).nullableString(null).nullableString("the test is done"));
        });
        r.int32();
        const left = [r.int16(), r.array((r) => [r.string(), r.nullableString(), r.int16()])];
        ends(r);
        assert.deepEqual(left, [0, [[member, null, 0]]]);
        // Emptied, with its commits kept: still a consumer group, as ListGroups says and Kafka keeps it.
        r = await k.call(15, 5, true, (w) => w.stringArray(["g1"]).bool(false));
        r.int32();
        const emptied = r.array((r) => {
          const head = [r.int16(), r.string(), r.string(), r.string(), r.string()];
          r.array((r) => [r.string(), r.nullableString(), r.string(), r.string(), r.bytes(), r.bytes()]);
          r.int32();
          return head;
        });
        ends(r);
        assert.deepEqual(emptied, [[0, "g1", "Empty", "consumer", ""]]);
      });

      await t.step(
        "DeleteRecords v2, OffsetForLeaderEpoch v4, DescribeLogDirs v4, DescribeCluster v1",
        () => logApis(k, port, host, epoch),
      );

      await t.step("DescribeConfigs v4, AlterConfigs v2, IncrementalAlterConfigs v1", () => configsFieldByField(k));

      await t.step("ListGroups v4, OffsetDelete v0, DeleteGroups v2", async () => {
        // ListGroups v4 (KIP-518): filtered by state, any case, each group with its state; g1 is Empty now.
        const listGroups = async (states: string[]) => {
          const r = await k.call(16, 4, true, (w) => w.stringArray(states));
          r.int32(); // throttle
          const out = { error: r.int16(), groups: r.array((r) => [r.string(), r.string(), r.string()]) };
          ends(r);
          return out;
        };
        assert.deepEqual(await listGroups(["empty", "Stable"]), { error: 0, groups: [["g1", "consumer", "Empty"]] });
        assert.deepEqual(await listGroups(["Stable"]), { error: 0, groups: [] });

        // OffsetDelete v0: g1's commit on vt/0 goes (vt/1's stays); a partition of an unknown topic is named so.
        let r = await k.call(47, 0, false, (w) => {
          w.string("g1");
          w.array([["vt", [0]], ["nope", [0]]] as const, (w, [name, parts]) => {
            w.string(name);
            w.array(parts, (w, p) => w.int32(p));
          });
        });
        const offsetsDeleted = [
          r.int16(),
          r.int32(),
          r.array((r) => [r.string(), r.array((r) => [r.int32(), r.int16()])]),
        ];
        ends(r);
        assert.deepEqual(offsetsDeleted, [0, 0, [["vt", [[0, 0]]], ["nope", [[0, UNKNOWN_TOPIC_OR_PARTITION]]]]]);
        r = await k.call(9, 6, true, (w) => {
          w.string("g1");
          w.array([["vt", [0, 1]]] as const, (w, [name, parts]) => w.string(name).int32Array(parts));
        });
        r.int32();
        const fetchedOffsets = r.array((r) => [
          r.string(),
          r.array((r) => {
            const p = [r.int32(), Number(r.int64())];
            r.int32(); // leader epoch
            r.nullableString(); // metadata
            r.int16();
            return p;
          }),
        ]);
        assert.equal(r.int16(), 0);
        ends(r);
        assert.deepEqual(fetchedOffsets, [["vt", [[0, -1], [1, 0]]]]);

        // DeleteGroups v2: g1 (Empty, with its last commit) goes; a group that never was is GROUP_ID_NOT_FOUND (69).
        r = await k.call(42, 2, true, (w) => w.stringArray(["g1", "never"]));
        r.int32();
        const groupsDeleted = r.array((r) => [r.string(), r.int16()]);
        ends(r);
        assert.deepEqual(groupsDeleted, [["g1", 0], ["never", 69]]);
        assert.deepEqual(await listGroups([]), { error: 0, groups: [] });
      });

      await t.step("CreatePartitions v3", async () => {
        // CreatePartitions v3: vt from 3 to 5 with an assignment for each new partition (their count is what counts,
        // as the message says); validate-only to 9 changes nothing; 4 is fewer than 5: INVALID_PARTITIONS (37).
        const createPartitions = async (count: number, assignments: number[][] | null, validateOnly: boolean) => {
          const r = await k.call(37, 3, true, (w) => {
            w.array([{ name: "vt", count, assignments }], (w, t) => {
              w.string(t.name).int32(t.count);
              w.array(t.assignments, (w, brokers) => w.int32Array(brokers));
            });
            w.int32(10_000).bool(validateOnly);
          });
          r.int32(); // throttle
          const out = r.array((r) => [r.string(), r.int16(), r.nullableString()]);
          ends(r);
          return out;
        };
        assert.deepEqual(await createPartitions(5, [[1], [1]], false), [[
          "vt",
          0,
          "partitions added for the assignments' count; yak places every partition on every broker",
        ]]);
        assert.deepEqual(await createPartitions(9, null, true), [["vt", 0, null]]);
        const [[, fewer, why]] = await createPartitions(4, null, false);
        assert.equal(fewer, 37);
        assert.match(String(why), /topic 'vt' has 5 partitions; partitions can only be added/);
      });

      await t.step(
        "JoinGroup v9 tells a restarted static leader of a Stable group to skip the assignment (KIP-814)",
        async () => {
          const first = readJoin(await join(9, "", "i1", "gs"));
          assert.equal(first.error, 0);
          const old = first.memberId;
          assert.deepEqual(readSync(await sync("gs", first.generation, old, "i1", "range", mine)), [
            0,
            "consumer",
            "range",
            mine,
          ]);
          // v8: as before KIP-814, the old leader id, so the new process does not assign.
          const v8 = readJoin(await join(8, "", "i1", "gs"), 8);
          assert.deepEqual({ ...v8, memberId: "" }, {
            error: 0,
            generation: first.generation,
            protocolType: "consumer",
            protocol: "range",
            leader: old,
            skipAssignment: undefined, // not in v8
            memberId: "",
            members: [],
          });
          // v9: it leads, is told the members, and skips the assignment; the group keeps its generation.
          const v9 = readJoin(await join(9, "", "i1", "gs"));
          assert.deepEqual({ ...v9, members: [] }, {
            error: 0,
            generation: first.generation,
            protocolType: "consumer",
            protocol: "range",
            leader: v9.memberId,
            skipAssignment: true,
            memberId: v9.memberId,
            members: [],
          });
          assert.deepEqual(v9.members, [{ id: v9.memberId, instance: "i1", metadata: subscription(["vt"]) }]);
          assert.deepEqual(readSync(await sync("gs", first.generation, v9.memberId, "i1", "range", null)), [
            0,
            "consumer",
            "range",
            mine,
          ]);
          assert.equal(
            readSync(await sync("gs", first.generation, v8.memberId, "i1", "range", null))[0],
            FENCED_INSTANCE_ID,
          );
          const r = await k.call(13, 5, true, (w) => {
            w.string("gs");
            w.array(["i1"], (w, instance) => w.string("").nullableString(instance).nullableString(null));
          });
          r.int32();
          assert.deepEqual([r.int16(), r.array((r) => [r.string(), r.nullableString(), r.int16()])], [0, [[
            "",
            "i1",
            0,
          ]]]);
          ends(r);
        },
      );

      await t.step("DeleteTopics v6: by id; an unknown id, an unknown name, both or neither", async () => {
        const del = async (topics: [string | null, Uint8Array][]) => {
          const r = await k.call(20, 6, true, (w) => {
            w.array(topics, (w, [name, id]) => w.nullableString(name).uuid(id));
            w.int32(10_000);
          });
          r.int32();
          const out = r.array((r) => ({
            name: r.nullableString(),
            id: idOf(r.uuid()),
            error: r.int16(),
            message: r.nullableString(),
          }));
          ends(r);
          return out;
        };
        // Another topic, another id; deleted by name below.
        const [other] = readCreated(await k.call(19, 7, true, createBody(["other"], 1, false)));
        const otherId = other.id ?? "";
        assert.ok(other.error === 0 && otherId !== "" && otherId !== vtId, JSON.stringify(other));
        assert.deepEqual(await del([[null, topicIdBytes(vtId)]]), [{ name: "vt", id: vtId, error: 0, message: null }]);
        const unknown = crypto.randomUUID();
        const refused = await del([
          [null, topicIdBytes(vtId)],
          ["nope", ZERO_ID],
          ["other", topicIdBytes(unknown)],
          [null, ZERO_ID],
        ]);
        assert.deepEqual(refused.map((t) => [t.name, t.id, t.error]), [
          [null, vtId, UNKNOWN_TOPIC_ID],
          ["nope", null, UNKNOWN_TOPIC_OR_PARTITION],
          ["other", unknown, INVALID_REQUEST],
          [null, null, INVALID_REQUEST],
        ]);
        assert.match(refused[0].message ?? "", new RegExp(`no topic has id ${kafkaTopicIdText(vtId)}`));
        assert.ok(refused.every((t) => t.message !== null), "each refusal says why");
        // By name, as before: its id is answered.
        assert.deepEqual(await del([["other", ZERO_ID]]), [{ name: "other", id: otherId, error: 0, message: null }]);
      });
    } finally {
      k.close();
      await c.stop();
    }
  }));

Deno.test("Kafka Produce: a refused request stores nothing and the broker lives; max.message.bytes counts headers; producer ids are unique across brokers", () =>
  withDeadline(90_000, "kafka produce edges", async () => {
    const c = await TestCluster.start({ brokers: 3 });
    const conns: KafkaConn[] = [];
    try {
      const leader = (await c.lease()).leaderId!;
      const k = await KafkaConn.open(c.kafkaPorts.get(leader)!);
      conns.push(k);
      const batch = (opts: Partial<Parameters<typeof encodeRecordBatch>[0]>, values: string[], headerBytes = 0) =>
        encodeRecordBatch({
          baseOffset: 0,
          partitionLeaderEpoch: -1,
          records: values.map((v, i) => ({
            offsetDelta: i,
            timestamp: Date.now(),
            key: null,
            value: text.encode(v),
            headers: headerBytes > 0 ? [{ key: "h", value: new Uint8Array(headerBytes) }] : [],
          })),
          ...opts,
        });
      // CreateTopics v4 with max.message.bytes=100.
      let r = await k.call(19, 4, false, (w) => {
        w.array(["small"], (w, name) => {
          w.string(name).int32(1).int16(-1).array([], () => {});
          w.array([["max.message.bytes", "100"]], (w, [key, value]) => w.string(key).nullableString(value));
        });
        w.int32(10_000).bool(false);
      });
      r.int32();
      assert.deepEqual(r.array((r) => [r.string(), r.int16(), r.nullableString()]), [["small", 0, null]]);
      ends(r);

      // An idempotent producer's first batch, then a request holding its batch with a sequence gap, a
      // plain batch and a transactional batch: refused, none of it stored (before: the first two were
      // appended before the third was looked at, and the gap's failure went unhandled and ended the leader).
      r = await k.call(22, 1, false, (w) => w.nullableString(null).int32(60_000));
      r.int32();
      assert.equal(r.int16(), 0);
      const pid = BigInt(r.int64()); // issued by the cluster: ids it did not issue are refused
      r.int16();
      ends(r);
      r = await k.call(
        0,
        7,
        false,
        produceBody("small", 0, [batch({ producerId: pid, producerEpoch: 0, baseSequence: 0 }, ["first"])]),
      );
      assert.equal(produceError(r), 0);
      const gap = batch({ producerId: pid, producerEpoch: 0, baseSequence: 10 }, ["gap"]);
      const txn = batch({ producerId: 4243n, producerEpoch: 0, baseSequence: 0 }, ["txn"]);
      // Attributes (at byte 21): transactional; the CRC-32C (at 17) covers the attributes onwards.
      const view = new DataView(txn.buffer, txn.byteOffset);
      view.setInt16(21, 0x10);
      view.setUint32(17, crc32c(txn, 21));
      r = await k.call(0, 7, false, produceBody("small", 0, [gap, batch({}, ["fine"]), txn]));
      assert.notEqual(produceError(r), 0, "a request with a bad batch is refused");
      // Over the topic's 100 bytes: by the value, or by a header alone.
      r = await k.call(0, 7, false, produceBody("small", 0, [batch({}, ["x".repeat(101)])]));
      assert.equal(produceError(r), 10, "MESSAGE_TOO_LARGE by the value");
      r = await k.call(0, 7, false, produceBody("small", 0, [batch({}, ["x"], 120)]));
      assert.equal(produceError(r), 10, "MESSAGE_TOO_LARGE by a header");
      // Two batches for one partition, or one with no record: INVALID_RECORD, as Kafka (before: both stored, or the
      // empty one answered as stored).
      r = await k.call(0, 7, false, produceBody("small", 0, [batch({}, ["two"]), batch({}, ["batches"])]));
      assert.equal(produceError(r), 87, "two batches in one partition");
      // No record: one record's batch cut after its header, count 0, length and CRC-32C set again.
      const empty = batch({}, ["x"]).slice(0, 61);
      const ev = new DataView(empty.buffer);
      ev.setInt32(8, 61 - 12);
      ev.setInt32(57, 0);
      ev.setUint32(17, crc32c(empty, 21));
      r = await k.call(0, 7, false, produceBody("small", 0, [empty]));
      assert.equal(produceError(r), 87, "an empty batch");
      // Offsets that do not run 0..count-1 (deltas 0 and 1, the last said to be 7): before, renumbered and stored.
      r = await k.call(0, 7, false, produceBody("small", 0, [batch({ lastOffsetDelta: 7 }, ["a", "b"])]));
      assert.equal(produceError(r), 87, "an offset range other than the count");
      r = await k.call(0, 7, false, produceBody("small", 0, [batch({}, ["kept"])]));
      assert.equal(produceError(r), 0);
      await new Promise((res) => setTimeout(res, 300));
      assert.equal(c.brokers.get(leader)!.exited, false, "the leader is alive");
      const stored = await yak(["consume", "--topic", "small", "--from-beginning", "--exit-at-end", ...c.zkFlag]);
      assert.equal(stored.code, 0, stored.stderr);
      assert.equal(stored.stdout, "first\nkept\n");

      // InitProducerId v1 on every broker at once: no id handed out twice.
      for (const id of [1, 2, 3]) conns.push(await KafkaConn.open(c.kafkaPorts.get(id)!));
      const ids = await Promise.all(
        conns.slice(1).map(async (conn) => {
          const out: number[] = [];
          for (let i = 0; i < 100; i++) {
            const r = await conn.call(22, 1, false, (w) => w.nullableString(null).int32(60_000));
            r.int32();
            assert.equal(r.int16(), 0);
            out.push(r.int64());
            r.int16();
            ends(r);
          }
          return out;
        }),
      );
      assert.equal(new Set(ids.flat()).size, 300, "300 producer ids, all different");
    } finally {
      for (const conn of conns) conn.close();
      await c.stop();
    }
  }));

/**
 * DescribeConfigs v4, AlterConfigs v2 and IncrementalAlterConfigs v1 (all
 * flexible) on topic "vt" (created with retention.ms=600000) and broker 1.
 */
async function configsFieldByField(k: KafkaConn): Promise<void> {
  let r = await k.call(32, 4, true, (w) => {
    w.array([
      { type: 2, name: "vt", keys: ["retention.ms", "cleanup.policy"] },
      { type: 4, name: "1", keys: ["broker.id"] },
      { type: 2, name: "missing", keys: null },
    ], (w, res) => {
      w.int8(res.type).string(res.name);
      if (res.keys === null) w.uvarint(0);
      else w.stringArray(res.keys);
    });
    w.bool(true).bool(true); // synonyms, documentation
  });
  assert.equal(r.int32(), 0);
  const results = r.array((r) => ({
    error: r.int16(),
    message: r.nullableString(),
    type: r.int8(),
    name: r.string(),
    configs: r.array((r) => ({
      name: r.string(),
      value: r.nullableString(),
      readOnly: r.bool(),
      source: r.int8(),
      sensitive: r.bool(),
      synonyms: r.array((r) => [r.string(), r.nullableString(), r.int8()]),
      type: r.int8(),
      doc: r.nullableString(),
    })),
  }));
  ends(r);
  const [topic, broker, missing] = results;
  assert.deepEqual(topic.configs.map(({ doc: _, ...c }) => c), [
    {
      name: "cleanup.policy",
      value: "delete",
      readOnly: false,
      source: 5, // DEFAULT_CONFIG
      sensitive: false,
      synonyms: [["log.cleanup.policy", "delete", 5]],
      type: 7, // LIST
    },
    {
      name: "retention.ms",
      value: "600000",
      readOnly: false,
      source: 1, // TOPIC_CONFIG
      sensitive: false,
      synonyms: [["retention.ms", "600000", 1], ["log.retention.ms", "604800000", 5]],
      type: 5, // LONG
    },
  ]);
  assert.match(topic.configs[0].doc!, /compact: the cleaner keeps the newest record of each key/);
  assert.deepEqual([broker.error, broker.type, broker.name], [0, 4, "1"]);
  assert.deepEqual(broker.configs.map(({ doc: _, ...c }) => c), [{
    name: "broker.id",
    value: "1",
    readOnly: true,
    source: 4, // STATIC_BROKER_CONFIG
    sensitive: false,
    synonyms: [["broker.id", "1", 4]],
    type: 3, // INT
  }]);
  assert.deepEqual([missing.error, missing.message, missing.configs], [
    UNKNOWN_TOPIC_OR_PARTITION,
    "topic 'missing' does not exist",
    [],
  ]);

  // AlterConfigs v2: vt's configs become segment.ms alone.
  r = await k.call(33, 2, true, (w) => {
    w.array([{ type: 2, name: "vt" }], (w, res) => {
      w.int8(res.type).string(res.name);
      w.array([["segment.ms", "60000"]], (w, [name, value]) => w.string(name).nullableString(value));
    });
    w.bool(false);
  });
  assert.equal(r.int32(), 0);
  const altered = r.array((r) => [r.int16(), r.nullableString(), r.int8(), r.string()]);
  ends(r);
  assert.deepEqual(altered, [[0, null, 2, "vt"]]);

  // IncrementalAlterConfigs v1: a broker's flag and a policy Kafka does not have are refused, with the reason
  // (INVALID_CONFIG, 40).
  r = await k.call(44, 1, true, (w) => {
    w.array([
      { type: 4, name: "1", op: ["min.insync.replicas", 0, "2"] as const },
      { type: 2, name: "vt", op: ["cleanup.policy", 2, "shred"] as const },
    ], (w, res) => {
      w.int8(res.type).string(res.name);
      w.array([res.op], (w, [name, op, value]) => w.string(name).int8(op).nullableString(value));
    });
    w.bool(false);
  });
  assert.equal(r.int32(), 0);
  const incremental = r.array((r) => [r.int16(), r.nullableString(), r.int8(), r.string()]);
  ends(r);
  assert.deepEqual(incremental.map(([error, , type, name]) => [error, type, name]), [[40, 4, "1"], [40, 2, "vt"]]);
  assert.match(String(incremental[0][1]), /broker configs are flags of 'yak broker'/);
  assert.match(String(incremental[1][1]), /cleanup\.policy.*must be delete, compact, or compact,delete/);
}
