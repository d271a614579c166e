/**
 * The main job, end to end through separate real processes: a shell-style
 * pipeline into `yak produce`, `yak consume` out of it, groups that resume,
 * keys on Kafka's partitions, and the inspection commands.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { partitionForKey } from "../src/client/murmur2.ts";
import { seqText, TestCluster, yak } from "./harness.ts";

Deno.test("seq 1 100000 | yak produce, then yak consume --from-beginning returns exactly 1..100000", async () => {
  const cluster = await TestCluster.start();
  try {
    const produced = await yak(["produce", "--topic", "t", ...cluster.zkFlag], {
      stdin: seqText(100_000),
    });
    assert.equal(produced.code, 0, produced.stderr);
    assert.match(produced.stderr, /100000 records .* acknowledged/);

    const consumed = await yak(
      [
        "consume",
        "--topic",
        "t",
        "--from-beginning",
        "--max-messages",
        "100000",
        "--format",
        "json",
        ...cluster.zkFlag,
      ],
    );
    assert.equal(consumed.code, 0, consumed.stderr);
    const records = consumed.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(records.length, 100_000);
    const values = records.map((r) => Number(r.value)).sort((a, b) => a - b);
    values.forEach((v, i) => assert.equal(v, i + 1));
    // Order within each partition: offsets and values both increase.
    const byPartition = new Map<number, { offset: number; value: number }[]>();
    for (const r of records) {
      const list = byPartition.get(r.partition) ?? [];
      list.push({ offset: r.offset, value: Number(r.value) });
      byPartition.set(r.partition, list);
    }
    assert.equal(
      byPartition.size,
      3,
      "records spread over the 3 default partitions",
    );
    for (const list of byPartition.values()) {
      list.forEach((r, i) => {
        assert.equal(r.offset, i);
        if (i > 0) {
          assert.ok(
            r.value > list[i - 1].value,
            "values in order within a partition",
          );
        }
      });
    }
  } finally {
    await cluster.stop();
  }
});

Deno.test("groups resume after the last commit; keys land on Kafka's partitions; followers serve reads", async (t) => {
  const cluster = await TestCluster.start();
  try {
    await t.step(
      "a group resumes where it stopped, without re-reading or skipping",
      async () => {
        const first = await yak(
          ["produce", "--topic", "g", ...cluster.zkFlag],
          { stdin: seqText(500) },
        );
        assert.equal(first.code, 0, first.stderr);
        const group = [
          "--topic",
          "g",
          "--group",
          "billing",
          "--from-beginning",
          ...cluster.zkFlag,
        ];
        const a = await yak(["consume", ...group, "--max-messages", "200"]);
        assert.equal(a.code, 0, a.stderr);
        // The group's commit wins over --from-beginning, as in Kafka.
        const b = await yak(["consume", ...group, "--timeout-ms", "1500"]);
        assert.equal(b.code, 0, b.stderr);
        const seen = [
          ...a.stdout.trimEnd().split("\n"),
          ...b.stdout.trimEnd().split("\n"),
        ].map(Number);
        assert.equal(a.stdout.trimEnd().split("\n").length, 200);
        assert.equal(
          seen.length,
          500,
          "no record read twice across the restart",
        );
        assert.deepEqual(
          [...seen].sort((x, y) => x - y),
          Array.from({ length: 500 }, (_, i) => i + 1),
        );
        // Nothing new: a third member of the group prints nothing.
        const c = await yak(["consume", ...group, "--timeout-ms", "800"]);
        assert.equal(c.stdout, "");
        // Without --from-beginning and without a group, a consumer starts at the end.
        const fresh = await yak([
          "consume",
          "--topic",
          "g",
          "--timeout-ms",
          "800",
          ...cluster.zkFlag,
        ]);
        assert.equal(fresh.stdout, "");
      },
    );

    await t.step(
      "keys land on the partitions Kafka's default partitioner picks",
      async () => {
        const lines = Array.from({ length: 60 }, (_, i) => `user-${i}:v${i}`).join("\n") + "\n";
        const res = await yak([
          "produce",
          "--topic",
          "keys",
          "--key-separator",
          ":",
          ...cluster.zkFlag,
        ], { stdin: lines });
        assert.equal(res.code, 0, res.stderr);
        const out = await yak(
          [
            "consume",
            "--topic",
            "keys",
            "--from-beginning",
            "--max-messages",
            "60",
            "--format",
            "json",
            ...cluster.zkFlag,
          ],
        );
        const records = out.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
        assert.equal(records.length, 60);
        for (const r of records) {
          assert.equal(r.partition, partitionForKey(r.key, 3), `key ${r.key}`);
          assert.equal(r.value, `v${r.key.slice(5)}`);
        }
      },
    );

    await t.step(
      "a follower serves consumes (--bootstrap <follower>)",
      async () => {
        const lease = await cluster.lease();
        const follower = [...cluster.brokerPorts].find(([id]) => id !== lease.leaderId)!;
        const res = await yak([
          "consume",
          "--topic",
          "g",
          "--from-beginning",
          "--max-messages",
          "500",
          "--bootstrap",
          `127.0.0.1:${follower[1]}`,
        ]);
        assert.equal(res.code, 0, res.stderr);
        assert.equal(res.stdout.trimEnd().split("\n").length, 500);
      },
    );

    await t.step(
      "topics: create, list, describe, alter adds partitions",
      async () => {
        const created = await yak([
          "topics",
          "--create",
          "orders",
          "--partitions",
          "2",
          ...cluster.zkFlag,
        ]);
        assert.equal(created.code, 0, created.stderr);
        const again = await yak([
          "topics",
          "--create",
          "orders",
          "--partitions",
          "2",
          ...cluster.zkFlag,
        ]);
        assert.notEqual(again.code, 0);
        assert.match(again.stderr, /already exists/);
        const twin = await yak(["produce", "--topic", "ORDERS", "--message", "x", ...cluster.zkFlag]);
        assert.notEqual(twin.code, 0);
        assert.match(twin.stderr, /differs from existing topic 'orders' only by case/);
        // '.' against '_', as Kafka refuses it: made by a produce, then asked for by name.
        assert.equal((await yak(["produce", "--topic", "pay.ments", "--message", "x", ...cluster.zkFlag])).code, 0);
        const collide = await yak(["topics", "--create", "pay_ments", ...cluster.zkFlag]);
        assert.notEqual(collide.code, 0);
        assert.match(collide.stderr, /collides with existing topic 'pay.ments'/);
        const viaProduce = await yak(["produce", "--topic", "pay_ments", "--message", "x", ...cluster.zkFlag]);
        assert.notEqual(viaProduce.code, 0);
        assert.match(viaProduce.stderr, /collides with existing topic 'pay.ments'/);
        const altered = await yak([
          "topics",
          "--alter",
          "orders",
          "--partitions",
          "5",
          ...cluster.zkFlag,
        ]);
        assert.equal(altered.code, 0, altered.stderr);
        const shrink = await yak([
          "topics",
          "--alter",
          "orders",
          "--partitions",
          "3",
          ...cluster.zkFlag,
        ]);
        assert.notEqual(shrink.code, 0);
        assert.match(shrink.stderr, /can only be added/);
        const list = await yak(["topics", "--list", ...cluster.zkFlag]);
        assert.match(list.stdout, /^orders\t5 partitions$/m);
        const produced = await yak([
          "produce",
          "--topic",
          "orders",
          "--partition",
          "4",
          "--message",
          "late",
          ...cluster.zkFlag,
        ]);
        assert.equal(produced.code, 0, produced.stderr);
        const describe = await yak([
          "topics",
          "--describe",
          "orders",
          ...cluster.zkFlag,
        ]);
        assert.match(describe.stdout, /^4\t0\t1\t1\t/m); // partition, log start, log end, high watermark
        // Every replica holds the new partitions' directories and topic.json.
        for (const id of [1, 2, 3]) {
          const info = JSON.parse(
            await Deno.readTextFile(
              join(cluster.topicsDir(id), "orders", "topic.json"),
            ),
          );
          assert.equal(info.partitions, 5);
        }
      },
    );

    await t.step("status and logs show the cluster", async () => {
      const status = await yak(["status", "--json", ...cluster.zkFlag]);
      assert.equal(status.code, 0, status.stderr);
      const s = JSON.parse(status.stdout);
      assert.equal(s.brokers.length, 3);
      assert.ok(s.brokers.every((b: { alive: boolean }) => b.alive));
      assert.deepEqual(s.lease.isr, [1, 2, 3]);
      const leaderView = s.views.find((v: { brokerId: number }) => v.brokerId === s.lease.leaderId);
      assert.equal(leaderView.groups.billing.g["0"].lag, 0);
      const text = await yak(["status", ...cluster.zkFlag]);
      assert.match(text.stdout, /leader: \d+ {2}epoch: \d+/);
      const zkLog = await yak(["logs", "zookeeper", "--data", cluster.dir]);
      assert.match(zkLog.stdout, /leader_elected/);
      assert.match(zkLog.stdout, /broker_registered broker=3/);
      const brokerLog = await yak([
        "logs",
        "broker",
        String(s.lease.leaderId),
        "--data",
        cluster.dir,
      ]);
      assert.match(brokerLog.stdout, /became_leader/);
      assert.match(brokerLog.stdout, /producer_registered client=p-/);
      assert.match(brokerLog.stdout, /producer_deregistered/);
      assert.match(brokerLog.stdout, /consumer_registered .*group=billing/);
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("bytes that are not UTF-8 survive the round trip (stored base64, printed raw)", async () => {
  const cluster = await TestCluster.start({ brokers: 1 });
  try {
    const input = new Uint8Array([
      0x68,
      0x69,
      0x0a,
      0xff,
      0xfe,
      0x00,
      0x41,
      0x0a,
      0xc3,
      0xa9,
      0x0a,
    ]);
    const res = await yak([
      "produce",
      "--topic",
      "bin",
      "--partition",
      "0",
      ...cluster.zkFlag,
    ], { stdin: input });
    assert.equal(res.code, 0, res.stderr);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../main.ts", import.meta.url).pathname,
        "consume",
        "--topic",
        "bin",
        "--from-beginning",
        "--max-messages",
        "3",
        ...cluster.zkFlag,
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const out = await child.output();
    assert.deepEqual(out.stdout, input);
    const json = await yak(
      [
        "consume",
        "--topic",
        "bin",
        "--from-beginning",
        "--max-messages",
        "3",
        "--format",
        "json",
        ...cluster.zkFlag,
      ],
    );
    const second = JSON.parse(json.stdout.split("\n")[1]);
    assert.equal(
      second.valueB64,
      btoa(String.fromCharCode(0xff, 0xfe, 0x00, 0x41)),
    );
  } finally {
    await cluster.stop();
  }
});
