/**
 * DescribeCluster (API 60): the brokers, the cluster id and the controller,
 * as Metadata names them (yak's leader is the controller: it takes every
 * topic change). Admin clients that know the API ask it instead of Metadata.
 *
 * @module
 */
import { AUTHORIZED_OPERATIONS } from "./authorized_operations.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA_CLUSTER_ID, kafkaBrokers } from "./metadata.ts";
import type { Writer } from "./wire.ts";

/** KIP-919's endpoint types: yak's brokers are brokers, and yak has no controller endpoints. */
const BROKERS = 1;
const CONTROLLERS = 2;
const MISMATCHED_ENDPOINT_TYPE = 114;
const UNSUPPORTED_ENDPOINT_TYPE = 115;

/** Handles DescribeCluster v0-1 (flexible; v1 the endpoint type, KIP-919). */
export function describeCluster(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const includeOperations = r.bool();
  const endpointType = v >= 1 ? r.int8() : BROKERS;
  const { brokers, leaderId } = kafkaBrokers(ctx);
  let error = 0;
  let message: string | null = null;
  if (endpointType === CONTROLLERS) {
    error = MISMATCHED_ENDPOINT_TYPE;
    message = "yak has no controller endpoints: its leader broker is the controller";
  } else if (endpointType !== BROKERS) {
    error = UNSUPPORTED_ENDPOINT_TYPE;
    message = `endpoint type ${endpointType} is not supported`;
  }
  w.int32(0).int16(error).nullableString(message);
  if (v >= 1) w.int8(endpointType);
  w.string(KAFKA_CLUSTER_ID).int32(error === 0 ? leaderId : -1);
  w.array(error === 0 ? brokers : [], (w, b) => w.int32(b.nodeId).string(b.host).int32(b.port).nullableString(null));
  // Asked: every operation on the cluster (yak has no ACLs; see authorized_operations.ts).
  w.int32(includeOperations && error === 0 ? AUTHORIZED_OPERATIONS.cluster : AUTHORIZED_OPERATIONS.notAsked);
}
