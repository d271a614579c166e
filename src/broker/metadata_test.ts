/**
 * The metadata log's offset deletion (Kafka's OffsetDelete): applied on any
 * replica, and replayed from a snapshot, it leaves the same commits; a group
 * left with none is gone.
 */
import assert from "node:assert/strict";
import { Metadata, type MetaOp } from "./metadata.ts";

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
