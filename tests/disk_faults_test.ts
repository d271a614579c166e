/**
 * Faults on disk with real processes: damaged records on a replica, lost or
 * stale indexes, an empty segment, a garbage lease file, and a full disk.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { YakError } from "../src/errors.ts";
import { KAFKA } from "../src/kafka/errors.ts";
import { Connection } from "../src/protocol/connection.ts";
import { canMountTmpfs, eventually, Proc, segmentHashes, seqText, skipWithout, TestCluster, yak } from "./harness.ts";
import { KafkaConn, produceBody, produceError, textBatch } from "./kafka_conn.ts";

async function opLog(path: string): Promise<{ event: string; [k: string]: unknown }[]> {
  return (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
}

/** Fills the file system at `path` to its last page: big blocks, then single pages, until a write fails. */
async function fillDisk(path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    for (const size of [64 * 1024, 4096]) {
      const block = new Uint8Array(size);
      try {
        while (true) await file.write(block);
      } catch {
        /* full at this size */
      }
    }
  } finally {
    file.close();
  }
}

async function consumeAll(topic: string, n: number, extra: string[]): Promise<string[]> {
  const res = await yak(["consume", "--topic", topic, "--from-beginning", "--max-messages", String(n), ...extra], {
    timeoutMs: 30_000,
  });
  assert.equal(res.code, 0, `${res.stderr}\n${res.stdout.split("\n").length} lines: ${res.stdout.slice(-200)}`);
  return res.stdout.trimEnd().split("\n");
}

Deno.test("a damaged replica is cut on restart and healed from the leader; lost indexes and a garbage lease are repaired", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-disk-" });
  try {
    let cluster = await TestCluster.start({ dir });
    try {
      const created = await yak(["topics", "--create", "d", "--partitions", "1", ...cluster.zkFlag]);
      assert.equal(created.code, 0, created.stderr);
      const produced = await yak(["produce", "--topic", "d", ...cluster.zkFlag], { stdin: seqText(5000) });
      assert.equal(produced.code, 0, produced.stderr);
      const leader = (await cluster.lease()).leaderId!;
      const victim = [1, 2, 3].find((id) => id !== leader)!;
      await eventually(
        async () => {
          const s = await Deno.stat(join(cluster.topicsDir(victim), "d", "0", "00000000000000000000.jsonl"));
          const l = await Deno.stat(join(cluster.topicsDir(leader), "d", "0", "00000000000000000000.jsonl"));
          return s.size === l.size;
        },
        10_000,
        "the follower to catch up",
      );
      await cluster.stop();

      // A record in the middle of the follower's segment is overwritten with zeros.
      const seg = join(dir, `broker-${victim}`, "topics", "d", "0", "00000000000000000000.jsonl");
      const bytes = await Deno.readFile(seg);
      const at = new TextDecoder().decode(bytes).indexOf('{"offset":2500,');
      bytes.fill(0, at, at + 30);
      await Deno.writeFile(seg, bytes);
      // Every index of the leader is lost, and the lease file holds garbage.
      for await (const e of Deno.readDir(join(dir, `broker-${leader}`, "topics", "d", "0"))) {
        if (e.name.endsWith(".index")) await Deno.remove(join(dir, `broker-${leader}`, "topics", "d", "0", e.name));
      }
      await Deno.writeTextFile(join(dir, "zookeeper", "leader.lease"), '{"epoch":3,"lead');

      cluster = await TestCluster.start({ dir });
      const events = await opLog(join(dir, `broker-${victim}`, "broker.log"));
      const cut = events.find((e) => e.event === "corrupt_records_cut");
      assert.ok(cut, "the follower reports the damaged records it set aside");
      assert.equal(cut.atOffset, 2500);
      assert.ok((await Deno.readFile(String(cut.savedTo))).length > 0);
      const zkEvents = await opLog(join(dir, "zookeeper", "zookeeper.log"));
      assert.ok(zkEvents.some((e) => e.event === "lease_invalid"), "the zookeeper names the bad lease file");
      const lease = await cluster.lease();
      assert.ok(lease.epoch > 1, `epoch ${lease.epoch} continues above what brokers have seen`);

      // Healed: the replicas are byte-identical again and every record reads back, from each broker.
      await eventually(
        async () => {
          const hashes = await Promise.all([1, 2, 3].map((id) => segmentHashes(cluster.topicsDir(id))));
          return hashes.every((h) =>
            h.get("d/0/00000000000000000000.jsonl") === hashes[0].get("d/0/00000000000000000000.jsonl")
          );
        },
        20_000,
        "byte-identical replicas",
      );
      for (const id of [1, 2, 3]) {
        const values = await consumeAll("d", 5000, ["--bootstrap", `127.0.0.1:${cluster.brokerPorts.get(id)}`]);
        assert.deepEqual(values.map(Number), Array.from({ length: 5000 }, (_, i) => i + 1), `broker ${id}`);
      }
    } finally {
      await cluster.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an empty segment at the end of a log is served as empty and written after", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-empty-" });
  try {
    let cluster = await TestCluster.start({ dir, brokers: 1 });
    try {
      const produced = await yak(["produce", "--topic", "e", "--partition", "0", ...cluster.zkFlag], {
        stdin: seqText(10),
      });
      assert.equal(produced.code, 0, produced.stderr);
      await cluster.stop();
      // A crash right after rolling leaves an empty segment named by the next offset.
      const p0 = join(dir, "broker-1", "topics", "e", "0");
      await Deno.writeFile(join(p0, "00000000000000000010.jsonl"), new Uint8Array(0));
      cluster = await TestCluster.start({ dir, brokers: 1 });
      const more = await yak(["produce", "--topic", "e", "--partition", "0", ...cluster.zkFlag], {
        stdin: seqText(5, 11),
      });
      assert.equal(more.code, 0, more.stderr);
      const values = await consumeAll("e", 15, cluster.zkFlag);
      assert.deepEqual(
        values.map(Number).filter((_, i) => i < 15).sort((a, b) => a - b),
        Array.from({ length: 15 }, (_, i) => i + 1),
      );
    } finally {
      await cluster.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "a full disk: produce gets errors, not acknowledgements; the broker stays up and takes writes once space returns",
  ignore: skipWithout(Deno.build.os === "linux" && canMountTmpfs() ? null : "a tmpfs mount (Linux, as root)"),
  fn: async () => {
    const mnt = await Deno.makeTempDir({ prefix: "yak-full-" });
    const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt] }).output();
    try {
      assert.ok(mounted.success);
      const dir = join(mnt, "data");
      await Deno.mkdir(dir);
      const cluster = await TestCluster.start({ dir, brokers: 1 });
      let producer: Proc | null = null;
      try {
        const first = await yak(["produce", "--topic", "full", "--partition", "0", ...cluster.zkFlag], {
          stdin: seqText(1000),
        });
        assert.equal(first.code, 0, first.stderr);
        // Ballast fills the disk to the last few KiB.
        const ballast = join(mnt, "ballast");
        const file = await Deno.open(ballast, { write: true, create: true });
        const block = new Uint8Array(64 * 1024);
        try {
          while (true) await file.write(block);
        } catch {
          /* full */
        } finally {
          file.close();
        }
        producer = new Proc("producer", ["produce", "--topic", "full", "--partition", "0", ...cluster.zkFlag], {
          stdin: true,
        });
        await producer.write(seqText(20_000, 1001));
        await producer.closeStdin();
        await producer.waitFor(/retrying: .*(space|cannot write)/i, 20_000);
        assert.equal(producer.exited, false, "the producer waits instead of claiming success");
        const broker = cluster.brokers.get(1)!;
        assert.equal(broker.exited, false, "the broker stays up");
        const status = await yak(["status", ...cluster.zkFlag]);
        assert.equal(status.code, 0, status.stderr);
        // Space returns: the same producer finishes and nothing is lost or doubled.
        await Deno.remove(ballast);
        assert.equal((await producer.status).code, 0, producer.lines.join("\n"));
        const values = await consumeAll("full", 21_000, cluster.zkFlag);
        assert.deepEqual(values.map(Number), Array.from({ length: 21_000 }, (_, i) => i + 1));
        const events = await opLog(join(dir, "broker-1", "broker.log"));
        const failed = events.filter((e) => e.event === "write_failed");
        assert.equal(failed.length, 1, "said once, not once per retry");
        assert.match(String(failed[0].error), /space/i);
        assert.ok(events.some((e) => e.event === "writes_resumed"));
      } finally {
        producer?.kill("SIGKILL");
        await producer?.status;
        await cluster.stop();
      }
    } finally {
      // Also when the cluster's start fails: no mount or directory is left behind.
      await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(mnt, { recursive: true });
    }
  },
});

Deno.test({
  name: "a full disk where the failed write cannot be cut off: the partition is fenced (STORAGE, KAFKA_STORAGE_ERROR " +
    "56) until a restart, which recovers every acknowledged record",
  ignore: skipWithout(
    Deno.build.os === "linux" && canMountTmpfs() ? null : "a tmpfs mount (Linux, as root)",
  ),
  fn: async () => {
    const mnt = await Deno.makeTempDir({ prefix: "yak-fence-" });
    const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt] }).output();
    const dir = join(mnt, "data");
    const seg = join(dir, "broker-1", "topics", "fence", "0", "00000000000000000000.jsonl");
    const chattr = (flag: string) => new Deno.Command("chattr", { args: [flag, seg] }).output();
    try {
      assert.ok(mounted.success);
      await Deno.mkdir(dir);
      let cluster = await TestCluster.start({ dir, brokers: 1 });
      try {
        const first = await yak(["produce", "--topic", "fence", "--partition", "0", ...cluster.zkFlag], {
          stdin: seqText(1000),
        });
        assert.equal(first.code, 0, first.stderr);
        const acknowledgedBytes = (await Deno.stat(seg)).size;
        // Append-only (chattr +a): the broker's appends still go in, but cutting the file back fails
        // (EPERM), as it can on a failing disk.
        const appendOnly = await chattr("+a");
        assert.ok(appendOnly.success, new TextDecoder().decode(appendOnly.stderr));
        const ballast = join(mnt, "ballast");
        await fillDisk(ballast);
        // One record longer than the rest of the file's last page: part of its line is written, then the
        // write fails, and so does the cut.
        const k = await KafkaConn.open(cluster.kafkaPorts.get(1)!);
        try {
          const big = textBatch(["x".repeat(10_000)]);
          assert.equal(
            produceError(await k.call(0, 7, false, produceBody("fence", 0, [big]))),
            KAFKA.KAFKA_STORAGE_ERROR,
          );
          const broker = cluster.brokers.get(1)!;
          const fenced = await broker.waitFor(/partition_fenced .*partition=fence\/0.*/, 10_000);
          assert.match(fenced[0], /space.*cutting its partial bytes off: .*not permitted/i);
          // Space returns, and the partition still refuses: a record written after the partial line would be
          // acknowledged and then cut off at the next start, with every record after it.
          await Deno.remove(ballast);
          assert.equal(
            produceError(await k.call(0, 7, false, produceBody("fence", 0, [textBatch(["1001"])]))),
            KAFKA.KAFKA_STORAGE_ERROR,
          );
          const conn = await Connection.open("127.0.0.1", cluster.brokerPorts.get(1)!);
          try {
            const err = await conn.request(
              { type: "produce", topic: "fence", partition: 0, records: [{ v: "1001" }] },
              5000,
            )
              .then(() => null, (e) => e);
            assert.ok(err instanceof YakError, String(err));
            assert.equal(err.code, "STORAGE");
            assert.match(err.message, /partition fence\/0 .*is fenced: a write to .*restart the broker to recover it/);
            // Reads are refused too, for that partition only.
            const fetched = await conn.request(
              { type: "fetch", topic: "fence", offsets: { "0": 0 }, maxWaitMs: 0 },
              5000,
            );
            assert.match(String((fetched.damaged as Record<string, string>)["fence/0"]), /is fenced/);
          } finally {
            conn.close();
          }
          const status = await yak(["status", ...cluster.zkFlag]);
          assert.equal(status.code, 0, status.stderr);
          assert.match(status.stdout, /fenced partitions[^]*fence\/0/);
          assert.equal(broker.exited, false, "the broker stays up");
        } finally {
          k.close();
        }
        await cluster.stop();

        // The restart recovers the log from its files: the partial line is cut, and the records are all there.
        assert.ok((await chattr("-a")).success);
        cluster = await TestCluster.start({ dir, brokers: 1 });
        const events = await opLog(join(dir, "broker-1", "broker.log"));
        const checked = events.filter((e) => e.event === "storage_checked").at(-1);
        assert.match(String(checked?.scope), /no clean shutdown/, "a fenced broker does not claim a clean stop");
        assert.equal((await Deno.stat(seg)).size, acknowledgedBytes);
        const more = await yak(["produce", "--topic", "fence", "--partition", "0", ...cluster.zkFlag], {
          stdin: seqText(5, 1001),
        });
        assert.equal(more.code, 0, more.stderr);
        const values = await consumeAll("fence", 1005, cluster.zkFlag);
        assert.deepEqual(values.map(Number), Array.from({ length: 1005 }, (_, i) => i + 1));
      } finally {
        await cluster.stop();
      }
    } finally {
      await chattr("-a");
      await new Deno.Command("umount", { args: [mnt] }).output();
      await Deno.remove(mnt, { recursive: true });
    }
  },
});

/** The id in each broker's `topics/<topic>/topic.json`, by broker id. */
async function topicIds(cluster: TestCluster, topic: string): Promise<Map<number, string>> {
  const ids = new Map<number, string>();
  for (const id of cluster.brokers.keys()) {
    const info = JSON.parse(await Deno.readTextFile(join(cluster.topicsDir(id), topic, "topic.json")));
    ids.set(id, String(info.id));
  }
  return ids;
}

Deno.test("a topic whose files the leader cannot make: leadership moves, the topic keeps its one id, and its records survive a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-unmade-" });
  let cluster = await TestCluster.start({ dir });
  let producer: Proc | null = null;
  try {
    const first = (await cluster.lease()).leaderId!;
    // A file where the topic's directory goes: its files cannot be made there, as on a full disk.
    const blocker = join(cluster.topicsDir(first), "unmade");
    await Deno.writeTextFile(blocker, "");
    const created = await yak(["topics", "--create", "unmade", "--partitions", "1", ...cluster.zkFlag]);
    assert.notEqual(created.code, 0, created.stdout);
    assert.match(created.stderr, /cannot open the files of topic 'unmade' in .*unmade/);
    // A leader that cannot write hands over to an in-sync broker, which has the topic from the record.
    const moved = await cluster.waitFor((l) => l.leaderId !== null && l.leaderId !== first, 10_000);
    producer = new Proc("producer", ["produce", "--topic", "unmade", "--acks", "all", ...cluster.zkFlag], {
      stdin: true,
    });
    await producer.write("important\n");
    await producer.closeStdin();
    assert.equal((await producer.status).code, 0, producer.lines.join("\n"));
    // The old leader, a follower now, opens the topic as the record says once it can, and is in sync again.
    await Deno.remove(blocker);
    await cluster.waitFor((l) => l.leaderId === moved.leaderId && l.isr.length === 3, 15_000);
    const ids = await topicIds(cluster, "unmade");
    assert.equal(new Set(ids.values()).size, 1, `one id on every broker: ${JSON.stringify([...ids])}`);
    // A restart of every broker finds the id each topic.json says, and removes nothing.
    await cluster.stop();
    cluster = await TestCluster.start({ dir });
    assert.deepEqual(await consumeAll("unmade", 1, cluster.zkFlag), ["important"]);
    for (const id of cluster.brokers.keys()) {
      const removed = (await opLog(join(dir, `broker-${id}`, "broker.log"))).filter((e) => e.event === "topic_removed");
      assert.deepEqual(removed, [], `broker ${id} removed a topic`);
    }
  } finally {
    producer?.kill("SIGKILL");
    await producer?.status;
    await cluster.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * Runs `fn` on a three-broker cluster whose brokers' directories are each on
 * a small disk of its own (tmpfs), once `topic` holds records 1-1000.
 */
async function withBrokerDisks(
  prefix: string,
  topic: string,
  fn: (cluster: TestCluster, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  const mounts: string[] = [];
  let cluster: TestCluster | null = null;
  try {
    for (const id of [1, 2, 3]) {
      const mnt = join(dir, `broker-${id}`);
      await Deno.mkdir(mnt);
      const mounted = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt] })
        .output();
      assert.ok(mounted.success);
      mounts.push(mnt);
    }
    cluster = await TestCluster.start({ dir });
    const first = await yak(["produce", "--topic", topic, "--acks", "all", ...cluster.zkFlag], {
      stdin: seqText(1000),
    });
    assert.equal(first.code, 0, first.stderr);
    await fn(cluster, dir);
  } finally {
    await cluster?.stop();
    for (const mnt of mounts) await new Deno.Command("umount", { args: [mnt] }).output();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "a full disk at the leader of three: leadership moves to an in-sync broker, every record is acknowledged, and " +
    "the old leader catches up once space returns",
  ignore: skipWithout(Deno.build.os === "linux" && canMountTmpfs() ? null : "a tmpfs mount (Linux, as root)"),
  fn: () =>
    withBrokerDisks("yak-full3-", "full3", async (cluster, dir) => {
      const leader = (await cluster.lease()).leaderId!;
      const ballast = join(dir, `broker-${leader}`, "ballast");
      await fillDisk(ballast);
      const more = await yak(["produce", "--topic", "full3", "--acks", "all", ...cluster.zkFlag], {
        stdin: seqText(20_000, 1001),
        timeoutMs: 60_000,
      });
      assert.equal(more.code, 0, more.stderr);
      const moved = await cluster.lease();
      assert.notEqual(moved.leaderId, leader, "another broker leads");
      const events = await opLog(join(dir, `broker-${leader}`, "broker.log"));
      assert.ok(events.some((e) => e.event === "write_failed" && /space/i.test(String(e.error))));
      assert.ok(events.some((e) => e.event === "stepped_down"));
      // Space returns: the old leader copies what it missed and is in sync again.
      await Deno.remove(ballast);
      await cluster.waitFor((l) => l.isr.length === 3, 20_000);
      const values = (await consumeAll("full3", 21_000, cluster.zkFlag)).map(Number).sort((a, b) => a - b);
      assert.deepEqual(values, Array.from({ length: 21_000 }, (_, i) => i + 1));
      const hashes = await Promise.all([1, 2, 3].map((id) => segmentHashes(cluster.topicsDir(id))));
      assert.deepEqual(hashes[0], hashes[1]);
      assert.deepEqual(hashes[0], hashes[2]);
    }),
});

Deno.test({
  name: "every disk full: leadership moves to each broker that has not failed at most once, then stays; the " +
    "others rejoin once space returns, even with nothing to copy, and writes resume",
  ignore: skipWithout(Deno.build.os === "linux" && canMountTmpfs() ? null : "a tmpfs mount (Linux, as root)"),
  fn: () =>
    withBrokerDisks("yak-fullall-", "all", async (cluster, dir) => {
      const epoch = (await cluster.lease()).epoch;
      const ballasts = [1, 2, 3].map((id) => join(dir, `broker-${id}`, "ballast"));
      for (const ballast of ballasts) await fillDisk(ballast);
      // A producer that retries for 8 s against disks that take nothing.
      const stuck = await yak(["produce", "--topic", "all", "--acks", "all", ...cluster.zkFlag], {
        stdin: seqText(5000, 1001),
        timeoutMs: 8000,
      });
      assert.notEqual(stuck.code, 0);
      const lease = await cluster.lease();
      // A leader that resigned for a full disk is out of the set until one of its writes succeeds: it is not
      // elected again, so leadership moved at most twice (not back and forth every few seconds).
      assert.ok(lease.epoch - epoch <= 2, `epoch ${epoch} -> ${lease.epoch}: leadership went round`);
      // The last one, with no other broker in sync, refuses acks=all (NOT_ENOUGH_REPLICAS) and keeps leading.
      assert.match(stuck.stderr, /retrying: .*(in sync|replicas|space|cannot write)/i);
      for (const ballast of ballasts) await Deno.remove(ballast);
      const after = await yak(["produce", "--topic", "all", "--acks", "all", ...cluster.zkFlag], {
        stdin: seqText(6000, 1001),
        timeoutMs: 60_000,
      });
      assert.equal(after.code, 0, after.stderr);
      await cluster.waitFor((l) => l.isr.length === 3, 20_000);
      const values = new Set((await consumeAll("all", 7000, cluster.zkFlag)).map(Number));
      for (let v = 1; v <= 7000; v++) assert.ok(values.has(v), `record ${v}`);
    }),
});
