/**
 * `yak zookeeper`: membership, heartbeats, elections and the lease file.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { Zookeeper } from "../zookeeper/zookeeper.ts";
import { dataRootOf, helpRequested, integer, parse, text, TIMING_FLAGS, timingOf, withPortFlag } from "./args.ts";
import { serveUntilSignal } from "./serve_until_signal.ts";

const USAGE = `
yak zookeeper [--port 2181] [--host 127.0.0.1] [--data data]
              [--heartbeat-ms 250] [--session-timeout-ms 1000] [--quiet]

Watches broker heartbeats, elects the leader, and writes the lease to
DATA/zookeeper/leader.lease. Operation log: DATA/zookeeper/zookeeper.log.
`;

/** Runs the zookeeper until SIGINT/SIGTERM. */
export async function zookeeperCommand(args: string[]): Promise<number> {
  const { values } = parse("zookeeper", args, {
    port: { type: "string" },
    host: { type: "string" },
    data: { type: "string" },
    ...TIMING_FLAGS,
    quiet: { type: "boolean" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const port = integer(values, "port", DEFAULTS.zookeeperPort, 0, 65535);
  const zk = await Zookeeper.start({
    dataDir: dataRootOf(values),
    host: text(values, "host") ?? DEFAULTS.host,
    port,
    ...timingOf(values),
    maxFrameBytes: 1024 * 1024,
    maxConnections: DEFAULTS.maxConnections,
    echo: !values.quiet,
  }).catch((err) => {
    throw withPortFlag(err, port, "--port");
  });
  console.log(
    `zookeeper listening on ${text(values, "host") ?? DEFAULTS.host}:${zk.port}`,
  );
  await serveUntilSignal(() => zk.stop());
  return 0;
}
