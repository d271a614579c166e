import assert from "node:assert/strict";
import { join } from "node:path";
import { cleanLog, type CleanOptions, mergePlan } from "./cleaner.ts";
import type { Cleaning } from "./clean_state.ts";
import { type LogOptions, PartitionLog } from "./partition_log.ts";
import { encodeBatch, encodeMarker, parseLines, type RecordInput, type StoredRecord } from "./record.ts";

const MB = 1 << 20;
const TS = 1_700_000_000_000;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "yak_cleaner_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function opts(extra: Partial<LogOptions> = {}): LogOptions {
  return { segmentBytes: 2000, indexIntervalBytes: 256, compacted: true, ...extra };
}

const CLEAN: CleanOptions = { keyMapBytes: MB, indexIntervalBytes: 256, pause: () => Promise.resolve() };

/** Appends `records` one batch each of `per` as a leader; returns the log end. */
async function produce(log: PartitionLog, records: RecordInput[], per = 5): Promise<number> {
  for (let i = 0; i < records.length; i += per) {
    const batch = records.slice(i, i + per);
    await log.append(1, batch.length, (base) => encodeBatch(batch, base, 1, TS, null, 0)).done;
  }
  return log.logEndOffset;
}

/** `n` updates cycling over `keys` keys: value `v<offset>`; every `tombstoneEvery`-th a null value. */
function updates(n: number, keys: number, tombstoneEvery = 0, ts = TS): RecordInput[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `k${i % keys}`,
    value: tombstoneEvery > 0 && i % tombstoneEvery === tombstoneEvery - 1 ? null : `v${i}`,
    ts,
  }));
}

async function readAll(log: PartitionLog): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for (let at = log.logStartOffset; at < log.logEndOffset;) {
    const r = await log.read(at, MB, log.logEndOffset);
    out.push(...parseLines(r.text));
    assert.ok(r.nextOffset > at, `a read from ${at} moves`);
    at = r.nextOffset;
  }
  return out;
}

/** The segment files of a log directory: name -> bytes. */
async function files(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(dir)) {
    if (e.name.endsWith(".jsonl")) out.set(e.name, await Deno.readTextFile(join(dir, e.name)));
  }
  return new Map([...out].sort());
}

/** What a cleaning up to `to` must leave: the newest record of each key below it, and everything from it on. */
function expected(all: StoredRecord[], to: number, purge?: (r: StoredRecord) => boolean): number[] {
  const latest = new Map<string, number>();
  for (const r of all) if (r.offset < to) latest.set(r.key!, r.offset);
  return all.filter((r) => r.offset >= to || (latest.get(r.key!) === r.offset && !(r.value === null && purge?.(r))))
    .map((r) => r.offset);
}

Deno.test("the cleaner keeps the newest record of each key below `to`, with its offset and bytes; the rest stays", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts());
    try {
      await produce(log, updates(600, 17));
      await log.roll();
      const before = await readAll(log);
      const to = log.logEndOffset;
      await produce(log, updates(20, 17)); // the active segment: never touched
      const all = await readAll(log);
      const lines = new Map(all.map((r) => [r.offset, JSON.stringify(r)]));
      const segmentsBefore = log.segmentCount;
      const run = await cleanLog(log, { to, purgeBelow: 0, horizonMs: 0 }, CLEAN);
      assert.ok(run);
      const after = await readAll(log);
      assert.deepEqual(after.map((r) => r.offset), expected(all, to));
      // Kept records are the same records (their checksums included).
      for (const r of after) assert.equal(JSON.stringify(r), lines.get(r.offset));
      assert.equal(after.filter((r) => r.offset < to).length, 17);
      assert.ok(run.bytesAfter < run.bytesBefore / 10, JSON.stringify(run));
      assert.ok(log.segmentCount < segmentsBefore, `${log.segmentCount} segments after, ${segmentsBefore} before`);
      assert.equal(log.logStartOffset, 0, "the first segment stays, so the log start does not move");
      assert.deepEqual(log.cleanState && { ...log.cleanState, at: 0 }, { to, purgeBelow: 0, horizonMs: 0, at: 0 });
      assert.equal(before.length, to);
      // Reopened (its index files as the cleaner wrote them), every read from every offset still works.
      await log.close();
      const reopened = await PartitionLog.open(dir, opts());
      try {
        assert.deepEqual((await readAll(reopened)).map((r) => r.offset), after.map((r) => r.offset));
        for (let from = 0; from < reopened.logEndOffset; from++) {
          const r = await reopened.read(from, 300, reopened.logEndOffset);
          const got = parseLines(r.text).map((x) => x.offset);
          assert.deepEqual(got, after.map((x) => x.offset).filter((o) => o >= from).slice(0, got.length));
        }
      } finally {
        await reopened.close();
      }
    } finally {
      await log.close().catch(() => {});
    }
  });
});

Deno.test("cleaning is a function of the records and the cleaning alone: a follower's copy, a small key map (several passes), two cleanings or one give the same files", async () => {
  await withTempDir(async (dir) => {
    const records = updates(900, 40, 7);
    const leader = await PartitionLog.open(join(dir, "leader"), opts());
    const follower = await PartitionLog.open(join(dir, "follower"), opts({ segmentBytes: 64 * MB }));
    const small = await PartitionLog.open(join(dir, "small"), opts());
    const twice = await PartitionLog.open(join(dir, "twice"), opts());
    const logs = [leader, follower, small, twice];
    try {
      for (const log of [leader, small, twice]) await produce(log, records);
      for (const log of [leader, small, twice]) await log.roll();
      // The follower copies the leader's bytes, rolling where the leader did.
      const copy = await leader.read(0, 64 * MB, leader.logEndOffset);
      await follower.appendReplica(0, copy.count, copy.text, [[1, 0]], leader.segmentBasesIn(0, Infinity));
      await follower.roll();
      const to = leader.logEndOffset;
      const cleaning: Cleaning = { to, purgeBelow: 600, horizonMs: TS + 1 };
      for (const log of [leader, follower]) assert.ok(await cleanLog(log, cleaning, CLEAN));
      const run = await cleanLog(small, cleaning, { ...CLEAN, keyMapBytes: 200 });
      assert.ok(run && run.passes > 2, `${run?.passes} passes`);
      assert.ok(await cleanLog(twice, { to: 500, purgeBelow: 300, horizonMs: TS + 1 }, CLEAN));
      assert.ok(await cleanLog(twice, cleaning, CLEAN));
      const want = await files(leader.dir);
      for (const log of [follower, small, twice]) assert.deepEqual(await files(log.dir), want, log.dir);
      const all = records.map((r, offset) => ({ ...r, offset, epoch: 1, ts: TS }) as StoredRecord);
      assert.deepEqual(
        (await readAll(leader)).map((r) => r.offset),
        expected(all, to, (r) => r.offset < 600),
      );
    } finally {
      for (const log of logs) await log.close();
    }
  });
});

Deno.test("a tombstone is removed only below purgeBelow and once older than the horizon; a keyless record is removed", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts());
    try {
      await produce(log, [
        { key: "a", value: "1", ts: TS },
        { key: "b", value: "1", ts: TS },
        { key: "a", value: null, ts: TS }, // 2: deletes a
        { key: null, value: "no key", ts: TS }, // 3
        { key: "b", value: null, ts: TS + 100 }, // 4: deletes b, but newer
        { key: "c", value: null, ts: TS }, // 5: above purgeBelow
      ]);
      await log.roll();
      await produce(log, [{ key: "z", value: "active" }]);
      const offsets = async () => (await readAll(log)).map((r) => r.offset);
      assert.ok(await cleanLog(log, { to: 6, purgeBelow: 0, horizonMs: TS + 50 }, CLEAN));
      assert.deepEqual(await offsets(), [2, 4, 5, 6], "the first cleaning keeps tombstones (purgeBelow 0)");
      assert.ok(await cleanLog(log, { to: 6, purgeBelow: 5, horizonMs: TS + 50 }, CLEAN));
      assert.deepEqual(await offsets(), [4, 5, 6], "a's tombstone goes; b's is too new, c's above purgeBelow");
      assert.ok(await cleanLog(log, { to: 6, purgeBelow: 6, horizonMs: TS + 101 }, CLEAN));
      assert.deepEqual(await offsets(), [6]);
      // The log start stays: the first segment is kept, empty.
      assert.equal(log.logStartOffset, 0);
      assert.equal((await log.read(0, MB, 7)).nextOffset, 7);
    } finally {
      await log.close();
    }
  });
});

Deno.test("a crash mid-swap leaves the old segment or the new one: a .cleaned file is dropped, a .swap finished; cleaning again gives the same files", async () => {
  await withTempDir(async (dir) => {
    const records = updates(400, 9);
    const log = await PartitionLog.open(join(dir, "a"), opts());
    const ref = await PartitionLog.open(join(dir, "ref"), opts());
    try {
      for (const l of [log, ref]) {
        await produce(l, records);
        await l.roll();
      }
      const cleaning: Cleaning = { to: log.logEndOffset, purgeBelow: 0, horizonMs: 0 };
      assert.ok(await cleanLog(ref, cleaning, CLEAN));
      const raw = await files(log.dir);
      const cleaned = await files(ref.dir);
      await log.close();
      // A crash after the first segment's cleaned copy was written, renamed to .swap or not,
      // and the second one's half written.
      const [first, second] = [...raw.keys()];
      await Deno.writeTextFile(join(log.dir, `${first}.swap`), cleaned.get(first)!);
      await Deno.writeTextFile(join(log.dir, `${second}.cleaned`), '{"offset":');
      const events: string[] = [];
      const reopened = await PartitionLog.open(log.dir, opts({ onEvent: (e) => void events.push(e) }));
      try {
        assert.deepEqual(events.filter((e) => e.startsWith("clean_swap")).sort(), [
          "clean_swap_discarded",
          "clean_swap_finished",
        ]);
        assert.equal((await files(reopened.dir)).get(first), cleaned.get(first));
        assert.equal((await files(reopened.dir)).get(second), raw.get(second));
        for await (const e of Deno.readDir(reopened.dir)) assert.doesNotMatch(e.name, /\.(cleaned|swap)$/);
        assert.equal(reopened.cleanState?.to ?? 0, 0, "the cleaning's state was not saved");
        assert.ok(await cleanLog(reopened, cleaning, CLEAN));
        assert.deepEqual(await files(reopened.dir), cleaned);
      } finally {
        await reopened.close();
      }
    } finally {
      await log.close().catch(() => {});
      await ref.close();
    }
  });
});

Deno.test("reads while the cleaner swaps segments see whole, intact records in offset order, and every key's newest value", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts({ tailCacheBytes: 1 }));
    try {
      await produce(log, updates(1500, 50));
      await log.roll();
      const to = log.logEndOffset;
      let cleaning = true;
      const reads = (async () => {
        let rounds = 0;
        while (cleaning || rounds === 0) {
          const seen = new Map<string, string>();
          let last = -1;
          for (const r of await readAll(log)) {
            assert.ok(r.offset > last);
            last = r.offset;
            seen.set(r.key!, r.value!);
          }
          for (let k = 0; k < 50; k++) assert.equal(seen.get(`k${k}`), `v${1450 + k}`);
          rounds++;
        }
        return rounds;
      })();
      const slow: CleanOptions = { ...CLEAN, pause: () => new Promise((r) => setTimeout(r, 0)) };
      await cleanLog(log, { to, purgeBelow: 0, horizonMs: 0 }, slow);
      cleaning = false;
      assert.ok(await reads >= 1);
      assert.equal((await readAll(log)).length, 50);
    } finally {
      await log.close();
    }
  });
});

Deno.test("aborted transactions' records go and never count as a key's newest; markers stay while not below markersBelow", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts());
    try {
      const lines = (build: (base: number) => string) => log.append(1, 1, build).done;
      await lines((o) => encodeBatch([{ key: "a", value: "plain" }], o, 1, TS, null, 0));
      await lines((o) => encodeBatch([{ key: "a", value: "committed" }], o, 1, TS, "p7", 0, false, 1));
      await lines((o) => encodeMarker(o, 1, TS, "p7", 1, true));
      await log.append(
        1,
        2,
        (o) =>
          encodeBatch([{ key: "a", value: "aborted" }, { key: "b", value: "aborted" }], o, 1, TS, "p8", 0, false, 1),
      ).done;
      await lines((o) => encodeMarker(o, 1, TS, "p8", 1, false));
      await lines((o) => encodeBatch([{ key: "c", value: "plain" }], o, 1, TS, null, 0));
      await log.roll();
      await lines((o) => encodeBatch([{ key: "z", value: "active" }], o, 1, TS, null, 0));
      const run = await cleanLog(log, { to: 7, purgeBelow: 7, horizonMs: TS + 1 }, {
        ...CLEAN,
        aborted: [{ producer: 8, first: 3, last: 5 }],
      });
      assert.ok(run);
      const kept = await readAll(log);
      assert.deepEqual(kept.map((r) => r.offset), [1, 2, 5, 6, 7]);
      assert.equal(kept[0].value, "committed", "the aborted update of 'a' did not supersede the committed one");
      assert.deepEqual(kept.filter((r) => r.marker !== undefined).map((r) => r.marker), ["commit", "abort"]);
    } finally {
      await log.close();
    }
  });
});

Deno.test("a transaction marker goes once its transaction left no record and it lies below markersBelow; one pass, several, or one cleaning after another give the same files", async () => {
  await withTempDir(async (dir) => {
    /** Plain updates, a committed transaction of p7 (keys a, superseded later, and c), an aborted one of p8. */
    const fill = async (log: PartitionLog) => {
      const one = (build: (base: number) => string) => log.append(1, 1, build).done;
      await produce(log, updates(30, 10));
      await one((o) => encodeBatch([{ key: "a", value: "committed" }], o, 1, TS, "p7", 0, false, 1)); // 30
      await one((o) => encodeMarker(o, 1, TS, "p7", 1, true)); // 31
      await log.append(
        1,
        2,
        (o) => encodeBatch([{ key: "a", value: "x" }, { key: "b", value: "x" }], o, 1, TS, "p8", 0, false, 1),
      ).done; // 32, 33
      await one((o) => encodeMarker(o, 1, TS, "p8", 1, false)); // 34
      await produce(log, updates(30, 10));
      await one((o) => encodeBatch([{ key: "c", value: "committed" }], o, 1, TS, "p7", 1, false, 1)); // 65
      await one((o) => encodeMarker(o, 1, TS, "p7", 1, true)); // 66
      await one((o) => encodeBatch([{ key: "a", value: "plain" }], o, 1, TS, null, 0)); // 67
      await produce(log, updates(30, 10));
      await log.roll();
      await one((o) => encodeBatch([{ key: "z", value: "active" }], o, 1, TS, null, 0));
    };
    const aborted = [{ producer: 8, first: 32, last: 34 }];
    const stepwise = await PartitionLog.open(join(dir, "stepwise"), opts());
    const once = await PartitionLog.open(join(dir, "once"), opts());
    const small = await PartitionLog.open(join(dir, "small"), opts());
    try {
      for (const log of [stepwise, once, small]) await fill(log);
      const to = stepwise.logEndOffset - 1;
      const markers = async (log: PartitionLog) =>
        (await readAll(log)).filter((r) => r.marker !== undefined).map((r) => `${r.offset}:${r.marker}`);
      const clean = async (log: PartitionLog, markersBelow: number, keyMapBytes = MB) => {
        const run = await cleanLog(log, { to, purgeBelow: to, horizonMs: TS + 1, markersBelow }, {
          ...CLEAN,
          keyMapBytes,
          aborted,
        });
        assert.ok(run);
        return run;
      };
      // Not below markersBelow: both wait, the aborted records are gone.
      let run = await clean(stepwise, 0);
      assert.deepEqual(await markers(stepwise), ["31:commit", "34:abort", "66:commit"]);
      assert.equal(run.lowestWaitingMarker, 31, "the commit of 'a' (superseded at 67) and the abort wait");
      run = await clean(stepwise, 34);
      assert.deepEqual(await markers(stepwise), ["34:abort", "66:commit"], "the commit at 31 goes; 34 is not below");
      assert.equal(run.markersRemoved, 1);
      run = await clean(stepwise, to);
      assert.deepEqual(await markers(stepwise), ["66:commit"], "the abort goes; the commit of 'c', still kept, stays");
      assert.equal(run.lowestWaitingMarker, Infinity);
      const kept = await readAll(stepwise);
      assert.equal(kept.find((r) => r.key === "c")?.value, "committed");
      assert.equal(kept.find((r) => r.key === "a")?.value, "plain");
      assert.equal(kept.find((r) => r.key === "b"), undefined, "the aborted transaction's records are gone");
      await clean(once, to);
      const runs = await clean(small, to, 200);
      assert.ok(runs.passes > 2, `${runs.passes} passes`);
      const want = await files(stepwise.dir);
      for (const log of [once, small]) assert.deepEqual(await files(log.dir), want, log.dir);
    } finally {
      for (const log of [stepwise, once, small]) await log.close();
    }
  });
});

Deno.test("small cleaned segments are merged by the leader's groups: one file per group; a replica with finer segments, one with the leader's, and a crash mid-merge end with the same files", async () => {
  await withTempDir(async (dir) => {
    // 600 records in ~2000-byte segments, every fifth of a key of its own: cleaned, each segment keeps a few.
    const records = updates(600, 60).map((r, i) => i % 5 === 0 ? { ...r, key: `u${i}` } : r);
    const leader = await PartitionLog.open(join(dir, "leader"), opts());
    const fine = await PartitionLog.open(join(dir, "fine"), opts());
    const logs = [leader, fine];
    try {
      for (const log of logs) {
        await produce(log, records.slice(0, 400));
        await log.roll();
      }
      const mid = leader.logEndOffset;
      for (const log of logs) {
        await produce(log, records.slice(400));
        await log.roll();
        await produce(log, [{ key: "z", value: "active" }]);
      }
      const to = leader.logEndOffset - 1;
      // The first cleaning (nothing merged: nothing was cleaned before it), then one that merges what it cleaned,
      // its groups made from the leader's segments then.
      const plan = (below: number) => {
        const { mergeBelow, bases } = mergePlan(leader, below, 3000, 256);
        return { mergeBelow, bases };
      };
      const first: Cleaning = { to: mid, purgeBelow: 0, horizonMs: 0, ...plan(0) };
      assert.ok(await cleanLog(leader, first, CLEAN));
      const segmentsBefore = leader.segmentCount;
      const second: Cleaning = { to, purgeBelow: mid, horizonMs: 0, ...plan(mid) };
      assert.ok(second.bases!.length >= 1);
      const run = await cleanLog(leader, second, CLEAN);
      assert.ok(run && run.segmentsMerged > 0, JSON.stringify(run));
      assert.ok(leader.segmentCount < segmentsBefore, `${leader.segmentCount} segments, ${segmentsBefore} before`);
      assert.equal(leader.logStartOffset, 0);
      // Every segment below `mid` but the last of its group is gone; what is read is what a cleaning alone keeps.
      const all = records.map((r, offset) => ({ ...r, offset, epoch: 1, ts: TS }) as StoredRecord);
      assert.deepEqual(
        (await readAll(leader)).map((r) => r.offset),
        [...expected(all, to), to],
      );
      // A replica away during the first cleaning (its segments are finer) carries out only the second.
      assert.ok(await cleanLog(fine, second, CLEAN));
      const want = await files(leader.dir);
      assert.deepEqual(await files(fine.dir), want);
      // One that copied the leader's merged segments carries the same cleaning out: nothing changes.
      const again = await cleanLog(leader, second, CLEAN);
      assert.equal(again?.segmentsMerged, 0);
      assert.deepEqual(await files(leader.dir), want);
      console.log(`    ${segmentsBefore} segments before the merging cleaning, ${leader.segmentCount} after`);
      // A crash after the merge's swap file was in place and one of its segments deleted: recovery finishes it.
      const crashed = join(dir, "crashed");
      const raw = await PartitionLog.open(crashed, opts());
      await produce(raw, records.slice(0, 400));
      await raw.roll();
      await produce(raw, records.slice(400));
      await raw.roll();
      await produce(raw, [{ key: "z", value: "active" }]);
      assert.ok(await cleanLog(raw, { to, purgeBelow: mid, horizonMs: 0 }, CLEAN));
      const unmerged = raw.closedSegments();
      await raw.close();
      const group = unmerged.filter((s) => s.base < mid && !second.bases!.includes(s.base));
      assert.ok(group.length > 0);
      const start = Math.max(...second.bases!.filter((b) => b < group[0].base));
      const end = unmerged.find((s) => s.base > group[0].base && second.bases!.includes(s.base))?.base ?? mid;
      const name = (base: number) => `${String(base).padStart(20, "0")}.jsonl`;
      await Deno.writeTextFile(
        join(crashed, `${name(start)}.swap.${String(end).padStart(20, "0")}`),
        want.get(name(start))!,
      );
      await Deno.remove(join(crashed, name(group[0].base)));
      const events: string[] = [];
      const reopened = await PartitionLog.open(crashed, opts({ onEvent: (e) => void events.push(e) }));
      try {
        assert.ok(events.includes("clean_swap_finished"), events.join());
        for await (const e of Deno.readDir(crashed)) assert.doesNotMatch(e.name, /\.(cleaned|swap)/);
        assert.ok(await cleanLog(reopened, second, CLEAN));
        assert.deepEqual(await files(crashed), want);
      } finally {
        await reopened.close();
      }
    } finally {
      for (const log of logs) await log.close();
    }
  });
});

Deno.test("a cleaned or merged segment keeps the time its newest record was written (retention.ms and min.compaction.lag.ms read it)", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts());
    try {
      await produce(log, updates(600, 60).map((r, i) => i % 5 === 0 ? { ...r, key: `u${i}` } : r));
      await log.roll();
      await produce(log, [{ key: "z", value: "active" }]);
      const old = new Map<number, number>();
      for (const s of log.closedSegments()) {
        const t = new Date(Date.UTC(2020, 0, 1) + s.base * 1000);
        await Deno.utime(s.dataPath, t, t);
        old.set(s.base, t.getTime());
      }
      const to = log.logEndOffset - 1;
      const cleaned = await cleanLog(log, { to, purgeBelow: 0, horizonMs: 0 }, CLEAN);
      assert.ok(cleaned && cleaned.segmentsRewritten > 0);
      const { merges, ...merge } = mergePlan(log, to, 3000, 256);
      assert.ok(merges > 0);
      const run = await cleanLog(log, { to, purgeBelow: to, horizonMs: 0, ...merge }, CLEAN);
      assert.ok(run && run.segmentsMerged > 0);
      const segs = log.closedSegments();
      for (let i = 0; i < segs.length; i++) {
        const end = segs[i + 1]?.base ?? to;
        const want = Math.max(...[...old].filter(([b]) => b >= segs[i].base && b < end).map(([, t]) => t));
        assert.equal((await Deno.stat(segs[i].dataPath)).mtime?.getTime(), want, `segment ${segs[i].base}`);
      }
    } finally {
      await log.close();
    }
  });
});
