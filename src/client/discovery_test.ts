import assert from "node:assert/strict";
import { monotonicMs } from "../clock.ts";
import { YakError } from "../errors.ts";
import { type FirstContact, giveUp, retryUntil } from "./discovery.ts";

const refused = () =>
  Promise.reject(new YakError("CONNECTION", "cannot connect to x (connection refused)", { refused: true }));
const silent = () => Promise.reject(new YakError("CONNECTION", "cannot connect to x (no answer in 500 ms)"));
const noLeader = () => Promise.reject(new YakError("NO_LEADER", "the zookeeper names no leader right now"));

/** How long retryUntil took to give up, and what it said. */
async function gaveUpAfter(
  fn: () => Promise<unknown>,
  first: FirstContact | undefined,
  deadlineMs: number,
): Promise<{ ms: number; message: string; retries: number }> {
  const started = monotonicMs();
  let retries = 0;
  try {
    await retryUntil(started + deadlineMs, fn, () => retries++, first);
  } catch (err) {
    return { ms: monotonicMs() - started, message: (err as Error).message, retries };
  }
  throw new Error("retryUntil succeeded");
}

Deno.test("a first contact refused everywhere gives up after the grace, without a retry notice", async () => {
  const r = await gaveUpAfter(refused, { graceMs: 300, reached: false }, 5000);
  assert.ok(r.ms < 1000, `${r.ms} ms`);
  assert.match(r.message, /connection refused\); is the cluster running\?/);
  assert.equal(r.retries, 0);
});

Deno.test("silence, no leader yet, no first-contact policy: the deadline stands", async () => {
  for (
    const [fn, first] of [[silent, { graceMs: 100, reached: false }], [noLeader, { graceMs: 100, reached: false }], [
      refused,
      undefined,
    ]] as const
  ) {
    const r = await gaveUpAfter(fn, first, 600);
    assert.ok(r.ms >= 300, `${r.message}: gave up after ${r.ms} ms`);
  }
});

Deno.test("refusals after the cluster was reached, or while a cluster is starting, keep the deadline", async () => {
  const reached: FirstContact = { graceMs: 100, reached: false };
  await retryUntil(monotonicMs() + 1000, () => Promise.resolve(1), undefined, reached);
  assert.equal(reached.reached, true);
  assert.ok((await gaveUpAfter(refused, reached, 600)).ms >= 300, "a cluster restarting under a running client");
  let asked = 0;
  const starting: FirstContact = { graceMs: 100, reached: false, starting: () => Promise.resolve(++asked > 0) };
  const r = await gaveUpAfter(refused, starting, 600);
  assert.ok(r.ms >= 300, `a starting cluster: ${r.ms} ms`);
  assert.equal(asked, 1, "asked once whether a cluster is starting");
  assert.ok(r.retries > 0, "retrying is said once the wait is for a starting cluster");
});

Deno.test("giving up: how long it tried goes into the error's one parenthesis, then the advice, naming --zookeeper", () => {
  const timeout = new YakError("TIMEOUT", "the zookeeper at 127.0.0.1:2181 does not answer (nothing within 1500 ms)");
  // Before: '(nothing within 1500 ms) (tried for 2 s)'.
  assert.match(
    giveUp(timeout, 2000).message,
    /^the zookeeper at 127\.0\.0\.1:2181 does not answer \(nothing within 1500 ms; tried for 2 s\); is the cluster running\? .*--zookeeper HOST:PORT \(or \$YAK_ZOOKEEPER\)$/,
  );
  assert.match(giveUp(new YakError("CONNECTION", "lost"), 3000).message, /^lost \(tried for 3 s\); /);
  assert.match(giveUp(new YakError("CONNECTION", "lost"), 10).message, /^lost; /);
});
