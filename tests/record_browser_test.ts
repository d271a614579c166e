/**
 * The console's record browser (`GET /api/records`) reads as a consumer
 * does by default, read_committed: a partition with transaction markers is
 * browsed (it failed on the markers' missing key), an open transaction's
 * records are not shown until it commits, and records after them are found.
 */
import assert from "node:assert/strict";
import { eventually, Proc, TestCluster, withDeadline, yak } from "./harness.ts";
import { http, printedUrl } from "./http_helpers.ts";

Deno.test("the record browser reads committed records only, past transaction markers", async () => {
  await withDeadline(90_000, "record browser", async () => {
    const cluster = await TestCluster.start({ brokers: 1, zookeeperArgs: ["--http-port", "0"] });
    let open: Proc | null = null;
    try {
      const url = await printedUrl(cluster, "zookeeper");
      const values = async () => {
        const res = await http(`${url}api/records?topic=tx&partition=0&limit=50`);
        assert.equal(res.status, 200, res.body);
        return (JSON.parse(res.body).records as { value: string | null }[]).map((r) => r.value);
      };
      const made = await yak(["topics", "--create", "tx", "--partitions", "1", ...cluster.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      // Two committed transactions: a marker after each.
      const committed = await yak(
        ["produce", "--topic", "tx", "--transactional-id", "t1", "--transaction-records", "2", ...cluster.zkFlag],
        { stdin: "a\nb\nc\nd\n" },
      );
      assert.equal(committed.code, 0, committed.stderr);
      assert.deepEqual(await values(), ["a", "b", "c", "d"]);
      // A transaction left open: its record is stored, and neither yak consume nor the browser shows it.
      open = new Proc("open transaction", [
        "produce",
        "--topic",
        "tx",
        "--transactional-id",
        "t2",
        "--transaction-records",
        "1000",
        ...cluster.zkFlag,
      ], { stdin: true });
      await open.write("secret\n");
      await eventually(
        async () => {
          const all = await yak([
            "consume",
            "--topic",
            "tx",
            "--from-beginning",
            "--exit-at-end",
            "--isolation-level",
            "read_uncommitted",
            ...cluster.zkFlag,
          ]);
          return all.stdout.includes("secret");
        },
        20_000,
        "the open transaction's record stored",
      );
      const committedOnly = await yak([
        "consume",
        "--topic",
        "tx",
        "--from-beginning",
        "--exit-at-end",
        ...cluster.zkFlag,
      ]);
      assert.equal(committedOnly.stdout, "a\nb\nc\nd\n");
      assert.deepEqual(await values(), ["a", "b", "c", "d"]);
      await open.closeStdin();
      assert.equal((await open.status).code, 0);
      open = null;
      await eventually(async () => (await values()).length === 5, 20_000, "the committed record shown");
      assert.deepEqual(await values(), ["a", "b", "c", "d", "secret"]);
    } finally {
      open?.kill("SIGKILL");
      await open?.status;
      await cluster.stop();
    }
  });
});
