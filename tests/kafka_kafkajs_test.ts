/**
 * kafkajs 2.2.4, unchanged, against a yak cluster: an idempotent producer
 * (acks -1) and a consumer group of three, while the leader is killed with
 * SIGKILL mid-stream. The clients find the new leader through Metadata;
 * nothing acknowledged is lost, and the log holds every record exactly once.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { TestCluster, withDeadline, yak } from "./harness.ts";

const TOTAL = 20_000;
const BATCH = 200;

Deno.test({
  name: "kafkajs: idempotent producer and a group of 3 through a leader kill -9; nothing lost, nothing duplicated",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withDeadline(240_000, "kafkajs", async () => {
      const c = await TestCluster.start({ partitions: 6 });
      const kafka = new Kafka({
        clientId: "yak-test",
        brokers: c.bootstrapServers.split(","),
        logLevel: logLevel.NOTHING,
        retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 },
      });
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      // A short fetch wait: kafkajs keeps its dead coordinator until a few fetch rounds have failed to commit
      // (it restarts the consumer then), and each round waits out the fetch wait first: 30 s at its default 5 s.
      const consumers = [0, 1, 2].map(() =>
        kafka.consumer({ groupId: "jsg", sessionTimeout: 10_000, maxWaitTimeInMs: 500 })
      );
      const seen = new Map<string, number>();
      try {
        await producer.connect();
        for (const consumer of consumers) {
          await consumer.connect();
          await consumer.subscribe({ topic: "js", fromBeginning: true });
          await consumer.run({
            eachMessage: ({ message }) => {
              const v = message.value!.toString();
              seen.set(v, (seen.get(v) ?? 0) + 1);
              return Promise.resolve();
            },
          });
        }
        let killed = -1;
        const t0 = Date.now();
        for (let i = 0; i < TOTAL; i += BATCH) {
          if (i === TOTAL / 2) {
            const lease = await c.lease();
            killed = lease.leaderId!;
            c.brokers.get(killed)!.kill("SIGKILL");
          }
          await producer.send({
            topic: "js",
            acks: -1,
            messages: Array.from({ length: BATCH }, (_, j) => ({ key: `k${i + j}`, value: String(i + j) })),
          });
        }
        console.log(`kafkajs: ${TOTAL} records acknowledged in ${Date.now() - t0} ms, leader ${killed} killed midway`);
        const deadline = Date.now() + 90_000;
        while (seen.size < TOTAL && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
        assert.equal(seen.size, TOTAL, "the group read every acknowledged record");
        const dups = [...seen.values()].filter((n) => n > 1).length;
        console.log(`kafkajs group: ${seen.size} records read, ${dups} read twice (after the rebalance)`);

        // The log itself: every record exactly once (idempotent retries).
        const got = await yak([
          "consume",
          "--topic",
          "js",
          "--from-beginning",
          "--max-messages",
          String(TOTAL + 1),
          "--timeout-ms",
          "3000",
          ...c.zkFlag,
        ]);
        const values = got.stdout.trimEnd().split("\n");
        assert.equal(values.length, TOTAL, "the log holds each record once");
        assert.equal(new Set(values).size, TOTAL);
      } finally {
        await Promise.all(consumers.map((k) => k.disconnect().catch(() => {})));
        await producer.disconnect().catch(() => {});
        await c.stop();
      }
    }),
});
