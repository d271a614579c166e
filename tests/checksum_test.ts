/**
 * Stored bytes that prove themselves: one changed byte in a segment, on a
 * follower or on the leader, found (start-up check, a read, the scrubber),
 * logged, healed from a healthy replica, and never served.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, kcatMissing, run, segmentHashes, seqText, skipWithout, TestCluster, yak } from "./harness.ts";

type Event = { event: string; [k: string]: unknown };

async function opLog(path: string): Promise<Event[]> {
  return (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
}

/** The segment files of a partition on a broker, oldest first. */
async function segmentsOf(c: TestCluster, id: number, topic: string, p: number): Promise<string[]> {
  const dir = join(c.topicsDir(id), topic, String(p));
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".jsonl")) out.push(join(dir, e.name));
  return out.sort();
}

/**
 * Changes one digit of the value of the record at `offset` in `file`, in
 * place (the line stays valid JSON, its checksum no longer matches); or, with
 * `breakJson`, its opening quote. Returns the changed line.
 */
async function flip(file: string, offset: number, breakJson = false): Promise<string> {
  const bytes = await Deno.readFile(file);
  const text = new TextDecoder().decode(bytes);
  const start = text.indexOf(`{"offset":${offset},`);
  assert.ok(start >= 0, `offset ${offset} is in ${file}`);
  const value = text.indexOf('"value":"', start) + 9;
  const at = breakJson ? value - 1 : value;
  bytes[at] = breakJson ? 0x23 : (bytes[at] === 0x39 ? 0x38 : bytes[at] + 1); // '#', or another digit
  await Deno.writeFile(file, bytes);
  const end = text.indexOf("\n", start);
  return new TextDecoder().decode(bytes.subarray(start, end));
}

const same = (a: Map<string, string>, b: Map<string, string>, key: string) => a.get(key) === b.get(key);

/** Waits until the three brokers hold the same segment files, byte for byte. */
function replicasEqual(cluster: TestCluster): Promise<void> {
  return eventually(
    async () => {
      const hashes = await Promise.all([1, 2, 3].map((id) => segmentHashes(cluster.topicsDir(id))));
      return [...hashes[0].keys()].every((k) => hashes.every((h) => same(h, hashes[0], k)));
    },
    20_000,
    "replicas equal",
  );
}

Deno.test("a flipped byte on a follower is found (scrubber, start-up check), healed from the leader, never served", async () => {
  const cluster = await TestCluster.start({
    segmentBytes: 16 * 1024,
    // A fast scrubber, so a test sees a pass.
    brokerArgs: ["--scrub-bytes-per-sec", "50000000", "--scrub-interval-ms", "300"],
  });
  try {
    const made = await yak(["topics", "--create", "c", "--partitions", "1", ...cluster.zkFlag]);
    assert.equal(made.code, 0, made.stderr);
    // Batches of 100 (a batch never spans segments): many closed segments.
    const produced = await yak(["produce", "--topic", "c", "--batch-records", "100", ...cluster.zkFlag], {
      stdin: seqText(3000),
    });
    assert.equal(produced.code, 0, produced.stderr);
    const leader = (await cluster.lease()).leaderId!;
    const [f1, f2] = [1, 2, 3].filter((id) => id !== leader);
    const first = "c/0/00000000000000000000.jsonl";
    await eventually(
      async () => {
        const [l, a, b] = await Promise.all([leader, f1, f2].map((id) => segmentHashes(cluster.topicsDir(id))));
        return l.size > 8 && [...l.keys()].every((k) => same(l, a, k) && same(l, b, k));
      },
      15_000,
      "replicas equal",
    );
    const stored = await segmentHashes(cluster.topicsDir(leader));

    // 1. The scrubber: a closed segment of a running follower.
    const line = await flip((await segmentsOf(cluster, f1, "c", 0))[0], 50);
    assert.ok(line.includes('"value":"61"'), line); // "51" became "61"
    const log1 = join(cluster.dir, `broker-${f1}`, "broker.log");
    await eventually(async () => (await opLog(log1)).some((e) => e.event === "healed"), 15_000, "scrubber heals");
    const events1 = await opLog(log1);
    // Its first start found nothing stored, and says so rather than as if a crash had come before it.
    assert.equal(events1.find((e) => e.event === "storage_checked")?.scope, "nothing stored yet");
    const found = events1.find((e) => e.event === "record_damaged")!;
    assert.equal(found.found, "scrub");
    assert.equal(found.partition, "c/0");
    assert.equal(found.offset, 50);
    assert.ok(String(found.segment).endsWith("00000000000000000000.jsonl"));
    await eventually(
      async () => same(await segmentHashes(cluster.topicsDir(f1)), stored, first),
      10_000,
      "the healed segment equal to the leader's again",
    );

    // 2. The start-up check: the other follower killed (no clean shutdown), one flip in its first
    //    segment and one in its last, restarted; then the two others die and it must lead.
    cluster.brokers.get(f2)!.kill("SIGKILL");
    await cluster.brokers.get(f2)!.stop();
    await cluster.waitFor((l) => !l.isr.includes(f2));
    const segs = await segmentsOf(cluster, f2, "c", 0);
    await flip(segs[0], 5);
    const lastBase = Number(segs.at(-1)!.match(/(\d+)\.jsonl$/)![1]);
    await flip(segs.at(-1)!, lastBase + 1);
    await cluster.startBroker(f2);
    await cluster.waitFor((l) => l.isr.includes(f2), 20_000);
    const events2 = await opLog(join(cluster.dir, `broker-${f2}`, "broker.log"));
    const checked = events2.filter((e) => e.event === "storage_checked").at(-1)!;
    assert.match(String(checked.scope), /every segment/);
    const damaged = events2.filter((e) => e.event === "record_damaged" && e.found === "open").map((e) => e.offset);
    assert.deepEqual(damaged.sort((a, b) => Number(a) - Number(b)), [5, lastBase + 1]);
    assert.ok(events2.some((e) => e.event === "healed"), "healed before it rejoined the in-sync set");

    for (const id of [leader, f1]) {
      cluster.brokers.get(id)!.kill("SIGKILL");
      await cluster.brokers.get(id)!.stop();
    }
    await cluster.waitFor((l) => l.leaderId === f2, 20_000);
    const read = await yak([
      "consume",
      "--topic",
      "c",
      "--from-beginning",
      "--max-messages",
      "3000",
      "--bootstrap",
      `127.0.0.1:${cluster.brokerPorts.get(f2)}`,
    ], { timeoutMs: 30_000 });
    assert.equal(read.code, 0, read.stderr);
    assert.deepEqual(read.stdout, seqText(3000), "the original values, none flipped");
    const healed = await segmentHashes(cluster.topicsDir(f2));
    assert.ok([...stored.keys()].every((k) => same(healed, stored, k)), "byte-identical to the old leader's files");
  } finally {
    await cluster.stop();
  }
});

Deno.test({
  name: "a damaged record on the running leader: readers get a storage error, the leader hands over and heals",
  ignore: skipWithout(kcatMissing()),
  fn: async () => {
    const cluster = await TestCluster.start({
      segmentBytes: 256 * 1024,
      brokerArgs: ["--scrub-bytes-per-sec", "0"], // found by a read, not the scrubber
    });
    try {
      const made = await yak(["topics", "--create", "j", "--partitions", "2", ...cluster.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      // Over the leader's in-memory tail (2 MiB a partition): the oldest records are read from disk.
      const n = 60_000;
      const produced = await yak(["produce", "--topic", "j", ...cluster.zkFlag], { stdin: seqText(n) });
      assert.equal(produced.code, 0, produced.stderr);
      const leader = (await cluster.lease()).leaderId!;
      await replicasEqual(cluster);
      const stored = await segmentHashes(cluster.topicsDir(leader));
      // A line of partition 0 no longer parses.
      await flip((await segmentsOf(cluster, leader, "j", 0))[0], 7, true);

      const kcat = await run("kcat", [
        "-C",
        "-b",
        cluster.bootstrapServers,
        "-t",
        "j",
        "-o",
        "beginning",
        // A count, not -e: right after the handover the new leader's high watermark may still be behind, and
        // -e would take that for the end of the partition.
        "-c",
        String(n),
        "-q",
        "-f",
        "%s\n",
        "-X",
        "topic.metadata.refresh.interval.ms=500",
      ], { timeoutMs: 40_000 });
      assert.equal(kcat.code, 0, kcat.stderr);
      const values = new TextDecoder().decode(kcat.stdout).trimEnd().split("\n").map(Number).sort((a, b) => a - b);
      assert.deepEqual(values, Array.from({ length: n }, (_, i) => i + 1), "every record, as produced");

      const lease = await cluster.lease();
      assert.notEqual(lease.leaderId, leader, "the damaged leader handed over");
      const events = await opLog(join(cluster.dir, `broker-${leader}`, "broker.log"));
      const found = events.find((e) => e.event === "record_damaged")!;
      assert.equal(found.found, "read");
      assert.equal(found.partition, "j/0");
      assert.equal(found.offset, 7);
      const zk = await opLog(join(cluster.dir, "zookeeper", "zookeeper.log"));
      assert.ok(zk.some((e) => e.event === "leader_resigned" && e.broker === leader));
      await eventually(
        async () => {
          const h = await segmentHashes(cluster.topicsDir(leader));
          return [...stored.keys()].every((k) => same(h, stored, k));
        },
        20_000,
        "the old leader's copy healed, byte-identical",
      );
      // yak consume, through the old leader only: everything, each value as produced.
      const read = await yak([
        "consume",
        "--topic",
        "j",
        "--from-beginning",
        "--max-messages",
        String(n),
        "--bootstrap",
        `127.0.0.1:${cluster.brokerPorts.get(leader)}`,
      ], { timeoutMs: 30_000 });
      assert.equal(read.code, 0, read.stderr);
      assert.deepEqual(read.stdout.trimEnd().split("\n").map(Number).sort((a, b) => a - b), values);
    } finally {
      await cluster.stop();
    }
  },
});

Deno.test("with no healthy replica, a damaged record is refused, never served, and readers go on with the other partitions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-crc-" });
  try {
    let cluster = await TestCluster.start({ dir, brokers: 1, minInsyncReplicas: 1 });
    try {
      const made = await yak(["topics", "--create", "s", "--partitions", "2", ...cluster.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      for (const p of [0, 1]) {
        const produced = await yak(["produce", "--topic", "s", "--partition", String(p), ...cluster.zkFlag], {
          stdin: seqText(100, 1 + p * 100),
        });
        assert.equal(produced.code, 0, produced.stderr);
      }
    } finally {
      await cluster.stop();
    }
    // A clean stop, then record 40 of partition 0 no longer parses: found by the start-up check.
    await flip(join(dir, "broker-1", "topics", "s", "0", "00000000000000000000.jsonl"), 40, true);
    cluster = await TestCluster.start({ dir, brokers: 1, minInsyncReplicas: 1 });
    try {
      // Partition 0 up to the damage, and all of partition 1; the consumer says why it waits, and does not exit.
      const read = await yak([
        "consume",
        "--topic",
        "s",
        "--from-beginning",
        "--max-messages",
        "140",
        ...cluster.zkFlag,
      ], { timeoutMs: 20_000 });
      assert.equal(read.code, 0, read.stderr);
      const got = read.stdout.trimEnd().split("\n").map(Number).sort((a, b) => a - b);
      assert.deepEqual(got, [
        ...Array.from({ length: 40 }, (_, i) => i + 1),
        ...Array.from({ length: 100 }, (_, i) => i + 101),
      ]);
      // The warning comes with the first fetch of partition 0 past the damage, which the consumer above may not
      // have made before its 140th record: a reader of partition 0 alone from offset 40 is told for sure.
      if (!/s\/0: the record at offset 40 .* is damaged/.test(read.stderr)) {
        const stuck = await yak(
          ["consume", "--topic", "s", "--partition", "0", "--offset", "40", "--max-messages", "1", ...cluster.zkFlag],
          { timeoutMs: 4_000 },
        );
        assert.equal(stuck.stdout, "", "nothing past the damage");
        assert.match(stuck.stderr, /s\/0: the record at offset 40 .* is damaged/);
      }
      const events = await opLog(join(dir, "broker-1", "broker.log"));
      assert.ok(events.some((e) => e.event === "record_damaged" && e.found === "open" && e.offset === 40));
      assert.ok(events.some((e) => e.event === "damaged_leader_stays"));
      if (kcatMissing() === null) {
        // kcat: KAFKA_STORAGE_ERROR for partition 0 (retried), partition 1 whole.
        const kcatRead = (partition: number, args: string[], timeoutMs: number) =>
          run("kcat", ["-C", "-b", cluster.bootstrapServers, "-t", "s", "-p", String(partition), ...args], {
            timeoutMs,
          });
        const kcat = await kcatRead(1, ["-o", "beginning", "-e", "-q"], 20_000);
        assert.equal(kcat.code, 0, kcat.stderr);
        assert.equal(new TextDecoder().decode(kcat.stdout), seqText(100, 101));
        // Unbuffered (-u): what it printed before it is stopped at the timeout is all there.
        const p0 = await kcatRead(0, ["-o", "38", "-c", "3", "-u"], 3_000);
        const text = new TextDecoder().decode(p0.stdout);
        assert.equal(text, "39\n40\n", "the two records before the damage, then nothing: never the damaged bytes");
      }
    } finally {
      await cluster.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a damaged leader that stayed (no other in-sync broker alive) hands over once one is back in the set", async () => {
  const cluster = await TestCluster.start({ brokerArgs: ["--scrub-bytes-per-sec", "0"] });
  try {
    const made = await yak(["topics", "--create", "h", "--partitions", "1", ...cluster.zkFlag]);
    assert.equal(made.code, 0, made.stderr);
    // Over the leader's in-memory tail (2 MiB a partition): the oldest records are read from disk.
    const n = 60_000;
    const produced = await yak(["produce", "--topic", "h", ...cluster.zkFlag], { stdin: seqText(n) });
    assert.equal(produced.code, 0, produced.stderr);
    const leader = (await cluster.lease()).leaderId!;
    const followers = [1, 2, 3].filter((id) => id !== leader);
    await replicasEqual(cluster);
    // The followers stop (the set shrinks to the leader), then a record of the leader's is damaged and found.
    for (const id of followers) await cluster.brokers.get(id)!.stop();
    await cluster.waitFor((l) => l.isr.length === 1, 10_000);
    await flip((await segmentsOf(cluster, leader, "h", 0))[0], 7, true);
    await yak(["consume", "--topic", "h", "--from-beginning", "--max-messages", "10", ...cluster.zkFlag], {
      timeoutMs: 3_000,
    });
    const log = join(cluster.dir, `broker-${leader}`, "broker.log");
    await eventually(
      async () => (await opLog(log)).some((e) => e.event === "damaged_leader_stays"),
      10_000,
      "the damaged leader stays: nobody else is in sync",
    );
    // The followers come back with every record and rejoin the set: the leader hands over (before, it stayed
    // for good and record 7 on was unreadable).
    for (const id of followers) await cluster.startBroker(id);
    const read = await yak(
      ["consume", "--topic", "h", "--from-beginning", "--max-messages", String(n), ...cluster.zkFlag],
      { timeoutMs: 40_000 },
    );
    assert.equal(read.code, 0, read.stderr);
    const values = read.stdout.trimEnd().split("\n").map(Number);
    assert.deepEqual(values, Array.from({ length: n }, (_, i) => i + 1), "every record, as produced");
    assert.notEqual((await cluster.lease()).leaderId, leader, "the damaged leader handed over");
  } finally {
    await cluster.stop();
  }
});
