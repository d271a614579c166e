import assert from "node:assert/strict";
import { type Candidate, electLeader } from "./election.ts";

const b = (id: number, alive: boolean, logEndTotal: number): Candidate => ({ id, alive, logEndTotal });

Deno.test("the election picks the live in-sync broker holding the most, ties to the lowest id", () => {
  assert.equal(electLeader([b(1, true, 10), b(2, true, 30), b(3, true, 20)], [1, 2, 3]), 2);
  assert.equal(electLeader([b(3, true, 30), b(2, true, 30), b(1, true, 10)], [1, 2, 3]), 2, "a tie: lowest id");
  assert.equal(electLeader([b(1, false, 90), b(2, true, 30)], [1, 2]), 2, "the dead never lead");
});

Deno.test("a broker outside the in-sync set is never elected, even holding more; none left is no leader", () => {
  assert.equal(electLeader([b(1, true, 10), b(2, true, 99)], [1]), 1, "2 may miss acknowledged records");
  assert.equal(electLeader([b(1, false, 10), b(2, true, 99)], [1]), null, "no live in-sync broker: no leader");
  assert.equal(electLeader([], [1, 2]), null);
});

Deno.test("with no in-sync set yet (a new cluster) every live broker may lead", () => {
  assert.equal(electLeader([b(2, true, 0), b(1, true, 0)], null), 1);
  assert.equal(electLeader([b(2, true, 5), b(1, false, 9)], []), 2);
});
