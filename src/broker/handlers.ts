/**
 * Client request handling: produce, fetch, metadata, offsets, groups, topics,
 * registration and status. Independent of the frame codec: each handler takes
 * a decoded request and returns a reply or throws a YakError.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import * as names from "../log/names.ts";
import type { PartitionLog } from "../log/partition_log.ts";
import { encodeBatch, type RecordInput } from "../log/record.ts";
import { YakError } from "../errors.ts";
import { int, offsetMap, optInt, optStr, RawReply, type Reply, type Request, str } from "../protocol/messages.ts";
import type { Session } from "../protocol/server.ts";
import type { BrokerContext } from "./context.ts";
import { CLUSTER_KEY, CLUSTER_TOPIC } from "./metadata.ts";
import { fairShare } from "./replication.ts";
import { minInsyncReplicasOf, parseTopicConfigs } from "./topic_config.ts";

const PRODUCER_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * names.ts quotes a bad name with String(), which throws on a JSON object
 * such as {"toString":1} or a 10,000-deep array: refuse those first, so they
 * get INVALID_TOPIC / INVALID_ARGUMENT rather than a retriable UNAVAILABLE.
 */
function notAnObject(name: unknown, what: "topic" | "group"): unknown {
  if (typeof name !== "object" || name === null) return name;
  throw new YakError(
    what === "topic" ? "INVALID_TOPIC" : "INVALID_ARGUMENT",
    `invalid ${what} name (${Array.isArray(name) ? "an array" : "an object"}): it must be a string`,
  );
}

function checkTopicName(name: unknown, allowInternal = false): string {
  return names.checkTopicName(notAnObject(name, "topic"), allowInternal);
}

function checkGroupName(name: unknown): string {
  return names.checkGroupName(notAnObject(name, "group"));
}

/**
 * Builds the request handler of a broker.
 *
 * @example
 * ```ts ignore
 * const handle = clientHandlers(broker);
 * const reply = await handle({ id: 1, type: "metadata" }, session);
 * ```
 */
export function clientHandlers(
  b: BrokerContext,
): (req: Request, session: Session) => Promise<Reply> | Reply | null {
  return (req, session) => {
    switch (req.type) {
      case "produce":
        return produce(b, req);
      case "fetch":
        return fetch(b, req);
      case "metadata":
        return metadata(b, req);
      case "list_offsets":
        return listOffsets(b, req);
      case "commit":
        return commit(b, req);
      case "committed":
        return committed(b, req);
      case "create_topic":
        return createTopic(b, req, "create");
      case "alter_topic":
        return createTopic(b, req, "alter");
      case "register":
        return register(b, req, session);
      case "deregister":
        return deregister(b, req, session);
      case "status":
        return status(b);
      default:
        return null;
    }
  };
}

function acksOf(req: Request): -1 | 0 | 1 {
  const a = req.acks ?? "all";
  if (a === "all" || a === -1) return -1;
  if (a === 0 || a === 1) return a;
  throw new YakError("INVALID_REQUEST", "'acks' must be \"all\", 1 or 0");
}

function parseRecords(b: BrokerContext, raw: unknown): RecordInput[] {
  if (
    !Array.isArray(raw) || raw.length === 0 ||
    raw.length > b.opts.maxBatchRecords
  ) {
    throw new YakError(
      "INVALID_REQUEST",
      `'records' must hold 1 to ${b.opts.maxBatchRecords} records`,
    );
  }
  const limit = b.opts.maxRecordBytes;
  const out: RecordInput[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i];
    if (typeof r !== "object" || r === null) {
      throw new YakError("INVALID_REQUEST", `record ${i} must be an object`);
    }
    const { k, v, b: bytes } = r as Record<string, unknown>;
    if (k !== undefined && k !== null && typeof k !== "string") {
      throw new YakError(
        "INVALID_REQUEST",
        `record ${i}: key must be a string`,
      );
    }
    const key = (k ?? null) as string | null;
    // The key counts too: a UTF-16 unit is at most 3 UTF-8 bytes, so only
    // records over a third of the limit in chars need an exact count.
    const keyChars = key?.length ?? 0;
    if (typeof v === "string") {
      if (
        v.length + keyChars > limit / 3 &&
        new TextEncoder().encode(v).length +
              new TextEncoder().encode(key ?? "").length > limit
      ) {
        throw new YakError(
          "MESSAGE_TOO_LARGE",
          `record ${i} is larger than ${limit} bytes; split it or raise the limit`,
        );
      }
      out[i] = { key, value: v };
    } else if (typeof bytes === "string") {
      if (
        bytes.length * 0.75 + keyChars * 3 > limit &&
        bytes.length * 0.75 + new TextEncoder().encode(key ?? "").length > limit
      ) {
        throw new YakError(
          "MESSAGE_TOO_LARGE",
          `record ${i} is larger than ${limit} bytes; split it or raise the limit`,
        );
      }
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(bytes)) {
        throw new YakError(
          "INVALID_REQUEST",
          `record ${i}: 'b' must be base64`,
        );
      }
      out[i] = { key, valueB64: bytes };
    } else {
      throw new YakError(
        "INVALID_REQUEST",
        `record ${i} needs a text value 'v' or base64 bytes 'b'`,
      );
    }
  }
  return out;
}

async function produce(b: BrokerContext, req: Request): Promise<Reply> {
  b.requireLeader();
  const topic = checkTopicName(req.topic);
  const partition = int(req, "partition", 0, b.opts.maxPartitions - 1);
  const acks = acksOf(req);
  let records: RecordInput[] | null = parseRecords(b, req.records);
  const count = records.length;
  // The server holds the request until we answer; it must not keep the batch alive that long.
  req.records = undefined;
  const producer = optStr(req, "producer", 64) ?? null;
  if (producer !== null && !PRODUCER_ID.test(producer)) {
    throw new YakError(
      "INVALID_REQUEST",
      "'producer' must be 1-64 letters, digits, '.', '_' or '-'",
    );
  }
  const baseSeq = producer === null ? 0 : int(req, "seq");
  if (!b.store.has(topic)) {
    await b.createTopic(topic, b.opts.defaultPartitions, "ensure");
  }
  const log = b.store.partition(topic, partition);
  const key = `${topic}/${partition}`;
  if (producer !== null && !b.producers.isReady(key)) {
    await b.producers.ensure(
      key,
      () => log.readTailText(b.opts.producerStateScanBytes),
    );
  }
  // From here to the append nothing awaits, so pipelined batches keep their order.
  const leader = b.requireLeader();
  if (!b.leaseValid()) throw notLeader(b, "its lease has expired");
  const minIsr = minInsyncReplicasOf(b.store.meta.topics.get(topic)?.configs, b.opts.minInsyncReplicas);
  // Refused before the append, like Kafka: an acks=all write is never stored with fewer copies than promised.
  if (acks === -1 && leader.isr.length < minIsr) throw leader.notEnoughReplicas(minIsr);
  const seen = producer === null
    ? { skip: 0, storedBaseOffset: -1, gap: false }
    : b.producers.check(key, producer, baseSeq, count);
  if (seen.gap && acks !== 0) {
    // An earlier batch of this producer is missing here (its write failed, or
    // it went to a lost leader): it must be resent first, or this one would
    // make the earlier one look like a duplicate when it comes.
    throw new YakError(
      "OUT_OF_ORDER_SEQUENCE",
      `producer ${producer} skipped sequences before ${baseSeq} on ${key}`,
    );
  }
  let baseOffset = seen.storedBaseOffset;
  let endOffset = log.logEndOffset;
  if (seen.skip < count) {
    const fresh = count - seen.skip;
    const appended = appendRecords(log, records, seen.skip, leader.epoch, producer, baseSeq);
    // Only offsets are needed from here on: while this waits for replicas,
    // the parsed records can already be collected.
    records = null;
    if (producer !== null) b.producers.record(key, producer, baseSeq + seen.skip, fresh, appended.baseOffset);
    if (seen.skip === 0) baseOffset = appended.baseOffset;
    endOffset = appended.baseOffset + fresh;
    try {
      await appended.done;
      if (b.failingWrites.delete(key)) b.log.write("writes_resumed", { partition: key });
    } catch (err) {
      // Offsets from this batch on were never written: the producer's sequence goes back too.
      if (producer !== null) b.producers.rollback(key, producer, baseSeq + seen.skip);
      // Said once per failing partition, not once per retried batch.
      if (!b.failingWrites.has(key)) {
        b.failingWrites.add(key);
        b.log.write("write_failed", { partition: key, error: err instanceof Error ? err.message : String(err) });
      }
      throw err;
    }
    leader.updateHw(key);
  }
  if (acks === -1) {
    await leader.waitForHw(key, endOffset, b.opts.requestTimeoutMs, minIsr);
  }
  // A leader that lost its lease while waiting must not acknowledge.
  if (b.requireLeader() !== leader || !b.leaseValid()) {
    throw notLeader(b, "it lost its leadership");
  }
  return {
    baseOffset,
    count,
    duplicate: seen.skip > 0,
    partition,
  };
}

/** Queues the lines of the records not yet stored; the records are not referenced after it returns. */
function appendRecords(
  log: PartitionLog,
  records: RecordInput[],
  skip: number,
  epoch: number,
  producer: string | null,
  baseSeq: number,
): { baseOffset: number; done: Promise<void> } {
  const fresh = skip === 0 ? records : records.slice(skip);
  const ts = Date.now();
  return log.append(epoch, fresh.length, (base) => encodeBatch(fresh, base, epoch, ts, producer, baseSeq + skip));
}

function notLeader(b: BrokerContext, why: string): YakError {
  const l = b.leader();
  return new YakError(
    "NOT_LEADER",
    `broker ${b.opts.id} cannot take writes: ${why}`,
    l ? { leaderId: l.id, host: l.host, port: l.port, epoch: l.epoch } : {},
  );
}

async function fetch(b: BrokerContext, req: Request): Promise<Reply> {
  const topic = checkTopicName(req.topic);
  if (!b.store.has(topic)) {
    throw new YakError(
      "UNKNOWN_TOPIC",
      `topic '${topic}' does not exist on broker ${b.opts.id}`,
    );
  }
  const count = b.store.partitionCount(topic);
  const wanted = offsetMap(req, "offsets", b.opts.maxPartitions);
  const partitions: [number, number][] = [];
  for (const [p, off] of wanted) {
    const n = Number(p);
    // String(n) === p: "", " 0" or "00" would otherwise all mean partition 0.
    if (!Number.isInteger(n) || n < 0 || n >= count || String(n) !== p) {
      throw new YakError(
        "UNKNOWN_PARTITION",
        `topic '${topic}' has partitions 0..${count - 1}; there is no '${p}'`,
      );
    }
    partitions.push([n, off]);
  }
  const maxBytes = optInt(
    req,
    "maxBytes",
    b.opts.maxFetchBytes,
    1,
    b.opts.maxFetchBytes,
  );
  const maxWaitMs = optInt(req, "maxWaitMs", 0, 0, b.opts.maxFetchWaitMs);
  const deadline = monotonicMs() + maxWaitMs;
  while (true) {
    const parts: string[] = [];
    const data: Uint8Array[] = [];
    const hw: string[] = [];
    let budget = maxBytes;
    const share = fairShare(
      maxBytes,
      partitions.filter(([p, off]) => off < b.store.partition(topic, p).highWatermark).length,
    );
    for (const [p, off] of partitions) {
      const log = b.store.partition(topic, p);
      hw.push(`"${p}":${log.highWatermark}`);
      if (off > log.logEndOffset) {
        // A follower may simply be behind the consumer; only the leader knows the offset is bad.
        if (b.role() === "leader") {
          throw new YakError(
            "OUT_OF_RANGE",
            `offset ${off} is past the end (${log.logEndOffset}) of ${topic}/${p}`,
          );
        }
        continue;
      }
      if (off >= log.highWatermark || budget <= 0) continue;
      const read = await b.readLog(log, off, Math.min(share, budget), log.highWatermark);
      if (read.count === 0) continue;
      budget -= read.byteLength;
      data.push(...read.chunks);
      parts.push(`{"p":${p},"base":${read.baseOffset},"count":${read.count},"len":${read.byteLength}}`);
    }
    const remaining = deadline - monotonicMs();
    if (parts.length > 0 || remaining <= 0) {
      // The records follow the frame as the stored lines, untouched (`len` bytes per part).
      return new RawReply(`"hw":{${hw.join(",")}},"parts":[${parts.join(",")}]`, data);
    }
    await b.notifier.wait(remaining);
  }
}

async function metadata(b: BrokerContext, req: Request): Promise<Reply> {
  const topic = req.topic === undefined ? undefined : checkTopicName(req.topic);
  if (topic !== undefined && req.create === true && !b.store.has(topic)) {
    b.requireLeader();
    await b.createTopic(topic, b.opts.defaultPartitions, "ensure");
  }
  const topics: Record<string, number> = {};
  for (const name of b.store.topicNames()) {
    if (name !== CLUSTER_TOPIC && (topic === undefined || name === topic)) {
      topics[name] = b.store.partitionCount(name);
    }
  }
  if (topic !== undefined && topics[topic] === undefined) {
    throw new YakError(
      "UNKNOWN_TOPIC",
      `topic '${topic}' does not exist; produce to it or create it first`,
    );
  }
  return {
    brokerId: b.opts.id,
    role: b.role(),
    epoch: b.epoch(),
    leader: b.leader(),
    topics,
  };
}

function listOffsets(b: BrokerContext, req: Request): Reply {
  const topic = checkTopicName(req.topic);
  const n = b.store.partitionCount(topic);
  if (n === 0) {
    throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  }
  const hw: Record<string, number> = {};
  const end: Record<string, number> = {};
  for (let p = 0; p < n; p++) {
    const log = b.store.partition(topic, p);
    hw[p] = log.highWatermark;
    end[p] = log.logEndOffset;
  }
  return { hw, end };
}

async function commit(b: BrokerContext, req: Request): Promise<Reply> {
  const leader = b.requireLeader();
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  const n = b.store.partitionCount(topic);
  if (n === 0) {
    throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  }
  const offsets: Record<string, number> = {};
  for (const [p, off] of offsetMap(req, "offsets", b.opts.maxPartitions)) {
    const i = Number(p);
    if (!Number.isInteger(i) || i < 0 || i >= n || String(i) !== p) {
      throw new YakError(
        "UNKNOWN_PARTITION",
        `topic '${topic}' has no partition '${p}'`,
      );
    }
    // A commit past the end would make every later fetch of the group fail.
    const logEnd = b.store.partition(topic, i).logEndOffset;
    if (off > logEnd) {
      throw new YakError(
        "OUT_OF_RANGE",
        `offset ${off} is past the end (${logEnd}) of ${topic}/${i}`,
      );
    }
    offsets[i] = off;
  }
  const end = await b.appendMeta({ op: "commit", group, topic, offsets });
  await leader.waitForHw(CLUSTER_KEY, end, b.opts.requestTimeoutMs);
  return { committed: offsets };
}

function committed(b: BrokerContext, req: Request): Reply {
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  const offsets = b.store.meta.groups.get(group)?.get(topic);
  return { offsets: Object.fromEntries(offsets ?? []) };
}

async function createTopic(
  b: BrokerContext,
  req: Request,
  mode: "create" | "alter",
): Promise<Reply> {
  b.requireLeader();
  const topic = checkTopicName(req.topic);
  const configs = parseTopicConfigs(req.configs);
  // An alter may change configs only: the partition count then stays.
  const partitions = mode === "alter" && req.partitions === undefined
    ? b.store.partitionCount(topic)
    : int(req, "partitions", 1, b.opts.maxPartitions);
  await b.createTopic(topic, partitions, mode, configs);
  return {
    topic,
    partitions: b.store.partitionCount(topic),
    configs: b.store.meta.topics.get(topic)?.configs ?? {},
  };
}

function register(b: BrokerContext, req: Request, session: Session): Reply {
  const role = str(req, "role", 16);
  if (role !== "producer" && role !== "consumer") {
    throw new YakError(
      "INVALID_REQUEST",
      "'role' must be producer or consumer",
    );
  }
  const client = str(req, "client", 64);
  if (!PRODUCER_ID.test(client)) {
    throw new YakError("INVALID_REQUEST", "'client' must be 1-64 letters, digits, '.', '_' or '-'");
  }
  const topic = checkTopicName(req.topic);
  const group = req.group === undefined || req.group === null ? undefined : checkGroupName(req.group);
  const known = b.clients.has(session.id);
  b.clients.set(session.id, {
    role,
    client,
    topic,
    group,
    remote: session.remote,
    since: Date.now(),
  });
  if (!known) {
    b.log.write(`${role}_registered`, {
      client,
      topic,
      ...(group ? { group } : {}),
      remote: session.remote,
    });
    session.onClose(() => {
      const info = b.clients.get(session.id);
      if (!info) return;
      b.clients.delete(session.id);
      b.log.write(`${info.role}_deregistered`, {
        client: info.client,
        topic: info.topic,
        reason: "connection closed",
      });
    });
  }
  return { registered: true };
}

function deregister(b: BrokerContext, _req: Request, session: Session): Reply {
  const info = b.clients.get(session.id);
  if (info) {
    b.clients.delete(session.id);
    b.log.write(`${info.role}_deregistered`, {
      client: info.client,
      topic: info.topic,
    });
  }
  return { deregistered: info !== undefined };
}

function status(b: BrokerContext): Reply {
  const topics = b.store.topicNames().map((name) => ({
    name,
    configs: b.store.meta.topics.get(name)?.configs ?? {},
    partitions: Array.from({ length: b.store.partitionCount(name) }, (_, p) => {
      const log = b.store.partition(name, p);
      return {
        partition: p,
        logEndOffset: log.logEndOffset,
        highWatermark: log.highWatermark,
        segments: log.segmentCount,
        bytes: log.sizeBytes,
      };
    }),
  }));
  const groups: Record<
    string,
    Record<string, Record<string, { committed: number; lag: number }>>
  > = {};
  for (const [group, byTopic] of b.store.meta.groups) {
    groups[group] = {};
    for (const [topic, byPartition] of byTopic) {
      groups[group][topic] = {};
      for (const [p, off] of byPartition) {
        const hw = b.store.partitionCount(topic) > p ? b.store.partition(topic, p).highWatermark : off;
        groups[group][topic][p] = {
          committed: off,
          lag: Math.max(0, hw - off),
        };
      }
    }
  }
  let leaderState = null;
  try {
    const l = b.role() === "leader" ? b.requireLeader() : null;
    if (l) leaderState = { isr: l.isr, followers: l.followers() };
  } catch { /* not leading */ }
  return {
    brokerId: b.opts.id,
    role: b.role(),
    epoch: b.epoch(),
    leader: b.leader(),
    replication: leaderState,
    topics,
    groups,
    clients: [...b.clients.values()],
    memory: Deno.memoryUsage(),
  };
}
