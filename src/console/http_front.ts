/**
 * The front of every plain-HTTP yak server (the console, the brokers'
 * /metrics): it accepts the connections and relays each to Deno.serve
 * listening on a private Unix socket, so that the connections are yak's to
 * count and to close. Deno.serve alone has no cap on connections, no
 * deadline for a request and no idle timeout: 3,000 connections that sent
 * nothing stayed open on the zookeeper's console port for as long as they
 * liked, each an open file, and a process out of files can neither accept a
 * broker nor open a segment.
 *
 * The rules: at most `maxConnections` at once; when full, room is made by
 * closing the oldest connection that has not yet sent a whole request, else
 * the one silent the longest if it has been silent for
 * `evictableSilenceMs` between requests (answered, nothing asked
 * since; an open event stream is never silent that long), else the newcomer
 * is answered 503. A request (its head and its Content-Length or chunked
 * body; any other coding until the server answers) must be whole `requestTimeoutMs` after its
 * first byte (a new connection's first, after it opened). A connection over
 * which nothing moved either way for `idleMs` is closed.
 *
 * TLS is not fronted: Deno 2.9's TlsConn.close() does not release a socket
 * whose handshake is pending (twenty silent clients kept their twenty files
 * after the close), so a front could not close a silent TLS client, and
 * it would also lose HTTP/2 (no ALPN on Deno.listenTls). A TLS server is
 * Deno.serve's own (http.ts).
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULTS } from "../config.ts";

/** What the front allows (src/config.ts has the defaults). */
export interface FrontLimits {
  maxConnections: number;
  requestTimeoutMs: number;
  idleMs: number;
  /** A full front may close a connection silent (both ways) this long between requests. */
  evictableSilenceMs: number;
}

/** A running front: its address, and a close that ends every connection. */
export interface HttpFront {
  readonly addr: Deno.NetAddr;
  /** Connections open now. */
  readonly open: number;
  close(): void;
}

/**
 * The head bytes kept to read its Content-Length and Transfer-Encoding: more
 * than Deno.serve takes as a head (it answered heads of 65,550 bytes and
 * refused those of 70 KiB); past it, only the head's end is looked for.
 */
const KEPT_HEAD_BYTES = 96 * 1024;
const RELAY_BUFFER_BYTES = 16 * 1024;
const LF = 10;
const CR = 13;
const SERVICE_UNAVAILABLE = new TextEncoder().encode(
  "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n" +
    "content-length: 37\r\n\r\n503: too many connections; try again\n",
);

/**
 * Follows the requests a client sends: each head up to its empty line
 * (CRLF or a bare LF, as Deno.serve takes both) and its Content-Length or
 * chunked body after it, to know whether a request is under way and since when, and
 * whether the server has answered since the last one.
 */
export class RequestWatch {
  /** When the request under way started (a new connection's first: its opening), or null between requests. */
  since: number | null;
  /** A whole request has been read: the client is not an idle flood. */
  served = false;
  /** The server has sent bytes since the last request was whole: nothing is being worked on for this client. */
  answered = true;
  #kept = new Uint8Array(1024);
  #keptBytes = 0;
  /** Bytes of the current head line, carriage returns not counted; -1 before a head's first line. */
  #lineBytes = -1;
  #bodyLeft = 0;
  /** A chunked body, followed to its last chunk and trailer. */
  #chunks: ChunkedBody | null = null;
  /** A body whose end cannot be followed (another transfer coding, a length beyond reading): until the answer. */
  #untilAnswer = false;

  constructor(now: number) {
    this.since = now;
  }

  /** Bytes from the client. */
  feed(bytes: Uint8Array, now: number): void {
    let i = 0;
    while (i < bytes.length && !this.#untilAnswer) {
      if (this.#chunks !== null) {
        i = this.#chunks.feed(bytes, i);
        const { state } = this.#chunks;
        if (state === "done" || state === "bad") this.#chunks = null;
        if (state === "done") this.#whole();
        else if (state === "bad") this.#untilAnswer = true; // not chunks after all: Deno.serve says so
        continue;
      }
      if (this.#bodyLeft > 0) {
        const take = Math.min(this.#bodyLeft, bytes.length - i);
        this.#bodyLeft -= take;
        i += take;
        if (this.#bodyLeft === 0) this.#whole();
        continue;
      }
      this.since ??= now;
      const b = bytes[i++];
      this.#keep(b);
      if (b === LF) {
        // An empty line ends a head; before its first line it is one of the empty lines a server skips.
        if (this.#lineBytes === 0) this.#headEnded();
        else if (this.#lineBytes > 0) this.#lineBytes = 0;
      } else if (b !== CR) {
        this.#lineBytes = this.#lineBytes < 0 ? 1 : this.#lineBytes + 1;
      }
    }
  }

  /**
   * Bytes from the server: an answer has begun, so a body whose end was not
   * followed is taken as read. An interim answer (`100 Continue`) is not one:
   * the body comes after it.
   */
  serverSent(bytes: Uint8Array): void {
    if (interim(bytes)) return;
    if (this.#untilAnswer) {
      this.#untilAnswer = false;
      this.#lineBytes = -1;
      this.#whole();
    }
    if (this.since === null) this.answered = true;
  }

  #keep(b: number): void {
    if (this.#keptBytes === this.#kept.length) {
      // Past what Deno.serve takes as a head, only the end is looked for (it refuses the request).
      if (this.#kept.length >= KEPT_HEAD_BYTES) return;
      const grown = new Uint8Array(Math.min(KEPT_HEAD_BYTES, this.#kept.length * 4));
      grown.set(this.#kept);
      this.#kept = grown;
    }
    this.#kept[this.#keptBytes++] = b;
  }

  #whole(): void {
    this.since = null;
    this.answered = false;
  }

  #headEnded(): void {
    const head = new TextDecoder("latin1").decode(this.#kept.subarray(0, this.#keptBytes)).toLowerCase();
    this.#keptBytes = 0;
    if (this.#kept.length > 4096) this.#kept = new Uint8Array(1024); // a large head's room is not kept
    this.#lineBytes = -1;
    this.served = true;
    const length = /\ncontent-length:[ \t]*(\d+)[ \t]*\r?\n/.exec(head);
    const bytes = length ? Number(length[1]) : 0;
    const coding = /\ntransfer-encoding:([^\n]*)\n/.exec(head)?.[1];
    // Chunked last (as HTTP/1.1 requires of a request): followed. Any other coding, or a length too long to
    // count: the request lasts until the server answers it.
    if (coding !== undefined && /(^|,)[ \t]*chunked[ \t\r]*$/.test(coding)) this.#chunks = new ChunkedBody();
    else if (coding !== undefined || !Number.isSafeInteger(bytes)) this.#untilAnswer = true;
    else if (bytes > 0) this.#bodyLeft = bytes;
    else this.#whole();
  }
}

/**
 * Where a chunked body is (RFC 9112 7.1): a chunk's size line (hex, maybe
 * extensions), its data and line end, and after the last (size 0) chunk the
 * trailer lines up to an empty one.
 */
class ChunkedBody {
  state: "size" | "data" | "dataEnd" | "trailer" | "done" | "bad" = "size";
  #line = "";
  #left = 0;

  /** Takes what it can of `bytes` from `i`; returns where it stopped (at "done" or "bad", or the end). */
  feed(bytes: Uint8Array, i: number): number {
    while (i < bytes.length && this.state !== "done" && this.state !== "bad") {
      if (this.state === "data") {
        const take = Math.min(this.#left, bytes.length - i);
        this.#left -= take;
        i += take;
        if (this.#left === 0) this.state = "dataEnd";
        continue;
      }
      const b = bytes[i++];
      if (b !== LF) {
        if (b !== CR && this.#line.length < 256) this.#line += String.fromCharCode(b);
        continue;
      }
      this.#lineEnded();
    }
    return i;
  }

  #lineEnded(): void {
    const line = this.#line;
    this.#line = "";
    if (this.state === "dataEnd") this.state = line === "" ? "size" : "bad";
    else if (this.state === "trailer") this.state = line === "" ? "done" : "trailer";
    else {
      const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (!size) this.state = "bad";
      else if ((this.#left = parseInt(size[1], 16)) === 0) this.state = "trailer";
      else this.state = "data";
    }
  }
}

const HTTP_1 = new TextEncoder().encode("HTTP/1.");

/** Whether server bytes start an interim (1xx) answer: `HTTP/1.x 1..` (Deno.serve writes one on its own). */
function interim(bytes: Uint8Array): boolean {
  if (bytes.length < 10 || bytes[9] !== 0x31) return false;
  for (let i = 0; i < HTTP_1.length; i++) if (bytes[i] !== HTTP_1[i]) return false;
  return true;
}

interface Relay {
  conn: Deno.Conn;
  up: Deno.UnixConn | null;
  watch: RequestWatch;
  lastMs: number;
  closed: boolean;
}

/** Errors of one connection that came and went before it was accepted: nothing to report, nothing to wait for. */
function oneConnection(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.ConnectionAborted;
}

/**
 * Accepts on `listener` and relays each connection to the HTTP server on the
 * Unix socket `socketPath`, within `limits`.
 *
 * @example
 * ```ts ignore
 * const front = startFront(Deno.listen({ hostname: "127.0.0.1", port: 0 }), "/tmp/yak-http-1-x/s", frontLimits());
 * ```
 */
export function startFront(
  listener: Deno.Listener,
  socketPath: string,
  limits: FrontLimits,
  onError?: (message: string, fields: Record<string, unknown>) => void,
): HttpFront {
  return new Front(listener, socketPath, limits, onError);
}

/** The relays of one listener (see the module's rules). */
class Front implements HttpFront {
  readonly addr: Deno.NetAddr;
  readonly #listener: Deno.Listener;
  readonly #socketPath: string;
  readonly #limits: FrontLimits;
  readonly #onError?: (message: string, fields: Record<string, unknown>) => void;
  readonly #relays = new Set<Relay>();
  readonly #sweep: ReturnType<typeof setInterval>;
  #closed = false;
  #lastReport = -Infinity;

  constructor(
    listener: Deno.Listener,
    socketPath: string,
    limits: FrontLimits,
    onError?: (message: string, fields: Record<string, unknown>) => void,
  ) {
    this.addr = listener.addr as Deno.NetAddr;
    this.#listener = listener;
    this.#socketPath = socketPath;
    this.#limits = limits;
    this.#onError = onError;
    const shortest = Math.min(limits.requestTimeoutMs, limits.idleMs);
    this.#sweep = setInterval(() => this.#sweepDeadlines(), Math.max(20, Math.min(1000, Math.floor(shortest / 4))));
    void this.#accept();
  }

  get open(): number {
    return this.#relays.size;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const r of [...this.#relays]) this.#end(r);
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closed) return;
        // A connection reset before it was accepted: the next one at once.
        if (oneConnection(err)) continue;
        // Out of files, say: reported (once a second at most) and tried again shortly.
        if (performance.now() - this.#lastReport > 1000) {
          this.#lastReport = performance.now();
          this.#onError?.("http accept failed", { error: String(err) });
        }
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      if (!this.#room(performance.now())) {
        conn.write(SERVICE_UNAVAILABLE).catch(() => 0).finally(() => closeQuietly(conn));
        continue;
      }
      (conn as Deno.TcpConn).setNoDelay?.(true);
      void this.#serve(conn);
    }
  }

  #end(r: Relay): void {
    if (r.closed) return;
    r.closed = true;
    this.#relays.delete(r);
    closeQuietly(r.conn);
    if (r.up) closeQuietly(r.up);
  }

  /** Room for one more (see the module's rules). */
  #room(now: number): boolean {
    if (this.#relays.size < this.#limits.maxConnections) return true;
    let silent: Relay | null = null;
    for (const r of this.#relays) {
      if (!r.watch.served) {
        this.#end(r);
        return true;
      }
      // Between requests (not one whose answer is still being worked on), the longest silent.
      if (r.watch.since === null && r.watch.answered && (silent === null || r.lastMs < silent.lastMs)) silent = r;
    }
    if (silent === null || now - silent.lastMs < this.#limits.evictableSilenceMs) return false;
    this.#end(silent);
    return true;
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const now = performance.now();
    const r: Relay = { conn, up: null, watch: new RequestWatch(now), lastMs: now, closed: false };
    this.#relays.add(r);
    try {
      const up = await Deno.connect({ path: this.#socketPath, transport: "unix" });
      if (r.closed) return up.close(); // made room for another while connecting
      r.up = up;
      // The server's side ending (its answer to `Connection: close`, say) ends the relay.
      const answers = pump(up, conn, r, false).then(() => this.#end(r));
      // A client that is done sending (a half-close after its request) still gets its answers: the server is
      // told the same, and the relay ends when the server's side does.
      if (await pump(conn, up, r, true) && !r.closed) {
        await up.closeWrite().catch(() => {});
        await answers;
      }
    } catch (err) {
      if (!r.closed) this.#onError?.("http relay failed", { error: String(err) });
    } finally {
      this.#end(r);
    }
  }

  #sweepDeadlines(): void {
    const now = performance.now();
    const { requestTimeoutMs, idleMs } = this.#limits;
    for (const r of this.#relays) {
      const since = r.watch.since;
      if ((since !== null && now - since >= requestTimeoutMs) || now - r.lastMs >= idleMs) this.#end(r);
    }
  }
}

/** Copies `from` to `to` until `from` ends; true when it ended with its end of stream (not an error). */
async function pump(from: Deno.Conn, to: Deno.Conn, r: Relay, fromClient: boolean): Promise<boolean> {
  const buf = new Uint8Array(RELAY_BUFFER_BYTES);
  try {
    while (!r.closed) {
      const n = await from.read(buf);
      if (n === null) return true;
      const now = performance.now();
      r.lastMs = now;
      if (fromClient) r.watch.feed(buf.subarray(0, n), now);
      else r.watch.serverSent(buf.subarray(0, n));
      for (let at = 0; at < n;) at += await to.write(buf.subarray(at, n));
      r.lastMs = performance.now();
    }
  } catch { /* either side went away */ }
  return false;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** The front's limits: src/config.ts's, with some replaced. */
export function frontLimits(overrides: Partial<FrontLimits> = {}): FrontLimits {
  return {
    maxConnections: DEFAULTS.httpMaxConnections,
    requestTimeoutMs: DEFAULTS.httpRequestTimeoutMs,
    idleMs: DEFAULTS.httpIdleMs,
    evictableSilenceMs: DEFAULTS.httpEvictableSilenceMs,
    ...overrides,
  };
}

/** A private directory for a server's Unix socket, held (locked) for as long as the server runs. */
export interface PrivateSocket {
  dir: string;
  path: string;
  /** Unlocks and removes the directory. */
  remove(): void;
}

const SOCKET_DIR_PREFIX = "yak-http-";
const SOCKET_LOCK = "lock";

/**
 * A private directory (0700) for a server's Unix socket, and the socket's
 * path in it. The server holds a lock on a file in it while it runs, so
 * the directories left by servers that are gone (a broker killed with
 * SIGKILL) are found, whatever process or container made them, and removed
 * here.
 */
export function privateSocket(): PrivateSocket {
  const dir = Deno.makeTempDirSync({ prefix: `${SOCKET_DIR_PREFIX}${Deno.pid}-` });
  const lock = Deno.openSync(join(dir, SOCKET_LOCK), { read: true, write: true, createNew: true });
  lock.lockSync(true);
  sweepGone(dir);
  return {
    dir,
    path: join(dir, "s"),
    remove() {
      try {
        lock.close();
      } catch { /* closed */ }
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* gone already */ }
    },
  };
}

/**
 * A socket directory younger than this is never swept: its server may be
 * between creating the lock file and locking it.
 */
const SWEEP_MIN_AGE_MS = 60_000;

/** Removes the other socket directories beside `mine` whose lock nobody holds. */
function sweepGone(mine: string): void {
  const tmp = join(mine, "..");
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(tmp)];
  } catch {
    return;
  }
  for (const entry of entries) {
    const dir = join(tmp, entry.name);
    if (!entry.isDirectory || !entry.name.startsWith(SOCKET_DIR_PREFIX) || dir === mine) continue;
    let lock: Deno.FsFile | null = null;
    try {
      if (Date.now() - (Deno.statSync(dir).mtime?.getTime() ?? Date.now()) < SWEEP_MIN_AGE_MS) continue;
      lock = Deno.openSync(join(dir, SOCKET_LOCK), { read: true, write: true });
      if (!lock.tryLockSync(true)) continue; // its server runs
      lock.close();
      lock = null;
      Deno.removeSync(dir, { recursive: true });
    } catch {
      /* another user's, without a lock file, or gone: left alone */
    } finally {
      lock?.close();
    }
  }
}
