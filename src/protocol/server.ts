/**
 * A TCP server for the native protocol: accepts connections, reads frames,
 * hands each request to a handler and frames its reply. It knows nothing of
 * brokers or zookeepers, so another codec can sit beside it later.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { assert, toYakError, YakError } from "../errors.ts";
import { announcedAttachmentBytes, announcesAttachment, withAttachment } from "./frame.ts";
import { parseRequest, RawReply, type Reply, type Request } from "./messages.ts";
import {
  type Answer,
  type Codec,
  type ConnectionLimits,
  connectionLimits,
  listen,
  type Outgoing,
  type RequestMemory,
  type Split,
} from "./listener.ts";
import { LogWindow, peerAddress } from "./log_window.ts";
import { security, tokensEqual } from "./security.ts";

/** One client connection, as handlers see it. */
export interface Session {
  /** Unique per server, for registries keyed by connection. */
  readonly id: number;
  readonly remote: string;
  /** Sends an unsolicited frame (e.g. a lease push). */
  push(frame: Record<string, unknown>): Promise<void>;
  /** Called once when the connection ends. */
  onClose(fn: () => void): void;
  close(): void;
}

/** Handles one request; throw a YakError to answer with an error frame. */
export type Handler = (
  req: Request,
  session: Session,
) => Promise<Reply> | Reply;

/** Options of {@link serve}. */
export interface ServeOptions {
  host: string;
  port: number;
  handler: Handler;
  maxFrameBytes: number;
  /** Defaults to src/config.ts's. */
  limits?: ConnectionLimits;
  /** The process's budget for large requests, shared by its listeners. */
  memory?: RequestMemory;
  onError?: (message: string, fields: Record<string, unknown>) => void;
  /** Defaults to the process's security settings (src/protocol/security.ts). */
  authToken?: string;
  tls?: { cert: string; key: string };
}

/** A running server. */
export interface Server {
  readonly port: number;
  readonly host: string;
  readonly sessions: ReadonlySet<Session>;
  close(): Promise<void>;
}

/**
 * Serializes a reply into a frame, splicing raw JSON replies in as they are.
 * A reply may not carry its own `id` or `ok` (INTERNAL): those are the frame's.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeReply } from "./server.ts";
 * assert.equal(encodeReply(7, { offset: 3 }), '{"id":7,"ok":true,"offset":3}');
 * assert.throws(() => encodeReply(7, { id: "t-1" }), /may not set "id"/); // it would hide the frame's id
 * ```
 */
export function encodeReply(id: number | null, reply: Reply): string {
  if (reply instanceof RawReply) {
    const frame = reply.fields.length === 0 ? `{"id":${id},"ok":true}` : `{"id":${id},"ok":true,${reply.fields}}`;
    return reply.attachment ? withAttachment(frame, reply.attachmentBytes) : frame;
  }
  // A reply's own `id` or `ok` would follow the frame's and win in JSON.parse: the client, its correlation id
  // gone, would wait out its timeout. Refused here, so the client gets an error at once.
  assert(!("id" in reply) && !("ok" in reply), `a reply may not set "id" or "ok" (${Object.keys(reply).join(",")})`);
  const body = JSON.stringify(reply);
  return body.length <= 2 ? `{"id":${id},"ok":true}` : `{"id":${id},"ok":true,${body.slice(1)}`;
}

/**
 * Serializes an error into a frame.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeError } from "./server.ts";
 * import { YakError } from "../errors.ts";
 * const frame = encodeError(1, new YakError("NOT_LEADER", "ask broker 2", { leaderId: 2 }));
 * assert.equal(frame, '{"id":1,"ok":false,"code":"NOT_LEADER","message":"ask broker 2","leaderId":2}');
 * ```
 */
export function encodeError(id: number | null, err: YakError): string {
  return JSON.stringify({
    id,
    ok: false,
    code: err.code,
    message: err.message,
    ...(err.data ?? {}),
  });
}

/**
 * Starts listening (port 0 picks a free port) and serves until closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectionLimits } from "./listener.ts";
 * import { serve } from "./server.ts";
 * const server = serve({
 *   host: "127.0.0.1", port: 0, maxFrameBytes: 1 << 20, limits: connectionLimits({ maxConnections: 64 }),
 *   handler: (req) => ({ echo: req.type }),
 * });
 * assert.notEqual(server.port, 0); // a free port was picked
 * await server.close();
 * ```
 */
export function serve(opts: ServeOptions): Server {
  const authToken = opts.authToken ?? security().authToken;
  const limits = opts.limits ?? connectionLimits();
  const sessions = new Set<Session>();
  let nextSessionId = 1;
  const refusals = new LogWindow(DEFAULTS.authFailureLogWindowMs, (m, f) => opts.onError?.(m, f));
  const listener = listen({
    host: opts.host,
    port: opts.port,
    maxFrameBytes: opts.maxFrameBytes,
    limits,
    memory: opts.memory,
    onError: opts.onError,
    tls: opts.tls,
    full: () =>
      encodeError(
        null,
        new YakError("TOO_MANY_CONNECTIONS", `server has ${limits.maxConnections} connections; try later`),
      ) + "\n",
    codec: (pumped) => {
      const session: Session = {
        id: nextSessionId++,
        remote: pumped.remote,
        push: (frame) => {
          pumped.push(JSON.stringify(frame) + "\n");
          return Promise.resolve();
        },
        onClose: (fn) => closers.push(fn),
        close: pumped.close,
      };
      const closers: (() => void)[] = [];
      sessions.add(session);
      return new NativeCodec(session, opts, authToken, refusals, () => {
        sessions.delete(session);
        for (const fn of closers) {
          try {
            fn();
          } catch { /* a closer must not stop the others */ }
        }
      });
    },
  });
  return {
    port: listener.port,
    host: listener.host,
    sessions,
    close: () => listener.close(),
  };
}

/** The first byte of a TLS handshake record. */
const TLS_HANDSHAKE = 0x16;
const NEWLINE = 10;
const decoder = new TextDecoder();
/** One connection of the native protocol: newline-ended JSON requests, answered as each is ready. */
class NativeCodec implements Codec {
  readonly ordered = false;
  authenticated: boolean;
  closing = false;
  readonly gate = null;
  readonly #session: Session;
  readonly #opts: ServeOptions;
  readonly #authToken: string | undefined;
  readonly #refusals: LogWindow;
  readonly closed: () => void;
  /** Bytes past the frame's start already known to hold no newline. */
  #scanned = 0;
  /** Nothing read yet on this connection: a TLS client here is told at once (see split). */
  #first = true;

  constructor(
    session: Session,
    opts: ServeOptions,
    authToken: string | undefined,
    refusals: LogWindow,
    closed: () => void,
  ) {
    this.#session = session;
    this.#opts = opts;
    this.#authToken = authToken;
    this.#refusals = refusals;
    this.authenticated = authToken === undefined;
    this.closed = closed;
  }

  split(buf: Uint8Array, at: number, have: number, maxBytes: number): Split {
    if (this.#first && have - at >= 2) {
      this.#first = false;
      // A TLS handshake record (0x16, then version 3.x) on a plain port: the client has a CA and this server no
      // certificate. Closed at once, and said here: the client waited for an answer until the auth deadline.
      if (buf[at] === TLS_HANDSHAKE && buf[at + 1] === 0x03) {
        // Named once per address, then counted (a client retries), as refused tokens are.
        this.#refusals.note(peerAddress(this.#session.remote), "TLS client on a plain-TCP port", {
          remote: this.#session.remote,
          hint: "this server has no --tls-cert, or the client should not use --tls-ca",
        });
        return { kind: "refuse", answer: null };
      }
    }
    const nl = buf.subarray(0, have).indexOf(NEWLINE, at + this.#scanned);
    // A frame that announces an attachment ends after it: the line and its bytes count against one frame's limit.
    const attached = nl === -1 ? 0 : announcedAttachmentBytes(buf, at, nl);
    const end = nl === -1 ? -1 : attached > 0 ? nl + 1 + attached : nl;
    if (nl === -1 ? have - at > maxBytes : end - at > maxBytes || attached < 0) {
      this.#opts.onError?.(attached < 0 ? "bad attachment size" : "frame too large", { remote: this.#session.remote });
      const err = attached < 0
        ? new YakError("INVALID_REQUEST", "a frame's attachment size is not a whole number; closing the connection")
        : new YakError("FRAME_TOO_LARGE", `frame exceeds ${maxBytes} bytes; closing the connection`);
      return { kind: "refuse", answer: encodeError(null, err) + "\n" };
    }
    if (nl === -1) {
      this.#scanned = have - at;
      return { kind: "more", need: 0 };
    }
    if (end > have) {
      this.#scanned = nl - at;
      return { kind: "more", need: end - at };
    }
    this.#scanned = 0;
    return { kind: "frame", start: at, end, next: attached > 0 ? end : nl + 1 };
  }

  handle(body: Uint8Array): Answer {
    let req: Request;
    // Only a frame that announced bytes holds a newline (before them): no scan of every other frame.
    const nl = announcesAttachment(body) ? body.indexOf(NEWLINE) : -1;
    try {
      req = parseRequest(decoder.decode(nl === -1 ? body : body.subarray(0, nl)));
    } catch (err) {
      // The stream is still in step (one bad line), so answer and go on.
      return encodeError(null, toYakError(err)) + "\n";
    }
    // Only bytes that came after the frame are an attachment, never a field of its JSON.
    req.attachment = nl === -1 ? undefined : body.subarray(nl + 1);
    if (!this.authenticated) return this.#authenticate(req);
    return this.#run(req);
  }

  #authenticate(req: Request): Answer {
    if (req.type === "auth" && tokensEqual(req.token, this.#authToken!)) {
      this.authenticated = true;
      return encodeReply(req.id, { authenticated: true }) + "\n";
    }
    // Never log what was sent: it may be a mistyped token.
    this.#refusals.note(peerAddress(this.#session.remote), "unauthorized connection refused", {
      remote: this.#session.remote,
    });
    this.closing = true;
    // A wrong token and none are told apart (never which bytes differed): one is a typo, the other a missing flag.
    const err = new YakError(
      "UNAUTHORIZED",
      req.type === "auth"
        ? "this server refused the auth token given (--auth-token or YAK_AUTH_TOKEN): not its token"
        : "this server needs an auth token (--auth-token or YAK_AUTH_TOKEN)",
    );
    return encodeError(req.id, err) + "\n";
  }

  async #run(req: Request): Promise<Outgoing | null> {
    try {
      const result = await this.#opts.handler(req, this.#session);
      if (req.noReply) return null;
      const frame = encodeReply(req.id, result) + "\n";
      return result instanceof RawReply && result.attachment ? [frame, ...result.attachment] : frame;
    } catch (err) {
      const yerr = toYakError(err);
      if ((yerr.code === "UNAVAILABLE" && !(err instanceof YakError)) || yerr.code === "INTERNAL") {
        this.#opts.onError?.("handler failed", { type: req.type, error: yerr.message });
      }
      return req.noReply ? null : encodeError(req.id, yerr) + "\n";
    }
  }
}
