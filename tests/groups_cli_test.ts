/**
 * `yak groups` and the groups part of `yak status`, with real processes:
 * list, describe (table and JSON), reset offsets (refused while members are
 * active; then a new member starts at the reset position), delete.
 */
import assert from "node:assert/strict";
import { eventually, Proc, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

interface Described {
  state: string;
  members: { clientId: string; host: string; partitions: Record<string, number[]> }[];
  partitions: { topic: string; partition: number; committed: number | null; logEnd: number; lag: number | null }[];
}

Deno.test("yak groups: list, describe, reset offsets (refused while members are active), delete; status shows members and lag", async () => {
  await withDeadline(90_000, "groups CLI", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    let member: Proc | null = null;
    try {
      assert.equal((await yak(["topics", "--create", "gc", "--partitions", "3", ...cluster.zkFlag])).code, 0);
      for (const p of [0, 1, 2]) {
        const produced = await yak(["produce", "--topic", "gc", "--partition", String(p), ...cluster.zkFlag], {
          stdin: seqText(1000, p * 1000 + 1),
        });
        assert.equal(produced.code, 0, produced.stderr);
      }
      const first = await yak([
        "consume",
        "--topic",
        "gc",
        "--group",
        "g",
        "--from-beginning",
        "--max-messages",
        "1000",
        ...cluster.zkFlag,
      ]);
      assert.equal(first.code, 0, first.stderr);
      const list = await yak(["groups", "--list", ...cluster.zkFlag]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^g\s+Empty\s+0$/m);
      const describe = async (): Promise<Described> => {
        const res = await yak(["groups", "--describe", "g", "--json", ...cluster.zkFlag]);
        assert.equal(res.code, 0, res.stderr);
        return JSON.parse(res.stdout);
      };
      let d = await describe();
      const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
      assert.equal(sum(d.partitions.map((p) => p.committed ?? 0)), 1000);
      assert.equal(sum(d.partitions.map((p) => p.lag ?? 0)), 2000);
      // Reset to the earliest: a new member reads all 3000 again.
      const earliest = await yak([
        "groups",
        "--reset-offsets",
        "g",
        "--topic",
        "gc",
        "--to-earliest",
        ...cluster.zkFlag,
      ]);
      assert.equal(earliest.code, 0, earliest.stderr);
      const all = await yak([
        "consume",
        "--topic",
        "gc",
        "--group",
        "g",
        "--max-messages",
        "3000",
        "--timeout-ms",
        "10000",
        ...cluster.zkFlag,
      ]);
      assert.equal(all.stdout.trim().split("\n").length, 3000);
      const shifted = await yak([
        "groups",
        "--reset-offsets",
        "g",
        "--topic",
        "gc",
        "--shift-by",
        "-10",
        ...cluster.zkFlag,
      ]);
      assert.equal(shifted.code, 0, shifted.stderr);
      d = await describe();
      assert.deepEqual(d.partitions.map((p) => p.lag), [10, 10, 10]);
      const to5 = await yak(["groups", "--reset-offsets", "g", "--topic", "gc", "--to-offset", "5", ...cluster.zkFlag]);
      assert.equal(to5.code, 0, to5.stderr);
      d = await describe();
      assert.deepEqual(d.partitions.map((p) => p.committed), [5, 5, 5]);
      // kafka-consumer-groups' spelling: --group G; a reset then only shows its plan unless --execute is given,
      // as there, and --dry-run shows it in either spelling.
      const kafkaDescribe = await yak(["groups", "--describe", "--group", "g", "--json", ...cluster.zkFlag]);
      assert.equal(kafkaDescribe.code, 0, kafkaDescribe.stderr);
      assert.equal(JSON.parse(kafkaDescribe.stdout).group, "g");
      const reset = ["--topic", "gc", "--to-earliest", ...cluster.zkFlag];
      for (
        const args of [["--group", "g", "--reset-offsets", ...reset], ["--reset-offsets", "g", "--dry-run", ...reset]]
      ) {
        const plan = await yak(["groups", ...args]);
        assert.equal(plan.code, 0, plan.stderr);
        assert.match(plan.stdout, /^g\s+gc\s+0\s+0$/m);
        assert.match(plan.stderr, /a dry run: nothing changed \(--execute applies it\)/);
        assert.deepEqual((await describe()).partitions.map((p) => p.committed), [5, 5, 5]);
      }
      const executed = await yak([
        "groups",
        "--reset-offsets",
        "--group",
        "g",
        "--to-offset",
        "6",
        "--execute",
        "--topic",
        "gc",
        ...cluster.zkFlag,
      ]);
      assert.equal(executed.code, 0, executed.stderr);
      assert.deepEqual((await describe()).partitions.map((p) => p.committed), [6, 6, 6]);
      const back = await yak([
        "groups",
        "--reset-offsets",
        "g",
        "--topic",
        "gc",
        "--to-offset",
        "5",
        ...cluster.zkFlag,
      ]);
      assert.equal(back.code, 0, back.stderr);
      // With a member running: it reads from the reset offset; described with its partitions; resets and
      // deletion are refused.
      member = new Proc("member", ["consume", "--topic", "gc", "--group", "g", ...cluster.zkFlag]);
      const fromFive = [0, 1, 2].flatMap((p) => Array.from({ length: 995 }, (_, i) => String(p * 1000 + 6 + i)));
      const printed = () => member!.lines.filter((l) => /^\d+$/.test(l));
      await eventually(() => printed().length >= fromFive.length, 20_000, "the member to read from offset 5");
      assert.deepEqual(printed().sort(), fromFive.sort(), "a new member after --to-offset 5 reads from 5");
      await eventually(
        async () => {
          d = await describe();
          return d.members.length === 1 && (d.members[0].partitions.gc ?? []).length === 3;
        },
        20_000,
        "the member in the group",
      );
      assert.equal(d.members[0].host, "127.0.0.1", "the member's address without its port, as Kafka and kcat show it");
      const table = await yak(["groups", "--describe", "g", ...cluster.zkFlag]);
      assert.match(table.stdout, /CURRENT-OFFSET\s+LOG-END-OFFSET\s+LAG\s+CONSUMER-ID/);
      assert.match(table.stdout, new RegExp(d.members[0].clientId));
      const refused = await yak(["groups", "--reset-offsets", "g", "--topic", "gc", "--to-latest", ...cluster.zkFlag]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /has 1 active member\(s\); stop them before you reset its offsets/);
      const undeleted = await yak(["groups", "--delete", "g", "--json", ...cluster.zkFlag]);
      assert.equal(undeleted.code, 1);
      assert.match(undeleted.stderr, /has 1 active member\(s\); stop them before you delete it/);
      assert.equal(undeleted.stdout, "");
      const status = await yak(["status", ...cluster.zkFlag]);
      // The groups table: a row per partition with its committed offset, lag and member; then the members.
      assert.match(status.stdout, /^g\s+Stable, generation \d+\s+gc\s+0\s+\d+\s+\d+\s+c-\w+$/m);
      assert.match(status.stdout, new RegExp(`^g\\s+${d.members[0].clientId}\\s+gc\\[`, "m"));
      console.log(table.stdout);
      member.kill("SIGTERM");
      assert.equal((await member.status).code, 0);
      member = null;
      // Offsets of a topic the group never committed: nothing deleted, and said so (it said "deleted" before).
      assert.equal((await yak(["topics", "--create", "gd", "--partitions", "1", ...cluster.zkFlag])).code, 0);
      const none = await yak(["groups", "--delete-offsets", "g", "--topic", "gd", ...cluster.zkFlag]);
      assert.equal(none.code, 0, none.stderr);
      assert.match(none.stdout, /^g\s+gd\s+0\s+no commit$/m);
      const deleted = await yak(["groups", "--delete", "g", "--json", ...cluster.zkFlag]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.deepEqual(JSON.parse(deleted.stdout), { group: "g", deleted: true });
      const after = await yak(["groups", "--list", ...cluster.zkFlag]);
      assert.doesNotMatch(after.stdout, /^g\s/m);
    } finally {
      member?.kill("SIGKILL");
      await member?.status;
      await cluster.stop();
    }
  });
});

Deno.test("yak groups: a reset or an offsets deletion touches only the partitions named; flags of another action are refused", async () => {
  await withDeadline(90_000, "groups CLI partitions", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      const z = cluster.zkFlag;
      assert.equal((await yak(["topics", "--create", "gp", "--partitions", "3", ...z])).code, 0);
      for (const p of [0, 1, 2]) {
        const produced = await yak(["produce", "--topic", "gp", "--partition", String(p), ...z], {
          stdin: seqText(10, 1),
        });
        assert.equal(produced.code, 0, produced.stderr);
      }
      const read = await yak(["consume", "--topic", "gp", "--group", "g", "--from-beginning", "--exit-at-end", ...z]);
      assert.equal(read.code, 0, read.stderr);
      const committed = async () => {
        const res = await yak(["groups", "--describe", "g", "--json", ...z]);
        assert.equal(res.code, 0, res.stderr);
        // By partition: one without a commit (or member) has no row.
        const rows = (JSON.parse(res.stdout) as Described).partitions;
        return [0, 1, 2].map((p) => rows.find((r) => r.partition === p)?.committed ?? null);
      };
      assert.deepEqual(await committed(), [10, 10, 10]);
      // Before: --partition was ignored and every partition went to 0.
      const one = await yak([
        "groups",
        "--reset-offsets",
        "g",
        "--topic",
        "gp",
        "--partition",
        "1",
        "--to-earliest",
        ...z,
      ]);
      assert.equal(one.code, 0, one.stderr);
      assert.deepEqual(await committed(), [10, 0, 10]);
      // kafka-consumer-groups' spelling, and an offset past the end: it goes to the end, and stderr says so.
      const kafka = await yak(["groups", "--reset-offsets", "g", "--topic", "gp:0,2", "--to-offset", "99", ...z]);
      assert.equal(kafka.code, 0, kafka.stderr);
      assert.match(kafka.stderr, /partition 0: offset 99 is past the log end \(10\); it goes to 10/);
      const shifted = await yak(["groups", "--reset-offsets", "g", "--topic", "gp:2", "--shift-by", "-4", ...z]);
      assert.equal(shifted.code, 0, shifted.stderr);
      assert.deepEqual(await committed(), [10, 0, 6]);
      const deleted = await yak(["groups", "--delete-offsets", "g", "--topic", "gp:0", ...z]);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.deepEqual(await committed(), [null, 0, 6]);
      const refused: [string[], RegExp][] = [
        [
          ["--reset-offsets", "g", "--topic", "gp:3", "--to-earliest"],
          /the topic has 3 partitions \(0-2\); there is no partition 3/,
        ],
        [["--reset-offsets", "g", "--topic", "gp", "--to-offset", "-5"], /--to-offset needs an offset of 0 or more/],
        [["--reset-offsets", "g", "--to-earliest"], /--reset-offsets needs --topic T/],
        [["--describe", "g", "--to-earliest"], /--to-earliest goes with --reset-offsets, not --describe/],
        [["--delete-offsets", "g", "--topic", "gp", "--to-latest"], /--to-latest goes with --reset-offsets/],
        [["--describe", "g", "--group", "g"], /give the group once/],
        [["--reset-offsets", "g", "--topic", "gp:1", "--partition", "2", "--to-earliest"], /name the partitions once/],
      ];
      for (const [args, message] of refused) {
        const res = await yak(["groups", ...args, ...z]);
        assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
        assert.match(res.stderr, message);
      }
      assert.deepEqual(await committed(), [null, 0, 6], "a refused command changed a commit");
      const topics: [string[], RegExp][] = [
        [["--create", "gq", "--partition", "2"], /--partition goes with --delete-records, not --create/],
        [["--describe", "gp", "--config", "retention.ms=5"], /--config goes with --create or --alter, not --describe/],
        [["--alter", "gp", "--config", "retention.ms=1", "--delete-config", "retention.ms"], /given to both/],
      ];
      for (const [args, message] of topics) {
        const res = await yak(["topics", ...args, ...z]);
        assert.equal(res.code, 1, `${args.join(" ")}: ${res.stderr}`);
        assert.match(res.stderr, message);
      }
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("yak groups --describe: a partition the group has no commit in shows '-' as its lag (null in --json), not the whole log", async () => {
  await withDeadline(60_000, "lag without a commit", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    let member: Proc | null = null;
    try {
      assert.equal((await yak(["topics", "--create", "nc", "--partitions", "1", ...cluster.zkFlag])).code, 0);
      const produced = await yak(["produce", "--topic", "nc", ...cluster.zkFlag], { stdin: seqText(5) });
      assert.equal(produced.code, 0, produced.stderr);
      // A member that starts at the end and reads nothing commits nothing: it owns the partition, without a commit.
      member = new Proc("member", ["consume", "--topic", "nc", "--group", "g0", ...cluster.zkFlag]);
      let d: Described | null = null;
      await eventually(
        async () => {
          const res = await yak(["groups", "--describe", "g0", "--json", ...cluster.zkFlag]);
          if (res.code !== 0) return false;
          d = JSON.parse(res.stdout);
          return d!.members.length === 1 && (d!.members[0].partitions.nc ?? []).length === 1;
        },
        20_000,
        "the member in the group",
      );
      // Before: lag 5, the whole log, where kafka-consumer-groups prints '-'.
      assert.deepEqual(
        d!.partitions.map(({ partition, committed, logEnd, lag }) => ({ partition, committed, logEnd, lag })),
        [{ partition: 0, committed: null, logEnd: 5, lag: null }],
      );
      const table = await yak(["groups", "--describe", "g0", ...cluster.zkFlag]);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^nc\s+0\s+-\s+5\s+-\s+c-/m);
      // yak status lists partitions with a commit only: none here, so no lag is made up for this group either.
      const status = await yak(["status", ...cluster.zkFlag]);
      assert.doesNotMatch(status.stdout, /^g0\s+Stable.*\snc\s/m);
      member.kill("SIGTERM");
      assert.equal((await member.status).code, 0);
      member = null;
    } finally {
      member?.kill("SIGKILL");
      await member?.status;
      await cluster.stop();
    }
  });
});
