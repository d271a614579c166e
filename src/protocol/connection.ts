/**
 * A client connection: pipelined requests matched to responses by id.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { Deadlines } from "../deadlines.ts";
import { toYakError, YakError } from "../errors.ts";
import { FrameReader, FrameWriter, withAttachment } from "./frame.ts";
import { security } from "./security.ts";

/** Options of {@link Connection.open}. */
export interface ConnectOptions {
  connectTimeoutMs?: number;
  maxFrameBytes?: number;
  /** Called for frames the peer sends without a request (e.g. lease pushes). */
  onPush?: (frame: Record<string, unknown>) => void;
  onClose?: () => void;
  /** Defaults to the process's security settings (src/protocol/security.ts). */
  authToken?: string;
  /** A CA certificate (PEM): connect with TLS and trust it. */
  tlsCa?: string;
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: YakError) => void;
  timeoutMs: number;
}

/**
 * Parses `host:port` (the host may be omitted: `:9092`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseHostPort } from "./connection.ts";
 * assert.deepEqual(parseHostPort("127.0.0.1:2181"), { host: "127.0.0.1", port: 2181 });
 * assert.deepEqual(parseHostPort(":9092"), { host: "127.0.0.1", port: 9092 });
 * ```
 */
export function parseHostPort(text: string): { host: string; port: number } {
  const i = text.lastIndexOf(":");
  const host = i <= 0 ? "127.0.0.1" : text.slice(0, i);
  const port = Number(i === -1 ? text : text.slice(i + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `'${text}' is not HOST:PORT (port 1-65535)`,
    );
  }
  return { host, port };
}

/** Closes a socket that may be closed already (or absent). */
function closeQuietly(conn: Deno.Conn | null): void {
  try {
    conn?.close();
  } catch { /* closed already */ }
}

/**
 * One TCP connection to a broker or the zookeeper.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Connection } from "./connection.ts";
 * import { serve } from "./server.ts";
 * const server = serve({ host: "127.0.0.1", port: 0, maxFrameBytes: 1 << 20, handler: (req) => ({ echo: req.type }) });
 * const conn = await Connection.open("127.0.0.1", server.port);
 * const reply = await conn.request({ type: "metadata" });
 * assert.equal(reply.echo, "metadata");
 * conn.close();
 * await server.close();
 * ```
 */
export class Connection {
  readonly host: string;
  readonly port: number;
  readonly #conn: Deno.Conn;
  readonly #writer: FrameWriter;
  readonly #pending = new Map<number, Pending>();
  /** When each pending request times out: one timer for them all (deadlines.ts), not one per request. */
  readonly #deadlines = new Deadlines<number>((id) => this.#timedOut(id));
  readonly #opts: ConnectOptions;
  #nextId = 1;
  #closed = false;
  /** Resolves when the connection has ended. */
  readonly closed: Promise<void>;

  private constructor(
    host: string,
    port: number,
    conn: Deno.Conn,
    opts: ConnectOptions,
  ) {
    this.host = host;
    this.port = port;
    this.#conn = conn;
    this.#opts = opts;
    this.#writer = new FrameWriter(conn);
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    this.closed = this.#readLoop();
  }

  /** Connects, failing with CONNECTION after the timeout. */
  static async open(
    host: string,
    port: number,
    opts: ConnectOptions = {},
  ): Promise<Connection> {
    const timeoutMs = opts.connectTimeoutMs ?? 3000;
    const sec = security();
    const tlsCa = opts.tlsCa ?? sec.tlsCa;
    const authToken = opts.authToken ?? sec.authToken;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let connection: Connection;
    // The socket once there is one: closed on any failure, the deadline's too.
    let opened: Deno.Conn | null = null;
    let handshaking = false;
    const connecting = (async () => {
      opened = tlsCa
        ? await Deno.connectTls({ hostname: host, port, caCerts: [tlsCa] })
        : await Deno.connect({ hostname: host, port, transport: "tcp" });
      handshaking = tlsCa !== undefined;
      // Handshake now, within the deadline, so a certificate problem is reported as such, not as a lost
      // connection. A server that speaks plain TCP never answers a handshake: without the deadline the
      // connection waited for the server to close it (`yak cluster` polled its TLS-less children so, and
      // left hundreds of connections open).
      if (tlsCa) await (opened as Deno.TlsConn).handshake();
      return opened;
    })();
    try {
      const conn: Deno.Conn = await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new YakError("CONNECTION", `no answer in ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      connection = new Connection(host, port, conn, opts);
    } catch (err) {
      // Whatever was opened goes, now or when it comes (a connect that ends after the deadline).
      closeQuietly(opened);
      connecting.then(closeQuietly, () => {});
      const yerr = toYakError(err);
      // Nothing listens there (unlike silence, which may be a busy or paused peer): discovery may act on it at once.
      const refused = err instanceof Deno.errors.ConnectionRefused ? { refused: true } : undefined;
      // A name that does not resolve: no cluster answers there either (refused), and the fix is the name.
      if (!(err instanceof YakError) && /failed to lookup address/i.test(yerr.message)) {
        throw new YakError("CONNECTION", `cannot resolve the host '${host}' (${yerr.message})`, {
          refused: true,
          unresolved: true,
        });
      }
      // A server without a certificate closes a TLS handshake at once (yak's say so in their logs). Still
      // retried: a server that dies during the handshake looks the same.
      const tls = handshaking && !(err instanceof YakError) && !/certificate/i.test(yerr.message)
        ? "; the TLS handshake got no TLS answer: does the server have --tls-cert, or should this client not use --tls-ca?"
        : "";
      throw new YakError("CONNECTION", `cannot connect to ${host}:${port} (${yerr.message}${tls})`, refused);
    } finally {
      clearTimeout(timer);
    }
    if (authToken !== undefined) await connection.#authenticate(authToken, timeoutMs);
    return connection;
  }

  /** Sends the token; a refusal closes the connection and says why. */
  async #authenticate(token: string, timeoutMs: number): Promise<void> {
    try {
      await this.request({ type: "auth", token }, timeoutMs);
    } catch (err) {
      this.close();
      // A server that takes no token handles no `auth` request: said as the token's problem, not as a
      // server of the wrong kind ("does not answer as a yak zookeeper", "brokers do not handle 'auth'").
      if (err instanceof YakError && err.code === "UNKNOWN_REQUEST") {
        throw new YakError(
          "UNAUTHORIZED",
          `${this.host}:${this.port} refused the auth token given (--auth-token or YAK_AUTH_TOKEN): it runs ` +
            `without a token; leave the token out`,
        );
      }
      throw err;
    }
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  /** Requests waiting for their answers. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /**
   * Sends a request and resolves with the response fields, or rejects with a
   * YakError (the peer's error code, TIMEOUT, or CONNECTION). Raw bytes that
   * followed the reply are in its `attachment` field (a Uint8Array).
   * `attachment`, given, goes as raw bytes right after the request's frame.
   */
  request(
    body: Record<string, unknown>,
    timeoutMs = 10_000,
    attachment?: Uint8Array,
  ): Promise<Record<string, unknown>> {
    if (this.#closed) {
      return Promise.reject(
        new YakError(
          "CONNECTION",
          `connection to ${this.host}:${this.port} is closed`,
        ),
      );
    }
    const id = this.#nextId++;
    const json = JSON.stringify({ id, ...body });
    const frame = attachment === undefined ? json : withAttachment(json, attachment.length);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, timeoutMs });
      this.#deadlines.add(id, monotonicMs() + timeoutMs);
      this.#writer.send(frame, attachment && [attachment]).catch((err) => {
        this.#fail(id, toYakError(err));
      });
    });
  }

  /** Sends a request that gets no response (e.g. a produce with acks=0), with raw bytes after it if given. */
  async send(body: Record<string, unknown>, attachment?: Uint8Array): Promise<void> {
    if (this.#closed) throw new YakError("CONNECTION", "connection is closed");
    const json = JSON.stringify({ id: this.#nextId++, noReply: true, ...body });
    await this.#writer.send(
      attachment === undefined ? json : withAttachment(json, attachment.length),
      attachment && [attachment],
    );
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  #fail(id: number, err: YakError): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#deadlines.delete(id);
    p.reject(err);
  }

  #timedOut(id: number): void {
    const p = this.#pending.get(id);
    if (p) this.#fail(id, new YakError("TIMEOUT", `no answer from ${this.host}:${this.port} in ${p.timeoutMs} ms`));
  }

  async #readLoop(): Promise<void> {
    const maxFrameBytes = this.#opts.maxFrameBytes ?? 64 * 1024 * 1024;
    // Replies may carry stored records as raw bytes after the frame.
    const reader = new FrameReader(this.#conn, maxFrameBytes, maxFrameBytes);
    try {
      while (true) {
        const frames = await reader.nextFrames();
        if (frames === null) break;
        for (const f of frames) this.#dispatch(f.line, f.attachment);
      }
    } catch {
      // Reset or garbage: either way the pending requests fail below.
    } finally {
      this.close();
      const err = new YakError(
        "CONNECTION",
        `connection to ${this.host}:${this.port} lost`,
      );
      for (const id of [...this.#pending.keys()]) this.#fail(id, err);
      this.#deadlines.close();
      this.#opts.onClose?.();
    }
  }

  #dispatch(line: string, attachment?: Uint8Array): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(line);
    } catch {
      return;
    }
    if (attachment) frame.attachment = attachment;
    const id = frame.id;
    if (typeof id !== "number") {
      if (frame.push !== undefined) this.#opts.onPush?.(frame);
      return;
    }
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    this.#deadlines.delete(id);
    if (frame.ok === true) {
      p.resolve(frame);
    } else {
      const { code, message, ...data } = frame;
      p.reject(
        new YakError(
          code as YakError["code"],
          String(message ?? "request failed"),
          data,
        ),
      );
    }
  }
}
