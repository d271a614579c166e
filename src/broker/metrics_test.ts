import assert from "node:assert/strict";
import { parsePromText, sampleValue } from "../../tests/prom_text.ts";
import { type BrokerGauges, BrokerMetrics, Histogram, renderMetrics } from "./metrics.ts";

const GAUGES: BrokerGauges = {
  role: "leader",
  epoch: 7,
  isrSize: 2,
  underReplicated: 3,
  partitions: [
    { topic: "orders", partition: 0, logStart: 0, logEnd: 120, highWatermark: 100, replicaLag: new Map([[2, 20]]) },
  ],
  groupLag: { billing: { orders: { "0": { lag: 40 } } } },
  memory: { rss: 1000, heapUsed: 400, heapTotal: 800 },
};

Deno.test("histogram buckets are counted once and rendered cumulatively, with +Inf equal to the count", () => {
  const h = new Histogram();
  for (const s of [0.0001, 0.003, 0.003, 0.2, 99]) h.observe(s);
  assert.equal(h.count, 5);
  const m = new BrokerMetrics();
  for (const s of [0.0001, 0.003, 0.003, 0.2, 99]) m.produceDone(s, null);
  const f = parsePromText(renderMetrics(m, GAUGES));
  const bucket = (le: string) => sampleValue(f, "yak_produce_request_duration_seconds_bucket", { le });
  assert.equal(bucket("0.0005"), 1);
  assert.equal(bucket("0.005"), 3);
  assert.equal(bucket("0.25"), 4);
  assert.equal(bucket("30"), 4);
  assert.equal(bucket("+Inf"), 5);
  assert.equal(sampleValue(f, "yak_produce_request_duration_seconds_count"), 5);
  assert.ok(Math.abs(sampleValue(f, "yak_produce_request_duration_seconds_sum") - 99.2061) < 1e-9);
});

Deno.test("counters per topic, errors by code, and the leader's gauges render as valid exposition text", () => {
  const m = new BrokerMetrics();
  m.appended("orders", 500, 40_000);
  m.appended("orders", 100, 8_000);
  m.sent("orders", 300, 24_000);
  m.replicated(600, 48_000);
  m.produceDone(0.01, "NOT_LEADER");
  m.fetchDone("consumer", 0.5);
  m.fetchDone("follower", 0.2);
  m.fencedPartitions++;
  const f = parsePromText(renderMetrics(m, GAUGES));
  assert.equal(sampleValue(f, "yak_records_in_total", { topic: "orders" }), 600);
  assert.equal(sampleValue(f, "yak_bytes_in_total", { topic: "orders" }), 48_000);
  assert.equal(sampleValue(f, "yak_records_out_total", { topic: "orders" }), 300);
  assert.equal(sampleValue(f, "yak_replication_bytes_out_total"), 48_000);
  assert.equal(sampleValue(f, "yak_produce_errors_total", { code: "NOT_LEADER" }), 1);
  assert.equal(sampleValue(f, "yak_fetch_requests_total", { kind: "consumer" }), 1);
  assert.equal(sampleValue(f, "yak_fetch_request_duration_seconds_count", { kind: "follower" }), 1);
  assert.equal(sampleValue(f, "yak_partitions_fenced_total"), 1);
  assert.equal(sampleValue(f, "yak_is_leader"), 1);
  assert.equal(sampleValue(f, "yak_leader_epoch"), 7);
  assert.equal(sampleValue(f, "yak_isr_size"), 2);
  assert.equal(sampleValue(f, "yak_under_replicated_partitions"), 3);
  assert.equal(sampleValue(f, "yak_high_watermark", { topic: "orders", partition: "0" }), 100);
  assert.equal(sampleValue(f, "yak_replica_lag_records", { topic: "orders", partition: "0", replica: "2" }), 20);
  assert.equal(sampleValue(f, "yak_group_lag_records", { group: "billing", topic: "orders", partition: "0" }), 40);
  assert.equal(sampleValue(f, "yak_process_resident_memory_bytes"), 1000);
  assert.deepEqual(m.traffic(), { recordsIn: 600, bytesIn: 48_000, recordsOut: 300, bytesOut: 24_000 });
});

Deno.test("a follower leaves out the leader-only series", () => {
  const f = parsePromText(
    renderMetrics(new BrokerMetrics(), { ...GAUGES, role: "follower", underReplicated: null, groupLag: null }),
  );
  assert.equal(sampleValue(f, "yak_is_leader"), 0);
  assert.equal(f.has("yak_under_replicated_partitions"), false);
  assert.equal(f.has("yak_replica_lag_records"), false);
  assert.equal(f.has("yak_group_lag_records"), false);
});

Deno.test("the reader refuses what Prometheus would refuse", () => {
  const bad = [
    "x_total 1\n", // no TYPE
    "# TYPE x counter\nx 1\n", // a counter without _total
    "# TYPE x_total counter\nx_total{a=1} 1\n", // unquoted label
    "# TYPE 1x gauge\n1x 1\n", // bad name
    "# TYPE x gauge\nx one\n", // bad value
    '# TYPE h_seconds histogram\nh_seconds_bucket{le="1"} 2\nh_seconds_bucket{le="+Inf"} 1\n' +
    "h_seconds_sum 1\nh_seconds_count 1\n", // not cumulative
  ];
  for (const text of bad) assert.throws(() => parsePromText(text), Error, text);
});
