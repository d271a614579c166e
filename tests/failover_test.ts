/**
 * Failover with real processes: the leader killed or paused mid-stream, a
 * follower killed, two failovers in a row. Nothing acknowledged is lost,
 * nothing is duplicated, and replicas end byte-identical.
 */
import assert from "node:assert/strict";
import { eventually, Proc, segmentHashes, seqText, TestCluster, yak } from "./harness.ts";

/** Streams `total` records into a producer in chunks, running `during` after the first chunk. */
async function streamProduce(
  cluster: TestCluster,
  topic: string,
  total: number,
  during: () => Promise<void>,
  extra: string[] = [],
): Promise<Proc> {
  const producer = new Proc("producer", [
    "produce",
    "--topic",
    topic,
    ...cluster.zkFlag,
    ...extra,
  ], { stdin: true });
  const chunk = total / 20;
  for (let i = 0; i < 20; i++) {
    await producer.write(seqText(chunk, i * chunk + 1));
    if (i === 4) await during();
    else await new Promise((r) => setTimeout(r, 20));
  }
  await producer.closeStdin();
  const status = await producer.status;
  assert.equal(status.code, 0, producer.lines.join("\n"));
  return producer;
}

/** Reads the whole topic and checks it holds 1..total exactly once, in order per partition. */
async function assertExactlyOnce(
  cluster: TestCluster,
  topic: string,
  total: number,
  bootstrap?: number,
) {
  const where = bootstrap ? ["--bootstrap", `127.0.0.1:${bootstrap}`] : cluster.zkFlag;
  const res = await yak(
    [
      "consume",
      "--topic",
      topic,
      "--from-beginning",
      "--max-messages",
      String(total),
      "--format",
      "json",
      ...where,
    ],
    { timeoutMs: 60_000 },
  );
  assert.equal(res.code, 0, res.stderr);
  const records = res.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.equal(records.length, total);
  const seen = new Uint8Array(total + 1);
  const lastByPartition = new Map<number, number>();
  for (const r of records) {
    const v = Number(r.value);
    assert.equal(seen[v], 0, `value ${v} delivered twice`);
    seen[v] = 1;
    const last = lastByPartition.get(r.partition) ?? 0;
    assert.ok(v > last, `partition ${r.partition}: ${v} after ${last}`);
    lastByPartition.set(r.partition, v);
  }
  for (let v = 1; v <= total; v++) {
    assert.equal(seen[v], 1, `value ${v} missing`);
  }
}

async function assertReplicasIdentical(cluster: TestCluster, ids: number[]) {
  await eventually(
    async () => {
      const hashes = await Promise.all(
        ids.map((id) => segmentHashes(cluster.topicsDir(id))),
      );
      const first = JSON.stringify([...hashes[0]].sort());
      return hashes.every((h) => JSON.stringify([...h].sort()) === first);
    },
    20_000,
    "byte-identical replicas",
  );
}

Deno.test("kill -9 the leader while 200,000 records stream in: exit 0, every record exactly once, replicas identical after restart", async () => {
  const cluster = await TestCluster.start();
  try {
    const before = await cluster.lease();
    await streamProduce(cluster, "stream", 200_000, async () => {
      const killed = await yak([
        "kill",
        "--leader",
        "--data",
        cluster.dir,
        ...cluster.zkFlag,
      ]);
      assert.equal(killed.code, 0, killed.stderr);
      assert.match(
        killed.stdout,
        new RegExp(
          `SIGKILL to broker ${before.leaderId} \\(pid \\d+, the leader of epoch ${before.epoch} per the zookeeper at `,
        ),
      );
    });
    const after = await cluster.lease();
    assert.notEqual(after.leaderId, before.leaderId);
    assert.ok(after.epoch > before.epoch);
    await assertExactlyOnce(cluster, "stream", 200_000);

    // The killed broker comes back as a follower, catches up, and matches byte for byte.
    await cluster.brokers.get(before.leaderId!)!.status;
    await cluster.startBroker(before.leaderId!);
    await cluster.waitFor((l) => l.isr.length === 3, 20_000);
    await assertReplicasIdentical(cluster, [1, 2, 3]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("a paused leader (SIGSTOP) is replaced, steps down on resume, truncates, and loses nothing acknowledged", async () => {
  const cluster = await TestCluster.start();
  try {
    const before = await cluster.lease();
    const old = before.leaderId!;
    await streamProduce(cluster, "paused", 100_000, async () => {
      const stopped = await yak([
        "kill",
        "--leader",
        "--signal",
        "STOP",
        "--data",
        cluster.dir,
        ...cluster.zkFlag,
      ]);
      assert.equal(stopped.code, 0, stopped.stderr);
      await cluster.waitFor(
        (l) => l.epoch > before.epoch && l.leaderId !== old,
        10_000,
      );
      const resumed = await yak([
        "kill",
        "--broker",
        String(old),
        "--signal",
        "CONT",
        "--data",
        cluster.dir,
      ]);
      assert.equal(resumed.code, 0, resumed.stderr);
    });
    const oldProc = cluster.brokers.get(old)!;
    await oldProc.waitFor(/stepped_down|following leader=/, 10_000);
    await assertExactlyOnce(cluster, "paused", 100_000);
    await cluster.waitFor((l) => l.isr.length === 3, 20_000);
    await assertReplicasIdentical(cluster, [1, 2, 3]);
    // The old leader reads the same records the new one has.
    await assertExactlyOnce(
      cluster,
      "paused",
      100_000,
      cluster.brokerPorts.get(old),
    );
  } finally {
    await cluster.stop();
  }
});

Deno.test("kill a follower: acks=all goes on once the in-sync set shrinks; the follower rejoins and catches up", async () => {
  const cluster = await TestCluster.start();
  try {
    const lease = await cluster.lease();
    const follower = [1, 2, 3].find((id) => id !== lease.leaderId)!;
    await streamProduce(cluster, "fk", 100_000, async () => {
      const killed = await yak([
        "kill",
        "--broker",
        String(follower),
        "--data",
        cluster.dir,
      ]);
      assert.equal(killed.code, 0, killed.stderr);
    });
    const shrunk = await cluster.lease();
    assert.ok(
      !shrunk.isr.includes(follower),
      `in-sync set ${shrunk.isr} still holds ${follower}`,
    );
    assert.equal(
      shrunk.leaderId,
      lease.leaderId,
      "a follower's death does not move leadership",
    );
    await assertExactlyOnce(cluster, "fk", 100_000);
    await cluster.brokers.get(follower)!.status;
    await cluster.startBroker(follower);
    await cluster.waitFor((l) => l.isr.includes(follower), 20_000);
    await assertReplicasIdentical(cluster, [1, 2, 3]);
  } finally {
    await cluster.stop();
  }
});

Deno.test("two failovers in a row (each victim restarted) with a consumer group reading throughout: nothing acknowledged is lost", async () => {
  const cluster = await TestCluster.start();
  try {
    const total = 100_000;
    const consumer = new Proc("consumer", [
      "consume",
      "--topic",
      "twice",
      "--group",
      "audit",
      "--from-beginning",
      ...cluster.zkFlag,
    ]);
    const producer = new Proc("producer", [
      "produce",
      "--topic",
      "twice",
      ...cluster.zkFlag,
    ], { stdin: true });
    const epochs: number[] = [(await cluster.lease()).epoch];
    const chunk = total / 20;
    for (let i = 0; i < 20; i++) {
      await producer.write(seqText(chunk, i * chunk + 1));
      if (i === 4 || i === 12) {
        const victim = (await cluster.lease()).leaderId!;
        const killed = await yak([
          "kill",
          "--leader",
          "--data",
          cluster.dir,
          ...cluster.zkFlag,
        ]);
        assert.equal(killed.code, 0, killed.stderr);
        const previous = epochs.at(-1)!;
        epochs.push(
          (await cluster.waitFor(
            (l) => l.epoch > previous && l.leaderId !== null,
            10_000,
          )).epoch,
        );
        // With min.insync.replicas=2, a second failover needs the first victim back in sync.
        await cluster.brokers.get(victim)!.status;
        await cluster.startBroker(victim);
        await cluster.waitFor((l) => l.isr.length === 3, 15_000);
      } else {
        await new Promise((r) => setTimeout(r, 30));
      }
    }
    await producer.closeStdin();
    assert.equal((await producer.status).code, 0, producer.lines.join("\n"));
    // At least once: every value shows up in the group's output (duplicates allowed).
    const seen = new Set<number>();
    await eventually(
      () => {
        for (const line of consumer.lines) {
          const v = Number(line);
          if (Number.isInteger(v) && v > 0) seen.add(v);
        }
        return seen.size === total;
      },
      30_000,
      `the group to see all ${total} records (saw ${seen.size})`,
    );
    consumer.kill("SIGTERM");
    assert.equal((await consumer.status).code, 0);
    assert.equal(epochs.length, 3);
    // The group's committed offsets survived both failovers: a new member has nothing left to read.
    const rest = await yak([
      "consume",
      "--topic",
      "twice",
      "--group",
      "audit",
      "--timeout-ms",
      "1000",
      ...cluster.zkFlag,
    ]);
    assert.equal(rest.stdout, "");
  } finally {
    await cluster.stop();
  }
});

Deno.test("the zookeeper restarts: brokers re-register, the leader keeps its epoch, writes go on", async () => {
  const cluster = await TestCluster.start();
  try {
    const first = await yak(["produce", "--topic", "zk", ...cluster.zkFlag], {
      stdin: seqText(1000),
    });
    assert.equal(first.code, 0, first.stderr);
    const before = await cluster.lease();
    await cluster.zk.stop();
    await cluster.startZookeeper();
    const after = await cluster.waitFor(
      (l) => l.leaderId !== null && l.isr.length === 3,
      10_000,
    );
    assert.equal(after.leaderId, before.leaderId);
    assert.equal(
      after.epoch,
      before.epoch,
      "a reconnecting leader is not a new leader",
    );
    const second = await yak(["produce", "--topic", "zk", ...cluster.zkFlag], {
      stdin: seqText(1000, 1001),
    });
    assert.equal(second.code, 0, second.stderr);
    await assertExactlyOnce(cluster, "zk", 2000);
    await cluster.zk.waitFor(/broker_registered broker=\d+ .*rejoined=false/);
  } finally {
    await cluster.stop();
  }
});
