/**
 * yak: one program whose subcommands are the processes of a small Kafka-like
 * cluster. This file only picks the subcommand and reports its errors.
 *
 * @module
 */
import { applySecurityFlags } from "./src/cli/security_flags.ts";
import { nearest } from "./src/cli/args.ts";
import { toYakError } from "./src/errors.ts";
import { YAK_VERSION } from "./src/version.ts";

type Command = (args: string[]) => Promise<number>;

/**
 * Each subcommand's module, loaded when that subcommand runs: a client
 * (`yak produce` in a shell pipeline) then starts without compiling the
 * broker's and every other command's code.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  zookeeper: async () => (await import("./src/cli/zookeeper.ts")).zookeeperCommand,
  broker: async () => (await import("./src/cli/broker.ts")).brokerCommand,
  produce: async () => (await import("./src/cli/produce.ts")).produceCommand,
  consume: async () => (await import("./src/cli/consume.ts")).consumeCommand,
  kill: async () => (await import("./src/cli/kill.ts")).killCommand,
  start: async () => (await import("./src/cli/start.ts")).startCommand,
  cluster: async () => (await import("./src/cli/cluster.ts")).clusterCommand,
  status: async () => (await import("./src/cli/status.ts")).statusCommand,
  topics: async () => (await import("./src/cli/topics.ts")).topicsCommand,
  groups: async () => (await import("./src/cli/groups.ts")).groupsCommand,
  transactions: async () => (await import("./src/cli/transactions.ts")).transactionsCommand,
  logs: async () => (await import("./src/cli/logs.ts")).logsCommand,
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
    // `yak help produce` is `yak produce --help`, as git and go read it.
    if (name === "help" && rest.length > 0) return await main([rest[0], "--help"]);
    console.log(USAGE);
    return 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(`yak ${YAK_VERSION} (deno ${Deno.version.deno}, ${Deno.build.os}-${Deno.build.arch})`);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    const hint = nearest(name.replace(/^-+/, ""), Object.keys(COMMANDS));
    console.error(
      `yak: unknown command '${name}'${hint ? `; did you mean 'yak ${hint}'?` : ""}\n\n${USAGE}`,
    );
    return USAGE_EXIT;
  }
  try {
    const command = await load();
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
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    // Only the top level's own output gets here (a subcommand reports its errors): `yak --help > /dev/full`.
    console.error(`yak: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  Deno.exit(code);
}
