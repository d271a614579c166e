/**
 * SASL/PLAIN for the Kafka listener when the broker has an auth token: the
 * token is the password (any user name), checked in constant time, as the
 * native protocol's `auth` frame checks it. Only SaslHandshake v1 with
 * SaslAuthenticate is spoken (what current clients use); before it succeeds
 * a connection may send nothing but ApiVersions and these two.
 *
 * @module
 */
import { security, tokensEqual } from "../protocol/security.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA } from "./errors.ts";
import type { Writer } from "./wire.ts";

/** Handles SaslHandshake v1: PLAIN only. */
export function saslHandshake(_ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const mechanism = req.body.string();
  const ok = mechanism === "PLAIN";
  req.session.saslMechanism = ok ? mechanism : null;
  w.int16(ok ? 0 : KAFKA.UNSUPPORTED_SASL_MECHANISM).stringArray(["PLAIN"]);
}

/** Handles SaslAuthenticate v0-1: `authzid NUL user NUL password`, the password being the auth token. */
export function saslAuthenticate(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const bytes = req.body.bytes();
  const token = security().authToken;
  let error = 0;
  let message: string | null = null;
  if (req.session.saslMechanism !== "PLAIN") {
    error = KAFKA.ILLEGAL_SASL_STATE;
    message = "send SaslHandshake with PLAIN first";
  } else {
    const parts = new TextDecoder().decode(bytes).split("\u0000");
    if (parts.length === 3 && (token === undefined || tokensEqual(parts[2], token))) {
      req.session.authenticated = true;
    } else {
      error = KAFKA.SASL_AUTHENTICATION_FAILED;
      message = "authentication failed: the password must be the cluster's auth token";
      // Never log what was sent: it may be a mistyped token.
      ctx.onError("kafka authentication failed", { remote: req.session.remote });
    }
  }
  w.int16(error).nullableString(message).nullableBytes(new Uint8Array(0));
  if (req.version >= 1) w.int64(0);
}
