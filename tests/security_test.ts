/**
 * Who may connect: the auth token on every connection, and TLS for clients
 * and brokers, with real processes and a certificate made in the test.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePortRange, Proc, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";

const TOKEN = "s3cret-token-7f3a";

async function rawExchange(port: number, frame: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(frame + "\n"));
    const buf = new Uint8Array(4096);
    let text = "";
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break; // the server closed the connection
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

Deno.test("--auth-token: connections without the token are refused and logged, the token never shows", async () => {
  const cluster = await TestCluster.start({ env: { YAK_AUTH_TOKEN: TOKEN } });
  try {
    const denied = await yak(["status", ...cluster.zkFlag], { env: { YAK_AUTH_TOKEN: "" } });
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /auth token/);
    assert.doesNotMatch(denied.stderr, /\n\s+at /);

    assert.match(denied.stderr, /needs an auth token/);
    const wrong = await yak(["status", "--auth-token", "not-it", ...cluster.zkFlag]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /refused the auth token given/);
    assert.doesNotMatch(wrong.stderr, /not-it/);

    const lease = await cluster.lease();
    const raw = await rawExchange(lease.port, '{"id":1,"type":"metadata"}');
    const answer = JSON.parse(raw.trim().split("\n")[0]);
    assert.equal(answer.code, "UNAUTHORIZED");
    assert.equal(raw.trim().split("\n").length, 1, "nothing served before the connection is closed");

    const produced = await yak([
      "produce",
      "--topic",
      "sec",
      "--auth-token",
      TOKEN,
      "--message",
      "a",
      "--message",
      "b",
      ...cluster.zkFlag,
    ]);
    assert.equal(produced.code, 0, produced.stderr);
    const consumed = await yak(
      ["consume", "--topic", "sec", "--from-beginning", "--max-messages", "2", ...cluster.zkFlag],
      { env: { YAK_AUTH_TOKEN: TOKEN } },
    );
    assert.equal(consumed.stdout, "a\nb\n");
    const status = await yak(["status", "--json", ...cluster.zkFlag], { env: { YAK_AUTH_TOKEN: TOKEN } });
    assert.equal(status.code, 0, status.stderr);
    assert.ok(!status.stdout.includes(TOKEN));

    const brokerLog = await Deno.readTextFile(join(cluster.dir, `broker-${lease.leaderId}`, "broker.log"));
    const zkLog = await Deno.readTextFile(join(cluster.dir, "zookeeper", "zookeeper.log"));
    assert.match(brokerLog, /unauthorized connection refused/);
    assert.match(zkLog, /unauthorized connection refused/);
    assert.ok(!brokerLog.includes(TOKEN) && !zkLog.includes(TOKEN), "the token is never logged");
    assert.ok(!brokerLog.includes("not-it") && !zkLog.includes("not-it"), "nor a wrong one");
  } finally {
    await cluster.stop();
  }
});

Deno.test("--auth-token given to a cluster that runs without one: said as a refused token, not as a server of the wrong kind", async () => {
  // Before: "127.0.0.1:PORT does not answer as a yak zookeeper; check --zookeeper" (from the zookeeper), and
  // "brokers do not handle 'auth'" (from a broker).
  const cluster = await TestCluster.start({ brokers: 1 });
  try {
    const nativePort = cluster.brokerPorts.get(1)!;
    const kafkaPort = cluster.kafkaPorts.get(1)!;
    const tries: [string[], number][] = [
      [["topics", "--list", ...cluster.zkFlag], cluster.zkPort],
      [["status", ...cluster.zkFlag], cluster.zkPort],
      [["produce", "--topic", "t", "--message", "x", ...cluster.zkFlag], cluster.zkPort],
      [["topics", "--list", "--bootstrap", `127.0.0.1:${nativePort}`], nativePort],
      // A broker's Kafka port names its native port, which is asked instead.
      [["topics", "--list", "--bootstrap", `127.0.0.1:${kafkaPort}`], nativePort],
    ];
    for (const [args, port] of tries) {
      const res = await yak([...args, "--auth-token", "secret"], { timeoutMs: 20_000 });
      assert.equal(res.code, 1, res.stderr);
      assert.equal(
        res.stderr.trim(),
        `yak ${args[0]}: 127.0.0.1:${port} refused the auth token given (--auth-token or YAK_AUTH_TOKEN): it ` +
          `runs without a token; leave the token out`,
      );
    }
  } finally {
    await cluster.stop();
  }
});

/** The TLS test makes its certificates with openssl; a machine without it skips that test, saying why. */
function hasOpenssl(): boolean {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "TLS: clients and brokers talk TLS with a certificate made here; plain TCP gets nothing",
  ignore: skipWithout(hasOpenssl() ? null : "openssl is not installed (apt-get install openssl)"),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-tls-" });
  try {
    const { ca, cert, key } = await makeCerts(dir);
    const cluster = await TestCluster.start({
      serverArgs: ["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca],
      tlsCa: await Deno.readTextFile(ca),
    });
    try {
      const produced = await yak([
        "produce",
        "--topic",
        "tls",
        "--tls-ca",
        ca,
        "--message",
        "over tls",
        ...cluster.zkFlag,
      ]);
      assert.equal(produced.code, 0, produced.stderr);
      const consumed = await yak(
        ["consume", "--topic", "tls", "--from-beginning", "--max-messages", "1", ...cluster.zkFlag],
        { env: { YAK_TLS_CA: ca } },
      );
      assert.equal(consumed.stdout, "over tls\n");
      // The Kafka listener speaks TLS too: kcat (librdkafka) reads the record over SSL, trusting the test CA.
      const kcat = await new Deno.Command("kcat", {
        args: ["-C", "-b", cluster.bootstrapServers, "-X", "security.protocol=SSL", "-X", `ssl.ca.location=${ca}`]
          .concat(["-t", "tls", "-o", "beginning", "-c", "1", "-e", "-q"]),
        stdout: "piped",
        stderr: "piped",
      }).output().catch(() => null);
      if (kcat === null) console.log("kcat is not installed: the Kafka listener's TLS is not checked here");
      else assert.equal(new TextDecoder().decode(kcat.stdout), "over tls\n", new TextDecoder().decode(kcat.stderr));
      // Replication ran over TLS too: every broker holds the record.
      const lease = await cluster.lease();
      assert.deepEqual(lease.isr, [1, 2, 3]);
      const plain = await yak(["status", ...cluster.zkFlag]);
      assert.notEqual(plain.code, 0, "a plain-TCP client gets no answer");
      const raw = await rawExchange(lease.port, '{"id":1,"type":"metadata"}');
      assert.ok(!raw.includes('"ok":true'));
    } finally {
      await cluster.stop();
    }
  } finally {
    // Also when openssl or the cluster's start fails.
    await Deno.remove(dir, { recursive: true });
  }
});

/** A test CA and a server certificate it signs for 127.0.0.1, made by openssl in `dir`. */
async function makeCerts(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ca = join(dir, "ca.pem");
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const openssl = async (...args: string[]) => {
    const out = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped", cwd: dir }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  };
  await Deno.writeTextFile(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  const ca1 = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", ca, "-days", "1"];
  await openssl(...ca1, "-subj", "/CN=yak test CA");
  await openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", "cert.csr", "-subj", "/CN=x");
  const sign = ["x509", "-req", "-in", "cert.csr", "-CA", ca, "-CAkey", "ca.key", "-CAcreateserial", "-out", cert];
  await openssl(...sign, "-days", "1", "-extfile", "ext.cnf");
  return { ca, cert, key };
}

Deno.test({
  name: "TLS: yak cluster given the TLS flags serves TLS in its zookeeper and every broker",
  ignore: skipWithout(hasOpenssl() ? null : "openssl is not installed (apt-get install openssl)"),
}, async () => {
  await withDeadline(90_000, "cluster with TLS", async () => {
    const dir = await Deno.makeTempDir({ prefix: "yak-tls-cluster-" });
    let cluster: Proc | null = null;
    try {
      const { ca, cert, key } = await makeCerts(dir);
      const base = freePortRange(4);
      const zk = ["--zookeeper", `127.0.0.1:${base}`];
      cluster = new Proc("cluster", [
        "cluster",
        ...["--data", join(dir, "data"), "--zookeeper-port", String(base), "--base-port", String(base + 1)],
        ...["--http-port", "0", "--tls-cert", cert, "--tls-key", key, "--tls-ca", ca],
      ]);
      // Before, the children got the token alone: they served plain TCP, and the cluster's TLS check of them
      // never answered, so it never said ready.
      await cluster.waitFor(/^\[cluster\] ready: /, 60_000);
      const status = await yak(["status", "--json", "--tls-ca", ca, ...zk]);
      assert.equal(status.code, 0, status.stderr);
      assert.deepEqual(JSON.parse(status.stdout).lease.isr.sort(), [1, 2, 3]);
      const produced = await yak(["produce", "--topic", "t", "--message", "over tls", "--tls-ca", ca, ...zk]);
      assert.equal(produced.code, 0, produced.stderr);
      const plain = await yak(["status", "--connect-timeout-ms", "1000", ...zk]);
      assert.notEqual(plain.code, 0, "a plain-TCP client gets no answer from the zookeeper");
      const broker = await rawExchange(base + 1, '{"id":1,"type":"metadata"}');
      assert.ok(!broker.includes('"ok":true'), "a broker answered plain TCP");
    } finally {
      await cluster?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test({
  name: "TLS: a TLS client at a plain-TCP port is closed at once and told why, and the server says so",
  ignore: skipWithout(hasOpenssl() ? null : "openssl is not installed (apt-get install openssl)"),
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-tls-plain-" });
  const zk = new Proc("zookeeper", ["zookeeper", "--port", "0", "--data", join(dir, "data")]);
  try {
    const { ca } = await makeCerts(dir);
    const [, port] = await zk.waitFor(/^zookeeper listening on [\d.]+:(\d+)$/);
    const status = await yak([
      "status",
      "--tls-ca",
      ca,
      "--connect-timeout-ms",
      "3000",
      "--zookeeper",
      `127.0.0.1:${port}`,
    ]);
    assert.equal(status.code, 1);
    // Before, the server waited for a frame until its auth deadline, and the client for a handshake answer
    // with no deadline: "no answer", and nothing said why.
    assert.match(status.stderr, /the TLS handshake got no TLS answer: does the server have --tls-cert/, status.stderr);
    await zk.waitFor(/TLS client on a plain-TCP port/, 5000);
  } finally {
    await zk.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
