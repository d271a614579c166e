/**
 * One broker per data directory, and `yak kill` signals only the broker its
 * pid file names: a second `yak broker --id 1` on broker 1's directory
 * refuses to start and touches nothing there; a pid file whose pid is gone,
 * or now belongs to another process, is reported as stale and nothing is
 * signalled.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { seqText, TestCluster, withDeadline, yak } from "./harness.ts";

/** A process of our own that is not a broker: `sleep 60`. */
function spawnSleep(): Deno.ChildProcess {
  return new Deno.Command("sleep", { args: ["60"], stdin: "null", stdout: "null", stderr: "null" }).spawn();
}

Deno.test("a second broker on broker 1's data directory refuses to start; yak kill refuses stale pid files", async (t) => {
  const cluster = await TestCluster.start();
  try {
    const broker1 = cluster.brokers.get(1)!;
    const dir1 = join(cluster.dir, "broker-1");
    const pidFile = join(dir1, "broker.pid");
    const logFile = join(dir1, "broker.log");

    await t.step(
      "the second process exits non-zero naming the holder's pid, and leaves broker 1's files alone",
      async () => {
        const pidBefore = await Deno.readTextFile(pidFile);
        const pidMtime = (await Deno.stat(pidFile)).mtime?.getTime();
        assert.equal(pidBefore.trim(), String(broker1.pid));
        const second = await yak(
          ["broker", "--id", "1", "--port", "0", "--data", cluster.dir, ...cluster.zkFlag],
          { timeoutMs: 30_000 },
        );
        assert.notEqual(second.code, 0, second.stdout + second.stderr);
        const errLines = second.stderr.trimEnd().split("\n");
        assert.equal(errLines.length, 1, second.stderr);
        assert.match(errLines[0], new RegExp(`^yak broker: .*broker-1 is in use .*\\(pid ${broker1.pid},`));
        assert.equal(second.stdout, "", "it never listened");
        assert.equal(await Deno.readTextFile(pidFile), pidBefore);
        assert.equal((await Deno.stat(pidFile)).mtime?.getTime(), pidMtime);
        // Its operation log would say `started` or `start_failed`; broker 1 wrote one `started`.
        const events = (await Deno.readTextFile(logFile)).split("\n").filter((l) => /"event":"start/.test(l));
        assert.equal(events.length, 1, events.join("\n"));
        assert.match(events[0], /"event":"started"/);
        assert.match(events[0], new RegExp(`"pid":${broker1.pid}\\b`));
      },
    );

    await t.step("broker 1 keeps working: it takes part in acks=all writes and serves reads", async () => {
      assert.equal(broker1.exited, false);
      const lease = await cluster.waitFor((l) => l.isr.includes(1) && l.leaderId !== null);
      assert.ok(lease.isr.includes(1));
      const produced = await yak(["produce", "--topic", "after", ...cluster.zkFlag], { stdin: seqText(200) });
      assert.equal(produced.code, 0, produced.stderr);
      const read = await yak([
        "consume",
        "--topic",
        "after",
        "--from-beginning",
        "--max-messages",
        "200",
        "--timeout-ms",
        "20000",
        "--bootstrap",
        `127.0.0.1:${cluster.brokerPorts.get(1)}`,
      ]);
      assert.equal(read.code, 0, read.stderr);
      assert.deepEqual(
        read.stdout.trimEnd().split("\n").map(Number).sort((a, b) => a - b),
        Array.from({ length: 200 }, (_, i) => i + 1),
      );
    });

    await t.step("a pid file naming an unrelated process (sleep) is refused, and the process lives on", async () => {
      const sleep = spawnSleep();
      try {
        await Deno.mkdir(join(cluster.dir, "broker-7"), { recursive: true });
        await Deno.writeTextFile(join(cluster.dir, "broker-7", "broker.pid"), `${sleep.pid}\n`);
        const res = await yak(["kill", "--broker", "7", "--data", cluster.dir]);
        assert.equal(res.code, 1, res.stdout);
        assert.match(
          res.stderr,
          new RegExp(`stale: pid ${sleep.pid} is not broker 7 .* but \`(/usr)?(/bin/)?sleep 60\``),
        );
        assert.match(res.stderr, /nothing was signalled/);
        assert.equal(res.stdout, "");
      } finally {
        // Still alive: it dies now of our SIGTERM, not of a SIGKILL from yak kill.
        try {
          sleep.kill("SIGTERM");
        } catch { /* already gone: the assertion below says how */ }
        const status = await withDeadline(10_000, "sleep exits", () => sleep.status);
        assert.equal(status.signal, "SIGTERM", "sleep was still running until we stopped it");
      }
    });

    await t.step("a pid file naming another broker (broker 1's pid under broker 8) is refused", async () => {
      await Deno.mkdir(join(cluster.dir, "broker-8"), { recursive: true });
      await Deno.writeTextFile(join(cluster.dir, "broker-8", "broker.pid"), `${broker1.pid}\n`);
      const res = await yak(["kill", "--broker", "8", "--data", cluster.dir]);
      assert.equal(res.code, 1, res.stdout);
      assert.match(res.stderr, new RegExp(`pid ${broker1.pid} is not broker 8 .*another broker id`));
      assert.equal(broker1.exited, false);
    });

    await t.step("the real broker is killed; then its leftover pid file is reported as stale", async () => {
      const broker3 = cluster.brokers.get(3)!;
      const killed = await yak(["kill", "--broker", "3", "--data", cluster.dir]);
      assert.equal(killed.code, 0, killed.stderr);
      assert.match(killed.stdout, new RegExp(`sent SIGKILL to broker 3 \\(pid ${broker3.pid}; data ${cluster.dir}\\)`));
      await withDeadline(10_000, "broker 3 dies", () => broker3.status);
      // kill -9 leaves the pid file behind.
      assert.equal((await Deno.readTextFile(join(cluster.dir, "broker-3", "broker.pid"))).trim(), String(broker3.pid));
      const again = await yak(["kill", "--broker", "3", "--data", cluster.dir]);
      assert.equal(again.code, 1, again.stdout);
      assert.match(
        again.stderr,
        new RegExp(`broker 3 is not running: .* is stale \\(pid ${broker3.pid} has exited\\)`),
      );
      // The OS dropped the dead broker's lock: it starts again on its directory.
      const restarted = await cluster.startBroker(3);
      await cluster.waitFor((l) => l.isr.length === 3, 20_000);
      assert.equal(
        (await Deno.readTextFile(join(cluster.dir, "broker-3", "broker.pid"))).trim(),
        String(restarted.pid),
      );
    });
  } finally {
    await cluster.stop();
  }
});
