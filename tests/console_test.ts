/**
 * The web console in a real browser (headless Chromium through
 * puppeteer-core) over a real cluster: three live brokers and the leader;
 * after `yak kill --leader`, the old leader dead and the new one within 2 s;
 * a group's lag after producing and consuming with a group. It saves a
 * screenshot taken during the failover to test-artifacts/console-failover.png
 * in the repository (git-ignored, for CI to collect; the path is printed; with
 * YAK_DOCS_SCREENSHOT=1 it also writes docs/console.png for the README).
 *
 * Skips, saying why, where Chromium is missing (`.ci/run` installs it).
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM, chromiumMissing, Proc, skipWithout, TestCluster, withDeadline, yak } from "./harness.ts";
import { printedUrl } from "./http_helpers.ts";

const SKIP = chromiumMissing();
if (SKIP) console.log(`tests/console_test.ts skipped: ${SKIP}`);

// The page's globals, as far as the checks below use them: they run in the browser, and this file is
// type-checked without the DOM library (with Deno's, like every other test).
interface PageElement {
  getAttribute(name: string): string | null;
  textContent: string | null;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
};

const DOCS_PNG = fileURLToPath(new URL("../docs/console.png", import.meta.url));
/** A fixed place a CI run can collect (test-artifacts/ is git-ignored). */
const FAILOVER_PNG = fileURLToPath(new URL("../test-artifacts/console-failover.png", import.meta.url));
/** The README's picture gets a minute of traffic in its charts; the test itself a few seconds. */
const FOR_DOCS = Deno.env.get("YAK_DOCS_SCREENSHOT") === "1";
const FAILOVER_LIMIT_MS = 2000;

Deno.test({
  name: "the console shows brokers and the leader live, a failover within 2 s, and a group's lag",
  ignore: skipWithout(SKIP),
  // Chromium's DevTools socket lives as long as the browser; it is closed in `finally`.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withDeadline(FOR_DOCS ? 240_000 : 150_000, "console browser test", async () => {
      // Test-only, pinned here rather than in deno.json: yak itself has no dependencies.
      // deno-lint-ignore no-import-prefix
      const { default: puppeteer } = await import("npm:puppeteer-core@25.16.0");
      const cluster = await TestCluster.start({
        zookeeperArgs: ["--http-port", "0"],
        brokerArgs: ["--http-port", "0"],
      });
      const procs: Proc[] = [];
      let browser: Awaited<ReturnType<typeof puppeteer.launch>> | null = null;
      let feeding: ReturnType<typeof setInterval> | undefined;
      try {
        const url = await printedUrl(cluster, "zookeeper");
        browser = await puppeteer.launch({
          executablePath: CHROMIUM,
          args: ["--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run"],
        });
        const page = await browser.newPage();
        await page.setViewport({ width: 1440, height: 900 });
        await page.goto(url, { waitUntil: "domcontentloaded" });

        // Three live brokers and the leader, as the lease says.
        await page.waitForFunction(
          () => document.querySelectorAll('.broker[data-state="alive"]').length === 3,
          { timeout: 15_000, polling: "mutation" },
        );
        const lease = await cluster.lease();
        const shownLeader = await page.$eval('.broker[data-leader="true"]', (e) => e.getAttribute("data-broker"));
        assert.equal(shownLeader, String(lease.leaderId));
        assert.equal(await page.$eval("#conn", (e) => e.getAttribute("data-state")), "live");

        // A group that read 2,000 of 5,000 records: its lag appears.
        const produced = await yak(["produce", "--topic", "orders", "--batch-records", "500", ...cluster.zkFlag], {
          stdin: Array.from({ length: 5000 }, (_, i) => `order-${i}`).join("\n") + "\n",
        });
        assert.equal(produced.code, 0, produced.stderr);
        const consumed = await yak(
          ["consume", "--topic", "orders", "--group", "billing", "--from-beginning", "--max-messages", "2000"].concat(
            cluster.zkFlag,
          ),
          { timeoutMs: 30_000 },
        );
        assert.equal(consumed.code, 0, consumed.stderr);
        await page.waitForFunction(
          () => document.querySelector('.group[data-group="billing"]')?.getAttribute("data-lag") === "3000",
          { timeout: 10_000, polling: "mutation" },
        );

        // Steady traffic for the charts: a producer fed 400 records every 100 ms, and a group member reading it.
        const producer = new Proc(
          "producer",
          ["produce", "--topic", "clicks", "--linger-ms", "20", ...cluster.zkFlag],
          {
            stdin: true,
          },
        );
        procs.push(producer);
        procs.push(new Proc("consumer", ["consume", "--topic", "clicks", "--group", "dashboard", ...cluster.zkFlag]));
        let fed = 0;
        feeding = setInterval(() => {
          if (fed++ >= 1200) return clearInterval(feeding); // bounded: at most two minutes of it
          producer.write(Array.from({ length: 400 }, (_, i) => `click-${fed}-${i}`).join("\n") + "\n").catch(() => {});
        }, 100);
        await page.waitForFunction(
          () => Number(document.querySelector("#chart-produce .chart-now")?.getAttribute("data-rate")) > 0,
          { timeout: 15_000, polling: "mutation" },
        );
        await page.waitForFunction(
          () => document.querySelector('.group[data-group="dashboard"] .g-state')?.textContent === "Stable",
          { timeout: 15_000, polling: "mutation" },
        );
        // Some history in the charts before the failover.
        await new Promise((r) => setTimeout(r, FOR_DOCS ? 60_000 : 5000));

        // Failover: `yak kill --leader` (SIGKILL, found through the zookeeper and the pid file); the page shows the
        // old leader dead and the new leader. The clock starts when the leader's process is gone (the command's own
        // start-up is not the console's doing).
        const old = lease.leaderId!;
        const leaderProc = cluster.brokers.get(old)!;
        const diedAt = leaderProc.child.status.then(() => performance.now());
        // Watching from before the kill: the page may show it while the command is still exiting.
        const shown = page.waitForFunction(
          (id: string) =>
            document.querySelector(`.broker[data-broker="${id}"]`)?.getAttribute("data-state") === "dead" &&
            !["", null, id].includes(
              document.querySelector('.broker[data-leader="true"]')?.getAttribute("data-broker") ?? "",
            ),
          { timeout: 20_000, polling: "mutation" },
          String(old),
        ).then(() => performance.now(), (err: unknown) => err instanceof Error ? err : new Error(String(err)));
        const killed = await yak(["kill", "--leader", ...cluster.zkFlag, "--data", cluster.dir]);
        assert.equal(killed.code, 0, killed.stderr);
        assert.match(killed.stdout, new RegExp(`^sent SIGKILL to broker ${old} \\(pid ${leaderProc.pid}\\b`, "m"));
        const killedAt = await diedAt;
        const shownAt = await shown;
        if (shownAt instanceof Error) throw shownAt;
        const shownAfterMs = Math.round(shownAt - killedAt);
        const newLeader = await page.$eval('.broker[data-leader="true"]', (e) => e.getAttribute("data-broker"));
        console.log(
          `leader ${old} killed; the page showed it dead and broker ${newLeader} leading after ${shownAfterMs} ms`,
        );
        assert.ok(shownAfterMs <= FAILOVER_LIMIT_MS, `the failover showed after ${shownAfterMs} ms`);
        assert.equal(newLeader, String((await cluster.lease()).leaderId));
        // The timeline tells it, newest first: the election above the death.
        await page.waitForFunction(
          () => {
            const events = [...document.querySelectorAll("#timeline li")].map((li) => li.getAttribute("data-event"));
            const elected = events.indexOf("leader_elected");
            return elected !== -1 && elected < events.indexOf("broker_dead");
          },
          { timeout: 5000, polling: "mutation" },
        );

        // The screenshot, once the dead replica shows as down and the rates went on at the new leader.
        await new Promise((r) => setTimeout(r, 2500));
        await Deno.mkdir(dirname(FAILOVER_PNG), { recursive: true });
        await page.screenshot({ path: FAILOVER_PNG, fullPage: true });
        console.log(`console screenshot (during a failover): ${FAILOVER_PNG}`);
        if (FOR_DOCS) {
          await Deno.copyFile(FAILOVER_PNG, DOCS_PNG);
          console.log(`also written to ${DOCS_PNG}`);
        }
      } finally {
        clearInterval(feeding);
        await browser?.close().catch(() => {});
        for (const p of procs) await p.stop(2000);
        await cluster.stop();
      }
    }),
});
