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
