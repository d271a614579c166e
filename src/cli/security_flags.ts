/**
 * The flags every subcommand takes for who may connect: `--auth-token`,
 * `--tls-cert`, `--tls-key`, `--tls-ca` (or YAK_AUTH_TOKEN, YAK_TLS_CERT,
 * YAK_TLS_KEY, YAK_TLS_CA). They are taken out of the arguments before the
 * subcommand parses the rest, and set once for the whole process.
 *
 * @module
 */
import { resolve } from "node:path";
import { configureSecurity, type Security } from "../protocol/security.ts";
import { YakError } from "../errors.ts";

const FLAGS = ["auth-token", "tls-cert", "tls-key", "tls-ca"] as const;
type Flag = typeof FLAGS[number];

/**
 * Removes the security flags from `args`, reads the files they name, and
 * configures the process. Returns the remaining arguments.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applySecurityFlags } from "./security_flags.ts";
 * import { security } from "../protocol/security.ts";
 * const rest = applySecurityFlags(["--auth-token", "s3cret", "--topic", "t"]);
 * assert.deepEqual(rest, ["--topic", "t"]);
 * assert.equal(security().authToken, "s3cret");
 * ```
 */
export function applySecurityFlags(args: string[]): string[] {
  const found: Partial<Record<Flag, string>> = {};
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const flag = FLAGS.find((f) => arg === `--${f}` || arg.startsWith(`--${f}=`));
    if (!flag) {
      rest.push(arg);
      continue;
    }
    const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : args[++i];
    if (value === undefined || value === "") throw new YakError("INVALID_ARGUMENT", `--${flag} needs a value`);
    found[flag] = value;
  }
  const env = (name: string) => Deno.env.get(name) || undefined;
  const token = found["auth-token"] ?? env("YAK_AUTH_TOKEN");
  const certFile = found["tls-cert"] ?? env("YAK_TLS_CERT");
  const keyFile = found["tls-key"] ?? env("YAK_TLS_KEY");
  const caFile = found["tls-ca"] ?? env("YAK_TLS_CA");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new YakError("INVALID_ARGUMENT", "--tls-cert and --tls-key go together");
  }
  childEnv = {};
  if (token !== undefined) childEnv.YAK_AUTH_TOKEN = token;
  if (certFile !== undefined) childEnv.YAK_TLS_CERT = resolve(certFile);
  if (keyFile !== undefined) childEnv.YAK_TLS_KEY = resolve(keyFile);
  if (caFile !== undefined) childEnv.YAK_TLS_CA = resolve(caFile);
  const sec: Security = {};
  if (token !== undefined) sec.authToken = token;
  if (certFile !== undefined) {
    sec.tlsCert = readPem(certFile, "--tls-cert");
    sec.tlsKey = readPem(keyFile!, "--tls-key");
  }
  // A process with a certificate also connects (to the zookeeper, to the
  // leader) over TLS; a self-signed certificate is its own CA.
  if (caFile !== undefined) sec.tlsCa = readPem(caFile, "--tls-ca");
  else if (sec.tlsCert !== undefined) sec.tlsCa = sec.tlsCert;
  configureSecurity(sec);
  return rest;
}

/** What {@link applySecurityFlags} took, as the environment that gives a child process the same. */
let childEnv: Record<string, string> = {};

/**
 * The security this process was given (by flag or environment), as
 * environment variables for the processes it starts (`yak cluster`'s
 * zookeeper and brokers): the token, and the TLS files by absolute path.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { applySecurityFlags, securityEnv } from "./security_flags.ts";
 * applySecurityFlags(["--auth-token", "s3cret"]);
 * assert.deepEqual(securityEnv(), { YAK_AUTH_TOKEN: "s3cret" });
 * ```
 */
export function securityEnv(): Record<string, string> {
  return { ...childEnv };
}

/**
 * A PEM file's text: one with no PEM block (`-----BEGIN ...-----`) is
 * refused here, where before a CA file of another format was retried for the
 * whole connect timeout and blamed on the server.
 */
function readPem(path: string, flag: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    throw new YakError("INVALID_ARGUMENT", `${flag} ${path}: ${err instanceof Error ? err.message : err}`);
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) {
    throw new YakError("INVALID_ARGUMENT", `${flag} ${path}: not a PEM file (no '-----BEGIN ...-----' line)`);
  }
  return text;
}
