/**
 * Hostile clients against a real cluster: each attack is refused with
 * bounded work and memory, no broker loses its leadership over it, and data
 * stored before it reads back intact after it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { crc32c } from "../src/log/crc32c.ts";
import { memoryOf, seqText, TestCluster, withDeadline, yak } from "./harness.ts";
import { KafkaConn, produceBody, produceError } from "./kafka_conn.ts";

/** A zigzag varint (Kafka's record fields). */
function varint(n: number): number[] {
  let u = ((n << 1) ^ (n >> 31)) >>> 0;
  const out: number[] = [];
  while (u >= 0x80) {
    out.push((u & 0x7f) | 0x80);
    u >>>= 7;
  }
  out.push(u);
  return out;
}

/**
 * A gzip record batch of one record with `headers` empty headers (an empty
 * key, a null value: 2 bytes each), built byte by byte: tens of KB for 4M.
 */
function headerBomb(headers: number): Uint8Array {
  const head = [0, ...varint(0), ...varint(0), ...varint(-1), ...varint(1), 0x78, ...varint(headers)];
  const body = new Uint8Array(head.length + headers * 2);
  body.set(head);
  for (let at = head.length; at < body.length; at += 2) body[at + 1] = 0x01; // key length 0, value length -1
  const lengthPrefix = varint(body.length);
  const records = new Uint8Array(lengthPrefix.length + body.length);
  records.set(lengthPrefix);
  records.set(body, lengthPrefix.length);
  const packed = gzipSync(records, { level: 9 });
  const batch = new Uint8Array(61 + packed.length);
  const v = new DataView(batch.buffer);
  v.setBigInt64(0, 0n); // base offset
  v.setInt32(8, batch.length - 12); // batch length
  v.setInt32(12, -1); // partition leader epoch
  v.setInt8(16, 2); // magic
  v.setInt16(21, 1); // attributes: gzip
  v.setInt32(23, 0); // last offset delta
  v.setBigInt64(27, BigInt(Date.now()));
  v.setBigInt64(35, BigInt(Date.now()));
  v.setBigInt64(43, -1n); // producer id
  v.setInt16(51, -1);
  v.setInt32(53, -1);
  v.setInt32(57, 1); // one record
  batch.set(packed, 61);
  v.setUint32(17, crc32c(batch, 21));
  return batch;
}

Deno.test("a small gzip Produce with 4M empty headers on one record is refused at once; no election, memory bounded", () =>
  withDeadline(60_000, "header bomb", async () => {
    const c = await TestCluster.start({ brokers: 3, heartbeatMs: 100, sessionTimeoutMs: 500 });
    try {
      const stored = await yak(["produce", "--topic", "kept", ...c.zkFlag], { stdin: seqText(100) });
      assert.equal(stored.code, 0, stored.stderr);
      const leader = (await c.lease()).leaderId!;
      const pid = c.brokers.get(leader)!.pid;
      const rssBefore = (await memoryOf(pid, "VmRSS"))!;
      const zkLog = join(c.dir, "zookeeper", "zookeeper.log");
      const electionsBefore = (await Deno.readTextFile(zkLog)).split('"leader_elected"').length;
      const bomb = headerBomb(4_000_000);
      assert.ok(bomb.length < 64 * 1024, `the request is small (${bomb.length} bytes)`);

      const k = await KafkaConn.open(c.kafkaPorts.get(leader)!);
      let error: number;
      const t0 = performance.now();
      try {
        error = produceError(await k.call(0, 7, false, produceBody("bomb", 0, [bomb])));
      } finally {
        k.close();
      }
      const ms = performance.now() - t0;
      const rssAfter = (await memoryOf(pid, "VmRSS"))!;
      console.log(
        `4M-header gzip request (${bomb.length} bytes): error ${error} after ${ms.toFixed(0)} ms; ` +
          `leader RSS ${(rssBefore / 2 ** 20).toFixed(0)} -> ${(rssAfter / 2 ** 20).toFixed(0)} MB`,
      );
      assert.ok(error === 10 || error === 2, `MESSAGE_TOO_LARGE or CORRUPT_MESSAGE, not ${error}`);
      assert.ok(ms < 100, `answered in ${ms.toFixed(0)} ms`);
      assert.ok(rssAfter - rssBefore < 50 * 2 ** 20, `RSS grew by ${((rssAfter - rssBefore) / 2 ** 20).toFixed(0)} MB`);

      // Three sessions' worth, for a death that must not be declared.
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await c.lease()).leaderId, leader);
      assert.equal((await Deno.readTextFile(zkLog)).split('"leader_elected"').length, electionsBefore, "no election");
      const read = await yak(["consume", "--topic", "kept", "--from-beginning", "--max-messages", "100", ...c.zkFlag]);
      assert.equal(read.code, 0, read.stderr);
      assert.deepEqual(
        read.stdout.split("\n").filter(Boolean).map(Number).sort((a, b) => a - b),
        seqText(100).trim().split("\n").map(Number),
      );
    } finally {
      await c.stop();
    }
  }));

const TOKEN = "hostile-test-token";

/** SaslHandshake v1 for PLAIN, then SaslAuthenticate v1 with `password`: the authentication's error code. */
async function authenticate(k: KafkaConn, password: string): Promise<number> {
  const hs = await k.call(17, 1, false, (w) => w.string("PLAIN"));
  assert.equal(hs.int16(), 0, "PLAIN is offered");
  const r = await k.call(36, 1, false, (w) => w.nullableBytes(new TextEncoder().encode(`\u0000any\u0000${password}`)));
  return r.int16();
}

/** Whether the broker closed `k`: a Metadata request gets no answer. */
async function closed(k: KafkaConn): Promise<boolean> {
  try {
    await k.call(3, 0, false, (w) => w.array([], () => {}));
    return false;
  } catch {
    return true;
  }
}

Deno.test("SASL guesses on the Kafka port: each failure waits, closes its connection, and the log says it once", () =>
  withDeadline(60_000, "sasl guessing", async () => {
    const env = { YAK_AUTH_TOKEN: TOKEN };
    const c = await TestCluster.start({ brokers: 1, env });
    try {
      const stored = await yak(["produce", "--topic", "kept", "--zookeeper", c.zkAddr], { stdin: seqText(10), env });
      assert.equal(stored.code, 0, stored.stderr);
      const port = c.kafkaPorts.get(1)!;
      const t0 = performance.now();
      for (let i = 0; i < 20; i++) {
        const k = await KafkaConn.open(port);
        try {
          assert.equal(await authenticate(k, `guess-${i}`), 58, "SASL_AUTHENTICATION_FAILED");
          assert.ok(await closed(k), `guess ${i}: the connection was closed after the failure`);
        } finally {
          k.close();
        }
      }
      const ms = performance.now() - t0;
      console.log(`20 wrong SASL passwords: ${ms.toFixed(0)} ms (${(ms / 20).toFixed(0)} ms a guess)`);
      assert.ok(ms >= 20 * 200, `guessing is slowed (${ms.toFixed(0)} ms for 20)`);

      // A connection that authenticated, then fails a re-authentication: closed, not left authenticated.
      const k = await KafkaConn.open(port);
      try {
        assert.equal(await authenticate(k, TOKEN), 0);
        assert.ok(!(await closed(k)), "authenticated, it is served");
        assert.equal(await authenticate(k, "wrong"), 58);
        assert.ok(await closed(k), "a failed re-authentication closes the connection");
      } finally {
        k.close();
      }
      const log = await Deno.readTextFile(join(c.dir, "broker-1", "broker.log"));
      const lines = log.match(/kafka authentication failed/g)?.length ?? 0;
      assert.equal(lines, 1, `21 failures from one address in one window are logged once, not ${lines} times`);
      const read = await yak([
        "consume",
        "--topic",
        "kept",
        "--from-beginning",
        "--max-messages",
        "10",
        "--zookeeper",
        c.zkAddr,
      ], {
        env,
      });
      assert.equal(read.code, 0, read.stderr);
      assert.equal(read.stdout, seqText(10));
    } finally {
      await c.stop();
    }
  }));
