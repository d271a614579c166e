/**
 * Commits as Kafka stores them (issue 21 §1): any offset, past the log end
 * too, with the commit's metadata and leader epoch kept and given back.
 * Through kafkajs's admin (setOffsets, fetchOffsets), kafka-python's commit
 * with metadata, raw OffsetCommit/OffsetFetch v8, and yak consume resuming
 * from a commit past the end.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { PYTHON, pythonModuleMissing, run, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

const COMMIT_WITH_METADATA = `
import sys, json
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
boot, topic = sys.argv[1].split(","), sys.argv[2]
c = KafkaConsumer(bootstrap_servers=boot, group_id="py-meta", enable_auto_commit=False)
tp = TopicPartition(topic, 0)
c.assign([tp])
c.commit({tp: OffsetAndMetadata(42, "where I was")})
got = c._coordinator.fetch_committed_offsets([tp])[tp]
print(json.dumps([got.offset, got.metadata]))
c.close()
`;

/** OffsetCommit v8 of one partition with a leader epoch and metadata, then OffsetFetch v8 of it. */
async function commitAndFetchV8(port: number, group: string, topic: string) {
  const k = await KafkaConn.open(port);
  try {
    const c = await k.call(8, 8, true, (w) => {
      w.string(group).int32(-1).string("").nullableString(null);
      w.array([topic], (w, t) => {
        w.string(t);
        w.array([0], (w, p) => w.int32(p).int64(1000n).int32(7).nullableString("v8 metadata"));
      });
    });
    c.int32();
    const [[committed]] = c.array((r) => {
      r.string();
      return r.array((r) => [r.int32(), r.int16()]);
    });
    ends(c);
    const f = await k.call(9, 8, true, (w) => {
      w.array([group], (w, g) => {
        w.string(g);
        w.array([topic], (w, t) => w.string(t).int32Array([0]));
      });
      w.bool(false);
    });
    f.int32();
    const [fetched] = f.array((r) => {
      r.string();
      const topics = r.array((r) => {
        r.string();
        return r.array((r) => ({
          partition: r.int32(),
          offset: Number(r.int64()),
          epoch: r.int32(),
          metadata: r.nullableString(),
          error: r.int16(),
        }));
      });
      r.int16();
      return topics[0][0];
    });
    ends(f);
    return { committed, fetched };
  } finally {
    k.close();
  }
}

Deno.test({
  name: "commits past the log end are stored with their metadata and leader epoch; a consumer resuming there resets",
  ignore: skipWithout(pythonModuleMissing("kafka", "python3-kafka")),
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDeadline(90_000, "commits", async () => {
      const c = await TestCluster.start({ brokers: 1, partitions: 1 });
      const kafka = new Kafka({
        clientId: "yak-commits",
        brokers: c.bootstrapServers.split(","),
        logLevel: logLevel.NOTHING,
      });
      const admin = kafka.admin();
      try {
        const made = await yak(["topics", "--create", "empty", "--partitions", "1", ...c.zkFlag]);
        assert.equal(made.code, 0, made.stderr);
        // kafkajs: setOffsets(13) on an empty topic is stored (it silently stored nothing).
        await admin.connect();
        await admin.setOffsets({ groupId: "js-set", topic: "empty", partitions: [{ partition: 0, offset: "13" }] });
        const [fetched] = await admin.fetchOffsets({ groupId: "js-set", topics: ["empty"] });
        assert.deepEqual(fetched.partitions.map((p) => [p.partition, p.offset]), [[0, "13"]]);

        // kafka-python: a commit of 42 with metadata on the empty partition, read back with its metadata.
        const py = await run(PYTHON, ["-c", COMMIT_WITH_METADATA, c.bootstrapServers, "empty"], { timeoutMs: 60_000 });
        assert.equal(py.code, 0, py.stderr);
        assert.deepEqual(JSON.parse(new TextDecoder().decode(py.stdout).trim()), [42, "where I was"]);

        // v8: the leader epoch comes back too.
        const v8 = await commitAndFetchV8(c.kafkaPorts.get(1)!, "raw-v8", "empty");
        assert.deepEqual(v8.committed, [0, 0]);
        assert.deepEqual(v8.fetched, { partition: 0, offset: 1000, epoch: 7, metadata: "v8 metadata", error: 0 });

        // yak consume in the group committed at 42: past the end, it resets (earliest) and reads what is there.
        const stored = await yak(["produce", "--topic", "empty", ...c.zkFlag], { stdin: "a\nb\nc\n" });
        assert.equal(stored.code, 0, stored.stderr);
        const read = await yak([
          "consume",
          "--topic",
          "empty",
          "--group",
          "py-meta",
          "--from-beginning",
          "--max-messages",
          "3",
          ...c.zkFlag,
        ], { timeoutMs: 30_000 });
        assert.equal(read.code, 0, read.stderr);
        assert.equal(read.stdout, "a\nb\nc\n");
        assert.match(read.stderr, /offset 42 of empty\/0 is past the end/);
      } finally {
        await admin.disconnect().catch(() => {});
        await c.stop();
      }
    }),
});

Deno.test("OffsetCommit refuses a partition the topic does not have on its own, and stores the others, as Kafka does", () =>
  withDeadline(60_000, "commit partitions", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
    try {
      const made = await yak(["topics", "--create", "cp", "--partitions", "2", ...c.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      const r = await k.call(8, 8, true, (w) => {
        w.string("cg").int32(-1).string("").nullableString(null);
        w.array(["cp"], (w, t) => {
          w.string(t);
          w.array([0, -1, 1, 2], (w, p) => w.int32(p).int64(5n).int32(-1).nullableString(null));
        });
      });
      r.int32();
      const [answers] = r.array((r) => {
        r.string();
        return r.array((r) => [r.int32(), r.int16()]);
      });
      ends(r);
      // 3: UNKNOWN_TOPIC_OR_PARTITION, for -1 and 2 alone (all four were refused before).
      assert.deepEqual(answers, [[0, 0], [-1, 3], [1, 0], [2, 3]]);
      const shown = await yak(["groups", "--describe", "cg", "--json", ...c.zkFlag]);
      assert.equal(shown.code, 0, shown.stderr);
      const committed = JSON.parse(shown.stdout).partitions.map((
        p: { partition: number; committed: number },
      ) => [p.partition, p.committed]);
      assert.deepEqual(committed, [[0, 5], [1, 5]]);
    } finally {
      k.close();
      await c.stop();
    }
  }));

Deno.test("int64 positions past 2^53: a commit is refused on its own partition, a fetch and a ListOffsets are answered, and the connection stays", () =>
  withDeadline(60_000, "big offsets", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get(1)!);
    try {
      const made = await yak(["topics", "--create", "bo", "--partitions", "2", ...c.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      const big = 2n ** 60n;
      // OffsetCommit v8: partition 0 at 2^60 (more than yak's stored commits hold), partition 1 at 7.
      const r = await k.call(8, 8, true, (w) => {
        w.string("bg").int32(-1).string("").nullableString(null);
        w.array(["bo"], (w, t) => {
          w.string(t);
          w.array([[0, big], [1, 7n]] as const, (w, [p, o]) => w.int32(p).int64(o).int32(-1).nullableString(null));
        });
      });
      r.int32();
      const [answers] = r.array((r) => {
        r.string();
        return r.array((r) => [r.int32(), r.int16()]);
      });
      ends(r);
      assert.deepEqual(answers, [[0, 28], [1, 0]], "INVALID_COMMIT_OFFSET_SIZE for partition 0 alone");
      // Fetch v4 at 2^60 on the same connection: past the end, OFFSET_OUT_OF_RANGE (1).
      const f = await k.call(1, 4, false, (w) => {
        w.int32(-1).int32(0).int32(1).int32(1 << 20).int8(0);
        w.array(["bo"], (w, t) => {
          w.string(t);
          w.array([0], (w, p) => w.int32(p).int64(big).int32(1 << 20));
        });
      });
      f.int32();
      const [fetched] = f.array((r) => {
        r.string();
        return r.array((r) => {
          const p = r.int32(), error = r.int16();
          r.int64();
          r.int64();
          r.array((r) => [r.int64(), r.int64()]);
          r.bytes();
          return [p, error];
        });
      });
      ends(f);
      assert.deepEqual(fetched, [[0, 1]]);
      // ListOffsets v1 for the first record at or after 2^60 ms: none (-1).
      const l = await k.call(2, 1, false, (w) => {
        w.int32(-1);
        w.array(["bo"], (w, t) => {
          w.string(t);
          w.array([0], (w, p) => w.int32(p).int64(big));
        });
      });
      const [listed] = l.array((r) => {
        r.string();
        return r.array((r) => [r.int32(), r.int16(), r.int64(), r.int64()]);
      });
      ends(l);
      assert.deepEqual(listed, [[0, 0, -1, -1]]);
      const shown = await yak(["groups", "--describe", "bg", "--json", ...c.zkFlag]);
      assert.equal(shown.code, 0, shown.stderr);
      const committed = JSON.parse(shown.stdout).partitions.map((
        p: { partition: number; committed: number },
      ) => [p.partition, p.committed]);
      assert.deepEqual(committed, [[1, 7]]);
    } finally {
      k.close();
      await c.stop();
    }
  }));
