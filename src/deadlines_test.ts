import assert from "node:assert/strict";
import { monotonicMs } from "./clock.ts";
import { Deadlines } from "./deadlines.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("Deadlines expires each key at its deadline, not before, and never one deleted or taken first", async () => {
  const expired: [string, number][] = [];
  const start = monotonicMs();
  const d = new Deadlines<string>((key) => expired.push([key, monotonicMs() - start]));
  d.add("late", start + 80);
  d.add("early", start + 20); // earlier than the armed timer: armed again for it
  d.add("answered", start + 10);
  d.add("drained", start + 30);
  assert.equal(d.delete("answered"), true);
  assert.equal(d.delete("answered"), false);
  d.add("again", start + 200);
  d.add("again", start + 40); // added again: only the new deadline counts
  await sleep(25);
  assert.deepEqual(d.takeAll().sort(), ["again", "drained", "late"]);
  d.add("last", monotonicMs() + 30);
  await sleep(120);
  assert.deepEqual(expired.map(([k]) => k), ["early", "last"]);
  assert.ok(expired[0][1] >= 20, `early expired at ${expired[0][1]} ms`);
  assert.ok(expired[1][1] >= 55, `last expired at ${expired[1][1]} ms`);
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
  const expired: string[] = [];
  const d = new Deadlines<string>((key) => {
    expired.push(key);
    if (key === "first") d.add("chained", monotonicMs() + 10);
  });
  d.add("first", monotonicMs() + 10);
  await sleep(60);
  assert.deepEqual(expired, ["first", "chained"]);
  d.add("closed", monotonicMs() + 10);
  d.close();
  await sleep(30);
  assert.deepEqual(expired, ["first", "chained"]);
});

Deno.test("Deadlines: a callback that deletes, re-adds or closes keys due in the same firing is obeyed", async () => {
  const expired: [string, number][] = [];
  const start = monotonicMs();
  let deleted: boolean | null = null;
  const d = new Deadlines<string>((key) => {
    expired.push([key, monotonicMs() - start]);
    if (key === "a") deleted = d.delete("b"); // b is due in this firing too: it must not expire now
    if (key === "c") d.add("e", monotonicMs() + 50); // e is due in this firing: only its new deadline counts
    if (key === "f") d.close();
  });
  d.add("a", start + 10);
  d.add("b", start + 10);
  d.add("c", start + 10);
  d.add("e", start + 10);
  await sleep(40);
  assert.equal(deleted, true);
  assert.deepEqual(expired.map(([k]) => k), ["a", "c"]);
  await sleep(60);
  assert.deepEqual(expired.map(([k]) => k), ["a", "c", "e"]);
  assert.ok(expired[2][1] >= 55, `e expired at ${expired[2][1]} ms, before its new deadline`);
  // close() from a callback: nothing else due then expires.
  d.add("f", monotonicMs() + 5);
  d.add("g", monotonicMs() + 5);
  await sleep(40);
  assert.deepEqual(expired.map(([k]) => k), ["a", "c", "e", "f"]);
  assert.equal(d.size, 0);
});
