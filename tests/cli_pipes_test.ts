/**
 * Commands that print until stopped, and what they do when stdout's reader
 * goes away (`| head`), with real processes: each must notice the closed
 * pipe and exit 0, as `yak consume | head` does.
 */
import assert from "node:assert/strict";
import { MAIN, PERMS, TestCluster, withDeadline } from "./harness.ts";

/**
 * Runs `yak ARGS | head -LINES`: reads `lines` lines of stdout, closes the
 * read end, and returns yak's exit code and how long it took to exit after.
 */
async function head(
  args: string[],
  lines: number,
  after: () => Promise<void> = async () => {},
): Promise<{ code: number; exitMs: number; text: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMS, MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  try {
    await withDeadline(30_000, `${lines} lines of yak ${args.join(" ")}`, async () => {
      while (text.split("\n").length <= lines) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`yak ${args.join(" ")} ended after ${JSON.stringify(text)}`);
        text += value;
      }
    });
  } finally {
    await reader.cancel();
  }
  const closed = performance.now();
  await after();
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  const { code } = await child.status;
  clearTimeout(timer);
  return { code, exitMs: performance.now() - closed, text };
}

Deno.test("yak status --watch | head -1 exits 0 once head has closed the pipe (with --json too)", async () => {
  await withDeadline(90_000, "status --watch | head", async () => {
    const cluster = await TestCluster.start({ brokers: 1 });
    try {
      for (const json of [[], ["--json"]]) {
        const { code, exitMs } = await head(["status", "--watch", ...json, ...cluster.zkFlag], 1);
        console.log(`status --watch ${json.join("")} | head -1: exit ${code} ${exitMs.toFixed(0)} ms after`);
        // Before: printing every second to the closed pipe until killed (here after 10 s, 137).
        assert.equal(code, 0);
        assert.ok(exitMs < 5000, `exited ${exitMs.toFixed(0)} ms after the pipe closed`);
      }
    } finally {
      await cluster.stop();
    }
  });
});

Deno.test("yak logs --follow | head -1 exits 0 at the next entry after head has closed the pipe", async () => {
  await withDeadline(90_000, "logs --follow | head", async () => {
    const cluster = await TestCluster.start({ brokers: 2 });
    try {
      const args = ["logs", "zookeeper", "--follow", "--data", cluster.dir];
      // The next entry after the pipe closed: a broker leaves (the zookeeper logs it).
      const { code, exitMs } = await head(args, 1, () => cluster.brokers.get(2)!.stop());
      console.log(`logs zookeeper --follow | head -1: exit ${code} ${exitMs.toFixed(0)} ms after`);
      // Before: console.log dropped the closed pipe's error, and it followed until killed (here after 10 s, 137).
      assert.equal(code, 0);
      assert.ok(exitMs < 5000, `exited ${exitMs.toFixed(0)} ms after the pipe closed`);
    } finally {
      await cluster.stop();
    }
  });
});
