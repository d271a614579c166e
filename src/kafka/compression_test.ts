import assert from "node:assert/strict";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { compress, Compression, decompress, isCompressionCodec } from "./compression.ts";
import { fixture, isYak, repeatedSample, sameBytes, seededBytes } from "./testdata/fixtures.ts";
import { YakError } from "../errors.ts";

const MB = 1 << 20;
const CODECS = [Compression.none, Compression.gzip, Compression.snappy, Compression.lz4, Compression.zstd];

Deno.test("decompress reads what gzip, zstd, lz4 and libsnappy wrote, by codec id", () => {
  const sample = fixture("sample.txt");
  const cases: [number, string, Uint8Array][] = [
    [Compression.gzip, "sample.txt.gz", sample],
    [Compression.zstd, "sample.txt.zst", sample],
    [Compression.zstd, "repeated.txt.zst", repeatedSample(256)],
    [Compression.lz4, "sample.txt.lz4", sample],
    [Compression.lz4, "repeated.txt.lz4", repeatedSample(256)],
    [Compression.snappy, "sample.txt.snappy", sample],
    [Compression.snappy, "sample4.txt.xerial.snappy", repeatedSample(4)],
  ];
  for (const [codec, name, expected] of cases) {
    assert.ok(sameBytes(decompress(codec, fixture(name), MB), expected), name);
  }
});

Deno.test("compress then decompress gives the input back for every codec", () => {
  const repeated = repeatedSample(256);
  for (const input of [new Uint8Array(0), fixture("sample.txt"), repeated, seededBytes(9, 100_000)]) {
    for (const codec of CODECS) {
      const packed = compress(codec, input);
      assert.ok(sameBytes(decompress(codec, packed, input.length), input), `codec ${codec}, ${input.length} bytes`);
      if (codec !== Compression.none && input === repeated) {
        assert.ok(packed.length < input.length / 10, `codec ${codec} compresses repetition`);
      }
    }
  }
  // Kafka's Java client frames snappy the xerial way; yak writes it the same way.
  assert.deepEqual([...compress(Compression.snappy, Uint8Array.of(1)).subarray(0, 8)], [
    0x82,
    0x53,
    0x4e,
    0x41,
    0x50,
    0x50,
    0x59,
    0x00,
  ]);
});

Deno.test("every codec stops a bomb at maxBytes with CORRUPT_MESSAGE", () => {
  const zeros = new Uint8Array(8 * MB);
  for (const codec of CODECS) {
    const packed = compress(codec, zeros);
    if (codec !== Compression.none) assert.ok(packed.length < 400_000, `codec ${codec}: ${packed.length} bytes`);
    assert.throws(() => decompress(codec, packed, MB), isYak("CORRUPT_MESSAGE", "limit"), `codec ${codec}`);
    assert.throws(() => decompress(codec, packed, MB), (e) => e instanceof YakError && e.data?.maxBytes === MB);
    assert.throws(() => decompress(codec, packed, zeros.length - 1), isYak("CORRUPT_MESSAGE", "limit"));
    assert.equal(decompress(codec, packed, zeros.length).length, zeros.length);
  }
  // zstd with the size in its header is refused before decoding; so is the same size without a header (by zlib).
  const sized = zstdCompressSync(zeros);
  assert.throws(() => decompress(Compression.zstd, sized, 1000), isYak("CORRUPT_MESSAGE", "limit"));
  // maxBytes 0 still decodes an empty stream.
  assert.equal(decompress(Compression.gzip, gzipSync(new Uint8Array(0)), 0).length, 0);
  assert.throws(() => decompress(Compression.gzip, gzipSync(Uint8Array.of(1)), 0), isYak("CORRUPT_MESSAGE", "limit"));
});

Deno.test("decompress refuses an unknown codec id", () => {
  for (const codec of [5, 6, 7, -1]) {
    assert.throws(() => decompress(codec, Uint8Array.of(1), MB), isYak("CORRUPT_MESSAGE", "unknown"));
    assert.equal(isCompressionCodec(codec), false);
  }
  assert.throws(() => compress(5, Uint8Array.of(1)), isYak("INVALID_ARGUMENT"));
  assert.ok(CODECS.every(isCompressionCodec));
});

Deno.test("every prefix of a gzip or zstd stream fails, including zstd, which zlib would return short", () => {
  for (const [codec, name] of [[1, "sample.txt.gz"], [4, "sample.txt.zst"], [4, "repeated.txt.zst"]] as const) {
    const whole = fixture(name);
    for (let n = 0; n < whole.length; n++) {
      assert.throws(() => decompress(codec, whole.subarray(0, n), MB), isYak("CORRUPT_MESSAGE"), `${name}: ${n}`);
    }
  }
});

Deno.test("zstd frame walking: skippable frames, concatenated frames, reserved bits and block types", () => {
  const a = zstdCompressSync(new TextEncoder().encode("one "));
  const b = zstdCompressSync(new TextEncoder().encode("two"));
  const skippable = Uint8Array.of(0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 7, 7);
  const joined = new Uint8Array(skippable.length + a.length + b.length);
  joined.set(skippable);
  joined.set(a, skippable.length);
  joined.set(b, skippable.length + a.length);
  assert.equal(new TextDecoder().decode(decompress(Compression.zstd, joined, 100)), "one two");
  const reserved = a.slice();
  reserved[4] |= 0x08;
  assert.throws(() => decompress(Compression.zstd, reserved, 100), isYak("CORRUPT_MESSAGE", "reserved"));
  assert.throws(
    () => decompress(Compression.zstd, Uint8Array.of(1, 2, 3, 4, 5), 100),
    isYak("CORRUPT_MESSAGE", "magic"),
  );
  assert.throws(() => decompress(Compression.zstd, new Uint8Array(0), 100), isYak("CORRUPT_MESSAGE", "empty"));
  // Frame header 0x20: single segment, 1-byte size; then a block header of type 3.
  const badBlock = Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x20, 3, 0x07, 0, 0);
  assert.throws(() => decompress(Compression.zstd, badBlock, 100), isYak("CORRUPT_MESSAGE", "reserved type"));
});

Deno.test("damaged gzip and zstd inputs throw CORRUPT_MESSAGE or decode within the limit", () => {
  const inputs = [fixture("sample.txt.gz"), fixture("sample.txt.zst"), fixture("repeated.txt.zst")];
  const codecs = [Compression.gzip, Compression.zstd, Compression.zstd];
  const noise = seededBytes(17, 20_000);
  let k = 0;
  for (let round = 0; round < 900; round++) {
    const input = inputs[round % 3].slice();
    for (let f = 0; f < 2; f++) input[(noise[k++] << 8 | noise[k++]) % input.length] = noise[k++];
    try {
      assert.ok(decompress(codecs[round % 3], input, 200_000).length <= 200_000);
    } catch (err) {
      assert.ok(err instanceof YakError && err.code === "CORRUPT_MESSAGE", `round ${round}: ${err}`);
    }
  }
});
