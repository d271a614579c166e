/**
 * yak's own files on a machine shared with other users (issue 20 §6): a
 * link planted at a pid or log path never sends a write into its target.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { TestCluster, yak } from "./harness.ts";

const VICTIM_TEXT = "a file of the user's that yak must never write\n";

/** A temp directory with a victim file in it, outside the data root. */
async function victimFile(): Promise<{ base: string; victim: string }> {
  const base = await Deno.makeTempDir({ prefix: "yak-files-" });
  const victim = join(base, "victim.txt");
  await Deno.writeTextFile(victim, VICTIM_TEXT);
  return { base, victim };
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
