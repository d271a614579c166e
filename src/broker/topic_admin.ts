/**
 * Topic administration as the leader: create a topic (or ensure it exists on
 * first use), add partitions, set configs. Every change is a record in the
 * metadata log, applied by every replica; it resolves once the in-sync
 * replicas hold it.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { Connection } from "../protocol/connection.ts";
import { checkTopicName } from "../log/names.ts";
import type { BrokerContext, LeaderInfo } from "./context.ts";
import { appendMeta } from "./meta_log.ts";
import { CLUSTER_KEY, CLUSTER_TOPIC, topicIdOf } from "./metadata.ts";
import { type ConfigEntry, describeTopicConfigs } from "./describe_configs.ts";
import type { ConfigChange } from "./topic_config.ts";
import { newTopicId } from "./topic_id.ts";

/** What a change may do: create a new topic, create one unless it exists (first use), or alter one. */
type ChangeMode = "create" | "ensure" | "alter";

/**
 * Creates and changes topics, one change per topic at a time.
 *
 * @example
 * ```ts ignore
 * const admin = new TopicAdmin(broker);
 * await admin.create("events", 6, { "min.insync.replicas": "2" });
 * await admin.ensure("auto-created");
 * ```
 */
export class TopicAdmin {
  readonly #b: BrokerContext;
  readonly #changing = new Map<string, Promise<void>>();
  /** Topics a follower is asking the leader to create (one request per topic at a time). */
  readonly #asking = new Map<string, Promise<void>>();

  constructor(b: BrokerContext) {
    this.#b = b;
  }

  /**
   * Creates the topic with the default partition count unless it exists
   * (first use); UNKNOWN_TOPIC when the cluster creates topics only on request.
   */
  ensure(topic: string): Promise<void> {
    if (!this.#autoCreate(topic)) return Promise.reject(notCreatedOnUse(topic));
    return this.#change(topic, this.#b.opts.defaultPartitions, "ensure", {});
  }

  /** Whether a missing topic may be created by its first use here. */
  #autoCreate(topic: string): boolean {
    return this.#b.opts.autoCreateTopics !== false || this.#b.store.has(topic);
  }

  /**
   * Creates a topic on first use from any broker: the leader creates it; a
   * follower asks the leader (a Kafka client's Metadata may reach any
   * broker) and resolves once the leader has answered. The topic then
   * reaches this broker through replication, so the caller asks again.
   */
  ensureFromAnyBroker(topic: string): Promise<void> {
    const b = this.#b;
    if (!this.#autoCreate(topic)) return Promise.reject(notCreatedOnUse(topic));
    if (b.role() === "leader") return this.ensure(topic);
    const leader = b.leader();
    if (!leader) return Promise.resolve();
    const pending = this.#asking.get(topic);
    if (pending) return pending;
    const asking = (async () => {
      const conn = await Connection.open(leader.host, leader.port, { connectTimeoutMs: b.opts.sessionTimeoutMs });
      try {
        await conn.request(
          { type: "create_topic", topic, partitions: b.opts.defaultPartitions },
          b.opts.requestTimeoutMs,
        ).catch((err) => {
          // Another client created it first: what was asked for is there.
          if (!(err instanceof YakError && err.code === "INVALID_ARGUMENT" && /exists/.test(err.message))) throw err;
        });
      } finally {
        conn.close();
      }
    })().finally(() => this.#asking.delete(topic));
    this.#asking.set(topic, asking);
    return asking;
  }

  /**
   * Settles when the change of the topic under way (a creation on first use,
   * above all) has ended, however it ended; null when none is.
   */
  changing(topic: string): Promise<void> | null {
    return this.#changing.get(topic)?.catch(() => {}) ?? null;
  }

  /** Creates a new topic; INVALID_ARGUMENT if it exists. */
  create(topic: string, partitions: number, configs: Record<string, string> = {}): Promise<void> {
    return this.#change(topic, partitions, "create", configs);
  }

  /**
   * Creates a new topic from any broker: a follower hands the request to the
   * leader (a Kafka admin client may send CreateTopics to any broker) and
   * resolves once it has answered, with the new topic's id (null from a
   * leader too old to say it); the same errors as {@link create}.
   */
  async createFromAnyBroker(
    topic: string,
    partitions: number,
    configs: Record<string, string> = {},
  ): Promise<string | null> {
    const b = this.#b;
    if (b.role() === "leader") {
      await this.create(topic, partitions, configs);
      return this.topicId(topic);
    }
    const leader = b.leader();
    if (!leader) throw new YakError("NO_LEADER", "no leader to create the topic; retry after the failover");
    const answer = await this.#askLeader(leader, { type: "create_topic", topic, partitions, configs });
    return typeof answer.topicId === "string" ? answer.topicId : null;
  }

  /** Sends a native request to the leader and waits for its answer (its error is thrown as the leader's). */
  async #askLeader(leader: LeaderInfo, request: Record<string, unknown>): Promise<Record<string, unknown>> {
    const b = this.#b;
    const conn = await Connection.open(leader.host, leader.port, { connectTimeoutMs: b.opts.sessionTimeoutMs });
    try {
      return await conn.request(request, b.opts.requestTimeoutMs);
    } finally {
      conn.close();
    }
  }

  /** Adds partitions (never removes), sets configs and removes configs of an existing topic. */
  alter(
    topic: string,
    partitions: number | undefined,
    configs: Record<string, string> = {},
    deleteConfigs: string[] = [],
  ): Promise<void> {
    return this.#change(topic, partitions, "alter", configs, deleteConfigs);
  }

  /**
   * Grows a topic to `partitions` from any broker: the leader alters it; a
   * follower hands the request to the leader (a Kafka admin client may send
   * CreatePartitions to any broker) and resolves once it has answered; the
   * same errors as {@link alter}. With `validateOnly` nothing changes: it
   * throws what the change would, judged by this broker's copy of the
   * metadata.
   */
  async addPartitionsFromAnyBroker(topic: string, partitions: number, validateOnly = false): Promise<void> {
    const b = this.#b;
    if (validateOnly) {
      const have = b.store.partitionCount(topic);
      checkAlter(topic, partitions, have, false);
      this.#checkPartitionLimit(partitions, have);
      return;
    }
    if (b.role() === "leader") return await this.alter(topic, partitions);
    const leader = b.leader();
    if (!leader) throw new YakError("NO_LEADER", "no leader to add the partitions; retry after the failover");
    await this.#askLeader(leader, { type: "alter_topic", topic, partitions });
  }

  /**
   * Deletes a topic everywhere: a record in `__cluster`, so every replica,
   * and one that is down when it comes back, removes it; its group commits
   * go too. A topic created again under the name starts empty.
   */
  async delete(topic: string): Promise<void> {
    const b = this.#b;
    b.requireLeader();
    checkTopicName(topic); // internal topics are refused here
    await this.#changing.get(topic)?.catch(() => {});
    const meta = b.store.meta.topics.get(topic);
    if (!meta) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    const end = await appendMeta(b, { op: "topic_delete", topic, ...(meta.id ? { id: meta.id } : {}) });
    b.log.write("topic_deleted", { topic });
    await b.requireLeader().waitForHw(CLUSTER_KEY, end, b.opts.requestTimeoutMs);
  }

  /** The topic's id (a UUID, see topic_id.ts), or null when there is no such topic. */
  topicId(topic: string): string | null {
    const meta = topic === CLUSTER_TOPIC ? undefined : this.#b.store.meta.topics.get(topic);
    return meta ? topicIdOf(topic, meta) : null;
  }

  /** The name of the topic with this id, or null when no topic has it (deleted, or never made). */
  topicById(id: string): string | null {
    for (const [name, meta] of this.#b.store.meta.topics) {
      if (name !== CLUSTER_TOPIC && topicIdOf(name, meta) === id) return name;
    }
    return null;
  }

  /** Whether the topic exists (in this broker's copy of the metadata log). */
  exists(topic: string): boolean {
    return this.#b.store.meta.topics.has(topic);
  }

  /** The topic's configs (only those set; the rest are the broker's defaults). */
  configs(topic: string): Record<string, string> {
    return this.#b.store.meta.topics.get(topic)?.configs ?? {};
  }

  /**
   * Every config of the topic (or those in `names`) with the value in force
   * and where it comes from: the topic, a broker flag, or the default.
   * Any broker answers from its copy of the metadata log.
   */
  describeConfigs(topic: string, names: readonly string[] | null = null): ConfigEntry[] {
    checkTopicName(topic);
    const meta = this.#b.store.meta.topics.get(topic);
    if (!meta) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    return describeTopicConfigs(meta.configs ?? {}, this.#b.opts, names);
  }

  /**
   * Changes a topic's configs from any broker (Kafka's AlterConfigs and
   * IncrementalAlterConfigs may reach any): the leader alters it as
   * `yak topics --alter` does ({@link alter}); a follower hands the change
   * to the leader. `changeOf` makes the change from the topic's configs
   * (checked, once the topic is known to exist); `validateOnly` stops after
   * the checks. Removing a config the topic does not set changes nothing.
   */
  async alterConfigsFromAnyBroker(
    topic: string,
    changeOf: (current: Record<string, string>) => ConfigChange,
    validateOnly = false,
  ): Promise<void> {
    checkTopicName(topic);
    if (!this.exists(topic)) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    const set = this.configs(topic);
    const change = changeOf(set);
    const deletes = change.delete.filter((k) => Object.hasOwn(set, k));
    if (validateOnly || (Object.keys(change.set).length === 0 && deletes.length === 0)) return;
    if (this.#b.role() === "leader") return await this.alter(topic, undefined, change.set, deletes);
    const leader = this.#b.leader();
    if (!leader) throw new YakError("NO_LEADER", "no leader to change the topic's configs; retry after the failover");
    await this.#askLeader(leader, { type: "alter_topic", topic, configs: change.set, deleteConfigs: deletes });
  }

  /** `partitions` undefined: as many as the topic has (a change of configs only). */
  #change(
    topic: string,
    partitions: number | undefined,
    mode: ChangeMode,
    configs: Record<string, string>,
    deleteConfigs: string[] = [],
  ): Promise<void> {
    const pending = this.#changing.get(topic);
    if (pending && mode === "ensure") return pending;
    const run = (async () => {
      await pending?.catch(() => {});
      // A record of this topic whose files failed here (a full disk) is finished first, under its id: a new
      // record would give the name another id, and each replica would later remove the records it holds.
      await this.#b.store.openUnopened(topic);
      const have = this.#b.store.partitionCount(topic);
      partitions ??= have;
      if (mode === "ensure" && have > 0) return;
      if (mode === "create" && have > 0) {
        throw new YakError("INVALID_ARGUMENT", `topic '${topic}' already exists with ${have} partitions`);
      }
      if (have === 0) this.#checkNewTopic(topic);
      this.#checkPartitionLimit(partitions, have);
      if (mode === "alter") {
        const hasConfigs = Object.keys(configs).length > 0 || deleteConfigs.length > 0;
        checkAlter(topic, partitions, have, hasConfigs);
      }
      await this.#record(topic, partitions, have, mode, configs, deleteConfigs);
    })();
    this.#changing.set(topic, run);
    run.finally(() => {
      if (this.#changing.get(topic) === run) this.#changing.delete(topic);
    }).catch(() => {});
    return run;
  }

  /**
   * A topic that does not exist yet: refused if its name clashes with an
   * existing one's by case or by '.' against '_', or if the broker holds its
   * most.
   */
  #checkNewTopic(topic: string): void {
    const b = this.#b;
    // Two names that differ only by case would share a directory on a
    // case-insensitive disk (macOS, Windows): refuse the second one.
    const names = [...b.store.meta.topics.keys()].filter((t) => t !== CLUSTER_TOPIC);
    const twin = names.find((t) => t.toLowerCase() === topic.toLowerCase());
    if (twin) {
      throw new YakError(
        "INVALID_TOPIC",
        `topic '${topic}' differs from existing topic '${twin}' only by case; use '${twin}' or another name`,
      );
    }
    // Kafka refuses names that differ only by '.' against '_' (its metric names replace one by the other), so a
    // topic made here could not be mirrored to Kafka beside its twin.
    const metricName = (t: string) => t.toLowerCase().replaceAll(".", "_");
    const collides = names.find((t) => metricName(t) === metricName(topic));
    if (collides) {
      throw new YakError(
        "INVALID_TOPIC",
        `topic '${topic}' collides with existing topic '${collides}': '.' and '_' are the same in Kafka's metric ` +
          `names; use '${collides}' or another name`,
      );
    }
    // Limits on what one broker holds: every partition is a directory,
    // open files and a slot in every follower fetch.
    const topics = names.length;
    if (topics >= b.opts.maxTopics) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `the cluster has ${topics} topics, the most a broker keeps (${b.opts.maxTopics}); delete some first`,
      );
    }
  }

  /** Growing a topic from `have` partitions to `partitions` must keep the broker within its most. */
  #checkPartitionLimit(partitions: number, have: number): void {
    const b = this.#b;
    const total = b.store.all().length - 1;
    if (total + partitions - have > b.opts.maxPartitionsPerBroker) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `${partitions - have} more partitions would pass the ${b.opts.maxPartitionsPerBroker} a broker holds ` +
          `(it has ${total}); delete topics first`,
      );
    }
  }

  /** The change as a record in the metadata log, said in the operation log; resolves once the in-sync replicas hold it. */
  async #record(
    topic: string,
    partitions: number,
    have: number,
    mode: ChangeMode,
    configs: Record<string, string>,
    deleteConfigs: string[],
  ): Promise<void> {
    const b = this.#b;
    const end = await appendMeta(b, {
      op: "topic",
      topic,
      partitions,
      createdAt: Date.now(),
      ...(Object.keys(configs).length > 0 ? { configs } : {}),
      ...(deleteConfigs.length > 0 ? { deleteConfigs } : {}),
      id: have === 0 ? newTopicId() : b.store.meta.topics.get(topic)?.id,
    });
    b.log.write(mode === "alter" ? (partitions > have ? "partitions_added" : "topic_altered") : "topic_created", {
      topic,
      partitions,
      from: have,
      ...(Object.keys(configs).length > 0 ? { configs } : {}),
      ...(deleteConfigs.length > 0 ? { deleteConfigs } : {}),
    });
    await b.requireLeader().waitForHw(CLUSTER_KEY, end, b.opts.requestTimeoutMs);
  }
}

/** An alter of an existing topic adds partitions, or changes only configs. */
function checkAlter(topic: string, partitions: number, have: number, hasConfigs: boolean): void {
  if (have === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const configsOnly = partitions === have && hasConfigs;
  if (partitions <= have && !configsOnly) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `topic '${topic}' has ${have} partitions; partitions can only be added (ask for more than ${have})`,
    );
  }
}

/**
 * The refusal of a topic's creation on first use, with the way to create it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { notCreatedOnUse } from "./topic_admin.ts";
 * assert.equal(notCreatedOnUse("t").code, "UNKNOWN_TOPIC");
 * ```
 */
export function notCreatedOnUse(topic: string): YakError {
  return new YakError(
    "UNKNOWN_TOPIC",
    `topic '${topic}' does not exist, and this cluster creates topics only on request ` +
      `(--auto-create-topics-enable false): create it with 'yak topics --create ${topic}'`,
  );
}
