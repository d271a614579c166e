import assert from "node:assert/strict";
import { join } from "node:path";
import { startConsole } from "./console_server.ts";
import { browseRequestOf } from "./record_browser.ts";
import { configureSecurity } from "../protocol/security.ts";

/**
 * A console with no leader in its zookeeper's view (and the auth token `token`, when given), in a temp dir;
 * `fn` runs with its URL, then the console stops and the dir goes.
 */
async function withConsole(
  token: string | null,
  fn: (url: string) => Promise<void>,
  leaderPort?: number,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const lease = leaderPort === undefined
    ? { epoch: 0, leaderId: null, host: "", port: 0, isr: [], issuedAt: 0, ttlMs: 1000, version: 0 }
    : { epoch: 1, leaderId: 1, host: "127.0.0.1", port: leaderPort, isr: [1], issuedAt: 0, ttlMs: 1000, version: 1 };
  configureSecurity(token === null ? {} : { authToken: token });
  try {
    const server = await startConsole({
      host: "127.0.0.1",
      port: 0,
      zookeeper: () => ({ lease, brokers: [] }),
      onChange: () => () => {},
      opLogPath: join(dir, "zookeeper.log"),
    });
    try {
      await fn(server.url);
    } finally {
      await server.close();
    }
  } finally {
    configureSecurity({});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("without a token the console says admin actions are off; a read with no leader says so", async () => {
  await withConsole(null, async (url) => {
    const admin = await (await fetch(`${url}api/admin`)).json();
    assert.deepEqual(admin, {
      enabled: false,
      reason: "admin actions need the cluster's auth token (--auth-token T)",
    });
    const created = await fetch(`${url}api/admin/create-topic`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ topic: "t" }),
    });
    assert.equal(created.status, 403);
    await created.body?.cancel();
    const read = await fetch(`${url}api/records?topic=t&partition=0`);
    assert.equal(read.status, 503);
    assert.deepEqual(await read.json(), {
      error: { code: "NO_LEADER", message: "no leader right now; try again after the election" },
    });
    const bad = await fetch(`${url}api/records?topic=${encodeURIComponent("<../x>")}&from=soon`);
    assert.equal(bad.status, 400, "checked before the leader is asked");
    assert.match((await bad.json()).error.message, /^invalid topic name "<\.\.\/x>"/);
  });
});

Deno.test("an admin request's chunked body is refused once it passes the limit, not read whole first", async () => {
  await withConsole("t0k", async (url) => {
    const headers = { "content-type": "application/json", authorization: "Bearer t0k" };
    // No Content-Length (chunked): 64 MiB of spaces in 64 KiB pieces, counted as they come.
    let sent = 0;
    const piece = new Uint8Array(64 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 64 * 1024 * 1024) return controller.close();
        sent += piece.length;
        controller.enqueue(piece);
      },
    });
    const big = await fetch(`${url}api/admin/create-topic`, { method: "POST", headers, body });
    assert.equal(big.status, 400);
    assert.match((await big.json()).error.message, /too large/);
    assert.ok(sent < 16 * 1024 * 1024, `${sent} bytes taken before the refusal`);
    const small = await fetch(`${url}api/admin/create-topic`, {
      method: "POST",
      headers,
      body: JSON.stringify({ topic: "t" }),
    });
    assert.equal(small.status, 503, "read, then no leader to ask");
    await small.body?.cancel();
  });
});

Deno.test("record-browser queries past the console's limit are answered 503 at once, not queued behind a slow leader", async () => {
  // A leader that answers every request with an error after 500 ms: the first queries hold their places that long.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
          text += new TextDecoder().decode(buf.subarray(0, n));
          for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n")) {
            const { id } = JSON.parse(text.slice(0, nl));
            text = text.slice(nl + 1);
            await new Promise((r) => setTimeout(r, 500));
            const answer = { id, ok: false, code: "UNKNOWN_TOPIC", message: "slow no" };
            await conn.write(new TextEncoder().encode(JSON.stringify(answer) + "\n"));
          }
        }
      })().catch(() => {});
    }
  })().catch(() => {});
  try {
    await withConsole(null, async (url) => {
      const started = performance.now();
      const answers = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const res = await fetch(`${url}api/records?topic=t&partition=0`);
          return { status: res.status, body: await res.json(), ms: performance.now() - started };
        }),
      );
      const busy = answers.filter((a) => a.status === 503);
      assert.equal(busy.length, 4, JSON.stringify(answers));
      for (const b of busy) {
        assert.equal(b.body.error.code, "UNAVAILABLE");
        assert.match(b.body.error.message, /runs 2 record queries at a time/);
        assert.ok(b.ms < 400, `a busy answer took ${b.ms.toFixed(0)} ms`);
      }
      // The two that ran got the leader's answer (404: its error), after its 500 ms.
      assert.deepEqual(answers.filter((a) => a.status !== 503).map((a) => a.status), [404, 404]);
      const again = await fetch(`${url}api/records?topic=t&partition=0`);
      assert.equal(again.status, 404, "room again once they are done");
      await again.body?.cancel();
    }, (listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    for (const c of conns) c.close();
    await serving;
  }
});

Deno.test("the record browser's time is ms or an ISO 8601 date, nothing Date.parse guesses; limit is 1 to 500", () => {
  const q = (query: string) => browseRequestOf(new URL(`http://h/api/records?topic=t&${query}`));
  assert.equal(q("from=time&time=1700000000000").timeMs, 1_700_000_000_000);
  assert.equal(q("from=time&time=2026-12-07T10:00:00Z").timeMs, Date.UTC(2026, 11, 7, 10));
  assert.equal(q("from=time&time=2026-12-07").timeMs, Date.UTC(2026, 11, 7));
  // Before: both read as May 2001.
  for (const t of ["-5", "x 5"]) assert.throws(() => q(`from=time&time=${encodeURIComponent(t)}`), /ISO 8601/);
  // Before: 0 was taken as 1, while the error for 501 said "from 0".
  assert.throws(() => q("limit=0"), /limit must be a whole number from 1 to 500/);
  assert.equal(q("limit=500").limit, 500);
});
