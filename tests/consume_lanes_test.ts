/**
 * A consumer's two fetches share the partitions with records left (see
 * laneShare in src/client/consumer.ts), and a partition moves between them
 * as others are read to their end: every partition's records still come out
 * once each, in order, against a real broker process, also when a partition
 * read to its end gets records again. A consumer closed while a fetch waits
 * fetches no more, so the process using it can end.
 *
 * Run: deno test --allow-net --allow-read --allow-write --allow-env --allow-run tests/consume_lanes_test.ts
 *
 * @module
 */
import assert from "node:assert/strict";
import { Consumer } from "../src/client/consumer.ts";
import { Producer } from "../src/client/producer.ts";
import { Connection } from "../src/protocol/connection.ts";
import { join } from "node:path";
import { PERMS, run, TestCluster, withDeadline } from "./harness.ts";

/** Produces `values` to one partition of `topic`, acknowledged. */
async function produceTo(c: TestCluster, topic: string, partition: number, values: string[]): Promise<void> {
  const producer = await Producer.open({
    bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
    topic,
    partition,
  });
  try {
    for (const v of values) producer.add(null, v);
    await producer.flush();
  } finally {
    await producer.close();
  }
}

const valuesOf = (p: number, from: number, n: number) => Array.from({ length: n }, (_, i) => `p${p}-${from + i}`);

Deno.test("partitions of unequal sizes move between a consumer's fetches: each one's records once, in order", () =>
  withDeadline(90_000, "consume lanes", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 3 });
    let consumer: Consumer | null = null;
    try {
      // Partition 1 is read to its end long before the others, and then gets records again.
      const sizes = [6000, 300, 4000];
      for (const [p, n] of sizes.entries()) await produceTo(c, "lanes", p, valuesOf(p, 0, n));
      consumer = await Consumer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
        topic: "lanes",
        fromBeginning: true,
        // Small fetches: many of them, so partitions change lanes many times.
        maxBytes: 16 * 1024,
        maxWaitMs: 100,
      });
      const got: string[][] = [[], [], []];
      let polls = 0;
      let more = false;
      while (got.some((g, p) => g.length < sizes[p] + (p === 1 ? 500 : 0))) {
        for (const part of await consumer.poll()) {
          got[part.partition].push(...part.values()!);
          consumer.consumed(part.topic, part.partition, part.end, part);
        }
        polls++;
        if (!more && got[1].length === sizes[1]) {
          more = true;
          await produceTo(c, "lanes", 1, valuesOf(1, sizes[1], 500));
        }
        assert.ok(polls < 5000, `still reading after ${polls} polls: ${got.map((g) => g.length)}`);
      }
      assert.ok(more, "partition 1 got records again after it was read to its end");
      assert.deepEqual(got[0], valuesOf(0, 0, 6000));
      assert.deepEqual(got[1], valuesOf(1, 0, 800));
      assert.deepEqual(got[2], valuesOf(2, 0, 4000));
      assert.ok(polls > 30, `${polls} polls`);
    } finally {
      await consumer?.close();
      await c.stop();
    }
  }));

Deno.test("a caller slower than the fetches still gets every partition's records: answers go out in the order they came", () =>
  withDeadline(60_000, "consume lanes, slow caller", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 3 });
    let consumer: Consumer | null = null;
    try {
      for (const p of [0, 1, 2]) await produceTo(c, "slow", p, valuesOf(p, 0, 3000));
      consumer = await Consumer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
        topic: "slow",
        fromBeginning: true,
        maxBytes: 8 * 1024,
      });
      // Each poll is handled slower than a fetch is answered, so both fetches have answered by the next poll.
      const got = [0, 0, 0];
      for (let polls = 0; polls < 30; polls++) {
        for (const part of await consumer.poll()) {
          got[part.partition] += part.count;
          consumer.consumed(part.topic, part.partition, part.end, part);
        }
        await new Promise((r) => setTimeout(r, 15));
      }
      assert.ok(got.every((n) => n > 0), `records per partition after 30 slow polls: ${got}`);
    } finally {
      await consumer?.close();
      await c.stop();
    }
  }));

Deno.test("a closed consumer fetches no more: the process of a library user ends once it closes", () =>
  withDeadline(60_000, "consumer close", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 3 });
    try {
      for (const p of [0, 1, 2]) await produceTo(c, "closing", p, valuesOf(p, 0, 2000));
      // close() while the poll's fetch waits for records (a long poll from the end): its connection closes under it.
      const script = join(c.dir, "close.ts");
      await Deno.writeTextFile(
        script,
        `import { Consumer } from ${JSON.stringify(new URL("../src/client/consumer.ts", import.meta.url).href)};
const consumer = await Consumer.open({
  bootstrap: { zookeeper: { host: "127.0.0.1", port: ${c.zkPort} } },
  topic: "closing",
  offset: { kind: "latest" },
  maxWaitMs: 3000,
});
const polling = consumer.poll();
await consumer.close();
console.log("closed; the poll under way gave " + (await polling).length + " part(s)");
console.log(await consumer.poll().then(() => "polled again", (e) => e.message));
`,
      );
      const started = performance.now();
      const out = await run(Deno.execPath(), ["run", ...PERMS, script], { timeoutMs: 15_000 });
      const ms = Math.round(performance.now() - started);
      const said = new TextDecoder().decode(out.stdout);
      // Before, the fetch connected again, read on and kept its connection open: killed at 15 s.
      assert.equal(out.code, 0, `exit ${out.code} after ${ms} ms (${said.trim()}): ${out.stderr}`);
      assert.equal(said, "closed; the poll under way gave 0 part(s)\nthe consumer is closed\n");
      assert.ok(ms < 10_000, `the process ended ${ms} ms after it started`);
    } finally {
      await c.stop();
    }
  }));

Deno.test("a consumer closed while it reconnects (its broker gone) stops trying: the process ends", () =>
  withDeadline(60_000, "consumer close while reconnecting", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 1 });
    try {
      await produceTo(c, "gone", 0, valuesOf(0, 0, 100));
      const script = join(c.dir, "reconnect.ts");
      await Deno.writeTextFile(
        script,
        `import { Consumer } from ${JSON.stringify(new URL("../src/client/consumer.ts", import.meta.url).href)};
let retrying = () => {};
const retried = new Promise<void>((r) => (retrying = r));
const consumer = await Consumer.open({
  bootstrap: { zookeeper: { host: "127.0.0.1", port: ${c.zkPort} } },
  topic: "gone",
  fromBeginning: true,
  onRetry: () => retrying(),
});
await consumer.poll();
console.log("polled");
// The test stops the broker, then says go: the next poll's fetch finds its connection lost and reconnects.
for await (const _ of Deno.stdin.readable) break;
const polling = consumer.poll().then(() => "no error", (e) => e.message);
await retried; // under way: the first retry is said
await consumer.close();
console.log(await polling);
`,
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", ...PERMS, script],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let said = "";
      while (!said.includes("polled\n")) {
        const { value, done } = await lines.read();
        if (done) break;
        said += value;
      }
      await c.brokers.get(1)!.stop();
      const started = performance.now();
      const stdin = child.stdin.getWriter();
      await stdin.write(new TextEncoder().encode("go\n"));
      await stdin.close();
      for (let r = await lines.read(); !r.done; r = await lines.read()) said += r.value;
      const status = await child.status;
      clearTimeout(timer);
      const ms = Math.round(performance.now() - started);
      const stderr = await new Response(child.stderr).text();
      // Before, the reconnection went on for its whole deadline (60 s): killed at 20 s.
      assert.equal(status.code, 0, `exit ${status.code} after ${ms} ms (${said.trim()}): ${stderr}`);
      assert.equal(said, "polled\nthe consumer is closed\n");
      assert.ok(ms < 10_000, `the process ended ${ms} ms after the broker stopped`);
    } finally {
      await c.stop();
    }
  }));

Deno.test("a read_committed fetch says where each partition's committed records end, which a consumer's lanes go by", () =>
  withDeadline(60_000, "consume lanes, read_committed", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 2 });
    let txn: Producer | null = null;
    let conn: Connection | null = null;
    try {
      await produceTo(c, "txn", 1, valuesOf(1, 0, 5));
      // Ten records in partition 0 in a transaction left open: its high watermark is 10, its last stable offset 0.
      txn = await Producer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
        topic: "txn",
        partition: 0,
        transactionalId: "open-one",
      });
      for (const v of valuesOf(0, 0, 10)) txn.add(null, v);
      await txn.flush();
      conn = await Connection.open("127.0.0.1", (await c.lease()).port);
      const fetch = (isolation: string) =>
        conn!.request({ type: "fetch", topics: { txn: { "0": 0, "1": 5 } }, maxWaitMs: 0, isolation }, 10_000);
      const committed = await fetch("read_committed");
      assert.deepEqual(committed.hw, { txn: { "0": 10, "1": 5 } });
      // Without it, a consumer took partition 0 (at 0, below 10) for one with records left, and its lanes' shares
      // were counted with it: a lane that could have fetched the others waited for its long poll.
      assert.deepEqual(committed.lso, { txn: { "0": 0, "1": 5 } });
      const uncommitted = await fetch("read_uncommitted");
      assert.deepEqual(uncommitted.hw, { txn: { "0": 10, "1": 5 } });
      assert.equal(uncommitted.lso, undefined);
    } finally {
      conn?.close();
      await txn?.abortTransaction().catch(() => {});
      await txn?.close();
      await c.stop();
    }
  }));
