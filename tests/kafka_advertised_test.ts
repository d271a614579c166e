/**
 * `--advertised-host` is per broker: each broker registers its own Kafka
 * address with the zookeeper, and every broker's Metadata (read by kcat -L)
 * and FindCoordinator name each broker by its own address, whichever broker
 * a client asks. Skips with its reason where kcat is missing.
 */
import assert from "node:assert/strict";
import { Reader, Writer } from "../src/kafka/wire.ts";
import { kcatMissing, run, skipWithout, TestCluster, withDeadline } from "./harness.ts";

const missing = kcatMissing();
if (missing) console.log(`advertised-host test skipped: ${missing}`);

/** FindCoordinator v0 for `group` on one broker: the coordinator's id and address (request header v1). */
async function findCoordinator(port: number, group: string): Promise<{ error: number; id: number; addr: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const w = new Writer(false);
    w.int32(0).int16(10).int16(0).int32(7).nullableString("advertised-test").string(group);
    const frame = w.finish();
    new DataView(frame.buffer, frame.byteOffset).setInt32(0, frame.length - 4);
    await conn.write(frame);
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(4096);
    const size = () => buf.length >= 4 ? new DataView(buf.buffer, buf.byteOffset).getInt32(0) : Infinity;
    while (buf.length < 4 + size()) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error("the broker closed the connection");
      const joined = new Uint8Array(buf.length + n);
      joined.set(buf);
      joined.set(chunk.subarray(0, n), buf.length);
      buf = joined;
    }
    const r = new Reader(buf.subarray(4, 4 + size()), false);
    assert.equal(r.int32(), 7, "the correlation id");
    const error = r.int16();
    const id = r.int32();
    const addr = `${r.string()}:${r.int32()}`;
    return { error, id, addr };
  } finally {
    conn.close();
  }
}

Deno.test({
  name: "each broker is named by its own --advertised-host in every broker's Metadata and FindCoordinator",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(90_000, "per-broker advertised host", async () => {
      // Only broker 2 advertises another name; localhost resolves, so clients could still reach it.
      const c = await TestCluster.start({ brokerArgsById: { 2: ["--advertised-host", "localhost"] } });
      try {
        const expected = new Map<number, string>(
          [...c.kafkaPorts].map(([id, port]) => [id, `${id === 2 ? "localhost" : "127.0.0.1"}:${port}`]),
        );
        const leaderId = (await c.lease()).leaderId!;
        // Each broker learns the others' addresses from heartbeat replies: wait until all three list all three.
        const deadline = Date.now() + 20_000;
        for (const [id, port] of c.kafkaPorts) {
          let named = new Map<number, string>();
          while (true) {
            const k = await run("kcat", ["-L", "-J", "-b", `127.0.0.1:${port}`, "-m", "10"], { timeoutMs: 15_000 });
            assert.equal(k.code, 0, k.stderr);
            const meta = JSON.parse(new TextDecoder().decode(k.stdout));
            // The bootstrap connection answers (librdkafka names it by the address it was given).
            assert.match(
              meta.originating_broker.name,
              new RegExp(`^127\\.0\\.0\\.1:${port}/`),
              "the broker asked answers",
            );
            named = new Map((meta.brokers as { id: number; name: string }[]).map((b) => [b.id, b.name]));
            if (named.size === 3 || Date.now() > deadline) break;
            await new Promise((r) => setTimeout(r, 100));
          }
          console.log(`  Metadata through broker ${id}: ${[...named].map(([b, a]) => `${b}=${a}`).join(" ")}`);
          assert.deepEqual(named, expected, `Metadata through broker ${id}`);

          const fc = await findCoordinator(port, "g-advertised");
          console.log(`  FindCoordinator through broker ${id}: ${fc.id}=${fc.addr}`);
          assert.deepEqual(fc, { error: 0, id: leaderId, addr: expected.get(leaderId) });
        }
      } finally {
        await c.stop();
      }
    }),
});
