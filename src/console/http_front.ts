/**
 * The front of every yak HTTP server (the console, the brokers' /metrics):
 * it accepts the connections (TLS when asked) and relays each to Deno.serve
 * listening on a private Unix socket, so that the connections are yak's to
 * count and to close. Deno.serve alone has no cap on connections, no
 * deadline for a request's head and no idle timeout: 3,000 connections that
 * sent nothing stayed open on the zookeeper's console port for as long as
 * they liked, each an open file, and a process out of files can neither
 * accept a broker nor open a segment.
 *
 * The rules: at most `maxConnections` at once (when full, the oldest
 * connection still waiting for its first request head is closed to make
 * room, else the newcomer is answered 503); a request's head must be
 * complete `headerTimeoutMs` after its first byte (a new connection's first
 * head, after it opened); a connection over which nothing moved either way
 * for `idleMs` is closed (an event stream sends at least every
 * `consoleGatherIntervalMs`, so it never is).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { DEFAULTS } from "../config.ts";

/** What the front allows (src/config.ts has the defaults). */
export interface FrontLimits {
  maxConnections: number;
  headerTimeoutMs: number;
  idleMs: number;
}

/** A running front: its address, and a close that ends every connection. */
export interface HttpFront {
  readonly addr: Deno.NetAddr;
  /** Connections open now. */
  readonly open: number;
  close(): void;
}

const CRLFCRLF = [13, 10, 13, 10];
/** A request head past this is not tracked further: Deno.serve refuses it (431) and the idle rule still holds. */
const MAX_HEAD_BYTES = 64 * 1024;
const RELAY_BUFFER_BYTES = 16 * 1024;
const SERVICE_UNAVAILABLE = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n" +
    "content-length: 37\r\n\r\n503: too many connections; try again\n",
);

/**
 * Follows the requests a client sends (heads, and bodies by their
 * Content-Length), to know whether a head is under way and since when.
 */
class HeadWatch {
  /** When the head under way started (the connection's opening for the first), or null between requests. */
  headSince: number | null;
  /** A request has been read whole (its head at least): the client is not an idle flood. */
  served = false;
  #head: number[] = [];
  #matched = 0;
  #bodyLeft = 0;
  /** A chunked or oversized request: heads are no longer followed (the idle rule still holds). */
  #lost = false;

  constructor(now: number) {
    this.headSince = now;
  }

  feed(bytes: Uint8Array, now: number): void {
    let i = 0;
    while (i < bytes.length && !this.#lost) {
      if (this.#bodyLeft > 0) {
        const take = Math.min(this.#bodyLeft, bytes.length - i);
        this.#bodyLeft -= take;
        i += take;
        continue;
      }
      this.headSince ??= now;
      const b = bytes[i++];
      if (this.#head.length < MAX_HEAD_BYTES) this.#head.push(b);
      else this.#lost = true;
      this.#matched = b === CRLFCRLF[this.#matched] ? this.#matched + 1 : b === 13 ? 1 : 0;
      if (this.#matched === 4) this.#ended();
    }
  }

  #ended(): void {
    const head = String.fromCharCode(...this.#head.slice(0, 16 * 1024)).toLowerCase();
    this.#head = [];
    this.#matched = 0;
    this.headSince = null;
    this.served = true;
    if (/\r\ntransfer-encoding:/.test(head)) this.#lost = true;
    const length = /\r\ncontent-length:\s*(\d+)/.exec(head);
    if (length) this.#bodyLeft = Number(length[1]);
  }
}

interface Relay {
  conn: Deno.Conn;
  up: Deno.Conn | null;
  watch: HeadWatch;
  lastMs: number;
  closed: boolean;
}

/**
 * Accepts on `listener` and relays each connection to the HTTP server on the
 * Unix socket `socketPath`, within `limits`.
 *
 * @example
 * ```ts ignore
 * const front = startFront(Deno.listen({ hostname: "127.0.0.1", port: 0 }), "/tmp/yak-http-x/s", limits);
 * ```
 */
export function startFront(
  listener: Deno.Listener,
  socketPath: string,
  limits: FrontLimits,
  onError?: (message: string, fields: Record<string, unknown>) => void,
): HttpFront {
  const relays = new Set<Relay>();
  let closed = false;

  const end = (r: Relay): void => {
    if (r.closed) return;
    r.closed = true;
    relays.delete(r);
    for (const c of [r.conn, r.up]) {
      try {
        c?.close();
      } catch { /* already closed */ }
    }
  };

  /** Room for one more: the oldest connection that never completed a request head makes way. */
  const room = (): boolean => {
    if (relays.size < limits.maxConnections) return true;
    for (const r of relays) {
      if (!r.watch.served) {
        end(r);
        return true;
      }
    }
    return false;
  };

  const pump = async (from: Deno.Conn, to: Deno.Conn, r: Relay, watch: HeadWatch | null): Promise<void> => {
    const buf = new Uint8Array(RELAY_BUFFER_BYTES);
    try {
      while (!r.closed) {
        const n = await from.read(buf);
        if (n === null) break;
        const now = performance.now();
        r.lastMs = now;
        watch?.feed(buf.subarray(0, n), now);
        for (let at = 0; at < n;) at += await to.write(buf.subarray(at, n));
        r.lastMs = performance.now();
      }
    } catch { /* either side went away: the relay ends */ }
  };

  const serve = async (conn: Deno.Conn): Promise<void> => {
    const now = performance.now();
    const r: Relay = { conn, up: null, watch: new HeadWatch(now), lastMs: now, closed: false };
    relays.add(r);
    try {
      const up = await Deno.connect({ path: socketPath, transport: "unix" });
      if (r.closed) return up.close(); // made room for another while connecting
      r.up = up;
      // Either way ending ends both: a client gone, or the server done with a connection it closes.
      await Promise.race([pump(conn, r.up, r, r.watch), pump(r.up, conn, r, null)]);
    } catch (err) {
      if (!r.closed) onError?.("http relay failed", { error: String(err) });
    } finally {
      end(r);
    }
  };

  const sweep = setInterval(() => {
    const now = performance.now();
    for (const r of relays) {
      const since = r.watch.headSince;
      if ((since !== null && now - since >= limits.headerTimeoutMs) || now - r.lastMs >= limits.idleMs) end(r);
    }
  }, Math.max(20, Math.min(1000, Math.floor(Math.min(limits.headerTimeoutMs, limits.idleMs) / 4))));

  const accepting = (async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (closed) return;
        // Out of files, or an aborted handshake: this connection is lost, the listener goes on.
        onError?.("http accept failed", { error: String(err) });
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (!room()) {
        conn.write(SERVICE_UNAVAILABLE).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch { /* gone */ }
        });
        continue;
      }
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      void serve(conn);
    }
  })();

  return {
    addr: listener.addr as Deno.NetAddr,
    get open() {
      return relays.size;
    },
    close() {
      closed = true;
      clearInterval(sweep);
      try {
        listener.close();
      } catch { /* closed */ }
      for (const r of [...relays]) end(r);
      void accepting;
    },
  };
}

/** The front's limits: src/config.ts's, with some replaced. */
export function frontLimits(overrides: Partial<FrontLimits> = {}): FrontLimits {
  return {
    maxConnections: DEFAULTS.httpMaxConnections,
    headerTimeoutMs: DEFAULTS.httpHeaderTimeoutMs,
    idleMs: DEFAULTS.httpIdleMs,
    ...overrides,
  };
}

/**
 * A private directory (0700) for the server's Unix socket, and the socket's
 * path in it. Its name holds this process's id: the directories of
 * processes that are gone (a broker killed with SIGKILL) are removed here.
 */
export function privateSocket(): { dir: string; path: string } {
  const dir = Deno.makeTempDirSync({ prefix: `yak-http-${Deno.pid}-` });
  sweepGone(dirname(dir));
  return { dir, path: join(dir, "s") };
}

/** Removes the socket directories in `tmp` of processes no longer running (where /proc says which run). */
function sweepGone(tmp: string): void {
  try {
    if (!Deno.statSync("/proc/self").isDirectory) return;
    for (const entry of Deno.readDirSync(tmp)) {
      const pid = Number(/^yak-http-(\d+)-/.exec(entry.name)?.[1]);
      if (!entry.isDirectory || !Number.isInteger(pid) || pid === Deno.pid) continue;
      try {
        Deno.statSync(`/proc/${pid}`);
      } catch {
        try {
          Deno.removeSync(join(tmp, entry.name), { recursive: true });
        } catch { /* another user's, or gone already */ }
      }
    }
  } catch { /* no /proc (not Linux), or the directory is not readable: nothing swept */ }
}
