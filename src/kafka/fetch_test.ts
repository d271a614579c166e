import assert from "node:assert/strict";
import { encodeBatch, type RecordInput } from "../log/record.ts";
import { linesToBatches } from "./fetch.ts";
import { decodeRecordBatches } from "./record_batch.ts";

const LIMITS = { maxRecords: 100, maxUncompressedBytes: 1 << 20 };

Deno.test("linesToBatches gives a record whose timestamp is too far from its batch's first a batch of its own", () => {
  // A producer may send any timestamp (Kafka takes negative ones too); a batch holds them as deltas from its first,
  // which must stay within 2^52. Records of one epoch at consecutive offsets used to share a batch whatever their
  // timestamps, and the fetch failed with an internal error, for every consumer, every time.
  const far = -(2 ** 52) + 1e12;
  const near = 1763764800123;
  const records: RecordInput[] = [far, near, near + 1, far].map((ts, i) => ({ key: null, value: `v${i}`, ts }));
  const lines = new TextEncoder().encode(encodeBatch(records, 0, 1, near, null, 0));
  const out = linesToBatches([lines], 1 << 20, false);
  assert.equal(out.taken, 4);
  const batches = decodeRecordBatches(out.bytes, LIMITS);
  assert.deepEqual(batches.map((b) => b.records.length), [1, 2, 1]);
  assert.deepEqual(batches.flatMap((b) => b.records.map((r) => r.timestamp)), [far, near, near + 1, far]);
});

Deno.test("linesToBatches keeps a producer's batch whole when its sequences wrap, with its base sequence", () => {
  const max = 2 ** 31 - 1;
  const records: RecordInput[] = ["a", "b", "c"].map((value) => ({ key: null, value }));
  const lines = new TextEncoder().encode(encodeBatch(records, 0, 1, 1763764800123, "p7", max - 1));
  const out = linesToBatches([lines], 1 << 20, false);
  const batches = decodeRecordBatches(out.bytes, LIMITS);
  assert.equal(batches.length, 1);
  assert.equal(batches[0].baseSequence, max - 1);
  assert.equal(batches[0].records.length, 3);
});
