/**
 * Every connection yak serves, whatever its codec: accepting (TLS when the
 * process has certificates), caps on connections in all and per peer
 * address, deadlines for peers that never authenticate or fall idle, one
 * memory budget for request bytes across connections, and the pump that
 * reads frames, hands them to the codec and writes its answers back with
 * backpressure. The native JSON codec (server.ts) and the Kafka codec
 * (kafka/server.ts) only split frames and answer them.
 *
 * @module
 */
import { TimeSlice } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import { LogWindow, peerAddress } from "./log_window.ts";
import { Outbox, type Outgoing } from "./outbox.ts";
import { type MemoryAccount, RequestMemory } from "./request_memory.ts";
import { security } from "./security.ts";

export type { Outgoing } from "./outbox.ts";
export { RequestMemory } from "./request_memory.ts";

/** The limits every listener applies; see src/config.ts for each one's reason. */
export interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerPeer: number;
  maxPreAuthFrameBytes: number;
  authTimeoutMs: number;
  connectionsMaxIdleMs: number;
  maxInFlightPerConnection: number;
  maxUnwrittenBytesPerConnection: number;
}

/**
 * The defaults of src/config.ts, with some replaced.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { connectionLimits } from "./listener.ts";
 * const limits = connectionLimits({ maxConnections: 64 });
 * assert.equal(limits.maxConnections, 64);
 * assert.equal(limits.authTimeoutMs, 10_000); // src/config.ts's
 * ```
 */
export function connectionLimits(overrides: Partial<ConnectionLimits> = {}): ConnectionLimits {
  return {
    maxConnections: DEFAULTS.maxConnections,
    maxConnectionsPerPeer: DEFAULTS.maxConnectionsPerPeer,
    maxPreAuthFrameBytes: DEFAULTS.maxPreAuthFrameBytes,
    authTimeoutMs: DEFAULTS.authTimeoutMs,
    connectionsMaxIdleMs: DEFAULTS.connectionsMaxIdleMs,
    maxInFlightPerConnection: DEFAULTS.maxInFlightPerConnection,
    maxUnwrittenBytesPerConnection: DEFAULTS.maxUnwrittenBytesPerConnection,
    ...overrides,
  };
}

/** What a codec makes of the bytes at the front of a connection's buffer. */
export type Split =
  /** A whole frame: its body is `buf[start, end)` and the next frame begins at `next`. */
  | { kind: "frame"; start: number; end: number; next: number }
  /** Not all there yet: the frame needs `need` bytes from its start (0: not known yet). */
  | { kind: "more"; need: number }
  /** The stream cannot be trusted past here: send `answer` (if any) and close. */
  | { kind: "refuse"; answer: Outgoing | null };

/** A codec's answer to one frame: bytes to send (or none), now or later, or "close" to end at once. */
export type Answer = Outgoing | null | Promise<Outgoing | null> | "close";

/** One connection as its codec handles it. */
export interface Codec {
  /** Answers leave in request order (Kafka) or as soon as each is ready (native). */
  readonly ordered: boolean;
  /** True once the peer may send full-size frames: it authenticated, or no one has to. */
  readonly authenticated: boolean;
  /** True when the connection must end once the answers so far are written (a failed login). */
  readonly closing: boolean;
  /** While set, no further frame is taken (a produce still taking its place in line). */
  readonly gate: Promise<void> | null;
  /** Finds the frame at `buf[at, have)`; it may be at most `maxBytes` long. */
  split(buf: Uint8Array, at: number, have: number, maxBytes: number): Split;
  /**
   * Handles one frame. The body is the codec's to keep until the answer
   * settles; a rejected answer closes the connection.
   */
  handle(body: Uint8Array): Answer;
  /** Called once when the connection has ended. */
  closed(): void;
}

/** What the pump offers a codec: who the peer is, its share of the thread, and a way to send unasked. */
export interface Pumped {
  readonly remote: string;
  /** The connection's share of the broker thread between yields (a long handler pauses on it). */
  readonly slice: TimeSlice;
  /** Sends a frame nobody asked for (a lease push), after what is queued. */
  push(out: Outgoing): void;
  close(): void;
}

/** Options of {@link listen}. */
export interface ListenOptions {
  host: string;
  port: number;
  /** The largest frame an authenticated peer may send. */
  maxFrameBytes: number;
  limits?: ConnectionLimits;
  /** The process's budget for large requests; listeners of one process share it (default: one of its own). */
  memory?: RequestMemory;
  /** Makes the codec of a new connection. */
  codec(pumped: Pumped): Codec;
  /** What a connection refused or evicted for want of room is told before it closes (default: nothing). */
  full?: () => Outgoing;
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

/** A connection's read buffer starts this small and grows at no cost up to BASE_BUFFER_BYTES. */
const FIRST_BUFFER_BYTES = 16 * 1024;
/** Growth past this comes out of the request memory budget. */
const BASE_BUFFER_BYTES = 64 * 1024;

/** One open connection, as the listener keeps it. */
interface Live {
  readonly conn: Deno.Conn;
  readonly remote: string;
  readonly peer: string;
  readonly openedMs: number;
  lastReadMs: number;
  /** Authenticated and past its first frame: never evicted to make room, no auth deadline. */
  settled: boolean;
  /** It has sent at least one byte. */
  heard: boolean;
  open: boolean;
  outbox: Outbox | null;
  /** Set by the pump: wakes it from any wait when the connection ends. */
  onEnd: () => void;
  /** Ends the connection; with `evicted`, tells the peer why first. */
  end(evicted?: boolean): void;
}

/**
 * Listens on `host:port` (0 picks a free port) and pumps each connection
 * through the codec `opts.codec` makes for it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listen } from "./listener.ts";
 * const l = listen({
 *   host: "127.0.0.1", port: 0, maxFrameBytes: 1024,
 *   codec: () => ({
 *     ordered: true, authenticated: true, closing: false, gate: null,
 *     split: () => ({ kind: "more", need: 0 }), handle: () => null, closed: () => {},
 *   }),
 * });
 * assert.notEqual(l.port, 0); // a free port was picked
 * await l.close();
 * ```
 */
export function listen(opts: ListenOptions): Listener {
  const limits = opts.limits ?? connectionLimits();
  const memory = opts.memory ?? new RequestMemory(DEFAULTS.queuedMaxRequestBytes);
  const listener = bind(opts);
  const table = new ConnectionTable(opts, limits);
  let closed = false;

  const serveOne = async (conn: Deno.Conn) => {
    const live = table.admit(conn);
    if (!live) return table.turnAway(conn, null);
    try {
      await pump(live, opts, limits, memory);
    } catch (err) {
      opts.onError?.("connection failed", { error: err instanceof Error ? err.message : String(err) });
    } finally {
      live.end();
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
      return table.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      table.close();
      listener.close();
      await acceptLoop;
    },
  };
}

/**
 * A listener's open connections: who may come in (caps in all and per
 * address; room is made by closing the oldest connection that has not
 * settled, never an authenticated one) and who must go (auth deadline, idle).
 */
class ConnectionTable {
  readonly #opts: ListenOptions;
  readonly #limits: ConnectionLimits;
  /** Insertion order is age order. */
  readonly #lives = new Set<Live>();
  readonly #byPeer = new Map<string, number>();
  readonly #notes: LogWindow;
  readonly #sweep: ReturnType<typeof setInterval>;
  /** Connections refused or evicted, each closed when its timer fires. */
  readonly #turnedAway = new Map<Deno.Conn, ReturnType<typeof setTimeout>>();

  constructor(opts: ListenOptions, limits: ConnectionLimits) {
    this.#opts = opts;
    this.#limits = limits;
    this.#notes = new LogWindow(DEFAULTS.authFailureLogWindowMs, (m, f) => opts.onError?.(m, f));
    const shortest = Math.min(limits.authTimeoutMs, limits.connectionsMaxIdleMs);
    this.#sweep = setInterval(() => this.#sweepDeadlines(), Math.max(20, Math.min(1000, Math.floor(shortest / 4))));
  }

  get size(): number {
    return this.#lives.size;
  }

  /** The new connection's entry, or null when there is no room for it. */
  admit(conn: Deno.Conn): Live | null {
    const addr = conn.remoteAddr as Deno.NetAddr;
    const remote = `${addr.hostname}:${addr.port}`;
    const peer = peerAddress(remote);
    const fromPeer = this.#byPeer.get(peer) ?? 0;
    const room = fromPeer < this.#limits.maxConnectionsPerPeer
      ? (this.#lives.size < this.#limits.maxConnections || this.#evictOldest(null))
      : this.#evictOldest(peer);
    if (!room) {
      this.#notes.note(`full ${peer}`, "connection refused: too many connections", {
        remote,
        connections: this.#lives.size,
        fromThisAddress: fromPeer,
      });
      return null;
    }
    const live = newLive(conn, remote, peer, (gone, evicted) => {
      this.#forget(gone);
      if (evicted) this.turnAway(gone.conn, gone.outbox);
      else closeConn(gone.conn);
    });
    this.#lives.add(live);
    // Not fromPeer + 1: making room may have taken one of this address's connections out.
    this.#byPeer.set(peer, (this.#byPeer.get(peer) ?? 0) + 1);
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    return live;
  }

  /** Takes a connection that ended out of the counts (once). */
  #forget(live: Live): void {
    if (!this.#lives.delete(live)) return;
    const left = (this.#byPeer.get(live.peer) ?? 1) - 1;
    if (left === 0) this.#byPeer.delete(live.peer);
    else this.#byPeer.set(live.peer, left);
  }

  /**
   * A connection refused, or evicted to make room: it is told why (when the
   * codec says how) and closed after a pause, so a flood that reconnects at
   * once gets one attempt per pause per socket (Kafka holds throttled
   * connections before closing them the same way).
   */
  turnAway(conn: Deno.Conn, outbox: Outbox | null): void {
    if (this.#opts.full) (outbox ?? new Outbox(conn, true, noop, noop)).add(this.#opts.full());
    const timer = setTimeout(() => {
      this.#turnedAway.delete(conn);
      closeConn(conn);
    }, DEFAULTS.turnedAwayCloseDelayMs);
    this.#turnedAway.set(conn, timer);
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const live of [...this.#lives]) live.end();
    for (const [conn, timer] of this.#turnedAway) {
      clearTimeout(timer);
      closeConn(conn);
    }
    this.#turnedAway.clear();
  }

  /**
   * Closes the oldest connection (of `peer`, or of anyone) that has not
   * settled, one that never sent a byte first: a client authenticates in its
   * first packet, an idle flood never sends one, so a churning flood pushes
   * out its own connections and not a client in the middle of logging in.
   * False when there is none.
   */
  #evictOldest(peer: string | null): boolean {
    let heard: Live | null = null;
    for (const live of this.#lives) {
      if (live.settled || !live.open || (peer !== null && live.peer !== peer)) continue;
      if (live.heard) {
        heard ??= live;
        continue;
      }
      return this.#evict(live);
    }
    return heard !== null && this.#evict(heard);
  }

  #evict(live: Live): true {
    this.#notes.note(`evict ${live.peer}`, "connection closed to make room: not authenticated", {
      remote: live.remote,
      connections: this.#lives.size,
    });
    live.end(true);
    return true;
  }

  /** Closes connections past their auth deadline or idle too long. */
  #sweepDeadlines(): void {
    const now = performance.now();
    const limits = this.#limits;
    for (const live of this.#lives) {
      if (!live.open) continue;
      if (!live.settled) {
        if (now - live.openedMs < limits.authTimeoutMs) continue;
        this.#notes.note(`auth ${live.peer}`, "connection closed: no authentication in time", {
          remote: live.remote,
          authTimeoutMs: limits.authTimeoutMs,
        });
        live.end();
        continue;
      }
      const out = live.outbox;
      const busy = out !== null && (out.inFlight > 0 || out.unwritten > 0);
      if (!busy && now - live.lastReadMs >= limits.connectionsMaxIdleMs) {
        this.#notes.note(`idle ${live.peer}`, "connection closed: idle", {
          remote: live.remote,
          connectionsMaxIdleMs: limits.connectionsMaxIdleMs,
        });
        live.end();
      }
    }
  }
}

/** A table entry; `ended` runs once when it ends (evicted: to make room for another). */
function newLive(conn: Deno.Conn, remote: string, peer: string, ended: (live: Live, evicted: boolean) => void): Live {
  const now = performance.now();
  const live: Live = {
    conn,
    remote,
    peer,
    openedMs: now,
    lastReadMs: now,
    settled: false,
    heard: false,
    open: true,
    outbox: null,
    onEnd: noop,
    end(evicted = false) {
      if (!live.open) return;
      live.open = false;
      live.onEnd();
      ended(live, evicted);
    },
  };
  return live;
}

function bind(opts: ListenOptions): Deno.Listener {
  const sec = security();
  const tls = opts.tls ?? (sec.tlsCert && sec.tlsKey ? { cert: sec.tlsCert, key: sec.tlsKey } : undefined);
  try {
    return tls
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
}

function closeConn(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/**
 * Reads frames off one connection and hands them to its codec until the
 * connection ends. Reading pauses while too many answers are pending or
 * unwritten (a peer that sends and never reads) and while the request
 * memory budget cannot hold a large frame.
 */
async function pump(live: Live, opts: ListenOptions, limits: ConnectionLimits, memory: RequestMemory): Promise<void> {
  const stop = new AbortController();
  const p = new Pump(live, opts, limits, memory, stop.signal);
  live.onEnd = () => {
    stop.abort();
    p.progress();
  };
  try {
    while (live.open && await p.frames()) {
      if (!live.open || !await p.reader.fill(p.maxFrameBytes())) break;
    }
  } catch (err) {
    // A reset or a closed socket ends the connection quietly; anything else is worth a line.
    if (!quietEnd(err)) opts.onError?.("connection failed", { remote: live.remote, error: String(err) });
  } finally {
    live.end();
    p.reader.release();
    try {
      p.codec.closed();
    } catch { /* a codec's clean-up must not stop ours */ }
  }
}

function quietEnd(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.Interrupted || err instanceof Deno.errors.BrokenPipe || err instanceof DOMException;
}

/** One connection's codec, outbox and buffer, and the step that takes the frames already read. */
class Pump {
  readonly codec: Codec;
  readonly outbox: Outbox;
  readonly reader: BufferedFrames;
  readonly #live: Live;
  readonly #opts: ListenOptions;
  readonly #limits: ConnectionLimits;
  readonly #slice = new TimeSlice(DEFAULTS.requestSliceMs);
  #wake: (() => void) | null = null;

  constructor(live: Live, opts: ListenOptions, limits: ConnectionLimits, memory: RequestMemory, signal: AbortSignal) {
    this.#live = live;
    this.#opts = opts;
    this.#limits = limits;
    const close = () => live.end();
    const progress = () => this.progress();
    this.codec = opts.codec({ remote: live.remote, slice: this.#slice, push: (out) => this.outbox.push(out), close });
    this.outbox = new Outbox(live.conn, this.codec.ordered, progress, close);
    live.outbox = this.outbox;
    this.reader = new BufferedFrames(live, memory, signal);
  }

  /** An answer settled or bytes went out: a paused reader looks again. */
  progress(): void {
    const w = this.#wake;
    this.#wake = null;
    w?.();
  }

  maxFrameBytes(): number {
    return this.codec.authenticated ? this.#opts.maxFrameBytes : this.#limits.maxPreAuthFrameBytes;
  }

  /** Hands every whole frame in the buffer to the codec; false when the connection must end. */
  async frames(): Promise<boolean> {
    const { codec, outbox, reader } = this;
    while (this.#live.open) {
      const gate = codec.gate;
      if (gate) await gate;
      await this.#slice.pause();
      if (!this.#live.open) return false;
      const split = codec.split(reader.buf, reader.at, reader.have, this.maxFrameBytes());
      if (split.kind === "more") {
        reader.need = split.need;
        return true;
      }
      if (split.kind === "refuse") {
        if (split.answer !== null) outbox.add(split.answer);
        await outbox.drained();
        return false;
      }
      const { body, release } = reader.take(split);
      const answer = codec.handle(body);
      if (answer === "close") {
        release();
        return false;
      }
      if (!this.#live.settled && codec.authenticated) this.#live.settled = true;
      outbox.add(answer, release);
      if (codec.closing) {
        await outbox.drained();
        return false;
      }
      await this.#backpressure();
    }
    return false;
  }

  /** Waits while the connection has too many answers pending or unwritten. */
  async #backpressure(): Promise<void> {
    const { outbox } = this;
    while (
      this.#live.open && (outbox.inFlight >= this.#limits.maxInFlightPerConnection ||
        outbox.unwritten > this.#limits.maxUnwrittenBytesPerConnection)
    ) {
      await new Promise<void>((r) => (this.#wake = r));
    }
  }
}

/**
 * A connection's read buffer. Up to BASE_BUFFER_BYTES it is the
 * connection's own; a frame larger than that is read into a buffer of its
 * size paid for from the request memory budget, and that buffer goes with
 * the frame to its handler (no copy) until its answer settles.
 */
class BufferedFrames {
  buf = new Uint8Array(FIRST_BUFFER_BYTES);
  at = 0;
  have = 0;
  /** Bytes the frame at `at` needs in all, when the codec knows (0: unknown). */
  need = 0;
  /** Budget held for the buffer's bytes past BASE_BUFFER_BYTES. */
  readonly #account: MemoryAccount = { held: 0 };
  readonly #live: Live;
  readonly #memory: RequestMemory;
  readonly #signal: AbortSignal;

  constructor(live: Live, memory: RequestMemory, signal: AbortSignal) {
    this.#live = live;
    this.#memory = memory;
    this.#signal = signal;
  }

  /** The body of a whole frame, and what gives its memory back once its answer settles. */
  take(split: { start: number; end: number; next: number }): { body: Uint8Array; release: () => void } {
    if (this.#account.held === 0) {
      const body = this.buf.slice(split.start, split.end);
      this.at = split.next;
      return { body, release: noop };
    }
    // A large frame: its buffer leaves with it; what follows it moves to a fresh one.
    const body = this.buf.subarray(split.start, split.end);
    const held = this.#account.held;
    this.#memory.detach(held, this.#account);
    const rest = this.buf.subarray(split.next, this.have);
    const size = Math.max(BASE_BUFFER_BYTES, rest.length);
    // Already read, so taken even past the budget: the old buffer's share comes back when its answer settles.
    this.#memory.force(size - BASE_BUFFER_BYTES, this.#account);
    this.buf = new Uint8Array(size);
    this.buf.set(rest);
    this.at = 0;
    this.have = rest.length;
    let given = false;
    return {
      body,
      release: () => {
        if (given) return;
        given = true;
        this.#memory.give(held, null);
      },
    };
  }

  /** Makes room (growing for the frame in front, within the budget) and reads; false at the end of the stream. */
  async fill(maxBytes: number): Promise<boolean> {
    if (this.at > 0) {
      this.buf.copyWithin(0, this.at, this.have);
      this.have -= this.at;
      this.at = 0;
    }
    const want = this.need > 0 ? this.need : (this.have === this.buf.length ? this.buf.length * 2 : 0);
    if (want > this.buf.length) await this.#grow(Math.min(want, maxBytes + 8));
    const n = await this.#live.conn.read(this.buf.subarray(this.have));
    if (n === null) return false;
    this.have += n;
    this.#live.lastReadMs = performance.now();
    this.#live.heard = true;
    return true;
  }

  async #grow(size: number): Promise<void> {
    const extra = Math.max(0, size - BASE_BUFFER_BYTES) - this.#account.held;
    if (extra > 0) await this.#memory.take(extra, this.#account, this.#signal);
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.have));
    this.buf = next;
  }

  /** Gives back what the buffer holds of the budget (the connection has ended). */
  release(): void {
    this.#memory.give(this.#account.held, this.#account);
  }
}

function noop(): void {}
