import assert from "node:assert/strict";
import {
  decodeRecordBatches,
  encodeRecordBatch,
  type KafkaRecord,
  RECORD_BATCH_OVERHEAD_BYTES,
  type RecordBatch,
} from "./record_batch.ts";
import { compress, Compression } from "./compression.ts";
import { crc32c } from "../log/crc32c.ts";
import { fixture, isYak, sameBytes, seededBytes } from "./testdata/fixtures.ts";
import { YakError } from "../errors.ts";

const LIMITS = { maxRecords: 100_000, maxUncompressedBytes: 64 << 20 };
const TS = 1763764800123;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Zigzag varint of a small int (|n| < 64), as a test writes one by hand. */
function zz(n: number): number {
  assert.ok(n > -64 && n < 64);
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

/** A record from its body bytes: the length prefix added. */
function rec(...body: number[]): number[] {
  return [zz(body.length), ...body];
}

/** A record with attributes 0, the given deltas, key and value (null as -1), and no headers. */
function simpleRecord(offsetDelta: number, key: number[] | null, value: number[] | null): number[] {
  const field = (b: number[] | null) => b === null ? [zz(-1)] : [zz(b.length), ...b];
  return rec(0, zz(0), zz(offsetDelta), ...field(key), ...field(value), zz(0));
}

interface HandBatch {
  records: number[] | Uint8Array;
  count: number;
  attributes?: number;
  lastOffsetDelta?: number;
  magic?: number;
  baseOffset?: bigint;
  baseTimestamp?: bigint;
  maxTimestamp?: bigint;
}

/** Builds a batch header field by field, independently of encodeRecordBatch, with a correct CRC. */
function handBatch(h: HandBatch): Uint8Array {
  const records = h.records instanceof Uint8Array ? h.records : Uint8Array.from(h.records);
  const out = new Uint8Array(RECORD_BATCH_OVERHEAD_BYTES + records.length);
  const v = new DataView(out.buffer);
  v.setBigInt64(0, h.baseOffset ?? 0n);
  v.setInt32(8, out.length - 12);
  v.setInt32(12, 5);
  v.setInt8(16, h.magic ?? 2);
  v.setInt16(21, h.attributes ?? 0);
  v.setInt32(23, h.lastOffsetDelta ?? Math.max(0, h.count - 1));
  v.setBigInt64(27, h.baseTimestamp ?? BigInt(TS));
  v.setBigInt64(35, h.maxTimestamp ?? BigInt(TS));
  v.setBigInt64(43, -1n);
  v.setInt16(51, -1);
  v.setInt32(53, -1);
  v.setInt32(57, h.count);
  out.set(records, RECORD_BATCH_OVERHEAD_BYTES);
  fixCrc(out);
  return out;
}

/** Recomputes the CRC of a single batch after a test edits it. */
function fixCrc(batch: Uint8Array): Uint8Array {
  new DataView(batch.buffer, batch.byteOffset).setUint32(17, crc32c(batch, 21, batch.length));
  return batch;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function assertRecordsEqual(actual: KafkaRecord[], expected: KafkaRecord[]): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    assert.equal(a.offsetDelta, e.offsetDelta, `record ${i}`);
    assert.equal(a.timestamp, e.timestamp, `record ${i}`);
    assert.deepEqual(a.key && [...a.key], e.key && [...e.key], `record ${i} key`);
    assert.deepEqual(a.value && [...a.value], e.value && [...e.value], `record ${i} value`);
    assert.deepEqual(
      a.headers.map((h) => [h.key, h.value && [...h.value]]),
      e.headers.map((h) => [h.key, h.value && [...h.value]]),
      `record ${i} headers`,
    );
  }
}

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, k) => k);
const SAMPLE: KafkaRecord[] = [
  { offsetDelta: 0, timestamp: TS, key: text("user-7"), value: text("hello"), headers: [] },
  { offsetDelta: 1, timestamp: TS + 5, key: null, value: text("no key"), headers: [] },
  { offsetDelta: 2, timestamp: TS - 3, key: text("tombstone"), value: null, headers: [] },
  { offsetDelta: 3, timestamp: TS, key: new Uint8Array(0), value: new Uint8Array(0), headers: [] },
  {
    offsetDelta: 4,
    timestamp: TS + 86_400_000,
    key: ALL_BYTES,
    value: seededBytes(1, 20_000),
    headers: [
      { key: "trace", value: text("abc") },
      { key: "null-value", value: null },
      { key: "", value: new Uint8Array(0) },
      { key: "schéma-ü-🐂", value: ALL_BYTES },
      { key: "k".repeat(200), value: text("long key") },
    ],
  },
  { offsetDelta: 9, timestamp: TS, key: null, value: null, headers: [{ key: "gap", value: null }] },
];

Deno.test("a batch round-trips: keys, null keys and values, empty bytes, headers, binary, gaps, negative deltas", () => {
  const bytes = encodeRecordBatch({
    baseOffset: 1_234_567_890_123,
    partitionLeaderEpoch: 7,
    producerId: 4242n,
    producerEpoch: 3,
    baseSequence: 17,
    records: SAMPLE,
  });
  const batches = decodeRecordBatches(bytes, LIMITS);
  assert.equal(batches.length, 1);
  const b = batches[0];
  assert.deepEqual({ ...b, records: [] } satisfies RecordBatch, {
    baseOffset: 1_234_567_890_123,
    partitionLeaderEpoch: 7,
    attributes: 0,
    compression: 0,
    isLogAppendTime: false,
    lastOffsetDelta: 9,
    baseTimestamp: TS,
    maxTimestamp: TS + 86_400_000,
    producerId: 4242n,
    producerEpoch: 3,
    baseSequence: 17,
    isTransactional: false,
    isControl: false,
    records: [],
  });
  assertRecordsEqual(b.records, SAMPLE);
});

Deno.test("encodeRecordBatch writes the documented header bytes and defaults", () => {
  const bytes = encodeRecordBatch({
    baseOffset: 42,
    partitionLeaderEpoch: 3,
    records: [{ offsetDelta: 0, timestamp: TS, key: null, value: Uint8Array.of(0xab), headers: [] }],
  });
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  assert.equal(bytes.length, 61 + 8);
  assert.equal(v.getBigInt64(0), 42n);
  assert.equal(v.getInt32(8), bytes.length - 12);
  assert.equal(v.getInt32(12), 3);
  assert.equal(v.getInt8(16), 2);
  assert.equal(v.getUint32(17), crc32c(bytes, 21));
  assert.equal(v.getInt16(21), 0);
  assert.equal(v.getInt32(23), 0);
  assert.equal(v.getBigInt64(27), BigInt(TS));
  assert.equal(v.getBigInt64(35), BigInt(TS));
  assert.equal(v.getBigInt64(43), -1n);
  assert.equal(v.getInt16(51), -1);
  assert.equal(v.getInt32(53), -1);
  assert.equal(v.getInt32(57), 1);
  // length 7, attributes, timestamp delta 0, offset delta 0, null key, value of 1 byte, no headers
  assert.deepEqual([...bytes.subarray(61)], [14, 0, 0, 0, 1, 2, 0xab, 0]);
});

Deno.test("the same records encode byte for byte as a hand-built batch", () => {
  const hand = handBatch({
    count: 2,
    records: [...simpleRecord(0, [0x6b], [0x76, 0x31]), ...simpleRecord(1, null, null)],
  });
  const ours = encodeRecordBatch({
    baseOffset: 0,
    partitionLeaderEpoch: 5,
    records: [
      { offsetDelta: 0, timestamp: TS, key: Uint8Array.of(0x6b), value: Uint8Array.of(0x76, 0x31), headers: [] },
      { offsetDelta: 1, timestamp: TS, key: null, value: null, headers: [] },
    ],
  });
  assert.ok(sameBytes(ours, hand));
});

Deno.test("several batches in one buffer decode in order", () => {
  const a = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, records: SAMPLE.slice(0, 2) });
  const b = encodeRecordBatch({ baseOffset: 2, partitionLeaderEpoch: 1, records: SAMPLE.slice(2, 4) });
  const batches = decodeRecordBatches(concat(a, b), LIMITS);
  assert.deepEqual(batches.map((x) => [x.baseOffset, x.records.length]), [[0, 2], [2, 2]]);
  assertRecordsEqual(batches[1].records, SAMPLE.slice(2, 4));
  assert.deepEqual(decodeRecordBatches(new Uint8Array(0), LIMITS), []);
});

Deno.test("a batch that kafkajs (a real Kafka client) wrote into a Produce v3 request decodes", () => {
  for (const name of ["kafkajs_produce_v3.bin", "kafkajs_produce_v3_gzip.bin"]) {
    const [b] = decodeRecordBatches(fixture(name), LIMITS);
    assert.equal(b.compression, name.includes("gzip") ? Compression.gzip : Compression.none, name);
    assert.equal(b.producerId, 4242n);
    assert.equal(b.producerEpoch, 3);
    assert.equal(b.baseSequence, 17);
    assert.equal(b.lastOffsetDelta, 2);
    assert.equal(b.baseTimestamp, TS);
    assert.equal(b.maxTimestamp, TS + 77);
    assert.equal(b.isTransactional, false);
    assertRecordsEqual(b.records, [
      {
        offsetDelta: 0,
        timestamp: TS,
        key: text("user-7"),
        value: text("hello from kafkajs"),
        headers: [{ key: "trace", value: text("abc123") }, { key: "schema-ü", value: Uint8Array.of(0, 1, 2, 255) }],
      },
      { offsetDelta: 1, timestamp: TS + 2, key: null, value: text("second, no key"), headers: [] },
      { offsetDelta: 2, timestamp: TS + 77, key: text("tombstone"), value: null, headers: [] },
    ]);
  }
});

Deno.test("yak encodes the kafkajs records to the same bytes as kafkajs, but for its producer defaults", () => {
  const theirs = fixture("kafkajs_produce_v3.bin");
  const [b] = decodeRecordBatches(theirs, LIMITS);
  const ours = encodeRecordBatch({
    baseOffset: 0,
    partitionLeaderEpoch: 0,
    producerId: b.producerId,
    producerEpoch: b.producerEpoch,
    baseSequence: b.baseSequence,
    records: b.records,
  });
  assert.ok(sameBytes(ours, theirs));
});

Deno.test("compressed batches decode for every codec, including ones built by compressing the records by hand", () => {
  for (const codec of [Compression.gzip, Compression.snappy, Compression.lz4, Compression.zstd]) {
    const bytes = encodeRecordBatch({ baseOffset: 10, partitionLeaderEpoch: 2, compression: codec, records: SAMPLE });
    const [b] = decodeRecordBatches(bytes, LIMITS);
    assert.equal(b.compression, codec);
    assert.equal(b.attributes, codec);
    assertRecordsEqual(b.records, SAMPLE);
    // By hand: the plain batch's records section, compressed, behind the same header with the codec bits set.
    const plain = encodeRecordBatch({ baseOffset: 10, partitionLeaderEpoch: 2, records: SAMPLE });
    const packed = compress(codec, plain.subarray(RECORD_BATCH_OVERHEAD_BYTES));
    const hand = handBatch({ records: packed, count: SAMPLE.length, attributes: codec, lastOffsetDelta: 9 });
    assertRecordsEqual(decodeRecordBatches(hand, LIMITS)[0].records.map((r) => ({ ...r, timestamp: TS })), [
      ...SAMPLE.map((r) => ({ ...r, timestamp: TS })),
    ]);
  }
});

Deno.test("batches whose records section the gzip, zstd and lz4 tools and libsnappy compressed decode", () => {
  // The records section of the kafkajs batch, compressed by the real tools (testdata/README.md says how).
  const expected = decodeRecordBatches(fixture("kafkajs_produce_v3.bin"), LIMITS)[0].records;
  const cases: [string, number][] = [
    ["kafkajs_records.gz", Compression.gzip],
    ["kafkajs_records.zst", Compression.zstd],
    ["kafkajs_records.lz4", Compression.lz4],
    ["kafkajs_records.snappy", Compression.snappy],
    ["kafkajs_records.xerial.snappy", Compression.snappy],
  ];
  for (const [name, codec] of cases) {
    const batch = handBatch({ records: fixture(name), count: 3, attributes: codec, lastOffsetDelta: 2 });
    const [b] = decodeRecordBatches(batch, LIMITS);
    assert.equal(b.compression, codec, name);
    assertRecordsEqual(b.records, expected);
  }
});

Deno.test("a CRC mismatch is CORRUPT_MESSAGE; the leader epoch is outside the CRC, as in Kafka", () => {
  const bytes = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, records: SAMPLE });
  for (const at of [21, 30, 61, 100, bytes.length - 1]) {
    const bad = bytes.slice();
    bad[at] ^= 0x40;
    assert.throws(() => decodeRecordBatches(bad, LIMITS), isYak("CORRUPT_MESSAGE", "CRC"), `byte ${at}`);
  }
  const crcFlip = bytes.slice();
  crcFlip[17] ^= 1;
  assert.throws(() => decodeRecordBatches(crcFlip, LIMITS), isYak("CORRUPT_MESSAGE", "CRC"));
  const epoch = bytes.slice();
  new DataView(epoch.buffer).setInt32(12, 99);
  assert.equal(decodeRecordBatches(epoch, LIMITS)[0].partitionLeaderEpoch, 99);
});

Deno.test("every truncation of a batch, and of a second batch after a good one, is CORRUPT_MESSAGE", () => {
  const one = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, records: SAMPLE.slice(0, 3) });
  for (let n = 1; n < one.length; n++) {
    assert.throws(() => decodeRecordBatches(one.subarray(0, n), LIMITS), isYak("CORRUPT_MESSAGE"), `prefix ${n}`);
    assert.throws(() => decodeRecordBatches(concat(one, one.subarray(0, n)), LIMITS), isYak("CORRUPT_MESSAGE"));
  }
  // A batch length shorter than its header, and one past the buffer.
  const short = one.slice();
  new DataView(short.buffer).setInt32(8, 10);
  assert.throws(() => decodeRecordBatches(short, LIMITS), isYak("CORRUPT_MESSAGE", "shorter than a batch header"));
  const long = one.slice();
  new DataView(long.buffer).setInt32(8, 0x7fffffff);
  assert.throws(() => decodeRecordBatches(long, LIMITS), isYak("CORRUPT_MESSAGE", "passes"));
});

Deno.test("record counts past maxRecords, over all batches, are MESSAGE_TOO_LARGE; lying counts are corrupt", () => {
  const bytes = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, records: SAMPLE });
  assert.equal(decodeRecordBatches(bytes, { ...LIMITS, maxRecords: 6 })[0].records.length, 6);
  assert.throws(
    () => decodeRecordBatches(bytes, { ...LIMITS, maxRecords: 5 }),
    isYak("MESSAGE_TOO_LARGE", "limit of 5"),
  );
  assert.throws(
    () => decodeRecordBatches(concat(bytes, bytes), { ...LIMITS, maxRecords: 11 }),
    isYak("MESSAGE_TOO_LARGE"),
  );
  // A count far beyond what the bytes can hold is refused before any array is made.
  const huge = handBatch({ records: simpleRecord(0, null, [1]), count: 0x7fffffff, lastOffsetDelta: 0 });
  assert.throws(
    () => decodeRecordBatches(huge, { ...LIMITS, maxRecords: 0x7fffffff }),
    isYak("CORRUPT_MESSAGE", "cannot fit"),
  );
  const negative = handBatch({ records: simpleRecord(0, null, [1]), count: -1, lastOffsetDelta: 0 });
  assert.throws(() => decodeRecordBatches(negative, LIMITS), isYak("CORRUPT_MESSAGE", "negative"));
  // Fewer records than the bytes hold: bytes left over.
  const fewer = handBatch({ records: [...simpleRecord(0, null, [1]), ...simpleRecord(1, null, [2])], count: 1 });
  assert.throws(() => decodeRecordBatches(fewer, LIMITS), isYak("CORRUPT_MESSAGE", "follow the last"));
});

Deno.test("a compressed batch inflating past maxUncompressedBytes is MESSAGE_TOO_LARGE, over all batches", () => {
  const big: KafkaRecord[] = [{
    offsetDelta: 0,
    timestamp: TS,
    key: null,
    value: new Uint8Array(1 << 20),
    headers: [],
  }];
  for (const codec of [Compression.gzip, Compression.snappy, Compression.lz4, Compression.zstd]) {
    const bytes = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, compression: codec, records: big });
    assert.ok(bytes.length < 60_000, `codec ${codec}: ${bytes.length} bytes`);
    assert.throws(
      () => decodeRecordBatches(bytes, { ...LIMITS, maxUncompressedBytes: 1 << 19 }),
      isYak("MESSAGE_TOO_LARGE", "decompress"),
    );
    const two = concat(bytes, bytes);
    assert.equal(decodeRecordBatches(two, { ...LIMITS, maxUncompressedBytes: 3 << 20 }).length, 2);
    assert.throws(
      () => decodeRecordBatches(two, { ...LIMITS, maxUncompressedBytes: 3 << 19 }),
      isYak("MESSAGE_TOO_LARGE"),
    );
  }
  // Damaged compressed records stay CORRUPT_MESSAGE.
  const hand = handBatch({ records: [0x1f, 0x8b, 8, 0, 1, 2, 3], count: 1, attributes: Compression.gzip });
  assert.throws(() => decodeRecordBatches(hand, LIMITS), isYak("CORRUPT_MESSAGE", "gzip"));
});

Deno.test("a varint that never ends, or passes 32 bits, is CORRUPT_MESSAGE", () => {
  const cases: [string, number[]][] = [
    ["record length", [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ["record length", [0x80, 0x80, 0x80, 0x80, 0x10, 0, 0]],
    ["offset delta", rec(0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 1, 0)],
    ["timestamp delta", rec(0, ...new Array(11).fill(0xff), 0, 1, 1, 0)],
    ["key length", rec(0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff)],
  ];
  for (const [what, records] of cases) {
    assert.throws(
      () => decodeRecordBatches(handBatch({ records, count: 1 }), LIMITS),
      isYak("CORRUPT_MESSAGE", what),
      what,
    );
  }
  // A timestamp delta of 2^60 is a valid varlong but not a safe integer.
  const far = rec(0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 1, 1, 0);
  assert.throws(
    () => decodeRecordBatches(handBatch({ records: far, count: 1 }), LIMITS),
    isYak("CORRUPT_MESSAGE", "2^52"),
  );
});

Deno.test("negative lengths other than -1 are CORRUPT_MESSAGE; a header key is never null", () => {
  const cases: [string, number[]][] = [
    ["record length -2", [zz(-2)]],
    ["key length -2", rec(0, 0, 0, zz(-2), zz(-1), 0)],
    ["value length -5", rec(0, 0, 0, zz(-1), zz(-5), 0)],
    ["header count -1", rec(0, 0, 0, zz(-1), zz(-1), zz(-1))],
    ["header key length -1", rec(0, 0, 0, zz(-1), zz(-1), zz(1), zz(-1), zz(-1))],
    ["header value length -3", rec(0, 0, 0, zz(-1), zz(-1), zz(1), zz(1), 0x61, zz(-3))],
    ["key past its record", rec(0, 0, 0, zz(5), 1, 2)],
    ["headers that cannot fit", rec(0, 0, 0, zz(-1), zz(-1), zz(40))],
    ["record with bytes left over", rec(0, 0, 0, zz(-1), zz(-1), 0, 0x99)],
    ["empty record", [zz(0)]],
  ];
  for (const [what, records] of cases) {
    assert.throws(() => decodeRecordBatches(handBatch({ records, count: 1 }), LIMITS), isYak("CORRUPT_MESSAGE"), what);
  }
  // The same shapes with -1 decode.
  const ok = rec(0, 0, 0, zz(-1), zz(-1), zz(1), zz(1), 0x61, zz(-1));
  const [b] = decodeRecordBatches(handBatch({ records: ok, count: 1 }), LIMITS);
  assert.deepEqual(b.records[0].headers, [{ key: "a", value: null }]);
  assert.equal(b.records[0].key, null);
  // A header key that is not UTF-8 (short or long) is refused, not stored altered.
  for (const key of [[0xff, 0xfe], [...new Array(40).fill(0x61), 0xc3]]) {
    const bad = rec(0, 0, 0, zz(-1), zz(-1), zz(1), zz(key.length), ...key, zz(-1));
    assert.throws(
      () => decodeRecordBatches(handBatch({ records: bad, count: 1 }), LIMITS),
      isYak("CORRUPT_MESSAGE", "not UTF-8"),
    );
  }
  const accented = rec(0, 0, 0, zz(-1), zz(-1), zz(1), zz(2), 0xc3, 0xa9, zz(-1));
  assert.equal(
    decodeRecordBatches(handBatch({ records: accented, count: 1 }), LIMITS)[0].records[0].headers[0].key,
    "é",
  );
});

Deno.test("magic 0 and 1 are refused with the magic named; unknown codecs and offset deltas out of order too", () => {
  for (const magic of [0, 1, 3]) {
    const old = handBatch({ records: simpleRecord(0, null, [1]), count: 1, magic });
    assert.throws(() => decodeRecordBatches(old, LIMITS), isYak("CORRUPT_MESSAGE", `magic ${magic}`));
  }
  for (const codec of [5, 6, 7]) {
    const bad = handBatch({ records: simpleRecord(0, null, [1]), count: 1, attributes: codec });
    assert.throws(() => decodeRecordBatches(bad, LIMITS), isYak("CORRUPT_MESSAGE", "codec"));
  }
  const backwards = [...simpleRecord(1, null, [1]), ...simpleRecord(0, null, [2])];
  assert.throws(
    () => decodeRecordBatches(handBatch({ records: backwards, count: 2, lastOffsetDelta: 1 }), LIMITS),
    isYak("CORRUPT_MESSAGE", "offset delta"),
  );
  const pastLast = simpleRecord(3, null, [1]);
  assert.throws(
    () => decodeRecordBatches(handBatch({ records: pastLast, count: 1, lastOffsetDelta: 2 }), LIMITS),
    isYak("CORRUPT_MESSAGE", "offset delta"),
  );
  const unsafe = handBatch({ records: simpleRecord(0, null, [1]), count: 1, baseOffset: 2n ** 60n });
  assert.throws(() => decodeRecordBatches(unsafe, LIMITS), isYak("CORRUPT_MESSAGE", "baseOffset"));
});

Deno.test("attribute bits: transactional, control and log-append time (records take maxTimestamp)", () => {
  const records = [...simpleRecord(0, null, [1]), ...simpleRecord(1, null, [2])];
  const [b] = decodeRecordBatches(
    handBatch({ records, count: 2, attributes: 0x08 | 0x10 | 0x20, maxTimestamp: BigInt(TS + 1000) }),
    LIMITS,
  );
  assert.deepEqual([b.isLogAppendTime, b.isTransactional, b.isControl], [true, true, true]);
  assert.deepEqual(b.records.map((r) => r.timestamp), [TS + 1000, TS + 1000]);
});

Deno.test("damaged batches throw CORRUPT_MESSAGE (INVALID_TIMESTAMP for a wild timestamp) or decode, never anything else", () => {
  const plain = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, records: SAMPLE.slice(0, 4) });
  const noise = seededBytes(21, 30_000);
  let k = 0;
  for (let round = 0; round < 2000; round++) {
    const bad = plain.slice();
    const flips = 1 + (noise[k++] % 3);
    for (let f = 0; f < flips; f++) bad[21 + ((noise[k++] << 8 | noise[k++]) % (bad.length - 21))] = noise[k++];
    fixCrc(bad); // past the CRC, so the record parser itself meets the damage
    try {
      decodeRecordBatches(bad, LIMITS);
    } catch (err) {
      const code = err instanceof YakError ? err.code : null;
      assert.ok(code === "CORRUPT_MESSAGE" || code === "INVALID_TIMESTAMP", `round ${round}: ${err}`);
    }
  }
});

Deno.test("encodeRecordBatch refuses what no batch can hold", () => {
  const r = SAMPLE[0];
  const bad: [string, () => unknown][] = [
    ["no records", () => encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 0, records: [] })],
    ["offset deltas out of order", () =>
      encodeRecordBatch({
        baseOffset: 0,
        partitionLeaderEpoch: 0,
        records: [{ ...r, offsetDelta: 1 }, { ...r, offsetDelta: 1 }],
      })],
    ["negative base offset", () => encodeRecordBatch({ baseOffset: -1, partitionLeaderEpoch: 0, records: [r] })],
    [
      "fractional timestamp",
      () => encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 0, records: [{ ...r, timestamp: 1.5 }] }),
    ],
    [
      "producer epoch past int16",
      () => encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 0, producerEpoch: 40_000, records: [r] }),
    ],
  ];
  for (const [what, run] of bad) assert.throws(run, isYak("INTERNAL"), what);
});

Deno.test("a batch marked LogAppendTime sets attribute bit 3, and readers take maxTimestamp for every record", () => {
  const records: KafkaRecord[] = [0, 1].map((i) => ({
    offsetDelta: i,
    timestamp: TS,
    key: null,
    value: new Uint8Array([i]),
    headers: [],
  }));
  const bytes = encodeRecordBatch({ baseOffset: 0, partitionLeaderEpoch: 1, logAppendTime: true, records });
  const [batch] = decodeRecordBatches(bytes, LIMITS);
  assert.equal(batch.attributes & 0x08, 0x08);
  assert.equal(batch.isLogAppendTime, true);
  assert.deepEqual(batch.records.map((r) => r.timestamp), [TS, TS]);
});

Deno.test("a timestamp past 2^53 ms is INVALID_TIMESTAMP (Kafka's answer to a timestamp out of its limits), not a corrupt batch", () => {
  const far = 2n ** 62n;
  const batch = handBatch({ count: 1, records: simpleRecord(0, null, [0x76]), baseTimestamp: far, maxTimestamp: far });
  assert.throws(
    () => decodeRecordBatches(batch, LIMITS),
    (e: unknown) =>
      e instanceof YakError && e.code === "INVALID_TIMESTAMP" && /baseTimestamp 4611686018427387904/.test(e.message),
  );
  // A safe base, and a record's delta that takes it past 2^53.
  const near = BigInt(Number.MAX_SAFE_INTEGER) - 1n;
  const past = handBatch({
    count: 1,
    // Attributes, a timestamp delta of +10, offset delta 0, no key, no value, no headers.
    records: rec(0, zz(10), zz(0), zz(-1), zz(-1), zz(0)),
    baseTimestamp: near,
    maxTimestamp: near,
  });
  assert.throws(
    () => decodeRecordBatches(past, LIMITS),
    (e: unknown) => e instanceof YakError && e.code === "INVALID_TIMESTAMP",
  );
});
