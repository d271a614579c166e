/**
 * `yak status` with real processes: aligned tables; a paused broker (SIGSTOP)
 * and a dead one told apart from the living; each replica's lag per
 * partition, a silent one at the position the leader last saw; --topic;
 * groups with per-partition lag; --json without the request's id; --watch.
 */
import assert from "node:assert/strict";
import { eventually, Proc, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

/**
 * The rows of the aligned table whose header starts with `first`, as
 * records, cut at the header's column starts: this only reads right when
 * every row lines up under the header.
 */
function tableOf(text: string, first: string): Record<string, string>[] {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${first}  `));
  assert.ok(at !== -1, `no table starting with ${first}:\n${text}`);
  const header = lines[at];
  const names = header.split(/\s{2,}/);
  const starts = names.map((n, i) => i === 0 ? 0 : header.indexOf(`  ${n}`, 1) + 2);
  const rows: Record<string, string>[] = [];
  for (const line of lines.slice(at + 1)) {
    if (line.trim() === "" || line.startsWith("(")) break;
    const row: Record<string, string> = {};
    names.forEach((n, i) => {
      row[n] = line.slice(i === 0 ? 0 : starts[i] - 2, starts[i + 1] === undefined ? undefined : starts[i + 1] - 2)
        .trim();
    });
    // The cells cut at the header's columns are the cells split by their gaps: the table is aligned.
    assert.deepEqual(Object.values(row), line.trim().split(/\s{2,}/), `misaligned row:\n${header}\n${line}`);
    rows.push(row);
  }
  return rows;
}

/**
 * Where the digits of each row's number end in `column` of the table whose
 * header starts with `first`: the same place for every row when numbers,
 * marked (`50*`) or not, line up on the right.
 */
function digitEnds(text: string, first: string, column: string): number[] {
  const lines = text.split("\n");
  const at = lines.findIndex((l) => l.startsWith(`${first}  `));
  const header = lines[at];
  const start = header.indexOf(`  ${column}`) + 2;
  const next = header.slice(start + column.length).search(/\S/);
  const end = next === -1 ? undefined : start + column.length + next - 2;
  const ends: number[] = [];
  for (const line of lines.slice(at + 1)) {
    if (line.trim() === "" || line.startsWith("(")) break;
    const from = start - 2;
    const m = line.slice(from, end).match(/-?\d+/);
    assert.ok(m, `no number under ${column}:\n${header}\n${line}`);
    ends.push(from + m.index! + m[0].length);
  }
  return ends;
}

Deno.test("yak status: aligned tables, paused and dead brokers, each replica's lag, --topic, groups, --json, --watch", async (t) => {
  await withDeadline(180_000, "status", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    const zk = cluster.zkFlag;
    const status = async (...args: string[]) => {
      const res = await yak(["status", ...args, ...zk], { timeoutMs: 30_000 });
      assert.equal(res.code, 0, res.stderr);
      return res.stdout;
    };
    try {
      assert.equal((await yak(["topics", "--create", "s", "--partitions", "2", ...zk])).code, 0);
      assert.equal((await yak(["topics", "--create", "other", "--partitions", "1", ...zk])).code, 0);
      const produced = await yak(["produce", "--topic", "s", "--partition", "0", ...zk], { stdin: seqText(100) });
      assert.equal(produced.code, 0, produced.stderr);
      const read = await yak([
        "consume",
        "--topic",
        "s",
        "--group",
        "g",
        "--from-beginning",
        "--max-messages",
        "40",
        ...zk,
      ]);
      assert.equal(read.code, 0, read.stderr);
      const leader = (await cluster.lease()).leaderId!;
      const follower = [1, 2, 3].find((id) => id !== leader)!;

      await t.step("all alive: aligned tables, lag 0 on every replica, the group's lag per partition", async () => {
        let text = "";
        await eventually(
          async () => {
            text = await status();
            const p0 = tableOf(text, "TOPIC").find((r) => r.TOPIC === "s" && r.PARTITION === "0");
            return p0 !== undefined && p0["LAG@1"] === "0" && p0["LAG@2"] === "0" && p0["LAG@3"] === "0";
          },
          15_000,
          "every replica caught up",
        );
        assert.match(text, new RegExp(`^leader: ${leader} {2}epoch: \\d+ {2}in sync: \\[1, 2, 3\\]$`, "m"));
        const brokers = tableOf(text, "BROKER");
        assert.deepEqual(brokers.map((b) => [b.BROKER, b.STATE]), [["1", "alive"], ["2", "alive"], ["3", "alive"]]);
        assert.equal(brokers.find((b) => b.BROKER === String(leader))!.ROLE, "leader");
        // Log ends from the brokers themselves: 100 records on each, and the metadata log's records.
        const metaLog = Number(text.match(/metadata log \(__cluster\): \d+\.\.(\d+)/)![1]);
        for (const b of brokers) assert.equal(b["LOG END TOTAL"], String(100 + metaLog));
        const p0 = tableOf(text, "TOPIC").find((r) => r.TOPIC === "s" && r.PARTITION === "0")!;
        assert.deepEqual([p0["LOG END"], p0.HW], ["100", "100"]);
        const groups = tableOf(text, "GROUP");
        const g = groups.find((r) => r.GROUP === "g" && r.TOPIC === "s" && r.PARTITION === "0");
        assert.ok(g, text);
        assert.deepEqual([g.COMMITTED, g.LAG], ["40", "60"]);
      });

      await t.step("--topic shows one topic; --json has no request id", async () => {
        const one = await status("--topic", "s");
        const topics = new Set(tableOf(one, "TOPIC").map((r) => r.TOPIC));
        assert.deepEqual([...topics], ["s"]);
        const missing = await yak(["status", "--topic", "nope", ...zk]);
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /topic 'nope' does not exist/);
        const json = JSON.parse(await status("--json"));
        assert.equal(json.brokers.length, 3);
        for (const v of json.views) {
          assert.equal("id" in v, false, "the request's id leaked into the view");
          assert.equal("ok" in v, false);
        }
        assert.ok(json.brokers.every((b: { state: string }) => b.state === "alive"));
      });

      await t.step("a paused follower, then a dead one: told apart, with the lag the leader last saw", async () => {
        const victim = cluster.brokers.get(follower)!;
        victim.kill("SIGSTOP");
        try {
          const more = await yak(["produce", "--topic", "s", "--partition", "0", ...zk], { stdin: seqText(50, 101) });
          assert.equal(more.code, 0, more.stderr);
          let text = "";
          await eventually(
            async () => {
              text = await status();
              return tableOf(text, "BROKER").find((b) => b.BROKER === String(follower))!.STATE === "paused";
            },
            15_000,
            "the follower shown paused",
          );
          const p0 = tableOf(text, "TOPIC").find((r) => r.TOPIC === "s" && r.PARTITION === "0")!;
          assert.equal(p0[`LAG@${follower}`], "50*", text);
          assert.equal(p0[`LAG@${leader}`], "0");
          assert.match(text, /\* = as the leader last saw a replica that does not answer/);
        } finally {
          victim.kill("SIGKILL");
          await victim.status;
        }
        let text = "";
        await eventually(
          async () => {
            text = await status();
            return tableOf(text, "BROKER").find((b) => b.BROKER === String(follower))!.STATE === "dead";
          },
          15_000,
          "the follower shown dead",
        );
        const p0 = tableOf(text, "TOPIC").find((r) => r.TOPIC === "s" && r.PARTITION === "0")!;
        assert.equal(p0[`LAG@${follower}`], "50*", text);
        // Marked numbers line up with the others on their digits: '50*' over '0*', 'N*' among plain figures.
        const lagEnds = digitEnds(text, "TOPIC", `LAG@${follower}`);
        assert.equal(new Set(lagEnds).size, 1, `LAG@${follower} digits do not line up:\n${text}`);
        const totalEnds = digitEnds(text, "BROKER", "LOG END TOTAL");
        assert.equal(new Set(totalEnds).size, 1, `LOG END TOTAL digits do not line up:\n${text}`);
      });

      await t.step("--watch redraws every second until Ctrl-C", async () => {
        const watch = new Proc("watch", ["status", "--watch", "--topic", "s", ...zk]);
        try {
          await watch.waitFor(/^\d{4}-\d\d-\d\dT/, 15_000);
          const first = watch.lines.length;
          await watch.waitFor(/^\d{4}-\d\d-\d\dT/, 15_000, first);
          watch.kill("SIGINT");
          assert.equal((await watch.status).code, 0);
          assert.ok(watch.lines.filter((l) => /^leader: /.test(l)).length >= 2);
        } finally {
          await watch.stop();
        }
      });

      await t.step("no broker answers: the view is printed, and the exit code says so", async () => {
        await Promise.all([...cluster.brokers.values()].map((p) => p.stop()));
        const res = await yak(["status", ...zk], { timeoutMs: 30_000 });
        assert.equal(res.code, 1, res.stderr);
        assert.match(res.stderr, /^yak status: no broker answered/);
        assert.match(res.stdout, /^leader: /);
      });
    } finally {
      await cluster.stop();
    }
  });
});
