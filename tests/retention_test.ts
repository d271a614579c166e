/**
 * Bounded disk, with real processes: retention by size and by time deletes
 * whole segments on every replica and moves the log start (the same on all
 * of them), consumers and groups below it reset and say so, a deleted topic
 * goes everywhere (also from a broker that was down), and `__cluster` stays
 * small under a stream of group commits.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Connection } from "../src/protocol/connection.ts";
import { eventually, Proc, segmentHashes, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    // Retention may delete a file between the listing and the stat.
    total += e.isDirectory ? await dirBytes(path) : (await Deno.stat(path).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

async function describe(cluster: TestCluster, topic: string): Promise<{ start: number; end: number }[]> {
  const res = await yak(["topics", "--describe", topic, ...cluster.zkFlag]);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.split("\n").filter((l) => /^\d+\t/.test(l)).map((l) => {
    const [, start, end] = l.split("\t").map(Number);
    return { start, end };
  });
}

/** Each broker's log start of a partition: the first segment file's base. */
async function logStarts(cluster: TestCluster, topic: string, p: number): Promise<number[]> {
  return await Promise.all([1, 2, 3].map(async (id) => {
    const files: string[] = [];
    for await (const e of Deno.readDir(join(cluster.topicsDir(id), topic, String(p)))) {
      if (e.name.endsWith(".jsonl")) files.push(e.name);
    }
    return Number(files.sort()[0]?.slice(0, 20) ?? -1);
  }));
}

/** Segment hashes, or null while retention deletes files under the walk. */
async function hashesOrNull(dir: string): Promise<Map<string, string> | null> {
  try {
    return await segmentHashes(dir);
  } catch {
    return null;
  }
}

const RETENTION_FLAGS = ["--retention-check-ms", "200"];

Deno.test("retention by size: each replica keeps about retention.bytes, replicas agree on the log start and the files, consumers read from the start", async () => {
  await withDeadline(120_000, "retention by size", async () => {
    const cluster = await TestCluster.start({ brokers: 3, brokerArgs: RETENTION_FLAGS });
    try {
      const created = await yak([
        "topics",
        "--create",
        "rs",
        "--partitions",
        "1",
        "--config",
        "retention.bytes=1048576",
        "--config",
        "segment.bytes=262144",
        ...cluster.zkFlag,
      ]);
      assert.equal(created.code, 0, created.stderr);
      // About 20 MiB: 200,000 records of ~100 bytes stored.
      const value = "x".repeat(20);
      const lines = Array.from({ length: 200_000 }, (_, i) => `${i}-${value}`).join("\n") + "\n";
      const res = await yak(["produce", "--topic", "rs", ...cluster.zkFlag], { stdin: lines, timeoutMs: 90_000 });
      assert.equal(res.code, 0, res.stderr);
      let sizes: number[] = [];
      let starts: number[] = [];
      await eventually(
        async () => {
          sizes = await Promise.all([1, 2, 3].map((id) => dirBytes(join(cluster.topicsDir(id), "rs", "0"))));
          starts = await logStarts(cluster, "rs", 0);
          return sizes.every((n) => n < 1.5 * 1024 * 1024) && starts.every((s) => s > 0 && s === starts[0]);
        },
        20_000,
        "retention on every replica",
      );
      let hashes: (Map<string, string> | null)[] = [];
      await eventually(
        async () => {
          hashes = await Promise.all([1, 2, 3].map((id) => hashesOrNull(join(cluster.topicsDir(id), "rs"))));
          return hashes.every((h) =>
            h !== null && JSON.stringify([...h].sort()) === JSON.stringify([...hashes[0]!].sort())
          );
        },
        20_000,
        "identical segment files",
      );
      const [{ start, end }] = await describe(cluster, "rs");
      console.log(
        `partition dirs ${sizes.map((n) => (n / 1024).toFixed(0)).join(" / ")} KiB after ~20 MiB; ` +
          `log start ${starts[0]} on all replicas (${hashes[0]!.size} segment files); log ${start}..${end}`,
      );
      assert.equal(start, starts[0]);
      const read = await yak([
        "consume",
        "--topic",
        "rs",
        "--from-beginning",
        "--max-messages",
        String(end - start),
        "--timeout-ms",
        "10000",
        ...cluster.zkFlag,
      ], { timeoutMs: 60_000 });
      assert.equal(read.code, 0, read.stderr);
      const got = read.stdout.trim().split("\n");
      assert.equal(got.length, end - start);
      assert.equal(got[0], `${start}-${value}`);
      assert.equal(got.at(-1), `199999-${value}`);
      assert.doesNotMatch(read.stderr, /retention/, "--from-beginning means the log start, not a reset");
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("retention by time, and a group whose commit fell below the log start resumes there (with --auto-offset-reset latest, at the log end) and says so", async () => {
  await withDeadline(60_000, "retention by time", async () => {
    const cluster = await TestCluster.start({ brokers: 3, brokerArgs: RETENTION_FLAGS });
    try {
      const created = await yak([
        "topics",
        "--create",
        "rt",
        "--partitions",
        "1",
        "--config",
        "retention.ms=1500",
        "--config",
        "segment.ms=300",
        ...cluster.zkFlag,
      ]);
      assert.equal(created.code, 0, created.stderr);
      const first = await yak(["produce", "--topic", "rt", ...cluster.zkFlag], { stdin: seqText(100) });
      assert.equal(first.code, 0, first.stderr);
      const g = await yak([
        "consume",
        "--topic",
        "rt",
        "--group",
        "late",
        "--from-beginning",
        "--max-messages",
        "10",
        ...cluster.zkFlag,
      ]);
      assert.equal(g.code, 0, g.stderr);
      const g2 = await yak([
        "consume",
        "--topic",
        "rt",
        "--group",
        "late-latest",
        "--from-beginning",
        "--max-messages",
        "10",
        ...cluster.zkFlag,
      ]);
      assert.equal(g2.code, 0, g2.stderr);
      // Time passes; new records roll a new segment (segment.ms) and the old one expires.
      await new Promise((r) => setTimeout(r, 2000));
      const second = await yak(["produce", "--topic", "rt", ...cluster.zkFlag], { stdin: seqText(50, 1000) });
      assert.equal(second.code, 0, second.stderr);
      await eventually(
        async () => (await logStarts(cluster, "rt", 0)).every((s) => s === 100),
        15_000,
        "time retention",
      );
      const resumed = await yak([
        "consume",
        "--topic",
        "rt",
        "--group",
        "late",
        "--max-messages",
        "50",
        "--timeout-ms",
        "10000",
        ...cluster.zkFlag,
      ]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.equal(resumed.stdout.trim().split("\n")[0], "1000");
      assert.match(
        resumed.stderr,
        /offset 10 of rt\/0 was deleted \(by retention or a deletion of records: the log starts at 100\); resetting to the earliest offset, 100/,
      );
      // --auto-offset-reset latest: the group's commit (10) is gone too; it skips to the log end (150) and says so.
      const latest = await yak([
        "consume",
        "--topic",
        "rt",
        "--group",
        "late-latest",
        "--auto-offset-reset",
        "latest",
        "--exit-at-end",
        "--timeout-ms",
        "10000",
        ...cluster.zkFlag,
      ]);
      assert.equal(latest.code, 0, latest.stderr);
      assert.equal(latest.stdout, "", "latest skips the records still kept");
      assert.match(
        latest.stderr,
        /offset 10 of rt\/0 was deleted \(by retention or a deletion of records: the log starts at 100\); resetting to the latest offset, 150/,
      );
      // It resumes from there: the next record produced is the first it reads.
      const third = await yak(["produce", "--topic", "rt", "--message", "after", ...cluster.zkFlag]);
      assert.equal(third.code, 0, third.stderr);
      const next = await yak([
        "consume",
        "--topic",
        "rt",
        "--group",
        "late-latest",
        "--max-messages",
        "1",
        "--timeout-ms",
        "10000",
        ...cluster.zkFlag,
      ]);
      assert.equal(next.code, 0, next.stderr);
      assert.equal(next.stdout, "after\n");
      console.log(
        `log start 100 after 2 s with retention.ms=1500; the group resumed at 100: "${
          resumed.stderr.split("\n")[0]
        }"; ` +
          `with --auto-offset-reset latest: "${latest.stderr.split("\n").find((l) => /retention/.test(l))}"`,
      );
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("a topic deleted while a broker is down is deleted there when it comes back; a new topic of the name starts empty", async () => {
  await withDeadline(60_000, "topic delete", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    try {
      const first = await yak(["produce", "--topic", "td", ...cluster.zkFlag], { stdin: seqText(1000) });
      assert.equal(first.code, 0, first.stderr);
      const c = await yak([
        "consume",
        "--topic",
        "td",
        "--group",
        "tdg",
        "--from-beginning",
        "--max-messages",
        "1000",
        ...cluster.zkFlag,
      ]);
      assert.equal(c.code, 0, c.stderr);
      const lease = await cluster.lease();
      const down = [1, 2, 3].find((id) => id !== lease.leaderId)!;
      await cluster.brokers.get(down)!.stop();
      await cluster.waitFor((l) => !l.isr.includes(down), 10_000);
      const internal = await yak(["topics", "--delete", "__cluster", ...cluster.zkFlag]);
      assert.equal(internal.code, 1);
      const del = await yak(["topics", "--delete", "td", ...cluster.zkFlag]);
      assert.equal(del.code, 0, del.stderr);
      const list = await yak(["topics", "--list", ...cluster.zkFlag]);
      assert.doesNotMatch(list.stdout, /^td\t/m);
      await cluster.startBroker(down);
      await eventually(
        async () => {
          try {
            await Deno.stat(join(cluster.topicsDir(down), "td"));
            return false;
          } catch {
            return true;
          }
        },
        15_000,
        `broker ${down} to delete td`,
      );
      await cluster.waitFor((l) => l.isr.length === 3, 15_000);
      // Recreated: empty, and the old group's commits are gone with the old topic.
      const again = await yak(["produce", "--topic", "td", "--message", "new", ...cluster.zkFlag]);
      assert.equal(again.code, 0, again.stderr);
      const read = await yak([
        "consume",
        "--topic",
        "td",
        "--group",
        "tdg",
        "--from-beginning",
        "--max-messages",
        "1",
        "--timeout-ms",
        "5000",
        ...cluster.zkFlag,
      ]);
      assert.equal(read.stdout, "new\n");
      for (const id of [1, 2, 3]) {
        const hashes = await segmentHashes(join(cluster.topicsDir(id), "td"));
        assert.ok(hashes.size >= 1, `broker ${id} has the new td`);
      }
    } finally {
      await cluster.stop();
    }
  });
});

/** Every group's committed offset in mc/0 as broker `port` holds it, for groups g0..g(n-1). */
async function committedOffsets(port: number, n: number): Promise<number[]> {
  const conn = await Connection.open("127.0.0.1", port);
  try {
    return await Promise.all(Array.from({ length: n }, async (_, k) => {
      const reply = await conn.request({ type: "committed", group: `g${k}`, topic: "mc" }, 30_000);
      return Number((reply.offsets as Record<string, number>)["0"] ?? -1);
    }));
  } finally {
    conn.close();
  }
}

Deno.test("__cluster stays small under 100,000 group commits, loses none of them, and a broker restart replays it fast", async () => {
  await withDeadline(150_000, "metadata compaction", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    try {
      const total = 100_000;
      const groups = 5_000;
      // On partition 0, which the commits below name (keyless records start on a random partition);
      // as many records as commits, so every commit names an offset of its own.
      const seed = await yak(["produce", "--topic", "mc", "--partition", "0", ...cluster.zkFlag], {
        stdin: seqText(total),
      });
      assert.equal(seed.code, 0, seed.stderr);
      const lease = await cluster.lease();
      const leaderPort = cluster.brokerPorts.get(lease.leaderId!)!;
      // Bounded while the commits run, not only after: each broker's __cluster sampled every 200 ms.
      const clusterDirs = [1, 2, 3].map((id) => join(cluster.topicsDir(id), "__cluster"));
      let sampling = true;
      let peakBytes = 0;
      let samples = 0;
      const sampler = (async () => {
        while (sampling) {
          const now = await Promise.all(clusterDirs.map((d) => dirBytes(d).catch(() => 0)));
          peakBytes = Math.max(peakBytes, ...now);
          samples++;
          await new Promise((r) => setTimeout(r, 200));
        }
      })();
      const commitsStarted = performance.now();
      const conn = await Connection.open("127.0.0.1", leaderPort);
      try {
        const inFlight = new Set<Promise<unknown>>();
        for (let i = 0; i < total; i++) {
          // Group g(i % 5000) commits offset i + 1: each group's last commit is its own offset.
          const p = conn.request(
            { type: "commit", group: `g${i % groups}`, topic: "mc", offsets: { "0": i + 1 } },
            30_000,
          );
          inFlight.add(p);
          p.finally(() => inFlight.delete(p));
          if (inFlight.size >= 200) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
      } finally {
        conn.close();
        sampling = false;
        await sampler;
      }
      const commitsMs = performance.now() - commitsStarted;
      console.log(
        `__cluster peak while ${total} commits ran (${Math.round(commitsMs)} ms, ${samples} samples of 3 brokers): ` +
          `${(peakBytes / 1024).toFixed(0)} KiB`,
      );
      assert.ok(samples >= 3, `only ${samples} samples of __cluster while the commits ran`);
      assert.ok(peakBytes < 1.5 * 1024 * 1024, `__cluster reached ${peakBytes} bytes while commits ran`);
      // Every acknowledged commit is there: compaction ran while commits were being written.
      const expected = Array.from({ length: groups }, (_, k) => total - groups + k + 1);
      const lost = (got: number[]) => got.filter((o, k) => o !== expected[k]).length;
      assert.equal(lost(await committedOffsets(leaderPort, groups)), 0, "acknowledged commits lost on the leader");
      let sizes: number[] = [];
      await eventually(
        async () => {
          sizes = await Promise.all([1, 2, 3].map((id) => dirBytes(join(cluster.topicsDir(id), "__cluster"))));
          return sizes.every((n) => n < 600 * 1024);
        },
        20_000,
        "a compacted __cluster",
      );
      const victim = [1, 2, 3].find((id) => id !== lease.leaderId)!;
      await cluster.brokers.get(victim)!.stop();
      const started = performance.now();
      const proc: Proc = await cluster.startBroker(victim);
      const restartMs = performance.now() - started;
      assert.equal(proc.exited, false);
      assert.ok(restartMs < 1000, `broker ${victim} took ${Math.round(restartMs)} ms to replay and listen`);
      // The restarted broker replayed __cluster from its snapshot: every group's last commit, none older.
      let missing = groups;
      await eventually(
        async () => (missing = lost(await committedOffsets(cluster.brokerPorts.get(victim)!, groups))) === 0,
        20_000,
        "every commit after the restart",
      ).catch(() => {
        assert.fail(`${missing} of ${groups} groups lost their last commit on broker ${victim} after its restart`);
      });
      console.log(
        `__cluster after 100,000 commits: ${sizes.map((n) => (n / 1024).toFixed(0)).join(" / ")} KiB; ` +
          `broker ${victim} restarted (process start to listening) in ${Math.round(restartMs)} ms`,
      );
      // A member of g7 resumes at its last commit.
      const resumed = await yak([
        "consume",
        "--topic",
        "mc",
        "--group",
        "g7",
        "--max-messages",
        "3",
        "--timeout-ms",
        "5000",
        ...cluster.zkFlag,
      ]);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.deepEqual(resumed.stdout.trim().split("\n"), ["95009", "95010", "95011"]);
    } finally {
      await cluster.stop();
    }
  });
});

/** The code a raw native request is refused with (the reply's error code), and its message. */
async function refusal(port: number, req: Record<string, unknown>): Promise<{ code: string; message: string }> {
  const conn = await Connection.open("127.0.0.1", port);
  try {
    await conn.request(req, 10_000);
  } catch (err) {
    return { code: (err as { code?: string }).code ?? "(none)", message: String((err as Error).message) };
  } finally {
    conn.close();
  }
  return { code: "(accepted)", message: "" };
}

Deno.test("topic configs are checked (INVALID_CONFIG naming the key), --delete-config brings the default back, and a broker refuses topics and partitions past its limits", async () => {
  await withDeadline(60_000, "configs and limits", async () => {
    // Limits lowered by flag so a test reaches them: 3 topics, 8 partitions.
    const cluster = await TestCluster.start({
      brokers: 1,
      brokerArgs: ["--max-topics", "3", "--max-partitions-per-broker", "8"],
    });
    try {
      const port = cluster.brokerPorts.get(1)!;
      const topics = async (...args: string[]) => await yak(["topics", ...args, ...cluster.zkFlag]);

      // Bad keys and values: INVALID_CONFIG on the wire, naming the key; the CLI names it too.
      const unknown = await refusal(port, {
        type: "create_topic",
        topic: "bad",
        partitions: 1,
        configs: { "retention.msx": "1" },
      });
      assert.equal(unknown.code, "INVALID_CONFIG", unknown.message);
      assert.match(unknown.message, /'retention\.msx'/);
      const badValue = await refusal(port, {
        type: "create_topic",
        topic: "bad",
        partitions: 1,
        configs: { "retention.ms": "soon" },
      });
      assert.equal(badValue.code, "INVALID_CONFIG", badValue.message);
      assert.match(badValue.message, /'retention\.ms'/);
      const cliBad = await topics("--create", "bad", "--config", "segment.bytes=12");
      assert.equal(cliBad.code, 1);
      assert.match(cliBad.stderr, /config 'segment\.bytes' must be an integer from 1024/);

      // max.message.bytes=100 refuses a 200-byte record; deleting the key brings the default (1 MiB) back.
      const created = await topics("--create", "c1", "--partitions", "1", "--config", "max.message.bytes=100");
      assert.equal(created.code, 0, created.stderr);
      const unknownDelete = await refusal(port, { type: "alter_topic", topic: "c1", deleteConfigs: ["nope"] });
      assert.equal(unknownDelete.code, "INVALID_CONFIG", unknownDelete.message);
      assert.match(unknownDelete.message, /'nope'/);
      const big = "y".repeat(200);
      const tooBig = await yak(["produce", "--topic", "c1", "--message", big, ...cluster.zkFlag], {
        timeoutMs: 15_000,
      });
      assert.notEqual(tooBig.code, 0, "a 200-byte record passed max.message.bytes=100");
      const altered = await topics("--alter", "c1", "--delete-config", "max.message.bytes");
      assert.equal(altered.code, 0, altered.stderr);
      const described = await topics("--describe", "c1");
      assert.equal(described.code, 0, described.stderr);
      assert.match(described.stdout, /^configs: \(cluster defaults\)$/m);
      // Every config is listed; max.message.bytes is back to the broker's default (1 MiB).
      assert.match(described.stdout, /^max\.message\.bytes +1048576 +default +enforced$/m);
      const fits = await yak(["produce", "--topic", "c1", "--message", big, ...cluster.zkFlag], { timeoutMs: 15_000 });
      assert.equal(fits.code, 0, `the default max.message.bytes did not apply again: ${fits.stderr}`);

      // Limits: c1 (1) + c2 (3) = 4 partitions; 5 more would make 9 > 8.
      assert.equal((await topics("--create", "c2", "--partitions", "3")).code, 0);
      const tooMany = await topics("--create", "c3", "--partitions", "5");
      assert.equal(tooMany.code, 1);
      assert.match(tooMany.stderr, /5 more partitions would pass the 8 a broker holds \(it has 4\)/);
      assert.equal((await topics("--create", "c3", "--partitions", "4")).code, 0);
      const grow = await topics("--alter", "c1", "--partitions", "2");
      assert.equal(grow.code, 1);
      assert.match(grow.stderr, /1 more partitions would pass the 8 a broker holds \(it has 8\)/);
      const fourth = await topics("--create", "c4", "--partitions", "1");
      assert.equal(fourth.code, 1);
      assert.match(fourth.stderr, /the cluster has 3 topics, the most a broker keeps \(3\); delete some first/);
      console.log(`refused: ${tooMany.stderr.trim()} | ${fourth.stderr.trim()} | ${unknown.message}`);
      // Deleting a topic makes room again.
      assert.equal((await topics("--delete", "c3")).code, 0);
      const again = await topics("--create", "c4", "--partitions", "4");
      assert.equal(again.code, 0, again.stderr);
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("a segment that cannot be deleted stays: retention says so, the broker goes on, and the next pass deletes it", async () => {
  await withDeadline(60_000, "retention of an undeletable segment", async () => {
    const cluster = await TestCluster.start({ brokers: 1, brokerArgs: RETENTION_FLAGS });
    try {
      const topics = (...args: string[]) => yak(["topics", ...args, ...cluster.zkFlag]);
      const created = await topics("--create", "rf", "--partitions", "1", "--config", "segment.bytes=4096");
      assert.equal(created.code, 0, created.stderr);
      // A batch goes whole into one segment: several batches, several segments.
      for (let i = 0; i < 4; i++) {
        const produced = await yak(["produce", "--topic", "rf", ...cluster.zkFlag], {
          stdin: seqText(100, 1 + i * 100),
        });
        assert.equal(produced.code, 0, produced.stderr);
      }
      // The first segment's file turns into something a file removal cannot delete: a non-empty directory.
      const first = join(cluster.topicsDir(1), "rf", "0", "00000000000000000000.jsonl");
      const kept = await Deno.readFile(first);
      await Deno.remove(first);
      await Deno.mkdir(first);
      await Deno.writeTextFile(join(first, "in-the-way"), "x");
      const altered = await topics("--alter", "rf", "--config", "retention.bytes=1");
      assert.equal(altered.code, 0, altered.stderr);
      const broker = cluster.brokers.get(1)!;
      const failed = await broker.waitFor(/retention_failed partition=rf\/0 .*/, 10_000);
      assert.match(failed[0], /cannot delete .*00000000000000000000\.jsonl/);
      // The log start moved all the same (saved before any file goes, so a restart finds it there too): the
      // segment stays below it, never read.
      const start = (await describe(cluster, "rf"))[0].start;
      assert.ok(start > 0, `log start ${start}`);
      assert.equal(broker.exited, false);
      await Deno.remove(first, { recursive: true });
      await Deno.writeFile(first, kept);
      await broker.waitFor(/retention_resumed partition=rf\/0/, 10_000);
      assert.ok((await describe(cluster, "rf"))[0].start >= start);
      const files = [];
      for await (const e of Deno.readDir(join(cluster.topicsDir(1), "rf", "0"))) files.push(e.name);
      assert.ok(!files.includes("00000000000000000000.jsonl"), files.join(" "));
    } finally {
      await cluster.stop();
    }
  });
});
