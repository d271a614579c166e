/**
 * `deno task bench --cleaner`: log compaction's figures on a real zookeeper
 * and 3 brokers (issue 23). A compacted topic is filled with `--records`
 * updates to `records / 100` keys while its cleaner is held back
 * (min.compaction.lag.ms), then let go at the moment a producer starts
 * writing `--records` records to another topic with acks=all. Figures: the
 * leader's cleaner in MB/s (bytes read and written over the pass's time),
 * the partition's size before and after, and the producer's rate while the
 * cleaner runs against its rate on an idle cluster (issue 23 asks for 80%).
 * `--cleaner-io-bytes-per-sec N` sets the brokers' cleaner pace (default the
 * broker's, 32 MiB/s; 0 measures it unpaced).
 *
 * @module
 */
import { join } from "node:path";
import { TestCluster, yak } from "../tests/harness.ts";

const MB = 1_000_000;

/** What the cleaner bench needs of the bench's settings. */
export interface CleanerBenchSettings {
  records: number;
  size: number;
  partitions: number;
  /** The brokers' --cleaner-io-bytes-per-sec, or undefined for their default. */
  cleanerIoBytesPerSec?: number;
}

/** One row of the bench's table. */
export interface CleanerRow {
  figure: string;
  value: number;
  unit: string;
  target: string;
}

async function ok(
  args: string[],
  stdin?: string | Uint8Array,
  timeoutMs = 600_000,
): Promise<{ stderr: string; ms: number }> {
  const started = performance.now();
  const res = await yak(args, { stdin, timeoutMs });
  if (res.code !== 0) throw new Error(`yak ${args.join(" ")} exited ${res.code}: ${res.stderr}`);
  return { stderr: res.stderr, ms: performance.now() - started };
}

/** Lines `k<i mod keys>:<value>` of `size` bytes of value each, for `yak produce --key-separator :`. */
function keyedInput(n: number, keys: number, size: number): Uint8Array {
  const pad = "x".repeat(size);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`k${i % keys}:${i}-${pad.slice(String(i).length + 1)}\n`);
  return new TextEncoder().encode(parts.join(""));
}

function plainInput(n: number, size: number): Uint8Array {
  const pad = "y".repeat(size);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`${i}-${pad.slice(String(i).length + 1)}\n`);
  return new TextEncoder().encode(parts.join(""));
}

/** The producer's own rate from its summary (`... in 1.23 s`), start-up left out. */
function producerRate(stderr: string, records: number): number {
  const m = / in ([\d.]+) s/.exec(stderr);
  return m ? records / Number(m[1]) : NaN;
}

interface Cleaned {
  /** Wall-clock ms the pass started and ended on that broker. */
  start: number;
  end: number;
  ms: number;
  bytesRead: number;
  bytesWritten: number;
  bytesBefore: number;
  bytesAfter: number;
}

/** The `log_cleaned` entries of a partition in a broker's operation log. */
async function cleanings(cluster: TestCluster, id: number, partition: string): Promise<Cleaned[]> {
  const text = await Deno.readTextFile(join(cluster.dir, `broker-${id}`, "broker.log"));
  return text.split("\n").filter((l) => l.includes('"log_cleaned"') && l.includes(partition)).map((l) => {
    const e = JSON.parse(l);
    const end = Date.parse(e.ts);
    return { start: end - e.ms, end, ...e };
  });
}

/**
 * Runs the cleaner bench and returns its rows and notes; `log` says what it
 * does. The cluster is the caller's to stop (it is returned through `started`
 * as soon as it runs, so a signal can stop it).
 */
export async function cleanerBench(
  s: CleanerBenchSettings,
  log: (msg: string) => void,
  started: (cluster: TestCluster) => void,
): Promise<{ rows: CleanerRow[]; notes: string[] }> {
  const io = s.cleanerIoBytesPerSec === undefined ? [] : ["--cleaner-io-bytes-per-sec", String(s.cleanerIoBytesPerSec)];
  const cluster = await TestCluster.start({
    brokers: 3,
    partitions: s.partitions,
    brokerArgs: ["--cleaner-check-ms", "200", ...io],
  });
  started(cluster);
  const z = cluster.zkFlag;
  const keys = Math.max(1, Math.floor(s.records / 100));
  log(`baseline: ${s.records} records, acks=all, idle cluster`);
  await ok(["topics", "--create", "idle", "--partitions", String(s.partitions), ...z]);
  const plain = plainInput(s.records, s.size);
  const idle = producerRate((await ok(["produce", "--topic", "idle", ...z], plain)).stderr, s.records);
  log(`filling the compacted topic: ${s.records} updates to ${keys} keys, cleaner held back`);
  await ok([
    "topics",
    "--create",
    "cmp",
    "--partitions",
    "1",
    "--config",
    "cleanup.policy=compact",
    "--config",
    "min.compaction.lag.ms=100000000000",
    "--config",
    "segment.ms=1000",
    ...z,
  ]);
  await ok(["produce", "--topic", "cmp", "--key-separator", ":", ...z], keyedInput(s.records, keys, s.size));
  await new Promise((r) => setTimeout(r, 1100)); // segment.ms: the next record rolls the active segment
  await ok(["produce", "--topic", "cmp", "--key", "roll", "--message", "r", ...z]);
  const leader = (await cluster.lease()).leaderId!;
  const before = await cleanings(cluster, leader, "cmp/0");
  log(`letting the cleaner go, and producing ${s.records} records to another topic at once`);
  await ok(["topics", "--create", "busy", "--partitions", String(s.partitions), ...z]);
  await ok(["topics", "--alter", "cmp", "--config", "min.compaction.lag.ms=0", ...z]);
  const produceStart = Date.now();
  const busy = producerRate((await ok(["produce", "--topic", "busy", ...z], plain)).stderr, s.records);
  const produceEnd = Date.now();
  let pass: Cleaned | undefined;
  for (const deadline = Date.now() + 600_000; !pass && Date.now() < deadline;) {
    pass = (await cleanings(cluster, leader, "cmp/0")).slice(before.length).find((c) => c.bytesBefore > 0);
    if (!pass) await new Promise((r) => setTimeout(r, 200));
  }
  if (!pass) throw new Error("the leader did not clean the compacted topic within 10 minutes");
  const overlapMs = Math.max(0, Math.min(produceEnd, pass.end) - Math.max(produceStart, pass.start));
  const mbps = (bytes: number) => bytes / MB / (pass!.ms / 1000);
  const rows: CleanerRow[] = [
    {
      figure: "cleaner, bytes read and written (leader)",
      value: mbps(pass.bytesRead + pass.bytesWritten),
      unit: "MB/s",
      target: "",
    },
    { figure: "cleaner, bytes read (leader)", value: mbps(pass.bytesRead), unit: "MB/s", target: "" },
    { figure: "compacted partition before", value: pass.bytesBefore / MB, unit: "MB", target: "" },
    { figure: "compacted partition after", value: pass.bytesAfter / MB, unit: "MB", target: "" },
    { figure: "produce acks=all, idle cluster (producer's summary)", value: idle, unit: "records/s", target: "" },
    { figure: "produce acks=all while the cleaner runs", value: busy, unit: "records/s", target: "" },
    { figure: "  as a share of the idle cluster's", value: 100 * busy / idle, unit: "%", target: ">= 80" },
  ];
  const notes = [
    `the leader's pass took ${(pass.ms / 1000).toFixed(2)} s and overlapped the busy producer's ` +
    `${((produceEnd - produceStart) / 1000).toFixed(2)} s run for ${(overlapMs / 1000).toFixed(2)} s; ` +
    `cleaner pace ${s.cleanerIoBytesPerSec ?? "the broker default"} bytes/s (--cleaner-io-bytes-per-sec).`,
  ];
  return { rows, notes };
}
