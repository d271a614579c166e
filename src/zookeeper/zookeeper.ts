/**
 * The zookeeper: broker membership by heartbeat, leader election, and the
 * lease file. It holds no topic data; it only says who leads, in which epoch,
 * and who is in sync.
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULTS } from "../config.ts";
import { monotonicMs } from "../clock.ts";
import { OpLog } from "../op_log.ts";
import { ensureDataDir, refuseForeignOwner } from "../files.ts";
import { YakError } from "../errors.ts";
import {
  type BrokerInfo,
  int,
  type Lease,
  type LeaseView,
  leaseViewOf,
  optInt,
  optStr,
  type Request,
  str,
} from "../protocol/messages.ts";
import { type ConnectionLimits, RequestMemory } from "../protocol/listener.ts";
import { serve, type Server, type Session } from "../protocol/server.ts";
import { electLeader } from "./election.ts";
import { readLease, writeLease } from "./lease_file.ts";

/** Options of {@link Zookeeper.start}. */
export interface ZookeeperOptions {
  dataDir: string;
  host: string;
  port: number;
  heartbeatMs: number;
  sessionTimeoutMs: number;
  maxFrameBytes: number;
  /** Defaults to src/config.ts's. */
  connections?: ConnectionLimits;
  queuedMaxRequestBytes?: number;
  echo?: boolean;
  /**
   * With no leader at start, elect once this many brokers have registered
   * rather than after one session timeout (the wait is for stragglers, and
   * whoever starts the cluster may know there are none: `yak cluster`).
   */
  expectedBrokers?: number;
  /** The monotonic clock (injectable for tests). */
  clock?: () => number;
  /**
   * How long after its start a zookeeper without a leader waits before it
   * elects one (default: the session timeout, so a leader that held the
   * lease before a restart can register again first and no epoch is issued
   * twice). 0 only for a brand-new data root that no broker ever led in:
   * startCluster's temp directory.
   */
  startupGraceMs?: number;
  /**
   * After an outage of the whole in-sync set, how long an election waits
   * for the rest of it once one member is back (default ten session
   * timeouts): see {@link Zookeeper} #outageSince.
   */
  outageWaitMs?: number;
}

/** What a registering broker reports of itself, beside its address: what it holds and what it followed. */
function reported(req: Request, now: number) {
  const view = leaseViewOf(req.lease);
  return {
    lastSeen: now,
    registeredMs: now,
    logEndTotal: optInt(req, "logEndTotal", 0),
    // The epoch of the lease it followed counts too: an election with no write after it is in no log, and must
    // not be issued again (the zookeeper's floor).
    epoch: Math.max(optInt(req, "epoch", 0), view?.epoch ?? 0),
    view,
    lost: lostOf(req),
    pid: optInt(req, "pid", 0, 0, 2 ** 31 - 1) || null,
  };
}

/** The lines a broker says it cut as damaged at start-up (`lost`; `true` from a broker of a day: at least one). */
function lostOf(req: Request): number {
  const lost = req.lost;
  return lost === true ? 1 : Number.isSafeInteger(lost) && (lost as number) > 0 ? lost as number : 0;
}

/** Who may lead (null: any live broker), who stays in the set beside the winner, and whom an election waits for. */
interface Eligible {
  isr: number[] | null;
  keep: number[];
  waitingFor: number[];
  view: LeaseView | null;
  /** Why it waits, for the log, when not for brokers of a lease view or the lease's set. */
  note?: string;
}

interface Member {
  id: number;
  host: string;
  port: number;
  kafkaPort?: number;
  /** The host Kafka clients reach `kafkaPort` by (absent from older brokers). */
  kafkaHost?: string;
  /** Monotonic ms of the last register or heartbeat. */
  lastSeen: number;
  logEndTotal: number;
  /** The epoch it last reported (its logs' newest, or the lease it follows). */
  epoch: number;
  /** The newest lease with an in-sync set it followed, as it registered (see LeaseView). */
  view: LeaseView | null;
  /** The lines it cut as damaged at start-up and has not copied back (0: none; see #preferWhole). */
  lost: number;
  /** Monotonic ms of its registration. */
  registeredMs: number;
  alive: boolean;
  session: Session | null;
  /** The broker process (a random id per start): a new one means a restart. */
  instance: string | null;
  /** Its process id, as it said (tools on its machine check it against the pid file). */
  pid: number | null;
}

/**
 * A running zookeeper.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Zookeeper } from "./zookeeper.ts";
 * const dataDir = await Deno.makeTempDir();
 * const zk = await Zookeeper.start({
 *   dataDir, host: "127.0.0.1", port: 0, heartbeatMs: 250,
 *   sessionTimeoutMs: 1000, maxFrameBytes: 1 << 20, echo: false,
 * });
 * assert.notEqual(zk.port, 0); // a free port was picked
 * await zk.stop();
 * await Deno.remove(dataDir, { recursive: true });
 * ```
 */
export class Zookeeper {
  readonly log: OpLog;
  readonly #opts: ZookeeperOptions;
  readonly #leasePath: string;
  readonly #members = new Map<number, Member>();
  readonly #now: () => number;
  readonly #startedAt: number;
  /**
   * Since when no member of the in-sync set has been alive (this zookeeper
   * starts so: it has heard from nobody), until a leader is elected; null
   * while the set is up. An election then waits a while for all of it
   * (#justBack).
   */
  #outageSince: number | null;
  /** election_blind was logged (once). */
  #blindSaid = false;
  /** Until then nobody is declared dead: after our own start, or after we were paused. */
  #graceUntil: number;
  #lastCheckMs: number;
  #lease: Lease;
  #server!: Server;
  #timer: ReturnType<typeof setInterval> | undefined;
  #checking = false;
  /** What the last `no_leader` line said it waits for (null: none since the last election): said again when it changes. */
  #noLeaderSaid: string | null = null;
  /**
   * The highest epoch any broker has reported (registration, heartbeats).
   * Every election goes above it, so an epoch is never issued twice, even
   * when the lease file on this disk is older than what the brokers saw (a
   * restored backup, a power cut that lost the last rename).
   */
  #epochFloor = 0;
  // Serializes lease changes so two elections never interleave their writes.
  #changing: Promise<void> = Promise.resolve();
  readonly #watchers = new Set<() => void>();

  private constructor(opts: ZookeeperOptions, lease: Lease, log: OpLog) {
    this.#opts = opts;
    this.#leasePath = join(opts.dataDir, "zookeeper", "leader.lease");
    this.#lease = lease;
    this.log = log;
    this.#now = opts.clock ?? monotonicMs;
    this.#startedAt = this.#now();
    this.#outageSince = this.#startedAt;
    this.#graceUntil = this.#startedAt + opts.sessionTimeoutMs;
    this.#lastCheckMs = this.#startedAt;
  }

  static async start(opts: ZookeeperOptions): Promise<Zookeeper> {
    const dir = join(opts.dataDir, "zookeeper");
    refuseForeignOwner(opts.dataDir, "the data root");
    refuseForeignOwner(dir, "the zookeeper's data directory");
    await ensureDataDir(dir);
    const log = new OpLog(
      join(dir, "zookeeper.log"),
      "zookeeper",
      opts.echo ?? true,
    );
    const leasePath = join(dir, "leader.lease");
    const loaded = await readLease(leasePath);
    let lease: Lease = {
      epoch: 0,
      leaderId: null,
      host: "",
      port: 0,
      isr: [],
      issuedAt: 0,
      ttlMs: opts.sessionTimeoutMs,
      version: 0,
    };
    if (typeof loaded === "string") {
      // Brokers report their epochs; the next election goes above all of them.
      log.write("lease_invalid", {
        file: leasePath,
        problem: loaded,
        action: "starting without a leader",
      });
    } else if (loaded) {
      lease = loaded;
    }
    const zk = new Zookeeper(opts, lease, log);
    zk.#server = serve({
      host: opts.host,
      port: opts.port,
      maxFrameBytes: opts.maxFrameBytes,
      limits: opts.connections,
      memory: new RequestMemory(opts.queuedMaxRequestBytes ?? DEFAULTS.queuedMaxRequestBytes),
      handler: (req, session) => zk.#handle(req, session),
      onError: (message, fields) => log.write("protocol_error", { message, ...fields }),
    });
    log.write("started", {
      host: zk.#server.host,
      port: zk.#server.port,
      epoch: lease.epoch,
      leader: lease.leaderId,
      pid: Deno.pid,
    });
    zk.#timer = setInterval(
      () => zk.#check(),
      Math.max(20, Math.floor(opts.heartbeatMs / 2)),
    );
    return zk;
  }

  get port(): number {
    return this.#server.port;
  }

  get lease(): Lease {
    return this.#lease;
  }

  /** The lease and the members, as the `status` request answers (the console reads it in-process). */
  status(): { lease: Lease; brokers: BrokerInfo[] } {
    return { lease: this.#lease, brokers: this.#brokerInfos() };
  }

  /**
   * Calls `fn` after the lease or a member's liveness changes (the console
   * pushes it to viewers at once). Returns what stops the calls.
   */
  onChange(fn: () => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  #changed(): void {
    for (const fn of this.#watchers) {
      try {
        fn();
      } catch { /* a watcher's failure is its own */ }
    }
    // The brokers learn of each other now, not at their next heartbeat: a follower that registered before the
    // leader named no controller in Kafka's Metadata until then, and sarama's ClusterAdmin gave up (CI, once).
    const frame = { push: "brokers", brokers: this.#brokerInfos() };
    for (const m of this.#members.values()) m.session?.push(frame).catch(() => {});
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#changing;
    await this.#server.close();
    this.log.write("stopped");
    this.log.close();
  }

  #handle(req: Request, session: Session) {
    switch (req.type) {
      case "register":
        return this.#register(req, session);
      case "heartbeat":
        return this.#heartbeat(req);
      case "isr":
        return this.#proposeIsr(req);
      case "leave":
        return this.#leave(req);
      case "resign":
        return this.#resign(req);
      case "metadata":
      case "status":
        return this.status();
      default:
        throw new YakError(
          "UNKNOWN_REQUEST",
          `the zookeeper does not handle '${req.type}'`,
        );
    }
  }

  #brokerInfos(): BrokerInfo[] {
    const now = this.#now();
    return [...this.#members.values()].sort((a, b) => a.id - b.id).map((m) => ({
      id: m.id,
      host: m.host,
      port: m.port,
      ...(m.kafkaPort ? { kafkaPort: m.kafkaPort } : {}),
      ...(m.kafkaHost ? { kafkaHost: m.kafkaHost } : {}),
      alive: m.alive,
      lastSeenMsAgo: Math.round(now - m.lastSeen),
      logEndTotal: m.logEndTotal,
      ...(m.pid !== null ? { pid: m.pid } : {}),
    }));
  }

  async #register(req: Request, session: Session) {
    const id = int(req, "brokerId", 0, 1_000_000);
    const host = str(req, "host", 255);
    const port = int(req, "port", 1, 65535);
    const kafkaPort = optInt(req, "kafkaPort", 0, 0, 65535);
    const kafkaHost = optStr(req, "kafkaHost", 255);
    const now = this.#now();
    const said = reported(req, now);
    const epoch = said.epoch;
    const instance = optStr(req, "instance", 64) ?? null;
    const old = this.#members.get(id);
    this.#refuseIdInUse(id, host, port, instance, session, now);
    // A process we knew under another instance id has restarted (no instance: an older broker).
    const restarted = old !== undefined && old.instance !== null && instance !== null
      ? old.instance !== instance
      : !(req.leading === true && epoch === this.#lease.epoch);
    const member: Member = {
      id,
      host,
      port,
      ...(kafkaPort ? { kafkaPort } : {}),
      ...(kafkaPort && kafkaHost ? { kafkaHost } : {}),
      ...said,
      alive: true,
      session,
      instance,
    };
    this.#members.set(id, member);
    session.onClose(() => {
      if (this.#members.get(id)?.session === session) member.session = null;
    });
    this.log.write("broker_registered", {
      broker: id,
      host,
      port,
      ...(kafkaPort ? { kafka: `${kafkaHost || host}:${kafkaPort}` } : {}),
      rejoined: old !== undefined,
      ...(old !== undefined && !restarted ? { reconnected: true } : {}),
    });
    this.#changed();
    this.#epochFloor = Math.max(this.#epochFloor, epoch);
    // A member of the lease's set that stayed up (the leader still leading, or a process that was registered
    // before: this zookeeper restarted, or its connection broke) and followed this lease: the set was never down,
    // and a failover need not wait for it to come back (a probe saw one wait 10 s after a zookeeper restart).
    const stayedUp = (this.#lease.leaderId === id && !restarted) ||
      (req.reconnecting === true && said.view?.epoch === this.#lease.epoch && this.#lease.isr.includes(id));
    if (stayedUp) this.#outageSince = null;
    await this.#serial(async () => {
      if (await this.#movePastBrokers(id, epoch)) return;
      if (this.#lease.leaderId === id && restarted) {
        // The leader restarted: a new process, so a new epoch; followers re-check their logs.
        // (A leader that only reconnected, e.g. after a zookeeper pause or restart, keeps its epoch.)
        await this.#elect("leader_restarted");
      } else if (this.#lease.leaderId === null && this.#pastStartupGrace()) {
        await this.#elect("no_leader");
      }
    });
    return {
      lease: this.#lease,
      heartbeatMs: this.#opts.heartbeatMs,
      sessionTimeoutMs: this.#opts.sessionTimeoutMs,
      brokers: this.#brokerInfos(),
    };
  }

  /** Two live processes with one id would both append under broker-N: the second is refused. */
  #refuseIdInUse(id: number, host: string, port: number, instance: string | null, session: Session, now: number) {
    const old = this.#members.get(id);
    if (
      old && old.alive && old.session !== null && old.session !== session &&
      old.instance !== null && old.instance !== instance && now - old.lastSeen <= this.#opts.sessionTimeoutMs
    ) {
      this.log.write("broker_id_refused", { broker: id, host, port, holder: `${old.host}:${old.port}` });
      throw new YakError(
        "BROKER_ID_IN_USE",
        `broker id ${id} is in use by a live broker at ${old.host}:${old.port}; give this broker another --id`,
      );
    }
  }

  /**
   * A broker stopping cleanly: if it leads, another in-sync broker is
   * elected now (not a session later); if it follows, it leaves the in-sync
   * set now, so acks=all stops waiting for it before it goes.
   */
  async #leave(req: Request) {
    const { id, member } = this.#caller(req);
    await this.#serial(async () => {
      member.alive = false;
      this.log.write("broker_left", { broker: id });
      this.#changed();
      if (this.#lease.leaderId === id) {
        await this.#elect("leader_left");
      } else if (this.#lease.isr.includes(id)) {
        const before = this.#lease.isr;
        const isr = before.filter((b) => b !== id);
        await this.#commit({ ...this.#lease, isr, issuedAt: Date.now() });
        this.log.write("isr_changed", { epoch: this.#lease.epoch, from: before, to: isr, reason: "broker left" });
      }
    });
    return { lease: this.#lease };
  }

  /** The registered broker a request comes from, as this process (its `instance`), or INVALID_REQUEST. */
  #caller(req: Request) {
    const id = int(req, "brokerId", 0, 1_000_000);
    const instance = optStr(req, "instance", 64) ?? null;
    const member = this.#members.get(id);
    if (!member || (member.instance !== null && member.instance !== instance)) {
      throw new YakError("INVALID_REQUEST", `broker ${id} is not registered here as this process`);
    }
    return { id, member };
  }

  /**
   * A leader whose copy of some data is damaged hands leadership over: it
   * leaves the in-sync set (it is about to re-copy what is damaged) and
   * another live in-sync broker is elected now. With no other in-sync broker
   * alive nothing changes (the leader keeps serving, refusing the damaged
   * records), as an unclean election could lose acknowledged records.
   */
  async #resign(req: Request) {
    const { id } = this.#caller(req);
    await this.#serial(async () => {
      const others = this.#lease.isr.filter((b) => b !== id && this.#members.get(b)?.alive);
      if (this.#lease.leaderId !== id || others.length === 0) {
        this.log.write("resign_refused", {
          broker: id,
          reason: this.#lease.leaderId !== id ? "not the leader" : "no other in-sync broker is alive",
        });
        return;
      }
      this.log.write("leader_resigned", { broker: id, epoch: this.#lease.epoch, isr: this.#lease.isr });
      await this.#elect("leader_resigned", id);
    });
    return { lease: this.#lease };
  }

  #heartbeat(req: Request) {
    const id = int(req, "brokerId", 0, 1_000_000);
    const member = this.#members.get(id);
    if (!member) {
      throw new YakError("INVALID_REQUEST", `broker ${id} must register first`);
    }
    member.lastSeen = this.#now();
    member.logEndTotal = optInt(req, "logEndTotal", member.logEndTotal);
    const epoch = optInt(req, "epoch", 0);
    member.epoch = epoch;
    member.lost = lostOf(req);
    if (epoch > this.#lease.epoch) {
      // This broker saw a newer epoch than our lease: ours is behind (an old file). Move past it.
      this.#epochFloor = Math.max(this.#epochFloor, epoch);
      this.#serial(async () => void await this.#movePastBrokers(id, epoch)).catch(() => {/* logged by #serial */});
    }
    if (!member.alive) {
      member.alive = true;
      this.log.write("broker_alive", { broker: id });
      this.#changed();
    }
    // Brokers learn each other's addresses here (Kafka Metadata names them all).
    return { lease: this.#lease, brokers: this.#brokerInfos() };
  }

  async #proposeIsr(req: Request) {
    const id = int(req, "brokerId", 0, 1_000_000);
    const epoch = int(req, "epoch");
    if (id !== this.#lease.leaderId || epoch !== this.#lease.epoch) {
      throw new YakError(
        "STALE_EPOCH",
        `broker ${id} epoch ${epoch} is not the leader of epoch ${this.#lease.epoch}`,
        {
          lease: this.#lease,
        },
      );
    }
    const raw = req.isr;
    if (
      !Array.isArray(raw) || raw.length > 1000 ||
      !raw.every((x) => Number.isSafeInteger(x))
    ) {
      throw new YakError(
        "INVALID_REQUEST",
        "'isr' must be a list of broker ids",
      );
    }
    // Only live brokers join; the leader is always in its own set.
    const isr = [
      ...new Set([
        id,
        ...(raw as number[]).filter((b) => this.#members.get(b)?.alive),
      ]),
    ].sort((a, b) => a - b);
    await this.#serial(async () => {
      if (id !== this.#lease.leaderId || epoch !== this.#lease.epoch) return;
      if (isr.join() === this.#lease.isr.join()) return;
      const before = this.#lease.isr;
      await this.#commit({ ...this.#lease, isr, issuedAt: Date.now() });
      this.log.write("isr_changed", {
        epoch,
        leader: id,
        from: before,
        to: isr,
      });
    });
    return { lease: this.#lease };
  }

  /**
   * With no leader at start (a new cluster, or a lost lease file), wait one
   * session for every broker to register, so the election sees them all and
   * picks the one holding the most, not the first to call; or, when the
   * broker count is known (`expectedBrokers`), until that many have.
   */
  #pastStartupGrace(): boolean {
    const grace = this.#opts.startupGraceMs;
    if (
      grace !== undefined
        ? this.#now() >= this.#startedAt + grace
        : this.#now() > this.#startedAt + this.#opts.sessionTimeoutMs
    ) {
      return true;
    }
    const expected = this.#opts.expectedBrokers;
    return expected !== undefined && [...this.#members.values()].filter((m) => m.alive).length >= expected;
  }

  async #check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      await this.#serial(() => this.#checkOnce());
    } finally {
      this.#checking = false;
    }
  }

  async #checkOnce(): Promise<void> {
    const now = this.#now();
    const gapMs = now - this.#lastCheckMs;
    this.#lastCheckMs = now;
    if (gapMs > Math.max(this.#opts.heartbeatMs * 2, this.#opts.sessionTimeoutMs / 2)) {
      // We did not run (SIGSTOP, a suspended VM): brokers' heartbeats queued
      // up unread, so silence says nothing about them. One session for them
      // to be heard again before anyone is declared dead.
      this.#graceUntil = now + this.#opts.sessionTimeoutMs;
      this.log.write("zookeeper_paused", { pausedMs: Math.round(gapMs), graceMs: this.#opts.sessionTimeoutMs });
    }
    const graceUntil = this.#graceUntil;
    let leaderDied = false;
    const died: number[] = [];
    for (const m of this.#members.values()) {
      if (now < graceUntil) break;
      if (m.alive && now - m.lastSeen > this.#opts.sessionTimeoutMs) {
        m.alive = false;
        died.push(m.id);
        this.log.write("broker_dead", {
          broker: m.id,
          silentMs: Math.round(now - m.lastSeen),
        });
        if (m.id === this.#lease.leaderId) leaderDied = true;
      }
    }
    const leader = this.#lease.leaderId;
    if (leader !== null && !this.#members.has(leader) && now > graceUntil) {
      leaderDied = true;
      this.log.write("broker_dead", {
        broker: leader,
        reason: "never registered since zookeeper start",
      });
      this.#members.set(leader, this.#neverRegistered(leader));
    }
    if (died.length > 0) this.#changed();
    if (leaderDied) {
      await this.#elect("leader_dead");
    } else if (leader !== null && this.#fresh(leader)) {
      // A dead follower leaves the in-sync set, so acks=all goes on without it. Not while the leader is silent
      // too: a crash of every broker is seen a check or two apart, and the set shrunk to the leader left nobody
      // for the outage wait (#justBack) to wait for; a probe lost 900 acknowledged records so. Once the leader
      // is heard again, a check shrinks it.
      const isr = this.#lease.isr.filter((b) => b === leader || this.#members.get(b)?.alive !== false);
      if (isr.length !== this.#lease.isr.length) {
        const before = this.#lease.isr;
        await this.#commit({ ...this.#lease, isr, issuedAt: Date.now() });
        this.log.write("isr_changed", {
          epoch: this.#lease.epoch,
          from: before,
          to: isr,
          reason: "broker dead",
        });
      }
    } else if (
      leader === null && this.#pastStartupGrace() && [...this.#members.values()].some((m) => m.alive)
    ) {
      await this.#elect("no_leader");
    }
  }

  /**
   * When a broker reports an epoch above the lease's, the lease file was
   * older than the cluster: without a leader, the lease takes the broker's
   * epoch; with one, a new election goes above every epoch reported. True
   * when it changed the lease. Call inside #serial.
   */
  async #movePastBrokers(broker: number, epoch: number): Promise<boolean> {
    if (epoch <= this.#lease.epoch) return false;
    this.log.write("lease_behind_brokers", { broker, brokerEpoch: epoch, leaseEpoch: this.#lease.epoch });
    if (this.#lease.leaderId === null) await this.#commit({ ...this.#lease, epoch: this.#epochFloor });
    else await this.#elect("lease_behind_brokers");
    return true;
  }

  /** Elects a leader among the live in-sync brokers (but `exclude`: a leader resigning). */
  async #elect(reason: string, exclude?: number): Promise<void> {
    const old = this.#lease;
    const pick = this.#preferWhole(this.#eligible(exclude));
    const winner = pick.waitingFor.length > 0 ? null : electLeader(this.#members.values(), pick.isr);
    if (winner === null) {
      if (pick.isr?.[0] === -1) this.#outageSince ??= this.#now();
      return await this.#noLeader(reason, pick);
    }
    this.#noLeaderSaid = null;
    const m = this.#members.get(winner)!;
    // Ending an outage, a member that holds fewer records than the winner (a lost tail) is not kept in the set: it
    // joins once it has copied them back. Kept, it counted as in sync while 900 records short (a probe), and could
    // have been elected had the winner died first. (In a failover the totals heartbeats bring lag: kept as before.)
    const keep = this.#outageSince === null
      ? pick.keep
      : pick.keep.filter((id) => (this.#members.get(id)?.logEndTotal ?? 0) >= m.logEndTotal);
    this.#outageSince = null;
    const isr = [...new Set([winner, ...keep])].sort((a, b) => a - b);
    const started = this.#now();
    await this.#commit({
      ...old,
      // Above every epoch a broker reported, not only above this lease's: never issued twice.
      epoch: Math.max(old.epoch, this.#epochFloor) + 1,
      leaderId: winner,
      host: m.host,
      port: m.port,
      isr,
      issuedAt: Date.now(),
      ttlMs: this.#opts.sessionTimeoutMs,
    });
    this.log.write("leader_elected", {
      reason,
      epoch: this.#lease.epoch,
      leader: winner,
      previous: old.leaderId,
      isr,
      logEndTotal: m.logEndTotal,
      ...(pick.view ? { fromBrokersLease: { epoch: pick.view.epoch, isr: pick.view.isr } } : {}),
      writeMs: Math.round(this.#now() - started),
    });
  }

  /** No broker may lead now: the lease says so (it had a leader), and the log whenever whom it waits for changes. */
  async #noLeader(reason: string, pick: Pick<Eligible, "waitingFor" | "view" | "note">): Promise<void> {
    const old = this.#lease;
    if (old.leaderId !== null) {
      await this.#commit({ ...old, leaderId: null, host: "", port: 0, issuedAt: Date.now() });
    }
    const said = JSON.stringify(pick.waitingFor);
    if (this.#noLeaderSaid === said) return;
    this.#noLeaderSaid = said;
    this.log.write("no_leader", {
      reason,
      isr: pick.view?.isr ?? old.isr,
      ...(pick.view
        ? {
          waitingFor: pick.waitingFor,
          note: `the lease file holds no in-sync set as new as the brokers': waiting for every broker of the ` +
            `newest one a broker reported (epoch ${pick.view.epoch})`,
        }
        : {
          ...(pick.waitingFor.length > 0 ? { waitingFor: pick.waitingFor } : {}),
          note: pick.note ??
            (pick.waitingFor.length > 0
              ? "the in-sync set is coming back from an outage: waiting a while for all of it (see outageWaitMs)"
              : "waiting for an in-sync broker to come back"),
        }),
    });
  }

  /**
   * Who may lead, for {@link #elect}: normally the live members of the
   * lease's in-sync set, kept beside the winner. When a broker followed a
   * lease newer than ours (this zookeeper's file was lost, garbled or went
   * back), the in-sync set of the newest such lease, and only once every
   * member of it is registered and alive: that broker's view may be old
   * itself, and the others report theirs as they register. Electing
   * whoever held the most instead once chose a broker that was dead while a
   * topic was deleted (its log end counted the deleted records) over the
   * in-sync two, which then truncated 5,000 acknowledged records. With no
   * in-sync set known anywhere (a new cluster, or brokers too old to report
   * one) any live broker of the highest epoch any of them reports.
   */
  #eligible(exclude?: number): Eligible {
    const old = this.#lease;
    const view = this.#newerView();
    if (view !== null) {
      const waitingFor = view.isr.filter((b) => !this.#members.get(b)?.alive);
      const isr = view.isr.filter((b) => b !== exclude);
      // Nobody of the set may lead (a resigning leader alone): nobody does, as with the lease's own set.
      return { isr: isr.length === 0 ? [-1] : isr, keep: [], waitingFor, view };
    }
    if (old.isr.length > 0) {
      // The dead leader may not come back as leader of the same set. A member silent for a while is likely dead too
      // (a crash of every broker is seen one check apart): not elected, but waited for (see #fresh).
      const isr = old.isr.filter((b) => b !== exclude && this.#fresh(b));
      const away = old.isr.filter((b) => b !== exclude && !this.#fresh(b));
      const waitingFor = isr.length > 0 && this.#justBack(isr) ? away : [];
      return { isr: isr.length === 0 ? [-1] : isr, keep: isr, waitingFor, view: null };
    }
    const live = [...this.#members.values()].filter((m) => m.alive);
    const top = Math.max(0, ...live.map((m) => m.epoch));
    // A broker that led or followed before (an epoch) but reports no lease it followed lost its lease.json, and this
    // zookeeper its lease: who was in sync is unknown, and its epochs may be behind what others hold (a broker
    // that missed an epoch was elected alone, its epoch issued twice, and the others truncated 20,000
    // acknowledged records to its log). With the broker count known, wait for them all (for a while).
    const expected = this.#opts.expectedBrokers;
    const blind = live.some((m) => m.epoch > 0 && m.view === null);
    if (blind && expected !== undefined && live.length < expected && this.#justBack(live.map((m) => m.id))) {
      const note = `no lease and a broker with no lease.json: waiting for all ${expected} brokers to register`;
      return { isr: [-1], keep: [], waitingFor: [-1], view, note };
    }
    if (blind && expected === undefined && !this.#blindSaid) {
      this.#blindSaid = true;
      this.log.write("election_blind", {
        note: "no lease, and a broker that held data reports no lease.json: who was in sync is unknown; " +
          "without --expected-brokers the zookeeper cannot wait for the others, and may elect one missing records",
      });
    }
    return {
      isr: top === 0 ? null : live.filter((m) => m.epoch === top).map((m) => m.id),
      keep: [],
      waitingFor: [],
      view,
    };
  }

  /**
   * Whether broker `id` is alive and heard from lately (within three
   * heartbeats or half a session). When every broker of a cluster crashed at
   * once, the zookeeper declared them dead in checks a few ms apart: a member
   * not yet declared dead was elected alone, the set became just it, and the
   * wait for a set coming back from an outage (#justBack) had nobody to wait
   * for (a review found it). A silent member is waited for instead, until it
   * is heard again or declared dead.
   */
  #fresh(id: number): boolean {
    const m = this.#members.get(id);
    const quiet = Math.max(3 * this.#opts.heartbeatMs, this.#opts.sessionTimeoutMs / 2);
    return m !== undefined && m.alive && this.#now() - m.lastSeen <= quiet;
  }

  /**
   * Whether the in-sync set is coming back from an outage (no member of it
   * was alive: the cluster, or this zookeeper, restarted) and the first of
   * `ids` registered within the outage wait: the members still away may hold
   * more. Electing the first one back lost acknowledged records when its log
   * had lost a tail the others held (a torn or unflushed write). A failover
   * or a rolling restart, with members of the set up, never waits.
   */
  #justBack(ids: readonly number[]): boolean {
    if (this.#outageSince === null) return false;
    const back = Math.min(...ids.map((b) => this.#members.get(b)?.registeredMs ?? -Infinity));
    return this.#now() - back < (this.#opts.outageWaitMs ?? 10 * this.#opts.sessionTimeoutMs);
  }

  /** The lease's leader that has not registered since this zookeeper started, as a dead member. */
  #neverRegistered(leader: number): Member {
    const l = this.#lease;
    const none = { lastSeen: -Infinity, registeredMs: -Infinity, logEndTotal: 0, view: null, lost: 0, pid: null };
    return {
      id: leader,
      host: l.host,
      port: l.port,
      ...none,
      epoch: l.epoch,
      alive: false,
      session: null,
      instance: null,
    };
  }

  /**
   * Brokers that cut damaged records at start-up (`lost`: how many lines,
   * when they register) no longer hold what they acknowledged: among those
   * that may lead, one that lost nothing does. When every live one of them
   * lost records, the others get a session timeout to register; then a live
   * broker outside the set that lost nothing leads, alone, if it holds at
   * least as many records as each damaged one held before its cut (the
   * brokers that left a cluster stopped in order); else the damaged one
   * leads, as Kafka's last in-sync replica would. Electing the damaged one
   * made the others truncate to its cut log: a follower damaged while stopped
   * became the last in-sync broker as the cluster stopped (leadership moved
   * as the others left), and 2,500 acknowledged records were lost on every
   * replica. (Record counts are totals over partitions: a broker that missed
   * a topic's deletion counts its records too.)
   */
  #preferWhole(pick: Eligible): Eligible {
    const m = (id: number) => this.#members.get(id);
    const candidates = (pick.isr ?? [...this.#members.keys()]).filter((id) => m(id)?.alive);
    if (candidates.length === 0 || !candidates.some((id) => m(id)!.lost > 0)) return pick;
    const whole = candidates.filter((id) => m(id)!.lost === 0);
    if (whole.length > 0) return { ...pick, isr: whole, keep: pick.keep.filter((id) => m(id)?.lost === 0) };
    // Every live one that may lead lost records. Another of its set, or a whole broker, may be starting too: a
    // session timeout to register.
    const newest = Math.max(...candidates.map((id) => m(id)!.registeredMs));
    if (this.#now() - newest < this.#opts.sessionTimeoutMs) {
      const away = (pick.isr ?? []).filter((id) => !m(id)?.alive);
      return { ...pick, waitingFor: away.length > 0 ? away : [-1] };
    }
    // Then a live broker outside the set leads only if it holds as many records as each damaged one held before
    // its cut (a broker long out of the set, or a new one, does not); else the damaged one does, as Kafka would.
    const held = Math.max(...candidates.map((id) => m(id)!.logEndTotal + m(id)!.lost));
    const others = [...this.#members.values()].filter((o) => o.alive && o.lost === 0 && o.logEndTotal >= held);
    return others.length === 0 ? pick : { ...pick, isr: others.map((o) => o.id), keep: [] };
  }

  /**
   * The newest lease with an in-sync set that a registered broker reported,
   * when ours has none or is older; else null.
   */
  #newerView(): LeaseView | null {
    let best: LeaseView | null = null;
    for (const m of this.#members.values()) {
      const v = m.view;
      if (
        v !== null && (best === null || v.epoch > best.epoch || (v.epoch === best.epoch && v.version > best.version))
      ) {
        best = v;
      }
    }
    const l = this.#lease;
    if (
      best === null ||
      (l.isr.length > 0 && (best.epoch < l.epoch || (best.epoch === l.epoch && best.version <= l.version)))
    ) {
      return null;
    }
    return best;
  }

  /**
   * Runs lease decisions one at a time, each reading the lease as the one
   * before it left it, so two elections never race.
   */
  #serial(fn: () => Promise<void>): Promise<void> {
    const done = this.#changing.then(fn);
    this.#changing = done.catch((err) => this.log.write("lease_write_failed", { error: String(err) }));
    return done;
  }

  /** Writes a new lease, then tells every connected broker at once. Call inside #serial. */
  async #commit(next: Lease): Promise<void> {
    const lease = { ...next, version: this.#lease.version + 1 };
    await writeLease(this.#leasePath, lease);
    this.#lease = lease;
    this.#changed();
    const frame = { push: "lease", lease };
    await Promise.all(
      [...this.#members.values()].map((m) => m.session?.push(frame).catch(() => {})),
    );
  }
}
