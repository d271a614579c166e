/**
 * Flag parsing shared by the subcommands (node:util parseArgs, since JSR's
 * @std/cli is out of reach here), turning misuse into one-line errors.
 *
 * @module
 */
import { resolve } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Address, Bootstrap, FirstContact } from "../client/discovery.ts";
import { clusterStarting } from "./cluster_file.ts";
import { DEFAULTS } from "../config.ts";
import { parseHostPort } from "../protocol/connection.ts";
import { type ConnectionLimits, connectionLimits } from "../protocol/listener.ts";
import { YakError } from "../errors.ts";
import { fileModes, useFileModes } from "../files.ts";

/** Flag definitions, as node:util parseArgs takes them. */
export type Flags = NonNullable<ParseArgsConfig["options"]>;

/** Parsed flag values. */
export type Values = Record<
  string,
  string | boolean | (string | boolean)[] | undefined
>;

/**
 * Other spellings users bring from Kafka's tools, and the flag each means
 * (taken only where the command has that flag).
 */
const ALIASES: Record<string, string> = {
  "bootstrap-server": "bootstrap",
  "bootstrap-servers": "bootstrap",
};

/**
 * The edit distance of two words (insertions, deletions, substitutions and
 * swaps of neighbours), for "did you mean" hints.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { editDistance } from "./args.ts";
 * assert.equal(editDistance("mesage", "message"), 1);
 * ```
 */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate closest to `word`, when it is close enough to be a typo
 * (or `word` is a prefix of exactly one candidate); else undefined.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nearest } from "./args.ts";
 * assert.equal(nearest("from-begining", ["from-beginning", "offset"]), "from-beginning");
 * ```
 */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  // Only the case differs ('DEMO' for 'demo'): that one, whatever its length.
  const sameLetters = candidates.filter((c) => c !== word && c.toLowerCase() === word.toLowerCase());
  if (sameLetters.length === 1) return sameLetters[0];
  const prefixed = candidates.filter((c) => word.length >= 3 && c.startsWith(word));
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const dist = editDistance(word, c);
    if (dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  return bestDistance <= Math.max(1, Math.min(3, Math.floor(word.length / 3))) ? best : undefined;
}

function usageError(command: string, message: string): YakError {
  return new YakError("INVALID_ARGUMENT", `${message} (see 'yak ${command} --help')`);
}

/**
 * Parses `args` strictly: unknown flags (with the nearest known one
 * suggested), missing values and a single-value flag given twice are errors
 * that name the subcommand's help. A negative number after a flag that takes
 * a value is that value (`--offset -10`, `--acks -1`), and Kafka's spellings
 * in {@link ALIASES} are taken (`--bootstrap-server`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parse } from "./args.ts";
 * const { values } = parse("consume", ["--topic", "t"], { topic: { type: "string" } });
 * assert.equal(values.topic, "t");
 * assert.throws(() => parse("consume", ["--topik", "t"], { topic: { type: "string" } }), {
 *   code: "INVALID_ARGUMENT",
 *   message: "unknown flag --topik; did you mean --topic? (see 'yak consume --help')",
 * });
 * ```
 */
export function parse(
  command: string,
  args: string[],
  options: Flags,
  allowPositionals = false,
): { values: Values; positionals: string[] } {
  const all: Flags = { ...options, help: { type: "boolean", short: "h" } };
  const joined = spelledOut(command, args, all);
  try {
    const { values, positionals } = parseArgs({
      args: joined,
      options: all,
      allowPositionals,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (err) {
    const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
    // Node's own wording ("Unexpected argument 'x'. This command does not take positional arguments") in ours.
    const stray = message.match(/^Unexpected argument '(.*)'\. This command does not take positional arguments$/);
    throw usageError(
      command,
      stray ? `unexpected argument '${stray[1]}' (every value goes after its --flag)` : message,
    );
  }
}

/**
 * `args` with every flag spelled out as `--name` or `--name=value` for
 * parseArgs, after the checks {@link parse} names: parseArgs alone refuses
 * `--offset -10` and keeps the last of a flag given twice.
 */
function spelledOut(command: string, args: string[], all: Flags): string[] {
  const shorts = new Map(
    Object.entries(all).flatMap(([name, o]) => o.short === undefined ? [] : [[o.short, name] as const]),
  );
  const joined: string[] = [];
  const seen = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      joined.push(...args.slice(i));
      break;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      name = knownName(command, eq === -1 ? arg.slice(2) : arg.slice(2, eq), all);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
    } else if (/^-\d/.test(arg)) {
      // parseArgs takes it for a flag and says so in its own words; no positional here is a negative number.
      throw usageError(command, `'${arg}' is not a flag, and no value here may be negative`);
    } else if (/^-[A-Za-z]$/.test(arg)) {
      const long = shorts.get(arg[1]);
      if (long === undefined) throw usageError(command, `unknown flag ${arg}`);
      name = long;
    } else {
      refuseReplacedBytes(command, "an argument", arg);
      joined.push(arg);
      continue;
    }
    const option = all[name];
    if (option.type !== "string") {
      if (inline !== undefined) throw usageError(command, `--${name} takes no value`);
      joined.push(`--${name}`);
      continue;
    }
    const value = inline ?? valueAfter(command, name, args[i + 1]);
    if (inline === undefined) i++;
    refuseReplacedBytes(command, `--${name}`, value);
    const values = seen.get(name) ?? [];
    values.push(value);
    seen.set(name, values);
    if (!option.multiple && values.length > 1) {
      throw usageError(command, `--${name} was given more than once ('${values[0]}', '${values[1]}'); give it once`);
    }
    joined.push(`--${name}=${value}`);
  }
  return joined;
}

/**
 * What a flag that carries data says when its argument is not UTF-8: where
 * such bytes can go instead.
 */
const NOT_UTF8_ADVICE: Record<string, string> = {
  "--message": "give it on stdin, which keeps any bytes",
  "--key": "keys given here or by --key-separator are text",
  "--header": "header keys and values given here are text",
};

/**
 * Refuses an argument that was not valid UTF-8. Deno decodes the command
 * line lossily: such bytes reach the program as U+FFFD, and a record sent
 * with them would hold U+FFFD in their place, silently. A U+FFFD is taken
 * for such bytes (a real one given on the command line is refused too).
 */
function refuseReplacedBytes(command: string, what: string, value: string): void {
  if (!value.includes("\uFFFD")) return;
  const advice = NOT_UTF8_ADVICE[what] ?? "arguments reach yak as text";
  throw new YakError(
    "INVALID_ARGUMENT",
    `${what} is not valid UTF-8 (such bytes reach yak as U+FFFD, which would take their place); ${advice} ` +
      `(see 'yak ${command} --help')`,
  );
}

/** The flag `--name` stands for (itself, or the flag Kafka's spelling means); an unknown one is an error with a hint. */
function knownName(command: string, name: string, all: Flags): string {
  if (all[name] !== undefined) return name;
  const known = ALIASES[name] ?? name;
  if (all[known] !== undefined) return known;
  if (known === "bootstrap" && all.zookeeper !== undefined) {
    // Commands that only talk to the zookeeper (status, kill): a broker address is no way in.
    throw usageError(
      command,
      `unknown flag --${name}: yak ${command} asks the zookeeper, give --zookeeper HOST:PORT instead`,
    );
  }
  // Kafka's spellings are candidates too: a typo of --bootstrap-server is one of it.
  const aliases = Object.keys(ALIASES).filter((a) => all[ALIASES[a]] !== undefined);
  const hint = nearest(name, [...Object.keys(all), ...aliases]);
  throw usageError(command, `unknown flag --${name}${hint ? `; did you mean --${hint}?` : ""}`);
}

/**
 * The argument after `--name`, taken as its value. A negative number is a
 * value, not a flag; anything else starting with '-' is a forgotten value.
 */
function valueAfter(command: string, name: string, next: string | undefined): string {
  if (next === undefined || (next.startsWith("-") && !/^-\d+(\.\d+)?$/.test(next) && next !== "-")) {
    throw usageError(command, `--${name} needs a value (one that starts with '-' goes as --${name}=-VALUE)`);
  }
  return next;
}

/** A flag as a string, or undefined. */
export function text(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/**
 * Refuses a flag that belongs to another of the command's actions
 * (`actionFlags`: each action's own flags), rather than ignoring it: a typo
 * such as --partition for --partitions otherwise does the default silently.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { refuseOtherActionsFlags } from "./args.ts";
 * const table = { create: ["partitions"], delete: [] };
 * refuseOtherActionsFlags("create", { partitions: "3" }, table);
 * assert.throws(() => refuseOtherActionsFlags("delete", { partitions: "3" }, table), /goes with --create, not --delete/);
 * ```
 */
export function refuseOtherActionsFlags(
  action: string,
  values: Values,
  actionFlags: Readonly<Record<string, readonly string[]>>,
): void {
  const own = actionFlags[action];
  for (const flag of new Set(Object.values(actionFlags).flat())) {
    if (values[flag] !== undefined && !own.includes(flag)) {
      const users = Object.keys(actionFlags).filter((a) => actionFlags[a].includes(flag)).map((a) => `--${a}`);
      throw new YakError("INVALID_ARGUMENT", `--${flag} goes with ${users.join(" or ")}, not --${action}`);
    }
  }
}

/** A flag as a string that must be present. */
export function required(
  values: Values,
  name: string,
  command: string,
): string {
  const v = text(values, name);
  if (v === undefined || v === "") {
    throw new YakError(
      "INVALID_ARGUMENT",
      v === "" ? `--${name} needs a value, not ''` : `--${name} is required (see 'yak ${command} --help')`,
    );
  }
  return v;
}

/** A flag as an integer within [min, max], or the fallback. */
export function integer(
  values: Values,
  name: string,
  fallback: number,
  min?: number,
  max?: number,
): number;
export function integer(
  values: Values,
  name: string,
  fallback: undefined,
  min?: number,
  max?: number,
): number | undefined;
export function integer(
  values: Values,
  name: string,
  fallback: number | undefined,
  min = 0,
  max = 2 ** 31 - 1,
): number | undefined {
  const v = text(values, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!/^-?\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `--${name} must be a whole number from ${min} to ${max}, not '${v}'`,
    );
  }
  return n;
}

/** The flags every client subcommand takes to find the cluster. */
export const CLUSTER_FLAGS: Flags = {
  zookeeper: { type: "string" },
  bootstrap: { type: "string" },
  "connect-timeout-ms": { type: "string" },
};

/**
 * `--connect-timeout-ms`: how long a client command keeps trying to reach
 * the cluster (the zookeeper, a bootstrap broker, the leader) before it
 * gives up. The same for every command.
 */
export function connectTimeoutOf(values: Values): number {
  return integer(values, "connect-timeout-ms", DEFAULTS.firstConnectTimeoutMs, 0, 3_600_000);
}

/** `--bootstrap a:1,b:2`, or `--zookeeper`, `$YAK_ZOOKEEPER`, or 127.0.0.1:2181. */
export function bootstrapOf(values: Values): Bootstrap {
  const brokers = text(values, "bootstrap");
  if (brokers !== undefined && text(values, "zookeeper") !== undefined) {
    throw new YakError("INVALID_ARGUMENT", "give --zookeeper or --bootstrap, not both");
  }
  const firstContact = firstContactOf(values);
  if (brokers !== undefined) {
    // Empty entries are skipped, as Kafka's bootstrap.servers does; but a list of none is a mistake, never the default.
    const given = brokers.split(",").filter((s) => s.trim()).map((s) => parseHostPort(s.trim()));
    if (given.length === 0) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `--bootstrap '${brokers}' is not HOST:PORT[,HOST:PORT...]: it names no broker`,
      );
    }
    return { brokers: given, firstContact };
  }
  const zk = text(values, "zookeeper") ?? Deno.env.get("YAK_ZOOKEEPER") ??
    `${DEFAULTS.host}:${DEFAULTS.zookeeperPort}`;
  return { zookeeper: parseHostPort(zk), firstContact };
}

/** `--zookeeper` (else `$YAK_ZOOKEEPER`, else 127.0.0.1:2181) with the first contact, for commands that ask it. */
export function zookeeperOf(values: Values): { zookeeper: Address; firstContact?: FirstContact } {
  const { zookeeper, firstContact } = bootstrapOf(values);
  return { zookeeper: zookeeper!, firstContact };
}

/**
 * A command's first contact: refused at every address, it gives up after
 * `refusedGiveUpMs` with the advice, unless the data root's `yak cluster` is
 * still starting (then the ports open soon, and the deadline stands).
 */
export function firstContactOf(values: Values): FirstContact {
  const dataRoot = dataRootOf(values);
  return { graceMs: DEFAULTS.refusedGiveUpMs, reached: false, starting: () => clusterStarting(dataRoot) };
}

/**
 * The data root, found the same way by every command: `--data`, else
 * `$YAK_DATA`, else `data` in the working directory (the repository's
 * `data/` when run through `deno task` or `./yak`), as an absolute path.
 */
export function dataRootOf(values: Values): string {
  const given = text(values, "data") ?? (Deno.env.get("YAK_DATA") || undefined) ?? DEFAULTS.dataDir;
  return resolve(given);
}

/** `--shared-files`, taken by the commands that write the data root: the zookeeper, a broker, `yak cluster`. */
export const FILE_FLAGS: Flags = {
  "shared-files": { type: "boolean" },
};

/**
 * Sets the modes of every data file and directory this process creates from
 * `--shared-files`: the owner's group may read them (0640, 0750); without it
 * the owner alone (0600, 0700).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { useFileModesOf } from "./args.ts";
 * import { dataModes } from "../files.ts";
 * useFileModesOf({ "shared-files": true });
 * assert.equal(dataModes().file, 0o640);
 * ```
 */
export function useFileModesOf(values: Values): void {
  useFileModes(fileModes(values["shared-files"] === true));
}

/**
 * A "port in use" error from a server, with the flag that picks another
 * port (when the port is the one that flag set).
 */
export function withPortFlag(err: unknown, port: number, flag: string): unknown {
  if (!(err instanceof YakError) || err.data?.addrInUse !== true || err.data.port !== port) return err;
  return new YakError(err.code, `${err.message}; pick another port with ${flag}`, err.data);
}

/** Prints help text and says whether it did (for `--help`). */
export function helpRequested(values: Values, usage: string): boolean {
  if (values.help) {
    console.log(usage.trim());
    return true;
  }
  return false;
}

/** The membership timing flags the zookeeper and the brokers share. */
export const TIMING_FLAGS: Flags = {
  "heartbeat-ms": { type: "string" },
  "session-timeout-ms": { type: "string" },
};

/** The connection limits every server process takes (src/protocol/listener.ts). */
export const CONNECTION_FLAGS: Flags = {
  "max-connections": { type: "string" },
  "max-connections-per-ip": { type: "string" },
  "auth-timeout-ms": { type: "string" },
  "connections-max-idle-ms": { type: "string" },
  "queued-max-request-bytes": { type: "string" },
};

/** The usage text of {@link CONNECTION_FLAGS}. */
export const CONNECTION_USAGE = `Connections: at most --max-connections (${DEFAULTS.maxConnections}) at once,
--max-connections-per-ip (${DEFAULTS.maxConnectionsPerPeer}) from one address; when full, the oldest
connection that has not authenticated makes room. One that has not
authenticated (or sent a first request) in --auth-timeout-ms (${DEFAULTS.authTimeoutMs}) is
closed, as is one idle for --connections-max-idle-ms (${DEFAULTS.connectionsMaxIdleMs}). Requests
over 64 KiB held at once are capped at --queued-max-request-bytes
(${DEFAULTS.queuedMaxRequestBytes}); past it a connection waits.`;

/** {@link CONNECTION_FLAGS}, with their defaults and bounds: each listener's limits and the process's budget. */
export function connectionsOf(values: Values): { limits: ConnectionLimits; queuedMaxRequestBytes: number } {
  const maxConnections = integer(values, "max-connections", DEFAULTS.maxConnections, 1, 100_000);
  const perPeer = Math.min(DEFAULTS.maxConnectionsPerPeer, maxConnections);
  return {
    limits: connectionLimits({
      maxConnections,
      maxConnectionsPerPeer: integer(values, "max-connections-per-ip", perPeer, 1, 100_000),
      authTimeoutMs: integer(values, "auth-timeout-ms", DEFAULTS.authTimeoutMs, 50, 600_000),
      connectionsMaxIdleMs: integer(
        values,
        "connections-max-idle-ms",
        DEFAULTS.connectionsMaxIdleMs,
        100,
        Number.MAX_SAFE_INTEGER,
      ),
    }),
    queuedMaxRequestBytes: integer(
      values,
      "queued-max-request-bytes",
      DEFAULTS.queuedMaxRequestBytes,
      64 * 1024,
      2 ** 40,
    ),
  };
}

/** `--heartbeat-ms` and `--session-timeout-ms`, with their defaults and bounds. */
export function timingOf(values: Values): { heartbeatMs: number; sessionTimeoutMs: number } {
  return {
    heartbeatMs: integer(values, "heartbeat-ms", DEFAULTS.heartbeatMs, 10, 60_000),
    sessionTimeoutMs: integer(values, "session-timeout-ms", DEFAULTS.sessionTimeoutMs, 50, 600_000),
  };
}

/**
 * Prints why a client is retrying, once per distinct reason (not once per
 * attempt; reasons that differ only in their numbers, such as "silent for
 * 1.2 s" and "2.3 s", are the same reason).
 */
export function retryNotice(command: string, quiet: boolean): (why: string) => void {
  let last = "";
  return (why) => {
    const reason = why.replace(/\d+(\.\d+)?/g, "#");
    if (!quiet && reason !== last) console.error(`yak ${command}: retrying: ${why}`);
    last = reason;
  };
}
