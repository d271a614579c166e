/**
 * The replication contract: what a leader encodes, a follower decodes to the
 * same values; a reply whose numbers do not hold together is refused whole,
 * naming the field; a request is decoded within the broker's limits.
 */
import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import type { Request } from "../protocol/messages.ts";
import {
  decodeEpochEndQuery,
  decodeEpochEnds,
  decodeFetchReply,
  decodeFetchRequest,
  encodeEpochEndQuery,
  encodeFetchReply,
  encodeFetchRequest,
  type FollowerFetch,
  type FollowerFetchResult,
  type ReplicaLimits,
} from "./replica_protocol.ts";
import { onTheWire } from "./replica_wire_testing.ts";

const encoder = new TextEncoder();
const LIMITS: ReplicaLimits = {
  maxPartitions: 1000,
  replicaFetchMaxBytes: 1 << 20,
  maxFetchBytes: 1 << 24,
  maxFetchWaitMs: 30_000,
};

/** Two partitions: "t/0" in two read chunks with an epoch and a roll inside, "t/1" in one. */
function leaderResult(): FollowerFetchResult {
  const a = encoder.encode("a0\na1\n");
  const b = encoder.encode("a2\n");
  const c = encoder.encode("b5\n");
  return {
    epoch: 4,
    parts: [
      { key: "t/0", base: 10, count: 3, chunks: [a, b], byteLength: 9, epochs: [[4, 11]], rolls: [12] },
      { key: "t/1", base: 5, count: 1, chunks: [c], byteLength: 3, epochs: [], rolls: [] },
    ],
    hw: { "t/0": 12, "t/1": 6 },
    truncate: { "t/2": 3 },
    logStart: { "t/1": 2 },
  };
}

function refused(fn: () => unknown, field: RegExp, what = ""): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof YakError, `${what}: ${err}`);
    assert.equal(err.code, "CORRUPT_MESSAGE", what);
    assert.match(err.message, field, what);
    assert.match(err.message, /same yak version/);
    return true;
  });
}

Deno.test("a replicate reply decodes to what the leader encoded, each part its own slice of the attachment", () => {
  const reply = decodeFetchReply(onTheWire(encodeFetchReply(leaderResult())), 4);
  assert.equal(reply.epoch, 4);
  assert.deepEqual(
    reply.parts.map((p) => ({ ...p, bytes: new TextDecoder().decode(p.bytes) })),
    [
      { key: "t/0", base: 10, count: 3, bytes: "a0\na1\na2\n", epochs: [[4, 11]], rolls: [12] },
      { key: "t/1", base: 5, count: 1, bytes: "b5\n", epochs: [], rolls: [] },
    ],
  );
  assert.deepEqual([...reply.hw], [["t/0", 12], ["t/1", 6]]);
  assert.deepEqual([...reply.truncate], [["t/2", 3]]);
  assert.deepEqual([...reply.logStart], [["t/1", 2]]);
});

Deno.test("an empty replicate reply (nothing new) decodes; logStart and rolls may be absent (older leaders)", () => {
  const empty = decodeFetchReply({ epoch: 2, parts: [], hw: {}, truncate: {} }, 2);
  assert.deepEqual(empty.parts, []);
  assert.equal(empty.logStart.size, 0);
  const old = decodeFetchReply({
    epoch: 2,
    parts: [{ k: "t/0", base: 0, count: 1, len: 2, epochs: [] }],
    hw: {},
    truncate: {},
    attachment: encoder.encode("x\n"),
  }, 2);
  assert.equal(old.parts[0].rolls, null);
});

Deno.test("a malformed replicate reply is refused whole, naming the field", () => {
  const good = () => onTheWire(encodeFetchReply(leaderResult()));
  const part = (frame: Record<string, unknown>, i = 0) => (frame.parts as Record<string, unknown>[])[i];
  const cases: [string, (f: Record<string, unknown>) => void, RegExp][] = [
    ["another epoch", (f) => (f.epoch = 5), /epoch 5, the fetch was for 4/],
    ["no parts", (f) => delete f.parts, /'parts' must be a list/],
    ["a part not an object", (f) => ((f.parts as unknown[])[1] = 3), /'parts\[1\]' must be an object/],
    ["a key not a string", (f) => (part(f).k = 1), /'parts\[0\]\.k'/],
    ["a key twice", (f) => (part(f, 1).k = "t/0"), /'parts\[1\]\.k' must name a partition once/],
    ["a negative base", (f) => (part(f).base = -1), /'parts\[0\]\.base' must be an integer of at least 0/],
    ["a fractional count", (f) => (part(f).count = 1.5), /'parts\[0\]\.count'/],
    ["no records", (f) => (part(f).count = 0), /'parts\[0\]\.count' must be an integer of at least 1/],
    ["fewer bytes than records", (f) => (part(f).len = 2), /'parts\[0\]\.len' must be an integer of at least 3/],
    ["a len past the attachment", (f) => (part(f, 1).len = 4), /'parts\[1\]' ends at byte 13 of an attachment of 12/],
    ["bytes no part claims", (f) => (part(f, 1).len = 2), /its parts hold 11 bytes, its attachment 12/],
    ["no attachment", (f) => delete f.attachment, /ends at byte 9 of an attachment of 0/],
    ["an attachment not bytes", (f) => (f.attachment = "a0\n"), /its attachment is not bytes/],
    ["epochs not a list", (f) => (part(f).epochs = {}), /'parts\[0\]\.epochs' must be a list/],
    ["an epoch not a pair", (f) => (part(f).epochs = [[4]]), /'parts\[0\]\.epochs\[0\]' must be \[epoch, start\]/],
    ["an epoch before the part", (f) => (part(f).epochs = [[4, 9]]), /'parts\[0\]\.epochs\[0\]\[1\]' is 9, outside/],
    ["an epoch after the part", (f) => (part(f).epochs = [[4, 13]]), /is 13, outside the part's offsets 10 to 12/],
    ["a negative epoch", (f) => (part(f).epochs = [[-1, 10]]), /'parts\[0\]\.epochs\[0\]\[0\]'/],
    ["rolls not a list", (f) => (part(f).rolls = 12), /'parts\[0\]\.rolls' must be a list/],
    ["a roll outside the part", (f) => (part(f).rolls = [20]), /'parts\[0\]\.rolls\[0\]' is 20, outside/],
    ["no hw", (f) => delete f.hw, /'hw' must be an object/],
    ["a hw not an integer", (f) => (f.hw = { "t/0": "12" }), /'hw\.t\/0' must be a non-negative integer/],
    ["a negative truncation", (f) => (f.truncate = { "t/0": -1 }), /'truncate\.t\/0'/],
    ["a logStart list", (f) => (f.logStart = [1]), /'logStart' must be an object/],
  ];
  for (const [what, spoil, field] of cases) {
    const frame = good();
    spoil(frame);
    refused(() => decodeFetchReply(frame, 4), field, what);
  }
});

Deno.test("an epoch_end answer is checked: -1 means no epoch at or below the one asked", () => {
  const ends = decodeEpochEnds({ ends: { "t/0": { epoch: 3, endOffset: 120 }, "t/1": { epoch: -1, endOffset: 0 } } });
  assert.deepEqual([...ends], [["t/0", { epoch: 3, endOffset: 120 }], ["t/1", { epoch: -1, endOffset: 0 }]]);
  // A key JSON.parse makes an own property stays a key, never a prototype.
  const proto = decodeEpochEnds(JSON.parse('{"ends":{"__proto__":{"epoch":1,"endOffset":4}}}'));
  assert.deepEqual(proto.get("__proto__"), { epoch: 1, endOffset: 4 });
  refused(() => decodeEpochEnds({}), /epoch_end reply is malformed: 'ends' must be an object/);
  refused(() => decodeEpochEnds({ ends: { "t/0": { epoch: -2, endOffset: 0 } } }), /'ends\.t\/0'/);
  refused(() => decodeEpochEnds({ ends: { "t/0": { epoch: 1 } } }), /'ends\.t\/0'/);
  refused(() => decodeEpochEnds({ ends: { "t/0": [1, 2] } }), /'ends\.t\/0'/);
});

Deno.test("a follower's requests decode on the leader to what it sent", () => {
  const fetch: FollowerFetch = {
    followerId: 2,
    epoch: 4,
    offsets: new Map([["t/0", 10], ["__cluster/0", 3]]),
    knownHw: new Map([["t/0", 8]]),
    logStarts: new Map([["t/0", 4]]),
    maxBytes: 4096,
    maxWaitMs: 200,
    failing: false,
  };
  const asSent = (body: Record<string, unknown>): Request => JSON.parse(JSON.stringify({ id: 1, ...body }));
  const sent = asSent(encodeFetchRequest(fetch));
  assert.equal(sent.type, "replicate");
  assert.equal("failing" in sent, false);
  assert.deepEqual(decodeFetchRequest(sent, LIMITS), { ...fetch, fenced: undefined });
  assert.equal(decodeFetchRequest(asSent(encodeFetchRequest({ ...fetch, failing: true })), LIMITS).failing, true);
  // Log starts only where some are above 0 (a follower older than them sends none: the leader reads undefined).
  assert.equal(asSent(encodeFetchRequest({ ...fetch, logStarts: new Map() })).logStart, undefined);
  // A follower with fenced logs says which (and only then): the leader sends nothing for them.
  assert.equal(asSent(encodeFetchRequest({ ...fetch, fenced: new Set() })).fenced, undefined);
  const fenced = decodeFetchRequest(asSent(encodeFetchRequest({ ...fetch, fenced: new Set(["t/0"]) })), LIMITS);
  assert.deepEqual(fenced.fenced, new Set(["t/0"]));
  const query = { epoch: 4, lastEpochs: new Map([["t/0", 3]]) };
  const asked = asSent(encodeEpochEndQuery(query));
  assert.equal(asked.type, "epoch_end");
  assert.deepEqual(decodeEpochEndQuery(asked, LIMITS), query);
});

Deno.test("a leader refuses a replication request outside its limits (INVALID_REQUEST)", () => {
  const base = { id: 1, type: "replicate", epoch: 4, brokerId: 2, offsets: {}, hw: {} };
  const bad: Record<string, unknown>[] = [
    { epoch: "4" },
    { brokerId: -1 },
    { offsets: { "t/0": -1 } },
    { hw: [] },
    { maxBytes: LIMITS.maxFetchBytes + 1 },
    { maxWaitMs: LIMITS.maxFetchWaitMs + 1 },
    { fenced: "t/0" },
    { fenced: [0] },
    { logStart: { "t/0": -1 } },
  ];
  for (const fields of bad) {
    assert.throws(() => decodeFetchRequest({ ...base, ...fields } as Request, LIMITS), { code: "INVALID_REQUEST" });
  }
  const defaults = decodeFetchRequest(base as Request, LIMITS);
  assert.equal(defaults.maxBytes, LIMITS.replicaFetchMaxBytes);
  assert.equal(defaults.maxWaitMs, 0);
  assert.throws(() => decodeEpochEndQuery({ id: 1, type: "epoch_end", epoch: 1 }, LIMITS), { code: "INVALID_REQUEST" });
});

Deno.test("the leader asserts each part's length is its chunks' bytes (the follower cuts by it)", () => {
  const res = leaderResult();
  res.parts[0].byteLength = 8;
  assert.throws(() => encodeFetchReply(res), { code: "INTERNAL" });
});
