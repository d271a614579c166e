/**
 * Followers scavenge V8's young generation as their ArrayBuffers grow
 * (src/broker/young_gc.ts): the rule that says when, and real brokers,
 * started with yak's own flags, that say so in their operation log and count
 * their scavenges in /metrics while records go through them (the followers,
 * not the leader).
 */
import assert from "node:assert/strict";
import { GrowthTrigger } from "../src/broker/young_gc.ts";
import { TestCluster, withDeadline, yak } from "./harness.ts";
import { parsePromText, sampleValue } from "./prom_text.ts";
import { http, printedUrl } from "./http_helpers.ts";

Deno.test("GrowthTrigger fires at each step of growth above the lowest reading since it last fired", () => {
  const t = new GrowthTrigger(100);
  const fired = [50, 120, 149, 150, 151, 249, 250, 60, 159, 160, 400, 401].map((b) => t.observe(b));
  assert.deepEqual(fired, [false, false, false, true, false, false, true, false, false, true, true, false]);
});

Deno.test("followers started with yak's flags scavenge as stored bytes reach them, and count it", async () => {
  await withDeadline(90_000, "young gc test", async () => {
    const cluster = await TestCluster.start({ brokerArgs: ["--http-port", "0"] });
    try {
      for (const proc of cluster.brokers.values()) await proc.waitFor(/ started broker=\d+ .*youngGc=on/, 10_000);
      // 200,000 records of 100 bytes: about 38 MB stored on each replica, more than two 16 MiB steps.
      const lines = Array.from({ length: 200_000 }, (_, i) => `${"x".repeat(90)}${String(i).padStart(10, "0")}`);
      const produced = await yak(["produce", "--topic", "young", "--acks", "all", ...cluster.zkFlag], {
        stdin: lines.join("\n") + "\n",
      });
      assert.equal(produced.code, 0, produced.stderr);
      const leader = (await cluster.lease()).leaderId!;
      for (const id of cluster.brokers.keys()) {
        const res = await http(await printedUrl(cluster, id));
        assert.equal(res.status, 200, res.body);
        const scavenges = sampleValue(parsePromText(res.body), "yak_young_collections_total");
        if (id === leader) assert.equal(scavenges, 0, `the leader, ${id}, started ${scavenges} scavenges`);
        else assert.ok(scavenges >= 1, `follower ${id} started ${scavenges} scavenges for ~38 MB of stored bytes`);
      }
    } finally {
      await cluster.stop();
    }
  });
});
