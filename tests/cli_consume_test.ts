/**
 * `yak consume` as people use it, with real processes: --offset in all its
 * forms per partition, --exit-at-end, formats (json, kcat templates, keys
 * and timestamps as kafka-console-consumer prints them), several topics and
 * a topic regex (with a topic made later), and the README's first example
 * (`yak produce` and `yak consume ... | jq .`) run as written.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import {
  eventually,
  MAIN,
  memoryOf,
  PERMS,
  Proc,
  seqText,
  shellQuote,
  skipWithout,
  TestCluster,
  withDeadline,
  yak,
} from "./harness.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));

function hasCommand(name: string): boolean {
  try {
    return new Deno.Command("sh", { args: ["-c", `command -v ${name}`], stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

Deno.test("yak consume: --offset per partition, --exit-at-end, formats, several topics, a topic regex", async (t) => {
  await withDeadline(180_000, "consume", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    const zk = cluster.zkFlag;
    const consume = async (...args: string[]) => {
      const res = await yak(["consume", ...args, ...zk], { timeoutMs: 30_000 });
      assert.equal(res.code, 0, `consume ${args.join(" ")}: ${res.stderr}`);
      return res.stdout;
    };
    try {
      assert.equal((await yak(["topics", "--create", "o", "--partitions", "2", ...zk])).code, 0);
      for (const p of [0, 1]) {
        const lines = Array.from({ length: 20 }, (_, i) => `p${p}-${i}`).join("\n") + "\n";
        assert.equal(
          (await yak(["produce", "--topic", "o", "--partition", String(p), ...zk], { stdin: lines })).code,
          0,
        );
      }

      await t.step("--offset earliest|latest|N|-N, on one --partition or on every partition", async () => {
        assert.equal(
          await consume("--topic", "o", "--partition", "1", "--offset", "-3", "--exit-at-end"),
          "p1-17\np1-18\np1-19\n",
        );
        assert.equal(
          await consume("--topic", "o", "--partition", "0", "--offset", "18", "--exit-at-end"),
          "p0-18\np0-19\n",
        );
        assert.equal(await consume("--topic", "o", "--partition", "0", "--offset", "latest", "--exit-at-end"), "");
        const earliest = (await consume("--topic", "o", "--partition", "0", "--offset", "earliest", "--exit-at-end"))
          .trimEnd().split("\n");
        assert.deepEqual(earliest, Array.from({ length: 20 }, (_, i) => `p0-${i}`));
        // Without --partition: -2 is the last two of each partition.
        const lastTwo = (await consume("--topic", "o", "--offset", "-2", "--exit-at-end")).trimEnd().split("\n").sort();
        assert.deepEqual(lastTwo, ["p0-18", "p0-19", "p1-18", "p1-19"]);
        // Past the end: an error that says where the end is.
        const past = await yak([
          "consume",
          "--topic",
          "o",
          "--partition",
          "0",
          "--offset",
          "500",
          "--exit-at-end",
          ...zk,
        ]);
        assert.equal(past.code, 1);
        assert.equal(past.stdout, "");
        assert.match(past.stderr, /offset 500 is past the end of o\/0 \(its log ends at 20\)/);
      });

      await t.step("--exit-at-end: everything there at the start, then exit, also with a group", async () => {
        const all = (await consume("--topic", "o", "--from-beginning", "--exit-at-end")).trimEnd().split("\n");
        assert.equal(all.length, 40);
        const group = (await consume("--topic", "o", "--group", "ee", "--from-beginning", "--exit-at-end"))
          .trimEnd().split("\n");
        assert.equal(group.length, 40);
        // The group committed what it printed: a second run has nothing left and exits at once.
        assert.equal(await consume("--topic", "o", "--group", "ee", "--exit-at-end"), "");
      });

      await t.step(
        "--auto-offset-reset decides where what has no commit starts, as Kafka's auto.offset.reset",
        async () => {
          // A new group, and a consumer without one, start at the start with earliest.
          const group =
            (await consume("--topic", "o", "--group", "aor", "--auto-offset-reset", "earliest", "--exit-at-end"))
              .trimEnd().split("\n");
          assert.equal(group.length, 40);
          const plain = (await consume("--topic", "o", "--auto-offset-reset", "earliest", "--exit-at-end")).trimEnd();
          assert.equal(plain.split("\n").length, 40);
          // Where the group committed, it goes on from there; latest starts a new group at the end.
          assert.equal(
            await consume("--topic", "o", "--group", "aor", "--auto-offset-reset", "earliest", "--exit-at-end"),
            "",
          );
          assert.equal(
            await consume("--topic", "o", "--group", "aor2", "--auto-offset-reset", "latest", "--exit-at-end"),
            "",
          );
          const both = await yak(
            ["consume", "--topic", "o", "--from-beginning", "--auto-offset-reset", "latest", "--exit-at-end", ...zk],
          );
          assert.equal(both.code, 1);
          assert.match(both.stderr, /--from-beginning .*not with --auto-offset-reset latest/);
        },
      );

      await t.step(
        "formats: json, kcat templates, keys and timestamps as kafka-console-consumer prints them",
        async () => {
          const keyed = await yak(["produce", "--topic", "kv", "--partition", "0", "--key-separator", "=", ...zk], {
            stdin: "a=1\nb=2\n",
          });
          assert.equal(keyed.code, 0, keyed.stderr);
          const json = (await consume("--topic", "kv", "--from-beginning", "--exit-at-end", "--format", "json"))
            .trimEnd().split("\n").map((l) => JSON.parse(l));
          assert.deepEqual(json.map((r) => [r.topic, r.partition, r.offset, r.key, r.value]), [
            ["kv", 0, 0, "a", "1"],
            ["kv", 0, 1, "b", "2"],
          ]);
          assert.ok(json.every((r) => typeof r.ts === "number"));
          const template = await consume(
            "--topic",
            "kv",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%t/%p@%o %k=%v (%K,%S) 100%%\\n",
          );
          assert.equal(template, "kv/0@0 a=1 (1,1) 100%\nkv/0@1 b=2 (1,1) 100%\n");
          const withTs = await consume("--topic", "kv", "--from-beginning", "--exit-at-end", "--format", "%T\\t%v\\n");
          const ts = withTs.trimEnd().split("\n").map((l) => l.split("\t"));
          assert.deepEqual(ts.map(([, v]) => v), ["1", "2"]);
          assert.deepEqual(ts.map(([t]) => Number(t)), json.map((r) => r.ts));
          assert.equal(
            await consume("--topic", "kv", "--from-beginning", "--exit-at-end", "--print-key"),
            "a\t1\nb\t2\n",
          );
          assert.equal(
            await consume(
              "--topic",
              "kv",
              "--from-beginning",
              "--exit-at-end",
              "--print-key",
              "--key-separator",
              " => ",
            ),
            "a => 1\nb => 2\n",
          );
          assert.equal(
            await consume("--topic", "kv", "--from-beginning", "--exit-at-end", "--print-timestamp", "--print-key"),
            json.map((r) => `CreateTime:${r.ts}\t${r.key}\t${r.value}\n`).join(""),
          );
          const conflict = await yak(["consume", "--topic", "kv", "--format", "json", "--print-key", ...zk]);
          assert.equal(conflict.code, 1);
          assert.match(conflict.stderr, /go with --format value/);
        },
      );

      await t.step("several --topic values, and --topic-regex (a matching topic made later is read too)", async () => {
        const both =
          (await consume("--topic", "o", "--topic", "kv", "--from-beginning", "--exit-at-end", "--format", "%t\\n"))
            .trimEnd().split("\n");
        assert.equal(both.filter((t) => t === "o").length, 40);
        assert.equal(both.filter((t) => t === "kv").length, 2);
        const byRegex =
          (await consume("--topic-regex", "k.", "--from-beginning", "--exit-at-end", "--format", "%t %v\\n"))
            .trimEnd().split("\n");
        assert.deepEqual(byRegex, ["kv 1", "kv 2"]);
        // A consumer of 'r-.*' before 'r-late' exists: it reads it once it appears (metadata is re-read every 5 s).
        assert.equal((await yak(["produce", "--topic", "r-first", "--message", "one", ...zk])).code, 0);
        const reader = new Proc("regex", [
          "consume",
          "--topic-regex",
          "r-.*",
          "--from-beginning",
          "--format",
          "%t %v\\n",
          "--max-messages",
          "2",
          ...zk,
        ]);
        try {
          await reader.waitFor(/^r-first one$/, 20_000);
          assert.equal((await yak(["produce", "--topic", "r-late", "--message", "two", ...zk])).code, 0);
          await reader.waitFor(/^r-late two$/, 20_000);
          assert.equal((await reader.status).code, 0);
        } finally {
          await reader.stop();
        }
        // No topic matches when it starts, and no --from-beginning: the first match, made after it started,
        // is read from its start, as a named topic made later is (before: from its end, 'one' never shown).
        const first = new Proc("regex-first", ["consume", "--topic-regex", "z-.*", "--format", "%t %v\\n", ...zk]);
        try {
          await first.waitFor(/no topic matches .*z-.* yet/, 20_000);
          assert.equal((await yak(["produce", "--topic", "z-new", "--message", "one", ...zk])).code, 0);
          await first.waitFor(/^z-new one$/, 20_000);
        } finally {
          await first.stop();
        }
      });
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test({
  name: "the README's first example, as written: cat events.log | yak produce; yak consume ... | jq .",
  ignore: skipWithout(hasCommand("jq") ? null : "jq is not installed (apt-get install jq)"),
  fn: async () => {
    await withDeadline(90_000, "README example", async () => {
      const cluster = await TestCluster.start({ brokers: 1 });
      const dir = await Deno.makeTempDir({ prefix: "yak-readme-" });
      let pipeline: Deno.ChildProcess | null = null;
      try {
        const readme = await Deno.readTextFile(join(REPO, "README.md"));
        const example = readme.match(/```\n(cat events\.log \| yak produce[^\n]*)\n(yak consume[^\n]*\| jq \.)\n```/);
        assert.ok(example, "the README starts with the produce | consume | jq example");
        await Deno.writeTextFile(
          join(dir, "events.log"),
          '{"user":"u1","action":"login"}\n{"user":"u2","action":"buy"}\n',
        );
        // `yak` is the repository's launcher, found on PATH as the README says.
        const env = { PATH: `${REPO}:${Deno.env.get("PATH")}`, YAK_ZOOKEEPER: cluster.zkAddr, YAK_DATA: cluster.dir };
        const produced = await new Deno.Command("sh", { args: ["-c", example[1]], cwd: dir, env, stderr: "piped" })
          .output();
        assert.equal(produced.code, 0, new TextDecoder().decode(produced.stderr));
        // The consumer runs until Ctrl-C, in a terminal: jq prints as it goes there (it buffers into a pipe).
        pipeline = new Deno.Command("script", {
          args: ["-qfec", `sh -c ${shellQuote(example[2])}`, "/dev/null"],
          cwd: dir,
          env,
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let out = "";
        const reader = (async () => {
          for await (const chunk of pipeline!.stdout.pipeThrough(new TextDecoderStream())) out += chunk;
        })();
        // jq colours its output at a terminal.
        const plain = () =>
          out.replaceAll("\r", "").replace(new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g"), "");
        await withDeadline(30_000, "jq prints both events", async () => {
          while (!/"buy"[\s\S]*\}/.test(plain())) await new Promise((r) => setTimeout(r, 50));
        });
        const writer = pipeline.stdin.getWriter();
        await writer.write(new TextEncoder().encode("\x03")); // Ctrl-C
        await writer.close().catch(() => {});
        await pipeline.status;
        await reader;
        const text = plain();
        const objects = text.slice(text.indexOf("{"), text.lastIndexOf("}") + 1).split(/\n(?=\{)/).map((o) =>
          JSON.parse(o)
        );
        assert.deepEqual(objects, [{ user: "u1", action: "login" }, { user: "u2", action: "buy" }], text);
        pipeline = null;
      } finally {
        if (pipeline) {
          try {
            pipeline.kill("SIGKILL");
          } catch { /* gone */ }
          await pipeline.status;
        }
        await cluster.stop();
        await Deno.remove(dir, { recursive: true });
      }
    });
  },
});

Deno.test("a group consumer stops on SIGTERM within its grace period even when its broker does not answer", async () => {
  await withDeadline(60_000, "consumer stop", async () => {
    const c = await TestCluster.start({ brokers: 1 });
    let consumer: Proc | null = null;
    const broker = c.brokers.get(1)!;
    try {
      const made = await yak(["topics", "--create", "gone", "--partitions", "1", ...c.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      consumer = new Proc("consumer", ["consume", "--topic", "gone", "--group", "g", ...c.zkFlag]);
      await consumer.waitFor(/joined group 'g'/, 20_000);
      broker.kill("SIGSTOP"); // the last commit and the leave now wait on a broker that never answers
      const t0 = performance.now();
      consumer.kill("SIGTERM");
      const status = await consumer.status;
      const ms = performance.now() - t0;
      assert.ok(ms < 8_000, `stopped ${Math.round(ms)} ms after SIGTERM`);
      assert.equal(status.code, 130, consumer.lines.join("\n"));
      assert.ok(consumer.lines.some((l) => /stopped without a last commit/.test(l)), consumer.lines.join("\n"));
    } finally {
      broker.kill("SIGCONT");
      consumer?.kill("SIGKILL");
      await consumer?.status;
      await c.stop();
    }
  });
});

Deno.test("yak consume's memory stays bounded while it reads: what it printed is not kept (a Promise.race on one long-lived promise kept every batch)", async () => {
  await withDeadline(120_000, "consume memory", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    const procs: Proc[] = [];
    try {
      const n = 400_000;
      const value = "v".repeat(200);
      const produced = await yak(["produce", "--topic", "big", ...cluster.zkFlag], {
        stdin: `${value}\n`.repeat(n),
      });
      assert.equal(produced.code, 0, produced.stderr);
      // About 130 MB of stored lines, read by a consumer that keeps running (so its peak can be read from /proc).
      const reader = new Proc("reader", ["consume", "--topic", "big", "--from-beginning", ...cluster.zkFlag]);
      procs.push(reader);
      await eventually(() => reader.lines.length >= n, 60_000, `${n} records printed`);
      const peakMb = (await memoryOf(reader.pid, "VmHWM"))! / 1024 / 1024;
      console.log(`yak consume printed ${n} records of 200 bytes; its peak RSS ${peakMb.toFixed(0)} MB`);
      // Measured: 122-128 MB; keeping every batch it printed (the race fixed with this test), 258 MB.
      assert.ok(peakMb < 200, `peak RSS ${peakMb.toFixed(0)} MB`);
    } finally {
      for (const p of procs) p.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.status));
      await cluster.stop();
    }
  });
});

Deno.test("yak consume stopped while it waits for a topic exits 0 at once; stopped with stdout unread, it commits what was written before, leaves its group and says why", async () => {
  await withDeadline(90_000, "consume stops", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    const zk = cluster.zkFlag;
    const children: Deno.ChildProcess[] = [];
    const spawn = (args: string[]) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", ...PERMS, MAIN, "consume", ...args, ...zk],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      children.push(child);
      // Its stderr as it comes, so a step can wait for what it says.
      const said = { text: "" };
      const reading = (async () => {
        for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) said.text += chunk;
      })();
      return { child, said, reading };
    };
    // Whether one of the process's threads is blocked writing to a pipe (its reader does not read).
    const blockedOnPipe = async (pid: number) => {
      const out = await new Deno.Command("sh", { args: ["-c", `cat /proc/${pid}/task/*/wchan`], stdout: "piped" })
        .output();
      return /pipe_write/.test(new TextDecoder().decode(out.stdout));
    };
    try {
      for (
        const wait of [
          ["--topic-regex", "nope.*"],
          ["--topic", "nosuch"],
          ["--topic-regex", "nope.*", "--group", "w"],
          // Joins (with no partitions) before it waits for the topic: it must leave, or the group waits for it.
          ["--topic", "notyet", "--group", "w2"],
        ]
      ) {
        const { child, said, reading } = spawn(wait);
        const stdout = new Response(child.stdout).text();
        // Waiting for the topic (after its join, with a group): it says it is retrying.
        await eventually(() => said.text.includes("retrying"), 20_000, `${wait.join(" ")} waiting`);
        const stopped = performance.now();
        child.kill("SIGTERM");
        const { code } = await child.status;
        const tookMs = performance.now() - stopped;
        await reading;
        await stdout;
        const last = said.text.trim().split("\n").at(-1);
        console.log(`${wait.join(" ")}: exit ${code} in ${tookMs.toFixed(0)} ms (${last})`);
        assert.equal(code, 0, said.text);
        assert.ok(tookMs < 2000, `took ${tookMs.toFixed(0)} ms`);
        const group = wait[wait.indexOf("--group") + 1];
        if (wait.includes("--group")) {
          const described = await yak(["groups", "--describe", group, ...zk]);
          assert.doesNotMatch(described.stdout, /[1-9]\d* member\(s\)/, `group ${group}: ${described.stdout}`);
        }
      }
      // 20,000 records is over 64 KiB of values: the first write that does not fit the pipe blocks, as nobody reads.
      const produced = await yak(["produce", "--topic", "blocked", ...zk], { stdin: seqText(20_000) });
      assert.equal(produced.code, 0, produced.stderr);
      const { child, said: stderr, reading } = spawn(["--topic", "blocked", "--group", "b", "--from-beginning"]);
      await eventually(() => blockedOnPipe(child.pid), 20_000, "a write to stdout blocked");
      child.kill("SIGTERM");
      const { code } = await child.status;
      await reading;
      const said = stderr.text.trim().split("\n").at(-1) ?? "";
      const described = await yak(["groups", "--describe", "b", ...zk]);
      const members = Number(described.stdout.match(/(\d+) member\(s\)/)?.[1] ?? -1);
      const committed = [...described.stdout.matchAll(/^blocked\s+\d+\s+(\d+)/gm)].map((m) => Number(m[1]));
      console.log(`stdout unread: exit ${code}, '${said}'; the group lists ${members} members, commits ${committed}`);
      assert.equal(code, 130);
      assert.match(said, /stdout was not read .* committed the \d+ records? written before and left the group/);
      assert.equal(members, 0);
      assert.ok(committed.length > 0 && committed.some((c) => c > 0), described.stdout);
      // What it says it committed is what the group holds (before: "what was written before", whatever that was).
      const told = Number(said.match(/committed the (\d+) record/)?.[1]);
      assert.equal(told, committed.reduce((a, b) => a + b, 0), described.stdout);
      await child.stdout.cancel();
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch { /* exited */ }
        await c.status;
      }
      await cluster.stop();
    }
  });
});

Deno.test("yak consume --exit-at-end: a missing topic among several is the error a missing topic alone is", async () => {
  await withDeadline(60_000, "missing among several", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    const zk = cluster.zkFlag;
    try {
      assert.equal((await yak(["produce", "--topic", "t1", "--message", "one", ...zk])).code, 0);
      const alone = await yak(["consume", "--topic", "t2", "--exit-at-end", "--from-beginning", ...zk]);
      const among = await yak(
        ["consume", "--topic", "t1", "--topic", "t2", "--exit-at-end", "--from-beginning", ...zk],
      );
      console.log(
        `alone: exit ${alone.code} '${alone.stderr.trim()}'; among: exit ${among.code} '${among.stderr.trim()}'`,
      );
      assert.equal(alone.code, 1, alone.stderr);
      assert.match(alone.stderr, /topic 't2' does not exist \(did you mean 't1'\?\)/);
      // Before: t1's record, exit 0, and t2 silently left out.
      assert.equal(among.code, 1, among.stderr);
      assert.match(among.stderr, /topic 't2' does not exist \(did you mean 't1'\?\)/);
      assert.equal(among.stdout, "");
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("yak consume with no group, stopped while its broker accepts but never answers, exits at once with no commit to speak of", async () => {
  await withDeadline(60_000, "consume stopped while connecting", async () => {
    // Takes connections and never answers (a stopped process's port, a wrong service).
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const held: Deno.Conn[] = [];
    let accepted = 0;
    const accepting = (async () => {
      for await (const conn of listener) {
        held.push(conn);
        accepted++;
      }
    })();
    const consumer = new Proc("consumer", [
      "consume",
      "--topic",
      "x",
      "--bootstrap",
      `127.0.0.1:${listener.addr.port}`,
    ]);
    try {
      await eventually(() => accepted > 0, 20_000, "the consumer connected");
      const t0 = performance.now();
      consumer.kill("SIGINT");
      const { code } = await consumer.status;
      const ms = performance.now() - t0;
      const said = consumer.lines.join("\n");
      console.log(`stopped while connecting: exit ${code} in ${ms.toFixed(0)} ms: ${said}`);
      // Before: 5 s, then "stopped without a last commit: the cluster did not answer in 5000 ms" and 130.
      assert.ok(ms < 2000, `took ${ms.toFixed(0)} ms`);
      assert.equal(code, 0, said);
      assert.doesNotMatch(said, /commit/);
    } finally {
      consumer.kill("SIGKILL");
      await consumer.status;
      listener.close();
      await accepting.catch(() => {});
      for (const c of held) c.close();
    }
  });
});
