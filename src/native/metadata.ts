/**
 * Native `metadata`: who leads, in which epoch, and the topics (one topic may
 * be created on the way, as a producer's first record would).
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { notCreatedOnUse } from "../broker/topic_admin.ts";
import { YakError } from "../errors.ts";
import type { Reply, Request } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";

/**
 * `metadata`: the cluster as this broker sees it; `create: true` makes a
 * missing topic on the leader. `ids` gives each topic's incarnation (its
 * topic id), which `fetch` and `commit` may name.
 */
export async function metadata(s: BrokerServices, req: Request): Promise<Reply> {
  const topic = req.topic === undefined ? undefined : checkTopicName(req.topic);
  if (topic !== undefined && req.create === true && s.view().topics[topic] === undefined) {
    s.requireLeader();
    await s.topics.ensure(topic);
  }
  const view = s.view();
  const topics = topic === undefined ? view.topics : (view.topics[topic] === undefined ? {} : {
    [topic]: view.topics[topic],
  });
  if (topic !== undefined && topics[topic] === undefined) {
    if (s.opts.autoCreateTopics === false) throw notCreatedOnUse(topic);
    // A producer learns how many partitions its first record would create the topic with.
    throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist; produce to it or create it first`, {
      defaultPartitions: s.opts.defaultPartitions,
    });
  }
  // Each topic's incarnation: a consumer holding positions in one deleted since drops them (see Consumer).
  const ids: Record<string, string> = {};
  for (const name of Object.keys(topics)) {
    const id = s.topics.topicId(name);
    if (id !== null) ids[name] = id;
  }
  return { brokerId: view.brokerId, role: view.role, epoch: view.epoch, leader: view.leader, topics, ids };
}
