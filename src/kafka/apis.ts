/**
 * The Kafka APIs yak speaks, with their versions: the table ApiVersions
 * advertises and the server dispatches on. Versions were chosen from what
 * the real clients here ask for when offered Kafka's full ranges (see
 * docs/KAFKA.md); the flexible (KIP-482) versions start where Kafka's
 * message schemas say they do.
 *
 * @module
 */
import type { Api } from "./context.ts";
import { createPartitions, createTopics, deleteTopics } from "./admin.ts";
import { describeCluster } from "./describe_cluster.ts";
import { deleteRecords, describeLogDirs } from "./log_admin.ts";
import { offsetForLeaderEpoch } from "./offset_for_leader_epoch.ts";
import { alterConfigs, describeConfigs, incrementalAlterConfigs } from "./configs.ts";
import { fetch } from "./fetch.ts";
import {
  describeGroups,
  findCoordinator,
  heartbeat,
  joinGroup,
  leaveGroup,
  listGroups,
  offsetCommit,
  offsetFetch,
  syncGroup,
} from "./groups.ts";
import { deleteGroups, offsetDelete } from "./group_admin.ts";
import { listOffsets } from "./list_offsets.ts";
import { metadata } from "./metadata.ts";
import { initProducerId, produce } from "./produce.ts";
import { saslAuthenticate, saslHandshake } from "./sasl.ts";
import {
  addOffsetsToTxn,
  addPartitionsToTxn,
  describeTransactions,
  endTxn,
  listTransactions,
  txnOffsetCommit,
} from "./transactions.ts";
import type { Writer } from "./wire.ts";

/** ApiVersions' key: answered with a v0 header, and in v0 layout when the client's version is too new. */
export const API_VERSIONS_KEY = 18;

const NONE = Infinity;

/** Every API yak answers, by key. */
export const APIS: readonly Api[] = [
  // Produce 0-2 stay advertised (librdkafka turns compression off when Produce starts above 0);
  // a request in them gets UNSUPPORTED_VERSION, as they carry message formats yak does not store.
  { key: 0, name: "Produce", min: 0, max: 8, flexibleFrom: NONE, handle: produce },
  { key: 1, name: "Fetch", min: 0, max: 12, flexibleFrom: 12, handle: fetch },
  { key: 2, name: "ListOffsets", min: 0, max: 8, flexibleFrom: 6, handle: listOffsets },
  { key: 3, name: "Metadata", min: 0, max: 12, flexibleFrom: 9, handle: metadata },
  { key: 8, name: "OffsetCommit", min: 0, max: 9, flexibleFrom: 8, handle: offsetCommit },
  { key: 9, name: "OffsetFetch", min: 0, max: 9, flexibleFrom: 6, handle: offsetFetch },
  { key: 10, name: "FindCoordinator", min: 0, max: 4, flexibleFrom: 3, handle: findCoordinator },
  { key: 11, name: "JoinGroup", min: 0, max: 9, flexibleFrom: 6, handle: joinGroup },
  { key: 12, name: "Heartbeat", min: 0, max: 4, flexibleFrom: 4, handle: heartbeat },
  { key: 13, name: "LeaveGroup", min: 0, max: 5, flexibleFrom: 4, handle: leaveGroup },
  { key: 14, name: "SyncGroup", min: 0, max: 5, flexibleFrom: 4, handle: syncGroup },
  { key: 15, name: "DescribeGroups", min: 0, max: 5, flexibleFrom: 5, handle: describeGroups },
  { key: 16, name: "ListGroups", min: 0, max: 4, flexibleFrom: 3, handle: listGroups },
  { key: 17, name: "SaslHandshake", min: 0, max: 1, flexibleFrom: NONE, beforeAuth: true, handle: saslHandshake },
  {
    key: API_VERSIONS_KEY,
    name: "ApiVersions",
    min: 0,
    max: 3,
    flexibleFrom: 3,
    beforeAuth: true,
    handle: (_ctx, req, w) => apiVersionsBody(w, req.version, 0),
  },
  { key: 19, name: "CreateTopics", min: 0, max: 7, flexibleFrom: 5, handle: createTopics },
  { key: 20, name: "DeleteTopics", min: 0, max: 6, flexibleFrom: 4, handle: deleteTopics },
  { key: 21, name: "DeleteRecords", min: 0, max: 2, flexibleFrom: 2, handle: deleteRecords },
  { key: 22, name: "InitProducerId", min: 0, max: 4, flexibleFrom: 2, handle: initProducerId },
  { key: 23, name: "OffsetForLeaderEpoch", min: 0, max: 4, flexibleFrom: 4, handle: offsetForLeaderEpoch },
  { key: 24, name: "AddPartitionsToTxn", min: 0, max: 3, flexibleFrom: 3, handle: addPartitionsToTxn },
  { key: 25, name: "AddOffsetsToTxn", min: 0, max: 3, flexibleFrom: 3, handle: addOffsetsToTxn },
  { key: 26, name: "EndTxn", min: 0, max: 3, flexibleFrom: 3, handle: endTxn },
  { key: 28, name: "TxnOffsetCommit", min: 0, max: 3, flexibleFrom: 3, handle: txnOffsetCommit },
  { key: 32, name: "DescribeConfigs", min: 0, max: 4, flexibleFrom: 4, handle: describeConfigs },
  { key: 33, name: "AlterConfigs", min: 0, max: 2, flexibleFrom: 2, handle: alterConfigs },
  { key: 35, name: "DescribeLogDirs", min: 0, max: 4, flexibleFrom: 2, handle: describeLogDirs },
  { key: 36, name: "SaslAuthenticate", min: 0, max: 1, flexibleFrom: NONE, beforeAuth: true, handle: saslAuthenticate },
  { key: 37, name: "CreatePartitions", min: 0, max: 3, flexibleFrom: 2, handle: createPartitions },
  { key: 42, name: "DeleteGroups", min: 0, max: 2, flexibleFrom: 2, handle: deleteGroups },
  { key: 44, name: "IncrementalAlterConfigs", min: 0, max: 1, flexibleFrom: 1, handle: incrementalAlterConfigs },
  { key: 47, name: "OffsetDelete", min: 0, max: 0, flexibleFrom: NONE, handle: offsetDelete },
  { key: 60, name: "DescribeCluster", min: 0, max: 1, flexibleFrom: 0, handle: describeCluster },
  { key: 65, name: "DescribeTransactions", min: 0, max: 0, flexibleFrom: 0, handle: describeTransactions },
  { key: 66, name: "ListTransactions", min: 0, max: 0, flexibleFrom: 0, handle: listTransactions },
];

/** {@link APIS} by key. */
export const API_BY_KEY: ReadonlyMap<number, Api> = new Map(APIS.map((a) => [a.key, a]));

/**
 * Writes the ApiVersions response body: an error code, the table, and (v1+)
 * the throttle time (the server ends a flexible body with its tagged fields). The client's software name and version (v3+) are not
 * needed, so the request body is not read.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { APIS, apiVersionsBody } from "./apis.ts";
 * import { Reader, Writer } from "./wire.ts";
 * const w = new Writer(false);
 * apiVersionsBody(w, 0, 0);
 * const body = new Reader(w.finish(), false);
 * assert.equal(body.int16(), 0); // the error code
 * assert.equal(body.int32(), APIS.length); // then key, min and max of each api
 * ```
 */
export function apiVersionsBody(w: Writer, version: number, errorCode: number): void {
  w.int16(errorCode);
  w.array(APIS, (w, a) => w.int16(a.key).int16(a.min).int16(a.max));
  if (version >= 1) w.int32(0);
}
