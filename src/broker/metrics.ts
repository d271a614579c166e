/**
 * A broker's metrics: counters bumped once per batch or request on the hot
 * paths (never per record), and gauges read from the broker only when
 * someone scrapes. `renderMetrics` writes both in Prometheus' text
 * exposition format (version 0.0.4): units in names, `_total` on counters,
 * durations in seconds as histograms.
 *
 * @module
 */
import type { TrafficCounters } from "../protocol/status.ts";

/** Upper bounds of the request-duration buckets, in seconds (a long-polled fetch may wait up to 30 s). */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/**
 * Counts of observations per bucket (not cumulative: made so on render), their sum and count.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Histogram } from "./metrics.ts";
 * const h = new Histogram();
 * h.observe(0.003);
 * assert.equal(h.count, 1);
 * ```
 */
export class Histogram {
  /** One slot per bucket bound, then one for what is above the last bound. */
  readonly counts = new Float64Array(DURATION_BUCKETS_SECONDS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < DURATION_BUCKETS_SECONDS.length && seconds > DURATION_BUCKETS_SECONDS[i]) i++;
    this.counts[i]++;
    this.sum += seconds;
    this.count++;
  }
}

interface TopicTraffic {
  recordsIn: number;
  bytesIn: number;
  recordsOut: number;
  bytesOut: number;
}

/** Which fetches: consumers' (up to the high watermark) or followers' (up to the log end). */
export type FetchKind = "consumer" | "follower";

/**
 * The counters of one broker process (they start at zero with it).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BrokerMetrics } from "./metrics.ts";
 * const m = new BrokerMetrics();
 * m.appended("orders", 500, 40_000);
 * m.produceDone(0.004, null);
 * assert.equal(m.traffic().recordsIn, 500);
 * ```
 */
export class BrokerMetrics {
  readonly #topics = new Map<string, TopicTraffic>();
  produceRequests = 0;
  readonly produceErrors = new Map<string, number>();
  readonly produceSeconds = new Histogram();
  readonly fetchRequests: Record<FetchKind, number> = { consumer: 0, follower: 0 };
  readonly fetchSeconds: Record<FetchKind, Histogram> = { consumer: new Histogram(), follower: new Histogram() };
  replicationRecordsOut = 0;
  replicationBytesOut = 0;
  /** How late the broker thread's lag probe ran: how long the event loop was busy with other work. */
  readonly eventLoopLagSeconds = new Histogram();
  /** The longest such stall since the broker started, in ms. */
  longestStallMs = 0;
  /** Damaged records found, by who found them (start-up check, a read, the scrubber). */
  readonly damagedRecords: Record<"open" | "read" | "scrub", number> = { open: 0, read: 0, scrub: 0 };
  /** Damaged ranges re-copied from the leader. */
  healedRanges = 0;
  /** Partitions fenced after an I/O error left their log uncertain (each stays fenced until a restart). */
  fencedPartitions = 0;
  /** Bytes of closed segments the scrubber checked, and its complete passes over them. */
  scrubBytes = 0;
  scrubPasses = 0;
  /** Cleanings carried out here (compacted topics), the bytes they read and wrote, the records they removed. */
  cleanerRuns = 0;
  cleanerBytesRead = 0;
  cleanerBytesWritten = 0;
  cleanerRecordsRemoved = 0;
  /** Scavenges started because the process's ArrayBuffers grew (young_gc.ts). */
  youngCollections = 0;

  #topic(name: string): TopicTraffic {
    let t = this.#topics.get(name);
    if (!t) {
      t = { recordsIn: 0, bytesIn: 0, recordsOut: 0, bytesOut: 0 };
      this.#topics.set(name, t);
    }
    return t;
  }

  /** A produced batch was written to the leader's log. */
  appended(topic: string, records: number, bytes: number): void {
    const t = this.#topic(topic);
    t.recordsIn += records;
    t.bytesIn += bytes;
  }

  /** Stored records went to a consumer (one call per partition read). */
  sent(topic: string, records: number, bytes: number): void {
    const t = this.#topic(topic);
    t.recordsOut += records;
    t.bytesOut += bytes;
  }

  /** Stored records went to a follower. */
  replicated(records: number, bytes: number): void {
    this.replicationRecordsOut += records;
    this.replicationBytesOut += bytes;
  }

  /** A produce request (one partition's batch) was answered, with an error code or null. */
  /** One reading of the event-loop lag probe: how many ms after it was due it ran. */
  eventLoopLag(ms: number): void {
    this.eventLoopLagSeconds.observe(ms / 1000);
    if (ms > this.longestStallMs) this.longestStallMs = ms;
  }

  produceDone(seconds: number, errorCode: string | null): void {
    this.produceRequests++;
    this.produceSeconds.observe(seconds);
    if (errorCode !== null) this.produceErrors.set(errorCode, (this.produceErrors.get(errorCode) ?? 0) + 1);
  }

  /** A fetch (long poll included) was answered. */
  fetchDone(kind: FetchKind, seconds: number): void {
    this.fetchRequests[kind]++;
    this.fetchSeconds[kind].observe(seconds);
  }

  /** Topic -> its traffic so far. */
  topics(): ReadonlyMap<string, Readonly<TopicTraffic>> {
    return this.#topics;
  }

  /** The totals over all topics (for `status`, so the console can derive rates). */
  traffic(): TrafficCounters {
    const out = { recordsIn: 0, bytesIn: 0, recordsOut: 0, bytesOut: 0 };
    for (const t of this.#topics.values()) {
      out.recordsIn += t.recordsIn;
      out.bytesIn += t.bytesIn;
      out.recordsOut += t.recordsOut;
      out.bytesOut += t.bytesOut;
    }
    return out;
  }
}

/** A partition's offsets, and on the leader each follower's lag in records. */
export interface PartitionGauges {
  topic: string;
  partition: number;
  logStart: number;
  logEnd: number;
  highWatermark: number;
  /** Leader only: replica id -> records behind the leader's log end, as of its last fetch. */
  replicaLag?: ReadonlyMap<number, number>;
}

/** What a scrape reads from the broker at that moment. */
export interface BrokerGauges {
  role: "leader" | "follower" | "none";
  epoch: number;
  /** Brokers in the in-sync set of the newest lease this broker saw. */
  isrSize: number;
  /** Leader only: partitions whose in-sync set is smaller than the brokers holding replicas. */
  underReplicated: number | null;
  partitions: PartitionGauges[];
  /** Leader only: group -> topic -> partition -> lag in records. */
  groupLag: Record<string, Record<string, Record<string, { lag: number }>>> | null;
  memory: { rss: number; heapUsed: number; heapTotal: number };
  /** The largest share of a compacted partition's closed bytes not cleaned yet (0 without compacted topics). */
  maxDirtyRatio?: number;
}

/** Label values escaped as the text format wants (backslash, quote, newline). */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(pairs: Record<string, string | number>): string {
  const parts = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Writes families in the text format: HELP and TYPE once, then the samples. */
class PromText {
  readonly #lines: string[] = [];

  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, pairs: Record<string, string | number> = {}): this {
    this.#lines.push(`${name}${labels(pairs)} ${num(value)}`);
    return this;
  }

  histogram(name: string, h: Histogram, pairs: Record<string, string | number> = {}): this {
    let cumulative = 0;
    for (let i = 0; i < DURATION_BUCKETS_SECONDS.length; i++) {
      cumulative += h.counts[i];
      this.sample(`${name}_bucket`, cumulative, { ...pairs, le: String(DURATION_BUCKETS_SECONDS[i]) });
    }
    this.sample(`${name}_bucket`, h.count, { ...pairs, le: "+Inf" });
    this.sample(`${name}_sum`, h.sum, pairs);
    return this.sample(`${name}_count`, h.count, pairs);
  }

  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/**
 * A broker's metrics in Prometheus' text format.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BrokerMetrics, renderMetrics } from "./metrics.ts";
 * const text = renderMetrics(new BrokerMetrics(), {
 *   role: "follower", epoch: 3, isrSize: 3, underReplicated: null, partitions: [], groupLag: null,
 *   memory: { rss: 1, heapUsed: 1, heapTotal: 1 },
 * });
 * assert.match(text, /^yak_leader_epoch 3$/m);
 * ```
 */
export function renderMetrics(m: BrokerMetrics, g: BrokerGauges): string {
  const out = new PromText();
  writeTraffic(out, m);
  writeRequests(out, m);
  writeEventLoop(out, m);
  writeDamage(out, m);
  writeRole(out, g);
  writePartitions(out, g);
  writeGroupLag(out, g);
  writeMemory(out, m, g);
  writeCleaner(out, m, g);
  return out.toString();
}

/** Log compaction: what the cleaner did here, and how much is left for it. */
function writeCleaner(out: PromText, m: BrokerMetrics, g: BrokerGauges): void {
  const counter = (name: string, help: string, value: number) => out.family(name, "counter", help).sample(name, value);
  counter("yak_cleaner_runs_total", "Cleanings of compacted partitions carried out on this broker.", m.cleanerRuns);
  counter("yak_cleaner_bytes_read_total", "Bytes of segments the cleaner read.", m.cleanerBytesRead);
  counter("yak_cleaner_bytes_written_total", "Bytes of cleaned segments the cleaner wrote.", m.cleanerBytesWritten);
  counter("yak_cleaner_records_removed_total", "Records the cleaner removed.", m.cleanerRecordsRemoved);
  const ratio = "yak_cleaner_max_dirty_ratio";
  out.family(ratio, "gauge", "The largest share of a compacted partition's closed bytes not cleaned yet.")
    .sample(ratio, g.maxDirtyRatio ?? 0);
}

/** Records and bytes in and out: per topic for clients, in all for followers. */
function writeTraffic(out: PromText, m: BrokerMetrics): void {
  const topics = [...m.topics()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  const perTopic = (name: string, help: string, pick: (t: TopicTraffic) => number) => {
    out.family(name, "counter", help);
    for (const [topic, t] of topics) out.sample(name, pick(t), { topic });
  };
  perTopic("yak_records_in_total", "Produced records this broker appended as leader.", (t) => t.recordsIn);
  perTopic("yak_bytes_in_total", "Bytes of produced records this broker appended as leader.", (t) => t.bytesIn);
  perTopic("yak_records_out_total", "Records sent to consumers.", (t) => t.recordsOut);
  perTopic("yak_bytes_out_total", "Bytes of records sent to consumers.", (t) => t.bytesOut);
  out.family("yak_replication_records_out_total", "counter", "Records sent to followers.")
    .sample("yak_replication_records_out_total", m.replicationRecordsOut);
  out.family("yak_replication_bytes_out_total", "counter", "Bytes of records sent to followers.")
    .sample("yak_replication_bytes_out_total", m.replicationBytesOut);
}

/** Produce and fetch requests: counts, errors and durations. */
function writeRequests(out: PromText, m: BrokerMetrics): void {
  out.family("yak_produce_requests_total", "counter", "Produce requests (one partition's batch each), answered.")
    .sample("yak_produce_requests_total", m.produceRequests);
  out.family("yak_produce_errors_total", "counter", "Produce requests answered with an error, by error code.");
  for (const [code, n] of [...m.produceErrors].sort()) out.sample("yak_produce_errors_total", n, { code });
  out.family(
    "yak_produce_request_duration_seconds",
    "histogram",
    "Time from a produce request to its answer (acks=all includes the wait for the in-sync replicas).",
  ).histogram("yak_produce_request_duration_seconds", m.produceSeconds);
  out.family("yak_fetch_requests_total", "counter", "Fetch requests answered, by consumers and by followers.");
  for (const kind of ["consumer", "follower"] as const) {
    out.sample("yak_fetch_requests_total", m.fetchRequests[kind], { kind });
  }
  out.family(
    "yak_fetch_request_duration_seconds",
    "histogram",
    "Time from a fetch request to its answer, long-poll wait included.",
  );
  for (const kind of ["consumer", "follower"] as const) {
    out.histogram("yak_fetch_request_duration_seconds", m.fetchSeconds[kind], { kind });
  }
}

function writeEventLoop(out: PromText, m: BrokerMetrics): void {
  out.family(
    "yak_event_loop_lag_seconds",
    "histogram",
    "How late a 50 ms timer on the broker thread fired: time its event loop was busy with one stretch of work.",
  ).histogram("yak_event_loop_lag_seconds", m.eventLoopLagSeconds);
  out.family("yak_event_loop_longest_stall_seconds", "gauge", "The longest event-loop stall since the broker started.")
    .sample("yak_event_loop_longest_stall_seconds", m.longestStallMs / 1000);
}

/** Damaged records found, ranges healed, partitions fenced, and the scrubber's progress. */
function writeDamage(out: PromText, m: BrokerMetrics): void {
  out.family(
    "yak_damaged_records_total",
    "counter",
    "Stored records found damaged (their checksum), by who found them.",
  );
  for (const found of ["open", "read", "scrub"] as const) {
    out.sample("yak_damaged_records_total", m.damagedRecords[found], { found });
  }
  out.family("yak_healed_ranges_total", "counter", "Damaged ranges this broker copied again from the leader.")
    .sample("yak_healed_ranges_total", m.healedRanges);
  out.family(
    "yak_partitions_fenced_total",
    "counter",
    "Partitions fenced after an I/O error left their log uncertain; each answers STORAGE until the broker restarts.",
  ).sample("yak_partitions_fenced_total", m.fencedPartitions);
  out.family("yak_scrub_bytes_total", "counter", "Bytes of closed segments the background scrubber checked.")
    .sample("yak_scrub_bytes_total", m.scrubBytes);
  out.family("yak_scrub_passes_total", "counter", "Complete passes of the scrubber over every closed segment.")
    .sample("yak_scrub_passes_total", m.scrubPasses);
}

/** The broker's role, epoch and in-sync set. */
function writeRole(out: PromText, g: BrokerGauges): void {
  out.family("yak_is_leader", "gauge", "1 while this broker is the cluster's leader.")
    .sample("yak_is_leader", g.role === "leader" ? 1 : 0);
  out.family("yak_leader_epoch", "gauge", "The leader epoch this broker is in.").sample("yak_leader_epoch", g.epoch);
  out.family("yak_isr_size", "gauge", "Brokers in the in-sync set of the newest lease.")
    .sample("yak_isr_size", g.isrSize);
  if (g.underReplicated !== null) {
    out.family(
      "yak_under_replicated_partitions",
      "gauge",
      "Partitions whose in-sync set is smaller than the brokers holding replicas (on the leader).",
    ).sample("yak_under_replicated_partitions", g.underReplicated);
  }
}

/** Each partition's offsets, and on the leader each follower's lag behind them. */
function writePartitions(out: PromText, g: BrokerGauges): void {
  const perPartition = (name: string, help: string, pick: (p: PartitionGauges) => number) => {
    out.family(name, "gauge", help);
    for (const p of g.partitions) out.sample(name, pick(p), { topic: p.topic, partition: p.partition });
  };
  perPartition("yak_log_start_offset", "The first offset still stored.", (p) => p.logStart);
  perPartition("yak_log_end_offset", "The offset the next record will get.", (p) => p.logEnd);
  perPartition("yak_high_watermark", "Records below it are on every in-sync replica.", (p) => p.highWatermark);
  if (g.role !== "leader") return;
  out.family(
    "yak_replica_lag_records",
    "gauge",
    "Records a follower is behind the leader's log end (on the leader).",
  );
  for (const p of g.partitions) {
    for (const [replica, lag] of p.replicaLag ?? []) {
      out.sample("yak_replica_lag_records", lag, { topic: p.topic, partition: p.partition, replica });
    }
  }
}

function writeGroupLag(out: PromText, g: BrokerGauges): void {
  if (g.groupLag === null) return;
  out.family("yak_group_lag_records", "gauge", "Records between a group's commit and the high watermark.");
  for (const [group, byTopic] of Object.entries(g.groupLag).sort(([a], [b]) => a < b ? -1 : 1)) {
    for (const [topic, byPartition] of Object.entries(byTopic)) {
      for (const [partition, { lag }] of Object.entries(byPartition)) {
        out.sample("yak_group_lag_records", lag, { group, topic, partition });
      }
    }
  }
}

function writeMemory(out: PromText, m: BrokerMetrics, g: BrokerGauges): void {
  out.family("yak_process_resident_memory_bytes", "gauge", "Resident set size of the broker process.")
    .sample("yak_process_resident_memory_bytes", g.memory.rss);
  out.family("yak_process_heap_used_bytes", "gauge", "V8 heap in use.")
    .sample("yak_process_heap_used_bytes", g.memory.heapUsed);
  out.family("yak_process_heap_total_bytes", "gauge", "V8 heap reserved.")
    .sample("yak_process_heap_total_bytes", g.memory.heapTotal);
  out.family(
    "yak_young_collections_total",
    "counter",
    "Scavenges of V8's young generation this broker started as a follower because its ArrayBuffers grew by 16 MiB.",
  ).sample("yak_young_collections_total", m.youngCollections);
}
