/**
 * The leader as a follower's replica fetcher sees it (Kafka's
 * `LeaderEndPoint`): two questions, answered with decoded, checked values.
 * The fetcher never touches a frame; tests drive it with a fake leader.
 *
 * @module
 */
import { Connection } from "../protocol/connection.ts";
import { MAX_STORED_LINE_BYTES } from "../log/record.ts";
import type { BrokerOptions, LeaderInfo } from "./context.ts";
import {
  decodeEpochEnds,
  decodeFetchReply,
  encodeEpochEndQuery,
  encodeFetchRequest,
  type EpochEnd,
  type EpochEndQuery,
  type FollowerFetch,
  type ReplicaFetchReply,
} from "./replica_protocol.ts";

/** One link to the leader, for one (leader, epoch). */
export interface LeaderEndpoint {
  /** For each partition, the largest epoch the leader has at or below the one asked, and where it ends. */
  fetchEpochEnds(query: EpochEndQuery, timeoutMs: number): Promise<Map<string, EpochEnd>>;
  /** Long-polls for what follows the follower's log ends; rejects on a malformed reply. */
  fetchRecords(fetch: FollowerFetch, timeoutMs: number): Promise<ReplicaFetchReply>;
  /** Ends the link: a call in flight rejects. */
  close(): void;
}

/** Opens a link to a leader (a fresh one after each failure). */
export type OpenLeaderEndpoint = (leader: LeaderInfo) => Promise<LeaderEndpoint>;

/**
 * The leader over a native connection (`replicate` and `epoch_end` requests).
 *
 * @example
 * ```ts ignore
 * const open = RemoteLeaderEndpoint.opener(broker.opts);
 * const leader = await open({ id: 1, host: "127.0.0.1", port: 9092, epoch: 4 });
 * const ends = await leader.fetchEpochEnds({ epoch: 4, lastEpochs: new Map([["t/0", 3]]) }, 10_000);
 * leader.close();
 * ```
 */
export class RemoteLeaderEndpoint implements LeaderEndpoint {
  readonly #conn: Connection;

  private constructor(conn: Connection) {
    this.#conn = conn;
  }

  /** Opens connections with a broker's timeouts and a frame limit that fits the largest fetch. */
  static opener(opts: Pick<BrokerOptions, "sessionTimeoutMs" | "maxFetchBytes">): OpenLeaderEndpoint {
    return async (leader) =>
      new RemoteLeaderEndpoint(
        await Connection.open(leader.host, leader.port, {
          connectTimeoutMs: opts.sessionTimeoutMs,
          // A fetch's budget, or one whole line past it (a reply carries at least one).
          maxFrameBytes: Math.max(opts.maxFetchBytes * 8, MAX_STORED_LINE_BYTES) + 1024 * 1024,
        }),
      );
  }

  async fetchEpochEnds(query: EpochEndQuery, timeoutMs: number): Promise<Map<string, EpochEnd>> {
    return decodeEpochEnds(await this.#conn.request(encodeEpochEndQuery(query), timeoutMs));
  }

  async fetchRecords(fetch: FollowerFetch, timeoutMs: number): Promise<ReplicaFetchReply> {
    return decodeFetchReply(await this.#conn.request(encodeFetchRequest(fetch), timeoutMs), fetch.epoch);
  }

  close(): void {
    this.#conn.close();
  }
}
