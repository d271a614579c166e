/**
 * Metadata (API 3): the brokers' Kafka addresses and every partition's
 * leader. yak has one leader for the whole cluster (the lease holder), so it
 * leads every partition; replicas are all brokers, and the in-sync set is the
 * lease's. Topics are created on first use, as Kafka's
 * `auto.create.topics.enable` does, when the client allows it. Each topic
 * has an id (see src/broker/topic_id.ts), answered from v10 and asked by
 * from v12.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import { isZeroTopicId, topicIdBytes, topicIdOfBytes } from "../broker/topic_id.ts";
import { AUTHORIZED_OPERATIONS } from "./authorized_operations.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Reader, Writer } from "./wire.ts";

/**
 * The error of a partition request that names the reader's current leader
 * epoch (KIP-320: Fetch v9+, ListOffsets v4+), as Kafka checks it:
 * FENCED_LEADER_EPOCH when it is older than this broker's (the reader's
 * metadata is stale: it refreshes it), UNKNOWN_LEADER_EPOCH when newer (this
 * broker has not learned the lease yet: the reader retries), 0 when it is
 * this broker's or -1 (unchecked). yak has one epoch for every partition,
 * the lease's, which Metadata answers as each partition's leader epoch.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readerEpochError } from "./metadata.ts";
 * assert.equal(readerEpochError(3, 2), 74);
 * assert.equal(readerEpochError(3, 4), 75);
 * assert.equal(readerEpochError(3, 3), 0);
 * assert.equal(readerEpochError(3, -1), 0);
 * ```
 */
export function readerEpochError(brokerEpoch: number, current: number): number {
  if (current === -1 || current === brokerEpoch) return 0;
  return current < brokerEpoch ? KAFKA.FENCED_LEADER_EPOCH : KAFKA.UNKNOWN_LEADER_EPOCH;
}

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

/** A topic a Metadata request names: by name, or (v12) by id (v10+ carry an id, all zero for none). */
interface AskedTopic {
  id: Uint8Array | null;
  name: string | null;
}

/** One topic of a Metadata answer (the name is null only for an id no topic has, v12). */
interface TopicAnswer {
  name: string | null;
  id: string | null;
  error: number;
  partitions: number;
}

/**
 * Handles Metadata v0-12: v9 is flexible, v10 answers each topic's id, v11
 * drops the cluster's authorized operations, v12 names topics by id (a name
 * is then null for an id no topic has: UNKNOWN_TOPIC_ID).
 */
export async function metadata(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const askedTopic = (r: Reader): AskedTopic =>
    v >= 10 ? { id: r.uuid(), name: r.nullableString() } : { id: null, name: r.string() };
  // v0: an empty list means every topic; v1+: null does.
  const asked = v === 0 ? r.array(askedTopic, 2) : r.nullableArray(askedTopic, v >= 10 ? 18 : 2);
  const allowAutoCreate = v >= 4 ? r.bool() : true;
  const clusterOperations = v >= 8 && v <= 10 ? r.bool() : false;
  const topicOperations = v >= 8 ? r.bool() : false;
  const s = ctx.services;

  const topics: TopicAnswer[] = [];
  if (asked === null || (v === 0 && asked.length === 0)) {
    for (const [name, n] of Object.entries(s.view().topics)) {
      topics.push({ name, id: s.topics.topicId(name), error: 0, partitions: n });
    }
  } else {
    for (const t of asked) topics.push(await describeAsked(ctx, t, v, allowAutoCreate));
  }
  const { brokers, leaderId, isr } = kafkaBrokers(ctx);
  if (v >= 3) w.int32(0);
  w.array(brokers, (w, b) => {
    w.int32(b.nodeId).string(b.host).int32(b.port);
    if (v >= 1) w.nullableString(null); // rack
  });
  if (v >= 2) w.nullableString(KAFKA_CLUSTER_ID);
  if (v >= 1) w.int32(leaderId);
  const partition = { leaderId, replicas: brokers.map((b) => b.nodeId), isr, epoch: s.view().epoch };
  w.array(topics, (w, t) => {
    w.int16(t.error);
    if (v >= 12) w.nullableString(t.name);
    else w.string(t.name ?? "");
    if (v >= 10) w.uuid(t.id === null ? null : topicIdBytes(t.id));
    if (v >= 1) w.bool(false);
    writePartitions(w, v, t.partitions, partition);
    if (v >= 8) {
      w.int32(topicOperations && t.error === 0 ? AUTHORIZED_OPERATIONS.topic : AUTHORIZED_OPERATIONS.notAsked);
    }
  });
  if (v >= 8 && v <= 10) w.int32(clusterOperations ? AUTHORIZED_OPERATIONS.cluster : AUTHORIZED_OPERATIONS.notAsked);
}

/** A topic's partitions, each led by the cluster's one leader and held by every broker. */
function writePartitions(
  w: Writer,
  v: number,
  count: number,
  p: { leaderId: number; replicas: number[]; isr: readonly number[]; epoch: number },
): void {
  const parts = Array.from({ length: count }, (_, i) => i);
  w.array(parts, (w, index) => {
    w.int16(p.leaderId === -1 ? KAFKA.LEADER_NOT_AVAILABLE : 0).int32(index).int32(p.leaderId);
    if (v >= 7) w.int32(p.epoch);
    w.int32Array(p.replicas).int32Array(p.isr.filter((id) => p.replicas.includes(id)));
    if (v >= 5) w.int32Array([]);
  });
}

/**
 * One asked topic. By id (v12): the topic with it, never created on use.
 * v10 and v11 carry the fields but, as in Kafka, may not use them (a null
 * name or an id there is INVALID_REQUEST).
 */
async function describeAsked(
  ctx: KafkaContext,
  t: AskedTopic,
  v: number,
  allowAutoCreate: boolean,
): Promise<TopicAnswer> {
  const topics = ctx.services.topics;
  const byId = t.id !== null && !isZeroTopicId(t.id);
  if (v < 12 && (byId || t.name === null)) {
    return { name: t.name, id: null, error: KAFKA.INVALID_REQUEST, partitions: 0 };
  }
  if (!byId && t.name === null) return { name: null, id: null, error: KAFKA.INVALID_REQUEST, partitions: 0 };
  if (byId) {
    const id = topicIdOfBytes(t.id!);
    const name = topics.topicById(id);
    if (name === null) return { name: null, id, error: KAFKA.UNKNOWN_TOPIC_ID, partitions: 0 };
    return { ...await describeOne(ctx, name, false), id };
  }
  const found = await describeOne(ctx, t.name!, allowAutoCreate);
  return { ...found, id: found.error === 0 ? topics.topicId(t.name!) : null };
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
