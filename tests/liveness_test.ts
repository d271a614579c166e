/**
 * Liveness is not event-loop latency: a broker busy with requests, or a
 * machine whose cores are both taken, keeps its leadership, because its
 * zookeeper session runs on its own thread. Before, librdkafka at full speed
 * into one partition made the zookeeper declare the leader dead about a
 * second in (`broker_dead silentMs=1125`) and elect another.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Producer } from "../src/client/producer.ts";
import { Inspector } from "./inspector.ts";
import { alone, kcatMissing, Proc, run, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { KafkaConn, produceBody, produceError, produceErrors, textBatch } from "./kafka_conn.ts";

/** The zookeeper's elections so far (its operation log's `leader_elected` lines). */
async function elections(c: TestCluster): Promise<string[]> {
  const text = await Deno.readTextFile(join(c.dir, "zookeeper", "zookeeper.log"));
  return text.split("\n").filter((l) => l.includes('"leader_elected"') || l.includes('"broker_dead"'));
}

/** The longest event-loop stall each broker reports (`yak status --json`), in ms. */
async function longestStalls(c: TestCluster): Promise<number[]> {
  const out = await yak(["status", "--json", ...c.zkFlag]);
  assert.equal(out.code, 0, out.stderr);
  const status = JSON.parse(out.stdout) as { views: { brokerId: number; eventLoop?: { longestStallMs: number } }[] };
  return status.views.sort((a, b) => a.brokerId - b.brokerId).map((v) => v.eventLoop?.longestStallMs ?? -1);
}

const RECORDS = 1_000_000;

Deno.test({
  name: "a librdkafka burst of 1M records into one partition, then both cores hogged: no election, nothing lost",
  ignore: skipWithout(kcatMissing()),
  fn: () =>
    // Loads both cores on purpose: no other test file's cluster runs beside it (see alone in harness.ts).
    alone(() =>
      withDeadline(180_000, "liveness", async () => {
        // A short session (as on a fast network), so a stall of the broker thread of a few hundred ms would
        // be a missed session if heartbeats waited behind it.
        const c = await TestCluster.start({ brokers: 3, partitions: 1, heartbeatMs: 50, sessionTimeoutMs: 300 });
        try {
          const before = await elections(c);
          // 1M records of 100 bytes, kcat's (librdkafka's) default batching, acks=all, into partition 0.
          const file = join(c.dir, "burst.txt");
          const line = "x".repeat(93);
          await Deno.writeTextFile(
            file,
            Array.from({ length: RECORDS }, (_, i) => `${String(i).padStart(6, "0")}${line}\n`).join(""),
          );
          const t0 = performance.now();
          const p = await run("kcat", [
            "-P",
            "-b",
            c.bootstrapServers,
            "-t",
            "burst",
            "-p",
            "0",
            "-X",
            "acks=all",
            "-l",
            file,
          ], {
            timeoutMs: 120_000,
          });
          assert.equal(p.code, 0, p.stderr);
          const burstMs = performance.now() - t0;
          const stalls = await longestStalls(c);
          const afterBurst = await elections(c);

          // Both cores taken by busy loops for 20 s while a yak producer writes.
          const hogs = [0, 1].map(() =>
            new Deno.Command("timeout", {
              args: ["20", "sh", "-c", "while :; do :; done"],
              stdout: "null",
              stderr: "null",
            })
              .spawn()
          );
          const producer = await Producer.open({
            bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
            topic: "hog",
            acks: "all",
          });
          let sent = 0;
          try {
            const until = performance.now() + 20_000;
            while (performance.now() < until) {
              for (let i = 0; i < 200; i++) producer.add(null, `h${sent++}`);
              await producer.waitForRoom();
              await new Promise((r) => setTimeout(r, 20));
            }
            await producer.flush();
          } finally {
            await producer.close();
            for (const h of hogs) await h.status;
          }
          const afterHog = await elections(c);
          console.log(
            `burst of ${RECORDS} records through kcat in ${(burstMs / 1000).toFixed(1)} s; longest event-loop stall ` +
              `per broker ${stalls.join(" / ")} ms; elections or dead brokers: ${afterBurst.length - before.length} ` +
              `during the burst, ${afterHog.length - afterBurst.length} while both cores were hogged ` +
              `(${producer.ackedRecords} of ${sent} records acknowledged then)`,
          );
          assert.deepEqual(afterBurst.slice(before.length), [], "a broker was declared dead during the burst");
          assert.deepEqual(
            afterHog.slice(afterBurst.length),
            [],
            "a broker was declared dead while the cores were hogged",
          );
          assert.equal(producer.ackedRecords, sent);
          const counted = await yak([
            "consume",
            "--topic",
            "burst",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%o\\n",
            ...c.zkFlag,
          ], {
            timeoutMs: 60_000,
          });
          assert.equal(counted.code, 0, counted.stderr);
          assert.equal(
            counted.stdout.split("\n").filter((l) => l.length > 0).length,
            RECORDS,
            "every record stored once",
          );
        } finally {
          await c.stop();
        }
      })
    ),
});

Deno.test("large produce requests pipelined on one connection, one per read: the leader's timers still run every turn", () =>
  withDeadline(60_000, "pipelined requests", async () => {
    const c = await TestCluster.start({ brokers: 3, partitions: 1 });
    try {
      const leader = (await c.lease()).leaderId!;
      const k = await KafkaConn.open(c.kafkaPorts.get(leader)!);
      try {
        // 24 requests of 8,000 records (about 0.9 MB each, so each read of the leader holds about one):
        // each takes 20-35 ms of the broker thread to decode and store. The topic does not exist yet:
        // the first request creates it, and the others wait in line for that.
        const values = Array.from({ length: 8000 }, (_, i) => `${String(i).padStart(6, "0")}${"x".repeat(94)}`);
        const body = produceBody("pipelined", 0, [textBatch(values)]);
        const replies = await k.pipeline(0, 7, false, Array.from({ length: 24 }, () => body));
        assert.deepEqual(replies.map(produceError), Array(24).fill(0));
      } finally {
        k.close();
      }
      // One request of 8 partitions x 0.9 MB: the leader yields between partitions.
      const made = await yak(["topics", "--create", "wide", "--partitions", "8", ...c.zkFlag]);
      assert.equal(made.code, 0, made.stderr);
      const wide = await KafkaConn.open(c.kafkaPorts.get(leader)!);
      try {
        const values = Array.from({ length: 8000 }, (_, i) => `${String(i).padStart(6, "0")}${"y".repeat(94)}`);
        const records = textBatch(values);
        const r = await wide.call(0, 7, false, (w) => {
          w.nullableString(null).int16(1).int32(10_000);
          w.array(["wide"], (w, name) => {
            w.string(name);
            w.array([0, 1, 2, 3, 4, 5, 6, 7], (w, p) => w.int32(p).nullableBytes(records));
          });
        });
        assert.deepEqual(produceErrors(r), Array(8).fill(0));
      } finally {
        wide.close();
      }
      const stalls = await longestStalls(c);
      console.log(
        `24 pipelined requests of 0.9 MB, then one of 8 partitions x 0.9 MB: longest event-loop stall per broker ` +
          `${stalls.join(" / ")} ms`,
      );
      // Before, each read started a new time budget, so the requests ran back to back without the event
      // loop's timers getting a turn (246-256 ms); and the batches that waited for the topic went on in one
      // synchronous run once it was made (372 ms); the 8 partitions of one request were decoded and stored in
      // one stretch.
      assert.ok(stalls[leader - 1] < 150, `the leader's longest stall was ${stalls[leader - 1]} ms`);
    } finally {
      await c.stop();
    }
  }));

/**
 * Pauses the main thread of the deno process whose inspector prints `proc`'s
 * "Debugger listening on ws://..." line for `ms` (its workers run on), as a
 * request that held the thread that long would.
 */
async function holdMainThread(proc: Proc, ms: number): Promise<void> {
  const inspector = await Inspector.of(proc);
  const pausedNow = new Promise<void>((resolve) => inspector.on("Debugger.paused", () => resolve()));
  try {
    await inspector.call("Debugger.enable");
    await inspector.call("Debugger.pause");
    await pausedNow; // at the next JavaScript the thread runs (its 50 ms lag probe at the latest)
    await new Promise((r) => setTimeout(r, ms));
    await inspector.call("Debugger.resume");
  } finally {
    inspector.close();
  }
}

Deno.test("a broker thread held for over half a second does not cost the leader its leadership", () =>
  withDeadline(60_000, "stalled leader", async () => {
    const c = await TestCluster.start({
      brokers: 3,
      partitions: 1,
      heartbeatMs: 100,
      sessionTimeoutMs: 500,
      brokerDenoFlags: ["--inspect=127.0.0.1:0"],
    });
    try {
      const leader = (await c.lease()).leaderId!;
      const before = await elections(c);
      // The broker thread (not its zookeeper worker) stopped for 600 ms, as one request holding it would:
      // a million empty headers on one Kafka record did, 0.5-1.9 s, before headers were capped.
      await holdMainThread(c.brokers.get(leader)!, 600);
      // Waiting for something that must not happen (a broker declared dead): three sessions' worth.
      await new Promise((r) => setTimeout(r, 1500));
      const stalls = await longestStalls(c);
      const after = await elections(c);
      console.log(
        `longest event-loop stall per broker: ${stalls.join(" / ")} ms (session 500 ms); ` +
          `elections or dead brokers since: ${after.length - before.length}`,
      );
      // The test means something only if the stall happened, long enough that a lease kept on the broker
      // thread would have lapsed (75% of the session).
      assert.ok(stalls[leader - 1] >= 375, `the leader's longest stall was only ${stalls[leader - 1]} ms`);
      assert.deepEqual(after.slice(before.length), [], "the stalled leader was declared dead");
      assert.equal((await c.lease()).leaderId, leader);
    } finally {
      await c.stop();
    }
  }));
