/**
 * `yak zookeeper`: membership, heartbeats, elections and the lease file.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { Zookeeper } from "../zookeeper/zookeeper.ts";
import { startConsole } from "../console/console_server.ts";
import {
  CONNECTION_FLAGS,
  CONNECTION_USAGE,
  connectionsOf,
  dataRootOf,
  FILE_FLAGS,
  helpRequested,
  integer,
  parse,
  text,
  TIMING_FLAGS,
  timingOf,
  useFileModesOf,
  withPortFlag,
} from "./args.ts";
import { serveUntilSignal } from "./serve_until_signal.ts";

const USAGE = `
yak zookeeper [--port 2181] [--host 127.0.0.1] [--data data]
              [--heartbeat-ms 250] [--session-timeout-ms 1000] [--expected-brokers N] [--http-port P]
              [--max-connections 1024] [--max-connections-per-ip 512] [--auth-timeout-ms 10000]
              [--connections-max-idle-ms 600000] [--queued-max-request-bytes 134217728]
              [--shared-files] [--quiet]

Watches broker heartbeats, elects the leader, and writes the lease to
DATA/zookeeper/leader.lease. Operation log: DATA/zookeeper/zookeeper.log.
Files are the owner's alone (directories 0700, files 0600); --shared-files
lets the owner's group read them (0750, 0640). A data root that belongs to
another user is refused.
--http-port serves the web console on host:P (0 picks a free port; the URL is
printed); off without it. With --auth-token the console needs the token.
Without TLS it keeps at most 256 connections, and closes one whose request is
not whole 10 s after its first byte or that is idle for 60 s.
With no leader at start it waits --session-timeout-ms for every broker to
register before it elects; --expected-brokers N elects as soon as N have
('yak cluster' passes its broker count).
${CONNECTION_USAGE}
`;

/** Runs the zookeeper until SIGINT/SIGTERM. */
export async function zookeeperCommand(args: string[]): Promise<number> {
  const { values } = parse("zookeeper", args, {
    port: { type: "string" },
    host: { type: "string" },
    data: { type: "string" },
    ...TIMING_FLAGS,
    ...FILE_FLAGS,
    "http-port": { type: "string" },
    "expected-brokers": { type: "string" },
    ...CONNECTION_FLAGS,
    quiet: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const httpPort = integer(values, "http-port", undefined, 0, 65535);
  const port = integer(values, "port", DEFAULTS.zookeeperPort, 0, 65535);
  const connections = connectionsOf(values);
  useFileModesOf(values);
  const zk = await Zookeeper.start({
    dataDir: dataRootOf(values),
    host: text(values, "host") ?? DEFAULTS.host,
    port,
    ...timingOf(values),
    maxFrameBytes: 1024 * 1024,
    connections: connections.limits,
    queuedMaxRequestBytes: connections.queuedMaxRequestBytes,
    echo: !values.quiet,
    expectedBrokers: integer(values, "expected-brokers", undefined, 1, 1_000_000),
  }).catch((err) => {
    throw withPortFlag(err, port, "--port");
  });
  const web = httpPort === undefined ? null : await startConsole({
    host: text(values, "host") ?? DEFAULTS.host,
    port: httpPort,
    zookeeper: () => zk.status(),
    onChange: (fn) => zk.onChange(fn),
    opLogPath: zk.log.path,
    onError: (message, fields) => zk.log.write("http_error", { message, ...fields }),
  }).catch(async (err) => {
    await zk.stop();
    throw err;
  });
  console.log(
    `zookeeper listening on ${text(values, "host") ?? DEFAULTS.host}:${zk.port}`,
  );
  if (web) console.log(`console on ${web.url}`);
  await serveUntilSignal(async () => {
    await web?.close();
    await zk.stop();
  });
  return 0;
}
