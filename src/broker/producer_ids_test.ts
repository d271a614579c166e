import assert from "node:assert/strict";
import { YakError } from "../errors.ts";
import type { BrokerContext } from "./context.ts";
import { Metadata } from "./metadata.ts";
import { ProducerIdCipher, ProducerIds } from "./producer_ids.ts";

const KEY = "5f".repeat(32);

Deno.test("the producer id permutation is one to one on [0, 2^53) and its inverse undoes it", () => {
  const cipher = new ProducerIdCipher(KEY);
  const seen = new Set<number>();
  for (let n = 0; n < 2000; n++) {
    const id = cipher.encrypt(n);
    assert.ok(Number.isSafeInteger(id) && id >= 0, `${id} is not a safe integer`);
    assert.equal(cipher.decrypt(id), n);
    seen.add(id);
  }
  assert.equal(seen.size, 2000, "two counters gave the same id");
  // Counters in a row do not give ids in a row: the next producer's id cannot be guessed from one's own.
  const a = cipher.encrypt(1000), b = cipher.encrypt(1001);
  assert.ok(Math.abs(a - b) > 2 ** 20, `${a} and ${b} are close`);
  assert.notEqual(new ProducerIdCipher("60".repeat(32)).encrypt(5), cipher.encrypt(5), "another key, other ids");
  assert.equal(cipher.decrypt(cipher.encrypt(2 ** 53 - 1)), 2 ** 53 - 1, "the top of the range");
});

Deno.test("only issued ids verify: made-up ids, ids past the reserved blocks and other epochs are refused", () => {
  const meta = new Metadata();
  meta.apply({ op: "producer_ids", key: KEY, next: 1000 });
  const ids = new ProducerIds({ store: { meta } } as unknown as BrokerContext);
  const cipher = new ProducerIdCipher(KEY);
  const issued = (n: number) => BigInt(cipher.encrypt(n));
  assert.equal(ids.verify(issued(999), 0), "p999");
  const refused = (id: bigint, epoch: number, code: string) =>
    assert.throws(() => ids.verify(id, epoch), (e: YakError) => e.code === code, `${id}/${epoch}`);
  refused(issued(1000), 0, "UNKNOWN_PRODUCER_ID");
  refused(1n << 60n, 0, "UNKNOWN_PRODUCER_ID");
  refused(0n, 0, "UNKNOWN_PRODUCER_ID"); // what @platformatic/kafka sends to ask for an id
  refused(-5n, 0, "UNKNOWN_PRODUCER_ID");
  refused(issued(3), 1, "INVALID_PRODUCER_EPOCH");
  // Made-up ids: each verifies with odds of 1000 in 2^53.
  let accepted = 0;
  for (let i = 0; i < 2000; i++) {
    const made = BigInt(Math.floor(Math.random() * 2 ** 53));
    try {
      ids.verify(made, 0);
      accepted++;
    } catch { /* refused, as it should be */ }
  }
  assert.equal(accepted, 0);
  // A later block and a replayed older record: the first key stays, blocks only grow.
  meta.apply({ op: "producer_ids", key: "00".repeat(32), next: 2000 });
  meta.apply({ op: "producer_ids", key: KEY, next: 1000 });
  assert.deepEqual(meta.producerIds, { key: KEY, next: 2000 });
  assert.equal(ids.verify(issued(1500), 0), "p1500");
  const snap = new Metadata();
  snap.apply(meta.snapshot());
  assert.deepEqual(snap.producerIds, { key: KEY, next: 2000 }, "a __cluster snapshot keeps the key and the blocks");
});
