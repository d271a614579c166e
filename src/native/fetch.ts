/**
 * Native `fetch`: a consumer's long poll over one topic's partitions (`offsets`)
 * or several topics' (`topics`), answered with the stored lines as they are,
 * after the frame.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import type { PartitionOffsets, ReadSpec } from "../broker/partition_ops.ts";
import type { ReadResult } from "../log/partition_log.ts";
import { YakError } from "../errors.ts";
import type { AbortedRange } from "../log/record.ts";
import { offsetMap, optInt, RawReply, type Reply, type Request } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";

/** Topics one consumer fetch may name (`topics`): each adds its partitions to the one long poll. */
const MAX_FETCH_TOPICS = 1000;

/**
 * `ids` of a fetch: topic -> the id (incarnation) the consumer's offsets are
 * in, for the topics it names; null when it names none.
 */
function askedIds(req: Request): Record<string, string> | null {
  const ids = req.ids;
  if (ids === undefined || ids === null) return null;
  if (
    typeof ids !== "object" || Array.isArray(ids) ||
    Object.values(ids).some((v) => typeof v !== "string" || v.length > 64)
  ) {
    throw new YakError("INVALID_REQUEST", "'ids' must be an object of topic -> topic id");
  }
  return ids as Record<string, string>;
}

/** What a fetch of several topics reads: its specs, each topic's partitions, and the topics it cannot read here. */
function planTopics(s: BrokerServices, req: Request, otherIncarnation: (topic: string) => boolean) {
  const raw = req.topics;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new YakError("INVALID_REQUEST", "'topics' must be an object of topic -> partition offsets");
  }
  const entries = Object.keys(raw);
  if (entries.length === 0 || entries.length > MAX_FETCH_TOPICS) {
    throw new YakError("INVALID_REQUEST", `'topics' must name 1 to ${MAX_FETCH_TOPICS} topics`);
  }
  const specs: ReadSpec[] = [];
  const wantedOf = new Map<string, number[]>();
  const unknown: string[] = [];
  const recreated = new Set<string>();
  const ranges: string[] = [];
  for (const name of entries) {
    const topic = checkTopicName(name);
    const count = s.partitions.partitionCount(topic);
    if (count === 0) {
      unknown.push(topic);
      continue;
    }
    if (otherIncarnation(topic)) {
      recreated.add(topic);
      continue;
    }
    const wanted: [number, number][] = [];
    for (const [p, off] of offsetMap(raw as Record<string, unknown>, name, s.opts.maxPartitions)) {
      const n = Number(p);
      if (!Number.isInteger(n) || String(n) !== p) {
        throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has partitions 0..${count - 1}; there is no '${p}'`);
      }
      wanted.push([n, off]);
    }
    const belowStart = new Map<number, PartitionOffsets>();
    specs.push(...s.partitions.consumerSpecs(topic, wanted, belowStart));
    wantedOf.set(topic, wanted.map(([p]) => p));
    if (belowStart.size > 0) {
      const range = [...belowStart].map(([p, o]) => `"${p}":[${o.logStart},${o.highWatermark}]`);
      ranges.push(`${JSON.stringify(topic)}:{${range.join(",")}}`);
    }
  }
  return { specs, wantedOf, unknown, recreated, ranges };
}

/**
 * A fetch of several topics in one long poll: `{"topics": {"t": {"0": 12}}}`.
 * Parts name their topic (`t`); a topic this broker does not have (yet) is
 * listed in `unknown` instead of failing the others. With `ids` (topic ->
 * topic id, from `metadata`), a topic now of another id (deleted and created
 * again since) is listed in `recreated` and read not at all: the offsets are
 * the old topic's.
 */
async function fetchTopics(s: BrokerServices, req: Request): Promise<Reply> {
  const ids = askedIds(req);
  const otherIncarnation = (topic: string) =>
    ids !== null && ids[topic] !== undefined && ids[topic] !== s.topics.topicId(topic);
  const { specs, wantedOf, unknown, recreated, ranges } = planTopics(s, req, otherIncarnation);
  const aborted = new Map<string, AbortedRange[]>();
  // Even with nothing to read here (topics not replicated yet), the poll waits its time, as a single-topic one does.
  const { reads: read, damaged } = await readFor(s, req, specs);
  // A topic deleted and created again during the wait: what was read may be the new one's.
  for (const topic of wantedOf.keys()) {
    if (!otherIncarnation(topic)) continue;
    recreated.add(topic);
    wantedOf.delete(topic);
  }
  const reads = recreated.size === 0 ? read : read.filter((r) => !recreated.has(topicOfKey(r.spec.key)));
  // Each partition's high watermark and, for a read_committed reader, its last stable offset: where its reads end.
  const committed = committedOnly(req);
  const hw: string[] = [];
  const lso: string[] = [];
  for (const [topic, ps] of wantedOf) {
    const offsets = ps.map((p) => [p, s.partitions.offsets({ topic, partition: p })] as const);
    hw.push(`${JSON.stringify(topic)}:{${offsets.map(([p, o]) => `"${p}":${o.highWatermark}`).join(",")}}`);
    if (committed) {
      lso.push(`${JSON.stringify(topic)}:{${offsets.map(([p, o]) => `"${p}":${o.lastStable}`).join(",")}}`);
    }
  }
  const parts: string[] = [];
  const data: Uint8Array[] = [];
  for (const { spec, read } of reads) {
    const at = spec.key.lastIndexOf("/");
    data.push(...read.chunks);
    abortedOf(s, req, spec, read.baseOffset, read.nextOffset - read.baseOffset, aborted);
    parts.push(
      `{"t":${JSON.stringify(spec.key.slice(0, at))},"p":${spec.key.slice(at + 1)},"base":${read.baseOffset},` +
        `"count":${read.count},"len":${read.byteLength}${nextField(read)}}`,
    );
  }
  const outOfRange = ranges.length > 0 ? `,"outOfRange":{${ranges.join(",")}}` : "";
  const again = recreated.size > 0 ? `,"recreated":${JSON.stringify([...recreated])}` : "";
  return new RawReply(
    `"hw":{${hw.join(",")}},${committed ? `"lso":{${lso.join(",")}},` : ""}"parts":[${parts.join(",")}],` +
      `"unknown":${JSON.stringify(unknown)}${outOfRange}${again}` +
      damagedField(damaged) + abortedField(aborted),
    data,
  );
}

/** The topic of a partition key (`topic/partition`). */
function topicOfKey(key: string): string {
  return key.slice(0, key.lastIndexOf("/"));
}

/** read_committed (`"isolation":"read_committed"`): up to the last stable offset, and what was aborted there. */
function committedOnly(req: Request): boolean {
  if (req.isolation === undefined || req.isolation === "read_uncommitted") return false;
  if (req.isolation === "read_committed") return true;
  throw new YakError("INVALID_REQUEST", '\'isolation\' must be "read_committed" or "read_uncommitted"');
}

/** A read_committed part's aborted transactions, by partition key: the reader drops their lines. */
function abortedOf(
  s: BrokerServices,
  req: Request,
  spec: ReadSpec,
  base: number,
  count: number,
  out: Map<string, AbortedRange[]>,
): void {
  if (!committedOnly(req)) return;
  const at = spec.key.lastIndexOf("/");
  const tp = { topic: spec.key.slice(0, at), partition: Number(spec.key.slice(at + 1)) };
  const ranges = s.partitions.abortedRanges(tp, base, base + count);
  if (ranges.length > 0) out.set(spec.key, ranges);
}

/** `,"aborted":{"topic/p":[["p12",first,last],...]}`: aborted transactions' lines in the parts, or nothing. */
function abortedField(aborted: Map<string, AbortedRange[]>): string {
  if (aborted.size === 0) return "";
  const entries = [...aborted].map(([key, list]) =>
    `${JSON.stringify(key)}:${JSON.stringify(list.map((a) => [a.producer, a.first, a.last]))}`
  );
  return `,"aborted":{${entries.join(",")}}`;
}

/** A consumer's read of `specs`, within the request's byte budget and wait: the reads and the damage met. */
async function readFor(s: BrokerServices, req: Request, specs: ReadSpec[]) {
  const damaged = new Map<ReadSpec, YakError>();
  const reads = await s.partitions.readPartitions(specs, {
    maxBytes: optInt(req, "maxBytes", s.opts.maxFetchBytes, 1, s.opts.maxFetchBytes),
    maxWaitMs: optInt(req, "maxWaitMs", 0, 0, s.opts.maxFetchWaitMs),
    upTo: committedOnly(req) ? "lso" : "hw",
    damaged,
  });
  return { reads, damaged };
}

/** `fetch`: a consumer's long poll; the records follow the frame as the stored lines (`len` bytes per part). */
export async function fetch(s: BrokerServices, req: Request): Promise<Reply> {
  if (req.topics !== undefined) return await fetchTopics(s, req);
  const topic = checkTopicName(req.topic);
  const count = s.partitions.partitionCount(topic);
  if (count === 0) s.partitions.consumerSpecs(topic, []); // UNKNOWN_TOPIC
  const wanted: [number, number][] = [];
  for (const [p, off] of offsetMap(req, "offsets", s.opts.maxPartitions)) {
    const n = Number(p);
    // String(n) === p: "", " 0" or "00" would otherwise all mean partition 0.
    if (!Number.isInteger(n) || String(n) !== p) {
      throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has partitions 0..${count - 1}; there is no '${p}'`);
    }
    wanted.push([n, off]);
  }
  const belowStart = new Map<number, PartitionOffsets>();
  const specs = s.partitions.consumerSpecs(topic, wanted, belowStart);
  const { reads, damaged } = await readFor(s, req, specs);
  const hw = wanted.map(([p]) => `"${p}":${s.partitions.offsets({ topic, partition: p }).highWatermark}`);
  const parts: string[] = [];
  const data: Uint8Array[] = [];
  const aborted = new Map<string, AbortedRange[]>();
  for (const { spec, read } of reads) {
    const p = spec.key.slice(topic.length + 1);
    data.push(...read.chunks);
    abortedOf(s, req, spec, read.baseOffset, read.nextOffset - read.baseOffset, aborted);
    parts.push(`{"p":${p},"base":${read.baseOffset},"count":${read.count},"len":${read.byteLength}${nextField(read)}}`);
  }
  // Offsets below the log start (deleted by retention) or past the end: the range there is, per partition.
  const range = [...belowStart].map(([p, o]) => `"${p}":[${o.logStart},${o.highWatermark}]`);
  const ranges = range.length > 0 ? `,"outOfRange":{${range.join(",")}}` : "";
  // The records follow the frame as the stored lines, untouched (`len` bytes per part).
  return new RawReply(
    `"hw":{${hw.join(",")}},"parts":[${parts.join(",")}]${ranges}${damagedField(damaged)}${abortedField(aborted)}`,
    data,
  );
}

/**
 * `,"next":N` when the part's next offset is not base + count: a compacted
 * topic's records skip offsets, and a read may end in (or be all) a gap.
 */
function nextField(read: ReadResult): string {
  return read.nextOffset === read.baseOffset + read.count ? "" : `,"next":${read.nextOffset}`;
}

/**
 * `,"damaged":{"topic/p":"why"}`: partitions whose next record is damaged
 * here (the broker is healing it; retry), or nothing.
 */
function damagedField(damaged: Map<ReadSpec, YakError>): string {
  if (damaged.size === 0) return "";
  const entries = [...damaged].map(([spec, err]) => `${JSON.stringify(spec.key)}:${JSON.stringify(err.message)}`);
  return `,"damaged":{${entries.join(",")}}`;
}
