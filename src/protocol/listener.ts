/**
 * Accepting connections, with no codec: TLS when the process has
 * certificates, a cap on connections, and closing them all on shutdown. The
 * native JSON server and the Kafka server both sit on it.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { security } from "./security.ts";

/** Options of {@link listen}. */
export interface ListenOptions {
  host: string;
  port: number;
  maxConnections: number;
  /** Serves one connection until it ends; `full` is true when the cap is reached (answer and close). */
  onConnection(conn: Deno.Conn, remote: string, full: boolean): Promise<void>;
  onError?: (message: string, fields: Record<string, unknown>) => void;
  /** Defaults to the process's security settings (src/protocol/security.ts). */
  tls?: { cert: string; key: string };
}

/** A listening socket and its open connections. */
export interface Listener {
  readonly host: string;
  readonly port: number;
  /** Connections being served now. */
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * Listens on `host:port` (0 picks a free port) and hands each connection to
 * `onConnection`.
 *
 * @example
 * ```ts
 * import { listen } from "./listener.ts";
 * const l = listen({ host: "127.0.0.1", port: 0, maxConnections: 8, onConnection: async (c) => c.close() });
 * console.log(l.port);
 * await l.close();
 * ```
 */
export function listen(opts: ListenOptions): Listener {
  const sec = security();
  const tls = opts.tls ?? (sec.tlsCert && sec.tlsKey ? { cert: sec.tlsCert, key: sec.tlsKey } : undefined);
  let listener: Deno.Listener;
  try {
    listener = tls
      ? Deno.listenTls({ hostname: opts.host, port: opts.port, transport: "tcp", cert: tls.cert, key: tls.key })
      : Deno.listen({ hostname: opts.host, port: opts.port, transport: "tcp" });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      throw new YakError(
        "UNAVAILABLE",
        `cannot listen on ${opts.host}:${opts.port}: another process listens on port ${opts.port}`,
        { addrInUse: true, port: opts.port },
      );
    }
    throw err;
  }
  const conns = new Set<Deno.Conn>();
  let closed = false;

  const serveOne = async (conn: Deno.Conn) => {
    const addr = conn.remoteAddr as Deno.NetAddr;
    const full = conns.size >= opts.maxConnections;
    if (!full) {
      conns.add(conn);
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    }
    try {
      await opts.onConnection(conn, `${addr.hostname}:${addr.port}`, full);
    } catch (err) {
      opts.onError?.("connection failed", { error: err instanceof Error ? err.message : String(err) });
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };

  const acceptLoop = (async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (closed || err instanceof Deno.errors.BadResource) return;
        opts.onError?.("accept failed", { error: String(err) });
        continue;
      }
      serveOne(conn);
    }
  })();

  const addr = listener.addr as Deno.NetAddr;
  return {
    port: addr.port,
    host: addr.hostname,
    get connections() {
      return conns.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await acceptLoop;
    },
  };
}
