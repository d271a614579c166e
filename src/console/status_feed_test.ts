import assert from "node:assert/strict";
import type { Probe, ZookeeperStatus } from "../client/cluster_status.ts";
import type { BrokerStatus } from "../protocol/status.ts";
import { type FeedSnapshot, StatusFeed, type Viewer } from "./status_feed.ts";

const INTERVAL_MS = 100;

function zookeeper(leaderId = 1): ZookeeperStatus {
  return {
    lease: {
      epoch: leaderId,
      leaderId,
      host: "127.0.0.1",
      port: 9092,
      isr: [1, 2],
      issuedAt: 0,
      ttlMs: 1000,
      version: 1,
    },
    brokers: [1, 2].map((id) => ({
      id,
      host: "127.0.0.1",
      port: 9091 + id,
      alive: true,
      lastSeenMsAgo: 5,
      logEndTotal: 0,
    })),
  };
}

function view(brokerId: number, recordsIn: number, recordsOut: number): BrokerStatus {
  return {
    brokerId,
    role: brokerId === 1 ? "leader" : "follower",
    epoch: 1,
    leader: null,
    replication: null,
    topics: [],
    metadataLog: { logStart: 0, logEnd: 0, bytes: 0 },
    groups: {},
    groupMembers: [],
    clients: [],
    memory: { rss: 0, heapTotal: 0, heapUsed: 0, external: 0 },
    traffic: { recordsIn, bytesIn: 0, recordsOut, bytesOut: 0 },
  };
}

/** A feed over a fake zookeeper and fake brokers whose counters grow by 1,000 records per gather. */
function fakeFeed(intervalMs = INTERVAL_MS) {
  let zk = zookeeper();
  let probes = 0;
  const feed = new StatusFeed({
    zookeeper: () => zk,
    probe: (brokers) => {
      probes++;
      const n = probes * 1000;
      return Promise.resolve(
        new Map<number, Probe>(brokers.map((b) => [b.id, { outcome: "answered", view: view(b.id, n, n / 2) }])),
      );
    },
    timeline: () => Promise.resolve([{ ts: "2026-01-01T00:00:00.000Z", event: "leader_elected", leader: 1 }]),
    intervalMs,
    maxViewers: 3,
    historyPoints: 5,
  });
  return {
    feed,
    probes: () => probes,
    setZookeeper: (next: ZookeeperStatus) => (zk = next),
  };
}

function viewer(): Viewer & { got: FeedSnapshot[]; closed: boolean } {
  const v = {
    got: [] as FeedSnapshot[],
    closed: false,
    send(data: string) {
      v.got.push(JSON.parse(data));
      return true;
    },
    close() {
      v.closed = true;
    },
  };
  return v;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, pred: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(5);
  }
}

Deno.test("the feed asks brokers only while someone watches, at most once an interval, and sends all viewers the same", async () => {
  const { feed, probes } = fakeFeed();
  try {
    await sleep(INTERVAL_MS * 3);
    assert.equal(probes(), 0, "nobody watches: nobody is asked");
    const a = viewer();
    const b = viewer();
    const stopA = feed.subscribe(a)!;
    const stopB = feed.subscribe(b)!;
    const started = Date.now();
    await until("ten updates", () => a.got.length >= 10);
    const elapsed = Date.now() - started;
    // Two viewers, one gather per interval: never more gathers than intervals passed (plus the first).
    assert.ok(probes() <= Math.floor(elapsed / INTERVAL_MS) + 1, `${probes()} gathers in ${elapsed} ms`);
    await until("b has them too", () => b.got.length >= 10);
    assert.deepEqual(a.got.slice(0, 10).map((s) => s.seq), b.got.slice(0, 10).map((s) => s.seq));
    // Counters grew 1,000 (in) and 500 (out) per interval on each of two brokers.
    const rate = a.got[a.got.length - 1].rates.at(-1)!;
    assert.ok(rate.produce > 2000 && rate.consume > 1000, JSON.stringify(rate));
    assert.ok(a.got[a.got.length - 1].rates.length <= 5, "history is bounded");
    assert.equal(a.got[0].timeline[0].event, "leader_elected");
    stopA();
    stopB();
    assert.ok(a.closed && b.closed);
    const after = probes();
    await sleep(INTERVAL_MS * 4);
    assert.ok(probes() <= after + 1, `gathering stopped with the last viewer (${after} -> ${probes()})`);
  } finally {
    feed.close();
  }
});

Deno.test("a lease change reaches viewers at once without asking a broker; the API shares gathers", async () => {
  // A long interval: after the first gather, only the push can bring the new lease.
  const { feed, probes, setZookeeper } = fakeFeed(60_000);
  try {
    const v = viewer();
    feed.subscribe(v);
    await until("first update", () => v.got.length >= 1);
    assert.equal(probes(), 1);
    setZookeeper(zookeeper(2));
    feed.zookeeperChanged();
    await until("the pushed lease", () => v.got.at(-1)!.status.lease.leaderId === 2);
    assert.equal(probes(), 1, "no broker was asked for the push");
    assert.equal(v.got.at(-1)!.seq, 1, "a push is not a gather");
    // API calls within an interval of the last gather share it (and see the newest lease).
    const [s1, s2] = await Promise.all([feed.status(), feed.status()]);
    assert.equal(s1.lease.leaderId, 2);
    assert.deepEqual(s1, s2);
    assert.equal(probes(), 1);
  } finally {
    feed.close();
  }
});

Deno.test("a broker the zookeeper declares dead after it answered shows dead at once, without a view", async () => {
  const { feed, probes, setZookeeper } = fakeFeed(60_000);
  try {
    const v = viewer();
    feed.subscribe(v);
    await until("first update", () => v.got.length >= 1);
    assert.deepEqual(v.got[0].status.brokers.map((b) => b.state), ["alive", "alive"]);
    const next = zookeeper(2);
    next.brokers[0] = { ...next.brokers[0], alive: false };
    setZookeeper(next);
    feed.zookeeperChanged();
    await until("the pushed death", () => v.got.at(-1)!.status.lease.leaderId === 2);
    const { status } = v.got.at(-1)!;
    assert.deepEqual(status.brokers.map((b) => [b.id, b.state, b.logEndTotalNow]), [[1, "dead", null], [
      2,
      "alive",
      0,
    ]]);
    assert.deepEqual(status.views.map((x) => x.brokerId), [2], "its answer from before the death is not shown");
    assert.equal(probes(), 1, "no broker was asked for the push");
  } finally {
    feed.close();
  }
});

Deno.test("viewers past the limit are refused, and one that cannot keep up is dropped", async () => {
  const { feed } = fakeFeed();
  try {
    const ok = [viewer(), viewer(), viewer()];
    for (const v of ok) assert.ok(feed.subscribe(v));
    assert.equal(feed.subscribe(viewer()), null, "the fourth is over maxViewers");
    const slow = ok[0];
    slow.send = () => false;
    await until("the slow viewer is dropped", () => slow.closed);
    assert.equal(feed.viewers, 2);
  } finally {
    feed.close();
  }
});
