/**
 * `deno task soak`: load with failures. A zookeeper and 3 brokers; producers
 * streaming for a fixed time; consumer groups reading throughout; the leader
 * killed (and restarted) at random moments. At the end every acknowledged
 * record must have been read exactly once by every group, in order per
 * producer within each partition, and broker memory must have stayed bounded.
 *
 * deno task soak [--seconds 60] [--producers 20] [--groups 5] [--kills 3] [--rate 2000]
 *                [--retention-bytes N] [--out FILE]
 *
 * With --retention-bytes the topic keeps about N bytes per partition
 * (segments of N/4) and the run reports each broker's peak disk use; a group
 * that falls behind loses what retention deleted before it read it (it says
 * so and resets to the log start), so it is judged by reaching the end in
 * order without duplicates, and its missing count is what retention took.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { memoryOf, Proc, TestCluster, yak } from "../tests/harness.ts";

/** What a soak run saw. */
export interface SoakResult {
  seconds: number;
  producers: number;
  acknowledged: number;
  groups: {
    group: string;
    read: number;
    duplicates: number;
    missing: number;
    outOfOrder: number;
    /** With retention: whether the group read each producer's last record (it kept up to the end). */
    reachedEnd?: boolean;
  }[];
  kills: number;
  epochs: number;
  peakRssMb: Record<string, number>;
  /** Each broker's largest `topics/` directory seen (sampled every second), with retention on. */
  peakDiskMb?: Record<string, number>;
  ok: boolean;
}

/** Options of {@link soak}. */
export interface SoakOptions {
  seconds: number;
  producers: number;
  groups: number;
  kills: number;
  /** Records per second per producer. */
  rate: number;
  /** Retention by size per partition (bytes), or undefined for none. */
  retentionBytes?: number;
  log?: (line: string) => void;
}

async function peakRssMb(pid: number): Promise<number> {
  const bytes = await memoryOf(pid, "VmHWM");
  return bytes === null ? NaN : Math.round(bytes / 1024 / 1024);
}

/**
 * Runs one soak and checks the outcome.
 *
 * @example
 * ```ts ignore
 * const result = await soak({ seconds: 10, producers: 4, groups: 2, kills: 1, rate: 1000 });
 * ```
 */
export async function soak(o: SoakOptions): Promise<SoakResult> {
  const log = o.log ?? (() => {});
  const cluster = await TestCluster.start(
    o.retentionBytes === undefined ? {} : { brokerArgs: ["--retention-check-ms", "500"] },
  );
  const peaks: Record<string, number> = {};
  const disk: Record<string, number> = {};
  const dirBytes = async (dir: string): Promise<number> => {
    let total = 0;
    try {
      for await (const e of Deno.readDir(dir)) {
        const path = `${dir}/${e.name}`;
        total += e.isDirectory ? await dirBytes(path) : (await Deno.stat(path).catch(() => ({ size: 0 }))).size;
      }
    } catch { /* deleted while we walked */ }
    return total;
  };
  const diskTimer = o.retentionBytes === undefined ? undefined : setInterval(async () => {
    for (const id of cluster.brokers.keys()) {
      const mb = (await dirBytes(cluster.topicsDir(id))) / 1024 / 1024;
      disk[`broker-${id}`] = Math.max(disk[`broker-${id}`] ?? 0, Math.round(mb * 10) / 10);
    }
  }, 1000);
  const notePeaks = async () => {
    for (const [id, p] of cluster.brokers) {
      const mb = await peakRssMb(p.pid);
      if (!Number.isNaN(mb)) peaks[`broker-${id}`] = Math.max(peaks[`broker-${id}`] ?? 0, mb);
    }
  };
  try {
    const topic = "soak";
    const retention = o.retentionBytes === undefined ? [] : [
      "--config",
      `retention.bytes=${o.retentionBytes}`,
      "--config",
      `segment.bytes=${Math.max(1024, Math.floor(o.retentionBytes / 4))}`,
    ];
    const created = await yak(["topics", "--create", topic, "--partitions", "3", ...retention, ...cluster.zkFlag]);
    if (created.code !== 0) throw new Error(created.stderr);
    const consumers = Array.from({ length: o.groups }, (_, g) =>
      new Proc(`group-${g}`, [
        "consume",
        "--topic",
        topic,
        "--group",
        `g${g}`,
        "--from-beginning",
        "--format",
        "json",
        "--quiet",
        ...cluster.zkFlag,
      ]));
    const producers = Array.from(
      { length: o.producers },
      (_, i) => new Proc(`producer-${i}`, ["produce", "--topic", topic, "--quiet", ...cluster.zkFlag], { stdin: true }),
    );
    const sent = new Array(o.producers).fill(0);
    const started = Date.now();
    const endAt = started + o.seconds * 1000;
    const killTimes = Array.from({ length: o.kills }, () => started + (0.15 + 0.7 * Math.random()) * o.seconds * 1000)
      .sort((a, b) => a - b);
    let kills = 0;
    const epochStart = (await cluster.lease()).epoch;
    // Producers write `p<i>-<n>` lines at the rate; keys spread them over partitions by producer.
    const feeding = producers.map(async (p, i) => {
      const perTickMs = 100;
      const perTick = Math.max(1, Math.round(o.rate * perTickMs / 1000));
      while (Date.now() < endAt) {
        let text = "";
        for (let k = 0; k < perTick; k++) text += `p${i}-${++sent[i]}\n`;
        await p.write(text);
        await new Promise((r) => setTimeout(r, perTickMs));
      }
      await p.closeStdin();
    });
    const killing = (async () => {
      for (const at of killTimes) {
        await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
        await notePeaks();
        const lease = await cluster.waitFor((l) => l.leaderId !== null && l.isr.length === 3, 30_000);
        const victim = lease.leaderId!;
        cluster.brokers.get(victim)!.kill("SIGKILL");
        kills++;
        log(`killed leader ${victim} (epoch ${lease.epoch}) at ${((Date.now() - started) / 1000).toFixed(1)} s`);
        await cluster.brokers.get(victim)!.status;
        await cluster.waitFor((l) => l.epoch > lease.epoch && l.leaderId !== null, 30_000);
        await cluster.startBroker(victim);
      }
    })();
    await Promise.all([...feeding, killing]);
    const statuses = await Promise.all(producers.map((p) => p.status));
    const acknowledged = statuses.every((s) => s.code === 0) ? sent.reduce((a, b) => a + b, 0) : -1;
    statuses.forEach((s, i) => {
      if (s.code !== 0) log(`producer ${i} failed:\n${producers[i].lines.slice(-5).join("\n")}`);
    });
    log(`producers done: ${acknowledged} records acknowledged`);
    // Wait for every group to have read everything, then stop them.
    const deadline = Date.now() + 60_000;
    const count = (c: Proc) => c.lines.filter((l) => l.startsWith("{")).length;
    while (Date.now() < deadline && consumers.some((c) => count(c) < acknowledged)) {
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 500)); // room for duplicates to show, if any
    for (const c of consumers) c.kill("SIGTERM");
    await Promise.all(consumers.map((c) => c.status));
    for (const c of consumers) {
      const said = c.lines.filter((l) => !l.startsWith("{"));
      if (count(c) < acknowledged && said.length > 0) log(`${c.name} said:\n  ${said.slice(-8).join("\n  ")}`);
    }
    await notePeaks();
    const groups = consumers.map((c, g) => {
      const seen = new Set<string>();
      let duplicates = 0;
      let outOfOrder = 0;
      const last = new Map<string, number>();
      for (const line of c.lines) {
        if (!line.startsWith("{")) continue;
        const r = JSON.parse(line);
        if (seen.has(r.value)) duplicates++;
        seen.add(r.value);
        const [p, n] = r.value.split("-");
        const k = `${r.partition}/${p}`;
        if ((last.get(k) ?? 0) > Number(n)) outOfOrder++;
        last.set(k, Number(n));
      }
      let missing = 0;
      sent.forEach((n, i) => {
        for (let k = 1; k <= n; k++) if (!seen.has(`p${i}-${k}`)) missing++;
      });
      const reachedEnd = sent.every((n, i) => n === 0 || seen.has(`p${i}-${n}`));
      return {
        group: `g${g}`,
        read: seen.size,
        duplicates,
        missing,
        outOfOrder,
        ...(o.retentionBytes === undefined ? {} : { reachedEnd }),
      };
    });
    const epochs = (await cluster.lease()).epoch - epochStart;
    // With retention, a group that falls behind loses what was deleted before it read it, and says so
    // (consumers reset to the log start): then it must still reach the end, in order, without duplicates.
    const ok = acknowledged >= 0 &&
      groups.every((g) =>
        g.duplicates === 0 && g.outOfOrder === 0 && (o.retentionBytes === undefined ? g.missing === 0 : g.reachedEnd)
      );
    return {
      seconds: o.seconds,
      producers: o.producers,
      acknowledged,
      groups,
      kills,
      epochs,
      peakRssMb: peaks,
      ...(o.retentionBytes === undefined ? {} : { peakDiskMb: disk }),
      ok,
    };
  } finally {
    clearInterval(diskTimer);
    await cluster.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "60" },
      producers: { type: "string", default: "20" },
      groups: { type: "string", default: "5" },
      kills: { type: "string", default: "3" },
      rate: { type: "string", default: "2000" },
      "retention-bytes": { type: "string" },
      out: { type: "string" },
    },
  });
  const result = await soak({
    seconds: Number(values.seconds),
    producers: Number(values.producers),
    groups: Number(values.groups),
    kills: Number(values.kills),
    rate: Number(values.rate),
    retentionBytes: values["retention-bytes"] === undefined ? undefined : Number(values["retention-bytes"]),
    log: (line) => console.log(line),
  });
  console.log(JSON.stringify(result, null, 2));
  if (values.out) await Deno.writeTextFile(values.out, JSON.stringify(result, null, 2) + "\n");
  console.log(result.ok ? "soak: OK" : "soak: FAILED");
  Deno.exit(result.ok ? 0 : 1);
}
