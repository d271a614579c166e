/**
 * Bad input, end to end: invalid topic names, oversized records, unknown
 * partitions, malformed frames, out-of-range offsets, CLI misuse, and a torn
 * segment tail, each against real zookeeper and broker processes.
 *
 * Run: deno test --allow-net --allow-read --allow-write --allow-env --allow-run tests/bad_input_test.ts
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Connection } from "../src/protocol/connection.ts";
import { YakError } from "../src/errors.ts";
import { FrameReader, writeAll } from "../src/protocol/frame.ts";
import { eventually, type RunResult, seqText, TestCluster, Waiters, withDeadline, yak } from "./harness.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `yak ARGS` with a deadline well under the test's. */
function run(args: string[], opts: { stdin?: string | Uint8Array; timeoutMs?: number } = {}): Promise<RunResult> {
  return yak(args, { timeoutMs: 20_000, ...opts });
}

/**
 * Asserts a failed CLI run: non-zero exit, nothing on stdout, exactly one
 * stderr line matching `pattern`, no stack trace, no raw control characters.
 */
function assertCliError(res: RunResult, pattern: RegExp, what: string): void {
  const detail = `${what}\nexit ${res.code}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`;
  assert.notEqual(res.code, 0, `expected a non-zero exit: ${detail}`);
  assert.equal(res.stdout, "", `expected no stdout: ${detail}`);
  assert.doesNotMatch(res.stderr, /^\s+at /m, `stack trace printed: ${detail}`);
  const control = [...res.stderr].find((ch) => {
    const c = ch.charCodeAt(0);
    return (c < 0x20 && c !== 0x0a) || c === 0x7f;
  });
  assert.equal(control, undefined, `raw control character printed: ${detail}`);
  const lines = res.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected a one-line error: ${detail}`);
  assert.match(lines[0], pattern, detail);
}

/** The YakError a request fails with (fails the test if it succeeds). */
async function errorOf(p: Promise<unknown>): Promise<YakError> {
  let value: unknown;
  try {
    value = await p;
  } catch (err) {
    if (err instanceof YakError) return err;
    throw err;
  }
  assert.fail(`expected an error, got ${JSON.stringify(value)}`);
}

/** Every directory under `root`, relative, sorted. */
async function dirTree(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isDirectory) continue;
      out.push(`${rel}${e.name}`);
      await walk(join(dir, e.name), `${rel}${e.name}/`);
    }
  };
  await walk(root, "");
  return out.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** A raw TCP connection: bytes out, response lines in, with timeouts. */
class RawConn {
  readonly conn: Deno.TcpConn;
  readonly lines: string[] = [];
  ended = false;
  readonly #waiters = new Waiters();
  readonly #pump: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#pump = this.#read();
  }

  static async open(port: number): Promise<RawConn> {
    return new RawConn(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async #read(): Promise<void> {
    // Every line as it comes: these tests read error frames, never attachments.
    const reader = new FrameReader(this.conn, 64 * 1024 * 1024);
    try {
      while (true) {
        const lines = await reader.next();
        if (lines === null) break;
        this.lines.push(...lines);
        this.#notify();
      }
    } catch { /* reset by the peer, or closed by us */ }
    this.ended = true;
    this.#notify();
  }

  #notify(): void {
    this.#waiters.notify();
  }

  async #until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    await this.#waiters.until(
      () => pred() || undefined,
      timeoutMs,
      () => new Error(`${what} within ${timeoutMs} ms (lines so far: ${this.lines.join(" | ")})`),
    );
  }

  write(data: string | Uint8Array): Promise<void> {
    return writeAll(this.conn, typeof data === "string" ? encoder.encode(data) : data);
  }

  /** The next response frame, parsed. */
  async next(timeoutMs = 5000): Promise<Record<string, unknown>> {
    await this.#until(() => this.lines.length > 0 || this.ended, timeoutMs, "no response frame");
    const line = this.lines.shift();
    if (line === undefined) {
      throw new Error("connection closed before a response frame");
    }
    return JSON.parse(line);
  }

  /** Sends one line and returns the response frame. */
  async ask(line: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
    await this.write(line + "\n");
    return await this.next(timeoutMs);
  }

  /** Resolves once the peer has closed the connection. */
  waitEnded(timeoutMs = 5000): Promise<void> {
    return this.#until(() => this.ended, timeoutMs, "connection not closed by the peer");
  }

  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch { /* already closed */ }
    await this.#pump;
  }
}

/** Asserts an error frame with `code` (and `id`, when given). */
function assertErrorFrame(frame: Record<string, unknown>, code: string, id: number | null, what: string): void {
  const detail = `${what}: ${JSON.stringify(frame)}`;
  assert.equal(frame.ok, false, detail);
  assert.equal(frame.code, code, detail);
  assert.equal(frame.id, id, detail);
  assert.equal(typeof frame.message, "string", detail);
}

/**
 * Garbage on one connection to `port` (a broker or the zookeeper): every bad
 * line gets an error frame and the connection stays usable; a frame over the
 * limit (16 MiB on brokers, 1 MiB on the zookeeper) gets FRAME_TOO_LARGE and
 * the connection is closed.
 */
async function malformedFrames(port: number, who: string, topic: string, limitBytes: number): Promise<void> {
  const raw = await RawConn.open(port);
  try {
    assertErrorFrame(await raw.ask("this is not json"), "INVALID_REQUEST", null, `${who}: not JSON`);
    const meta = await raw.ask('{"id":2,"type":"metadata"}');
    assert.equal(meta.id, 2, `${who}: metadata after garbage: ${JSON.stringify(meta)}`);
    assert.equal(meta.ok, true, `${who}: metadata after garbage: ${JSON.stringify(meta)}`);

    const invalid: [string, string][] = [
      ["[1,2,3]", "a JSON array"],
      ["null", "JSON null"],
      ['"metadata"', "a JSON string"],
      ["", "an empty line"],
      ['{"id":"x","type":1}', "a string id and a number type"],
      ['{"type":"metadata"}', "no id"],
      ['{"id":-1,"type":"metadata"}', "a negative id"],
      ['{"id":1.5,"type":"metadata"}', "a fractional id"],
      ['{"id":9,"type":null}', "a null type"],
      [`{"id":9,"type":"${"t".repeat(100)}"}`, "a 100-char type"],
    ];
    for (const [line, what] of invalid) {
      assertErrorFrame(await raw.ask(line), "INVALID_REQUEST", null, `${who}: ${what}`);
    }
    // Several lines in one write, bad and good mixed: each answered, in step.
    await raw.write('{oops\n{"id":7,"type":"metadata"}\n[]\n');
    const replies = [await raw.next(), await raw.next(), await raw.next()];
    assert.equal(
      replies.filter((f) => f.code === "INVALID_REQUEST" && f.id === null)
        .length,
      2,
      JSON.stringify(replies),
    );
    assert.ok(replies.some((f) => f.id === 7 && f.ok === true), JSON.stringify(replies));

    if (who !== "zookeeper") {
      assertErrorFrame(
        await raw.ask(`{"id":3,"type":"fetch","topic":"${topic}","offsets":{"0":-5}}`),
        "INVALID_REQUEST",
        3,
        `${who}: negative fetch offset`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":4,"type":"fetch","topic":"${topic}","offsets":{"0":0.5}}`),
        "INVALID_REQUEST",
        4,
        `${who}: fractional fetch offset`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":5,"type":"fetch","topic":"${topic}","offsets":[0]}`),
        "INVALID_REQUEST",
        5,
        `${who}: offsets as an array`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":6,"type":"produce","topic":"${topic}","partition":1.5,"records":[{"v":"x"}]}`),
        "INVALID_REQUEST",
        6,
        `${who}: fractional partition`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":8,"type":"produce","topic":"${topic}","partition":"0","records":[{"v":"x"}]}`),
        "INVALID_REQUEST",
        8,
        `${who}: partition as a string`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":10,"type":"produce","topic":"${topic}","partition":0,"records":[{"v":1}]}`),
        "INVALID_REQUEST",
        10,
        `${who}: a number as a record value`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":11,"type":"produce","topic":"${topic}","partition":0,"records":[]}`),
        "INVALID_REQUEST",
        11,
        `${who}: no records`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":12,"type":"produce","topic":"${topic}","partition":0,"acks":7,"records":[{"v":"x"}]}`),
        "INVALID_REQUEST",
        12,
        `${who}: acks 7`,
      );
      assertErrorFrame(
        await raw.ask(`{"id":13,"type":"produce","topic":"${topic}","partition":0,"records":[{"b":"not base64!"}]}`),
        "INVALID_REQUEST",
        13,
        `${who}: bad base64`,
      );
      for (
        const [id, h, what, code] of [
          [14, '"trace"', "headers as a string", undefined],
          [15, '[["trace"]]', "a header without a value", undefined],
          [16, '[[1,"x"]]', "a header with a number key", undefined],
          [17, '[["trace",{}]]', "a header with an object value", undefined],
          // Too many headers is the record rules' refusal, the same for both protocols.
          [18, JSON.stringify(Array.from({ length: 1001 }, () => ["k", "v"])), "1001 headers", "MESSAGE_TOO_LARGE"],
        ] as const
      ) {
        assertErrorFrame(
          await raw.ask(
            `{"id":${id},"type":"produce","topic":"${topic}","partition":0,"records":[{"v":"x","h":${h}}]}`,
          ),
          code ?? "INVALID_REQUEST",
          id,
          `${who}: ${what}`,
        );
      }
    } else {
      assertErrorFrame(
        await raw.ask('{"id":3,"type":"heartbeat","brokerId":"one"}'),
        "INVALID_REQUEST",
        3,
        `${who}: heartbeat with a string broker id`,
      );
      assertErrorFrame(
        await raw.ask('{"id":4,"type":"register","brokerId":1.5,"host":"h","port":1}'),
        "INVALID_REQUEST",
        4,
        `${who}: register with a fractional broker id`,
      );
    }
    assertErrorFrame(await raw.ask('{"id":20,"type":"explode"}'), "UNKNOWN_REQUEST", 20, `${who}: unknown type`);
    const again = await raw.ask('{"id":21,"type":"metadata"}');
    assert.equal(again.ok, true, `${who}: still usable: ${JSON.stringify(again)}`);
  } finally {
    await raw.close();
  }

  // Over the frame limit: limit + 1 MiB without a newline, in 1 MiB chunks.
  const big = await RawConn.open(port);
  try {
    const chunk = new Uint8Array(1 << 20).fill(0x61);
    let sent = 0;
    try {
      for (let i = 0; i < limitBytes / chunk.length + 1 && !big.ended; i++) {
        await big.write(chunk);
        sent += chunk.length;
      }
    } catch { /* the server closed the connection while we were still writing */ }
    assert.ok(sent > 0, `${who}: nothing could be sent`);
    const frame = await big.next(10_000);
    assertErrorFrame(frame, "FRAME_TOO_LARGE", null, `${who}: frame over the limit`);
    assert.match(
      String(frame.message),
      new RegExp(`\\b${limitBytes}\\b`),
      `${who}: the limit is named: ${frame.message}`,
    );
    await big.waitEnded(5000);
    assert.deepEqual(big.lines, [], `${who}: nothing after FRAME_TOO_LARGE`);
  } finally {
    await big.close();
  }

  // The server took no harm: a new connection is served.
  const fresh = await Connection.open("127.0.0.1", port);
  try {
    const meta = await fresh.request({ type: "metadata" }, 5000);
    assert.equal(meta.ok, true);
  } finally {
    fresh.close();
  }
}

Deno.test("bad input is refused cleanly and leaves the cluster serving", async (t) => {
  const cluster = await TestCluster.start({ brokers: 3 });
  try {
    await withDeadline(50_000, "bad input test", async () => {
      const zk = cluster.zkFlag;
      const brokerIds = [...cluster.brokers.keys()];
      const leaderPort = async () => (await cluster.lease()).port;

      // A 3-partition topic with a few records, for the steps below.
      const created = await run(["topics", "--create", "three", "--partitions", "3", ...zk]);
      assert.equal(created.code, 0, created.stderr);
      assert.match(created.stdout, /created topic 'three' with 3 partitions/);
      const seeded = await run(["produce", "--topic", "three", "--partition", "0", "--quiet", ...zk], {
        stdin: "a\nb\nc\n",
      });
      assert.equal(seeded.code, 0, seeded.stderr);

      await t.step(
        "invalid topic names: INVALID_TOPIC, nothing created anywhere",
        async () => {
          // Followers must have replicated 'three' before the snapshot.
          await eventually(
            async () =>
              (await Promise.all(
                brokerIds.map((id) => exists(join(cluster.topicsDir(id), "three", "2"))),
              )).every((x) => x),
            10_000,
            "topic 'three' on every broker",
          );
          const before = await dirTree(cluster.dir);
          const long = "a".repeat(250);
          const shown = (name: string) => JSON.stringify(name.length > 60 ? name.slice(0, 60) + "..." : name);
          const names = ["../x", "a/b", "..", ".", long, "a\u0001b", "../../evil", "x y", "__cluster"];
          const results = await Promise.all(
            names.map((name) => run(["produce", "--topic", name, "--message", "a", ...zk])),
          );
          for (let i = 0; i < names.length; i++) {
            const expected = new RegExp(
              `^yak produce: invalid topic name ${shown(names[i]).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: `,
            );
            assertCliError(results[i], expected, `produce --topic ${JSON.stringify(names[i])}`);
          }
          const [empty, consumeBad, createBad, describeBad] = await Promise.all(
            [
              run(["produce", "--topic", "", "--message", "a", ...zk]),
              run(["consume", "--topic", "../x", "--from-beginning", "--timeout-ms", "1000", ...zk]),
              run(["topics", "--create", "../x", ...zk]),
              run(["topics", "--describe", "a/b", ...zk]),
            ],
          );
          assertCliError(empty, /^yak produce: --topic needs a value, not ''/, "produce --topic ''");
          assertCliError(consumeBad, /^yak consume: invalid topic name "\.\.\/x": /, "consume --topic ../x");
          assertCliError(createBad, /^yak topics: invalid topic name "\.\.\/x": /, "topics --create ../x");
          assertCliError(describeBad, /^yak topics: invalid topic name "a\/b": /, "topics --describe a/b");

          // The same names in raw frames, to the leader and (for reads) to every broker.
          const conn = await Connection.open("127.0.0.1", await leaderPort());
          try {
            const evil = await errorOf(
              conn.request({ type: "produce", topic: "../evil", partition: 0, records: [{ v: "x" }] }, 5000),
            );
            assert.equal(evil.code, "INVALID_TOPIC", evil.message);
            assert.match(evil.message, /"\.\.\/evil"/);
            const rawNames: unknown[] = ["a/b", "..", ".", "", long, "a\u0001b", "../../evil", "__cluster", 42, null];
            for (const topic of rawNames) {
              const err = await errorOf(
                conn.request({ type: "produce", topic, partition: 0, records: [{ v: "x" }] }, 5000),
              );
              assert.equal(err.code, "INVALID_TOPIC", `produce ${JSON.stringify(topic)}: ${err.message}`);
            }
            const requests: Record<string, unknown>[] = [
              { type: "metadata", topic: "../evil", create: true },
              { type: "create_topic", topic: "../evil", partitions: 1 },
              { type: "alter_topic", topic: "../evil", partitions: 2 },
              { type: "list_offsets", topic: "../evil" },
              { type: "committed", group: "g", topic: "../evil" },
              { type: "commit", group: "g", topic: "../evil", offsets: { "0": 0 } },
              { type: "register", role: "producer", client: "c", topic: "../evil" },
            ];
            for (const body of requests) {
              const err = await errorOf(conn.request(body, 5000));
              assert.equal(err.code, "INVALID_TOPIC", `${JSON.stringify(body)}: ${err.message}`);
            }
            // Group ids never touch a path, so any string is one (as in Kafka); an empty one is not.
            const group = await errorOf(
              conn.request({ type: "commit", group: "", topic: "three", offsets: { "0": 0 } }, 5000),
            );
            assert.equal(group.code, "INVALID_ARGUMENT", group.message);
          } finally {
            conn.close();
          }
          for (const id of brokerIds) {
            const c = await Connection.open("127.0.0.1", cluster.brokerPorts.get(id)!);
            try {
              const err = await errorOf(c.request({ type: "fetch", topic: "../evil", offsets: { "0": 0 } }, 5000));
              assert.equal(err.code, "INVALID_TOPIC", `fetch on broker ${id}: ${err.message}`);
            } finally {
              c.close();
            }
          }

          assert.deepEqual(await dirTree(cluster.dir), before, "a directory appeared");
          for (const target of ["evil", "x", "a"]) {
            assert.equal(await exists(join(cluster.dir, target)), false, `${target} in the data dir`);
            for (const id of brokerIds) {
              assert.equal(await exists(join(cluster.dir, `broker-${id}`, target)), false, `broker-${id}/${target}`);
              assert.equal(await exists(join(cluster.topicsDir(id), target)), false, `broker-${id}/topics/${target}`);
            }
          }
        },
      );

      await t.step(
        "oversized record: MESSAGE_TOO_LARGE, then normal traffic works",
        async () => {
          const line = "x".repeat(1_200_000) + "\n";
          const res = await run(["produce", "--topic", "big", ...zk], { stdin: line });
          // The error, then the summary: which lines were not stored.
          const [error, summary, ...rest] = res.stderr.trimEnd().split("\n");
          assert.notEqual(res.code, 0);
          assert.match(
            error,
            /^yak produce: line 1 \(1200000 bytes\) is larger than topic 'big' takes \(1048576 bytes/,
          );
          assert.match(
            summary,
            /^yak produce: 0 records \(0 bytes\) acknowledged to 'big', 1 not acknowledged \(line 1\)/,
          );
          assert.deepEqual(rest, []);

          const conn = await Connection.open("127.0.0.1", await leaderPort());
          try {
            const tooLarge: [string, Record<string, unknown>][] = [
              ["1.2 MB text", { v: "x".repeat(1_200_000) }],
              ["1.2 MB of 2-byte UTF-8", { v: "é".repeat(600_000) }],
              ["1.2 MB base64", { b: btoa("x".repeat(1_200_000)) }],
              ["1.2 MB key", { k: "k".repeat(1_200_000), v: "x" }],
              ["0.6 MB key + 0.6 MB text", { k: "k".repeat(600_000), v: "x".repeat(600_000) }],
              ["0.6 MB key + 0.6 MB base64", { k: "k".repeat(600_000), b: btoa("x".repeat(600_000)) }],
              ["0.6 MB header value + 0.6 MB text", { v: "x".repeat(600_000), h: [["h", "y".repeat(600_000)]] }],
              ["0.6 MB header key + 0.6 MB base64", { b: btoa("x".repeat(600_000)), h: [["h".repeat(600_000), null]] }],
              ["two 0.4 MB headers + 0.4 MB text", {
                v: "x".repeat(400_000),
                h: [["a", "y".repeat(400_000)], ["b", "z".repeat(400_000)]],
              }],
            ];
            for (const [what, record] of tooLarge) {
              const err = await errorOf(
                conn.request({ type: "produce", topic: "big", partition: 0, records: [record] }, 10_000),
              );
              assert.equal(err.code, "MESSAGE_TOO_LARGE", `${what}: ${err.message}`);
            }
            // Nothing of it was stored: the topic was not even created.
            const missing = await errorOf(conn.request({ type: "list_offsets", topic: "big" }, 5000));
            assert.equal(missing.code, "UNKNOWN_TOPIC", missing.message);
            // A record of exactly the limit (key included) is still fine.
            const limit = 1024 * 1024;
            const edge = await conn.request({
              type: "produce",
              topic: "edge",
              partition: 0,
              records: [{ k: "kkkkkkkkkk", v: "x".repeat(limit - 10) }],
            }, 10_000);
            assert.equal(edge.baseOffset, 0, JSON.stringify(edge));
          } finally {
            conn.close();
          }

          const ok = await run(["produce", "--topic", "big", "--message", "small", ...zk]);
          assert.equal(ok.code, 0, ok.stderr);
          const got = await run(["consume", "--topic", "big", "--from-beginning", "--timeout-ms", "1500", ...zk]);
          assert.equal(got.code, 0, got.stderr);
          assert.equal(got.stdout, "small\n");
        },
      );

      await t.step("unknown partition: the valid range is named", async () => {
        const [produced, consumed, negative] = await Promise.all([
          run(["produce", "--topic", "three", "--partition", "99", "--message", "x", ...zk]),
          run(["consume", "--topic", "three", "--partition", "99", "--timeout-ms", "2000", ...zk]),
          run(["produce", "--topic", "three", "--partition", "-1", "--message", "x", ...zk]),
        ]);
        assertCliError(produced, /^yak produce: .*partitions 0\.\.2.*\b99\b/, "produce --partition 99");
        assertCliError(consumed, /^yak consume: .*partitions 0\.\.2.*\b99\b/, "consume --partition 99");
        assertCliError(negative, /^yak produce: .*--partition/, "produce --partition -1");

        const conn = await Connection.open("127.0.0.1", await leaderPort());
        try {
          const fetch = await errorOf(conn.request({ type: "fetch", topic: "three", offsets: { "99": 0 } }, 5000));
          assert.equal(fetch.code, "UNKNOWN_PARTITION", fetch.message);
          assert.match(fetch.message, /0\.\.2/);
          // Keys must be partition numbers as written: "", " 0", "00" and
          // "-0" are not aliases of partition 0.
          for (const p of ["-1", "1.5", "x", "3", "", " 0", "00", "-0", "1e0"]) {
            const err = await errorOf(conn.request({ type: "fetch", topic: "three", offsets: { [p]: 0 } }, 5000));
            assert.equal(err.code, "UNKNOWN_PARTITION", `fetch partition '${p}': ${err.message}`);
          }
          const produce = await errorOf(
            conn.request({ type: "produce", topic: "three", partition: 99, records: [{ v: "x" }] }, 5000),
          );
          assert.equal(produce.code, "UNKNOWN_PARTITION", produce.message);
          const commit = await errorOf(
            conn.request({ type: "commit", group: "g", topic: "three", offsets: { "99": 0 } }, 5000),
          );
          assert.equal(commit.code, "UNKNOWN_PARTITION", commit.message);
          const alias = await errorOf(
            conn.request({ type: "commit", group: "g", topic: "three", offsets: { "": 1 } }, 5000),
          );
          assert.equal(alias.code, "UNKNOWN_PARTITION", alias.message);
        } finally {
          conn.close();
        }
        for (const id of brokerIds) {
          const parts = [];
          for await (
            const e of Deno.readDir(join(cluster.topicsDir(id), "three"))
          ) if (e.isDirectory) parts.push(e.name);
          assert.deepEqual(parts.sort(), ["0", "1", "2"], `partitions of 'three' on broker ${id}`);
        }
      });

      await t.step(
        "out-of-range fetch offset: the leader names the partition's range (the consumer resets)",
        async () => {
          const lease = await cluster.lease();
          const conn = await Connection.open("127.0.0.1", lease.port);
          try {
            const offsets = await conn.request({ type: "list_offsets", topic: "three" }, 5000);
            const end0 = (offsets.end as Record<string, number>)["0"];
            assert.equal(end0, 3);
            // A committed offset may be past the end (Kafka stores any): no records, and [log start, hw] to reset to.
            for (const from of [1_000_000, end0 + 1]) {
              const past = await conn.request({ type: "fetch", topic: "three", offsets: { "0": from } }, 5000);
              assert.deepEqual(past.parts, [], `from ${from}`);
              assert.deepEqual(past.outOfRange, { "0": [0, end0] }, `from ${from}`);
            }
            // The end itself is fine: nothing to read yet.
            const atEnd = await conn.request({ type: "fetch", topic: "three", offsets: { "0": end0 } }, 5000);
            assert.deepEqual(atEnd.parts, []);
            // A group may commit past the end, as in Kafka (a seek, an admin's setOffsets): stored as given.
            await conn.request({ type: "commit", group: "far", topic: "three", offsets: { "0": 1_000_000 } }, 5000);
            const committed = await conn.request({ type: "committed", group: "far", topic: "three" }, 5000);
            assert.deepEqual(committed.offsets, { "0": 1_000_000 });
          } finally {
            conn.close();
          }
          const res = await run(["consume", "--topic", "three", "--offset", "1000000", "--timeout-ms", "2000", ...zk]);
          assertCliError(res, /^yak consume: offset 1000000 is past the end/, "consume --offset 1000000");
          // The group whose commit is past the end resets (yak consume's policy for a group: the earliest) and says so.
          const group = await run(["consume", "--topic", "three", "--group", "far", "--timeout-ms", "1000", ...zk]);
          assert.equal(group.code, 0, group.stderr);
          assert.equal(group.stdout, "a\nb\nc\n");
          assert.match(group.stderr, /offset 1000000 of three\/0 is past the end/);
        },
      );

      await t.step(
        "malformed frames: error frames, then the broker and zookeeper still serve",
        async () => {
          await malformedFrames(await leaderPort(), "leader", "three", 16 * 1024 * 1024);
          await malformedFrames(cluster.zkPort, "zookeeper", "three", 1024 * 1024);
          const produced = await run(["produce", "--topic", "after", "--message", "still-here", ...zk]);
          assert.equal(produced.code, 0, produced.stderr);
          const consumed = await run(
            ["consume", "--topic", "after", "--from-beginning", "--max-messages", "1", "--timeout-ms", "5000", ...zk],
          );
          assert.equal(consumed.code, 0, consumed.stderr);
          assert.equal(consumed.stdout, "still-here\n");
          const status = await run(["status", ...zk]);
          assert.equal(status.code, 0, status.stderr);
          assert.match(status.stdout, /^leader: \d+/);
          for (const [id, proc] of cluster.brokers) {
            assert.equal(proc.exited, false, `broker ${id} exited`);
          }
          assert.equal(cluster.zk.exited, false, "zookeeper exited");
        },
      );

      await t.step(
        "CLI misuse: one-line errors, non-zero exit, no stack trace",
        async () => {
          const cases: [string[], RegExp][] = [
            [["produce", "--nope"], /^yak produce: .*--nope.*yak produce --help/],
            [["consume", "--topic"], /^yak consume: .*--topic.*yak consume --help/],
            [
              ["produce", "--topic", "t", "--acks", "7", "--message", "x", ...zk],
              /^yak produce: --acks must be all, 1 or 0, not '7'/,
            ],
            [["produce", "--message", "x", ...zk], /^yak produce: --topic is required/],
            [["consume", ...zk], /^yak consume: --topic is required/],
            [["broker"], /^yak broker: --id is required/],
            [["broker", "--id", "zero"], /^yak broker: --id must be a whole number/],
            [
              ["produce", "--topic", "t", "--zookeeper", "nohost", "--message", "x"],
              /^yak produce: 'nohost' is not HOST:PORT/,
            ],
            [
              ["consume", "--topic", "t", "--format", "xml", ...zk],
              /^yak consume: --format must be value, json or a template/,
            ],
            [["topics", ...zk], /^yak topics: give exactly one of/],
            // No time to retry: one line (with time, a retry notice comes first).
            [["status", "--zookeeper", "127.0.0.1:1", "--connect-timeout-ms", "0"], /^yak status: .*127\.0\.0\.1:1/],
          ];
          const started = Date.now();
          const results = await Promise.all(cases.map(([args]) => run(args, { timeoutMs: 15_000 })));
          for (let i = 0; i < cases.length; i++) {
            assertCliError(results[i], cases[i][1], `yak ${cases[i][0].join(" ")}`);
          }
          assert.ok(Date.now() - started < 10_000, "misuse errors should come fast");

          const unknown = await run(["frobnicate"]);
          assert.notEqual(unknown.code, 0);
          assert.equal(unknown.stdout, "");
          assert.match(unknown.stderr.split("\n")[0], /^yak: unknown command 'frobnicate'$/);
          assert.doesNotMatch(unknown.stderr, /^\s+at /m);

          // A zookeeper that does not answer: the producer retries (up to its
          // 60 s delivery timeout). Within 3 s it must either have failed with a
          // one-line error or be telling the user it is retrying.
          const dead = await run(["produce", "--topic", "t", "--zookeeper", "127.0.0.1:1", "--message", "x"], {
            timeoutMs: 3000,
          });
          assert.notEqual(dead.code, 0, dead.stderr);
          assert.doesNotMatch(dead.stderr, /^\s+at /m);
          assert.match(dead.stderr.split("\n")[0], /^yak produce: .*127\.0\.0\.1:1/);
        },
      );
    });
  } finally {
    await cluster.stop();
  }
});

Deno.test("a torn tail is cut on restart and no record is lost", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yak-torn-" });
  let cluster: TestCluster | null = null;
  try {
    await withDeadline(50_000, "torn tail test", async () => {
      cluster = await TestCluster.start({ brokers: 3, dir });
      const zk = cluster.zkFlag;
      const created = await run(["topics", "--create", "torn", "--partitions", "1", ...zk]);
      assert.equal(created.code, 0, created.stderr);
      const produced = await run(["produce", "--topic", "torn", "--quiet", ...zk], { stdin: seqText(1000) });
      assert.equal(produced.code, 0, produced.stderr);
      const segment = join(dir, "broker-1", "topics", "torn", "0", "00000000000000000000.jsonl");
      const lineCount = async () => decoder.decode(await Deno.readFile(segment)).split("\n").length - 1;
      // Broker 1 may be a follower: wait until it holds all 1000 records.
      await eventually(
        async () => (await exists(segment)) && (await lineCount()) === 1000,
        10_000,
        "1000 records on broker 1",
      );
      const oldEpoch = (await cluster.lease()).epoch;

      // Stop everything without removing the directory, then tear the tail.
      await Promise.all([...cluster.brokers.values()].map((p) => p.stop()));
      await cluster.zk.stop();
      cluster = null;
      const intact = await Deno.readFile(segment);
      await Deno.writeFile(segment, encoder.encode('{"offset":1000,"epoch":1,"ts":17637'), { append: true });

      cluster = await TestCluster.start({ brokers: 3, dir });
      const c = cluster;
      await c.waitFor((l) => l.epoch > oldEpoch && l.leaderId !== null, 15_000);
      const events = decoder.decode(await Deno.readFile(join(dir, "broker-1", "broker.log")))
        .split("\n").filter((l) => l).map((l) => JSON.parse(l));
      const cut = events.find((e) => e.event === "torn_tail_cut");
      assert.ok(cut, `no torn_tail_cut in broker-1's log: ${events.map((e) => e.event).join(", ")}`);
      assert.equal(cut.keptRecords, 1000, JSON.stringify(cut));
      assert.equal(cut.cutBytes, '{"offset":1000,"epoch":1,"ts":17637'.length, JSON.stringify(cut));
      assert.deepEqual(await Deno.readFile(segment), intact, "the segment is not back to its intact bytes");

      const expected = seqText(1000);
      const broker1 = `127.0.0.1:${c.brokerPorts.get(1)}`;
      const [fromLeader, fromBroker1] = await Promise.all([
        run(["consume", "--topic", "torn", "--from-beginning", "--timeout-ms", "1500", ...c.zkFlag]),
        run(["consume", "--topic", "torn", "--from-beginning", "--timeout-ms", "1500", "--bootstrap", broker1]),
      ]);
      assert.equal(fromLeader.code, 0, fromLeader.stderr);
      assert.equal(fromLeader.stdout, expected, "records read from the leader");
      assert.equal(fromBroker1.code, 0, fromBroker1.stderr);
      assert.equal(fromBroker1.stdout, expected, "records read from broker 1");

      const more = await run(["produce", "--topic", "torn", "--quiet", ...c.zkFlag], { stdin: seqText(5, 1001) });
      assert.equal(more.code, 0, more.stderr);
      const all = await run(["consume", "--topic", "torn", "--from-beginning", "--timeout-ms", "1500", ...c.zkFlag]);
      assert.equal(all.code, 0, all.stderr);
      assert.equal(all.stdout, seqText(1005));
      // Broker 1's copy continues cleanly after the cut: offsets 0..1004, one per line.
      await eventually(async () => (await lineCount()) === 1005, 10_000, "1005 records on broker 1");
      const offsets = decoder.decode(await Deno.readFile(segment)).trimEnd()
        .split("\n").map((l) => JSON.parse(l).offset);
      assert.deepEqual(offsets, Array.from({ length: 1005 }, (_, i) => i));
    });
  } finally {
    const c = cluster as TestCluster | null;
    if (c) await c.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
