import assert from "node:assert/strict";
import { type RetainedSegment, retentionCut, type RetentionState } from "./retention.ts";

/** Segments of 1000 bytes ending at offsets 100, 200, ...; their file times (ms) are what `mtimeOf` answers. */
function segs(...mtimes: (number | undefined)[]): RetainedSegment[] {
  times = mtimes;
  return mtimes.map((_, i) => ({ size: 1000, nextBase: (i + 1) * 100 }));
}

let times: (number | undefined)[] = [];
const looked: number[] = [];

const base: RetentionState = {
  mtimeOf: (i) => {
    looked.push(i);
    return Promise.resolve(times[i]);
  },
  totalBytes: 4000, // three closed segments and an active one of 1000 bytes
  highWatermark: 400,
  logStart: 0,
  retentionBytes: -1,
  retentionMs: -1,
  nowMs: 10_000,
};

Deno.test("retention.bytes: the oldest segments go while the rest still holds at least the limit", async () => {
  assert.deepEqual(await retentionCut(segs(0, 0, 0), { ...base, retentionBytes: 2000 }), {
    before: 200,
    why: "retention.bytes=2000",
  });
  assert.deepEqual(await retentionCut(segs(0, 0, 0), { ...base, retentionBytes: 1000 }), {
    before: 300,
    why: "retention.bytes=1000",
  });
  assert.equal(await retentionCut(segs(0, 0, 0), { ...base, retentionBytes: 3500 }), null);
  // The active segment is never a candidate: even a limit of 0 leaves it.
  assert.equal((await retentionCut(segs(0, 0, 0), { ...base, retentionBytes: 0 }))?.before, 300);
});

Deno.test("retention.ms: segments older than the limit go, oldest first; the first young one stops the cut", async () => {
  const state = { ...base, retentionMs: 5000 };
  assert.deepEqual(await retentionCut(segs(1000, 2000, 9000), state), { before: 200, why: "retention.ms=5000" });
  // An old segment after a young one stays: retention never leaves a hole in the log.
  looked.length = 0;
  assert.equal(await retentionCut(segs(9000, 1000, 1000), state), null);
  assert.deepEqual(looked, [0], "a file's time is looked at only when it decides");
  // A file that could not be looked at is kept (never deleted on a guess), and stops the cut.
  assert.deepEqual(await retentionCut(segs(1000, undefined, 1000), state), { before: 100, why: "retention.ms=5000" });
});

Deno.test("never past the high watermark, whatever the limits say", async () => {
  const state = { ...base, retentionMs: 0, retentionBytes: 0, highWatermark: 250 };
  assert.deepEqual(await retentionCut(segs(0, 0, 0), state), { before: 200, why: "retention.bytes=0" });
  assert.equal(await retentionCut(segs(0, 0, 0), { ...state, highWatermark: 99 }), null);
});

Deno.test("segments below the log start go whatever the limits (records deleted there, or a deletion that failed)", async () => {
  assert.deepEqual(await retentionCut(segs(9999, 9999, 9999), { ...base, logStart: 200 }), {
    before: 200,
    why: "below the log start",
  });
  // The reason names the last limit that applied.
  assert.deepEqual(await retentionCut(segs(9999, 0, 9999), { ...base, logStart: 100, retentionMs: 5000 }), {
    before: 200,
    why: "retention.ms=5000",
  });
});
