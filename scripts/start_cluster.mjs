/**
 * startCluster for Node (node:test, jest, mocha, ... with kafkajs or any
 * Kafka client): runs scripts/start_cluster.ts in a `deno run` child process
 * and resolves with the cluster's addresses once it is ready. `stop()` ends
 * it and removes its temp directory; a Node process that exits without
 * calling it closes the child's stdin, which stops it too.
 *
 * Deno is found as ./yak finds it: $YAK_DENO, this checkout's .tools/, the
 * one remembered in .deno-path, `deno` on PATH, else `npx -y deno@2.9.6`.
 *
 * @example
 * import { startCluster } from "./scripts/start_cluster.mjs";
 * const cluster = await startCluster({ brokers: 3, topics: ["orders"] });
 * // new Kafka({ brokers: cluster.kafkaBootstrap.split(",") }) ...
 * await cluster.stop();
 *
 * @module
 */
import { spawn } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = dirname(HERE);
const PERMISSIONS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys=uid"];
/** How long stop() waits for the child to stop the cluster before it kills it. */
const STOP_GRACE_MS = 10_000;

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The command that runs Deno, as the `yak` launcher finds it. */
function denoCommand() {
  if (process.env.YAK_DENO) return [process.env.YAK_DENO];
  const tools = join(REPO, ".tools", "node_modules", ".bin", "deno");
  if (executable(tools)) return [tools];
  const remembered = join(REPO, ".deno-path");
  if (existsSync(remembered)) {
    const path = readFileSync(remembered, "utf8").trim();
    if (executable(path)) return [path];
  }
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && executable(join(dir, "deno"))) return [join(dir, "deno")];
  }
  return ["npx", "-y", "deno@2.9.6"];
}

/**
 * Starts a yak cluster (options as mod.ts's startCluster takes them:
 * brokers, partitions, topics, brokerFlags, console, ...) and resolves with
 * `{ bootstrap, kafkaBootstrap, zookeeper, dataDir, consoleUrl, readyMs, stop() }`.
 */
export function startCluster(options = {}) {
  const [command, ...pre] = denoCommand();
  const script = join(HERE, "start_cluster.ts");
  const args = [...pre, "run", "--quiet", ...PERMISSIONS, script, "--options", JSON.stringify(options)];
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal)));
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.once("error", (err) => reject(new Error(`startCluster: cannot run ${command}: ${err.message}`)));
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const end = out.indexOf("\n");
      if (end === -1) return;
      child.stdout.removeAllListeners("data");
      // From here a forgotten stop() does not keep Node alive; its exit closes the child's stdin.
      for (const handle of [child, child.stdin, child.stdout, child.stderr]) handle.unref?.();
      resolve({ ...JSON.parse(out.slice(0, end)), stop: () => stop(child, exited) });
    });
    exited.then((how) =>
      reject(new Error(`startCluster: the cluster process ended (${how}) before it was ready\n${stderr}`))
    );
  });
}

/** Asks the child to stop (its stdin ends) and waits; kills it if it takes too long. */
async function stop(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.stdin.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
