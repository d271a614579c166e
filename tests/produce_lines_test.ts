/**
 * A native produce whose values come as attached lines (`lines: N` and N
 * newline-ended values after the frame, what `yak produce` sends for keyless
 * text lines): stored exactly as the same values sent as JSON records, and
 * every malformed form refused with the connection kept in step, against a
 * real broker process.
 *
 * Run: deno test --allow-net --allow-read --allow-write --allow-env --allow-run tests/produce_lines_test.ts
 *
 * @module
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FrameReader, writeAll } from "../src/protocol/frame.ts";
import { PartitionLog } from "../src/log/partition_log.ts";
import { Producer } from "../src/client/producer.ts";
import { TestCluster, withDeadline, yak } from "./harness.ts";

const encoder = new TextEncoder();

/** One raw connection: frames written as given, answers read in order. */
class Raw {
  readonly #conn: Deno.TcpConn;
  readonly #reader: FrameReader;
  #nextId = 1;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#reader = new FrameReader(conn, 1 << 20);
  }

  static async open(port: number): Promise<Raw> {
    return new Raw(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  write(bytes: Uint8Array | string): Promise<void> {
    return writeAll(this.#conn, typeof bytes === "string" ? encoder.encode(bytes) : bytes);
  }

  /** A produce of `fields` with `attachment` after it (announced as `attach`, unless `announce` says otherwise). */
  async produce(fields: Record<string, unknown>, attachment: Uint8Array, announce = String(attachment.length)) {
    const id = this.#nextId++;
    const json = JSON.stringify({ id, type: "produce", partition: 0, ...fields });
    await this.write(`{"attach":${announce},${json.slice(1)}\n`);
    await this.write(attachment);
    return { id, answer: await this.next() };
  }

  /** The next answer, or null once the broker closed the connection. */
  async next(): Promise<Record<string, unknown> | null> {
    const lines = await this.#reader.next();
    if (lines === null) return null;
    assert.equal(lines.length, 1, `one answer at a time: ${lines.join(" | ")}`);
    return JSON.parse(lines[0]);
  }

  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed by the broker */ }
  }
}

/** Lines that are each a value, newline-ended. */
function lines(...values: (string | Uint8Array)[]): Uint8Array {
  const parts = values.map((v) => typeof v === "string" ? encoder.encode(v) : v);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length + 1, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
    out[at++] = 0x0a;
  }
  return out;
}

/** The stored lines of a partition's first segment, parsed, without their checksums and times. */
async function storedValues(c: TestCluster, topic: string): Promise<Record<string, unknown>[]> {
  const file = PartitionLog.segmentFile(join(c.topicsDir(1), topic, "0"), 0);
  const text = await Deno.readTextFile(file);
  return text.trimEnd().split("\n").map((l) => {
    const { crc, ts, ...rest } = JSON.parse(l);
    assert.match(crc, /^[0-9a-f]{8}$/);
    assert.equal(typeof ts, "number");
    return rest;
  });
}

Deno.test("attached lines are stored as the same values sent as records; malformed ones are refused in step", () =>
  withDeadline(60_000, "produce lines", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 1 });
    const raws: Raw[] = [];
    try {
      const lease = await c.lease();
      const raw = await Raw.open(lease.port);
      raws.push(raw);
      const bytes = new Uint8Array([0xff, 0x41]);
      const texts = ["plain", "", "tab\there", 'a "quote" and a \\ backslash', "é€😀", "\r"];
      const { answer } = await raw.produce({ topic: "lines", lines: 7 }, lines(...texts, bytes));
      assert.equal(answer?.ok, true, JSON.stringify(answer));
      assert.deepEqual([answer?.baseOffset, answer?.count], [0, 7]);
      const asRecords = await raw.produce(
        {
          topic: "lines",
          records: [...texts.map((v) => ({ v })), { b: bytes.toBase64() }],
        },
        new Uint8Array(0),
        "0",
      );
      assert.equal(asRecords.answer?.ok, true, JSON.stringify(asRecords.answer));
      assert.equal(asRecords.answer?.baseOffset, 7);

      const stored = await storedValues(c, "lines");
      assert.equal(stored.length, 14);
      const field = (r: Record<string, unknown>) => ({ key: r.key, value: r.value, valueB64: r.valueB64 });
      assert.deepEqual(stored.slice(0, 7).map(field), stored.slice(7).map(field));
      assert.deepEqual(stored.slice(0, 7).map((r) => r.value ?? r.valueB64), [...texts, "/0E="]);

      // Malformed: each refused with its id, and the connection goes on (the frame's end was announced).
      const refused: [Record<string, unknown>, Uint8Array, string][] = [
        [{ lines: 3 }, lines("a", "b"), "fewer lines than announced"],
        [{ lines: 1 }, lines("a", "b"), "more lines than announced"],
        [{ lines: 1 }, encoder.encode("no newline"), "a last line without its newline"],
        [{ lines: 0 }, lines("a"), "zero lines"],
        [{ lines: 1, records: [{ v: "x" }] }, lines("a"), "records and lines both"],
        [{}, lines("a"), "lines without their count"],
      ];
      for (const [fields, attachment, what] of refused) {
        const { id, answer } = await raw.produce({ topic: "lines", ...fields }, attachment);
        assert.deepEqual([answer?.id, answer?.ok, answer?.code], [id, false, "INVALID_REQUEST"], what);
      }
      assert.equal((await storedValues(c, "lines")).length, 14, "nothing refused was stored");
      // Nor does a refused batch make the topic it names.
      const unmade = await raw.produce({ topic: "unmade", lines: 3 }, lines("a", "b"));
      assert.equal(unmade.answer?.code, "INVALID_REQUEST", JSON.stringify(unmade.answer));
      assert.equal(existsSync(join(c.topicsDir(1), "unmade")), false, "no topic made by a refused batch");

      // An attachment that arrives in pieces, with pauses: one frame, answered once it is whole.
      const slow = lines("x".repeat(100_000), "y");
      await raw.write(`{"attach":${slow.length},"id":99,"type":"produce","topic":"lines","partition":0,"lines":2}\n`);
      for (let at = 0; at < slow.length; at += 30_000) {
        await raw.write(slow.subarray(at, at + 30_000));
        await new Promise((r) => setTimeout(r, 20));
      }
      const whole = await raw.next();
      assert.deepEqual([whole?.id, whole?.ok, whole?.baseOffset, whole?.count], [99, true, 14, 2]);

      // A size that is not a number: the stream cannot be followed, so it is refused and closed.
      const garbled = await Raw.open(lease.port);
      raws.push(garbled);
      const bad = await garbled.produce({ topic: "lines", lines: 1 }, lines("a"), "1x");
      assert.equal(bad.answer?.code, "INVALID_REQUEST", JSON.stringify(bad.answer));
      assert.equal(await garbled.next(), null, "closed after a garbled attachment size");

      // A size past the frame limit (16 MiB): refused at the announcement, before any byte of it is read.
      const huge = await Raw.open(lease.port);
      raws.push(huge);
      await huge.write(`{"attach":${64 << 20},"id":1,"type":"produce","topic":"lines","partition":0,"lines":1}\n`);
      const tooLarge = await huge.next();
      assert.equal(tooLarge?.code, "FRAME_TOO_LARGE", JSON.stringify(tooLarge));
      assert.equal(await huge.next(), null, "closed after a frame over the limit");

      // The first connection still works.
      const after = await raw.produce({ topic: "lines", lines: 1 }, lines("last"));
      assert.deepEqual([after.answer?.ok, after.answer?.baseOffset], [true, 16]);

      // A value over max.message.bytes (1 MiB here) is refused by its number; nothing of the batch is stored.
      const large = await raw.produce({ topic: "lines", lines: 2 }, lines("small", "x".repeat(1_100_000)));
      assert.deepEqual(
        [large.answer?.code, large.answer?.record],
        ["MESSAGE_TOO_LARGE", 1],
        JSON.stringify(large.answer),
      );

      // An idempotent producer's retry is answered as a duplicate, but only when its lines are whole too: the
      // leader reads a retry's lines though it does not write them.
      await raw.write('{"id":300,"type":"init_producer"}\n');
      const producer = (await raw.next())?.producerId;
      assert.equal(typeof producer, "string");
      const first = await raw.produce({ topic: "lines", lines: 2, producer, seq: 0 }, lines("p", "q"));
      assert.deepEqual([first.answer?.ok, first.answer?.baseOffset, first.answer?.duplicate], [true, 17, false]);
      const torn = await raw.produce({ topic: "lines", lines: 2, producer, seq: 0 }, lines("p", "q", "r"));
      assert.deepEqual([torn.answer?.ok, torn.answer?.code], [false, "INVALID_REQUEST"], JSON.stringify(torn.answer));
      const retry = await raw.produce({ topic: "lines", lines: 2, producer, seq: 0 }, lines("p", "q"));
      assert.deepEqual([retry.answer?.ok, retry.answer?.baseOffset, retry.answer?.duplicate], [true, 17, true]);
      assert.deepEqual((await storedValues(c, "lines")).slice(16).map((r) => r.value), ["last", "p", "q"]);
    } finally {
      for (const r of raws) r.close();
      await c.stop();
    }
  }));

Deno.test("yak produce hands keyless lines over as bytes, Producer.addLines mixes with add in order, and falls back to records", () =>
  withDeadline(60_000, "produce lines: the client", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 1 });
    let producer: Producer | null = null;
    try {
      // CRLF and LF line ends, an empty line, bytes that are not UTF-8, a last line without its newline.
      const input = new Uint8Array([
        ...encoder.encode("crlf\r\n\nplain\n"),
        0xff,
        0x41,
        0x0a,
        ...encoder.encode('quote " and é\r\nlast'),
      ]);
      const out = await yak(["produce", "--topic", "cli", ...c.zkFlag], { stdin: input, timeoutMs: 20_000 });
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stderr, /6 records \(29 bytes\) acknowledged/, out.stderr);
      const stored = await storedValues(c, "cli");
      assert.deepEqual(stored.map((r) => r.value ?? r.valueB64), [
        "crlf",
        "",
        "plain",
        "/0E=",
        'quote " and é',
        "last",
      ]);
      assert.deepEqual(stored.map((r) => r.offset), [0, 1, 2, 3, 4, 5]);

      // The library: records and lines in one partition keep the order they were added in, with one
      // sequence (an idempotent producer's batches are numbered by their record counts).
      producer = await Producer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
        topic: "mixed",
        batchRecords: 3,
      });
      producer.add(null, "one");
      assert.equal(producer.addLines(encoder.encode("two\nthree\r\nfour\nfive")), 4);
      producer.add("k", "six");
      assert.equal(producer.addLines(encoder.encode("seven")), 1);
      await producer.flush();
      assert.equal(producer.ackedRecords, 7);
      const mixed = await storedValues(c, "mixed");
      assert.deepEqual(mixed.map((r) => r.value), ["one", "two", "three", "four", "five", "six", "seven"]);
      assert.deepEqual(mixed.map((r) => r.key), [null, null, null, null, null, "k", null]);
      assert.deepEqual(mixed.map((r) => r.seq), [0, 1, 2, 3, 4, 5, 6]);
      await producer.close();

      // As a broker older than attached lines gets them: lines added as bytes become JSON records, stored alike.
      producer = await Producer.open({
        bootstrap: { zookeeper: { host: "127.0.0.1", port: c.zkPort } },
        topic: "json",
        attachLines: false,
      });
      producer.addLines(input);
      await producer.flush();
      const json = await storedValues(c, "json");
      assert.deepEqual(json.map((r) => r.value ?? r.valueB64), stored.map((r) => r.value ?? r.valueB64));
    } finally {
      await producer?.close();
      await c.stop();
    }
  }));
