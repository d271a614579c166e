/**
 * `yak broker`: storage, replication and client requests.
 *
 * @module
 */
import { Broker } from "../broker/broker.ts";
import type { BrokerOptions } from "../broker/context.ts";
import { nativeCodec } from "../native/handlers.ts";
import { kafkaCodec } from "../kafka/server.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import { parseHostPort } from "../protocol/connection.ts";
import { RequestMemory } from "../protocol/listener.ts";
import {
  CONNECTION_FLAGS,
  CONNECTION_USAGE,
  connectionsOf,
  dataRootOf,
  FILE_FLAGS,
  type Flags,
  helpRequested,
  integer,
  parse,
  required,
  text,
  TIMING_FLAGS,
  timingOf,
  useFileModesOf,
  type Values,
  withPortFlag,
} from "./args.ts";
import { serveUntilSignal } from "./serve_until_signal.ts";
import { serveMetrics } from "../console/metrics_http.ts";
import type { BrokerServices } from "../broker/services.ts";
import type { HttpServer } from "../console/http.ts";

const USAGE = `
yak broker --id N [--port P] [--host 127.0.0.1] [--zookeeper HOST:PORT] [--data data]
           [--partitions 3] [--segment-bytes 67108864] [--heartbeat-ms 250]
           [--session-timeout-ms 1000] [--replica-lag-ms 10000] [--min-insync-replicas 2]
           [--retention-ms 604800000] [--retention-bytes -1] [--segment-ms 604800000]
           [--retention-check-ms 60000] [--max-message-bytes 1048576]
           [--scrub-bytes-per-sec 4194304] [--scrub-interval-ms 3600000]
           [--cleaner-check-ms 15000] [--cleaner-io-bytes-per-sec 8388608]
           [--max-topics 2000] [--max-partitions-per-broker 10000]
           [--max-group-bytes 16777216] [--max-group-state-bytes 268435456] [--auto-create-topics-enable true]
           [--transaction-max-timeout-ms 900000]
           [--kafka-port P] [--advertised-host HOST] [--advertised-native-port P]
           [--max-connections 1024] [--max-connections-per-ip 512] [--auth-timeout-ms 10000]
           [--connections-max-idle-ms 600000] [--queued-max-request-bytes 134217728]
           [--http-port P] [--shared-files] [--quiet]

Serves the native protocol on --port (default 9091+N; 0 picks a free port) and
the Kafka wire protocol on --kafka-port (default: --port + 100; 0 picks a free
port; -1 turns it off). --advertised-host is the host Kafka clients are told
to reach this broker by (default --host); it is registered with the zookeeper,
so every broker's Metadata names this one by it. --advertised-native-port is
the native port the zookeeper hands out for this broker (to followers and
clients) when it is reached through a port forward or proxy (default: the
bound port).
Files: DATA/broker-N/ (topics, broker.pid, broker.log), the owner's alone
(directories 0700, files 0600); --shared-files lets the owner's group read
them (0750, 0640). A data root that belongs to another user is refused.
--zookeeper defaults to $YAK_ZOOKEEPER, else 127.0.0.1:2181.
acks=all is refused with NOT_ENOUGH_REPLICAS (and retried by producers) while
fewer than --min-insync-replicas brokers are in sync; use 1 for a one-broker cluster.
Every stored record carries a checksum. The scrubber re-reads closed segments
in the background at --scrub-bytes-per-sec (0 turns it off), one pass at most
every --scrub-interval-ms; a damaged record is logged and copied again from a
healthy replica.
Compacted topics (cleanup.policy=compact): the leader looks for partitions to
clean every --cleaner-check-ms; every broker's cleaner reads and writes at most
--cleaner-io-bytes-per-sec (0: no limit).
--auto-create-topics-enable false: a topic is made only by 'yak topics
--create' or CreateTopics, never by its first produce or metadata request
(Kafka's auto.create.topics.enable; give every broker the same).
--max-topics and --max-partitions-per-broker: the leader refuses topics and
partitions past them (give every broker the same; lower them for a small disk).
--max-group-bytes and --max-group-state-bytes: what one consumer group's
members, and all groups' members together, may hold in the leader's memory
(subscriptions, assignments, ids); a join or assignment past either is refused
with GROUP_MAX_SIZE_REACHED.
--transaction-max-timeout-ms: the longest transaction timeout a producer may
ask for (Kafka's transaction.max.timeout.ms; more is INVALID_TRANSACTION_TIMEOUT).
An open transaction holds read_committed consumers back, so an abandoned one
is aborted by the leader once its timeout passes.
--http-port serves GET /metrics (Prometheus text format) on host:P (0 picks a
free port; the URL is printed); off without it. With --auth-token it needs
'Authorization: Bearer TOKEN'. Without TLS it keeps at most 256 connections,
and closes one whose request is not whole 10 s after its first byte or that
is idle for 60 s.
${CONNECTION_USAGE}
The limits apply to the native and the Kafka port each; the budget is the
broker's.
`;

const FLAGS: Flags = {
  id: { type: "string" },
  port: { type: "string" },
  host: { type: "string" },
  zookeeper: { type: "string" },
  data: { type: "string" },
  partitions: { type: "string" },
  "segment-bytes": { type: "string" },
  ...TIMING_FLAGS,
  "replica-lag-ms": { type: "string" },
  "scrub-bytes-per-sec": { type: "string" },
  "scrub-interval-ms": { type: "string" },
  "min-insync-replicas": { type: "string" },
  "retention-ms": { type: "string" },
  "retention-bytes": { type: "string" },
  "segment-ms": { type: "string" },
  "retention-check-ms": { type: "string" },
  "cleaner-check-ms": { type: "string" },
  "cleaner-io-bytes-per-sec": { type: "string" },
  "max-message-bytes": { type: "string" },
  "max-topics": { type: "string" },
  "auto-create-topics-enable": { type: "string" },
  "max-partitions-per-broker": { type: "string" },
  "max-group-bytes": { type: "string" },
  "transaction-max-timeout-ms": { type: "string" },
  "max-group-state-bytes": { type: "string" },
  "kafka-port": { type: "string" },
  "advertised-host": { type: "string" },
  "advertised-native-port": { type: "string" },
  "http-port": { type: "string" },
  ...CONNECTION_FLAGS,
  ...FILE_FLAGS,
  quiet: { type: "boolean" },
};

/** What `yak broker`'s flags ask for. */
interface BrokerCliOptions {
  /** The broker's options, but for `listeners` (the metrics server's address is known once it listens). */
  broker: BrokerOptions;
  /** `--http-port`: /metrics; undefined for none. */
  httpPort: number | undefined;
  /** `--kafka-port`; -1 for none. */
  kafkaPort: number;
  advertisedHost: string | undefined;
  /** The budget both ports' large requests share. */
  queuedMaxRequestBytes: number;
}

/** A running broker and its metrics server. */
export interface RunningBroker {
  broker: Broker;
  http: HttpServer | null;
}

/** Runs a broker until SIGINT/SIGTERM. */
export async function brokerCommand(args: string[]): Promise<number> {
  const { values } = parse("broker", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const options = brokerOptionsOf(values);
  useFileModesOf(values);
  const running = await startBroker(options);
  printListening(running);
  const stop = async () => {
    await running.broker.stop();
    await running.http?.close();
  };
  const refused = await Promise.race([
    serveUntilSignal(stop).then(() => null),
    running.broker.fatal,
  ]);
  if (refused) {
    await stop();
    throw refused;
  }
  return 0;
}

/**
 * Starts a broker from `yak broker` flags, with the command's defaults and
 * checks, but without waiting for a signal: startCluster (src/embed/) runs
 * brokers in its own process this way. Stop it with `broker.stop()` (and
 * `http?.close()`).
 */
export async function startBrokerFromFlags(args: string[]): Promise<RunningBroker> {
  const { values } = parse("broker", args, FLAGS);
  return await startBroker(brokerOptionsOf(values));
}

/** The flags, checked, with their defaults. */
function brokerOptionsOf(values: Values): BrokerCliOptions {
  required(values, "id", "broker");
  const connections = connectionsOf(values);
  const id = integer(values, "id", 0, 0, 1_000_000);
  const zk = parseHostPort(
    text(values, "zookeeper") ?? Deno.env.get("YAK_ZOOKEEPER") ??
      `${DEFAULTS.host}:${DEFAULTS.zookeeperPort}`,
  );
  const host = text(values, "host") ?? DEFAULTS.host;
  const httpPort = integer(values, "http-port", undefined, 0, 65535);
  const port = integer(values, "port", DEFAULTS.brokerBasePort + id - 1, 0, 65535);
  if (values.port === undefined && port > 65535) {
    // The listener would fail later with "Invalid port (out of range)".
    throw new YakError(
      "INVALID_ARGUMENT",
      `--id ${id} puts the default port at ${port} (${DEFAULTS.brokerBasePort - 1} + --id), past 65535: give --port P`,
    );
  }
  const broker: BrokerOptions = {
    id,
    host,
    port,
    advertisedPort: integer(values, "advertised-native-port", undefined, 1, 65535),
    dataDir: dataRootOf(values),
    zkHost: zk.host,
    zkPort: zk.port,
    ...timingOf(values),
    ...storageOf(values),
    connections: connections.limits,
    ...limitsOf(values),
    echo: !values.quiet,
    givenFlags: Object.keys(values),
  };
  return {
    broker,
    httpPort,
    // Kafka's port follows the native one (9092 -> 9192); with --port 0 it is picked freely too.
    kafkaPort: kafkaPortOf(values, port),
    advertisedHost: text(values, "advertised-host"),
    queuedMaxRequestBytes: connections.queuedMaxRequestBytes,
  };
}

/** `--kafka-port`, by default --port + 100 (refused up front when that passes 65535). */
function kafkaPortOf(values: Values, port: number): number {
  const kafkaPort = integer(values, "kafka-port", port === 0 ? 0 : port + 100, -1, 65535);
  if (values["kafka-port"] === undefined && kafkaPort > 65535) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--port ${port} puts the Kafka port at ${kafkaPort} (--port + 100), past 65535: give --kafka-port P ` +
        `(-1: no Kafka port) or a --port of at most ${65535 - 100}`,
    );
  }
  return kafkaPort;
}

/** Replication and the log's layout: the flags, and the fixed sizes beside them. */
function storageOf(values: Values) {
  return {
    replicaLagMs: integer(values, "replica-lag-ms", DEFAULTS.replicaLagMs, 50, 600_000),
    replicaFetchWaitMs: DEFAULTS.replicaFetchWaitMs,
    replicaFetchMaxBytes: DEFAULTS.replicaFetchMaxBytes,
    defaultPartitions: integer(values, "partitions", DEFAULTS.defaultPartitions, 1, DEFAULTS.maxPartitions),
    segmentBytes: integer(values, "segment-bytes", DEFAULTS.segmentBytes, 1024, 2 ** 31 - 1),
    indexIntervalBytes: DEFAULTS.indexIntervalBytes,
    producerStateScanBytes: DEFAULTS.producerStateScanBytes,
    maxFrameBytes: DEFAULTS.maxFrameBytes,
    maxRecordBytes: integer(values, "max-message-bytes", DEFAULTS.maxRecordBytes, 1, 16 * 1024 * 1024 - 64 * 1024),
    maxBatchRecords: DEFAULTS.maxBatchRecords,
    maxFetchBytes: DEFAULTS.maxFetchBytes,
    maxFetchWaitMs: DEFAULTS.maxFetchWaitMs,
  };
}

/** What the leader lets the cluster hold, retention, and the scrubber's pace. */
function limitsOf(values: Values) {
  return {
    maxPartitions: DEFAULTS.maxPartitions,
    maxTopics: integer(values, "max-topics", DEFAULTS.maxTopics, 1, DEFAULTS.maxTopics),
    autoCreateTopics: onOff(values, "auto-create-topics-enable", DEFAULTS.autoCreateTopics),
    maxPartitionsPerBroker: integer(
      values,
      "max-partitions-per-broker",
      DEFAULTS.maxPartitionsPerBroker,
      1,
      DEFAULTS.maxPartitionsPerBroker,
    ),
    maxGroupBytes: integer(values, "max-group-bytes", DEFAULTS.maxGroupBytes, 1024, 2 ** 40),
    maxGroupStateBytes: integer(values, "max-group-state-bytes", DEFAULTS.maxGroupStateBytes, 1024, 2 ** 40),
    requestTimeoutMs: DEFAULTS.requestTimeoutMs,
    transactionMaxTimeoutMs: integer(
      values,
      "transaction-max-timeout-ms",
      DEFAULTS.transactionMaxTimeoutMs,
      1,
      2 ** 31 - 1,
    ),
    minInsyncReplicas: integer(values, "min-insync-replicas", DEFAULTS.minInsyncReplicas, 1, 1000),
    retentionMs: integer(values, "retention-ms", DEFAULTS.retentionMs, -1, Number.MAX_SAFE_INTEGER),
    retentionBytes: integer(values, "retention-bytes", DEFAULTS.retentionBytes, -1, Number.MAX_SAFE_INTEGER),
    segmentMs: integer(values, "segment-ms", DEFAULTS.segmentMs, 0, Number.MAX_SAFE_INTEGER),
    retentionCheckMs: integer(values, "retention-check-ms", DEFAULTS.retentionCheckMs, 50, 24 * 3600 * 1000),
    cleanerCheckMs: integer(values, "cleaner-check-ms", DEFAULTS.cleanerCheckMs, 50, 24 * 3600 * 1000),
    cleanerIoBytesPerSec: integer(values, "cleaner-io-bytes-per-sec", DEFAULTS.cleanerIoBytesPerSec, 0, 2 ** 40),
    scrubBytesPerSec: integer(values, "scrub-bytes-per-sec", DEFAULTS.scrubBytesPerSec, 0, 2 ** 40),
    scrubIntervalMs: integer(values, "scrub-interval-ms", DEFAULTS.scrubIntervalMs, 100, 30 * 24 * 3600 * 1000),
  };
}

/** Starts the metrics server (if asked), then the broker with its native and Kafka listeners. */
async function startBroker(options: BrokerCliOptions): Promise<RunningBroker> {
  const { host, port } = options.broker;
  // Started first, so the broker can name it in its status; it answers 503 until the broker is up.
  let services: BrokerServices | null = null;
  const http = options.httpPort === undefined ? null : await serveMetrics({
    host,
    port: options.httpPort,
    metrics: () => services?.metricsText() ?? null,
  });
  const opts: BrokerOptions = {
    ...options.broker,
    ...(http ? { listeners: { http: `${http.host}:${http.port}` } } : {}),
  };
  // One budget for both ports' large requests.
  const memory = new RequestMemory(options.queuedMaxRequestBytes);
  const kafka = options.kafkaPort === -1 ? undefined : kafkaCodec({
    host,
    port: options.kafkaPort,
    advertisedHost: options.advertisedHost,
    maxFrameBytes: opts.maxFrameBytes,
    limits: opts.connections,
    memory,
  });
  const broker = await Broker.start(opts, nativeCodec(opts, memory), kafka).catch(async (err) => {
    await http?.close();
    // Either listener's port may be taken: name the flag that moves it.
    throw withPortFlag(withPortFlag(err, port, "--port"), options.kafkaPort, "--kafka-port");
  });
  services = broker.services;
  return { broker, http };
}

/** Two lines, the native one last: scripts wait for "listening on" and find the Kafka line already there. */
function printListening({ broker, http }: RunningBroker): void {
  const { id, host } = broker.opts;
  if (broker.kafkaPort !== null) console.log(`broker ${id} speaks the Kafka protocol on ${host}:${broker.kafkaPort}`);
  console.log(`broker ${id} listening on ${host}:${broker.port}`);
  if (http) console.log(`broker ${id} metrics on ${http.url}metrics`);
}

/** A `true`/`false` flag, or the default. */
function onOff(values: Values, name: string, fallback: boolean): boolean {
  const v = text(values, name);
  if (v === undefined) return fallback;
  if (v === "true" || v === "false") return v === "true";
  throw new YakError("INVALID_ARGUMENT", `--${name} is true or false, not '${v}' (see 'yak broker --help')`);
}
