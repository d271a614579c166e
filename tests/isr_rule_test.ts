/**
 * The in-sync rule against a slow follower: one behind a 256 kbit/s link
 * holds every acks=all producer to its pace, so it must leave the set within
 * `--replica-lag-ms`. Before, it reached at every fetch what the leader had
 * at its previous one (the producers wait for it, so the log grew only as fast
 * as it copied), counted as caught up, and never left.
 */
import assert from "node:assert/strict";
import { Producer } from "../src/client/producer.ts";
import type { Lease } from "../src/protocol/messages.ts";
import { alone, kcatMissing, leaseAt, Proc, run, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { Relay } from "./relay.ts";

const LAG_MS = 3000;

Deno.test("a follower behind a slow link leaves the in-sync set within --replica-lag-ms; acks=all speeds up", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-test-isr-rule-" });
  const procs: Proc[] = [];
  const relays: Relay[] = [];
  let producer: Producer | null = null;
  try {
    await withDeadline(90_000, "slow follower", async () => {
      const zk = new Proc("zookeeper", ["zookeeper", "--port", "0", "--data", dir]);
      procs.push(zk);
      const zkPort = Number((await zk.waitFor(/^zookeeper listening on [\d.]+:(\d+)$/))[1]);
      const realPorts = new Map<number, number>();
      // Every broker is reached through its own relay, so the leader's replies to broker 3 can be slowed.
      const relayOf = new Map<number, Relay>();
      for (const id of [1, 2, 3]) relayOf.set(id, new Relay(() => realPorts.get(id), 0, 0));
      relays.push(...relayOf.values());
      const lease = () => leaseAt(zkPort);
      const waitLease = async (pred: (l: Lease) => boolean) => {
        for (let i = 0; i < 200; i++) {
          const l = await lease().catch(() => null);
          if (l && pred(l)) return l;
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error("lease condition not met");
      };
      const start = async (id: number) => {
        const proc = new Proc(`broker-${id}`, [
          "broker",
          ...[
            "--id",
            String(id),
            "--port",
            "0",
            "--kafka-port",
            "-1",
            "--data",
            dir,
            "--zookeeper",
            `127.0.0.1:${zkPort}`,
          ],
          ...["--advertised-native-port", String(relayOf.get(id)!.port), "--partitions", "1"],
          ...["--replica-lag-ms", String(LAG_MS)],
        ]);
        procs.push(proc);
        realPorts.set(id, Number((await proc.waitFor(/^broker \d+ listening on [\d.]+:(\d+)$/))[1]));
      };
      await start(1);
      await waitLease((l) => l.leaderId === 1);
      await Promise.all([start(2), start(3)]);
      await waitLease((l) => l.isr.length === 3);

      // Small batches, as a producer of a trickle sends them: each fetch then carries little, so the slow
      // follower finishes every fetch quickly, and the old rule (caught up = reached the leader's end as of
      // its previous fetch) kept it in the set for good, at ~200 records/s for everyone.
      producer = await Producer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: zkPort } },
        topic: "slow",
        batchRecords: 20,
      });
      const p = producer;
      const acks: { ms: number; records: number }[] = [];
      const t0 = performance.now();
      let throttledAt = -1;
      let leftAt = -1;
      const isrOverTime: string[] = [];
      let lastIsr = "";
      while (performance.now() - t0 < 12_000 && (leftAt < 0 || performance.now() - t0 < leftAt + 3000)) {
        for (let i = 0; i < 100; i++) p.add(null, `r${i}`.padEnd(100, "x"));
        await p.waitForRoom();
        const now = performance.now() - t0;
        acks.push({ ms: now, records: p.ackedRecords });
        if (throttledAt < 0 && now > 2000) {
          // From here the leader's replies to broker 3's fetches go at 256 kbit/s.
          relayOf.get(1)!.throttle = {
            pick: (text) => text.includes('"brokerId":3'),
            bytesPerSec: 32_000,
          };
          throttledAt = now;
        }
        const l = await lease();
        const isr = l.isr.join(",");
        if (isr !== lastIsr) isrOverTime.push(`${Math.round(now)} ms: [${isr}]`);
        lastIsr = isr;
        if (throttledAt >= 0 && leftAt < 0 && !l.isr.includes(3)) leftAt = now;
        await new Promise((r) => setTimeout(r, 10));
      }
      const rate = (fromMs: number, toMs: number) => {
        const inside = acks.filter((a) => a.ms >= fromMs && a.ms <= toMs);
        if (inside.length < 2) return 0;
        const first = inside[0], last = inside[inside.length - 1];
        return Math.round((last.records - first.records) * 1000 / Math.max(1, last.ms - first.ms));
      };
      const before = rate(500, throttledAt);
      const slowed = rate(throttledAt + 300, leftAt > 0 ? leftAt : Infinity);
      const after = leftAt > 0 ? rate(leftAt + 300, Infinity) : 0;
      console.log(
        `in-sync set over time: ${isrOverTime.join("; ")}; throttled at ${Math.round(throttledAt)} ms, broker 3 left ` +
          `${leftAt > 0 ? `${Math.round(leftAt - throttledAt)} ms later` : "never"}; acks=all ${before} records/s ` +
          `before, ${slowed} behind the slow follower, ${after} after it left`,
      );
      assert.ok(leftAt > 0, "the slow follower never left the in-sync set");
      // Within the lag limit, plus the proposal's way through the zookeeper and this loop's own pace.
      assert.ok(leftAt - throttledAt <= LAG_MS + 1000, `left ${leftAt - throttledAt} ms after the link slowed`);
      assert.ok(after > slowed * 2, `acks=all did not speed up once it left (${slowed} -> ${after} records/s)`);
      await p.flush();
    });
  } finally {
    await (producer as Producer | null)?.close().catch(() => {});
    await Promise.all(procs.map((p) => p.stop()));
    await Promise.all(relays.map((r) => r.close()));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** The largest `caughtUpMsAgo` the leader reports for any follower now (`yak status --json`), or -1. */
async function worstFollowerLagMs(c: TestCluster): Promise<number> {
  const out = await yak(["status", "--json", ...c.zkFlag], { timeoutMs: 10_000 });
  if (out.code !== 0) return -1;
  const status = JSON.parse(out.stdout) as {
    views: { role?: string; replication?: { followers: { caughtUpMsAgo: number }[] } | null }[];
  };
  const leader = status.views.find((v) => v.role === "leader");
  return Math.max(-1, ...(leader?.replication?.followers ?? []).map((f) => f.caughtUpMsAgo));
}

Deno.test({
  name: "healthy followers copying a burst of 1000 records of 500 KB stay in sync; nothing is stored twice",
  ignore: skipWithout(kcatMissing()),
  fn: () =>
    // Loads both cores on purpose: no other test file's cluster runs beside it (see alone in harness.ts).
    alone(() =>
      withDeadline(180_000, "large burst", async () => {
        const c = await TestCluster.start({ brokers: 3, partitions: 1 });
        try {
          await c.waitFor((l) => l.isr.length === 3);
          const zkLogPath = `${c.dir}/zookeeper/zookeeper.log`;
          const zkLogBefore = (await Deno.readTextFile(zkLogPath)).length;
          // 1000 records of 500 KB (one line each), librdkafka's batching, acks=all, not idempotent: a record
          // refused after it was appended (NOT_ENOUGH_REPLICAS, 19) is resent and stored twice.
          const file = `${c.dir}/big.txt`;
          const f = await Deno.open(file, { write: true, create: true });
          const body = "y".repeat(500 * 1024 - 8);
          for (let i = 0; i < 1000; i++) {
            await f.write(new TextEncoder().encode(`${String(i).padStart(7, "0")}${body}\n`));
          }
          f.close();
          let worstMs = -1;
          let sampling = true;
          const sampler = (async () => {
            while (sampling) {
              worstMs = Math.max(worstMs, await worstFollowerLagMs(c));
              await new Promise((r) => setTimeout(r, 200));
            }
          })();
          const t0 = performance.now();
          const p = await run("kcat", [
            "-P",
            ...["-b", c.bootstrapServers, "-t", "big", "-p", "0", "-X", "acks=all", "-X", "message.max.bytes=1000000"],
            "-l",
            file,
          ], { timeoutMs: 150_000 });
          const burstMs = performance.now() - t0;
          sampling = false;
          await sampler;
          assert.equal(p.code, 0, p.stderr);
          const after = await c.lease();
          const isrChanges = (await Deno.readTextFile(zkLogPath)).slice(zkLogBefore).split("\n")
            .filter((l) => l.includes('"isr_changed"'));
          const offsets = await yak([
            "consume",
            "--topic",
            "big",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%o\\n",
            ...c.zkFlag,
          ], {
            timeoutMs: 120_000,
          });
          const stored = offsets.stdout.split("\n").filter((l) => l.length > 0).length;
          console.log(
            `1000 records of 500 KB through kcat in ${(burstMs / 1000).toFixed(1)} s; the longest a follower was not ` +
              `caught up: ${worstMs} ms; in-sync set changes: ${isrChanges.length}; ${stored} records stored`,
          );
          assert.deepEqual(after.isr, [1, 2, 3], "a healthy follower left the in-sync set");
          assert.equal(stored, 1000, "records refused after their append were stored again");
        } finally {
          await c.stop();
        }
      })
    ),
});
