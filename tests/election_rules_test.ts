/**
 * The zookeeper's election rules when its own lease cannot say who holds
 * what: a lease file lost (or garbled), brokers reporting the newest lease
 * they followed (`lease`), their logs' epoch and records, and the lines they
 * cut as damaged at start-up (`lost`). Fake brokers over real TCP register
 * with chosen reports and heartbeat; the lease tells who was elected.
 */
import assert from "node:assert/strict";
import { Connection } from "../src/protocol/connection.ts";
import type { LeaseView } from "../src/protocol/messages.ts";
import { Zookeeper } from "../src/zookeeper/zookeeper.ts";
import { writeLease } from "../src/zookeeper/lease_file.ts";
import type { Lease } from "../src/protocol/messages.ts";

interface Report {
  id: number;
  epoch: number;
  logEndTotal: number;
  lease?: LeaseView;
  lost?: number;
  /** It leads the lease's epoch (a leader reconnecting to a restarted zookeeper). */
  leading?: boolean;
  /** Its process registered before (it stayed up while the zookeeper restarted). */
  reconnecting?: boolean;
}

async function withZookeeper(brokers: number, fn: (zk: Zookeeper) => Promise<void>, lease?: Lease) {
  const dir = await Deno.makeTempDir({ prefix: "yak-election-" });
  // A new data root: no lease file, as after one was lost (or the one given).
  if (lease) {
    await Deno.mkdir(`${dir}/zookeeper`);
    await writeLease(`${dir}/zookeeper/leader.lease`, lease);
  }
  const zk = await Zookeeper.start({
    dataDir: dir,
    host: "127.0.0.1",
    port: 0,
    heartbeatMs: 100,
    sessionTimeoutMs: 1000,
    maxFrameBytes: 1 << 20,
    echo: false,
    expectedBrokers: brokers,
  });
  try {
    await fn(zk);
  } finally {
    await zk.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A broker as the zookeeper sees it: registers with `r`, then heartbeats with it every 100 ms. */
async function fakeBroker(port: number, r: Report): Promise<() => void> {
  const conn = await Connection.open("127.0.0.1", port);
  const said = { logEndTotal: r.logEndTotal, epoch: r.epoch, ...(r.lost ? { lost: r.lost } : {}) };
  await conn.request({
    type: "register",
    brokerId: r.id,
    host: "127.0.0.1",
    port: 9000 + r.id,
    instance: `i-${r.id}`,
    ...said,
    ...(r.lease ? { lease: r.lease } : {}),
    ...(r.leading ? { leading: true } : {}),
    ...(r.reconnecting ? { reconnecting: true } : {}),
  }, 2000);
  const timer = setInterval(
    () => conn.request({ type: "heartbeat", brokerId: r.id, ...said }, 2000).catch(() => {}),
    100,
  );
  return () => {
    clearInterval(timer);
    conn.close();
  };
}

async function elected(zk: Zookeeper, reports: Report[], waitMs = 5000, laterMs = 0, later: Report[] = []) {
  const stops: (() => void)[] = [];
  try {
    for (const r of reports) stops.push(await fakeBroker(zk.port, r));
    if (later.length > 0) {
      await new Promise((r) => setTimeout(r, laterMs));
      // Nobody was elected meanwhile (the lease has no leader, or none but a broker not yet registered).
      assert.ok(
        zk.lease.leaderId === null || !reports.some((r) => r.id === zk.lease.leaderId),
        `broker ${zk.lease.leaderId} was elected before the others were back`,
      );
      for (const r of later) stops.push(await fakeBroker(zk.port, r));
    }
    const deadline = performance.now() + waitMs;
    while (zk.lease.leaderId === null && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return zk.lease;
  } finally {
    for (const stop of stops) stop();
  }
}

Deno.test("the last in-sync broker cut damaged records: a broker outside the set that holds as much leads", () =>
  withZookeeper(3, async (zk) => {
    const lease = await elected(zk, [
      { id: 1, epoch: 5, logEndTotal: 2000, lost: 2000, lease: { epoch: 5, version: 9, isr: [1] } },
      { id: 2, epoch: 5, logEndTotal: 4000, lease: { epoch: 5, version: 7, isr: [1, 2] } },
      { id: 3, epoch: 5, logEndTotal: 4000, lease: { epoch: 5, version: 6, isr: [1, 2, 3] } },
    ]);
    assert.ok(lease.leaderId === 2 || lease.leaderId === 3, `broker ${lease.leaderId} leads`);
    assert.deepEqual(lease.isr, [lease.leaderId]);
    assert.ok(lease.epoch > 5, `epoch ${lease.epoch}`);
  }));

Deno.test("the last in-sync broker cut damaged records, and the only other left the set long ago: the damaged one leads", () =>
  withZookeeper(2, async (zk) => {
    // Broker 2 holds fewer records than broker 1 did before its cut: electing it would lose more.
    const lease = await elected(zk, [
      { id: 1, epoch: 5, logEndTotal: 2000, lost: 2000, lease: { epoch: 5, version: 9, isr: [1] } },
      { id: 2, epoch: 3, logEndTotal: 1000, lease: { epoch: 3, version: 2, isr: [1, 2] } },
    ]);
    assert.equal(lease.leaderId, 1);
  }));

Deno.test("an epoch is never issued twice: the epoch of a lease a broker followed counts, written in no log", () =>
  withZookeeper(2, async (zk) => {
    // Epoch 8 was an election with no write after it: the logs say 7.
    const lease = await elected(zk, [
      { id: 1, epoch: 7, logEndTotal: 10, lease: { epoch: 8, version: 4, isr: [1, 2] } },
      { id: 2, epoch: 7, logEndTotal: 10, lease: { epoch: 8, version: 4, isr: [1, 2] } },
    ]);
    assert.ok(lease.leaderId !== null);
    assert.ok(lease.epoch > 8, `epoch ${lease.epoch} issued again`);
  }));

Deno.test("the newest set a broker reports names a broker that is not back: nobody leads until it is", () =>
  withZookeeper(3, async (zk) => {
    // Broker 3 is stale (epoch 4, the most records); the newest set is [1, 2], and 2 is not back.
    const lease = await elected(zk, [
      { id: 1, epoch: 5, logEndTotal: 100, lease: { epoch: 5, version: 9, isr: [1, 2] } },
      { id: 3, epoch: 4, logEndTotal: 900, lease: { epoch: 4, version: 3, isr: [1, 2, 3] } },
    ], 2500);
    assert.equal(lease.leaderId, null, `broker ${lease.leaderId} leads without broker 2`);
  }));

Deno.test("after an outage of the whole in-sync set, the first one back waits for the rest: its log lost a tail they hold", () =>
  withZookeeper(3, async (zk) => {
    // Every broker of the set died (the cluster crashed); broker 1, the leader, lost its unflushed tail and is back
    // first. Before, it was elected at once and the others truncated 516 acknowledged records to its log.
    const lease = await elected(
      zk,
      [{ id: 1, epoch: 3, logEndTotal: 29_486, lease: { epoch: 3, version: 5, isr: [1, 2, 3] } }],
      8000,
      2000,
      [
        { id: 2, epoch: 3, logEndTotal: 30_000, lease: { epoch: 3, version: 5, isr: [1, 2, 3] } },
        { id: 3, epoch: 3, logEndTotal: 30_000, lease: { epoch: 3, version: 5, isr: [1, 2, 3] } },
      ],
    );
    assert.equal(lease.leaderId, 2, `broker ${lease.leaderId} leads`);
    assert.ok(lease.epoch > 3, `epoch ${lease.epoch}`);
    // Broker 1 is short of the records it lost: out of the set until it copied them back (before: kept in it).
    assert.deepEqual(lease.isr, [2, 3]);
  }, LEASE_3));

Deno.test("no lease, and a broker that held data has no lease.json: the zookeeper waits for every broker, no epoch twice", () =>
  withZookeeper(3, async (zk) => {
    // Broker 2 was dead through epoch 2 (led by 3, in sync [1, 3]) and lost its lease.json; the zookeeper lost its
    // lease. Before, broker 2 was elected alone in epoch 2 (issued twice) and the others truncated to its log.
    const lease = await elected(
      zk,
      [{ id: 2, epoch: 1, logEndTotal: 20_002 }],
      8000,
      2500,
      [
        { id: 1, epoch: 2, logEndTotal: 40_002, lease: { epoch: 2, version: 3, isr: [1, 3] } },
        { id: 3, epoch: 2, logEndTotal: 40_002, lease: { epoch: 2, version: 3, isr: [1, 3] } },
      ],
    );
    assert.ok(lease.leaderId === 1 || lease.leaderId === 3, `broker ${lease.leaderId} leads`);
    assert.ok(lease.epoch > 2, `epoch ${lease.epoch} issued twice`);
  }));

/** The lease file of the crash tests: epoch 3, broker 1 leads, all three in sync. */
const LEASE_3: Lease = {
  epoch: 3,
  leaderId: 1,
  host: "127.0.0.1",
  port: 9001,
  isr: [1, 2, 3],
  issuedAt: 0,
  ttlMs: 1000,
  version: 5,
};
const VIEW_3 = { epoch: 3, version: 5, isr: [1, 2, 3] };

/**
 * Fake brokers 1-3 under LEASE_3 (1 leads, reconnected) fall silent in `crash` order (each [broker, ms after the
 * one before]); `check` sees the lease 1.5 s after the last; then broker `first` comes back holding `firstHolds`
 * records and the others 2 s later holding 30,000: the lease elected.
 */
async function crashThenBack(
  zk: Zookeeper,
  crash: [number, number][],
  check: () => void,
  first: number,
  firstHolds: number,
): Promise<Lease> {
  const stops = new Map<number, () => void>();
  try {
    for (const id of [1, 2, 3]) {
      stops.set(id, await fakeBroker(zk.port, { id, epoch: 3, logEndTotal: 30_000, lease: VIEW_3, leading: id === 1 }));
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual([zk.lease.leaderId, zk.lease.epoch], [1, 3], "the leader reconnected, nothing elected");
    for (const [id, afterMs] of crash) {
      await new Promise((r) => setTimeout(r, afterMs));
      stops.get(id)!();
    }
    await new Promise((r) => setTimeout(r, 1500));
    check();
  } finally {
    for (const stop of stops.values()) stop();
  }
  const later = [1, 2, 3].filter((id) => id !== first).map((id) => ({
    id,
    epoch: 3,
    logEndTotal: 30_000,
    lease: VIEW_3,
  }));
  return await elected(zk, [{ id: first, epoch: 3, logEndTotal: firstHolds, lease: VIEW_3 }], 8000, 2000, later);
}

Deno.test("a crash of every broker seen one check apart: the last one declared dead is not elected alone, and waits for the set", () =>
  withZookeeper(3, async (zk) => {
    // 2 falls silent first, the leader 300 ms later, 3 another 250 ms later: when the leader is declared dead, 3
    // has been silent for 750 ms and is not yet (before: 3 was elected with the set [3]). Broker 3 comes back
    // first, having lost a tail the others hold.
    const lease = await crashThenBack(
      zk,
      [[2, 0], [1, 300], [3, 250]],
      () => {
        assert.equal(zk.lease.leaderId, null, `broker ${zk.lease.leaderId} was elected from a crashed cluster`);
      },
      3,
      29_486,
    );
    assert.equal(lease.leaderId, 1, `broker ${lease.leaderId} leads`);
  }, LEASE_3));

Deno.test("followers declared dead while the leader is silent too stay in the set: a crash of all, then the whole set is waited for", () =>
  withZookeeper(3, async (zk) => {
    // The followers fall silent, the leader 150 ms later: when they are declared dead, it is silent too. The
    // leader comes back first, having lost a tail.
    const lease = await crashThenBack(
      zk,
      [[2, 0], [3, 0], [1, 150]],
      () => {
        assert.deepEqual(zk.lease.isr, [1, 2, 3], "the set was not shrunk to the silent leader (before: [1])");
      },
      1,
      29_486,
    );
    assert.equal(lease.leaderId, 2, `broker ${lease.leaderId} leads`);
  }, LEASE_3));

Deno.test("a zookeeper restarted while the leader died: followers that stayed up are elected from at once, not after the outage wait", () =>
  withZookeeper(3, async (zk) => {
    const view = VIEW_3;
    const started = performance.now();
    // Broker 1, the leader in the lease file, never comes back; 2 and 3 reconnect (their processes stayed up).
    const stops = [
      await fakeBroker(zk.port, { id: 2, epoch: 3, logEndTotal: 30_000, lease: view, reconnecting: true }),
      await fakeBroker(zk.port, { id: 3, epoch: 3, logEndTotal: 30_000, lease: view, reconnecting: true }),
    ];
    try {
      while (zk.lease.leaderId !== 2 && performance.now() - started < 12_000) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      for (const stop of stops) stop();
    }
    const ms = performance.now() - started;
    assert.equal(zk.lease.leaderId, 2);
    // Before: the zookeeper's start counted as an outage of the set, and the election waited 10 s for broker 1.
    assert.ok(ms < 5000, `elected after ${ms.toFixed(0)} ms (the outage wait is 10 s)`);
  }, LEASE_3));
