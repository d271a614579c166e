/**
 * `yak logs`: reads the operation logs, formatted for people.
 *
 * @module
 */
import { join } from "node:path";
import { formatEntry, type OpLogEntry } from "../op_log.ts";
import { YakError } from "../errors.ts";
import { dataRootOf, helpRequested, nearest, parse, type Values } from "./args.ts";
import { writeStdout } from "./stdout.ts";

const USAGE = `
yak logs zookeeper [--follow] [--json] [--data DIR]
yak logs broker N  [--follow] [--json] [--data DIR]   (or broker-N, its directory's name)

Reads DIR/zookeeper/zookeeper.log or DIR/broker-N/broker.log. The data root
is --data, else $YAK_DATA, else ./data (the repository's data/ through
'deno task' or ./yak); the file read is named on stderr. A log past 16 MiB is
rotated: the older entries are in broker.log.1 (then .2, .3); --follow goes
on in the new file.
`;

/** What `yak logs`' flags ask for. */
interface LogsOptions {
  /** The operation log to read. */
  path: string;
  /** `--follow`: wait for more at the end, until Ctrl-C. */
  follow: boolean;
  /** `--json`: the entries as stored, not formatted. */
  json: boolean;
}

/** Runs `yak logs`. */
export async function logsCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse("logs", args, {
    follow: { type: "boolean", short: "f" },
    json: { type: "boolean" },
    data: { type: "string" },
  }, true);
  if (helpRequested(values, USAGE)) return 0;
  const options = logsOptionsOf(values, positionals);
  await printLog(await openLog(options.path), options);
  return 0;
}

/** The flags and the log named (`zookeeper`, or `broker N`). */
function logsOptionsOf(values: Values, positionals: string[]): LogsOptions {
  const dataDir = dataRootOf(values);
  let path: string;
  // `broker-N` as well as `broker N`: the name of the broker's directory, which is what `ls data/` shows.
  const dashed = positionals.length === 1 ? /^broker-(\d+)$/.exec(positionals[0]) : null;
  if (positionals[0] === "zookeeper" && positionals.length === 1) {
    path = join(dataDir, "zookeeper", "zookeeper.log");
  } else if (dashed) {
    path = join(dataDir, `broker-${dashed[1]}`, "broker.log");
  } else if (
    positionals[0] === "broker" && positionals.length === 2 &&
    /^\d+$/.test(positionals[1])
  ) {
    path = join(dataDir, `broker-${positionals[1]}`, "broker.log");
  } else {
    const meant = positionals[0] === undefined ? undefined : nearest(positionals[0], ["zookeeper", "broker"]);
    const hint = meant !== undefined && meant !== positionals[0] ? ` (did you mean '${meant}'?)` : "";
    throw new YakError(
      "INVALID_ARGUMENT",
      `say which log${hint}: 'yak logs zookeeper' or 'yak logs broker N'`,
    );
  }
  return { path, follow: values.follow === true, json: values.json === true };
}

/** Opens the log and names it on stderr. */
async function openLog(path: string): Promise<Deno.FsFile> {
  try {
    const file = await Deno.open(path, { read: true });
    console.error(`yak logs: ${path}`);
    return file;
  } catch {
    throw new YakError(
      "INVALID_ARGUMENT",
      `no operation log at ${path} (has that process run with this data root? set it with --data or YAK_DATA)`,
    );
  }
}

/**
 * Prints the log's entries to the end (with --follow, until Ctrl-C, or the
 * first entry after stdout's reader closed the pipe), and closes it.
 */
async function printLog(first: Deno.FsFile, options: LogsOptions): Promise<void> {
  let file = first;
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
        if (!options.follow) break;
        // Rotated (another file at the path now): this one is read to its end, the new one from its start.
        const next = await rotatedTo(options.path, file);
        if (next) {
          file.close();
          file = next;
          continue;
        }
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      const text = carry + decoder.decode(buf.subarray(0, n), { stream: true });
      const lines = text.split("\n");
      carry = lines.pop()!;
      const out = lines.filter((line) => line).map((line) => options.json ? line : formatLine(line));
      // A reader that is done (`| head`) ends it: console.log would drop the closed pipe's error and go on.
      if (out.length > 0 && !await writeStdout(`${out.join("\n")}\n`)) return;
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    file.close();
  }
}

/** The file now at `path` when it is not `file` (the log was rotated), opened; else null. */
async function rotatedTo(path: string, file: Deno.FsFile): Promise<Deno.FsFile | null> {
  try {
    const [now, open] = [await Deno.stat(path), await file.stat()];
    if (now.ino === null || now.ino === open.ino) return null;
    return await Deno.open(path, { read: true });
  } catch {
    return null; // between the rename and the new file
  }
}

/** An entry formatted for people; a line that is not an entry, as it is. */
function formatLine(line: string): string {
  try {
    return formatEntry(JSON.parse(line) as OpLogEntry, undefined, true);
  } catch {
    return line;
  }
}
