/**
 * Consumer groups on the leader, after Kafka's classic protocol: members
 * join (a new member first gets its id: MEMBER_ID_REQUIRED), the coordinator
 * waits for every member to rejoin, picks the leader member and a protocol
 * (assignment strategy) all members support, and hands the leader everyone's
 * subscription; the leader computes the assignment and sends it with its
 * SyncGroup, and every member gets its share. Heartbeats keep a member in and
 * tell it when to rejoin. A member silent for its session timeout is removed,
 * a clean leave removes it at once, and partitions added to a subscribed
 * topic start a rebalance too.
 *
 * A static member (KIP-345) names a group instance id: a process restarted
 * under the same instance id within the session timeout takes the place of
 * the old one (whose member id is fenced from then on) and, in a Stable
 * group, gets its assignment back with no rebalance.
 *
 * Subscriptions and assignments are opaque bytes (Kafka's consumer protocol),
 * so the native codec and the Kafka codec drive the same groups and one group
 * can mix their members. Membership lives in the leader's memory; committed
 * offsets live in `__cluster`, so a failover costs one rebalance (members
 * rejoin the new leader), never a commit.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { assert, YakError } from "../errors.ts";
import { type Assignment, decodeAssignment, decodeSubscription } from "../protocol/consumer_protocol.ts";
import type { BrokerContext } from "./context.ts";
import { appendMetaReplicated } from "./meta_log.ts";
import type { CommitInfo, CommitOp, OffsetDeleteOp } from "./metadata.ts";

/** Kafka's group states (classic protocol). */
export type GroupState = "Empty" | "PreparingRebalance" | "CompletingRebalance" | "Stable";

/** Every state a group may be named by (KIP-518's filter), as Kafka spells them: Dead is a group that is gone. */
export const GROUP_STATES: readonly (GroupState | "Dead")[] = [
  "Empty",
  "PreparingRebalance",
  "CompletingRebalance",
  "Stable",
  "Dead",
];

/**
 * A member's host as groups show it: the client's address without its port,
 * as Kafka's `client_host` is, whichever protocol the member joined with.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { memberHost } from "./group_coordinator.ts";
 * assert.equal(memberHost("127.0.0.1:51234"), "127.0.0.1");
 * assert.equal(memberHost("::1:51234"), "::1");
 * ```
 */
export function memberHost(remote: string): string {
  const colon = remote.lastIndexOf(":");
  return colon === -1 ? remote : remote.slice(0, colon);
}

/**
 * A group state as Kafka spells it, from a name in any case; INVALID_ARGUMENT
 * naming the states for anything else.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { groupStateOf } from "./group_coordinator.ts";
 * assert.equal(groupStateOf("stable"), "Stable");
 * assert.throws(() => groupStateOf("Running"), { code: "INVALID_ARGUMENT" });
 * ```
 */
export function groupStateOf(name: string): GroupState | "Dead" {
  const state = GROUP_STATES.find((s) => s.toLowerCase() === name.toLowerCase());
  if (state === undefined) {
    throw new YakError(
      "INVALID_ARGUMENT",
      `'${name.slice(0, 64)}' is not a group state: use one of ${GROUP_STATES.join(", ")}`,
    );
  }
  return state;
}

/** A protocol (assignment strategy) a member supports, with its subscription bytes. */
export interface GroupProtocol {
  name: string;
  metadata: Uint8Array;
}

/** A JoinGroup request, decoded. */
export interface JoinRequest {
  group: string;
  /** "" for a new member (and for a static member's new process, see `groupInstanceId`). */
  memberId: string;
  clientId: string;
  /** The client's address without its port ({@link memberHost}). */
  host: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  protocolType: string;
  protocols: GroupProtocol[];
  /** A static member's group instance id (KIP-345); absent or null for a dynamic member. */
  groupInstanceId?: string | null;
  /**
   * The generation the member last had, from the coordinator before a
   * failover (native members say it; Kafka's JoinGroup has no such field).
   */
  lastGeneration?: number;
  /** Why the member (re)joins, as its client says (JoinGroup v8+, KIP-800): told in the operation log. */
  reason?: string | null;
  /**
   * The member can be told to skip the assignment (JoinGroup v9+, KIP-814):
   * a restarted static leader of a Stable group then learns it leads.
   */
  canSkipAssignment?: boolean;
}

/** The answer to a join: the generation, and for the leader member everyone's subscription. */
export interface JoinResult {
  generation: number;
  protocol: string;
  leaderId: string;
  memberId: string;
  /** Filled for the leader member only. */
  members: JoinedMember[];
  /** The leader member must not compute an assignment: the group is Stable and keeps its own (KIP-814). */
  skipAssignment?: boolean;
}

/** A member as the leader member sees it: its id, its instance id, its metadata for the group's protocol. */
export interface JoinedMember {
  memberId: string;
  groupInstanceId: string | null;
  metadata: Uint8Array;
}

/** A group's committed offset and lag in one partition. */
export interface GroupPartitionLag {
  committed: number;
  lag: number;
}

/** A group as `list` shows it. */
export interface GroupListing {
  group: string;
  state: GroupState;
  members: number;
  /** The members' protocol type ("consumer" for Kafka's consumers and yak's). */
  protocolType: string;
}

/** A member as `describe` shows it. */
export interface MemberView {
  memberId: string;
  /** A static member's group instance id; null for a dynamic member. */
  groupInstanceId: string | null;
  clientId: string;
  host: string;
  /** Its metadata for the group's protocol (Kafka's consumer protocol: its subscription); empty before one is chosen. */
  metadata: Uint8Array;
  assignment: Uint8Array;
  lastHeartbeatMsAgo: number;
}

/** A group as `describe` shows it. */
export interface GroupView {
  group: string;
  state: GroupState | "Dead";
  generation: number;
  protocolType: string;
  protocol: string;
  leaderId: string;
  members: MemberView[];
}

interface Deferred<T> {
  resolve: (v: T) => void;
  reject: (e: YakError) => void;
}

interface Member {
  id: string;
  /** A static member's group instance id (KIP-345), or null. */
  instanceId: string | null;
  clientId: string;
  host: string;
  sessionTimeoutMs: number;
  rebalanceTimeoutMs: number;
  protocols: GroupProtocol[];
  lastSeenMs: number;
  join: Deferred<JoinResult> | null;
  sync: Deferred<Uint8Array> | null;
  assignment: Uint8Array;
  /** What this member is charged in the group's and the coordinator's budgets now ({@link memberBytes}). */
  bytes: number;
}

interface Group {
  id: string;
  state: GroupState;
  generation: number;
  protocolType: string;
  protocol: string;
  leaderId: string;
  members: Map<string, Member>;
  /** Ids handed out with MEMBER_ID_REQUIRED and not joined yet: id -> expiry. */
  pending: Map<string, number>;
  /** Static members: group instance id -> the member id it has now (older ids of that instance are fenced). */
  instances: Map<string, string>;
  /** When the current join phase ends even if some members have not rejoined. */
  joinDeadlineMs: number;
  /** A group forming from empty waits until then for more members. */
  initialDelayUntilMs: number;
  /** Partition counts of the subscribed topics at the last assignment. */
  partitionCounts: Map<string, number>;
  reason: string;
  /**
   * Not yet stable under this leadership: members of the previous leader's
   * generation may still arrive, and are taken back under their own ids (see
   * join).
   */
  adopting: boolean;
  /** Some member was taken back so (until stable): the join phase waits for the others. */
  adopted: boolean;
  /** Since when it has had no members and no pending ids (dropped DEFAULTS.groupEmptyKeepMs later), or null. */
  emptySinceMs: number | null;
  /** Some member joined it under this leadership (one no member ever joined goes once it is empty). */
  joined: boolean;
  /** The sum of its members' and pending ids' charges (see {@link memberBytes}, {@link pendingBytes}). */
  bytes: number;
}

const EMPTY = new Uint8Array(0);

/**
 * A member's objects beyond the bytes of its strings and buffers: the member,
 * its map entry, its protocol list, its buffers' headers. Measured with 100,000
 * members in a Deno heap: 720 bytes each with one protocol and a 45-character
 * id, 250 more for each further protocol.
 */
const MEMBER_OVERHEAD_BYTES = 400;
const PROTOCOL_OVERHEAD_BYTES = 250;
/** A pending id's map entry and string header (measured: 108 bytes with a 45-character id). */
const PENDING_OVERHEAD_BYTES = 64;
/** A static member's entry in its group's instance map: taken to be a pending id's (not measured on its own). */
const INSTANCE_OVERHEAD_BYTES = PENDING_OVERHEAD_BYTES;

/** The memory a buffer keeps: all of the buffer under it, as a view keeps that alive. */
function retainedBytes(bytes: Uint8Array): number {
  return bytes.buffer.byteLength;
}

/**
 * What a member is charged: its ids (a static member's instance id and its
 * entry in the instance map too), every protocol it offers, its assignment,
 * and its objects.
 */
function memberBytes(m: Pick<Member, "id" | "instanceId" | "clientId" | "host" | "protocols" | "assignment">): number {
  let n = MEMBER_OVERHEAD_BYTES + m.id.length + m.clientId.length + m.host.length + retainedBytes(m.assignment);
  if (m.instanceId !== null) n += INSTANCE_OVERHEAD_BYTES + m.instanceId.length;
  for (const p of m.protocols) n += PROTOCOL_OVERHEAD_BYTES + p.name.length + retainedBytes(p.metadata);
  return n;
}

/** Whether a rejoin offers the same protocols, in the same order, with the same metadata (Kafka's `matches`). */
function sameProtocols(a: readonly GroupProtocol[], b: readonly GroupProtocol[]): boolean {
  return a.length === b.length &&
    a.every((p, i) =>
      p.name === b[i].name && p.metadata.length === b[i].metadata.length &&
      p.metadata.every((byte, j) => byte === b[i].metadata[j])
    );
}

/** Most characters of a client's reason (JoinGroup v8+, LeaveGroup v5+) kept in the operation log. */
const MAX_CLIENT_REASON_CHARS = 256;

/** A client's reason for a rebalance, as the operation log tells it (nothing when it gave none). */
function clientReason(reason: string | null | undefined): string {
  return reason ? `; client reason: ${reason.slice(0, MAX_CLIENT_REASON_CHARS)}` : "";
}

/** What an id handed out with MEMBER_ID_REQUIRED and not joined yet is charged. */
function pendingBytes(id: string): number {
  return PENDING_OVERHEAD_BYTES + id.length;
}

/** Bytes as people read them: "16 MiB", "1.5 KiB", "300 bytes". */
function sizeText(bytes: number): string {
  const round = (n: number) => Number.isInteger(n) ? String(n) : n.toFixed(1);
  if (bytes >= 1024 * 1024) return `${round(bytes / (1024 * 1024))} MiB`;
  if (bytes >= 1024) return `${round(bytes / 1024)} KiB`;
  return `${bytes} bytes`;
}

/**
 * Groups: membership (on the leader, in memory) and committed offsets (in
 * `__cluster`).
 *
 * @example
 * ```ts ignore
 * const groups = new GroupCoordinator(broker);
 * const joined = await groups.join({ group: "g", memberId: id, clientId: "c", host: "h", sessionTimeoutMs: 10_000,
 *   rebalanceTimeoutMs: 10_000, protocolType: "consumer", protocols: [{ name: "range", metadata }] });
 * await groups.commit("g", "events", new Map([[0, 120]]), { memberId: id, generation: joined.generation });
 * ```
 */
export class GroupCoordinator {
  readonly #b: BrokerContext;
  readonly #groups = new Map<string, Group>();
  #timer: ReturnType<typeof setInterval> | undefined;
  /** The leader epoch whose members these are: a new leadership starts with none. */
  #epoch = -1;
  /** When this broker started leading in that epoch: members of the previous leader's are taken back for a while. */
  #leadingSinceMs = 0;
  /** The sum of every group's `bytes`: what `maxGroupStateBytes` bounds. */
  #bytes = 0;

  constructor(b: BrokerContext) {
    this.#b = b;
  }

  /** Forgets every member (this broker stopped leading, or stops): their waits end with NOT_LEADER. */
  reset(reason: YakError): void {
    for (const g of this.#groups.values()) {
      for (const m of g.members.values()) {
        m.join?.reject(reason);
        m.sync?.reject(reason);
      }
    }
    this.#groups.clear();
    this.#bytes = 0;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #leading(): void {
    const leader = this.#b.requireLeader();
    if (leader.epoch !== this.#epoch) {
      this.reset(new YakError("NOT_LEADER", "the group coordinator moved; rejoin"));
      this.#epoch = leader.epoch;
      this.#leadingSinceMs = monotonicMs();
    }
    this.#timer ??= setInterval(() => this.#tick(), 100);
  }

  #group(id: string, create: boolean): Group | undefined {
    let g = this.#groups.get(id);
    if (!g && create) {
      if (this.#groups.size >= DEFAULTS.maxGroups && !this.#dropLongestEmpty()) {
        throw new YakError("GROUP_MAX_SIZE_REACHED", `the coordinator holds ${DEFAULTS.maxGroups} groups already`);
      }
      g = {
        id,
        state: "Empty",
        generation: 0,
        protocolType: "",
        protocol: "",
        leaderId: "",
        members: new Map(),
        pending: new Map(),
        instances: new Map(),
        joinDeadlineMs: 0,
        initialDelayUntilMs: 0,
        partitionCounts: new Map(),
        reason: "",
        adopting: this.#mayAdopt(),
        adopted: false,
        emptySinceMs: null,
        joined: false,
        bytes: 0,
      };
      this.#groups.set(id, g);
    }
    return g;
  }

  /**
   * Whether a member this leader does not know may be of the previous
   * leader's generation (membership lives in memory only): early in this
   * leadership. Later, an unknown id is one whose group emptied here (kept
   * a while, see #tick) or that is older still: UNKNOWN_MEMBER_ID.
   */
  #mayAdopt(): boolean {
    return monotonicMs() - this.#leadingSinceMs < DEFAULTS.groupEmptyKeepMs;
  }

  /** Makes room for a group: drops the one empty the longest, if any is; false when none is. */
  #dropLongestEmpty(): boolean {
    let oldest: Group | null = null;
    for (const g of this.#groups.values()) {
      const empty = g.emptySinceMs !== null && g.members.size === 0 && g.pending.size === 0;
      if (empty && (oldest === null || g.emptySinceMs! < oldest.emptySinceMs!)) oldest = g;
    }
    if (oldest !== null) this.#groups.delete(oldest.id);
    return oldest !== null;
  }

  /** Joins (or rejoins) a group; resolves when the join phase completes. */
  join(req: JoinRequest): Promise<JoinResult> {
    this.#leading();
    this.#checkJoin(req);
    const g = this.#group(req.group, true)!;
    if (g.members.size > 0) this.#checkProtocols(g, req);
    const instance = req.groupInstanceId ?? null;
    if (req.memberId === "" && instance !== null) return this.#joinStatic(g, req, instance);
    if (req.memberId === "") this.#issueMemberId(g, req);
    this.#checkInstance(g, req.memberId, instance);
    const known = g.members.get(req.memberId);
    if (known && this.#joinsAsBefore(g, known, req)) return Promise.resolve(this.#currentJoin(g, known, req));
    const member = known ? this.#rejoin(g, known, req) : this.#admit(g, req);
    return this.#awaitJoin(g, member);
  }

  /**
   * A member joining again with the protocols it had, in a group that needs
   * no new assignment for it: Stable with another member leading, or still
   * assigning (its first join's answer was lost). As Kafka does, it is told
   * the current generation with no rebalance; the leader member rejoining a
   * Stable group does start one (it may have seen partitions change).
   */
  #joinsAsBefore(g: Group, m: Member, req: JoinRequest): boolean {
    if (!sameProtocols(m.protocols, req.protocols)) return false;
    return g.state === "CompletingRebalance" || (g.state === "Stable" && m.id !== g.leaderId);
  }

  /** The answer to such a join: this generation, its leader (told the members), nothing rebalanced. */
  #currentJoin(g: Group, m: Member, req: JoinRequest): JoinResult {
    m.sessionTimeoutMs = req.sessionTimeoutMs;
    m.rebalanceTimeoutMs = req.rebalanceTimeoutMs;
    m.lastSeenMs = monotonicMs();
    return {
      generation: g.generation,
      protocol: g.protocol,
      leaderId: g.leaderId,
      memberId: m.id,
      members: m.id === g.leaderId ? this.#joinedMembers(g) : [],
    };
  }

  /** The member waits for the join phase to complete (it may complete now). */
  #awaitJoin(g: Group, member: Member): Promise<JoinResult> {
    const result = new Promise<JoinResult>((resolve, reject) => (member.join = { resolve, reject }));
    this.#maybeCompleteJoin(g);
    return result;
  }

  /**
   * KIP-345: a static member without a member id gets one at once (no
   * MEMBER_ID_REQUIRED: a retried join finds its instance, not a ghost). An
   * instance the group knows is a restarted process: it takes the old
   * member's place under the new id (the old id is fenced) and keeps its
   * assignment; in a Stable group, offering the same protocols as before,
   * it gets the current generation back and no rebalance starts.
   */
  #joinStatic(g: Group, req: JoinRequest, instance: string): Promise<JoinResult> {
    const id = `${instance.slice(0, 64)}-${crypto.randomUUID()}`;
    const oldId = g.instances.get(instance);
    const old = oldId === undefined ? undefined : g.members.get(oldId);
    if (!old) return this.#awaitJoin(g, this.#admit(g, { ...req, memberId: id }, true));
    assert(g.state !== "Empty", `group '${g.id}' is Empty with static member ${old.id}`);
    const leaderBefore = g.leaderId;
    const unchanged = sameProtocols(old.protocols, req.protocols);
    const member = this.#replace(g, old, id, req);
    if (g.state === "Stable" && unchanged) {
      // As Kafka answers: the leader id from before, so a replaced leader member does not compute an assignment
      // that a Stable group would not hand out; its SyncGroup gets the assignment it had. A client that can be
      // told to skip the assignment (KIP-814) learns it leads, with the members, so it watches their topics.
      const leads = req.canSkipAssignment === true && g.leaderId === id;
      return Promise.resolve({
        generation: g.generation,
        protocol: g.protocol,
        leaderId: req.canSkipAssignment === true ? g.leaderId : leaderBefore,
        memberId: id,
        members: leads ? this.#joinedMembers(g) : [],
        skipAssignment: leads,
      });
    }
    // The leader may have been sent the old id to assign: a new assignment is needed (as for any rejoin).
    if (g.state !== "PreparingRebalance") {
      this.#prepare(g, `static member '${instance}' rejoined as ${id}${clientReason(req.reason)}`);
    }
    return this.#awaitJoin(g, member);
  }

  /**
   * A static member's new process takes the old member's place: the old
   * one's waiting join or sync is fenced, and the member (its assignment,
   * its place in the group's order, leadership) goes on under the new id.
   */
  #replace(g: Group, m: Member, id: string, req: JoinRequest): Member {
    const next = { ...m, id, clientId: req.clientId, host: req.host, protocols: req.protocols };
    this.#requireRoom(g, memberBytes(next) - m.bytes);
    const oldId = m.id;
    const fenced = this.#fenced(g, oldId, m.instanceId!);
    m.join?.reject(fenced);
    m.sync?.reject(fenced);
    m.join = null;
    m.sync = null;
    // Its place in the order stays: the first member's protocol preference and the leader's member list follow it.
    g.members = new Map([...g.members].map(([key, member]) => [key === oldId ? id : key, member]));
    Object.assign(m, {
      id,
      clientId: req.clientId,
      host: req.host,
      sessionTimeoutMs: req.sessionTimeoutMs,
      rebalanceTimeoutMs: req.rebalanceTimeoutMs,
      protocols: req.protocols,
      lastSeenMs: monotonicMs(),
    });
    this.#recharge(g, m);
    g.instances.set(m.instanceId!, id);
    if (g.leaderId === oldId) g.leaderId = id;
    this.#b.log.write("group_member_replaced", { group: g.id, instance: m.instanceId, member: id, replaced: oldId });
    return m;
  }

  /** The error for a request under member id `memberId` of an instance that has another member id now. */
  #fenced(g: Group, memberId: string, instance: string): YakError {
    return new YakError(
      "FENCED_INSTANCE_ID",
      `member '${memberId}' of group '${g.id}' was replaced: another process joined as group instance ` +
        `'${instance}' (now member '${g.instances.get(instance)}'); give each consumer its own group.instance.id`,
    );
  }

  /**
   * KIP-345, as Kafka checks a request that names a group instance id: the
   * instance must have the request's member id now (an older id is fenced),
   * and a known member must be that instance. An instance the group does not
   * know passes: its member is then unknown too (or is taken back after a
   * failover, see join).
   */
  #checkInstance(g: Group | undefined, memberId: string, instance: string | null): void {
    if (!g || instance === null) return;
    const current = g.instances.get(instance);
    if (current !== undefined && current !== memberId) throw this.#fenced(g, memberId, instance);
    if (current === undefined && g.members.has(memberId)) {
      throw new YakError("UNKNOWN_MEMBER_ID", `member '${memberId}' is not group instance '${instance}'; rejoin`);
    }
  }

  /** The limits of one join on its own: session timeout, protocols, metadata size. */
  #checkJoin(req: JoinRequest): void {
    if (
      req.sessionTimeoutMs < DEFAULTS.groupMinSessionTimeoutMs ||
      req.sessionTimeoutMs > DEFAULTS.groupMaxSessionTimeoutMs
    ) {
      throw new YakError(
        "INVALID_ARGUMENT",
        `session timeout must be ${DEFAULTS.groupMinSessionTimeoutMs} to ${DEFAULTS.groupMaxSessionTimeoutMs} ms`,
      );
    }
    if (req.protocols.length === 0) throw new YakError("INCONSISTENT_GROUP_PROTOCOL", "a member needs a protocol");
    const instance = req.groupInstanceId;
    if (instance !== undefined && instance !== null) {
      if (instance.length === 0 || instance.length > DEFAULTS.maxGroupInstanceIdChars) {
        throw new YakError(
          "INVALID_REQUEST",
          `a group instance id must be 1 to ${DEFAULTS.maxGroupInstanceIdChars} characters, not ${instance.length}`,
        );
      }
    }
    const most = DEFAULTS.maxGroupProtocolChars;
    if (req.protocolType.length > most) {
      throw new YakError(
        "INVALID_REQUEST",
        `a protocol type must be at most ${most} characters, not ${req.protocolType.length}`,
      );
    }
    for (const p of req.protocols) {
      if (p.name.length > most) {
        throw new YakError(
          "INVALID_REQUEST",
          `a protocol name must be at most ${most} characters, not ${p.name.length}`,
        );
      }
      if (p.metadata.length > DEFAULTS.maxGroupMetadataBytes) {
        throw new YakError("INVALID_REQUEST", `protocol metadata over ${DEFAULTS.maxGroupMetadataBytes} bytes`);
      }
    }
  }

  /** A member joining a group with members must share their protocol type and one protocol. */
  #checkProtocols(g: Group, req: JoinRequest): void {
    if (req.protocolType !== g.protocolType) {
      throw new YakError(
        "INCONSISTENT_GROUP_PROTOCOL",
        `group '${g.id}' has protocol type '${g.protocolType}', not '${req.protocolType}'`,
      );
    }
    const supported = req.protocols.map((p) => p.name);
    const common = this.#candidates(g).filter((name) => supported.includes(name));
    if (common.length === 0) {
      throw new YakError(
        "INCONSISTENT_GROUP_PROTOCOL",
        `group '${g.id}' uses ${this.#candidates(g).join(" or ")}; this member offers ${supported.join(", ")}`,
      );
    }
  }

  /**
   * KIP-394: a new member gets its id first and joins with it, so a client
   * that retries a lost join never leaves a ghost member behind. Always
   * throws: MEMBER_ID_REQUIRED with the id, or GROUP_MAX_SIZE_REACHED when
   * the member it would become does not fit (told now, not after a round trip).
   */
  #issueMemberId(g: Group, req: JoinRequest): never {
    if (g.members.size + g.pending.size >= DEFAULTS.maxGroupMembers) {
      throw new YakError("GROUP_MAX_SIZE_REACHED", `group '${g.id}' has ${DEFAULTS.maxGroupMembers} members`);
    }
    const id = `${req.clientId.slice(0, 64)}-${crypto.randomUUID()}`;
    this.#requireRoom(g, memberBytes({ ...req, id, instanceId: null, assignment: EMPTY }));
    g.pending.set(id, monotonicMs() + req.sessionTimeoutMs);
    g.emptySinceMs = null;
    this.#charge(g, pendingBytes(id));
    throw new YakError("MEMBER_ID_REQUIRED", "rejoin with the member id given", { memberId: id });
  }

  /**
   * A member not in the group: one that took its id (KIP-394), a static
   * member whose id was made just now (`fresh`), or one of the previous
   * leader's generation.
   */
  #admit(g: Group, req: JoinRequest, fresh = false): Member {
    const now = monotonicMs();
    // Membership is in memory only, so after a failover every member is unknown here. Taken back under the
    // ids they had, they get the same assignment again, and a member that printed past its last commit
    // still holds those partitions and commits them: the failover costs one rebalance, not re-reads. Their
    // generations go on from the highest one they bring.
    const pending = g.pending.has(req.memberId);
    if (!pending) {
      // Ids this coordinator hands out are at most 101 characters (client or instance id prefix 64, a dash, a UUID).
      if (!fresh && (!g.adopting || req.memberId.length > 200)) {
        throw new YakError("UNKNOWN_MEMBER_ID", `member '${req.memberId}' is not in group '${g.id}'; rejoin`);
      }
      if (g.members.size + g.pending.size >= DEFAULTS.maxGroupMembers) {
        throw new YakError("GROUP_MAX_SIZE_REACHED", `group '${g.id}' has ${DEFAULTS.maxGroupMembers} members`);
      }
    }
    const member: Member = {
      id: req.memberId,
      instanceId: req.groupInstanceId ?? null,
      clientId: req.clientId,
      host: req.host,
      sessionTimeoutMs: req.sessionTimeoutMs,
      rebalanceTimeoutMs: req.rebalanceTimeoutMs,
      protocols: req.protocols,
      lastSeenMs: now,
      join: null,
      sync: null,
      assignment: EMPTY,
      bytes: 0,
    };
    const refund = pending ? pendingBytes(member.id) : 0;
    this.#requireRoom(g, memberBytes(member) - refund);
    if (pending) {
      g.pending.delete(member.id);
      this.#charge(g, -refund);
    } else if (!fresh) {
      g.generation = Math.max(g.generation, req.lastGeneration ?? 0);
      g.adopted = true;
      this.#b.log.write("group_member_adopted", { group: g.id, member: member.id, generation: g.generation });
    }
    this.#recharge(g, member);
    if (g.members.size === 0) g.protocolType = req.protocolType;
    g.members.set(member.id, member);
    g.emptySinceMs = null;
    g.joined = true;
    if (member.instanceId !== null) g.instances.set(member.instanceId, member.id);
    const wasEmpty = g.state === "Empty";
    this.#prepare(g, `member ${member.id} joined${clientReason(req.reason)}`);
    if (g.adopted && wasEmpty) g.initialDelayUntilMs = now + DEFAULTS.groupAdoptDelayMs;
    return member;
  }

  /** A known member joins again (a rebalance, or its subscription changed). */
  #rejoin(g: Group, member: Member, req: JoinRequest): Member {
    this.#requireRoom(g, memberBytes({ ...member, protocols: req.protocols }) - member.bytes);
    member.protocols = req.protocols;
    this.#recharge(g, member);
    member.sessionTimeoutMs = req.sessionTimeoutMs;
    member.rebalanceTimeoutMs = req.rebalanceTimeoutMs;
    member.lastSeenMs = monotonicMs();
    member.join?.reject(new YakError("UNKNOWN_MEMBER_ID", "replaced by a newer join of the same member"));
    // A known member rejoining outside a rebalance (e.g. its subscription changed) starts one.
    if (g.state !== "PreparingRebalance") this.#prepare(g, `member ${member.id} rejoined${clientReason(req.reason)}`);
    return member;
  }

  /** Throws GROUP_MAX_SIZE_REACHED, naming the budget, when `more` bytes do not fit the group or the coordinator. */
  #requireRoom(g: Group, more: number): void {
    if (more <= 0) return;
    const problem = this.#overBudget(g, more);
    if (problem) throw new YakError("GROUP_MAX_SIZE_REACHED", problem);
  }

  /** Why `more` bytes do not fit group `g` or the coordinator, or null when they do (less always fits). */
  #overBudget(g: Group, more: number): string | null {
    if (more <= 0) return null;
    const { maxGroupBytes, maxGroupStateBytes } = this.#b.opts;
    if (g.bytes + more > maxGroupBytes) {
      return `group '${g.id}' is full: its members hold ${sizeText(g.bytes)} and this needs ${sizeText(more)} ` +
        `more, past the group's budget of ${sizeText(maxGroupBytes)} (--max-group-bytes); ` +
        `use fewer members or smaller subscriptions`;
    }
    if (this.#bytes + more > maxGroupStateBytes) {
      return `the group coordinator is full: all groups' members hold ${sizeText(this.#bytes)} and this needs ` +
        `${sizeText(more)} more, past its budget of ${sizeText(maxGroupStateBytes)} (--max-group-state-bytes); ` +
        `retry once other groups have shrunk`;
    }
    return null;
  }

  /** Adds `delta` bytes (negative: gives them back) to group `g` and the coordinator's total. */
  #charge(g: Group, delta: number): void {
    g.bytes += delta;
    this.#bytes += delta;
    assert(g.bytes >= 0 && this.#bytes >= 0, `group '${g.id}' charged below zero`);
  }

  /** Charges a member what it holds now (after its protocols or assignment changed). */
  #recharge(g: Group, m: Member): void {
    const bytes = memberBytes(m);
    this.#charge(g, bytes - m.bytes);
    m.bytes = bytes;
  }

  /** Gives back what a member that leaves the group was charged. */
  #release(g: Group, m: Member): void {
    this.#charge(g, -m.bytes);
    m.bytes = 0;
  }

  /**
   * Bytes the members (and ids handed out, not joined yet) of one group, or
   * of all groups, are charged now; what the budgets `maxGroupBytes` and
   * `maxGroupStateBytes` bound.
   */
  stateBytes(group?: string): number {
    if (group === undefined) return this.#bytes;
    return this.#groups.get(group)?.bytes ?? 0;
  }

  /** The protocols every member supports, in the order of the first member's preference. */
  #candidates(g: Group): string[] {
    const members = [...g.members.values()];
    if (members.length === 0) return [];
    return members[0].protocols.map((p) => p.name).filter((name) =>
      members.every((m) => m.protocols.some((p) => p.name === name))
    );
  }

  #prepare(g: Group, reason: string): void {
    const wasEmpty = g.state === "Empty";
    if (g.state === "CompletingRebalance") {
      for (const m of g.members.values()) {
        m.sync?.reject(new YakError("REBALANCE_IN_PROGRESS", `group '${g.id}' is rebalancing: ${reason}`));
        m.sync = null;
      }
    }
    g.state = "PreparingRebalance";
    g.reason = reason;
    const rebalanceMs = Math.max(0, ...[...g.members.values()].map((m) => m.rebalanceTimeoutMs));
    const now = monotonicMs();
    g.joinDeadlineMs = now + rebalanceMs;
    // While members of the previous leader's generation are being taken back, the wait for them all stands.
    g.initialDelayUntilMs = wasEmpty
      ? now + DEFAULTS.groupInitialRebalanceDelayMs
      : g.adopted
      ? g.initialDelayUntilMs
      : 0;
    this.#b.log.write("group_rebalancing", { group: g.id, generation: g.generation, reason });
  }

  #maybeCompleteJoin(g: Group): void {
    if (g.state !== "PreparingRebalance") return;
    const all = [...g.members.values()].every((m) => m.join !== null);
    const now = monotonicMs();
    // A forming group waits out its initial delay for more members; a rebalance ends once everyone rejoined.
    if (now < g.initialDelayUntilMs) return;
    if (all || now >= g.joinDeadlineMs) this.#completeJoin(g);
  }

  #completeJoin(g: Group): void {
    for (const m of [...g.members.values()]) {
      // Did not rejoin within the rebalance timeout: out. A static member stays until its session timeout, as in
      // Kafka: its process may be restarting, and its partitions wait for it rather than move away and back.
      if (m.join === null && m.instanceId === null) this.#drop(g, m, "did not rejoin");
    }
    if (g.members.size === 0) {
      g.state = "Empty";
      g.generation++;
      g.protocol = "";
      g.leaderId = "";
      return;
    }
    const joined = [...g.members.values()].filter((m) => m.join !== null);
    // Only static members that did not rejoin: the join phase goes on until their sessions end (Kafka waits too).
    if (joined.length === 0) return;
    g.generation++;
    g.protocol = this.#candidates(g)[0];
    if (!g.members.get(g.leaderId)?.join) g.leaderId = joined[0].id;
    g.state = "CompletingRebalance";
    // Absent static members too: the leader member assigns them partitions, kept for their return.
    const members = this.#joinedMembers(g);
    this.#b.log.write("group_joined", {
      group: g.id,
      generation: g.generation,
      protocol: g.protocol,
      leader: g.leaderId,
      members: g.members.size,
    });
    const now = monotonicMs();
    for (const m of joined) {
      const join = m.join!;
      m.join = null;
      m.lastSeenMs = now;
      join.resolve({
        generation: g.generation,
        protocol: g.protocol,
        leaderId: g.leaderId,
        memberId: m.id,
        members: m.id === g.leaderId ? members : [],
      });
    }
  }

  /** Every member, with its metadata for the group's protocol, as the leader member is told them. */
  #joinedMembers(g: Group): JoinedMember[] {
    return [...g.members.values()].map((m) => ({
      memberId: m.id,
      groupInstanceId: m.instanceId,
      metadata: m.protocols.find((p) => p.name === g.protocol)!.metadata,
    }));
  }

  /**
   * The member a request names, checked: its instance, its id, its
   * generation. A member of the previous leader's generation is told to
   * rejoin (REBALANCE_IN_PROGRESS), except for a transactional commit
   * (`transactional`), which Kafka answers UNKNOWN_MEMBER_ID: its producers
   * abort on that, and take REBALANCE_IN_PROGRESS as fatal.
   */
  #member(
    groupId: string,
    memberId: string,
    generation: number,
    instance: string | null = null,
    transactional = false,
  ): { g: Group; m: Member } {
    const g = this.#groups.get(groupId);
    this.#checkInstance(g, memberId, instance);
    const m = g?.members.get(memberId);
    if (!m && !transactional && (g ? g.adopting : this.#mayAdopt())) {
      // A member of the previous leader's generation (see join): told to rejoin, under its id.
      throw new YakError("REBALANCE_IN_PROGRESS", `the coordinator of group '${groupId}' moved; rejoin`);
    }
    if (!g || !m) throw new YakError("UNKNOWN_MEMBER_ID", `member '${memberId}' is not in group '${groupId}'; rejoin`);
    if (generation !== g.generation) {
      throw new YakError(
        "ILLEGAL_GENERATION",
        `generation ${generation} of group '${groupId}' is over (now ${g.generation}); rejoin`,
      );
    }
    m.lastSeenMs = monotonicMs();
    return { g, m };
  }

  /**
   * The second step: every member asks for its assignment; the leader member
   * brings them all. Resolves with this member's assignment bytes. A static
   * member names its group instance id (`instance`), checked as Kafka does.
   * A protocol type or name the member gives (SyncGroup v5+, KIP-559) must
   * be the group's, else INCONSISTENT_GROUP_PROTOCOL.
   */
  sync(
    groupId: string,
    memberId: string,
    generation: number,
    assignments: Map<string, Uint8Array> | null,
    instance: string | null = null,
    protocol: { type?: string | null; name?: string | null } = {},
  ): Promise<Uint8Array> {
    this.#leading();
    const { g, m } = this.#member(groupId, memberId, generation, instance);
    const differs = (given: string | null | undefined, group: string) => given != null && given !== group;
    if (differs(protocol.type, g.protocolType) || differs(protocol.name, g.protocol)) {
      throw new YakError(
        "INCONSISTENT_GROUP_PROTOCOL",
        `group '${groupId}' uses protocol type '${g.protocolType}' and protocol '${g.protocol}', ` +
          `not '${protocol.type ?? g.protocolType}' and '${protocol.name ?? g.protocol}'`,
      );
    }
    if (g.state === "PreparingRebalance") {
      throw new YakError("REBALANCE_IN_PROGRESS", `group '${groupId}' is rebalancing; rejoin`);
    }
    if (g.state === "Stable") return Promise.resolve(m.assignment);
    for (const bytes of assignments?.values() ?? []) {
      if (bytes.length > DEFAULTS.maxGroupMetadataBytes) {
        throw new YakError("INVALID_REQUEST", `assignment over ${DEFAULTS.maxGroupMetadataBytes} bytes`);
      }
    }
    // The leader's sync is the group's plan, whatever it holds: none (or an empty list) gives every member an empty
    // assignment, as Kafka does. Waiting for more would hold the group in CompletingRebalance for good.
    const plan = memberId === g.leaderId ? assignments ?? new Map<string, Uint8Array>() : null;
    if (plan) this.#requireRoomForAssignments(g, plan);
    const result = new Promise<Uint8Array>((resolve, reject) => (m.sync = { resolve, reject }));
    if (plan) {
      for (const member of g.members.values()) {
        member.assignment = plan.get(member.id) ?? EMPTY;
        this.#recharge(g, member);
      }
      g.partitionCounts = this.#subscribedCounts(g);
      g.state = "Stable";
      g.adopting = false;
      g.adopted = false;
      this.#b.log.write("group_stable", { group: g.id, generation: g.generation, members: g.members.size });
      for (const member of g.members.values()) {
        member.sync?.resolve(member.assignment);
        member.sync = null;
      }
    }
    return result;
  }

  /**
   * Assignments that would take the group or the coordinator past a budget
   * are refused, and so is every member waiting for its share; the group
   * rebalances (as Kafka does when it cannot store a group's assignment).
   */
  #requireRoomForAssignments(g: Group, assignments: Map<string, Uint8Array>): void {
    let more = 0;
    for (const member of g.members.values()) {
      more += retainedBytes(assignments.get(member.id) ?? EMPTY) - retainedBytes(member.assignment);
    }
    const problem = this.#overBudget(g, more);
    if (!problem) return;
    const err = new YakError("GROUP_MAX_SIZE_REACHED", `the assignment does not fit: ${problem}`);
    for (const member of g.members.values()) {
      member.sync?.reject(err);
      member.sync = null;
    }
    this.#prepare(g, "its assignment did not fit its budget");
    throw err;
  }

  /** Keeps a member in; REBALANCE_IN_PROGRESS tells it to rejoin. */
  heartbeat(groupId: string, memberId: string, generation: number, instance: string | null = null): void {
    this.#leading();
    const { g } = this.#member(groupId, memberId, generation, instance);
    if (g.state === "PreparingRebalance") {
      throw new YakError("REBALANCE_IN_PROGRESS", `group '${groupId}' is rebalancing (${g.reason}); rejoin`);
    }
  }

  /**
   * A clean leave: the member is out at once and the group rebalances. With
   * a group instance id (LeaveGroup v3+) the instance's member leaves: the
   * member id may then be "" (an admin's removal), and a stale one is fenced.
   */
  leave(groupId: string, memberId: string, instance: string | null = null, reason: string | null = null): void {
    this.#leading();
    const g = this.#groups.get(groupId);
    if (memberId !== "") this.#checkInstance(g, memberId, instance);
    const id = instance === null ? memberId : g?.instances.get(instance);
    const m = id === undefined ? undefined : g?.members.get(id);
    if (!g || !m) {
      const who = instance === null ? `member '${memberId}'` : `group instance '${instance}'`;
      throw new YakError("UNKNOWN_MEMBER_ID", `${who} is not in group '${groupId}'`);
    }
    this.#remove(g, m, `left${clientReason(reason)}`);
  }

  /** The protocol type and protocol of a group with members, or null (SyncGroup v5 answers them). */
  protocolOf(groupId: string): { type: string; name: string } | null {
    const g = this.#groups.get(groupId);
    return g && g.members.size > 0 ? { type: g.protocolType, name: g.protocol } : null;
  }

  /** Takes a member out of its group (and a static member's instance out of the instance map), with its bytes. */
  #drop(g: Group, m: Member, reason: string): void {
    g.members.delete(m.id);
    if (m.instanceId !== null && g.instances.get(m.instanceId) === m.id) g.instances.delete(m.instanceId);
    this.#release(g, m);
    this.#b.log.write("group_member_removed", { group: g.id, member: m.id, reason });
  }

  #remove(g: Group, m: Member, reason: string): void {
    this.#drop(g, m, reason);
    m.join?.reject(new YakError("UNKNOWN_MEMBER_ID", `member ${m.id} ${reason}`));
    m.sync?.reject(new YakError("UNKNOWN_MEMBER_ID", `member ${m.id} ${reason}`));
    if (g.members.size === 0) {
      g.state = "Empty";
      g.generation++;
      g.leaderId = "";
      g.protocol = "";
      return;
    }
    if (g.state !== "PreparingRebalance") this.#prepare(g, `member ${m.id} ${reason}`);
    this.#maybeCompleteJoin(g);
  }

  #subscribedCounts(g: Group): Map<string, number> {
    const counts = new Map<string, number>();
    if (g.protocolType !== "consumer") return counts;
    for (const m of g.members.values()) {
      const meta = m.protocols.find((p) => p.name === g.protocol)?.metadata;
      if (!meta) continue;
      try {
        for (const t of decodeSubscription(meta)) counts.set(t, this.#b.store.partitionCount(t));
      } catch { /* not Kafka's consumer protocol: no partition watch for it */ }
    }
    return counts;
  }

  #tick(): void {
    const now = monotonicMs();
    for (const g of this.#groups.values()) {
      for (const [id, expiry] of g.pending) {
        if (now <= expiry) continue;
        g.pending.delete(id);
        this.#charge(g, -pendingBytes(id));
      }
      for (const m of [...g.members.values()]) {
        // A member waiting in a join is not expected to heartbeat.
        if (m.join === null && now - m.lastSeenMs > m.sessionTimeoutMs) this.#remove(g, m, "session expired");
      }
      if (g.state === "PreparingRebalance") this.#maybeCompleteJoin(g);
      if (g.state === "Stable") {
        for (const [topic, count] of g.partitionCounts) {
          if (this.#b.store.partitionCount(topic) !== count) {
            this.#prepare(g, `partitions of '${topic}' changed`);
            break;
          }
        }
      }
      if (g.state === "Empty" && g.members.size === 0 && g.pending.size === 0) {
        assert(g.bytes === 0, `group '${g.id}' has no members and is charged ${g.bytes} bytes`);
        // Kept a while, as Kafka keeps it: listed Empty, and its members' old ids are not taken back. One no member
        // ever joined (a join refused, an id handed out and not used) goes now, as Kafka never made it.
        g.adopting = false;
        g.adopted = false;
        g.emptySinceMs ??= now;
        if (!g.joined || now - g.emptySinceMs > DEFAULTS.groupEmptyKeepMs) this.#groups.delete(g.id);
      }
    }
  }

  /**
   * Commits `partition -> next offset to read` for a group (as the leader);
   * resolves once the in-sync replicas hold the commit. A member commits with
   * its id and generation (and a static member with its group instance id)
   * and is refused once they are stale, so a member that lost its partitions
   * cannot move another member's position; a commit
   * without a member is taken only while the group has no members. Any offset
   * is stored, past the log end too (as Kafka does: a consumer's seek, an
   * admin's setOffsets); `info` is what a Kafka commit says beside an offset
   * (metadata, leader epoch), kept and given back by {@link committedInfo}.
   */
  async commit(
    group: string,
    topic: string,
    offsets: Map<number, number>,
    member: { memberId: string; generation: number; groupInstanceId?: string | null } | null = null,
    info?: Map<number, CommitInfo>,
  ): Promise<Record<string, number>> {
    const b = this.#b;
    this.#leading();
    const g = this.#groups.get(group);
    const hasMembers = g !== undefined && g.members.size > 0;
    // A member id with generation -1 is an admin's commit unless the group has members (as Kafka: then it is checked).
    if (member && member.memberId !== "" && (member.generation >= 0 || hasMembers)) {
      const { g: found } = this.#member(group, member.memberId, member.generation, member.groupInstanceId ?? null);
      if (found.state === "CompletingRebalance") {
        throw new YakError("REBALANCE_IN_PROGRESS", `group '${group}' is assigning partitions; commit after it`);
      }
    } else if (hasMembers) {
      // Kafka's answer to a commit from outside a group that has members (a stale generation is ILLEGAL_GENERATION).
      throw new YakError(
        "UNKNOWN_MEMBER_ID",
        `group '${group}' has members; commit as one of them (member id and generation)`,
      );
    }
    const n = b.store.partitionCount(topic);
    if (n === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    const out: Record<string, number> = {};
    for (const [p, off] of offsets) {
      if (p < 0 || p >= n) throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition '${p}'`);
      out[p] = off;
    }
    const said = infoOf(info);
    const op: CommitOp = { op: "commit", group, topic, offsets: out, ...(said ? { info: said } : {}) };
    await appendMetaReplicated(b, op, b.opts.requestTimeoutMs);
    return out;
  }

  /**
   * Checks the member a TxnOffsetCommit names, as Kafka does for a
   * transactional commit: a static member's instance, then UNKNOWN_MEMBER_ID
   * for a member the group does not have (a group this leader has not seen
   * yet too, after a failover), ILLEGAL_GENERATION for another generation.
   * Never REBALANCE_IN_PROGRESS, not even while the group is assigning
   * partitions: Kafka's producers take that answer to a transactional
   * commit as fatal, where they abort the transaction on the other two.
   */
  checkCommitter(
    group: string,
    member: { memberId: string; generation: number; groupInstanceId: string | null },
  ): void {
    this.#leading();
    this.#member(group, member.memberId, member.generation, member.groupInstanceId, true);
  }

  /** The group's committed offsets in a topic, by partition. */
  committed(group: string, topic: string): Record<string, number> {
    return Object.fromEntries(this.#b.store.meta.groups.get(group)?.get(topic) ?? []);
  }

  /** What the group's commits in a topic said beside their offsets (metadata, leader epoch), by partition. */
  committedInfo(group: string, topic: string): ReadonlyMap<number, CommitInfo> {
    return this.#b.store.meta.commitInfo.get(group)?.get(topic) ?? new Map();
  }

  /**
   * Groups known here: with members (on the leader) or with commits; with
   * `states` (KIP-518), only those in one of them (any case; a name that is
   * no state matches none, as in Kafka). A group known by its commits alone
   * is Empty, of protocol type "consumer" (what committed).
   */
  list(states: readonly string[] = []): GroupListing[] {
    const wanted = new Set(states.map((s) => s.toLowerCase()));
    const names = new Set([...this.#groups.keys(), ...this.#b.store.meta.groups.keys()]);
    return [...names].sort().flatMap((group) => {
      const g = this.#groups.get(group);
      const state = g?.state ?? "Empty";
      if (wanted.size > 0 && !wanted.has(state.toLowerCase())) return [];
      return [{ group, state, members: g?.members.size ?? 0, protocolType: g?.protocolType || "consumer" }];
    });
  }

  /** One group's state and members (empty when only its commits are known). */
  describe(group: string): GroupView {
    const g = this.#groups.get(group);
    const now = monotonicMs();
    if (!g) {
      const known = this.#b.store.meta.groups.has(group);
      return {
        group,
        state: known ? "Empty" : "Dead",
        generation: 0,
        // Only its commits are known: a consumer group's, as ListGroups says too (Kafka keeps the type of an
        // emptied group; kafkajs showed '' here after kcat and yak consume had left).
        protocolType: known ? "consumer" : "",
        protocol: "",
        leaderId: "",
        members: [],
      };
    }
    // Protocol, subscriptions and assignments only of a Stable group, as Kafka answers: while it rebalances they are
    // the last generation's, which tools would show as current.
    const stable = g.state === "Stable";
    return {
      group,
      state: g.state,
      generation: g.generation,
      protocolType: g.protocolType,
      protocol: stable ? g.protocol : "",
      leaderId: g.leaderId,
      members: [...g.members.values()].map((m) => ({
        memberId: m.id,
        groupInstanceId: m.instanceId,
        clientId: m.clientId,
        host: m.host,
        metadata: stable ? m.protocols.find((p) => p.name === g.protocol)?.metadata ?? EMPTY : EMPTY,
        assignment: stable ? m.assignment : EMPTY,
        lastHeartbeatMsAgo: Math.round(now - m.lastSeenMs),
      })),
    };
  }

  /**
   * A group as people read it: members with their partitions (decoded when
   * the group uses Kafka's consumer protocol).
   */
  describeDecoded(group: string): Omit<GroupView, "members"> & {
    members: (Omit<MemberView, "assignment"> & { partitions: Assignment })[];
  } {
    const view = this.describe(group);
    return {
      ...view,
      members: view.members.map(({ assignment, ...m }) => {
        let partitions: Assignment = {};
        try {
          if (view.protocolType === "consumer") partitions = decodeAssignment(assignment);
        } catch { /* not decodable: shown without partitions */ }
        return { ...m, partitions };
      }),
    };
  }

  /** Refused while the group has members (as Kafka does). */
  #requireEmpty(group: string, what: string): void {
    const g = this.#groups.get(group);
    if (g && g.members.size > 0) {
      throw new YakError(
        "GROUP_NOT_EMPTY",
        `group '${group}' has ${g.members.size} active member(s); stop them before you ${what}`,
      );
    }
  }

  /**
   * Sets a group's committed offsets (no members may be active): a person's
   * `yak groups --reset-offsets`, so an offset past the end is refused as a
   * likely mistake (a commit through Kafka's API takes it).
   */
  async resetOffsets(group: string, topic: string, offsets: Map<number, number>): Promise<Record<string, number>> {
    this.#leading();
    this.#requireEmpty(group, "reset its offsets");
    for (const [p, off] of offsets) {
      const log = this.#b.store.partitionCount(topic) > p ? this.#b.store.partition(topic, p) : null;
      if (log && off > log.logEndOffset) {
        throw new YakError("OUT_OF_RANGE", `offset ${off} is past the end (${log.logEndOffset}) of ${topic}/${p}`);
      }
    }
    return await this.commit(group, topic, offsets);
  }

  /** Deletes a group's commits (no members may be active). */
  async delete(group: string): Promise<void> {
    this.#leading();
    this.#requireEmpty(group, "delete it");
    if (!this.#b.store.meta.groups.has(group) && !this.#groups.has(group)) {
      throw new YakError("GROUP_ID_NOT_FOUND", `group '${group}' does not exist`);
    }
    const g = this.#groups.get(group);
    if (g) {
      // No members (see above), but ids handed out may be pending still: theirs are given back.
      this.#charge(g, -g.bytes);
      this.#groups.delete(group);
    }
    await appendMetaReplicated(this.#b, { op: "group_delete", group }, this.#b.opts.requestTimeoutMs);
  }

  /**
   * Deletes a group's committed offsets (Kafka's OffsetDelete), topic ->
   * partitions, as one record in the metadata log, so every replica and a
   * later leader agree; resolves once the in-sync replicas hold it, with
   * each partition's refusal or null. A partition of a topic the group's
   * live members subscribe to is refused (GROUP_SUBSCRIBED_TO_TOPIC: they
   * would commit it again), and so are unknown ones; the rest are deleted
   * (one with no commit too: nothing to do). The whole request is refused
   * for a group that does not exist, or whose members' subscriptions yak
   * cannot read (not Kafka's consumer protocol: GROUP_NOT_EMPTY).
   */
  async deleteOffsets(
    group: string,
    topics: ReadonlyMap<string, readonly number[]>,
  ): Promise<Map<string, Map<number, YakError | null>>> {
    this.#leading();
    const commits = this.#b.store.meta.groups.get(group);
    const g = this.#groups.get(group);
    if (!commits && !g) throw new YakError("GROUP_ID_NOT_FOUND", `group '${group}' does not exist`);
    const subscribed = this.#subscribedTopics(g);
    if (subscribed === null) {
      throw new YakError(
        "GROUP_NOT_EMPTY",
        `group '${group}' has ${g!.members.size} active member(s) of protocol type '${g!.protocolType}', whose ` +
          `subscriptions yak cannot read; stop them before you delete its offsets`,
      );
    }
    const out = new Map<string, Map<number, YakError | null>>();
    const deleting: Record<string, number[]> = {};
    for (const [topic, partitions] of topics) {
      const answers = new Map<number, YakError | null>();
      out.set(topic, answers);
      for (const p of partitions) {
        const refused = this.#offsetDeleteRefusal(group, topic, p, subscribed);
        answers.set(p, refused);
        if (refused === null && commits?.get(topic)?.has(p)) (deleting[topic] ??= []).push(p);
      }
    }
    if (Object.keys(deleting).length > 0) {
      const op: OffsetDeleteOp = { op: "offset_delete", group, offsets: deleting };
      await appendMetaReplicated(this.#b, op, this.#b.opts.requestTimeoutMs);
      this.#b.log.write("group_offsets_deleted", { group, offsets: deleting });
    }
    return out;
  }

  /** Why one partition's commit may not be deleted, or null when it may. */
  #offsetDeleteRefusal(group: string, topic: string, p: number, subscribed: ReadonlySet<string>): YakError | null {
    const n = this.#b.store.partitionCount(topic);
    if (n === 0) return new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
    if (!Number.isInteger(p) || p < 0 || p >= n) {
      return new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition ${p} (it has ${n})`);
    }
    if (subscribed.has(topic)) {
      return new YakError(
        "GROUP_SUBSCRIBED_TO_TOPIC",
        `group '${group}' has active members subscribed to topic '${topic}', who would commit it again; ` +
          `stop them (or unsubscribe them) before you delete its offsets`,
      );
    }
    return null;
  }

  /**
   * The topics a group's members subscribe to (in the group's protocol, or
   * in any they offer while none is chosen); null when a member's
   * subscription cannot be read (a protocol type other than "consumer").
   */
  #subscribedTopics(g: Group | undefined): Set<string> | null {
    const topics = new Set<string>();
    if (!g || g.members.size === 0) return topics;
    if (g.protocolType !== "consumer") return null;
    for (const m of g.members.values()) {
      for (const p of m.protocols) {
        if (g.protocol !== "" && p.name !== g.protocol) continue;
        try {
          for (const t of decodeSubscription(p.metadata)) topics.add(t);
        } catch {
          return null;
        }
      }
    }
    return topics;
  }

  /** Every group's committed offsets and lag (to the high watermark), for status. */
  lags(): Record<string, Record<string, Record<string, GroupPartitionLag>>> {
    const b = this.#b;
    const out: Record<string, Record<string, Record<string, GroupPartitionLag>>> = {};
    for (const [group, byTopic] of b.store.meta.groups) {
      out[group] = {};
      for (const [topic, byPartition] of byTopic) {
        out[group][topic] = {};
        for (const [p, off] of byPartition) {
          const log = b.store.partitionCount(topic) > p ? b.store.partition(topic, p) : null;
          // Lag counts what is still there: records below the log start are gone.
          const lag = log ? log.highWatermark - Math.max(off, log.logStartOffset) : 0;
          out[group][topic][p] = { committed: off, lag: Math.max(0, lag) };
        }
      }
    }
    return out;
  }
}

/** A commit's info in its stored form, or undefined when no partition's commit said anything. */
function infoOf(info: Map<number, CommitInfo> | undefined): Record<string, CommitInfo> | undefined {
  if (!info) return undefined;
  const out: Record<string, CommitInfo> = {};
  for (const [p, said] of info) {
    const kept: CommitInfo = {};
    if (said.m !== undefined && said.m !== "") kept.m = said.m;
    if (said.e !== undefined && said.e >= 0) kept.e = said.e;
    if (kept.m !== undefined || kept.e !== undefined) out[p] = kept;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
