/**
 * Network partitions on a real network: the zookeeper and three brokers on
 * their own addresses in network namespaces (tests/netns.ts), producers in
 * the root namespace. The leader cut from the zookeeper only, the leader cut
 * from both followers only, and packet loss on every link, each under acks=all
 * load. After each: every acknowledged record is read back exactly once, and
 * the in-sync replicas are byte-identical. (A fenced leader that acknowledged
 * anything would show up as a lost or duplicated record.) Skips where
 * namespaces cannot be made, with the reason.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, Proc, segmentHashes, withDeadline, yak } from "./harness.ts";
import { NetCluster, netnsUnavailable } from "./netns.ts";

const unavailable = netnsUnavailable();
if (unavailable) console.log(`partition tests skipped: ${unavailable}`);

/** Producers fed `perProducer` unique lines each, in chunks, with `during` run after the first chunks. */
async function load(
  c: NetCluster,
  topic: string,
  producers: number,
  perProducer: number,
  during: () => Promise<void>,
): Promise<{ procs: Proc[]; expected: Set<string> }> {
  const procs = Array.from(
    { length: producers },
    (_, i) => new Proc(`producer-${i}`, ["produce", "--topic", topic, "--quiet", ...c.zkFlag], { stdin: true }),
  );
  const expected = new Set<string>();
  const chunks = 20;
  const per = perProducer / chunks;
  for (let k = 0; k < chunks; k++) {
    await Promise.all(procs.map((p, i) => {
      const lines: string[] = [];
      for (let n = k * per; n < (k + 1) * per; n++) {
        const v = `p${i}-${n}`;
        lines.push(v);
        expected.add(v);
      }
      return p.write(lines.join("\n") + "\n");
    }));
    if (k === 3) await during();
    else await new Promise((r) => setTimeout(r, 100));
  }
  await Promise.all(procs.map((p) => p.closeStdin()));
  for (const p of procs) {
    const status = await p.status;
    assert.equal(status.code, 0, `${p.name}: ${p.lines.slice(-5).join("\n")}`);
  }
  return { procs, expected };
}

async function assertExactlyOnce(c: NetCluster, topic: string, expected: Set<string>) {
  const res = await yak([
    "consume",
    "--topic",
    topic,
    "--from-beginning",
    "--max-messages",
    String(expected.size),
    "--timeout-ms",
    "20000",
    "--quiet",
    ...c.zkFlag,
  ], { timeoutMs: 120_000 });
  assert.equal(res.code, 0, res.stderr);
  const seen = new Set<string>();
  let dups = 0;
  for (const v of res.stdout.split("\n")) {
    if (v === "") continue;
    if (seen.has(v)) dups++;
    seen.add(v);
  }
  const lost = [...expected].filter((v) => !seen.has(v)).length;
  assert.equal(lost, 0, `${lost} acknowledged records lost`);
  assert.equal(dups, 0, `${dups} records duplicated`);
  return { read: seen.size };
}

async function assertReplicasIdentical(c: NetCluster, ids: number[], topic: string) {
  let last = "";
  await eventually(
    async () => {
      const all = await Promise.all(ids.map((id) => segmentHashes(join(c.topicsDir(id), topic)).catch(() => null)));
      last = all.map((m) => (m ? `${m.size} files` : "?")).join(" / ");
      return all.every((m) => m !== null && JSON.stringify([...m].sort()) === JSON.stringify([...all[0]!].sort()));
    },
    30_000,
    `identical replicas (${last})`,
  );
}

Deno.test({
  name:
    "partition: the leader cut from the zookeeper only; a new leader takes over, the old one is fenced, nothing lost",
  ignore: unavailable !== null,
  fn: () =>
    withDeadline(120_000, "leader cut from the zookeeper", async () => {
      const c = await NetCluster.start();
      try {
        const before = await c.lease();
        const old = `b${before.leaderId}`;
        let electedMs = 0;
        const { expected } = await load(c, "cutzk", 3, 4000, async () => {
          const at = performance.now();
          await c.cut(old, "zk");
          const after = await c.waitFor((l) => l.epoch > before.epoch && l.leaderId !== null, 15_000);
          electedMs = performance.now() - at;
          assert.notEqual(after.leaderId, before.leaderId);
          await new Promise((r) => setTimeout(r, 3000));
          await c.heal(old);
        });
        const { read } = await assertExactlyOnce(c, "cutzk", expected);
        await c.waitFor((l) => l.isr.length === 3, 30_000);
        await assertReplicasIdentical(c, [1, 2, 3], "cutzk");
        const oldLog = await Deno.readTextFile(join(c.dir, `broker-${before.leaderId}`, "broker.log"));
        assert.match(oldLog, /"stepped_down"/);
        console.log(
          `leader ${before.leaderId} cut from the zookeeper: new leader in ${Math.round(electedMs)} ms; ` +
            `${read} records, 0 lost, 0 duplicated; replicas identical`,
        );
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "partition: the leader cut from both followers (it still reaches the zookeeper and clients); nothing lost",
  ignore: unavailable !== null,
  fn: () =>
    withDeadline(120_000, "leader cut from its followers", async () => {
      const c = await NetCluster.start();
      try {
        const before = await c.lease();
        const old = `b${before.leaderId}`;
        const followers = [1, 2, 3].filter((id) => id !== before.leaderId);
        let shrunk = "";
        const { expected } = await load(c, "cutf", 3, 4000, async () => {
          for (const f of followers) await c.cut(old, `b${f}`);
          // The leader drops them from the in-sync set; acks=all then waits (min.insync.replicas=2).
          const l = await c.waitFor((x) => x.isr.length === 1 || x.leaderId !== before.leaderId, 15_000);
          shrunk = `in-sync set ${JSON.stringify(l.isr)} (epoch ${l.epoch})`;
          await new Promise((r) => setTimeout(r, 2000));
          await c.heal(old);
        });
        const { read } = await assertExactlyOnce(c, "cutf", expected);
        await c.waitFor((l) => l.isr.length === 3, 30_000);
        await assertReplicasIdentical(c, [1, 2, 3], "cutf");
        console.log(
          `leader ${before.leaderId} cut from its followers: ${shrunk}; ${read} records, 0 lost, ` +
            `0 duplicated; replicas identical`,
        );
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "partition: 30% packet loss on every link for 20 s under load; nothing lost, nothing duplicated",
  ignore: unavailable !== null,
  fn: () =>
    withDeadline(180_000, "lossy links", async () => {
      const c = await NetCluster.start();
      try {
        const before = await c.lease();
        let epochs = "";
        const { expected } = await load(c, "lossy", 3, 4000, async () => {
          await c.lossy(0.3);
          await new Promise((r) => setTimeout(r, 20_000));
          for (const h of c.hosts.keys()) await c.heal(h);
          const after = await c.lease();
          epochs = `epoch ${before.epoch} -> ${after.epoch}`;
        });
        const { read } = await assertExactlyOnce(c, "lossy", expected);
        const lease = await c.waitFor((l) => l.isr.length === 3, 30_000);
        await assertReplicasIdentical(c, lease.isr, "lossy");
        console.log(`30% loss for 20 s: ${epochs}; ${read} records, 0 lost, 0 duplicated; replicas identical`);
      } finally {
        await c.stop();
      }
    }),
});
