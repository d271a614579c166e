import assert from "node:assert/strict";
import { encodeBatch } from "../log/record.ts";
import { ProducerState } from "./producer_state.ts";

Deno.test("only the exact batch is a duplicate; an overlap or a gap is out of order", () => {
  const state = new ProducerState();
  state.markReady("t/0");
  state.record("t/0", "p1", 0, 10, 100);
  assert.deepEqual(state.check("t/0", "p1", 0, 10), { kind: "duplicate", storedBaseOffset: 100 });
  assert.deepEqual(state.check("t/0", "p1", 10, 10), { kind: "next" });
  // Starts inside the stored batch (Kafka: OUT_OF_ORDER_SEQUENCE_NUMBER), ends inside it, or skips ahead.
  assert.deepEqual(state.check("t/0", "p1", 5, 10), { kind: "outOfOrder", expected: 10 });
  assert.deepEqual(state.check("t/0", "p1", 0, 5), { kind: "outOfOrder", expected: 10 });
  assert.deepEqual(state.check("t/0", "p1", 12, 10), { kind: "outOfOrder", expected: 10 });
  assert.deepEqual(state.check("t/0", "p2", 7, 10), { kind: "next" }, "a producer the partition does not know");
});

Deno.test("the last five batches are remembered", () => {
  const state = new ProducerState();
  for (let i = 0; i < 6; i++) state.record("t/0", "p1", i * 2, 2, i * 2);
  assert.equal(state.check("t/0", "p1", 0, 2).kind, "outOfOrder", "the sixth batch back is forgotten");
  assert.deepEqual(state.check("t/0", "p1", 2, 2), { kind: "duplicate", storedBaseOffset: 2 });
  assert.deepEqual(state.check("t/0", "p1", 10, 2), { kind: "duplicate", storedBaseOffset: 10 });
});

Deno.test("after a failed write the producer's sequence goes back, so a later batch cannot jump ahead", () => {
  const state = new ProducerState();
  state.markReady("t/0");
  // A new producer's first two batches are reserved, then the first write fails.
  state.record("t/0", "p1", 0, 2000, 0);
  state.record("t/0", "p1", 2000, 2000, 2000);
  state.rollback("t/0", "p1", 0);
  state.rollback("t/0", "p1", 2000);
  assert.equal(state.check("t/0", "p1", 2000, 2000).kind, "outOfOrder", "the second batch must wait for the first");
  assert.deepEqual(state.check("t/0", "p1", 0, 2000), { kind: "next" });
  // Rolled back for an unknown producer too (e.g. evicted): it stays known.
  state.rollback("t/1", "p9", 40);
  assert.equal(state.check("t/1", "p9", 41, 1).kind, "outOfOrder");
  assert.equal(state.check("t/1", "p9", 40, 1).kind, "next");
});

Deno.test("state is rebuilt from the log's tail with each batch's bounds", async () => {
  const state = new ProducerState();
  const text = encodeBatch([{ key: null, value: "a" }, { key: null, value: "b" }], 0, 1, 0, "p1", 0) +
    encodeBatch([{ key: null, value: "c" }], 2, 1, 0, "p2", 0) +
    encodeBatch([{ key: null, value: "d" }, { key: null, value: "e" }], 3, 1, 0, "p1", 2) +
    encodeBatch([{ key: null, value: "f" }], 5, 1, 0, "p1", 4) +
    encodeBatch([{ key: null, value: "no producer" }], 6, 1, 0, null, 0);
  await state.ensure("t/0", () => Promise.resolve(text));
  assert.ok(state.isReady("t/0"));
  assert.deepEqual(state.check("t/0", "p1", 2, 2), { kind: "duplicate", storedBaseOffset: 3 });
  assert.deepEqual(state.check("t/0", "p1", 4, 1), { kind: "duplicate", storedBaseOffset: 5 });
  assert.deepEqual(state.check("t/0", "p1", 0, 2), { kind: "duplicate", storedBaseOffset: 0 });
  // Adjacent batches of one producer stay apart: a batch spanning two of them was never sent.
  assert.equal(state.check("t/0", "p1", 2, 3).kind, "outOfOrder");
  assert.equal(state.check("t/0", "p1", 1, 2).kind, "outOfOrder");
  assert.deepEqual(state.check("t/0", "p1", 5, 1), { kind: "next" });
  assert.deepEqual(state.producers("t/0").sort(), ["p1", "p2"]);
});

Deno.test("lines written before batches kept their bounds are read as runs", async () => {
  const state = new ProducerState();
  // The old format: no `batch` field.
  const text = '{"offset":0,"epoch":1,"ts":0,"key":null,"value":"a","producer":"p-1","seq":0}\n' +
    '{"offset":1,"epoch":1,"ts":0,"key":null,"value":"b","producer":"p-1","seq":1}\n';
  await state.ensure("t/0", () => Promise.resolve(text));
  assert.deepEqual(state.check("t/0", "p-1", 0, 2), { kind: "duplicate", storedBaseOffset: 0 });
  assert.deepEqual(state.check("t/0", "p-1", 2, 1), { kind: "next" });
});

Deno.test("a producer's stored sequences are contiguous: a batch recorded past a gap is an internal error", () => {
  const state = new ProducerState();
  state.markReady("t/0");
  state.record("t/0", "p1", 0, 10, 100);
  assert.throws(() => state.record("t/0", "p1", 12, 3, 110), /sequences 12\.\. stored after 9/);
  state.record("t/0", "p1", 12, 3, 110, true); // acks=0 stores what it is sent
  state.record("t/0", "p1", 15, 1, 113);
});

Deno.test("a transactional producer's new epoch starts its sequences over, also when rebuilt from the log", async () => {
  const state = new ProducerState();
  state.markReady("t/0");
  state.record("t/0", "p1", 0, 10, 100, false, 3);
  assert.deepEqual(state.check("t/0", "p1", 0, 10, 3), { kind: "duplicate", storedBaseOffset: 100 });
  assert.deepEqual(state.check("t/0", "p1", 0, 5, 4), { kind: "next" }, "epoch 4 starts again at 0");
  state.record("t/0", "p1", 0, 5, 110, false, 4);
  assert.deepEqual(state.check("t/0", "p1", 5, 1, 4), { kind: "next" });
  assert.equal(state.check("t/0", "p1", 0, 10, 4).kind, "outOfOrder", "epoch 3's batch is not epoch 4's");
  const rebuilt = new ProducerState();
  const text = encodeBatch([{ key: null, value: "a" }, { key: null, value: "b" }], 0, 1, 0, "p1", 0, false, 3) +
    encodeBatch([{ key: null, value: "c" }, { key: null, value: "d" }], 2, 1, 0, "p1", 0, false, 4);
  await rebuilt.ensure("t/0", () => Promise.resolve(text));
  assert.deepEqual(rebuilt.check("t/0", "p1", 0, 2, 4), { kind: "duplicate", storedBaseOffset: 2 });
  assert.deepEqual(rebuilt.check("t/0", "p1", 2, 1, 4), { kind: "next" });
});

Deno.test("sequences wrap after 2^31 - 1 as Kafka's do: the next batch, duplicates, a rollback and the rebuild", async () => {
  const max = 2 ** 31 - 1;
  const state = new ProducerState();
  state.markReady("t/0");
  state.record("t/0", "p1", max - 1, 3, 25); // max - 1, max, 0
  assert.deepEqual(state.check("t/0", "p1", 1, 5), { kind: "next" }, "the wrapped next sequence");
  assert.deepEqual(state.check("t/0", "p1", max - 1, 3), { kind: "duplicate", storedBaseOffset: 25 });
  assert.deepEqual(state.check("t/0", "p1", 2, 1), { kind: "outOfOrder", expected: 1 });
  state.record("t/0", "p1", 1, 5, 28);
  assert.deepEqual(state.check("t/0", "p1", 6, 1), { kind: "next" });
  // The batch at 1 failed to be written: 1 is expected again, and the batch before it is still a duplicate.
  state.rollback("t/0", "p1", 1);
  assert.deepEqual(state.check("t/0", "p1", 1, 5), { kind: "next" });
  assert.deepEqual(state.check("t/0", "p1", max - 1, 3), { kind: "duplicate", storedBaseOffset: 25 });
  // A rollback from before the wrap.
  state.rollback("t/0", "p1", max);
  assert.deepEqual(state.check("t/0", "p1", max, 2), { kind: "next" });

  // Rebuilt from stored lines whose sequences wrap in a batch's middle.
  const rebuilt = new ProducerState();
  const text = encodeBatch(
    [{ key: null, value: "a" }, { key: null, value: "b" }, { key: null, value: "c" }],
    25,
    1,
    0,
    "p1",
    max - 1,
  ) +
    encodeBatch([{ key: null, value: "d" }], 28, 1, 0, "p1", 1);
  assert.match(text, /"seq":2147483647[,}].*\n.*"seq":0[,}]/);
  await rebuilt.ensure("t/0", () => Promise.resolve(text));
  assert.deepEqual(rebuilt.check("t/0", "p1", max - 1, 3), { kind: "duplicate", storedBaseOffset: 25 });
  assert.deepEqual(rebuilt.check("t/0", "p1", 1, 1), { kind: "duplicate", storedBaseOffset: 28 });
  assert.deepEqual(rebuilt.check("t/0", "p1", 2, 10), { kind: "next" });
});

Deno.test("a rebuild under way when the state is reset (leadership lost and won again) installs nothing: the next one reads the log again", async () => {
  const state = new ProducerState();
  const old = encodeBatch([{ key: null, value: "a" }, { key: null, value: "b" }], 0, 1, 0, "p1", 0);
  // Copied as a follower meanwhile: sequences 2-3, which the producer had acknowledged by the other leader.
  const now = old + encodeBatch([{ key: null, value: "c" }, { key: null, value: "d" }], 2, 2, 0, "p1", 2);
  let finishOld = (_: string) => {};
  const first = state.ensure("t/0", () => new Promise((r) => (finishOld = r)));
  state.reset();
  finishOld(old);
  await first;
  assert.equal(state.isReady("t/0"), false, "a rebuild from before the reset was installed");
  await state.ensure("t/0", () => Promise.resolve(now));
  assert.deepEqual(state.check("t/0", "p1", 4, 1), { kind: "next" });
});
