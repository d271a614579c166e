/**
 * Flag parsing shared by the subcommands (node:util parseArgs, since JSR's
 * @std/cli is out of reach here), turning misuse into one-line errors.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Bootstrap } from "../client/discovery.ts";
import { DEFAULTS } from "../config.ts";
import { parseHostPort } from "../protocol/connection.ts";
import { YakError } from "../errors.ts";

/** Flag definitions, as node:util parseArgs takes them. */
export type Flags = NonNullable<ParseArgsConfig["options"]>;

/** Parsed flag values. */
export type Values = Record<
  string,
  string | boolean | (string | boolean)[] | undefined
>;

/**
 * Parses `args` strictly: unknown flags and missing values are errors that
 * name the subcommand's help.
 *
 * @example
 * ```ts
 * import { parse } from "./args.ts";
 * const { values } = parse("consume", ["--topic", "t"], { topic: { type: "string" } });
 * ```
 */
export function parse(
  command: string,
  args: string[],
  options: Flags,
  allowPositionals = false,
): { values: Values; positionals: string[] } {
  // A negative number after a flag that takes a value is that value (`--shift-by -10`, `--offset -5`),
  // not an unknown short option.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") && !args[i].includes("=") ? args[i].slice(2) : null;
    if (name !== null && options[name]?.type === "string" && /^-\d+$/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[i + 1]}`);
      i++;
    } else joined.push(args[i]);
  }
  args = joined;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      allowPositionals,
      strict: true,
    });
    return { values: values as Values, positionals };
  } catch (err) {
    const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new YakError(
      "INVALID_ARGUMENT",
      `${message} (see 'yak ${command} --help')`,
    );
  }
}

/** A flag as a string, or undefined. */
export function text(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
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
      `--${name} is required (see 'yak ${command} --help')`,
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
};

/** `--bootstrap a:1,b:2` wins; else `--zookeeper`, `$YAK_ZOOKEEPER`, or 127.0.0.1:2181. */
export function bootstrapOf(values: Values): Bootstrap {
  const brokers = text(values, "bootstrap");
  if (brokers !== undefined) {
    return {
      brokers: brokers.split(",").filter((s) => s.trim()).map((s) => parseHostPort(s.trim())),
    };
  }
  const zk = text(values, "zookeeper") ?? Deno.env.get("YAK_ZOOKEEPER") ??
    `${DEFAULTS.host}:${DEFAULTS.zookeeperPort}`;
  return { zookeeper: parseHostPort(zk) };
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

/** `--heartbeat-ms` and `--session-timeout-ms`, with their defaults and bounds. */
export function timingOf(values: Values): { heartbeatMs: number; sessionTimeoutMs: number } {
  return {
    heartbeatMs: integer(values, "heartbeat-ms", DEFAULTS.heartbeatMs, 10, 60_000),
    sessionTimeoutMs: integer(values, "session-timeout-ms", DEFAULTS.sessionTimeoutMs, 50, 600_000),
  };
}

/** Prints why a client is retrying, once per distinct reason (not once per attempt). */
export function retryNotice(command: string, quiet: boolean): (why: string) => void {
  let last = "";
  return (why) => {
    if (!quiet && why !== last) console.error(`yak ${command}: retrying: ${why}`);
    last = why;
  };
}
