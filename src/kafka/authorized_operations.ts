/**
 * Kafka's "authorized operations" bit fields (KIP-430), for the APIs that
 * answer them when asked (Metadata, DescribeGroups). yak has no ACLs: a
 * client that may connect (authenticated, when the cluster has a token) may
 * do everything, so the answer is every operation Kafka defines for the
 * resource, as a Kafka broker without an authorizer answers. The bits are
 * Kafka's AclOperation codes: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7,
 * DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
 * IDEMPOTENT_WRITE 12.
 *
 * @module
 */

const bits = (...ops: number[]) => ops.reduce((field, op) => field | (1 << op), 0);

/**
 * The operations on each kind of resource, and what is answered when the
 * request did not ask (Kafka's INT32_MIN).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AUTHORIZED_OPERATIONS } from "./authorized_operations.ts";
 * assert.equal(AUTHORIZED_OPERATIONS.group, 0b1_0100_1000); // READ, DELETE, DESCRIBE
 * ```
 */
export const AUTHORIZED_OPERATIONS = {
  topic: bits(3, 4, 5, 6, 7, 8, 10, 11),
  group: bits(3, 6, 8),
  cluster: bits(5, 7, 8, 9, 10, 11, 12),
  notAsked: -2147483648,
} as const;
