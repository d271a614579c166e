/**
 * Leadership that never rolls back: an epoch is issued once, whatever the
 * zookeeper's disk holds. Before the zookeeper took the brokers' epochs as its
 * floor, restarting it on an older lease file and then killing the leader
 * elected an epoch another broker had already led, the brokers ignored that
 * lease, and the cluster never failed over again.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ackRoundTrips, type Proc, TestCluster, withDeadline, yak } from "./harness.ts";
import { KafkaConn, produceBody, produceError, textBatch } from "./kafka_conn.ts";

const NOT_LEADER_OR_FOLLOWER = 6;

/** Every epoch the zookeeper's operation log says it elected, in order. */
async function electedEpochs(c: TestCluster): Promise<number[]> {
  const text = await Deno.readTextFile(join(c.dir, "zookeeper", "zookeeper.log"));
  return text.split("\n").filter((l) => l.includes('"leader_elected"')).map((l) => JSON.parse(l).epoch as number);
}

Deno.test("an epoch is never issued twice: a zookeeper restarted on an old lease file goes above every broker's epoch", () =>
  withDeadline(120_000, "epoch floor", async () => {
    const c = await TestCluster.start({ brokers: 3 });
    try {
      const leasePath = join(c.dir, "zookeeper", "leader.lease");
      const saved = await Deno.readTextFile(leasePath);
      const savedEpoch = JSON.parse(saved).epoch as number;
      // Two leader kills, each broker restarted, so the cluster is two epochs past the saved file.
      for (let i = 0; i < 2; i++) {
        const old = (await c.lease()).leaderId!;
        c.brokers.get(old)!.kill("SIGKILL");
        await c.brokers.get(old)!.status;
        await c.waitFor((l) => l.leaderId !== null && l.leaderId !== old);
        await c.startBroker(old);
        await c.waitFor((l) => l.isr.length === 3);
      }
      const before = await c.lease();
      assert.ok(before.epoch >= savedEpoch + 2, `epoch ${before.epoch} after two failovers from ${savedEpoch}`);

      // kill -9 the zookeeper, put the old file back, restart it.
      c.zk.kill("SIGKILL");
      await c.zk.status;
      await Deno.writeTextFile(leasePath, saved);
      await c.startZookeeper();
      const moved = await c.waitFor((l) => l.epoch > before.epoch && l.leaderId !== null && l.isr.length >= 2);
      // Then kill -9 the acting leader: a failover to an epoch no broker has seen.
      const acting = moved.leaderId!;
      c.brokers.get(acting)!.kill("SIGKILL");
      const killedAt = Date.now();
      const after = await c.waitFor((l) => l.leaderId !== null && l.leaderId !== acting, 10_000);
      console.log(
        `epochs: saved file ${savedEpoch}, cluster ${before.epoch}, after the zookeeper restart ${moved.epoch}, ` +
          `after the leader kill ${after.epoch} (new leader in ${Date.now() - killedAt} ms)`,
      );
      assert.ok(after.epoch > moved.epoch);
      const epochs = await electedEpochs(c);
      assert.equal(new Set(epochs).size, epochs.length, `an epoch was issued twice: ${epochs.join(", ")}`);
      for (let i = 1; i < epochs.length; i++) assert.ok(epochs[i] > epochs[i - 1], `epochs went back: ${epochs}`);

      // The cluster takes acks=all writes again and serves them.
      const produced = await yak(["produce", "--topic", "t", "--message", "after", ...c.zkFlag]);
      assert.equal(produced.code, 0, produced.stderr);
      const consumed = await yak(["consume", "--topic", "t", "--from-beginning", "--exit-at-end", ...c.zkFlag]);
      assert.equal(consumed.stdout, "after\n");
    } finally {
      await c.stop();
    }
  }));

/** The median time, in ms, of `n` acks=all produces to `topic`, one record at a time. */
async function medianAckMs(c: TestCluster, topic: string, n: number): Promise<number> {
  return (await ackRoundTrips(c.zkPort, topic, n))[Math.floor(n / 2)];
}

Deno.test("after a failover, acks=all is as fast on a topic created before it as on one created after", () =>
  withDeadline(90_000, "latency after failover", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    try {
      // Created while the next leader is a follower: it opens these partitions by replaying __cluster.
      const created = await yak(["produce", "--topic", "before", "--message", "x", ...c.zkFlag]);
      assert.equal(created.code, 0, created.stderr);
      const old = (await c.lease()).leaderId!;
      c.brokers.get(old)!.kill("SIGKILL");
      await c.brokers.get(old)!.status;
      await c.waitFor((l) => l.leaderId !== null && l.leaderId !== old && l.isr.length >= 2);
      await medianAckMs(c, "after", 5); // creates it under the new leader
      const before = await medianAckMs(c, "before", 30);
      const after = await medianAckMs(c, "after", 30);
      console.log(
        `acks=all median after the failover: ${before.toFixed(1)} ms (topic from before), ` +
          `${after.toFixed(1)} ms (topic from after)`,
      );
      // Before every partition got the append hook: ~200 ms (a follower's fetch wait) against ~5 ms.
      assert.ok(before < Math.max(3 * after, after + 50), `${before} ms against ${after} ms`);
    } finally {
      await c.stop();
    }
  }));

Deno.test("a leader whose lease lapses answers its waiting acks=all requests at once (NOT_LEADER_OR_FOLLOWER), not at the timeout", () =>
  withDeadline(60_000, "lapsed lease", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    const k = await KafkaConn.open(c.kafkaPorts.get((await c.lease()).leaderId!)!);
    const stopped: Proc[] = [];
    try {
      const leader = (await c.lease()).leaderId!;
      const warm = await k.call(0, 7, false, produceBody("lapse", 0, [textBatch(["warm"])]));
      assert.equal(produceError(warm), 0);
      // The followers stop copying (so acks=all waits), and the zookeeper stops answering (so the lease lapses).
      for (const [id, p] of c.brokers) if (id !== leader) stopped.push(p);
      stopped.push(c.zk);
      for (const p of stopped) p.kill("SIGSTOP");
      const t0 = performance.now();
      const r = await k.call(0, 7, false, produceBody("lapse", 0, [textBatch(["waits"])]));
      const error = produceError(r);
      const ms = performance.now() - t0;
      console.log(`a produce waiting on a leader whose lease lapsed: error ${error} after ${ms.toFixed(0)} ms`);
      assert.equal(error, NOT_LEADER_OR_FOLLOWER, "answered NOT_LEADER_OR_FOLLOWER");
      // The lease lapses 750 ms after the last heartbeat the zookeeper answered, checked every 250 ms.
      assert.ok(ms < 2500, `answered after ${ms} ms (the request timeout is 10 s)`);
    } finally {
      for (const p of stopped) p.kill("SIGCONT");
      k.close();
      await c.stop();
    }
  }));

Deno.test("a leader that stops while the zookeeper is gone says it handed leadership to nobody", async () => {
  await withDeadline(60_000, "leave without a zookeeper", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      cluster.zk.kill("SIGKILL");
      await cluster.zk.status;
      await cluster.brokers.get(1)!.stop();
      const log = (await Deno.readTextFile(join(cluster.dir, "broker-1", "broker.log"))).trim().split("\n")
        .map((l) => JSON.parse(l));
      const left = log.filter((e) => e.event === "left_cluster").at(-1);
      // Before: handedTo=1, itself, as if the zookeeper had answered.
      assert.deepEqual([left?.role, left?.handedTo, left?.told], ["leader", null, false]);
    } finally {
      await cluster.stop();
    }
  });
});

/** Lines "1\n" to "N\n", for `yak produce`. */
function lines(n: number): string {
  return Array.from({ length: n }, (_, i) => `${i + 1}\n`).join("");
}

/**
 * The cluster after a follower (3) died holding a topic since deleted, while 1 and 2 took `count` acknowledged
 * records of topic `after`: broker 3's log end total is the largest, and it misses every one of them.
 */
async function staleFollower(c: TestCluster, count: number): Promise<void> {
  const old = await yak(["produce", "--topic", "old", ...c.zkFlag], { stdin: lines(4 * count) });
  assert.equal(old.code, 0, old.stderr);
  c.brokers.get(3)!.kill("SIGKILL");
  await c.brokers.get(3)!.status;
  await c.waitFor((l) => l.isr.join() === "1,2");
  const deleted = await yak(["topics", "--delete", "old", ...c.zkFlag]);
  assert.equal(deleted.code, 0, deleted.stderr);
  const after = await yak(["produce", "--topic", "after", "--acks", "all", ...c.zkFlag], { stdin: lines(count) });
  assert.equal(after.code, 0, after.stderr);
}

/** The zookeeper killed and its lease file garbled (as a full disk or a bad edit leaves it). */
async function garbleLease(c: TestCluster): Promise<void> {
  c.zk.kill("SIGKILL");
  await c.zk.status;
  await Deno.writeTextFile(join(c.dir, "zookeeper", "leader.lease"), "garbage{{{");
}

async function assertReadsBack(c: TestCluster, count: number): Promise<void> {
  const read = await yak(["consume", "--topic", "after", "--from-beginning", "--exit-at-end", ...c.zkFlag]);
  assert.equal(read.code, 0, read.stderr);
  assert.equal(read.stdout.split("\n").filter((l) => l !== "").length, count, "acknowledged records lost");
}

Deno.test("a zookeeper whose lease file is garbled elects from the in-sync set the brokers followed, not whoever holds the most", () =>
  withDeadline(120_000, "lost lease", async () => {
    const c = await TestCluster.start({ brokers: 3 });
    try {
      await staleFollower(c, 2000);
      await garbleLease(c);
      // Broker 3 is back before the zookeeper, so all three register before it elects.
      await c.startBroker(3);
      await c.startZookeeper();
      const lease = await c.waitFor((l) => l.leaderId !== null, 20_000);
      // Before: broker 3 (the most records, counting the deleted topic's) led, and 1 and 2 cut 2000 records.
      assert.ok(lease.leaderId === 1 || lease.leaderId === 2, `broker ${lease.leaderId} leads`);
      const zkLog = await Deno.readTextFile(join(c.dir, "zookeeper", "zookeeper.log"));
      const elected = zkLog.split("\n").filter((l) => l.includes('"leader_elected"')).map((l) => JSON.parse(l)).at(-1);
      assert.deepEqual(elected.fromBrokersLease?.isr, [1, 2]);
      await assertReadsBack(c, 2000);
    } finally {
      await c.stop();
    }
  }));

Deno.test("after a lost lease the zookeeper waits for the whole in-sync set a broker reports, kept in its lease.json across restarts", () =>
  withDeadline(120_000, "lost lease, one stale broker", async () => {
    const c = await TestCluster.start({ brokers: 3 });
    try {
      await staleFollower(c, 1000);
      await garbleLease(c);
      for (const id of [1, 2]) {
        c.brokers.get(id)!.kill("SIGKILL");
        await c.brokers.get(id)!.status;
      }
      // Only the stale broker comes back: its lease.json names an in-sync set of three (it died before the set
      // shrank), so the zookeeper waits for 1 and 2, whose own files name the newer set.
      await c.startZookeeper();
      await c.startBroker(3);
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await c.lease()).leaderId, null, "a broker that misses acknowledged records was elected");
      const zkLog = await Deno.readTextFile(join(c.dir, "zookeeper", "zookeeper.log"));
      assert.match(zkLog, /"no_leader".*"waitingFor":\[1,2\]/);
      await Promise.all([c.startBroker(1), c.startBroker(2)]);
      const lease = await c.waitFor((l) => l.leaderId !== null, 20_000);
      assert.ok(lease.leaderId === 1 || lease.leaderId === 2, `broker ${lease.leaderId} leads`);
      await assertReadsBack(c, 1000);
    } finally {
      await c.stop();
    }
  }));

Deno.test("the last in-sync broker, damaged while stopped, does not lead: a broker that lost nothing does, and it copies back", () =>
  withDeadline(120_000, "damaged last in-sync broker", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    try {
      const produced = await yak(["produce", "--topic", "dl", ...c.zkFlag], { stdin: lines(4000) });
      assert.equal(produced.code, 0, produced.stderr);
      const last = (await c.lease()).leaderId!;
      const others = [1, 2, 3].filter((id) => id !== last);
      // The followers stop cleanly first (each leaves the in-sync set), then the leader: the last in sync.
      for (const id of others) await c.brokers.get(id)!.stop();
      await c.waitFor((l) => l.isr.join() === String(last));
      await c.brokers.get(last)!.stop();
      // Its copy is damaged while it is down: a record in the middle zeroed.
      const seg = join(c.topicsDir(last), "dl", "0", "00000000000000000000.jsonl");
      const bytes = await Deno.readFile(seg);
      const at = new TextDecoder().decode(bytes).indexOf('{"offset":2000,');
      bytes.fill(0, at, at + 30);
      await Deno.writeFile(seg, bytes);
      // It comes back first, so it would be elected alone (the lease's set names only it).
      await c.startBroker(last);
      await Promise.all(others.map((id) => c.startBroker(id)));
      const lease = await c.waitFor((l) => l.leaderId !== null, 20_000);
      // Before: the damaged broker led with its log cut at 2000, and the other two truncated to it.
      assert.ok(others.includes(lease.leaderId!), `broker ${lease.leaderId} (damaged: ${last}) leads`);
      const read = await yak(["consume", "--topic", "dl", "--from-beginning", "--exit-at-end", ...c.zkFlag]);
      assert.equal(read.code, 0, read.stderr);
      assert.equal(read.stdout, lines(4000), "acknowledged records lost");
      // The damaged broker copies back what it cut and serves it.
      await c.waitFor((l) => l.isr.includes(last), 20_000);
      const fromIt = await yak([
        "consume",
        "--topic",
        "dl",
        "--from-beginning",
        "--exit-at-end",
        "--bootstrap",
        `127.0.0.1:${c.brokerPorts.get(last)}`,
      ]);
      assert.equal(fromIt.stdout, lines(4000));
    } finally {
      await c.stop();
    }
  }));
