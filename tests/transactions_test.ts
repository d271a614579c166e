/**
 * Transactions (KIP-98) with real clients, on one cluster of two brokers
 * (the last step kills the leader): kafkajs 2.2.4's `producer.transaction()`
 * commit and abort read back by a read_committed kafkajs consumer and by
 * `yak consume` both ways; confluent-kafka (librdkafka 2.0.2) with
 * send_offsets_to_transaction and a second producer of the same
 * transactional id fencing the first; a transaction abandoned past its
 * timeout aborted by the coordinator; `yak produce --transactional-id`
 * killed with SIGKILL midway, then run to the end; and consume-transform-
 * produce with sendOffsets while the leader is killed between a commit
 * decision and its markers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Kafka, logLevel } from "kafkajs";
import { Connection } from "../src/protocol/connection.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";
import {
  Proc,
  python,
  pythonModuleMissing,
  seqText,
  skipWithout,
  TestCluster,
  type TestCluster as Cluster,
  withDeadline,
  yak,
} from "./harness.ts";
import { Inspector } from "./inspector.ts";

/** Every record of a topic, read by `yak consume` from the beginning to the end it has now. */
async function readAll(c: Cluster, topic: string, isolation: string): Promise<string[]> {
  const r = await yak([
    "consume",
    "--topic",
    topic,
    "--from-beginning",
    "--exit-at-end",
    "--isolation-level",
    isolation,
    "--quiet",
    ...c.zkFlag,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout === "" ? [] : r.stdout.trimEnd().split("\n");
}

/** The sum over a topic's partitions of one of `list_offsets`' figures, asked of broker `id`. */
async function offsetSum(c: Cluster, id: number, topic: string, field: "hw" | "lso"): Promise<number> {
  const conn = await Connection.open("127.0.0.1", c.brokerPorts.get(id)!, { connectTimeoutMs: 2000 });
  try {
    const res = await conn.request({ type: "list_offsets", topic }, 2000);
    return Object.values(res[field] as Record<string, number>).reduce((a, b) => a + b, 0);
  } finally {
    conn.close();
  }
}

/** Waits (polling, bounded) until `probe` holds. */
async function until(what: string, ms: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The stored lines of every segment of a topic on broker `id`, parsed (as `cat ... | jq` reads them). */
async function storedLines(c: Cluster, id: number, topic: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for await (const p of Deno.readDir(join(c.topicsDir(id), topic))) {
    if (!p.isDirectory) continue;
    for await (const f of Deno.readDir(join(c.topicsDir(id), topic, p.name))) {
      if (!f.name.endsWith(".jsonl")) continue;
      const text = await Deno.readTextFile(join(c.topicsDir(id), topic, p.name, f.name));
      for (const line of text.split("\n")) if (line !== "") out.push(JSON.parse(line));
    }
  }
  return out;
}

const CONFLUENT = `
import json, sys
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
b, topic = sys.argv[1], sys.argv[2]
conf = {"bootstrap.servers": b, "transactional.id": "py-txn"}
p1 = Producer(conf)
p1.init_transactions(20)
p1.begin_transaction()
for i in range(5):
    p1.produce(topic, f"c{i}".encode(), partition=i % 2)
group = Consumer({"bootstrap.servers": b, "group.id": "py-g"})
p1.send_offsets_to_transaction([TopicPartition(topic, 0, 42)], group.consumer_group_metadata(), 20)
p1.commit_transaction(20)
p1.begin_transaction()
for i in range(5):
    p1.produce(topic, f"a{i}".encode(), partition=i % 2)
p1.flush(20)
p1.abort_transaction(20)
# A zombie: p1 opens a transaction, then a second producer of the same id starts.
p1.begin_transaction()
p1.produce(topic, b"zombie", partition=0)
p1.flush(20)
p2 = Producer(conf)
p2.init_transactions(20)
fenced = "not fenced"
try:
    p1.produce(topic, b"zombie-after", partition=1)
    p1.flush(20)
    p1.commit_transaction(20)
except KafkaException as e:
    fenced = e.args[0].name()
p2.begin_transaction()
p2.produce(topic, b"p2", partition=1)
p2.commit_transaction(20)
def read(isolation):
    c = Consumer({"bootstrap.servers": b, "group.id": "py-read-" + isolation, "isolation.level": isolation,
                  "enable.partition.eof": True, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(2)])
    got, eof = [], set()
    while len(eof) < 2:
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            eof.add(m.partition())
            continue
        got.append(m.value().decode())
    c.close()
    return sorted(got)
committed = group.committed([TopicPartition(topic, 0)], 20)[0].offset
print(json.dumps({"fenced": fenced, "committed": committed, "rc": read("read_committed"),
                  "ru": read("read_uncommitted")}))
`;

/**
 * A breakpoint in the process whose inspector `proc` printed, on the first
 * line of `file`'s script (as the runtime runs it, transpiled) that holds
 * `text`; `hit` resolves once the thread stops there.
 */
async function breakAt(proc: Proc, file: string, text: string): Promise<{ hit: Promise<void>; close: () => void }> {
  const inspector = await Inspector.of(proc);
  const scripts = new Map<string, string>();
  const hit = new Promise<void>((resolve) => inspector.on("Debugger.paused", () => resolve()));
  inspector.on("Debugger.scriptParsed", (p) => scripts.set(String(p.url), String(p.scriptId)));
  await inspector.call("Debugger.enable"); // every loaded script is announced before this answers
  const scriptId = [...scripts].find(([u]) => u.endsWith(file))?.[1];
  assert.ok(scriptId, `${file} is not loaded in ${proc.name}`);
  const source = (await inspector.call("Debugger.getScriptSource", { scriptId })).scriptSource as string;
  const lineNumber = source.split("\n").findIndex((l) => l.includes(text));
  assert.ok(lineNumber >= 0, `no '${text}' in ${file}`);
  await inspector.call("Debugger.setBreakpoint", { location: { scriptId, lineNumber } });
  return { hit, close: () => inspector.close() };
}

/**
 * A consume-transform-produce pipeline as Kafka's exactly-once applications
 * are written: each input batch's output and its group offsets in one
 * transaction. When a transaction's outcome is unknown (its commit failed:
 * the coordinator may have committed it), the app starts over, producer
 * first: its InitProducerId completes whatever the coordinator decided, and
 * only then does the new consumer read the group's offsets, so nothing is
 * done twice. (kafkajs 2.2.4 does not retry EndTxn itself.)
 */
class EosApp {
  done = 0;
  restarts = 0;
  readonly errors: string[] = [];

  constructor(readonly kafka: Kafka, readonly total: number) {}

  /** Runs sessions until the group's commits reach the end of the input. */
  async run(): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    const committed = async () => {
      const got = await admin.fetchOffsets({ groupId: "eos-g", topics: ["eos-in"] }).catch(() => []);
      return got.flatMap((t) => t.partitions).reduce((a, p) => a + Math.max(0, Number(p.offset)), 0);
    };
    try {
      while (await committed() < this.total) {
        const err = await this.#session(async () => await committed() >= this.total);
        if (err === null) continue;
        this.restarts++;
        this.errors.push(err.message.slice(0, 80));
        if (this.restarts > 10) throw err;
      }
    } finally {
      await admin.disconnect();
    }
  }

  /** One producer and consumer, until they fail (the error) or the input is done (null). */
  async #session(finished: () => Promise<boolean>): Promise<Error | null> {
    const producer = this.kafka.producer({ transactionalId: "eos", maxInFlightRequests: 1, idempotent: true });
    const consumer = this.kafka.consumer({ groupId: "eos-g", maxWaitTimeInMs: 200, maxBytes: 4096 });
    let failed: Error | null = null;
    try {
      await producer.connect();
      // kafkajs initializes a transactional id with its first transaction: do it before the consumer reads the
      // group's offsets, so what the previous session's coordinator decided is complete by then.
      await (await producer.transaction()).abort();
      await consumer.connect();
      await consumer.subscribe({ topic: "eos-in", fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          if (failed || batch.messages.length === 0) return;
          try {
            await this.#process(producer, batch);
            this.done += batch.messages.length;
            resolveOffset(batch.lastOffset());
          } catch (err) {
            failed = err as Error;
          }
        },
      });
      while (!failed && !(await finished())) await new Promise((r) => setTimeout(r, 100));
    } catch (err) {
      failed ??= err as Error;
    } finally {
      await consumer.disconnect().catch(() => {});
      await producer.disconnect().catch(() => {});
    }
    return failed;
  }

  async #process(
    producer: ReturnType<Kafka["producer"]>,
    batch: {
      topic: string;
      partition: number;
      messages: { key: Buffer | null; value: Buffer | null }[];
      lastOffset(): string;
    },
  ): Promise<void> {
    const txn = await producer.transaction();
    try {
      const out = batch.messages.map((msg) => ({ key: msg.key, value: `out-${msg.value}` }));
      await txn.send({ topic: "eos-out", messages: out });
      const next = String(Number(batch.lastOffset()) + 1);
      await txn.sendOffsets({
        consumerGroupId: "eos-g",
        topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: next }] }],
      });
      await txn.commit();
    } catch (err) {
      await txn.abort().catch(() => {});
      throw err;
    }
  }
}

Deno.test({
  name: "transactions: kafkajs, confluent-kafka and yak produce; fencing, a timeout, a leader killed mid-commit",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: (t) =>
    withDeadline(200_000, "transactions", async () => {
      const c = await TestCluster.start({
        brokers: 2,
        partitions: 2,
        minInsyncReplicas: 1,
        brokerDenoFlags: ["--inspect=127.0.0.1:0"],
        brokerArgs: ["--transaction-max-timeout-ms", "60000"],
      });
      const kafka = new Kafka({
        clientId: "yak-txn-test",
        brokers: c.bootstrapServers.split(","),
        logLevel: logLevel.NOTHING,
        retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      const step = async (name: string, fn: () => Promise<void>) => {
        const t0 = performance.now();
        await t.step(name, fn);
        console.log(`  ${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      };
      try {
        await step("kafkajs commit and abort; read_committed sees only the commit, markers in the log", async () => {
          const producer = kafka.producer({ transactionalId: "js-txn", maxInFlightRequests: 1, idempotent: true });
          await producer.connect();
          let txn = await producer.transaction();
          await txn.send({
            topic: "tx",
            messages: Array.from({ length: 10 }, (_, i) => ({ value: `c${i}`, partition: i % 2 })),
          });
          await txn.commit();
          txn = await producer.transaction();
          await txn.send({
            topic: "tx",
            messages: Array.from({ length: 10 }, (_, i) => ({ value: `a${i}`, partition: i % 2 })),
          });
          await txn.abort();
          await producer.disconnect();
          const plain = kafka.producer();
          await plain.connect();
          await plain.send({ topic: "tx", messages: [{ value: "after" }] });
          await plain.disconnect();
          const seen: string[] = [];
          const consumer = kafka.consumer({ groupId: "js-rc", maxWaitTimeInMs: 200 });
          await consumer.connect();
          await consumer.subscribe({ topic: "tx", fromBeginning: true });
          await consumer.run({ eachMessage: ({ message }) => Promise.resolve(void seen.push(String(message.value))) });
          const committed = Array.from({ length: 10 }, (_, i) => `c${i}`);
          // Every committed record and the one after: "after" alone is not enough, since each partition's commit
          // marker (and so its last stable offset) comes on its own, and "after" may be read before partition 1's
          // records are (seen in CI: c1..c9 odd missing when the consumer stopped at "after").
          await until("the kafkajs consumer reads past the aborted records", 15_000, () =>
            Promise.resolve([...committed, "after"].every((v) =>
              seen.includes(v)
            )));
          // Anything aborted would come with or before what was committed in its partition: a moment more for it.
          await new Promise((r) => setTimeout(r, 500));
          await consumer.disconnect();
          assert.deepEqual(seen.sort(), [...committed, "after"].sort(), "kafkajs read_committed");
          assert.deepEqual((await readAll(c, "tx", "read_committed")).sort(), [...committed, "after"].sort());
          const all = await readAll(c, "tx", "read_uncommitted");
          assert.equal(all.length, 21, "read_uncommitted shows the aborted records too, never the markers");
          const markers = (await storedLines(c, (await c.lease()).leaderId!, "tx")).filter((l) => l.marker);
          assert.deepEqual(markers.map((m) => m.marker).sort(), ["abort", "abort", "commit", "commit"]);
        });

        await step("confluent-kafka: send_offsets, commit, abort, and a second producer fences the first", async () => {
          if (skipWithout(pythonModuleMissing("confluent_kafka", "python3-confluent-kafka"))) return;
          const r = await python(CONFLUENT, [c.bootstrapServers, "pytx"]);
          assert.equal(r.code, 0, r.out);
          const line = r.out.split("\n").find((l) => l.startsWith('{"fenced"'));
          assert.ok(line, r.out);
          for (const l of r.out.split("\n")) if (l.startsWith("%")) console.log(`  librdkafka: ${l}`);
          const out = JSON.parse(line);
          console.log(`  confluent-kafka: zombie got ${out.fenced}; group offset ${out.committed}`);
          assert.match(out.fenced, /FENCED|INVALID_PRODUCER_EPOCH/, "the zombie is fenced");
          assert.equal(out.committed, 42, "send_offsets_to_transaction committed with the transaction");
          assert.deepEqual(out.rc, ["c0", "c1", "c2", "c3", "c4", "p2"], "read_committed: committed only");
          assert.deepEqual(out.ru, ["a0", "a1", "a2", "a3", "a4", "c0", "c1", "c2", "c3", "c4", "p2", "zombie"]);
        });

        await step("an abandoned transaction is aborted at its timeout; read_committed moves past it", async () => {
          const producer = kafka.producer({ transactionalId: "js-abandoned", transactionTimeout: 1000 });
          await producer.connect();
          const txn = await producer.transaction();
          await txn.send({ topic: "late", messages: [{ value: "abandoned", partition: 0 }] });
          const sentAt = Date.now();
          await producer.disconnect(); // gone without a commit or an abort, as a killed producer is
          const plain = kafka.producer();
          await plain.connect();
          await plain.send({ topic: "late", messages: [{ value: "behind", partition: 0 }] });
          await plain.disconnect();
          const leader = (await c.lease()).leaderId!;
          assert.ok(await offsetSum(c, leader, "late", "lso") < await offsetSum(c, leader, "late", "hw"));
          await until("the last stable offset passes the abandoned transaction", 8_000, async () =>
            await offsetSum(c, leader, "late", "lso") === await offsetSum(c, leader, "late", "hw"));
          const abortedAfterMs = Date.now() - sentAt;
          console.log(`  abandoned transaction aborted ${abortedAfterMs} ms after its send (timeout 1000 ms)`);
          assert.ok(abortedAfterMs >= 900, `aborted after ${abortedAfterMs} ms, before its timeout`);
          assert.deepEqual(await readAll(c, "late", "read_committed"), ["behind"]);
          // DescribeTransactions (65) and ListTransactions (66), as an operator's tools ask them.
          const k = await KafkaConn.open(c.kafkaPorts.get(leader)!);
          try {
            let r = await k.call(66, 0, true, (w) =>
              w.stringArray(["CompleteAbort"]).array([], () => {}));
            r.int32();
            assert.equal(r.int16(), 0);
            const ids = r.array((r) => [r.string(), r.int64(), r.string()]).map(([id]) =>
              id
            );
            assert.ok(ids.includes("js-abandoned"), `ListTransactions: ${ids}`);
            ends(r);
            r = await k.call(65, 0, true, (w) => w.stringArray(["js-abandoned"]));
            r.int32();
            const [d] = r.array((r) => ({
              error: r.int16(),
              id: r.string(),
              state: r.string(),
              timeoutMs: r.int32(),
              start: r.int64(),
              producer: r.int64(),
              epoch: r.int32(),
              topics: r.array((r) => r.string()),
            }));
            ends(r);
            assert.deepEqual([d.error, d.state, d.timeoutMs, d.epoch, d.topics], [0, "CompleteAbort", 1000, 1, []]);
          } finally {
            k.close();
          }
          const listed = await yak(["transactions", "--json", ...c.zkFlag]);
          const row = JSON.parse(listed.stdout).find((r: { id: string }) => r.id === "js-abandoned");
          assert.equal(row.state, "CompleteAbort");
          assert.equal(row.epoch, 1, "the timeout bumped the epoch: the producer, if alive, is fenced");
          const tooLong = kafka.producer({ transactionalId: "js-too-long", transactionTimeout: 120_000 });
          try {
            await assert.rejects(
              async () => {
                await tooLong.connect();
                await tooLong.transaction();
              },
              /timeout/i,
              "past --transaction-max-timeout-ms",
            );
          } finally {
            await tooLong.disconnect();
          }
        });

        await step("yak produce --transactional-id: killed midway 0 visible; run again, all exactly once", async () => {
          // Issue 22's figure: one transaction of 1M lines, killed halfway through its input.
          const n = 1_000_000;
          const args = ["produce", "--topic", "load", "--transactional-id", "loader", "--quiet", ...c.zkFlag];
          const proc = new Proc("yak-produce", args, { stdin: true });
          await proc.write(seqText(n / 2));
          const leader = (await c.lease()).leaderId!;
          await until("a quarter of the input is stored", 30_000, async () => {
            try {
              return await offsetSum(c, leader, "load", "hw") >= n / 4;
            } catch {
              return false; // the topic is being created
            }
          });
          proc.kill("SIGKILL");
          await proc.status;
          assert.deepEqual(await readAll(c, "load", "read_committed"), [], "read_committed: none of it");
          // A follower may serve the read and learn the high watermark a fetch later, and batches the producer sent
          // before its kill may still be on their way to the in-sync replicas: read until both agree.
          let stored = -1;
          let uncommitted = 0;
          await until("read_uncommitted reaches the high watermark", 15_000, async () => {
            stored = await offsetSum(c, leader, "load", "hw");
            return (uncommitted = (await readAll(c, "load", "read_uncommitted")).length) === stored;
          });
          assert.equal(uncommitted, stored);
          const again = await yak(args, { stdin: seqText(n), timeoutMs: 60_000 });
          assert.equal(again.code, 0, again.stderr);
          const lines = await readAll(c, "load", "read_committed");
          assert.equal(lines.length, n, "every line once");
          const seen = new Uint8Array(n + 1);
          for (const l of lines) {
            seen[Number(l)]++;
          }
          assert.equal(seen.indexOf(0, 1), -1, "a line is missing");
          assert.equal(
            seen.findIndex((k) => k > 1),
            -1,
            "a line is there twice",
          );
          console.log(`  killed with ${stored} records stored: 0 visible; the second run: ${lines.length} visible`);
        });

        await step(
          "consume-transform-produce with sendOffsets; the leader killed between decision and markers",
          async () => {
            const m = 2000;
            const feeder = kafka.producer();
            await feeder.connect();
            for (let i = 0; i < m; i += 200) {
              await feeder.send({
                topic: "eos-in",
                messages: Array.from({ length: 200 }, (_, j) => ({ key: `k${i + j}`, value: String(i + j) })),
              });
            }
            await feeder.disconnect();
            const app = new EosApp(kafka, m);
            const running = app.run();
            running.catch(() => {}); // awaited below; a failure before then must not go unhandled
            await until("a third of the input is processed", 30_000, () => Promise.resolve(app.done >= m / 3));
            const old = (await c.lease()).leaderId!;
            // Where a decided transaction's markers are about to be written (the decision is replicated by then).
            const bp = await breakAt(c.brokers.get(old)!, "txn_coordinator.ts", "const markers = await Promise.all(");
            await withDeadline(15_000, "the next commit decision", () => bp.hit);
            c.brokers.get(old)!.kill("SIGKILL"); // decided (replicated), no marker written yet
            bp.close();
            await withDeadline(60_000, "the pipeline's end", () => running);
            console.log(`  the pipeline restarted ${app.restarts} times (${app.errors.join("; ")})`);
            const newLeader = (await c.lease()).leaderId!;
            const log = await Deno.readTextFile(join(c.dir, `broker-${newLeader}`, "broker.log"));
            assert.match(log, /txn_completing_decided.*"eos"/, "the new leader completed the old one's decision");
            const out = await readAll(c, "eos-out", "read_committed");
            const counts = new Map<string, number>();
            for (const v of out) counts.set(v, (counts.get(v) ?? 0) + 1);
            assert.equal(counts.size, m, "every input record in the output");
            assert.deepEqual([...counts.values()].filter((k) => k !== 1), [], "each exactly once");
            console.log(`  ${m} records through ${old}'s kill mid-commit: ${out.length} in the output, once each`);
          },
        );

        await step("yak produce --transaction-records across a leader kill: every line once", async () => {
          // The broker the last step killed comes back first: two again, one to kill.
          const [back] = [...c.brokers].find(([, p]) => p.exited)!;
          await c.startBroker(back);
          await until("both brokers in sync", 30_000, async () => (await c.lease()).isr.length === 2);
          const n = 200_000;
          const args = [
            "produce",
            "--topic",
            "flow",
            "--transactional-id",
            "flow",
            "--transaction-records",
            "5000",
            "--quiet",
            ...c.zkFlag,
          ];
          const proc = new Proc("yak-produce-flow", args, { stdin: true });
          await proc.write(seqText(n / 2));
          const leader = (await c.lease()).leaderId!;
          await until("a few transactions committed", 30_000, async () => {
            try {
              return await offsetSum(c, leader, "flow", "lso") >= n / 10;
            } catch {
              return false; // the topic is being created
            }
          });
          c.brokers.get(leader)!.kill("SIGKILL"); // transactions are committing one after the other
          await proc.write(seqText(n / 2, n / 2 + 1));
          await proc.closeStdin();
          const status = await proc.status;
          assert.equal(status.code, 0, proc.lines.join("\n"));
          const lines = await readAll(c, "flow", "read_committed");
          const seen = new Uint8Array(n + 1);
          for (const l of lines) seen[Number(l)]++;
          assert.equal(seen.indexOf(0, 1), -1, "a line is missing");
          assert.equal(seen.findIndex((k) => k > 1), -1, "a line is there twice");
          console.log(`  ${n} lines in transactions of 5000 across broker ${leader}'s kill: each once`);
        });

        await step(
          "yak produce's commit that opens the next: leader and producer killed between that record and the markers",
          async () => {
            const [back] = [...c.brokers].find(([, p]) => p.exited)!;
            await c.startBroker(back);
            await until("both brokers in sync", 30_000, async () => (await c.lease()).isr.length === 2);
            const old = (await c.lease()).leaderId!;
            // Where the record that decides transaction N and opens N+1 is on the in-sync replicas, and no marker
            // of N is placed yet.
            const bp = await breakAt(c.brokers.get(old)!, "txn_coordinator.ts", "      decided();");
            const r = 1000;
            const args = ["produce", "--topic", "pause", "--transactional-id", "pause", "--transaction-records"];
            const proc = new Proc("yak-produce-pause", [
              ...args,
              String(r),
              "--transaction-timeout-ms",
              "3000",
              ...c.zkFlag,
            ], {
              stdin: true,
            });
            await proc.write(seqText(3 * r));
            await withDeadline(15_000, "the first commit's record", () => bp.hit);
            c.brokers.get(old)!.kill("SIGKILL");
            proc.kill("SIGKILL"); // N+1 gets no record: the new leader must abort it by its timeout
            bp.close();
            await proc.status;
            const leader = await until("a new leader", 30_000, async () => (await c.lease()).leaderId !== old)
              .then(async () => (await c.lease()).leaderId!);
            const log = () => Deno.readTextFile(join(c.dir, `broker-${leader}`, "broker.log"));
            await until("N+1 aborted by its timeout", 30_000, async () => /txn_timed_out.*"pause"/.test(await log()));
            assert.match(await log(), /txn_completing_decided.*"pause"/, "the new leader finished N");
            assert.match(await log(), /txn_marker_missing.*"pause\/0"/, "the new leader placed N's markers");
            const lines = await readAll(c, "pause", "read_committed");
            assert.deepEqual(
              lines.map(Number).sort((a, b) => a - b),
              Array.from({ length: r }, (_, i) => i + 1),
              "N whole, nothing more",
            );
            const stored = (await storedLines(c, leader, "pause")).filter((l) => l.producer !== undefined);
            const markers = stored.filter((l) => l.marker !== undefined).map((l) => l.marker);
            assert.deepEqual(markers.sort(), ["abort", "abort", "commit", "commit"], "N committed, N+1 aborted");
            console.log(`  broker ${old} killed with N decided and N+1 open: ${lines.length} lines visible`);
          },
        );

        await step(
          "yak produce's commit that opens the next: the leader killed once the markers are replicated",
          async () => {
            const [back] = [...c.brokers].find(([, p]) => p.exited)!;
            await c.startBroker(back);
            await until("both brokers in sync", 30_000, async () => (await c.lease()).isr.length === 2);
            const old = (await c.lease()).leaderId!;
            // Where the markers of N are on the in-sync replicas and the record that ends N is about to be written:
            // the new leader must find them (after them may lie N+1's records), not place them again.
            const bp = await breakAt(
              c.brokers.get(old)!,
              "txn_coordinator.ts",
              "const extra = this.#completionOf(commit, c.partitions, markers",
            );
            const r = 1000;
            const args = [
              "produce",
              "--topic",
              "found",
              "--transactional-id",
              "found",
              "--transaction-records",
              String(r),
            ];
            const proc = new Proc("yak-produce-found", [...args, "--quiet", ...c.zkFlag], { stdin: true });
            await proc.write(seqText(3 * r));
            await withDeadline(15_000, "the first commit's markers replicated", () => bp.hit);
            c.brokers.get(old)!.kill("SIGKILL");
            bp.close();
            await proc.write(seqText(2 * r, 3 * r + 1));
            await proc.closeStdin();
            const status = await proc.status;
            assert.equal(status.code, 0, proc.lines.join("\n"));
            const leader = (await c.lease()).leaderId!;
            const log = await Deno.readTextFile(join(c.dir, `broker-${leader}`, "broker.log"));
            assert.match(log, /txn_completing_decided.*"found"/, "the new leader finished N");
            assert.match(log, /txn_marker_found.*"found\/0"/, "the new leader found N's markers in its log");
            assert.doesNotMatch(log, /txn_marker_missing.*"found\//, "and placed none again");
            const lines = await readAll(c, "found", "read_committed");
            assert.deepEqual(
              lines.map(Number).sort((a, b) => a - b),
              Array.from({ length: 5 * r }, (_, i) => i + 1),
              "every line once",
            );
            const markers = (await storedLines(c, leader, "found")).filter((l) => l.marker !== undefined);
            assert.ok(markers.every((l) => l.marker === "commit"), "no abort");
            console.log(
              `  broker ${old} killed with N's markers replicated: ${lines.length} lines, ${markers.length} markers`,
            );
          },
        );
      } finally {
        await c.stop();
      }
    }),
});
