/**
 * The one error type of yak: a stable machine-readable `code` and a message
 * that tells a person what to do next. Every layer (log, broker, codecs,
 * clients, CLI) imports it from here; codecs map the codes to their wire's own.
 *
 * @module
 */

/** Stable error codes carried in error frames and by {@link YakError}. */
export type ErrorCode =
  | "NOT_LEADER"
  | "NO_LEADER"
  | "UNKNOWN_TOPIC"
  /**
   * A topic id that is not the named topic's: the topic was deleted (and perhaps created again under the
   * name) since the client learned it. Kafka's UNKNOWN_TOPIC_ID.
   */
  | "UNKNOWN_TOPIC_ID"
  | "INVALID_TOPIC"
  | "UNKNOWN_PARTITION"
  | "MESSAGE_TOO_LARGE"
  | "FRAME_TOO_LARGE"
  | "OUT_OF_RANGE"
  | "STALE_EPOCH"
  /** A reader's leader epoch is older than the leader's (it must refresh its metadata); Kafka's FENCED_LEADER_EPOCH. */
  | "FENCED_LEADER_EPOCH"
  /** A reader's leader epoch is newer than this broker knows (its metadata is ahead); Kafka's UNKNOWN_LEADER_EPOCH. */
  | "UNKNOWN_LEADER_EPOCH"
  | "OUT_OF_ORDER_SEQUENCE"
  /** An idempotent batch under a producer id the cluster did not issue (or not to this client). */
  | "UNKNOWN_PRODUCER_ID"
  /** An idempotent batch under a producer epoch the cluster did not issue. */
  | "INVALID_PRODUCER_EPOCH"
  | "INVALID_REQUEST"
  | "UNKNOWN_REQUEST"
  | "INVALID_ARGUMENT"
  | "TIMEOUT"
  | "CONNECTION"
  | "STORAGE"
  | "CORRUPT_LOG"
  /**
   * Bytes from a client that do not parse: a bad CRC, a truncated batch, a broken compressed stream; or a
   * leader's replication reply whose numbers do not hold together (the follower writes none of it).
   */
  | "CORRUPT_MESSAGE"
  /** A record a topic cannot take as it is: one without a key, produced to a compacted topic (Kafka's INVALID_RECORD). */
  | "INVALID_RECORD"
  | "TOO_MANY_CONNECTIONS"
  | "UNAUTHORIZED"
  | "UNAVAILABLE"
  | "NOT_ENOUGH_REPLICAS"
  /** acks=all: the batch was appended, then the in-sync set fell below min.insync.replicas before it was copied. */
  | "NOT_ENOUGH_REPLICAS_AFTER_APPEND"
  | "BROKER_ID_IN_USE"
  | "INVALID_CONFIG"
  /** A produced record's timestamp is further from the leader's clock than its topic's message.timestamp limits allow. */
  | "INVALID_TIMESTAMP"
  // Consumer groups (Kafka's classic protocol); a member handles each itself, none is retried blindly.
  | "MEMBER_ID_REQUIRED"
  | "UNKNOWN_MEMBER_ID"
  | "ILLEGAL_GENERATION"
  | "REBALANCE_IN_PROGRESS"
  | "INCONSISTENT_GROUP_PROTOCOL"
  | "GROUP_NOT_EMPTY"
  | "GROUP_ID_NOT_FOUND"
  | "GROUP_MAX_SIZE_REACHED"
  /** Offsets of a topic the group's live members subscribe to: they would be committed again (Kafka's OffsetDelete). */
  | "GROUP_SUBSCRIBED_TO_TOPIC"
  /** A static member's old member id: another process joined since under the same group instance id (KIP-345). */
  | "FENCED_INSTANCE_ID"
  // Transactions (KIP-98).
  /** A transactional producer's epoch is stale: another producer initialized the same transactional id since. */
  | "PRODUCER_FENCED"
  /** A transactional request out of turn: a batch outside its transaction, an end with none open. */
  | "INVALID_TXN_STATE"
  /** A transactional id's request under a producer id that is not the id's. */
  | "INVALID_PRODUCER_ID_MAPPING"
  /** A transaction timeout above the broker's maximum (transaction.max.timeout.ms) or below 1 ms. */
  | "INVALID_TRANSACTION_TIMEOUT"
  /** The id's previous transaction is still being completed (its markers): retry shortly. */
  | "CONCURRENT_TRANSACTIONS"
  /** A group's offsets are part of a transaction not decided yet (read_committed offset fetch): retry shortly. */
  | "UNSTABLE_OFFSET_COMMIT"
  /** A limit of the transaction coordinator (ids, open transactions, partitions or bytes of one). */
  | "POLICY_VIOLATION"
  /** A broken invariant inside yak (a bug): never retried, always logged. */
  | "INTERNAL";

/**
 * The longest message a YakError keeps, in UTF-16 units. Messages quote what
 * a client sent (a name, a value), and Kafka's older versions carry an error
 * message in an int16 length: 4,096 units are at most 12,288 UTF-8 bytes,
 * under its 32,767 whatever the client sent.
 */
export const MAX_ERROR_MESSAGE_CHARS = 4096;

/** `message`, cut to {@link MAX_ERROR_MESSAGE_CHARS} with a note of its length when longer. */
function boundedMessage(message: string): string {
  if (message.length <= MAX_ERROR_MESSAGE_CHARS) return message;
  const note = ` ... (${message.length} characters in all)`;
  let cut = MAX_ERROR_MESSAGE_CHARS - note.length;
  // Not between the two halves of a surrogate pair.
  const c = message.charCodeAt(cut - 1);
  if (c >= 0xd800 && c <= 0xdbff) cut--;
  return message.slice(0, cut) + note;
}

/**
 * An error with a stable code. The CLI prints `message` alone, never a stack.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { YakError } from "./errors.ts";
 * const err = new YakError("UNKNOWN_TOPIC", "topic 'x' does not exist");
 * assert.equal(err.code, "UNKNOWN_TOPIC");
 * ```
 */
export class YakError extends Error {
  /** The stable code, e.g. `NOT_LEADER`. */
  readonly code: ErrorCode;
  /** Extra data for the client (e.g. the leader's address with NOT_LEADER). */
  readonly data?: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message: string,
    data?: Record<string, unknown>,
  ) {
    super(boundedMessage(message));
    this.name = "YakError";
    this.code = code;
    this.data = data;
  }
}

/** Codes after which a client should rediscover the leader and retry. */
export const RETRIABLE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NOT_LEADER",
  "NO_LEADER",
  "STALE_EPOCH",
  "OUT_OF_ORDER_SEQUENCE",
  "TIMEOUT",
  "CONNECTION",
  "UNAVAILABLE",
  "STORAGE",
  // acks=all while the in-sync set is below min.insync.replicas: a follower may come back.
  "NOT_ENOUGH_REPLICAS",
  "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
  "CONCURRENT_TRANSACTIONS",
  "UNSTABLE_OFFSET_COMMIT",
]);

/**
 * Whether a client should retry after this error (with a fresh leader).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { isRetriable, YakError } from "./errors.ts";
 * assert.equal(isRetriable(new YakError("NOT_LEADER", "broker 2 is a follower")), true);
 * ```
 */
export function isRetriable(err: unknown): boolean {
  return err instanceof YakError && RETRIABLE_CODES.has(err.code);
}

/**
 * Turns any thrown value into a {@link YakError}, keeping yak errors as they are.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { toYakError } from "./errors.ts";
 * assert.equal(toYakError(new Error("boom")).code, "UNAVAILABLE");
 * ```
 */
export function toYakError(err: unknown): YakError {
  if (err instanceof YakError) return err;
  if (err instanceof Deno.errors.ConnectionRefused) {
    return new YakError("CONNECTION", "connection refused");
  }
  if (
    err instanceof Deno.errors.ConnectionReset ||
    err instanceof Deno.errors.BrokenPipe ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.NotConnected
  ) {
    return new YakError("CONNECTION", `connection lost: ${err.message}`);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new YakError("UNAVAILABLE", message);
}

/**
 * Checks an invariant (offsets only grow, a high watermark never passes the
 * log end, a replica chunk holds the records it claims). A failure is a bug:
 * an INTERNAL error, which clients do not retry and servers log.
 *
 * @example
 * ```ts
 * import { assert } from "./errors.ts";
 * const logEnd = 10, highWatermark = 7;
 * assert(highWatermark <= logEnd, "high watermark past the log end");
 * ```
 */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new YakError("INTERNAL", `internal error: ${message}`);
}
