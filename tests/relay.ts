/**
 * A TCP relay for tests: delays, and slow links, between two real processes.
 */

/** Resolves after `ms`. */
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A TCP relay on 127.0.0.1 that forwards each chunk after a fixed delay per
 * direction, keeping order. The target port is read at each connect, so a
 * restarted server on a new port is reached through the same relay. With
 * `throttle`, the replies of the connections it picks (by what their client
 * sent) go at `bytesPerSec`, as over a slow link.
 */
export class Relay {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  /** Sees each chunk on its way to the server, when it arrives (before the delay). */
  tap: ((chunk: Uint8Array) => void) | null = null;
  /** Slows the replies of connections whose client sent a chunk `pick` accepts (set it any time; null: none). */
  throttle: { pick: (text: string) => boolean; bytesPerSec: number } | null = null;

  constructor(
    readonly target: () => number | undefined,
    readonly toServerMs: number,
    readonly toClientMs: number,
  ) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    try {
      for await (const client of this.#listener) this.#track(this.#serve(client));
    } catch { /* closed */ }
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  async #serve(client: Deno.TcpConn): Promise<void> {
    this.#conns.add(client);
    const port = this.target();
    let server: Deno.TcpConn | null = null;
    try {
      if (port === undefined) return; // the server is down: the client sees a closed connection
      server = await Deno.connect({ hostname: "127.0.0.1", port });
      this.#conns.add(server);
      client.setNoDelay(true);
      server.setNoDelay(true);
      const slow = { on: false };
      const decoder = new TextDecoder();
      await Promise.all([
        this.#pipe(client, server, this.toServerMs, (chunk) => {
          this.tap?.(chunk);
          if (!slow.on && this.throttle?.pick(decoder.decode(chunk))) slow.on = true;
        }),
        this.#pipe(server, client, this.toClientMs, undefined, () => (slow.on ? this.throttle?.bytesPerSec ?? 0 : 0)),
      ]);
    } catch {
      /* either side went away */
    } finally {
      for (const c of [client, server]) {
        if (!c) continue;
        this.#conns.delete(c);
        try {
          c.close();
        } catch { /* closed */ }
      }
    }
  }

  /**
   * Reads `from` and writes each chunk to `to` `delayMs` after it arrived (at `rate()` bytes a second
   * when that is above 0); ends both ways when one ends.
   */
  async #pipe(
    from: Deno.Conn,
    to: Deno.Conn,
    delayMs: number,
    tap?: (chunk: Uint8Array) => void,
    rate?: () => number,
  ): Promise<void> {
    const queue: { dueMs: number; bytes: Uint8Array }[] = [];
    let ended = false;
    const signal: { wake: (() => void) | null } = { wake: null };
    const closeBoth = () => {
      for (const c of [from, to]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    };
    const writer = (async () => {
      try {
        while (true) {
          if (queue.length === 0) {
            if (ended) break;
            await new Promise<void>((r) => (signal.wake = r));
            continue;
          }
          const { dueMs, bytes } = queue.shift()!;
          const waitMs = dueMs - performance.now();
          if (waitMs > 0) await sleep(waitMs);
          for (let done = 0; done < bytes.length;) {
            const bytesPerSec = rate?.() ?? 0;
            const piece = bytes.subarray(done, bytesPerSec > 0 ? done + 4096 : bytes.length);
            done += await to.write(piece);
            if (bytesPerSec > 0) await sleep(piece.length * 1000 / bytesPerSec);
          }
        }
      } catch { /* the receiver went away */ }
    })();
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        const bytes = buf.slice(0, n);
        tap?.(bytes);
        queue.push({ dueMs: performance.now() + delayMs, bytes });
        signal.wake?.();
      }
    } catch {
      /* the sender went away */
    } finally {
      ended = true;
      signal.wake?.();
    }
    await writer;
    // One side ended (a process died or closed): end the other direction too.
    closeBoth();
  }

  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed */ }
    }
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }
}
