/**
 * The group APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
 * LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups) as
 * translators over the one group coordinator that `yak consume --group` uses
 * too, so a group can mix Kafka clients and yak consumers. The coordinator
 * runs on the leader; elsewhere the answer is NOT_COORDINATOR and the client
 * asks FindCoordinator again.
 *
 * @module
 */
import { type JoinResult, memberHost } from "../broker/group_coordinator.ts";
import { YakError } from "../errors.ts";
import { checkGroupName, checkTopicName } from "../log/names.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA, kafkaErrorOf } from "./errors.ts";
import { kafkaBrokers } from "./metadata.ts";
import { AUTHORIZED_OPERATIONS } from "./authorized_operations.ts";
import type { Reader, Writer } from "./wire.ts";

/**
 * NOT_COORDINATOR on a broker that is not the leader (0 on the leader): the
 * check Kafka makes before it reads a group, so a client whose coordinator
 * moved finds the new one instead of reading a follower's copy (which once
 * described an active group as Empty).
 */
function coordinatorError(ctx: KafkaContext): number {
  return ctx.services.view().role === "leader" ? 0 : KAFKA.NOT_COORDINATOR;
}

/** A group API's error code: a follower (or no leader) is not the coordinator. */
export function groupErrorOf(err: unknown): number {
  if (!(err instanceof YakError)) return KAFKA.UNKNOWN_SERVER_ERROR;
  if (err.code === "NOT_LEADER" || err.code === "NO_LEADER" || err.code === "STALE_EPOCH") return KAFKA.NOT_COORDINATOR;
  if (err.code === "INVALID_ARGUMENT" && /session timeout/.test(err.message)) return KAFKA.INVALID_SESSION_TIMEOUT;
  if (err.code === "INVALID_TOPIC" && /group/.test(err.message)) return KAFKA.INVALID_GROUP_ID;
  return kafkaErrorOf(err.code);
}

/**
 * Handles FindCoordinator v0-4: the leader coordinates every group (key type
 * 0) and every transactional id (key type 1). v4 (KIP-699) asks for several
 * keys at once and answers each.
 */
export function findCoordinator(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const oneKey = v <= 3 ? r.string() : ""; // the group (or transactional id)
  const keyType = v >= 1 ? r.int8() : 0;
  const keys = v >= 4 ? r.stringArray() : [oneKey];
  const { brokers, leaderId } = kafkaBrokers(ctx);
  const leader = brokers.find((b) => b.nodeId === leaderId);
  const error = keyType !== 0 && keyType !== 1 ? KAFKA.INVALID_REQUEST : leader ? 0 : KAFKA.COORDINATOR_NOT_AVAILABLE;
  const message = keyType !== 0 && keyType !== 1
    ? "yak coordinates consumer groups (key type 0) and transactions (key type 1)"
    : error === 0
    ? null
    : "no coordinator now; retry";
  const nodeId = leader && error === 0 ? leader.nodeId : -1;
  const host = leader?.host ?? "";
  const port = leader?.port ?? -1;
  if (v >= 1) w.int32(0);
  if (v >= 4) {
    w.array(
      keys,
      (w, key) => w.string(key).int32(nodeId).string(host).int32(port).int16(error).nullableString(message),
    );
    return;
  }
  w.int16(error);
  if (v >= 1) w.nullableString(message);
  w.int32(nodeId).string(host).int32(port);
}

/**
 * Handles JoinGroup v0-9 (before v4 a new member gets its id within the same
 * request; v5 brings the group instance id of a static member, KIP-345; v6 is
 * flexible; v7 answers the protocol type, and a null protocol name on an
 * error; v8 brings the client's reason, KIP-800; v9 can tell a restarted
 * static leader to skip the assignment, KIP-814).
 */
export async function joinGroup(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const group = r.string();
  const sessionTimeoutMs = r.int32();
  const rebalanceTimeoutMs = v >= 1 ? r.int32() : sessionTimeoutMs;
  let memberId = r.string();
  const groupInstanceId = v >= 5 ? r.nullableString() : null;
  const protocolType = r.string();
  const protocols = r.array((r) => ({ name: r.string(), metadata: r.bytes().slice() }), 6);
  const reason = v >= 8 ? r.nullableString() : null;
  let result: JoinResult | null = null;
  let error = 0;
  for (let attempt = 0; attempt < 2 && result === null; attempt++) {
    try {
      checkGroupName(group);
      result = await ctx.services.groups.join({
        group,
        memberId,
        clientId: req.clientId || "kafka-client",
        host: memberHost(req.session.remote),
        sessionTimeoutMs,
        rebalanceTimeoutMs,
        protocolType,
        protocols,
        groupInstanceId,
        reason,
        canSkipAssignment: v >= 9,
      });
    } catch (err) {
      if (err instanceof YakError && err.code === "MEMBER_ID_REQUIRED") {
        memberId = String(err.data?.memberId ?? "");
        // KIP-394 is v4+: older clients cannot take the id and come back, so join with it now.
        if (v < 4 && attempt === 0) continue;
      }
      error = groupErrorOf(err);
      break;
    }
  }
  if (v >= 2) w.int32(0);
  w.int16(error);
  w.int32(result?.generation ?? -1);
  // v7+: the group's protocol type (the member's own: a join with another is refused), and null ones on an error.
  if (v >= 7) w.nullableString(result ? protocolType : null).nullableString(result?.protocol ?? null);
  else w.string(result?.protocol ?? "");
  w.string(result?.leaderId ?? "");
  if (v >= 9) w.bool(result?.skipAssignment ?? false);
  w.string(result?.memberId ?? memberId);
  w.array(result?.members ?? [], (w, m) => {
    w.string(m.memberId);
    if (v >= 5) w.nullableString(m.groupInstanceId);
    w.nullableBytes(m.metadata);
  });
}

/**
 * Handles SyncGroup v0-5 (v4 is flexible; v5 names the protocol type and
 * name, KIP-559: refused unless they are the group's, and answered).
 */
export async function syncGroup(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const group = r.string();
  const generation = r.int32();
  const memberId = r.string();
  const groupInstanceId = v >= 3 ? r.nullableString() : null;
  const protocol = v >= 5 ? { type: r.nullableString(), name: r.nullableString() } : {};
  const assignments = r.array((r) => [r.string(), r.bytes().slice()] as const, 6);
  let error = 0;
  let assignment: Uint8Array = new Uint8Array(0);
  try {
    assignment = await ctx.services.groups.sync(
      group,
      memberId,
      generation,
      assignments.length > 0 ? new Map(assignments) : null,
      groupInstanceId,
      protocol,
    );
  } catch (err) {
    error = groupErrorOf(err);
  }
  if (v >= 1) w.int32(0);
  w.int16(error);
  if (v >= 5) {
    const current = error === 0 ? ctx.services.groups.protocolOf(group) : null;
    w.nullableString(current?.type ?? null).nullableString(current?.name ?? null);
  }
  w.nullableBytes(assignment);
}

/** Handles Heartbeat v0-4 (v4 is flexible). */
export function heartbeat(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const group = r.string();
  const generation = r.int32();
  const memberId = r.string();
  const groupInstanceId = v >= 3 ? r.nullableString() : null;
  let error = 0;
  try {
    ctx.services.groups.heartbeat(group, memberId, generation, groupInstanceId);
  } catch (err) {
    error = groupErrorOf(err);
  }
  if (v >= 1) w.int32(0);
  w.int16(error);
}

/**
 * Handles LeaveGroup v0-5 (v3 takes several members, each by member id or by
 * group instance id; v4 is flexible; v5 gives each member's reason, KIP-800,
 * told in the operation log).
 */
export function leaveGroup(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const group = r.string();
  const members = v >= 3
    ? r.array((r) => ({ id: r.string(), instance: r.nullableString(), reason: v >= 5 ? r.nullableString() : null }), 4)
    : [{ id: r.string(), instance: null, reason: null }];
  const notCoordinator = coordinatorError(ctx);
  if (notCoordinator !== 0) {
    // As Kafka: the whole request's error and no members, so an admin client looks for the coordinator again.
    if (v >= 1) w.int32(0);
    w.int16(notCoordinator);
    if (v >= 3) w.array([], () => {});
    return;
  }
  const errors = members.map((m) => {
    try {
      ctx.services.groups.leave(group, m.id, m.instance, m.reason);
      return 0;
    } catch (err) {
      return groupErrorOf(err);
    }
  });
  if (v >= 1) w.int32(0);
  w.int16(v >= 3 ? 0 : errors[0]);
  if (v >= 3) {
    w.array(members.map((m, i) => ({ ...m, error: errors[i] })), (w, m) => {
      w.string(m.id).nullableString(m.instance).int16(m.error);
    });
  }
}

/** A commit's metadata string at most (Kafka's offset.metadata.max.bytes): every commit record carries it. */
const MAX_COMMIT_METADATA_CHARS = 4096;

/**
 * Handles OffsetCommit v0-9 (v8 flexible; v9 is v8, its generation a member
 * epoch for KIP-848 groups, which yak does not have): one commit per topic,
 * checked against the member and generation.
 */
export async function offsetCommit(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const { version: v, body: r } = req;
  const group = r.string();
  const generation = v >= 1 ? r.int32() : -1;
  const memberId = v >= 1 ? r.string() : "";
  const groupInstanceId = v >= 7 ? r.nullableString() : null;
  if (v >= 2 && v <= 4) r.int64Big(); // retention time
  const topics = r.array((r) => ({
    name: r.string(),
    parts: r.array((r) => {
      const index = r.int32();
      const offset = r.int64OrNull(); // past what stored commits hold: INVALID_COMMIT_OFFSET_SIZE, on its own
      const epoch = v >= 6 ? r.int32() : -1;
      if (v === 1) r.int64Big(); // commit timestamp
      const metadata = r.nullableString() ?? "";
      return { index, offset, epoch, metadata };
    }, 14),
  }), 4);
  // Generation -1 with a member id: an admin's commit while the group is empty, else checked (commit()).
  const member = memberId !== "" ? { memberId, generation, groupInstanceId } : null;
  const answers = await Promise.all(topics.map(async (t) => {
    let error = 0;
    // As Kafka: a partition whose metadata is too long, or that the topic does not have, is refused on its own;
    // the others are stored.
    const n = ctx.services.partitions.partitionCount(t.name);
    const missing = (p: { index: number }) => n > 0 && (p.index < 0 || p.index >= n);
    const refusal = (p: { index: number; offset: number | null; metadata: string }) =>
      missing(p)
        ? KAFKA.UNKNOWN_TOPIC_OR_PARTITION
        : p.metadata.length > MAX_COMMIT_METADATA_CHARS
        ? KAFKA.OFFSET_METADATA_TOO_LARGE
        : p.offset === null
        ? KAFKA.INVALID_COMMIT_OFFSET_SIZE
        : 0;
    const kept = t.parts.filter((p) => refusal(p) === 0);
    try {
      checkGroupName(group);
      checkTopicName(t.name);
      const offsets = new Map(kept.map((p) => [p.index, p.offset!]));
      const info = new Map(kept.map((p) => [p.index, { m: p.metadata, e: p.epoch }]));
      if (kept.length > 0) await ctx.services.groups.commit(group, t.name, offsets, member, info);
    } catch (err) {
      error = groupErrorOf(err);
    }
    return {
      name: t.name,
      parts: t.parts.map((p) => ({ index: p.index, error: kept.includes(p) ? error : refusal(p) })),
    };
  }));
  if (v >= 3) w.int32(0);
  w.array(answers, (w, t) => {
    w.string(t.name);
    w.array(t.parts, (w, p) => w.int32(p.index).int16(p.error));
  });
}

type AskedTopics = { name: string; parts: number[] }[] | null;
type CommittedTopics = { name: string; parts: { index: number; offset: number; epoch: number; metadata: string }[] }[];

/** A group's committed offsets for the asked topics (null: every topic it has a commit for). */
function committedOf(ctx: KafkaContext, group: string, asked: AskedTopics): { error: number; topics: CommittedTopics } {
  const s = ctx.services;
  const topics: CommittedTopics = [];
  const notCoordinator = coordinatorError(ctx);
  if (notCoordinator !== 0) {
    // v0-1 have no group error: each asked partition carries it (see offsetFetch).
    const none = (asked ?? []).map((t) => ({
      name: t.name,
      parts: t.parts.map((index) => ({ index, offset: -1, epoch: -1, metadata: "" })),
    }));
    return { error: notCoordinator, topics: none };
  }
  try {
    checkGroupName(group);
    const wanted = asked ?? Object.keys(s.view().topics).map((name) => ({ name, parts: null as number[] | null }));
    for (const t of wanted) {
      const committed = s.groups.committed(group, t.name);
      const info = s.groups.committedInfo(group, t.name);
      const indexes = t.parts ?? Object.keys(committed).map(Number);
      if (asked === null && indexes.length === 0) continue;
      topics.push({
        name: t.name,
        parts: indexes.map((index) => ({
          index,
          offset: committed[index] ?? -1,
          epoch: info.get(index)?.e ?? -1,
          metadata: info.get(index)?.m ?? "",
        })),
      });
    }
    return { error: 0, topics };
  } catch (err) {
    return { error: groupErrorOf(err), topics: [] };
  }
}

/**
 * Handles OffsetFetch v0-9 (v6+ flexible; v8 asks for several groups at
 * once; v9 names the member and its epoch, which only KIP-848 groups check:
 * yak's are classic groups, so, as Kafka does for those, they are read and
 * not used): -1 where the group has no commit.
 */
export function offsetFetch(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const askedTopics = (r: Reader): AskedTopics =>
    r.nullableArray((r) => ({ name: r.string(), parts: r.int32Array() }), 4);
  const askedGroup = (r: Reader) => {
    const group = r.string();
    if (v >= 9) {
      r.nullableString(); // member id: checked for KIP-848 groups only
      r.int32(); // member epoch: likewise
    }
    return { group, asked: askedTopics(r) };
  };
  const groups = v >= 8 ? r.array(askedGroup, 2) : [{ group: r.string(), asked: askedTopics(r) }];
  // require_stable (KIP-447): an offset an undecided transaction may still change is UNSTABLE_OFFSET_COMMIT
  // (retriable), so a read_committed consumer starts from the decided one.
  const requireStable = v >= 7 && r.bool();
  const answers = groups.map((g) => ({ group: g.group, ...committedOf(ctx, g.group, g.asked) }));
  const txns = ctx.services.transactions;
  // Before v2 a group's error (NOT_COORDINATOR) goes in each partition's place; from v2 it has its own.
  const groupErrorIn = (group: string) => v < 2 ? answers.find((a) => a.group === group)?.error ?? 0 : 0;
  const partError = (group: string, topic: string, p: number) =>
    groupErrorIn(group) || (requireStable && txns.pendingOffset(group, topic, p) ? KAFKA.UNSTABLE_OFFSET_COMMIT : 0);
  const writeTopics = (w: Writer, topics: CommittedTopics, group: string) =>
    w.array(topics, (w, t) => {
      w.string(t.name);
      w.array(t.parts, (w, p) => {
        w.int32(p.index).int64(p.offset);
        if (v >= 5) w.int32(p.epoch);
        w.nullableString(p.metadata).int16(partError(group, t.name, p.index));
      });
    });
  if (v >= 3) w.int32(0);
  if (v >= 8) {
    w.array(answers, (w, a) => {
      w.string(a.group);
      writeTopics(w, a.topics, a.group);
      w.int16(a.error);
    });
    return;
  }
  writeTopics(w, answers[0].topics, answers[0].group);
  if (v >= 2) w.int16(answers[0].error);
}

/**
 * Handles ListGroups v0-4 (v3+ flexible; v4 filters by state, KIP-518, and
 * answers each group's state). Only the coordinator lists groups: a follower
 * coordinates none and answers an empty list, as a Kafka broker does, since
 * admin clients ask every broker and join the answers.
 */
export function listGroups(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const states = v >= 4 ? r.stringArray() : [];
  const s = ctx.services;
  const groups = s.view().role === "leader" ? s.groups.list(states) : [];
  if (v >= 1) w.int32(0);
  w.int16(0);
  w.array(groups, (w, g) => {
    w.string(g.group).string(g.protocolType);
    if (v >= 4) w.string(g.state);
  });
}

/**
 * Handles DescribeGroups v0-5 (v3 answers the authorized operations when
 * asked: all of a group's, as yak has no ACLs; v4 the members' group
 * instance ids; v5 is flexible).
 */
export function describeGroups(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const names = r.stringArray();
  const operations = v >= 3 && r.bool() ? AUTHORIZED_OPERATIONS.group : AUTHORIZED_OPERATIONS.notAsked;
  if (v >= 1) w.int32(0);
  const notCoordinator = coordinatorError(ctx);
  w.array(names, (w, name) => {
    let error = notCoordinator;
    let g: ReturnType<typeof ctx.services.groups.describe> | null = null;
    try {
      if (error === 0) g = ctx.services.groups.describe(name);
    } catch (err) {
      error = groupErrorOf(err);
    }
    // Written after the try: an entry half written and then written again, as an error, leaves the client lost.
    if (g === null) w.int16(error).string(name).string("Dead").string("").string("").array([], () => {});
    else {
      // A group nobody has joined: state Dead (or Empty, with commits) and no protocol type, as Kafka answers.
      w.int16(0).string(name).string(g.state).string(g.protocolType).string(g.protocol);
      w.array(g.members, (w, m) => {
        w.string(m.memberId);
        if (v >= 4) w.nullableString(m.groupInstanceId);
        w.string(m.clientId).string(m.host).nullableBytes(m.metadata).nullableBytes(m.assignment);
      });
    }
    // As Kafka: the operations of a group described without an error.
    if (v >= 3) w.int32(error === 0 ? operations : AUTHORIZED_OPERATIONS.notAsked);
  });
}
