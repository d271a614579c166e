/**
 * `yak cluster` with real processes: Ctrl-C typed in a terminal (a pty)
 * stops the brokers, then the zookeeper, cleanly; a second cluster names the
 * port in use (or the data root) and exits 1; a dead broker's restart
 * command is printed and works, or --restart restarts it; and children stop
 * by themselves when the parent is killed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { eventually, freePortRange, Proc, TestCluster, withDeadline, yak } from "./harness.ts";

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

Deno.test("yak cluster in a terminal: a second cluster is refused, a dead broker's restart command works, Ctrl-C stops all in order", async () => {
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
    let restarted: Proc | null = null;
    try {
      const [ready] = await cluster.waitFor(/^\[cluster\] ready: .*/, 60_000);
      // Every broker's address, for yak's tools and for Kafka clients: the first alone fails once its broker is killed.
      const every = (first: number) => [0, 1, 2].map((i) => `127\\.0\\.0\\.1:${first + i}`).join(",");
      assert.match(ready, new RegExp(`--bootstrap ${every(base + 1)} or --zookeeper`));
      assert.match(ready, new RegExp(`Kafka clients: --bootstrap-server ${every(base + 101)}\\)`));
      const produced = await yak(["produce", "--topic", "t", "--zookeeper", zk], { stdin: "a\nb\nc\n" });
      assert.equal(produced.code, 0, produced.stderr);

      // A second cluster on the same ports: exit 1 at once, naming the port and the flag.
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
        // Other ports, the same data root: the brokers refuse it, and the parent says so and exits 1.
        const otherBase = freePortRange(4);
        const sameData = await yak([
          "cluster",
          "--data",
          dir,
          "--zookeeper-port",
          String(otherBase),
          "--base-port",
          String(otherBase + 1),
          "--http-port",
          "0",
        ], { timeoutMs: 60_000 });
        assert.equal(sameData.code, 1, sameData.stdout);
        assert.match(
          sameData.stdout,
          /\[cluster\] b\d exited \(code 1\) before it started: .*in use by another process/,
        );
      } finally {
        await Deno.remove(other, { recursive: true });
      }
      assert.equal(cluster.exited, false);

      // A broker dies: the parent prints the command that restarts it, and that command works.
      const from = cluster.lines.length;
      const killed = await yak(["kill", "--broker", "2", "--data", dir]);
      assert.equal(killed.code, 0, killed.stderr);
      await cluster.waitFor(
        /^\[cluster\] broker 2 exited \(SIGKILL\); restart it in another terminal with:$/,
        10_000,
        from,
      );
      const command = (await cluster.waitFor(/^\s+yak (broker --id 2 .*)$/, 10_000, from))[1].split(" ");
      assert.ok(command.includes("--data") && command.includes(dir), command.join(" "));
      restarted = new Proc("broker-2 again", command);
      await eventually(() => inSync(zk, 2), 30_000, "broker 2 back in sync");
      await restarted.stop();
      assert.equal((await restarted.status).code, 0);
      restarted = null;

      // Ctrl-C in the terminal: only the parent gets it, and it stops the brokers, then the zookeeper.
      await cluster.write("\x03");
      const status = await cluster.status;
      assert.equal(status.code, 0, cluster.lines.slice(-20).join("\n"));
      assert.match(
        cluster.lines.join("\n"),
        /\[cluster\] stopping: brokers first, then the zookeeper[\s\S]*\[cluster\] stopped cleanly/,
      );
      await stoppedInOrder(dir, [1, 2, 3]);
      for (let p = base; p < base + 4; p++) assert.ok(portFree(p), `port ${p} still taken`);
    } finally {
      await restarted?.stop();
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
