import assert from "node:assert/strict";
import { rangeAssign, roundRobinAssign } from "./assignors.ts";

const three = ["c", "a", "b"].map((memberId) => ({ memberId, topics: ["t"] }));

Deno.test("range: consecutive ranges per topic, the first members get the extra partitions", () => {
  assert.deepEqual(rangeAssign(three, { t: 7 }), { a: { t: [0, 1, 2] }, b: { t: [3, 4] }, c: { t: [5, 6] } });
  assert.deepEqual(rangeAssign(three, { t: 6 }), { a: { t: [0, 1] }, b: { t: [2, 3] }, c: { t: [4, 5] } });
  // More members than partitions: the last ones get nothing.
  assert.deepEqual(rangeAssign(three, { t: 2 }), { a: { t: [0] }, b: { t: [1] }, c: {} });
});

Deno.test("roundrobin: partitions dealt in turn, skipping members that do not subscribe", () => {
  assert.deepEqual(roundRobinAssign(three, { t: 7 }), { a: { t: [0, 3, 6] }, b: { t: [1, 4] }, c: { t: [2, 5] } });
  const mixed = [{ memberId: "a", topics: ["t", "u"] }, { memberId: "b", topics: ["u"] }];
  assert.deepEqual(roundRobinAssign(mixed, { t: 2, u: 2 }), { a: { t: [0, 1], u: [1] }, b: { u: [0] } });
});

Deno.test("every partition is assigned exactly once, with either strategy", () => {
  for (const fn of [rangeAssign, roundRobinAssign]) {
    for (let members = 1; members <= 5; members++) {
      for (let parts = 0; parts <= 12; parts++) {
        const subs = Array.from({ length: members }, (_, i) => ({ memberId: `m${i}`, topics: ["t"] }));
        const got = Object.values(fn(subs, { t: parts })).flatMap((a) => a.t ?? []).sort((x, y) => x - y);
        assert.deepEqual(got, Array.from({ length: parts }, (_, i) => i));
      }
    }
  }
});
