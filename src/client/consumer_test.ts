import assert from "node:assert/strict";
import { encodeBatch, type RecordInput } from "../log/record.ts";
import { PartitionRecords } from "./consumer.ts";

const tricky: RecordInput[] = [
  { key: null, value: "plain" },
  { key: 'k","value":"fake', value: 'quote " and \\ backslash' },
  { key: "k", value: 'ends with ","producer":"x' },
  { key: null, value: "line\nbreak\ttab \u0000 nul é 🙂 \u2028" },
  { key: null, value: "" },
  { key: null, value: "{}" },
];

Deno.test("values() reads text values straight from the stored lines, the same as a full parse", () => {
  for (const producer of ["p-1", null]) {
    const text = encodeBatch(tricky, 40, 2, 1763764800123, producer, 7);
    const part = new PartitionRecords(0, 40, tricky.length, text);
    assert.deepEqual(part.values(), tricky.map((r) => r.value));
    assert.deepEqual(part.records.map((r) => r.value), tricky.map((r) => r.value));
    assert.deepEqual(part.records.map((r) => r.offset), [40, 41, 42, 43, 44, 45]);
  }
});

Deno.test("values() declines records that hold bytes, so they get the full parse", () => {
  const text = encodeBatch([{ key: null, value: "a" }, { key: null, valueB64: "/w==" }], 0, 1, 0, "p-1", 0);
  const part = new PartitionRecords(3, 0, 2, text);
  assert.equal(part.values(), null);
  assert.equal(part.records[1].valueB64, "/w==");
});
