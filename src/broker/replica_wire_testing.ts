/**
 * For the replication unit tests: a leader's raw reply as the follower's
 * connection hands it over (frame fields parsed, attachment joined), without
 * a socket in between.
 *
 * @module
 */
import type { RawReply } from "../protocol/messages.ts";

/**
 * The frame a follower receives for `raw`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RawReply } from "../protocol/messages.ts";
 * import { onTheWire } from "./replica_wire_testing.ts";
 * const frame = onTheWire(new RawReply('"hw":1', [new Uint8Array([1]), new Uint8Array([2])]));
 * assert.deepEqual(frame, { hw: 1, attachment: new Uint8Array([1, 2]) });
 * ```
 */
export function onTheWire(raw: RawReply): Record<string, unknown> {
  const frame = JSON.parse(`{${raw.fields}}`);
  const bytes = new Uint8Array(raw.attachmentBytes);
  let at = 0;
  for (const chunk of raw.attachment ?? []) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  if (at > 0) frame.attachment = bytes;
  return frame;
}
