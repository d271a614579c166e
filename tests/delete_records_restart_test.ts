/**
 * A replica whose every record was deleted (`yak topics --delete-records` up
 * to the high watermark: its log start is its log end) keeps the epoch in
 * force at its log start across a restart, and rejoins the in-sync set. Found
 * by a walk through docs/GUIDE.md: the restarted broker's recovery dropped the
 * entry (it starts at the log end), so it asked the leader where epoch -1
 * ends, was refused, and retried forever out of the in-sync set. And records
 * deleted to the end of a segment that was still the active one: once a roll
 * closes it, every replica deletes it, not the leader alone.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, TestCluster, withDeadline, yak } from "./harness.ts";

/** `yak topics --delete-records T --partition 0 --offset -1`: every record of partition 0, up to its high watermark. */
async function deleteToEnd(cluster: TestCluster, topic: string): Promise<{ stdout: string }> {
  const deleted = await yak([
    "topics",
    "--delete-records",
    topic,
    "--partition",
    "0",
    "--offset",
    "-1",
    ...cluster.zkFlag,
  ]);
  assert.equal(deleted.code, 0, deleted.stderr);
  return deleted;
}

async function epochsOf(cluster: TestCluster, id: number): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(join(cluster.topicsDir(id), "r", "0", "leader-epochs.json")));
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test(`a replica with every record deleted rejoins the in-sync set after a restart (${signal})`, async () => {
    await withDeadline(90_000, "delete-records restart", async () => {
      const cluster = await TestCluster.start({ brokers: 2, partitions: 1 });
      try {
        const produced = await yak([
          "produce",
          "--topic",
          "r",
          "--message",
          "one",
          "--message",
          "two",
          ...cluster.zkFlag,
        ]);
        assert.equal(produced.code, 0, produced.stderr);
        const deleted = await deleteToEnd(cluster, "r");
        assert.match(deleted.stdout, /below offset 2: its log start is 2 on every in-sync replica/);
        const lease = await cluster.lease();
        const follower = [...cluster.brokers.keys()].find((id) => id !== lease.leaderId)!;
        assert.deepEqual(await epochsOf(cluster, follower), [[lease.epoch, 2]]);

        const proc = cluster.brokers.get(follower)!;
        proc.kill(signal);
        await proc.status;
        await cluster.waitFor((l) => !l.isr.includes(follower));
        await cluster.startBroker(follower);
        // Before the fix it never came back: 'epochs.r/0' must be a non-negative integer, retried forever.
        await cluster.waitFor((l) => l.isr.includes(follower), 20_000);
        assert.deepEqual(await epochsOf(cluster, follower), [[lease.epoch, 2]], "the epoch at its log start kept");

        // It replicates what comes next, and serves it.
        const more = await yak(["produce", "--topic", "r", "--message", "three", ...cluster.zkFlag]);
        assert.equal(more.code, 0, more.stderr);
        const read = await yak([
          "consume",
          "--topic",
          "r",
          "--from-beginning",
          "--exit-at-end",
          "--bootstrap",
          `127.0.0.1:${cluster.brokerPorts.get(follower)}`,
        ]);
        assert.equal(read.code, 0, read.stderr);
        assert.equal(read.stdout, "three\n");
      } finally {
        await cluster.stop();
      }
    });
  });
}

/** The segment files of t/0 on broker `id`, sorted. */
async function segmentFiles(cluster: TestCluster, id: number): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(join(cluster.topicsDir(id), "t", "0"))) {
    if (/\.(jsonl|index)$/.test(e.name)) names.push(e.name);
  }
  return names.sort();
}

for (const policy of ["delete", "compact"]) {
  Deno.test(`records deleted to the end of the active segment: once it is closed, every replica deletes it (${policy})`, async () => {
    await withDeadline(90_000, "segments below the log start", async () => {
      const cluster = await TestCluster.start({
        brokers: 3,
        partitions: 1,
        brokerArgs: ["--retention-check-ms", "300"],
      });
      try {
        const topic = ["--topic", "t"];
        const created = await yak([
          "topics",
          "--create",
          "t",
          "--partitions",
          "1",
          "--config",
          "segment.bytes=1024",
          "--config",
          `cleanup.policy=${policy}`,
          ...cluster.zkFlag,
        ]);
        assert.equal(created.code, 0, created.stderr);
        // A compacted topic takes keyed records only.
        const keyed = policy === "compact" ? ["--key-separator", ":"] : [];
        const line = (i: number | string) => policy === "compact" ? `k${i}:${i}` : `${i}`;
        // One batch: the only segment is past segment.bytes, and still the active one when its records go.
        const lines = Array.from({ length: 200 }, (_, i) => line(i)).join("\n") + "\n";
        const first = await yak(["produce", ...topic, ...keyed, "--acks", "all", ...cluster.zkFlag], { stdin: lines });
        assert.equal(first.code, 0, first.stderr);
        await deleteToEnd(cluster, "t");
        // The next append rolls every replica to a segment at 200; the one below the start must go everywhere.
        const next = await yak(["produce", ...topic, ...keyed, "--acks", "all", ...cluster.zkFlag], {
          stdin: `${line("next")}\n`,
        });
        assert.equal(next.code, 0, next.stderr);
        const expected = ["00000000000000000200.index", "00000000000000000200.jsonl"];
        // Before, the leader's retention pass deleted its own and the followers kept theirs for good; on a topic
        // compacted only, the leader kept its own (its retention pass skipped the topic).
        let seen: string[][] = [];
        await eventually(
          async () => {
            seen = await Promise.all([1, 2, 3].map((id) => segmentFiles(cluster, id)));
            return seen.every((f) => f.join() === expected.join());
          },
          20_000,
          "every replica holds only the segment at 200",
        ).catch((err) => {
          throw new Error(`${err.message}; brokers 1-3 hold ${JSON.stringify(seen)}`);
        });
      } finally {
        await cluster.stop();
      }
    });
  });
}
