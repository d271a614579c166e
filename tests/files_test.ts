/**
 * yak's own files on a machine shared with other users (issue 20 §6): a
 * link planted at a pid or log path never sends a write into its target,
 * the data is readable by its owner alone (or the owner's group with
 * --shared-files), and a data root that belongs to another user is refused.
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { freePortRange, skipWithout, TestCluster, yak } from "./harness.ts";

const VICTIM_TEXT = "a file of the user's that yak must never write\n";

/** A temp directory with a victim file in it, outside the data root. */
async function victimFile(): Promise<{ base: string; victim: string }> {
  const base = await Deno.makeTempDir({ prefix: "yak-files-" });
  const victim = join(base, "victim.txt");
  await Deno.writeTextFile(victim, VICTIM_TEXT);
  return { base, victim };
}

/** Every directory and file under `root` (not `root` itself) with its permission bits. */
async function modesUnder(root: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      out.set(relative(root, path) + (e.isDirectory ? "/" : ""), (await Deno.lstat(path)).mode! & 0o777);
      if (e.isDirectory) await walk(path);
    }
  };
  await walk(root);
  return out;
}

/** The entries of `modes` whose mode is not what a directory or a file should have. */
function wrongModes(modes: Map<string, number>, dir: number, file: number): string[] {
  return [...modes].filter(([path, mode]) => mode !== (path.endsWith("/") ? dir : file))
    .map(([path, mode]) => `${path} ${mode.toString(8)}`);
}

Deno.test("a link planted at broker.pid: the broker replaces it with its pid file, the target is unchanged", async () => {
  const { base, victim } = await victimFile();
  const data = join(base, "data");
  await Deno.mkdir(join(data, "broker-1"), { recursive: true });
  await Deno.symlink(victim, join(data, "broker-1", "broker.pid"));
  const cluster = await TestCluster.start({ brokers: 1, dir: data });
  try {
    const pidFile = join(data, "broker-1", "broker.pid");
    assert.equal(await Deno.readTextFile(victim), VICTIM_TEXT);
    const info = await Deno.lstat(pidFile);
    assert.ok(info.isFile && !info.isSymlink, "broker.pid is a regular file");
    assert.equal((await Deno.readTextFile(pidFile)).trim(), String(cluster.brokers.get(1)!.pid));
  } finally {
    await cluster.stop();
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a link planted at broker.log or zookeeper.log: the process refuses to start, naming it; the target is unchanged", async () => {
  const { base, victim } = await victimFile();
  const data = join(base, "data");
  const brokerLog = join(data, "broker-1", "broker.log");
  const zkLog = join(data, "zookeeper", "zookeeper.log");
  await Deno.mkdir(join(data, "broker-1"), { recursive: true });
  await Deno.mkdir(join(data, "zookeeper"), { recursive: true });
  await Deno.symlink(victim, brokerLog);
  await Deno.symlink(victim, zkLog);
  try {
    // No zookeeper is needed to refuse; a broker that did start would be killed at the timeout.
    const [broker, zk] = await Promise.all([
      yak(["broker", "--id", "1", "--port", "0", "--kafka-port", "-1", "--zookeeper", "127.0.0.1:1", "--data", data], {
        timeoutMs: 8000,
      }),
      yak(["zookeeper", "--port", "0", "--data", data], { timeoutMs: 8000 }),
    ]);
    assert.equal(await Deno.readTextFile(victim), VICTIM_TEXT);
    assert.equal(broker.code, 1, broker.stdout + broker.stderr);
    assert.match(
      broker.stderr,
      new RegExp(`^yak broker: ${brokerLog} is a symbolic link to ${victim}; .*remove the link`),
    );
    assert.equal(broker.stdout, "", "it never listened");
    assert.equal(zk.code, 1, zk.stdout + zk.stderr);
    assert.match(zk.stderr, new RegExp(`^yak zookeeper: ${zkLog} is a symbolic link to ${victim}; .*remove the link`));
    assert.ok((await Deno.lstat(join(data, "broker-1", "broker.pid")).catch(() => null)) === null, "no pid file");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("modes: after a record is written every directory is 0700 and every file 0600 (0750/0640 with --shared-files)", async (t) => {
  if (Deno.build.os === "windows") return;
  const base = await Deno.makeTempDir({ prefix: "yak-files-" });
  try {
    await t.step("by default, the owner's alone, and an older yak's 0755 broker directory is closed", async () => {
      const data = join(base, "private");
      // As an older yak left it, under the usual umask 022.
      await Deno.mkdir(join(data, "broker-1"), { recursive: true, mode: 0o755 });
      await Deno.chmod(join(data, "broker-1"), 0o755);
      const cluster = await TestCluster.start({ brokers: 1, dir: data });
      try {
        const produced = await yak(["produce", "--topic", "t", "--message", "secret", ...cluster.zkFlag]);
        assert.equal(produced.code, 0, produced.stderr);
        const modes = await modesUnder(data);
        assert.ok(modes.has("broker-1/topics/t/0/00000000000000000000.jsonl"), [...modes.keys()].join("\n"));
        assert.ok(modes.has("broker-1/topics/t/0/00000000000000000000.index"));
        assert.ok(modes.has("zookeeper/leader.lease") && modes.has("broker-1/broker.pid"));
        // A umask takes bits away from any mode a program asks for (the usual 022 takes none of these).
        const mask = Deno.umask();
        assert.deepEqual(wrongModes(modes, 0o700 & ~mask, 0o600 & ~mask), []);
      } finally {
        await cluster.stop();
      }
    });
    await t.step("--shared-files: the owner's group may read", async () => {
      const data = join(base, "shared");
      const cluster = await TestCluster.start({ brokers: 1, dir: data, serverArgs: ["--shared-files"] });
      try {
        const produced = await yak(["produce", "--topic", "t", "--message", "shared", ...cluster.zkFlag]);
        assert.equal(produced.code, 0, produced.stderr);
        const modes = await modesUnder(data);
        assert.ok(modes.has("broker-1/topics/t/0/00000000000000000000.jsonl"), [...modes.keys()].join("\n"));
        const mask = Deno.umask();
        assert.deepEqual(wrongModes(modes, 0o750 & ~mask, 0o640 & ~mask), []);
        assert.equal((await Deno.stat(data)).mode! & 0o777, 0o750 & ~mask, "the data root yak created");
      } finally {
        await cluster.stop();
      }
    });
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test({
  name: "a data root (or broker directory) that belongs to another user is refused by broker, zookeeper and cluster",
  ignore: skipWithout(Deno.uid() === 0 ? null : "root, to give a directory to another user (chown)"),
  async fn() {
    const { base, victim } = await victimFile();
    const foreign = join(base, "foreign");
    const mixed = join(base, "mixed");
    await Deno.mkdir(foreign);
    await Deno.chown(foreign, 65534, 65534);
    await Deno.mkdir(join(mixed, "broker-1"), { recursive: true });
    await Deno.chown(join(mixed, "broker-1"), 65534, 65534);
    // What the other user could plant: a link that points the broker's pid file at this user's file.
    await Deno.symlink(victim, join(mixed, "broker-1", "broker.pid"));
    const port = freePortRange(2);
    try {
      const broker = (data: string) =>
        yak(
          ["broker", "--id", "1", "--port", "0", "--kafka-port", "-1", "--zookeeper", "127.0.0.1:1", "--data", data],
          {
            timeoutMs: 8000,
          },
        );
      const [b1, zk, cluster, b2] = await Promise.all([
        broker(foreign),
        yak(["zookeeper", "--port", "0", "--data", foreign], { timeoutMs: 8000 }),
        yak([
          "cluster",
          "--brokers",
          "1",
          "--zookeeper-port",
          String(port),
          "--base-port",
          String(port + 1),
          "--http-port",
          "0",
          "--data",
          foreign,
        ], { timeoutMs: 8000 }),
        broker(mixed),
      ]);
      const owned = (what: string, dir: string) =>
        new RegExp(`${what} ${dir} belongs to uid 65534, not to this process's uid 0`);
      for (const [name, res] of [["broker", b1], ["zookeeper", zk], ["cluster", cluster]] as const) {
        assert.equal(res.code, 1, `${name}: ${res.stdout}${res.stderr}`);
        assert.match(res.stderr, new RegExp(`^yak ${name}: ${owned("the data root", foreign).source}`));
        assert.equal(res.stdout, "", `${name} started nothing`);
      }
      assert.equal(b2.code, 1, b2.stdout + b2.stderr);
      assert.match(b2.stderr, owned("the broker's data directory", join(mixed, "broker-1")));
      assert.deepEqual(await Array.fromAsync(Deno.readDir(foreign)), [], "nothing was created in the foreign root");
      assert.equal(await Deno.readTextFile(victim), VICTIM_TEXT);
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});
