/**
 * An acknowledgement means stored, for every idempotent producer: the broker
 * issues producer ids (Kafka's InitProducerId, native `init_producer`), a
 * batch is a duplicate only when it is exactly one already stored, and no
 * client can write under an id it was not given. Each case failed on the code
 * before producer ids were issued: two producers that asked with 0/0 shared
 * one id (1000 acknowledged, 500 stored), a batch overlapping a stored one
 * was answered success and dropped, and a second connection that sent a
 * victim's producer id had its records stored and the victim's dropped.
 */
import assert from "node:assert/strict";
import type { Writer } from "../src/kafka/wire.ts";
import { Connection } from "../src/protocol/connection.ts";
import { YakError } from "../src/errors.ts";
import { type Acknowledgement, Producer } from "../src/client/producer.ts";
import { eventually, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn, produceBody, textBatch } from "./kafka_conn.ts";

const UNKNOWN_PRODUCER_ID = 59;
const INVALID_PRODUCER_EPOCH = 47;
const OUT_OF_ORDER_SEQUENCE_NUMBER = 45;
const INVALID_RECORD = 87;

/** InitProducerId v4 as @platformatic/kafka sends it to ask for a fresh id: producer id 0, epoch 0. */
async function initProducerId(k: KafkaConn): Promise<{ error: number; id: bigint; epoch: number }> {
  const r = await k.call(22, 4, true, (w: Writer) => w.nullableString(null).int32(60_000).int64(0n).int16(0));
  r.int32(); // throttle
  const error = r.int16();
  const id = BigInt(r.int64());
  const epoch = r.int16();
  ends(r);
  return { error, id, epoch };
}

/** A record batch of `values` from producer `id`/`epoch`, starting at sequence `seq`. */
function batch(id: bigint, epoch: number, seq: number, values: string[]): Uint8Array {
  return textBatch(values, { producerId: id, producerEpoch: epoch, baseSequence: seq });
}

/** Produce v7 of one batch to `topic`/0: [error, baseOffset]. */
async function produce(k: KafkaConn, topic: string, records: Uint8Array): Promise<[number, number]> {
  const r = await k.call(0, 7, false, produceBody(topic, 0, [records]));
  const out = r.array((r) => {
    r.string();
    return r.array((r) => {
      r.int32();
      const error = r.int16();
      const base = r.int64();
      r.int64();
      r.int64();
      return [error, base] as [number, number];
    });
  }).flat();
  r.int32();
  ends(r);
  return out[0];
}

async function stored(c: TestCluster, topic: string): Promise<string[]> {
  const out = await yak(["consume", "--topic", topic, "--from-beginning", "--exit-at-end", ...c.zkFlag]);
  assert.equal(out.code, 0, out.stderr);
  return out.stdout.split("\n").filter((l) => l.length > 0);
}

Deno.test("Kafka idempotence: fresh ids for every InitProducerId, exact duplicates only, ids never issued refused", () =>
  withDeadline(90_000, "kafka idempotence", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    const conns: KafkaConn[] = [];
    try {
      const lease = await c.lease();
      const leader = lease.leaderId!;
      const follower = [1, 2, 3].find((id) => id !== leader)!;
      const k = await KafkaConn.open(c.kafkaPorts.get(leader)!);
      const kf = await KafkaConn.open(c.kafkaPorts.get(follower)!);
      conns.push(k, kf);

      // §1: two producers that ask with 0/0 (one of them through a follower) get two fresh ids, epoch 0.
      const a = await initProducerId(k);
      const b = await initProducerId(kf);
      assert.deepEqual([a.error, a.epoch, b.error, b.epoch], [0, 0, 0, 0]);
      assert.notEqual(a.id, b.id, "two producers got the same id");
      assert.ok(a.id > 0n && b.id > 0n);
      // 500 records each, in batches of 100, to one partition: 1000 acknowledged, 1000 stored.
      let acked = 0;
      for (const [name, p] of [["a", a], ["b", b]] as const) {
        for (let s = 0; s < 500; s += 100) {
          const values = Array.from({ length: 100 }, (_, i) => `${name}${s + i}`);
          const [error] = await produce(k, "two", batch(p.id, 0, s, values));
          assert.equal(error, 0, `producer ${name} at ${s}`);
          acked += 100;
        }
      }
      const two = await stored(c, "two");
      console.log(`two producers that asked with 0/0: ${acked} acknowledged, ${two.length} stored`);
      assert.equal(two.length, 1000);

      // Ids the cluster never issued, and an epoch it never issued: refused, nothing stored.
      const [forged] = await produce(k, "two", batch(4242n, 0, 0, ["forged"]));
      assert.equal(forged, UNKNOWN_PRODUCER_ID);
      const [guessed] = await produce(k, "two", batch(a.id + 1n, 0, 0, ["guessed"]));
      assert.equal(guessed, UNKNOWN_PRODUCER_ID, "the next id after one's own is not issued");
      const [epoch] = await produce(k, "two", batch(a.id, 3, 0, ["old epoch"]));
      assert.equal(epoch, INVALID_PRODUCER_EPOCH);

      // §2: after sequences 0-2, a different batch starting at 1 is out of order, not a duplicate.
      const p = await initProducerId(k);
      const [e1, base] = await produce(k, "seq", batch(p.id, 0, 0, ["s0", "s1", "s2"]));
      assert.equal(e1, 0);
      const [overlap] = await produce(k, "seq", batch(p.id, 0, 1, ["X1", "X2", "X3"]));
      assert.equal(overlap, OUT_OF_ORDER_SEQUENCE_NUMBER);
      const [retryError, retryBase] = await produce(k, "seq", batch(p.id, 0, 0, ["s0", "s1", "s2"]));
      assert.deepEqual([retryError, retryBase], [0, base], "the exact retry is answered with its first offset");
      const [e3] = await produce(k, "seq", batch(p.id, 0, 3, ["s3"]));
      assert.equal(e3, 0);
      // A batch with the producer's id and no sequence (-1) is refused (before: read as sequence 0, answered as a
      // duplicate of s0-s2 with their offset, and never stored).
      const [noSeq] = await produce(k, "seq", batch(p.id, 0, -1, ["s4"]));
      assert.equal(noSeq, INVALID_RECORD);
      assert.deepEqual(await stored(c, "seq"), ["s0", "s1", "s2", "s3"]);

      // A batch of 50,000 records (librdkafka's batch.num.messages can be up to 1M; past the old cap of 10,000 it
      // failed every message as MESSAGE_TOO_LARGE): taken whole.
      const wide = Array.from({ length: 50_000 }, (_, i) => String(i));
      const [wideError] = await produce(k, "wide", textBatch(wide));
      assert.equal(wideError, 0);
      assert.equal((await stored(c, "wide")).length, 50_000);

      // acks=0 has no answer to carry an error: a failed one (a partition the topic lacks) closes the connection, as
      // Kafka does, so the client refreshes its metadata (before: the next request was answered as if all was well).
      const acks0 = (partition: number) => (w: Writer) => {
        w.nullableString(null).int16(0).int32(10_000);
        w.array(
          ["seq"],
          (w, name) => w.string(name).array([partition], (w, p) => w.int32(p).nullableBytes(textBatch(["z"]))),
        );
      };
      const metadata = (conn: KafkaConn) => conn.call(3, 1, false, (w) => w.array(["seq"], (w, t) => w.string(t)));
      const k0 = await KafkaConn.open(c.kafkaPorts.get(leader)!);
      conns.push(k0);
      await k0.send(0, 7, false, acks0(0));
      await metadata(k0); // a stored acks=0 batch keeps it open
      await k0.send(0, 7, false, acks0(9));
      await assert.rejects(metadata(k0), /closed the connection/);
      assert.equal((await stored(c, "two")).length, 1000, "nothing refused was stored");
    } finally {
      for (const conn of conns) conn.close();
      await c.stop();
    }
  }));

/** A native produce request of `values` as producer `id` from sequence `seq`. */
function nativeProduce(conn: Connection, topic: string, id: string, seq: number, values: string[]) {
  return conn.request({
    type: "produce",
    topic,
    partition: 0,
    acks: "all",
    producer: id,
    seq,
    records: values.map((v) => ({ v })),
  });
}

async function leaderConn(c: TestCluster): Promise<Connection> {
  const lease = await c.waitFor((l) => l.leaderId !== null && c.brokers.get(l.leaderId)?.exited === false);
  return await Connection.open("127.0.0.1", c.brokerPorts.get(lease.leaderId!)!);
}

Deno.test("native idempotence: ids are issued and secret; retries after a reconnect and a failover are still duplicates", () =>
  withDeadline(90_000, "native idempotence", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    const conns: Connection[] = [];
    try {
      const victim = await leaderConn(c);
      conns.push(victim);
      const issued = await victim.request({ type: "init_producer" });
      const id = String(issued.producerId);
      assert.match(id, /^\d+$/);
      await nativeProduce(victim, "v", id, 0, ["v0", "v1", "v2"]);

      // §3: what another client can know of the victim: its name in the stored lines (and `yak status`).
      const line = await yak([
        "consume",
        "--topic",
        "v",
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "json",
        ...c.zkFlag,
      ]);
      const raw = (await Deno.readTextFile(`${c.topicsDir((await c.lease()).leaderId!)}/v/0/${"0".repeat(20)}.jsonl`))
        .split("\n")[0];
      const name = JSON.parse(raw).producer as string;
      assert.ok(!raw.includes(id), "the stored line does not hold the secret id");
      assert.equal(line.code, 0);
      const attacker = await leaderConn(c);
      conns.push(attacker);
      for (const forged of [name, "p-" + name, String(Number(id) + 1), "12345"]) {
        await assert.rejects(
          nativeProduce(attacker, "v", forged, 3, ["JUNK-a", "JUNK-b"]),
          (e: YakError) => e.code === "UNKNOWN_PRODUCER_ID",
          `a batch under '${forged}' was not refused`,
        );
      }
      // A name that is no issued id at all: what a yak produce from before issued ids sends, told so.
      await assert.rejects(
        nativeProduce(attacker, "v", "p-1a2b3c", 0, ["old"]),
        /names its own producer \('p-1a2b3c'\) is older than this broker .*upgrade it/,
      );
      // The victim's next batch is stored, not answered as a duplicate of the attacker's.
      const next = await nativeProduce(victim, "v", id, 3, ["v3"]);
      assert.equal(next.duplicate, false);

      // A retry on a new connection (the answer was lost with the old one): a duplicate, same offset.
      const again = await leaderConn(c);
      conns.push(again);
      const retry = await nativeProduce(again, "v", id, 3, ["v3"]);
      assert.deepEqual([retry.duplicate, retry.baseOffset], [true, next.baseOffset]);

      // And after a failover: the new leader knows the id and the batch.
      const old = (await c.lease()).leaderId!;
      c.brokers.get(old)!.kill("SIGKILL");
      await c.waitFor((l) => l.leaderId !== null && l.leaderId !== old);
      let after: Record<string, unknown> | null = null;
      for (let tries = 0; after === null; tries++) {
        const conn = await leaderConn(c);
        conns.push(conn);
        try {
          after = await nativeProduce(conn, "v", id, 3, ["v3"]);
        } catch (err) {
          // The new leader may still be taking over (or waiting for its replicas).
          if (tries > 50 || !(err instanceof YakError) || err.code === "UNKNOWN_PRODUCER_ID") throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.deepEqual([after.duplicate, after.baseOffset], [true, next.baseOffset], "a retry after a failover");
      const conn = await leaderConn(c);
      conns.push(conn);
      await nativeProduce(conn, "v", id, 4, ["v4"]);
      assert.deepEqual(await stored(c, "v"), ["v0", "v1", "v2", "v3", "v4"]);
    } finally {
      for (const conn of conns) conn.close();
      await c.stop();
    }
  }));

Deno.test("Kafka idempotence: sequences wrap after 2^31 - 1 as Kafka's producers wrap them, across a leader's failover", () =>
  withDeadline(90_000, "sequence wrap", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    const conns: KafkaConn[] = [];
    const open = async () => {
      const lease = await c.waitFor((l) => l.leaderId !== null && c.brokers.get(l.leaderId)?.exited === false);
      const k = await KafkaConn.open(c.kafkaPorts.get(lease.leaderId!)!);
      conns.push(k);
      return { k, leader: lease.leaderId! };
    };
    try {
      const { k, leader } = await open();
      const p = await initProducerId(k);
      const max = 2 ** 31 - 1;
      // Sequences max - 1, max and 0; the next batch starts at 1, as Kafka's DefaultRecordBatch.incrementSequence
      // counts (it was refused OUT_OF_ORDER_SEQUENCE, expecting 2^31, which no int32 carries).
      const [e1, base1] = await produce(k, "wrap", batch(p.id, 0, max - 1, ["w0", "w1", "w2"]));
      assert.equal(e1, 0);
      const [e2, base2] = await produce(k, "wrap", batch(p.id, 0, 1, ["w3", "w4"]));
      assert.equal(e2, 0, "the batch after the wrap");
      assert.deepEqual(await produce(k, "wrap", batch(p.id, 0, max - 1, ["w0", "w1", "w2"])), [0, base1]);
      assert.equal((await produce(k, "wrap", batch(p.id, 0, 2, ["X"])))[0], OUT_OF_ORDER_SEQUENCE_NUMBER);
      // A new leader rebuilds the sequences from the stored lines: both batches are still duplicates.
      c.brokers.get(leader)!.kill("SIGKILL");
      await c.waitFor((l) => l.leaderId !== null && l.leaderId !== leader);
      let k2: KafkaConn | null = null;
      let retried: [number, number] = [-1, -1];
      const deadline = Date.now() + 20_000;
      // The new leader takes produces once it has taken over (NOT_LEADER_OR_FOLLOWER, 6, until then).
      while (Date.now() < deadline) {
        k2 = (await open()).k;
        retried = await produce(k2, "wrap", batch(p.id, 0, 1, ["w3", "w4"]));
        if (retried[0] !== 6) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(retried, [0, base2]);
      const after = k2!;
      assert.deepEqual(await produce(after, "wrap", batch(p.id, 0, max - 1, ["w0", "w1", "w2"])), [0, base1]);
      assert.equal((await produce(after, "wrap", batch(p.id, 0, 3, ["w5"])))[0], 0);
      assert.deepEqual(await stored(c, "wrap"), ["w0", "w1", "w2", "w3", "w4", "w5"]);
    } finally {
      for (const conn of conns) conn.close();
      await c.stop();
    }
  }));

Deno.test("a producer's batches resent after the in-sync set shrank are all duplicates the leader still knows: no more in flight on a partition than it remembers", () =>
  withDeadline(90_000, "in flight per partition", async () => {
    const c = await TestCluster.start({ brokers: 3, replicaLagMs: 1000, partitions: 1 });
    const stopped: number[] = [];
    let producer: Producer | null = null;
    try {
      const leader = (await c.lease()).leaderId!;
      const acks: Acknowledgement[] = [];
      const retries: string[] = [];
      producer = await Producer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
        topic: "window",
        acks: "all",
        partition: 0,
        batchRecords: 1,
        lingerMs: 0,
        onAck: (a) => acks.push(a),
        onRetry: (why) => retries.push(why),
      });
      producer.add(null, "first");
      await producer.flush(20_000);
      // The followers paused: the leader appends every batch and acknowledges none, then the set shrinks and the
      // producer resends what it has in flight, oldest first.
      for (const id of [1, 2, 3].filter((id) => id !== leader)) {
        Deno.kill(c.brokers.get(id)!.pid, "SIGSTOP");
        stopped.push(id);
      }
      for (let i = 0; i < 12; i++) producer.add(null, `r${i}`);
      await eventually(() => retries.length > 0, 20_000, "a resend");
      for (const id of stopped.splice(0)) Deno.kill(c.brokers.get(id)!.pid, "SIGCONT");
      await producer.flush(30_000);
      assert.deepEqual(retries.filter((r) => /sent sequences .* the next expected is/.test(r)), [], "out of order");
      const values = await yak(["consume", "--topic", "window", "--from-beginning", "--exit-at-end", ...c.zkFlag]);
      assert.deepEqual(values.stdout.trimEnd().split("\n"), [
        "first",
        ...Array.from({ length: 12 }, (_, i) => `r${i}`),
      ]);
    } finally {
      for (const id of stopped) Deno.kill(c.brokers.get(id)!.pid, "SIGCONT");
      await producer?.close().catch(() => {});
      await c.stop();
    }
  }));
