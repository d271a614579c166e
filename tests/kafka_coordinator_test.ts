/**
 * Group APIs as Kafka answers them around the coordinator (a failure probe
 * with kafka-python and confluent-kafka found each): a broker that is not the
 * leader answers NOT_COORDINATOR to DescribeGroups, OffsetFetch and
 * LeaveGroup rather than its copy of the group (it described an active group
 * as Empty), and a commit from outside a group that has members is
 * UNKNOWN_MEMBER_ID, not ILLEGAL_GENERATION. Raw Kafka requests to real
 * brokers.
 */
import assert from "node:assert/strict";
import { eventually, Proc, seqText, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

const UNKNOWN_MEMBER_ID = 25;
const ILLEGAL_GENERATION = 22;
const NOT_COORDINATOR = 16;

async function withConn<T>(port: number, fn: (k: KafkaConn) => Promise<T>): Promise<T> {
  const k = await KafkaConn.open(port);
  try {
    return await fn(k);
  } finally {
    k.close();
  }
}

/** OffsetCommit v2 of offset 1 in `topic` partition 0: the partition's error. */
function commitV2(port: number, group: string, generation: number, member: string, topic: string): Promise<number> {
  return withConn(port, async (k) => {
    const r = await k.call(8, 2, false, (w) => {
      w.string(group).int32(generation).string(member).int64(-1);
      w.array([topic], (w, t) => w.string(t).array([0], (w, p) => w.int32(p).int64(1).nullableString(null)));
    });
    const [[error]] = r.array((r) => {
      r.string();
      return r.array((r) => (r.int32(), r.int16()));
    });
    ends(r);
    return error;
  });
}

Deno.test("group APIs: a follower answers NOT_COORDINATOR; a commit from outside a group with members is UNKNOWN_MEMBER_ID", () =>
  withDeadline(60_000, "coordinator answers", async () => {
    const c = await TestCluster.start({ brokers: 2, partitions: 1 });
    let member: Proc | null = null;
    try {
      const produced = await yak(["produce", "--topic", "ct", ...c.zkFlag], { stdin: seqText(10) });
      assert.equal(produced.code, 0, produced.stderr);
      member = new Proc("member", ["consume", "--topic", "ct", "--group", "act", ...c.zkFlag]);
      await eventually(
        async () => {
          const d = await yak(["groups", "--describe", "act", "--json", ...c.zkFlag]);
          return d.code === 0 && JSON.parse(d.stdout).state === "Stable";
        },
        20_000,
        "the group is Stable",
      );
      const leader = (await c.lease()).leaderId!;
      const leaderPort = c.kafkaPorts.get(leader)!;
      const followerPort = c.kafkaPorts.get(leader === 1 ? 2 : 1)!;

      // Before: 22 for each of these, where Kafka answers 25 (the committer is not a member).
      assert.equal(await commitV2(leaderPort, "act", -1, "", "ct"), UNKNOWN_MEMBER_ID, "generation -1, no member");
      assert.equal(await commitV2(leaderPort, "act", 1, "", "ct"), UNKNOWN_MEMBER_ID, "a generation, no member");
      assert.equal(await commitV2(leaderPort, "act", -1, "made-up", "ct"), UNKNOWN_MEMBER_ID, "a made-up member");
      const real = JSON.parse((await yak(["groups", "--describe", "act", "--json", ...c.zkFlag])).stdout);
      const memberId = real.members[0].memberId as string;
      assert.equal(await commitV2(leaderPort, "act", 999, memberId, "ct"), ILLEGAL_GENERATION, "a stale generation");

      // DescribeGroups v1 on the follower: before, error 0 and state Empty for this Stable group.
      const described = await withConn(followerPort, async (k) => {
        const r = await k.call(15, 1, false, (w) => w.array(["act"], (w, g) => w.string(g)));
        r.int32();
        const [g] = r.array((r) => {
          const error = r.int16();
          r.string();
          const state = r.string();
          r.string();
          r.string();
          r.array((r) => (r.string(), r.string(), r.string(), r.bytes(), r.bytes()));
          return { error, state };
        });
        ends(r);
        return g;
      });
      assert.equal(described.error, NOT_COORDINATOR, JSON.stringify(described));
      // OffsetFetch v1 (the error in each partition) and v3 (the group's own error) on the follower.
      const fetchedV1 = await withConn(followerPort, async (k) => {
        const r = await k.call(9, 1, false, (w) => {
          w.string("act");
          w.array(["ct"], (w, t) => w.string(t).array([0], (w, p) => w.int32(p)));
        });
        const parts = r.array((
          r,
        ) => (r.string(), r.array((r) => (r.int32(), r.int64(), r.nullableString(), r.int16()))));
        ends(r);
        return parts.flat();
      });
      assert.deepEqual(fetchedV1, [NOT_COORDINATOR]);
      const fetchedV3 = await withConn(followerPort, async (k) => {
        const r = await k.call(9, 3, false, (w) => {
          w.string("act");
          w.array(["ct"], (w, t) => w.string(t).array([0], (w, p) => w.int32(p)));
        });
        r.int32();
        r.array((r) => (r.string(), r.array((r) => (r.int32(), r.int64(), r.nullableString(), r.int16()))));
        const error = r.int16();
        ends(r);
        return error;
      });
      assert.equal(fetchedV3, NOT_COORDINATOR);
      // LeaveGroup v3 on the follower: the request's own error and no members (before: 0, the member's 16).
      const left = await withConn(followerPort, async (k) => {
        const r = await k.call(13, 3, false, (w) => {
          w.string("act");
          w.array([[memberId, null]], (w, [id, instance]) => w.string(id as string).nullableString(instance));
        });
        r.int32();
        const error = r.int16();
        const members = r.array((r) => (r.string(), r.nullableString(), r.int16()));
        ends(r);
        return { error, members: members.length };
      });
      assert.deepEqual(left, { error: NOT_COORDINATOR, members: 0 });
      // The member is still there (the follower's refusal removed nothing).
      const after = JSON.parse((await yak(["groups", "--describe", "act", "--json", ...c.zkFlag])).stdout);
      assert.equal(after.members.length, 1);
    } finally {
      await member?.stop();
      await c.stop();
    }
  }));

/** Fetch v11 of partition 0 of `topic` from offset 0 naming `epoch` as the reader's: the partition's error. */
function fetchError(port: number, topic: string, epoch: number): Promise<number> {
  return withConn(port, async (k) => {
    const r = await k.call(1, 11, false, (w) => {
      w.int32(-1).int32(0).int32(1).int32(1 << 20).int8(0).int32(0).int32(-1);
      w.array(
        [topic],
        (w, t) => w.string(t).array([0], (w, p) => w.int32(p).int32(epoch).int64(0).int64(-1).int32(1 << 20)),
      );
      w.array([], () => {});
      w.string("");
    });
    r.int32();
    assert.equal(r.int16(), 0);
    r.int32();
    const [[error]] = r.array((r) => {
      r.string();
      return r.array((r) => {
        r.int32();
        const error = r.int16();
        r.int64(), r.int64(), r.int64();
        r.nullableArray((r) => [r.int64(), r.int64()]);
        r.int32();
        r.nullableBytes();
        return error;
      });
    });
    ends(r);
    return error;
  });
}

/** ListOffsets v4 of partition 0's latest offset naming `epoch` as the reader's: the error and the offset. */
function latestOffset(port: number, topic: string, epoch: number): Promise<[number, number]> {
  return withConn(port, async (k) => {
    const r = await k.call(2, 4, false, (w) => {
      w.int32(-1).int8(0);
      w.array([topic], (w, t) => w.string(t).array([0], (w, p) => w.int32(p).int32(epoch).int64(-1)));
    });
    r.int32();
    const [[answer]] = r.array((r) => {
      r.string();
      return r.array((r): [number, number] => {
        r.int32();
        const error = r.int16();
        r.int64();
        const offset = r.int64();
        r.int32();
        return [error, offset];
      });
    });
    ends(r);
    return answer;
  });
}

Deno.test("Fetch v9+ and ListOffsets v4+ check the reader's leader epoch (KIP-320): older is fenced, newer unknown", () =>
  withDeadline(60_000, "leader epochs", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 1 });
    try {
      const produced = await yak(["produce", "--topic", "ep", ...c.zkFlag], { stdin: seqText(5) });
      assert.equal(produced.code, 0, produced.stderr);
      const { leaderId, epoch } = await c.lease();
      const port = c.kafkaPorts.get(leaderId!)!;
      // Before: 0 for every epoch, where Kafka answers 74 and 75.
      assert.deepEqual(
        [await fetchError(port, "ep", epoch), await fetchError(port, "ep", -1)],
        [0, 0],
        "the current epoch, or none",
      );
      assert.equal(await fetchError(port, "ep", epoch - 1), 74, "an older epoch: FENCED_LEADER_EPOCH");
      assert.equal(await fetchError(port, "ep", epoch + 1), 75, "a newer epoch: UNKNOWN_LEADER_EPOCH");
      assert.deepEqual(await latestOffset(port, "ep", epoch), [0, 5]);
      assert.deepEqual(await latestOffset(port, "ep", epoch - 1), [74, -1]);
      assert.deepEqual(await latestOffset(port, "ep", epoch + 1), [75, -1]);
    } finally {
      await c.stop();
    }
  }));

/** JoinGroup v5 with a 1 s session: the error, and the member id, generation and leader it was given. */
function joinV5(port: number, group: string, memberId: string) {
  return withConn(port, async (k) => {
    const r = await k.call(11, 5, false, (w) => {
      w.string(group).int32(1000).int32(1000).string(memberId).nullableString(null).string("consumer");
      w.array(["range"], (w, name) => w.string(name).nullableBytes(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0])));
    });
    r.int32();
    const error = r.int16();
    const generation = r.int32();
    r.string();
    const leader = r.string();
    const member = r.string();
    r.array((r) => (r.string(), r.nullableString(), r.bytes()));
    ends(r);
    return { error, generation, leader, member };
  });
}

/** Heartbeat v3: the error. */
function heartbeatV3(port: number, group: string, generation: number, memberId: string): Promise<number> {
  return withConn(port, async (k) => {
    const r = await k.call(
      12,
      3,
      false,
      (w) => w.string(group).int32(generation).string(memberId).nullableString(null),
    );
    r.int32();
    const error = r.int16();
    ends(r);
    return error;
  });
}

/** DescribeGroups v1: the group's state. */
function groupState(port: number, group: string): Promise<string> {
  return withConn(port, async (k) => {
    const r = await k.call(15, 1, false, (w) => w.array([group], (w, g) => w.string(g)));
    r.int32();
    const [state] = r.array((r) => {
      r.int16(), r.string();
      const state = r.string();
      r.string(), r.string();
      r.array((r) => (r.string(), r.string(), r.string(), r.bytes(), r.bytes()));
      return state;
    });
    ends(r);
    return state;
  });
}

Deno.test("a member whose session expired is unknown (not taken back under its old id); its group stays Empty", () =>
  withDeadline(60_000, "expired member", async () => {
    const c = await TestCluster.start({ brokers: 1, partitions: 1 });
    try {
      const port = c.kafkaPorts.get(1)!;
      const first = await joinV5(port, "gy", "");
      assert.equal(first.error, 79, "MEMBER_ID_REQUIRED");
      const joined = await joinV5(port, "gy", first.member);
      assert.equal(joined.error, 0);
      assert.equal(joined.leader, joined.member);
      const synced = await withConn(port, async (k) => {
        const r = await k.call(14, 3, false, (w) => {
          w.string("gy").int32(joined.generation).string(joined.member).nullableString(null);
          w.array([joined.member], (w, id) => w.string(id).nullableBytes(new Uint8Array(0)));
        });
        r.int32();
        return r.int16();
      });
      assert.equal(synced, 0);
      assert.equal(await groupState(port, "gy"), "Stable");
      // No heartbeats: the 1 s session ends.
      await eventually(async () => await groupState(port, "gy") === "Empty", 10_000, "the member expired");
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(await groupState(port, "gy"), "Empty", "kept Empty, as Kafka keeps it (was Dead at once)");
      // Before: 27 (REBALANCE_IN_PROGRESS), then the old id was taken back at generation 1 again.
      assert.equal(await heartbeatV3(port, "gy", joined.generation, joined.member), UNKNOWN_MEMBER_ID);
      assert.equal((await joinV5(port, "gy", joined.member)).error, UNKNOWN_MEMBER_ID);
      const again = await joinV5(port, "gy", (await joinV5(port, "gy", "")).member);
      assert.equal(again.error, 0);
      assert.ok(again.generation > joined.generation, `generation ${again.generation} after ${joined.generation}`);
    } finally {
      await c.stop();
    }
  }));
