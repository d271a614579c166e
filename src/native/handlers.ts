/**
 * The native protocol's requests, translated: each handler checks a decoded
 * JSON request's fields, calls the broker's typed services, and shapes the
 * reply. No broker logic lives here (ordering, replication, idempotence and
 * offsets are the services'), so the Kafka codec reaches the same behaviour.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { checkConfigKeys, parseTopicConfigs } from "../broker/topic_config.ts";
import { HEADER_OVERHEAD_BYTES, RecordRules } from "../broker/record_rules.ts";
import { DEFAULTS } from "../config.ts";
import { YakError } from "../errors.ts";
import * as names from "../log/names.ts";
import type { RecordHeader, RecordInput } from "../log/record.ts";
import { int, offsetMap, optInt, optStr, RawReply, type Reply, type Request, str } from "../protocol/messages.ts";
import type { RequestMemory } from "../protocol/listener.ts";
import { serve, type Session } from "../protocol/server.ts";
import type { ServeCodec } from "../broker/broker.ts";
import type { BrokerOptions } from "../broker/context.ts";
import type { Acks, PartitionOffsets, ReadSpec } from "../broker/partition_ops.ts";
import {
  decodeEpochEndQuery,
  decodeFetchRequest,
  encodeEpochEnds,
  encodeFetchReply,
} from "../broker/replica_protocol.ts";

const CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** An issued producer id as decimal text (a safe integer, below 2^53). */
const ISSUED_ID = /^[0-9]{1,16}$/;

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
    switch (req.type) {
      case "produce":
        return produce(s, req);
      case "init_producer":
        // Issued by the leader only: a follower's Kafka listener asks here for its clients.
        s.requireLeader();
        return s.producerIds.issue(s.opts.requestTimeoutMs).then((id) => ({
          producerId: String(id),
          producerEpoch: 0,
        }));
      case "fetch":
        return fetch(s, req);
      case "metadata":
        return metadata(s, req);
      case "list_offsets":
        return listOffsets(s, req);
      case "commit":
        return commit(s, req);
      case "committed":
        return committed(s, req);
      case "create_topic":
        return createTopic(s, req, "create");
      case "alter_topic":
        return createTopic(s, req, "alter");
      case "delete_topic":
        s.requireLeader();
        return s.topics.delete(checkTopicName(req.topic)).then(() => ({ deleted: true }));
      case "register":
        return register(s, req, session);
      case "deregister":
        return deregister(s, session);
      case "status":
        return s.status();
      case "join_group":
        return joinGroup(s, req, session);
      case "sync_group":
        return syncGroup(s, req);
      case "heartbeat":
        s.groups.heartbeat(checkGroupName(req.group), memberIdOf(req), int(req, "generation"));
        return {};
      case "leave_group":
        s.groups.leave(checkGroupName(req.group), memberIdOf(req));
        return {};
      case "list_groups":
        s.requireLeader();
        return { groups: s.groups.list() };
      case "describe_group":
        return describeGroup(s, req);
      case "delete_group":
        return deleteGroup(s, req);
      case "reset_offsets":
        return resetOffsets(s, req);
      case "replicate":
        return replicate(s, req);
      case "epoch_end":
        return epochEnd(s, req);
      default:
        throw new YakError("UNKNOWN_REQUEST", `brokers do not handle '${req.type}'`);
    }
  };
}

function acksOf(req: Request): Acks {
  const a = req.acks ?? "all";
  if (a === "all" || a === -1) return -1;
  if (a === 0 || a === 1) return a;
  throw new YakError("INVALID_REQUEST", "'acks' must be \"all\", 1 or 0");
}

/**
 * The command that raises a topic's max.message.bytes: `--alter` when the
 * topic exists, else `--create` (altering a topic not made yet fails).
 */
function raiseLimitHint(topic: string, exists: boolean): string {
  return `'yak topics ${exists ? "--alter" : "--create"} ${topic} --config max.message.bytes=N'` +
    (exists ? "" : " (the topic does not exist yet)");
}

function parseRecords(s: BrokerServices, topic: string, raw: unknown): RecordInput[] {
  const { maxBatchRecords } = s.opts;
  // A topic not made yet cannot be altered: it is created with the higher limit instead.
  const topicExists = s.topics.exists(topic);
  // The topic's max.message.bytes, else the broker's --max-message-bytes; headers as the Kafka codec counts them.
  const rules = new RecordRules(
    topic,
    s.topics.configs(topic),
    s.opts.maxRecordBytes,
    `; split it, or raise the limit with ${raiseLimitHint(topic, topicExists)}`,
    { topicExists },
  );
  const limit = rules.limit;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > maxBatchRecords) {
    throw new YakError("INVALID_REQUEST", `'records' must hold 1 to ${maxBatchRecords} records`);
  }
  const out: RecordInput[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i];
    if (typeof r !== "object" || r === null) {
      throw new YakError("INVALID_REQUEST", `record ${i} must be an object`);
    }
    const { k, v, b: bytes, h } = r as Record<string, unknown>;
    if (k !== undefined && k !== null && typeof k !== "string") {
      throw new YakError("INVALID_REQUEST", `record ${i}: key must be a string`);
    }
    const key = (k ?? null) as string | null;
    const headers = h === undefined || h === null ? undefined : parseHeaders(rules, i, h);
    // The key and headers count too: a UTF-16 unit is at most 3 UTF-8 bytes, so only
    // records over a third of the limit in chars need an exact count.
    let extraChars = key?.length ?? 0;
    if (headers !== undefined) {
      for (const hd of headers) extraChars += hd.key.length + (hd.value?.length ?? 0) + HEADER_OVERHEAD_BYTES;
    }
    const what = `record ${i} of the batch`;
    if (typeof v === "string") {
      if (v.length + extraChars > limit / 3) rules.checkSize(i, utf8Bytes(v) + extraBytesOf(key, headers), what);
      out[i] = { key, value: v };
    } else if (typeof bytes === "string") {
      if (bytes.length * 0.75 + extraChars * 3 > limit) {
        const size = Math.floor(bytes.length * 3 / 4) - (bytes.endsWith("==") ? 2 : bytes.endsWith("=") ? 1 : 0) +
          extraBytesOf(key, headers);
        rules.checkSize(i, size, what);
      }
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(bytes)) {
        throw new YakError("INVALID_REQUEST", `record ${i}: 'b' must be base64`);
      }
      out[i] = { key, valueB64: bytes };
    } else {
      throw new YakError("INVALID_REQUEST", `record ${i} needs a text value 'v' or base64 bytes 'b'`);
    }
    // Stored through record.ts as Kafka-produced headers are, so Kafka consumers see them.
    if (headers !== undefined && headers.length > 0) out[i].headers = headers;
  }
  return out;
}

const utf8 = new TextEncoder();
const utf8Bytes = (s: string) => s.length === 0 ? 0 : utf8.encode(s).length;

/** The UTF-8 bytes of a record's key and headers (keys, values and their framing), which count toward its size. */
function extraBytesOf(key: string | null, headers: readonly RecordHeader[] | undefined): number {
  let n = utf8Bytes(key ?? "");
  if (headers !== undefined) {
    for (const h of headers) n += utf8Bytes(h.key) + utf8Bytes(h.value ?? "") + HEADER_OVERHEAD_BYTES;
  }
  return n;
}

/** A native record's headers `h`: `[key, value]` pairs, a text key and a text or null value. */
function parseHeaders(rules: RecordRules, i: number, raw: unknown): RecordHeader[] {
  if (!Array.isArray(raw)) {
    throw new YakError("INVALID_REQUEST", `record ${i}: 'h' must be a list of [key, value] headers`);
  }
  rules.checkHeaders(i, raw.length);
  return raw.map((pair, j) => {
    if (
      !Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" ||
      (pair[1] !== null && typeof pair[1] !== "string")
    ) {
      throw new YakError("INVALID_REQUEST", `record ${i}: header ${j} must be [key, value] with a text key`);
    }
    return { key: pair[0], value: pair[1] };
  });
}

async function produce(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const topic = checkTopicName(req.topic);
  const partition = int(req, "partition", 0, s.opts.maxPartitions - 1);
  const acks = acksOf(req);
  const records = parseRecords(s, topic, req.records);
  const count = records.length;
  // The server holds the request until we answer; it must not keep the batch alive that long.
  req.records = undefined;
  const producer = optStr(req, "producer", 64) ?? null;
  if (producer !== null && !ISSUED_ID.test(producer)) {
    throw new YakError(
      "UNKNOWN_PRODUCER_ID",
      "'producer' must be an id this cluster issued ('init_producer' answers one), as decimal text",
    );
  }
  const baseSeq = producer === null ? 0 : int(req, "seq");
  const producerEpoch = producer === null ? -1 : optInt(req, "producerEpoch", 0, 0, 32767);
  const res = await s.partitions.appendBatch(
    { topic, partition },
    { records, producerId: producer === null ? null : BigInt(producer), producerEpoch, baseSeq },
    acks,
    s.opts.requestTimeoutMs,
  );
  // Who acknowledged, under which leader epoch, and when (wall clock, at the lease check that allowed it):
  // a client, or a test, can tell that no fenced leader answered.
  return {
    baseOffset: res.baseOffset,
    count,
    duplicate: res.duplicate,
    partition,
    brokerId: s.opts.id,
    epoch: res.epoch,
    ackedAt: res.ackedAt,
  };
}

/** Topics one consumer fetch may name (`topics`): each adds its partitions to the one long poll. */
const MAX_FETCH_TOPICS = 1000;

/**
 * A fetch of several topics in one long poll: `{"topics": {"t": {"0": 12}}}`.
 * Parts name their topic (`t`); a topic this broker does not have (yet) is
 * listed in `unknown` instead of failing the others.
 */
async function fetchTopics(s: BrokerServices, req: Request): Promise<Reply> {
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
  const ranges: string[] = [];
  for (const name of entries) {
    const topic = checkTopicName(name);
    const count = s.partitions.partitionCount(topic);
    if (count === 0) {
      unknown.push(topic);
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
  // Even with nothing to read here (topics not replicated yet), the poll waits its time, as a single-topic one does.
  const damaged = new Map<ReadSpec, YakError>();
  const reads = await s.partitions.readPartitions(specs, {
    maxBytes: optInt(req, "maxBytes", s.opts.maxFetchBytes, 1, s.opts.maxFetchBytes),
    maxWaitMs: optInt(req, "maxWaitMs", 0, 0, s.opts.maxFetchWaitMs),
    upTo: "hw",
    damaged,
  });
  const hw = [...wantedOf].map(([topic, ps]) =>
    `${JSON.stringify(topic)}:{${
      ps.map((p) => `"${p}":${s.partitions.offsets({ topic, partition: p }).highWatermark}`).join(",")
    }}`
  );
  const parts: string[] = [];
  const data: Uint8Array[] = [];
  for (const { spec, read } of reads) {
    const at = spec.key.lastIndexOf("/");
    data.push(...read.chunks);
    parts.push(
      `{"t":${JSON.stringify(spec.key.slice(0, at))},"p":${spec.key.slice(at + 1)},"base":${read.baseOffset},` +
        `"count":${read.count},"len":${read.byteLength}}`,
    );
  }
  const outOfRange = ranges.length > 0 ? `,"outOfRange":{${ranges.join(",")}}` : "";
  return new RawReply(
    `"hw":{${hw.join(",")}},"parts":[${parts.join(",")}],"unknown":${JSON.stringify(unknown)}${outOfRange}` +
      damagedField(damaged),
    data,
  );
}

async function fetch(s: BrokerServices, req: Request): Promise<Reply> {
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
  const damaged = new Map<ReadSpec, YakError>();
  const reads = await s.partitions.readPartitions(specs, {
    maxBytes: optInt(req, "maxBytes", s.opts.maxFetchBytes, 1, s.opts.maxFetchBytes),
    maxWaitMs: optInt(req, "maxWaitMs", 0, 0, s.opts.maxFetchWaitMs),
    upTo: "hw",
    damaged,
  });
  const hw = wanted.map(([p]) => `"${p}":${s.partitions.offsets({ topic, partition: p }).highWatermark}`);
  const parts: string[] = [];
  const data: Uint8Array[] = [];
  for (const { spec, read } of reads) {
    const p = spec.key.slice(topic.length + 1);
    data.push(...read.chunks);
    parts.push(`{"p":${p},"base":${read.baseOffset},"count":${read.count},"len":${read.byteLength}}`);
  }
  // Offsets below the log start (deleted by retention): the range that is left, per partition.
  const range = [...belowStart].map(([p, o]) => `"${p}":[${o.logStart},${o.highWatermark}]`);
  const ranges = range.length > 0 ? `,"outOfRange":{${range.join(",")}}` : "";
  // The records follow the frame as the stored lines, untouched (`len` bytes per part).
  return new RawReply(`"hw":{${hw.join(",")}},"parts":[${parts.join(",")}]${ranges}${damagedField(damaged)}`, data);
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

async function replicate(s: BrokerServices, req: Request): Promise<Reply> {
  return encodeFetchReply(await s.replication.serveFetch(decodeFetchRequest(req, s.opts)));
}

function epochEnd(s: BrokerServices, req: Request): Reply {
  const { epoch, lastEpochs } = decodeEpochEndQuery(req, s.opts);
  return encodeEpochEnds(s.replication.epochEnds(epoch, lastEpochs));
}

async function metadata(s: BrokerServices, req: Request): Promise<Reply> {
  const topic = req.topic === undefined ? undefined : checkTopicName(req.topic);
  if (topic !== undefined && req.create === true && s.view().topics[topic] === undefined) {
    s.requireLeader();
    await s.topics.ensure(topic);
  }
  const view = s.view();
  const topics = topic === undefined ? view.topics : (view.topics[topic] === undefined ? {} : {
    [topic]: view.topics[topic],
  });
  if (topic !== undefined && topics[topic] === undefined) {
    // A producer learns how many partitions its first record would create the topic with.
    throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist; produce to it or create it first`, {
      defaultPartitions: s.opts.defaultPartitions,
    });
  }
  return { brokerId: view.brokerId, role: view.role, epoch: view.epoch, leader: view.leader, topics };
}

function listOffsets(s: BrokerServices, req: Request): Reply {
  const topic = checkTopicName(req.topic);
  const n = s.partitions.partitionCount(topic);
  if (n === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const hw: Record<string, number> = {};
  const end: Record<string, number> = {};
  const start: Record<string, number> = {};
  for (let p = 0; p < n; p++) {
    const o = s.partitions.offsets({ topic, partition: p });
    hw[p] = o.highWatermark;
    end[p] = o.logEnd;
    start[p] = o.logStart;
  }
  return { hw, end, start };
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function bytesOf(value: unknown, what: string): Uint8Array {
  if (typeof value !== "string" || value.length > MAX_METADATA_B64 || !B64.test(value)) {
    throw new YakError("INVALID_REQUEST", `'${what}' must be base64 (at most ${MAX_METADATA_B64} characters)`);
  }
  const raw = atob(value);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** Base64 of a group's metadata bytes: at most the coordinator's limit, plus a third. */
const MAX_METADATA_B64 = Math.ceil(DEFAULTS.maxGroupMetadataBytes / 3) * 4;

function b64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function memberIdOf(req: Request): string {
  const id = str(req, "memberId", 200);
  return id;
}

async function joinGroup(s: BrokerServices, req: Request, session: Session): Promise<Reply> {
  const group = checkGroupName(req.group);
  const memberId = typeof req.memberId === "string" ? memberIdOf(req) : "";
  const clientId = str(req, "clientId", 64);
  if (!CLIENT_ID.test(clientId)) {
    throw new YakError("INVALID_REQUEST", "'clientId' must be 1-64 letters, digits, '.', '_' or '-'");
  }
  const raw = req.protocols;
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 16) {
    throw new YakError("INVALID_REQUEST", "'protocols' must list 1 to 16 {name, metadata}");
  }
  const protocols = raw.map((p, i) => {
    if (typeof p !== "object" || p === null || typeof p.name !== "string" || p.name.length > 64) {
      throw new YakError("INVALID_REQUEST", `protocol ${i} needs a name (at most 64 characters)`);
    }
    return { name: p.name as string, metadata: bytesOf(p.metadata, "metadata") };
  });
  const sessionTimeoutMs = optInt(req, "sessionTimeoutMs", DEFAULTS.groupSessionTimeoutMs, 1, 2 ** 31 - 1);
  const res = await s.groups.join({
    group,
    memberId,
    clientId,
    host: session.remote,
    sessionTimeoutMs,
    rebalanceTimeoutMs: optInt(req, "rebalanceTimeoutMs", sessionTimeoutMs, 1, 2 ** 31 - 1),
    protocolType: optStr(req, "protocolType", 64) ?? "consumer",
    protocols,
    lastGeneration: optInt(req, "lastGeneration", 0, 0, 2 ** 31 - 1),
  });
  return {
    generation: res.generation,
    protocol: res.protocol,
    leaderId: res.leaderId,
    memberId: res.memberId,
    members: res.members.map((m) => ({ memberId: m.memberId, metadata: b64(m.metadata) })),
  };
}

async function syncGroup(s: BrokerServices, req: Request): Promise<Reply> {
  const group = checkGroupName(req.group);
  let assignments: Map<string, Uint8Array> | null = null;
  if (req.assignments !== undefined && req.assignments !== null) {
    if (!Array.isArray(req.assignments) || req.assignments.length > DEFAULTS.maxGroupMembers) {
      throw new YakError("INVALID_REQUEST", `'assignments' must list at most ${DEFAULTS.maxGroupMembers} members`);
    }
    assignments = new Map();
    for (const a of req.assignments) {
      if (typeof a !== "object" || a === null || typeof a.memberId !== "string") {
        throw new YakError("INVALID_REQUEST", "each assignment needs a memberId and base64 'assignment'");
      }
      assignments.set(a.memberId, bytesOf(a.assignment, "assignment"));
    }
  }
  const bytes = await s.groups.sync(group, memberIdOf(req), int(req, "generation"), assignments);
  return { assignment: b64(bytes) };
}

function describeGroup(s: BrokerServices, req: Request): Reply {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const view = s.groups.describe(group);
  const decoded = s.groups.describeDecoded(group);
  return {
    ...view,
    members: view.members.map((m, i) => ({
      ...m,
      metadata: b64(m.metadata),
      assignment: b64(m.assignment),
      partitions: decoded.members[i]?.partitions ?? {},
    })),
  };
}

async function deleteGroup(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  await s.groups.delete(checkGroupName(req.group));
  return { deleted: true };
}

async function resetOffsets(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  const count = s.partitions.partitionCount(topic);
  if (count === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const offsets = new Map<number, number>();
  for (const [p, off] of offsetMap(req, "offsets", s.opts.maxPartitions)) {
    const i = Number(p);
    if (!Number.isInteger(i) || i < 0 || i >= count || String(i) !== p) {
      throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition '${p}'`);
    }
    offsets.set(i, off);
  }
  return { committed: await s.groups.resetOffsets(group, topic, offsets) };
}

async function commit(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  const count = s.partitions.partitionCount(topic);
  if (count === 0) throw new YakError("UNKNOWN_TOPIC", `topic '${topic}' does not exist`);
  const offsets = new Map<number, number>();
  for (const [p, off] of offsetMap(req, "offsets", s.opts.maxPartitions)) {
    const i = Number(p);
    if (!Number.isInteger(i) || i < 0 || i >= count || String(i) !== p) {
      throw new YakError("UNKNOWN_PARTITION", `topic '${topic}' has no partition '${p}'`);
    }
    offsets.set(i, off);
  }
  // A member commits with its id and generation; stale ones are refused.
  const member = req.memberId === undefined || req.memberId === null
    ? null
    : { memberId: memberIdOf(req), generation: int(req, "generation") };
  return { committed: await s.groups.commit(group, topic, offsets, member) };
}

function committed(s: BrokerServices, req: Request): Reply {
  const group = checkGroupName(req.group);
  const topic = checkTopicName(req.topic);
  return { offsets: s.groups.committed(group, topic) };
}

async function createTopic(s: BrokerServices, req: Request, mode: "create" | "alter"): Promise<Reply> {
  s.requireLeader();
  const topic = checkTopicName(req.topic);
  const configs = parseTopicConfigs(req.configs);
  const deleteConfigs = checkConfigKeys(req.deleteConfigs);
  // An alter may change configs only: the partition count then stays.
  const partitions = mode === "alter" && req.partitions === undefined
    ? undefined
    : int(req, "partitions", 1, s.opts.maxPartitions);
  if (mode === "create") await s.topics.create(topic, partitions!, configs);
  else await s.topics.alter(topic, partitions, configs, deleteConfigs);
  return { topic, partitions: s.partitions.partitionCount(topic), configs: s.topics.configs(topic) };
}

function register(s: BrokerServices, req: Request, session: Session): Reply {
  const role = str(req, "role", 16);
  if (role !== "producer" && role !== "consumer") {
    throw new YakError("INVALID_REQUEST", "'role' must be producer or consumer");
  }
  const client = str(req, "client", 64);
  if (!CLIENT_ID.test(client)) {
    throw new YakError("INVALID_REQUEST", "'client' must be 1-64 letters, digits, '.', '_' or '-'");
  }
  const topic = checkTopicName(req.topic);
  const group = req.group === undefined || req.group === null ? undefined : checkGroupName(req.group);
  const fresh = s.clients.register(session.id, {
    role,
    client,
    topic,
    group,
    remote: session.remote,
    since: Date.now(),
  });
  if (fresh) session.onClose(() => s.clients.deregister(session.id, "connection closed"));
  return { registered: true };
}

function deregister(s: BrokerServices, session: Session): Reply {
  return { deregistered: s.clients.deregister(session.id) !== undefined };
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
