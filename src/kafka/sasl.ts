/**
 * SASL/PLAIN for the Kafka listener when the broker has an auth token: the
 * token is the password (any user name), checked in constant time, as the
 * native protocol's `auth` frame checks it. Both flows Kafka brokers speak:
 *
 * - SaslHandshake v1, then SaslAuthenticate carrying the PLAIN token, with a
 *   Kafka error code in its reply (librdkafka, Java, KafkaJS).
 * - SaslHandshake v0, then the PLAIN token as a bare size-prefixed frame
 *   with no request header (the flow before KIP-152, kafka-python 2.0).
 *   The reply is an empty size-prefixed frame on success; a wrong token
 *   closes the connection, since this flow has no way to carry an error.
 *
 * Before it succeeds a connection may send nothing but ApiVersions, the two
 * SASL APIs and, after a v0 handshake, the one bare token.
 *
 * @module
 */
import { DEFAULTS } from "../config.ts";
import { LogWindow, peerAddress } from "../protocol/log_window.ts";
import { security, tokensEqual } from "../protocol/security.ts";
import type { ApiRequest, KafkaContext, Session } from "./context.ts";
import { KAFKA } from "./errors.ts";
import type { Writer } from "./wire.ts";

/**
 * The largest bare PLAIN token after a SaslHandshake v0. `authzid NUL user NUL
 * password` is a few dozen bytes; this only stops a client that is not doing
 * SASL from making the broker wait for a frame as big as a produce request.
 */
export const MAX_SASL_TOKEN_BYTES = 64 * 1024;

/**
 * Handles SaslHandshake v0-1: PLAIN only. After a successful v0 the
 * connection's next frame is the bare token (see {@link saslBareToken}).
 */
export function saslHandshake(_ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const mechanism = req.body.string();
  const ok = mechanism === "PLAIN";
  req.session.saslMechanism = ok ? mechanism : null;
  req.session.saslBareTokenNext = ok && req.version === 0;
  w.int16(ok ? 0 : KAFKA.UNSUPPORTED_SASL_MECHANISM).stringArray(["PLAIN"]);
}

/**
 * Handles SaslAuthenticate v0-1: `authzid NUL user NUL password`, the
 * password being the auth token. A wrong one is answered after a delay and
 * closes the connection, also on a connection that had authenticated before
 * (a failed re-authentication): each guess costs a connection and a wait.
 */
export async function saslAuthenticate(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const bytes = req.body.bytes();
  let error = 0;
  let message: string | null = null;
  if (req.session.saslMechanism !== "PLAIN" || req.session.saslBareTokenNext) {
    error = KAFKA.ILLEGAL_SASL_STATE;
    message = "send SaslHandshake v1 with PLAIN first";
  } else if (plainTokenValid(bytes)) {
    req.session.authenticated = true;
  } else {
    error = KAFKA.SASL_AUTHENTICATION_FAILED;
    message = "authentication failed: the password must be the cluster's auth token";
    req.session.authenticated = false;
    req.session.closeAfterReply = true;
    noteFailure(ctx, req.session.remote);
    await new Promise((r) => setTimeout(r, DEFAULTS.authFailureDelayMs));
  }
  w.int16(error).nullableString(message).nullableBytes(new Uint8Array(0));
  if (req.version >= 1) w.int64(0);
}

/**
 * Checks the bare PLAIN token that follows a SaslHandshake v0 (the frame's
 * bytes, without its size). Returns the reply frame, an empty one, or
 * "close" when the token is wrong: the client sees the connection end.
 *
 * @example
 * ```ts ignore
 * const reply = saslBareToken(ctx, session, new TextEncoder().encode("\0any\0TOKEN"));
 * ```
 */
export function saslBareToken(ctx: KafkaContext, session: Session, token: Uint8Array): Uint8Array | "close" {
  // Only dispatch, right after a v0 handshake succeeded, brings a frame here.
  if (!session.saslBareTokenNext || session.saslMechanism !== "PLAIN") {
    throw new Error("a bare SASL token without a SaslHandshake v0 for PLAIN");
  }
  session.saslBareTokenNext = false;
  if (!plainTokenValid(token)) {
    noteFailure(ctx, session.remote);
    return "close";
  }
  session.authenticated = true;
  return new Uint8Array(4); // size 0: no bytes follow
}

/** Per listener, per peer address: failures not logged yet in the current window, and when it started. */
const failures = new WeakMap<KafkaContext, LogWindow>();

/**
 * Logs a failed authentication (never what was sent: it may be a mistyped
 * token): the first from an address at once, the rest as one count per
 * window, so a flood of guesses cannot flood the log.
 */
function noteFailure(ctx: KafkaContext, remote: string): void {
  let window = failures.get(ctx);
  if (!window) failures.set(ctx, window = new LogWindow(DEFAULTS.authFailureLogWindowMs, ctx.onError));
  window.note(peerAddress(remote), "kafka authentication failed", { remote });
}

/** `authzid NUL user NUL password`, the password being the auth token (any when the broker has none). */
function plainTokenValid(bytes: Uint8Array): boolean {
  const token = security().authToken;
  const parts = new TextDecoder().decode(bytes).split("\u0000");
  return parts.length === 3 && (token === undefined || tokensEqual(parts[2], token));
}
