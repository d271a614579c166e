/**
 * `startCluster` (mod.ts) as a process, for test code that is not Deno's:
 * scripts/start_cluster.mjs runs it from Node. It prints one JSON line once
 * the cluster is ready (`bootstrap`, `kafkaBootstrap`, `zookeeper`,
 * `dataDir`, `consoleUrl`, `readyMs`), and stops the cluster (removing its
 * temp directory) when stdin ends or on SIGINT/SIGTERM.
 *
 * ```sh
 * deno run --allow-net --allow-read --allow-write --allow-env --allow-sys=uid scripts/start_cluster.ts \
 *   --options '{"brokers":3,"topics":["orders"]}'
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { startCluster, type StartClusterOptions } from "../mod.ts";

/** The options, from `--options JSON`; a clear error for anything else. */
function optionsOf(args: string[]): StartClusterOptions {
  const { values } = parseArgs({ args, options: { options: { type: "string" } }, strict: true });
  if (values.options === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(values.options);
  } catch (err) {
    throw new Error(`--options must be JSON: ${err instanceof Error ? err.message : err}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new Error("--options must be a JSON object of startCluster's options");
  }
  return parsed as StartClusterOptions;
}

/** Resolves when stdin ends (the parent closed it, or died), or on SIGINT/SIGTERM. */
function stopRequested(): Promise<void> {
  return new Promise((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
    (async () => {
      const buf = new Uint8Array(256);
      try {
        while ((await Deno.stdin.read(buf)) !== null) { /* the parent writes nothing */ }
      } catch { /* closed */ }
      resolve();
    })();
  });
}

if (import.meta.main) {
  let cluster;
  try {
    cluster = await startCluster(optionsOf(Deno.args));
  } catch (err) {
    console.error(`start_cluster: ${err instanceof Error ? err.message : err}`);
    Deno.exit(1);
  }
  const { bootstrap, kafkaBootstrap, zookeeper, dataDir, consoleUrl, readyMs } = cluster;
  console.log(JSON.stringify({ bootstrap, kafkaBootstrap, zookeeper, dataDir, consoleUrl, readyMs }));
  await stopRequested();
  await cluster.stop();
  // The stdin reader may still be pending (a signal came first).
  Deno.exit(0);
}
