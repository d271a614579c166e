/**
 * The broker's zookeeper session on its own thread (a Worker with its own
 * event loop), so heartbeats never wait behind the data path: a produce that
 * kept the broker's one JS thread busy past the session timeout made the
 * zookeeper declare a live leader dead and elect another (librdkafka at full
 * speed into one partition, `silentMs=1125`). The session itself is the same
 * {@link ZkSession}; this handle gives the broker the same calls, and shares
 * with the worker, through a SharedArrayBuffer, the send time of the last
 * acknowledged heartbeat (so the lease check on the data path is one read) and
 * the broker thread's own last tick (so a broker thread stuck for good stops
 * the heartbeats and is replaced).
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { YakError } from "../errors.ts";
import type { OpLog } from "../op_log.ts";
import type { BrokerInfo, Lease } from "../protocol/messages.ts";
import { type Security, security } from "../protocol/security.ts";
import type { ZkSessionOptions } from "./zk_session.ts";

/** What the worker needs to run the session (plain data: it crosses threads). */
export interface ZkInit {
  type: "init";
  opts: Omit<
    ZkSessionOptions,
    "log" | "logEndTotal" | "epoch" | "lost" | "leading" | "onLease" | "onRefused" | "clock"
  >;
  /** The first state (see the `state` message), so the first registration says it. */
  lost: number;
  instance: string;
  security: Security;
  /** The broker thread's monotonic clock when it posted this, so the worker reads time on the same clock. */
  nowMs: number;
  shared: SharedArrayBuffer;
  /** Heartbeats stop once the broker thread has not ticked for this long. */
  stallLimitMs: number;
}

/** Messages from the broker thread to the worker. */
export type ZkToWorker =
  | ZkInit
  | { type: "state"; logEndTotal: number; epoch: number; lost: number; leading: boolean; nowMs: number }
  | { type: "isr"; id: number; epoch: number; isr: number[] }
  | { type: "leave"; id: number; epoch: number; timeoutMs: number; resign?: boolean }
  | { type: "stop" };

/** Messages from the worker to the broker thread. */
export type ZkToMain =
  | { type: "lease"; lease: Lease }
  | { type: "brokers"; brokers: BrokerInfo[] }
  | { type: "log"; event: string; fields: Record<string, unknown> }
  | { type: "refused"; message: string }
  | { type: "reply"; id: number; lease?: Lease | null; error?: { code: string; message: string } }
  | { type: "stopped" };

/** Slots of the shared Float64Array. */
export const SHARED = {
  /** Broker-thread ms at which the newest acknowledged heartbeat was sent. */
  lastAckedSendMs: 0,
  /** Broker-thread ms of the broker thread's newest tick. */
  mainTickMs: 1,
} as const;

/**
 * The broker thread's monotonic clock as the worker reads it: each thread's
 * `performance.now()` starts at its own origin, so the worker adds the
 * offset between them. Every message from the broker thread carries its
 * clock (`nowMs`), and a message's delay makes that reading early, never
 * late: the offset is the largest seen, so a lease time written by the worker
 * looks older than it is, never younger. Taken from the first message alone,
 * the offset was as wrong as that message was late: a worker that took 2.8 s
 * to start (`deno test` type-checking it) made every acknowledged heartbeat
 * look 2.8 s old, and a leader never saw its lease as valid (no in-sync
 * changes, no writes acknowledged).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClockOffset } from "./zk_thread.ts";
 * const offset = new ClockOffset();
 * offset.observe(5000, 100); // the init message, delivered 2.8 s late: the broker thread's clock was 7800 then
 * assert.equal(offset.toMain(100), 5000);
 * offset.observe(10_500, 2900); // a state message delivered at once
 * assert.equal(offset.toMain(2900), 10_500);
 * offset.observe(10_000, 3000); // a late one changes nothing
 * assert.equal(offset.toMain(3000), 10_600);
 * ```
 */
export class ClockOffset {
  #offsetMs = -Infinity;

  /** A message posted at `mainNowMs` on the broker thread's clock, received at `workerNowMs` here. */
  observe(mainNowMs: number, workerNowMs: number): void {
    this.#offsetMs = Math.max(this.#offsetMs, mainNowMs - workerNowMs);
  }

  /** The broker thread's clock at `workerNowMs` (this thread's clock). */
  toMain(workerNowMs: number): number {
    return workerNowMs + this.#offsetMs;
  }
}

/** How many session timeouts the broker thread may be stuck before its heartbeats stop. */
const STALL_SESSIONS = 5;

/**
 * A broker's zookeeper session running in a worker.
 *
 * @example
 * ```ts ignore
 * const zk = new ZkThread({ ...opts, onLease: (l) => console.log(l.leaderId) });
 * zk.start();
 * zk.leaderLeaseValid(); // true while the worker's heartbeats are acknowledged
 * ```
 */
export class ZkThread {
  /** This process's identity for the zookeeper (see ZkSession). */
  readonly instance = crypto.randomUUID();
  readonly #o: ZkSessionOptions;
  readonly #shared = new Float64Array(new SharedArrayBuffer(16));
  #worker: Worker | null = null;
  #lease: Lease | null = null;
  #brokers: BrokerInfo[] = [];
  #tick: ReturnType<typeof setInterval> | undefined;
  readonly #pending = new Map<number, (m: Extract<ZkToMain, { type: "reply" }>) => void>();
  #nextId = 1;
  #stopped: (() => void) | null = null;

  constructor(opts: ZkSessionOptions) {
    this.#o = opts;
    this.#shared[SHARED.lastAckedSendMs] = -Infinity;
  }

  get brokers(): readonly BrokerInfo[] {
    return this.#brokers;
  }

  get lease(): Lease | null {
    return this.#lease;
  }

  start(): void {
    const o = this.#o;
    const worker = new Worker(new URL("./zk_worker.ts", import.meta.url), { type: "module" });
    this.#worker = worker;
    worker.onmessage = (e: MessageEvent<ZkToMain>) => this.#receive(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      o.log.write("zookeeper_session_failed", { error: e.message });
    };
    this.#shared[SHARED.mainTickMs] = monotonicMs();
    this.#post({
      type: "init",
      opts: {
        zkHost: o.zkHost,
        zkPort: o.zkPort,
        brokerId: o.brokerId,
        host: o.host,
        port: o.port,
        kafkaPort: o.kafkaPort,
        kafkaHost: o.kafkaHost,
        heartbeatMs: o.heartbeatMs,
        sessionTimeoutMs: o.sessionTimeoutMs,
        lastLease: o.lastLease ?? null,
      },
      instance: this.instance,
      lost: o.lost?.() ?? 0,
      security: { ...security() },
      nowMs: monotonicMs(),
      shared: this.#shared.buffer as SharedArrayBuffer,
      stallLimitMs: STALL_SESSIONS * o.sessionTimeoutMs,
    });
    this.pushState();
    this.#tick = setInterval(() => this.pushState(), Math.max(20, Math.floor(o.heartbeatMs / 2)));
  }

  /** Tells the worker what its heartbeats report (and that this thread is alive). */
  pushState(): void {
    this.#shared[SHARED.mainTickMs] = monotonicMs();
    this.#post({
      type: "state",
      logEndTotal: this.#o.logEndTotal(),
      epoch: this.#o.epoch(),
      lost: this.#o.lost?.() ?? 0,
      leading: this.#o.leading(),
      nowMs: monotonicMs(),
    });
  }

  /** See ZkSession.leaderLeaseValid: the same rule, on the send time the worker shares. */
  leaderLeaseValid(): boolean {
    return monotonicMs() < this.#shared[SHARED.lastAckedSendMs] + this.#o.sessionTimeoutMs * 0.75;
  }

  silentMs(): number {
    return monotonicMs() - this.#shared[SHARED.lastAckedSendMs];
  }

  async proposeIsr(epoch: number, isr: number[]): Promise<Lease> {
    const reply = await this.#request({ type: "isr", id: this.#nextId++, epoch, isr });
    if (reply.error) throw new YakError(reply.error.code as YakError["code"], reply.error.message);
    return reply.lease!;
  }

  async leave(epoch: number, timeoutMs: number): Promise<Lease | null> {
    const reply = await this.#request({ type: "leave", id: this.#nextId++, epoch, timeoutMs });
    return reply.lease ?? null;
  }

  /**
   * Asks the zookeeper to hand our leadership to another in-sync broker
   * while we stay a member (our copy of some data is damaged): the lease
   * that follows, or null when it could not be asked.
   */
  async resign(epoch: number, timeoutMs: number): Promise<Lease | null> {
    const reply = await this.#request({ type: "leave", id: this.#nextId++, epoch, timeoutMs, resign: true });
    return reply.lease ?? null;
  }

  async stop(): Promise<void> {
    clearInterval(this.#tick);
    const worker = this.#worker;
    if (!worker) return;
    this.#worker = null;
    const stopped = new Promise<void>((resolve) => (this.#stopped = resolve));
    worker.postMessage({ type: "stop" } satisfies ZkToWorker);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([stopped, new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
    worker.terminate();
    for (const answer of this.#pending.values()) {
      answer({ type: "reply", id: 0, error: { code: "CONNECTION", message: "the zookeeper session stopped" } });
    }
    this.#pending.clear();
  }

  #post(m: ZkToWorker): void {
    this.#worker?.postMessage(m);
  }

  #request(m: Extract<ZkToWorker, { id: number }>): Promise<Extract<ZkToMain, { type: "reply" }>> {
    if (!this.#worker) return Promise.reject(new YakError("CONNECTION", "not connected to the zookeeper"));
    return new Promise((resolve) => {
      this.#pending.set(m.id, resolve);
      this.#post(m);
    });
  }

  #receive(m: ZkToMain): void {
    switch (m.type) {
      case "lease":
        this.#lease = m.lease;
        this.#o.onLease(m.lease);
        break;
      case "brokers":
        this.#brokers = m.brokers;
        break;
      case "log":
        this.#o.log.write(m.event, m.fields);
        break;
      case "refused":
        this.#o.onRefused(new YakError("BROKER_ID_IN_USE", m.message));
        break;
      case "reply": {
        const answer = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        answer?.(m);
        break;
      }
      case "stopped":
        this.#stopped?.();
        break;
    }
  }
}

/** The broker's log as the worker sees it: each line is sent to the broker thread, which writes it. */
export function logToMain(post: (m: ZkToMain) => void): OpLog {
  return {
    write: (event: string, fields: Record<string, unknown> = {}) => post({ type: "log", event, fields }),
  } as unknown as OpLog;
}
