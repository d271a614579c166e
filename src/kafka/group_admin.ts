/**
 * The group admin APIs, DeleteGroups (42) and OffsetDelete (47), as
 * translators over the group coordinator that `yak groups --delete` and
 * `--delete-offsets` use too. Like the other group APIs they run on the
 * leader (the coordinator of every group); elsewhere the answer is
 * NOT_COORDINATOR and the client asks FindCoordinator again.
 *
 * @module
 */
import { YakError } from "../errors.ts";
import { checkGroupName, checkTopicName } from "../log/names.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import { groupErrorOf } from "./groups.ts";
import type { Writer } from "./wire.ts";

/** A group API's error code, and INVALID_GROUP_ID for a group id yak refuses (an empty one). */
function adminGroupErrorOf(err: unknown): number {
  if (err instanceof YakError && err.code === "INVALID_ARGUMENT" && /group id/.test(err.message)) {
    return KAFKA.INVALID_GROUP_ID;
  }
  return groupErrorOf(err);
}

/**
 * Handles DeleteGroups v0-2 (v2 flexible): each group and its committed
 * offsets, through the coordinator's delete. A group with members answers
 * NON_EMPTY_GROUP, one that does not exist GROUP_ID_NOT_FOUND, as Kafka.
 */
export async function deleteGroups(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const names = req.body.stringArray();
  const answers = [];
  for (const group of names) {
    try {
      await ctx.services.groups.delete(checkGroupName(group));
      answers.push({ group, error: 0 });
    } catch (err) {
      answers.push({ group, error: adminGroupErrorOf(err) });
    }
  }
  w.int32(0);
  w.array(answers, (w, a) => w.string(a.group).int16(a.error));
}

/** OffsetDelete's answer for one topic: each partition's error code. */
interface TopicAnswer {
  name: string;
  parts: { index: number; error: number }[];
}

/**
 * Handles OffsetDelete v0: deletes a group's committed offsets for the given
 * partitions (one record in the metadata log). A partition of a topic the
 * group's live members subscribe to answers GROUP_SUBSCRIBED_TO_TOPIC; a
 * group that does not exist is refused whole (GROUP_ID_NOT_FOUND), as is one
 * whose members' subscriptions yak cannot read (NON_EMPTY_GROUP).
 */
export async function offsetDelete(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const r = req.body;
  const group = r.string();
  const asked = r.array((r) => ({ name: r.string(), parts: r.int32Array() }), 6);
  let error = 0;
  let topics: TopicAnswer[] = [];
  try {
    // A topic named twice is asked once, with the partitions of both; a name no topic can have is answered as
    // an unknown topic, without asking.
    const byTopic = new Map<string, number[]>();
    for (const t of asked) byTopic.set(t.name, [...new Set([...byTopic.get(t.name) ?? [], ...t.parts])]);
    const valid = new Map([...byTopic].filter(([name]) => validTopic(name)));
    const results = await ctx.services.groups.deleteOffsets(checkGroupName(group), valid);
    topics = [...byTopic].map(([name, parts]) => ({
      name,
      parts: parts.map((index) => {
        const refused = results.get(name)?.get(index);
        if (refused === undefined) return { index, error: KAFKA.UNKNOWN_TOPIC_OR_PARTITION };
        return { index, error: refused === null ? 0 : kafkaErrorOf(refused.code) };
      }),
    }));
  } catch (err) {
    error = adminGroupErrorOf(err);
  }
  w.int16(error).int32(0);
  w.array(topics, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => w.int32(p.index).int16(p.error));
  });
}

/** Whether a name can be a topic's (else its partitions answer UNKNOWN_TOPIC_OR_PARTITION). */
function validTopic(name: string): boolean {
  try {
    checkTopicName(name);
    return true;
  } catch {
    return false;
  }
}
