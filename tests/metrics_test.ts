/**
 * The HTTP side of a cluster with real processes: every broker's /metrics
 * parses as Prometheus text and its series move with a produce and a group's
 * consume; the console's /api/status is what `yak status --json` prints; and
 * neither HTTP server falls over on unknown paths, wrong methods or garbage.
 */
import assert from "node:assert/strict";
import { eventually, seqText, TestCluster, withDeadline, yak } from "./harness.ts";
import { parsePromText, sampleValue } from "./prom_text.ts";
import { http, printedUrl } from "./http_helpers.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

/**
 * Every key path in `value`, arrays' elements under `[]`: two values with the
 * same paths have the same keys at every level.
 */
function keyPaths(value: Json, at = "", out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) {
    for (const x of value) keyPaths(x, `${at}[]`, out);
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      out.add(`${at}.${k}`);
      keyPaths(v, `${at}.${k}`, out);
    }
  }
  return out;
}

/** The paths of `a` and `b` that only one of them has (empty: the same structure). */
function structureDiff(a: Json, b: Json): string[] {
  const pa = keyPaths(a);
  const pb = keyPaths(b);
  return [...[...pa].filter((p) => !pb.has(p)).map((p) => `only in the first: ${p}`)]
    .concat([...pb].filter((p) => !pa.has(p)).map((p) => `only in the second: ${p}`));
}

/**
 * The fields of a status that stay put while nothing is produced or consumed:
 * ids, states, leader, epoch, topics and partitions with their offsets, log
 * ends, groups; not ages, memory or anything counted per request.
 */
function stable(s: Json): Json {
  return {
    lease: s.lease,
    brokers: s.brokers.map((b: Json) => {
      const { lastSeenMsAgo: _age, ...rest } = b;
      return rest;
    }),
    views: s.views.map((v: Json) =>
      "error" in v ? { brokerId: v.brokerId, error: v.error } : {
        brokerId: v.brokerId,
        role: v.role,
        epoch: v.epoch,
        leader: v.leader,
        isr: v.replication?.isr ?? null,
        followers: v.replication?.followers.map((f: Json) => [f.id, f.inSync, f.logEnds]) ?? null,
        topics: v.topics,
        metadataLog: v.metadataLog,
        groups: v.groups,
        groupMembers: v.groupMembers.map((g: Json) => ({ ...g, members: g.members.map((m: Json) => m.memberId) })),
        recordsIn: v.traffic.recordsIn,
        listeners: v.listeners,
      }
    ),
  };
}

/** One view per level, by name, for messages that say where two statuses differ. */
function byLevel(s: Json) {
  const leaderView = s.views.find((v: Json) => v.brokerId === s.lease.leaderId);
  return {
    brokers: s.brokers,
    views: s.views,
    topics: leaderView?.topics ?? [],
    groups: leaderView ? { groups: leaderView.groups, groupMembers: leaderView.groupMembers } : {},
  };
}

async function scrape(url: string) {
  const res = await http(url);
  assert.equal(res.status, 200, res.body);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return parsePromText(res.body);
}

Deno.test("brokers' /metrics move with a produce and a consume; /api/status is yak status --json; bad HTTP input", async (t) => {
  await withDeadline(90_000, "metrics test", async () => {
    const cluster = await TestCluster.start({ brokerArgs: ["--http-port", "0"], zookeeperArgs: ["--http-port", "0"] });
    try {
      const leader = (await cluster.lease()).leaderId!;
      const follower = [1, 2, 3].find((id) => id !== leader)!;
      const leaderUrl = await printedUrl(cluster, leader);
      const followerUrl = await printedUrl(cluster, follower);

      await t.step("a produce of 1,000 records and a group's consume show in the leader's series", async () => {
        const before = await scrape(leaderUrl);
        assert.equal(sampleValue(before, "yak_is_leader"), 1);
        assert.equal(sampleValue(before, "yak_records_in_total", { topic: "m1" }), 0);
        const produced = await yak(["produce", "--topic", "m1", "--batch-records", "100", ...cluster.zkFlag], {
          stdin: seqText(1000),
        });
        assert.equal(produced.code, 0, produced.stderr);
        const consumed = await yak(
          [
            "consume",
            "--topic",
            "m1",
            "--group",
            "gm",
            "--from-beginning",
            "--max-messages",
            "1000",
            ...cluster.zkFlag,
          ],
          { timeoutMs: 30_000 },
        );
        assert.equal(consumed.code, 0, consumed.stderr);
        const after = await scrape(leaderUrl);
        assert.equal(sampleValue(after, "yak_records_in_total", { topic: "m1" }), 1000);
        assert.ok(sampleValue(after, "yak_bytes_in_total", { topic: "m1" }) > 1000 * 10);
        assert.ok(sampleValue(after, "yak_records_out_total", { topic: "m1" }) >= 1000, "the consumer read from it");
        const requests = sampleValue(after, "yak_produce_requests_total");
        assert.ok(requests >= 10, `${requests} produce requests for 10 batches`);
        assert.equal(sampleValue(after, "yak_produce_request_duration_seconds_count"), requests);
        assert.ok(sampleValue(after, "yak_fetch_requests_total", { kind: "follower" }) > 0);
        const ends = [0, 1, 2].map((p) => sampleValue(after, "yak_log_end_offset", { topic: "m1", partition: `${p}` }));
        assert.equal(ends.reduce((a, b) => a + b, 0), 1000);
        const lag = [0, 1, 2].map((p) =>
          sampleValue(after, "yak_group_lag_records", { group: "gm", topic: "m1", partition: `${p}` })
        );
        assert.deepEqual(lag, [0, 0, 0], "the group read everything");
        assert.equal(sampleValue(after, "yak_isr_size"), 3);
        assert.equal(sampleValue(after, "yak_under_replicated_partitions"), 0);
        assert.ok(sampleValue(after, "yak_process_resident_memory_bytes") > 1e6);
        assert.ok(sampleValue(after, "yak_leader_epoch") >= 1);
      });

      await t.step("a follower's text parses too, without the leader-only series", async () => {
        const f = await scrape(followerUrl);
        assert.equal(sampleValue(f, "yak_is_leader"), 0);
        assert.equal(f.has("yak_group_lag_records"), false);
        assert.equal(sampleValue(f, "yak_records_in_total", { topic: "m1" }), 0, "followers take no produce");
      });

      await t.step("GET /api/status is the status `yak status --json` prints", async () => {
        const consoleUrl = await printedUrl(cluster, "zookeeper");
        const api = await http(`${consoleUrl}api/status`);
        assert.equal(api.status, 200, api.body);
        assert.match(api.headers.get("content-type") ?? "", /^application\/json/);
        const cli = await yak(["status", "--json", ...cluster.zkFlag]);
        assert.equal(cli.code, 0, cli.stderr);
        const a = JSON.parse(api.body);
        const c = JSON.parse(cli.stdout);
        // The same keys at every level: brokers, each broker's view, the topics and the groups.
        for (const [level, x] of Object.entries(byLevel(a))) {
          const y = byLevel(c)[level as keyof ReturnType<typeof byLevel>];
          assert.deepEqual(structureDiff(x, y), [], `${level}: /api/status and yak status --json differ in shape`);
        }
        assert.deepEqual(structureDiff(a, c), [], "/api/status and yak status --json differ in shape");
        assert.deepEqual(Object.keys(a).sort(), ["brokers", "lease", "views"]);
        const brief = (s: { brokers: { id: number; state: string }[] }) => s.brokers.map((b) => [b.id, b.state]);
        assert.deepEqual(brief(a), [[1, "alive"], [2, "alive"], [3, "alive"]]);
        assert.deepEqual(a.views.map((v: Json) => v.brokerId), [1, 2, 3]);
        // The same values for what stays put with no load: two gathers a process start apart may still see a
        // heartbeat's log end, an in-sync change or a group's state land between them, so a few tries.
        let tries = 0;
        for (let api2 = a, cli2 = c;; tries++) {
          try {
            assert.deepEqual(stable(api2), stable(cli2));
            break;
          } catch (err) {
            if (tries >= 9) throw err;
          }
          // The console answers from a gather up to a second old: wait that out, so both are fresh.
          await new Promise((r) => setTimeout(r, 1_100));
          api2 = JSON.parse((await http(`${consoleUrl}api/status`)).body);
          const again = await yak(["status", "--json", ...cluster.zkFlag]);
          assert.equal(again.code, 0, again.stderr);
          cli2 = JSON.parse(again.stdout);
        }
        console.log(
          `/api/status and yak status --json: ${keyPaths(a).size} key paths each, the same; stable values equal` +
            ` (after ${tries + 1} gather${tries === 0 ? "" : "s"} of each)`,
        );
        const leaderView = a.views.find((v: { brokerId: number }) => v.brokerId === leader);
        assert.equal(leaderView.traffic.recordsIn, 1000);
        assert.match(leaderView.listeners.http, /^127\.0\.0\.1:\d+$/);
      });

      await t.step("a stopped broker (SIGSTOP) is paused, not dead, in /api/status and yak status", async () => {
        const consoleUrl = await printedUrl(cluster, "zookeeper");
        const stateOf = async (id: number) => {
          const api = await http(`${consoleUrl}api/status`);
          return JSON.parse(api.body).brokers.find((b: { id: number }) => b.id === id)?.state;
        };
        const proc = cluster.brokers.get(follower)!;
        proc.kill("SIGSTOP");
        try {
          await eventually(async () => await stateOf(follower) === "paused", 10_000, "paused in /api/status");
          const text = await yak(["status", ...cluster.zkFlag]);
          assert.match(text.stdout, new RegExp(`^ *${follower} +\\S+ +paused\\b`, "m"), text.stdout);
          // Both say so the same way: the state, no log end of its own, and a view that says why.
          const api = JSON.parse((await http(`${consoleUrl}api/status`)).body);
          const cli = await yak(["status", "--json", ...cluster.zkFlag]);
          assert.equal(cli.code, 0, cli.stderr);
          for (const s of [api, JSON.parse(cli.stdout)]) {
            const b = s.brokers.find((x: Json) => x.id === follower);
            assert.deepEqual([b.state, b.logEndTotalNow], ["paused", null]);
            assert.match(s.views.find((v: Json) => v.brokerId === follower).error, /^paused: /);
          }
          assert.deepEqual(structureDiff(api, JSON.parse(cli.stdout)), []);
        } finally {
          proc.kill("SIGCONT");
        }
        await eventually(async () => await stateOf(follower) === "alive", 15_000, "alive again");
      });

      await t.step("unknown paths are 404, other methods 405, HEAD answers, garbage is survived", async () => {
        const consoleUrl = await printedUrl(cluster, "zookeeper");
        for (const base of [consoleUrl, leaderUrl.replace(/metrics$/, "")]) {
          assert.equal((await http(`${base}nope`)).status, 404);
          assert.equal((await http(`${base}../../etc/passwd`)).status, 404);
          assert.equal((await http(`${base}%00`)).status, 404);
        }
        assert.equal((await http(`${leaderUrl}`, { method: "POST", body: "x" })).status, 405);
        assert.equal((await http(`${consoleUrl}api/status`, { method: "DELETE" })).status, 405);
        const head = await http(consoleUrl, { method: "HEAD" });
        assert.equal(head.status, 200);
        assert.equal(head.body, "");
        const { port } = new URL(leaderUrl);
        for (const junk of ["\x00\x01\x02garbage\r\n\r\n", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "A".repeat(70_000)]) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
          await conn.write(new TextEncoder().encode(junk)).catch(() => {});
          await conn.read(new Uint8Array(1024)).catch(() => null);
          conn.close();
        }
        await scrape(leaderUrl); // still serving
        assert.equal((await http(`${consoleUrl}api/status`)).status, 200);
      });
    } finally {
      await cluster.stop();
    }
  });
});
