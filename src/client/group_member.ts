/**
 * A consumer group member (Kafka's classic protocol, client side): joins
 * through the leader (the group coordinator), computes the assignment when it
 * is the group's leader member (range or round-robin), heartbeats in the
 * background, learns from a heartbeat when to rejoin, commits with its member
 * id and generation, and leaves cleanly.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { isRetriable, toYakError, YakError } from "../errors.ts";
import type { Connection } from "../protocol/connection.ts";
import {
  type Assignment,
  decodeAssignment,
  decodeSubscription,
  encodeAssignment,
  encodeSubscription,
} from "../protocol/consumer_protocol.ts";
import { assign, type AssignorName } from "./assignors.ts";
import { type Bootstrap, connectLeader } from "./discovery.ts";

/** Options of {@link GroupMember}. */
export interface GroupMemberOptions {
  bootstrap: Bootstrap;
  group: string;
  topics: string[];
  clientId: string;
  /** Removed from the group after this long without a heartbeat (default 10 s). */
  sessionTimeoutMs?: number;
  /** Strategies in order of preference (default range, then roundrobin, as Kafka's consumer). */
  protocols?: AssignorName[];
  requestTimeoutMs?: number;
  /** Give up when the cluster cannot be reached for this long. */
  retryTimeoutMs?: number;
  onRetry?: (why: string) => void;
  /** Told of joins and rebalances (for a one-line notice). */
  onEvent?: (event: string) => void;
}

function b64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function unb64(text: unknown): Uint8Array {
  const raw = atob(String(text ?? ""));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** Codes after which a member rejoins instead of failing. */
const REJOIN = new Set(["REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "MEMBER_ID_REQUIRED"]);

/**
 * One member of a consumer group.
 *
 * @example
 * ```ts ignore
 * const member = new GroupMember({ bootstrap: {}, group: "audit", topics: ["events"], clientId: "c-1" });
 * const assignment = await member.join(); // { events: [0, 1] }
 * if (member.needsRejoin) await member.join();
 * await member.leave();
 * ```
 */
export class GroupMember {
  readonly #o: GroupMemberOptions;
  readonly #sessionTimeoutMs: number;
  #conn: Connection | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #beating = false;
  #rejoin = true;
  /** When the coordinator last answered that this member is in its generation (a heartbeat, a sync); 0: never. */
  #lastBeatMs = 0;
  #closed = false;
  /** The leave under way or done: a second call waits for the same one. */
  #leaving: Promise<void> | null = null;
  #joining = false;
  #topics: string[];
  memberId = "";
  generation = -1;
  assignment: Assignment = {};

  constructor(o: GroupMemberOptions) {
    this.#o = o;
    this.#topics = [...o.topics];
    this.#sessionTimeoutMs = o.sessionTimeoutMs ?? DEFAULTS.groupSessionTimeoutMs;
  }

  /**
   * Whether the group is rebalancing (or this member lost its place): commit,
   * then {@link join}. Also when no heartbeat was answered for a session
   * (the process was stopped, or the coordinator unreachable): the
   * coordinator has dropped this member by then and its partitions may be
   * another's, though no answer has said so yet (Kafka's consumer does the
   * same), so nothing fetched meanwhile is handed out.
   */
  get needsRejoin(): boolean {
    if (!this.#rejoin && this.#lastBeatMs > 0 && monotonicMs() - this.#lastBeatMs > this.#sessionTimeoutMs) {
      this.#o.onEvent?.(
        `no heartbeat of group '${this.#o.group}' answered in ${this.#sessionTimeoutMs} ms (its session); rejoin`,
      );
      this.#rejoin = true;
    }
    return this.#rejoin;
  }

  get #timeoutMs(): number {
    return this.#o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  }

  /** A request to the leader, rediscovering it through failovers until the retry deadline. */
  async #request(
    body: Record<string, unknown>,
    timeoutMs = this.#timeoutMs,
    retryForMs = this.#o.retryTimeoutMs ?? DEFAULTS.deliveryTimeoutMs,
  ): Promise<Record<string, unknown>> {
    const deadline = monotonicMs() + retryForMs;
    while (true) {
      if (this.#closed) throw new YakError("UNAVAILABLE", "the group member is closed");
      try {
        if (!this.#conn || this.#conn.isClosed) {
          const left = Math.max(1000, deadline - monotonicMs());
          const conn = (await connectLeader(this.#o.bootstrap, monotonicMs() + left, this.#o.onRetry)).conn;
          // Closed (left) while connecting: nothing more goes out, a join least of all.
          if (this.#closed) {
            conn.close();
            throw new YakError("UNAVAILABLE", "the group member is closed");
          }
          this.#conn = conn;
        }
        return await this.#conn.request(body, timeoutMs);
      } catch (err) {
        const yerr = toYakError(err);
        if (!isRetriable(yerr) || monotonicMs() > deadline || this.#closed) throw yerr;
        if (yerr.data?.gaveUp === true) throw yerr; // discovery gave up already (nothing listens, or its deadline)
        this.#conn?.close();
        this.#conn = null;
        this.#o.onRetry?.(yerr.message);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Changes the subscription (e.g. a new topic matched a pattern): the member rejoins with it. */
  subscribe(topics: string[]): void {
    this.#topics = [...topics];
    this.#rejoin = true;
  }

  /**
   * Joins (or rejoins) until the group is stable; resolves with this
   * member's partitions. `retryForMs` bounds how long it tries to reach the
   * leader (a first join: the client's connect deadline; later ones ride out
   * failovers).
   */
  async join(retryForMs?: number): Promise<Assignment> {
    this.#joining = true;
    try {
      return await this.#join(retryForMs);
    } finally {
      this.#joining = false;
    }
  }

  /** Whether a {@link join} is under way (waiting for the group's other members, or for its assignment). */
  get joining(): boolean {
    return this.#joining;
  }

  async #join(retryForMs?: number): Promise<Assignment> {
    const protocols = this.#o.protocols ?? ["range", "roundrobin"];
    const metadata = b64(encodeSubscription(this.#topics));
    while (true) {
      if (this.#closed) throw new YakError("UNAVAILABLE", "the group member is closed");
      try {
        const joined = await this.#request(
          {
            type: "join_group",
            group: this.#o.group,
            memberId: this.memberId,
            // After a failover the new coordinator takes the member back under its id, going on from here.
            ...(this.generation > 0 ? { lastGeneration: this.generation } : {}),
            clientId: this.#o.clientId,
            sessionTimeoutMs: this.#sessionTimeoutMs,
            rebalanceTimeoutMs: this.#sessionTimeoutMs,
            protocolType: "consumer",
            protocols: protocols.map((name) => ({ name, metadata })),
          },
          this.#sessionTimeoutMs + this.#timeoutMs,
          retryForMs,
        );
        this.memberId = String(joined.memberId);
        this.generation = Number(joined.generation);
        let assignments: { memberId: string; assignment: string }[] | undefined;
        if (joined.leaderId === joined.memberId) {
          assignments = await this.#assign(
            String(joined.protocol) as AssignorName,
            joined.members as {
              memberId: string;
              metadata: string;
            }[],
          );
        }
        const synced = await this.#request(
          {
            type: "sync_group",
            group: this.#o.group,
            memberId: this.memberId,
            generation: this.generation,
            ...(assignments ? { assignments } : {}),
          },
          this.#sessionTimeoutMs + this.#timeoutMs,
          retryForMs,
        );
        this.assignment = decodeAssignment(unb64(synced.assignment));
        this.#rejoin = false;
        this.#lastBeatMs = monotonicMs();
        this.#timer ??= setInterval(
          () => this.#heartbeat(),
          Math.max(50, Math.min(1000, Math.floor(this.#sessionTimeoutMs / 4))),
        );
        const mine = Object.entries(this.assignment).map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ");
        this.#o.onEvent?.(`joined group '${this.#o.group}' generation ${this.generation}: ${mine || "no partitions"}`);
        return this.assignment;
      } catch (err) {
        const yerr = toYakError(err);
        if (!REJOIN.has(yerr.code)) throw yerr;
        if (yerr.code === "MEMBER_ID_REQUIRED") this.memberId = String(yerr.data?.memberId ?? "");
        if (yerr.code === "UNKNOWN_MEMBER_ID") this.memberId = "";
      }
    }
  }

  /** As the group's leader member: everyone's partitions, by the chosen strategy. */
  async #assign(
    protocol: AssignorName,
    members: { memberId: string; metadata: string }[],
  ): Promise<{ memberId: string; assignment: string }[]> {
    const subs = members.map((m) => ({ memberId: m.memberId, topics: decodeSubscription(unb64(m.metadata)) }));
    const counts: Record<string, number> = {};
    for (const topic of new Set(subs.flatMap((s) => s.topics))) {
      try {
        const meta = await this.#request({ type: "metadata", topic });
        counts[topic] = (meta.topics as Record<string, number>)[topic] ?? 0;
      } catch (err) {
        if (toYakError(err).code !== "UNKNOWN_TOPIC") throw err;
        counts[topic] = 0; // not there yet: the coordinator rebalances when it appears
      }
    }
    const plan = assign(protocol === "roundrobin" ? "roundrobin" : "range", subs, counts);
    return Object.entries(plan).map(([memberId, a]) => ({ memberId, assignment: b64(encodeAssignment(a)) }));
  }

  async #heartbeat(): Promise<void> {
    if (this.#beating || this.#rejoin || this.#closed) return;
    this.#beating = true;
    try {
      const sent = monotonicMs();
      await this.#request(
        { type: "heartbeat", group: this.#o.group, memberId: this.memberId, generation: this.generation },
        Math.max(1000, this.#sessionTimeoutMs),
      );
      if (!this.#rejoin) this.#lastBeatMs = sent; // in the generation as of when it was sent
    } catch (err) {
      const yerr = toYakError(err);
      if (REJOIN.has(yerr.code)) {
        if (yerr.code === "UNKNOWN_MEMBER_ID") this.memberId = "";
        if (!this.#rejoin) this.#o.onEvent?.(yerr.message);
        this.#rejoin = true;
      }
    } finally {
      this.#beating = false;
    }
  }

  /**
   * Commits `partition -> next offset` of a topic (of id `topicId`, when
   * given: UNKNOWN_TOPIC_ID if the topic has another now) as this member. Throws the
   * group error (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, ...) when the
   * member must rejoin first: its partitions may be someone else's now.
   */
  async commit(topic: string, offsets: Record<string, number>, topicId?: string): Promise<void> {
    try {
      await this.#request({
        type: "commit",
        group: this.#o.group,
        topic,
        offsets,
        memberId: this.memberId,
        generation: this.generation,
        ...(topicId === undefined ? {} : { topicId }),
      });
    } catch (err) {
      const yerr = toYakError(err);
      if (REJOIN.has(yerr.code)) this.#rejoin = true;
      throw yerr;
    }
  }

  /** The group's committed offsets for a topic. */
  async committed(topic: string): Promise<Record<string, number>> {
    const res = await this.#request({ type: "committed", group: this.#o.group, topic });
    return res.offsets as Record<string, number>;
  }

  /**
   * Leaves the group at once (its partitions go to the others) and closes.
   * A join under way ends with it: the coordinator answers it
   * UNKNOWN_MEMBER_ID, and a closed member does not join again.
   */
  leave(): Promise<void> {
    if (this.#leaving) return this.#leaving;
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#timer);
    this.#leaving = (async () => {
      // Without a connection (a join between two attempts to reach the leader) nothing is sent: the join that
      // would have followed is not, and the session timeout removes the member.
      if (this.memberId !== "" && this.#conn) {
        try {
          await this.#conn.request({ type: "leave_group", group: this.#o.group, memberId: this.memberId }, 2000);
        } catch { /* leaving anyway: the session timeout removes us */ }
      }
      this.close();
    })();
    return this.#leaving;
  }

  /** Stops heartbeating and closes, without leaving (as a crash would). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#conn?.close();
    this.#conn = null;
  }
}
