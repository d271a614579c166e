/**
 * Every default and limit of yak, in one place, with units in the names.
 *
 * @module
 */

/** The defaults and limits that processes start with unless a flag says otherwise. */
export const DEFAULTS = {
  /** Where every process keeps its files. */
  dataDir: "data",
  /**
   * Modes of the directories and files under the data root: the owner's
   * alone, since every record is in them (at 0755/0644 every local user read
   * every record). `--shared-files` gives the owner's group read access
   * instead, for an operator's group or a backup job.
   */
  dataDirMode: 0o700,
  dataFileMode: 0o600,
  sharedDataDirMode: 0o750,
  sharedDataFileMode: 0o640,
  /** Address everything binds to unless `--host` says otherwise. */
  host: "127.0.0.1",
  zookeeperPort: 2181,
  /** Broker N listens on `brokerBasePort + N - 1` unless `--port` is given. */
  brokerBasePort: 9092,
  /** Partitions of a topic created on first use. */
  defaultPartitions: 3,

  // Membership and failover.
  heartbeatMs: 250,
  sessionTimeoutMs: 1000,
  /**
   * The longest run of request work (decoding pipelined requests off one
   * connection) before the broker thread yields to the rest of its event loop.
   */
  requestSliceMs: 20,
  /** A follower that has not caught up for this long leaves the in-sync set. */
  replicaLagMs: 10_000,
  /**
   * acks=all is refused (NOT_ENOUGH_REPLICAS, retriable) while fewer brokers
   * are in sync: 2 of 3 means an acknowledged record survives any one crash.
   */
  minInsyncReplicas: 2,
  /** How long a follower's fetch waits at the leader for new records. */
  replicaFetchWaitMs: 200,
  /**
   * A follower's fetch that finds no records but a high watermark newer
   * than the follower's waits this long for records before it answers with
   * the high watermark alone. Why: the watermark most often moved because
   * of that very fetch (its offsets acknowledge what it took), and answering
   * at once made every burst of records cost each follower two round trips,
   * the second one empty: 1M records in transactions of 10,000 took 2,064
   * follower fetches against 533 without transactions. Followers learn the
   * watermark (and apply `__cluster` records) at most this much later.
   */
  followerHwWakeMs: 3,
  /**
   * A follower's fetch takes up to this many bytes (over all partitions; the
   * leader refuses more than maxFetchBytes). Why 4 MiB, not 2: librdkafka
   * sends batches of up to 1 MB (2.1 MB stored), five in flight, and with 2
   * MiB a fetch (700 KB a partition) the followers stayed ~15,000 records
   * behind, past the 2 MiB tail cache, so the leader read and checked their
   * records from disk (about 350 such reads in a 1M-record kcat -P run, a
   * sixth of its CPU). With 4 MiB: leader 3.7-3.9 us a record against
   * 4.3-4.5 under the profiler, kcat -P 1.20x in `bench --against`.
   */
  replicaFetchMaxBytes: 4 * 1024 * 1024,

  // Storage.
  segmentBytes: 64 * 1024 * 1024,
  /**
   * Newest bytes of each partition kept in memory for followers and tail
   * consumers. Small on purpose: it is per partition, and readers that fall
   * behind it are served from the page cache through the index.
   */
  tailCacheBytes: 2 * 1024 * 1024,
  /**
   * How large a partition's tail cache may grow to keep what an in-sync
   * follower has not fetched yet (a Kafka producer's 2 MB batches): the
   * follower's next fetch then reads memory, not the disk.
   */
  tailHoldBytes: 8 * 1024 * 1024,
  indexIntervalBytes: 4096,
  /**
   * The scrubber's pace: it re-reads every closed segment and checks each
   * record's checksum, at most this many bytes a second (0: off), starting a
   * new pass at most once per `scrubIntervalMs`.
   */
  scrubBytesPerSec: 4 * 1024 * 1024,
  scrubIntervalMs: 3_600_000,
  /** How much of a partition's tail is scanned to rebuild producer sequences on a new leader. */
  producerStateScanBytes: 16 * 1024 * 1024,

  // Log compaction (cleanup.policy=compact; src/log/cleaner.ts, src/broker/compactor.ts).
  /**
   * A compacted partition is cleaned once this share of its closed
   * segments' bytes lies past the last cleaning (Kafka's
   * log.cleaner.min.cleanable.ratio): lower cleans more often for more I/O.
   */
  minCleanableDirtyRatio: 0.5,
  /** A tombstone (null value) is kept this long after it was written, so readers from 0 see the delete (one day). */
  deleteRetentionMs: 86_400_000,
  /** How often the leader looks for partitions to clean (Kafka's log.cleaner.backoff.ms). */
  cleanerCheckMs: 15_000,
  /**
   * The cleaner's key map: 20 bytes a key (a 96-bit digest and the offset)
   * at most 3/4 full, so 16 MiB holds about 630,000 keys of one pass; a
   * dirty range with more is cleaned in several passes, segment by segment,
   * with the same result. One segment with more keys than that gets a map
   * of its own size (at most segment.bytes / 60 keys: the shortest line).
   */
  cleanerKeyMapBytes: 16 * 1024 * 1024,
  /**
   * Bytes the cleaner reads and writes a second, over all partitions
   * (Kafka's log.cleaner.io.max.bytes.per.second; 0: no limit): it shares
   * the disk and the broker thread with producers. Measured on 2 cores
   * (`deno task bench --cleaner`): at 32 MiB/s an acks=all producer ran at
   * 51% of its idle-cluster rate while the cleaner ran; at 8 MiB/s, 100%.
   */
  cleanerIoBytesPerSec: 8 * 1024 * 1024,
  /** The cleaner's longest run on the broker thread before it yields (requests go first). */
  cleanerSliceMs: 10,
  /**
   * Groups of merged segments one cleaning decision names (their first
   * bases travel in each `clean` record of `__cluster`: 256 numbers, about
   * 6 KB). Every decision names them from the log start, so segments past
   * the 256th group stay as they are: two neighbouring groups hold more
   * than segment.bytes, so that is past 128 × segment.bytes of cleaned data
   * (128 GiB at the default segment.bytes).
   */
  cleanerMergeGroupsMax: 256,

  // Protocol limits.
  maxFrameBytes: 16 * 1024 * 1024,
  maxRecordBytes: 1024 * 1024,
  maxBatchRecords: 100_000,
  /** Headers one native record may carry (their bytes count toward the record size limit too). */
  maxRecordHeaders: 1000,
  /**
   * A failed SASL authentication is answered after this long, and then the
   * connection closes (Kafka's connection.failed.authentication.delay.ms is
   * 100): guessing the token costs a connection and a wait per guess.
   */
  authFailureDelayMs: 250,
  /** Failed authentications from one address are logged once per this window, then as a count. */
  authFailureLogWindowMs: 10_000,
  /**
   * Headers one produce request may carry over all its records: each is an
   * object to decode and store, and at 2 bytes apiece a 16 MiB request (or
   * 8 KB of gzip) could otherwise hold millions.
   */
  maxRequestHeaders: 100_000,
  maxFetchBytes: 4 * 1024 * 1024,
  maxFetchWaitMs: 30_000,

  // Connections (every listener: native, Kafka, zookeeper; src/protocol/listener.ts).
  /** Connections one listener serves at once. */
  maxConnections: 1024,
  /**
   * Connections from one address (Kafka's max.connections.per.ip): half the
   * table, so one address can never hold all of it. On loopback every local
   * process shares an address, hence not lower.
   */
  maxConnectionsPerPeer: 512,
  /**
   * Frames a connection may send before it authenticates: an auth line, an
   * ApiVersions, a SASL token are a few hundred bytes (Kafka allows 512 KiB
   * for GSSAPI tokens, which yak does not speak). Below the read buffer's
   * size, so an unauthenticated peer never makes a connection grow.
   */
  maxPreAuthFrameBytes: 16 * 1024,
  /**
   * A connection that has not authenticated (or, with no token, not sent a
   * first request) by then is closed; such connections are also the first
   * to make room when the table is full.
   */
  authTimeoutMs: 10_000,
  /**
   * A connection refused or evicted for want of room is told so at once and
   * closed this much later: a flood that reconnects as soon as it is closed
   * (117,000 connections in 12 s against the zookeeper, which then took 5 s
   * to elect a leader) gets one attempt a second per socket.
   */
  turnedAwayCloseDelayMs: 1000,
  /** A connection with nothing in flight that sends nothing for this long is closed (Kafka's connections.max.idle.ms). */
  connectionsMaxIdleMs: 600_000,
  /** Requests of one connection handled at once; reading pauses beyond it. */
  maxInFlightPerConnection: 128,
  /** Reply bytes of one connection not yet written (its peer is not reading); reading pauses beyond it. */
  maxUnwrittenBytesPerConnection: 8 * 1024 * 1024,
  /**
   * Bytes of requests bigger than a connection's 64 KiB read buffer held at
   * once over all connections of a process (Kafka's queued.max.request.bytes):
   * a connection that would pass it stops reading until others finish. Eight
   * maximum-size frames; without it 260 peers each sending 16 MiB - 1 bytes
   * and going silent took a broker to 4.2 GB.
   */
  queuedMaxRequestBytes: 128 * 1024 * 1024,
  maxPartitions: 1000,
  /**
   * Topics a cluster keeps: each is a directory with a topic.json, and its
   * partitions ride in every follower fetch (an implicit cap there broke every
   * follower at about 33,000 auto-created topics).
   */
  maxTopics: 2000,
  /**
   * A topic is created by its first produce or metadata request (Kafka's
   * auto.create.topics.enable, on by default there too); off, only an
   * explicit create makes one (`--auto-create-topics-enable false`).
   */
  autoCreateTopics: true,
  /**
   * Records `__cluster` may hold past its start before the state is written
   * as one snapshot record and the older segments are deleted: group commits
   * would otherwise grow it forever (and slow every restart's replay). About
   * 120 bytes a commit: 2,000 keep it near 250 KiB between snapshots.
   */
  clusterSnapshotRecords: 2_000,
  /** Retention (Kafka's log.retention.*): by default records are kept 7 days, with no size limit. */
  retentionMs: 7 * 24 * 3600 * 1000,
  retentionBytes: -1,
  /** A leader rolls its active segment after this long, so time retention can delete it. */
  segmentMs: 7 * 24 * 3600 * 1000,
  /** How often the leader looks for segments past retention (Kafka checks every 5 minutes). */
  retentionCheckMs: 60_000,
  /** Partitions one broker holds over all topics: open files, tail caches and per-fetch work grow with them. */
  maxPartitionsPerBroker: 10_000,
  maxTopicNameChars: 249,

  // Consumer groups (on the leader).
  /** Groups the coordinator keeps in memory at once: each holds its members' metadata and assignments. */
  maxGroups: 10_000,
  /** Members of one group: every join answers the leader with all members' subscriptions. */
  maxGroupMembers: 1000,
  /** A member's subscription or assignment bytes (Kafka's consumer protocol). */
  maxGroupMetadataBytes: 1024 * 1024,
  /**
   * What one group's members may hold in the coordinator (subscriptions of
   * every protocol they offer, assignments, ids; `--max-group-bytes`): the
   * per-item limits alone allowed 1,000 members of 1 MiB each. The leader
   * member's join answer carries every subscription, so this also bounds it
   * (base64 in the native protocol: 22 MiB, under the client's 64 MiB reply
   * frame). Kafka keeps a group's membership as one record, which its
   * default message.max.bytes holds to about 1 MiB; 16 KiB for each of
   * `maxGroupMembers` is 16 MiB.
   */
  maxGroupBytes: 16 * 1024 * 1024,
  /**
   * What all groups' members may hold in the coordinator together
   * (`--max-group-state-bytes`): membership lives in the leader's memory,
   * and 1,000 joins of 1 MiB took a leader from 110 MB to 2.1 GB for their
   * session timeout (issue 20). 256 MiB is 16 groups at `maxGroupBytes`, or
   * some 140,000 members with 1 KiB subscriptions, and keeps a leader under
   * about 400 MB from groups alone.
   */
  maxGroupStateBytes: 256 * 1024 * 1024,
  /** A new group waits this long for more members before its first assignment (Kafka waits 3 s). */
  groupInitialRebalanceDelayMs: 300,
  /**
   * After a failover, a group whose first joiner is a member of the previous
   * leader's generation waits this long for the others, so they are all taken
   * back in one rebalance and keep their partitions: members learn of the move
   * up to a heartbeat apart (at most 1 s) and rejoin at their next poll (a
   * long poll is at most 500 ms).
   */
  groupAdoptDelayMs: 1500,
  /**
   * A group whose last member left or expired is kept this long (Kafka's
   * offsets.retention.check.interval.ms, whose cleanup drops such a group):
   * listed Empty, its generation going on, its old member ids refused
   * (UNKNOWN_MEMBER_ID). Members of a previous leader's generation are taken
   * back under their ids (see groupAdoptDelayMs) only this long after a
   * broker starts leading, so an id this leader saw leave is never taken back.
   */
  groupEmptyKeepMs: 600_000,
  /** A static member's group instance id (KIP-345), in characters: Kafka's clients allow 249 too. */
  maxGroupInstanceIdChars: 249,
  /**
   * A group's protocol type and each protocol's name, in characters ("consumer", "range", "cooperative-sticky"...):
   * they are answered back in strings that older Kafka versions cap at 32,767 bytes, and kept per member.
   */
  maxGroupProtocolChars: 255,
  /**
   * The session timeouts a member may ask for: Kafka's group.max.session.timeout.ms (30 min), and from 100 ms where
   * Kafka's group.min.session.timeout.ms is 6 s, so tests can be quick (KAFKA.md).
   */
  groupMinSessionTimeoutMs: 100,
  groupMaxSessionTimeoutMs: 1_800_000,
  /** A member silent this long is removed and the group rebalances (`yak consume --session-timeout-ms`). */
  groupSessionTimeoutMs: 10_000,

  // Transactions (the coordinator runs on the leader; its state is in `__cluster`).
  /**
   * The longest transaction timeout a producer may ask for (Kafka's
   * transaction.max.timeout.ms, 15 min; `--transaction-max-timeout-ms`): an
   * open transaction holds every read_committed consumer of its partitions
   * at its first offset until it ends, so an abandoned one must end within it.
   */
  transactionMaxTimeoutMs: 900_000,
  /** The timeout a transaction gets when the producer asks for none (Kafka's client default, 1 min). */
  transactionDefaultTimeoutMs: 60_000,
  /** How often the coordinator looks for transactions past their timeout (Kafka: every 10 s). */
  transactionCheckMs: 100,
  /**
   * Transactional ids the coordinator keeps: each is a record in every
   * snapshot of `__cluster` and an entry in every replica's memory.
   * Flink and Kafka Streams make one per task, so a few thousand is normal;
   * past this a new id is refused (Kafka's error 44, POLICY_VIOLATION).
   */
  maxTransactionalIds: 10_000,
  /**
   * An id with no transaction open and no change for this long is forgotten
   * (Kafka's transactional.id.expiration.ms, 7 days): its next InitProducerId
   * gets a new producer id.
   */
  transactionalIdExpirationMs: 7 * 24 * 3600 * 1000,
  /** Transactions open at once: each holds back the last stable offset of its partitions. */
  maxOpenTransactions: 1_000,
  /**
   * Partitions one transaction may write to: its commit writes a marker into
   * each, and its state (rewritten in `__cluster` at every change) names them all.
   */
  maxPartitionsPerTransaction: 1_000,
  /** Group offsets one transaction may carry (TxnOffsetCommit), over all its groups. */
  maxOffsetsPerTransaction: 10_000,
  /**
   * Bytes of one transactional id's state as stored (its partitions and
   * offsets; a `__cluster` record is rewritten whole at each change, so this
   * bounds the metadata log's growth per request too).
   */
  maxTransactionStateBytes: 1024 * 1024,

  // Web console and metrics (HTTP).
  /** `yak cluster` serves the console here and broker N's /metrics on consoleHttpPort + N. */
  consoleHttpPort: 8080,
  /** The console asks the brokers at most once per this interval, and only while a page is open. */
  consoleGatherIntervalMs: 1000,
  /** A broker that takes longer to answer the console is shown paused. */
  consoleProbeTimeoutMs: 800,
  /** Pages connected at once (each holds an event stream). */
  consoleMaxViewers: 64,
  /**
   * Record-browser queries (`GET /api/records`) the console runs at once;
   * more are answered 503 at once. Each may read up to 20,000 records
   * through the zookeeper's process, which elects leaders too: 200 at once
   * took it from 90 to 500 MB, and every one of them waited 10 s and was
   * answered "the leader did not answer".
   */
  consoleMaxBrowses: 2,
  /**
   * Connections one plain-HTTP server (the console, a broker's /metrics)
   * keeps at once (src/console/http_front.ts): room for every viewer's event
   * stream and its page's other requests. When full, the oldest connection
   * that has not sent a whole request yet makes room, else one kept alive
   * and silent between requests (httpEvictableSilenceMs).
   */
  httpMaxConnections: 256,
  /** A request (its head, and a Content-Length or chunked body) must be whole this long after its first byte. */
  httpRequestTimeoutMs: 10_000,
  /** An HTTP connection over which nothing moved either way for this long is closed (event streams send every second). */
  httpIdleMs: 60_000,
  /** When full, a connection answered and silent (both ways) this long between requests makes room. */
  httpEvictableSilenceMs: 5_000,
  /** Rate samples kept for the charts (at one a second: three minutes). */
  consoleHistoryPoints: 180,

  // Clients.
  requestTimeoutMs: 10_000,
  batchRecords: 2000,
  batchBytes: 1024 * 1024,
  lingerMs: 5,
  maxInFlightBatches: 8,
  /**
   * Batches an idempotent producer's partition may have in flight, and the
   * batches a leader remembers per producer and partition to answer a resent
   * one as a duplicate (Kafka: five, with max.in.flight.requests.per.connection
   * at most 5). More in flight on one partition than remembered, a resend of
   * the oldest after a timeout was out of order for good.
   */
  idempotenceWindowBatches: 5,
  /** A producer gives up when no leader acknowledges anything for this long. */
  deliveryTimeoutMs: 60_000,
  /** A client that has never reached the cluster gives up after this long (a wrong address fails fast). */
  firstConnectTimeoutMs: 10_000,
  /**
   * A CLI command whose first contact is refused at every address (nothing listens) gives up after this long, not
   * after firstConnectTimeoutMs: "is the cluster running?" in under a second (see FirstContact in discovery.ts).
   */
  refusedGiveUpMs: 300,
  consumerFetchWaitMs: 500,
  consumerFetchMaxBytes: 4 * 1024 * 1024,
} as const;

/**
 * How yak runs itself (`yak cluster` children, tests, scripts): the
 * permissions it needs, and a small V8 young generation. A broker turns over
 * short-lived garbage (request frames, batches) fast, and V8's default young
 * generation on a large machine grows the process by a hundred MB for no
 * speed (the benchmark: same throughput with 8 MiB semi-spaces, leader peak
 * RSS 235 -> 175 MB). `--expose-gc` lets a broker scavenge when its
 * ArrayBuffers grow (src/broker/young_gc.ts: a follower's peak RSS about
 * 150 -> 115 MB). Like Kafka's heap options, they must be given at launch;
 * deno.json's tasks and ./yak repeat them. `--allow-sys=uid` is for the
 * process's own user id alone: a data root of another user is refused;
 * `statfs` for the size and free bytes of the file system a broker's data
 * is on (Kafka's DescribeLogDirs).
 */
export const RUN_FLAGS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-sys=uid,statfs",
  "--v8-flags=--max-semi-space-size=8,--expose-gc",
] as const;
