/**
 * Network partitions on a real network: the zookeeper and three brokers on
 * their own addresses in network namespaces (tests/netns.ts), producers in
 * the root namespace. The leader cut from the zookeeper only, the leader cut
 * from both followers only, and 30% packet loss on every link for 30 s, each
 * while three in-process acks=all producers keep writing through the whole
 * fault. After each: every acknowledged record is read back exactly once, the
 * in-sync replicas are byte-identical, and no acknowledgement came from a
 * fenced leader: every acknowledged batch names the broker and leader epoch
 * that answered and when (the broker's clock at its lease check), and each is
 * checked against the zookeeper's elections in its op log. Skips where
 * namespaces cannot be made, with the reason.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Acknowledgement, Producer } from "../src/client/producer.ts";
import { eventually, segmentHashes, skipWithout, withDeadline, yak } from "./harness.ts";
import { NetCluster, netnsUnavailable } from "./netns.ts";

const unavailable = netnsUnavailable();
if (unavailable) console.log(`partition tests skipped: ${unavailable}`);

/** An acknowledgement as one of the test's producers received it. */
interface TimedAck extends Acknowledgement {
  /** Which of the test's producers it answered. */
  producer: number;
  /** Wall-clock ms when this process received it. */
  receivedAt: number;
}

/** A lease the zookeeper issued: from `issuedAt` (wall-clock ms) on, `leader` leads under `epoch`. */
interface Election {
  epoch: number;
  leader: number;
  issuedAt: number;
}

/** The zookeeper declared `broker` dead at `at`; it had last heard from it at `lastHeardAt` (wall-clock ms). */
interface Death {
  broker: number;
  lastHeardAt: number;
  at: number;
}

/** What the zookeeper's op log says about leadership. */
interface ZkHistory {
  elections: Election[];
  deaths: Death[];
  /** The session timeout (the lease's ttlMs). */
  ttlMs: number;
}

/**
 * What in `acks` a fenced leader answered, as one line each (none: empty).
 * A broker may acknowledge under epoch e only if the zookeeper made it the
 * leader of e; only before the zookeeper issued any later epoch; and, once the
 * zookeeper declared it dead, only before its lease lapsed: a leader stops at
 * 75% of the session after the last heartbeat the zookeeper heard
 * (docs/ARCHITECTURE.md), a quarter session before the zookeeper may elect.
 * And each producer's acknowledgements never go back to an older epoch.
 */
function fencingViolations(acks: readonly TimedAck[], zk: ZkHistory): string[] {
  const out: string[] = [];
  const lastEpoch = new Map<number, number>();
  for (const a of acks) {
    const what = `broker ${a.brokerId}'s acknowledgement of ${a.records} records (partition ${a.partition}, offset ` +
      `${a.baseOffset}) under epoch ${a.epoch}`;
    const el = zk.elections.find((e) => e.epoch === a.epoch);
    if (!el) out.push(`${what}: the zookeeper never issued epoch ${a.epoch}`);
    else if (el.leader !== a.brokerId) out.push(`${what}: the zookeeper made broker ${el.leader} leader of it`);
    const newer = zk.elections.filter((e) => e.epoch > a.epoch).sort((x, y) => x.issuedAt - y.issuedAt)[0];
    if (newer && a.ackedAt >= newer.issuedAt) {
      out.push(`${what}: given ${a.ackedAt - newer.issuedAt} ms after epoch ${newer.epoch} was issued`);
    }
    for (const d of zk.deaths) {
      // 5 ms for the op log's whole milliseconds and the rounding of silentMs.
      const lapsedAt = d.lastHeardAt + zk.ttlMs * 0.75 + 5;
      if (d.broker === a.brokerId && el && el.issuedAt < d.at && a.ackedAt >= lapsedAt) {
        out.push(`${what}: given ${a.ackedAt - lapsedAt} ms after its lease lapsed (the zookeeper declared it dead)`);
      }
    }
    const prev = lastEpoch.get(a.producer) ?? -Infinity;
    if (a.epoch < prev) out.push(`${what}: producer ${a.producer} had an acknowledgement under epoch ${prev} before`);
    lastEpoch.set(a.producer, Math.max(prev, a.epoch));
  }
  return out;
}

/** The zookeeper's elections and deaths, from its op log. */
async function zkHistory(c: NetCluster, ttlMs: number): Promise<ZkHistory> {
  const text = await Deno.readTextFile(join(c.dir, "zookeeper", "zookeeper.log"));
  const zk: ZkHistory = { elections: [], deaths: [], ttlMs };
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const e = JSON.parse(line);
    const at = Date.parse(e.ts);
    // Written once the lease is stored: it was issued writeMs before.
    if (e.event === "leader_elected") zk.elections.push({ epoch: e.epoch, leader: e.leader, issuedAt: at - e.writeMs });
    if (e.event === "broker_dead" && typeof e.silentMs === "number") {
      zk.deaths.push({ broker: e.broker, lastHeardAt: at - e.silentMs, at });
    }
  }
  return zk;
}

/** An in-process acks=all producer that adds records every 20 ms until finished, noting every acknowledgement. */
class Feed {
  added = 0;
  #stop = false;
  #feeder: Promise<void>;

  private constructor(readonly producer: Producer, readonly index: number) {
    this.#feeder = (async () => {
      while (!this.#stop) {
        for (let i = 0; i < 10; i++) producer.add(null, `p${index}-${this.added++}`);
        await producer.waitForRoom();
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }

  static async start(c: NetCluster, topic: string, index: number, acks: TimedAck[]): Promise<Feed> {
    const producer = await Producer.open({
      bootstrap: { zookeeper: { host: c.ip("zk"), port: 2181 } },
      topic,
      acks: "all",
      onAck: (a) => acks.push({ ...a, producer: index, receivedAt: Date.now() }),
    });
    return new Feed(producer, index);
  }

  /** Stops adding, waits until everything added is acknowledged, and closes. */
  async finish(): Promise<void> {
    this.#stop = true;
    await this.#feeder;
    await this.producer.flush(60_000);
    await this.producer.close();
  }

  /** Stops without waiting (a failed test). */
  async abort(): Promise<void> {
    this.#stop = true;
    await this.#feeder.catch(() => {});
    await this.producer.close().catch(() => {});
  }
}

/** What one fault did to the load. */
interface Run {
  acks: TimedAck[];
  expected: Set<string>;
  /** Wall-clock ms when the fault began and when it was healed. */
  faultAt: number;
  healedAt: number;
  /** Records the producers added while the fault lasted. */
  addedDuring: number;
}

/**
 * Three producers write until each has some acknowledgements, keep writing
 * while `fault` runs (it cuts, waits, heals), write on for a second after,
 * and then have everything acknowledged.
 */
async function underLoad(c: NetCluster, topic: string, fault: () => Promise<void>): Promise<Run> {
  const acks: TimedAck[] = [];
  const feeds: Feed[] = [];
  try {
    for (let i = 0; i < 3; i++) feeds.push(await Feed.start(c, topic, i, acks));
    await eventually(() => feeds.every((f) => acks.some((a) => a.producer === f.index)), 15_000, "first acks");
    const addedBefore = feeds.reduce((n, f) => n + f.added, 0);
    const faultAt = Date.now();
    await fault();
    const healedAt = Date.now();
    const addedDuring = feeds.reduce((n, f) => n + f.added, 0) - addedBefore;
    await new Promise((r) => setTimeout(r, 1000));
    await Promise.all(feeds.map((f) => f.finish()));
    const expected = new Set<string>();
    for (const f of feeds) {
      for (let n = 0; n < f.added; n++) expected.add(`p${f.index}-${n}`);
    }
    const acked = acks.reduce((n, a) => n + a.records, 0);
    assert.equal(acked, expected.size, "every record added was acknowledged once");
    return { acks, expected, faultAt, healedAt, addedDuring };
  } catch (err) {
    await Promise.all(feeds.map((f) => f.abort()));
    throw err;
  }
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
  ], { timeoutMs: 60_000 });
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

/** Checks that no fenced leader acknowledged anything; returns the epochs seen, for the figures. */
async function assertNoFencedAck(c: NetCluster, run: Run, ttlMs: number): Promise<string> {
  const zk = await zkHistory(c, ttlMs);
  const els = zk.elections;
  const bad = fencingViolations(run.acks, zk);
  assert.deepEqual(bad.slice(0, 5), [], `${bad.length} acknowledgements from a fenced leader`);
  const byEpoch = new Map<number, number>();
  for (const a of run.acks) byEpoch.set(a.epoch, (byEpoch.get(a.epoch) ?? 0) + a.records);
  return [...byEpoch].sort((x, y) => x[0] - y[0]).map(([e, n]) =>
    `epoch ${e} (broker ${els.find((x) => x.epoch === e)?.leader}): ${n}`
  ).join(", ");
}

const during = (run: Run) => run.acks.filter((a) => a.receivedAt >= run.faultAt && a.receivedAt <= run.healedAt);

Deno.test("fencingViolations finds acknowledgements from a fenced leader, from a wrong leader, and a step back in epoch", () => {
  // Broker 1 led epoch 1, was last heard at 3000, declared dead at 4100; broker 2 leads epoch 2 from 4200.
  const zk: ZkHistory = {
    elections: [{ epoch: 1, leader: 1, issuedAt: 1000 }, { epoch: 2, leader: 2, issuedAt: 4200 }],
    deaths: [{ broker: 1, lastHeardAt: 3000, at: 4100 }],
    ttlMs: 1000,
  };
  const ack = (producer: number, brokerId: number, epoch: number, ackedAt: number): TimedAck => ({
    partition: 0,
    baseOffset: 0,
    records: 10,
    duplicate: false,
    brokerId,
    epoch,
    ackedAt,
    producer,
    receivedAt: ackedAt + 1,
  });
  assert.deepEqual(fencingViolations([ack(0, 1, 1, 3754), ack(0, 2, 2, 4201), ack(1, 1, 1, 2000)], zk), []);
  const bad = fencingViolations([ack(0, 1, 1, 3755), ack(0, 1, 1, 4200), ack(1, 1, 2, 6000), ack(1, 1, 1, 3000)], zk);
  assert.deepEqual(bad.map((l) => l.replace(/^.*under epoch \d: /, "")), [
    "given 0 ms after its lease lapsed (the zookeeper declared it dead)",
    "given 0 ms after epoch 2 was issued",
    "given 445 ms after its lease lapsed (the zookeeper declared it dead)",
    "the zookeeper made broker 2 leader of it",
    "producer 1 had an acknowledgement under epoch 2 before",
  ]);
  assert.match(fencingViolations([ack(0, 3, 3, 7000)], zk)[0], /never issued epoch 3/);
});

Deno.test({
  name:
    "partition: the leader cut from the zookeeper only, under load; a new leader takes over, the old one acknowledges nothing after, nothing lost",
  ignore: skipWithout(unavailable),
  fn: () =>
    withDeadline(90_000, "leader cut from the zookeeper", async () => {
      const c = await NetCluster.start();
      try {
        const before = await c.lease();
        const old = `b${before.leaderId}`;
        let electedMs = 0;
        const run = await underLoad(c, "cutzk", async () => {
          const at = performance.now();
          await c.cut(old, "zk");
          const after = await c.waitFor((l) => l.epoch > before.epoch && l.leaderId !== null, 15_000);
          electedMs = performance.now() - at;
          assert.notEqual(after.leaderId, before.leaderId);
          await new Promise((r) => setTimeout(r, 3000));
          await c.heal(old);
        });
        const epochs = await assertNoFencedAck(c, run, before.ttlMs);
        const { read } = await assertExactlyOnce(c, "cutzk", run.expected);
        await c.waitFor((l) => l.isr.length === 3, 30_000);
        await assertReplicasIdentical(c, [1, 2, 3], "cutzk");
        const oldLog = await Deno.readTextFile(join(c.dir, `broker-${before.leaderId}`, "broker.log"));
        assert.match(oldLog, /"stepped_down"/);
        const zk = await zkHistory(c, before.ttlMs);
        const next = zk.elections.find((e) => e.epoch > before.epoch)!;
        const death = zk.deaths.find((d) => d.broker === before.leaderId);
        assert.ok(death, "the zookeeper never declared the cut leader dead");
        const lapsedAt = death.lastHeardAt + before.ttlMs * 0.75;
        const lastOld = Math.max(...run.acks.filter((a) => a.epoch === before.epoch).map((a) => a.ackedAt));
        const firstNew = Math.min(...run.acks.filter((a) => a.epoch > before.epoch).map((a) => a.receivedAt));
        console.log(
          `leader ${before.leaderId} cut from the zookeeper under load: new leader ${next.leader} in ` +
            `${Math.round(electedMs)} ms, first acknowledgement from it ${firstNew - run.faultAt} ms after the cut; ` +
            `old leader's last acknowledgement ${lapsedAt - lastOld} ms before its lease lapsed, ` +
            `${next.issuedAt - lastOld} ms before epoch ${next.epoch} was issued; ` +
            `${run.addedDuring} records added and ${during(run).reduce((n, a) => n + a.records, 0)} acknowledged ` +
            `during the cut; acknowledged by ${epochs}; ${read} records read, 0 lost, 0 duplicated; replicas identical`,
        );
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name:
    "partition: the leader cut from both followers (it still reaches the zookeeper and clients), under load; nothing lost",
  ignore: skipWithout(unavailable),
  fn: () =>
    withDeadline(90_000, "leader cut from its followers", async () => {
      const c = await NetCluster.start();
      try {
        const before = await c.lease();
        const old = `b${before.leaderId}`;
        const followers = [1, 2, 3].filter((id) => id !== before.leaderId);
        let shrunk = "";
        const run = await underLoad(c, "cutf", async () => {
          for (const f of followers) await c.cut(old, `b${f}`);
          // The leader drops them from the in-sync set; acks=all then waits (min.insync.replicas=2).
          const l = await c.waitFor((x) => x.isr.length === 1 || x.leaderId !== before.leaderId, 15_000);
          shrunk = `in-sync set ${JSON.stringify(l.isr)} (epoch ${l.epoch})`;
          await new Promise((r) => setTimeout(r, 2000));
          await c.heal(old);
        });
        const epochs = await assertNoFencedAck(c, run, before.ttlMs);
        const { read } = await assertExactlyOnce(c, "cutf", run.expected);
        await c.waitFor((l) => l.isr.length === 3, 30_000);
        await assertReplicasIdentical(c, [1, 2, 3], "cutf");
        console.log(
          `leader ${before.leaderId} cut from its followers under load: ${shrunk}; ${run.addedDuring} records ` +
            `added and ${during(run).reduce((n, a) => n + a.records, 0)} acknowledged during the cut; ` +
            `acknowledged by ${epochs}; ${read} records read, 0 lost, 0 duplicated; replicas identical`,
        );
      } finally {
        await c.stop();
      }
    }),
});

Deno.test({
  name: "partition: 30% packet loss on every link for 30 s under load; nothing lost, nothing duplicated",
  ignore: skipWithout(unavailable),
  fn: () =>
    withDeadline(120_000, "lossy links", async () => {
      const c = await NetCluster.start();
      try {
        const before = await c.lease();
        const run = await underLoad(c, "lossy", async () => {
          await c.lossy(0.3);
          await new Promise((r) => setTimeout(r, 30_000));
          for (const h of c.hosts.keys()) await c.heal(h);
        });
        const epochs = await assertNoFencedAck(c, run, before.ttlMs);
        const after = await c.lease();
        const { read } = await assertExactlyOnce(c, "lossy", run.expected);
        const lease = await c.waitFor((l) => l.isr.length === 3, 30_000);
        await assertReplicasIdentical(c, lease.isr, "lossy");
        const ackedDuring = during(run).reduce((n, a) => n + a.records, 0);
        assert.ok(ackedDuring > 0, "nothing was acknowledged during the 30 s of loss");
        console.log(
          `30% loss on every link for 30 s under load: epoch ${before.epoch} -> ${after.epoch}; ` +
            `${run.addedDuring} records added and ${ackedDuring} acknowledged during the loss; acknowledged by ` +
            `${epochs}; ${read} records read, 0 lost, 0 duplicated; replicas identical`,
        );
      } finally {
        await c.stop();
      }
    }),
});
