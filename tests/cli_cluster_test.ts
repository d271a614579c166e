/**
 * `yak cluster` with real processes: ready once the cluster takes writes;
 * Ctrl-C typed in a terminal (a pty) stops the brokers, those restarted by
 * hand too, then the zookeeper, cleanly; a second cluster names the port in
 * use, or is told a cluster runs on its data root and how to bring a broker
 * back; `yak start --broker N` and the printed command bring a dead broker
 * back, or --restart restarts it; and children stop by themselves when the
 * parent is killed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, freePortRange, leaseAt, Proc, TestCluster, withDeadline, yak } from "./harness.ts";

interface Event {
  ts: string;
  event: string;
  [k: string]: unknown;
}

async function events(path: string): Promise<Event[]> {
  return (await Deno.readTextFile(path)).split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/** Broker `id` is alive and in the in-sync set, as `yak status --json` says. */
async function inSync(zk: string, id: number): Promise<boolean> {
  const res = await yak(["status", "--json", "--zookeeper", zk, "--connect-timeout-ms", "2000"]);
  if (res.code !== 0) return false;
  const s = JSON.parse(res.stdout);
  return s.lease.isr.includes(id) &&
    s.brokers.some((b: { id: number; state: string }) => b.id === id && b.state === "alive");
}

/** Every broker of `dir` logged `stopped`, and before the zookeeper did; no pid file is left. */
async function stoppedInOrder(dir: string, brokers: number[]): Promise<void> {
  const zkStopped = (await events(join(dir, "zookeeper", "zookeeper.log"))).filter((e) => e.event === "stopped").pop();
  assert.ok(zkStopped, "the zookeeper logged 'stopped'");
  for (const id of brokers) {
    const log = await events(join(dir, `broker-${id}`, "broker.log"));
    const stopped = log.filter((e) => e.event === "stopped").pop();
    assert.ok(stopped, `broker ${id} logged 'stopped'`);
    assert.ok(stopped.ts <= zkStopped.ts, `broker ${id} stopped (${stopped.ts}) after the zookeeper (${zkStopped.ts})`);
    assert.equal(await exists(join(dir, `broker-${id}`, "broker.pid")), false, `broker ${id}'s pid file is left`);
  }
}

Deno.test("yak cluster in a terminal: ready takes writes, a second cluster is told what to do, yak start brings a broker back, Ctrl-C stops every broker of the data root", async (t) => {
  await withDeadline(180_000, "cluster in a terminal", async () => {
    const dir = await Deno.makeTempDir({ prefix: "yak-cluster-" });
    const base = freePortRange(4);
    const zk = `127.0.0.1:${base}`;
    const args = [
      "cluster",
      "--data",
      dir,
      "--zookeeper-port",
      String(base),
      "--base-port",
      String(base + 1),
      "--http-port",
      "0",
    ];
    const cluster = new Proc("cluster", args, { pty: true });
    const byHand: Proc[] = [];
    try {
      await t.step("ready: a leader holds the lease with every broker in sync, every address printed", async () => {
        const [ready] = await cluster.waitFor(/^\[cluster\] ready: .*/, 60_000);
        const lease = await leaseAt(base);
        const started = Date.now();
        const produced = await yak(["produce", "--topic", "demo", "--zookeeper", zk], { stdin: "a\nb\nc\n" });
        console.log(`first produce after the ready line: ${Date.now() - started} ms`);
        assert.equal(produced.code, 0, produced.stderr);
        assert.doesNotMatch(produced.stderr, /retrying/, "the first produce after ready waited for a leader");
        assert.notEqual(lease.leaderId, null, "no leader at the ready line");
        assert.deepEqual([...lease.isr].sort(), [1, 2, 3], "not every broker in sync at the ready line");
        // Every broker's address, for yak's tools and for Kafka clients: the first alone fails once it is killed.
        const every = (first: number) => [0, 1, 2].map((i) => `127\\.0\\.0\\.1:${first + i}`).join(",");
        assert.match(ready, new RegExp(`--bootstrap ${every(base + 1)} or --zookeeper`));
        assert.match(ready, new RegExp(`Kafka clients: --bootstrap-server ${every(base + 101)}\\)`));
      });

      await t.step(
        "a second cluster: on the same ports it names the port; on the same data root, yak start",
        async () => {
          const other = await Deno.makeTempDir({ prefix: "yak-cluster-2-" });
          try {
            const second = await yak([...args.slice(0, 1), "--data", other, ...args.slice(3)], { timeoutMs: 30_000 });
            assert.equal(second.code, 1, second.stderr);
            assert.match(
              second.stderr,
              new RegExp(
                `port ${base} \\(the zookeeper's port, --zookeeper-port\\) is in use: is another yak cluster running\\?`,
              ),
            );
          } finally {
            await Deno.remove(other, { recursive: true });
          }
          // Its own ports overlapping (broker 1's /metrics on the zookeeper's port): said so, nothing started.
          const free = freePortRange(8);
          const overlapDir = await Deno.makeTempDir({ prefix: "yak-cluster-3-" });
          const overlap = await yak([
            "cluster",
            "--data",
            overlapDir,
            "--zookeeper-port",
            String(free + 1),
            "--base-port",
            String(free + 2),
            "--http-port",
            String(free),
          ]).finally(() => Deno.remove(overlapDir, { recursive: true }));
          assert.equal(overlap.code, 1, overlap.stdout + overlap.stderr);
          assert.match(
            overlap.stderr,
            new RegExp(
              `port ${free + 1} would be both the zookeeper's port, --zookeeper-port and broker 1's metrics port, ` +
                `--http-port \\+ 1: choose`,
            ),
          );
          // What a newcomer types in a second terminal to bring a broker back: told what to type instead.
          const otherBase = freePortRange(4);
          const again = ["cluster", "--restart", "--data", dir, "--zookeeper-port", String(otherBase)];
          const sameData = await yak([...again, "--base-port", String(otherBase + 1), "--http-port", "0"]);
          assert.equal(sameData.code, 1, sameData.stdout + sameData.stderr);
          assert.match(
            sameData.stderr,
            new RegExp(
              `^yak cluster: a yak cluster already runs on ${dir} \\(pid \\d+, zookeeper ${zk}\\); ` +
                `to bring back a broker it lost: yak start --broker N --data ${dir};`,
              "m",
            ),
          );
          assert.equal(cluster.exited, false);
        },
      );

      await t.step(
        "yak consume --exit-at-end of a missing topic says so at once, with the name it may mean",
        async () => {
          const started = Date.now();
          const res = await yak(["consume", "--topic", "demoo", "--exit-at-end", "--zookeeper", zk]);
          const took = Date.now() - started;
          console.log(`yak consume --topic demoo --exit-at-end: ${took} ms`);
          assert.equal(res.code, 1, res.stderr);
          assert.match(res.stderr, /^yak consume: topic 'demoo' does not exist \(did you mean 'demo'\?\); /m);
          assert.ok(took < 3000, `it took ${took} ms`);
        },
      );

      let leader = 0;
      await t.step(
        "yak kill --leader: a consumer says the old leader is gone; yak start --broker N brings it back",
        async () => {
          const consumer = new Proc("consume", ["consume", "--topic", "demo", "--from-beginning", "--zookeeper", zk]);
          try {
            await consumer.waitFor(/^c$/, 15_000); // connected, and read to the end
            const from = cluster.lines.length;
            const killed = await yak(["kill", "--leader", "--zookeeper", zk, "--data", dir]);
            assert.equal(killed.code, 0, killed.stderr);
            const m = killed.stdout.match(/^sent SIGKILL to broker (\d+) \(pid \d+, the leader of epoch (\d+)/)!;
            leader = Number(m[1]);
            const start = `yak start --broker ${leader} --data ${dir}`;
            await cluster.waitFor(
              new RegExp(`^\\[cluster\\] broker ${leader} exited \\(SIGKILL\\); bring it back with '${start}'`),
              10_000,
              from,
            );
            // Not "cannot connect to <the dead leader>" as if it were the leader to use.
            await consumer.waitFor(
              new RegExp(
                `retrying: broker ${leader} at 127\\.0\\.0\\.1:${base + leader}, the leader of epoch ${m[2]}, ` +
                  `is unreachable \\(.*\\); no new leader is known yet$`,
              ),
              10_000,
            );
          } finally {
            await consumer.stop();
          }
          const started = Date.now();
          const back = await yak(["start", "--broker", String(leader), "--data", dir]);
          console.log(`yak start --broker ${leader}: ${Date.now() - started} ms`);
          assert.equal(back.code, 0, back.stderr);
          assert.match(
            back.stdout,
            new RegExp(`^broker ${leader} is back \\(pid \\d+\\) and in the in-sync set$`, "m"),
          );
          assert.ok(await inSync(zk, leader), `broker ${leader} is not in sync after yak start`);
          const twice = await yak(["start", "--broker", String(leader), "--data", dir]);
          assert.equal(twice.code, 1);
          assert.match(twice.stderr, new RegExp(`broker ${leader} is running \\(pid \\d+\\); nothing to start`));
        },
      );

      await t.step("a broker restarted by hand stops with Ctrl-C; no warning with a console tab open", async () => {
        const id = leader === 3 ? 2 : 3;
        const from = cluster.lines.length;
        const killed = await yak(["kill", "--broker", String(id), "--data", dir]);
        assert.equal(killed.code, 0, killed.stderr);
        const command = (await cluster.waitFor(new RegExp(`^\\s+yak (broker --id ${id} .*)$`), 10_000, from))[1];
        const restarted = new Proc(`broker-${id} by hand`, command.split(" "));
        byHand.push(restarted);
        await eventually(() => inSync(zk, id), 30_000, `broker ${id} back in sync`);
        // A console tab: the zookeeper's event stream, open while the cluster stops.
        const url = (await cluster.waitFor(/^\[zk\] console on (http:\/\/\S+)$/, 5000))[1];
        const events = await fetch(new URL("/api/events", url));
        const reader = events.body!.getReader();
        await reader.read();
        try {
          await cluster.write("\x03");
          const status = await cluster.status;
          assert.equal(status.code, 0, cluster.lines.slice(-20).join("\n"));
        } finally {
          await reader.cancel().catch(() => {});
        }
        const out = cluster.lines.join("\n");
        assert.match(
          out,
          new RegExp(`\\[cluster\\] also stopping broker ${id} \\(pid ${restarted.pid}\\), started by hand`),
        );
        assert.match(out, /\[cluster\] stopping: brokers first, then the zookeeper[\s\S]*\[cluster\] stopped cleanly/);
        assert.equal((await restarted.status).code, 0, restarted.lines.slice(-5).join("\n"));
        await stoppedInOrder(dir, [1, 2, 3]);
        for (let p = base; p < base + 4; p++) assert.ok(portFree(p), `port ${p} still taken`);
        assert.doesNotMatch(cluster.text, /unstable-no-legacy-abort|request\.signal/, "Deno's warning on Ctrl-C");
        assert.doesNotMatch(cluster.text, /=undefined/, "an undefined field in a log line");
      });

      await t.step(
        "a broker of the data root left running: its port is named with its pid and how to stop it",
        async () => {
          const left = new Proc("broker-1 left", [
            "broker",
            "--id",
            "1",
            "--port",
            String(base + 1),
            "--zookeeper",
            zk,
            "--data",
            dir,
          ]);
          byHand.push(left);
          await left.waitFor(/^broker 1 listening on /, 15_000);
          const refused = await yak(args);
          assert.equal(refused.code, 1, refused.stdout + refused.stderr);
          assert.match(
            refused.stderr,
            new RegExp(
              `port ${base + 1} \\(broker 1's port, --base-port \\+ 0\\) is in use by broker 1 of ${dir} ` +
                `\\(pid ${left.pid}\\), still running: stop it with 'yak kill --broker 1 --data ${dir}'`,
            ),
          );
          const killed = await yak(["kill", "--broker", "1", "--data", dir]);
          assert.equal(killed.code, 0, killed.stderr);
          await left.status;
        },
      );
    } finally {
      for (const p of byHand) await p.stop();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("yak cluster --restart brings a killed leader back; a killed parent's children stop by themselves", async () => {
  await withDeadline(180_000, "cluster --restart", async () => {
    const dir = await Deno.makeTempDir({ prefix: "yak-cluster-" });
    const base = freePortRange(4);
    const zk = `127.0.0.1:${base}`;
    const cluster = new Proc("cluster", [
      "cluster",
      "--restart",
      "--data",
      dir,
      "--zookeeper-port",
      String(base),
      "--base-port",
      String(base + 1),
      "--http-port",
      "0",
    ]);
    try {
      await cluster.waitFor(/^\[cluster\] ready: /, 60_000);
      await eventually(async () => (await Promise.all([1, 2, 3].map((id) => inSync(zk, id)))).every((x) => x), 30_000);
      const killed = await yak(["kill", "--leader", "--zookeeper", zk, "--data", dir]);
      assert.equal(killed.code, 0, killed.stderr);
      const id = Number(killed.stdout.match(/^sent SIGKILL to broker (\d+)/)![1]);
      await cluster.waitFor(
        new RegExp(`^\\[cluster\\] broker ${id} exited \\(SIGKILL\\); restarting it in 2 s$`),
        10_000,
      );
      await cluster.waitFor(new RegExp(`^\\[cluster\\] broker ${id} restarted$`), 10_000);
      await eventually(() => inSync(zk, id), 30_000, `broker ${id} back in sync`);

      // The zookeeper is restarted too (before, the cluster stopped when it died) and the cluster goes on.
      const zkLog = join(dir, "zookeeper", "zookeeper.log");
      const zkPid = Number((await events(zkLog)).findLast((e) => e.event === "started")!.pid);
      Deno.kill(zkPid, "SIGKILL");
      await cluster.waitFor(/^\[cluster\] the zookeeper exited \(SIGKILL\); restarting it in 2 s$/, 10_000);
      await cluster.waitFor(/^\[cluster\] the zookeeper restarted$/, 10_000);
      const after = await yak(["produce", "--topic", "after-zk", "--message", "still here", "--zookeeper", zk]);
      assert.equal(after.code, 0, after.stderr);
      assert.equal(cluster.exited, false, "the cluster goes on");

      // The parent dies without a word: its children see their stdin close and stop cleanly.
      cluster.kill("SIGKILL");
      await cluster.status;
      await eventually(() => [0, 1, 2, 3].every((i) => portFree(base + i)), 30_000, "every port free again");
      // A broker frees its ports before it logs 'stopped' and removes its pid file: wait for those too.
      for (const b of [1, 2, 3]) {
        await eventually(
          async () =>
            (await events(join(dir, `broker-${b}`, "broker.log"))).some((e) => e.event === "stopped") &&
            !(await exists(join(dir, `broker-${b}`, "broker.pid"))),
          10_000,
          `broker ${b} logged 'stopped' and removed its pid file`,
        );
      }
    } finally {
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("a broker or zookeeper on a port in use names the port and the flag", async () => {
  await withDeadline(60_000, "port in use", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      const broker = await yak([
        "broker",
        "--id",
        "5",
        "--port",
        String(cluster.brokerPorts.get(1)),
        "--data",
        cluster.dir,
      ]);
      assert.equal(broker.code, 1);
      assert.match(
        broker.stderr,
        new RegExp(
          `^yak broker: cannot listen on 127\\.0\\.0\\.1:${
            cluster.brokerPorts.get(1)
          }: another process listens on port \\d+; pick another port with --port$`,
          "m",
        ),
      );
      const zk = await yak(["zookeeper", "--port", String(cluster.zkPort), "--data", cluster.dir]);
      assert.equal(zk.code, 1);
      assert.match(zk.stderr, /another process listens on port \d+; pick another port with --port/);
    } finally {
      await cluster.stop();
    }
  });
});
