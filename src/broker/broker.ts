/**
 * A broker: storage, the native protocol server, its zookeeper session, and
 * the switch between leading and following as leases change.
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULTS } from "../config.ts";
import { OpLog } from "../op_log.ts";
import { YakError } from "../errors.ts";
import type { Lease, Request } from "../protocol/messages.ts";
import { serve, type Server, type Session } from "../protocol/server.ts";
import type { BrokerContext, BrokerOptions, ClientInfo, LeaderInfo } from "./context.ts";
import { clientHandlers } from "./handlers.ts";
import { LeaderState } from "./leader_state.ts";
import { CLUSTER_KEY, type MetaOp } from "./metadata.ts";
import { Notifier } from "./notifier.ts";
import { ProducerState } from "./producer_state.ts";
import { epochEnds, ReplicaFetcher, replicate } from "./replication.ts";
import { TopicStore } from "./topic_store.ts";
import { ZkSession } from "./zk_session.ts";
import { type DataLock, lockDataDir } from "./data_lock.ts";
import { encodeBatch } from "../log/record.ts";
import type { PartitionLog, ReadResult } from "../log/partition_log.ts";

/**
 * A running broker.
 *
 * @example
 * ```ts ignore
 * const broker = await Broker.start({ ...options, id: 1, port: 0 });
 * console.log(broker.port);
 * await broker.stop();
 * ```
 */
export class Broker implements BrokerContext {
  readonly opts: BrokerOptions;
  readonly store: TopicStore;
  readonly log: OpLog;
  readonly producers = new ProducerState();
  readonly notifier = new Notifier();
  readonly clients = new Map<number, ClientInfo>();
  readonly failingWrites = new Set<string>();
  readonly dir: string;
  #server!: Server;
  #zk!: ZkSession;
  #role: "leader" | "follower" | "none" = "none";
  #epoch = 0;
  #leader: LeaderInfo | null = null;
  #leaderState: LeaderState | null = null;
  #fetcher: ReplicaFetcher | null = null;
  #transition: Promise<void> = Promise.resolve();
  #creating = new Map<string, Promise<void>>();
  #isrTimer: ReturnType<typeof setInterval> | undefined;
  #isrProposal: Promise<unknown> | null = null;
  /** Set by a clean stop: no new writes, no new roles. */
  #stopping = false;
  #dataLock: DataLock | null = null;
  #fatal!: (err: YakError) => void;
  /** Resolves with the error that forces this broker to stop (e.g. its id is in use). */
  readonly fatal: Promise<YakError> = new Promise((resolve) => (this.#fatal = resolve));

  private constructor(
    opts: BrokerOptions,
    store: TopicStore,
    log: OpLog,
    dir: string,
  ) {
    this.opts = opts;
    this.store = store;
    this.log = log;
    this.dir = dir;
  }

  /** Opens storage (repairing what it safely can), listens, and joins the cluster. */
  static async start(opts: BrokerOptions): Promise<Broker> {
    const dir = join(opts.dataDir, `broker-${opts.id}`);
    // Before anything here is opened: a second process on this directory leaves its files alone.
    const dataLock = await lockDataDir(dir);
    await Deno.mkdir(dir, { recursive: true });
    const log = new OpLog(
      join(dir, "broker.log"),
      `broker-${opts.id}`,
      opts.echo,
    );
    let store: TopicStore;
    try {
      store = await TopicStore.open(join(dir, "topics"), {
        segmentBytes: opts.segmentBytes,
        indexIntervalBytes: opts.indexIntervalBytes,
        tailCacheBytes: DEFAULTS.tailCacheBytes,
        onEvent: (event, fields) => log.write(event, fields),
      });
    } catch (err) {
      log.write("start_failed", {
        error: err instanceof Error ? err.message : String(err),
      });
      log.close();
      throw err;
    }
    const broker = new Broker(opts, store, log, dir);
    broker.#dataLock = dataLock;
    for (const ref of store.all()) {
      broker.#epoch = Math.max(broker.#epoch, ref.log.epochs.lastEpoch);
      ref.log.onAppend(() => broker.notifier.notify());
    }
    const handle = clientHandlers(broker);
    broker.#server = serve({
      host: opts.host,
      port: opts.port,
      maxFrameBytes: opts.maxFrameBytes,
      maxConnections: opts.maxConnections,
      handler: (req, session) => broker.#handle(req, session, handle),
      onError: (message, fields) => log.write("protocol_error", { message, ...fields }),
    });
    await Deno.writeTextFile(join(dir, "broker.pid"), `${Deno.pid}\n`);
    log.write("started", {
      broker: opts.id,
      host: broker.#server.host,
      port: broker.#server.port,
      pid: Deno.pid,
      topics: store.topicNames().length,
      logEndTotal: store.logEndTotal(),
    });
    broker.#zk = new ZkSession({
      zkHost: opts.zkHost,
      zkPort: opts.zkPort,
      brokerId: opts.id,
      host: broker.#server.host,
      port: broker.#server.port,
      heartbeatMs: opts.heartbeatMs,
      sessionTimeoutMs: opts.sessionTimeoutMs,
      log,
      logEndTotal: () => store.logEndTotal(),
      epoch: () => broker.#epoch,
      leading: () => broker.#role === "leader",
      onLease: (lease) => broker.#onLease(lease),
      onRefused: (err) => broker.#fatal(err),
    });
    broker.#zk.start();
    broker.#isrTimer = setInterval(
      () => broker.#maintainIsr(),
      Math.max(50, opts.heartbeatMs),
    );
    return broker;
  }

  get port(): number {
    return this.#server.port;
  }

  role(): "leader" | "follower" | "none" {
    return this.#role;
  }

  epoch(): number {
    return this.#epoch;
  }

  leader(): LeaderInfo | null {
    return this.#leader;
  }

  leaseValid(): boolean {
    return this.#zk.leaderLeaseValid();
  }

  requireLeader(): LeaderState {
    if (this.#role === "leader" && this.#leaderState && !this.#stopping) return this.#leaderState;
    if (this.#stopping) {
      throw new YakError("NOT_LEADER", `broker ${this.opts.id} is shutting down; ask the cluster for the new leader`);
    }
    const l = this.#leader;
    if (!l) {
      throw new YakError(
        "NO_LEADER",
        "the cluster has no leader right now; retry shortly",
      );
    }
    throw new YakError(
      "NOT_LEADER",
      `broker ${this.opts.id} is not the leader; broker ${l.id} at ${l.host}:${l.port} is (epoch ${l.epoch})`,
      { leaderId: l.id, host: l.host, port: l.port, epoch: l.epoch },
    );
  }

  async appendMeta(op: MetaOp): Promise<number> {
    const leader = this.requireLeader();
    const log = this.store.clusterLog;
    const epoch = leader.epoch;
    const key = op.op === "topic" ? op.topic : op.group;
    const appended = log.append(
      epoch,
      1,
      (base) =>
        encodeBatch(
          [{ key, value: JSON.stringify(op) }],
          base,
          epoch,
          Date.now(),
          null,
          0,
        ),
    );
    await appended.done;
    await this.store.apply(op);
    leader.updateHw(CLUSTER_KEY);
    return appended.baseOffset + 1;
  }

  async readLog(log: PartitionLog, from: number, maxBytes: number, end: number): Promise<ReadResult> {
    try {
      return await log.read(from, maxBytes, end);
    } catch (err) {
      if (!(err instanceof YakError) || err.code !== "CORRUPT_LOG") throw err;
      const offset = Number(err.data?.offset);
      if (this.#role !== "follower" || !Number.isSafeInteger(offset)) {
        this.log.write("corrupt_record", { dir: log.dir, offset, role: this.#role });
        throw err;
      }
      // A follower's copy is healed from the leader: cut here, the fetcher refills it.
      this.log.write("corrupt_record_healing", { dir: log.dir, offset, from: log.logEndOffset });
      await log.truncateTo(offset);
      if (log === this.store.clusterLog) await this.store.replay();
      throw new YakError("UNAVAILABLE", `broker ${this.opts.id} is re-copying ${log.dir} from offset ${offset}; retry`);
    }
  }

  createTopic(
    topic: string,
    partitions: number,
    mode: "create" | "ensure" | "alter",
    configs: Record<string, string> = {},
  ): Promise<void> {
    const pending = this.#creating.get(topic);
    if (pending && mode === "ensure") return pending;
    const run = (async () => {
      await pending?.catch(() => {});
      const have = this.store.partitionCount(topic);
      if (mode === "ensure" && have > 0) return;
      if (mode === "create" && have > 0) {
        throw new YakError(
          "INVALID_ARGUMENT",
          `topic '${topic}' already exists with ${have} partitions`,
        );
      }
      if (have === 0) {
        // Two names that differ only by case would share a directory on a
        // case-insensitive disk (macOS, Windows): refuse the second one.
        const twin = this.store.topicNames().find((t) => t.toLowerCase() === topic.toLowerCase());
        if (twin) {
          throw new YakError(
            "INVALID_TOPIC",
            `topic '${topic}' differs from existing topic '${twin}' only by case; use '${twin}' or another name`,
          );
        }
      }
      if (mode === "alter") {
        if (have === 0) {
          throw new YakError(
            "UNKNOWN_TOPIC",
            `topic '${topic}' does not exist`,
          );
        }
        const configsOnly = partitions === have && Object.keys(configs).length > 0;
        if (partitions <= have && !configsOnly) {
          throw new YakError(
            "INVALID_ARGUMENT",
            `topic '${topic}' has ${have} partitions; partitions can only be added (ask for more than ${have})`,
          );
        }
      }
      const end = await this.appendMeta({
        op: "topic",
        topic,
        partitions,
        createdAt: Date.now(),
        ...(Object.keys(configs).length > 0 ? { configs } : {}),
      });
      for (let p = have; p < partitions; p++) {
        this.store.partition(topic, p).onAppend(() => this.notifier.notify());
      }
      this.log.write(mode === "alter" ? (partitions > have ? "partitions_added" : "topic_altered") : "topic_created", {
        topic,
        partitions,
        from: have,
        ...(Object.keys(configs).length > 0 ? { configs } : {}),
      });
      const leader = this.requireLeader();
      await leader.waitForHw(CLUSTER_KEY, end, this.opts.requestTimeoutMs);
    })();
    this.#creating.set(topic, run);
    run.finally(() => {
      if (this.#creating.get(topic) === run) this.#creating.delete(topic);
    }).catch(() => {});
    return run;
  }

  #handle(
    req: Request,
    session: Session,
    clientHandle: ReturnType<typeof clientHandlers>,
  ) {
    switch (req.type) {
      case "replicate":
        return replicate(this, req);
      case "epoch_end":
        return epochEnds(this, req);
    }
    const reply = clientHandle(req, session);
    if (reply === null) {
      throw new YakError(
        "UNKNOWN_REQUEST",
        `brokers do not handle '${req.type}'`,
      );
    }
    return reply;
  }

  #onLease(lease: Lease): void {
    const next = this.#transition.then(() => this.#applyLease(lease)).catch(
      (err) => {
        this.log.write("lease_apply_failed", {
          epoch: lease.epoch,
          error: err instanceof Error ? err.message : String(err),
        });
      },
    );
    this.#transition = next;
  }

  async #applyLease(lease: Lease): Promise<void> {
    if (this.#stopping) return;
    const leaderInfo = lease.leaderId === null ? null : {
      id: lease.leaderId,
      host: lease.host,
      port: lease.port,
      epoch: lease.epoch,
    };
    if (lease.leaderId === this.opts.id) {
      if (this.#role === "leader" && this.#epoch === lease.epoch) {
        this.#leaderState!.setIsr(lease.isr);
        return;
      }
      await this.#fetcher?.stop();
      this.#fetcher = null;
      this.#epoch = lease.epoch;
      this.#leader = leaderInfo;
      this.producers.reset();
      this.#leaderState = new LeaderState({
        selfId: this.opts.id,
        epoch: lease.epoch,
        store: this.store,
        isr: lease.isr,
        replicaLagMs: this.opts.replicaLagMs,
        onHwChange: () => this.notifier.notify(),
      });
      this.#role = "leader";
      for (const ref of this.store.all()) this.#leaderState.updateHw(ref.key);
      this.log.write("became_leader", {
        epoch: lease.epoch,
        isr: lease.isr,
        logEndTotal: this.store.logEndTotal(),
      });
      return;
    }
    if (
      this.#role === "follower" && this.#fetcher &&
      this.#fetcher.leader.epoch === lease.epoch &&
      this.#fetcher.leader.id === lease.leaderId
    ) {
      return;
    }
    const wasLeader = this.#role === "leader";
    this.#leaderState?.stop(
      new YakError(
        "NOT_LEADER",
        `broker ${this.opts.id} stepped down in epoch ${lease.epoch}`,
      ),
    );
    this.#leaderState = null;
    await this.#fetcher?.stop();
    this.#fetcher = null;
    this.#epoch = Math.max(this.#epoch, lease.epoch);
    this.#leader = leaderInfo;
    if (wasLeader) {
      this.log.write("stepped_down", {
        epoch: lease.epoch,
        newLeader: lease.leaderId,
      });
    }
    this.notifier.notify();
    if (leaderInfo === null) {
      this.#role = "none";
      return;
    }
    this.#role = "follower";
    this.#fetcher = new ReplicaFetcher(this, leaderInfo);
    this.#fetcher.start();
  }

  #maintainIsr(): void {
    const leader = this.#leaderState;
    if (!leader || this.#isrProposal) return;
    // A leader whose lease lapsed (paused, cut off) stops acting at once.
    if (!this.leaseValid()) return;
    const wanted = leader.desiredIsr([
      ...new Set(leader.followers().map((f) => f.id)),
    ]);
    if (!wanted) return;
    leader.proposing(wanted);
    this.#isrProposal = this.#zk.proposeIsr(leader.epoch, wanted)
      .catch((err) =>
        this.log.write("isr_proposal_failed", {
          wanted,
          error: String(err?.message ?? err),
        })
      )
      .finally(() => (this.#isrProposal = null));
  }

  /**
   * A clean stop (SIGTERM): leadership is handed over first (the zookeeper
   * elects another in-sync broker at once) or, on a follower, the in-sync set
   * lets go of us first; then serving stops and the logs close. Producers
   * move to the new leader in a round trip instead of a session timeout.
   */
  async stop(): Promise<void> {
    clearInterval(this.#isrTimer);
    const wasLeader = this.#role === "leader";
    this.#stopping = true; // requireLeader refuses from here: no new appends
    const startedMs = performance.now();
    const lease = await this.#zk.leave(this.#epoch, Math.min(2000, this.opts.sessionTimeoutMs));
    if (lease) {
      this.#leader = lease.leaderId === null || lease.leaderId === this.opts.id
        ? null
        : { id: lease.leaderId, host: lease.host, port: lease.port, epoch: lease.epoch };
    }
    this.log.write("left_cluster", {
      role: wasLeader ? "leader" : "follower",
      handedTo: wasLeader ? (this.#leader?.id ?? null) : undefined,
      told: lease !== null,
      ms: Math.round(performance.now() - startedMs),
    });
    await this.#zk.stop();
    const l = this.#leader;
    this.#leaderState?.stop(
      new YakError(
        "NOT_LEADER",
        `broker ${this.opts.id} is shutting down${l ? `; broker ${l.id} at ${l.host}:${l.port} leads` : ""}`,
        l ? { leaderId: l.id, host: l.host, port: l.port, epoch: l.epoch } : {},
      ),
    );
    await this.#transition;
    await this.#fetcher?.stop();
    this.notifier.close();
    await this.#server.close();
    await this.store.close();
    await Deno.remove(join(this.dir, "broker.pid")).catch(() => {});
    this.log.write("stopped");
    this.log.close();
    await this.#dataLock?.release();
  }
}
