/**
 * The bench's yardstick (issue 24): Redis Streams' XADD on this machine, in
 * the same run as yak's produce. A `redis-server` with an append-only file
 * synced every second (its durable setting closest to a log) listens on a
 * free loopback port in the bench's temp dir, and `redis-benchmark -c 1
 * -P 1000 -n N XADD bench * f <value>` appends N entries of the bench's
 * record size from one pipelining client, as the issue measured it. Left out
 * (null) when Redis is not installed (`apt-get install redis-server
 * redis-tools`).
 *
 * @module
 */
import { join } from "node:path";
import { freePortRange } from "../tests/harness.ts";

/** What one XADD run measured. */
export interface RedisRun {
  recordsPerSec: number;
  /** The command, as printed under the table. */
  command: string;
}

/** Whether a program runs here (`--version` exits 0). */
function installed(program: string): boolean {
  try {
    return new Deno.Command(program, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/** Whether redis-server and redis-benchmark are both installed. */
export function haveRedis(): boolean {
  return installed("redis-server") && installed("redis-benchmark");
}

/** Waits until something accepts connections on the port (redis-server starting), or throws after `ms`. */
async function untilListening(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server did not listen on ${port} within ${ms} ms: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * Runs redis-server in `dir` and `records` XADDs of `size`-byte values into
 * it; the server is stopped and its files removed before this returns.
 */
export async function redisRun(dir: string, records: number, size: number): Promise<RedisRun> {
  const data = join(dir, "redis");
  await Deno.mkdir(data, { recursive: true });
  const port = freePortRange(1);
  const server = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      data,
      "--appendonly",
      "yes",
      "--appendfsync",
      "everysec",
      "--save",
      "",
      "--daemonize",
      "no",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await untilListening(port, 10_000);
    const args = ["-p", String(port), "-c", "1", "-P", "1000", "-n", String(records), "-q"];
    const xadd = ["XADD", "bench", "*", "f", "x".repeat(size)];
    const out = await new Deno.Command("redis-benchmark", {
      args: [...args, ...xadd],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const text = new TextDecoder().decode(out.stdout);
    // -q prints progress lines ending in \r and then "XADD ...: N requests per second, p50=...".
    const m = /([\d.]+) requests per second/.exec(text.slice(text.lastIndexOf("XADD")));
    if (!out.success || !m) {
      throw new Error(
        `redis-benchmark exited ${out.code}: ${text.slice(-300)} ${new TextDecoder().decode(out.stderr)}`,
      );
    }
    return {
      recordsPerSec: Number(m[1]),
      command: `redis-benchmark -c 1 -P 1000 -n ${records} XADD bench * f <${size} bytes> ` +
        "(redis-server --appendonly yes --appendfsync everysec)",
    };
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await Deno.remove(data, { recursive: true }).catch(() => {});
  }
}
