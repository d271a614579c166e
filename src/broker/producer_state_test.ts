import assert from "node:assert/strict";
import { encodeBatch } from "../log/record.ts";
import { ProducerState } from "./producer_state.ts";

Deno.test("a stored batch is answered as a duplicate with its original offset; a partial one appends the rest", () => {
  const state = new ProducerState();
  state.markReady("t/0");
  state.record("t/0", "p-1", 0, 10, 100);
  assert.deepEqual(state.check("t/0", "p-1", 0, 10), { skip: 10, storedBaseOffset: 100, gap: false });
  assert.deepEqual(state.check("t/0", "p-1", 5, 10), { skip: 5, storedBaseOffset: 105, gap: false });
  assert.deepEqual(state.check("t/0", "p-1", 10, 10), { skip: 0, storedBaseOffset: -1, gap: false });
  assert.deepEqual(state.check("t/0", "p-1", 12, 10), { skip: 0, storedBaseOffset: -1, gap: true });
  assert.deepEqual(state.check("t/0", "p-2", 7, 10), { skip: 0, storedBaseOffset: -1, gap: false }, "unknown producer");
});

Deno.test("after a failed write the producer's sequence goes back, so a later batch cannot jump ahead", () => {
  const state = new ProducerState();
  state.markReady("t/0");
  // A new producer's first two batches are reserved, then the first write fails.
  state.record("t/0", "p-1", 0, 2000, 0);
  state.record("t/0", "p-1", 2000, 2000, 2000);
  state.rollback("t/0", "p-1", 0);
  state.rollback("t/0", "p-1", 2000);
  assert.equal(state.check("t/0", "p-1", 2000, 2000).gap, true, "the second batch must wait for the first");
  assert.deepEqual(state.check("t/0", "p-1", 0, 2000), { skip: 0, storedBaseOffset: -1, gap: false });
  // Rolled back for an unknown producer too (e.g. evicted): it stays known.
  state.rollback("t/1", "p-9", 40);
  assert.equal(state.check("t/1", "p-9", 41, 1).gap, true);
  assert.equal(state.check("t/1", "p-9", 40, 1).gap, false);
});

Deno.test("state is rebuilt from the log's tail: runs of sequences become batches", async () => {
  const state = new ProducerState();
  const text = encodeBatch([{ key: null, value: "a" }, { key: null, value: "b" }], 0, 1, 0, "p-1", 0) +
    encodeBatch([{ key: null, value: "c" }], 2, 1, 0, "p-2", 0) +
    encodeBatch([{ key: null, value: "d" }, { key: null, value: "e" }], 3, 1, 0, "p-1", 2) +
    encodeBatch([{ key: null, value: "no producer" }], 5, 1, 0, null, 0);
  await state.ensure("t/0", () => Promise.resolve(text));
  assert.ok(state.isReady("t/0"));
  assert.deepEqual(state.check("t/0", "p-1", 2, 2), { skip: 2, storedBaseOffset: 3, gap: false });
  assert.deepEqual(state.check("t/0", "p-1", 0, 2), { skip: 2, storedBaseOffset: 0, gap: false });
  assert.deepEqual(state.check("t/0", "p-2", 1, 1), { skip: 0, storedBaseOffset: -1, gap: false });
  assert.deepEqual(state.producers("t/0").sort(), ["p-1", "p-2"]);
});
