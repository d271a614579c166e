import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostAllowed, serveHttp, text } from "./http.ts";
import type { FrontLimits } from "./http_front.ts";

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

/** Whether the server closed `conn` (a read ends) within `ms`. */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(1024);
  const deadline = Date.now() + ms;
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (Date.now() < deadline) {
      if (await conn.read(buf) === null) return true;
    }
    return false;
  } catch {
    return Date.now() < deadline; // reset by the server, or closed by the timer
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("the front: a flood of idle connections is capped and closed, a slow head too, and a request still gets in", async () => {
  const server = serveHttp({
    host: "127.0.0.1",
    port: 0,
    auth: null,
    routes: { "/x": () => text(200, "ok\n") },
    limits: { maxConnections: 20, requestTimeoutMs: 400, idleMs: 1500 },
  });
  const idle: Deno.Conn[] = [];
  try {
    // 60 connections that never send a byte: never more than 20 held (Deno.serve alone held every one).
    for (let i = 0; i < 60; i++) idle.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
    // A request still gets in: an idle connection makes room. Accepted after the 60 (in order), so the count
    // taken next has seen every one of them.
    assert.equal(await statusWithHost(server.port, `127.0.0.1:${server.port}`), "HTTP/1.1 200 OK");
    const held = server.connections ?? Infinity;
    // A head sent a byte at a time never completes: closed once its head is 400 ms old, though bytes keep coming.
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const dribble = (async () => {
      for (const b of new TextEncoder().encode(`GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${"y".repeat(40)}`)) {
        await new Promise((r) => setTimeout(r, 50));
        if (await slow.write(new Uint8Array([b])).catch(() => 0) === 0) return;
      }
    })();
    const started = Date.now();
    assert.ok(await closedWithin(slow, 3000), "the slow head's connection is closed");
    const took = Date.now() - started;
    assert.ok(took >= 350 && took < 1500, `closed after ${took} ms`);
    await dribble;
    // Every idle connection is gone by now (refused, made room, or past the head deadline).
    const stillOpen = (await Promise.all(idle.map((c) => closedWithin(c, 300)))).filter((closed) => !closed).length;
    assert.equal(stillOpen, 0, `${stillOpen} idle connections still open`);
    assert.ok(held <= 20, `${held} connections held`);
    assert.equal(server.connections, 0);
  } finally {
    for (const c of idle) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await server.close();
  }
});

/** A server with a token, GET /x and POST /p (which says how many bytes it got), within `limits`. */
function tokenServer(limits: Partial<FrontLimits>): ReturnType<typeof serveHttp> {
  return serveHttp({
    host: "127.0.0.1",
    port: 0,
    auth: { token: "t0k" },
    routes: {
      "/x": () => text(200, "ok\n"),
      "/slow": async () => {
        await new Promise((r) => setTimeout(r, 1500));
        return text(200, "slow\n");
      },
    },
    posts: {
      "/p": async (req) => text(200, `got ${(await req.text()).length}\n`),
      "/pslow": async (req) => {
        const got = (await req.text()).length;
        await new Promise((r) => setTimeout(r, 1500));
        return text(200, `got ${got}\n`);
      },
    },
    limits,
  });
}

Deno.test("the front: a kept-alive connection serves request after request (a POST's body included) until it idles", async () => {
  const server = tokenServer({ requestTimeoutMs: 300, idleMs: 1500 });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const encoder = new TextEncoder();
  const buf = new Uint8Array(4096);
  const ask = async (request: string, wait = 0): Promise<string> => {
    await conn.write(encoder.encode(request));
    let got = "";
    while (!/\r\n\r\n[\s\S]*\n$/.test(got)) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    await new Promise((r) => setTimeout(r, wait));
    return got.split("\r\n")[0] + " " + got.split("\r\n\r\n")[1].trim();
  };
  const auth = "Host: 127.0.0.1\r\nAuthorization: Bearer t0k\r\n";
  try {
    const body = JSON.stringify({ pad: "z".repeat(3000) });
    const post = `POST /p HTTP/1.1\r\n${auth}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    // Pauses longer than the request deadline between requests: only a request under way has one.
    assert.equal(await ask(`GET /x HTTP/1.1\r\n${auth}\r\n`, 500), "HTTP/1.1 200 OK ok");
    assert.equal(await ask(post + body, 500), `HTTP/1.1 200 OK got ${body.length}`);
    // A head ended by bare line feeds, as Deno.serve takes it, ends here too.
    assert.equal(await ask(`GET /x HTTP/1.1\n${auth.replaceAll("\r\n", "\n")}\n`, 500), "HTTP/1.1 200 OK ok");
    assert.equal(await ask(`GET /x HTTP/1.1\r\n${auth}\r\n`), "HTTP/1.1 200 OK ok");
    const started = Date.now();
    assert.ok(await closedWithin(conn, 5000), "closed once idle");
    assert.ok(Date.now() - started >= 1000, `closed after ${Date.now() - started} ms idle`);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
    await server.close();
  }
});

Deno.test("the front: a client that half-closes gets its answer; an empty Host is the server's; a slow body is cut", async () => {
  const server = tokenServer({ requestTimeoutMs: 600, idleMs: 5000 });
  const raw = async (request: string, halfClose: boolean): Promise<string> => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    try {
      await conn.write(new TextEncoder().encode(request));
      if (halfClose) await conn.closeWrite();
      const buf = new Uint8Array(4096);
      let got = "";
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        got += new TextDecoder().decode(buf.subarray(0, n));
      }
      return got.split("\r\n")[0] + " " + (got.split("\r\n\r\n")[1] ?? "").trim();
    } finally {
      conn.close();
    }
  };
  try {
    // Sent, then the write side closed (ncat's way): answered before the relay ends.
    assert.equal(await raw("GET /x HTTP/1.0\r\nAuthorization: Bearer t0k\r\n\r\n", true), "HTTP/1.0 200 OK ok");
    // An empty Host: the server's own address stands in, as with none (it was a 500).
    assert.equal(
      await raw("GET /x HTTP/1.1\r\nHost:\r\nAuthorization: Bearer t0k\r\nConnection: close\r\n\r\n", false),
      "HTTP/1.1 200 OK ok",
    );
    // A body promised and trickled: the request is cut at its deadline, head and body alike.
    const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    await slow.write(
      new TextEncoder().encode(
        "POST /p HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0k\r\nContent-Type: application/json\r\n" +
          "Content-Length: 100000\r\n\r\n{",
      ),
    );
    const trickle = setInterval(() => slow.write(new Uint8Array([0x20])).catch(() => {}), 100);
    const started = Date.now();
    try {
      assert.ok(await closedWithin(slow, 4000), "the trickled body's connection is closed");
    } finally {
      clearInterval(trickle);
    }
    assert.ok(Date.now() - started < 3000, `closed after ${Date.now() - started} ms`);
  } finally {
    await server.close();
  }
});

Deno.test("the front: a body the head announces far down or with a huge length is still one request; bad Hosts are 400", async () => {
  const server = tokenServer({ requestTimeoutMs: 600, idleMs: 5000 });
  const auth = "Host: 127.0.0.1\r\nAuthorization: Bearer t0k\r\nContent-Type: application/json\r\n";
  try {
    for (
      const head of [
        `POST /p HTTP/1.1\r\n${auth}X-Pad: ${"p".repeat(17_000)}\r\nContent-Length: 100000\r\n\r\n`,
        `POST /p HTTP/1.1\r\n${auth}Content-Length: 1000000000000000\r\n\r\n`,
      ]
    ) {
      // The body trickles in lines that look like heads' ends: still a body, cut at the request's deadline.
      const slow = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await slow.write(new TextEncoder().encode(head));
      const trickle = setInterval(() => slow.write(new TextEncoder().encode("x\n\n")).catch(() => {}), 100);
      const started = Date.now();
      try {
        assert.ok(
          await closedWithin(slow, 4000),
          `the trickled body's connection is closed (${head.length} bytes of head)`,
        );
      } finally {
        clearInterval(trickle);
      }
      assert.ok(Date.now() - started < 3000, `closed after ${Date.now() - started} ms`);
    }
    for (const host of ["[zz]", "127.0.0.1:99999", "a:b", "[::1]/x?"]) {
      assert.equal(await statusWithHost(server.port, host), "HTTP/1.1 400 Bad Request", host);
    }
  } finally {
    await server.close();
  }
});

Deno.test("the front: a full front keeps a request whose answer is slow, and a chunked POST's connection goes on", async () => {
  const server = tokenServer({ maxConnections: 2, requestTimeoutMs: 1000, idleMs: 5000, evictableSilenceMs: 500 });
  const auth = "Host: 127.0.0.1\r\nAuthorization: Bearer t0k\r\n";
  const read = async (conn: Deno.Conn): Promise<string> => {
    const buf = new Uint8Array(4096);
    let got = "";
    while (!/\r\n\r\n[\s\S]*\n$/.test(got)) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    return got.split("\r\n")[0] + " " + (got.split("\r\n\r\n")[1] ?? "").trim();
  };
  const a = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const b = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  try {
    // Both slots hold a request whose answer takes 1.5 s: a newcomer at 0.8 s (past the 0.5 s of silence) is
    // refused, and neither waiting request loses its connection.
    for (const c of [a, b]) await c.write(new TextEncoder().encode(`GET /slow HTTP/1.1\r\n${auth}\r\n`));
    const answers = Promise.all([read(a), read(b)]);
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await statusWithHost(server.port, "127.0.0.1"), "HTTP/1.1 503 Service Unavailable");
    assert.deepEqual(await answers, ["HTTP/1.1 200 OK slow", "HTTP/1.1 200 OK slow"]);
    // A chunked POST is answered, and the connection serves a slow request past the request deadline after it.
    const chunked = `POST /p HTTP/1.1\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
      "2\r\n{}\r\n0\r\n\r\n";
    await a.write(new TextEncoder().encode(chunked));
    assert.equal(await read(a), "HTTP/1.1 200 OK got 2");
    // Its body followed to its last chunk: a chunked POST whose answer takes longer than the deadline is answered.
    await a.write(new TextEncoder().encode(chunked.replace("POST /p ", "POST /pslow ")));
    assert.equal(await read(a), "HTTP/1.1 200 OK got 2");
    await new Promise((r) => setTimeout(r, 300));
    await a.write(new TextEncoder().encode(`GET /slow HTTP/1.1\r\n${auth}\r\n`));
    assert.equal(await read(a), "HTTP/1.1 200 OK slow");
    // Now both are answered and silent: after 0.5 s a newcomer gets in (answered: 401 without the token).
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(await statusWithHost(server.port, "127.0.0.1"), "HTTP/1.1 401 Unauthorized");
  } finally {
    for (const c of [a, b]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await server.close();
  }
});

Deno.test("the front: a chunked body after 100 Continue is a body, not heads; an absolute-form target names the host", async () => {
  const server = tokenServer({ requestTimeoutMs: 800, idleMs: 5000 });
  const auth = "Host: 127.0.0.1\r\nAuthorization: Bearer t0k\r\n";
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const buf = new Uint8Array(4096);
  const readUntil = async (done: RegExp): Promise<string> => {
    let got = "";
    while (!done.test(got)) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    return got;
  };
  try {
    await conn.write(
      new TextEncoder().encode(
        `POST /p HTTP/1.1\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n` +
          "Expect: 100-continue\r\n\r\n",
      ),
    );
    assert.match(await readUntil(/\r\n\r\n/), /^HTTP\/1\.1 100 Continue/);
    // A body whose text looks like the end of a head and one announcing a long body: still the body.
    const text = '{"a":"\n\nfoo\ncontent-length: 99999\r\n\r\n"}';
    const body = new TextEncoder().encode(text);
    await conn.write(new TextEncoder().encode(`${body.length.toString(16)}\r\n${text}\r\n0\r\n\r\n`));
    assert.match(
      await readUntil(/\r\n\r\n[\s\S]*\n$/),
      new RegExp(`^HTTP/1\\.1 200 OK[\\s\\S]*got ${body.length}\\n$`),
    );
    // Past the request deadline, the kept-alive connection takes the next request (it was cut, taken for a body).
    await new Promise((r) => setTimeout(r, 1200));
    await conn.write(new TextEncoder().encode(`GET /x HTTP/1.1\r\n${auth}\r\n`));
    assert.match(await readUntil(/\r\n\r\n[\s\S]*\n$/), /^HTTP\/1\.1 200 OK[\s\S]*ok\n$/);
    // `GET http://localhost/x` with another Host: the target's host is the request's (it was a 400).
    await conn.write(
      new TextEncoder().encode(
        "GET http://localhost/x HTTP/1.1\r\nHost: b.example\r\nAuthorization: Bearer t0k\r\n\r\n",
      ),
    );
    assert.match(await readUntil(/\r\n\r\n[\s\S]*\n$/), /^HTTP\/1\.1 200 OK[\s\S]*ok\n$/);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
    await server.close();
  }
});

Deno.test("the front: connections reset before they are accepted do not hold up the next", async () => {
  const errors: string[] = [];
  const server = serveHttp({
    host: "127.0.0.1",
    port: 0,
    auth: null,
    routes: { "/x": () => text(200, "ok\n") },
    onError: (message) => errors.push(message),
  });
  try {
    // Connected and reset at once (a close with SO_LINGER 0), a hundred times, then one real request.
    const script = "import socket,struct,sys\nfor _ in range(100):\n" +
      " s=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n" +
      " s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0))\n s.close()\n";
    const out = await new Deno.Command("python3", { args: ["-c", script, String(server.port)] }).output()
      .catch(() => null);
    if (out === null || !out.success) console.log("python3 could not run: no resets were sent");
    const started = Date.now();
    assert.equal(await statusWithHost(server.port, "127.0.0.1"), "HTTP/1.1 200 OK");
    // Each such reset made the front pause 50 ms and say so (10 s for 200 of them).
    assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
    assert.deepEqual(errors.filter((m) => m === "http accept failed"), []);
  } finally {
    await server.close();
  }
});

Deno.test("the front's socket directory goes with its server, and those no running server holds are swept", async () => {
  const tmp = tmpdir();
  // Left by a server killed with SIGKILL: its lock file is there, and nobody holds it.
  const stale = join(tmp, "yak-http-987654321-left");
  Deno.mkdirSync(stale, { recursive: true });
  Deno.writeTextFileSync(join(stale, "lock"), "");
  Deno.writeTextFileSync(join(stale, "s"), "");
  // Made two minutes ago: a directory younger than a minute may be a server's between its lock file and its lock.
  const past = new Date(Date.now() - 120_000);
  Deno.utimeSync(stale, past, past);
  const running = serveHttp({ host: "127.0.0.1", port: 0, auth: null, routes: { "/x": () => text(200, "ok\n") } });
  const mine = () => [...Deno.readDirSync(tmp)].filter((e) => e.name.startsWith(`yak-http-${Deno.pid}-`)).length;
  let second: ReturnType<typeof serveHttp> | null = null;
  // Made just now and not locked yet (a server between its lock file and its lock): left alone.
  const young = join(tmp, "yak-http-987654322-young");
  Deno.mkdirSync(young, { recursive: true });
  Deno.writeTextFileSync(join(young, "lock"), "");
  try {
    assert.equal(mine(), 1);
    assert.throws(() => Deno.statSync(stale), Deno.errors.NotFound);
    assert.ok(Deno.statSync(young).isDirectory, "a young directory is not swept");
    // A second server sweeps too, and leaves the first's directory alone, old as it looks: its lock is held.
    const first = [...Deno.readDirSync(tmp)].find((e) => e.name.startsWith(`yak-http-${Deno.pid}-`))!.name;
    Deno.utimeSync(join(tmp, first), past, past);
    second = serveHttp({ host: "127.0.0.1", port: 0, auth: null, routes: { "/x": () => text(200, "ok\n") } });
    assert.equal(mine(), 2);
    assert.equal(await statusWithHost(running.port, "127.0.0.1"), "HTTP/1.1 200 OK");
  } finally {
    await running.close();
    await second?.close();
    Deno.removeSync(young, { recursive: true });
  }
  assert.equal(mine(), 0);
});
