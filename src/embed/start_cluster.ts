/**
 * A whole yak cluster inside the calling process, for tests: a zookeeper and
 * N brokers on free ports in a temp directory, ready when a leader holds the
 * lease and every broker is in sync, gone (directory included) after
 * `stop()`. Kafka clients (kafkajs, ...) reach it through `kafkaBootstrap`,
 * yak's own through `bootstrap`: what testcontainers' Kafka gives, without
 * Docker. From Node, scripts/start_cluster.mjs runs the same in a `deno run`
 * child process.
 *
 * @module
 */
import type { Broker } from "../broker/broker.ts";
import { parseTopicConfigs } from "../broker/topic_config.ts";
import { type RunningBroker, startBrokerFromFlags } from "../cli/broker.ts";
import type { Bootstrap } from "../client/discovery.ts";
import { monotonicMs } from "../clock.ts";
import { type ConsoleServer, startConsole } from "../console/console_server.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import { Zookeeper } from "../zookeeper/zookeeper.ts";

/** A topic {@link startCluster} creates before it resolves. */
export interface EmbeddedTopic {
  name: string;
  /** Default: the cluster's `partitions`. */
  partitions?: number;
  /** Topic configs by Kafka's names, e.g. `{ "retention.ms": "60000" }`. */
  configs?: Record<string, string>;
}

/** Options of {@link startCluster}; every one has a default. */
export interface StartClusterOptions {
  /** Brokers, 1 to 9 (default 1). Every broker holds every partition. */
  brokers?: number;
  /** Partitions of a topic created on first use, and of `topics` without a count (default 3). */
  partitions?: number;
  /** Topics to create before startCluster resolves: names, or names with a count and configs. */
  topics?: (string | EmbeddedTopic)[];
  /**
   * The data root. Default: a new temp directory, removed by `stop()` (a given one is kept). A given root that
   * holds a cluster starts it again (a leader is elected after the zookeeper's one-second start-up grace).
   */
  dataDir?: string;
  /** The address every server listens on, each on a free port (default 127.0.0.1). */
  host?: string;
  /** More `yak broker` flags for every broker, e.g. `["--auto-create-topics-enable", "false"]`. */
  brokerFlags?: string[];
  /** Serve the web console on a free port (`consoleUrl`). Default: no console. */
  console?: boolean;
  /** Echo the operation logs to stderr (default: false; they are in the data root's files). */
  echo?: boolean;
  /** How long to wait for the cluster to be ready (default 10,000 ms). */
  readyTimeoutMs?: number;
}

/** A running embedded cluster. */
export interface EmbeddedCluster {
  /** yak's native addresses of every broker, `host:port,...` (`yak ... --bootstrap`). */
  readonly bootstrap: string;
  /** The Kafka addresses of every broker, `host:port,...` (kafkajs `brokers`, kcat `-b`, `--bootstrap-server`). */
  readonly kafkaBootstrap: string;
  /** The zookeeper's address, `host:port` (`yak ... --zookeeper`). */
  readonly zookeeper: string;
  /** {@link bootstrap} as yak's Producer and Consumer take it (`bootstrap` option). */
  readonly nativeBootstrap: Bootstrap;
  /** The data root (removed by `stop()` when startCluster made it). */
  readonly dataDir: string;
  /** The web console's URL, when asked for with `console: true`; else null. */
  readonly consoleUrl: string | null;
  /** Milliseconds from the call to ready (a leader, every broker in sync, the topics made). */
  readonly readyMs: number;
  /** The brokers, by position (broker ids are 1..N). */
  readonly brokers: readonly Broker[];
  /** Stops the brokers, the console and the zookeeper, and removes a data root it made. Safe to call twice. */
  stop(): Promise<void>;
  /** `await using cluster = await startCluster()` stops it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** The most brokers one process runs (each has its own zookeeper-session thread). */
const MAX_BROKERS = 9;

/** How often readiness is checked while starting: cheap reads of in-process state. */
const READY_POLL_MS = 2;

/** What has been started so far, to stop (also when the start fails halfway). */
interface Parts {
  zk: Zookeeper | null;
  brokers: RunningBroker[];
  console: ConsoleServer | null;
  dataDir: string;
  ownsDir: boolean;
}

/**
 * Starts a zookeeper and `brokers` brokers in this process, on free ports in
 * a temp directory, and resolves once a leader holds the lease, every broker
 * is in the in-sync set and the `topics` exist. Options are checked first; a
 * failure stops whatever had started.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { startCluster } from "./start_cluster.ts";
 * const cluster = await startCluster({ topics: ["orders"] });
 * assert.match(cluster.kafkaBootstrap, /^127\.0\.0\.1:\d+$/);
 * await cluster.stop();
 * ```
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<EmbeddedCluster> {
  const started = monotonicMs();
  const n = count(options.brokers, "brokers", 1, 1, MAX_BROKERS);
  const partitions = count(options.partitions, "partitions", DEFAULTS.defaultPartitions, 1, 1000);
  const topics = (options.topics ?? []).map((t) => topicOf(t, partitions));
  const host = options.host ?? DEFAULTS.host;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "yak-cluster-" });
  const parts: Parts = { zk: null, brokers: [], console: null, dataDir, ownsDir: options.dataDir === undefined };
  // A new data root (made here, or given empty): no broker ever held a lease there, so the first to register may
  // lead at once; a root with a cluster in it waits the zookeeper's start-up grace, as `yak zookeeper` does.
  const fresh = parts.ownsDir || await isEmptyDir(dataDir);
  try {
    const zk = parts.zk = await Zookeeper.start({
      dataDir,
      host,
      port: 0,
      heartbeatMs: DEFAULTS.heartbeatMs,
      sessionTimeoutMs: DEFAULTS.sessionTimeoutMs,
      maxFrameBytes: 1024 * 1024,
      echo: options.echo ?? false,
      startupGraceMs: fresh ? 0 : undefined,
    });
    const zkAddress = `${bracketed(host)}:${zk.port}`;
    const starts = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => startBrokerFromFlags(brokerFlags(options, i + 1, n, zkAddress, dataDir))),
    );
    parts.brokers = starts.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    for (const s of starts) if (s.status === "rejected") throw s.reason;
    if (options.console) parts.console = await startEmbeddedConsole(zk, host);
    const deadline = started + (options.readyTimeoutMs ?? 10_000);
    const leader = await waitForReady(zk, parts.brokers.map((b) => b.broker), deadline, dataDir);
    for (const t of topics) await leader.services.topics.create(t.name, t.partitions!, t.configs ?? {});
  } catch (err) {
    await stopParts(parts);
    throw err;
  }
  return embedded(parts, host, Math.round(monotonicMs() - started));
}

/** The cluster's addresses and its stop. */
function embedded(parts: Parts, host: string, readyMs: number): EmbeddedCluster {
  const brokers = parts.brokers.map((b) => b.broker);
  const address = (port: number | null) => `${bracketed(host)}:${port}`;
  let stopping: Promise<void> | null = null;
  const stop = () => stopping ??= stopParts(parts);
  return {
    bootstrap: brokers.map((b) => address(b.port)).join(","),
    kafkaBootstrap: brokers.map((b) => address(b.kafkaPort)).join(","),
    zookeeper: address(parts.zk!.port),
    nativeBootstrap: { brokers: brokers.map((b) => ({ host, port: b.port })) },
    dataDir: parts.dataDir,
    consoleUrl: parts.console?.url ?? null,
    readyMs,
    brokers,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Whether `dir` holds nothing (or does not exist yet). */
async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    for await (const _ of Deno.readDir(dir)) return false;
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return true;
    throw err;
  }
}

/** A whole number option within bounds, or its default. */
function count(value: number | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new YakError("INVALID_ARGUMENT", `startCluster: ${name} must be a whole number from ${min} to ${max}`);
  }
  return value;
}

/** A `topics` entry, checked (name, count, config keys and values) before anything starts. */
function topicOf(t: string | EmbeddedTopic, partitions: number): EmbeddedTopic {
  const topic = typeof t === "string" ? { name: t } : t;
  checkTopicName(topic.name);
  parseTopicConfigs(topic.configs);
  return { ...topic, partitions: count(topic.partitions, `partitions of '${topic.name}'`, partitions, 1, 1000) };
}

/** A host as it goes before `:port` (an IPv6 address in brackets). */
function bracketed(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** Broker `id`'s `yak broker` flags: free ports, this cluster's zookeeper and data root, the options. */
function brokerFlags(options: StartClusterOptions, id: number, n: number, zookeeper: string, dataDir: string) {
  const partitions = options.partitions ?? DEFAULTS.defaultPartitions;
  return [
    ...["--id", String(id), "--host", options.host ?? DEFAULTS.host, "--port", "0", "--kafka-port", "0"],
    ...["--zookeeper", zookeeper, "--data", dataDir],
    ...["--partitions", String(partitions), "--min-insync-replicas", String(Math.min(DEFAULTS.minInsyncReplicas, n))],
    ...(options.echo ? [] : ["--quiet"]),
    ...(options.brokerFlags ?? []),
  ];
}

/** The console on a free port, as `yak zookeeper --http-port 0` serves it. */
function startEmbeddedConsole(zk: Zookeeper, host: string): Promise<ConsoleServer> {
  return startConsole({
    host,
    port: 0,
    zookeeper: () => zk.status(),
    onChange: (fn) => zk.onChange(fn),
    opLogPath: zk.log.path,
    onError: (message, fields) => zk.log.write("http_error", { message, ...fields }),
  });
}

/**
 * Resolves with the leader once the lease names one, it leads that epoch,
 * and every broker is in the in-sync set; rejects at `deadline`.
 */
async function waitForReady(zk: Zookeeper, brokers: Broker[], deadline: number, dataDir: string): Promise<Broker> {
  while (true) {
    const lease = zk.lease;
    const leader = brokers.find((b) => b.opts.id === lease.leaderId);
    if (
      leader && leader.role() === "leader" && leader.epoch() === lease.epoch &&
      brokers.every((b) => lease.isr.includes(b.opts.id))
    ) {
      return leader;
    }
    if (monotonicMs() > deadline) {
      const registered = zk.status().brokers.map((b) => `${b.id}${b.alive ? "" : " (dead)"}`);
      const roles = brokers.map((b) => `${b.opts.id}: ${b.role()} in epoch ${b.epoch()}`);
      throw new YakError(
        "TIMEOUT",
        `startCluster: not ready in time (leader ${lease.leaderId ?? "none"} in epoch ${lease.epoch}, in sync ` +
          `[${lease.isr.join(", ")}] of ${brokers.length} brokers; registered: [${registered.join(", ")}]; ` +
          `brokers ${roles.join(", ")}; the operation logs are in ${dataDir})`,
      );
    }
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
}

/** Stops what was started: the brokers (together), their metrics servers, the console, the zookeeper, the dir. */
async function stopParts(parts: Parts): Promise<void> {
  await Promise.all(parts.brokers.map(async ({ broker, http }) => {
    await broker.stop();
    await http?.close();
  }));
  await parts.console?.close();
  await parts.zk?.stop();
  if (parts.ownsDir) await Deno.remove(parts.dataDir, { recursive: true }).catch(() => {});
}
