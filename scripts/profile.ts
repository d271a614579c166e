/**
 * `deno task profile`: where the CPU goes in an acks=all produce. Starts a
 * zookeeper and 3 brokers with V8's inspector on, starts V8's sampling
 * profiler in the brokers and in one `yak produce` (through the Chrome
 * DevTools protocol over the inspector's WebSocket), feeds the producer N
 * records, and prints for each process its CPU time per record (from
 * /proc/PID/stat) and the functions with the most self time. `--out DIR`
 * keeps each process's `.cpuprofile` (open it in Chrome DevTools or
 * speedscope for the flame graph). `--read kcat|yak` profiles the brokers
 * while a consumer reads the records back instead.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { findLeader } from "../src/client/discovery.ts";
import { MAIN, PERMS, Proc, readProc, TestCluster, yak } from "../tests/harness.ts";
import { Inspector } from "../tests/inspector.ts";

const USAGE = `deno task profile [--records 1000000] [--size 100] [--partitions 3] [--top 25] [--out DIR]
                  [--read kcat|yak | --transaction-records N | --write kcat | --rate R] [--warm N]
  --warm N  first produce N unprofiled runs of the records (acks=all, each into a topic of its
            own) in the same cluster: how the work changes over a cluster's life
  --write kcat
            profile the brokers while kcat -P writes the records (acks=all, linger.ms=5,
            batch.num.messages=10000: the bench's Kafka path) instead of yak produce
  --rate R  feed yak produce R records a second (--linger-ms 0, as the bench's latency run) with
            a yak consume reading them as they come, and profile both beside the brokers: the
            cost of each request at a steady rate rather than in a burst
  --transaction-records N
            profile a transactional produce (--transactional-id, a commit every N records)
  --read R  profile a read instead: the records are produced first (not profiled), then the
            brokers are profiled while R reads them all from the beginning (kcat -C -e, or
            yak consume --from-beginning --exit-at-end); R's own CPU is printed too`;

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Starts V8's sampling profiler in a process (every 200 us). */
async function startProfiler(ins: Inspector): Promise<void> {
  await ins.call("Profiler.enable");
  await ins.call("Profiler.setSamplingInterval", { interval: 200 });
  await ins.call("Profiler.start");
}

async function stopProfiler(ins: Inspector): Promise<CpuProfile> {
  return (await ins.call("Profiler.stop")).profile as unknown as CpuProfile;
}

/** CPU seconds (user + system) a process has used, from /proc/PID/stat. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readProc(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100/s)
}

/** Self time per function (name, file and line), largest first, as shares of the profile's samples. */
function selfTimes(p: CpuProfile): { share: number; name: string }[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const counts = new Map<string, number>();
  for (const id of p.samples) {
    const f = byId.get(id)!.callFrame;
    const file = f.url.replace(/^.*\/(src|main\.ts|ext:)/, "$1");
    const name = `${f.functionName || "(anonymous)"} ${file ? `${file}:${f.lineNumber + 1}` : ""}`.trim();
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => ({ name, share: n / p.samples.length })).sort((a, b) => b.share - a.share);
}

function printTop(profile: CpuProfile, top: number): void {
  for (const f of selfTimes(profile).slice(0, top)) {
    console.log(`  ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.name}`);
  }
}

function makeInput(n: number, size: number): Uint8Array {
  const line = new TextEncoder().encode("x".repeat(size - 10));
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`${String(i).padStart(9, "0")} ${new TextDecoder().decode(line)}`);
  return new TextEncoder().encode(out.join("\n") + "\n");
}

/** A reader's CPU time and, for `yak consume`, its profile. */
interface ReaderRun {
  cpu: number;
  profile: CpuProfile | null;
}

/**
 * Reads every record of `profiled` from the beginning with kcat, or with
 * `yak consume` under V8's profiler (started paused, so the profile covers
 * its whole run, and stopped once the last record is out); checks the count.
 */
async function readAll(read: "kcat" | "yak", cluster: TestCluster, records: number): Promise<ReaderRun> {
  const [cmd, args] = read === "kcat"
    ? ["kcat", ["-C", "-b", cluster.bootstrapServers, "-t", "profiled", "-o", "beginning", "-e", "-q"]]
    : [Deno.execPath(), [
      "run",
      "--inspect-wait=127.0.0.1:0",
      ...PERMS,
      MAIN,
      "consume",
      "--topic",
      "profiled",
      "--from-beginning",
      ...cluster.zkFlag,
    ]];
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).spawn();
  const stderrLines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let stderr = "";
  let ins: Inspector | null = null;
  try {
    if (read === "yak") {
      // The address is whole once a space or line break follows it.
      while (!/ws:\/\/\S+\s/.test(stderr)) {
        const { value, done } = await stderrLines.read();
        if (done) throw new Error(`yak consume exited before its inspector listened: ${stderr}`);
        stderr += value;
      }
      ins = await Inspector.connect(/ws:\/\/\S+/.exec(stderr)![0], "yak consume");
      await startProfiler(ins);
      await ins.call("Runtime.runIfWaitingForDebugger");
    }
    const rest = (async () => {
      for (let r = await stderrLines.read(); !r.done; r = await stderrLines.read()) stderr += r.value;
    })();
    let count = 0;
    let cpu = 0;
    let chunks = 0;
    const reader = child.stdout.getReader();
    while (count < records) {
      const { value: chunk, done } = await reader.read();
      if (done) break;
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) count++;
      // Sampled as it goes (kcat is gone once its output ends); the last good sample is its CPU.
      if (++chunks % 32 === 0 || count === records) {
        const now = await cpuSeconds(child.pid).catch(() => NaN);
        if (Number.isFinite(now)) cpu = now;
      }
    }
    const profile = ins ? await stopProfiler(ins) : null;
    // A process with an inspector session open waits for it to close before it exits.
    ins?.close();
    if (read === "yak") child.kill("SIGTERM");
    reader.releaseLock();
    await child.stdout.cancel();
    const status = await child.status;
    await rest;
    if ((read === "kcat" && status.code !== 0) || count !== records) {
      throw new Error(`${read} exited ${status.code} after ${count}/${records} records: ${stderr}`);
    }
    return { cpu, profile };
  } finally {
    ins?.close();
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

/** kcat -P with the bench's Kafka-path flags, fed `input`; throws if it fails. */
async function kcatWrite(cluster: TestCluster, input: Uint8Array): Promise<void> {
  const args = ["-P", "-b", cluster.bootstrapServers, "-t", "profiled", "-X", "acks=all", "-X", "linger.ms=5"];
  const kcat = new Deno.Command("kcat", {
    args: [...args, "-X", "batch.num.messages=10000"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = kcat.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const out = await kcat.output();
  if (!out.success) throw new Error(`kcat -P exited ${out.code}: ${new TextDecoder().decode(out.stderr)}`);
}

/** Writes `input`'s lines (`total` of them, all one length) at `rate` a second: whatever is due, every millisecond. */
async function feedAtRate(
  writer: WritableStreamDefaultWriter<Uint8Array>,
  input: Uint8Array,
  rate: number,
  total: number,
): Promise<void> {
  const lineBytes = input.length / total;
  const start = performance.now();
  let sent = 0;
  while (sent < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
    if (due > sent) {
      await writer.write(input.subarray(sent * lineBytes, due * lineBytes));
      sent = due;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}

/** One unprofiled `yak produce --acks all` of the input into a new topic (--warm). */
async function warmRun(cluster: TestCluster, topic: string, partitions: number, input: Uint8Array): Promise<void> {
  const created = await yak(["topics", "--create", topic, "--partitions", String(partitions), ...cluster.zkFlag]);
  if (created.code !== 0) throw new Error(created.stderr);
  const producer = new Proc("warm", ["produce", "--topic", topic, "--acks", "all", ...cluster.zkFlag], { stdin: true });
  try {
    const writer = producer.child.stdin.getWriter();
    await writer.write(input);
    await writer.close();
    await producer.waitFor(/ acknowledged to /, 600_000);
  } finally {
    producer.kill("SIGKILL");
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      records: { type: "string" },
      size: { type: "string" },
      partitions: { type: "string" },
      top: { type: "string" },
      out: { type: "string" },
      read: { type: "string" },
      "transaction-records": { type: "string" },
      write: { type: "string" },
      rate: { type: "string" },
      warm: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const records = Number(values.records ?? 1_000_000);
  const size = Number(values.size ?? 100);
  const partitions = Number(values.partitions ?? 3);
  const top = Number(values.top ?? 25);
  const read = values.read;
  const perTxn = values["transaction-records"];
  if (perTxn !== undefined && !(Number(perTxn) >= 1)) {
    console.error(`--transaction-records takes a positive count, not '${perTxn}'\n${USAGE}`);
    return 2;
  }
  const txnFlags = perTxn === undefined ? [] : ["--transactional-id", "profiled", "--transaction-records", perTxn];
  if (read !== undefined && read !== "kcat" && read !== "yak") {
    console.error(`--read takes kcat or yak, not '${read}'\n${USAGE}`);
    return 2;
  }
  const write = values.write;
  if (write !== undefined && (write !== "kcat" || read !== undefined || perTxn !== undefined)) {
    console.error(`--write takes kcat, and goes without --read and --transaction-records\n${USAGE}`);
    return 2;
  }
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  if (rate !== undefined && (!(rate >= 1) || read !== undefined || write !== undefined || perTxn !== undefined)) {
    console.error(`--rate takes records a second, and goes alone\n${USAGE}`);
    return 2;
  }
  const warm = Number(values.warm ?? 0);
  if (!(Number.isInteger(warm) && warm >= 0)) {
    console.error(`--warm takes a count of runs, not '${values.warm}'\n${USAGE}`);
    return 2;
  }
  const input = makeInput(records, size);
  const cluster = await TestCluster.start({ brokers: 3, partitions, brokerDenoFlags: ["--inspect=127.0.0.1:0"] });
  const inspectors: { name: string; pid: number; ins: Inspector }[] = [];
  const producers: Proc[] = [];
  try {
    const created = await yak([
      "topics",
      "--create",
      "profiled",
      "--partitions",
      String(partitions),
      ...cluster.zkFlag,
    ]);
    if (created.code !== 0) throw new Error(created.stderr);
    for (let run = 1; run <= warm; run++) await warmRun(cluster, `warm-${run}`, partitions, input);
    const leader = (await findLeader({ zookeeper: { host: "127.0.0.1", port: cluster.zkPort } })).id;
    for (const [id, proc] of cluster.brokers) {
      inspectors.push({
        name: `broker ${id}${id === leader ? " (leader)" : ""}`,
        pid: proc.pid,
        ins: await Inspector.of(proc),
      });
    }
    let before: number[];
    let started: number;
    if (write === "kcat") {
      before = await Promise.all(inspectors.map((i) => cpuSeconds(i.pid)));
      for (const i of inspectors) await startProfiler(i.ins);
      started = performance.now();
      await kcatWrite(cluster, input);
    } else {
      const linger = rate === undefined ? [] : ["--linger-ms", "0"];
      const args = ["produce", "--topic", "profiled", "--acks", "all", ...linger, ...txnFlags, ...cluster.zkFlag];
      const producer = new Proc("produce", args, {
        stdin: true,
        denoFlags: ["--inspect=127.0.0.1:0"],
      });
      producers.push(producer);
      if (read === undefined) {
        inspectors.push({ name: "yak produce", pid: producer.pid, ins: await Inspector.of(producer) });
      }
      if (rate !== undefined) {
        const consumer = new Proc("consume", [
          "consume",
          "--topic",
          "profiled",
          "--from-beginning",
          "--format",
          "value",
          "--max-messages",
          String(records),
          ...cluster.zkFlag,
        ], { denoFlags: ["--inspect=127.0.0.1:0"] });
        producers.push(consumer);
        inspectors.push({ name: "yak consume", pid: consumer.pid, ins: await Inspector.of(consumer) });
      }
      before = await Promise.all(inspectors.map((i) => cpuSeconds(i.pid)));
      if (read === undefined) { for (const i of inspectors) await startProfiler(i.ins); }
      started = performance.now();
      const writer = producer.child.stdin.getWriter();
      if (rate === undefined) await writer.write(input);
      else await feedAtRate(writer, input, rate, records);
      await writer.close();
      // The producer's profile is taken before it exits: wait for its summary line, then stop every profiler.
      await producer.waitFor(/ acknowledged to /, 600_000);
    }
    let seconds = (performance.now() - started) / 1000;
    let reader: ReaderRun | null = null;
    if (read !== undefined) {
      before = await Promise.all(inspectors.map((i) => cpuSeconds(i.pid)));
      for (const i of inspectors) await startProfiler(i.ins);
      started = performance.now();
      reader = await readAll(read, cluster, records);
      seconds = (performance.now() - started) / 1000;
    }
    const after = await Promise.all(inspectors.map((i) => cpuSeconds(i.pid)));
    const profiles = await Promise.all(inspectors.map((i) => stopProfiler(i.ins)));
    const what = read !== undefined
      ? `read back by ${read}`
      : write === "kcat"
      ? "acks=all, by kcat -P"
      : rate !== undefined
      ? `acks=all at ${rate} records/s, read as they come`
      : "acks=all";
    console.log(`${records} records of ${size} bytes, ${partitions} partitions, ${what}: ${seconds.toFixed(2)} s`);
    if (reader !== null) {
      console.log(
        `\n${read}: ${reader.cpu.toFixed(2)} s of CPU, ${(reader.cpu / records * 1e6).toFixed(2)} us per record`,
      );
      if (reader.profile) printTop(reader.profile, top);
    }
    for (const [k, i] of inspectors.entries()) {
      const cpu = after[k] - before[k];
      console.log(`\n${i.name}: ${cpu.toFixed(2)} s of CPU, ${(cpu / records * 1e6).toFixed(2)} us per record`);
      printTop(profiles[k], top);
      if (values.out) {
        await Deno.mkdir(values.out, { recursive: true });
        await Deno.writeTextFile(
          join(values.out, `${i.name.replace(/\W+/g, "-")}.cpuprofile`),
          JSON.stringify(profiles[k]),
        );
      }
    }
    return 0;
  } finally {
    for (const i of inspectors) i.ins.close();
    // A process under the inspector may linger after its work: end the producer, then the cluster.
    for (const p of producers) p.kill("SIGKILL");
    await cluster.stop();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (err) {
    console.error(`profile: ${err instanceof Error ? err.stack ?? err.message : err}`);
    Deno.exit(1);
  }
}
