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
import { TimeSlice } from "../clock.ts";
import { DEFAULTS } from "../config.ts";
import { toYakError, YakError } from "../errors.ts";
import { listen } from "../protocol/listener.ts";
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
  maxConnections: number;
}

/** Requests of one connection running at once; reading pauses beyond it. */
const MAX_IN_FLIGHT = 64;
/** Reply bytes of one connection not yet written; reading pauses beyond it (a client that never reads). */
const MAX_UNWRITTEN_BYTES = 8 * 1024 * 1024;

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
      maxConnections: o.maxConnections,
      onError,
      onConnection: (conn, remote, full) => full ? Promise.resolve() : serveConnection(ctx, o, conn, remote),
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

async function serveConnection(
  ctx: KafkaContext,
  o: KafkaServeOptions,
  conn: Deno.Conn,
  remote: string,
): Promise<void> {
  // Pipelined requests are decoded one after another; past the slice's budget the loop (and a produce
  // between partitions) yields, so a buffer full of large produce requests does not hold the broker thread
  // in one stretch.
  const slice = new TimeSlice(DEFAULTS.requestSliceMs);
  const session: Session = {
    remote,
    authenticated: security().authToken === undefined,
    saslMechanism: null,
    saslBareTokenNext: false,
    slice,
    ordered: null,
    closeAfterReply: false,
  };
  let open = true;
  let inFlight = 0;
  let unwritten = 0;
  let wake: (() => void) | null = null;
  const wakeReader = () => {
    wake?.();
    wake = null;
  };
  // Replies leave in request order: each waits for the one before it.
  let tail: Promise<void> = Promise.resolve();
  const writeAll = async (bytes: Uint8Array) => {
    let at = 0;
    while (at < bytes.length) at += await conn.write(bytes.subarray(at));
  };
  const enqueue = (reply: Promise<Uint8Array | null>) => {
    inFlight++;
    // Settled at once, so a request that fails while an earlier one still waits
    // is never an unhandled rejection (that would end the process).
    const settled = reply.then((bytes) => ({ bytes, err: null }), (err: unknown) => ({ bytes: null, err }));
    tail = tail.then(async () => {
      let bytes: Uint8Array | null = null;
      try {
        const outcome = await settled;
        if (outcome.err !== null) throw outcome.err;
        bytes = outcome.bytes;
        if (bytes && open) {
          unwritten += bytes.length;
          await writeAll(bytes);
        }
      } catch {
        // The peer is gone, or a request could not be answered: the client reconnects.
        open = false;
        try {
          conn.close();
        } catch { /* already closed */ }
      } finally {
        if (bytes) unwritten -= bytes.length;
        inFlight--;
        wakeReader();
      }
    });
  };

  let buf = new Uint8Array(64 * 1024);
  let have = 0;
  let firstFrame = true;
  try {
    while (open) {
      // Frames already in the buffer.
      let at = 0;
      while (have - at >= 4) {
        // A produce still putting its batches in line goes first (it yields while it decodes).
        if (session.ordered) await session.ordered;
        await slice.pause();
        const size = new DataView(buf.buffer, buf.byteOffset + at, 4).getInt32(0);
        // Set by a SaslHandshake v0 dispatched just before (its handler runs before dispatch returns).
        const bareToken = session.saslBareTokenNext;
        const minBytes = bareToken ? 0 : 8;
        const maxBytes = bareToken ? MAX_SASL_TOKEN_BYTES : o.maxFrameBytes;
        if (size < minBytes || size > maxBytes) {
          if (firstFrame && buf[at] === OPEN_BRACE && buf[at + 1] === QUOTE) {
            // '{"' read as a length is over 2 GB: a yak tool that was given this port. Tell it, in its own frames.
            ctx.onError("yak client on the Kafka port", { remote });
            await answerNativeClient(ctx, buf.subarray(at, have), writeAll);
            return;
          }
          ctx.onError("kafka frame refused", { remote, size, maxFrameBytes: maxBytes });
          return; // the stream cannot be trusted past a bad length
        }
        firstFrame = false;
        if (have - at - 4 < size) break;
        const frame = buf.slice(at + 4, at + 4 + size);
        at += 4 + size;
        const outcome = bareToken ? saslBareToken(ctx, session, frame) : dispatch(ctx, session, frame);
        if (outcome === "close") return;
        // A bare token's reply queues behind the replies before it, as any reply does.
        enqueue(outcome instanceof Uint8Array ? Promise.resolve(outcome) : outcome);
        if (session.closeAfterReply) {
          // A failed authentication: its answer (and every one before it) goes out, then the connection ends.
          await outcome;
          await tail;
          return;
        }
        while (open && (inFlight >= MAX_IN_FLIGHT || unwritten > MAX_UNWRITTEN_BYTES)) {
          await new Promise<void>((r) => (wake = r));
        }
      }
      if (at > 0) {
        buf.copyWithin(0, at, have);
        have -= at;
      }
      if (have === buf.length) {
        // A frame bigger than the buffer: grow to its size (already checked against the limit).
        const size = new DataView(buf.buffer, buf.byteOffset, 4).getInt32(0);
        const next = new Uint8Array(Math.max(buf.length * 2, size + 4));
        next.set(buf.subarray(0, have));
        buf = next;
      }
      const n = await conn.read(buf.subarray(have));
      if (n === null) break;
      // No new budget here: a read of bytes already waiting resolves without a turn of the event loop
      // (timers wait), so one request per read with a fresh budget each never yielded (396 ms stalls).
      have += n;
    }
  } catch (err) {
    const e = toYakError(err);
    if (e.code !== "CONNECTION") ctx.onError("kafka connection failed", { remote, error: e.message });
  } finally {
    open = false;
    await tail.catch(() => {});
  }
}

const OPEN_BRACE = 0x7b;
const QUOTE = 0x22;

/**
 * Answers a yak tool's first request (a JSON line, see protocol/frame.ts)
 * with a native error frame naming this broker's native port, so the tool
 * stops at once with advice instead of retrying a port that never answers.
 */
async function answerNativeClient(
  ctx: KafkaContext,
  bytes: Uint8Array,
  writeAll: (bytes: Uint8Array) => Promise<void>,
): Promise<void> {
  const id = Number(/^\{[^\n]*?"id":(\d+)/.exec(new TextDecoder().decode(bytes.subarray(0, 4096)))?.[1]);
  if (!Number.isSafeInteger(id)) return;
  const me = ctx.services.opts.id;
  const self = ctx.services.view().brokers.find((b) => b.id === me);
  const { host, port } = self ?? ctx.services.opts;
  const message = `port ${ctx.kafkaPort()} is broker ${me}'s Kafka port, for Kafka clients (--bootstrap-server); ` +
    `yak's own tools use its native port: ${port === 0 ? "see 'yak status'" : `--bootstrap ${host}:${port}`}`;
  try {
    await writeAll(
      new TextEncoder().encode(
        `${JSON.stringify({ id, ok: false, code: "INVALID_ARGUMENT", message, kafkaPort: true })}\n`,
      ),
    );
  } catch { /* the tool is gone already */ }
}

/** Parses a request header and runs the API; "close" when the stream must end. */
function dispatch(ctx: KafkaContext, session: Session, frame: Uint8Array): Promise<Uint8Array | null> | "close" {
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
): Promise<Uint8Array | null> {
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

function finishReply(w: Writer): Uint8Array {
  const out = w.finish();
  new DataView(out.buffer, out.byteOffset, 4).setInt32(0, out.length - 4);
  return out;
}
