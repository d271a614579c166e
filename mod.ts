/**
 * yak as a library: a whole cluster for tests ({@link startCluster}), the
 * producer and consumer the CLI uses, the broker and zookeeper, and the
 * partition log underneath.
 *
 * @example
 * ```ts ignore
 * import { Producer } from "./mod.ts";
 * const producer = await Producer.open({ bootstrap: {}, topic: "events" });
 * producer.add(null, "hello");
 * await producer.flush();
 * await producer.close();
 * ```
 *
 * @module
 */
export {
  type EmbeddedCluster,
  type EmbeddedTopic,
  startCluster,
  type StartClusterOptions,
} from "./src/embed/start_cluster.ts";
export { type Acknowledgement, Producer, type ProducerOptions } from "./src/client/producer.ts";
export { Consumer, type ConsumerOptions, type PartitionRecords, type StartOffset } from "./src/client/consumer.ts";
export { type Bootstrap, findLeader } from "./src/client/discovery.ts";
export { murmur2, partitionForKey } from "./src/client/murmur2.ts";
export { Broker, type ServeCodec } from "./src/broker/broker.ts";
export { nativeCodec } from "./src/native/handlers.ts";
export { Zookeeper, type ZookeeperOptions } from "./src/zookeeper/zookeeper.ts";
export { PartitionLog } from "./src/log/partition_log.ts";
export { type ErrorCode, YakError } from "./src/errors.ts";
export { DEFAULTS } from "./src/config.ts";
export { YAK_VERSION } from "./src/version.ts";
