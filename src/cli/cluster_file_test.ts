import assert from "node:assert/strict";
import { askCluster, type ClusterFile, runningCluster, serveControl, writeClusterFile } from "./cluster_file.ts";

/** Sends raw bytes to the control port and returns what comes back. */
async function raw(port: number, bytes: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(bytes).catch(() => 0);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(1024);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("the control port: the secret, ping, a request handed on, and bad input answered, never a crash", async () => {
  const asked: unknown[] = [];
  const server = serveControl("s3cret", (request) => {
    asked.push(request.broker);
    return Promise.resolve({ ok: true, message: `started ${request.broker}` });
  });
  const dir = await Deno.makeTempDir();
  try {
    const file: ClusterFile = {
      pid: Deno.pid,
      controlPort: server.port,
      secret: "s3cret",
      zookeeper: "127.0.0.1:1",
      brokers: 3,
      ready: true,
    };
    await writeClusterFile(dir, file);
    assert.equal((await Deno.stat(`${dir}/cluster.json`)).mode! & 0o777, 0o600);
    assert.deepEqual(await runningCluster(dir), file);
    assert.deepEqual(await askCluster(file, { type: "start", broker: 2 }, 1000), { ok: true, message: "started 2" });
    assert.deepEqual(asked, [2]);
    const wrong = await askCluster({ ...file, secret: "guess!" }, { type: "start", broker: 1 }, 1000);
    assert.equal(wrong.ok, false);
    assert.deepEqual(asked, [2], "a request with the wrong secret reached the cluster");
    const enc = new TextEncoder();
    assert.match(await raw(server.port, enc.encode("not json\n")), /"ok":false.*one JSON line/);
    assert.match(await raw(server.port, enc.encode("[1,2]\n")), /"ok":false.*one JSON object with a type/);
    assert.match(await raw(server.port, new Uint8Array(5000).fill(120)), /"ok":false/);
    // A stale file: nothing answers at its port.
    server.close();
    assert.equal(await runningCluster(dir), null);
  } finally {
    server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
