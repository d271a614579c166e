/**
 * `yak cluster`: a zookeeper and N brokers as child processes of one
 * command, their output prefixed, all stopped together on Ctrl-C.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { DEFAULTS, RUN_FLAGS } from "../config.ts";
import { security } from "../protocol/security.ts";
import { helpRequested, integer, parse, text } from "./args.ts";

const USAGE = `
yak cluster [--brokers 3] [--data data] [--zookeeper-port 2181] [--base-port 9092]
            [--partitions 3] [--http-port 8080]

Starts a zookeeper and N brokers (broker i on base-port+i-1) in this terminal.
The web console is on http-port, broker i's /metrics on http-port+i (0: free
ports, each printed by its process).
Ctrl-C stops them all. Try, in another terminal:
  seq 1 1000 | yak produce --topic demo
  yak consume --topic demo --from-beginning --max-messages 1000 | tail -1
  yak kill --leader; yak status
`;

/**
 * The command line that runs this same program with other arguments: the
 * compiled binary itself, or `deno run ... main.ts`.
 *
 * @example
 * ```ts
 * import { selfCommand } from "./cluster.ts";
 * const { command, args } = selfCommand(["status"]);
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
  proc: Deno.ChildProcess;
  done: Promise<void>;
}

async function pipePrefixed(
  stream: ReadableStream<Uint8Array>,
  prefix: string,
  out: typeof Deno.stdout,
) {
  const encoder = new TextEncoder();
  let carry = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const lines = (carry + chunk).split("\n");
    carry = lines.pop()!;
    if (lines.length > 0) {
      await out.write(
        encoder.encode(lines.map((l) => `${prefix} ${l}`).join("\n") + "\n"),
      ).catch(() => {});
    }
  }
  if (carry) {
    await out.write(encoder.encode(`${prefix} ${carry}\n`)).catch(() => {});
  }
}

/** Runs `yak cluster` until Ctrl-C. */
export async function clusterCommand(args: string[]): Promise<number> {
  const { values } = parse("cluster", args, {
    brokers: { type: "string" },
    data: { type: "string" },
    "zookeeper-port": { type: "string" },
    "base-port": { type: "string" },
    partitions: { type: "string" },
    "http-port": { type: "string" },
  });
  if (helpRequested(values, USAGE)) return 0;
  const brokers = integer(values, "brokers", 3, 1, 9);
  const data = text(values, "data") ?? DEFAULTS.dataDir;
  const zkPort = integer(
    values,
    "zookeeper-port",
    DEFAULTS.zookeeperPort,
    1,
    65535,
  );
  const basePort = integer(
    values,
    "base-port",
    DEFAULTS.brokerBasePort,
    1,
    65535 - 9,
  );
  const partitions = integer(
    values,
    "partitions",
    DEFAULTS.defaultPartitions,
    1,
    DEFAULTS.maxPartitions,
  );
  const httpPort = integer(values, "http-port", DEFAULTS.consoleHttpPort, 0, 65535 - 9);
  const httpPortOf = (i: number) => String(httpPort === 0 ? 0 : httpPort + i);
  const children: Child[] = [];
  const spawn = (name: string, sub: string[]) => {
    const { command, args } = selfCommand(sub);
    // A token given as a flag reaches the children through their environment.
    const token = security().authToken;
    const env = token === undefined ? undefined : { YAK_AUTH_TOKEN: token };
    const proc = new Deno.Command(command, { args, stdout: "piped", stderr: "piped", stdin: "null", env }).spawn();
    const prefix = `[${name}]`;
    const done = Promise.all([
      pipePrefixed(proc.stdout, prefix, Deno.stdout),
      pipePrefixed(proc.stderr, prefix, Deno.stdout),
      proc.status.then((s) => {
        if (!stopping) {
          console.log(`${prefix} exited (${s.signal ?? `code ${s.code}`})`);
        }
      }),
    ]).then(() => {});
    children.push({ name, proc, done });
  };
  let stopping = false;
  spawn("zk", ["zookeeper", "--port", String(zkPort), "--data", data, "--http-port", httpPortOf(0)]);
  for (let i = 1; i <= brokers; i++) {
    spawn(`b${i}`, [
      "broker",
      "--id",
      String(i),
      "--port",
      String(basePort + i - 1),
      "--zookeeper",
      `127.0.0.1:${zkPort}`,
      "--data",
      data,
      "--partitions",
      String(partitions),
      // Two copies for acks=all, as the default promises, unless there are fewer brokers.
      "--min-insync-replicas",
      String(Math.min(DEFAULTS.minInsyncReplicas, brokers)),
      "--http-port",
      httpPortOf(i),
    ]);
  }
  console.log(
    `[cluster] zookeeper on 127.0.0.1:${zkPort}, brokers on ports ${basePort}-${
      basePort + brokers - 1
    } (Kafka clients: --bootstrap-server 127.0.0.1:${basePort + 100}), data in ${data}/; Ctrl-C stops all`,
  );
  if (httpPort !== 0) {
    console.log(
      `[cluster] console on http://127.0.0.1:${httpPort}/, broker metrics on ` +
        `http://127.0.0.1:${httpPort + 1}-${httpPort + brokers}/metrics`,
    );
  }
  await new Promise<void>((resolve) => {
    const onSignal = () => {
      if (stopping) return;
      stopping = true;
      console.log("[cluster] stopping");
      for (const c of children) {
        try {
          c.proc.kill("SIGTERM");
        } catch { /* already gone */ }
      }
      resolve();
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });
  await Promise.all(children.map((c) => c.done));
  console.log("[cluster] stopped");
  return 0;
}
