/**
 * The small HTTP server under the console and the brokers' `/metrics`:
 * Deno.serve with a fixed table of GET routes (anything else is 404, other
 * methods 405), the process's auth token checked in constant time, TLS when
 * the process has a certificate, and no handler error ever taking it down.
 * Plain-HTTP connections come through a front (http_front.ts) that caps them
 * and closes slow and idle ones.
 *
 * @module
 */
import { security, tokensEqual } from "../protocol/security.ts";
import { YakError } from "../errors.ts";
import { tmpdir } from "node:os";
import { type FrontLimits, frontLimits, type PrivateSocket, privateSocket, startFront } from "./http_front.ts";

/** Answers one request to a known path (already authorized). */
export type Route = (req: Request, url: URL) => Response | Promise<Response>;

/** How requests prove they know the token. */
export interface HttpAuth {
  token: string;
  /**
   * For pages in a browser: `?token=` sets this cookie (then redirects to
   * the URL without it), and the cookie is accepted from then on. Without it
   * only `Authorization: Bearer` is.
   */
  cookie?: { name: string; value: string };
}

/** Options of {@link serveHttp}. */
export interface HttpOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Path -> handler, for GET (and HEAD). */
  routes: Record<string, Route>;
  /**
   * Path -> handler, for POST: changes (the console's admin actions). Only
   * with a token (`auth`), and only same-origin JSON requests (see {@link postRefused}).
   */
  posts?: Record<string, Route>;
  /** Null: no token needed. */
  auth: HttpAuth | null;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string; key: string };
  onError?: (message: string, fields: Record<string, unknown>) => void;
  /** The connection rules for plain HTTP (src/config.ts's unless replaced here). */
  limits?: Partial<FrontLimits>;
}

/** A running HTTP server. */
export interface HttpServer {
  readonly host: string;
  readonly port: number;
  /** The base URL, e.g. `http://127.0.0.1:8080/`. */
  readonly url: string;
  /** Connections open now (null for TLS, whose connections are Deno.serve's). */
  readonly connections: number | null;
  close(): Promise<void>;
}

const COMMON_HEADERS: Record<string, string> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/** A response with the headers every answer carries. */
export function respond(body: BodyInit | null, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { ...COMMON_HEADERS, ...headers } });
}

/** A plain-text answer. */
export function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return respond(body, status, { "content-type": "text/plain; charset=utf-8", ...headers });
}

/** A JSON answer. */
export function json(value: unknown): Response {
  return respond(JSON.stringify(value), 200, { "content-type": "application/json; charset=utf-8" });
}

/**
 * The cookie value a browser keeps for a token: a digest of it, so the token
 * itself never travels back in a header.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cookieValueOf } from "./http.ts";
 * const value = await cookieValueOf("s3cret");
 * assert.match(value, /^[0-9a-f]{64}$/);
 * ```
 */
export async function cookieValueOf(token: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`yak-console\n${token}`));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function cookieOf(req: Request, name: string): string | undefined {
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function authorized(req: Request, auth: HttpAuth): boolean {
  const header = req.headers.get("authorization") ?? "";
  if (/^bearer /i.test(header) && tokensEqual(header.slice(7).trim(), auth.token)) return true;
  if (!auth.cookie) return false;
  const cookie = cookieOf(req, auth.cookie.name);
  return cookie !== undefined && tokensEqual(cookie, auth.cookie.value);
}

const UNAUTHORIZED = "401 unauthorized: this server needs the cluster's auth token. In a browser open /?token=TOKEN " +
  "once (it sets a cookie and takes the token out of the address); other clients send 'Authorization: Bearer TOKEN'.\n";

/**
 * Whether a request without a token may be answered: its `Host` must name
 * this server by an address (any IP literal), `localhost`, or the name it
 * listens on (`--host`). A DNS name that only resolves here (a
 * DNS-rebinding page) would otherwise read the console from a browser.
 */
export function hostAllowed(hostHeader: string | null, listenHost: string): boolean {
  if (hostHeader === null) return true; // HTTP/1.0 clients (curl --http1.0, scripts) send none
  let name = hostHeader.trim().toLowerCase();
  if (name.startsWith("[")) return true; // an IPv6 literal
  name = name.replace(/:\d+$/, "").replace(/\.$/, "");
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(name)) return true;
  return name === "localhost" || name.endsWith(".localhost") || name === listenHost.toLowerCase();
}

async function answer(req: Request, url: URL, opts: HttpOptions, secure: boolean): Promise<Response> {
  if (opts.auth === null && !hostAllowed(req.headers.get("host"), opts.host)) {
    const host = (req.headers.get("host") ?? "").slice(0, 100);
    return text(
      403,
      `403 forbidden: '${host}' is not this server's address; without --auth-token it answers only requests to ` +
        `its own address or localhost\n`,
    );
  }
  const post = opts.posts && Object.hasOwn(opts.posts, url.pathname) ? opts.posts[url.pathname] : undefined;
  const route = post ?? (Object.hasOwn(opts.routes, url.pathname) ? opts.routes[url.pathname] : undefined);
  if (!route) return text(404, `404 not found: ${url.pathname.slice(0, 200)}\n`);
  if (post && req.method !== "POST") {
    return text(405, `405 method not allowed: ${url.pathname} takes POST\n`, { allow: "POST" });
  }
  if (!post && req.method !== "GET" && req.method !== "HEAD") {
    return text(405, `405 method not allowed: ${url.pathname} takes GET\n`, { allow: "GET, HEAD" });
  }
  const refused = post ? postRefused(req, url, opts.auth) : null;
  if (refused) return refused;
  const auth = opts.auth;
  if (auth?.cookie && url.searchParams.has("token")) {
    if (!tokensEqual(url.searchParams.get("token"), auth.token)) {
      return text(401, UNAUTHORIZED, { "www-authenticate": 'Bearer realm="yak"' });
    }
    // The token leaves the address bar (and history) at once; the cookie stands in for it.
    url.searchParams.delete("token");
    const flags = `Path=/; HttpOnly; SameSite=Strict${secure ? "; Secure" : ""}`;
    return respond(null, 303, {
      location: url.pathname + (url.search === "?" ? "" : url.search),
      "set-cookie": `${auth.cookie.name}=${auth.cookie.value}; ${flags}`,
    });
  }
  if (auth && !authorized(req, auth)) return text(401, UNAUTHORIZED, { "www-authenticate": 'Bearer realm="yak"' });
  const res = await route(req, url);
  if (req.method !== "HEAD") return res;
  // The body is never sent: cancelled, so what it holds goes now (an event stream's viewer slot stayed taken).
  await res.body?.cancel().catch(() => {});
  return new Response(null, { status: res.status, headers: res.headers });
}

/**
 * Why a POST (a change) is refused, or null: it needs the token (so without
 * one changes are off), and a request a page of this server's own origin
 * made: a JSON body (another site's form cannot send one without a CORS
 * preflight, which is never granted), and no other origin in `Origin` or
 * `Sec-Fetch-Site`. The token itself is checked after, as for every route.
 */
function postRefused(req: Request, url: URL, auth: HttpAuth | null): Response | null {
  if (auth === null) {
    return text(
      403,
      "403 forbidden: changes need the cluster's auth token; start the cluster with --auth-token T " +
        "(or YAK_AUTH_TOKEN) and open the console once with ?token=T\n",
    );
  }
  const origin = req.headers.get("origin");
  const site = req.headers.get("sec-fetch-site");
  if ((origin !== null && origin !== url.origin) || (site !== null && site !== "same-origin")) {
    return text(403, "403 forbidden: changes are taken only from this console's own page\n");
  }
  if (!/^application\/json\b/i.test(req.headers.get("content-type") ?? "")) {
    return text(415, "415 unsupported media type: send the action's fields as application/json\n");
  }
  return null;
}

/**
 * Serves `routes` until closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serveHttp, text } from "./http.ts";
 * const server = serveHttp({ host: "127.0.0.1", port: 0, auth: null, routes: { "/": () => text(200, "hi") } });
 * assert.equal(await (await fetch(server.url)).text(), "hi");
 * await server.close();
 * ```
 */
export function serveHttp(opts: HttpOptions): HttpServer {
  const secure = opts.tls !== undefined;
  const handler = (listening: string) => async (req: Request): Promise<Response> => {
    let url: URL | null = null;
    try {
      url = secure ? new URL(req.url) : publicUrl(req, listening);
      if (url === null) return text(400, "400 bad request: the Host header names no host\n");
      return await answer(req, url, opts, secure);
    } catch (err) {
      opts.onError?.("http handler failed", { path: url?.pathname ?? "?", error: String(err) });
      return text(500, "500 internal error\n");
    }
  };
  return opts.tls ? serveTls(opts, opts.tls, handler("")) : serveFronted(opts, handler);
}

function listenError(opts: HttpOptions, err: unknown): YakError {
  return new YakError(
    "INVALID_ARGUMENT",
    `--http-port: cannot listen on ${opts.host}:${opts.port}: ${err instanceof Error ? err.message : err}` +
      " (pick another port, or 0 for a free one)",
  );
}

function serverError(opts: HttpOptions): (err: unknown) => Response {
  return (err) => {
    opts.onError?.("http server error", { error: String(err) });
    return text(500, "500 internal error\n");
  };
}

function shownHost(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
}

/** HTTPS: Deno.serve's own connections (see http_front.ts for why TLS is not fronted). */
function serveTls(
  opts: HttpOptions,
  tls: { cert: string; key: string },
  handler: (req: Request) => Promise<Response>,
): HttpServer {
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: opts.host, port: opts.port, ...tls, onListen: () => {}, onError: serverError(opts) },
      handler,
    );
  } catch (err) {
    throw listenError(opts, err);
  }
  const addr = server.addr;
  return {
    host: addr.hostname,
    port: addr.port,
    url: `https://${shownHost(addr)}:${addr.port}/`,
    connections: null,
    close: () => server.shutdown(),
  };
}

/** Plain HTTP: the front accepts, Deno.serve answers on a private Unix socket. */
function serveFronted(
  opts: HttpOptions,
  handler: (listening: string) => (req: Request) => Promise<Response>,
): HttpServer {
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ hostname: opts.host, port: opts.port });
  } catch (err) {
    throw listenError(opts, err);
  }
  const addr = listener.addr as Deno.NetAddr;
  const listening = `${shownHost(addr)}:${addr.port}`;
  let socket: PrivateSocket | null = null;
  let server: Deno.HttpServer<Deno.UnixAddr>;
  try {
    socket = privateSocket();
    server = Deno.serve(
      { path: socket.path, onListen: () => {}, onError: serverError(opts) },
      handler(listening),
    );
  } catch (err) {
    listener.close();
    socket?.remove();
    throw new YakError(
      "UNAVAILABLE",
      `--http-port: cannot make the HTTP server's private socket in ${tmpdir()}: ` +
        `${err instanceof Error ? err.message : err} (set TMPDIR to a short, writable directory)`,
    );
  }
  const front = startFront(listener, socket.path, frontLimits(opts.limits), opts.onError);
  const held = socket;
  return {
    host: addr.hostname,
    port: addr.port,
    url: `http://${listening}/`,
    get connections() {
      return front.open;
    },
    close: async () => {
      front.close();
      await server.shutdown();
      held.remove();
    },
  };
}

/**
 * The URL a client asked for, or null for a Host that names no host: the
 * server behind the front sees `http+unix://HOST/path` (HOST from the
 * request's target or its Host header, else its socket's path), parsed as
 * `http:` so that the path is normalized as before and a page's origin
 * matches its own requests'.
 */
function publicUrl(req: Request, listening: string): URL | null {
  const rest = req.url.slice(req.url.indexOf("://") + 3);
  const given = (req.headers.get("host") ?? "").trim();
  // No Host (HTTP/1.0), or an empty one: Deno puts the socket's path there.
  if (given === "") return new URL(`http://${listening}${rest.slice(rest.indexOf("/"))}`);
  // A name or an address and a port, nothing else: a '/' or '?' in it would move the path (it is in Deno's URL).
  if (!HOST_HEADER.test(given)) return null;
  try {
    return new URL(`http://${rest}`);
  } catch {
    return null; // a port past 65535, an IPv6 literal that is none
  }
}

/** What a Host header may be: a name, an IPv4 or bracketed IPv6 address (a zone too), with a port or without. */
const HOST_HEADER = /^(?:\[[0-9a-fA-F:.]+(?:%25[0-9A-Za-z._~-]+)?\]|[A-Za-z0-9.\-_~]+)(?::\d{0,5})?$/;

/**
 * The process's auth settings for an HTTP server: none without a token;
 * with one, bearer only (`browser: false`, e.g. /metrics) or also the
 * console's cookie. And its certificate, if it serves TLS.
 */
export async function httpSecurity(browser: boolean): Promise<Pick<HttpOptions, "auth" | "tls">> {
  const sec = security();
  const tls = sec.tlsCert && sec.tlsKey ? { cert: sec.tlsCert, key: sec.tlsKey } : undefined;
  if (sec.authToken === undefined) return { auth: null, tls };
  const cookie = browser ? { name: "yak_console", value: await cookieValueOf(sec.authToken) } : undefined;
  return { auth: { token: sec.authToken, cookie }, tls };
}
