/**
 * A broker's session with the zookeeper: register, heartbeat, follow lease
 * pushes, and know how long its own leadership is still valid.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import type { OpLog } from "../op_log.ts";
import { Connection } from "../protocol/connection.ts";
import type { BrokerInfo, Lease, LeaseView } from "../protocol/messages.ts";
import { YakError } from "../errors.ts";

/** Options of {@link ZkSession}. */
export interface ZkSessionOptions {
  zkHost: string;
  zkPort: number;
  brokerId: number;
  host: string;
  port: number;
  /** The broker's Kafka-protocol port (0: none). */
  kafkaPort?: number;
  /** The host Kafka clients reach that port by (its advertised host, else its listening host). */
  kafkaHost?: string;
  heartbeatMs: number;
  sessionTimeoutMs: number;
  log: OpLog;
  logEndTotal: () => number;
  epoch: () => number;
  /** The lines it cut as damaged at start-up and has not copied back yet (0: none; see Zookeeper, #preferWhole). */
  lost?: () => number;
  /** Whether this process is acting as the leader now (a restarted one is not). */
  leading: () => boolean;
  onLease: (lease: Lease) => void;
  /** The zookeeper refused us for good (another live broker has our id): the broker must stop. */
  onRefused: (err: YakError) => void;
  /** The monotonic clock (injectable for tests, and the broker's own clock when this runs in a worker). */
  clock?: () => number;
  /** Told the send time of every heartbeat (or registration) the zookeeper acknowledged. */
  onAcked?: (sentMs: number) => void;
  /** Told the broker list after every registration and heartbeat. */
  onBrokers?: (brokers: BrokerInfo[]) => void;
  /**
   * True while heartbeats must not be sent: the broker's data path has not
   * run for so long that it is not alive in any useful sense, so the
   * zookeeper should find out by our silence.
   */
  holdHeartbeats?: () => boolean;
  /** This process's identity for the zookeeper (default: a fresh random one). */
  instance?: string;
  /** The newest lease with an in-sync set this broker followed before this process (see LeaseView). */
  lastLease?: LeaseView | null;
}

/**
 * Keeps the broker registered and reports every lease it learns.
 *
 * @example
 * ```ts ignore
 * const zk = new ZkSession({ ...opts, onLease: (l) => console.log(l.leaderId) });
 * zk.start();
 * zk.leaderLeaseValid(); // true while our heartbeats are acknowledged
 * ```
 */
export class ZkSession {
  /** A registration of this process was answered (later ones say `reconnecting`). */
  #registeredOnce = false;
  #brokers: BrokerInfo[] = [];
  readonly #o: ZkSessionOptions;
  #conn: Connection | null = null;
  #stopped = false;
  #loop: Promise<void> | null = null;
  #lease: Lease | null = null;
  /** The newest lease with an in-sync set this broker followed, this process or before (see LeaseView). */
  #view: LeaseView | null;
  /** The older lease epoch last reported in the log as behind ours (once per epoch). */
  #behindLogged = -1;
  /** When the newest acknowledged heartbeat was sent: the zookeeper heard us after it. */
  #lastAckedSendMs = -Infinity;
  #wake: (() => void) | null = null;
  readonly #now: () => number;
  /**
   * This process's identity for the zookeeper: a reconnect of the same
   * process is not a restart, and a second process with our id is refused.
   */
  readonly instance: string;

  constructor(opts: ZkSessionOptions) {
    this.#o = opts;
    this.instance = opts.instance ?? crypto.randomUUID();
    this.#now = opts.clock ?? monotonicMs;
    this.#view = opts.lastLease ?? null;
  }

  /** Every broker the zookeeper knows, as of the last register or heartbeat. */
  get brokers(): readonly BrokerInfo[] {
    return this.#brokers;
  }

  get lease(): Lease | null {
    return this.#lease;
  }

  start(): void {
    this.#loop = this.#run();
  }

  /**
   * Whether our leadership is still safe to act on. The zookeeper declares us
   * dead `sessionTimeoutMs` after it last heard us; we stop well before that,
   * counting from when we sent the last heartbeat it acknowledged.
   */
  leaderLeaseValid(): boolean {
    return this.#now() < this.#lastAckedSendMs + this.#o.sessionTimeoutMs * 0.75;
  }

  /** How long since the zookeeper last acknowledged a heartbeat (Infinity before the first). */
  silentMs(): number {
    return this.#now() - this.#lastAckedSendMs;
  }

  /** Asks the zookeeper to change the in-sync set; resolves with the new lease. */
  async proposeIsr(epoch: number, isr: number[]): Promise<Lease> {
    const conn = this.#conn;
    if (!conn) throw new Error("not connected to the zookeeper");
    const res = await conn.request({
      type: "isr",
      brokerId: this.#o.brokerId,
      epoch,
      isr,
    }, this.#o.sessionTimeoutMs);
    const lease = res.lease as Lease;
    this.#adopt(lease);
    return lease;
  }

  /**
   * A clean stop: tells the zookeeper we are leaving, so it elects another
   * leader at once (if we lead) or drops us from the in-sync set, and
   * resolves with the lease that follows. Null when the zookeeper could not
   * be told (it then finds out by our silence). With `resign`, we stay a
   * member and only our leadership goes, to another in-sync broker.
   */
  async leave(epoch: number, timeoutMs: number, resign = false): Promise<Lease | null> {
    const conn = this.#conn;
    if (!conn) return null;
    try {
      const res = await conn.request(
        { type: resign ? "resign" : "leave", brokerId: this.#o.brokerId, instance: this.instance, epoch },
        timeoutMs,
      );
      const lease = res.lease as Lease;
      this.#adopt(lease);
      return lease;
    } catch {
      return null;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#conn?.close();
    this.#wake?.();
    await this.#loop;
  }

  #acked(sentMs: number): void {
    this.#lastAckedSendMs = sentMs;
    this.#o.onAcked?.(sentMs);
  }

  #setBrokers(brokers: BrokerInfo[]): void {
    this.#brokers = brokers;
    this.#o.onBrokers?.(brokers);
  }

  #adopt(lease: Lease): void {
    if (this.#lease && lease.epoch < this.#lease.epoch && lease.epoch !== this.#behindLogged) {
      // The zookeeper's lease is older than one we followed (its file went back): said once per
      // epoch; our heartbeats carry our epoch, and the zookeeper moves past it.
      this.#behindLogged = lease.epoch;
      this.#o.log.write("lease_behind", { zookeeperEpoch: lease.epoch, ourEpoch: this.#lease.epoch });
    }
    if (
      !this.#lease || lease.epoch > this.#lease.epoch ||
      (lease.epoch === this.#lease.epoch && lease.version > this.#lease.version)
    ) {
      this.#lease = lease;
      // A lease without an in-sync set (a zookeeper that lost its own, before it elects) tells nothing of it.
      if (lease.isr.length > 0) this.#view = { epoch: lease.epoch, version: lease.version, isr: lease.isr };
      this.#o.onLease(lease);
    }
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#wake = null;
  }

  /** What this broker tells the zookeeper when it registers: where it is, what it holds, what it followed. */
  #registration(): Record<string, unknown> {
    const o = this.#o;
    return {
      type: "register",
      brokerId: o.brokerId,
      host: o.host,
      port: o.port,
      ...(o.kafkaPort ? { kafkaPort: o.kafkaPort } : {}),
      ...(o.kafkaPort && o.kafkaHost ? { kafkaHost: o.kafkaHost } : {}),
      logEndTotal: o.logEndTotal(),
      epoch: o.epoch(),
      ...(o.lost?.() ? { lost: o.lost() } : {}),
      ...(this.#view ? { lease: this.#view } : {}),
      leading: o.leading(),
      // This process was registered before (the zookeeper restarted, or the connection broke): it stayed up.
      ...(this.#registeredOnce ? { reconnecting: true } : {}),
      instance: this.instance,
      pid: Deno.pid,
    };
  }

  async #run(): Promise<void> {
    let reported = false;
    while (!this.#stopped) {
      try {
        this.#conn = await Connection.open(this.#o.zkHost, this.#o.zkPort, {
          connectTimeoutMs: this.#o.sessionTimeoutMs,
          onPush: (frame) => {
            if (frame.push === "lease") this.#adopt(frame.lease as Lease);
            else if (frame.push === "brokers" && Array.isArray(frame.brokers)) {
              this.#setBrokers(frame.brokers as BrokerInfo[]);
            }
          },
        });
        const sentAt = this.#now();
        const res = await this.#conn.request(this.#registration(), this.#o.sessionTimeoutMs);
        this.#acked(sentAt);
        this.#registeredOnce = true;
        this.#o.log.write("registered", {
          zookeeper: `${this.#o.zkHost}:${this.#o.zkPort}`,
        });
        reported = false;
        this.#adopt(res.lease as Lease);
        if (Array.isArray(res.brokers)) this.#setBrokers(res.brokers as BrokerInfo[]);
        while (!this.#stopped && !this.#conn.isClosed) {
          await this.#sleep(this.#o.heartbeatMs);
          if (this.#stopped) break;
          if (this.#o.holdHeartbeats?.()) continue;
          const sent = this.#now();
          const hb = await this.#conn.request({
            type: "heartbeat",
            brokerId: this.#o.brokerId,
            logEndTotal: this.#o.logEndTotal(),
            epoch: this.#o.epoch(),
            lost: this.#o.lost?.() ?? 0,
          }, this.#o.sessionTimeoutMs);
          this.#acked(sent);
          this.#adopt(hb.lease as Lease);
          if (Array.isArray(hb.brokers)) this.#setBrokers(hb.brokers as BrokerInfo[]);
        }
      } catch (err) {
        if (this.#stopped) break;
        if (err instanceof YakError && err.code === "BROKER_ID_IN_USE") {
          this.#o.log.write("registration_refused", { error: err.message });
          this.#stopped = true;
          this.#o.onRefused(err);
          break;
        }
        if (!reported) {
          this.#o.log.write("zookeeper_unreachable", {
            zookeeper: `${this.#o.zkHost}:${this.#o.zkPort}`,
            error: err instanceof Error ? err.message : String(err),
          });
          reported = true;
        }
      } finally {
        this.#conn?.close();
        this.#conn = null;
      }
      if (!this.#stopped) await this.#sleep(this.#o.heartbeatMs);
    }
  }
}
