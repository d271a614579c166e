/**
 * The Kafka codec's server: int32 size-prefixed frames on the broker's Kafka
 * port, request headers v1/v2 (but for the bare SASL token after a
 * SaslHandshake v0, see sasl.ts), and replies written in request order (Kafka
 * clients match replies by order as well as correlation id) while the
 * requests themselves run concurrently, so a pipelining producer keeps its
 * batches in flight. Each API is a translator over the broker's services
 * (see apis.ts); nothing here knows a broker's internals.
 *
 * @module
 */
import type { ServeCodec } from "../broker/broker.ts";
import { toYakError, YakError } from "../errors.ts";
import {
  type Answer,
  type Codec,
  type ConnectionLimits,
  listen,
  type Outgoing,
  type Pumped,
  type RequestMemory,
  type Split,
} from "../protocol/listener.ts";
import { security } from "../protocol/security.ts";
import { API_BY_KEY, API_VERSIONS_KEY, apiVersionsBody } from "./apis.ts";
import type { Api, KafkaContext, Session } from "./context.ts";
import { MAX_SASL_TOKEN_BYTES, saslBareToken } from "./sasl.ts";
import { Reader, Writer } from "./wire.ts";

/** Options of the Kafka listener. */
export interface KafkaServeOptions {
  host: string;
  port: number;
  /** The host Kafka clients are told to reach this broker by (default: `host`); other brokers learn it too. */
  advertisedHost?: string;
  maxFrameBytes: number;
  /** Defaults to src/config.ts's. */
  limits?: ConnectionLimits;
  /** The process's budget for large requests, shared with its other listeners. */
  memory?: RequestMemory;
}

/**
 * The Kafka codec for a broker, for `Broker.start`'s extra listeners.
 *
 * @example
 * ```ts ignore
 * const broker = await Broker.start(opts, nativeCodec(opts), [kafkaCodec({ host, port: 9192, ... })]);
 * ```
 */
export function kafkaCodec(o: KafkaServeOptions): ServeCodec {
  return (services, onError) => {
    let port = o.port;
    const ctx: KafkaContext = {
      services,
      advertisedHost: o.advertisedHost,
      kafkaPort: () => port,
      onError,
    };
    const listener = listen({
      host: o.host,
      port: o.port,
      maxFrameBytes: o.maxFrameBytes,
      limits: o.limits,
      memory: o.memory,
      onError,
      codec: (pumped) => new KafkaConnection(ctx, pumped),
    });
    port = listener.port;
    // The broker registers this host with the zookeeper, so every broker's Metadata names us by it.
    return {
      host: listener.host,
      port: listener.port,
      ...(o.advertisedHost !== undefined ? { advertisedHost: o.advertisedHost } : {}),
      close: () => listener.close(),
    };
  };
}

/**
 * One Kafka connection: int32 size-prefixed frames, answered in request
 * order. Pipelined requests are decoded one after another; past the slice's
 * budget the pump (and a produce between partitions) yields, so a buffer full
 * of large produce requests does not hold the broker thread in one stretch.
 */
class KafkaConnection implements Codec {
  readonly ordered = true;
  readonly #ctx: KafkaContext;
  readonly #session: Session;
  #firstFrame = true;

  constructor(ctx: KafkaContext, pumped: Pumped) {
    this.#ctx = ctx;
    this.#session = {
      remote: pumped.remote,
      authenticated: security().authToken === undefined,
      saslMechanism: null,
      saslBareTokenNext: false,
      slice: pumped.slice,
      ordered: null,
      closeAfterReply: false,
      fetches: 0,
      caughtUp: new Set(),
    };
  }

  get authenticated(): boolean {
    return this.#session.authenticated;
  }

  /** A failed authentication: its answer (and every one before it) goes out, then the connection ends. */
  get closing(): boolean {
    return this.#session.closeAfterReply;
  }

  /** A produce still putting its batches in line goes first (it yields while it decodes). */
  get gate(): Promise<void> | null {
    return this.#session.ordered;
  }

  split(buf: Uint8Array, at: number, have: number, maxBytes: number): Split {
    if (have - at < 4) return { kind: "more", need: 4 };
    const size = new DataView(buf.buffer, buf.byteOffset + at, 4).getInt32(0);
    // Set by a SaslHandshake v0 handled just before (its handler runs before handle returns).
    const bareToken = this.#session.saslBareTokenNext;
    const minBytes = bareToken ? 0 : 8;
    const limit = bareToken ? Math.min(MAX_SASL_TOKEN_BYTES, maxBytes) : maxBytes;
    if (size < minBytes || size > limit) {
      if (this.#firstFrame && buf[at] === OPEN_BRACE && buf[at + 1] === QUOTE) {
        // '{"' read as a length is over 2 GB: a yak tool that was given this port. Tell it, in its own frames.
        this.#ctx.onError("yak client on the Kafka port", { remote: this.#session.remote });
        return { kind: "refuse", answer: answerNativeClient(this.#ctx, buf.subarray(at, have)) };
      }
      this.#ctx.onError("kafka frame refused", { remote: this.#session.remote, size, maxFrameBytes: limit });
      return { kind: "refuse", answer: null }; // the stream cannot be trusted past a bad length
    }
    this.#firstFrame = false;
    if (have - at - 4 < size) return { kind: "more", need: size + 4 };
    return { kind: "frame", start: at + 4, end: at + 4 + size, next: at + 4 + size };
  }

  handle(body: Uint8Array): Answer {
    const bareToken = this.#session.saslBareTokenNext;
    return bareToken ? saslBareToken(this.#ctx, this.#session, body) : dispatch(this.#ctx, this.#session, body);
  }

  closed(): void {}
}

const OPEN_BRACE = 0x7b;
const QUOTE = 0x22;

/**
 * The answer to a yak tool's first request (a JSON line, see protocol/frame.ts):
 * a native error frame naming this broker's native port, so the tool stops
 * at once with advice instead of retrying a port that never answers.
 */
function answerNativeClient(ctx: KafkaContext, bytes: Uint8Array): string | null {
  const id = Number(/^\{[^\n]*?"id":(\d+)/.exec(new TextDecoder().decode(bytes.subarray(0, 4096)))?.[1]);
  if (!Number.isSafeInteger(id)) return null;
  const me = ctx.services.opts.id;
  const self = ctx.services.view().brokers.find((b) => b.id === me);
  const { host, port } = self ?? ctx.services.opts;
  const message = `port ${ctx.kafkaPort()} is broker ${me}'s Kafka port, for Kafka clients (--bootstrap-server); ` +
    `yak's own tools use its native port: ${port === 0 ? "see 'yak status'" : `--bootstrap ${host}:${port}`}`;
  // The native address too, so a tool given Kafka's addresses (kafka-topics.sh's --bootstrap-server) can go there.
  const native = port === 0 ? {} : { nativeHost: host, nativePort: port };
  return `${JSON.stringify({ id, ok: false, code: "INVALID_ARGUMENT", message, kafkaPort: true, ...native })}\n`;
}

/** Parses a request header and runs the API; "close" when the stream must end. */
function dispatch(ctx: KafkaContext, session: Session, frame: Uint8Array): Promise<Outgoing | null> | "close" {
  const r = new Reader(frame, false);
  let apiKey: number, version: number, correlationId: number, clientId: string | null;
  try {
    apiKey = r.int16();
    version = r.int16();
    correlationId = r.int32();
    clientId = r.nullableString();
  } catch {
    ctx.onError("kafka request header malformed", { remote: session.remote });
    return "close";
  }
  const api = API_BY_KEY.get(apiKey);
  if (apiKey === API_VERSIONS_KEY && (api === undefined || version > api.max)) {
    // A newer client than us: answer in v0's layout with UNSUPPORTED_VERSION and our table, so it can pick.
    const w = replyWriter(correlationId, false, false);
    apiVersionsBody(w, 0, 35);
    return Promise.resolve(finishReply(w));
  }
  if (api === undefined || version < api.min || version > api.max) {
    ctx.onError("kafka request not supported", { remote: session.remote, apiKey, version });
    return "close";
  }
  if (!session.authenticated && !api.beforeAuth) {
    ctx.onError("unauthenticated kafka request refused", { remote: session.remote, apiKey });
    return "close";
  }
  const flexible = version >= api.flexibleFrom;
  r.flexible = flexible;
  if (flexible) {
    try {
      r.tags();
    } catch {
      return "close";
    }
  }
  return runApi(ctx, session, api, version, r, correlationId, clientId ?? "", flexible);
}

async function runApi(
  ctx: KafkaContext,
  session: Session,
  api: Api,
  version: number,
  r: Reader,
  correlationId: number,
  clientId: string,
  flexible: boolean,
): Promise<Outgoing | null> {
  // ApiVersions answers with response header v0 even in its flexible versions (KIP-511).
  const w = replyWriter(correlationId, flexible, flexible && api.key !== API_VERSIONS_KEY);
  try {
    // No await before handle: SaslHandshake v0 must have marked the session before the read loop takes the next frame.
    const result = await api.handle(ctx, { version, clientId, session, body: r }, w);
    if (result === "noReply") return null;
    w.tags(); // a flexible body ends in its (empty) tagged fields, as every flexible struct does
  } catch (err) {
    const e = toYakError(err);
    // A bug of ours (not a YakError) is logged with where it happened.
    const where = err instanceof YakError ? {} : { stack: String((err as Error)?.stack ?? "").split("\n").slice(1, 4) };
    ctx.onError("kafka request failed", { remote: session.remote, api: api.name, version, error: e.message, ...where });
    throw e;
  }
  return finishReply(w);
}

/** A writer that starts with the reply's size (patched by finishReply) and header. */
function replyWriter(correlationId: number, flexible: boolean, flexibleHeader: boolean): Writer {
  const w = new Writer(false);
  w.int32(0).int32(correlationId);
  if (flexibleHeader) w.uvarint(0); // no tagged fields
  w.flexible = flexible;
  return w;
}

/** The reply with its size patched in: one buffer, or parts when it carries large pieces (a fetch's batches). */
function finishReply(w: Writer): Outgoing {
  const parts = w.finishParts();
  new DataView(parts[0].buffer, parts[0].byteOffset, 4).setInt32(0, w.length - 4);
  return parts.length === 1 ? parts[0] : parts;
}
