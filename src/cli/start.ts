/**
 * `yak start --broker N`: brings a broker of the running `yak cluster` back
 * (after `yak kill` or a crash). The cluster starts it again itself, with the
 * flags it had, so its output stays in the cluster's terminal and Ctrl-C
 * there stops it with the rest.
 *
 * @module
 */
import { join } from "node:path";
import { YakError } from "../errors.ts";
import { dataRootOf, type Flags, helpRequested, integer, parse } from "./args.ts";
import { askCluster, CLUSTER_FILE, readClusterFile } from "./cluster_file.ts";

const USAGE = `
yak start --broker N [--data DIR]

Brings broker N of the running 'yak cluster' back (after 'yak kill', or a
crash): the cluster starts it again with the flags it had, prints its output
with the rest, and stops it on Ctrl-C. Answers once the broker is back in the
in-sync set (or, with far to catch up, once it listens). The cluster is found
through DIR/cluster.json, which it writes while it runs; the data root is
--data, else $YAK_DATA, else ./data (the repository's data/ through ./yak).
`;

/** A broker may take a while to open its logs, then up to 10 s to catch up: the cluster answers by then. */
const ANSWER_WITHIN_MS = 120_000;

const FLAGS: Flags = {
  broker: { type: "string" },
  data: { type: "string" },
};

/** Runs `yak start`. */
export async function startCommand(args: string[]): Promise<number> {
  const { values } = parse("start", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const broker = integer(values, "broker", undefined, 0, 1_000_000);
  if (broker === undefined) throw new YakError("INVALID_ARGUMENT", "say which broker: --broker N");
  const data = dataRootOf(values);
  const file = await readClusterFile(data);
  if (file === null) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `no yak cluster runs on ${data} (${join(data, CLUSTER_FILE)} is missing or unreadable): start one with ` +
        `'yak cluster'` +
        `${values.data === undefined ? ", or give the data root it runs on with --data" : ""}`,
    );
  }
  let reply;
  try {
    reply = await askCluster(file, { type: "start", broker }, ANSWER_WITHIN_MS);
  } catch (err) {
    if (!(err instanceof YakError) || err.code !== "CONNECTION") throw err;
    throw new YakError(
      "UNAVAILABLE",
      `${err.message}: ${join(data, CLUSTER_FILE)} is left from a yak cluster that is gone; start one with ` +
        `'yak cluster'`,
    );
  }
  if (!reply.ok) throw new YakError("INVALID_ARGUMENT", reply.error);
  console.log(reply.message);
  return 0;
}
