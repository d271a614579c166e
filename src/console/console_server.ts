/**
 * The web console the zookeeper serves (`yak zookeeper --http-port`): one
 * static page (src/console/static/, plain HTML, CSS and JS, no build step,
 * nothing from elsewhere), `GET /api/status` (what `yak status --json`
 * prints) and `GET /api/events`, server-sent events carrying a
 * {@link FeedSnapshot} on every update; `GET /api/records`, the record
 * browser (record_browser.ts); and with the auth token, the admin actions
 * (`POST /api/admin/ACTION`, admin_actions.ts; `GET /api/admin` says whether
 * they are on).
 *
 * @module
 */
import { probeBrokers, type ZookeeperStatus } from "../client/cluster_status.ts";
import { DEFAULTS } from "../config.ts";
import { toYakError, YakError } from "../errors.ts";
import type { OpLogEntry } from "../op_log.ts";
import { Connection } from "../protocol/connection.ts";
import { ADMIN_ACTIONS, runAdminAction } from "./admin_actions.ts";
import { httpSecurity, json, respond, type Route, serveHttp } from "./http.ts";
import { browse, browseRequestOf } from "./record_browser.ts";
import { StatusFeed, type Viewer } from "./status_feed.ts";
import { Timeline } from "./timeline.ts";

/** Options of {@link startConsole}. */
export interface ConsoleOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The zookeeper's lease and members, from its memory. */
  zookeeper: () => ZookeeperStatus;
  /** Registers a callback for lease and membership changes; returns what unregisters it. */
  onChange: (fn: () => void) => () => void;
  /** The zookeeper's operation log (JSON lines), for the failover timeline. */
  opLogPath: string;
  onError?: (message: string, fields: Record<string, unknown>) => void;
  /** Default 1000: the most often brokers are asked. */
  intervalMs?: number;
}

/** A running console. */
export interface ConsoleServer {
  readonly url: string;
  readonly port: number;
  readonly feed: StatusFeed;
  close(): Promise<void>;
}

/** A viewer this many updates behind is dropped (its browser reconnects). */
const MAX_QUEUED_UPDATES = 30;
/** The largest admin request body taken (fields and a few topic configs). */
const MAX_ADMIN_BODY_BYTES = 64 * 1024;
/** How long a record read or an admin action may take at the leader. */
const LEADER_REQUEST_MS = 10_000;

const STATIC: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
  "/favicon.svg": { file: "favicon.svg", type: "image/svg+xml" },
};

const PAGE_POLICY = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

function staticRoute(file: string, type: string): Route {
  const url = new URL(`./static/${file}`, import.meta.url);
  let body: Promise<Uint8Array<ArrayBuffer>> | null = null;
  return async () => {
    body ??= Deno.readFile(url);
    return respond(await body, 200, { "content-type": type, "content-security-policy": PAGE_POLICY });
  };
}

function eventsRoute(feed: StatusFeed): Route {
  return () => {
    const encoder = new TextEncoder();
    let unsubscribe: (() => void) | null = null;
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        const viewer: Viewer = {
          send(data) {
            if ((controller.desiredSize ?? 0) < -MAX_QUEUED_UPDATES) return false;
            controller.enqueue(encoder.encode(`data: ${data}\n\n`));
            return true;
          },
          close() {
            try {
              controller.close();
            } catch { /* already closed */ }
          },
        };
        // Tell the browser how soon to come back after a lost connection.
        controller.enqueue(encoder.encode("retry: 1000\n\n"));
        unsubscribe = feed.subscribe(viewer);
        if (!unsubscribe) {
          controller.enqueue(encoder.encode(`event: full\ndata: too many viewers (${DEFAULTS.consoleMaxViewers})\n\n`));
          controller.close();
        }
      },
      cancel() {
        unsubscribe?.();
      },
    });
    // A browser that goes away cancels the stream (cancel above): no request.signal, which Deno.serve also aborts
    // when the response ends well, printing a warning about that legacy behaviour on every stop with a tab open.
    return respond(stream, 200, { "content-type": "text/event-stream; charset=utf-8", "x-accel-buffering": "no" });
  };
}

/**
 * Starts the console on `host:port`.
 *
 * @example
 * ```ts ignore
 * const console_ = await startConsole({ host: "127.0.0.1", port: 8080, zookeeper: () => zk.status(),
 *   onChange: (fn) => zk.onChange(fn), opLogPath: zk.log.path });
 * console.log(console_.url);
 * ```
 */
export async function startConsole(opts: ConsoleOptions): Promise<ConsoleServer> {
  const timeline = new Timeline({ path: opts.opLogPath, tailBytes: 256 * 1024, maxEntries: 100 });
  const feed = new StatusFeed({
    zookeeper: opts.zookeeper,
    probe: (brokers) => probeBrokers(brokers, DEFAULTS.consoleProbeTimeoutMs),
    timeline: (): Promise<OpLogEntry[]> => timeline.read(),
    intervalMs: opts.intervalMs ?? DEFAULTS.consoleGatherIntervalMs,
    maxViewers: DEFAULTS.consoleMaxViewers,
    historyPoints: DEFAULTS.consoleHistoryPoints,
  });
  const security = await httpSecurity(true);
  let browsing = 0;
  const routes: Record<string, Route> = {
    "/api/status": async () => json(await feed.status()),
    "/api/events": eventsRoute(feed),
    "/api/records": async (_req, url) => {
      if (browsing >= DEFAULTS.consoleMaxBrowses) {
        return errorReply(
          "UNAVAILABLE",
          `the console runs ${DEFAULTS.consoleMaxBrowses} record queries at a time, and that many are running; ` +
            `retry in a moment`,
        );
      }
      browsing++;
      try {
        return await withLeader(opts.zookeeper, () => browseRequestOf(url), browse);
      } finally {
        browsing--;
      }
    },
    "/api/admin": () =>
      json(
        security.auth === null
          ? { enabled: false, reason: "admin actions need the cluster's auth token (--auth-token T)" }
          : { enabled: true, actions: ADMIN_ACTIONS },
      ),
  };
  for (const [path, { file, type }] of Object.entries(STATIC)) routes[path] = staticRoute(file, type);
  const posts: Record<string, Route> = {};
  for (const action of ADMIN_ACTIONS) {
    posts[`/api/admin/${action}`] = (req) =>
      withLeader(opts.zookeeper, () => adminBody(req), (conn, body) => runAdminAction(conn, action, body));
  }
  const server = serveHttp({ host: opts.host, port: opts.port, routes, posts, onError: opts.onError, ...security });
  const unwatch = opts.onChange(() => feed.zookeeperChanged());
  return {
    url: server.url,
    port: server.port,
    feed,
    async close() {
      unwatch();
      // Open event streams never end by themselves; the server waits for them.
      feed.close();
      await server.close();
    },
  };
}

/**
 * Checks the request (`prepare`), then runs `fn` with it on a connection to
 * the leader the lease names, and answers its result as JSON; a refusal (bad
 * input, no leader, the service's own "no") is `{"error": {code, message}}`
 * with status 400, 404, 409 or 503.
 */
async function withLeader<P, T>(
  zookeeper: () => ZookeeperStatus,
  prepare: () => P | Promise<P>,
  fn: (conn: Connection, prepared: P) => Promise<T>,
) {
  try {
    const prepared = await prepare();
    const { lease } = zookeeper();
    if (lease.leaderId === null) throw new YakError("NO_LEADER", "no leader right now; try again after the election");
    const conn = await Connection.open(lease.host, lease.port, { connectTimeoutMs: 3000 });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new YakError("TIMEOUT", `the leader did not answer in ${LEADER_REQUEST_MS} ms`)),
        LEADER_REQUEST_MS,
      );
    });
    try {
      return json(await Promise.race([fn(conn, prepared), silent]));
    } finally {
      clearTimeout(timer);
      conn.close();
    }
  } catch (err) {
    const { code, message } = toYakError(err);
    return errorReply(code, message);
  }
}

/** `{"error": {code, message}}` with the status the code calls for. */
function errorReply(code: string, message: string): Response {
  return respond(JSON.stringify({ error: { code, message } }), statusOf(code), {
    "content-type": "application/json; charset=utf-8",
  });
}

/** The HTTP status of a refusal: the request's fault, nothing there, the cluster unable now, or a conflict. */
function statusOf(code: string): number {
  if (["INVALID_ARGUMENT", "INVALID_REQUEST", "INVALID_TOPIC", "INVALID_CONFIG"].includes(code)) return 400;
  if (["UNKNOWN_TOPIC", "UNKNOWN_PARTITION", "GROUP_ID_NOT_FOUND"].includes(code)) return 404;
  if (["NO_LEADER", "NOT_LEADER", "CONNECTION", "TIMEOUT", "UNAVAILABLE"].includes(code)) return 503;
  return 409;
}

/** An admin request's JSON object body, at most {@link MAX_ADMIN_BODY_BYTES}. */
async function adminBody(req: Request): Promise<Record<string, unknown>> {
  const length = Number(req.headers.get("content-length") ?? 0);
  if (length > MAX_ADMIN_BODY_BYTES) throw new YakError("INVALID_ARGUMENT", "the request body is too large");
  // Read with a running count: a chunked body names no length, and reading it whole first held what was sent.
  const parts: Uint8Array<ArrayBuffer>[] = [];
  let got = 0;
  for await (const part of req.body ?? []) {
    got += part.length;
    // Leaving the loop cancels the rest of the body.
    if (got > MAX_ADMIN_BODY_BYTES) throw new YakError("INVALID_ARGUMENT", "the request body is too large");
    parts.push(part);
  }
  const text = await new Blob(parts).text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new YakError("INVALID_ARGUMENT", "the request body must be a JSON object");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new YakError("INVALID_ARGUMENT", "the request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}
