import assert from "node:assert/strict";
import { hostAllowed, serveHttp, text } from "./http.ts";

/** One raw HTTP/1.1 GET with the given Host header: the status line. */
async function statusWithHost(port: number, host: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`GET /x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    const buf = new Uint8Array(4096);
    let got = "";
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    return got.split("\r\n")[0];
  } finally {
    conn.close();
  }
}

Deno.test("without a token, only requests naming this server by address or localhost are answered (DNS rebinding)", async () => {
  const server = serveHttp({ host: "127.0.0.1", port: 0, auth: null, routes: { "/x": () => text(200, "ok\n") } });
  try {
    for (const host of [`127.0.0.1:${server.port}`, `localhost:${server.port}`, "[::1]:80", "10.1.2.3"]) {
      assert.equal(await statusWithHost(server.port, host), "HTTP/1.1 200 OK", host);
    }
    for (const host of [`evil.example:${server.port}`, "attacker.test", "127.0.0.1.nip.io"]) {
      assert.equal(await statusWithHost(server.port, host), "HTTP/1.1 403 Forbidden", host);
    }
  } finally {
    await server.close();
  }
  assert.ok(hostAllowed("yak-box:8080", "yak-box"), "the name given to --host");
  assert.ok(hostAllowed(null, "127.0.0.1"), "HTTP/1.0 without a Host");
});

Deno.test("POST routes (changes): refused without a token, from another origin, or as anything but JSON", async () => {
  const posts = { "/change": () => text(200, "changed\n") };
  const open = serveHttp({ host: "127.0.0.1", port: 0, auth: null, routes: {}, posts });
  const guarded = serveHttp({ host: "127.0.0.1", port: 0, auth: { token: "t0k" }, routes: {}, posts });
  const post = async (server: { url: string }, headers: Record<string, string>) => {
    const res = await fetch(`${server.url}change`, { method: "POST", headers, body: "{}" });
    return `${res.status} ${(await res.text()).trim().slice(0, 60)}`;
  };
  const json = { "content-type": "application/json" };
  const bearer = { authorization: "Bearer t0k" };
  try {
    assert.match(await post(open, json), /^403 403 forbidden: changes need the cluster's auth token/);
    assert.match(await post(guarded, json), /^401 401 unauthorized: this server needs the cluster's auth token/);
    assert.equal(await post(guarded, { ...json, ...bearer }), "200 changed");
    assert.match(await post(guarded, { ...json, ...bearer, origin: "http://evil.example" }), /^403 /);
    assert.match(await post(guarded, { ...bearer, "content-type": "application/x-www-form-urlencoded" }), /^415 /);
    const get = await fetch(`${guarded.url}change`, { headers: bearer });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get("allow"), "POST");
    await get.body?.cancel();
  } finally {
    await open.close();
    await guarded.close();
  }
});

Deno.test("a HEAD request's body is cancelled, so what a stream holds goes at once", async () => {
  let cancelled = false;
  const routes = {
    "/stream": () =>
      new Response(new ReadableStream({ cancel: () => void (cancelled = true) }), {
        headers: { "content-type": "text/event-stream" },
      }),
  };
  const server = serveHttp({ host: "127.0.0.1", port: 0, auth: null, routes });
  try {
    const res = await fetch(`${server.url}stream`, { method: "HEAD" });
    assert.equal(res.status, 200);
    await res.body?.cancel();
    assert.ok(cancelled, "the event stream's body was cancelled (its viewer slot given back)");
  } finally {
    await server.close();
  }
});
