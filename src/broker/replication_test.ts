/**
 * The follower loop (ReplicaFetcher) against a fake leader: a LeaderEndpoint
 * that answers from a real leader log through the replication contract's
 * encoder and decoder, after any scripted replies. The follower's logs are
 * real (a TopicStore in a temp directory); its broker core is faked.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { encodeBatch } from "../log/record.ts";
import { type LogOptions, PartitionLog } from "../log/partition_log.ts";
import type { BrokerContext } from "./context.ts";
import type { LeaderEndpoint } from "./leader_endpoint.ts";
import {
  decodeFetchReply,
  encodeFetchReply,
  type EpochEnd,
  type EpochEndQuery,
  type FollowerFetch,
  type FollowerFetchResult,
  type FollowerPart,
} from "./replica_protocol.ts";
import { ReplicaFetcher } from "./replication.ts";
import { TopicStore } from "./topic_store.ts";
import { onTheWire } from "./replica_wire_testing.ts";

const KEY = "t/0";
const TS = 1700000000000;
const LEADER = { id: 1, host: "127.0.0.1", port: 1, epoch: 3 };
/** Small segments on the leader, so its chunks carry segment starts the follower must roll at. */
const LEADER_LOG: LogOptions = { segmentBytes: 700, indexIntervalBytes: 256 };
const DEADLINE_MS = 5000;

/** Appends `n` records as a leader in `epoch`: the same lines wherever they are written. */
async function appendAsLeader(log: PartitionLog, epoch: number, n: number): Promise<void> {
  const { done } = log.append(epoch, n, (base) => {
    const records = Array.from({ length: n }, (_, i) => ({ key: null, value: `record ${base + i}` }));
    return encodeBatch(records, base, epoch, TS, null, 0);
  });
  await done;
}

async function contents(log: PartitionLog): Promise<string> {
  return (await log.read(log.logStartOffset, 1 << 20, log.logEndOffset)).text;
}

/** A scripted reply: the frame the leader sends for this fetch (it may be malformed). */
type Step = (f: FollowerFetch) => Promise<Record<string, unknown>>;

/**
 * The leader as the fetcher sees it. Scripted replies go first; then it
 * serves its log (`maxPartBytes` a part) and, once the follower has it all,
 * long-polls until closed. Every reply goes through the contract's decoder.
 */
class FakeLeader implements LeaderEndpoint {
  readonly fetches: FollowerFetch[] = [];
  readonly queries: EpochEndQuery[] = [];
  ends = new Map<string, EpochEnd>();
  opened = 0;
  readonly #steps: Step[];
  readonly #log: PartitionLog | null;
  readonly #maxPartBytes: number;
  #onFetch = () => {};
  #onClose = () => {};

  constructor(log: PartitionLog | null, steps: Step[] = [], maxPartBytes = 600) {
    this.#log = log;
    this.#steps = steps;
    this.#maxPartBytes = maxPartBytes;
  }

  open = (): Promise<LeaderEndpoint> => {
    this.opened++;
    return Promise.resolve(this);
  };

  fetchEpochEnds(query: EpochEndQuery): Promise<Map<string, EpochEnd>> {
    this.queries.push(query);
    return Promise.resolve(new Map(this.ends));
  }

  async fetchRecords(fetch: FollowerFetch): Promise<ReturnType<typeof decodeFetchReply>> {
    this.fetches.push(fetch);
    this.#onFetch();
    const step = this.#steps.shift() ?? ((f: FollowerFetch) => this.serve(f));
    return decodeFetchReply(await step(fetch), fetch.epoch);
  }

  /** What a leader answers: the bytes after the follower's log end, or (caught up) nothing until closed. */
  async serve(f: FollowerFetch, extra: Partial<FollowerFetchResult> = {}): Promise<Record<string, unknown>> {
    const log = this.#log;
    const from = f.offsets.get(KEY) ?? 0;
    if (log === null || from >= log.logEndOffset) return await this.#longPoll();
    const read = await log.read(from, this.#maxPartBytes, log.logEndOffset);
    const to = read.baseOffset + read.count;
    const part: FollowerPart = {
      key: KEY,
      base: read.baseOffset,
      count: read.count,
      chunks: read.chunks,
      byteLength: read.byteLength,
      epochs: log.epochs.within(read.baseOffset, to),
      rolls: log.segmentBasesIn(read.baseOffset, to),
    };
    const res = { epoch: f.epoch, parts: [part], hw: { [KEY]: log.highWatermark }, truncate: {}, logStart: {} };
    return onTheWire(encodeFetchReply({ ...res, ...extra }));
  }

  /** Nothing new: waits until the link is closed, as a leader's long poll outlasts a test. */
  #longPoll(): Promise<never> {
    return new Promise((_, reject) => (this.#onClose = () => reject(new Error("closed"))));
  }

  close(): void {
    this.#onClose();
  }

  /** Resolves at the first fetch that `test` accepts (earlier ones count): every reply before it was applied. */
  fetchWhere(test: (f: FollowerFetch) => boolean, what: string): Promise<FollowerFetch> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no fetch ${what} within ${DEADLINE_MS} ms`)), DEADLINE_MS);
      const check = () => {
        const found = this.fetches.find(test);
        if (found === undefined) return;
        clearTimeout(timer);
        this.#onFetch = () => {};
        resolve(found);
      };
      this.#onFetch = check;
      check();
    });
  }
}

/** The fetcher's broker core: real logs, and what it tells the broker, recorded. */
interface Follower {
  b: BrokerContext;
  store: TopicStore;
  log: PartitionLog;
  events: [string, Record<string, unknown>][];
  healed: [string, number, number][];
  notified: () => number;
}

async function withFollower(
  fn: (f: Follower, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "yak-replication-" });
  const store = await TopicStore.open(join(dir, "follower"), { segmentBytes: 1 << 20, indexIntervalBytes: 4096 });
  await store.apply({ op: "topic", topic: "t", partitions: 1, createdAt: 0 });
  const events: [string, Record<string, unknown>][] = [];
  const healed: [string, number, number][] = [];
  let notified = 0;
  const b = {
    opts: { id: 2, requestTimeoutMs: 1000, replicaFetchMaxBytes: 4096, replicaFetchWaitMs: 100, heartbeatMs: 100 },
    store,
    log: { write: (event: string, fields: Record<string, unknown>) => events.push([event, fields]) },
    healing: new Map<string, number>(),
    failingWrites: new Set<string>(),
    healProgress: (key: string, logEnd: number, hw: number) => healed.push([key, logEnd, hw]),
    notifier: { notify: () => notified++ },
  } as unknown as BrokerContext;
  try {
    await fn({ b, store, log: store.byKey(KEY)!.log, events, healed, notified: () => notified }, dir);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs a fetcher against `leader` until `done` resolves, then stops it. */
async function follow(f: Follower, leader: FakeLeader, done: () => Promise<unknown>): Promise<void> {
  const fetcher = new ReplicaFetcher(f.b, LEADER, leader.open);
  fetcher.start();
  try {
    await done();
  } finally {
    await fetcher.stop();
  }
}

Deno.test("a follower truncates to where the leader's epoch ends, then copies its bytes in order, rolling where it rolled", async () => {
  await withFollower(async (f, dir) => {
    const leaderLog = await PartitionLog.open(join(dir, "leader"), LEADER_LOG);
    try {
      // Both hold the same 10 records of epoch 1; the follower also 5 of an epoch 2 the leader never had.
      await appendAsLeader(leaderLog, 1, 10);
      await appendAsLeader(f.log, 1, 10);
      await appendAsLeader(f.log, 2, 5);
      for (let i = 0; i < 4; i++) await appendAsLeader(leaderLog, 3, 5);
      leaderLog.highWatermark = 25;
      const leader = new FakeLeader(leaderLog);
      leader.ends.set(KEY, { epoch: 1, endOffset: 10 });
      await follow(f, leader, () => leader.fetchWhere((x) => x.offsets.get(KEY) === 30, "from offset 30"));

      assert.deepEqual(leader.queries, [{ epoch: 3, lastEpochs: new Map([[KEY, 2]]) }]);
      assert.deepEqual(f.events.find(([e]) => e === "truncated"), [
        "truncated",
        { partition: KEY, from: 15, to: 10, leader: 1, epoch: 3 },
      ]);
      // Chunk after chunk, each fetch from where the last one ended.
      const froms = leader.fetches.map((x) => x.offsets.get(KEY)!);
      assert.equal(froms[0], 10);
      assert.ok(froms.length > 3 && froms.every((o, i) => i === 0 || o > froms[i - 1]), `fetched from ${froms}`);
      assert.equal(await contents(f.log), await contents(leaderLog));
      assert.deepEqual(f.log.epochs.entries, [[1, 0], [3, 10]]);
      assert.deepEqual(f.log.segmentBasesIn(0, 30), leaderLog.segmentBasesIn(0, 30));
      assert.ok(leaderLog.segmentBasesIn(0, 30).length > 2);
      assert.equal(f.log.highWatermark, 25);
      const first = leader.fetches[0];
      assert.deepEqual(
        [first.followerId, first.epoch, first.maxBytes, first.maxWaitMs, first.failing],
        [2, 3, 4096, 100, false],
      );
      assert.ok(f.notified() >= froms.length - 1);
    } finally {
      await leaderLog.close();
    }
  });
});

Deno.test("a malformed reply is refused whole: nothing cut, appended or marked, the error logged, fetching goes on", async () => {
  await withFollower(async (f, dir) => {
    const leaderLog = await PartitionLog.open(join(dir, "leader"), LEADER_LOG);
    try {
      await appendAsLeader(leaderLog, 1, 15);
      await appendAsLeader(f.log, 1, 10);
      leaderLog.highWatermark = 15;
      // A reply that would cut the log to 0 and mark 100, with a part claiming a byte past the attachment.
      const leader: FakeLeader = new FakeLeader(leaderLog, [async (x) => {
        const frame = await leader.serve(x, { truncate: { [KEY]: 0 }, hw: { [KEY]: 100 } });
        (frame.parts as { len: number }[])[0].len += 1;
        return frame;
      }]);
      leader.ends.set(KEY, { epoch: 1, endOffset: 15 });
      await follow(f, leader, () => leader.fetchWhere((x) => x.offsets.get(KEY) === 15, "from offset 15"));

      const retry = f.events.find(([e]) => e === "replication_retry");
      assert.match(String(retry?.[1].error), /replicate reply is malformed: 'parts\[0\]' ends at byte/);
      assert.equal(f.events.some(([e]) => e === "truncated"), false);
      // The fetch after the refused reply still starts at 10, knowing no high watermark.
      assert.equal(leader.fetches[1].offsets.get(KEY), 10);
      assert.equal(leader.fetches[1].knownHw.get(KEY), 0);
      assert.equal(leader.opened, 2, "a fresh link after the refused reply");
      assert.equal(await contents(f.log), await contents(leaderLog));
      assert.equal(f.log.highWatermark, 15);
    } finally {
      await leaderLog.close();
    }
  });
});

Deno.test("ahead of the leader: cut where it says; a part not at the log end waits; the high watermark stops at the log end", async () => {
  await withFollower(async (f) => {
    await appendAsLeader(f.log, 1, 15);
    f.b.healing.set(KEY, 15);
    const stray = new TextEncoder().encode("x\n");
    const leader = new FakeLeader(null, [() =>
      Promise.resolve(onTheWire(encodeFetchReply({
        epoch: 3,
        parts: [{ key: KEY, base: 20, count: 1, chunks: [stray], byteLength: 2, epochs: [], rolls: [] }],
        hw: { [KEY]: 50 },
        truncate: { [KEY]: 12 },
        logStart: {},
      })))]);
    leader.ends.set(KEY, { epoch: 1, endOffset: 15 });
    await follow(f, leader, () => leader.fetchWhere(() => leader.fetches.length >= 2, "after the first"));

    assert.deepEqual(f.events.find(([e]) => e === "truncated"), [
      "truncated",
      { partition: KEY, from: 15, to: 12, reason: "ahead of the leader" },
    ]);
    assert.equal(f.log.logEndOffset, 12);
    assert.equal(f.log.highWatermark, 12);
    // Healing: the leader hears the follower is not in sync; the broker hears the leader's mark.
    assert.equal(leader.fetches[0].failing, true);
    assert.deepEqual(f.healed, [[KEY, 12, 50]]);
  });
});

Deno.test("below the leader's log start: start over there, then append what follows it", async () => {
  await withFollower(async (f, dir) => {
    const leaderLog = await PartitionLog.open(join(dir, "leader"), LEADER_LOG);
    try {
      await appendAsLeader(f.log, 1, 5);
      for (let i = 0; i < 5; i++) await appendAsLeader(leaderLog, 1, 5);
      leaderLog.highWatermark = 25;
      await leaderLog.deleteSegmentsBefore(20, "a test");
      const start = leaderLog.logStartOffset;
      assert.ok(start > 5 && start <= 20, `leader log start ${start}`);
      // As Replication.serveFetch answers a fetch from below its log start: no part, only where it starts.
      const leader = new FakeLeader(leaderLog, [(x) =>
        Promise.resolve(onTheWire(encodeFetchReply({
          epoch: x.epoch,
          parts: [],
          hw: { [KEY]: 25 },
          truncate: {},
          logStart: { [KEY]: start },
        })))]);
      leader.ends.set(KEY, { epoch: 1, endOffset: 25 });
      await follow(f, leader, () => leader.fetchWhere((x) => x.offsets.get(KEY) === 25, "from offset 25"));

      assert.equal(f.log.logStartOffset, start);
      assert.equal(await contents(f.log), await contents(leaderLog));
    } finally {
      await leaderLog.close();
    }
  });
});

Deno.test("deleted records: a follower moves its log start where the leader's is, inside a segment, and says so", async () => {
  await withFollower(async (f, dir) => {
    const leaderLog = await PartitionLog.open(join(dir, "leader"), LEADER_LOG);
    try {
      for (let i = 0; i < 5; i++) await appendAsLeader(leaderLog, 1, 5);
      leaderLog.highWatermark = 25;
      for (let i = 0; i < 5; i++) await appendAsLeader(f.log, 1, 5);
      await leaderLog.advanceLogStart(17, "a test");
      const leader = new FakeLeader(leaderLog, [(x) =>
        Promise.resolve(onTheWire(encodeFetchReply({
          epoch: x.epoch,
          parts: [],
          hw: { [KEY]: 25 },
          truncate: {},
          logStart: { [KEY]: 17 },
        })))]);
      leader.ends.set(KEY, { epoch: 1, endOffset: 25 });
      // The next fetch tells the leader where this replica's log starts now (DeleteRecords waits for it).
      await follow(f, leader, () => leader.fetchWhere((x) => x.logStarts?.get(KEY) === 17, "with log start 17"));
      assert.equal(f.log.logStartOffset, 17);
      assert.equal(await contents(f.log), await contents(leaderLog));
    } finally {
      await leaderLog.close();
    }
  });
});

Deno.test("a former leader with appends still queued reconciles on the log they leave: its old epoch's records are cut, not kept beside the new leader's", async () => {
  await withFollower(async (f, dir) => {
    const leaderLog = await PartitionLog.open(join(dir, "leader"), LEADER_LOG);
    try {
      // The new leader (epoch 3) never had the old one's epoch 2: its records start at 0.
      for (let i = 0; i < 4; i++) await appendAsLeader(leaderLog, 3, 5);
      leaderLog.highWatermark = 20;
      const leader = new FakeLeader(leaderLog);
      leader.ends.set(KEY, { epoch: 2, endOffset: 0 });
      // As the old leader, this broker took offsets 0-4 in epoch 2; the write is still queued (its epoch file is
      // being saved) when the fetcher starts, as in a leader paused (SIGSTOP) with writes queued.
      const queued = f.log.append(2, 5, (base) =>
        encodeBatch(
          Array.from({ length: 5 }, (_, i) => ({ key: null, value: `old ${base + i}` })),
          base,
          2,
          TS,
          null,
          0,
        ));
      assert.equal(f.log.logEndOffset, 0, "the write has not landed yet");
      await follow(f, leader, () => leader.fetchWhere((x) => x.offsets.get(KEY) === 20, "from offset 20"));
      await queued.done;
      // Before: the log end was read before the write landed (0, nothing to ask), the old records stayed at
      // offsets 0-4 and the follower fetched from 5: same offsets, other records, another epoch.
      assert.deepEqual(leader.queries, [{ epoch: 3, lastEpochs: new Map([[KEY, 2]]) }]);
      assert.equal(await contents(f.log), await contents(leaderLog));
      assert.deepEqual(f.log.epochs.entries, [[3, 0]]);
    } finally {
      await leaderLog.close();
    }
  });
});
