import assert from "node:assert/strict";
import { lz4FrameCompress, lz4FrameDecompress } from "./lz4.ts";
import { fixture, isYak, repeatedSample, sameBytes, seededBytes } from "./testdata/fixtures.ts";
import { YakError } from "../errors.ts";

const MB = 1 << 20;

function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => p instanceof Uint8Array ? p : Uint8Array.from(p));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let pos = 0;
  for (const a of arrays) {
    out.set(a, pos);
    pos += a.length;
  }
  return out;
}

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
}

/** Magic, FLG 0x60 (independent blocks, no checksums), BD 64 KiB, and its header checksum: from yak's encoder. */
const INDEPENDENT_HEADER = lz4FrameCompress(new Uint8Array(0)).subarray(0, 7);
/** Magic, FLG 0x54 (linked blocks, block and content checksums), BD 64 KiB, checksum: written by the lz4 tool. */
const LINKED_HEADER = fixture("repeated.txt.lz4").subarray(0, 7);
/** Magic, FLG 0x6c (content size 648, content checksum), BD 64 KiB, checksum: written by the lz4 tool. */
const SIZED_HEADER = fixture("sample.txt.lz4").subarray(0, 15);
const END = u32le(0);

Deno.test("lz4 decodes frames the lz4 tool and python-lz4 wrote: sizes, checksums, linked and stored blocks", () => {
  assert.ok(sameBytes(lz4FrameDecompress(fixture("sample.txt.lz4"), MB), fixture("sample.txt")));
  assert.ok(sameBytes(lz4FrameDecompress(fixture("repeated.txt.lz4"), MB), repeatedSample(256)));
  assert.ok(sameBytes(lz4FrameDecompress(fixture("random.bin.lz4"), MB), fixture("random.bin")));
});

Deno.test("lz4 round-trips its own encoder over empty, small, multi-block and incompressible inputs", () => {
  const inputs = [
    new Uint8Array(0),
    Uint8Array.of(1, 2, 3),
    new TextEncoder().encode("yak yak yak yak yak yak yak"),
    fixture("sample.txt"),
    repeatedSample(256),
    new Uint8Array(300_000),
    seededBytes(5, 150_000),
    concat(seededBytes(6, 40_000), new Uint8Array(40_000), repeatedSample(20)),
  ];
  for (const input of inputs) {
    const frame = lz4FrameCompress(input);
    assert.ok(sameBytes(lz4FrameDecompress(frame, input.length), input), `${input.length} bytes`);
  }
  assert.ok(lz4FrameCompress(repeatedSample(256)).length < 4000, "repetition compresses");
  // Incompressible blocks are stored, at 4 bytes of overhead per 64 KiB.
  assert.ok(lz4FrameCompress(seededBytes(5, 150_000)).length <= 150_000 + 7 + 3 * 4 + 4);
});

Deno.test("lz4 steps over skippable frames and decodes concatenated frames", () => {
  const a = new TextEncoder().encode("first frame, ");
  const b = new TextEncoder().encode("second frame");
  const skippable = concat(u32le(0x184d2a5f), u32le(3), [9, 9, 9]);
  const out = lz4FrameDecompress(concat(skippable, lz4FrameCompress(a), lz4FrameCompress(b)), MB);
  assert.equal(new TextDecoder().decode(out), "first frame, second frame");
});

Deno.test("lz4 lets linked blocks reach into the block before, and independent blocks not", () => {
  const stored = concat(u32le(0x80000004), [0x61, 0x62, 0x63, 0x64]);
  // Literals 0, then a 4-byte match 4 back, then an empty last sequence.
  const copy = concat(u32le(4), [0x00, 0x04, 0x00, 0x00]);
  const checksum = [0, 0, 0, 0]; // FLG 0x54 carries block and content checksums; yak skips them
  const linked = concat(LINKED_HEADER, stored, checksum, copy, checksum, END, checksum);
  assert.equal(new TextDecoder().decode(lz4FrameDecompress(linked, 100)), "abcdabcd");
  const independent = concat(INDEPENDENT_HEADER, stored, copy, END);
  assert.throws(() => lz4FrameDecompress(independent, 100), isYak("CORRUPT_MESSAGE", "outside its window"));
});

Deno.test("lz4 stops a decompression bomb at maxBytes", () => {
  // One 64 KiB block of zeros is about 270 bytes; 100 of them declare nothing and inflate to 6.4 MiB.
  const zeros = lz4FrameCompress(new Uint8Array(1 << 16));
  const block = zeros.subarray(7, zeros.length - 4);
  const blocks = Array.from({ length: 100 }, () => block);
  const bomb = concat(INDEPENDENT_HEADER, ...blocks, END);
  assert.ok(bomb.length < 30_000);
  assert.throws(() => lz4FrameDecompress(bomb, MB), isYak("CORRUPT_MESSAGE", "limit"));
  assert.throws(() => lz4FrameDecompress(bomb, (100 << 16) - 1), isYak("CORRUPT_MESSAGE", "limit"));
  assert.equal(lz4FrameDecompress(bomb, 100 << 16).length, 100 << 16);
  // A declared content size past the limit is refused before any block is read.
  const declared = concat(SIZED_HEADER.subarray(0, 6), u32le(0), u32le(0x10), [0], END);
  assert.throws(() => lz4FrameDecompress(declared, MB), isYak("CORRUPT_MESSAGE", "limit"));
  // A stored block past the limit.
  const stored = concat(INDEPENDENT_HEADER, u32le(0x80000000 + 2000), new Uint8Array(2000), END);
  assert.throws(() => lz4FrameDecompress(stored, 1999), isYak("CORRUPT_MESSAGE", "limit"));
});

Deno.test("lz4 refuses malformed frames with a reason", () => {
  const good = lz4FrameCompress(new TextEncoder().encode("hello hello hello hello"));
  const patched = (pos: number, byte: number): Uint8Array => {
    const copy = good.slice();
    copy[pos] = byte;
    return copy;
  };
  const cases: [string, Uint8Array, string][] = [
    ["empty input", new Uint8Array(0), "empty"],
    ["wrong magic", patched(0, 0x05), "magic"],
    ["version 00", patched(4, 0x20), "version"],
    ["reserved FLG bit", patched(4, 0x62), "reserved"],
    ["reserved BD bit", patched(5, 0x41), "reserved"],
    ["block size code 3", patched(5, 0x30), "block maximum size"],
    ["dictionary id", patched(4, 0x61), "dictionary"],
    ["header checksum", patched(6, good[6] ^ 1), "header checksum"],
    ["no end mark", good.subarray(0, good.length - 4), "end mark"],
    ["block past the input", concat(INDEPENDENT_HEADER, u32le(100), [0x10, 0x61]), "end of the input"],
    ["block over the maximum", concat(INDEPENDENT_HEADER, u32le(0x10001), new Uint8Array(0x10001)), "maximum"],
    ["offset 0", concat(INDEPENDENT_HEADER, u32le(6), [0x10, 0x61, 0, 0, 0x00, 0x00], END), "back"],
    ["offset before the start", concat(INDEPENDENT_HEADER, u32le(6), [0x10, 0x61, 2, 0, 0x00, 0x00], END), "back"],
    ["literal past its block", concat(INDEPENDENT_HEADER, u32le(2), [0x20, 0x61], END), "literal"],
    ["truncated literal length", concat(INDEPENDENT_HEADER, u32le(2), [0xf0, 0xff], END), "literal length"],
    ["truncated offset", concat(INDEPENDENT_HEADER, u32le(3), [0x10, 0x61, 0x01], END), "offset"],
    ["truncated match length", concat(INDEPENDENT_HEADER, u32le(5), [0x1f, 0x61, 1, 0, 0xff], END), "match length"],
    ["block ends inside a sequence", concat(INDEPENDENT_HEADER, u32le(4), [0x10, 0x61, 1, 0], END), "inside"],
    [
      "fewer bytes than declared",
      concat(SIZED_HEADER, u32le(0x80000000 + 10), new Uint8Array(10), END, [0, 0, 0, 0]),
      "not the 648",
    ],
    [
      "more bytes than declared",
      concat(SIZED_HEADER, u32le(0x80000000 + 700), new Uint8Array(700), END),
      "more than the 648",
    ],
    [
      "truncated content checksum",
      concat(SIZED_HEADER, u32le(0x80000000 + 648), new Uint8Array(648), END, [0]),
      "content checksum",
    ],
    ["trailing garbage", concat(good, [1, 2, 3]), "magic"],
  ];
  for (const [what, input, mention] of cases) {
    assert.throws(() => lz4FrameDecompress(input, MB), isYak("CORRUPT_MESSAGE", mention), what);
  }
});

Deno.test("lz4: every prefix of a real frame fails", () => {
  for (const name of ["sample.txt.lz4", "repeated.txt.lz4", "random.bin.lz4"]) {
    const frame = fixture(name);
    for (let n = 0; n < frame.length; n++) {
      assert.throws(() => lz4FrameDecompress(frame.subarray(0, n), MB), isYak("CORRUPT_MESSAGE"), `${name}: ${n}`);
    }
  }
});

Deno.test("lz4: damaged inputs throw CORRUPT_MESSAGE or decode within the limit, never anything else", () => {
  const inputs = [fixture("sample.txt.lz4"), fixture("repeated.txt.lz4"), lz4FrameCompress(repeatedSample(3))];
  const noise = seededBytes(13, 60_000);
  let k = 0;
  for (let round = 0; round < 3000; round++) {
    const input = inputs[round % inputs.length].slice();
    const flips = 1 + (noise[k++] % 4);
    // Past the 7-byte header, mostly: the header checksum would catch damage there at once.
    for (let f = 0; f < flips; f++) input[7 + ((noise[k++] << 8 | noise[k++]) % (input.length - 7))] = noise[k++];
    try {
      assert.ok(lz4FrameDecompress(input, 200_000).length <= 200_000);
    } catch (err) {
      assert.ok(err instanceof YakError && err.code === "CORRUPT_MESSAGE", `round ${round}: ${err}`);
    }
  }
});
