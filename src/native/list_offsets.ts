/**
 * Native `list_offsets`: each partition's high watermark, log end and log start.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import type { Reply, Request } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";

/**
 * `list_offsets`: per partition, the high watermark (`hw`), the log end
 * (`end`), the log start (`start`) and the last stable offset (`lso`: where
 * a read_committed reader stops, below every undecided transaction).
 */
export function listOffsets(s: BrokerServices, req: Request): Reply {
  const topic = checkTopicName(req.topic);
  const n = s.partitions.partitionCount(topic);
  if (n === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const hw: Record<string, number> = {};
  const end: Record<string, number> = {};
  const start: Record<string, number> = {};
  const lso: Record<string, number> = {};
  for (let p = 0; p < n; p++) {
    const o = s.partitions.offsets({ topic, partition: p });
    hw[p] = o.highWatermark;
    end[p] = o.logEnd;
    start[p] = o.logStart;
    lso[p] = o.lastStable;
  }
  return { hw, end, start, lso };
}
