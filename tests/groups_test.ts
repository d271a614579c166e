/**
 * Consumer groups with members, with real processes: partitions shared out
 * and taken over (a member killed, a member leaving cleanly, a member
 * joining), partitions added to a running group and to a stopped one, a
 * leader failover under a running group, and stale commits refused at the
 * protocol level. Each prints its rebalance figures.
 */
import assert from "node:assert/strict";
import { monotonicMs } from "../src/clock.ts";
import { Connection } from "../src/protocol/connection.ts";
import { decodeAssignment, encodeAssignment, encodeSubscription } from "../src/protocol/consumer_protocol.ts";
import { eventually, Proc, seqText, TestCluster, withDeadline, yak } from "./harness.ts";

const JOINED = /joined group '(\S+)' generation (\d+): (.*)$/;

/** A `yak consume --group` member process. */
function member(cluster: TestCluster, name: string, topic: string, group: string, extra: string[] = []): Proc {
  return new Proc(name, [
    "consume",
    "--topic",
    topic,
    "--group",
    group,
    "--from-beginning",
    "--session-timeout-ms",
    "2000",
    ...extra,
    ...cluster.zkFlag,
  ]);
}

/** The partitions of a member's latest join at `generation` or later, or undefined. */
function assignedAt(p: Proc, topic: string, generation: number): number[] | undefined {
  for (let i = p.lines.length - 1; i >= 0; i--) {
    const m = p.lines[i].match(JOINED);
    if (!m) continue;
    if (Number(m[2]) < generation) return undefined;
    const part = m[3].match(new RegExp(`${topic}\\[([\\d,]*)\\]`));
    return part && part[1] !== "" ? part[1].split(",").map(Number) : [];
  }
  return undefined;
}

function generationOf(p: Proc): number {
  for (let i = p.lines.length - 1; i >= 0; i--) {
    const m = p.lines[i].match(JOINED);
    if (m) return Number(m[2]);
  }
  return 0;
}

/** Waits until `procs` all report the same generation and their partitions cover 0..n-1 exactly once. */
async function waitForCover(procs: Proc[], topic: string, n: number, timeoutMs = 20_000): Promise<number> {
  let last = "";
  const start = monotonicMs();
  await eventually(
    () => {
      const gen = Math.max(...procs.map(generationOf));
      const parts = procs.map((p) => assignedAt(p, topic, gen));
      last = `generation ${gen}: ${JSON.stringify(parts)}`;
      if (parts.some((x) => x === undefined)) return false;
      const all = parts.flat() as number[];
      return all.length === n && new Set(all).size === n && all.every((p) => p >= 0 && p < n);
    },
    timeoutMs,
    `assignments covering ${n} partitions (last: ${last})`,
  );
  return monotonicMs() - start;
}

function values(p: Proc): string[] {
  return p.lines.filter((l) => /^\d+$/.test(l));
}

Deno.test("three members share six partitions; one killed, one leaving, one joining mid-stream: every record read, duplicates only from the killed member", async () => {
  await withDeadline(150_000, "group of three", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    const procs: Proc[] = [];
    try {
      const created = await yak(["topics", "--create", "gt", "--partitions", "6", ...cluster.zkFlag]);
      assert.equal(created.code, 0, created.stderr);
      const [m1, m2, m3] = ["m1", "m2", "m3"].map((n) => member(cluster, n, "gt", "g"));
      procs.push(m1, m2, m3);
      await waitForCover([m1, m2, m3], "gt", 6);
      for (const m of [m1, m2, m3]) assert.equal(assignedAt(m, "gt", generationOf(m))!.length, 2);
      const total = 300_000;
      const producer = new Proc("producer", ["produce", "--topic", "gt", ...cluster.zkFlag], { stdin: true });
      procs.push(producer);
      const figures: string[] = [];
      let m4: Proc | null = null;
      const chunk = total / 30;
      for (let i = 0; i < 30; i++) {
        await producer.write(seqText(chunk, i * chunk + 1));
        if (i === 8) {
          const at = monotonicMs();
          m1.kill("SIGKILL");
          await m1.status;
          figures.push(`after kill -9: ${Math.round(await waitForCover([m2, m3], "gt", 6) + monotonicMs() - at)} ms`);
        } else if (i === 16) {
          const at = monotonicMs();
          m2.kill("SIGTERM");
          await m2.status;
          figures.push(`after a clean leave: ${Math.round(await waitForCover([m3], "gt", 6) + monotonicMs() - at)} ms`);
        } else if (i === 22) {
          const at = monotonicMs();
          m4 = member(cluster, "m4", "gt", "g");
          procs.push(m4);
          figures.push(
            `after a join (process start included): ${
              Math.round(await waitForCover([m3, m4], "gt", 6) + monotonicMs() - at)
            } ms`,
          );
        } else await new Promise((r) => setTimeout(r, 20));
      }
      await producer.closeStdin();
      assert.equal((await producer.status).code, 0, producer.lines.join("\n"));
      const readers = [m1, m2, m3, m4!];
      await eventually(
        () => new Set(readers.flatMap(values)).size === total,
        60_000,
        `the group to read all ${total} records`,
      );
      for (const m of [m3, m4!]) m.kill("SIGTERM");
      await Promise.all([m3.status, m4!.status]);
      const counts = new Map<string, string[]>();
      for (const m of readers) for (const v of values(m)) counts.set(v, [...(counts.get(v) ?? []), m.name]);
      const dups = [...counts.entries()].filter(([, who]) => who.length > 1);
      console.log(
        `rebalance ${figures.join(", ")}; ${total} records read by ${
          readers.map((m) => `${m.name}:${values(m).length}`).join(" ")
        }; ${dups.length} read twice`,
      );
      // At least once: duplicates only for what the killed member printed after its last commit.
      for (const [v, who] of dups) assert.ok(who.includes("m1"), `${v} read twice by ${who} without a kill`);
      // A new member has nothing left.
      const rest = await yak(["consume", "--topic", "gt", "--group", "g", "--timeout-ms", "3000", ...cluster.zkFlag]);
      assert.equal(rest.stdout, "");
    } finally {
      for (const p of procs) p.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.status));
      await cluster.stop();
    }
  });
});

Deno.test("partitions added to a topic: a running group rebalances and reads them from 0; so does a group that was down", async () => {
  await withDeadline(90_000, "added partitions", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    const procs: Proc[] = [];
    try {
      assert.equal((await yak(["topics", "--create", "gp", "--partitions", "2", ...cluster.zkFlag])).code, 0);
      const seed = await yak(["produce", "--topic", "gp", ...cluster.zkFlag], { stdin: seqText(1000) });
      assert.equal(seed.code, 0, seed.stderr);
      const [a, b] = ["a", "b"].map((n) => member(cluster, n, "gp", "gpg"));
      procs.push(a, b);
      await waitForCover([a, b], "gp", 2);
      await eventually(() => values(a).length + values(b).length === 1000, 20_000, "the first 1000 records");
      const at = monotonicMs();
      assert.equal((await yak(["topics", "--alter", "gp", "--partitions", "4", ...cluster.zkFlag])).code, 0);
      const rebalanceMs = await waitForCover([a, b], "gp", 4) + monotonicMs() - at;
      for (const p of [2, 3]) {
        const res = await yak(["produce", "--topic", "gp", "--partition", String(p), ...cluster.zkFlag], {
          stdin: seqText(1000, 10_000 * p),
        });
        assert.equal(res.code, 0, res.stderr);
      }
      await eventually(() => values(a).length + values(b).length === 3000, 20_000, "the new partitions read from 0");
      // The group stops; partitions are added while it is down.
      for (const m of [a, b]) m.kill("SIGTERM");
      await Promise.all([a.status, b.status]);
      assert.equal((await yak(["topics", "--alter", "gp", "--partitions", "6", ...cluster.zkFlag])).code, 0);
      for (const p of [4, 5]) {
        const res = await yak(["produce", "--topic", "gp", "--partition", String(p), ...cluster.zkFlag], {
          stdin: seqText(1000, 10_000 * p),
        });
        assert.equal(res.code, 0, res.stderr);
      }
      const back = await yak([
        "consume",
        "--topic",
        "gp",
        "--group",
        "gpg",
        "--max-messages",
        "2000",
        "--timeout-ms",
        "10000",
        ...cluster.zkFlag,
      ]);
      assert.equal(back.code, 0, back.stderr);
      const got = back.stdout.trim().split("\n").map(Number).sort((x, y) => x - y);
      console.log(
        `rebalance after partitions were added: ${Math.round(rebalanceMs)} ms; after restart read ${got.length}`,
      );
      assert.deepEqual(got, [
        ...Array.from({ length: 1000 }, (_, i) => 40_000 + i),
        ...Array.from({ length: 1000 }, (_, i) => 50_000 + i),
      ]);
    } finally {
      for (const p of procs) p.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.status));
      await cluster.stop();
    }
  });
});

Deno.test("a leader failover under a running group: members rejoin the new leader and go on from their commits", async () => {
  await withDeadline(90_000, "group failover", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    const procs: Proc[] = [];
    try {
      assert.equal((await yak(["topics", "--create", "gf", "--partitions", "4", ...cluster.zkFlag])).code, 0);
      const [a, b] = ["a", "b"].map((n) => member(cluster, n, "gf", "gfg"));
      procs.push(a, b);
      await waitForCover([a, b], "gf", 4);
      const before = generationOf(a);
      const producer = new Proc("producer", ["produce", "--topic", "gf", ...cluster.zkFlag], { stdin: true });
      procs.push(producer);
      const total = 60_000;
      for (let i = 0; i < 20; i++) {
        await producer.write(seqText(total / 20, i * (total / 20) + 1));
        if (i === 8) {
          const lease = await cluster.lease();
          cluster.brokers.get(lease.leaderId!)!.kill("SIGKILL");
          await cluster.waitFor((l) => l.epoch > lease.epoch && l.leaderId !== null, 10_000);
        } else await new Promise((r) => setTimeout(r, 30));
      }
      await producer.closeStdin();
      assert.equal((await producer.status).code, 0, producer.lines.join("\n"));
      await eventually(
        () => new Set([...values(a), ...values(b)]).size === total,
        40_000,
        "all records after failover",
      );
      await waitForCover([a, b], "gf", 4);
      console.log(`generation ${before} -> ${generationOf(a)} across the failover`);
      assert.ok(generationOf(a) > 0);
    } finally {
      for (const p of procs) p.kill("SIGKILL");
      await Promise.all(procs.map((p) => p.status));
      await cluster.stop();
    }
  });
});

function b64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

Deno.test("commits from a stale generation or an unknown member are refused (raw frames)", async () => {
  await withDeadline(60_000, "stale commits", async () => {
    const cluster = await TestCluster.start({ brokers: 3 });
    const conns: Connection[] = [];
    try {
      // On partition 0, which the commits below name (keyless records start on a random partition).
      const seed = await yak(["produce", "--topic", "gs", "--partition", "0", ...cluster.zkFlag], {
        stdin: seqText(30),
      });
      assert.equal(seed.code, 0, seed.stderr);
      const lease = await cluster.lease();
      const open = async () => {
        const c = await Connection.open("127.0.0.1", cluster.brokerPorts.get(lease.leaderId!)!);
        conns.push(c);
        return c;
      };
      const metadata = b64(encodeSubscription(["gs"]));
      const join = async (c: Connection, memberId: string) =>
        await c.request({
          type: "join_group",
          group: "gsg",
          memberId,
          clientId: "raw",
          sessionTimeoutMs: 5000,
          protocols: [{ name: "range", metadata }],
        }, 10_000);
      const first = await open();
      const required = await join(first, "").catch((e) => e);
      assert.equal(required.code, "MEMBER_ID_REQUIRED");
      const id1 = String(required.data.memberId);
      const joined = await join(first, id1);
      assert.equal(joined.leaderId, id1);
      const gen1 = Number(joined.generation);
      const sync = await first.request({
        type: "sync_group",
        group: "gsg",
        memberId: id1,
        generation: gen1,
        assignments: [{ memberId: id1, assignment: b64(encodeAssignment({ gs: [0, 1, 2] })) }],
      }, 10_000);
      const bytes = Uint8Array.from(atob(String(sync.assignment)), (ch) => ch.charCodeAt(0));
      assert.deepEqual(decodeAssignment(bytes), { gs: [0, 1, 2] });
      const commit = (memberId: string, generation: number) =>
        first.request({ type: "commit", group: "gsg", topic: "gs", offsets: { "0": 1 }, memberId, generation }, 10_000)
          .catch((e) => e);
      assert.deepEqual((await commit(id1, gen1)).committed, { "0": 1 });
      // A second member joins: a new generation. The first member's old generation is over.
      const second = await open();
      const id2 = String((await join(second, "").catch((e) => e)).data.memberId);
      const joining = join(second, id2);
      const hb = await first.request({ type: "heartbeat", group: "gsg", memberId: id1, generation: gen1 }).catch((e) =>
        e
      );
      assert.equal(hb.code, "REBALANCE_IN_PROGRESS");
      const rejoined = join(first, id1);
      const [j1, j2] = await Promise.all([rejoined, joining]);
      assert.equal(j1.generation, j2.generation);
      assert.ok(Number(j1.generation) > gen1);
      assert.equal((await commit(id1, gen1)).code, "ILLEGAL_GENERATION");
      assert.equal((await commit("nobody", Number(j1.generation))).code, "UNKNOWN_MEMBER_ID");
      const plain = await first.request({ type: "commit", group: "gsg", topic: "gs", offsets: { "0": 2 } }).catch((
        e,
      ) => e);
      assert.equal(plain.code, "ILLEGAL_GENERATION", "a commit without a member while the group has members");
      const committed = await first.request({ type: "committed", group: "gsg", topic: "gs" });
      assert.deepEqual(committed.offsets, { "0": 1 });
    } finally {
      for (const c of conns) c.close();
      await cluster.stop();
    }
  });
});
