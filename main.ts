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
import { startCommand } from "./src/cli/start.ts";
import { statusCommand } from "./src/cli/status.ts";
import { topicsCommand } from "./src/cli/topics.ts";
import { transactionsCommand } from "./src/cli/transactions.ts";
import { zookeeperCommand } from "./src/cli/zookeeper.ts";
import { applySecurityFlags } from "./src/cli/security_flags.ts";
import { nearest } from "./src/cli/args.ts";
import { toYakError } from "./src/errors.ts";
import { YAK_VERSION } from "./src/version.ts";

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  zookeeper: zookeeperCommand,
  broker: brokerCommand,
  produce: produceCommand,
  consume: consumeCommand,
  kill: killCommand,
  start: startCommand,
  cluster: clusterCommand,
  status: statusCommand,
  topics: topicsCommand,
  groups: groupsCommand,
  transactions: transactionsCommand,
  logs: logsCommand,
};

const USAGE = `yak: yet another Kafka

usage: yak <command> [flags]    (yak <command> --help for its flags)
       yak --version

  zookeeper     membership, heartbeats, leader election, the lease file
  broker        storage, replication and client requests (--id N)
  produce       publish stdin lines (or --message) to a topic
  consume       print a topic's records to stdout
  kill          kill a broker (--broker N or --leader) to show failover
  start         bring a broker of the running 'yak cluster' back (--broker N)
  cluster       zookeeper + 3 brokers in one terminal, for development
  status        brokers, leader, epoch, topics, offsets, lag, groups
  topics        create, list, describe, add partitions, delete, configs
  groups        list, describe, reset offsets, delete consumer groups
  transactions  transactional ids and their open transactions
  logs          read the operation logs

every command also takes --auth-token T (or YAK_AUTH_TOKEN) and, for TLS,
--tls-cert FILE --tls-key FILE (servers) / --tls-ca FILE (clients).`;

/** Every usage error exits with this code, as Kafka's tools and kcat do. */
const USAGE_EXIT = 1;

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    console.error(USAGE);
    return USAGE_EXIT;
  }
  if (name === "help" || name === "--help" || name === "-h") {
    console.log(USAGE);
    return 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`yak ${YAK_VERSION} (deno ${Deno.version.deno}, ${Deno.build.os}-${Deno.build.arch})`);
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    const hint = nearest(name.replace(/^-+/, ""), Object.keys(COMMANDS));
    console.error(
      `yak: unknown command '${name}'${hint ? `; did you mean 'yak ${hint}'?` : ""}\n\n${USAGE}`,
    );
    return USAGE_EXIT;
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
