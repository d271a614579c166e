/**
 * `yak topics` as kafka-topics.sh is typed (issue 25 §6): the name as
 * `--topic`, `--describe` with no name, `--list`, `--replication-factor`
 * (larger than the broker count refused, up to it accepted, and what yak does
 * with it said), `--config` repeated, `--json`, and `--bootstrap-server` with
 * the brokers' Kafka addresses. One broker, real processes.
 */
import assert from "node:assert/strict";
import { type RunResult, TestCluster, withDeadline, yak } from "./harness.ts";

/** A run that exited 0: its stdout. */
function ok(res: RunResult, what: string): string {
  assert.equal(res.code, 0, `${what}: exit ${res.code}\n${res.stderr}`);
  return res.stdout;
}

/** A usage or cluster error: exit 1 and one line on stderr matching `pattern`. */
function refused(res: RunResult, pattern: RegExp, what: string): void {
  assert.equal(res.code, 1, `${what}: exit ${res.code}\n${res.stdout}${res.stderr}`);
  assert.match(res.stderr, pattern, what);
  assert.doesNotMatch(res.stderr, /^\s+at /m, `${what}: a stack trace`);
}

Deno.test("yak topics takes kafka-topics.sh's spellings", async (t) => {
  await withDeadline(60_000, "kafka-topics spellings", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      // Kafka's addresses, as a kafka-topics.sh user types them.
      const kafka = ["--bootstrap-server", cluster.bootstrapServers];
      const topics = (...args: string[]) => yak(["topics", ...args, ...kafka]);

      await t.step("--create --topic T with --replication-factor, --config repeated", async () => {
        const out = ok(
          await topics(
            ...["--create", "--topic", "orders", "--partitions", "2", "--replication-factor", "1"],
            ...["--config", "retention.ms=60000", "--config", "max.message.bytes=2000"],
          ),
          "create",
        );
        assert.match(
          out,
          /^created topic 'orders' with 2 partitions, 1 replica each \(--replication-factor 1: yak keeps every partition on every broker\), configs retention\.ms=60000 max\.message\.bytes=2000$/m,
        );
        ok(await topics("--create", "--topic", "audit"), "create without a factor");
      });

      await t.step("a replication factor larger than the broker count is refused", async () => {
        refused(
          await topics("--create", "--topic", "wide", "--replication-factor", "2"),
          /^yak topics: replication factor 2 is larger than the cluster's 1 broker; yak keeps every partition on every broker, so topics here have 1 replica$/m,
          "--replication-factor 2",
        );
        const list = ok(await topics("--list"), "list");
        assert.doesNotMatch(list, /wide/, "a refused topic is not made");
      });

      await t.step("--list, --describe with no name (every topic), --describe --topic T", async () => {
        const [list, all, one] = await Promise.all([
          topics("--list"),
          topics("--describe"),
          topics("--describe", "--topic", "orders"),
        ]);
        assert.deepEqual(ok(list, "list").trim().split("\n").sort(), ["audit\t3 partitions", "orders\t2 partitions"]);
        const described = [...ok(all, "describe").matchAll(/^topic '([^']+)': (\d+) partitions/gm)];
        assert.deepEqual(described.map((m) => [m[1], m[2]]).sort(), [["audit", "3"], ["orders", "2"]]);
        assert.match(ok(one, "describe one"), /^topic 'orders': 2 partitions/);
        assert.doesNotMatch(one.stdout, /audit/);
      });

      await t.step("--json", async () => {
        const [list, describe] = await Promise.all([topics("--list", "--json"), topics("--describe", "--json")]);
        const created = await topics("--create", "--topic", "json", "--partitions", "1", "--json");
        assert.deepEqual(JSON.parse(ok(list, "list --json")).topics.map((x: { name: string }) => x.name).sort(), [
          "audit",
          "orders",
        ]);
        const d = JSON.parse(ok(describe, "describe --json"));
        const orders = d.topics.find((x: { name: string }) => x.name === "orders");
        assert.equal(orders.configs["retention.ms"], "60000");
        assert.equal(orders.partitions.length, 2);
        assert.deepEqual(JSON.parse(ok(created, "create --json")), {
          topic: "json",
          partitions: 1,
          replicas: 1,
          configs: {},
        });
      });

      await t.step("misuse says what to give", async () => {
        const cases: [string[], RegExp][] = [
          [["--create"], /--create needs a topic: --create T, or --create --topic T/],
          [["--describe", "a", "--topic", "b"], /--describe a and --topic b name two topics; give one/],
          [["--alter", "--topic", "orders", "--replication-factor", "1"], /--replication-factor goes with --create/],
          [["--list", "--topic", "orders"], /--list takes no topic/],
          [["--describe", "--topic", "nope"], /topic 'nope' does not exist/],
        ];
        const results = await Promise.all(cases.map(([args]) => topics(...args)));
        cases.forEach(([args], i) => refused(results[i], cases[i][1], `yak topics ${args.join(" ")}`));
      });
    } finally {
      await cluster.stop();
    }
  });
});
