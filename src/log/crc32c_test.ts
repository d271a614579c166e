import assert from "node:assert/strict";
import { crc32c, crc32cLine } from "./crc32c.ts";
import { YakError } from "../errors.ts";

/** One bit at a time: slow and obviously right, to check the sliced tables against. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

Deno.test("crc32c matches the published check value and the iSCSI vectors", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c over a range equals crc32c of the slice, for every length and alignment", () => {
  let seed = 12345;
  const bytes = Uint8Array.from({ length: 300 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  for (let start = 0; start < 9; start++) {
    for (let end = start; end <= bytes.length; end += 7) {
      const expected = crc32cBitwise(bytes.subarray(start, end));
      assert.equal(crc32c(bytes, start, end), expected, `range [${start}, ${end})`);
      assert.equal(crc32c(bytes.slice(start, end)), expected);
    }
  }
});

Deno.test("crc32c refuses a range outside the buffer", () => {
  const bytes = new Uint8Array(10);
  for (const [start, end] of [[-1, 5], [0, 11], [6, 5], [0.5, 4]]) {
    assert.throws(() => crc32c(bytes, start, end), (e) => e instanceof YakError && e.code === "INTERNAL");
  }
});

Deno.test("crc32cLine finds the newline and the checksum before the tail, for every length, start and tail", () => {
  let seed = 777;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  const out = { crc: -1 };
  for (let len = 0; len <= 80; len++) {
    // Bytes that are never a newline, then the newline, then a few more (the next line's start).
    const bytes = Uint8Array.from({ length: len + 6 }, () => next() | 0x10);
    bytes[len] = 0x0a;
    for (let start = 0; start <= Math.min(len, 20); start++) {
      for (let tail = 0; tail <= 40; tail++) {
        out.crc = -1;
        assert.equal(crc32cLine(bytes, start, tail, out), len, `len ${len} start ${start} tail ${tail}`);
        const stop = Math.max(start, len - tail);
        assert.equal(out.crc, crc32cBitwise(bytes.subarray(start, stop)), `len ${len} start ${start} tail ${tail}`);
      }
    }
  }
  // No newline after start: -1, and the checksum is not set.
  const none = new Uint8Array(50).fill(0x41);
  out.crc = 5;
  assert.equal(crc32cLine(none, 0, 18, out), -1);
  assert.equal(out.crc, 5);
  none[3] = 0x0a;
  assert.equal(crc32cLine(none, 4, 18, out), -1, "a newline before start is not this line's");
});
