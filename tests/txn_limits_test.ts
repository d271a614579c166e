/**
 * The transaction coordinator's bounds (issue 22; each in src/config.ts
 * with its reason), reached for real on a one-broker cluster: the
 * 1,001st open transaction, a transaction's 1,001st partition, and a
 * transaction whose state would pass 1 MiB are refused with
 * POLICY_VIOLATION (Kafka's error 44 through the Kafka protocol), and what
 * stayed within them goes on working.
 */
import assert from "node:assert/strict";
import { DEFAULTS } from "../src/config.ts";
import { YakError } from "../src/errors.ts";
import { KAFKA } from "../src/kafka/errors.ts";
import { Connection } from "../src/protocol/connection.ts";
import { TestCluster, withDeadline, yak } from "./harness.ts";
import { ends, KafkaConn } from "./kafka_conn.ts";

interface Producer {
  id: string;
  producer: string;
  producerEpoch: number;
}

/** `yak topics --create`, which must succeed. */
async function createTopic(c: TestCluster, topic: string, partitions: number): Promise<void> {
  const r = await yak(["topics", "--create", topic, "--partitions", String(partitions), ...c.zkFlag]);
  assert.equal(r.code, 0, r.stderr);
}

/** Whether `err` is the coordinator's refusal of a bound, its message matching `why`. */
function refused(why: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof YakError && err.code === "POLICY_VIOLATION" && why.test(err.message);
}

Deno.test({
  name: "transaction bounds: open transactions, partitions per transaction and state bytes get POLICY_VIOLATION",
  fn: (t) =>
    withDeadline(180_000, "transaction bounds", async () => {
      const c = await TestCluster.start({ brokers: 1, partitions: 1 });
      try {
        const leader = (await c.lease()).leaderId!;
        const conn = await Connection.open("127.0.0.1", c.brokerPorts.get(leader)!);
        const init = async (id: string): Promise<Producer> => {
          const r = await conn.request({ type: "init_producer", transactionalId: id });
          return { id, producer: String(r.producerId), producerEpoch: Number(r.producerEpoch) };
        };
        const txn = (p: Producer) => ({ transactionalId: p.id, producer: p.producer, producerEpoch: p.producerEpoch });
        const add = (p: Producer, topic: string, partitions: number[]) =>
          conn.request({ type: "add_partitions_to_txn", ...txn(p), topic, partitions });
        const end = (p: Producer, commit: boolean) => conn.request({ type: "end_txn", ...txn(p), commit });
        try {
          await createTopic(c, "t", 1);

          await t.step(`the ${DEFAULTS.maxOpenTransactions + 1}st open transaction is refused`, async () => {
            const max = DEFAULTS.maxOpenTransactions;
            const open: Producer[] = [];
            for (let i = 0; i < max; i += 100) {
              const ids = Array.from({ length: Math.min(100, max - i) }, (_, k) => `open-${i + k}`);
              open.push(
                ...await Promise.all(ids.map(async (id) => {
                  const p = await init(id);
                  await add(p, "t", [0]);
                  return p;
                })),
              );
            }
            const extra = await init("open-extra");
            await assert.rejects(add(extra, "t", [0]), refused(new RegExp(`${max} transactions are open`)));
            // One ends: there is room for it again.
            await end(open[0], true);
            await add(extra, "t", [0]);
            for (let i = 1; i < max; i += 100) await Promise.all(open.slice(i, i + 100).map((p) => end(p, false)));
            await end(extra, false);
          });

          await t.step(
            `a transaction's ${DEFAULTS.maxPartitionsPerTransaction + 1}st partition is refused`,
            async () => {
              const max = DEFAULTS.maxPartitionsPerTransaction;
              await createTopic(c, "wide", max);
              const p = await init("wide");
              await add(p, "wide", Array.from({ length: max }, (_, i) => i));
              await assert.rejects(add(p, "t", [0]), refused(new RegExp(`at most ${max} partitions`)));
              await end(p, true); // what it held still commits
            },
          );

          await t.step("state past 1 MiB: AddOffsetsToTxn gets Kafka's POLICY_VIOLATION (44)", async () => {
            const k = await KafkaConn.open(c.kafkaPorts.get(leader)!);
            try {
              const r = await k.call(22, 0, false, (w) => w.nullableString("offsets").int32(60_000));
              r.int32();
              assert.equal(r.int16(), 0, "InitProducerId");
              const producerId = BigInt(r.int64());
              const epoch = r.int16();
              ends(r);
              // Groups of 1,000 characters: the 1 MiB of state is reached at about the 1,040th.
              const groups = Array.from({ length: 1100 }, (_, i) => `group-${i}-`.padEnd(1000, "g"));
              const replies = await k.pipeline(
                25,
                0,
                false,
                groups.map((g) => (w) => w.string("offsets").int64(producerId).int16(epoch).string(g)),
              );
              const errors = replies.map((r) => {
                r.int32();
                const error = r.int16();
                ends(r);
                return error;
              });
              const first = errors.findIndex((e) => e !== 0);
              console.log(`  AddOffsetsToTxn: ${first} groups taken, then error ${errors[first]}`);
              assert.ok(first > 1000 && first < 1100, `the first refusal at group ${first}`);
              assert.ok(
                errors.slice(first).every((e) => e === KAFKA.POLICY_VIOLATION),
                "refused with 44 from there on",
              );
            } finally {
              k.close();
            }
          });
        } finally {
          conn.close();
        }
      } finally {
        await c.stop();
      }
    }),
});
