/**
 * Native `list_offsets`: each partition's high watermark, log end and log
 * start, and with `timestamp` the first offset at or after that time.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { YakError } from "../errors.ts";
import { offsetForTime } from "../kafka/list_offsets.ts";
import { int, optInt, type Reply, type Request } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";

/**
 * `list_offsets`: per partition, the high watermark (`hw`), the log end
 * (`end`), the log start (`start`) and the last stable offset (`lso`: where
 * a read_committed reader stops, below every undecided transaction). With
 * `timestamp` (ms since the epoch) also `at`: the first offset whose record's
 * time is at or after it, or the high watermark when none is (the scan is
 * ListOffsets', bounded the same way); only for `partition` when given.
 */
export async function listOffsets(s: BrokerServices, req: Request): Promise<Reply> {
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
  if (req.timestamp === undefined) return { hw, end, start, lso };
  const timestamp = int(req, "timestamp", 0);
  const only = optInt(req, "partition", -1, 0, n - 1);
  const at: Record<string, number> = {};
  for (let p = 0; p < n; p++) {
    if (only !== -1 && p !== only) continue;
    const found = await offsetForTime(s, { topic, partition: p }, timestamp);
    at[p] = found.offset === -1 ? hw[p] : found.offset;
  }
  return { hw, end, start, lso, at };
}
