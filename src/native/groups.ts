/**
 * Native consumer groups (Kafka's classic protocol, on the leader's
 * coordinator): membership, assignments, committed offsets.
 *
 * @module
 */
import { GROUP_STATES, groupStateOf, memberHost } from "../broker/group_coordinator.ts";
import type { BrokerServices } from "../broker/services.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import { int, offsetMap, optInt, optStr, type Reply, type Request, str } from "../protocol/messages.ts";
import type { Session } from "../protocol/server.ts";
import { checkClientId, checkGroupName, checkTopicName } from "./names.ts";

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function bytesOf(value: unknown, what: string): Uint8Array {
  if (typeof value !== "string" || value.length > MAX_METADATA_B64 || !B64.test(value)) {
    throw new YakError("INVALID_REQUEST", `'${what}' must be base64 (at most ${MAX_METADATA_B64} characters)`);
  }
  const raw = atob(value);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** Base64 of a group's metadata bytes: at most the coordinator's limit, plus a third. */
const MAX_METADATA_B64 = Math.ceil(DEFAULTS.maxGroupMetadataBytes / 3) * 4;

function b64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function memberIdOf(req: Request): string {
  const id = str(req, "memberId", 200);
  return id;
}

/** `join_group`: joins (or rejoins) a group and waits for its rebalance; metadata travels as base64. */
export async function joinGroup(s: BrokerServices, req: Request, session: Session): Promise<Reply> {
  const group = checkGroupName(req.group);
  const memberId = typeof req.memberId === "string" ? memberIdOf(req) : "";
  const clientId = checkClientId(str(req, "clientId", 64), "clientId");
  const raw = req.protocols;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 16) {
    throw new YakError("INVALID_REQUEST", "'protocols' must list 1 to 16 {name, metadata}");
  }
  const protocols = raw.map((p, i) => {
    if (typeof p !== "object" || p === null || typeof p.name !== "string" || p.name.length > 64) {
      throw new YakError("INVALID_REQUEST", `protocol ${i} needs a name (at most 64 characters)`);
    }
    return { name: p.name as string, metadata: bytesOf(p.metadata, "metadata") };
  });
  const sessionTimeoutMs = optInt(req, "sessionTimeoutMs", DEFAULTS.groupSessionTimeoutMs, 1, 2 ** 31 - 1);
  const res = await s.groups.join({
    group,
    memberId,
    clientId,
    host: memberHost(session.remote),
    sessionTimeoutMs,
    rebalanceTimeoutMs: optInt(req, "rebalanceTimeoutMs", sessionTimeoutMs, 1, 2 ** 31 - 1),
    protocolType: optStr(req, "protocolType", 64) ?? "consumer",
    protocols,
    lastGeneration: optInt(req, "lastGeneration", 0, 0, 2 ** 31 - 1),
  });
  return {
    generation: res.generation,
    protocol: res.protocol,
    leaderId: res.leaderId,
    memberId: res.memberId,
    members: res.members.map((m) => ({ memberId: m.memberId, metadata: b64(m.metadata) })),
  };
}

/** `sync_group`: the leader member hands in the assignments; every member gets its own. */
export async function syncGroup(s: BrokerServices, req: Request): Promise<Reply> {
  const group = checkGroupName(req.group);
  let assignments: Map<string, Uint8Array> | null = null;
  if (req.assignments !== undefined && req.assignments !== null) {
    if (!Array.isArray(req.assignments) || req.assignments.length > DEFAULTS.maxGroupMembers) {
      throw new YakError("INVALID_REQUEST", `'assignments' must list at most ${DEFAULTS.maxGroupMembers} members`);
    }
    assignments = new Map();
    for (const a of req.assignments) {
      if (typeof a !== "object" || a === null || typeof a.memberId !== "string") {
        throw new YakError("INVALID_REQUEST", "each assignment needs a memberId and base64 'assignment'");
      }
      assignments.set(a.memberId, bytesOf(a.assignment, "assignment"));
    }
  }
  const bytes = await s.groups.sync(group, memberIdOf(req), int(req, "generation"), assignments);
  return { assignment: b64(bytes) };
}

/** `heartbeat`: a member stays in its generation. */
export function heartbeat(s: BrokerServices, req: Request): Reply {
  s.groups.heartbeat(checkGroupName(req.group), memberIdOf(req), int(req, "generation"));
  return {};
}

/** `leave_group`: a member leaves at once, rather than when its session times out. */
export function leaveGroup(s: BrokerServices, req: Request): Reply {
  s.groups.leave(checkGroupName(req.group), memberIdOf(req));
  return {};
}

/** `list_groups`: every group the leader's coordinator knows; with `states`, those in one of them (KIP-518). */
export function listGroups(s: BrokerServices, req: Request): Reply {
  s.requireLeader();
  const states = req.states ?? [];
  if (!Array.isArray(states) || states.length > GROUP_STATES.length || states.some((x) => typeof x !== "string")) {
    throw new YakError("INVALID_REQUEST", `'states' must list at most ${GROUP_STATES.length} group states`);
  }
  return { groups: s.groups.list(states.map(groupStateOf)) };
}

/** `describe_group`: its state and members, each assignment also decoded to partitions. */
export function describeGroup(s: BrokerServices, req: Request): Reply {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const view = s.groups.describe(group);
  const decoded = s.groups.describeDecoded(group);
  return {
    ...view,
    members: view.members.map((m, i) => ({
      ...m,
      metadata: b64(m.metadata),
      assignment: b64(m.assignment),
      partitions: decoded.members[i]?.partitions ?? {},
    })),
  };
}

/** `delete_group`: an empty group and its committed offsets. */
export async function deleteGroup(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  await s.groups.delete(checkGroupName(req.group));
  return { deleted: true };
}

/**
 * `delete_offsets`: a group's committed offsets in a topic, for `partitions`
 * (default: all the topic has), refused for a topic its live members
 * subscribe to.
 */
export async function deleteOffsets(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  const count = s.partitions.partitionCount(topic);
  if (count === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const asked = req.partitions ?? Array.from({ length: count }, (_, p) => p);
  if (!Array.isArray(asked) || asked.length > s.opts.maxPartitions || !asked.every(Number.isInteger)) {
    throw new YakError("INVALID_REQUEST", `'partitions' must list at most ${s.opts.maxPartitions} partition numbers`);
  }
  const bad = (asked as number[]).find((p) => p < 0 || p >= count);
  if (bad !== undefined) throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition ${bad}`);
  // Which of them had a commit to delete (the others: nothing was there, which Kafka answers as done too).
  const had = s.groups.committed(group, topic);
  // Every partition is one the topic has: what is left to refuse is the topic (its subscribers), so all or none.
  const results = await s.groups.deleteOffsets(group, new Map([[topic, asked as number[]]]));
  const refused = [...results.get(topic)!.values()].find((err) => err !== null);
  if (refused) throw refused;
  return { group, topic, partitions: asked, deleted: (asked as number[]).filter((p) => had[p] !== undefined) };
}

/** A request's `offsets` as partition -> offset, every partition one the topic has. */
function partitionOffsets(s: BrokerServices, req: Request, topic: string): Map<number, number> {
  const count = s.partitions.partitionCount(topic);
  if (count === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const offsets = new Map<number, number>();
  for (const [p, off] of offsetMap(req, "offsets", s.opts.maxPartitions)) {
    const i = Number(p);
    if (!Number.isInteger(i) || i < 0 || i >= count || String(i) !== p) {
      throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition '${p}'`);
    }
    offsets.set(i, off);
  }
  return offsets;
}

/** `reset_offsets`: sets a group's committed offsets (an admin's move, outside any generation). */
export async function resetOffsets(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  const offsets = partitionOffsets(s, req, topic);
  return { committed: await s.groups.resetOffsets(group, topic, offsets) };
}

/** `commit`: a consumer's offsets, in its member's generation when it has one. */
export async function commit(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  checkIncarnation(s, req, topic); // first: the old topic's partitions may not be the new one's
  const offsets = partitionOffsets(s, req, topic);
  // A member commits with its id and generation; stale ones are refused.
  const member = req.memberId === undefined || req.memberId === null
    ? null
    : { memberId: memberIdOf(req), generation: int(req, "generation") };
  return { committed: await s.groups.commit(group, topic, offsets, member) };
}

/**
 * A commit that names its topic's id (`topicId`, from `metadata`'s `ids`)
 * is for that incarnation only: positions in a topic deleted since would
 * otherwise land on a new topic of the same name and skip its records.
 */
function checkIncarnation(s: BrokerServices, req: Request, topic: string): void {
  const asked = optStr(req, "topicId", 64);
  if (asked === undefined) return;
  const id = s.topics.topicId(topic);
  if (id === null) {
    throw new YakError(
      "UNKNOWN_TOPIC_ID",
      `topic '${topic}' (id ${asked}) was deleted; its positions are gone with it`,
    );
  }
  if (id !== asked) {
    throw new YakError(
      "UNKNOWN_TOPIC_ID",
      `topic '${topic}' was deleted and created again (id ${id}, not ${asked}); its positions do not carry over`,
      { topicId: id },
    );
  }
}

/** `committed`: a group's committed offsets for a topic. */
export function committed(s: BrokerServices, req: Request): Reply {
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  return { offsets: s.groups.committed(group, topic) };
}
