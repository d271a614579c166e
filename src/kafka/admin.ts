/**
 * CreateTopics (API 19), DeleteTopics (API 20) and CreatePartitions (API
 * 37) over the broker's topic admin. Replication factor and replica assignments are not choices in yak
 * (every broker holds every partition), so they are accepted and ignored;
 * configs are yak's topic configs, checked the same way. CreateTopics v7
 * answers the new topic's id; DeleteTopics v6 names a topic by name or by id.
 *
 * @module
 */
import { isZeroTopicId, kafkaTopicIdText, topicIdBytes, topicIdOfBytes } from "../broker/topic_id.ts";
import { parseTopicConfigs } from "../broker/topic_config.ts";
import { YakError } from "../errors.ts";
import { checkTopicName } from "../log/names.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import type { Writer } from "./wire.ts";

/** An admin request's error for Kafka: the code (NOT_CONTROLLER without a leader, as Kafka) and the message. */
export function adminErrorOf(err: unknown): { error: number; message: string } {
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

/**
 * A replication factor Kafka would take: -1 (the default) or 1 to the
 * brokers there are, else INVALID_REPLICATION_FACTOR as Kafka answers it.
 * Every broker holds every partition whatever is asked (KAFKA.md), so a
 * factor that no placement could honour is refused, not silently raised.
 */
function checkReplicationFactor(t: { replicationFactor: number; assigned: number[] }, brokers: number): void {
  if (t.assigned.length > 0 || t.replicationFactor === -1) return;
  if (t.replicationFactor < 1) {
    throw new AssignmentError(KAFKA.INVALID_REPLICATION_FACTOR, "replication factor must be larger than 0");
  }
  if (t.replicationFactor > brokers) {
    throw new AssignmentError(
      KAFKA.INVALID_REPLICATION_FACTOR,
      `replication factor: ${t.replicationFactor} larger than available brokers: ${brokers}`,
    );
  }
}

/**
 * Handles CreateTopics v0-7 (v5 is flexible and answers each topic's
 * partition count; v6 is v5; v7 answers each new topic's id).
 */
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
      checkReplicationFactor(t, s.view().brokers.length);
      const configs = parseTopicConfigs(t.configs);
      const n = partitionCountOf(t, s.opts.defaultPartitions);
      if (!Number.isInteger(n) || n < 1 || n > s.opts.maxPartitions) {
        throw new YakError("INVALID_ARGUMENT", `partitions must be 1 to ${s.opts.maxPartitions}`);
      }
      if (s.partitions.partitionCount(t.name) > 0) {
        throw new YakError("INVALID_ARGUMENT", `topic '${t.name}' already exists`);
      }
      // Any broker takes it: a follower hands it to the leader, as topic creation on first use does.
      const id = validateOnly ? null : await s.topics.createFromAnyBroker(t.name, n, configs);
      const message = t.assigned.length > 0 ? PLACEMENT_NOTE : null;
      answers.push({ name: t.name, id, error: 0, message, partitions: n });
    } catch (err) {
      const e = err instanceof AssignmentError ? { error: err.kafkaCode, message: err.message } : adminErrorOf(err);
      answers.push({
        name: t.name,
        id: null,
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
    w.string(a.name);
    if (v >= 7) w.uuid(a.id === null ? null : topicIdBytes(a.id)); // zero: not created (an error, validate only)
    w.int16(a.error);
    if (v >= 1) w.nullableString(a.message);
    // v5: the partitions and replication factor (every broker holds every partition); configs not returned.
    if (v >= 5) w.int32(a.partitions).int16(a.error === 0 ? s.view().brokers.length : -1).array(null, () => {});
  });
}

/** A DeleteTopics entry: a name, or (v6) a topic id (all zero: none). */
interface DeleteAsked {
  name: string | null;
  id: Uint8Array | null;
}

/** What DeleteTopics answers for one entry. */
interface DeleteAnswer {
  name: string | null;
  id: string | null;
  error: number;
  message: string | null;
}

/**
 * Handles DeleteTopics v0-6 (v4 is flexible; v5 answers an error message;
 * v6 names each topic by name or by id and answers both).
 */
export async function deleteTopics(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const asked: DeleteAsked[] = v >= 6
    ? r.array((r) => ({ name: r.nullableString(), id: r.uuid() }), 18)
    : r.stringArray().map((name) => ({ name, id: null }));
  r.int32(); // timeout
  const answers: DeleteAnswer[] = [];
  for (const t of asked) answers.push(await deleteOne(ctx, t));
  if (v >= 1) w.int32(0);
  w.array(answers, (w, a) => {
    w.nullableString(v >= 6 ? a.name : a.name ?? "");
    if (v >= 6) w.uuid(a.id === null ? null : topicIdBytes(a.id));
    w.int16(a.error);
    if (v >= 5) w.nullableString(a.message);
  });
}

/** Deletes one topic, named by name or by id (as Kafka, not both); an id no topic has is UNKNOWN_TOPIC_ID. */
async function deleteOne(ctx: KafkaContext, t: DeleteAsked): Promise<DeleteAnswer> {
  const topics = ctx.services.topics;
  const byId = t.id !== null && !isZeroTopicId(t.id);
  if (byId === (t.name !== null)) {
    const message = byId ? "give a topic's name or its id, not both" : "give a topic's name or its id";
    return { name: t.name, id: byId ? topicIdOfBytes(t.id!) : null, error: KAFKA.INVALID_REQUEST, message };
  }
  const askedId = byId ? topicIdOfBytes(t.id!) : null;
  const name = askedId === null ? t.name! : topics.topicById(askedId);
  if (name === null) {
    return {
      name,
      id: askedId,
      error: KAFKA.UNKNOWN_TOPIC_ID,
      message: `no topic has id ${kafkaTopicIdText(askedId!)}`,
    };
  }
  const id = askedId ?? topics.topicId(name);
  try {
    await topics.delete(name);
    return { name, id, error: 0, message: null };
  } catch (err) {
    return { name, id, ...adminErrorOf(err) };
  }
}

/** Told with partitions added from explicit assignments: their count is kept, their placement is not. */
const PARTITIONS_PLACEMENT_NOTE =
  "partitions added for the assignments' count; yak places every partition on every broker";

/** One topic of a CreatePartitions request, decoded. */
interface PartitionsAsk {
  name: string;
  count: number;
  /** One broker list per new partition; null when the request leaves placement to the broker. */
  assignments: number[][] | null;
}

/**
 * Handles CreatePartitions v0-3 (v2+ flexible): each topic grows to its new
 * count through the topic admin (any broker takes it: a follower hands it to
 * the leader). A count not above today's is INVALID_PARTITIONS; assignments
 * must name one broker list per new partition (INVALID_REPLICA_ASSIGNMENT),
 * and only their count is used.
 */
export async function createPartitions(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const r = req.body;
  const asks: PartitionsAsk[] = r.array((r) => ({
    name: r.string(),
    count: r.int32(),
    assignments: r.nullableArray((r) => r.int32Array(), 4),
  }), 9);
  r.int32(); // timeout: the leader waits for its in-sync replicas up to its own request timeout
  const validateOnly = r.bool();
  const seen = new Map<string, number>();
  for (const a of asks) seen.set(a.name, (seen.get(a.name) ?? 0) + 1);
  const answers = [];
  for (const a of asks) {
    if (seen.get(a.name)! > 1) {
      answers.push({ name: a.name, error: KAFKA.INVALID_REQUEST, message: "the topic is named more than once" });
      continue;
    }
    answers.push({ name: a.name, ...await addPartitions(ctx, a, validateOnly) });
  }
  w.int32(0);
  w.array(answers, (w, a) => w.string(a.name).int16(a.error).nullableString(a.message));
}

/** One topic's CreatePartitions answer: its error code and message. */
async function addPartitions(
  ctx: KafkaContext,
  a: PartitionsAsk,
  validateOnly: boolean,
): Promise<{ error: number; message: string | null }> {
  const s = ctx.services;
  try {
    checkTopicName(a.name);
    const have = s.partitions.partitionCount(a.name);
    if (have === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${a.name}' does not exist`);
    if (a.count > s.opts.maxPartitions) {
      throw new YakError("INVALID_ARGUMENT", `a topic has at most ${s.opts.maxPartitions} partitions, not ${a.count}`);
    }
    if (a.assignments !== null && a.count > have && a.assignments.length !== a.count - have) {
      const problem = `${a.count - have} partitions are added (${have} to ${a.count}) but ` +
        `${a.assignments.length} assignments were given`;
      return { error: KAFKA.INVALID_REPLICA_ASSIGNMENT, message: problem };
    }
    if (a.assignments?.some((brokers) => brokers.length === 0)) {
      return { error: KAFKA.INVALID_REPLICA_ASSIGNMENT, message: "an assignment names no broker" };
    }
    await s.topics.addPartitionsFromAnyBroker(a.name, a.count, validateOnly);
    return { error: 0, message: a.assignments !== null ? PARTITIONS_PLACEMENT_NOTE : null };
  } catch (err) {
    const e = adminErrorOf(err);
    // Every refusal of the count itself (not above today's, past a limit) is Kafka's INVALID_PARTITIONS.
    return { error: e.error === KAFKA.INVALID_REQUEST ? KAFKA.INVALID_PARTITIONS : e.error, message: e.message };
  }
}
