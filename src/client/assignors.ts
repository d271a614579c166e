/**
 * Partition assignment strategies, as Kafka's clients define them (the group
 * leader member runs one; the coordinator only hands the result out).
 *
 * @module
 */
import type { Assignment } from "../protocol/consumer_protocol.ts";

/** The strategies yak's consumer offers, by Kafka's names. */
export type AssignorName = "range" | "roundrobin";

/** A member's id and the topics it subscribes to. */
export interface Subscriber {
  memberId: string;
  topics: readonly string[];
}

/**
 * Kafka's RangeAssignor: per topic, the partitions in order are cut into
 * consecutive ranges, one per subscribed member (sorted by id); the first
 * `partitions % members` members get one more.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rangeAssign } from "./assignors.ts";
 * assert.deepEqual(
 *   rangeAssign([{ memberId: "a", topics: ["t"] }, { memberId: "b", topics: ["t"] }], { t: 3 }),
 *   { a: { t: [0, 1] }, b: { t: [2] } },
 * );
 * ```
 */
export function rangeAssign(
  members: readonly Subscriber[],
  partitions: Readonly<Record<string, number>>,
): Record<string, Assignment> {
  const out = emptyAssignments(members);
  const topics = [...new Set(members.flatMap((m) => m.topics))].sort();
  for (const topic of topics) {
    const count = partitions[topic] ?? 0;
    const subs = members.filter((m) => m.topics.includes(topic)).map((m) => m.memberId).sort();
    if (subs.length === 0 || count === 0) continue;
    const per = Math.floor(count / subs.length);
    const extra = count % subs.length;
    let next = 0;
    subs.forEach((id, i) => {
      const n = per + (i < extra ? 1 : 0);
      if (n > 0) out[id][topic] = Array.from({ length: n }, (_, k) => next + k);
      next += n;
    });
  }
  return out;
}

/**
 * Kafka's RoundRobinAssignor: every (topic, partition), sorted, goes to the
 * next member (sorted by id) that subscribes to its topic.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roundRobinAssign } from "./assignors.ts";
 * assert.deepEqual(
 *   roundRobinAssign([{ memberId: "a", topics: ["t"] }, { memberId: "b", topics: ["t"] }], { t: 3 }),
 *   { a: { t: [0, 2] }, b: { t: [1] } },
 * );
 * ```
 */
export function roundRobinAssign(
  members: readonly Subscriber[],
  partitions: Readonly<Record<string, number>>,
): Record<string, Assignment> {
  const out = emptyAssignments(members);
  const ids = members.map((m) => m.memberId).sort();
  const byId = new Map(members.map((m) => [m.memberId, m]));
  const topics = [...new Set(members.flatMap((m) => m.topics))].sort();
  let turn = 0;
  for (const topic of topics) {
    for (let p = 0; p < (partitions[topic] ?? 0); p++) {
      for (let tries = 0; tries < ids.length; tries++) {
        const id = ids[turn % ids.length];
        turn++;
        if (byId.get(id)!.topics.includes(topic)) {
          (out[id][topic] ??= []).push(p);
          break;
        }
      }
    }
  }
  return out;
}

function emptyAssignments(members: readonly Subscriber[]): Record<string, Assignment> {
  return Object.fromEntries(members.map((m) => [m.memberId, {}]));
}

/**
 * Runs the named strategy.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { assign } from "./assignors.ts";
 * assert.deepEqual(assign("range", [{ memberId: "a", topics: ["t"] }], { t: 2 }), { a: { t: [0, 1] } });
 * ```
 */
export function assign(
  name: AssignorName,
  members: readonly Subscriber[],
  partitions: Readonly<Record<string, number>>,
): Record<string, Assignment> {
  return name === "range" ? rangeAssign(members, partitions) : roundRobinAssign(members, partitions);
}
