/**
 * Leases and liveness run on the monotonic clock: a zookeeper and a broker's
 * zookeeper session in this process, over real TCP, while the wall clock
 * (Date.now, which every process reads for "now") jumps forward and back.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ZkSession } from "../src/broker/zk_session.ts";
import { OpLog } from "../src/op_log.ts";
import { Connection } from "../src/protocol/connection.ts";
import type { YakError } from "../src/errors.ts";
import type { Lease } from "../src/protocol/messages.ts";
import { Zookeeper } from "../src/zookeeper/zookeeper.ts";

const realNow = Date.now;

/** Runs `fn` with a wall clock `offsetMs` away from the real one. */
function shiftWallClock(offsetMs: number): void {
  Date.now = () => realNow() + offsetMs;
}

async function withZookeeper(fn: (zk: Zookeeper, dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "yak-clock-" });
  const zk = await Zookeeper.start({
    dataDir: dir,
    host: "127.0.0.1",
    port: 0,
    heartbeatMs: 100,
    sessionTimeoutMs: 1000,
    maxFrameBytes: 1 << 20,
    echo: false,
  });
  try {
    await fn(zk, dir);
  } finally {
    Date.now = realNow;
    await zk.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A broker as the zookeeper sees it: registers and heartbeats every 100 ms. */
async function fakeBroker(port: number, id: number): Promise<{ stop: () => void }> {
  const conn = await Connection.open("127.0.0.1", port);
  await conn.request({ type: "register", brokerId: id, host: "127.0.0.1", port: 9000 + id, instance: `i-${id}` }, 2000);
  const timer = setInterval(() => {
    conn.request({ type: "heartbeat", brokerId: id }, 2000).catch(() => {});
  }, 100);
  return {
    stop: () => {
      clearInterval(timer);
      conn.close();
    },
  };
}

async function until(pred: () => boolean, timeoutMs: number, what: string) {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("a zookeeper whose wall clock jumps 5 s ahead declares no broker dead and elects nobody", async () => {
  await withZookeeper(async (zk, dir) => {
    const brokers = await Promise.all([1, 2, 3].map((id) => fakeBroker(zk.port, id)));
    try {
      await until(() => zk.lease.leaderId !== null, 5000, "a leader");
      const before = zk.lease;
      shiftWallClock(5000);
      await new Promise((r) => setTimeout(r, 1500));
      Date.now = realNow;
      const log = await Deno.readTextFile(join(dir, "zookeeper", "zookeeper.log"));
      assert.equal(zk.lease.epoch, before.epoch, "an election caused by a clock jump");
      assert.doesNotMatch(log, /broker_dead/);
    } finally {
      for (const b of brokers) b.stop();
    }
  });
});

Deno.test("a leader whose wall clock is set back 30 s stops calling its lease valid when the zookeeper goes silent", async () => {
  await withZookeeper(async (zk, dir) => {
    const log = new OpLog(join(dir, "broker.log"), "broker-1", false);
    let lease: Lease | null = null;
    const session = new ZkSession({
      zkHost: "127.0.0.1",
      zkPort: zk.port,
      brokerId: 1,
      host: "127.0.0.1",
      port: 9001,
      heartbeatMs: 100,
      sessionTimeoutMs: 1000,
      log,
      logEndTotal: () => 0,
      epoch: () => lease?.epoch ?? 0,
      leading: () => lease?.leaderId === 1,
      onLease: (l) => (lease = l),
      onRefused: (err: YakError) => {
        throw err;
      },
    });
    session.start();
    try {
      await until(() => lease?.leaderId === 1 && session.leaderLeaseValid(), 5000, "leadership");
      // The zookeeper stops answering (paused, cut off) and our clock goes back.
      const silentFrom = performance.now();
      await zk.stop().catch(() => {});
      shiftWallClock(-30_000);
      await until(() => !session.leaderLeaseValid(), 3000, "the lease to lapse");
      const lapsedMs = performance.now() - silentFrom;
      Date.now = realNow;
      console.log(`lease invalid ${Math.round(lapsedMs)} ms after the zookeeper went silent (clock set back 30 s)`);
      assert.ok(lapsedMs <= 1000, `lease still valid ${lapsedMs} ms after the last heartbeat`);
    } finally {
      Date.now = realNow;
      await session.stop();
      log.close();
    }
  });
});
