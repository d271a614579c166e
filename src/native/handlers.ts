/**
 * The native protocol's requests, translated: each handler checks a decoded
 * JSON request's fields, calls the broker's typed services, and shapes the
 * reply. No broker logic lives here (ordering, replication, idempotence and
 * offsets are the services'), so the Kafka codec reaches the same behaviour.
 *
 * This file is the table of request types; the handlers are in one file per
 * family, as src/kafka/'s are: produce.ts, fetch.ts, list_offsets.ts,
 * metadata.ts, admin.ts (topics), groups.ts, transactions.ts, clients.ts (registration) and
 * replication.ts (the leader's side; the contract is src/broker/replica_protocol.ts).
 *
 * @module
 */
import type { ServeCodec } from "../broker/broker.ts";
import type { BrokerOptions } from "../broker/context.ts";
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import type { RequestMemory } from "../protocol/listener.ts";
import type { Reply, Request } from "../protocol/messages.ts";
import { serve, type Session } from "../protocol/server.ts";
import { alterTopic, createTopic, deleteRecords, deleteTopic, describeConfigs } from "./admin.ts";
import { deregister, register } from "./clients.ts";
import { fetch } from "./fetch.ts";
import {
  commit,
  committed,
  deleteGroup,
  deleteOffsets,
  describeGroup,
  heartbeat,
  joinGroup,
  leaveGroup,
  listGroups,
  resetOffsets,
  syncGroup,
} from "./groups.ts";
import { listOffsets } from "./list_offsets.ts";
import { metadata } from "./metadata.ts";
import { initProducer, produce } from "./produce.ts";
import { epochEnd, replicate } from "./replication.ts";
import { addPartitionsToTxn, endTxn, initTransactionalProducer, transactions } from "./transactions.ts";

/** One request type's handler: it may throw (a YakError becomes the error reply). */
type Handler = (s: BrokerServices, req: Request, session: Session) => Promise<Reply> | Reply;

/** Every request type a broker answers (a Map: a type such as `__proto__` or `toString` is simply unknown). */
const HANDLERS: ReadonlyMap<string, Handler> = new Map<string, Handler>([
  ["produce", produce],
  [
    "init_producer",
    (s, req) => req.transactionalId === undefined ? initProducer(s) : initTransactionalProducer(s, req),
  ],
  ["add_partitions_to_txn", addPartitionsToTxn],
  ["end_txn", endTxn],
  ["transactions", transactions],
  ["fetch", fetch],
  ["metadata", metadata],
  ["list_offsets", listOffsets],
  ["create_topic", createTopic],
  ["alter_topic", alterTopic],
  ["delete_topic", deleteTopic],
  ["delete_records", deleteRecords],
  ["describe_configs", describeConfigs],
  ["commit", commit],
  ["committed", committed],
  ["reset_offsets", resetOffsets],
  ["join_group", joinGroup],
  ["sync_group", syncGroup],
  ["heartbeat", heartbeat],
  ["leave_group", leaveGroup],
  ["list_groups", listGroups],
  ["describe_group", describeGroup],
  ["delete_group", deleteGroup],
  ["delete_offsets", deleteOffsets],
  ["register", register],
  ["deregister", deregister],
  ["status", (s) => s.status()],
  ["replicate", replicate],
  ["epoch_end", epochEnd],
]);

/**
 * Builds the request handler of a broker's native port: client requests and
 * the leader side of replication.
 *
 * @example
 * ```ts ignore
 * const handle = nativeHandler(broker.services);
 * const reply = await handle({ id: 1, type: "metadata" }, session);
 * ```
 */
export function nativeHandler(
  s: BrokerServices,
): (req: Request, session: Session) => Promise<Reply> | Reply {
  return (req, session) => {
    const handle = HANDLERS.get(req.type);
    if (handle === undefined) throw new YakError("UNKNOWN_REQUEST", `brokers do not handle '${req.type}'`);
    return handle(s, req, session);
  };
}

/**
 * The native codec for a broker: newline-JSON frames on `host:port`, each
 * request handled by {@link nativeHandler}.
 *
 * @example
 * ```ts ignore
 * const broker = await Broker.start(opts, nativeCodec(opts));
 * ```
 */
export function nativeCodec(opts: BrokerOptions, memory?: RequestMemory): ServeCodec {
  return (services, onError) =>
    serve({
      host: opts.host,
      port: opts.port,
      maxFrameBytes: opts.maxFrameBytes,
      limits: opts.connections,
      memory,
      handler: nativeHandler(services),
      onError,
    });
}
