import assert from "node:assert/strict";
import { MAX_ARRAY_ITEMS, Reader, Writer } from "./wire.ts";
import { MAX_ERROR_MESSAGE_CHARS, YakError } from "../errors.ts";

Deno.test("a writer grows past its first buffer and keeps every byte", () => {
  const w = new Writer(false, 8);
  const big = new Uint8Array(1000).map((_, i) => i & 0xff);
  w.int8(-1).int16(-2).int32(-3).int64(2 ** 53 - 1).uvarint(300).nullableBytes(big).string("é").bool(true);
  for (let i = 0; i < 200; i++) w.uvarint(0xffffffff);
  const r = new Reader(w.finish(), false);
  assert.equal(r.int8(), -1);
  assert.equal(r.int16(), -2);
  assert.equal(r.int32(), -3);
  assert.equal(r.int64(), 2 ** 53 - 1);
  assert.equal(r.uvarint(), 300);
  assert.deepEqual(r.nullableBytes(), big);
  assert.equal(r.string(), "é");
  assert.equal(r.bool(), true);
  for (let i = 0; i < 200; i++) assert.equal(r.uvarint(), 0xffffffff);
  assert.equal(r.remaining, 0);
});

Deno.test("large pieces go out as parts, not copied; small ones are copied; both read as one buffer", () => {
  const big = [new Uint8Array(20_000).fill(7), new Uint8Array(5).fill(8)];
  const small = [new Uint8Array(3).fill(9)];
  const w = new Writer(false, 8);
  w.int32(0).bytesOf(big).int16(5).bytesOf(small).bytesOf(big).string("end");
  const parts = w.finishParts();
  // head, the two big pieces, the run between, the big pieces again, the tail.
  assert.equal(parts.length, 7);
  assert.equal(parts[1], big[0]);
  assert.equal(parts[2], big[1]);
  assert.equal(parts[4], big[0]);
  const joined = w.finish();
  assert.equal(w.length, joined.length);
  assert.equal(parts.reduce((n, p) => n + p.length, 0), joined.length);
  const r = new Reader(joined, false);
  assert.equal(r.int32(), 0);
  assert.deepEqual(r.nullableBytes(), new Uint8Array([...big[0], ...big[1]]));
  assert.equal(r.int16(), 5);
  assert.deepEqual(r.nullableBytes(), small[0]);
  assert.deepEqual(r.nullableBytes(), new Uint8Array([...big[0], ...big[1]]));
  assert.equal(r.string(), "end");
  assert.equal(r.remaining, 0);
});

Deno.test("compact (flexible) strings, arrays and tagged fields round-trip", () => {
  const w = new Writer(true);
  w.string("abc").nullableString(null).array([1, 2], (w, v) => w.int32(v)).int32Array([7, 8]).stringArray(["x"])
    .tags();
  const r = new Reader(w.finish(), true);
  assert.equal(r.string(), "abc");
  assert.equal(r.nullableString(), null);
  assert.deepEqual(r.array((r) => r.int32()), [1, 2]);
  assert.deepEqual(r.int32Array(), [7, 8]);
  assert.deepEqual(r.stringArray(), ["x"]);
  r.tags();
  assert.equal(r.remaining, 0);
});

Deno.test("hostile lengths are refused before anything is allocated", () => {
  const errorOf = (bytes: number[], read: (r: Reader) => unknown, flexible = false) =>
    assert.throws(() => read(new Reader(new Uint8Array(bytes), flexible)), /malformed Kafka request/);
  errorOf([0x7f, 0xff, 0xff, 0xff], (r) => r.array((r) => r.int8())); // 2^31-1 elements in 4 bytes
  errorOf([0, 0, 0, 2, 0], (r) => r.int32Array()); // two int32 in one byte
  errorOf([0xff, 0xfe], (r) => r.string()); // length -2
  errorOf([0, 5, 0x61], (r) => r.string()); // runs past the end
  errorOf([0, 2, 0xc3, 0x28], (r) => r.string()); // not UTF-8
  errorOf([0xff, 0xff, 0xff, 0xff, 0xff, 0x01], (r) => r.uvarint()); // over 5 bytes
  errorOf([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], (r) => r.int64()); // not a safe integer
  errorOf([0x01, 0x00, 0x05, 0x61], (r) => r.tags(), true); // a tagged field past the end
  assert.ok(MAX_ARRAY_ITEMS >= 10_000);
});

Deno.test("a string too long for an int16 length is refused, never written with a wrapped length; error messages fit one", () => {
  const w = new Writer(false, 8);
  w.string("x".repeat(32767));
  assert.throws(() => new Writer(false, 8).string("x".repeat(32768)), { code: "INTERNAL" });
  assert.throws(() => new Writer(false, 8).nullableString("é".repeat(20000)), { code: "INTERNAL" });
  new Writer(true, 8).string("x".repeat(40000)); // a compact string's length is a varint
  // A message that quotes what a client sent is cut, so any error fits an int16 string.
  const long = `ask broker '${"2".repeat(40000)}' for its own configs`;
  const err = new YakError("INVALID_REQUEST", long);
  assert.equal(err.message.length, MAX_ERROR_MESSAGE_CHARS);
  assert.ok(err.message.startsWith("ask broker '2222"));
  assert.ok(err.message.endsWith(` ... (${long.length} characters in all)`), err.message.slice(-60));
  new Writer(false, 8).nullableString("\u{1F600}".repeat(30000).slice(0, MAX_ERROR_MESSAGE_CHARS));
  assert.ok(
    new TextEncoder().encode(new YakError("INVALID_REQUEST", "\u{1F600}".repeat(30000)).message).length <= 32767,
  );
});
