/**
 * The group coordinator's byte budgets with a fake broker core: a join, a
 * rejoin or an assignment past the per-group or the total budget is refused
 * with GROUP_MAX_SIZE_REACHED naming the budget, one under them passes, and
 * every way out (leave, session expiry, an id never used) gives the bytes
 * back, to 0.
 */
import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import type { BrokerContext } from "./context.ts";
import { GroupCoordinator, type JoinResult } from "./group_coordinator.ts";

const MiB = 1024 * 1024;

/**
 * A coordinator on a fake leader with the given budgets; `fn` runs with it (a new leader epoch set in `leadership`
 * is a failover: the coordinator forgets its members), and its timer is stopped after.
 */
async function withCoordinator(
  budgets: { maxGroupBytes: number; maxGroupStateBytes: number },
  fn: (c: GroupCoordinator, leadership: { epoch: number }) => void | Promise<void>,
): Promise<void> {
  const leadership = { epoch: 1 };
  const b = {
    opts: { ...budgets, requestTimeoutMs: 1000 },
    log: { write: () => {} },
    requireLeader: () => ({ epoch: leadership.epoch }),
    store: { partitionCount: () => 0, meta: { groups: new Map() } },
  } as unknown as BrokerContext;
  const c = new GroupCoordinator(b);
  try {
    await fn(c, leadership);
  } finally {
    c.reset(new YakError("NOT_LEADER", "test over"));
  }
}

/** What a join (or its first step) was answered: a member id and the pending join, or the error. */
interface Joined {
  id: string;
  result: Promise<JoinResult | YakError>;
}

function request(group: string, memberId: string, metadataBytes: number, sessionTimeoutMs = 10_000) {
  return {
    group,
    memberId,
    clientId: "c",
    host: "127.0.0.1:1",
    sessionTimeoutMs,
    rebalanceTimeoutMs: 10_000,
    protocolType: "consumer",
    protocols: [{ name: "range", metadata: new Uint8Array(metadataBytes) }],
  };
}

/** Both steps of a new member's join (KIP-394); throws the error of a refused one. */
function join(c: GroupCoordinator, group: string, metadataBytes: number, sessionTimeoutMs = 10_000): Joined {
  let id = "";
  try {
    c.join(request(group, "", metadataBytes, sessionTimeoutMs));
    assert.fail("a new member is first given its id");
  } catch (err) {
    if (!(err instanceof YakError) || err.code !== "MEMBER_ID_REQUIRED") throw err;
    id = String(err.data?.memberId);
  }
  // Waiting joins end with an error when the test resets the coordinator: caught here, not unhandled.
  const result = c.join(request(group, id, metadataBytes, sessionTimeoutMs)).catch((err: YakError) => err);
  return { id, result };
}

/** The error `fn` throws (it must throw a YakError). */
function refusal(fn: () => unknown): YakError {
  try {
    fn();
  } catch (err) {
    if (err instanceof YakError) return err;
    throw err;
  }
  assert.fail("not refused");
}

async function eventually(what: string, pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("joins past the group's or the coordinator's byte budget are refused; leaving gives every byte back", () =>
  withCoordinator({ maxGroupBytes: 2 * MiB + 64 * 1024, maxGroupStateBytes: 4 * MiB + 256 * 1024 }, (c) => {
    const a1 = join(c, "a", MiB);
    const a2 = join(c, "a", MiB);
    assert.ok(c.stateBytes("a") > 2 * MiB, `two members of 1 MiB: ${c.stateBytes("a")} bytes`);
    const full = refusal(() => join(c, "a", MiB));
    assert.equal(full.code, "GROUP_MAX_SIZE_REACHED");
    assert.match(full.message, /group 'a' is full.*budget of 2\.1 MiB \(--max-group-bytes\)/);

    const b1 = join(c, "b", MiB);
    const b2 = join(c, "b", MiB);
    const total = c.stateBytes();
    assert.equal(total, c.stateBytes("a") + c.stateBytes("b"));
    const over = refusal(() => join(c, "c", MiB));
    assert.equal(over.code, "GROUP_MAX_SIZE_REACHED");
    assert.match(over.message, /coordinator is full.*budget of 4\.3 MiB \(--max-group-state-bytes\)/);
    assert.equal(c.stateBytes(), total, "a refused join is charged nothing");
    // One that fits under both budgets passes.
    const c1 = join(c, "c", 1000);
    assert.ok(c.stateBytes("c") > 1000 && c.stateBytes("c") < 4000, `${c.stateBytes("c")} bytes`);

    // A known member rejoining with a second protocol that takes it past the budget is refused and keeps what it had.
    const before = c.stateBytes("a");
    const twoProtocols = request("a", a1.id, MiB);
    twoProtocols.protocols.push({ name: "roundrobin", metadata: new Uint8Array(100 * 1024) });
    const grown = refusal(() => c.join(twoProtocols));
    assert.equal(grown.code, "GROUP_MAX_SIZE_REACHED");
    assert.equal(c.stateBytes("a"), before);

    for (const [group, m] of [["a", a1], ["a", a2], ["b", b1], ["b", b2], ["c", c1]] as const) c.leave(group, m.id);
    assert.equal(c.stateBytes(), 0, "every byte back after the members left");
    assert.equal(c.stateBytes("a"), 0);
    const again = join(c, "a", MiB);
    assert.ok(c.stateBytes("a") > MiB, "the room is there again");
    c.leave("a", again.id);
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("an assignment past the group's budget is refused to every member and the group rebalances", () =>
  withCoordinator({ maxGroupBytes: 2 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const m1 = join(c, "s", 1000);
    const m2 = join(c, "s", 1000);
    const [r1, r2] = await Promise.all([m1.result, m2.result]);
    assert.ok(!(r1 instanceof YakError) && !(r2 instanceof YakError), "both joined");
    const leader = r1.leaderId === m1.id ? m1 : m2;
    const other = leader === m1 ? m2 : m1;
    const waiting = c.sync("s", other.id, r1.generation, null).catch((err: YakError) => err);
    const charged = c.stateBytes();
    const big = new Map([[m1.id, new Uint8Array(MiB)], [m2.id, new Uint8Array(MiB)]]);
    const refused = refusal(() => c.sync("s", leader.id, r1.generation, big));
    assert.equal(refused.code, "GROUP_MAX_SIZE_REACHED");
    assert.match(refused.message, /assignment does not fit.*--max-group-bytes/);
    const told = await waiting;
    assert.ok(told instanceof YakError && told.code === "GROUP_MAX_SIZE_REACHED", `the other member: ${told}`);
    assert.equal(c.describe("s").state, "PreparingRebalance");
    assert.equal(c.stateBytes(), charged, "nothing charged for the refused assignment");
    c.leave("s", m1.id);
    c.leave("s", m2.id);
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("an assignment under the budget is charged, and session expiry and unused ids give the bytes back", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const m = join(c, "e", 1000, 200);
    const r = await m.result;
    assert.ok(!(r instanceof YakError), `joined: ${r}`);
    const joined = c.stateBytes();
    assert.deepEqual(
      await c.sync("e", m.id, r.generation, new Map([[m.id, new Uint8Array(5000)]])),
      new Uint8Array(5000),
    );
    assert.equal(c.stateBytes(), joined + 5000, "the assignment is charged");
    // An id handed out and never used is charged until it expires.
    try {
      c.join(request("e", "", 1000, 200));
    } catch (err) {
      assert.ok(err instanceof YakError && err.code === "MEMBER_ID_REQUIRED");
    }
    assert.ok(c.stateBytes() > joined + 5000, "the pending id is charged");
    await eventually("the member's session and the id expired", () => c.stateBytes() === 0);
    assert.equal(c.describe("e").members.length, 0);
  }));

/** A join of static member `instance` (KIP-345) under `memberId` ("" for a process that just started). */
function staticRequest(
  group: string,
  memberId: string,
  instance: string,
  opts: { metadata?: Uint8Array; sessionTimeoutMs?: number; rebalanceTimeoutMs?: number } = {},
) {
  return {
    ...request(group, memberId, 0, opts.sessionTimeoutMs),
    rebalanceTimeoutMs: opts.rebalanceTimeoutMs ?? 10_000,
    protocols: [{ name: "range", metadata: opts.metadata ?? new Uint8Array([1, 2, 3]) }],
    groupInstanceId: instance,
  };
}

/** The error a promise rejects with (it must reject with a YakError). */
async function rejection(p: Promise<unknown>): Promise<YakError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof YakError) return err;
    throw err;
  }
  assert.fail("not refused");
}

/**
 * Static members `instances` join group `group` at once (no MEMBER_ID_REQUIRED round trip), the leader member
 * assigns each the bytes [i], and the group is Stable: their join results, by instance.
 */
async function formStatic(
  c: GroupCoordinator,
  group: string,
  instances: string[],
  opts: { sessionTimeoutMs?: number; rebalanceTimeoutMs?: number } = {},
): Promise<Map<string, JoinResult>> {
  const joins = instances.map((instance) => c.join(staticRequest(group, "", instance, opts)));
  const results = await Promise.all(joins);
  const byInstance = new Map(instances.map((instance, i) => [instance, results[i]]));
  const assignments = new Map(results.map((r, i) => [r.memberId, new Uint8Array([i])]));
  const synced = await Promise.all(
    results.map((r, i) =>
      c.sync(group, r.memberId, r.generation, r.memberId === r.leaderId ? assignments : null, instances[i])
    ),
  );
  synced.forEach((bytes, i) => assert.deepEqual(bytes, new Uint8Array([i])));
  assert.equal(c.describe(group).state, "Stable");
  return byInstance;
}

Deno.test("a static member restarting in a Stable group gets its generation and assignment back; its old id is fenced", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const formed = await formStatic(c, "st", ["a", "b"]);
    const a = formed.get("a")!;
    const b = formed.get("b")!;
    assert.equal(a.leaderId, a.memberId, "the first member leads");
    assert.match(a.memberId, /^a-/, "a static member's id starts with its instance id");
    assert.deepEqual(
      a.members.map((m) => m.groupInstanceId),
      ["a", "b"],
      "the leader is told the instance ids",
    );
    const charged = c.stateBytes();

    // The process of instance 'a' (the leader) restarts: a new member id at once, the same generation, no rebalance.
    const again = await c.join(staticRequest("st", "", "a"));
    assert.notEqual(again.memberId, a.memberId);
    assert.equal(again.generation, a.generation);
    assert.equal(again.leaderId, a.memberId, "the old leader id, so the new process does not compute an assignment");
    assert.deepEqual(again.members, []);
    assert.deepEqual(await c.sync("st", again.memberId, again.generation, null, "a"), new Uint8Array([0]));
    const d = c.describe("st");
    assert.equal(d.state, "Stable");
    assert.equal(d.generation, a.generation);
    assert.equal(d.leaderId, again.memberId, "the replaced leader's id is the new one");
    assert.deepEqual(d.members.map((m) => [m.memberId, m.groupInstanceId]), [[again.memberId, "a"], [b.memberId, "b"]]);
    assert.deepEqual(d.members[0].assignment, new Uint8Array([0]));
    assert.equal(c.stateBytes(), charged, "the same charge under an id of the same length");

    // The old process, were it still running, is fenced wherever it names its instance.
    const old = a.memberId;
    const gen = a.generation;
    assert.equal(refusal(() => c.heartbeat("st", old, gen, "a")).code, "FENCED_INSTANCE_ID");
    assert.equal(refusal(() => c.sync("st", old, gen, null, "a")).code, "FENCED_INSTANCE_ID");
    assert.equal(refusal(() => c.join(staticRequest("st", old, "a"))).code, "FENCED_INSTANCE_ID");
    const commit = await rejection(
      c.commit("st", "t", new Map([[0, 1]]), { memberId: old, generation: gen, groupInstanceId: "a" }),
    );
    assert.equal(commit.code, "FENCED_INSTANCE_ID");
    assert.match(commit.message, /another process joined as group instance 'a'/);
    assert.equal(refusal(() => c.heartbeat("st", old, gen)).code, "UNKNOWN_MEMBER_ID", "without it: unknown");
    // Nobody else is disturbed.
    c.heartbeat("st", again.memberId, gen, "a");
    c.heartbeat("st", b.memberId, gen, "b");
    assert.equal(c.describe("st").state, "Stable");

    c.leave("st", again.memberId, "a");
    c.leave("st", b.memberId, "b");
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("a static member restarting with other metadata starts a rebalance under its new id", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const formed = await formStatic(c, "sm", ["a", "b"]);
    const a = formed.get("a")!;
    const b = formed.get("b")!;
    const rejoined = c.join(staticRequest("sm", "", "a", { metadata: new Uint8Array([9]) }));
    assert.equal(c.describe("sm").state, "PreparingRebalance");
    assert.equal(refusal(() => c.heartbeat("sm", b.memberId, b.generation, "b")).code, "REBALANCE_IN_PROGRESS");
    const bAgain = c.join(staticRequest("sm", b.memberId, "b"));
    const [ra, rb] = await Promise.all([rejoined, bAgain]);
    assert.equal(ra.generation, a.generation + 1);
    assert.equal(rb.memberId, b.memberId, "b rejoined under its own id");
    assert.equal(ra.leaderId, ra.memberId, "leadership went to the new id of the replaced leader");
    assert.deepEqual(ra.members.map((m) => [m.memberId, m.groupInstanceId]), [[ra.memberId, "a"], [b.memberId, "b"]]);
    assert.deepEqual(ra.members[0].metadata, new Uint8Array([9]));
    c.leave("sm", "", "a");
    c.leave("sm", "", "b");
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("LeaveGroup by group instance id removes that member; a stale member id is fenced; unknown instances refused", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const formed = await formStatic(c, "sl", ["a", "b"]);
    assert.equal(refusal(() => c.leave("sl", "a-stale", "a")).code, "FENCED_INSTANCE_ID");
    assert.equal(refusal(() => c.leave("sl", "", "nobody")).code, "UNKNOWN_MEMBER_ID");
    assert.equal(c.describe("sl").members.length, 2, "neither refusal removed anyone");
    c.leave("sl", "", "b");
    const d = c.describe("sl");
    assert.equal(d.state, "PreparingRebalance");
    assert.deepEqual(d.members.map((m) => m.groupInstanceId), ["a"]);
    // Instance 'b' is gone: a process joining as 'b' now is a new member, not a replacement.
    const b2 = c.join(staticRequest("sl", "", "b")).catch((err: YakError) => err);
    assert.equal(c.describe("sl").members.length, 2);
    c.leave("sl", formed.get("a")!.memberId, "a");
    const alone = await b2;
    assert.ok(!(alone instanceof YakError), `the new 'b' joined once 'a' left: ${alone}`);
    assert.deepEqual(alone.members.map((m) => m.groupInstanceId), ["b"]);
    c.leave("sl", "", "b");
    assert.equal(c.describe("sl").state, "Empty");
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("a static member that misses a rebalance keeps its place and partitions until its session timeout", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const formed = await formStatic(c, "sx", ["a", "b"], { sessionTimeoutMs: 1500, rebalanceTimeoutMs: 300 });
    const a = formed.get("a")!;
    const b = formed.get("b")!;
    // 'a' keeps heartbeating; 'b' goes silent. 'a' rejoins (a new subscription): the join phase ends at the
    // rebalance timeout without 'b', which stays a member and is given to the leader to assign.
    const beat = setInterval(() => {
      try {
        c.heartbeat("sx", a.memberId, c.describe("sx").generation, "a");
      } catch { /* rebalancing */ }
    }, 100);
    try {
      const ra = await c.join(
        staticRequest("sx", a.memberId, "a", { sessionTimeoutMs: 1500, rebalanceTimeoutMs: 300 }),
      );
      assert.equal(ra.generation, a.generation + 1);
      assert.deepEqual(ra.members.map((m) => m.memberId), [a.memberId, b.memberId]);
      const assignments = new Map([[a.memberId, new Uint8Array([7])], [b.memberId, new Uint8Array([8])]]);
      await c.sync("sx", a.memberId, ra.generation, assignments, "a");
      assert.deepEqual(c.describe("sx").members.map((m) => m.assignment), [new Uint8Array([7]), new Uint8Array([8])]);
      // Then its session ends: out, and the group rebalances without it.
      await eventually("'b' removed at its session timeout", () => c.describe("sx").members.length === 1);
      assert.equal(c.describe("sx").state, "PreparingRebalance");
      assert.deepEqual(c.describe("sx").members.map((m) => m.groupInstanceId), ["a"]);
    } finally {
      clearInterval(beat);
    }
    c.leave("sx", "", "a");
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("a static member's instance id is charged with its bytes; one past 249 characters is refused", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    // Member ids take at most 64 characters of the instance id, so these two differ by their instance ids alone.
    const short = c.join(staticRequest("i1", "", "x".repeat(64))).catch((err: YakError) => err);
    const long = c.join(staticRequest("i2", "", "y".repeat(249))).catch((err: YakError) => err);
    assert.equal(c.stateBytes("i2") - c.stateBytes("i1"), 249 - 64);
    const tooLong = refusal(() => c.join(staticRequest("i3", "", "z".repeat(250))));
    assert.equal(tooLong.code, "INVALID_REQUEST");
    assert.match(tooLong.message, /group instance id must be 1 to 249 characters/);
    c.leave("i1", "", "x".repeat(64));
    c.leave("i2", "", "y".repeat(249));
    await Promise.all([short, long]);
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("after a failover a static member is taken back under its member id, and its instance fences again", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c, leadership) => {
    const a = (await formStatic(c, "sf", ["a"])).get("a")!;
    leadership.epoch = 2;
    const moved = refusal(() => c.heartbeat("sf", a.memberId, a.generation, "a"));
    assert.equal(moved.code, "REBALANCE_IN_PROGRESS", "the new leader does not know it yet: rejoin");
    const back = await c.join(staticRequest("sf", a.memberId, "a"));
    assert.equal(back.memberId, a.memberId, "under the id it had");
    assert.deepEqual(c.describe("sf").members.map((m) => m.groupInstanceId), ["a"]);
    assert.equal(refusal(() => c.heartbeat("sf", "a-other", back.generation, "a")).code, "FENCED_INSTANCE_ID");
    c.leave("sf", "", "a");
    assert.equal(c.stateBytes(), 0);
  }));

Deno.test("the leader's sync is the plan even when it holds no assignment: every member gets an empty one", () =>
  withCoordinator({ maxGroupBytes: 64 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const m1 = join(c, "e0", 10);
    const m2 = join(c, "e0", 10);
    const [r1, r2] = await Promise.all([m1.result, m2.result]);
    assert.ok(!(r1 instanceof YakError) && !(r2 instanceof YakError), "both joined");
    const leader = r1.leaderId === m1.id ? m1 : m2;
    const other = leader === m1 ? m2 : m1;
    const waiting = c.sync("e0", other.id, r1.generation, null);
    // An empty list from the leader (the Kafka codec passes it as none): the group was held in CompletingRebalance.
    assert.deepEqual(await c.sync("e0", leader.id, r1.generation, null), new Uint8Array(0));
    assert.deepEqual(await waiting, new Uint8Array(0));
    assert.equal(c.describe("e0").state, "Stable");
    c.leave("e0", m1.id);
    c.leave("e0", m2.id);
  }));

Deno.test("a transactional commit's member is checked as Kafka checks it: unknown member, other generation, never a rebalance", () =>
  withCoordinator({ maxGroupBytes: 64 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const code = (fn: () => void) => {
      try {
        fn();
        return "ok";
      } catch (err) {
        return (err as YakError).code;
      }
    };
    // A group this coordinator does not know (a leader's failover): UNKNOWN_MEMBER_ID, which Kafka's producers
    // abort the transaction on (REBALANCE_IN_PROGRESS was fatal to them).
    assert.equal(
      code(() => c.checkCommitter("nobody", { memberId: "m", generation: 3, groupInstanceId: null })),
      "UNKNOWN_MEMBER_ID",
    );
    const m1 = join(c, "tc", 10);
    const m2 = join(c, "tc", 10);
    const [r1] = await Promise.all([m1.result, m2.result]);
    assert.ok(!(r1 instanceof YakError));
    // Joined, not yet synced (CompletingRebalance): the commit goes through.
    assert.equal(c.describe("tc").state, "CompletingRebalance");
    assert.equal(
      code(() => c.checkCommitter("tc", { memberId: m1.id, generation: r1.generation, groupInstanceId: null })),
      "ok",
    );
    assert.equal(
      code(() => c.checkCommitter("tc", { memberId: m1.id, generation: r1.generation + 1, groupInstanceId: null })),
      "ILLEGAL_GENERATION",
    );
    assert.equal(
      code(() => c.checkCommitter("tc", { memberId: "stranger", generation: r1.generation, groupInstanceId: null })),
      "UNKNOWN_MEMBER_ID",
    );
    c.leave("tc", m1.id);
    c.leave("tc", m2.id);
  }));

/** Dynamic members join group `group` (MEMBER_ID_REQUIRED first), the leader member assigns each [i]; Stable. */
async function formDynamic(c: GroupCoordinator, group: string, count: number, sessionTimeoutMs = 10_000) {
  const joined = Array.from({ length: count }, () => join(c, group, 10, sessionTimeoutMs));
  const results = await Promise.all(joined.map(async (j) => {
    const r = await j.result;
    assert.ok(!(r instanceof YakError), `joined: ${r}`);
    return r;
  }));
  const assignments = new Map(results.map((r, i) => [r.memberId, new Uint8Array([i])]));
  await Promise.all(
    results.map((r) => c.sync(group, r.memberId, r.generation, r.memberId === r.leaderId ? assignments : null)),
  );
  assert.equal(c.describe(group).state, "Stable");
  return results;
}

Deno.test("a group whose members expired or left stays Empty and listed, going on from its generation; old ids are unknown", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const [expired] = await formDynamic(c, "gy", 1, 200);
    await eventually("the member's session expired", () => c.describe("gy").members.length === 0);
    await new Promise((r) => setTimeout(r, 250)); // a few ticks: the group is not dropped
    assert.equal(c.describe("gy").state, "Empty", "not Dead: Kafka keeps an emptied group");
    assert.deepEqual(c.list().map((g) => [g.group, g.state]), [["gy", "Empty"]]);
    // The expired member is told it is unknown (it rejoins with a new id), not taken back under its old one.
    assert.equal(refusal(() => c.heartbeat("gy", expired.memberId, expired.generation)).code, "UNKNOWN_MEMBER_ID");
    assert.equal(refusal(() => c.sync("gy", expired.memberId, expired.generation, null)).code, "UNKNOWN_MEMBER_ID");
    assert.equal(refusal(() => c.join(request("gy", expired.memberId, 10))).code, "UNKNOWN_MEMBER_ID");
    const commit = await rejection(
      c.commit("gy", "t", new Map([[0, 1]]), { memberId: expired.memberId, generation: expired.generation }),
    );
    assert.equal(commit.code, "UNKNOWN_MEMBER_ID");
    // A new member goes on from the group's generation: a generation is never handed out twice.
    const [fresh] = await formDynamic(c, "gy", 1);
    assert.ok(fresh.generation > expired.generation, `generation ${fresh.generation} after ${expired.generation}`);
    c.leave("gy", fresh.memberId);

    // One that never became Stable and emptied (both left while it formed): the same after a tick.
    const a = join(c, "gx", 10);
    const b = join(c, "gx", 10);
    await Promise.all([a.result, b.result]);
    c.leave("gx", a.id);
    c.leave("gx", b.id);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(c.describe("gx").state, "Empty");
    assert.equal(refusal(() => c.heartbeat("gx", a.id, 1)).code, "UNKNOWN_MEMBER_ID");

    // One nobody ever joined (an id handed out, never used) is not kept: Dead once the id expires, as before.
    assert.equal(refusal(() => c.join(request("gz", "", 10, 200))).code, "MEMBER_ID_REQUIRED");
    await eventually("the unused id expired and the group went", () => c.describe("gz").state === "Dead");
    assert.ok(!c.list().some((g) => g.group === "gz"));
  }));

Deno.test("a member rejoining a Stable group with its protocols gets the generation back; the leader's or a change rebalances", () =>
  withCoordinator({ maxGroupBytes: 4 * MiB, maxGroupStateBytes: 64 * MiB }, async (c) => {
    const [r1, r2] = await formDynamic(c, "gr", 2);
    const leader = r1.memberId === r1.leaderId ? r1 : r2;
    const follower = leader === r1 ? r2 : r1;
    const again = await c.join(request("gr", follower.memberId, 10));
    assert.equal(again.generation, follower.generation, "no new generation");
    assert.equal(again.leaderId, leader.memberId);
    assert.deepEqual(again.members, []);
    assert.equal(c.describe("gr").state, "Stable", "no rebalance");
    assert.deepEqual(
      await c.sync("gr", follower.memberId, again.generation, null),
      c.describe("gr").members.find((m) => m.memberId === follower.memberId)!.assignment,
    );
    c.heartbeat("gr", leader.memberId, leader.generation);

    // Other metadata: a rebalance; so does the leader member's rejoin.
    const changed = c.join(request("gr", follower.memberId, 11)).catch((err: YakError) => err);
    assert.equal(c.describe("gr").state, "PreparingRebalance");
    const described = c.describe("gr");
    assert.equal(described.protocol, "", "no protocol while rebalancing, as Kafka describes it");
    assert.ok(described.members.every((m) => m.assignment.length === 0 && m.metadata.length === 0));
    const leaderAgain = c.join(request("gr", leader.memberId, 10)).catch((err: YakError) => err);
    const [rc, rl] = await Promise.all([changed, leaderAgain]);
    assert.ok(!(rc instanceof YakError) && !(rl instanceof YakError));
    assert.equal(rc.generation, follower.generation + 1);
    // Still assigning: a member whose join answer was lost asks again and gets the same answer.
    const retried = await c.join(request("gr", leader.memberId, 10));
    assert.equal(retried.generation, rl.generation);
    assert.equal(retried.members.length, rl.leaderId === leader.memberId ? 2 : 0);
    assert.equal(c.describe("gr").state, "CompletingRebalance");
    c.leave("gr", leader.memberId);
    c.leave("gr", follower.memberId);
  }));
