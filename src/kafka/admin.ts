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

/** Handles CreateTopics v0-5 (v5 is flexible and answers each topic's partition count). */
export async function createTopics(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const s = ctx.services;
  const topics = r.array((r) => {
    const name = r.string();
    const partitions = r.int32();
    r.int16(); // replication factor: every broker holds every partition
    r.array((r) => [r.int32(), r.int32Array()], 8); // assignments
    const configs = r.array((r) => `${r.string()}=${r.nullableString() ?? ""}`, 4);
    return { name, partitions, configs };
  }, 12);
  r.int32(); // timeout
  const validateOnly = v >= 1 ? r.bool() : false;
  const answers = [];
  for (const t of topics) {
    try {
      checkTopicName(t.name);
      const configs = parseTopicConfigs(t.configs);
      const n = t.partitions === -1 ? s.opts.defaultPartitions : t.partitions;
      if (!Number.isInteger(n) || n < 1 || n > s.opts.maxPartitions) {
        throw new YakError("INVALID_ARGUMENT", `partitions must be 1 to ${s.opts.maxPartitions}`);
      }
      s.requireLeader();
      if (s.partitions.partitionCount(t.name) > 0) {
        throw new YakError("INVALID_ARGUMENT", `topic '${t.name}' already exists`);
      }
      if (!validateOnly) await s.topics.create(t.name, n, configs);
      answers.push({ name: t.name, error: 0, message: null, partitions: n });
    } catch (err) {
      const e = adminErrorOf(err);
      answers.push({
        name: t.name,
        error: e.error === KAFKA.INVALID_REQUEST ? KAFKA.INVALID_PARTITIONS : e.error,
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
