/**
 * The short soak that runs in CI: producers and consumer groups under a
 * leader kill, every acknowledged record read exactly once per group, in
 * order per producer within each partition. `deno task soak` runs it longer.
 */
import assert from "node:assert/strict";
import { soak } from "../scripts/soak.ts";

Deno.test("soak (short): 4 producers, 2 groups, a leader killed mid-run: nothing lost, nothing doubled", async () => {
  const result = await soak({ seconds: 8, producers: 4, groups: 2, kills: 1, rate: 500 });
  console.log(JSON.stringify(result));
  assert.ok(result.acknowledged > 0, "every producer exited 0");
  assert.equal(result.kills, 1);
  assert.ok(result.epochs >= 1, "the kill moved leadership");
  for (const g of result.groups) {
    assert.equal(g.missing, 0, `${g.group} missed records`);
    assert.equal(g.duplicates, 0, `${g.group} read records twice`);
    assert.equal(g.outOfOrder, 0, `${g.group} saw a producer's records out of order`);
    assert.equal(g.read, result.acknowledged);
  }
  assert.ok(result.ok);
});
