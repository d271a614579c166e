import assert from "node:assert/strict";
import { join } from "node:path";
import { YakError } from "../errors.ts";
import { type Damage, type Fence, type LogOptions, PartitionLog } from "./partition_log.ts";
import { encodeBatch, type RecordInput, SEAL_BYTES, sealLines } from "./record.ts";
import { segmentStem } from "./segment.ts";
import { Rng } from "../../tests/rng.ts";

const TS = 1700000000000;
/** Every record written by {@link fixedRecords} is exactly this many bytes, newline included. */
const LINE = 100;
const MB = 1 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Event = [string, Record<string, unknown>];

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "yak_log_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Options that record every onEvent call in `events`. */
function opts(extra: Partial<LogOptions>, events: Event[] = []): LogOptions {
  return {
    segmentBytes: 64 * MB,
    indexIntervalBytes: 4096,
    onEvent: (event, fields) => events.push([event, fields]),
    ...extra,
  };
}

/** Records for offsets base.. whose lines are exactly LINE bytes, each value naming its offset. */
function fixedRecords(base: number, n: number, epoch: number): RecordInput[] {
  const out: RecordInput[] = [];
  for (let i = 0; i < n; i++) {
    const o = base + i;
    const bare = encodeBatch([{ key: "k", value: "" }], o, epoch, TS, null, 0).length + SEAL_BYTES;
    const tag = `o${o}:`;
    out.push({ key: "k", value: tag + "x".repeat(LINE - bare - tag.length) });
  }
  return out;
}

/**
 * Appends one leader batch of `n` fixed-size records, checks it got the next
 * offset, and adds its lines to `lines` (lines[offset] is that record's line).
 */
async function appendBatch(
  log: PartitionLog,
  lines: string[],
  n: number,
  epoch: number,
  records?: RecordInput[],
): Promise<number> {
  let text = "";
  const { baseOffset, done } = log.append(epoch, n, (base) => {
    text = encodeBatch(
      records ?? fixedRecords(base, n, epoch),
      base,
      epoch,
      TS,
      null,
      0,
    );
    return text;
  });
  await done;
  text = decoder.decode(sealLines(encoder.encode(text))); // as stored: each line with its checksum
  assert.equal(baseOffset, lines.length, "a batch starts at the log end");
  const batchLines = text.split(/(?<=\n)/);
  assert.equal(batchLines.length, n);
  lines.push(...batchLines);
  return baseOffset;
}

/** Reads and checks the result is exactly the stored lines from `from`, offsets included. */
async function readChecked(
  log: PartitionLog,
  lines: string[],
  from: number,
  maxBytes: number,
  end: number,
  expectCount?: number,
): Promise<number> {
  const r = await log.read(from, maxBytes, end);
  const label = `read(${from}, ${maxBytes}, ${end})`;
  assert.equal(r.baseOffset, from, label);
  if (expectCount !== undefined) assert.equal(r.count, expectCount, label);
  assert.ok(from + r.count <= Math.min(end, log.logEndOffset), label);
  assert.equal(r.text, lines.slice(from, from + r.count).join(""), label);
  const got = r.text === "" ? [] : r.text.slice(0, -1).split("\n");
  assert.equal(got.length, r.count, label);
  got.forEach((line, i) => assert.equal(JSON.parse(line).offset, from + i, label));
  return r.count;
}

/** Reads from every offset: everything, one record, and a window bounded by `end`. */
async function checkAllReads(
  log: PartitionLog,
  lines: string[],
  start = 0,
): Promise<void> {
  const end = log.logEndOffset;
  assert.equal(end, lines.length);
  for (let from = start; from <= end; from++) {
    await readChecked(log, lines, from, MB, end, end - from);
    await readChecked(log, lines, from, 1, end, Math.min(1, end - from));
    await readChecked(
      log,
      lines,
      from,
      MB,
      Math.min(from + 7, end),
      Math.min(7, end - from),
    );
  }
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function dataFiles(dir: string): Promise<string[]> {
  return (await listDir(dir)).filter((n) => n.endsWith(".jsonl"));
}

/**
 * Checks every entry of a segment's index points at the start of the line
 * holding the offset it claims; returns the number of entries.
 */
async function checkIndex(dir: string, base: number): Promise<number> {
  const stem = segmentStem(base);
  const idx = await Deno.readFile(join(dir, stem + ".index"));
  // Fixed-size records are ASCII, so string positions are byte positions.
  const data = await Deno.readTextFile(join(dir, stem + ".jsonl"));
  assert.equal(idx.length % 8, 0, "index is whole entries");
  const view = new DataView(idx.buffer, idx.byteOffset, idx.byteLength);
  let prev = -1;
  for (let at = 0; at < idx.length; at += 8) {
    const offset = base + view.getUint32(at, true);
    const pos = view.getUint32(at + 4, true);
    assert.ok(pos > prev, "index positions ascend");
    assert.ok(
      pos === 0 || data[pos - 1] === "\n",
      `index entry at a line start (${pos})`,
    );
    assert.ok(
      data.startsWith(`{"offset":${offset},`, pos),
      `index entry ${offset}@${pos} is right`,
    );
    prev = pos;
  }
  return idx.length / 8;
}

/** Index file bytes for [offset - base, position] entries. */
function indexBytes(entries: [number, number][]): Uint8Array {
  const out = new Uint8Array(entries.length * 8);
  const view = new DataView(out.buffer);
  entries.forEach(([delta, pos], i) => {
    view.setUint32(i * 8, delta, true);
    view.setUint32(i * 8 + 4, pos, true);
  });
  return out;
}

function isYak(code: string, mention?: string): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof YakError, `expected a YakError, got ${err}`);
    assert.equal(err.code, code);
    if (mention !== undefined) {
      assert.ok(err.message.includes(mention), err.message);
    }
    return true;
  };
}

Deno.test("fixedRecords lines are LINE bytes once stored (with their checksums)", () => {
  const text = decoder.decode(sealLines(encoder.encode(encodeBatch(fixedRecords(99, 3, 7), 99, 7, TS, null, 0))));
  assert.deepEqual(text.split(/(?<=\n)/).map((l) => l.length), [
    LINE,
    LINE,
    LINE,
  ]);
});

Deno.test("an empty log reads nothing and refuses offsets past its end", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts({}));
    try {
      assert.equal(log.logEndOffset, 0);
      assert.equal(log.highWatermark, 0);
      assert.equal(log.segmentCount, 1);
      assert.deepEqual(log.segmentPaths, [PartitionLog.segmentFile(dir, 0)]);
      const empty10 = await log.read(0, MB, 10);
      assert.deepEqual([empty10.baseOffset, empty10.count, empty10.text], [0, 0, ""]);
      await assert.rejects(log.read(1, MB, 10), isYak("OUT_OF_RANGE"));
      await assert.rejects(log.read(-1, MB, 10), isYak("OUT_OF_RANGE"));
      assert.deepEqual(await listDir(dir), [
        "00000000000000000000.index",
        "00000000000000000000.jsonl",
        "leader-epochs.json",
      ]);
    } finally {
      await log.close();
    }
  });
});

Deno.test("append takes offsets in call order and reads back (tail cache, disk, reopened)", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    let log = await PartitionLog.open(dir, opts({}));
    try {
      let notified = 0;
      const unsubscribe = log.onAppend(() => notified++);
      // Three appends issued before any is written: offsets follow call order.
      const texts: string[] = [];
      const pending = [5, 1, 4].map((n) =>
        log.append(1, n, (base) => {
          const text = encodeBatch(
            fixedRecords(base, n, 1),
            base,
            1,
            TS,
            null,
            0,
          );
          texts.push(decoder.decode(sealLines(encoder.encode(text))));
          return text;
        })
      );
      assert.deepEqual(pending.map((p) => p.baseOffset), [0, 5, 6]);
      await Promise.all(pending.map((p) => p.done));
      assert.equal(notified, 3);
      unsubscribe();
      for (const t of texts) lines.push(...t.split(/(?<=\n)/));
      assert.equal(log.logEndOffset, 10);
      assert.equal(
        await Deno.readTextFile(PartitionLog.segmentFile(dir, 0)),
        texts.join(""),
      );
      assert.equal(log.sizeBytes, 10 * LINE);
      await appendBatch(log, lines, 5, 1);
      assert.equal(notified, 3, "unsubscribed listeners are not called");
      assert.equal(log.logEndOffset, 15);

      const check = async (l: PartitionLog) => {
        const leo = l.logEndOffset;
        // From 0, from the middle of a batch, bounded by an end (a high watermark).
        await readChecked(l, lines, 0, MB, 15, 15);
        await readChecked(l, lines, 7, MB, 15, 8);
        await readChecked(l, lines, 2, MB, 8, 6);
        await readChecked(l, lines, 0, MB, 1000, leo);
        await readChecked(l, lines, 8, MB, 8, 0);
        await readChecked(l, lines, leo, MB, leo + 5, 0);
        // Small maxBytes: at least one whole record, about maxBytes of them.
        await readChecked(l, lines, 3, 1, 15, 1);
        await readChecked(l, lines, 3, 0, 15, 1);
        const n = await readChecked(l, lines, 3, 250, 15);
        assert.ok(n >= 2 && n <= 3, `~250 bytes of 100-byte records, got ${n}`);
        const m = await readChecked(l, lines, 6, 2 * LINE, 15);
        assert.ok(m >= 2 && m <= 3, `~200 bytes of 100-byte records, got ${m}`);
        await assert.rejects(l.read(leo + 1, MB, 100), isYak("OUT_OF_RANGE"));
        await checkAllReads(l, lines);
      };
      await check(log);
      await log.close();

      // A one-byte tail cache keeps only the last batch: earlier reads hit the disk.
      log = await PartitionLog.open(dir, opts({ tailCacheBytes: 1 }));
      assert.equal(log.logEndOffset, 15);
      await appendBatch(log, lines, 2, 1);
      await appendBatch(log, lines, 3, 1);
      assert.equal(log.logEndOffset, 20);
      await check(log);
      await log.close();

      // After a reopen the tail cache is empty: every read is from disk.
      log = await PartitionLog.open(dir, opts({}));
      assert.equal(log.logEndOffset, 20);
      await check(log);
    } finally {
      await log.close();
    }
  });
});

Deno.test("segments roll at segmentBytes and reads cross them", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const events: Event[] = [];
    const o = opts({ segmentBytes: 2000 }, events);
    let log = await PartitionLog.open(dir, o);
    try {
      // 3 records of 100 bytes per batch: 6 batches (1800 bytes) fit a segment.
      for (let b = 0; b < 20; b++) await appendBatch(log, lines, 3, 1);
      assert.equal(log.logEndOffset, 60);
      const bases = [0, 18, 36, 54];
      const names = bases.map((b) => segmentStem(b) + ".jsonl");
      assert.deepEqual(names[1], "00000000000000000018.jsonl");
      assert.deepEqual(await dataFiles(dir), names);
      assert.equal(log.segmentCount, 4);
      assert.deepEqual(log.segmentPaths, names.map((n) => join(dir, n)));
      for (let i = 0; i < bases.length; i++) {
        const text = await Deno.readTextFile(join(dir, names[i]));
        assert.equal(text, lines.slice(bases[i], bases[i + 1] ?? 60).join(""));
        assert.ok(text.length <= 2000);
        assert.equal(
          JSON.parse(text.slice(0, text.indexOf("\n"))).offset,
          bases[i],
        );
      }
      assert.equal(log.sizeBytes, 60 * LINE);
      await checkAllReads(log, lines);
      // A window spanning three segments, and one ending at a segment boundary.
      await readChecked(log, lines, 10, MB, 50, 40);
      await readChecked(log, lines, 17, MB, 36, 19);
      await log.close();

      // Only the newest batch in memory: reads before it come from disk.
      log = await PartitionLog.open(dir, { ...o, tailCacheBytes: 1 });
      assert.equal(log.logEndOffset, 60);
      await appendBatch(log, lines, 3, 1);
      await checkAllReads(log, lines);
      await log.close();

      log = await PartitionLog.open(dir, o);
      assert.equal(log.logEndOffset, 63);
      assert.equal(log.segmentCount, 4);
      assert.deepEqual(events, [], "a clean reopen repairs nothing");
      await checkAllReads(log, lines);
      await readChecked(log, lines, 5, 1000, 63, 10);
      // Appends continue at the right offset after a reopen.
      assert.equal(await appendBatch(log, lines, 3, 1), 63);
      await checkAllReads(log, lines);
    } finally {
      await log.close();
    }
  });
});

Deno.test("the sparse index is written, and rebuilt when missing or garbage", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    let events: Event[] = [];
    const o = { segmentBytes: 2000, indexIntervalBytes: 200 };
    let log = await PartitionLog.open(dir, opts(o, events));
    try {
      for (let b = 0; b < 20; b++) await appendBatch(log, lines, 3, 1);
      const bases = [0, 18, 36, 54];
      // Appends index each 300-byte batch start (interval 200).
      assert.deepEqual(
        await Promise.all(bases.map((b) => checkIndex(dir, b))),
        [6, 6, 6, 2],
      );
      await log.close();

      // Missing index files: rebuilt from the data, reported for non-last segments.
      for (const b of bases) {
        await Deno.remove(join(dir, segmentStem(b) + ".index"));
      }
      log = await PartitionLog.open(dir, opts(o, events));
      assert.equal(log.logEndOffset, 60);
      assert.deepEqual(
        events,
        [0, 18, 36].map((
          b,
        ) => ["index_rebuilt", { file: join(dir, segmentStem(b) + ".index") }]),
      );
      for (const b of bases) {
        assert.ok(await checkIndex(dir, b) > 0, `index of ${b} rebuilt`);
      }
      await checkAllReads(log, lines);
      await log.close();

      // Garbage index files are rebuilt, not trusted.
      const garbage: [number, Uint8Array][] = [
        [0, encoder.encode("garbage!garbage!")], // whole entries, absurd values
        // A good entry, then a torn one: not whole entries.
        [18, new Uint8Array([...indexBytes([[0, 0]]), 1, 0, 0])],
        // Plausible entries but one points past the data file's end.
        [36, indexBytes([[0, 0], [1, 5000]])],
        // Entries out of order, in the last segment (always rescanned on open).
        [54, indexBytes([[3, 300], [0, 0]])],
      ];
      for (const [b, bytes] of garbage) {
        await Deno.writeFile(join(dir, segmentStem(b) + ".index"), bytes);
      }
      events = [];
      log = await PartitionLog.open(dir, opts(o, events));
      assert.deepEqual(
        events,
        [0, 18, 36].map((
          b,
        ) => ["index_rebuilt", { file: join(dir, segmentStem(b) + ".index") }]),
      );
      for (const [b, bytes] of garbage) {
        const now = await Deno.readFile(join(dir, segmentStem(b) + ".index"));
        assert.notDeepEqual(now, bytes);
        assert.ok(await checkIndex(dir, b) > 0);
      }
      await checkAllReads(log, lines);

      // A good index is trusted as is on the next open.
      await log.close();
      events = [];
      log = await PartitionLog.open(dir, opts(o, events));
      assert.deepEqual(events, []);
      await checkAllReads(log, lines);
    } finally {
      await log.close();
    }
  });
});

Deno.test("a torn tail is cut on open and appends continue after it", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    let events: Event[] = [];
    const o = { segmentBytes: 2000, indexIntervalBytes: 200 };
    let log = await PartitionLog.open(dir, opts(o, events));
    try {
      for (let b = 0; b < 8; b++) await appendBatch(log, lines, 3, 1);
      assert.equal(log.logEndOffset, 24);
      await log.close();

      const last = PartitionLog.segmentFile(dir, 18);
      const before = await Deno.readFile(last);
      assert.equal(before.length, 6 * LINE);
      const torn = encoder.encode('{"offset":24,"epoch":1,"ts":17000');
      await Deno.writeFile(last, torn, { append: true });
      assert.equal((await Deno.stat(last)).size, before.length + torn.length);

      log = await PartitionLog.open(dir, opts(o, events));
      assert.equal(log.logEndOffset, 24);
      assert.deepEqual(
        await Deno.readFile(last),
        before,
        "torn bytes are gone",
      );
      assert.deepEqual(events, [
        ["torn_tail_cut", {
          file: last,
          cutBytes: torn.length,
          keptRecords: 6,
        }],
      ]);
      await checkAllReads(log, lines);
      assert.equal(await appendBatch(log, lines, 3, 2), 24);
      assert.equal(
        await Deno.readTextFile(last),
        lines.slice(18, 27).join(""),
        "the new batch follows the last whole line",
      );
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24]]);
      await log.close();

      events = [];
      log = await PartitionLog.open(dir, opts(o, events));
      assert.equal(log.logEndOffset, 27);
      assert.deepEqual(events, []);
      await checkAllReads(log, lines);
    } finally {
      await log.close();
    }
  });
});

Deno.test("a last segment holding only a torn line is emptied", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const events: Event[] = [];
    let log = await PartitionLog.open(dir, opts({}, events));
    try {
      await appendBatch(log, lines, 4, 1);
      await log.close();
      // A crash right after rolling: the new segment got half a line.
      const next = PartitionLog.segmentFile(dir, 4);
      await Deno.writeFile(next, encoder.encode('{"offset":4,"ep'));
      log = await PartitionLog.open(dir, opts({}, events));
      assert.equal(log.logEndOffset, 4);
      assert.equal(log.segmentCount, 2);
      assert.equal((await Deno.stat(next)).size, 0);
      assert.deepEqual(events, [["torn_tail_cut", {
        file: next,
        cutBytes: 15,
        keptRecords: 0,
      }]]);
      assert.equal(await appendBatch(log, lines, 2, 1), 4);
      assert.equal(await Deno.readTextFile(next), lines.slice(4).join(""));
      await checkAllReads(log, lines);
    } finally {
      await log.close();
    }
  });
});

Deno.test("damaged records in the last segment are cut and set aside, never served", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const log = await PartitionLog.open(dir, opts({ segmentBytes: 2000 }));
    try {
      for (let b = 0; b < 8; b++) await appendBatch(log, lines, 3, 1);
    } finally {
      await log.close();
    }
    const last = PartitionLog.segmentFile(dir, 18);
    const good = lines.slice(18, 23).join("");
    const badLastLines = [
      "this is not json\n",
      lines[23].slice(0, 50) + "\n", // a cut line with a newline: not JSON
      lines[23].replace('"offset":23', '"offset":25'), // wrong offset
      lines[22], // a repeated line: offset 22 where 23 belongs
      '{"epoch":1,"value":"no offset"}\n',
      lines[23].replace('"value"', '"val\u0000ue"').slice(0, -2) + "\n", // parses up to a missing brace
    ];
    for (const bad of badLastLines) {
      await Deno.writeTextFile(last, good + bad);
      const events: Event[] = [];
      const opened = await PartitionLog.open(dir, opts({ segmentBytes: 2000 }, events));
      try {
        assert.equal(opened.logEndOffset, 23, JSON.stringify(bad));
        assert.equal(await Deno.readTextFile(last), good, "only the good records stay");
        const cut = events.find(([e]) => e === "corrupt_records_cut");
        assert.ok(cut, `corrupt_records_cut reported for ${JSON.stringify(bad)}`);
        assert.equal(cut[1].atOffset, 23);
        assert.equal(await Deno.readTextFile(String(cut[1].savedTo)), bad, "the damaged bytes are kept aside");
        await Deno.remove(String(cut[1].savedTo));
        await checkAllReads(opened, lines.slice(0, 23));
      } finally {
        await opened.close();
      }
    }
  });
});

Deno.test("a damaged middle line keeps the records before it; in an older segment it is reported, never read", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const log = await PartitionLog.open(dir, opts({ segmentBytes: 2000 }));
    try {
      for (let b = 0; b < 8; b++) await appendBatch(log, lines, 3, 1);
    } finally {
      await log.close();
    }
    // The last segment (18..23): line 20 overwritten with zeros of the same length.
    const last = PartitionLog.segmentFile(dir, 18);
    const zeros = "\u0000".repeat(lines[20].length - 1) + "\n";
    await Deno.writeTextFile(last, lines.slice(18, 20).join("") + zeros + lines.slice(21, 24).join(""));
    const events: Event[] = [];
    const opened = await PartitionLog.open(dir, opts({ segmentBytes: 2000 }, events));
    try {
      assert.equal(opened.logEndOffset, 20);
      const cut = events.find(([e]) => e === "corrupt_records_cut")!;
      assert.equal(cut[1].keptRecords, 2);
      assert.equal(await Deno.readTextFile(String(cut[1].savedTo)), zeros + lines.slice(21, 24).join(""));
      await checkAllReads(opened, lines.slice(0, 20));
    } finally {
      await opened.close();
    }
    // An older segment (0..17) with a damaged line and no index: the open reports it and
    // reads stop there (a follower copies it again; a leader hands the partition over).
    const first = PartitionLog.segmentFile(dir, 0);
    const text = await Deno.readTextFile(first);
    await Deno.writeTextFile(first, text.replace('{"offset":5,', '{"offset":X,'));
    await Deno.remove(first.replace(".jsonl", ".index"));
    const damage: Damage[] = [];
    const reopened = await PartitionLog.open(dir, opts({ segmentBytes: 2000, onDamage: (d) => damage.push(d) }));
    try {
      assert.deepEqual(damage, [{ dir, offset: 5, file: first, found: "open" }]);
      assert.equal(reopened.damagedFrom, 5);
      await readChecked(reopened, lines, 0, MB, 5, 5);
      // A read that meets it serves the records before it; one that starts there fails.
      await readChecked(reopened, lines, 3, MB, 20, 2);
      await assert.rejects(reopened.read(5, MB, 20), isYak("CORRUPT_LOG", first));
      await readChecked(reopened, lines, 6, MB, 18, 12); // the records after it are intact
      // Truncated below it (a follower healing), the damage is gone.
      await reopened.truncateTo(5);
      assert.equal(reopened.damagedFrom, Infinity);
    } finally {
      await reopened.close();
    }
  });
});

/**
 * 60 records in 20 batches of 3, in segments 0, 18, 36, 54, with epochs
 * 1 from 0, 2 from 24, 4 from 36 (a segment boundary), 5 from 48.
 */
async function epochLog(
  dir: string,
  lines: string[],
  events: Event[] = [],
): Promise<PartitionLog> {
  const log = await PartitionLog.open(
    dir,
    opts({ segmentBytes: 2000, indexIntervalBytes: 200 }, events),
  );
  for (let b = 0; b < 20; b++) {
    await appendBatch(log, lines, 3, b < 8 ? 1 : b < 12 ? 2 : b < 16 ? 4 : 5);
  }
  assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [4, 36], [5, 48]]);
  assert.equal(log.segmentCount, 4);
  return log;
}

async function savedEpochs(dir: string): Promise<unknown> {
  return JSON.parse(await Deno.readTextFile(join(dir, "leader-epochs.json")));
}

Deno.test("truncateTo the middle of a segment", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const events: Event[] = [];
    let log = await epochLog(dir, lines, events);
    try {
      log.highWatermark = 50;
      await log.truncateTo(40); // inside segment 36, inside the batch 39..41
      lines.length = 40;
      assert.equal(log.logEndOffset, 40);
      assert.equal(
        log.highWatermark,
        40,
        "the high watermark comes down to the cut",
      );
      assert.equal(log.segmentCount, 3);
      assert.deepEqual(
        await dataFiles(dir),
        [0, 18, 36].map((b) => segmentStem(b) + ".jsonl"),
      );
      assert.ok(!(await listDir(dir)).includes(segmentStem(54) + ".index"));
      assert.equal(
        await Deno.readTextFile(PartitionLog.segmentFile(dir, 36)),
        lines.slice(36, 40).join(""),
      );
      assert.equal(
        await checkIndex(dir, 36),
        2,
        "index entries past the cut are dropped",
      );
      assert.equal(log.sizeBytes, 40 * LINE);
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [4, 36]]);
      assert.deepEqual(await savedEpochs(dir), [[1, 0], [2, 24], [4, 36]]);
      await checkAllReads(log, lines);
      await assert.rejects(log.read(41, MB, 100), isYak("OUT_OF_RANGE"));

      // Truncating at or past the end changes nothing.
      await log.truncateTo(40);
      await log.truncateTo(45);
      assert.equal(log.logEndOffset, 40);

      assert.equal(await appendBatch(log, lines, 3, 6), 40);
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [4, 36], [6, 40]]);
      assert.equal(log.segmentCount, 3);
      assert.equal(
        await Deno.readTextFile(PartitionLog.segmentFile(dir, 36)),
        lines.slice(36, 43).join(""),
      );
      await readChecked(log, lines, 38, MB, 43, 5);
      await checkAllReads(log, lines);
      await log.close();

      log = await PartitionLog.open(
        dir,
        opts({ segmentBytes: 2000, indexIntervalBytes: 200 }, events),
      );
      assert.equal(log.logEndOffset, 43);
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [4, 36], [6, 40]]);
      assert.deepEqual(events, []);
      await checkAllReads(log, lines);

      // Into a segment loaded from its index file on open (not the last one).
      await log.truncateTo(25);
      lines.length = 25;
      assert.equal(log.logEndOffset, 25);
      assert.equal(
        log.highWatermark,
        0,
        "the high watermark is not in the log files",
      );
      assert.equal(log.segmentCount, 2);
      assert.equal(
        await Deno.readTextFile(PartitionLog.segmentFile(dir, 18)),
        lines.slice(18, 25).join(""),
      );
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24]]);
      await checkAllReads(log, lines);
      assert.equal(await appendBatch(log, lines, 3, 7), 25);
      await checkAllReads(log, lines);
    } finally {
      await log.close();
    }
  });
});

Deno.test("truncateTo a segment boundary, and to zero", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const o = opts({ segmentBytes: 2000, indexIntervalBytes: 200 });
    let log = await epochLog(dir, lines);
    try {
      await log.close();
      // Reopened: the older segments come from their index files.
      log = await PartitionLog.open(dir, o);
      log.highWatermark = 20;
      await log.truncateTo(36); // the base of a segment, where epoch 4 starts
      lines.length = 36;
      assert.equal(log.logEndOffset, 36);
      assert.equal(
        log.highWatermark,
        20,
        "a high watermark below the cut stays",
      );
      assert.equal(log.segmentCount, 2);
      assert.deepEqual(await listDir(dir), [
        "00000000000000000000.index",
        "00000000000000000000.jsonl",
        "00000000000000000018.index",
        "00000000000000000018.jsonl",
        "leader-epochs.json",
      ]);
      assert.equal(
        await Deno.readTextFile(PartitionLog.segmentFile(dir, 18)),
        lines.slice(18, 36).join(""),
        "the segment before the cut is whole",
      );
      assert.deepEqual(
        log.epochs.entries,
        [[1, 0], [2, 24]],
        "epoch 4 started at the cut",
      );
      assert.deepEqual(await savedEpochs(dir), [[1, 0], [2, 24]]);
      await checkAllReads(log, lines);

      // The next batch does not fit segment 18: a new segment 36 is made.
      assert.equal(await appendBatch(log, lines, 3, 6), 36);
      assert.equal(log.segmentCount, 3);
      assert.equal(
        await Deno.readTextFile(PartitionLog.segmentFile(dir, 36)),
        lines.slice(36).join(""),
      );
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [6, 36]]);
      await checkAllReads(log, lines);
      await log.close();
      log = await PartitionLog.open(dir, o);
      assert.equal(log.logEndOffset, 39);
      await checkAllReads(log, lines);

      log.highWatermark = 30;
      await log.truncateTo(0);
      lines.length = 0;
      assert.equal(log.logEndOffset, 0);
      assert.equal(log.highWatermark, 0);
      assert.equal(log.segmentCount, 1);
      assert.equal(log.sizeBytes, 0);
      assert.deepEqual(await dataFiles(dir), ["00000000000000000000.jsonl"]);
      assert.equal((await Deno.stat(PartitionLog.segmentFile(dir, 0))).size, 0);
      assert.deepEqual(log.epochs.entries, []);
      assert.deepEqual(await savedEpochs(dir), []);
      const empty100 = await log.read(0, MB, 100);
      assert.deepEqual([empty100.baseOffset, empty100.count, empty100.text], [0, 0, ""]);
      assert.equal(await appendBatch(log, lines, 2, 8), 0);
      assert.deepEqual(log.epochs.entries, [[8, 0]]);
      await checkAllReads(log, lines);
    } finally {
      await log.close();
    }
  });
});

Deno.test("appendReplica stores the leader's bytes verbatim at the right offset only", async () => {
  await withTempDir(async (dir) => {
    let log = await PartitionLog.open(dir, opts({}));
    try {
      const chunk1 = encodeBatch(
        [
          { key: "ü", value: 'quote " and \n newline' },
          { key: null, value: "😀" },
          { key: "b", valueB64: "AP8=" },
          { key: null, value: "" },
        ],
        0,
        7,
        TS,
        "p-leader",
        100,
      );
      await assert.rejects(
        log.appendReplica(1, 4, chunk1, [[7, 0]]),
        isYak("OUT_OF_RANGE"),
      );
      assert.equal(log.logEndOffset, 0);
      await log.appendReplica(0, 4, chunk1, [[7, 0]]);
      assert.equal(log.logEndOffset, 4);
      const file = PartitionLog.segmentFile(dir, 0);
      assert.deepEqual(await Deno.readFile(file), encoder.encode(chunk1));

      // Behind or ahead of the log end: refused, nothing written.
      for (const base of [3, 5, 0]) {
        await assert.rejects(
          log.appendReplica(base, 1, "{}\n", []),
          isYak("OUT_OF_RANGE", `starts at ${base}`),
        );
      }
      // Lines numbered otherwise than the header says (a count that does not match, lines from elsewhere): refused.
      const next = encodeBatch([{ key: null, value: "x" }, { key: null, value: "y" }], 4, 7, TS, null, 0);
      await assert.rejects(log.appendReplica(4, 3, next, []), isYak("INTERNAL", "holds lines 4..5"));
      await assert.rejects(log.appendReplica(4, 2, next.replace('"offset":4', '"offset":9'), []), isYak("INTERNAL"));
      assert.throws(() => (log.highWatermark = 5), isYak("INTERNAL", "above log end"));
      assert.equal(log.logEndOffset, 4);
      assert.deepEqual(await Deno.readFile(file), encoder.encode(chunk1));

      const chunk2 = encodeBatch([{ key: null, value: "a" }], 4, 7, TS, "p-leader", 104) +
        encodeBatch([{ key: null, value: "b" }], 5, 9, TS + 1, null, 0);
      await log.appendReplica(4, 2, chunk2, [[9, 5]]);
      assert.equal(log.logEndOffset, 6);
      assert.deepEqual(
        await Deno.readFile(file),
        encoder.encode(chunk1 + chunk2),
      );
      assert.deepEqual(log.epochs.entries, [[7, 0], [9, 5]]);
      assert.deepEqual(await savedEpochs(dir), [[7, 0], [9, 5]]);
      const r = await log.read(0, MB, 6);
      assert.equal(r.count, 6);
      assert.equal(r.text, chunk1 + chunk2);
      await log.close();

      log = await PartitionLog.open(dir, opts({}));
      assert.equal(log.logEndOffset, 6);
      assert.equal(
        (await log.read(2, MB, 6)).text,
        (chunk1 + chunk2).split(/(?<=\n)/).slice(2).join(""),
      );
    } finally {
      await log.close();
    }
  });
});

Deno.test("the high watermark never passes the log end and never moves back", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const log = await PartitionLog.open(dir, opts({}));
    try {
      assert.throws(() => {
        log.highWatermark = 1;
      }, /above log end 0/);
      assert.equal(log.highWatermark, 0);
      await appendBatch(log, lines, 5, 1);
      log.highWatermark = 3;
      assert.equal(log.highWatermark, 3);
      log.highWatermark = 2;
      assert.equal(log.highWatermark, 3, "does not move back");
      log.highWatermark = 5;
      assert.equal(log.highWatermark, 5);
      assert.throws(() => {
        log.highWatermark = 6;
      }, /high watermark 6 above log end 5/);
      assert.equal(log.highWatermark, 5);
      // Readers bounded by the high watermark see only committed records.
      await appendBatch(log, lines, 2, 1);
      await readChecked(log, lines, 0, MB, log.highWatermark, 5);
    } finally {
      await log.close();
    }
  });
});

Deno.test("records longer than a read chunk are read whole", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const o = { indexIntervalBytes: MB };
    let log = await PartitionLog.open(dir, opts({ ...o, tailCacheBytes: 1 }));
    try {
      await appendBatch(log, lines, 1, 1);
      // Longer than both the 64 KiB read chunk and the first 1 MiB long-line read.
      await appendBatch(log, lines, 1, 1, [{
        key: "big",
        value: "B".repeat(1_200_000),
      }]);
      await appendBatch(log, lines, 2, 1);
      await appendBatch(log, lines, 1, 1);
      const check = async (l: PartitionLog) => {
        await readChecked(l, lines, 0, 10, 5, 1);
        await readChecked(l, lines, 1, 10, 5, 1);
        await readChecked(l, lines, 1, MB, 5, 1);
        await readChecked(l, lines, 2, 10, 5, 1); // skips the long line
        await readChecked(l, lines, 2, MB, 5, 3);
        await readChecked(l, lines, 0, 4 * MB, 5, 5);
      };
      await check(log);
      await log.close();
      log = await PartitionLog.open(dir, opts(o));
      await check(log);
      await log.close();
      // Fresh appends with the default tail cache: the same from memory.
      await Deno.remove(dir, { recursive: true });
      lines.length = 0;
      log = await PartitionLog.open(dir, opts(o));
      await appendBatch(log, lines, 1, 1);
      await appendBatch(log, lines, 1, 1, [{
        key: "big",
        value: "B".repeat(1_200_000),
      }]);
      await appendBatch(log, lines, 2, 1);
      await appendBatch(log, lines, 1, 1);
      await check(log);
    } finally {
      await log.close();
    }
  });
});

Deno.test("leader epochs are rebuilt from the records when their file is lost", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    let events: Event[] = [];
    let log = await epochLog(dir, lines, events);
    const o = opts({ segmentBytes: 2000, indexIntervalBytes: 200 }, events);
    try {
      await log.close();
      for (const damage of [null, "garbage"]) {
        const path = join(dir, "leader-epochs.json");
        if (damage === null) await Deno.remove(path);
        else await Deno.writeTextFile(path, damage);
        events = [];
        log = await PartitionLog.open(dir, {
          ...o,
          onEvent: (e, f) => events.push([e, f]),
        });
        assert.deepEqual(events, [["epochs_rebuilt", { dir }]]);
        assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [4, 36], [
          5,
          48,
        ]]);
        assert.deepEqual(await savedEpochs(dir), [[1, 0], [2, 24], [4, 36], [
          5,
          48,
        ]]);
        await log.close();
      }
      // Epochs saved past the log end (a write lost in a crash) are dropped on open.
      await Deno.writeTextFile(
        join(dir, "leader-epochs.json"),
        JSON.stringify([[1, 0], [2, 24], [4, 36], [5, 48], [9, 60]]),
      );
      log = await PartitionLog.open(dir, o);
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 24], [4, 36], [5, 48]]);
      assert.deepEqual(await savedEpochs(dir), [[1, 0], [2, 24], [4, 36], [
        5,
        48,
      ]]);
    } finally {
      await log.close();
    }
  });
});

Deno.test("a closed log refuses appends", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts({}));
    await log.close();
    const { done } = log.append(
      1,
      1,
      (base) => encodeBatch([{ key: null, value: "x" }], base, 1, TS, null, 0),
    );
    await assert.rejects(done, isYak("UNAVAILABLE"));
    assert.equal(log.logEndOffset, 0);
    assert.equal((await Deno.stat(PartitionLog.segmentFile(dir, 0))).size, 0);
  });
});

Deno.test("lines read back decode to the records written", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const log = await PartitionLog.open(dir, opts({ tailCacheBytes: 1 }));
    try {
      const records = [
        { key: "k1", value: 'multi\nline "quoted" ü 😀' },
        { key: null, value: "" },
      ];
      await appendBatch(log, lines, 2, 3, records);
      await appendBatch(log, lines, 1, 3);
      const r = await log.read(0, MB, 3);
      const parsed = r.text.slice(0, -1).split("\n").map((l) => {
        const { crc, ...record } = JSON.parse(l);
        assert.match(crc, /^[0-9a-f]{8}$/);
        return record;
      });
      assert.deepEqual(parsed.slice(0, 2), [
        {
          offset: 0,
          epoch: 3,
          ts: TS,
          key: "k1",
          value: records[0].value,
        },
        {
          offset: 1,
          epoch: 3,
          ts: TS,
          key: null,
          value: "",
        },
      ]);
      assert.equal(
        decoder.decode(await Deno.readFile(PartitionLog.segmentFile(dir, 0))),
        r.text,
      );
    } finally {
      await log.close();
    }
  });
});

Deno.test("a read returns at least one record even for maxBytes <= 0 and a long skip", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    // One index entry per 1 MiB: reading from 850 skips 85 KB, more than one 64 KiB disk read.
    const o = { indexIntervalBytes: MB };
    let log = await PartitionLog.open(dir, opts({ ...o, tailCacheBytes: 1 }));
    try {
      for (let b = 0; b < 10; b++) await appendBatch(log, lines, 100, 1);
      const check = async (l: PartitionLog) => {
        for (const maxBytes of [0, -5, 1]) {
          await readChecked(l, lines, 850, maxBytes, 1000, 1);
          await readChecked(l, lines, 950, maxBytes, 1000, 1);
        }
        await readChecked(l, lines, 850, MB, 1000, 150);
      };
      await check(log); // 850 from disk, 950 from the tail cache
      await log.close();
      log = await PartitionLog.open(dir, opts(o));
      await check(log); // all from disk
    } finally {
      await log.close();
    }
  });
});

Deno.test("a follower rolls segments where the leader did, whatever its own segment size", async () => {
  await withTempDir(async (root) => {
    const leaderDir = `${root}/leader`;
    const followerDir = `${root}/follower`;
    // Small leader segments; the follower's own limit would cut elsewhere.
    const leader = await PartitionLog.open(leaderDir, opts({ segmentBytes: 300 }));
    const follower = await PartitionLog.open(followerDir, opts({ segmentBytes: 1000 }));
    try {
      let at = 0;
      for (const n of [3, 1, 7, 2, 5, 4, 9, 1, 6]) {
        const records = Array.from({ length: n }, (_, i) => ({ key: null, value: `record-${at + i}` }));
        await leader.append(1, n, (base) => encodeBatch(records, base, 1, TS, null, 0)).done;
        at += n;
      }
      assert.ok(leader.segmentCount > 3);
      // Replicated in chunks that straddle the leader's segment boundaries.
      for (let from = 0; from < leader.logEndOffset;) {
        const read = await leader.read(from, 700, leader.logEndOffset);
        const rolls = leader.segmentBasesIn(read.baseOffset, read.baseOffset + read.count);
        await follower.appendReplica(
          read.baseOffset,
          read.count,
          read.text,
          [[1, 0]].filter(() => from === 0) as [
            number,
            number,
          ][],
          rolls,
        );
        from += read.count;
      }
      assert.deepEqual(await dataFiles(followerDir), await dataFiles(leaderDir));
      for (const name of await dataFiles(leaderDir)) {
        assert.deepEqual(await Deno.readFile(`${followerDir}/${name}`), await Deno.readFile(`${leaderDir}/${name}`));
      }
      const all = await follower.read(0, MB, follower.logEndOffset);
      assert.equal(all.count, leader.logEndOffset);
    } finally {
      await leader.close();
      await follower.close();
    }
  });
});

Deno.test("retention: whole segments below an offset are deleted, the log start moves, reads below it are OUT_OF_RANGE", async () => {
  await withTempDir(async (dir) => {
    const events: Event[] = [];
    let log = await PartitionLog.open(dir, opts({ segmentBytes: 400 }, events));
    try {
      for (let i = 0; i < 40; i++) {
        const records = Array.from({ length: 3 }, (_, k) => ({ key: null, value: `r${i * 3 + k}` }));
        await log.append(1, 3, (base) => encodeBatch(records, base, 1, TS, null, 0)).done;
      }
      const closed = log.closedSegments();
      assert.ok(closed.length >= 4);
      const cut = closed[3].base;
      // Never the active segment, and only whole segments at or below the offset.
      assert.equal(await log.deleteSegmentsBefore(cut + 1, "test"), cut);
      assert.equal(log.logStartOffset, cut);
      assert.deepEqual(events.filter(([e]) => e === "segments_deleted").map(([, f]) => f.segments), [3]);
      await assert.rejects(log.read(cut - 1, MB, log.logEndOffset), isYak("OUT_OF_RANGE"));
      const rest = await log.read(cut, MB, log.logEndOffset);
      assert.equal(rest.baseOffset, cut);
      assert.equal(rest.count, log.logEndOffset - cut);
      const activeBase = Number(log.segmentPaths.at(-1)!.match(/(\d{20})\.jsonl$/)![1]);
      assert.equal(await log.deleteSegmentsBefore(log.logEndOffset + 100, "test"), activeBase);
      assert.equal(log.segmentCount, 1, "the active segment stays");
      const end = log.logEndOffset;
      await log.close();
      // The log start survives a restart: it is where the first segment file starts.
      log = await PartitionLog.open(dir, opts({ segmentBytes: 400 }));
      assert.equal(log.logEndOffset, end);
      assert.equal(log.logStartOffset, activeBase);
      await log.resetTo(end + 50, "test");
      assert.equal(log.logStartOffset, end + 50);
      assert.equal(log.logEndOffset, end + 50);
      await log.append(1, 1, (base) => encodeBatch([{ key: null, value: "after" }], base, 1, TS, null, 0)).done;
      assert.equal((await log.read(end + 50, MB, end + 51)).text.includes('"after"'), true);
    } finally {
      await log.close();
    }
  });
});

Deno.test("the log start moves inside a segment (deleted records): reads below it are OUT_OF_RANGE, whole segments below go, and it holds across a restart", async () => {
  await withTempDir(async (dir) => {
    const events: Event[] = [];
    let log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }, events));
    const lines: string[] = [];
    try {
      for (let i = 0; i < 4; i++) await appendBatch(log, lines, 3, 1 + Math.floor(i / 2)); // epochs 1, 1, 2, 2
      log.highWatermark = log.logEndOffset;
      assert.deepEqual(log.epochs.entries, [[1, 0], [2, 6]]);
      // Into the third segment (6..8): the two before it go, the third stays with its first record unreadable.
      assert.equal(await log.advanceLogStart(7, "test"), 7);
      assert.equal(log.logStartOffset, 7);
      assert.equal(log.segmentCount, 2);
      assert.deepEqual(log.epochs.entries, [[2, 7]], "the epoch in force at the start begins there");
      await assert.rejects(log.read(6, MB, log.logEndOffset), isYak("OUT_OF_RANGE"));
      await checkAllReads(log, lines, 7);
      // Never down, never past the log end.
      assert.equal(await log.advanceLogStart(2, "test"), 7);
      await assert.rejects(log.advanceLogStart(13, "test"), isYak("OUT_OF_RANGE"));
      await log.close();
      log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }, events));
      assert.equal(log.logStartOffset, 7, "saved beside the segments");
      await assert.rejects(log.read(6, MB, log.logEndOffset), isYak("OUT_OF_RANGE"));
      await checkAllReads(log, lines, 7);
      // A truncation below the start (a follower cut by its leader) leaves an empty log there, and the saved
      // start goes with it.
      await log.truncateTo(5);
      assert.equal(log.logStartOffset, 5);
      assert.equal(log.logEndOffset, 5);
      await log.close();
      log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }, events));
      assert.equal(log.logStartOffset, 5);
      // A start saved past the log end (the tail it deleted up to was lost with the machine): the log starts
      // over there, as Kafka's loader does.
      await log.close();
      await Deno.writeTextFile(join(dir, "log-start.json"), '{"logStart":40}');
      log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }, events));
      assert.deepEqual([log.logStartOffset, log.logEndOffset], [40, 40]);
      assert.ok(events.some(([e]) => e === "log_reset"), JSON.stringify(events));
    } finally {
      await log.close();
    }
  });
});

Deno.test({
  name: "a write whose partial bytes cannot be cut off fences the log; reopened, the log recovers what was written",
  // A pipe in place of the segment's file, whose reader goes away: a write longer than the pipe's buffer
  // fails part way (EPIPE), and cutting the file back (ftruncate of a pipe) fails too (EINVAL).
  ignore: Deno.build.os === "windows",
  fn: async () => {
    await withTempDir(async (dir) => {
      const events: Event[] = [];
      const fences: Fence[] = [];
      let log = await PartitionLog.open(dir, opts({ name: "t/0", onFenced: (f) => fences.push(f) }, events));
      const lines: string[] = [];
      try {
        await appendBatch(log, lines, 3, 1);
        await log.close();
        log = await PartitionLog.open(dir, opts({ name: "t/0", onFenced: (f) => fences.push(f) }, events));
        // The segment's file is opened for appending at the first write after the open: it meets a full device.
        const seg = join(dir, segmentStem(0) + ".jsonl");
        const kept = await Deno.readFile(seg);
        await Deno.remove(seg);
        const made = await new Deno.Command("mkfifo", { args: [seg] }).output();
        assert.ok(made.success, new TextDecoder().decode(made.stderr));
        const big = 10_000; // a MB: well past a pipe's buffer (64 KiB)
        const failed = log.append(1, big, (base) => encodeBatch(fixedRecords(base, big, 1), base, 1, TS, null, 0));
        // A write queued behind the failing one fails too, with the same fence.
        const queued = log.append(1, 1, (base) => encodeBatch(fixedRecords(base, 1, 1), base, 1, TS, null, 0));
        // Opened once the log has opened its end for writing; closed, the write breaks.
        (await Deno.open(seg, { read: true })).close();
        const fenced = isYak("STORAGE", "restart the broker to recover it");
        await assert.rejects(failed.done, fenced);
        await assert.rejects(queued.done, fenced);
        assert.equal(fences.length, 1, "told once");
        assert.match(fences[0].what, /^a write to .*00000000000000000000\.jsonl$/);
        assert.match(fences[0].error, /broken pipe.*; cutting its partial bytes off: invalid argument/i);
        assert.equal(log.fenced?.code, "STORAGE");
        assert.match(log.fenced!.message, /^partition t\/0 \(.*\) is fenced: a write to /);
        // Every later call refuses, the reads too: memory and files may disagree until a restart.
        assert.throws(
          () => log.append(1, 1, (base) => encodeBatch(fixedRecords(base, 1, 1), base, 1, TS, null, 0)),
          fenced,
        );
        await assert.rejects(log.read(0, MB, log.logEndOffset), fenced);
        await assert.rejects(log.readTailText(MB), fenced);
        await assert.rejects(log.truncateTo(1), fenced);
        await assert.rejects(log.appendReplica(3, 1, lines[0], []), fenced);
        await assert.rejects(log.deleteSegmentsBefore(3, "test"), fenced);
        await assert.rejects(log.resetTo(10, "test"), fenced);
        await assert.rejects(log.roll(), fenced);
        assert.equal(log.logEndOffset, 3);
        assert.equal(fences.length, 1);
        await log.close();

        // The restart: the file is back, with the partial line the failed write left, and is recovered.
        await Deno.remove(seg);
        await Deno.writeFile(seg, new Uint8Array([...kept, ...encoder.encode('{"offset":3,"epoch":1,"ts"')]));
        events.length = 0;
        log = await PartitionLog.open(dir, opts({ name: "t/0" }, events));
        assert.equal(log.fenced, null);
        assert.ok(events.some(([e]) => e === "torn_tail_cut"), JSON.stringify(events));
        assert.equal(log.logEndOffset, 3);
        await appendBatch(log, lines, 2, 1);
        await checkAllReads(log, lines);
      } finally {
        await log.close();
      }
    });
  },
});

Deno.test("a segment whose file cannot be deleted stays in the log: the deletion fails, and a later one deletes it", async () => {
  await withTempDir(async (dir) => {
    const events: Event[] = [];
    let log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }, events));
    const lines: string[] = [];
    try {
      for (let i = 0; i < 4; i++) await appendBatch(log, lines, 3, 1);
      assert.equal(log.segmentCount, 4);
      // Something in the way that cannot be removed as a file: a non-empty directory at the second segment's name.
      const second = join(dir, segmentStem(3) + ".jsonl");
      const kept = await Deno.readFile(second);
      await Deno.remove(second);
      await Deno.mkdir(second);
      await Deno.writeTextFile(join(second, "x"), "x");
      await assert.rejects(log.deleteSegmentsBefore(9, "test"), isYak("STORAGE", second));
      // The first segment went, the second did not: it stays, below the log start (saved before anything was
      // deleted), so its records are never read again, nor after a restart.
      assert.equal(log.logStartOffset, 9);
      assert.equal(log.segmentCount, 3);
      assert.equal(log.fenced, null, "nothing uncertain: no fence");
      assert.deepEqual(events.filter(([e]) => e === "segments_deleted").map(([, f]) => f.segments), [1]);
      await assert.rejects(log.read(3, MB, log.logEndOffset), isYak("OUT_OF_RANGE"));
      await Deno.remove(second, { recursive: true });
      await Deno.writeFile(second, kept);
      await log.close();
      log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }));
      assert.equal(log.logStartOffset, 9, "the start holds across a restart, the segments below it still there");
      assert.equal(log.segmentCount, 3);
      await assert.rejects(log.read(3, MB, log.logEndOffset), isYak("OUT_OF_RANGE"));
      // A later call deletes what is left below the start (retention's next pass makes it).
      assert.equal(await log.deleteSegmentsBefore(9, "test"), 9);
      assert.equal(log.segmentCount, 1);
      const end = log.logEndOffset;
      await log.close();
      log = await PartitionLog.open(dir, opts({ segmentBytes: 3 * LINE }));
      assert.equal(log.logStartOffset, 9, "what was reported deleted stays deleted after a restart");
      assert.equal(log.logEndOffset, end);
    } finally {
      await log.close();
    }
  });
});

Deno.test("a follower chunk that crosses a roll keeps the part written before a failed roll", async () => {
  await withTempDir(async (root) => {
    const leader = await PartitionLog.open(`${root}/leader`, opts({ segmentBytes: 3 * LINE }));
    const follower = await PartitionLog.open(`${root}/follower`, opts({}));
    const lines: string[] = [];
    try {
      for (let i = 0; i < 2; i++) await appendBatch(leader, lines, 3, 1);
      const read = await leader.read(0, MB, leader.logEndOffset);
      assert.deepEqual(leader.segmentBasesIn(0, 6), [0, 3]);
      // The follower's second segment cannot be created: an empty directory holds its name.
      const blocked = join(`${root}/follower`, segmentStem(3) + ".jsonl");
      await Deno.mkdir(blocked);
      await assert.rejects(follower.appendReplica(0, 6, read.text, [[1, 0]], [0, 3]));
      // Offsets 0-2 are in the first segment: the log end says so, and a resend starts after them.
      assert.equal(follower.logEndOffset, 3);
      assert.equal(follower.fenced, null);
      await assert.rejects(follower.appendReplica(0, 6, read.text, [[1, 0]], [0, 3]), isYak("OUT_OF_RANGE"));
      const rest = await leader.read(3, MB, leader.logEndOffset);
      await follower.appendReplica(3, 3, rest.text, [], [3]);
      assert.equal((await follower.read(0, MB, 6)).text, lines.join(""));
      assert.deepEqual(await dataFiles(`${root}/follower`), await dataFiles(`${root}/leader`));
    } finally {
      await leader.close();
      await follower.close();
    }
  });
});

/** Sealed stored lines for `offsets` (epoch 1), each value naming its offset. */
function gapLines(offsets: number[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const o of offsets) {
    const line = encodeBatch([{ key: `k${o % 5}`, value: `v${o}` }], o, 1, TS, null, 0);
    out.set(o, decoder.decode(sealLines(encoder.encode(line))));
  }
  return out;
}

/** Every read of a log with gaps from every offset: whole, one record, and a window; `nextOffset` past the gaps. */
async function checkGapReads(log: PartitionLog, lines: Map<number, string>): Promise<void> {
  const end = log.logEndOffset;
  const offsets = [...lines.keys()].filter((o) => o < end);
  for (let from = log.logStartOffset; from <= end; from++) {
    for (const [maxBytes, to] of [[MB, end], [1, end], [MB, Math.min(end, from + 7)]]) {
      const label = `read(${from}, ${maxBytes}, ${to})`;
      const r = await log.read(from, maxBytes, to);
      const want = offsets.filter((o) => o >= from && o < to).slice(0, maxBytes === 1 ? 1 : undefined);
      assert.equal(r.text, want.map((o) => lines.get(o)).join(""), label);
      assert.equal(r.count, want.length, label);
      // A read that took every record below `to` moves past the gap up to it; any other past its last
      // record, and never past a record it did not take.
      const rest = offsets.filter((o) => o >= from && o < to).slice(want.length);
      if (rest.length === 0 && maxBytes === MB) assert.equal(r.nextOffset, Math.max(from, to), label);
      else {
        const least = want.length > 0 ? want.at(-1)! + 1 : from;
        assert.ok(r.nextOffset >= least && r.nextOffset <= (rest[0] ?? to), `${label}: ${r.nextOffset}`);
      }
    }
  }
}

Deno.test("a compacted log reads across offset gaps (tail, disk, reopened), and each read's next offset moves past them", async () => {
  await withTempDir(async (dir) => {
    // Offsets a cleaning left: every third one gone, 20..29 gone, and a gap at the end up to 64.
    const kept = Array.from({ length: 60 }, (_, i) => i).filter((i) => i % 3 !== 1 && (i < 20 || i > 29));
    const lines = gapLines(kept);
    const text = (from: number, to: number) =>
      kept.filter((o) => o >= from && o < to).map((o) => lines.get(o)).join("");
    for (const tailCacheBytes of [MB, 1]) {
      const sub = join(dir, String(tailCacheBytes));
      let log = await PartitionLog.open(sub, opts({ tailCacheBytes, indexIntervalBytes: 100, compacted: true }));
      try {
        // The leader's segments start at 0, 24 (inside the gap) and 40; the chunks cut across them.
        await log.appendReplica(0, kept.filter((o) => o < 17).length, text(0, 17), [[1, 0]], [0], 17);
        await log.appendReplica(17, kept.filter((o) => o >= 17 && o < 31).length, text(17, 31), [], [24], 31);
        await log.appendReplica(31, kept.filter((o) => o >= 31).length, text(31, 60), [], [40], 61);
        await log.appendReplica(61, 0, "", [], [], 64); // a gap alone: the log end moves
        assert.equal(log.logEndOffset, 64);
        assert.deepEqual((await dataFiles(sub)).map((n) => Number(n.slice(0, 20))), [0, 24, 40]);
        log.highWatermark = 64;
        await checkGapReads(log, lines);
        await log.close();
        // Reopened: the gap at the end is not on disk, so the log ends after the last record.
        log = await PartitionLog.open(sub, opts({ tailCacheBytes, indexIntervalBytes: 100, compacted: true }));
        assert.equal(log.logEndOffset, 60);
        await checkGapReads(log, lines);
        // Cut inside a gap: the records before it stay.
        await log.truncateTo(22);
        assert.equal(log.logEndOffset, 22);
        assert.equal((await log.read(0, MB, 22)).text, text(0, 22));
        await log.appendReplica(22, 2, text(30, 33), [], [24], 33);
        assert.equal((await log.read(18, MB, 33)).text, text(18, 33));
      } finally {
        await log.close();
      }
    }
  });
});

Deno.test("a log without gaps refuses a line out of its place; a follower's chunk with gaps makes it a log with gaps", async () => {
  await withTempDir(async (dir) => {
    const lines = gapLines([0, 1, 2, 5, 6]);
    const events: Event[] = [];
    let log = await PartitionLog.open(dir, opts({}));
    try {
      await log.appendReplica(0, 3, [0, 1, 2].map((o) => lines.get(o)).join(""), [[1, 0]]);
      assert.equal(log.gaps, false);
      // Offsets 3 and 4 were cleaned away on the leader: the chunk says it covers them.
      await log.appendReplica(3, 2, lines.get(5)! + lines.get(6)!, [], null, 7);
      assert.equal(log.gaps, true);
      assert.deepEqual(JSON.parse(await Deno.readTextFile(join(dir, "cleaner.json"))).to, 0);
      await log.close();
      log = await PartitionLog.open(dir, opts({}, events)); // no `compacted`: the state file says it
      assert.equal(log.logEndOffset, 7);
      assert.deepEqual(events.filter(([e]) => e === "corrupt_records_cut"), []);
      assert.equal((await log.read(3, MB, 7)).text, lines.get(5)! + lines.get(6)!);
    } finally {
      await log.close();
    }
    // Without the state file the same bytes are a log whose line 3 is not in its place: cut at open.
    await Deno.remove(join(dir, "cleaner.json"));
    const strict = await PartitionLog.open(dir, opts({}, events));
    try {
      assert.equal(strict.logEndOffset, 3);
      assert.equal(events.filter(([e]) => e === "corrupt_records_cut").length, 1);
    } finally {
      await strict.close();
    }
  });
});

Deno.test("a follower rolls where the leader's segments start, also inside a gap: an empty segment the leader removed is moved", async () => {
  await withTempDir(async (dir) => {
    const lines = gapLines([0, 1, 2, 25, 26]);
    const log = await PartitionLog.open(dir, opts({ compacted: true }));
    try {
      await log.appendReplica(0, 3, [0, 1, 2].map((o) => lines.get(o)).join(""), [[1, 0]], [0], 3);
      // The leader had a segment at 10 when this gap was read; it held nothing below 20.
      await log.appendReplica(3, 0, "", [], [10], 20);
      assert.deepEqual((await dataFiles(dir)).map((n) => Number(n.slice(0, 20))), [0, 10]);
      // Since then the leader's cleaning removed segment 10 (empty): its next segment starts at 20.
      await log.appendReplica(20, 2, lines.get(25)! + lines.get(26)!, [], [20], 27);
      assert.deepEqual((await dataFiles(dir)).map((n) => Number(n.slice(0, 20))), [0, 20]);
      assert.equal(log.logEndOffset, 27);
      assert.equal((await log.read(3, MB, 27)).text, lines.get(25)! + lines.get(26)!);
      // The first segment is never moved: the log start stays.
      const fresh = await PartitionLog.open(join(dir, "fresh"), opts({ compacted: true }));
      try {
        await fresh.appendReplica(0, 0, "", [[1, 0]], [0], 5);
        await fresh.appendReplica(5, 1, lines.get(25)!, [], [25], 26);
        assert.deepEqual((await dataFiles(join(dir, "fresh"))).map((n) => Number(n.slice(0, 20))), [0, 25]);
        assert.equal(fresh.logStartOffset, 0);
        assert.equal((await fresh.read(0, MB, 26)).text, lines.get(25));
      } finally {
        await fresh.close();
      }
    } finally {
      await log.close();
    }
  });
});

Deno.test("the tail cache holds what is above the high watermark (up to tailHoldBytes), and lets it go once passed", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    // Each batch of 30 lines (3,000 bytes) is larger than the cache alone takes.
    const log = await PartitionLog.open(dir, opts({ tailCacheBytes: 2000, tailHoldBytes: 10_000 }));
    try {
      for (let i = 0; i < 3; i++) await appendBatch(log, lines, 30, 1);
      // The first batch's bytes on disk are overwritten: a read served from the segment file finds the damage,
      // one served from memory does not.
      const file = await Deno.open(PartitionLog.segmentFile(dir, 0), { write: true });
      await file.write(encoder.encode("#".repeat(LINE)));
      file.close();
      // High watermark 0: every batch is held (9,000 bytes), and the first reads from memory.
      const held = await log.read(0, MB, 90);
      assert.equal(held.count, 90);
      assert.equal(held.text, lines.join(""));
      // Past the first batch: it goes (over the cache's size, and fetched), so a read of it goes to the disk.
      log.highWatermark = 30;
      await assert.rejects(log.read(0, MB, 90), isYak("CORRUPT_LOG"));
      assert.equal((await log.read(30, MB, 90)).count, 60);
      // Past the hold, the oldest goes whatever the high watermark: a fourth batch makes 9,000 bytes again
      // (the second batch still read from memory), a fifth 12,000, over 10,000: the second batch is dropped
      // though the watermark is below its end.
      const again = await Deno.open(PartitionLog.segmentFile(dir, 0), { write: true });
      await again.seek(30 * LINE, Deno.SeekMode.Start);
      await again.write(encoder.encode("#".repeat(LINE)));
      again.close();
      await appendBatch(log, lines, 30, 1);
      assert.equal((await log.read(30, MB, 120)).count, 90);
      await appendBatch(log, lines, 30, 1);
      await assert.rejects(log.read(30, MB, 150), isYak("CORRUPT_LOG"));
      assert.equal((await log.read(60, MB, 150)).count, 90);
    } finally {
      await log.close();
    }
  });
});

Deno.test("reads that take part of a cached chunk take whole lines up to the byte budget, from any offset", async () => {
  await withTempDir(async (dir) => {
    // Seeded, so a failure replays.
    const rng = new Rng(0x1b873593);
    const rand = (n: number) => rng.int(n);
    const lines: string[] = [];
    /** Each appended batch (a chunk of the cache): [base, next). */
    const chunks: [number, number][] = [];
    const log = await PartitionLog.open(dir, opts({ tailCacheBytes: 64 * MB }));
    try {
      for (let b = 0; b < 40; b++) {
        const n = 1 + rand(40);
        const records = Array.from({ length: n }, () => ({ key: null, value: "v".repeat(rand(300)) }));
        const base = await appendBatch(log, lines, n, 1, records);
        chunks.push([base, base + n]);
      }
      const size = (a: number, b: number) => lines.slice(a, b).reduce((n, l) => n + l.length, 0);
      // What a read takes: whole chunks while they fit in maxBytes; of the chunk that does not, its lines while they
      // fit in what is left (its first one whatever its size), and then no more.
      const expected = (from: number, maxBytes: number, end: number) => {
        let count = 0;
        let bytes = 0;
        let next = from;
        for (const [base, after] of chunks.filter(([, after]) => from < after)) {
          if (base >= end || (count > 0 && bytes >= maxBytes)) break;
          if (base >= next && after <= end && bytes + size(base, after) <= maxBytes) {
            count += after - base;
            bytes += size(base, after);
            next = after;
            continue;
          }
          const budget = count === 0 ? Math.max(1, maxBytes - bytes) : maxBytes - bytes;
          let taken = 0;
          let cut = 0;
          while (next < Math.min(after, end) && (taken === 0 || cut + lines[next].length <= budget)) {
            cut += lines[next++].length;
            taken++;
          }
          count += taken;
          bytes += cut;
          if (next < Math.min(after, end)) break;
        }
        return count;
      };
      const logEnd = log.logEndOffset;
      for (let k = 0; k < 2000; k++) {
        const from = rand(logEnd + 1);
        const end = from + rand(logEnd - from + 1);
        const maxBytes = 1 + rand(k % 2 === 0 ? 400 : 20_000);
        const want = expected(from, maxBytes, end);
        const r = await log.read(from, maxBytes, end);
        const label = `read(${from}, ${maxBytes}, ${end})`;
        assert.equal(r.count, want, label);
        assert.ok(from === end || want > 0, label);
        assert.equal(r.nextOffset, from + want, label);
        assert.equal(r.text, lines.slice(from, from + want).join(""), label);
      }
    } finally {
      await log.close();
    }
  });
});

Deno.test("a cleaning's purge point is saved when it starts: after a restart in its middle, followers below it still start over", async () => {
  await withTempDir(async (dir) => {
    let log = await PartitionLog.open(dir, opts({}));
    await log.setCleanState({ to: 10, purgeBelow: 10, horizonMs: 0, at: 1 });
    await log.notePurging(38);
    assert.equal(log.purgedBelow, 38);
    await log.close();
    // Killed mid-cleaning: its segments may already hold no tombstone below 38, and the last finished cleaning says 10.
    log = await PartitionLog.open(dir, opts({}));
    try {
      assert.equal(log.purgedBelow, 38, "the purge point under way, after the restart");
      // A cleaning finished with a lower purge point leaves the one under way in place; one that reached it ends it.
      await log.setCleanState({ to: 20, purgeBelow: 20, horizonMs: 0, at: 2 });
      assert.equal(log.purgedBelow, 38);
      await log.setCleanState({ to: 40, purgeBelow: 38, horizonMs: 0, at: 3 });
      assert.equal(log.cleanState?.purging, undefined);
      assert.equal(log.purgedBelow, 38);
    } finally {
      await log.close();
    }
  });
});

Deno.test("the cleaner's removal of a segment that became the first (the log start moved past the one before) is refused, not an assert", async () => {
  await withTempDir(async (dir) => {
    const log = await PartitionLog.open(dir, opts({}));
    try {
      for (let i = 0; i < 3; i++) {
        await log.append(1, 1, (base) => encodeBatch([{ key: "k", value: `v${i}` }], base, 1, TS, null, 0)).done;
        await log.roll();
      }
      const [, second] = log.closedSegments();
      // The cleaner looked while `second` had a segment before it; retention then deleted that one.
      await log.advanceLogStart(second.base, "test");
      assert.equal(log.closedSegments()[0].base, second.base);
      assert.equal(await log.swapCleaned(second, null), false);
      assert.equal(log.logStartOffset, second.base, "the log start stays");
      assert.equal(log.closedSegments()[0].base, second.base, "the segment stays");
    } finally {
      await log.close();
    }
  });
});
