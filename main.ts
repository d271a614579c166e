/**
 * yak: one program whose subcommands are the processes of a small Kafka-like
 * cluster. This file only picks the subcommand and reports its errors.
 *
 * @module
 */
import { brokerCommand } from "./src/cli/broker.ts";
import { clusterCommand } from "./src/cli/cluster.ts";
import { consumeCommand } from "./src/cli/consume.ts";
import { groupsCommand } from "./src/cli/groups.ts";
import { killCommand } from "./src/cli/kill.ts";
import { logsCommand } from "./src/cli/logs.ts";
import { produceCommand } from "./src/cli/produce.ts";
import { statusCommand } from "./src/cli/status.ts";
import { topicsCommand } from "./src/cli/topics.ts";
import { zookeeperCommand } from "./src/cli/zookeeper.ts";
import { applySecurityFlags } from "./src/cli/security_flags.ts";
import { toYakError } from "./src/errors.ts";

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  zookeeper: zookeeperCommand,
  broker: brokerCommand,
  produce: produceCommand,
  consume: consumeCommand,
  kill: killCommand,
  cluster: clusterCommand,
  status: statusCommand,
  topics: topicsCommand,
  groups: groupsCommand,
  logs: logsCommand,
};

const USAGE = `yak: yet another Kafka

usage: yak <command> [flags]    (yak <command> --help for its flags)

  zookeeper   membership, heartbeats, leader election, the lease file
  broker      storage, replication and client requests (--id N)
  produce     publish stdin lines (or --message) to a topic
  consume     print a topic's records to stdout
  kill        kill a broker (--broker N or --leader) to show failover
  cluster     zookeeper + 3 brokers in one terminal, for development
  status      brokers, leader, epoch, topics, offsets, lag
  topics      create, list, describe, add partitions, delete, configs
  groups      list, describe, reset offsets, delete consumer groups
  logs        read the operation logs

every command also takes --auth-token T (or YAK_AUTH_TOKEN) and, for TLS,
--tls-cert FILE --tls-key FILE (servers) / --tls-ca FILE (clients).`;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (
    name === undefined || name === "help" || name === "--help" || name === "-h"
  ) {
    console.log(USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`yak: unknown command '${name}'\n\n${USAGE}`);
    return 2;
  }
  try {
    return await command(applySecurityFlags(rest));
  } catch (err) {
    const yerr = toYakError(err);
    console.error(`yak ${name}: ${yerr.message}`);
    if (Deno.env.get("YAK_DEBUG") && err instanceof Error) {
      console.error(err.stack);
    }
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
