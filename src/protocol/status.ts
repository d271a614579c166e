/**
 * The shape of a broker's answer to a `status` request: what `yak status`,
 * `GET /api/status` and the web console read. The broker builds it; clients
 * and the console only read it, so the type lives here, below both.
 *
 * @module
 */

/** One partition as a broker holds it. */
export interface PartitionStatus {
  partition: number;
  logStartOffset: number;
  logEndOffset: number;
  highWatermark: number;
  segments: number;
  bytes: number;
  /**
   * A compacted topic's partition: the share of its closed bytes not cleaned
   * yet, where its last cleaning here ended, and this broker's last run.
   */
  cleaner?: {
    dirtyRatio: number;
    cleanedTo: number;
    lastRun: { at: number; ms: number; bytesBefore: number; bytesAfter: number } | null;
  };
}

/** One topic as a broker holds it. */
export interface TopicStatus {
  name: string;
  /** Its topic id (a UUID; Kafka clients name topics by it); absent for the internal `__cluster`. */
  id?: string;
  configs: Record<string, string | number>;
  partitions: PartitionStatus[];
}

/** A follower as the leader sees it. */
export interface FollowerStatus {
  id: number;
  lastFetchMsAgo: number;
  caughtUpMsAgo: number;
  inSync: boolean;
  failing: boolean;
  /** Each partition's log end on that follower as of its last fetch (`topic/partition` -> offset). */
  logEnds: Record<string, number>;
}

/** A group's committed offset and lag in one partition (lag counts from the log start). */
export interface GroupLagStatus {
  committed: number;
  lag: number;
}

/** A member of a group, with the partitions it was assigned (topic -> partitions). */
export interface GroupMemberStatus {
  memberId: string;
  /** A static member's group instance id (KIP-345); null for a dynamic member. */
  groupInstanceId?: string | null;
  clientId: string;
  host: string;
  lastHeartbeatMsAgo: number;
  partitions: Record<string, number[]>;
}

/** A group with members, as the coordinator (the leader) knows it. */
export interface GroupMembersStatus {
  group: string;
  state: string;
  generation: number;
  protocolType: string;
  protocol: string;
  leaderId: string;
  members: GroupMemberStatus[];
}

/** A producer or consumer registered with a broker. */
export interface ClientStatus {
  role: "producer" | "consumer";
  client: string;
  topic: string;
  group?: string;
  remote: string;
  since: number;
}

/**
 * What a broker has moved since it started (counted per batch, not per
 * record): produced records and bytes it appended as leader, and records and
 * bytes it sent to consumers. Rates are their differences between samples.
 */
export interface TrafficCounters {
  recordsIn: number;
  bytesIn: number;
  recordsOut: number;
  bytesOut: number;
}

/**
 * A broker's answer to `status` (a type alias, not an interface, so it is
 * also a plain JSON reply object).
 */
export type BrokerStatus = {
  brokerId: number;
  role: "leader" | "follower" | "none";
  epoch: number;
  leader: { id: number; host: string; port: number; epoch: number } | null;
  /** On the leader: the in-sync set and what it knows of each follower. */
  replication: { isr: readonly number[]; followers: FollowerStatus[] } | null;
  topics: TopicStatus[];
  metadataLog: { logStart: number; logEnd: number; bytes: number };
  /** Group -> topic -> partition -> committed offset and lag. */
  groups: Record<string, Record<string, Record<string, GroupLagStatus>>>;
  /** Groups with their members (on the leader; empty elsewhere). */
  groupMembers: GroupMembersStatus[];
  clients: ClientStatus[];
  memory: { rss: number; heapTotal: number; heapUsed: number; external: number };
  /** The longest time the broker thread's event loop was busy with one stretch of work, since it started. */
  eventLoop?: { longestStallMs: number };
  /** Damaged records this broker found since it started (newest last), and whether each was healed. */
  damage?: DamageStatus[];
  /** Partitions fenced since this broker started: they answer STORAGE until it restarts. */
  fenced?: FencedStatus[];
  traffic?: TrafficCounters;
  /** Other listeners of this broker (e.g. `kafka`, `http`), when it has them: name -> host:port. */
  listeners?: Record<string, string>;
  /** On the leader, when there are any: the open transactions (each holds read_committed readers of its partitions). */
  transactions?: TransactionStatus[];
};

/** An open transaction: its transactional id, state, producer (`p<n>`), epoch, when it opened (wall-clock ms), timeout and partitions. */
export interface TransactionStatus {
  id: string;
  state: string;
  producer: string;
  epoch: number;
  startedAt: number;
  timeoutMs: number;
  partitions: string[];
}

/** A partition fenced after an I/O error left its log uncertain: what failed, the error, and when (wall-clock ms). */
export interface FencedStatus {
  partition: string;
  failed: string;
  error: string;
  at: number;
}

/** A damaged record a broker found: where, who found it ("open", "read", "scrub"), when, and whether it healed. */
export interface DamageStatus {
  partition: string;
  offset: number;
  segment: string;
  found: "open" | "read" | "scrub";
  /** Wall-clock ms. */
  at: number;
  healed: boolean;
}
