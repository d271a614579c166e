/**
 * What the broker's services (partition ops, topic admin, groups,
 * replication) may use of the broker core. Kept apart from the Broker class
 * so services do not import it (no cycles). Codecs see less: services.ts.
 *
 * @module
 */
import type { ConnectionLimits } from "../protocol/listener.ts";
import type { ClientStatus } from "../protocol/status.ts";
import type { PartitionLog, ReadResult } from "../log/partition_log.ts";
import type { OpLog } from "../op_log.ts";
import type { LeaderState } from "./leader_state.ts";
import type { BrokerMetrics } from "./metrics.ts";
import type { Notifier } from "./notifier.ts";
import type { ProducerIds } from "./producer_ids.ts";
import type { ProducerState } from "./producer_state.ts";
import type { TopicStore } from "./topic_store.ts";

/** A broker's settings; every default comes from src/config.ts. */
export interface BrokerOptions {
  id: number;
  host: string;
  port: number;
  /**
   * The native port the zookeeper hands out for this broker (in the lease
   * and broker list) when it differs from the bound one: a port forward, a
   * proxy. Default: the bound port.
   */
  advertisedPort?: number;
  dataDir: string;
  zkHost: string;
  zkPort: number;
  heartbeatMs: number;
  sessionTimeoutMs: number;
  replicaLagMs: number;
  replicaFetchWaitMs: number;
  replicaFetchMaxBytes: number;
  defaultPartitions: number;
  segmentBytes: number;
  indexIntervalBytes: number;
  producerStateScanBytes: number;
  maxFrameBytes: number;
  maxRecordBytes: number;
  maxBatchRecords: number;
  maxFetchBytes: number;
  maxFetchWaitMs: number;
  /** Every listener's connection limits (native and Kafka). */
  connections: ConnectionLimits;
  maxPartitions: number;
  /** Topics the leader lets the cluster hold (`--max-topics`; at most DEFAULTS.maxTopics). */
  maxTopics: number;
  /** Topics are created on first use (`--auto-create-topics-enable`, Kafka's auto.create.topics.enable). */
  autoCreateTopics?: boolean;
  /** Partitions over all topics the leader lets a broker hold (`--max-partitions-per-broker`). */
  maxPartitionsPerBroker: number;
  /** What one group's members may hold in the coordinator, in bytes (`--max-group-bytes`). */
  maxGroupBytes: number;
  /** What all groups' members may hold in the coordinator together, in bytes (`--max-group-state-bytes`). */
  maxGroupStateBytes: number;
  requestTimeoutMs: number;
  /** The longest transaction timeout a producer may ask for (Kafka's transaction.max.timeout.ms). */
  transactionMaxTimeoutMs?: number;
  /** acks=all needs at least this many brokers in the in-sync set (Kafka's min.insync.replicas). */
  minInsyncReplicas: number;
  /** Cluster defaults of the topic configs retention.ms, retention.bytes and segment.ms (-1: no limit). */
  retentionMs: number;
  retentionBytes: number;
  segmentMs: number;
  /** How often the leader applies retention. */
  retentionCheckMs: number;
  /** How often the leader looks for compacted partitions to clean (default DEFAULTS.cleanerCheckMs). */
  cleanerCheckMs?: number;
  /** The cleaner's bytes read and written a second (0: no limit; default DEFAULTS.cleanerIoBytesPerSec). */
  cleanerIoBytesPerSec?: number;
  /** The scrubber's pace in bytes a second (0: off), and the shortest time between the starts of its passes. */
  scrubBytesPerSec: number;
  scrubIntervalMs: number;
  /** Echo the operation log to stderr. */
  echo: boolean;
  /**
   * The flags the broker was started with (names without dashes), so
   * DescribeConfigs can tell a flag's value (STATIC_BROKER_CONFIG) from
   * yak's default; without it, a value that differs from the default counts as given.
   */
  givenFlags?: readonly string[];
  /** Other listeners the CLI started beside the broker (e.g. `http`), name -> host:port, shown in status. */
  listeners?: Record<string, string>;
}

/** The leader a broker knows of. */
export interface LeaderInfo {
  id: number;
  host: string;
  port: number;
  epoch: number;
}

/** A producer or consumer registered with this broker (as `status` reports it). */
export type ClientInfo = ClientStatus;

/** The broker core as its services see it. */
export interface BrokerContext {
  readonly opts: BrokerOptions;
  readonly store: TopicStore;
  readonly log: OpLog;
  readonly producers: ProducerState;
  /** Issues producer ids and checks the ones batches carry. */
  readonly producerIds: ProducerIds;
  readonly notifier: Notifier;
  /** Partitions whose last write failed (e.g. a full disk), so the log says it once. */
  readonly failingWrites: Set<string>;
  /**
   * Partitions this follower cut at a damaged record and is copying again:
   * key -> the log end it had (healed once it is back there). While any is
   * healing, the follower tells the leader it is not in sync.
   */
  readonly healing: Map<string, number>;
  /** Counters bumped per batch and per request (see metrics.ts). */
  readonly metrics: BrokerMetrics;
  role(): "leader" | "follower" | "none";
  epoch(): number;
  leader(): LeaderInfo | null;
  /** The leader state, or NOT_LEADER / NO_LEADER naming where to go. */
  requireLeader(): LeaderState;
  /** Whether this leader may still acknowledge (its lease is fresh). */
  leaseValid(): boolean;
  /** Why the lease is not fresh, for people: which zookeeper has been silent, and how long. */
  leaseProblem(): string;
  /**
   * Reads a log for a fetch. A damaged record is never served: the read
   * fails with CORRUPT_LOG, and the broker heals (a follower copies the
   * range again; a leader hands leadership to an in-sync replica).
   */
  readLog(log: PartitionLog, from: number, maxBytes: number, end: number): Promise<ReadResult>;
  /**
   * Tells the broker where a healing partition's log ends now, and the
   * leader's high watermark there: healed once it is back where it was, or
   * at the high watermark if the leader's log is shorter (see {@link healing}).
   */
  healProgress(key: string, logEnd: number, leaderHw: number): void;
}
