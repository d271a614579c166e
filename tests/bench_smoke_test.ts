/**
 * The benchmark runs end to end (`scripts/bench.ts --quick`) and writes every
 * figure. Only that figures exist is checked, never their values against the
 * targets: those depend on the machine and on what else runs on it.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const BENCH = fileURLToPath(new URL("../scripts/bench.ts", import.meta.url));
const PERMS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-run"];
const TIMEOUT_MS = 180_000;

Deno.test("bench --quick runs a real cluster end to end and writes every figure as JSON", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-bench-smoke-" });
  const out = `${dir}/bench.json`;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...PERMS, BENCH, "--quick", "--out", out],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // SIGTERM first: the bench then stops its cluster and removes its directory.
    let timedOut = false;
    let hardKill: ReturnType<typeof setTimeout> | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGTERM");
      } catch { /* exited */ }
      hardKill = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }, 15_000);
    }, TIMEOUT_MS);
    const res = await child.output();
    clearTimeout(timer);
    clearTimeout(hardKill);
    const text = new TextDecoder().decode(res.stdout) + new TextDecoder().decode(res.stderr);
    assert.ok(!timedOut, `bench --quick did not finish within ${TIMEOUT_MS} ms:\n${text}`);
    assert.equal(res.code, 0, text);

    const report = JSON.parse(await Deno.readTextFile(out));
    const positive = (v: unknown, what: string) =>
      assert.ok(typeof v === "number" && Number.isFinite(v) && v > 0, `${what} is ${v}\n${text}`);
    positive(report.produce.acksAll.recordsPerSec, "produce acks=all records/s");
    positive(report.produce.acks1.recordsPerSec, "produce acks=1 records/s");
    positive(report.consume.recordsPerSec, "consume records/s");
    // The Redis yardstick runs wherever Redis is installed; CI installs it, so there it must be in the report.
    if (report.redis !== null || Deno.env.get("CI") === "true") {
      positive(report.redis?.recordsPerSec, "Redis Streams XADD records/s");
    }
    positive(report.latency.p50Ms, "latency p50");
    positive(report.latency.p99Ms, "latency p99");
    positive(report.failover.firstAckMedianMs, "failover to first ack, median");
    positive(report.failover.leaseMedianMs, "failover to new lease epoch, median");
    assert.deepEqual(Object.keys(report.rss).sort(), ["1", "2", "3"], JSON.stringify(report.rss));
    for (const [id, bytes] of Object.entries(report.rss)) positive(bytes, `broker ${id} peak RSS`);
    assert.ok(Array.isArray(report.table) && report.table.length > 0, "the table is in the JSON");
    // Every figure has the load average read when it was measured.
    for (const row of report.table) assert.ok(typeof row.load === "number", `${row.figure} has no load: ${row.load}`);
    // The table went to stdout too, the load beside each figure.
    assert.match(new TextDecoder().decode(res.stdout), /^figure\s+value\s+unit\s+load\s+target/m);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
