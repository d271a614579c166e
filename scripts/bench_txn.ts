/**
 * `deno task bench --txn`: transactional produce against plain produce on a
 * real zookeeper and 3 brokers (issue 22). Each round runs `yak produce
 * --acks all` and `yak produce --transactional-id ID --transaction-records
 * N` on the same `--records` lines, each into a topic of its own, the plain
 * one first in odd rounds and second in even ones, and deletes both topics
 * after the round (the last transactional one is kept to be read back).
 * Why: each run leaves 300 MB of dirty pages across the replicas; once the
 * kernel writes them back (here past ~2 GB, the 10% background ratio) every
 * later run slows, plain 599k -> 388k records/s by the fourth round, so
 * the kind always run second was measured on a slower machine. Figures:
 * each kind's rate (the producer's own, from its summary:
 * start-up left out), and the ratio txn/plain of every round, whose median
 * issue 22 asks to be at least 0.8. The last transactional topic is read
 * back with read_committed: every record, once.
 *
 * @module
 */
import { readProc, TestCluster, yak } from "../tests/harness.ts";

/** What the transactions bench needs of the bench's settings. */
export interface TxnBenchSettings {
  records: number;
  size: number;
  partitions: number;
  /** Records per transaction (`--transaction-records`). */
  transactionRecords: number;
  /** Rounds of one plain and one transactional run. */
  rounds: number;
}

/** One row of the bench's table. */
export interface TxnRow {
  figure: string;
  value: number;
  unit: string;
  target: string;
  met?: boolean;
}

/** `n` lines of `size` bytes: a zero-padded number, then filler. */
function lines(n: number, size: number): Uint8Array {
  const pad = "x".repeat(size);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const head = String(i).padStart(9, "0");
    parts.push(`${head} ${pad.slice(head.length + 1)}\n`);
  }
  return new TextEncoder().encode(parts.join(""));
}

/** The producer's own rate from its summary (`... in 1.23 s`). */
function producerRate(stderr: string, records: number): number {
  const m = / in ([\d.]+) s/.exec(stderr);
  if (!m) throw new Error(`no rate in yak produce's summary: ${stderr}`);
  return records / Number(m[1]);
}

async function ok(args: string[], stdin?: Uint8Array): Promise<string> {
  const res = await yak(args, { stdin, timeoutMs: 600_000 });
  if (res.code !== 0) throw new Error(`yak ${args.join(" ")} exited ${res.code}: ${res.stderr}`);
  return res.stderr;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/**
 * Runs the rounds and returns the table's rows and notes (each run's figure
 * and the machine's load then).
 *
 * @example
 * ```ts ignore
 * const { rows } = await txnBench({ records: 1e6, size: 100, partitions: 3, transactionRecords: 10_000, rounds: 3 }, console.error, () => {});
 * ```
 */
export async function txnBench(
  s: TxnBenchSettings,
  log: (msg: string) => void,
  started: (cluster: TestCluster) => void,
): Promise<{ rows: TxnRow[]; notes: string[] }> {
  const cluster = await TestCluster.start({ brokers: 3, partitions: s.partitions });
  started(cluster);
  const z = cluster.zkFlag;
  log(`generating ${s.records} lines of ${s.size} bytes`);
  const input = lines(s.records, s.size);
  const plain: number[] = [];
  const txn: number[] = [];
  const ratios: number[] = [];
  const notes: string[] = [];
  for (let round = 1; round <= s.rounds; round++) {
    const kinds = round % 2 === 1 ? ["plain", "txn"] as const : ["txn", "plain"] as const;
    for (const kind of kinds) {
      const topic = `bench-${kind}-${round}`;
      await ok(["topics", "--create", topic, "--partitions", String(s.partitions), ...z]);
      const flags = kind === "plain"
        ? ["--acks", "all"]
        : ["--transactional-id", `bench-${round}`, "--transaction-records", String(s.transactionRecords)];
      const rate = producerRate(await ok(["produce", "--topic", topic, ...flags, ...z], input), s.records);
      (kind === "plain" ? plain : txn).push(rate);
      const load = (await readProc("/proc/loadavg")).split(" ")[0] || "?";
      const line = `round ${round}: ${kind}: ${rate.toFixed(0)} records/s (load ${load})`;
      log(line);
      notes.push(line);
    }
    ratios.push(txn[round - 1] / plain[round - 1]);
    notes.push(`round ${round}: txn/plain ${(ratios[round - 1] * 100).toFixed(0)}%`);
    for (const kind of kinds) {
      if (kind === "txn" && round === s.rounds) continue;
      await ok(["topics", "--delete", `bench-${kind}-${round}`, ...z]);
    }
  }
  const last = `bench-txn-${s.rounds}`;
  const read = await yak(["consume", "--topic", last, "--from-beginning", "--exit-at-end", ...z], {
    timeoutMs: 600_000,
  });
  const seen = read.stdout.split("\n").filter((l) => l !== "");
  const distinct = new Set(seen).size;
  if (read.code !== 0 || seen.length !== s.records || distinct !== s.records) {
    throw new Error(`read_committed read ${seen.length} lines (${distinct} distinct) of ${s.records} from ${last}`);
  }
  notes.push(`${last} read back with read_committed: ${seen.length} records, each once`);
  const per = `${s.transactionRecords} records per transaction`;
  return {
    rows: [
      { figure: "produce acks=all, plain (median)", value: median(plain), unit: "records/s", target: "" },
      { figure: `produce, transactional, ${per} (median)`, value: median(txn), unit: "records/s", target: "" },
      {
        figure: "transactional / plain (median of rounds)",
        value: median(ratios) * 100,
        unit: "%",
        target: ">= 80",
        met: median(ratios) >= 0.8,
      },
    ],
    notes,
  };
}
