/**
 * Static membership (KIP-345) through librdkafka, unchanged: two kcat -G
 * members with a `group.instance.id` each; one is stopped (SIGTERM: a static
 * member sends no LeaveGroup) and started again under the same instance id
 * within its session timeout. It gets its partitions back with no rebalance
 * (the generation stays), and DescribeGroups v4 and `yak groups --describe`
 * name both instances; LeaveGroup v3 removes them by instance id. Skips with
 * its reason where kcat is missing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { kcatMissing, seqText, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

const missing = kcatMissing();
const UNKNOWN_MEMBER_ID = 25;
const FENCED_INSTANCE_ID = 82;

/** `yak groups --describe --json`, as much of it as this test reads. */
interface Described {
  state: string;
  generation: number;
  members: { memberId: string; groupInstanceId: string | null; partitions: Record<string, number[]> }[];
}

async function describe(c: TestCluster, group: string): Promise<Described | null> {
  const d = await yak(["groups", "--describe", group, "--json", ...c.zkFlag]);
  return d.code === 0 ? JSON.parse(d.stdout) : null;
}

/** Waits until `pred` holds of the group's description; returns that description. */
async function waitForGroup(
  c: TestCluster,
  group: string,
  what: string,
  pred: (d: Described) => boolean,
  timeoutMs = 15_000,
): Promise<Described> {
  const deadline = Date.now() + timeoutMs;
  let last: Described | null = null;
  while (Date.now() < deadline) {
    last = await describe(c, group);
    if (last && pred(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`group ${group}: not ${what} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
}

/** Instance id -> the partitions of `topic` its member owns. */
function ownership(d: Described, topic: string): Record<string, number[]> {
  return Object.fromEntries(d.members.map((m) => [m.groupInstanceId, m.partitions[topic] ?? []]));
}

/** Two members, each with partitions, the group Stable. */
const settled = (d: Described, topic: string) =>
  d.state === "Stable" && d.members.length === 2 && d.members.every((m) => (m.partitions[topic] ?? []).length > 0);

/** A kcat -G member with group instance id `instance`; its stderr is kept for a failure's message. */
function member(bootstrap: string, group: string, topic: string, instance: string) {
  const child = new Deno.Command("kcat", {
    args: [
      "-b",
      bootstrap,
      "-G",
      group,
      "-X",
      `group.instance.id=${instance}`,
      "-X",
      "session.timeout.ms=6000",
      "-X",
      "auto.offset.reset=earliest",
      "-q",
      "-u",
      topic,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const pump = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  return {
    child,
    stderr: () => stderr,
    /** SIGTERM, and the process gone. */
    async stop(): Promise<Deno.CommandStatus> {
      try {
        child.kill("SIGTERM");
      } catch { /* gone already */ }
      const status = await child.status;
      await pump;
      return status;
    },
  };
}

/** DescribeGroups v4 over the Kafka wire: the group's state, and each member's id and group instance id. */
async function describeV4(
  port: number,
  group: string,
): Promise<{ state: string; members: { memberId: string; instance: string | null }[] }> {
  const k = await KafkaConn.open(port);
  try {
    const r = await k.call(15, 4, false, (w) => {
      w.array([group], (w, g) => w.string(g));
      w.bool(false); // include authorized operations
    });
    r.int32(); // throttle
    const [g] = r.array((r) => {
      const error = r.int16();
      r.string(); // group id
      const state = r.string();
      r.string(); // protocol type
      r.string(); // protocol
      const members = r.array((r) => {
        const memberId = r.string();
        const instance = r.nullableString();
        r.string(); // client id
        r.string(); // client host
        r.bytes(); // metadata
        r.bytes(); // assignment
        return { memberId, instance };
      });
      r.int32(); // authorized operations
      return { error, state, members };
    });
    ends(r);
    assert.equal(g.error, 0);
    return g;
  } finally {
    k.close();
  }
}

/** LeaveGroup v3 over the Kafka wire: members by member id and group instance id; the error of each. */
async function leaveV3(port: number, group: string, members: [string, string | null][]): Promise<number[]> {
  const k = await KafkaConn.open(port);
  try {
    const r = await k.call(13, 3, false, (w) => {
      w.string(group);
      w.array(members, (w, [id, instance]) => w.string(id).nullableString(instance));
    });
    r.int32(); // throttle
    assert.equal(r.int16(), 0);
    const answered = r.array((r) => ({ id: r.string(), instance: r.nullableString(), error: r.int16() }));
    ends(r);
    assert.deepEqual(answered.map((m) => [m.id, m.instance]), members, "each member echoed");
    return answered.map((m) => m.error);
  } finally {
    k.close();
  }
}

Deno.test({
  name:
    "kcat static members: one restarted within its session timeout keeps its partitions, no rebalance; leave by instance",
  ignore: skipWithout(missing),
  fn: () =>
    withDeadline(40_000, "static membership", async () => {
      const c = await TestCluster.start({ brokers: 1, partitions: 4 });
      const topic = "statics";
      const group = "sg";
      const members: ReturnType<typeof member>[] = [];
      try {
        const made = await yak(["topics", "--create", topic, "--partitions", "4", ...c.zkFlag]);
        assert.equal(made.code, 0, made.stderr);
        for (let p = 0; p < 4; p++) {
          const produced = await yak(["produce", "--topic", topic, "--partition", String(p), ...c.zkFlag], {
            stdin: seqText(10, 1 + p * 10),
          });
          assert.equal(produced.code, 0, produced.stderr);
        }
        members.push(member(c.bootstrapServers, group, topic, "one"));
        members.push(member(c.bootstrapServers, group, topic, "two"));
        const before = await waitForGroup(c, group, "Stable with both members", (d) => settled(d, topic));
        assert.deepEqual(before.members.map((m) => m.groupInstanceId).sort(), ["one", "two"]);
        const owned = ownership(before, topic);
        console.log(`  generation ${before.generation}, partitions by instance: ${JSON.stringify(owned)}`);
        const oldId = before.members.find((m) => m.groupInstanceId === "one")!.memberId;

        // Stopped: a static member leaves no LeaveGroup behind, so the group keeps it (until its session timeout).
        const stoppedAtMs = Date.now();
        const stopped = await members[0].stop();
        assert.ok(stopped.success, `kcat exited ${stopped.code}: ${members[0].stderr()}`);
        const gone = await describe(c, group);
        assert.equal(gone?.generation, before.generation, "no rebalance when the static member stopped");
        assert.equal(gone?.members.length, 2);

        // Started again under the same instance id, well within the 6 s session timeout.
        members[0] = member(c.bootstrapServers, group, topic, "one");
        const after = await waitForGroup(
          c,
          group,
          "rejoined by the restarted instance",
          (d) => settled(d, topic) && !d.members.some((m) => m.memberId === oldId),
        );
        assert.equal(after.generation, before.generation, "the same generation: no rebalance");
        assert.deepEqual(ownership(after, topic), owned, "each instance owns the partitions it owned");
        const port = c.kafkaPorts.get(1)!;
        const described = await describeV4(port, group);
        assert.equal(described.state, "Stable");
        assert.deepEqual(
          described.members.map((m) => [m.memberId, m.instance]).sort(),
          after.members.map((m) => [m.memberId, m.groupInstanceId]).sort(),
          "DescribeGroups v4 names each member's group instance id",
        );
        // Past the stopped process's session timeout: still the same generation (its old member id, replaced,
        // does not expire into a rebalance).
        await new Promise((r) => setTimeout(r, Math.max(0, stoppedAtMs + 6_500 - Date.now())));
        const later = await describe(c, group);
        assert.equal(later?.generation, before.generation, `still no rebalance: ${JSON.stringify(later)}`);
        assert.deepEqual(ownership(later!, topic), owned);
        // The broker's own account: one join phase, and the restarted process took the old member's place.
        const events = (await Deno.readTextFile(join(c.dir, "broker-1", "broker.log"))).split("\n")
          .filter((l) => l !== "").map((l) => JSON.parse(l)).filter((e) => e.group === group);
        const named = (event: string) => events.filter((e) => e.event === event);
        assert.equal(named("group_joined").length, 1, `one join phase: ${JSON.stringify(named("group_joined"))}`);
        assert.deepEqual(
          named("group_member_replaced").map((e) => [e.instance, e.replaced]),
          [["one", oldId]],
        );

        // Both stopped (no LeaveGroup from either), then removed by instance id at once, as an admin would
        // (kafka-consumer-groups --delete-members); the stopped process's old member id is fenced.
        await Promise.all(members.map((m) => m.stop()));
        const errors = await leaveV3(port, group, [[oldId, "one"], ["", "one"], ["", "two"], ["", "nobody"]]);
        assert.deepEqual(errors, [FENCED_INSTANCE_ID, 0, 0, UNKNOWN_MEMBER_ID]);
        const left = await describeV4(port, group);
        assert.deepEqual([left.state, left.members.length], ["Empty", 0]);
      } finally {
        for (const m of members) await m.stop();
        await c.stop();
      }
    }),
});
