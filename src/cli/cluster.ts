/**
 * `yak cluster`: a zookeeper and N brokers as child processes of one
 * command, their output prefixed, stopped in order (brokers, then the
 * zookeeper) on Ctrl-C.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { fileURLToPath } from "node:url";
import { ask } from "../client/discovery.ts";
import { DEFAULTS, RUN_FLAGS } from "../config.ts";
import { YakError } from "../errors.ts";
import type { Lease } from "../protocol/messages.ts";
import { security } from "../protocol/security.ts";
import { dataRootOf, FILE_FLAGS, type Flags, helpRequested, integer, parse, type Values } from "./args.ts";
import { refuseForeignOwner } from "../files.ts";
import { STOP_ON_STDIN_EOF_ENV } from "./serve_until_signal.ts";

const USAGE = `
yak cluster [--brokers 3] [--data DIR] [--zookeeper-port 2181] [--base-port 9092]
            [--partitions 3] [--http-port 8080] [--restart] [--shared-files]

Starts a zookeeper and N brokers (broker i on base-port+i-1) in this terminal.
Ctrl-C (or SIGTERM) stops them in order: the brokers, then the zookeeper.
The data root is --data, else $YAK_DATA, else ./data (the repository's data/
through 'deno task' or ./yak); one that belongs to another user is refused.
Its files are the owner's alone (0700, 0600); --shared-files lets the owner's
group read them (0750, 0640). A broker that dies (yak kill) is restarted after
2 s with --restart; without it, the command that restarts it is printed.
Broker i's Kafka port is base-port+100+i-1 (Kafka clients bootstrap from any).
The web console is on http-port, broker i's /metrics on http-port+i (0: free
ports, each printed by its process).
Try, in another terminal:
  seq 1 1000 | yak produce --topic demo
  yak consume --topic demo --from-beginning --exit-at-end | tail -1
  yak kill --leader; yak status
`;

/** A broker that dies is restarted after this long with --restart (long enough to see the failover). */
const RESTART_AFTER_MS = 2000;
/** A broker that dies this soon after a (re)start has a problem a restart will not fix. */
const CRASH_LOOP_MS = 5000;
const CRASH_LOOP_LIMIT = 3;
/** How long each step of the stop waits before it kills. */
const STOP_GRACE_MS = 10_000;

/**
 * The command line that runs this same program with other arguments: the
 * compiled binary itself, or `deno run ... main.ts`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { selfCommand } from "./cluster.ts";
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

interface Child {
  name: string;
  /** The `yak ...` arguments it runs with. */
  sub: string[];
  proc: Deno.ChildProcess;
  startedAt: number;
  /** Resolves once it has exited and its output is printed. */
  done: Promise<Deno.CommandStatus>;
  /** Set when it prints that it listens. */
  ready: boolean;
  /** Its last lines of output (for a failure at start). */
  tail: string[];
  crashes: number;
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

/** Whether a port on 127.0.0.1 is free (nothing listens on it). */
function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: DEFAULTS.host, port, transport: "tcp" }).close();
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) return false;
    return true; // some other trouble: the child reports it
  }
}

function say(line: string): void {
  console.log(`[cluster] ${line}`);
}

const FLAGS: Flags = {
  brokers: { type: "string" },
  data: { type: "string" },
  "zookeeper-port": { type: "string" },
  "base-port": { type: "string" },
  partitions: { type: "string" },
  restart: { type: "boolean" },
  "http-port": { type: "string" },
  ...FILE_FLAGS,
};

/** What `yak cluster`'s flags ask for. */
interface ClusterOptions {
  brokers: number;
  /** The data root, absolute. */
  data: string;
  /** `--shared-files`, passed on: every child creates files, each with those modes. */
  fileArgs: string[];
  zkPort: number;
  basePort: number;
  partitions: number;
  /** `--restart`: a broker that dies is started again. */
  restart: boolean;
  /** The console's port (broker i's /metrics on the next ones); 0 picks free ports. */
  httpPort: number;
}

/** Runs `yak cluster` until Ctrl-C. */
export async function clusterCommand(args: string[]): Promise<number> {
  const { values } = parse("cluster", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const options = clusterOptionsOf(values);
  // Ports first: a second cluster must say which port is taken, not start children that fail.
  checkPortsFree(options);
  const zkAddr = `${DEFAULTS.host}:${options.zkPort}`;
  const children = new Children(options.restart);
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  const onSignal = () => children.stop();
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  try {
    const zkArgs = ["zookeeper", "--port", String(options.zkPort), "--data", options.data];
    const zk = children.spawn("zk", [...zkArgs, "--http-port", httpPortOf(options, 0), ...options.fileArgs]);
    if (await children.until(() => zk.ready)) {
      for (let i = 1; i <= options.brokers; i++) children.spawn(`b${i}`, brokerArgs(options, zkAddr, i));
      if (await children.until(() => [...children.all.values()].every((c) => c.ready))) {
        printReady(options, zkAddr);
        await children.until(() => false);
      }
    }
  } finally {
    children.stopping = true;
    if (children.failed) say(`${children.failed}; stopping`);
    else say("stopping: brokers first, then the zookeeper");
    await children.stopAll(zkAddr);
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
  }
  say(children.failed ? "stopped" : "stopped cleanly");
  return children.failed ? 1 : 0;
}

/** The flags, checked; the data root is refused here if another user owns it. */
function clusterOptionsOf(values: Values): ClusterOptions {
  const brokers = integer(values, "brokers", 3, 1, 9);
  const data = dataRootOf(values);
  // Here, before any child starts: one message instead of every child's.
  refuseForeignOwner(data, "the data root");
  return {
    brokers,
    data,
    fileArgs: values["shared-files"] === true ? ["--shared-files"] : [],
    zkPort: integer(values, "zookeeper-port", DEFAULTS.zookeeperPort, 1, 65535),
    basePort: integer(values, "base-port", DEFAULTS.brokerBasePort, 1, 65535 - 9),
    partitions: integer(values, "partitions", DEFAULTS.defaultPartitions, 1, DEFAULTS.maxPartitions),
    restart: values.restart === true,
    httpPort: integer(values, "http-port", DEFAULTS.consoleHttpPort, 0, 65535 - 9),
  };
}

/** Child i's `--http-port`: the console's (i = 0) or broker i's metrics port; 0 for a free one. */
function httpPortOf({ httpPort }: ClusterOptions, i: number): string {
  return String(httpPort === 0 ? 0 : httpPort + i);
}

/** Refuses to start when a port a child would take is in use, naming it and the flag that moves it. */
function checkPortsFree({ zkPort, basePort, brokers, httpPort }: ClusterOptions): void {
  const ports: [number, string][] = [[zkPort, "the zookeeper's port, --zookeeper-port"]];
  for (let i = 1; i <= brokers; i++) {
    ports.push([basePort + i - 1, `broker ${i}'s port, --base-port + ${i - 1}`]);
    ports.push([basePort + 100 + i - 1, `broker ${i}'s Kafka port, --base-port + ${100 + i - 1}`]);
    if (httpPort !== 0) ports.push([httpPort + i, `broker ${i}'s metrics port, --http-port + ${i}`]);
  }
  if (httpPort !== 0) ports.push([httpPort, "the console's port, --http-port"]);
  for (const [port, what] of ports) {
    if (!portFree(port)) {
      throw new YakError(
        "UNAVAILABLE",
        `port ${port} (${what}) is in use: is another yak cluster running? Stop it, or choose other ports ` +
          `with --zookeeper-port and --base-port`,
      );
    }
  }
}

/** The `yak` arguments broker i runs with. */
function brokerArgs(options: ClusterOptions, zkAddr: string, i: number): string[] {
  return [
    "broker",
    "--id",
    String(i),
    "--port",
    String(options.basePort + i - 1),
    "--zookeeper",
    zkAddr,
    "--data",
    options.data,
    "--partitions",
    String(options.partitions),
    // Two copies for acks=all, as the default promises, unless there are fewer brokers.
    "--min-insync-replicas",
    String(Math.min(DEFAULTS.minInsyncReplicas, options.brokers)),
    "--http-port",
    httpPortOf(options, i),
    ...options.fileArgs,
  ];
}

/** Where everything listens, once every child is ready. */
function printReady({ brokers, basePort, httpPort, data }: ClusterOptions, zkAddr: string): void {
  // Every broker's address: a client given only the first one fails once `yak kill --leader` kills it.
  const every = (first: number) => Array.from({ length: brokers }, (_, i) => `${DEFAULTS.host}:${first + i}`).join(",");
  say(
    `ready: zookeeper on ${zkAddr}, brokers on ports ${basePort}-${basePort + brokers - 1} ` +
      `(yak tools: --bootstrap ${every(basePort)} or --zookeeper ${zkAddr}; ` +
      `Kafka clients: --bootstrap-server ${every(basePort + 100)}), data in ${data}; Ctrl-C stops all`,
  );
  if (httpPort !== 0) {
    say(
      `console on http://${DEFAULTS.host}:${httpPort}/, broker metrics on ` +
        `http://${DEFAULTS.host}:${httpPort + 1}-${httpPort + brokers}/metrics`,
    );
  }
}

/**
 * The children of one `yak cluster`: started with their output prefixed,
 * restarted (with --restart) when a broker dies, stopped in order. Every
 * event (a child ready or exited, a stop asked) wakes {@link Children.until}.
 */
class Children {
  readonly all = new Map<string, Child>();
  /** Why the cluster stops by itself: a child that exited before it started, or the zookeeper's exit. */
  failed: string | null = null;
  stopping = false;
  #wake = () => {};

  constructor(readonly restart: boolean) {}

  /** Waits until `done()`, a failure or a stop; true when none of the last two came. */
  async until(done: () => boolean): Promise<boolean> {
    while (!done() && !this.failed && !this.stopping) await new Promise<void>((resolve) => (this.#wake = resolve));
    return !this.failed && !this.stopping;
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
    // A token given as a flag reaches the children through their environment.
    const token = security().authToken;
    const env: Record<string, string> = { [STOP_ON_STDIN_EOF_ENV]: "1" };
    if (token !== undefined) env.YAK_AUTH_TOKEN = token;
    // Their own session: the terminal's Ctrl-C reaches only this process, which stops them in order.
    const proc = new Deno.Command(command, {
      args,
      stdout: "piped",
      stderr: "piped",
      stdin: "piped",
      env,
      detached: true,
    }).spawn();
    const prefix = `[${name}]`;
    const child: Child = {
      name,
      sub,
      proc,
      startedAt: monotonicMs(),
      done: Promise.resolve(null as unknown as Deno.CommandStatus),
      ready: false,
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
      pipePrefixed(proc.stdout, prefix, onLine),
      pipePrefixed(proc.stderr, prefix, onLine),
      proc.status,
    ]).then(([, , status]) => status);
    child.done.then((status) => {
      if (this.all.get(name) === child) this.#exited(child, status);
    });
    this.all.set(name, child);
    return child;
  }

  /** A child exited: the cluster fails, or the broker is restarted (--restart), or how to restart it is printed. */
  #exited(child: Child, status: Deno.CommandStatus): void {
    this.#wake();
    if (this.stopping) return;
    const how = status.signal ?? `code ${status.code}`;
    if (!child.ready) {
      this.failed ??= `${child.name} exited (${how}) before it started: ${child.tail.slice(-1)[0] ?? "no output"}`;
      return;
    }
    if (child.name === "zk") {
      this.failed ??= `the zookeeper exited (${how})`;
      return;
    }
    const id = Number(child.name.slice(1));
    const command = `yak ${child.sub.join(" ")}`;
    const quick = monotonicMs() - child.startedAt < CRASH_LOOP_MS;
    const crashes = quick ? child.crashes + 1 : 0;
    if (this.restart && crashes < CRASH_LOOP_LIMIT) {
      say(`broker ${id} exited (${how}); restarting it in ${RESTART_AFTER_MS / 1000} s`);
      setTimeout(() => {
        if (!this.stopping && this.all.get(child.name) === child) {
          this.spawn(child.name, child.sub, crashes);
          say(`broker ${id} restarted`);
        }
      }, RESTART_AFTER_MS);
    } else if (this.restart) {
      say(`broker ${id} exited (${how}) ${CRASH_LOOP_LIMIT} times within seconds of starting; not restarting it`);
    } else {
      say(`broker ${id} exited (${how}); restart it in another terminal with:\n  ${command}`);
      say("(or run 'yak cluster --restart' to have brokers restarted for you)");
    }
  }

  /**
   * Followers first (each leaves the in-sync set), then the leader (nobody is
   * left to hand over to, so no election churn), then the zookeeper, each
   * step waiting for the processes to exit.
   */
  async stopAll(zkAddr: string): Promise<void> {
    const brokers = [...this.all.values()].filter((c) => c.name !== "zk");
    let leaderId: number | null = null;
    try {
      const [host, port] = [
        zkAddr.slice(0, zkAddr.lastIndexOf(":")),
        Number(zkAddr.slice(zkAddr.lastIndexOf(":") + 1)),
      ];
      leaderId = ((await ask({ host, port }, { type: "metadata" }, 500)).lease as Lease).leaderId;
    } catch { /* no zookeeper: every broker at once */ }
    const leader = brokers.filter((c) => c.name === `b${leaderId}`);
    await Promise.all(brokers.filter((c) => !leader.includes(c)).map(stopChild));
    await Promise.all(leader.map(stopChild));
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
