/**
 * A broker: its lifecycle (storage, the listener a codec gives it, the
 * zookeeper session) and the switch between leading and following as leases
 * change. What clients can do lives in typed services (partition_ops.ts,
 * topic_admin.ts, group_coordinator.ts, replication.ts), which codecs call;
 * the broker never imports a codec.
 *
 * @module
 */
import { join } from "node:path";
import { DEFAULTS } from "../config.ts";
import { OpLog } from "../op_log.ts";
import { ensureDataDir, refuseForeignOwner, writeFileAtomic } from "../files.ts";
import { assert, YakError } from "../errors.ts";
import type { Lease, LeaseView } from "../protocol/messages.ts";
import type { BrokerContext, BrokerOptions, ClientInfo, LeaderInfo } from "./context.ts";
import { GroupCoordinator } from "./group_coordinator.ts";
import { LeaderState } from "./leader_state.ts";
import { CLUSTER_KEY, CLUSTER_TOPIC } from "./metadata.ts";
import { Notifier } from "./notifier.ts";
import { PartitionOps } from "./partition_ops.ts";
import { ProducerIds } from "./producer_ids.ts";
import { ProducerState } from "./producer_state.ts";
import { ReplicaFetcher, Replication } from "./replication.ts";
import { Retention } from "./retention.ts";
import { Compactor } from "./compactor.ts";
import { Scrubber } from "./scrubber.ts";
import type { BrokerServices, ClientRegistry, ClusterView } from "./services.ts";
import { TopicAdmin } from "./topic_admin.ts";
import { TopicStore } from "./topic_store.ts";
import { TxnCoordinator } from "./txn_coordinator.ts";
import { ZkThread } from "./zk_thread.ts";
import { LeaseViewFile, readLeaseView } from "./lease_view.ts";
import { type DataLock, lockDataDir } from "./data_lock.ts";
import type { Damage, Fence, LogOptions, PartitionLog, ReadResult, WriteFailure } from "../log/partition_log.ts";
import type { BrokerStatus, DamageStatus, FencedStatus, TransactionStatus } from "../protocol/status.ts";
import { BrokerMetrics, type PartitionGauges, renderMetrics } from "./metrics.ts";
import { monotonicMs } from "../clock.ts";
import { YoungCollector } from "./young_gc.ts";

/** Written at the end of a clean stop, removed at start: its absence means every segment is checked. */
const CLEAN_SHUTDOWN_FILE = "clean-shutdown";

/** How often the broker thread probes its own event loop's lag (`yak_event_loop_lag_seconds`). */
const LAG_PROBE_MS = 50;

/** A leader whose writes fail, and that no other broker could replace, asks again this long after. */
const STORAGE_RESIGN_INTERVAL_MS = 5000;

/**
 * Checks, locks and opens a broker's directory (DATA/broker-N): refused when
 * the data root or the directory belongs to another user, created with or set
 * to the data directory mode, and its operation log opened (refused when it is
 * a link). The lock is taken before anything in it is opened, so a second
 * process on this directory leaves its files alone.
 */
async function openBrokerDir(opts: BrokerOptions): Promise<{ dir: string; dataLock: DataLock; log: OpLog }> {
  const dir = join(opts.dataDir, `broker-${opts.id}`);
  refuseForeignOwner(opts.dataDir, "the data root");
  refuseForeignOwner(dir, "the broker's data directory");
  const dataLock = await lockDataDir(dir);
  try {
    await ensureDataDir(dir);
    return { dir, dataLock, log: new OpLog(join(dir, "broker.log"), `broker-${opts.id}`, opts.echo) };
  } catch (err) {
    await dataLock.release();
    throw err;
  }
}

/**
 * Opens the broker's topics, checking every record of every segment unless
 * the last stop was clean; damage and fences are reported to `reports`. A
 * failure is said in the operation log, which is then closed.
 */
async function openTopicStore(
  dir: string,
  opts: BrokerOptions,
  log: OpLog,
  clean: boolean,
  reports: Pick<LogOptions, "onDamage" | "onFenced" | "onWriteFailed"> & { onCut?: (lines: number) => void },
): Promise<TopicStore> {
  try {
    return await TopicStore.open(join(dir, "topics"), {
      segmentBytes: opts.segmentBytes,
      segmentMs: opts.segmentMs,
      indexIntervalBytes: opts.indexIntervalBytes,
      tailCacheBytes: DEFAULTS.tailCacheBytes,
      tailHoldBytes: DEFAULTS.tailHoldBytes,
      onEvent: (event, fields) => {
        // Records cut from the middle of a log (damage, not a torn last write) may have been acknowledged.
        if (event === "corrupt_records_cut") reports.onCut?.(Math.max(1, Number(fields?.cutLines) || 0));
        log.write(event, fields);
      },
      onDamage: reports.onDamage,
      onFenced: reports.onFenced,
      onWriteFailed: reports.onWriteFailed,
      verifyAll: !clean,
    });
  } catch (err) {
    log.write("start_failed", {
      error: err instanceof Error ? err.message : String(err),
    });
    log.close();
    throw err;
  }
}

/** A codec's listener as the broker sees it: where it listens, and how to close it. */
export interface Listening {
  readonly host: string;
  readonly port: number;
  /** The host clients are told to use, when it is not `host` (a Kafka --advertised-host). */
  readonly advertisedHost?: string;
  close(): Promise<void>;
}

/**
 * Starts a codec's listener for a broker's services (the CLI passes the
 * native JSON codec; the broker never imports one). `onError` feeds the
 * broker's operation log.
 */
export type ServeCodec = (
  services: BrokerServices,
  onError: (message: string, fields: Record<string, unknown>) => void,
) => Listening;

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
  readonly producerIds: ProducerIds = new ProducerIds(this);
  readonly notifier = new Notifier();
  readonly failingWrites = new Set<string>();
  readonly healing = new Map<string, number>();
  readonly metrics = new BrokerMetrics();
  readonly dir: string;
  readonly services: BrokerServices;
  readonly #clients = new Map<number, ClientInfo>();
  readonly #retention = new Retention(this);
  readonly #compactor = new Compactor(this);
  #server!: Listening;
  #kafkaServer: Listening | null = null;
  #zk!: ZkThread;
  #role: "leader" | "follower" | "none" = "none";
  #epoch = 0;
  #leader: LeaderInfo | null = null;
  #leaderState: LeaderState | null = null;
  /** The in-sync set of the newest lease, and every broker seen in one (the replicas, for metrics). */
  #leaseIsr: readonly number[] = [];
  readonly #replicasSeen = new Set<number>();
  #fetcher: ReplicaFetcher | null = null;
  #transition: Promise<void> = Promise.resolve();
  /** The newest lease adopted (see #onLease). */
  #lastLease: Lease | null = null;
  /**
   * Lines cut from the middle of logs at start-up (damage) that it has not copied back (0: none): the zookeeper does
   * not elect it while a broker that lost nothing can lead (see Zookeeper, #preferWhole).
   */
  #lost = 0;
  /** Where the newest lease with an in-sync set is kept across restarts (see lease_view.ts). */
  readonly #leaseView: LeaseViewFile;
  #isrTimer: ReturnType<typeof setInterval> | undefined;
  #lagTimer: ReturnType<typeof setInterval> | undefined;
  readonly #young = new YoungCollector();
  #isrProposal: Promise<unknown> | null = null;
  /** Set by a clean stop: no new writes, no new roles. */
  #stopping = false;
  #dataLock: DataLock | null = null;
  /** Damaged records found since the start (newest last, at most 50), for `yak status`. */
  readonly #damage: DamageStatus[] = [];
  /** Partitions fenced since the start (each once; they stay fenced until a restart), for `yak status`. */
  readonly #fenced: FencedStatus[] = [];
  /** A resignation asked of the zookeeper and not answered yet. */
  #resigning: Promise<unknown> | null = null;
  /** When a failed write may next ask for a resignation (see #onWriteFailed). */
  #nextStorageResignMs = 0;
  #scrubber: Scrubber | null = null;
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
    this.#leaseView = new LeaseViewFile(
      join(dir, "lease.json"),
      (err) => log.write("lease_view_write_failed", { error: String(err) }),
    );
    const topics = new TopicAdmin(this);
    const partitions = new PartitionOps(this, topics);
    const groups = new GroupCoordinator(this);
    this.services = {
      opts,
      partitions,
      topics,
      groups,
      transactions: new TxnCoordinator(this, partitions, groups),
      producerIds: this.producerIds,
      clients: this.#clientRegistry(),
      replication: new Replication(this, partitions),
      requireLeader: () => this.requireLeader(),
      view: () => this.#view(),
      status: () => this.#status(groups),
      metricsText: () => this.#metricsText(groups),
    };
  }

  /**
   * Opens storage (repairing what it safely can), listens through `serveCodec`
   * (and `kafkaCodec`, the Kafka wire protocol, when given), and joins the cluster.
   */
  static async start(opts: BrokerOptions, serveCodec: ServeCodec, kafkaCodec?: ServeCodec): Promise<Broker> {
    const { dir, dataLock, log } = await openBrokerDir(opts);
    // Written by a clean stop and removed here: without it (a crash, kill -9, a power cut) every
    // record of every segment is checked, not only the last segment's.
    const clean = await Deno.remove(join(dir, CLEAN_SHUTDOWN_FILE)).then(() => true, () => false);
    const found: Damage[] = [];
    let onDamage: (d: Damage) => void = (d) => void found.push(d);
    // Opening never fences (a failure there fails the start); from the first request on, the broker is told.
    let onFenced: (f: Fence) => void = () => {};
    let onWriteFailed: (f: WriteFailure) => void = () => {};
    let cut = 0;
    const store = await openTopicStore(dir, opts, log, clean, {
      onCut: (lines) => (cut += lines),
      onDamage: (d) => onDamage(d),
      onFenced: (f) => onFenced(f),
      onWriteFailed: (f) => onWriteFailed(f),
    });
    const broker = new Broker(opts, store, log, dir);
    broker.#dataLock = dataLock;
    broker.#lost = cut;
    broker.#logStorageChecked(clean, found.length);
    onDamage = (d) => broker.#onDamage(d);
    onFenced = (f) => broker.#onFenced(f);
    onWriteFailed = () => broker.#onWriteFailed();
    for (const d of found) broker.#onDamage(d);
    for (const ref of store.all()) broker.#epoch = Math.max(broker.#epoch, ref.log.epochs.lastEpoch);
    // Every append wakes the long polls waiting for it (consumers, followers), on every partition.
    store.onEveryLog((log) => log.onAppend(() => broker.notifier.notify()));
    store.onCleaning = () => broker.#compactor.wake();
    await broker.#listen(serveCodec, kafkaCodec, dataLock);
    // Replaced, never written through: a link planted at broker.pid once had its target overwritten.
    await writeFileAtomic(join(dir, "broker.pid"), `${Deno.pid}\n`);
    log.write("started", {
      broker: opts.id,
      host: broker.#server.host,
      port: broker.#server.port,
      ...(opts.advertisedPort !== undefined ? { advertisedPort: opts.advertisedPort } : {}),
      ...(broker.#kafkaServer ? { kafkaPort: broker.#kafkaServer.port } : {}),
      pid: Deno.pid,
      topics: store.topicNames().length,
      logEndTotal: store.logEndTotal(),
      // Off when started without --v8-flags=--expose-gc (young_gc.ts): more memory, nothing else.
      youngGc: broker.#young.available ? "on" : "off",
    });
    broker.#joinCluster(await readLeaseView(broker.#leaseView.path));
    broker.#startTimers();
    return broker;
  }

  /** What the start-up check of the stored records covered, and what it found, in the operation log. */
  #logStorageChecked(clean: boolean, damaged: number): void {
    const check = this.store.all().reduce((sum, r) => ({
      checked: sum.checked + r.log.openCheck.checked,
      unsealed: sum.unsealed + r.log.openCheck.unsealed,
    }), { checked: 0, unsealed: 0 });
    // A first start has nothing to check: said so, rather than as if a crash had come before it.
    const stored = this.store.all().some((r) => r.log.logEndOffset > 0);
    this.log.write("storage_checked", {
      scope: clean
        ? "last segments (clean shutdown)"
        : stored
        ? "every segment (no clean shutdown: a crash, or a stop by a yak older than the clean-shutdown file)"
        : "nothing stored yet",
      records: check.checked,
      ...(check.unsealed > 0 ? { withoutChecksum: check.unsealed } : {}),
      damaged,
    });
  }

  /** Listens through the native codec and, when given, the Kafka one; a Kafka listener that fails closes all. */
  async #listen(serveCodec: ServeCodec, kafkaCodec: ServeCodec | undefined, dataLock: DataLock): Promise<void> {
    const log = this.log;
    this.#server = serveCodec(
      this.services,
      (message, fields) => log.write("protocol_error", { message, ...fields }),
    );
    if (!kafkaCodec) return;
    try {
      this.#kafkaServer = kafkaCodec(
        this.services,
        (message, fields) => log.write("kafka_protocol_error", { message, ...fields }),
      );
    } catch (err) {
      await this.#server.close();
      log.close();
      await dataLock.release();
      throw err;
    }
  }

  /**
   * Registers with the zookeeper, whose leases then drive this broker's role;
   * `lastLease` is the newest one this broker followed before (lease.json).
   */
  #joinCluster(lastLease: LeaseView | null): void {
    const opts = this.opts;
    this.#zk = new ZkThread({
      zkHost: opts.zkHost,
      zkPort: opts.zkPort,
      brokerId: opts.id,
      host: this.#server.host,
      port: opts.advertisedPort ?? this.#server.port,
      kafkaPort: this.#kafkaServer?.port ?? 0,
      kafkaHost: this.#kafkaServer?.advertisedHost ?? this.#kafkaServer?.host,
      heartbeatMs: opts.heartbeatMs,
      sessionTimeoutMs: opts.sessionTimeoutMs,
      log: this.log,
      logEndTotal: () => this.store.logEndTotal(),
      epoch: () => this.#epoch,
      lost: () => this.#lost,
      leading: () => this.#role === "leader",
      onLease: (lease) => this.#onLease(lease),
      onRefused: (err) => this.#fatal(err),
      lastLease,
    });
    this.#zk.start();
  }

  /** The periodic work: the event-loop lag probe, in-sync set upkeep, and the scrubber when it has a budget. */
  #startTimers(): void {
    let due = monotonicMs() + LAG_PROBE_MS;
    this.#lagTimer = setInterval(() => {
      const now = monotonicMs();
      this.metrics.eventLoopLag(Math.max(0, now - due));
      due = now + LAG_PROBE_MS;
    }, LAG_PROBE_MS);
    this.#isrTimer = setInterval(
      () => this.#maintainIsr(),
      Math.max(50, this.opts.heartbeatMs),
    );
    this.#compactor.start();
    if (this.opts.scrubBytesPerSec > 0) {
      this.#scrubber = new Scrubber(this.store, {
        bytesPerSec: this.opts.scrubBytesPerSec,
        intervalMs: this.opts.scrubIntervalMs,
        metrics: this.metrics,
      });
      this.#scrubber.start();
    }
  }

  get port(): number {
    return this.#server.port;
  }

  /** The Kafka listener's port, or null without one. */
  get kafkaPort(): number | null {
    return this.#kafkaServer?.port ?? null;
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

  leaseProblem(): string {
    const silent = this.#zk.silentMs();
    const zk = `${this.opts.zkHost}:${this.opts.zkPort}`;
    return Number.isFinite(silent)
      ? `its lease has expired: the zookeeper at ${zk} has not answered for ${(silent / 1000).toFixed(1)} s ` +
        `(is it running?)`
      : `its lease has expired: the zookeeper at ${zk} has not answered`;
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

  readLog(log: PartitionLog, from: number, maxBytes: number, end: number): Promise<ReadResult> {
    // A damaged record throws CORRUPT_LOG here; the log has told #onDamage already, which heals.
    return log.read(from, maxBytes, end);
  }

  /**
   * A damaged record was found (start-up check, a read, the scrubber): said
   * in the log, counted, kept for `yak status`, and healed.
   */
  #onDamage(d: Damage): void {
    const ref = this.store.all().find((r) => r.log.dir === d.dir);
    const partition = ref?.key ?? d.dir;
    this.metrics.damagedRecords[d.found]++;
    this.log.write("record_damaged", {
      partition,
      offset: d.offset,
      segment: d.file,
      found: d.found,
      role: this.#role,
    });
    this.#damage.push({ partition, offset: d.offset, segment: d.file, found: d.found, at: Date.now(), healed: false });
    if (this.#damage.length > 50) this.#damage.shift();
    this.#healDamage();
  }

  /**
   * A partition's log fenced itself (an I/O error left it uncertain): said
   * once in the log, counted, kept for `yak status`, and handled as damage
   * is at a leader (see #healDamage). It answers STORAGE until a restart.
   */
  #onFenced(f: Fence): void {
    const partition = this.store.all().find((r) => r.log.dir === f.dir)?.key ?? f.dir;
    this.metrics.fencedPartitions++;
    this.log.write("partition_fenced", {
      partition,
      failed: f.what,
      error: f.error,
      role: this.#role,
      recovery: "restart the broker: the start-up check recovers the log from its files",
    });
    this.#fenced.push({ partition, failed: f.what, error: f.error, at: Date.now() });
    if (this.#fenced.length > 50) this.#fenced.shift();
    this.#healDamage();
  }

  /**
   * Heals what is damaged, by role. A follower cuts each damaged log at its
   * first damaged record and copies the rest again from the leader (leaving
   * the in-sync set until it is back). A leader asks the zookeeper to hand
   * leadership to another in-sync broker, and heals as a follower; with none
   * alive it stays, refusing the damaged records (a storage error, never the
   * bytes). Without a role, it waits for one.
   *
   * A fenced partition (see PartitionLog.fenced) is treated as damage at a
   * leader, for the same reason: this broker cannot serve it, and leadership
   * is the whole cluster's, so an in-sync broker that can leads instead; with
   * none, this one stays and the fenced partition answers STORAGE while the
   * others go on. A fenced log cannot be cut or copied into until the broker
   * restarts, so a follower holding one says it is failing (out of the
   * in-sync set) and re-copies what it lacks once the restart recovered it.
   */
  #healDamage(): void {
    if (this.#stopping) return;
    const damaged = this.store.all().filter((r) => r.log.damagedFrom < Infinity || r.log.fenced !== null);
    if (damaged.length === 0) return;
    if (this.#role === "leader") {
      this.#resign("damaged_leader_stays", () => ({
        partitions: damaged.map((r) => r.key),
        reason: "no other in-sync broker is alive to lead; the damaged records are refused, never served, " +
          "and a fenced partition answers STORAGE until the broker restarts",
      }));
      return;
    }
    if (this.#role !== "follower") return;
    this.#transition = this.#transition.then(() => this.#cutDamaged())
      .catch((err) => this.log.write("heal_failed", { error: err instanceof Error ? err.message : String(err) }));
  }

  /**
   * Asks the zookeeper to hand leadership to another in-sync broker (unless
   * a resignation is under way); when none can lead, this one stays, and
   * `staysEvent` says so in the log with `fields()`.
   */
  #resign(staysEvent: string, fields: () => Record<string, unknown>): void {
    if (this.#resigning) return;
    const epoch = this.#epoch;
    this.#resigning = this.#zk.resign(epoch, this.opts.requestTimeoutMs).then((lease) => {
      if (lease?.leaderId === this.opts.id && lease.epoch === epoch) this.log.write(staysEvent, fields());
    }).finally(() => (this.#resigning = null));
  }

  /**
   * A write failed here and was taken back (a full disk; see
   * PartitionLog's onWriteFailed), or a topic's files could not be made. A
   * leader that cannot write holds up every producer, so it hands
   * leadership to an in-sync broker that can, as Kafka takes a failing log
   * directory offline and leads elsewhere. As a follower it then fails the
   * same writes, leaves the in-sync set, and catches up once they succeed
   * again (replica_writes_resumed). With no other broker to lead, it stays
   * and asks again at most every {@link STORAGE_RESIGN_INTERVAL_MS}.
   */
  #onWriteFailed(): void {
    if (this.#stopping || this.#role !== "leader") return;
    const now = monotonicMs();
    if (now < this.#nextStorageResignMs) return;
    this.#nextStorageResignMs = now + STORAGE_RESIGN_INTERVAL_MS;
    this.#resign("write_failing_leader_stays", () => ({
      reason: "no other in-sync broker is alive to lead; writes are refused (STORAGE) until they succeed here again",
    }));
  }

  /** A follower's first step of healing: each damaged log cut at its first damaged record. */
  async #cutDamaged(): Promise<void> {
    for (const ref of this.store.all()) {
      const at = ref.log.damagedFrom;
      if (at === Infinity || ref.log.fenced) continue; // a fenced log waits for the restart
      const logEnd = Math.max(ref.log.logEndOffset, this.healing.get(ref.key) ?? 0);
      this.log.write("healing", { partition: ref.key, from: at, logEnd });
      await ref.log.truncateTo(at);
      // Set after the cut: a fetch answered in between must not find the old log end "healed".
      this.healing.set(ref.key, logEnd);
      if (ref.key === CLUSTER_KEY) await this.store.replay();
    }
  }

  healProgress(key: string, logEnd: number, leaderHw: number): void {
    const target = this.healing.get(key);
    if (target === undefined || logEnd < Math.min(target, leaderHw)) return;
    this.healing.delete(key);
    this.metrics.healedRanges++;
    for (const d of this.#damage) if (d.partition === key) d.healed = true;
    this.log.write("healed", { partition: key, logEnd });
  }

  #clientRegistry(): ClientRegistry {
    const clients = this.#clients;
    const log = this.log;
    return {
      register(id, info) {
        const known = clients.has(id);
        clients.set(id, info);
        if (!known) {
          log.write(`${info.role}_registered`, {
            client: info.client,
            topic: info.topic,
            ...(info.group ? { group: info.group } : {}),
            remote: info.remote,
          });
        }
        return !known;
      },
      deregister(id, reason) {
        const info = clients.get(id);
        if (!info) return undefined;
        clients.delete(id);
        log.write(`${info.role}_deregistered`, {
          client: info.client,
          topic: info.topic,
          ...(reason ? { reason } : {}),
        });
        return info;
      },
      list: () => [...clients.values()],
    };
  }

  #view(): ClusterView {
    const topics: Record<string, number> = {};
    for (const name of this.store.topicNames()) {
      if (name !== CLUSTER_TOPIC) topics[name] = this.store.partitionCount(name);
    }
    return {
      brokerId: this.opts.id,
      role: this.#role,
      epoch: this.#epoch,
      leader: this.#leader,
      topics,
      brokers: this.#zk?.brokers ?? [],
      isr: this.#zk?.lease?.isr ?? [],
    };
  }

  #status(groups: GroupCoordinator): BrokerStatus {
    const topics = this.store.topicNames().map((name) => ({
      name,
      id: this.services.topics.topicId(name) ?? undefined, // none for __cluster
      configs: this.store.meta.topics.get(name)?.configs ?? {},
      partitions: Array.from({ length: this.store.partitionCount(name) }, (_, p) => {
        const log = this.store.partition(name, p);
        const ref = this.store.byKey(`${name}/${p}`);
        const cleaner = ref && this.#compactor.status(ref);
        return {
          partition: p,
          logStartOffset: log.logStartOffset,
          logEndOffset: log.logEndOffset,
          highWatermark: log.highWatermark,
          segments: log.segmentCount,
          bytes: log.sizeBytes,
          ...(cleaner ? { cleaner } : {}),
        };
      }),
    }));
    const l = this.#role === "leader" ? this.#leaderState : null;
    return {
      brokerId: this.opts.id,
      role: this.#role,
      epoch: this.#epoch,
      leader: this.#leader,
      replication: l ? { isr: l.isr, followers: l.followers() } : null,
      topics,
      metadataLog: {
        logStart: this.store.clusterLog.logStartOffset,
        logEnd: this.store.clusterLog.logEndOffset,
        bytes: this.store.clusterLog.sizeBytes,
      },
      groups: groups.lags(),
      groupMembers: l ? groups.list().map(({ group }) => groups.describeDecoded(group)) : [],
      clients: [...this.#clients.values()],
      memory: Deno.memoryUsage(),
      eventLoop: { longestStallMs: Math.round(this.metrics.longestStallMs) },
      damage: [...this.#damage],
      ...(this.#fenced.length > 0 ? { fenced: [...this.#fenced] } : {}),
      traffic: this.metrics.traffic(),
      ...(this.opts.listeners ? { listeners: this.opts.listeners } : {}),
      ...this.#openTransactions(l !== null),
    };
  }

  /** The open transactions, as status shows them (the leader's view: a follower's may lag). */
  #openTransactions(leading: boolean): { transactions?: TransactionStatus[] } {
    if (!leading) return {};
    const open = this.services.transactions.describe().filter((t) => t.startedAt >= 0).map((t) => ({
      id: t.id,
      state: t.state,
      producer: t.producer,
      epoch: t.epoch,
      startedAt: t.startedAt,
      timeoutMs: t.timeoutMs,
      partitions: t.partitions.map((tp) => `${tp.topic}/${tp.partition}`),
    }));
    return open.length > 0 ? { transactions: open } : {};
  }

  #metricsText(groups: GroupCoordinator): string {
    const l = this.#role === "leader" ? this.#leaderState : null;
    const fetched = l?.fetchedOffsets();
    const partitions: PartitionGauges[] = [];
    for (const ref of this.store.all()) {
      if (ref.topic === CLUSTER_TOPIC) continue;
      const end = ref.log.logEndOffset;
      const replicaLag = fetched &&
        new Map([...fetched].map(([id, at]) => [id, Math.max(0, end - (at.get(ref.key) ?? 0))]));
      partitions.push({
        topic: ref.topic,
        partition: ref.partition,
        logStart: ref.log.logStartOffset,
        logEnd: end,
        highWatermark: ref.log.highWatermark,
        replicaLag,
      });
    }
    const { rss, heapUsed, heapTotal } = Deno.memoryUsage();
    const isr = l ? l.isr : this.#leaseIsr;
    return renderMetrics(this.metrics, {
      role: this.#role,
      epoch: this.#epoch,
      isrSize: isr.length,
      underReplicated: l ? (isr.length < this.#replicasSeen.size ? partitions.length : 0) : null,
      partitions,
      groupLag: l ? groups.lags() : null,
      memory: { rss, heapUsed, heapTotal },
      maxDirtyRatio: this.#compactor.maxDirtyRatio(),
    });
  }

  #onLease(lease: Lease): void {
    // The session adopts only a newer lease: (epoch, version) never goes back.
    const last = this.#lastLease;
    assert(
      last === null || lease.epoch > last.epoch || (lease.epoch === last.epoch && lease.version > last.version),
      `lease ${lease.epoch}.${lease.version} adopted after ${last?.epoch}.${last?.version}`,
    );
    this.#lastLease = lease;
    this.#leaseView.save(lease);
    const inIsr = lease.isr.includes(this.opts.id);
    // Whole again once a leader takes it into its in-sync set (it copied back what it cut), or it is elected
    // after it registered. Not by the lease it found: that set may name it from before the damage.
    if (
      this.#lost && last !== null &&
      ((inIsr && !last.isr.includes(this.opts.id)) || (lease.leaderId === this.opts.id && lease.epoch > last.epoch))
    ) {
      this.#lost = 0;
      this.log.write("whole_again", { epoch: lease.epoch, isr: lease.isr });
    }
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
    this.#leaseIsr = lease.isr;
    for (const id of lease.isr) this.#replicasSeen.add(id);
    const leaderInfo = lease.leaderId === null ? null : {
      id: lease.leaderId,
      host: lease.host,
      port: lease.port,
      epoch: lease.epoch,
    };
    if (leaderInfo !== null && leaderInfo.id === this.opts.id) {
      if (this.#role === "leader" && this.#epoch === lease.epoch) {
        this.#leaderState!.setIsr(lease.isr);
        // A damaged leader that stayed because no other in-sync broker was alive hands over once one is in the set
        // (before, it stayed for good and its damaged records were unreadable).
        if (lease.isr.some((id) => id !== this.opts.id)) queueMicrotask(() => this.#healDamage());
        return;
      }
      await this.#becomeLeader(lease, leaderInfo);
      return;
    }
    if (
      this.#role === "follower" && this.#fetcher &&
      this.#fetcher.leader.epoch === lease.epoch &&
      this.#fetcher.leader.id === lease.leaderId
    ) {
      return;
    }
    await this.#stepDown(lease, leaderInfo);
    if (leaderInfo === null) {
      this.#role = "none";
      return;
    }
    // Damage found while leading (or before any role) is cut before the first fetch: a fetch
    // from the damaged log end would count this replica as in sync.
    await this.#cutDamaged();
    this.#role = "follower";
    // A follower's fetch replies are most of its garbage; a leader's own JavaScript garbage scavenges it often enough.
    this.#fetcher = new ReplicaFetcher(this, leaderInfo, undefined, () => {
      if (this.#young.check()) this.metrics.youngCollections++;
    });
    this.#fetcher.start();
  }

  /** Named leader by `lease`, in a new epoch: stops following and takes over the partitions' high watermarks. */
  async #becomeLeader(lease: Lease, leaderInfo: LeaderInfo): Promise<void> {
    await this.#fetcher?.stop();
    this.#fetcher = null;
    this.#epoch = lease.epoch;
    this.#leader = leaderInfo;
    this.producers.reset();
    // Named leader again in a newer epoch (e.g. a zookeeper restarted on an empty disk): the
    // requests waiting on the old state go on under the new one, never orphaned until they time out.
    const previous = this.#role === "leader" ? this.#leaderState : null;
    this.#leaderState = new LeaderState({
      selfId: this.opts.id,
      epoch: lease.epoch,
      store: this.store,
      isr: lease.isr,
      replicaLagMs: this.opts.replicaLagMs,
      joinWaitMs: this.opts.replicaFetchWaitMs + 100,
      onHwChange: () => this.notifier.notify(),
      brokersKnown: () => this.#zk?.brokers.length ?? 0,
    });
    this.#role = "leader";
    for (const ref of this.store.all()) this.#leaderState.updateHw(ref.key);
    if (previous) {
      this.#leaderState.adoptWaiters(previous);
      previous.stop(new YakError("NOT_LEADER", `broker ${this.opts.id} leads epoch ${lease.epoch} now`));
    }
    this.#retention.start();
    // Transactions the old leader decided are completed; open ones are timed from now.
    this.services.transactions.lead();
    this.log.write("became_leader", {
      epoch: lease.epoch,
      isr: lease.isr,
      logEndTotal: this.store.logEndTotal(),
    });
    // Damage found before this role (the start-up check): hand over if an in-sync broker can lead.
    queueMicrotask(() => this.#healDamage());
  }

  /**
   * Another broker leads in `lease` (or none does): whatever this broker led
   * or followed ends, its waiting requests answered NOT_LEADER; the new
   * leader is noted and the long polls woken. The role is set by the caller.
   */
  async #stepDown(lease: Lease, leaderInfo: LeaderInfo | null): Promise<void> {
    const wasLeader = this.#role === "leader";
    const steppedDown = new YakError("NOT_LEADER", `broker ${this.opts.id} stepped down in epoch ${lease.epoch}`);
    this.#leaderState?.stop(steppedDown);
    this.services.groups.reset(steppedDown);
    this.services.transactions.reset();
    await this.#retention.stop();
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
  }

  #maintainIsr(): void {
    const leader = this.#leaderState;
    if (!leader) return;
    // A leader whose lease lapsed (paused, cut off) stops acting at once, and answers every waiting
    // request now (retriable): Kafka clients then ask for the new leader instead of waiting out
    // their request timeout (10 s) on a broker that can no longer acknowledge.
    if (!this.leaseValid()) {
      leader.failWaiters(
        new YakError("NOT_LEADER", `broker ${this.opts.id} cannot take writes: ${this.leaseProblem()}`),
      );
      return;
    }
    if (this.#isrProposal) return;
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
    clearInterval(this.#lagTimer);
    const wasLeader = this.#role === "leader";
    this.#stopping = true; // requireLeader refuses from here: no new appends
    const startedMs = performance.now();
    if (!wasLeader) {
      // Stop fetching before leaving: a fetch that reached the leader after the
      // zookeeper dropped us made the leader count us as caught up again and
      // wait for us (acks=all stalled 580 ms in a rolling restart).
      await this.#transition;
      await this.#fetcher?.stop();
      this.#fetcher = null;
    }
    const lease = await this.#zk.leave(this.#epoch, Math.min(2000, this.opts.sessionTimeoutMs));
    if (lease) {
      this.#leader = lease.leaderId === null || lease.leaderId === this.opts.id
        ? null
        : { id: lease.leaderId, host: lease.host, port: lease.port, epoch: lease.epoch };
    }
    this.log.write("left_cluster", {
      role: wasLeader ? "leader" : "follower",
      // A follower hands nothing over: no field, not `handedTo=undefined` in the readable log. A leader the
      // zookeeper did not answer handed nothing over either (it said handedTo=<itself>).
      ...(wasLeader ? { handedTo: lease !== null ? this.#leader?.id ?? null : null } : {}),
      told: lease !== null,
      ms: Math.round(performance.now() - startedMs),
    });
    await this.#zk.stop();
    const l = this.#leader;
    const gone = new YakError(
      "NOT_LEADER",
      `broker ${this.opts.id} is shutting down${l ? `; broker ${l.id} at ${l.host}:${l.port} leads` : ""}`,
      l ? { leaderId: l.id, host: l.host, port: l.port, epoch: l.epoch } : {},
    );
    this.#leaderState?.stop(gone);
    this.services.groups.reset(gone);
    this.services.transactions.reset();
    await this.#retention.stop();
    await this.#transition;
    await this.#fetcher?.stop();
    this.notifier.close();
    await this.#server.close();
    await this.#kafkaServer?.close();
    await this.#scrubber?.stop();
    await this.#compactor.stop();
    await this.store.close();
    await this.#leaseView.flush();
    // Every write is done and every file closed: the next start checks only the last segments. Not
    // after a fence: that log's files are uncertain, and the next start checks every record.
    if (this.#fenced.length === 0) {
      await writeFileAtomic(join(this.dir, CLEAN_SHUTDOWN_FILE), `${new Date().toISOString()}\n`);
    }
    await Deno.remove(join(this.dir, "broker.pid")).catch(() => {});
    this.log.write("stopped");
    this.log.close();
    await this.#dataLock?.release();
  }
}
