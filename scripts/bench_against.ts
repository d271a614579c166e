/**
 * `deno task bench --against REV`: the same benchmark, this checkout against
 * another revision, run in alternation (REV, this, REV, this, ...) so drift in
 * the machine's load hits both alike. REV is checked out in a temporary git
 * worktree; both sides run this checkout's bench script, which starts the
 * cluster from the side's `main.ts` (`YAK_BENCH_MAIN`), so only the system
 * under test differs. Prints each figure's median per side and the ratio
 * (this / REV), with the load average of every run.
 *
 * @module
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = join(HERE, "..");
const BENCH = join(HERE, "bench.ts");
const BENCH_PERMS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-run", "--allow-sys"];

interface Row {
  figure: string;
  value: number;
  unit: string;
  load?: number;
}

interface SideRun {
  side: "rev" | "this";
  round: number;
  rows: Row[];
  load: number[];
}

async function git(args: string[], cwd = ROOT): Promise<string> {
  const out = await new Deno.Command("git", { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) throw new Error(`git ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  return new TextDecoder().decode(out.stdout).trim();
}

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** One bench run of one side, its report read back from `--out`. */
async function runSide(main: string, args: string[], side: SideRun["side"], round: number): Promise<SideRun> {
  const out = await Deno.makeTempFile({ prefix: `yak-bench-${side}-`, suffix: ".json" });
  try {
    console.error(`bench --against: round ${round}, ${side === "rev" ? "the other revision" : "this checkout"}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", ...BENCH_PERMS, BENCH, ...args, "--out", out],
      env: { YAK_BENCH_MAIN: main },
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    const status = await child.status;
    if (!status.success) throw new Error(`the bench of ${side} (round ${round}) exited ${status.code}`);
    const report = JSON.parse(await Deno.readTextFile(out));
    return { side, round, rows: report.table, load: report.loadAverage.after };
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return v.toLocaleString("en-US", { maximumFractionDigits: Math.abs(v) >= 100 ? 0 : 2 });
}

/** The table: each figure's median per side, the ratio, and the load average each run ended with. */
function compare(rev: string, runs: SideRun[]): string {
  const figures = runs[0].rows.map((r) => `${r.figure}|${r.unit}`);
  const cells = figures.map((key) => {
    const of = (side: SideRun["side"]) =>
      median(
        runs.filter((r) => r.side === side).map((r) => r.rows.find((x) => `${x.figure}|${x.unit}` === key)?.value)
          .filter((v): v is number => v !== undefined),
      );
    const a = of("rev");
    const b = of("this");
    const [figure, unit] = key.split("|");
    return [figure, unit, fmt(a), fmt(b), Number.isFinite(a) && a !== 0 ? (b / a).toFixed(2) : ""];
  });
  const head = ["figure", "unit", `${rev} (median)`, "this (median)", "this / rev"];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i >= 2 ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join("  ");
  const loads = runs.map((r) => `${r.side} ${r.round}: ${r.load.join(" ")}`).join("; ");
  return [
    line(head),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...cells.map(line),
    "",
    `load average (1, 5, 15 min) at the end of each run: ${loads}`,
  ].join("\n");
}

/**
 * Runs the bench `rounds` times on each side, alternating, and prints the
 * comparison. `args` are the bench's other flags, given to every run.
 */
export async function benchAgainst(rev: string, args: string[], rounds: number): Promise<number> {
  const sha = await git(["rev-parse", "--verify", `${rev}^{commit}`]);
  const tree = await Deno.makeTempDir({ prefix: `yak-bench-${sha.slice(0, 8)}-` });
  await git(["worktree", "add", "--detach", tree, sha]);
  try {
    const runs: SideRun[] = [];
    for (let round = 1; round <= rounds; round++) {
      runs.push(await runSide(join(tree, "main.ts"), args, "rev", round));
      runs.push(await runSide(join(ROOT, "main.ts"), args, "this", round));
    }
    console.log(compare(`${rev} (${sha.slice(0, 8)})`, runs));
    console.log(`command: deno task bench --against ${rev} --rounds ${rounds} ${args.join(" ")}`.trimEnd());
    return 0;
  } finally {
    await git(["worktree", "remove", "--force", tree]).catch((err) => console.error(`bench --against: ${err}`));
  }
}
