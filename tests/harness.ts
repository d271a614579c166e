/**
 * Real processes for tests, the benchmark and the failover script: a
 * zookeeper and brokers started from main.ts on port 0 in a temp directory,
 * and `yak` subcommands run as child processes.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { Producer } from "../src/client/producer.ts";
import { RUN_FLAGS } from "../src/config.ts";
import { Connection } from "../src/protocol/connection.ts";
import type { Lease } from "../src/protocol/messages.ts";

/**
 * main.ts, as a path: this checkout's, or for `deno task bench --against`
 * the other revision's (`YAK_BENCH_MAIN`), so one bench script drives both.
 */
export const MAIN = Deno.env.get("YAK_BENCH_MAIN") ?? fileURLToPath(new URL("../main.ts", import.meta.url));
/** How the harness runs main.ts: as `yak cluster` runs its children. */
export const PERMS: readonly string[] = RUN_FLAGS;
const decoder = new TextDecoder();

/**
 * Callers waiting for a condition that changes when something arrives (a
 * line, a frame): `until` re-checks at every `notify`, with a deadline.
 */
export class Waiters {
  #waiting = new Set<() => void>();

  notify(): void {
    for (const check of [...this.#waiting]) check();
  }

  /**
   * Resolves with `probe`'s first non-undefined result; rejects with
   * `failure()` after `timeoutMs`, or at once when `probe` throws.
   */
  until<T>(probe: () => T | undefined, timeoutMs: number, failure: () => Error): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiting.delete(check);
      };
      const check = () => {
        try {
          const value = probe();
          if (value === undefined) return;
          done();
          resolve(value);
        } catch (err) {
          done();
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(failure());
      }, timeoutMs);
      this.#waiting.add(check);
      check();
    });
  }
}

/** A running child process whose output lines are collected and can be awaited. */
export class Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  /** Everything printed so far, unfinished lines included (stdout and stderr as they arrived). */
  text = "";
  readonly status: Promise<Deno.CommandStatus>;
  readonly #waiters = new Waiters();
  #pumps: Promise<void>;
  exited = false;

  constructor(
    name: string,
    args: string[],
    opts: {
      stdin?: boolean;
      env?: Record<string, string>;
      /** A command that runs deno for us, e.g. `["ip", "netns", "exec", "ns1"]` (it must exec, keeping the pid). */
      wrap?: string[];
      /**
       * Run in a pseudo-terminal (util-linux `script`): stdin, stdout and
       * stderr are the terminal, so `write("\x03")` is a Ctrl-C typed there.
       * `pid` is then the pid of `script`, and output lines lose their CR.
       * The shell `script` starts execs deno: dash (CI's /bin/sh when SHELL
       * is unset) would otherwise wait beside it, take the Ctrl-C too and die
       * of it after deno exits, turning deno's exit code into 130.
       */
      pty?: boolean;
      cwd?: string;
      /** Flags for deno itself, before the script (e.g. `--inspect=127.0.0.1:0`). */
      denoFlags?: string[];
    } = {},
  ) {
    this.name = name;
    const run = [Deno.execPath(), "run", ...PERMS, ...(opts.denoFlags ?? []), MAIN, ...args];
    const argv = opts.pty
      ? ["script", "-qfec", `exec ${run.map(shellQuote).join(" ")}`, "/dev/null"]
      : [...(opts.wrap ?? []), ...run];
    this.child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "piped",
      stderr: "piped",
      stdin: opts.stdin || opts.pty ? "piped" : "null",
      env: opts.env,
      cwd: opts.cwd,
    }).spawn();
    this.#pumps = Promise.all([
      this.#pump(this.child.stdout),
      this.#pump(this.child.stderr),
    ]).then(() => {});
    this.status = this.child.status.then(async (s) => {
      this.exited = true;
      await this.#pumps;
      this.#notify();
      return s;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Writes to the process's stdin (started with `stdin: true`). */
  async write(text: string): Promise<void> {
    const writer = this.child.stdin.getWriter();
    try {
      await writer.write(new TextEncoder().encode(text));
    } finally {
      writer.releaseLock();
    }
  }

  /** Closes the process's stdin. */
  async closeStdin(): Promise<void> {
    await this.child.stdin.close();
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let carry = "";
    for await (const chunk of stream) {
      const piece = decoder.decode(chunk, { stream: true });
      this.text += piece;
      if (!piece.includes("\n")) this.#notify(); // a prompt, with no line break yet
      const parts = (carry + piece).split(
        "\n",
      );
      carry = parts.pop()!;
      if (parts.length > 0) {
        this.lines.push(...parts.map((l) => l.replace(/\r$/, "")));
        this.#notify();
      }
    }
    if (carry) this.lines.push(carry.replace(/\r$/, ""));
  }

  #notify(): void {
    this.#waiters.notify();
  }

  /** Resolves with the first output line matching `pattern` (already printed or future). */
  waitFor(
    pattern: RegExp,
    timeoutMs = 15_000,
    from = 0,
  ): Promise<RegExpMatchArray> {
    let at = from;
    const tail = () => this.lines.slice(-20).join("\n");
    return this.#waiters.until(
      () => {
        for (; at < this.lines.length; at++) {
          const m = this.lines[at].match(pattern);
          if (m) return m;
        }
        if (this.exited) throw new Error(`${this.name} exited before printing ${pattern}:\n${tail()}`);
        return undefined;
      },
      timeoutMs,
      () => new Error(`${this.name}: no ${pattern} within ${timeoutMs} ms:\n${tail()}`),
    );
  }

  /** Resolves once everything printed so far satisfies `probe` (e.g. holds two prompts). */
  waitForText(probe: (text: string) => boolean, what: string, timeoutMs = 15_000): Promise<true> {
    return this.#waiters.until(
      () => {
        if (probe(this.text)) return true;
        if (this.exited) throw new Error(`${this.name} exited before ${what}:\n${this.text.slice(-2000)}`);
        return undefined;
      },
      timeoutMs,
      () => new Error(`${this.name}: not ${what} within ${timeoutMs} ms:\n${this.text.slice(-2000)}`),
    );
  }

  /** Sends a signal (ignored when the process is gone). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.exited) return;
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.exited) {
      this.kill("SIGCONT");
      this.kill("SIGTERM");
      const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
      await this.status;
      clearTimeout(timer);
    }
    await this.status;
  }
}

/** A word for `sh -c`, quoted when it needs to be. */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'"'"'`)}'`;
}

/**
 * A base port with `count` free ports from it on 127.0.0.1, and free ports
 * 100 above those too (brokers' default Kafka ports), for commands that take
 * fixed ports, like `yak cluster`. Below Linux's ephemeral range (32768 and
 * up), so no connection or port-0 listener of another test takes one after
 * the check.
 */
export function freePortRange(count: number): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 22_000);
    const taken: Deno.Listener[] = [];
    try {
      for (let i = 0; i < count; i++) {
        taken.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
        taken.push(Deno.listen({ hostname: "127.0.0.1", port: base + 100 + i }));
      }
      return base;
    } catch {
      /* in use: try another */
    } finally {
      for (const l of taken) l.close();
    }
  }
  throw new Error(`no ${count} free ports in a row`);
}

/** What a `yak` subcommand run printed, and how it ended. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link run} and {@link yak}. */
export interface RunOptions {
  stdin?: string | Uint8Array;
  timeoutMs?: number;
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * Runs any command to completion, feeding `stdin`, and kills it after
 * `timeoutMs`; stdout comes back as bytes (kcat prints binary values).
 */
export async function run(
  cmd: string,
  args: string[],
  opts: RunOptions = {},
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: opts.env,
    cwd: opts.cwd,
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, opts.timeoutMs ?? 60_000);
  if (opts.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin)
      .catch(() => {});
    await writer.close().catch(() => {});
  }
  const out = await child.output();
  clearTimeout(timer);
  return { code: out.code, stdout: out.stdout, stderr: decoder.decode(out.stderr) };
}

/**
 * Runs `yak ARGS` to completion, feeding `stdin`, and kills it after `timeoutMs`.
 */
export async function yak(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const out = await run(Deno.execPath(), ["run", ...PERMS, MAIN, ...args], opts);
  return { ...out, stdout: decoder.decode(out.stdout) };
}

/** Options of {@link TestCluster.start}. */
export interface ClusterOptions {
  brokers?: number;
  dir?: string;
  heartbeatMs?: number;
  sessionTimeoutMs?: number;
  replicaLagMs?: number;
  /** Default: 2, or the broker count when smaller. */
  minInsyncReplicas?: number;
  partitions?: number;
  segmentBytes?: number;
  /** Environment of the zookeeper and broker processes (e.g. YAK_AUTH_TOKEN). */
  env?: Record<string, string>;
  /** Extra arguments for the zookeeper and every broker (e.g. TLS flags). */
  serverArgs?: string[];
  /** Extra arguments for every broker only (e.g. retention flags). */
  brokerArgs?: string[];
  /** Extra arguments for one broker, by id (e.g. its own `--advertised-host`). */
  brokerArgsById?: Record<number, string[]>;
  /** Flags for deno itself when it runs a broker (e.g. `--inspect=127.0.0.1:0`). */
  brokerDenoFlags?: string[];
  /** Extra arguments for the zookeeper only (e.g. `--http-port 0`). */
  zookeeperArgs?: string[];
  /** The CA (PEM) the harness itself trusts when the servers use TLS. */
  tlsCa?: string;
}

/** The lease as the zookeeper on 127.0.0.1:`zkPort` holds it now. */
export async function leaseAt(zkPort: number, opts: { authToken?: string; tlsCa?: string } = {}): Promise<Lease> {
  const conn = await Connection.open("127.0.0.1", zkPort, { connectTimeoutMs: 2000, ...opts });
  try {
    return (await conn.request({ type: "metadata" }, 2000)).lease as Lease;
  } finally {
    conn.close();
  }
}

/**
 * The suite runs two test files at once (`deno test --parallel`). A test that
 * loads both cores on purpose (bursts of hundreds of MB, hogged cores) or
 * times itself under its own load runs {@link alone}: it holds this file's
 * lock exclusively, and every {@link TestCluster} holds it shared while it
 * runs, so no other file's cluster runs beside it. (flock-style locks: the
 * kernel drops them when a process dies.)
 */
const PARALLEL_LOCK = join(tmpdir(), "yak-tests-parallel.lock");
/** This test file holds the exclusive lock: its own clusters take no shared one. */
let aloneDepth = 0;

async function lockFile(exclusive: boolean): Promise<Deno.FsFile> {
  const f = await Deno.open(PARALLEL_LOCK, { read: true, write: true, create: true });
  await f.lock(exclusive);
  return f;
}

/** Runs `fn` with no cluster of another test file running (see {@link PARALLEL_LOCK}). */
export async function alone<T>(fn: () => Promise<T>): Promise<T> {
  if (aloneDepth > 0) return await fn();
  const lock = await lockFile(true);
  aloneDepth++;
  try {
    return await fn();
  } finally {
    aloneDepth--;
    lock.close();
  }
}

/** A zookeeper and brokers as real processes in a temp directory. */
export class TestCluster {
  readonly dir: string;
  readonly opts: ClusterOptions;
  zk!: Proc;
  zkPort = 0;
  readonly brokers = new Map<number, Proc>();
  readonly brokerPorts = new Map<number, number>();
  /** Each broker's Kafka-protocol port. */
  readonly kafkaPorts = new Map<number, number>();
  #ownsDir: boolean;
  /** The shared lock that keeps tests run {@link alone} from running beside this cluster. */
  #shared: Deno.FsFile | null = null;

  private constructor(dir: string, ownsDir: boolean, opts: ClusterOptions) {
    this.dir = dir;
    this.#ownsDir = ownsDir;
    this.opts = opts;
  }

  /** Starts the zookeeper and brokers, and waits until every broker is in sync. */
  static async start(opts: ClusterOptions = {}): Promise<TestCluster> {
    const dir = opts.dir ?? await Deno.makeTempDir({ prefix: "yak-test-" });
    const c = new TestCluster(dir, opts.dir === undefined, opts);
    try {
      if (aloneDepth === 0) c.#shared = await lockFile(false);
      await c.startZookeeper();
      const n = opts.brokers ?? 3;
      await Promise.all(
        Array.from({ length: n }, (_, i) => c.startBroker(i + 1)),
      );
      await c.waitFor((l) => l.leaderId !== null && l.isr.length === n, 20_000);
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  get zkAddr(): string {
    return `127.0.0.1:${this.zkPort}`;
  }

  /** Every broker's Kafka address, as Kafka clients' bootstrap list (`host:port,host:port`). */
  get bootstrapServers(): string {
    return [...this.kafkaPorts.values()].map((p) => `127.0.0.1:${p}`).join(",");
  }

  /** `--zookeeper ADDR` for client commands. */
  get zkFlag(): string[] {
    return ["--zookeeper", this.zkAddr];
  }

  /** `--flag value` for each option that is set, plus the extra server arguments. */
  #flags(names: Partial<Record<keyof ClusterOptions, string>>): string[] {
    const out: string[] = [];
    for (const [key, flag] of Object.entries(names)) {
      const value = this.opts[key as keyof ClusterOptions];
      if (value !== undefined) out.push(flag!, String(value));
    }
    return [...out, ...(this.opts.serverArgs ?? [])];
  }

  async startZookeeper(): Promise<void> {
    // The zookeeper elects once every broker has registered, not a session timeout after it started (1.2 s -> 0.x s).
    const args = ["zookeeper", "--port", String(this.zkPort), "--data", this.dir];
    // Not for another revision's main.ts (bench --against): a zookeeper older than the flag refuses it.
    if (Deno.env.get("YAK_BENCH_MAIN") === undefined) args.push("--expected-brokers", String(this.opts.brokers ?? 3));
    const flags = this.#flags({ heartbeatMs: "--heartbeat-ms", sessionTimeoutMs: "--session-timeout-ms" });
    flags.push(...(this.opts.zookeeperArgs ?? []));
    this.zk = new Proc("zookeeper", [...args, ...flags], { env: this.opts.env });
    const m = await this.zk.waitFor(/^zookeeper listening on [\d.]+:(\d+)$/);
    this.zkPort = Number(m[1]);
  }

  /** Starts (or restarts) broker `id` on a fresh port. */
  async startBroker(id: number): Promise<Proc> {
    const args = ["broker", "--id", String(id), "--port", "0", "--zookeeper", this.zkAddr, "--data", this.dir];
    const flags = this.#flags({
      heartbeatMs: "--heartbeat-ms",
      sessionTimeoutMs: "--session-timeout-ms",
      replicaLagMs: "--replica-lag-ms",
      partitions: "--partitions",
      segmentBytes: "--segment-bytes",
    });
    const minIsr = this.opts.minInsyncReplicas ?? Math.min(2, this.opts.brokers ?? 3);
    flags.push("--min-insync-replicas", String(minIsr), ...(this.opts.brokerArgs ?? []));
    flags.push(...(this.opts.brokerArgsById?.[id] ?? []));
    const proc = new Proc(`broker-${id}`, [...args, ...flags], {
      env: this.opts.env,
      denoFlags: this.opts.brokerDenoFlags,
    });
    this.brokers.set(id, proc);
    const m = await proc.waitFor(/^broker \d+ listening on [\d.]+:(\d+)$/);
    this.brokerPorts.set(id, Number(m[1]));
    const k = await proc.waitFor(/^broker \d+ speaks the Kafka protocol on [\d.]+:(\d+)$/);
    this.kafkaPorts.set(id, Number(k[1]));
    return proc;
  }

  /** The lease as the zookeeper holds it now. */
  lease(): Promise<Lease> {
    return leaseAt(this.zkPort, { authToken: this.opts.env?.YAK_AUTH_TOKEN, tlsCa: this.opts.tlsCa });
  }

  /** Polls the lease until `pred` holds. */
  async waitFor(
    pred: (lease: Lease) => boolean,
    timeoutMs = 15_000,
  ): Promise<Lease> {
    const deadline = Date.now() + timeoutMs;
    let last: Lease | null = null;
    while (Date.now() < deadline) {
      try {
        last = await this.lease();
        if (pred(last)) return last;
      } catch { /* zookeeper restarting */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `lease condition not met in ${timeoutMs} ms; last lease ${JSON.stringify(last)}`,
    );
  }

  /** The data directory of broker `id`'s topics. */
  topicsDir(id: number): string {
    return join(this.dir, `broker-${id}`, "topics");
  }

  /** Stops every process and removes the directory (if it made it). */
  async stop(): Promise<void> {
    await Promise.all([...this.brokers.values()].map((p) => p.stop()));
    if (this.zk) await this.zk.stop();
    if (this.#ownsDir) {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
    this.#shared?.close();
    this.#shared = null;
  }
}

/** SHA-256 of every segment file under a broker's topics directory, by relative path. */
export async function segmentHashes(
  topicsDir: string,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      if (e.isDirectory) await walk(path, `${rel}${e.name}/`);
      else if (e.name.endsWith(".jsonl")) {
        const digest = await crypto.subtle.digest(
          "SHA-256",
          await Deno.readFile(path),
        );
        out.set(
          `${rel}${e.name}`,
          Array.from(
            new Uint8Array(digest),
            (b) => b.toString(16).padStart(2, "0"),
          ).join(""),
        );
      }
    }
  };
  await walk(topicsDir, "");
  return out;
}

/** Resolves once `fn` returns true, polling; rejects after `timeoutMs`. */
export async function eventually(
  fn: () => Promise<boolean> | boolean,
  timeoutMs = 15_000,
  what = "condition",
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms`);
}

/** "1\n2\n...\nn\n", like `seq 1 n`. */
export function seqText(n: number, from = 1): string {
  const parts: string[] = new Array(n);
  for (let i = 0; i < n; i++) parts[i] = String(from + i);
  return parts.join("\n") + "\n";
}

/**
 * A file under /proc, or "" when unreadable. Deno lets only --allow-all read
 * another process's /proc files, and the tasks run with named permissions, so
 * this goes through `cat` (--allow-run).
 */
export async function readProc(path: string): Promise<string> {
  try {
    const out = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" }).output();
    return out.success ? decoder.decode(out.stdout) : "";
  } catch {
    return "";
  }
}

/** A memory figure of a process from /proc/<pid>/status (VmHWM: peak, VmRSS: now), in bytes, or null. */
export async function memoryOf(pid: number, field: "VmHWM" | "VmRSS"): Promise<number | null> {
  const m = (await readProc(`/proc/${pid}/status`)).match(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m"));
  return m ? Number(m[1]) * 1024 : null;
}

/** Runs `fn`, failing (not hanging) when it takes longer than `ms`. */
export async function withDeadline<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      fn(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: deadline of ${ms} ms exceeded`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether this process may mount a small tmpfs (root on Linux): the full-disk tests need one. */
export function canMountTmpfs(): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    const probe = Deno.makeTempDirSync({ prefix: "yak-mount-probe-" });
    const ok =
      new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe] }).outputSync().success;
    if (ok) new Deno.Command("umount", { args: [probe] }).outputSync();
    Deno.removeSync(probe);
    return ok;
  } catch {
    return false;
  }
}

/**
 * Whether to skip a test because `reason` (what it needs and how to get it)
 * is missing here: yes on a developer's machine (said once, on stderr), never
 * under `CI=true`, where the test runs and fails instead. CI installs every
 * such tool, so a green CI can never hide a guarantee that was not tested.
 */
export function skipWithout(reason: string | null): boolean {
  if (reason === null) return false;
  if (Deno.env.get("CI") === "true") {
    console.error(`CI: ${reason}; the test that needs it runs and will fail`);
    return false;
  }
  console.error(`skipped: ${reason}`);
  return true;
}

/** Why the kcat tests cannot run here, or null when kcat is installed. */
export function kcatMissing(): string | null {
  try {
    new Deno.Command("kcat", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync();
    return null;
  } catch {
    return "kcat is not installed (apt-get install kcat)";
  }
}

/** The Chromium the console tests drive: `$YAK_CHROMIUM`, or Debian's; undefined when there is none. */
export const CHROMIUM: string | undefined = [
  Deno.env.get("YAK_CHROMIUM"),
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
].find((path) => {
  try {
    return path !== undefined && Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/** Why the browser tests cannot run here, or null when there is a Chromium. */
export function chromiumMissing(): string | null {
  return CHROMIUM === undefined
    ? "no Chromium at /usr/bin/chromium (apt-get install chromium, as .ci/run does; or set YAK_CHROMIUM)"
    : null;
}

/** The byte arrays one after another in one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Debian's Python, where its Kafka clients (python3-kafka, python3-confluent-kafka) are installed. */
export const PYTHON = "/usr/bin/python3";

/** Why a Python module cannot be used here (for {@link skipWithout}), or null when it can. */
export function pythonModuleMissing(module: string, pkg: string): string | null {
  try {
    const out = new Deno.Command(PYTHON, { args: ["-c", `import ${module}`], stdout: "null", stderr: "null" })
      .outputSync();
    return out.code === 0 ? null : `${pkg} is not installed (apt-get install ${pkg})`;
  } catch {
    return `${PYTHON} is missing`;
  }
}

/** Runs a Python script with arguments: its exit code, and stdout then stderr as text. */
export async function python(script: string, args: string[]): Promise<{ code: number; out: string }> {
  const r = await run(PYTHON, ["-c", script, ...args], { timeoutMs: 90_000 });
  return { code: r.code, out: new TextDecoder().decode(r.stdout) + r.stderr };
}

/**
 * The JSON a script printed last, from {@link python}'s `out`: the last line
 * that parses as JSON. librdkafka may log to stderr (`%6|...`) after the
 * script's output, at any time up to its exit.
 */
// deno-lint-ignore no-explicit-any
export function lastJsonLine(out: string): any {
  for (const line of out.trim().split("\n").reverse()) {
    if (line.startsWith("%")) continue;
    try {
      return JSON.parse(line);
    } catch { /* not the script's JSON */ }
  }
  throw new Error(`no JSON line in the script's output:\n${out.slice(-2000)}`);
}

/** `yak consume`s topic from the beginning and checks it holds exactly the numbers 1..n (in any order). */
export async function assertReadsBack(
  c: TestCluster,
  topic: string,
  n: number,
  env?: Record<string, string>,
): Promise<void> {
  const read = await yak(["consume", "--topic", topic, "--from-beginning", "--max-messages", String(n), ...c.zkFlag], {
    env,
  });
  if (read.code !== 0) throw new Error(`yak consume exited ${read.code}: ${read.stderr}`);
  const got = read.stdout.split("\n").filter(Boolean).map(Number).sort((a, b) => a - b);
  const want = Array.from({ length: n }, (_, i) => i + 1);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${topic} read back ${got.length} records, not 1..${n}: ${JSON.stringify(got).slice(0, 200)}`);
  }
}

/**
 * `n` acks=all round trips of one record each, each sent once the one before
 * is acknowledged (yak's Producer, in this process), after `warm` unmeasured
 * ones: the times in ms, sorted.
 */
export async function ackRoundTrips(zkPort: number, topic: string, n: number, warm = 0): Promise<number[]> {
  const producer = await Producer.open({
    bootstrap: { zookeeper: { host: "127.0.0.1", port: zkPort } },
    topic,
    acks: "all",
    batchRecords: 1,
    lingerMs: 0,
  });
  try {
    const times: number[] = [];
    for (let i = 0; i < warm + n; i++) {
      const t0 = performance.now();
      producer.add(null, `r${i}`);
      await producer.flush();
      if (i >= warm) times.push(performance.now() - t0);
    }
    return times.sort((a, b) => a - b);
  } finally {
    await producer.close();
  }
}
