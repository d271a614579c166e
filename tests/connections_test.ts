/**
 * Connection floods against real processes (issue 20 §2 and §3): peers that
 * announce huge frames before authenticating, large requests past the memory
 * budget, and a thousand idle connections on the zookeeper while a broker
 * restarts. Each keeps the server's memory bounded, lets legitimate clients
 * through, and leaves the data stored before it intact.
 */
import assert from "node:assert/strict";
import { assertReadsBack, memoryOf, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

const MiB = 1024 * 1024;
const TOKEN = "connections-test-token";

/** Samples a process's RSS every 50 ms until stopped; the peak, in bytes. */
function rssPeak(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, (await memoryOf(pid, "VmRSS")) ?? 0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/**
 * Opens a connection and writes `head`, then up to `bytes` of padding in
 * 1 MiB writes, until the server closes it or stops reading for 500 ms. The
 * connection is left open; the bytes the server took are not known here.
 */
async function bigFrame(port: number, head: Uint8Array, bytes: number): Promise<Deno.Conn | null> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return null;
  }
  const chunk = new Uint8Array(MiB).fill(0x61);
  try {
    await conn.write(head);
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const part = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
      const w = (async () => {
        let at = 0;
        while (at < part.length) at += await conn.write(part.subarray(at));
      })();
      w.catch(() => {});
      const stalled = await Promise.race([
        w.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 500))),
      ]);
      clearTimeout(timer);
      if (stalled) break;
    }
  } catch { /* closed by the server: what we want before authentication */ }
  return conn;
}

function kafkaHead(size: number): Uint8Array {
  const head = new Uint8Array(4);
  new DataView(head.buffer).setInt32(0, size);
  return head;
}

function closeAll(conns: (Deno.Conn | null)[]): void {
  for (const c of conns) {
    try {
      c?.close();
    } catch { /* closed */ }
  }
}

Deno.test("300 unauthenticated connections announcing 16 MiB frames: refused after their first bytes, memory bounded, producers served", () =>
  withDeadline(90_000, "pre-auth flood", async () => {
    const env = { YAK_AUTH_TOKEN: TOKEN };
    const c = await TestCluster.start({ brokers: 1, env });
    const conns: (Deno.Conn | null)[] = [];
    try {
      const stored = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100), env });
      assert.equal(stored.code, 0, stored.stderr);
      const pid = c.brokers.get(1)!.pid;
      const before = (await memoryOf(pid, "VmRSS"))!;
      const sampler = rssPeak(pid);
      const t0 = performance.now();
      const nativeHead = new TextEncoder().encode('{"id":1,"type":"auth","token":"');
      const flood = Promise.all(
        Array.from(
          { length: 300 },
          (_, i) =>
            i % 2 === 0
              ? bigFrame(c.kafkaPorts.get(1)!, kafkaHead(16 * MiB - 1), 16 * MiB - 1)
              : bigFrame(c.brokerPorts.get(1)!, nativeHead, 16 * MiB - 1),
        ),
      );
      // An authenticated producer meanwhile.
      const more = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100, 101), env });
      assert.equal(more.code, 0, more.stderr);
      conns.push(...await flood);
      const floodMs = performance.now() - t0;
      const peak = await sampler.stop();
      closeAll(conns);
      await new Promise((r) => setTimeout(r, 1000));
      const after = (await memoryOf(pid, "VmRSS"))!;
      console.log(
        `300 connections x 16 MiB announced before auth: flood done in ${floodMs.toFixed(0)} ms; broker RSS ` +
          `${(before / MiB).toFixed(0)} MB, peak ${(peak / MiB).toFixed(0)} MB, after closing ${
            (after / MiB).toFixed(0)
          } MB`,
      );
      assert.ok(peak - before < 100 * MiB, `RSS grew by ${((peak - before) / MiB).toFixed(0)} MB`);
      assert.ok(after - before < 50 * MiB, `RSS stayed ${((after - before) / MiB).toFixed(0)} MB up after closing`);
      await assertReadsBack(c, "kept", 200, env);
    } finally {
      closeAll(conns);
      await c.stop();
    }
  }));

Deno.test("40 peers each sending 16 MiB and going silent: the request budget holds memory, small requests pass", () =>
  withDeadline(90_000, "request budget", async () => {
    const c = await TestCluster.start({ brokers: 1, brokerArgs: ["--queued-max-request-bytes", String(32 * MiB)] });
    const conns: (Deno.Conn | null)[] = [];
    try {
      const stored = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100) });
      assert.equal(stored.code, 0, stored.stderr);
      const pid = c.brokers.get(1)!.pid;
      const before = (await memoryOf(pid, "VmRSS"))!;
      const sampler = rssPeak(pid);
      // One byte short of whole frames: the broker can never answer them, only hold them.
      const flood = Promise.all(
        Array.from({ length: 40 }, () => bigFrame(c.kafkaPorts.get(1)!, kafkaHead(16 * MiB - 1), 16 * MiB - 2)),
      );
      const more = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100, 101) });
      assert.equal(more.code, 0, more.stderr);
      conns.push(...await flood);
      const peak = await sampler.stop();
      console.log(
        `40 connections x 16 MiB - 2 bytes, budget 32 MiB: broker RSS ${(before / MiB).toFixed(0)} MB, ` +
          `peak ${(peak / MiB).toFixed(0)} MB`,
      );
      assert.ok(peak - before < 100 * MiB, `RSS grew by ${((peak - before) / MiB).toFixed(0)} MB`);
      closeAll(conns);
      await assertReadsBack(c, "kept", 200);
    } finally {
      closeAll(conns);
      await c.stop();
    }
  }));

/** Keeps `n` idle connections open to `port`, opening a new one whenever one is closed, until stopped. */
function idleFlood(
  port: number,
  n: number,
): { opened(): number; stop(): Promise<{ opened: number; closedByServer: number }> } {
  let running = true;
  let opened = 0;
  let closedByServer = 0;
  const open = new Set<Deno.Conn>();
  const slot = async () => {
    const buf = new Uint8Array(1024);
    while (running) {
      let conn: Deno.Conn;
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      opened++;
      open.add(conn);
      // Never a byte from us; wait until the server closes it (or we stop).
      while (running && (await conn.read(buf).catch(() => null)) !== null) { /* a refusal's text */ }
      if (running) closedByServer++;
      open.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const slots = Array.from({ length: n }, () => slot());
  return {
    opened: () => opened,
    async stop() {
      running = false;
      for (const conn of open) {
        try {
          conn.close();
        } catch { /* closed */ }
      }
      await Promise.all(slots);
      return { opened, closedByServer };
    },
  };
}

Deno.test("1,100 idle connections held on the zookeeper: a killed broker restarts and registers, a new leader serves", () =>
  withDeadline(90_000, "idle flood", async () => {
    const env = { YAK_AUTH_TOKEN: TOKEN };
    const c = await TestCluster.start({ brokers: 3, heartbeatMs: 100, sessionTimeoutMs: 600, env });
    let flood: ReturnType<typeof idleFlood> | null = null;
    try {
      const stored = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100), env });
      assert.equal(stored.code, 0, stored.stderr);
      flood = idleFlood(c.zkPort, 1100);
      // The flood fills the zookeeper's table (1024) and churns: every slot has had a connection.
      const deadline = performance.now() + 10_000;
      while (flood.opened() < 1100) {
        assert.ok(performance.now() < deadline, `only ${flood.opened()} flood connections opened in 10 s`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const old = await c.lease();
      c.brokers.get(old.leaderId!)!.kill("SIGKILL");
      const t0 = performance.now();
      const next = await c.waitFor((l) => l.leaderId !== null && l.leaderId !== old.leaderId, 10_000);
      const electedMs = performance.now() - t0;
      await c.startBroker(old.leaderId!);
      const back = await c.waitFor((l) => l.isr.length === 3, 20_000);
      const rejoinedMs = performance.now() - t0;
      const more = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100, 101), env });
      assert.equal(more.code, 0, more.stderr);
      const { opened, closedByServer } = await flood.stop();
      flood = null;
      console.log(
        `idle flood on the zookeeper (${opened} connections opened, ${closedByServer} closed by it): leader ` +
          `${old.leaderId} killed, broker ${next.leaderId} elected after ${electedMs.toFixed(0)} ms; the restarted ` +
          `broker back in sync after ${rejoinedMs.toFixed(0)} ms (epoch ${back.epoch})`,
      );
      assert.ok(opened > 1024, `the flood filled the table (${opened} opened)`);
      await assertReadsBack(c, "kept", 200, env);
    } finally {
      await flood?.stop();
      await c.stop();
    }
  }));
