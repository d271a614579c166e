/**
 * `yak logs`: reads the operation logs, formatted for people.
 *
 * @module
 */
import { join } from "node:path";
import { formatEntry, type OpLogEntry } from "../op_log.ts";
import { YakError } from "../errors.ts";
import { dataRootOf, helpRequested, parse } from "./args.ts";

const USAGE = `
yak logs zookeeper [--follow] [--json] [--data DIR]
yak logs broker N  [--follow] [--json] [--data DIR]

Reads DIR/zookeeper/zookeeper.log or DIR/broker-N/broker.log. The data root
is --data, else $YAK_DATA, else ./data (the repository's data/ through
'deno task' or ./yak); the file read is named on stderr.
`;

/** Runs `yak logs`. */
// deno-lint-ignore yak/max-function-lines
export async function logsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse("logs", args, {
    follow: { type: "boolean", short: "f" },
    json: { type: "boolean" },
    data: { type: "string" },
  }, true);
  if (helpRequested(values, USAGE)) return 0;
  const dataDir = dataRootOf(values);
  let path: string;
  if (positionals[0] === "zookeeper" && positionals.length === 1) {
    path = join(dataDir, "zookeeper", "zookeeper.log");
  } else if (
    positionals[0] === "broker" && positionals.length === 2 &&
    /^\d+$/.test(positionals[1])
  ) {
    path = join(dataDir, `broker-${positionals[1]}`, "broker.log");
  } else {
    throw new YakError(
      "INVALID_ARGUMENT",
      "say which log: 'yak logs zookeeper' or 'yak logs broker N'",
    );
  }
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
    console.error(`yak logs: ${path}`);
  } catch {
    throw new YakError(
      "INVALID_ARGUMENT",
      `no operation log at ${path} (has that process run with this data root? set it with --data or YAK_DATA)`,
    );
  }
  const decoder = new TextDecoder();
  const buf = new Uint8Array(64 * 1024);
  let carry = "";
  let stop = false;
  const onSignal = () => (stop = true);
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    while (!stop) {
      const n = await file.read(buf);
      if (n === null) {
        if (!values.follow) break;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const text = carry + decoder.decode(buf.subarray(0, n), { stream: true });
      const lines = text.split("\n");
      carry = lines.pop()!;
      const out: string[] = [];
      for (const line of lines) {
        if (!line) continue;
        if (values.json) {
          out.push(line);
          continue;
        }
        try {
          out.push(
            formatEntry(JSON.parse(line) as OpLogEntry, undefined, true),
          );
        } catch {
          out.push(line);
        }
      }
      if (out.length > 0) console.log(out.join("\n"));
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    file.close();
  }
  return 0;
}
