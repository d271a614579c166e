/**
 * What a protocol codec may use of a broker: typed services, nothing of the
 * broker's internals. The native JSON codec (src/native/) and the Kafka codec
 * translate their requests into these calls and the results into replies.
 *
 * @module
 */
import type { BrokerInfo } from "../protocol/messages.ts";
import type { BrokerOptions, ClientInfo, LeaderInfo } from "./context.ts";
import type { GroupCoordinator } from "./group_coordinator.ts";
import type { LeaderState } from "./leader_state.ts";
import type { PartitionOps } from "./partition_ops.ts";
import type { ProducerIds } from "./producer_ids.ts";
import type { Replication } from "./replication.ts";
import type { TopicAdmin } from "./topic_admin.ts";
import type { TxnCoordinator } from "./txn_coordinator.ts";
import type { BrokerStatus } from "../protocol/status.ts";

/** Who leads, in which epoch, and the topics with their partition counts. */
export interface ClusterView {
  brokerId: number;
  role: "leader" | "follower" | "none";
  epoch: number;
  leader: LeaderInfo | null;
  /** Every broker the zookeeper knows (with its Kafka port, when it has one). */
  brokers: readonly BrokerInfo[];
  /** The in-sync set of the lease this broker holds. */
  isr: readonly number[];
  /** Topic -> partition count (internal topics left out). */
  topics: Record<string, number>;
}

/** Producers and consumers connected to this broker, for status and the operation log. */
export interface ClientRegistry {
  /** Registers (or re-registers) the client of a connection; true when it is new. */
  register(connectionId: number, info: ClientInfo): boolean;
  /** Forgets the client of a connection; the info, if there was one. */
  deregister(connectionId: number, reason?: string): ClientInfo | undefined;
  list(): ClientInfo[];
}

/** The services of a broker, as codecs see them. */
export interface BrokerServices {
  /** Limits and defaults that decoding needs (frame, record and batch sizes, timeouts). */
  readonly opts: BrokerOptions;
  readonly partitions: PartitionOps;
  readonly topics: TopicAdmin;
  readonly groups: GroupCoordinator;
  /** The transaction coordinator (Kafka's transactions; runs on the leader). */
  readonly transactions: TxnCoordinator;
  /** Issues idempotent producers their ids (Kafka's InitProducerId, native `init_producer`). */
  readonly producerIds: ProducerIds;
  readonly clients: ClientRegistry;
  /** The leader side of replication (followers' fetches and epoch queries). */
  readonly replication: Replication;
  /** Throws NOT_LEADER / NO_LEADER (naming the leader) unless this broker leads now. */
  requireLeader(): LeaderState;
  view(): ClusterView;
  /** Everything `yak status` shows of this broker. */
  status(): BrokerStatus;
  /** This broker's metrics in Prometheus' text format (served on `/metrics`). */
  metricsText(): string;
}
