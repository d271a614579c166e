/**
 * Which process a broker's pid file names: `yak kill` signals it only when it
 * is that broker of that data root, and `yak cluster` finds the brokers of
 * its data root it did not start (restarted by hand) to stop them with the
 * rest, and to name the one holding a port it needs.
 *
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";
import { monotonicMs } from "../clock.ts";
import { DEFAULTS } from "../config.ts";

/** What a pid from a pid file turned out to be. */
export type Identity =
  | { kind: "broker" }
  | { kind: "gone" }
  | { kind: "other"; command: string; why?: string }
  | { kind: "unknown"; why: string };

const decoder = new TextDecoder();

/** Runs a small command and returns its stdout, or null when it fails. */
async function output(command: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "null", stdin: "null" }).output();
    return out.success ? decoder.decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/**
 * The command line of `pid` as its arguments, or null when no process has
 * that pid. Deno lets only --allow-all read another process's /proc files,
 * so this goes through `cat` (and `ps` where there is no /proc).
 */
async function commandLine(
  pid: number,
): Promise<{ args: string[]; cwd: string | null; env: Map<string, string> | null } | null | "unknown"> {
  if (Deno.build.os === "linux") {
    const text = await output("cat", [`/proc/${pid}/cmdline`]);
    if (text === null) return null;
    // A zombie (exited, not yet reaped) has an empty command line.
    const args = text.split("\0").filter((a, i, all) => a !== "" || i < all.length - 1);
    if (args.length === 0) return null;
    const [cwdText, envText] = await Promise.all([
      output("readlink", [`/proc/${pid}/cwd`]),
      output("cat", [`/proc/${pid}/environ`]),
    ]);
    // The environment it started with: YAK_DATA picks a broker's data root when --data does not.
    const env = envText === null ? null : new Map(
      envText.split("\0").filter((e) => e.includes("=")).map((e) => {
        const eq = e.indexOf("=");
        return [e.slice(0, eq), e.slice(eq + 1)] as [string, string];
      }),
    );
    return { args, cwd: cwdText?.trim() || null, env };
  }
  const ps = await output("ps", ["-ww", "-o", "args=", "-p", String(pid)]);
  if (ps === null) {
    // ps exits 1 both for "no such process" and for a missing ps: tell them apart with our own pid.
    return (await output("ps", ["-o", "pid=", "-p", String(Deno.pid)])) === null ? "unknown" : null;
  }
  return { args: ps.trim().split(/\s+/), cwd: null, env: null };
}

/** The value of `--name` in `args` (`--name V` or `--name=V`), or undefined. */
function flagValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

async function realPathOr(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch {
    return path;
  }
}

/**
 * Whether `pid` is `yak broker --id <id>` serving `dataDir`: its command
 * line names the broker subcommand and the id, and its data root, found as
 * the broker found it (`--data`, else its `YAK_DATA`, else `data`, resolved
 * against its working directory), is the same directory.
 */
export async function identify(pid: number, id: number, dataDir: string): Promise<Identity> {
  const cmd = await commandLine(pid);
  if (cmd === null) return { kind: "gone" };
  if (cmd === "unknown") return { kind: "unknown", why: "neither /proc nor ps is available" };
  // One line, and short enough to read: the start of the command line says what it is.
  const command = cmd.args.join(" ").replace(/\s+/g, " ").slice(0, 200);
  const at = cmd.args.indexOf("broker");
  if (at < 0) return { kind: "other", command };
  const args = cmd.args.slice(at + 1);
  if (Number(flagValue(args, "--id")) !== id) return { kind: "other", command, why: "another broker id" };
  const flag = flagValue(args, "--data");
  if (flag === undefined && cmd.env === null && cmd.cwd !== null) {
    // Its YAK_DATA is unreadable (another user's process): its data root cannot be told, so it is not signalled.
    return { kind: "unknown", why: `its environment (/proc/${pid}/environ) cannot be read to find its YAK_DATA` };
  }
  const theirs = flag ?? (cmd.env?.get("YAK_DATA") || undefined) ?? DEFAULTS.dataDir;
  if (cmd.cwd === null && !isAbsolute(theirs)) return { kind: "broker" }; // no way to resolve it: the id must do
  const [a, b] = await Promise.all([
    realPathOr(resolve(cmd.cwd ?? "/", theirs)),
    realPathOr(resolve(dataDir)),
  ]);
  if (a !== b) return { kind: "other", command, why: `its data directory is ${a}, not ${b}` };
  return { kind: "broker" };
}

/** A broker process of a data root, found through its pid file. */
export interface LiveBroker {
  id: number;
  pid: number;
}

/**
 * The brokers of `dataRoot` that run now: every `broker-N/broker.pid` whose
 * pid is `yak broker --id N` on that data root (a stale file, or a pid now
 * used by something else, is left out).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { liveBrokersOf } from "./broker_process.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(`${dir}/broker-1`);
 * await Deno.writeTextFile(`${dir}/broker-1/broker.pid`, `${Deno.pid}\n`); // this process is no broker
 * assert.deepEqual(await liveBrokersOf(dir), []);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function liveBrokersOf(dataRoot: string): Promise<LiveBroker[]> {
  const found: LiveBroker[] = [];
  try {
    for await (const entry of Deno.readDir(dataRoot)) {
      const id = Number(entry.name.match(/^broker-(\d+)$/)?.[1] ?? NaN);
      if (!entry.isDirectory || !Number.isSafeInteger(id)) continue;
      const pid = await pidIn(join(dataRoot, entry.name, "broker.pid"));
      if (pid !== null && (await identify(pid, id, dataRoot)).kind === "broker") found.push({ id, pid });
    }
  } catch { /* no data root yet: no brokers */ }
  return found.sort((a, b) => a.id - b.id);
}

/** The pid a pid file holds, or null (none, or not a pid). */
async function pidIn(path: string): Promise<number | null> {
  const pid = Number((await Deno.readTextFile(path).catch(() => "")).trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : null;
}

/**
 * Stops a broker this process did not start: SIGCONT (a paused one must run
 * to stop) and SIGTERM, SIGKILL after `graceMs`; resolves once it is gone.
 */
export async function stopBrokerProcess(broker: LiveBroker, dataRoot: string, graceMs: number): Promise<void> {
  const send = (signal: Deno.Signal) => {
    try {
      Deno.kill(broker.pid, signal);
    } catch { /* gone */ }
  };
  send("SIGCONT");
  send("SIGTERM");
  const killAt = monotonicMs() + graceMs;
  let killed = false;
  while ((await identify(broker.pid, broker.id, dataRoot)).kind === "broker") {
    if (!killed && monotonicMs() > killAt) {
      send("SIGKILL");
      killed = true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
