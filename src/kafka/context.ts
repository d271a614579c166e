/**
 * What every Kafka API handler gets: the broker's services, where this
 * listener is, and the connection's session.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import type { TimeSlice } from "../clock.ts";
import type { Reader, Writer } from "./wire.ts";

/** The Kafka listener of one broker, as its API handlers see it. */
export interface KafkaContext {
  services: BrokerServices;
  /** The host clients reach this broker by (else its --host); other brokers name theirs. */
  advertisedHost?: string;
  /** The port this listener got (known once it listens). */
  kafkaPort(): number;
  onError(message: string, fields: Record<string, unknown>): void;
}

/** One Kafka connection's state. */
export interface Session {
  readonly remote: string;
  /** False until SASL/PLAIN succeeds, when the broker has an auth token. */
  authenticated: boolean;
  /** The mechanism agreed by SaslHandshake, awaiting SaslAuthenticate. */
  saslMechanism: string | null;
  /** After a SaslHandshake v0 for PLAIN: the next frame is the bare token, with no request header. */
  saslBareTokenNext: boolean;
  /**
   * The connection's share of the broker thread between yields: a handler
   * with a lot to do pauses on it (`await slice.pause()`).
   */
  readonly slice: TimeSlice;
  /**
   * Set by a handler that yields before its batches have their place in
   * line (a produce): the read loop dispatches nothing more from this
   * connection until it resolves, so pipelined batches keep their order.
   */
  ordered: Promise<void> | null;
  /** Set by a failed authentication: the reply is sent, then the connection closes. */
  closeAfterReply: boolean;
  /**
   * Fetches answered on this connection: each starts at the next partition
   * of its request, so the one partition whose first record may pass the
   * byte limits is not always the same one.
   */
  fetches: number;
  /**
   * Partitions (`topic/partition`) whose last answer on this connection
   * carried records with more left to read: a consumer catching up. When
   * one of them reaches the end, the fetch that finds it
   * there is answered at once, empty, rather than after its max_wait_ms:
   * librdkafka learns it is at the end of a partition only from an empty
   * answer (`kcat -e` exits on it), and waiting 500 ms for it was a quarter
   * of kcat's whole read of 1M records. A consumer reading records as they
   * come mostly gets all there is each time, so its fetches long-poll as
   * before; after an answer that left some behind, at most one quick empty
   * answer comes once it is at the end.
   */
  readonly caughtUp: Set<string>;
}

/** A request, its header read. */
export interface ApiRequest {
  version: number;
  clientId: string;
  session: Session;
  /** The body, positioned after the header. */
  body: Reader;
}

/** One Kafka API: the versions yak speaks and a handler that writes the response body. */
export interface Api {
  key: number;
  name: string;
  min: number;
  max: number;
  /** The first flexible version (compact fields, tagged fields); Infinity for none. */
  flexibleFrom: number;
  /** Allowed before SASL authentication (ApiVersions and the SASL APIs). */
  beforeAuth?: boolean;
  handle(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void | "noReply"> | void | "noReply";
}
