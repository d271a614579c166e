/**
 * A Kafka wire connection for tests that build requests field by field (no
 * client here reaches every version yak speaks, nor sends what a hostile or
 * odd client sends), and the Produce request and answer they share.
 */
import assert from "node:assert/strict";
import { encodeRecordBatch } from "../src/kafka/record_batch.ts";
import { Reader, Writer } from "../src/kafka/wire.ts";
import { concatBytes } from "./harness.ts";

/** One Kafka connection: a request at a time, its reply's body as a Reader. */
export class KafkaConn {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #correlationId = 0;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(port: number): Promise<KafkaConn> {
    return new KafkaConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /**
   * Sends `body` as API `key` version `version`; the request header is v2
   * (with tagged fields) when `flexible`, and so is the response header,
   * except for ApiVersions (KIP-511).
   */
  async call(key: number, version: number, flexible: boolean, body: (w: Writer) => void): Promise<Reader> {
    return (await this.pipeline(key, version, flexible, [body]))[0];
  }

  /**
   * Sends each body as a request, all of them written before any reply is
   * read (pipelined, as librdkafka does), and returns the replies in order.
   */
  async pipeline(key: number, version: number, flexible: boolean, bodies: ((w: Writer) => void)[]): Promise<Reader[]> {
    const ids: number[] = [];
    for (const body of bodies) ids.push(await this.send(key, version, flexible, body));
    const out: Reader[] = [];
    for (const id of ids) {
      const r = new Reader(await this.#frame(), false);
      assert.equal(r.int32(), id, "the correlation id");
      if (flexible && key !== 18) r.uvarint() === 0 || assert.fail("no tagged fields in the response header");
      r.flexible = flexible;
      out.push(r);
    }
    return out;
  }

  /** Sends one request and reads no reply (an acks=0 Produce gets none); returns its correlation id. */
  async send(key: number, version: number, flexible: boolean, body: (w: Writer) => void): Promise<number> {
    const id = ++this.#correlationId;
    const w = new Writer(false);
    w.int32(0).int16(key).int16(version).int32(id).nullableString("versions-test");
    if (flexible) w.uvarint(0);
    w.flexible = flexible;
    body(w);
    w.tags(); // the request's own tagged fields
    const frame = w.finish();
    new DataView(frame.buffer, frame.byteOffset).setInt32(0, frame.length - 4);
    for (let at = 0; at < frame.length;) at += await this.#conn.write(frame.subarray(at));
    return id;
  }

  async #frame(): Promise<Uint8Array> {
    const need = async (n: number) => {
      while (this.#buf.length < n) {
        const chunk = new Uint8Array(65536);
        const got = await this.#conn.read(chunk);
        if (got === null) throw new Error("the broker closed the connection");
        const joined = new Uint8Array(this.#buf.length + got);
        joined.set(this.#buf);
        joined.set(chunk.subarray(0, got), this.#buf.length);
        this.#buf = joined;
      }
    };
    await need(4);
    const size = new DataView(this.#buf.buffer, this.#buf.byteOffset).getInt32(0);
    await need(4 + size);
    const out = this.#buf.slice(4, 4 + size);
    this.#buf = this.#buf.slice(4 + size);
    return out;
  }

  close(): void {
    this.#conn.close();
  }
}

/** The response was read to its last byte, top-level tagged fields included. */
export function ends(r: Reader): void {
  r.tags();
  assert.equal(r.remaining, 0, `${r.remaining} bytes left over in the response`);
}

/** A Produce v7 request body: one partition, the given batches back to back, acks=all. */
export function produceBody(topic: string, partition: number, batches: Uint8Array[]): (w: Writer) => void {
  const records = concatBytes(batches);
  return (w) => {
    w.nullableString(null).int16(-1).int32(10_000);
    w.array([topic], (w, name) => {
      w.string(name);
      w.array([partition], (w, p) => w.int32(p).nullableBytes(records));
    });
  };
}

/** The error code of the one partition of a Produce v7 answer. */
export function produceError(r: Reader): number {
  const errors = produceErrors(r);
  assert.equal(errors.length, 1, "one partition answered");
  return errors[0];
}

/** The error codes of every partition of a Produce v7 answer, in order. */
export function produceErrors(r: Reader): number[] {
  const errors = r.array((r) => {
    r.string();
    return r.array((r) => {
      r.int32();
      const error = r.int16();
      r.int64(); // base offset
      r.int64(); // log append time
      r.int64(); // log start
      return error;
    });
  }).flat();
  r.int32(); // throttle
  ends(r);
  return errors;
}

/** A record batch of text values, with optional producer fields (id, epoch, first sequence). */
export function textBatch(
  values: readonly string[],
  producer: { producerId: bigint; producerEpoch: number; baseSequence: number } | Record<never, never> = {},
): Uint8Array {
  const text = new TextEncoder();
  return encodeRecordBatch({
    baseOffset: 0,
    partitionLeaderEpoch: -1,
    ...producer,
    records: values.map((v, i) => ({
      offsetDelta: i,
      timestamp: Date.now(),
      key: null,
      value: text.encode(v),
      headers: [],
    })),
  });
}
