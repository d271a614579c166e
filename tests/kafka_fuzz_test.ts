/**
 * Fuzzed Kafka frames against a live broker's Kafka port: random bytes,
 * valid headers with random or truncated bodies for every API and version
 * (in range and out of it), hostile lengths and counts, mutated produce
 * requests carrying real record batches, bad frame sizes. Every reply must
 * carry the correlation id of its request, in order, or the connection must
 * close; afterwards the broker still serves both protocols, its memory is
 * bounded, and a record produced before the fuzzing reads back unchanged.
 * Seeded: the seed is printed, and `YAK_FUZZ_SEED=N` replays it.
 */
import assert from "node:assert/strict";
import { encodeRecordBatch } from "../src/kafka/record_batch.ts";
import { Writer } from "../src/kafka/wire.ts";
import { memoryOf, TestCluster, withDeadline, yak } from "./harness.ts";
import { Rng } from "./rng.ts";

const FRAMES = 3_000;
const RSS_CEILING_MB = 320;

function header(apiKey: number, version: number, correlationId: number, flexible: boolean): Writer {
  const w = new Writer(false);
  w.int16(apiKey).int16(version).int32(correlationId).nullableString("fuzz");
  if (flexible) w.uvarint(0);
  return w;
}

/** A body shaped like Kafka's: a random run of typical fields, with hostile lengths now and then. */
function shapedBody(rng: Rng, w: Writer): void {
  const n = rng.int(12);
  for (let i = 0; i < n; i++) {
    switch (rng.int(8)) {
      case 0:
        w.int16(rng.pick([0, 1, -1, 32767, -32768, rng.int(65536) - 32768]));
        break;
      case 1:
        w.int32(rng.pick([0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 1_000_000, rng.int(100)]));
        break;
      case 2:
        w.int64(rng.pick([0n, -1n, -2n, 2n ** 63n - 1n, -(2n ** 63n), BigInt(rng.int(1e9))]));
        break;
      case 3:
        w.string(rng.pick(["", "t", "fuzz", "__cluster", "../../etc", "a".repeat(300), "é"]));
        break;
      case 4:
        w.int32(rng.pick([1, 2, 1000, 2 ** 31 - 1])); // an array count
        break;
      case 5:
        w.uvarint(rng.pick([0, 1, 127, 128, 2 ** 31, 0xffffffff]));
        break;
      case 6:
        w.raw(rng.bytes(rng.int(40)));
        break;
      default:
        w.int8(rng.int(256) - 128);
    }
  }
}

/** A Produce v3-7 request with a real record batch, maybe damaged; acks=0 gets no reply (as in Kafka). */
function produceFrame(rng: Rng, correlationId: number): { body: Uint8Array; reply: boolean } {
  const batch = encodeRecordBatch({
    baseOffset: 0,
    partitionLeaderEpoch: -1,
    records: Array.from({ length: 1 + rng.int(5) }, (_, i) => ({
      offsetDelta: i,
      timestamp: Date.now(),
      key: rng.chance(0.5) ? null : rng.bytes(rng.int(10)),
      value: rng.bytes(rng.int(50)),
      headers: [],
    })),
  });
  if (rng.chance(0.7)) {
    for (let i = 0; i < 1 + rng.int(4); i++) batch[rng.int(batch.length)] ^= 1 << rng.int(8);
  }
  const w = header(0, 3 + rng.int(5), correlationId, false);
  const acks = rng.pick([-1, 1, 0, 2]);
  w.nullableString(null).int16(acks).int32(1000);
  w.array([rng.pick(["fuzz", "keep", "../x", ""])], (w, t) => {
    w.string(t).array([rng.pick([0, 1, 2, 99, -1])], (w, p) => w.int32(p).nullableBytes(batch));
  });
  return { body: w.finish(), reply: acks !== 0 };
}

function frameOf(rng: Rng, correlationId: number): { bytes: Uint8Array; sizeOk: boolean; reply: boolean } {
  const kind = rng.int(10);
  let body: Uint8Array;
  let reply = true;
  if (kind === 0) body = rng.bytes(rng.int(64)); // not even a header
  else if (kind <= 2) ({ body, reply } = produceFrame(rng, correlationId));
  else {
    // Produce comes from produceFrame: a shaped one may say acks=0, which gets no reply at all.
    const apiKey = rng.chance(0.9)
      ? rng.pick([1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 36])
      : 1 + rng.int(80);
    const version = rng.chance(0.9) ? rng.int(12) : rng.int(65536) - 32768;
    const w = header(apiKey, version, correlationId, rng.chance(0.3));
    shapedBody(rng, w);
    body = w.finish();
    if (rng.chance(0.2)) body = body.subarray(0, rng.int(body.length + 1)); // truncated
  }
  const size = rng.chance(0.03) ? rng.pick([-1, 0, 3, 2 ** 31 - 1, 64 * 1024 * 1024]) : body.length;
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setInt32(0, size);
  out.set(body, 4);
  return { bytes: out, sizeOk: size === body.length && size >= 8, reply };
}

/** Sends a few frames on one connection; reads replies until each is answered or the broker closes. */
async function exchange(port: number, frames: Uint8Array[], ids: number[]): Promise<"answered" | "closed"> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (const f of frames) await conn.write(f).catch(() => {});
    let buf = new Uint8Array(0);
    let next = 0;
    const chunk = new Uint8Array(64 * 1024);
    const timer = setTimeout(() => conn.close(), 6_000);
    try {
      while (next < ids.length) {
        const n = await conn.read(chunk).catch(() => null);
        if (n === null) return "closed";
        const joined = new Uint8Array(buf.length + n);
        joined.set(buf);
        joined.set(chunk.subarray(0, n), buf.length);
        buf = joined;
        while (buf.length >= 8) {
          const v = new DataView(buf.buffer, buf.byteOffset);
          const size = v.getInt32(0);
          assert.ok(size >= 4 && size < 32 * 1024 * 1024, `reply size ${size}`);
          if (buf.length < 4 + size) break;
          // Replies come in request order, each with its request's correlation id.
          assert.equal(
            v.getInt32(4),
            ids[next],
            `replies in request order; frames sent: ${frames.map((f) => f.subarray(0, 16).toHex()).join(" ")}`,
          );
          next++;
          buf = buf.subarray(4 + size);
        }
      }
      return "answered";
    } finally {
      clearTimeout(timer);
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

Deno.test("fuzzed Kafka frames: replies in order or a closed connection; the broker serves on, memory bounded", () =>
  withDeadline(240_000, "kafka fuzz", async () => {
    const envSeed = Deno.env.get("YAK_FUZZ_SEED");
    const seed = envSeed ? Number(envSeed) : Math.floor(Math.random() * 2 ** 31);
    console.log(`kafka fuzz seed ${seed} (replay with YAK_FUZZ_SEED=${seed})`);
    const rng = new Rng(seed);
    const c = await TestCluster.start({ brokers: 1 });
    try {
      const keep = await yak(["produce", "--topic", "keep", "--partition", "0", "--message", "precious", ...c.zkFlag]);
      assert.equal(keep.code, 0, keep.stderr);
      const port = c.kafkaPorts.get(1)!;
      let correlationId = 1;
      let answered = 0, closed = 0;
      for (let sent = 0; sent < FRAMES;) {
        // One to four frames pipelined on a connection; replies are expected for those before a bad size.
        const frames: Uint8Array[] = [];
        const ids: number[] = [];
        const n = 1 + rng.int(4);
        for (let i = 0; i < n; i++, sent++) {
          const id = correlationId++;
          const f = frameOf(rng, id);
          frames.push(f.bytes);
          if (!f.sizeOk) break;
          if (f.reply) ids.push(id);
        }
        if ((await exchange(port, frames, ids)) === "answered") answered++;
        else closed++;
      }
      console.log(`kafka fuzz: ${FRAMES} frames; ${answered} connections answered in full, ${closed} closed`);
      assert.ok(answered > 0 && closed > 0, "both outcomes were exercised");

      // Unharmed: alive, bounded memory, both protocols serve, the record is intact.
      assert.equal(c.brokers.get(1)!.exited, false, "the broker is alive");
      const rss = await memoryOf(c.brokers.get(1)!.pid, "VmRSS");
      if (rss !== null) assert.ok(rss / 2 ** 20 < RSS_CEILING_MB, `broker RSS ${Math.round(rss / 2 ** 20)} MB`);
      const versions = header(18, 0, 424242, false).finish();
      const framed = new Uint8Array(4 + versions.length);
      new DataView(framed.buffer).setInt32(0, versions.length);
      framed.set(versions, 4);
      assert.equal(await exchange(port, [framed], [424242]), "answered");
      const back = await yak([
        "consume",
        "--topic",
        "keep",
        "--from-beginning",
        "--max-messages",
        "1",
        ...c.zkFlag,
      ]);
      assert.equal(back.code, 0, back.stderr);
      assert.equal(back.stdout, "precious\n");
    } finally {
      const broker = c.brokers.get(1);
      if (broker?.exited) console.log(`the broker exited; its last lines:\n${broker.lines.slice(-15).join("\n")}`);
      await c.stop();
    }
  }));
