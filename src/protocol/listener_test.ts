/**
 * The connection rules every listener applies, over real TCP on 127.0.0.1
 * with the native codec: per-address caps and who makes room, the auth and
 * idle deadlines, the pre-authentication frame limit, and the request memory
 * budget.
 */
import assert from "node:assert/strict";
import { type ConnectionLimits, connectionLimits, RequestMemory } from "./listener.ts";
import { serve, type Server } from "./server.ts";

const encoder = new TextEncoder();

/** A native server whose handler answers `sleep` after `ms` and anything else at once. */
function server(limits: Partial<ConnectionLimits>, extra: { authToken?: string; memory?: RequestMemory } = {}): Server {
  return serve({
    host: "127.0.0.1",
    port: 0,
    maxFrameBytes: 4 * 1024 * 1024,
    limits: connectionLimits(limits),
    handler: async (req) => {
      if (req.type === "sleep") await new Promise((r) => setTimeout(r, Number(req.ms)));
      return { echo: req.type };
    },
    ...extra,
  });
}

/** A raw client: writes lines, reads replies, notices the server closing. */
class Peer {
  readonly conn: Deno.Conn;
  #buf = "";
  #decoder = new TextDecoder();

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  static async open(port: number): Promise<Peer> {
    return new Peer(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async send(line: string): Promise<void> {
    await this.conn.write(encoder.encode(line));
  }

  /** The next line, or null when the server closed the connection first. */
  async line(timeoutMs = 3000): Promise<string | null> {
    const deadline = performance.now() + timeoutMs;
    const chunk = new Uint8Array(64 * 1024);
    while (!this.#buf.includes("\n")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.conn.read(chunk).catch(() => null),
        new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), deadline - performance.now()))),
      ]);
      clearTimeout(timer);
      if (n === "timeout") throw new Error("no answer in time");
      if (n === null) return null;
      this.#buf += this.#decoder.decode(chunk.subarray(0, n));
    }
    const i = this.#buf.indexOf("\n");
    const line = this.#buf.slice(0, i);
    this.#buf = this.#buf.slice(i + 1);
    return line;
  }

  async call(type: string, fields = ""): Promise<Record<string, unknown> | null> {
    await this.send(`{"id":1,"type":"${type}"${fields}}\n`);
    const line = await this.line();
    return line === null ? null : JSON.parse(line);
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/** Waits for `pred`, polling every 5 ms; fails after `ms`. */
async function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`not in ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function withServer(s: Server, peers: Peer[], fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } finally {
    for (const p of peers) p.close();
    await s.close();
  }
}

Deno.test("per-address cap: a new connection pushes out the oldest silent one, never one that has spoken", async () => {
  const s = server({ maxConnectionsPerPeer: 3 });
  const peers: Peer[] = [];
  await withServer(s, peers, async () => {
    const talker = await Peer.open(s.port);
    peers.push(talker);
    assert.equal((await talker.call("ping"))?.ok, true);
    const silent = [await Peer.open(s.port), await Peer.open(s.port)];
    peers.push(...silent);
    // The cap is full (1 settled + 2 silent): a newcomer takes the oldest silent one's place.
    const newcomer = await Peer.open(s.port);
    peers.push(newcomer);
    const told = JSON.parse((await silent[0].line())!);
    assert.equal(told.code, "TOO_MANY_CONNECTIONS");
    assert.equal(await silent[0].line(), null, "then closed");
    assert.equal((await newcomer.call("ping"))?.ok, true);
    assert.equal((await silent[1].call("ping"))?.ok, true);
    // All three have spoken: nobody is pushed out, the next is refused.
    const late = await Peer.open(s.port);
    peers.push(late);
    assert.equal(JSON.parse((await late.line())!).code, "TOO_MANY_CONNECTIONS");
    assert.equal((await talker.call("ping"))?.ok, true, "the settled ones are still served");
    // Once they leave, the address's count is back to zero: three new ones are served.
    for (const p of [talker, newcomer, silent[1], late]) p.close();
    await until(() => s.sessions.size === 0, 2000, "the server saw every connection close");
    for (let i = 0; i < 3; i++) {
      const again = await Peer.open(s.port);
      peers.push(again);
      assert.equal((await again.call("ping"))?.ok, true, `connection ${i + 1} of 3 after the others left`);
    }
  });
});

Deno.test("auth deadline and idle timeout: silent connections close, a long request in flight does not", async () => {
  const s = server({ authTimeoutMs: 200, connectionsMaxIdleMs: 400 });
  const peers: Peer[] = [];
  await withServer(s, peers, async () => {
    const [silent, idle, busy] = [await Peer.open(s.port), await Peer.open(s.port), await Peer.open(s.port)];
    peers.push(silent, idle, busy);
    assert.equal((await idle.call("ping"))?.ok, true);
    assert.equal((await busy.call("ping"))?.ok, true);
    const t0 = performance.now();
    assert.equal(await silent.line(), null, "never spoke: closed at the auth deadline");
    const silentMs = performance.now() - t0;
    assert.ok(silentMs < 1000, `closed after ${silentMs.toFixed(0)} ms`);
    // A request that takes longer than the idle timeout is answered.
    assert.equal((await busy.call("sleep", ',"ms":900'))?.ok, true);
    assert.equal(await idle.line(2000), null, "idle past connectionsMaxIdleMs: closed");
  });
});

Deno.test("before authentication a frame is small; after it, full size", async () => {
  const s = server({ maxPreAuthFrameBytes: 1024 }, { authToken: "t0k3n" });
  const peers: Peer[] = [];
  await withServer(s, peers, async () => {
    const big = await Peer.open(s.port);
    peers.push(big);
    // 16 MiB announced on one line: refused after the first KiB, not buffered.
    await big.send(`{"id":1,"type":"auth","token":"${"x".repeat(8192)}`);
    const told = JSON.parse((await big.line())!);
    assert.equal(told.code, "FRAME_TOO_LARGE");
    assert.equal(await big.line(), null);
    const ok = await Peer.open(s.port);
    peers.push(ok);
    assert.equal((await ok.call("auth", ',"token":"t0k3n"'))?.ok, true);
    assert.equal((await ok.call("ping", `,"pad":"${"x".repeat(100_000)}"`))?.ok, true);
  });
});

Deno.test("request memory: large frames past the budget wait their turn; small ones pass; nothing is lost", async () => {
  const memory = new RequestMemory(300 * 1024);
  const s = server({}, { memory });
  const peers: Peer[] = [];
  await withServer(s, peers, async () => {
    const senders = await Promise.all(Array.from({ length: 4 }, () => Peer.open(s.port)));
    peers.push(...senders);
    const pad = "x".repeat(200 * 1024);
    // Each writes most of a 200 KiB frame: one fits the budget, the others wait with reads paused.
    await Promise.all(senders.map((p, i) => p.send(`{"id":${i},"type":"sleep","ms":300,"pad":"${pad}`)));
    await until(() => memory.waiting >= 1, 2000, "a sender waits for the budget");
    // Within the budget, but for the one frame let through when every holder waits (lines grow step by step).
    assert.ok(memory.usedBytes <= (300 + 256) * 1024, `held ${memory.usedBytes} bytes`);
    assert.ok(memory.waiting >= 1, "the others wait");
    const small = await Peer.open(s.port);
    peers.push(small);
    assert.equal((await small.call("ping"))?.ok, true, "a small request is served meanwhile");
    await Promise.all(senders.map((p) => p.send('"}\n')));
    for (const p of senders) assert.equal(JSON.parse((await p.line(5000))!).ok, true);
    for (const p of senders) p.close();
    await until(() => memory.usedBytes === 0, 2000, `every byte given back (${memory.usedBytes} held)`);
  });
});
