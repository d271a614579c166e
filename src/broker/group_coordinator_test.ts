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

/** A coordinator on a fake leader with the given budgets; `fn` runs with it, and its timer is stopped after. */
async function withCoordinator(
  budgets: { maxGroupBytes: number; maxGroupStateBytes: number },
  fn: (c: GroupCoordinator) => void | Promise<void>,
): Promise<void> {
  const b = {
    opts: { ...budgets, requestTimeoutMs: 1000 },
    log: { write: () => {} },
    requireLeader: () => ({ epoch: 1 }),
    store: { partitionCount: () => 0, meta: { groups: new Map() } },
  } as unknown as BrokerContext;
  const c = new GroupCoordinator(b);
  try {
    await fn(c);
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
