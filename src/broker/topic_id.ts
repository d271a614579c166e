/**
 * Topic ids: a UUID per topic incarnation, fixed at creation and kept in its
 * `__cluster` record, so a topic deleted and created again under the same
 * name is another topic. Kafka clients name topics by these ids (Metadata
 * v10+, DeleteTopics v6, CreateTopics v7 answers one); they are 16 bytes on
 * the wire, and Kafka's tools print them in URL-safe base64 without padding.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** The all-zero UUID: Kafka's "no topic id". */
const ZERO = "00000000-0000-0000-0000-000000000000";
/** Kafka reserves the id whose only set bit is the last one (its metadata topic). */
const RESERVED = "00000000-0000-0000-0000-000000000001";

/** Whether Kafka would take `id` as a topic's: not reserved, and its text does not start with '-' (a flag). */
function usable(id: string): boolean {
  return id !== ZERO && id !== RESERVED && !kafkaTopicIdText(id).startsWith("-");
}

/**
 * A new random topic id (a v4 UUID), one Kafka would make too: never the
 * zero or reserved id, and its base64 text never starts with '-' (Kafka
 * avoids those because command-line tools read them as flags).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { newTopicId } from "./topic_id.ts";
 * assert.match(newTopicId(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
 * ```
 */
export function newTopicId(): string {
  for (;;) {
    const id = crypto.randomUUID();
    if (usable(id)) return id;
  }
}

/**
 * The id of a topic whose metadata record carries none (written before
 * topics had ids): derived from its name and creation time, which every
 * replica holds the same in `__cluster`, so every broker and every restart
 * gives the same id without writing it. It is a version-8 (name-based,
 * RFC 9562) UUID from SHA-256, so it never equals a random (version-4) one.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { derivedTopicId } from "./topic_id.ts";
 * assert.equal(derivedTopicId("events", 0), derivedTopicId("events", 0));
 * assert.notEqual(derivedTopicId("events", 0), derivedTopicId("events", 1));
 * ```
 */
export function derivedTopicId(topic: string, createdAt: number): string {
  for (let attempt = 0;; attempt++) {
    const digest = createHash("sha256").update(`yak topic id\n${topic}\n${createdAt}\n${attempt}`).digest();
    const b = new Uint8Array(digest.subarray(0, 16));
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    const id = topicIdOfBytes(b);
    if (usable(id)) return id;
  }
}

/**
 * A topic id's 16 bytes, as the Kafka wire carries a uuid.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { topicIdBytes, topicIdOfBytes } from "./topic_id.ts";
 * const id = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0";
 * assert.equal(topicIdOfBytes(topicIdBytes(id)), id);
 * ```
 */
export function topicIdBytes(id: string): Uint8Array {
  return Uint8Array.fromHex(id.replaceAll("-", ""));
}

/** The UUID text of 16 bytes from the wire (lower-case, with dashes); the zero UUID for "no id". */
export function topicIdOfBytes(b: Uint8Array): string {
  const hex = b.subarray(0, 16).toHex();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** Whether wire bytes are Kafka's "no topic id" (all zero). */
export function isZeroTopicId(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

/**
 * A topic id as Kafka's tools print it (`kafka-topics --describe`'s TopicId):
 * its 16 bytes in URL-safe base64 without padding.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { kafkaTopicIdText } from "./topic_id.ts";
 * assert.equal(kafkaTopicIdText("00000000-0000-0000-0000-000000000001"), "AAAAAAAAAAAAAAAAAAAAAQ");
 * ```
 */
export function kafkaTopicIdText(id: string): string {
  return topicIdBytes(id).toBase64({ alphabet: "base64url", omitPadding: true });
}
