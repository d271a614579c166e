import assert from "node:assert/strict";
import { murmur2, partitionForKey, toPositive } from "./murmur2.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

// From apache/kafka UtilsTest.testMurmur2, so a match means Java clients agree.
const KAFKA_VECTORS: [string, number][] = [
  ["21", -973932308],
  ["foobar", -790332482],
  ["a-little-bit-long-string", -985981536],
  ["a-little-bit-longer-string", -1486304829],
  ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
  ["abc", 479470107],
];

Deno.test("murmur2 matches Kafka's UtilsTest vectors", () => {
  for (const [input, expected] of KAFKA_VECTORS) {
    assert.equal(murmur2(utf8(input)), expected, input);
  }
});

Deno.test("murmur2 handles empty input and a one-byte tail", () => {
  // Kafka's vectors never leave exactly one tail byte; these values are the
  // ones other Kafka-compatible clients pin (printed unsigned there).
  assert.equal(murmur2(new Uint8Array(0)), 275646681);
  assert.equal(murmur2(utf8("Gorz!")), 1742407956);
  assert.equal(murmur2(utf8("987654321")), 577579727);
});

Deno.test("toPositive clears only the sign bit", () => {
  assert.equal(toPositive(-973932308), 1173551340);
  assert.equal(toPositive(479470107), 479470107);
  assert.equal(toPositive(-(2 ** 31)), 0);
  assert.equal(toPositive(-1), 0x7fffffff);
});

Deno.test("partitionForKey agrees with partitions derived from Kafka's vectors", () => {
  // (v mod 2**31) % n for Kafka's v, computed apart from this module's bit ops.
  assert.equal(partitionForKey("21", 3), 0);
  assert.equal(partitionForKey("21", 7), 3);
  assert.equal(partitionForKey("foobar", 3), 0);
  assert.equal(partitionForKey("a-little-bit-long-string", 3), 2);
  assert.equal(partitionForKey("a-little-bit-long-string", 7), 1);
  assert.equal(partitionForKey("a-little-bit-longer-string", 3), 2);
  assert.equal(
    partitionForKey("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 7),
    3,
  );
  assert.equal(partitionForKey("abc", 7), 4);
});

Deno.test("partitionForKey handles the empty key", () => {
  assert.equal(partitionForKey("", 3), 0);
  assert.equal(partitionForKey("", 7), 2);
  assert.equal(partitionForKey("", 1), 0);
});

Deno.test("partitionForKey hashes non-ASCII keys as UTF-8", () => {
  const key = "ключ-é🙂";
  // A one-byte-per-character encoding must not collide, or the test proves nothing.
  const lowBytes = Uint8Array.from(key, (c) => c.codePointAt(0)! & 0xff);
  assert.notEqual(murmur2(utf8(key)), murmur2(lowBytes));
  for (let n = 1; n <= 16; n++) {
    const p = partitionForKey(key, n);
    assert.equal(p, toPositive(murmur2(utf8(key))) % n);
    assert.ok(p >= 0 && p < n);
  }
});

Deno.test("partitionForKey rejects a bad partition count", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => partitionForKey("k", bad), RangeError, String(bad));
  }
});
