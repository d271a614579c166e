/**
 * Native topic administration: `create_topic`, `alter_topic`, `delete_topic`,
 * `delete_records`, all on the leader, and `describe_configs` on any broker.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { checkConfigKeys, parseTopicConfigs } from "../broker/topic_config.ts";
import { YakError } from "../errors.ts";
import { int, type Reply, type Request } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";

async function createOrAlter(s: BrokerServices, req: Request, mode: "create" | "alter"): Promise<Reply> {
  s.requireLeader();
  const topic = checkTopicName(req.topic);
  const configs = parseTopicConfigs(req.configs);
  const deleteConfigs = checkConfigKeys(req.deleteConfigs);
  // An alter may change configs only: the partition count then stays.
  const partitions = mode === "alter" && req.partitions === undefined
    ? undefined
    : int(req, "partitions", 1, s.opts.maxPartitions);
  if (mode === "create") {
    checkReplicationFactor(s, req);
    await s.topics.create(topic, partitions!, configs);
  } else await s.topics.alter(topic, partitions, configs, deleteConfigs);
  return {
    topic,
    partitions: s.partitions.partitionCount(topic),
    configs: s.topics.configs(topic),
    topicId: s.topics.topicId(topic), // not `id`: a reply's id is its request's (the frame's correlation id)
    replicas: s.view().brokers.length,
  };
}

/**
 * A `replicationFactor` asked for (kafka-topics.sh's --replication-factor):
 * yak keeps every partition on every broker, so a topic always has as many
 * replicas as the cluster has brokers. More than that is refused, as Kafka
 * refuses a factor larger than its broker count; up to it is accepted.
 */
function checkReplicationFactor(s: BrokerServices, req: Request): void {
  if (req.replicationFactor === undefined) return;
  const factor = int(req, "replicationFactor", 1, 32767);
  const brokers = s.view().brokers.length;
  if (factor > brokers) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `replication factor ${factor} is larger than the cluster's ${brokers} broker${brokers === 1 ? "" : "s"}; ` +
        `yak keeps every partition on every broker, so topics here have ${brokers} replica${brokers === 1 ? "" : "s"}`,
    );
  }
}

/** `create_topic`: a topic with its partitions and configs. */
export function createTopic(s: BrokerServices, req: Request): Promise<Reply> {
  return createOrAlter(s, req, "create");
}

/** `alter_topic`: more partitions, or configs set and deleted. */
export function alterTopic(s: BrokerServices, req: Request): Promise<Reply> {
  return createOrAlter(s, req, "alter");
}

/**
 * `delete_records`: a partition's records below `offset` (-1: the high
 * watermark), on every in-sync replica (Kafka's DeleteRecords, through the
 * same service); answers the partition's new log start.
 */
export async function deleteRecords(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const topic = checkTopicName(req.topic);
  const partition = int(req, "partition", 0, s.opts.maxPartitions - 1);
  const offset = int(req, "offset", -1);
  // Where the log started before (`before`): a deletion below it, or up to it, removes nothing.
  const before = s.partitions.partitionCount(topic) > partition
    ? s.partitions.offsets({ topic, partition }).logStart
    : undefined;
  const logStart = await s.partitions.deleteRecords({ topic, partition }, offset, s.opts.requestTimeoutMs);
  return { topic, partition, logStart, ...(before === undefined ? {} : { before }) };
}

/** `delete_topic`: its records, partitions and committed offsets, on every replica. */
export async function deleteTopic(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  await s.topics.delete(checkTopicName(req.topic));
  return { deleted: true };
}

/** `describe_configs`: every config of a topic with its value and source (`yak topics --describe`). */
export function describeConfigs(s: BrokerServices, req: Request): Reply {
  const topic = checkTopicName(req.topic);
  return { topic, configs: s.topics.describeConfigs(topic) };
}
