/**
 * The SASL/PLAIN flow before KIP-152, byte by byte over a real TCP connection
 * to a real broker with an auth token: SaslHandshake v0, then the PLAIN token
 * as a bare size-prefixed frame with no request header, answered with an
 * empty frame (kafka-python 2.0 authenticates this way; its own test is in
 * kafka_python_test.ts). The requests here are pipelined in one write, so the
 * replies must come back in request order, and the request right after the
 * token must already count as authenticated.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { MAX_SASL_TOKEN_BYTES } from "../src/kafka/sasl.ts";
import { Reader, Writer } from "../src/kafka/wire.ts";
import { concatBytes, TestCluster, withDeadline } from "./harness.ts";

const TOKEN = "bare-s3cret-token";
const WRONG = "bare-wrong-password";
const text = new TextEncoder();

/** A request frame with a v1 header. */
function request(key: number, version: number, correlationId: number, body: (w: Writer) => void): Uint8Array {
  const w = new Writer(false);
  w.int32(0).int16(key).int16(version).int32(correlationId).nullableString("sasl-test");
  body(w);
  return sized(w.finish());
}

function sized(frame: Uint8Array): Uint8Array {
  new DataView(frame.buffer, frame.byteOffset).setInt32(0, frame.length - 4);
  return frame;
}

/** A bare frame: the size, then `bytes`, no header. */
function bare(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length);
  out.set(bytes, 4);
  return sized(out);
}

/** Reads whole reply frames (their bytes after the size) until the broker closes the connection. */
async function readFrames(conn: Deno.Conn, count: number): Promise<{ frames: Uint8Array[]; closed: boolean }> {
  let buf: Uint8Array = new Uint8Array(0);
  const frames: Uint8Array[] = [];
  while (frames.length < count) {
    while (buf.length >= 4) {
      const size = new DataView(buf.buffer, buf.byteOffset).getInt32(0);
      if (buf.length < 4 + size) break;
      frames.push(buf.slice(4, 4 + size));
      buf = buf.slice(4 + size);
    }
    if (frames.length >= count) break;
    const chunk = new Uint8Array(65536);
    const got = await conn.read(chunk).catch(() => null);
    if (got === null) return { frames, closed: true };
    buf = concatBytes([buf, chunk.subarray(0, got)]);
  }
  return { frames, closed: false };
}

const handshakeV0 = (id: number) => request(17, 0, id, (w) => w.string("PLAIN"));
const metadataV0 = (id: number) => request(3, 0, id, (w) => w.stringArray([]));

Deno.test({
  name: "SaslHandshake v0 then the bare PLAIN token, pipelined with ApiVersions and Metadata: replies in order",
  fn: () =>
    withDeadline(60_000, "bare sasl token", async () => {
      const c = await TestCluster.start({ brokers: 1, env: { YAK_AUTH_TOKEN: TOKEN } });
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: c.kafkaPorts.get(1)! });
      try {
        await conn.write(concatBytes([
          request(18, 0, 1, () => {}),
          handshakeV0(2),
          bare(text.encode(`\u0000any\u0000${TOKEN}`)),
          metadataV0(3),
        ]));
        const { frames, closed } = await readFrames(conn, 4);
        assert.ok(!closed, `the broker closed the connection after ${frames.length} replies`);
        assert.equal(new Reader(frames[0], false).int32(), 1, "ApiVersions first");
        const hs = new Reader(frames[1], false);
        assert.equal(hs.int32(), 2, "then the handshake");
        assert.equal(hs.int16(), 0, "the handshake succeeded");
        assert.deepEqual(hs.stringArray(), ["PLAIN"]);
        assert.equal(frames[2].length, 0, "then the token's empty reply");
        assert.equal(new Reader(frames[3], false).int32(), 3, "then Metadata, already authenticated");
        console.log(`  replies in order: ${frames.map((f) => f.length).join(", ")} bytes`);
      } finally {
        conn.close();
        await c.stop();
      }
    }),
});

Deno.test({
  name:
    "after SaslHandshake v0, a wrong bare token or one over the size limit closes the connection, logged without it",
  fn: () =>
    withDeadline(60_000, "bare sasl refusals", async () => {
      const c = await TestCluster.start({ brokers: 1, env: { YAK_AUTH_TOKEN: TOKEN } });
      try {
        const tries = [
          bare(text.encode(`${WRONG}\u0000any\u0000${WRONG}`)),
          bare(new Uint8Array(MAX_SASL_TOKEN_BYTES + 1)),
          // A SaslAuthenticate is not what a v0 handshake expects: its bytes are taken as the token.
          request(36, 0, 3, (w) => w.nullableBytes(text.encode(`\u0000any\u0000${TOKEN}`))),
        ];
        for (const token of tries) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: c.kafkaPorts.get(1)! });
          try {
            await conn.write(concatBytes([handshakeV0(2), token, metadataV0(4)]));
            const { frames, closed } = await readFrames(conn, 3);
            assert.ok(closed, "the connection is closed");
            assert.ok(frames.length <= 1, `${frames.length} replies after a refused token`);
          } finally {
            conn.close();
          }
        }
        const log = await Deno.readTextFile(join(c.dir, "broker-1", "broker.log"));
        // Two wrong tokens from one address within the log window: one line (the rest are counted, not logged).
        assert.equal(log.match(/kafka authentication failed/g)?.length, 1, log);
        assert.match(log, /kafka frame refused/);
        assert.doesNotMatch(log, /kafka request header malformed|unauthenticated kafka request/);
        assert.ok(!log.includes(TOKEN) && !log.includes(WRONG), "no token in the operation log");
      } finally {
        await c.stop();
      }
    }),
});
