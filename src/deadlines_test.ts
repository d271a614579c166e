import assert from "node:assert/strict";
import { monotonicMs } from "./clock.ts";
import { Deadlines } from "./deadlines.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Each expiry with when it came (ms after `start`), and a way to await one by
 * its key: the checks follow the expiries themselves, not sleeps that a busy
 * machine can overrun (a sleep of 25 ms next to a deadline at 30 failed one
 * run in twenty beside eight CPU hogs).
 */
class Expiries {
  readonly start = monotonicMs();
  readonly list: [string, number][] = [];
  readonly #awaited = new Map<string, () => void>();

  readonly record = (key: string): void => {
    this.list.push([key, monotonicMs() - this.start]);
    this.#awaited.get(key)?.();
  };

  /** Resolves when `key` expires (ask before it can). */
  of(key: string): Promise<void> {
    return new Promise((resolve) => this.#awaited.set(key, resolve));
  }

  get keys(): string[] {
    return this.list.map(([k]) => k);
  }
}

Deno.test("Deadlines expires each key at its deadline, not before, and never one deleted or taken first", async () => {
  const ex = new Expiries();
  const start = ex.start;
  const d = new Deadlines<string>(ex.record);
  const early = ex.of("early");
  d.add("late", start + 800);
  d.add("early", start + 20); // earlier than the armed timer: armed again for it
  d.add("answered", start + 10);
  d.add("drained", start + 400);
  assert.equal(d.delete("answered"), true);
  assert.equal(d.delete("answered"), false);
  d.add("again", start + 2000);
  d.add("again", start + 500); // added again: only the new deadline counts
  await early;
  // "answered" was due before "early": deleted, it never expired.
  assert.deepEqual(ex.keys, ["early"]);
  assert.deepEqual(d.takeAll().sort(), ["again", "drained", "late"]);
  const last = ex.of("last");
  const lastAdded = monotonicMs() - start;
  d.add("last", start + lastAdded + 30);
  await last;
  await sleep(50); // nothing taken expires later either
  assert.deepEqual(ex.keys, ["early", "last"]);
  assert.ok(ex.list[0][1] >= 20, `early expired at ${ex.list[0][1]} ms`);
  assert.ok(ex.list[1][1] >= lastAdded + 30, `last expired at ${ex.list[1][1]} ms, added at ${lastAdded}`);
  assert.equal(d.size, 0);
  d.close();
});

Deno.test("Deadlines keeps the process alive while a key waits (a wait that only its deadline ends completes)", async () => {
  // Nothing else holds the event loop here: were the timer unref'd while "only" waits, Deno would end the test
  // with this promise pending.
  const ended = await new Promise<string>((resolve) => {
    const d = new Deadlines<string>((key) => resolve(key));
    d.add("other", monotonicMs() + 5);
    d.delete("other"); // none waits: the timer is let go of...
    d.add("only", monotonicMs() + 30); // ...and held again
  });
  assert.equal(ended, "only");
});

Deno.test("Deadlines: a key added by an expiry callback is expired in its turn; close stops everything", async () => {
  const ex = new Expiries();
  const d = new Deadlines<string>((key) => {
    ex.record(key);
    if (key === "first") d.add("chained", monotonicMs() + 10);
  });
  const chained = ex.of("chained");
  d.add("first", monotonicMs() + 10);
  await chained;
  assert.deepEqual(ex.keys, ["first", "chained"]);
  d.add("closed", monotonicMs() + 10);
  d.close();
  await sleep(30);
  assert.deepEqual(ex.keys, ["first", "chained"]);
});

Deno.test("Deadlines: a callback that deletes, re-adds or closes keys due in the same firing is obeyed", async () => {
  const ex = new Expiries();
  const start = ex.start;
  let deleted: boolean | null = null;
  let eAdded = 0;
  const d = new Deadlines<string>((key) => {
    ex.record(key);
    if (key === "a") deleted = d.delete("b"); // b is due in this firing too: it must not expire now
    if (key === "c") {
      // e is due in this firing: only its new deadline counts
      eAdded = monotonicMs() - start;
      d.add("e", start + eAdded + 50);
    }
    if (key === "f") d.close();
  });
  const c = ex.of("c");
  const e = ex.of("e");
  d.add("a", start + 10);
  d.add("b", start + 10);
  d.add("c", start + 10);
  d.add("e", start + 10);
  await c; // right after the firing that expired a and c
  assert.equal(deleted, true);
  assert.deepEqual(ex.keys, ["a", "c"]);
  await e;
  assert.deepEqual(ex.keys, ["a", "c", "e"]);
  assert.ok(ex.list[2][1] >= eAdded + 50, `e expired at ${ex.list[2][1]} ms, re-added at ${eAdded} for 50 ms later`);
  // close() from a callback: nothing else due then expires.
  const f = ex.of("f");
  d.add("f", monotonicMs() + 5);
  d.add("g", monotonicMs() + 5);
  await f;
  await sleep(40);
  assert.deepEqual(ex.keys, ["a", "c", "e", "f"]);
  assert.equal(d.size, 0);
});
