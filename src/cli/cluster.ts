/**
 * `yak cluster`: a zookeeper and N brokers as child processes of one
 * command, their output prefixed, stopped in order (brokers, then the
 * zookeeper) on Ctrl-C.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { security } from "../protocol/security.ts";
import { YakError } from "../errors.ts";
import { dataRootOf, FILE_FLAGS, type Flags, helpRequested, integer, parse, type Values } from "./args.ts";
import { ensureDataDir, refuseForeignOwner } from "../files.ts";
import { liveBrokersOf } from "./broker_process.ts";
import { Children, say } from "./cluster_children.ts";
import { newSecret, removeClusterFile, runningCluster, serveControl, writeClusterFile } from "./cluster_file.ts";

const USAGE = `
yak cluster [--brokers 3] [--data DIR] [--zookeeper-port 2181] [--base-port 9092]
            [--partitions 3] [--http-port 8080] [--restart] [--shared-files]

Starts a zookeeper and N brokers (broker i on base-port+i-1) in this terminal,
and says ready once a leader holds the lease with every broker in sync.
Ctrl-C (or SIGTERM) stops them in order: the brokers (also those of the data
root restarted by hand), then the zookeeper.
The data root is --data, else $YAK_DATA, else ./data (the repository's data/
through 'deno task' or ./yak); one that belongs to another user is refused.
Its files are the owner's alone (0700, 0600); --shared-files lets the owner's
group read them (0750, 0640). A broker that dies (yak kill) is restarted after
2 s with --restart, and so is the zookeeper; without it, 'yak start --broker N'
in another terminal brings a broker back (this cluster starts it again, with
the same flags), and the cluster stops when its zookeeper dies.
Broker i's Kafka port is base-port+100+i-1 (Kafka clients bootstrap from any).
The web console is on http-port, broker i's /metrics on http-port+i (0: free
ports, each printed by its process).
Try, in another terminal:
  seq 1 1000 | yak produce --topic demo
  yak consume --topic demo --from-beginning --exit-at-end | wc -l
  yak kill --leader; yak status; yak start --broker N
`;

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
  // A cluster on this data root already: the newcomer who typed `yak cluster` again wants `yak start`.
  await refuseSecondCluster(options);
  // Ports first: a second cluster must say which port is taken, not start children that fail.
  await checkPortsFree(options);
  const zkAddr = `${DEFAULTS.host}:${options.zkPort}`;
  const children = new Children({
    restart: options.restart,
    data: options.data,
    zkAddr,
    brokers: options.brokers,
    brokerArgs: (id) => brokerArgs(options, zkAddr, id),
    startCommand: (id) => `yak start --broker ${id}${dataFlag(options)}`,
  });
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  const onSignal = () => children.stop();
  for (const sig of signals) Deno.addSignalListener(sig, onSignal);
  let advert: Advert | null = null;
  try {
    advert = await advertise(options, zkAddr, children);
    if (await startAll(options, zkAddr, children)) {
      children.started = true;
      await advert.ready();
      printReady(options, zkAddr);
      await children.until(() => false);
    }
  } finally {
    await advert?.close();
    children.stopping = true;
    if (children.failed) say(`${children.failed}; stopping`);
    else say("stopping: brokers first, then the zookeeper");
    await children.stopAll();
    for (const sig of signals) Deno.removeSignalListener(sig, onSignal);
  }
  say(children.failed ? "stopped" : "stopped cleanly");
  return children.failed ? 1 : 0;
}

/**
 * The zookeeper, then the brokers; true once every one listens and the lease
 * names a leader with every broker in sync (the first produce is then
 * answered at once: "ready" came 0.5-0.8 s before the leader did), false
 * on a failure or a stop.
 */
async function startAll(options: ClusterOptions, zkAddr: string, children: Children): Promise<boolean> {
  const zkArgs = ["zookeeper", "--port", String(options.zkPort), "--data", options.data];
  // It knows how many brokers come, so it elects when they have registered, not a session timeout later.
  zkArgs.push("--expected-brokers", String(options.brokers), "--http-port", httpPortOf(options, 0));
  const zk = children.spawn("zk", [...zkArgs, ...options.fileArgs]);
  if (!(await children.until(() => zk.ready))) return false;
  const ids = Array.from({ length: options.brokers }, (_, i) => i + 1);
  for (const i of ids) children.spawn(`b${i}`, brokerArgs(options, zkAddr, i));
  if (!(await children.until(() => [...children.all.values()].every((c) => c.ready)))) return false;
  const pids = new Map(ids.map((i) => [i, children.all.get(`b${i}`)!.proc.pid]));
  return await children.untilInSync(ids, {
    pids,
    onSlow: (lease) => {
      const now = lease === null ? "the zookeeper does not answer" : `leader ${lease.leaderId ?? "none"}, ` +
        `in sync [${lease.isr.join(",")}]`;
      say(`waiting for a leader and every broker in sync (now: ${now})`);
    },
  });
}

/** The cluster's file and control port: marked ready at the ready line, removed at the stop. */
interface Advert {
  ready(): Promise<void>;
  close(): Promise<void>;
}

/**
 * `DATA/cluster.json` and the control port behind it, from now until the
 * stop: `yak start` finds the cluster there, a client refused while it starts
 * waits for it, and a second `yak cluster` on the data root is told.
 */
async function advertise(options: ClusterOptions, zkAddr: string, children: Children): Promise<Advert> {
  await ensureDataDir(options.data);
  const secret = newSecret();
  const control = serveControl(secret, (request) => {
    if (request.type === "start") return children.startBroker(request.broker);
    return Promise.resolve({ ok: false, error: `unknown request '${request.type}'` });
  });
  const file = {
    pid: Deno.pid,
    controlPort: control.port,
    secret,
    zookeeper: zkAddr,
    brokers: options.brokers,
    ready: false,
  };
  await writeClusterFile(options.data, file);
  return {
    ready: () => writeClusterFile(options.data, { ...file, ready: true }),
    async close() {
      control.close();
      await removeClusterFile(options.data);
    },
  };
}

/** A `yak cluster` already runs on this data root: say so, and how to bring a broker back. */
async function refuseSecondCluster(options: ClusterOptions): Promise<void> {
  const running = await runningCluster(options.data);
  if (running === null) return;
  throw new YakError(
    "UNAVAILABLE",
    `a yak cluster already runs on ${options.data} (pid ${running.pid}, zookeeper ${running.zookeeper}); ` +
      `to bring back a broker it lost: yak start --broker N${dataFlag(options)}; ` +
      `to run another cluster, give it its own --data, --zookeeper-port and --base-port`,
  );
}

/** ` --data DIR` when another terminal's `yak` would not find this data root by itself. */
function dataFlag(options: ClusterOptions): string {
  return options.data === dataRootOf({}) ? "" : ` --data ${options.data}`;
}

/** The flags, checked; the data root is refused here if another user owns it. */
function clusterOptionsOf(values: Values): ClusterOptions {
  const brokers = integer(values, "brokers", 3, 1, 9);
  const data = dataRootOf(values);
  // Here, before any child starts: one message instead of every child's.
  refuseForeignOwner(data, "the data root");
  const options = {
    brokers,
    data,
    fileArgs: values["shared-files"] === true ? ["--shared-files"] : [],
    zkPort: integer(values, "zookeeper-port", DEFAULTS.zookeeperPort, 1, 65535),
    basePort: integer(values, "base-port", DEFAULTS.brokerBasePort, 1, 65535 - 9),
    partitions: integer(values, "partitions", DEFAULTS.defaultPartitions, 1, DEFAULTS.maxPartitions),
    restart: values.restart === true,
    httpPort: integer(values, "http-port", DEFAULTS.consoleHttpPort, 0, 65535 - 9),
  };
  refusePortsPastTheLast(options);
  return options;
}

/**
 * Refuses a --base-port whose last broker's Kafka port passes 65535: else
 * the cluster started, and that broker died with "Invalid port (out of
 * range)". (--http-port's bound keeps the metrics ports within it.)
 */
function refusePortsPastTheLast({ brokers, basePort }: ClusterOptions): void {
  const offset = 100 + brokers - 1;
  const kafkaPort = basePort + offset;
  if (kafkaPort > 65535) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--base-port ${basePort} puts broker ${brokers}'s Kafka port at ${kafkaPort} (--base-port + ${offset}), ` +
        `past 65535: give a --base-port of at most ${65535 - offset}`,
    );
  }
}

/** Child i's `--http-port`: the console's (i = 0) or broker i's metrics port; 0 for a free one. */
function httpPortOf({ httpPort }: ClusterOptions, i: number): string {
  return String(httpPort === 0 ? 0 : httpPort + i);
}

/**
 * Refuses to start when a port a child would take is in use, naming it and
 * the flag that moves it; a port of broker i held by broker i of this data
 * root (left running, e.g. restarted by hand) is named with its pid and how
 * to stop it.
 */
async function checkPortsFree(options: ClusterOptions): Promise<void> {
  const { zkPort, basePort, brokers, httpPort } = options;
  // Each port: what it is, the broker that takes it (none: the zookeeper's, the console's), the flag that moves it.
  const ports: [number, string, number | null, string][] = [
    [zkPort, "the zookeeper's port, --zookeeper-port", null, "--zookeeper-port"],
  ];
  for (let i = 1; i <= brokers; i++) {
    ports.push([basePort + i - 1, `broker ${i}'s port, --base-port + ${i - 1}`, i, "--base-port"]);
    ports.push([basePort + 100 + i - 1, `broker ${i}'s Kafka port, --base-port + ${100 + i - 1}`, i, "--base-port"]);
    if (httpPort !== 0) {
      ports.push([httpPort + i, `broker ${i}'s metrics port, --http-port + ${i}`, i, "--http-port"]);
    }
  }
  if (httpPort !== 0) ports.push([httpPort, "the console's port, --http-port", null, "--http-port"]);
  // Two of its own children on one port: said as such, not as a port some other process holds.
  const seen = new Map<number, string>();
  for (const [port, what] of ports) {
    const other = seen.get(port);
    if (other !== undefined) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `port ${port} would be both ${other} and ${what}: choose --zookeeper-port, --base-port and --http-port ` +
          `so that they do not overlap`,
      );
    }
    seen.set(port, what);
  }
  for (const [port, what, broker, flag] of ports) {
    if (portFree(port)) continue;
    const holder = broker === null ? undefined : (await liveBrokersOf(options.data)).find((b) => b.id === broker);
    if (holder !== undefined) {
      throw new YakError(
        "UNAVAILABLE",
        `port ${port} (${what}) is in use by broker ${broker} of ${options.data} (pid ${holder.pid}), still ` +
          `running: stop it with 'yak kill --broker ${broker}${dataFlag(options)}', then start the cluster again`,
      );
    }
    throw new YakError(
      "UNAVAILABLE",
      `port ${port} (${what}) is in use: is another yak cluster running? Stop it, or choose another ${flag}`,
    );
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
    // With a certificate the children serve HTTPS too.
    const scheme = security().tlsCert !== undefined ? "https" : "http";
    say(
      `console on ${scheme}://${DEFAULTS.host}:${httpPort}/, broker metrics on ` +
        `${scheme}://${DEFAULTS.host}:${httpPort + 1}-${httpPort + brokers}/metrics`,
    );
  }
}
