/**
 * The processes of one `yak cluster`: started with their output prefixed,
 * restarted when a broker dies (with --restart) or when `yak start --broker N`
 * asks, and stopped in order with every broker of the data root, those
 * restarted by hand included.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { monotonicMs } from "../clock.ts";
import { ask } from "../client/discovery.ts";
import { RUN_FLAGS } from "../config.ts";
import type { BrokerInfo, Lease } from "../protocol/messages.ts";
import { parseHostPort } from "../protocol/connection.ts";
import { securityEnv } from "./security_flags.ts";
import { liveBrokersOf, stopBrokerProcess } from "./broker_process.ts";
import type { ControlReply } from "./cluster_file.ts";
import { STOP_ON_STDIN_EOF_ENV } from "./serve_until_signal.ts";

/** A broker that dies is restarted after this long with --restart (long enough to see the failover). */
const RESTART_AFTER_MS = 2000;
/** A broker that dies this soon after a (re)start has a problem a restart will not fix. */
const CRASH_LOOP_MS = 5000;
const CRASH_LOOP_LIMIT = 3;
/** How long each step of the stop waits before it kills. */
const STOP_GRACE_MS = 10_000;
/** How often the lease is asked while waiting for a leader and the in-sync set. */
const LEASE_POLL_MS = 50;
/** `yak start` answers once the broker is back in the in-sync set, or after this long (it may have far to catch up). */
const START_IN_SYNC_WAIT_MS = 10_000;

/**
 * The command line that runs this same program with other arguments: the
 * compiled binary itself, or `deno run ... main.ts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selfCommand } from "./cluster_children.ts";
 * const { command, args } = selfCommand(["status"]);
 * assert.equal(command, Deno.execPath());
 * assert.equal(args.at(-1), "status"); // after `run`, the flags and main.ts when deno runs yak
 * ```
 */
export function selfCommand(
  args: string[],
): { command: string; args: string[] } {
  const exe = Deno.execPath();
  const name = exe.split("/").pop() ?? "";
  if (/^deno(\.exe)?$/.test(name) && Deno.mainModule.startsWith("file:")) {
    return {
      command: exe,
      args: ["run", ...RUN_FLAGS, fileURLToPath(Deno.mainModule), ...args],
    };
  }
  return { command: exe, args };
}

/** One process of the cluster. */
export interface Child {
  name: string;
  /** The `yak ...` arguments it runs with. */
  sub: string[];
  proc: Deno.ChildProcess;
  startedAt: number;
  /** Resolves once it has exited and its output is printed. */
  done: Promise<Deno.CommandStatus>;
  /** Set when it prints that it listens. */
  ready: boolean;
  exited: boolean;
  /** Its last lines of output (for a failure at start). */
  tail: string[];
  crashes: number;
}

/** What the children need to know of the cluster. */
export interface ChildrenOptions {
  /** `--restart`: a broker that dies is started again. */
  restart: boolean;
  /** The data root, absolute. */
  data: string;
  /** The zookeeper's HOST:PORT. */
  zkAddr: string;
  /** Broker ids 1..brokers. */
  brokers: number;
  /** The `yak` arguments broker i runs with. */
  brokerArgs: (id: number) => string[];
  /** How a person on another terminal brings broker i back (`yak start --broker i`, with --data if needed). */
  startCommand: (id: number) => string;
}

const encoder = new TextEncoder();

async function pipePrefixed(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  onLine: (line: string) => void,
) {
  let carry = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (carry + chunk).split("\n");
    carry = lines.pop()!;
    if (lines.length > 0) {
      lines.forEach(onLine);
      await Deno.stdout.write(encoder.encode(lines.map((l) => `${prefix} ${l}`).join("\n") + "\n")).catch(() => {});
    }
  }
  if (carry) {
    onLine(carry);
    await Deno.stdout.write(encoder.encode(`${prefix} ${carry}\n`)).catch(() => {});
  }
}

/** Prints a line of `yak cluster`'s own. */
export function say(line: string): void {
  console.log(`[cluster] ${line}`);
}

/** The lease and the members as the zookeeper at `zkAddr` holds them now (null when it does not answer). */
async function zookeeperAt(zkAddr: string): Promise<{ lease: Lease; brokers: BrokerInfo[] } | null> {
  try {
    const res = await ask(parseHostPort(zkAddr), { type: "status" }, 500);
    return { lease: res.lease as Lease, brokers: (res.brokers ?? []) as BrokerInfo[] };
  } catch {
    return null;
  }
}

/** The lease as the zookeeper at `zkAddr` holds it now (null when it does not answer). */
async function leaseAt(zkAddr: string): Promise<Lease | null> {
  return (await zookeeperAt(zkAddr))?.lease ?? null;
}

/**
 * The children of one `yak cluster`. Every event (a child ready or exited, a
 * stop asked) wakes {@link Children.until}.
 */
export class Children {
  readonly all = new Map<string, Child>();
  /** Why the cluster stops by itself: a child that exited before it started, or the zookeeper's exit. */
  failed: string | null = null;
  stopping = false;
  /** Set at the ready line: from then on a broker that fails to start is reported, not fatal. */
  started = false;
  /** Everyone waiting in until() or a nap: the main loop and `yak start` requests wait at the same time. */
  readonly #waiting = new Set<() => void>();

  constructor(readonly o: ChildrenOptions) {}

  /** Waits until `done()`, a failure or a stop; true when none of the last two came. */
  async until(done: () => boolean): Promise<boolean> {
    while (!done() && !this.failed && !this.stopping) await new Promise<void>((resolve) => this.#waiting.add(resolve));
    return !this.failed && !this.stopping;
  }

  /** Sleeps `ms`, or less when something happens; false on a failure or a stop. */
  async #nap(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#waiting.delete(done);
        resolve();
      };
      timer = setTimeout(done, ms);
      this.#waiting.add(done);
    });
    clearTimeout(timer);
    return !this.failed && !this.stopping;
  }

  /**
   * Waits until the lease names a leader and `ids` are all in the in-sync
   * set (or `timeoutMs` passes: false), asking the zookeeper every 50 ms.
   * With `pids`, only once each of those brokers has registered from that
   * process: before, the lease may still be the one that knew its last one.
   */
  async untilInSync(
    ids: number[],
    opts: { timeoutMs?: number; pids?: Map<number, number>; onSlow?: (lease: Lease | null) => void } = {},
  ): Promise<boolean> {
    const { timeoutMs = Infinity, pids, onSlow } = opts;
    const started = monotonicMs();
    let told = false;
    while (!this.failed && !this.stopping) {
      const zk = await zookeeperAt(this.o.zkAddr);
      const lease = zk?.lease ?? null;
      const registered = (id: number) =>
        pids === undefined || zk?.brokers.some((b) => b.id === id && b.alive && b.pid === pids.get(id));
      const inSync = (id: number) => lease !== null && lease.isr.includes(id) && registered(id);
      if (lease && lease.leaderId !== null && ids.every(inSync)) return true;
      if (monotonicMs() - started > timeoutMs) return false;
      if (!told && onSlow && monotonicMs() - started > 10_000) {
        told = true;
        onSlow(lease);
      }
      await this.#nap(LEASE_POLL_MS);
    }
    return false;
  }

  #wake(): void {
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const resolve of waiting) resolve();
  }

  /** A signal: stop (once). */
  stop(): void {
    if (this.stopping) return;
    this.stopping = true;
    this.#wake();
  }

  /** Starts `yak <sub>` as the child `name`, its output prefixed `[name]`. */
  spawn(name: string, sub: string[], crashes = 0): Child {
    const { command, args } = selfCommand(sub);
    // The token and the TLS files, given as flags, reach the children through their environment: a cluster
    // started with --tls-cert serves TLS in every process (its children served plain TCP before, and the
    // cluster's own TLS checks of them never got an answer).
    const env: Record<string, string> = { ...securityEnv(), [STOP_ON_STDIN_EOF_ENV]: "1" };
    // Their own session: the terminal's Ctrl-C reaches only this process, which stops them in order.
    const proc = new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
      stdin: "piped",
      env,
      detached: true,
    }).spawn();
    const child: Child = {
      name,
      sub,
      proc,
      startedAt: monotonicMs(),
      done: Promise.resolve(null as unknown as Deno.CommandStatus),
      ready: false,
      exited: false,
      tail: [],
      crashes,
    };
    const onLine = (line: string) => {
      child.tail.push(line);
      if (child.tail.length > 5) child.tail.shift();
      if (/ listening on /.test(line) && !child.ready) {
        child.ready = true;
        this.#wake();
      }
    };
    child.done = Promise.all([
      pipePrefixed(proc.stdout, `[${name}]`, onLine),
      pipePrefixed(proc.stderr, `[${name}]`, onLine),
      proc.status,
    ]).then(([, , status]) => status);
    child.done.then((status) => {
      child.exited = true;
      if (this.all.get(name) === child) this.#exited(child, status);
    });
    this.all.set(name, child);
    return child;
  }

  /** A child exited: it is restarted (--restart), or the cluster fails (the zookeeper), or how to restart a broker is printed. */
  #exited(child: Child, status: Deno.CommandStatus): void {
    this.#wake();
    if (this.stopping) return;
    const how = status.signal ?? `code ${status.code}`;
    if (!child.ready && !this.started) {
      this.failed ??= `${child.name} exited (${how}) before it started: ${child.tail.slice(-1)[0] ?? "no output"}`;
      return;
    }
    const zk = child.name === "zk";
    const what = zk ? "the zookeeper" : `broker ${child.name.slice(1)}`;
    const quick = monotonicMs() - child.startedAt < CRASH_LOOP_MS;
    const crashes = quick ? child.crashes + 1 : 0;
    if (this.o.restart && crashes < CRASH_LOOP_LIMIT) {
      // The zookeeper too: its lease file and the brokers' reports let it go on where it was.
      say(`${what} exited (${how}); restarting it in ${RESTART_AFTER_MS / 1000} s`);
      setTimeout(() => {
        if (!this.stopping && this.all.get(child.name) === child) {
          this.spawn(child.name, child.sub, crashes);
          say(`${what} restarted`);
        }
      }, RESTART_AFTER_MS);
    } else if (zk) {
      // Without it nothing can fail over: the cluster stops, and says why (--restart starts it again instead).
      this.failed ??= this.o.restart
        ? `the zookeeper exited (${how}) ${CRASH_LOOP_LIMIT} times within seconds of starting`
        : `the zookeeper exited (${how}); 'yak cluster --restart' starts it again when it dies`;
    } else if (this.o.restart) {
      say(`${what} exited (${how}) ${CRASH_LOOP_LIMIT} times within seconds of starting; not restarting it`);
    } else {
      const id = Number(child.name.slice(1));
      say(
        `broker ${id} exited (${how}); bring it back with '${this.o.startCommand(id)}' (in another terminal), ` +
          `or run it yourself:\n  yak ${child.sub.join(" ")}`,
      );
    }
  }

  /**
   * `yak start --broker N`: starts broker N again, unless it runs; answers
   * once it listens and is back in the in-sync set (or has had
   * {@link START_IN_SYNC_WAIT_MS} to catch up).
   */
  async startBroker(broker: unknown): Promise<ControlReply> {
    const { brokers } = this.o;
    if (!Number.isSafeInteger(broker) || (broker as number) < 1 || (broker as number) > brokers) {
      return { ok: false, error: `this yak cluster runs brokers 1-${brokers}; there is no broker ${broker}` };
    }
    const id = broker as number;
    if (!this.started || this.stopping) return { ok: false, error: "the cluster is starting or stopping; try again" };
    const running = this.all.get(`b${id}`);
    if (running && !running.exited) {
      return { ok: false, error: `broker ${id} is running (pid ${running.proc.pid}); nothing to start` };
    }
    const outside = (await liveBrokersOf(this.o.data)).find((b) => b.id === id);
    if (outside) return { ok: false, error: `broker ${id} is running (pid ${outside.pid}, started by hand)` };
    const child = this.spawn(`b${id}`, this.o.brokerArgs(id));
    say(`starting broker ${id} again (yak start)`);
    if (!(await this.until(() => child.ready || child.exited))) return { ok: false, error: "the cluster is stopping" };
    if (!child.ready) {
      return { ok: false, error: `broker ${id} exited before it started: ${child.tail.at(-1) ?? "no output"}` };
    }
    const pids = new Map([[id, child.proc.pid]]);
    const inSync = await this.untilInSync([id], { timeoutMs: START_IN_SYNC_WAIT_MS, pids });
    const where = `pid ${child.proc.pid}`;
    return {
      ok: true,
      message: inSync
        ? `broker ${id} is back (${where}) and in the in-sync set`
        : `broker ${id} is back (${where}); it joins the in-sync set once it has caught up (see 'yak status')`,
    };
  }

  /**
   * Followers first (each leaves the in-sync set), then the leader (nobody is
   * left to hand over to, so no election churn), then the zookeeper, each
   * step waiting for the processes to exit. Brokers of the data root that
   * this process did not start (restarted by hand) are stopped with them.
   */
  async stopAll(): Promise<void> {
    const ours = [...this.all.values()].filter((c) => c.name !== "zk");
    const pids = new Set(ours.filter((c) => !c.exited).map((c) => c.proc.pid));
    const outside = (await liveBrokersOf(this.o.data)).filter((b) => !pids.has(b.pid));
    if (outside.length > 0) {
      say(`also stopping ${outside.map((b) => `broker ${b.id} (pid ${b.pid})`).join(", ")}, started by hand`);
    }
    const leaderId = (await leaseAt(this.o.zkAddr))?.leaderId ?? null; // no zookeeper: every broker at once
    const stops = [
      ...ours.map((c) => ({ id: Number(c.name.slice(1)), stop: () => stopChild(c) })),
      ...outside.map((b) => ({ id: b.id, stop: () => stopBrokerProcess(b, this.o.data, STOP_GRACE_MS) })),
    ];
    await Promise.all(stops.filter((s) => s.id !== leaderId).map((s) => s.stop()));
    await Promise.all(stops.filter((s) => s.id === leaderId).map((s) => s.stop()));
    const zk = this.all.get("zk");
    if (zk) await stopChild(zk);
    for (const c of this.all.values()) {
      try {
        await c.proc.stdin.close();
      } catch { /* closed */ }
    }
  }
}

/** SIGTERM, then SIGKILL after the grace period; resolves when it has exited. */
async function stopChild(child: Child): Promise<void> {
  const timer = setTimeout(() => {
    try {
      child.proc.kill("SIGKILL");
    } catch { /* gone */ }
  }, STOP_GRACE_MS);
  try {
    child.proc.kill("SIGCONT"); // a paused broker must run to stop
    child.proc.kill("SIGTERM");
  } catch { /* already gone */ }
  await child.done;
  clearTimeout(timer);
}
