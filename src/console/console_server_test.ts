import assert from "node:assert/strict";
import { join } from "node:path";
import { startConsole } from "./console_server.ts";
import { configureSecurity } from "../protocol/security.ts";

/**
 * A console with no leader in its zookeeper's view (and the auth token `token`, when given), in a temp dir;
 * `fn` runs with its URL, then the console stops and the dir goes.
 */
async function withConsole(token: string | null, fn: (url: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const lease = { epoch: 0, leaderId: null, host: "", port: 0, isr: [], issuedAt: 0, ttlMs: 1000, version: 0 };
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
