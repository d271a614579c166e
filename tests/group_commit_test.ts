/**
 * A consumer group commits exactly what `yak consume` handed to stdout, per
 * partition: not the rest of a fetched batch when `--max-messages` stops it
 * mid-batch, not what a closed pipe (`| head -5`) never took. And a consumer
 * started before its topic exists reads it from offset 0.
 */
import assert from "node:assert/strict";
import { STDOUT_WRITE_BYTES } from "../src/cli/consume.ts";
import { MAIN, PERMS, Proc, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

const decoder = new TextDecoder();

/** The group's committed offset per partition, as the leader reports it (`yak status --json`). */
async function committedOffsets(cluster: TestCluster, group: string, topic: string): Promise<Record<string, number>> {
  const res = await yak(["status", "--json", ...cluster.zkFlag], { timeoutMs: 20_000 });
  assert.equal(res.code, 0, res.stderr);
  const status = JSON.parse(res.stdout) as {
    lease: { leaderId: number | null };
    views: { brokerId: number; groups?: Record<string, Record<string, Record<string, { committed: number }>>> }[];
  };
  const leaderView = status.views.find((v) => v.brokerId === status.lease.leaderId);
  assert.ok(leaderView?.groups, `no leader view in ${res.stdout}`);
  const byPartition = leaderView.groups[group]?.[topic] ?? {};
  return Object.fromEntries(Object.entries(byPartition).map(([p, x]) => [p, x.committed]));
}

function sum(offsets: Record<string, number>): number {
  return Object.values(offsets).reduce((s, x) => s + x, 0);
}

function lines(stdout: string): string[] {
  return stdout === "" ? [] : stdout.trimEnd().split("\n");
}

Deno.test("a consumer group commits exactly the records printed to stdout, and a late topic is read from 0", async (t) => {
  const cluster = await TestCluster.start();
  try {
    await t.step("--max-messages 5 commits 5 records in all; the next member reads the other 2995", async () => {
      const produced = await yak(["produce", "--topic", "g3t", "--batch-records", "500", ...cluster.zkFlag], {
        stdin: seqText(3000),
      });
      assert.equal(produced.code, 0, produced.stderr);
      const group = ["--topic", "g3t", "--group", "g3", "--from-beginning", ...cluster.zkFlag];
      const first = await yak(["consume", ...group, "--max-messages", "5"]);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(lines(first.stdout).length, 5);

      const committed = await committedOffsets(cluster, "g3", "g3t");
      assert.equal(sum(committed), 5, `committed ${JSON.stringify(committed)} after printing 5 records`);

      // It stops at 2995; one more would be a record read twice, caught below.
      const second = await yak(["consume", ...group, "--max-messages", "2995", "--timeout-ms", "20000"]);
      assert.equal(second.code, 0, second.stderr);
      const seen = [...lines(first.stdout), ...lines(second.stdout)].map(Number);
      assert.equal(lines(second.stdout).length, 2995, "the next member reads every record not printed");
      assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: 3000 }, (_, i) => i + 1));
    });

    await t.step("a closed pipe (| head -5) commits nothing beyond what went into the pipe", async () => {
      // Records of ~2 KiB, so 3000 of them (6 MB) are far more than a pipe holds.
      const pad = "x".repeat(2000);
      const value = (i: number) => `${String(i).padStart(6, "0")}-${pad}`;
      const total = 3000;
      const input = Array.from({ length: total }, (_, i) => value(i + 1)).join("\n") + "\n";
      const produced = await yak(["produce", "--topic", "pipe", "--batch-records", "500", ...cluster.zkFlag], {
        stdin: input,
      });
      assert.equal(produced.code, 0, produced.stderr);

      const group = ["--topic", "pipe", "--group", "gp", "--from-beginning", "--format", "json", ...cluster.zkFlag];
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", ...PERMS, MAIN, "consume", ...group, "--timeout-ms", "5000"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      const errText = (async () => {
        let s = "";
        while (true) {
          const { value, done } = await stderr.read();
          if (done) return s;
          s += value;
        }
      })();
      // Like `head -5`: read five lines, then close the read end.
      const reader = child.stdout.getReader();
      let receivedBytes = 0;
      let text = "";
      try {
        await withDeadline(30_000, "five lines from yak consume", async () => {
          while (text.split("\n").length <= 5) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`yak consume ended after ${receivedBytes} bytes: ${await errText}`);
            receivedBytes += value.length;
            text += decoder.decode(value, { stream: true });
          }
        });
      } finally {
        await reader.cancel();
      }
      const status = await withDeadline(30_000, "yak consume exits on the broken pipe", () => child.status);
      const err = await errText;
      assert.equal(status.code, 0, err);
      const read = text.split("\n").slice(0, -1).map((l) => JSON.parse(l) as { partition: number; offset: number });
      assert.ok(read.length >= 5);

      const committed = await committedOffsets(cluster, "gp", "pipe");
      const lineBytes = JSON.stringify({
        topic: "pipe",
        partition: 0,
        offset: 0,
        epoch: 1,
        ts: Date.now(),
        key: null,
        value: value(1),
      }).length + 1;
      // At most: what we read plus what the pipe still held when we closed it. Linux pipes hold
      // 64 KiB unless resized; 1 MiB is the most an unprivileged process may ask for.
      const mostWritten = Math.floor((receivedBytes + 1024 * 1024) / lineBytes);
      assert.ok(
        sum(committed) <= mostWritten,
        `committed ${sum(committed)} records ${JSON.stringify(committed)}, but at most ${mostWritten} ` +
          `can have gone into the pipe (${receivedBytes} bytes read)`,
      );
      // At least: what we read, less the one write the closed pipe cut short (Deno reports no count for it).
      const oneWrite = Math.ceil(STDOUT_WRITE_BYTES / lineBytes) + 1;
      for (const r of read) {
        assert.ok(
          r.offset < (committed[r.partition] ?? 0) + oneWrite,
          `record ${r.partition}/${r.offset} was printed, more than one write before the commit ` +
            JSON.stringify(committed),
        );
      }
      // The consumer's own count of records printed is what it committed.
      const m = err.match(/yak consume: (\d+) records from 'pipe'/);
      assert.ok(m, err);
      assert.equal(Number(m[1]), sum(committed), err);

      // The next member reads everything after the commit: every record once across the two.
      const rest = total - sum(committed);
      const second = await yak(["consume", ...group, "--max-messages", String(rest), "--timeout-ms", "20000"]);
      assert.equal(second.code, 0, second.stderr);
      const records = lines(second.stdout).map((l) =>
        JSON.parse(l) as { partition: number; offset: number; value: string }
      );
      assert.equal(records.length, rest, second.stderr);
      const next = new Map<number, number>(Object.entries(committed).map(([p, off]) => [Number(p), off]));
      for (const r of records) {
        assert.equal(r.offset, next.get(r.partition) ?? 0, "the second member starts at the commit, with no gap");
        next.set(r.partition, r.offset + 1);
      }
      assert.equal(new Set(records.map((r) => r.value)).size, records.length);
    });

    await t.step("a consumer started before its topic exists reads the topic from offset 0", async () => {
      const consumer = new Proc("consumer", [
        "consume",
        "--topic",
        "late",
        "--max-messages",
        "1000",
        "--timeout-ms",
        "30000",
        ...cluster.zkFlag,
      ]);
      try {
        // It is waiting for the topic (stderr), before anything is produced.
        await consumer.waitFor(/retrying: .*'late' does not exist/, 20_000);
        const produced = await yak(["produce", "--topic", "late", ...cluster.zkFlag], { stdin: seqText(1000) });
        assert.equal(produced.code, 0, produced.stderr);
        const status = await withDeadline(40_000, "the early consumer exits", () => consumer.status);
        const values = consumer.lines.filter((l) => /^\d+$/.test(l)).map(Number);
        assert.equal(status.code, 0, consumer.lines.slice(-5).join("\n"));
        assert.equal(values.length, 1000, consumer.lines.filter((l) => !/^\d+$/.test(l)).join("\n"));
        assert.deepEqual([...values].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i + 1));
      } finally {
        await consumer.stop();
      }
    });
  } finally {
    await cluster.stop();
  }
});
