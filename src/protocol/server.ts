/**
 * A TCP server for the native protocol: accepts connections, reads frames,
 * hands each request to a handler and frames its reply. It knows nothing of
 * brokers or zookeepers, so another codec can sit beside it later.
 *
 * @module
 */
import { TimeSlice } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { toYakError, YakError } from "../errors.ts";
import { FrameReader, FrameWriter, withAttachment } from "./frame.ts";
import { parseRequest, RawReply, type Reply, type Request } from "./messages.ts";
import { listen } from "./listener.ts";
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
  maxConnections: number;
  /** Requests of one connection handled at once; reading pauses beyond it. */
  maxInFlightPerConnection?: number;
  /**
   * Bytes of replies of one connection queued but not yet written (its peer
   * is not reading); reading pauses beyond it. Defaults to 4 MiB.
   */
  maxUnwrittenBytesPerConnection?: number;
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
 *
 * @example
 * ```ts
 * import { encodeReply } from "./server.ts";
 * encodeReply(7, { offset: 3 }); // '{"id":7,"ok":true,"offset":3}'
 * ```
 */
export function encodeReply(id: number | null, reply: Reply): string {
  if (reply instanceof RawReply) {
    const frame = reply.fields.length === 0 ? `{"id":${id},"ok":true}` : `{"id":${id},"ok":true,${reply.fields}}`;
    return reply.attachment ? withAttachment(frame, reply.attachmentBytes) : frame;
  }
  const body = JSON.stringify(reply);
  return body.length <= 2 ? `{"id":${id},"ok":true}` : `{"id":${id},"ok":true,${body.slice(1)}`;
}

/**
 * Serializes an error into a frame.
 *
 * @example
 * ```ts
 * import { encodeError } from "./server.ts";
 * import { YakError } from "../errors.ts";
 * encodeError(1, new YakError("NOT_LEADER", "ask broker 2"));
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
 * import { serve } from "./server.ts";
 * const server = serve({
 *   host: "127.0.0.1", port: 0, maxFrameBytes: 1 << 20, maxConnections: 64,
 *   handler: (req) => ({ echo: req.type }),
 * });
 * console.log(server.port);
 * await server.close();
 * ```
 */
export function serve(opts: ServeOptions): Server {
  const authToken = opts.authToken ?? security().authToken;
  const sessions = new Set<Session>();
  const maxInFlight = opts.maxInFlightPerConnection ?? 256;
  const maxUnwritten = opts.maxUnwrittenBytesPerConnection ?? 4 * 1024 * 1024;
  let nextSessionId = 1;

  const handleConn = async (conn: Deno.Conn, remote: string, full: boolean) => {
    const writer = new FrameWriter(conn);
    const closers: (() => void)[] = [];
    let open = true;
    const close = () => {
      if (!open) return;
      open = false;
      try {
        conn.close();
      } catch { /* already closed */ }
    };
    const session: Session = {
      id: nextSessionId++,
      remote,
      push: (frame) => open ? writer.send(JSON.stringify(frame)) : Promise.resolve(),
      onClose: (fn) => closers.push(fn),
      close,
    };
    if (full) {
      await writer.send(encodeError(
        null,
        new YakError(
          "TOO_MANY_CONNECTIONS",
          `server has ${opts.maxConnections} connections; try later`,
        ),
      )).catch(() => {});
      close();
      return;
    }
    sessions.add(session);
    let authed = authToken === undefined;
    let inFlight = 0;
    // Replies queued and not yet written: without a bound, a peer that sends
    // requests and never reads the replies would make us queue them forever.
    let unwritten = 0;
    let wake: (() => void) | null = null;
    const wakeReader = () => {
      if (wake) {
        wake();
        wake = null;
      }
    };
    const busy = () => inFlight >= maxInFlight || unwritten > maxUnwritten;
    const reply = (frame: string, attachment?: RawReply) => {
      if (!open) return;
      const size = frame.length + (attachment?.attachmentBytes ?? 0);
      unwritten += size;
      writer.send(frame, attachment?.attachment).catch(close).finally(() => {
        unwritten -= size;
        wakeReader();
      });
    };
    const run = async (req: Request) => {
      try {
        const result = await opts.handler(req, session);
        if (!req.noReply) reply(encodeReply(req.id, result), result instanceof RawReply ? result : undefined);
      } catch (err) {
        const yerr = toYakError(err);
        if ((yerr.code === "UNAVAILABLE" && !(err instanceof YakError)) || yerr.code === "INTERNAL") {
          opts.onError?.("handler failed", {
            type: req.type,
            error: yerr.message,
          });
        }
        if (!req.noReply) reply(encodeError(req.id, yerr));
      } finally {
        inFlight--;
        wakeReader();
      }
    };
    // Requests are small; a smaller read buffer keeps a thousand idle connections cheap.
    const reader = new FrameReader(conn, opts.maxFrameBytes, 0, 64 * 1024);
    // One read can hold many pipelined requests: past the slice's budget the loop yields between them.
    const slice = new TimeSlice(DEFAULTS.requestSliceMs);
    try {
      while (open) {
        const lines = await reader.next();
        if (lines === null) break;
        for (const line of lines) {
          await slice.pause();
          while (busy() && open) {
            await new Promise<void>((r) => (wake = r));
          }
          if (!open) break;
          let req: Request;
          try {
            req = parseRequest(line);
          } catch (err) {
            // The stream is still in step (one bad line), so answer and go on.
            reply(encodeError(null, toYakError(err)));
            continue;
          }
          if (!authed) {
            if (req.type === "auth" && tokensEqual(req.token, authToken!)) {
              authed = true;
              reply(encodeReply(req.id, { authenticated: true }));
              continue;
            }
            // Never log what was sent: it may be a mistyped token.
            opts.onError?.("unauthorized connection refused", { remote: session.remote });
            await writer.send(encodeError(
              req.id,
              new YakError("UNAUTHORIZED", "this server needs an auth token (--auth-token or YAK_AUTH_TOKEN)"),
            )).catch(() => {});
            close();
            break;
          }
          inFlight++;
          // Not awaited on purpose: pipelined requests run concurrently; handlers
          // that need order take it synchronously before their first await.
          run(req);
        }
        while (busy() && open) {
          await new Promise<void>((r) => (wake = r));
        }
      }
    } catch (err) {
      const yerr = toYakError(err);
      if (yerr.code === "FRAME_TOO_LARGE") {
        opts.onError?.("frame too large", { remote: session.remote });
        await writer.send(encodeError(null, yerr)).catch(() => {});
      }
    } finally {
      close();
      sessions.delete(session);
      for (const fn of closers) {
        try {
          fn();
        } catch { /* a closer must not stop the others */ }
      }
    }
  };

  const listener = listen({
    host: opts.host,
    port: opts.port,
    maxConnections: opts.maxConnections,
    onConnection: handleConn,
    onError: opts.onError,
    tls: opts.tls,
  });
  return {
    port: listener.port,
    host: listener.host,
    sessions,
    close: () => listener.close(),
  };
}
