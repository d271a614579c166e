/**
 * CreateTopics (API 19) and DeleteTopics (API 20) over the broker's topic
 * admin. Replication factor and replica assignments are not choices in yak
 * (every broker holds every partition), so they are accepted and ignored;
 * configs are yak's topic configs, checked the same way.
 *
 * @module
 */
import { parseTopicConfigs } from "../broker/topic_config.ts";
import { YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

function adminErrorOf(err: unknown): { error: number; message: string } {
  if (!(err instanceof YakError)) return { error: KAFKA.UNKNOWN_SERVER_ERROR, message: String(err) };
  if (err.code === "NOT_LEADER" || err.code === "NO_LEADER") return { error: 41, message: err.message }; // NOT_CONTROLLER
  if (err.code === "INVALID_ARGUMENT" && /exists/.test(err.message)) {
    return { error: KAFKA.TOPIC_ALREADY_EXISTS, message: err.message };
  }
  return { error: kafkaErrorOf(err.code), message: err.message };
}

/** Told with a topic created from a replica assignment: its partition count is kept, its placement is not. */
const PLACEMENT_NOTE = "created with the assignment's partition count; yak places every partition on every broker";

/** A replica assignment Kafka would refuse, with Kafka's code for it. */
class AssignmentError extends Error {
  constructor(readonly kafkaCode: number, message: string) {
    super(message);
  }
}

/**
 * The partition count a CreateTopics entry asks for: its assignment's
 * (partitions 0..n-1, each named once; then the count and replication
 * factor must be -1, as Kafka requires), else its count, -1 meaning the
 * broker's default.
 */
function partitionCountOf(
  t: { partitions: number; replicationFactor: number; assigned: number[] },
  defaultPartitions: number,
): number {
  if (t.assigned.length === 0) return t.partitions === -1 ? defaultPartitions : t.partitions;
  if (t.partitions !== -1 || t.replicationFactor !== -1) {
    throw new AssignmentError(
      KAFKA.INVALID_REQUEST,
      "give either a partition count and replication factor or a replica assignment, not both",
    );
  }
  const sorted = [...t.assigned].sort((a, b) => a - b);
  if (sorted.some((index, i) => index !== i)) {
    throw new AssignmentError(
      KAFKA.INVALID_REPLICA_ASSIGNMENT,
      `the assignment must name partitions 0 to ${sorted.length - 1} once each, not ${sorted.join(",")}`,
    );
  }
  return sorted.length;
}

/** Handles CreateTopics v0-5 (v5 is flexible and answers each topic's partition count). */
export async function createTopics(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const s = ctx.services;
  const topics = r.array((r) => {
    const name = r.string();
    const partitions = r.int32();
    const replicationFactor = r.int16(); // every broker holds every partition, whatever is asked
    const assigned = r.array((r) => [r.int32(), r.int32Array()] as const, 8).map(([index]) => index);
    const configs = r.array((r) => `${r.string()}=${r.nullableString() ?? ""}`, 4);
    return { name, partitions, replicationFactor, assigned, configs };
  }, 12);
  r.int32(); // timeout
  const validateOnly = v >= 1 ? r.bool() : false;
  const answers = [];
  for (const t of topics) {
    try {
      checkTopicName(t.name);
      const configs = parseTopicConfigs(t.configs);
      const n = partitionCountOf(t, s.opts.defaultPartitions);
      if (!Number.isInteger(n) || n < 1 || n > s.opts.maxPartitions) {
        throw new YakError("INVALID_ARGUMENT", `partitions must be 1 to ${s.opts.maxPartitions}`);
      }
      if (s.partitions.partitionCount(t.name) > 0) {
        throw new YakError("INVALID_ARGUMENT", `topic '${t.name}' already exists`);
      }
      // Any broker takes it: a follower hands it to the leader, as topic creation on first use does.
      if (!validateOnly) await s.topics.createFromAnyBroker(t.name, n, configs);
      answers.push({ name: t.name, error: 0, message: t.assigned.length > 0 ? PLACEMENT_NOTE : null, partitions: n });
    } catch (err) {
      const e = err instanceof AssignmentError ? { error: err.kafkaCode, message: err.message } : adminErrorOf(err);
      answers.push({
        name: t.name,
        error: e.error === KAFKA.INVALID_REQUEST && !(err instanceof AssignmentError)
          ? KAFKA.INVALID_PARTITIONS
          : e.error,
        message: e.message,
        partitions: -1,
      });
    }
  }
  if (v >= 2) w.int32(0);
  w.array(answers, (w, a) => {
    w.string(a.name).int16(a.error);
    if (v >= 1) w.nullableString(a.message);
    // v5: the partitions and replication factor (every broker holds every partition); configs not returned.
    if (v >= 5) w.int32(a.partitions).int16(a.error === 0 ? s.view().brokers.length : -1).array(null, () => {});
  });
}

/** Handles DeleteTopics v0-4 (v4 is flexible). */
export async function deleteTopics(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const names = r.stringArray();
  r.int32(); // timeout
  const answers = [];
  for (const name of names) {
    try {
      await ctx.services.topics.delete(name);
      answers.push({ name, error: 0 });
    } catch (err) {
      answers.push({ name, error: adminErrorOf(err).error });
    }
  }
  if (v >= 1) w.int32(0);
  w.array(answers, (w, a) => w.string(a.name).int16(a.error));
}
