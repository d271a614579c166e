/**
 * The metadata log's offset deletion (Kafka's OffsetDelete): applied on any
 * replica, and replayed from a snapshot, it leaves the same commits; a group
 * left with none is gone.
 */
import assert from "node:assert/strict";
import { Metadata, type MetaOp, type TxnMeta } from "./metadata.ts";

Deno.test("offset_delete removes the partitions' commits and what they said; a group with none left is gone", () => {
  const ops: MetaOp[] = [
    { op: "topic", topic: "t", partitions: 3, createdAt: 0 },
    { op: "commit", group: "g", topic: "t", offsets: { "0": 5, "1": 7, "2": 9 }, info: { "1": { m: "said" } } },
    { op: "commit", group: "g", topic: "u", offsets: { "0": 1 } },
    { op: "commit", group: "h", topic: "t", offsets: { "0": 3 } },
    { op: "offset_delete", group: "g", offsets: { t: [1, 2], u: [0] } },
    { op: "offset_delete", group: "h", offsets: { t: [0] } },
    { op: "offset_delete", group: "nobody", offsets: { t: [0] } },
  ];
  const replica = new Metadata();
  for (const op of ops) replica.apply(op);
  assert.deepEqual([...replica.groups.keys()], ["g"], "h has no commit left; nobody never had one");
  assert.deepEqual([...replica.groups.get("g")!], [["t", new Map([[0, 5]])]]);
  assert.equal(replica.commitInfo.get("g")?.get("t")?.get(1), undefined, "the deleted commit's metadata goes too");

  // A replica that starts from a snapshot taken before the deletions, then replays them, agrees.
  const before = new Metadata();
  for (const op of ops.slice(0, 4)) before.apply(op);
  const later = new Metadata();
  later.apply(before.snapshot());
  for (const op of ops.slice(4)) later.apply(op);
  assert.deepEqual(later.snapshot(), replica.snapshot());
});

const open = (partitions: Record<string, number>, state: TxnMeta["state"] = "Ongoing"): TxnMeta => ({
  producer: 7,
  epoch: 2,
  timeoutMs: 60_000,
  state,
  partitions,
  startedAt: 1,
  updatedAt: 1,
});

Deno.test("transaction records: the last stable offset waits for open transactions, and a snapshot keeps them", () => {
  const meta = new Metadata();
  meta.apply({ op: "txn", id: "a", txn: open({ "t/0": 10, "t/1": 3 }) });
  meta.apply({ op: "txn", id: "b", txn: { ...open({ "t/0": 12 }), producer: 8 } });
  assert.equal(meta.firstOpenOffset("t/0"), 10);
  assert.equal(meta.firstOpenOffset("t/1"), 3);
  assert.equal(meta.firstOpenOffset("t/2"), Infinity);
  assert.equal(meta.txnOfProducer.get(7), "a");
  // Decided: still open (the markers are being written).
  meta.apply({ op: "txn", id: "a", txn: open({ "t/0": 10, "t/1": 3 }, "PrepareAbort") });
  assert.equal(meta.firstOpenOffset("t/0"), 10);
  meta.apply({
    op: "txn",
    id: "a",
    txn: open({}, "CompleteAbort"),
    aborted: { "t/0": [10, 20], "t/1": [3, 21] },
  });
  assert.equal(meta.firstOpenOffset("t/0"), 12, "b holds it now");
  assert.equal(meta.firstOpenOffset("t/1"), Infinity);
  assert.deepEqual(meta.abortedIn("t/0", 0, 100), [{ producer: 7, first: 10, last: 20 }]);
  assert.deepEqual(meta.abortedIn("t/0", 21, 100), [], "ended before the read");
  assert.deepEqual(meta.abortedIn("t/0", 0, 10), [], "starts after the read");
  // A commit makes the transaction's offsets the group's commits, in the same step.
  meta.apply({
    op: "txn",
    id: "b",
    txn: { ...open({}, "CompleteCommit"), producer: 8 },
    commit: { g: { t: { "0": [42, "m", 3] } } },
  });
  assert.equal(meta.groups.get("g")?.get("t")?.get(0), 42);
  assert.deepEqual(meta.commitInfo.get("g")?.get("t")?.get(0), { m: "m", e: 3 });
  assert.equal(meta.firstOpenOffset("t/0"), Infinity);
  const copy = new Metadata();
  meta.apply({ op: "txn", id: "c", txn: { ...open({ "t/2": 5 }), producer: 9 } });
  copy.apply(meta.snapshot());
  assert.deepEqual(copy.snapshot(), meta.snapshot());
  assert.equal(copy.firstOpenOffset("t/2"), 5);
  assert.deepEqual(copy.abortedIn("t/1", 0, 100), [{ producer: 7, first: 3, last: 21 }]);
  // Deleting a topic drops its aborted ranges and open starts; an expired id is forgotten.
  copy.apply({ op: "topic_delete", topic: "t" });
  assert.equal(copy.firstOpenOffset("t/2"), Infinity);
  assert.deepEqual(copy.abortedIn("t/1", 0, 100), []);
  copy.apply({ op: "txn", id: "a", txn: null });
  assert.equal(copy.txns.has("a"), false);
  assert.equal(copy.txnOfProducer.has(7), false);
});

Deno.test("the aborted index stays sorted by marker offset, whichever transaction completes first", () => {
  const meta = new Metadata();
  const done = (producer: number): TxnMeta => ({ ...open({}, "CompleteAbort"), producer });
  meta.apply({ op: "txn", id: "a", txn: done(1), aborted: { "t/0": [10, 30] } });
  meta.apply({ op: "txn", id: "b", txn: done(2), aborted: { "t/0": [5, 20] } });
  meta.apply({ op: "txn", id: "c", txn: done(3), aborted: { "t/0": [31, 40] } });
  assert.deepEqual(meta.abortedIn("t/0", 0, 100).map((a) => a.last), [20, 30, 40]);
  assert.deepEqual(meta.abortedIn("t/0", 25, 100).map((a) => a.producer), [1, 3]);
  assert.deepEqual(meta.abortedIn("t/0", 21, 31).map((a) => a.producer), [1]);
});

Deno.test("clean decisions: the newest names the merge groups and recent ends; a replayed older one moves nothing back; a snapshot keeps them", () => {
  const newer: MetaOp = {
    op: "clean",
    topic: "t",
    partition: 0,
    to: 300,
    purgeBelow: 200,
    horizonMs: 9,
    markersBelow: 100,
    at: 5000,
    ends: [[200, 3000], [300, 5000]],
    mergeBelow: 200,
    bases: [0, 120],
  };
  const older: MetaOp = {
    op: "clean",
    topic: "t",
    partition: 0,
    to: 200,
    purgeBelow: 100,
    horizonMs: 5,
    at: 3000,
    ends: [[100, 1000], [200, 3000]],
    mergeBelow: 100,
    bases: [0, 40, 80],
  };
  const meta = new Metadata();
  meta.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0 });
  meta.apply(newer);
  meta.apply(older);
  const { op: _op, topic: _t, partition: _p, ...want } = newer;
  assert.deepEqual(meta.topics.get("t")?.cleaned?.["0"], want);
  const replica = new Metadata();
  replica.apply(meta.snapshot());
  assert.deepEqual(replica.topics.get("t")?.cleaned?.["0"], want);
});

Deno.test("a transaction completing while the next is open: readers wait for both, then for the next alone", () => {
  const meta = new Metadata();
  // Decided (an abort, to show its range), its markers placed at 19 and 7, and the next one open after them.
  const completing = {
    state: "PrepareAbort" as const,
    partitions: { "t/0": 10, "t/1": 3 },
    markers: { "t/0": 19, "t/1": 7 },
  };
  meta.apply({ op: "txn", id: "a", txn: { ...open({ "t/0": 20, "t/1": 8 }), completing } });
  assert.equal(meta.firstOpenOffset("t/0"), 10, "the completing one holds readers back");
  assert.equal(meta.firstOpenOffset("t/1"), 3);
  const copy = new Metadata();
  copy.apply(meta.snapshot());
  assert.equal(copy.firstOpenOffset("t/0"), 10, "a snapshot keeps it");
  // Its markers are on the in-sync replicas: the record that ends it.
  meta.apply({ op: "txn", id: "a", txn: open({ "t/0": 20, "t/1": 8 }), aborted: { "t/0": [10, 19], "t/1": [3, 7] } });
  assert.equal(meta.firstOpenOffset("t/0"), 20, "the next one alone");
  assert.equal(meta.firstOpenOffset("t/1"), 8);
  assert.deepEqual(meta.abortedIn("t/0", 0, 100), [{ producer: 7, first: 10, last: 19 }]);
});
