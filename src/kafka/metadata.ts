/**
 * Metadata (API 3): the brokers' Kafka addresses and every partition's
 * leader. yak has one leader for the whole cluster (the lease holder), so it
 * leads every partition; replicas are all brokers, and the in-sync set is the
 * lease's. Topics are created on first use, as Kafka's
 * `auto.create.topics.enable` does, when the client allows it.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

/** The cluster id Metadata (v2+) and DescribeCluster answer. */
export const KAFKA_CLUSTER_ID = "yak";

/** A broker as Kafka clients address it. */
export interface KafkaBroker {
  nodeId: number;
  host: string;
  port: number;
}

/**
 * The live brokers that speak Kafka, this one always among them, and the
 * leader's id (-1 with none). Each is named by the Kafka host it registered
 * (its own --advertised-host, else its --host): a broker behind NAT or in a
 * container advertises its own address, not ours.
 */
export function kafkaBrokers(ctx: KafkaContext): { brokers: KafkaBroker[]; leaderId: number; isr: readonly number[] } {
  const view = ctx.services.view();
  const out = new Map<number, KafkaBroker>();
  for (const b of view.brokers) {
    if (!b.alive || !b.kafkaPort) continue;
    // No kafkaHost: a broker from before it was registered; its native host is the best guess.
    const host = b.id === view.brokerId ? ctx.advertisedHost ?? ctx.services.opts.host : b.kafkaHost ?? b.host;
    out.set(b.id, { nodeId: b.id, host, port: b.kafkaPort });
  }
  if (!out.has(view.brokerId)) {
    out.set(view.brokerId, {
      nodeId: view.brokerId,
      host: ctx.advertisedHost ?? ctx.services.opts.host,
      port: ctx.kafkaPort(),
    });
  }
  const leaderId = view.leader && out.has(view.leader.id) ? view.leader.id : -1;
  return { brokers: [...out.values()].sort((a, b) => a.nodeId - b.nodeId), leaderId, isr: view.isr };
}

/** Handles Metadata v0-9 (v9 is flexible). */
export async function metadata(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  // v0: an empty list means every topic; v1+: null does.
  const names = v === 0 ? r.array((r) => r.string()) : r.nullableArray((r) => r.string());
  const allowAutoCreate = v >= 4 ? r.bool() : true;
  const all = names === null || (v === 0 && names.length === 0);
  const s = ctx.services;

  const topics: { name: string; error: number; partitions: number }[] = [];
  if (all) {
    for (const [name, n] of Object.entries(s.view().topics)) topics.push({ name, error: 0, partitions: n });
  } else {
    for (const name of names!) topics.push(await describeOne(ctx, name, allowAutoCreate));
  }
  const { brokers, leaderId, isr } = kafkaBrokers(ctx);
  const replicas = brokers.map((b) => b.nodeId);
  const epoch = s.view().epoch;

  if (v >= 3) w.int32(0);
  w.array(brokers, (w, b) => {
    w.int32(b.nodeId).string(b.host).int32(b.port);
    if (v >= 1) w.nullableString(null); // rack
  });
  if (v >= 2) w.nullableString(KAFKA_CLUSTER_ID);
  if (v >= 1) w.int32(leaderId);
  w.array(topics, (w, t) => {
    w.int16(t.error).string(t.name);
    if (v >= 1) w.bool(false);
    const parts = Array.from({ length: t.partitions }, (_, i) => i);
    w.array(parts, (w, p) => {
      w.int16(leaderId === -1 ? KAFKA.LEADER_NOT_AVAILABLE : 0).int32(p).int32(leaderId);
      if (v >= 7) w.int32(epoch);
      w.int32Array(replicas).int32Array(isr.filter((id) => replicas.includes(id)));
      if (v >= 5) w.int32Array([]);
    });
    if (v >= 8) w.int32(-2147483648); // authorized operations: not computed
  });
  if (v >= 8) w.int32(-2147483648);
}

async function describeOne(
  ctx: KafkaContext,
  name: string,
  allowAutoCreate: boolean,
): Promise<{ name: string; error: number; partitions: number }> {
  const s = ctx.services;
  try {
    checkTopicName(name);
    let n = s.partitions.partitionCount(name);
    if (n === 0 && allowAutoCreate) {
      // A follower has the leader create it and answers LEADER_NOT_AVAILABLE until replication brings
      // it here (as Kafka answers a fresh topic); the client asks again.
      await s.topics.ensureFromAnyBroker(name);
      n = s.partitions.partitionCount(name);
      if (n === 0) return { name, error: KAFKA.LEADER_NOT_AVAILABLE, partitions: 0 };
    }
    if (n === 0) return { name, error: KAFKA.UNKNOWN_TOPIC_OR_PARTITION, partitions: 0 };
    return { name, error: 0, partitions: n };
  } catch (err) {
    const code = err instanceof YakError ? err.code : "UNAVAILABLE";
    return { name, error: kafkaErrorOf(code), partitions: 0 };
  }
}
