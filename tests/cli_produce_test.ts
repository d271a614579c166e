/**
 * `yak produce` as people use it, with real processes: Ctrl-C at a terminal
 * and SIGTERM in a pipe (flush, summary, exit 130), an oversized record
 * (its line, what was stored, the config that raises the limit), the
 * summary's figures, key separators and CRLF, random sticky starts, topics
 * never created by a produce that stores nothing, and progress.
 */
import assert from "node:assert/strict";
import { Connection } from "../src/protocol/connection.ts";
import { eventually, Proc, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

/** The records of a topic, as JSON objects, read to its end. */
async function records(
  cluster: TestCluster,
  topic: string,
): Promise<{ partition: number; key: string | null; value: string }[]> {
  const res = await yak([
    "consume",
    "--topic",
    topic,
    "--offset",
    "earliest",
    "--exit-at-end",
    "--format",
    "json",
    ...cluster.zkFlag,
  ]);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

async function topicExists(cluster: TestCluster, topic: string): Promise<boolean> {
  const res = await yak(["topics", "--list", ...cluster.zkFlag]);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.split("\n").some((l) => l.split("\t")[0] === topic);
}

const SUMMARY = /^yak produce: .*acknowledged to '/m;

Deno.test("yak produce: interrupted at a terminal (Ctrl-C) or in a pipe (SIGTERM): flush, summary, exit 130", async () => {
  await withDeadline(120_000, "produce interrupted", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      // At a terminal: a line typed, Enter, Ctrl-C. A long linger keeps the line in the producer until the
      // Ctrl-C, so only the flush on interrupt can deliver it.
      const typed = new Proc("typed", ["produce", "--topic", "tty", "--linger-ms", "60000", ...cluster.zkFlag], {
        pty: true,
      });
      try {
        // The prompt ('>') says the producer waits for a line: a second one means the line was read.
        const prompts = (text: string) => text.split(">").length - 1;
        await typed.waitForText((text) => prompts(text) >= 1, "prompting", 20_000);
        await typed.write("hello typed\r"); // Enter
        await typed.waitForText((text) => prompts(text) >= 2, "prompting again");
        await typed.write("\x03"); // Ctrl-C
        const status = await typed.status;
        const out = typed.lines.join("\n");
        assert.equal(status.code, 130, out);
        assert.match(out, /interrupted \(SIGINT\); 1 record \(11 bytes\) acknowledged to 'tty', 0 not acknowledged/);
      } finally {
        await typed.stop();
      }
      assert.deepEqual((await records(cluster, "tty")).map((r) => r.value), ["hello typed"]);

      // In a pipe, with the broker frozen: SIGTERM waits up to 5 s for acknowledgements, then says what is not.
      const piped = new Proc("piped", [
        "produce",
        "--topic",
        "pipe",
        "--partition",
        "0",
        "--progress",
        ...cluster.zkFlag,
      ], {
        stdin: true,
      });
      const broker = cluster.brokers.get(1)!;
      try {
        await piped.write(seqText(100));
        const conn = await Connection.open("127.0.0.1", cluster.brokerPorts.get(1)!);
        try {
          await withDeadline(20_000, "100 records stored", async () => {
            while (true) {
              const res = await conn.request({ type: "list_offsets", topic: "pipe" }).catch(() => null);
              if ((res?.end as Record<string, number> | undefined)?.[0] === 100) return;
              await new Promise((r) => setTimeout(r, 50));
            }
          });
        } finally {
          conn.close();
        }
        broker.kill("SIGSTOP");
        await piped.write(seqText(50, 101));
        // Progress says when the 50 lines have been read (and are waiting for the frozen broker).
        await piped.waitFor(/^yak produce: 100 of 150 records read acknowledged/, 10_000);
        const signalled = Date.now();
        piped.kill("SIGTERM");
        const status = await piped.status;
        const waited = Date.now() - signalled;
        const out = piped.lines.join("\n");
        assert.equal(status.code, 130, out);
        assert.match(
          out,
          /interrupted \(SIGTERM\); 100 records \(\d+ bytes\) acknowledged to 'pipe', 50 not acknowledged \(lines 101-150\)/,
        );
        assert.ok(waited >= 4500 && waited < 15_000, `waited ${waited} ms for acknowledgements (bound: 5 s)`);
      } finally {
        broker.kill("SIGCONT");
        piped.kill("SIGKILL");
        await piped.status;
      }
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("yak produce: an oversized record names its line and the config; the figures of the summary; no topic from a produce that stores nothing", async (t) => {
  await withDeadline(150_000, "produce errors", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      await t.step("an oversized record: its line, which records were stored, and max.message.bytes", async () => {
        const big = "x".repeat(1_200_000);
        const res = await yak(["produce", "--topic", "big", "--partition", "0", ...cluster.zkFlag], {
          stdin: `small\n${big}\nafter\n`,
        });
        assert.equal(res.code, 1, res.stderr);
        assert.match(
          res.stderr,
          /^yak produce: line 2 \(1200000 bytes\) is larger than topic 'big' takes \(1048576 bytes, the broker's --max-message-bytes\); split it, or raise the limit with 'yak topics --alter big --config max.message.bytes=N'$/m,
        );
        assert.match(res.stderr, /1 record \(5 bytes\) acknowledged to 'big', 2 not acknowledged \(lines 2-3\)/);
        assert.deepEqual((await records(cluster, "big")).map((r) => r.value), ["small"]);
        // The config the message names exists, and raises the limit.
        const raised = await yak([
          "topics",
          "--alter",
          "big",
          "--config",
          "max.message.bytes=2000000",
          ...cluster.zkFlag,
        ]);
        assert.equal(raised.code, 0, raised.stderr);
        const again = await yak(["produce", "--topic", "big", "--partition", "0", ...cluster.zkFlag], {
          stdin: `${big}\n`,
        });
        assert.equal(again.code, 0, again.stderr);
        // And a topic's own lower limit is enforced, naming the topic's config.
        await yak(["topics", "--create", "small", "--config", "max.message.bytes=100", ...cluster.zkFlag]);
        const small = await yak(["produce", "--topic", "small", ...cluster.zkFlag], {
          stdin: "ok\n" + "y".repeat(101),
        });
        assert.equal(small.code, 1);
        assert.match(
          small.stderr,
          /line 2 \(101 bytes\) is larger than topic 'small' takes \(100 bytes, its max.message.bytes\)/,
        );
        // A topic that does not exist yet cannot be altered: the hint creates it, and that command works.
        const fresh = await yak(["produce", "--topic", "fresh", ...cluster.zkFlag], { stdin: `${big}\n` });
        assert.equal(fresh.code, 1);
        assert.match(
          fresh.stderr,
          /raise the limit with 'yak topics --create fresh --config max.message.bytes=N' \(the topic does not exist yet\)$/m,
        );
        const created = await yak([
          "topics",
          "--create",
          "fresh",
          "--config",
          "max.message.bytes=2000000",
          ...cluster.zkFlag,
        ]);
        assert.equal(created.code, 0, created.stderr);
        // Over the frame cap no broker takes it: the input after that line is not read, and the summary says so.
        const huge = "z".repeat(16 * 1024 * 1024);
        const capped = await yak(["produce", "--topic", "cap", "--partition", "0", ...cluster.zkFlag], {
          stdin: `first\n${huge}\nlast\n`,
        });
        assert.equal(capped.code, 1);
        assert.match(capped.stderr, /^yak produce: line 2 \(16777216 bytes\) is larger than any broker takes/m);
        assert.match(
          capped.stderr,
          /^yak produce: 1 record \(5 bytes\) acknowledged to 'cap', 1 not acknowledged \(line 2\), reading stopped at line 2, in /m,
        );
        // Read in 64 KB pieces from a pipe, the long line is joined once: 0.3 s here, not the 15 s of a join per read.
        const seconds = Number(capped.stderr.match(/ in (\d+\.\d+) s/)![1]);
        assert.ok(seconds < 8, `a 16 MB line took ${seconds} s to read`);
        assert.deepEqual((await records(cluster, "cap")).map((r) => r.value), ["first"]);
      });

      await t.step("the summary: bytes of keys and values, '1 record', no rate under a second", async () => {
        const one = await yak(["produce", "--topic", "sum", "--key", "k1", "--message", "é!", ...cluster.zkFlag]);
        assert.equal(one.code, 0, one.stderr);
        // 'k1' (2 bytes) + 'é!' (3 bytes in UTF-8).
        assert.match(one.stderr, /^yak produce: 1 record \(5 bytes\) acknowledged to 'sum' in \d+\.\d\d s$/m);
        assert.doesNotMatch(one.stderr, /records\/s/);
        const many = await yak(["produce", "--topic", "sum", ...cluster.zkFlag], { stdin: seqText(1000) });
        // 1..1000: 9 + 90*2 + 900*3 + 4 = 2893 bytes of values.
        assert.match(many.stderr, /^yak produce: 1000 records \(2893 bytes\) acknowledged to 'sum' in /m);
        // A run of a second or more has a rate, and one record a second is '1 record/s'.
        const slow = new Proc("slow", ["produce", "--topic", "sum", ...cluster.zkFlag], { stdin: true });
        try {
          await slow.write("only\n");
          // Stored: the producer runs. A second more makes the run last 1-2 s, a rate of 1 record a second.
          await eventually(async () => (await records(cluster, "sum")).some((r) => r.value === "only"));
          await new Promise((r) => setTimeout(r, 1050));
          await slow.closeStdin();
          assert.equal((await withDeadline(30_000, "slow produce", () => slow.status)).code, 0, slow.text);
        } finally {
          await slow.stop();
        }
        const rate = slow.text.match(/, (\d+) (records?)\/s$/m);
        assert.ok(rate, slow.text);
        assert.equal(rate[2], rate[1] === "1" ? "record" : "records", slow.text);
      });

      await t.step(
        "--key-separator: a line without it is an error unless --ignore-missing-separator; CR is dropped",
        async () => {
          const strict = await yak([
            "produce",
            "--topic",
            "ks",
            "--partition",
            "0",
            "--key-separator",
            ":",
            ...cluster.zkFlag,
          ], {
            stdin: "k1:v1\r\nno separator\r\nk3:v3\r\n",
          });
          assert.equal(strict.code, 1);
          assert.match(
            strict.stderr,
            /line 2 has no key separator ':' \(--key-separator\); use --ignore-missing-separator/,
          );
          // The refused line is listed with those not stored, and nothing after it was read.
          assert.match(
            strict.stderr,
            /1 record \(4 bytes\) acknowledged to 'ks', 1 not acknowledged \(line 2\), reading stopped at line 2, in /,
          );
          // A key that is not UTF-8 names its line (before: 'a key is not valid UTF-8', which line unsaid).
          const badKey = await yak([
            "produce",
            "--topic",
            "ks-bad-key",
            "--partition",
            "0",
            "--key-separator",
            ":",
            ...cluster.zkFlag,
          ], {
            stdin: new Uint8Array([...new TextEncoder().encode("k1:v1\n"), 0xff, ...new TextEncoder().encode(":v2\n")]),
          });
          assert.equal(badKey.code, 1);
          assert.match(badKey.stderr, /the key of line 2 is not valid UTF-8/);
          const lenient = await yak([
            "produce",
            "--topic",
            "ks",
            "--partition",
            "0",
            "--key-separator",
            ":",
            "--ignore-missing-separator",
            ...cluster.zkFlag,
          ], { stdin: "no separator\r\nk3:v3\r\n" });
          assert.equal(lenient.code, 0, lenient.stderr);
          assert.deepEqual(
            (await records(cluster, "ks")).map((r) => [r.key, r.value]),
            [["k1", "v1"], [null, "no separator"], ["k3", "v3"]],
          );
        },
      );

      await t.step("keyless records start on a random partition per producer", async () => {
        await yak(["topics", "--create", "spread", "--partitions", "3", ...cluster.zkFlag]);
        const runs = await Promise.all(
          Array.from(
            { length: 8 },
            (_, i) => yak(["produce", "--topic", "spread", "--message", `m${i}`, ...cluster.zkFlag]),
          ),
        );
        for (const r of runs) assert.equal(r.code, 0, r.stderr);
        const used = new Set((await records(cluster, "spread")).map((r) => r.partition));
        // Before, every producer's first record went to partition 0. All 8 on one partition by chance: 1 in 2187.
        assert.ok(used.size > 1, `8 producers all started on partition ${[...used]}`);
      });

      await t.step("no topic is created by a produce that stores nothing", async () => {
        const empty = await yak(["produce", "--topic", "empty", ...cluster.zkFlag], { stdin: "" });
        assert.equal(empty.code, 0, empty.stderr);
        assert.match(empty.stderr, /0 records \(0 bytes\) acknowledged to 'empty'/);
        const tooBig = await yak(["produce", "--topic", "toobig", ...cluster.zkFlag], { stdin: "z".repeat(1_100_000) });
        assert.equal(tooBig.code, 1);
        const noPartition = await yak([
          "produce",
          "--topic",
          "nop",
          "--partition",
          "7",
          "--message",
          "x",
          ...cluster.zkFlag,
        ]);
        assert.equal(noPartition.code, 1);
        assert.match(noPartition.stderr, /'nop' does not exist and would be created with 3 partitions \(0\.\.2\)/);
        for (const topic of ["empty", "toobig", "nop"]) {
          assert.equal(await topicExists(cluster, topic), false, `topic '${topic}' was created`);
        }
        // The first record stored creates it.
        const first = await yak(["produce", "--topic", "empty", "--message", "now", ...cluster.zkFlag]);
        assert.equal(first.code, 0, first.stderr);
        assert.equal(await topicExists(cluster, "empty"), true);
      });

      await t.step("--progress: a line a second while it runs", async () => {
        const p = new Proc("progress", ["produce", "--topic", "prog", "--progress", ...cluster.zkFlag], {
          stdin: true,
        });
        try {
          await p.write(seqText(10));
          await p.waitFor(
            /^yak produce: 10 of 10 records read acknowledged \(11 bytes\), \d+ records\/s, \d+ s$/,
            10_000,
          );
          await p.closeStdin();
          assert.equal((await p.status).code, 0);
          assert.match(p.lines.join("\n"), SUMMARY);
        } finally {
          await p.stop();
        }
      });
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("a topic created by its first batch keeps every batch, in order (pipelined batches wait for the creation)", async () => {
  await withDeadline(120_000, "first batches", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    try {
      // One partition, 8 batches in flight: the batches behind the first arrive while it creates the topic.
      // (They took their offsets first, the first batch then looked like a duplicate, and was dropped.)
      const topics = ["new-a", "new-b", "new-c", "new-d"];
      const runs = await Promise.all(
        topics.map((topic) =>
          yak(["produce", "--topic", topic, "--partition", "0", "--batch-records", "500", ...cluster.zkFlag], {
            stdin: seqText(20_000),
          })
        ),
      );
      for (const r of runs) assert.equal(r.code, 0, r.stderr);
      for (const topic of topics) {
        const values = (await records(cluster, topic)).map((r) => Number(r.value));
        assert.equal(values.length, 20_000, `topic ${topic}: ${values.length} records`);
        assert.deepEqual(values, Array.from({ length: 20_000 }, (_, i) => i + 1), `topic ${topic}`);
      }
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("yak produce: records within max.message.bytes that no replica could fetch, or no frame carry as JSON, are refused, and the cluster goes on", async () => {
  await withDeadline(90_000, "stored too large", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    try {
      const made = await yak(["topics", "--create", "ctl", "--config", "max.message.bytes=7000000", ...cluster.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      // 6 MB of control characters, 36 MB stored: followers could never fetch that line, the in-sync set shrank to
      // the leader, and every acks=all produce of the cluster waited for good (across restarts too).
      const res = await yak(["produce", "--topic", "ctl", ...cluster.zkFlag], {
        stdin: "\u0001".repeat(6_000_000) + "\n",
        timeoutMs: 30_000,
      });
      assert.equal(res.code, 1, res.stderr);
      assert.match(
        res.stderr,
        /record 0 of the batch takes 36000\d+ bytes once stored .* a replica takes in one fetch/,
      );
      const fine = await yak(["produce", "--topic", "ctl", ...cluster.zkFlag], {
        stdin: "\u0001".repeat(1_000_000) + "\n",
      });
      assert.equal(fine.code, 0, fine.stderr);
      // A record within the limits sent as JSON (a header) that the escapes take past the frame: refused at once, not
      // resent for ever with the broker closing the connection each time.
      const json = await yak([
        "topics",
        "--create",
        "json",
        "--config",
        "max.message.bytes=16711680",
        ...cluster.zkFlag,
      ]);
      assert.equal(json.code, 0, json.stderr);
      const quoted = await yak(["produce", "--topic", "json", "--header", "a=b", ...cluster.zkFlag], {
        stdin: '"'.repeat(9_000_000) + "\nafter\n",
        timeoutMs: 30_000,
      });
      assert.equal(quoted.code, 1, quoted.stderr);
      assert.match(quoted.stderr, /^yak produce: line 1 is 18000024 bytes sent as JSON .* split it/m);
      const other = await yak(["produce", "--topic", "other", "--acks", "all", ...cluster.zkFlag], {
        stdin: "hello\n",
      });
      assert.equal(other.code, 0, other.stderr);
      assert.deepEqual((await cluster.lease()).isr, [1, 2, 3]);
    } finally {
      await cluster.stop();
    }
  });
});
