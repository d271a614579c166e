/**
 * How other commands find a running `yak cluster`: it writes
 * `DATA/cluster.json` (its pid, the addresses it serves, and a small control
 * port with a secret) while it runs and removes it when it stops. `yak start
 * --broker N` asks it there to bring a broker back; a second `yak cluster`
 * on the same data root is told one runs; a client that finds nothing
 * listening yet learns that a cluster is starting.
 *
 * The control port takes one JSON line and answers one: `{"secret", "type":
 * "ping"}` or `{"secret", "type": "start", "broker": N}`. The file is the
 * owner's alone (0600 in the 0700 data root), so only the owner can ask.
 *
 * @module
 */
import { join } from "node:path";
import { YakError } from "../errors.ts";

/** The file's name in the data root. */
export const CLUSTER_FILE = "cluster.json";

/** What `DATA/cluster.json` holds. */
export interface ClusterFile {
  pid: number;
  /** The control port, on 127.0.0.1. */
  controlPort: number;
  /** Every control request carries it. */
  secret: string;
  /** The zookeeper's HOST:PORT. */
  zookeeper: string;
  /** Broker ids 1..brokers. */
  brokers: number;
  /** False until the ready line: a client refused meanwhile waits for the ports to open. */
  ready: boolean;
}

/** A control request's answer: `ok` with a message for people, or an error. */
export type ControlReply = { ok: true; message: string } | { ok: false; error: string };

/** What the cluster does with a control request (`ping` is answered by the server itself). */
export type ControlHandler = (request: { type: string; broker?: unknown }) => Promise<ControlReply>;

/** A request line may be this long; the control port takes nothing larger. */
const MAX_REQUEST_BYTES = 4096;
/** A connection that has not sent its line in this long is closed. */
const REQUEST_DEADLINE_MS = 2000;
/** Connections served at once; more wait in the accept queue. */
const MAX_CONTROL_CONNECTIONS = 8;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Writes the file (0600, replaced whole: written beside it, then renamed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readClusterFile, writeClusterFile } from "./cluster_file.ts";
 * const dir = await Deno.makeTempDir();
 * const file = { pid: Deno.pid, controlPort: 1, secret: "s", zookeeper: "127.0.0.1:2181", brokers: 3, ready: false };
 * await writeClusterFile(dir, file);
 * assert.deepEqual(await readClusterFile(dir), file);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeClusterFile(dataRoot: string, file: ClusterFile): Promise<void> {
  const path = join(dataRoot, CLUSTER_FILE);
  // Unique, so a file left by a crash under a reused pid cannot block the write.
  const tmp = `${path}.${Deno.pid}-${newSecret().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(file) + "\n", { createNew: true, mode: 0o600 });
  await Deno.rename(tmp, path).catch(async (err) => {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  });
}

/** The file, or null when there is none or it does not parse as one. */
export async function readClusterFile(dataRoot: string): Promise<ClusterFile | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(join(dataRoot, CLUSTER_FILE)));
  } catch {
    return null;
  }
  const f = parsed as Partial<ClusterFile> | null;
  const valid = typeof f === "object" && f !== null && Number.isInteger(f.pid) && Number.isInteger(f.controlPort) &&
    typeof f.secret === "string" && typeof f.zookeeper === "string" && Number.isInteger(f.brokers) &&
    typeof f.ready === "boolean";
  return valid ? f as ClusterFile : null;
}

/** Removes the file if it is still this process's (a newer cluster may have replaced it). */
export async function removeClusterFile(dataRoot: string): Promise<void> {
  if ((await readClusterFile(dataRoot))?.pid !== Deno.pid) return;
  await Deno.remove(join(dataRoot, CLUSTER_FILE)).catch(() => {});
}

/**
 * Sends one control request and returns the answer; CONNECTION when the
 * cluster's control port does not take it (the file is stale).
 */
export async function askCluster(
  file: ClusterFile,
  request: Record<string, unknown>,
  timeoutMs: number,
): Promise<ControlReply> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port: file.controlPort });
  } catch {
    throw new YakError(
      "CONNECTION",
      `the yak cluster of pid ${file.pid} does not answer (nothing takes its control port ${file.controlPort})`,
    );
  }
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(encoder.encode(JSON.stringify({ ...request, secret: file.secret }) + "\n"));
    const line = await readLine(conn);
    const reply = JSON.parse(line ?? "null");
    if (reply?.ok === true && typeof reply.message === "string") return reply;
    if (reply?.ok === false && typeof reply.error === "string") return reply;
    throw new Error("no answer");
  } catch {
    throw new YakError(
      "CONNECTION",
      `the yak cluster of pid ${file.pid} gave no answer within ${timeoutMs} ms (is it the one in the file?)`,
    );
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/**
 * The cluster running on `dataRoot`, when its file names one whose control
 * port answers; null otherwise (no file, or a stale one: a cluster that was
 * killed leaves it behind).
 */
export async function runningCluster(dataRoot: string): Promise<ClusterFile | null> {
  const file = await readClusterFile(dataRoot);
  if (file === null) return null;
  try {
    return (await askCluster(file, { type: "ping" }, 1000)).ok ? file : null;
  } catch {
    return null;
  }
}

/**
 * Whether a `yak cluster` on `dataRoot` is starting: its file says it is not
 * ready yet, and it answers. A client refused meanwhile keeps trying.
 */
export async function clusterStarting(dataRoot: string): Promise<boolean> {
  const file = await readClusterFile(dataRoot);
  return file !== null && !file.ready && (await runningCluster(dataRoot)) !== null;
}

/** The control port of a running cluster. */
export interface ControlServer {
  readonly port: number;
  close(): void;
}

/**
 * Serves control requests on 127.0.0.1 (a free port) until closed; each
 * connection sends one line with the secret and gets one answer.
 */
export function serveControl(secret: string, handle: ControlHandler): ControlServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Map<Deno.Conn, Promise<void>>();
  (async () => {
    for await (const conn of listener) {
      // Bounded: a flood waits in the kernel's queue, not in memory.
      while (open.size >= MAX_CONTROL_CONNECTIONS) await Promise.race(open.values());
      open.set(conn, serveOne(conn, secret, handle).finally(() => open.delete(conn)));
    }
  })().catch(() => {/* closed */});
  let closed = false;
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      if (closed) return;
      closed = true;
      listener.close();
      for (const c of open.keys()) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

async function serveOne(conn: Deno.Conn, secret: string, handle: ControlHandler): Promise<void> {
  const timer = setTimeout(() => conn.close(), REQUEST_DEADLINE_MS);
  let reply: ControlReply;
  try {
    const line = await readLine(conn);
    clearTimeout(timer);
    const request = JSON.parse(line ?? "null");
    if (typeof request !== "object" || request === null || typeof request.type !== "string") {
      reply = { ok: false, error: "a control request is one JSON object with a type" };
    } else if (!sameSecret(request.secret, secret)) {
      reply = { ok: false, error: `wrong secret: read it from the data root's ${CLUSTER_FILE}` };
    } else if (request.type === "ping") {
      reply = { ok: true, message: `yak cluster pid ${Deno.pid}` };
    } else {
      reply = await handle(request);
    }
  } catch {
    reply = { ok: false, error: "a control request is one JSON line" };
  }
  clearTimeout(timer);
  try {
    await conn.write(encoder.encode(JSON.stringify(reply) + "\n"));
  } catch { /* gone */ }
  try {
    conn.close();
  } catch { /* closed */ }
}

/** Compares in time independent of where the two differ. */
function sameSecret(given: unknown, secret: string): boolean {
  if (typeof given !== "string" || given.length !== secret.length) return false;
  let diff = 0;
  for (let i = 0; i < secret.length; i++) diff |= given.charCodeAt(i) ^ secret.charCodeAt(i);
  return diff === 0;
}

/** Reads up to the first line break (at most {@link MAX_REQUEST_BYTES}); null at the end of the stream. */
async function readLine(conn: Deno.Conn): Promise<string | null> {
  const buf = new Uint8Array(MAX_REQUEST_BYTES);
  let used = 0;
  while (used < buf.length) {
    const n = await conn.read(buf.subarray(used));
    if (n === null) break;
    used += n;
    const at = buf.subarray(0, used).indexOf(10);
    if (at >= 0) return decoder.decode(buf.subarray(0, at));
  }
  if (used >= buf.length) throw new YakError("INVALID_REQUEST", "control request too long");
  return used === 0 ? null : decoder.decode(buf.subarray(0, used));
}

/** A new secret: 128 random bits as hex. */
export function newSecret(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
