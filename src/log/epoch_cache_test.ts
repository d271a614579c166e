import assert from "node:assert/strict";
import { join } from "node:path";
import { EpochCache } from "./epoch_cache.ts";

const FILE = "leader-epochs.json";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "yak_epoch_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("assign records new epochs and ignores known ones", () => {
  const cache = new EpochCache("/nonexistent");
  assert.equal(cache.lastEpoch, -1);
  assert.deepEqual(cache.entries, []);
  assert.equal(cache.assign(1, 0), true);
  assert.equal(cache.lastEpoch, 1);
  assert.equal(cache.assign(1, 5), false, "same epoch again");
  assert.throws(() => cache.assign(0, 10), /epoch 0 appended after epoch 1/, "an older epoch: two leaders wrote");
  assert.equal(cache.assign(3, 10), true);
  assert.equal(
    cache.assign(4, 10),
    true,
    "an epoch may start where another did",
  );
  assert.equal(cache.lastEpoch, 4);
  assert.deepEqual(cache.entries, [[1, 0], [3, 10], [4, 10]]);
  assert.throws(() => cache.assign(5, 9), /before epoch 4 at 10/);
  assert.deepEqual(cache.entries, [[1, 0], [3, 10], [4, 10]]);
});

Deno.test("endOffsetFor finds where an epoch ends", () => {
  const cache = new EpochCache("/nonexistent", [[2, 5], [3, 10], [6, 20]]);
  const leo = 30;
  // Epochs present.
  assert.deepEqual(cache.endOffsetFor(2, leo), { epoch: 2, endOffset: 10 });
  assert.deepEqual(cache.endOffsetFor(3, leo), { epoch: 3, endOffset: 20 });
  assert.deepEqual(cache.endOffsetFor(6, leo), { epoch: 6, endOffset: 30 });
  // Between entries: the largest epoch below it, ending where the next starts.
  assert.deepEqual(cache.endOffsetFor(4, leo), { epoch: 3, endOffset: 20 });
  assert.deepEqual(cache.endOffsetFor(5, leo), { epoch: 3, endOffset: 20 });
  // Below all entries: unknown epoch, ending where the first known one starts.
  assert.deepEqual(cache.endOffsetFor(1, leo), { epoch: -1, endOffset: 5 });
  assert.deepEqual(cache.endOffsetFor(0, leo), { epoch: -1, endOffset: 5 });
  // Above all: the last epoch, up to the log end.
  assert.deepEqual(cache.endOffsetFor(99, leo), { epoch: 6, endOffset: 30 });
  // An empty cache knows nothing: the log end.
  assert.deepEqual(
    new EpochCache("/nonexistent").endOffsetFor(3, 17),
    { epoch: -1, endOffset: 17 },
  );
});

Deno.test("truncateFrom drops epochs starting at or after the offset", () => {
  const cache = new EpochCache("/nonexistent", [[1, 0], [2, 10], [4, 20]]);
  assert.equal(cache.truncateFrom(25), false);
  assert.deepEqual(cache.entries, [[1, 0], [2, 10], [4, 20]]);
  assert.equal(cache.truncateFrom(21), false);
  assert.equal(
    cache.truncateFrom(20),
    true,
    "an epoch starting at the cut goes",
  );
  assert.deepEqual(cache.entries, [[1, 0], [2, 10]]);
  assert.equal(cache.lastEpoch, 2);
  assert.equal(cache.truncateFrom(20), false);
  assert.equal(cache.truncateFrom(3), true);
  assert.deepEqual(cache.entries, [[1, 0]]);
  assert.equal(cache.truncateFrom(0), true);
  assert.deepEqual(cache.entries, []);
  assert.equal(cache.lastEpoch, -1);
  // New epochs can be assigned again after a truncation.
  assert.equal(cache.assign(5, 0), true);
  assert.deepEqual(cache.entries, [[5, 0]]);
});

Deno.test("within and epochAt look entries up by offset", () => {
  const cache = new EpochCache("/nonexistent", [[1, 0], [2, 10], [4, 20]]);
  assert.deepEqual(cache.within(0, 10), [[1, 0]]);
  assert.deepEqual(cache.within(5, 21), [[2, 10], [4, 20]]);
  assert.deepEqual(cache.within(11, 20), []);
  assert.equal(cache.epochAt(0), 1);
  assert.equal(cache.epochAt(9), 1);
  assert.equal(cache.epochAt(10), 2);
  assert.equal(cache.epochAt(100), 4);
  assert.equal(new EpochCache("/nonexistent", [[3, 5]]).epochAt(4), -1);
});

Deno.test("save and load round-trip the entries", async () => {
  await withTempDir(async (dir) => {
    assert.equal(await EpochCache.load(dir), null, "no file yet");
    const cache = new EpochCache(dir, [[1, 0], [3, 12], [7, 40]]);
    await cache.save();
    const text = await Deno.readTextFile(join(dir, FILE));
    assert.deepEqual(JSON.parse(text), [[1, 0], [3, 12], [7, 40]]);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names, [FILE], "the temp file was renamed away");

    const loaded = await EpochCache.load(dir);
    assert.ok(loaded);
    assert.deepEqual(loaded.entries, [[1, 0], [3, 12], [7, 40]]);
    assert.equal(loaded.lastEpoch, 7);

    // A saved truncation is what the next load sees.
    loaded.truncateFrom(12);
    loaded.assign(9, 12);
    await loaded.save();
    assert.deepEqual((await EpochCache.load(dir))?.entries, [[1, 0], [9, 12]]);

    await new EpochCache(dir).save();
    assert.deepEqual((await EpochCache.load(dir))?.entries, []);
  });
});

Deno.test("load returns null for a garbage or inconsistent file", async () => {
  await withTempDir(async (dir) => {
    const bad = [
      "not json at all",
      "",
      '{"1":0}',
      "42",
      "[1,2]",
      '[[1,"0"]]',
      "[[1.5,0]]",
      "[[1]]",
      "[[3,0],[2,5]]", // epochs not increasing
      "[[3,0],[3,5]]", // epoch repeated
      "[[1,5],[2,3]]", // start offsets going back
      "[[1,0],[2,",
    ];
    for (const text of bad) {
      await Deno.writeTextFile(join(dir, FILE), text);
      assert.equal(await EpochCache.load(dir), null, JSON.stringify(text));
    }
    await Deno.writeFile(join(dir, FILE), new Uint8Array([0xff, 0x00, 0x5b]));
    assert.equal(await EpochCache.load(dir), null, "binary");
  });
});
