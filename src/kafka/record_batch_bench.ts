import { decodeRecordBatches, encodeRecordBatch, type KafkaRecord } from "./record_batch.ts";
import { crc32c } from "../log/crc32c.ts";
import { compress, Compression, decompress } from "./compression.ts";

// A fetch-sized batch: 500 records of a 10-byte key and a 100-byte value, no headers (yak's common case).
const records: KafkaRecord[] = Array.from({ length: 500 }, (_, i) => ({
  offsetDelta: i,
  timestamp: 1763764800123 + i,
  key: new TextEncoder().encode(`key-${String(i).padStart(6, "0")}`),
  value: new Uint8Array(100).fill(i & 0xff),
  headers: [],
}));
const batch = encodeRecordBatch({ baseOffset: 1000, partitionLeaderEpoch: 3, records });
const limits = { maxRecords: 100_000, maxUncompressedBytes: 64 << 20 };
const mib = new Uint8Array(1 << 20).map((_, i) => (i * 31) & 0xff);
const text = new TextEncoder().encode("yak keeps a log per partition; records carry keys and values. ".repeat(16_000));

Deno.bench("encodeRecordBatch, 500 records of 110 bytes", () => {
  encodeRecordBatch({ baseOffset: 1000, partitionLeaderEpoch: 3, records });
});
Deno.bench("decodeRecordBatches, 500 records of 110 bytes", () => {
  decodeRecordBatches(batch, limits);
});
Deno.bench("crc32c, 1 MiB", () => {
  crc32c(mib);
});
for (const codec of [Compression.gzip, Compression.snappy, Compression.lz4, Compression.zstd]) {
  const packed = compress(codec, text);
  Deno.bench(`decompress codec ${codec}, ${text.length} bytes of text`, () => {
    decompress(codec, packed, text.length);
  });
}
