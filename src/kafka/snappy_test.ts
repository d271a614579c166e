import assert from "node:assert/strict";
import { snappyCompressBlock, snappyCompressXerial, snappyDecompress } from "./snappy.ts";
import { fixture, isYak, repeatedSample, sameBytes, seededBytes } from "./testdata/fixtures.ts";
import { YakError } from "../errors.ts";

const MB = 1 << 20;
const XERIAL_HEADER = [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1];

/** A xerial stream around the given raw blocks. */
function xerial(...blocks: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.from(XERIAL_HEADER)];
  for (const b of blocks) {
    const len = new Uint8Array(4);
    new DataView(len.buffer).setInt32(0, b.length);
    parts.push(len, b);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

Deno.test("snappy decodes a raw block that libsnappy wrote", () => {
  const packed = fixture("sample.txt.snappy");
  assert.ok(packed[0] !== 0x82, "not framed");
  assert.ok(sameBytes(snappyDecompress(packed, MB), fixture("sample.txt")));
});

Deno.test("snappy decodes the xerial framing around libsnappy blocks, several blocks", () => {
  const out = snappyDecompress(fixture("sample4.txt.xerial.snappy"), MB);
  assert.ok(sameBytes(out, repeatedSample(4)));
});

Deno.test("snappy round-trips its own encoder, raw and framed, across fragment and block edges", () => {
  const inputs = [
    new Uint8Array(0),
    Uint8Array.of(7),
    new TextEncoder().encode("abcabcabcabcabcabcabcabc"),
    fixture("sample.txt"),
    repeatedSample(256), // 165 KiB: three 64 KiB fragments
    new Uint8Array(200_000), // long runs: copies split at 64 bytes
    seededBytes(3, 70_000), // incompressible: long literals with 2-byte lengths
  ];
  for (const input of inputs) {
    const raw = snappyCompressBlock(input);
    assert.ok(sameBytes(snappyDecompress(raw, input.length), input), `raw, ${input.length} bytes`);
    for (const blockBytes of [1000, 32 * 1024]) {
      const framed = snappyCompressXerial(input, blockBytes);
      assert.ok(sameBytes(snappyDecompress(framed, input.length), input), `xerial, ${input.length} bytes`);
    }
  }
  assert.ok(snappyCompressBlock(repeatedSample(256)).length < 12_000, "repetition compresses");
});

Deno.test("snappy decodes 4-byte-offset copies and literals with long lengths", () => {
  // "a", then copy 9 bytes from 1 back with a 4-byte offset.
  assert.equal(
    new TextDecoder().decode(snappyDecompress(Uint8Array.of(10, 0x00, 0x61, 0x23, 1, 0, 0, 0), 100)),
    "a".repeat(10),
  );
  // A 61-byte literal: tag 60 says one length byte follows (length - 1).
  const lit = Uint8Array.from({ length: 61 }, (_, k) => k);
  const block = Uint8Array.of(61, 60 << 2, 60, ...lit);
  assert.ok(sameBytes(snappyDecompress(block, 100), lit));
});

Deno.test("snappy refuses output past maxBytes before allocating it", () => {
  // Declares 4 GiB - 1 in six bytes: a bomb that must not allocate.
  assert.throws(
    () => snappyDecompress(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x0f, 0x00), MB),
    isYak("CORRUPT_MESSAGE", "limit"),
  );
  // Within the limit but more than its few bytes of tags can stand for: refused as a lie, not allocated.
  assert.throws(
    () => snappyDecompress(Uint8Array.of(0xc0, 0x84, 0x3d, 0x00, 0x61), 64 * MB),
    isYak("CORRUPT_MESSAGE", "can hold"),
  );
  const input = new Uint8Array(10_000);
  assert.throws(() => snappyDecompress(snappyCompressBlock(input), 9_999), isYak("CORRUPT_MESSAGE", "limit"));
  // Framed: each block fits, their sum does not.
  const framed = snappyCompressXerial(input, 1000);
  assert.throws(() => snappyDecompress(framed, 9_999), isYak("CORRUPT_MESSAGE", "limit"));
  assert.equal(snappyDecompress(framed, 10_000).length, 10_000);
});

Deno.test("snappy refuses malformed raw blocks", () => {
  const cases: [string, number[]][] = [
    ["empty input", []],
    ["length varint never ends", [0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ["length over 32 bits", [0xff, 0xff, 0xff, 0xff, 0x1f]],
    ["copy with offset 0", [4, 0x00, 0x61, 0x01 | (0 << 2), 0]],
    ["copy before the start", [5, 0x00, 0x61, 0x01, 2]],
    ["literal past the input", [5, 4 << 2, 0x61]],
    ["literal past the declared length", [1, 1 << 2, 0x61, 0x62]],
    ["copy past the declared length", [3, 0x00, 0x61, 0x01, 1]],
    ["fewer bytes than declared", [3, 0x00, 0x61]],
    ["truncated literal length", [100, 61 << 2, 0x10]],
    ["truncated 1-byte copy", [5, 0x00, 0x61, 0x01]],
    ["truncated 2-byte copy", [5, 0x00, 0x61, 0x02, 1]],
    ["truncated 4-byte copy", [5, 0x00, 0x61, 0x03, 1, 0, 0]],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(() => snappyDecompress(Uint8Array.from(bytes), MB), isYak("CORRUPT_MESSAGE"), what);
  }
});

Deno.test("snappy refuses malformed xerial framing", () => {
  const block = snappyCompressBlock(new TextEncoder().encode("hello"));
  const good = xerial(block);
  assert.equal(new TextDecoder().decode(snappyDecompress(good, 100)), "hello");
  assert.throws(() => snappyDecompress(good.subarray(0, 12), 100), isYak("CORRUPT_MESSAGE", "header"));
  assert.throws(() => snappyDecompress(good.subarray(0, 18), 100), isYak("CORRUPT_MESSAGE", "truncated"));
  assert.throws(() => snappyDecompress(good.subarray(0, good.length - 1), 100), isYak("CORRUPT_MESSAGE"));
  const negative = good.slice();
  negative.set([0xff, 0xff, 0xff, 0xfe], 16);
  assert.throws(() => snappyDecompress(negative, 100), isYak("CORRUPT_MESSAGE", "-2 bytes"));
  const zero = good.slice();
  zero.set([0, 0, 0, 0], 16);
  assert.throws(() => snappyDecompress(zero, 100), isYak("CORRUPT_MESSAGE", "0 bytes"));
  // A block may not copy from the block before it: each stands alone.
  const second = Uint8Array.of(2, 0x01, 1);
  assert.throws(() => snappyDecompress(xerial(block, second), 100), isYak("CORRUPT_MESSAGE", "before the block"));
  // The header alone is an empty stream.
  assert.equal(snappyDecompress(Uint8Array.from(XERIAL_HEADER), 100).length, 0);
});

Deno.test("snappy: every prefix of a raw block fails; a framed prefix fails or yields whole blocks", () => {
  const raw = fixture("sample.txt.snappy");
  for (let n = 0; n < raw.length; n++) {
    assert.throws(() => snappyDecompress(raw.subarray(0, n), MB), isYak("CORRUPT_MESSAGE"), `prefix ${n}`);
  }
  const framed = fixture("sample4.txt.xerial.snappy");
  const whole = repeatedSample(4);
  let decoded = 0;
  for (let n = 0; n < framed.length; n++) {
    try {
      const out = snappyDecompress(framed.subarray(0, n), MB);
      assert.ok(out.length % 1024 === 0 && sameBytes(out, whole.subarray(0, out.length)), `prefix ${n}`);
      decoded++;
    } catch (err) {
      assert.ok(err instanceof YakError && err.code === "CORRUPT_MESSAGE", `prefix ${n}: ${err}`);
    }
  }
  // The framing has no end mark: the 16-byte header and the ends of blocks 1 and 2 are valid stopping points.
  assert.equal(decoded, 3);
});

Deno.test("snappy: damaged inputs throw CORRUPT_MESSAGE or decode within the limit, never anything else", () => {
  const inputs = [fixture("sample.txt.snappy"), fixture("sample4.txt.xerial.snappy")];
  const noise = seededBytes(11, 40_000);
  let k = 0;
  for (let round = 0; round < 2000; round++) {
    const input = inputs[round % 2].slice();
    const flips = 1 + (noise[k++] % 4);
    for (let f = 0; f < flips; f++) input[(noise[k++] << 8 | noise[k++]) % input.length] = noise[k++];
    try {
      assert.ok(snappyDecompress(input, 4096).length <= 4096);
    } catch (err) {
      assert.ok(err instanceof YakError && err.code === "CORRUPT_MESSAGE", `round ${round}: ${err}`);
    }
  }
});
