/**
 * Native `produce` and `init_producer`: a batch's records checked against the
 * topic's limits, then `PartitionOps.appendBatch`, which orders, replicates
 * and acknowledges it.
 *
 * @module
 */
import type { BrokerServices } from "../broker/services.ts";
import { RecordRules } from "../broker/record_rules.ts";
import type { Acks } from "../broker/partition_ops.ts";
import { YakError } from "../errors.ts";
import type { RecordHeader, RecordInput } from "../log/record.ts";
import { int, optInt, optStr, type Reply, type Request } from "../protocol/messages.ts";
import { checkTopicName } from "./names.ts";
import { SEQ_MODULUS } from "../log/sequence.ts";

/** An issued producer id as decimal text (a safe integer, below 2^53). */
const ISSUED_ID = /^[0-9]{1,16}$/;

function acksOf(req: Request): Acks {
  const a = req.acks ?? "all";
  if (a === "all" || a === -1) return -1;
  if (a === 0 || a === 1) return a;
  throw new YakError("INVALID_REQUEST", "'acks' must be \"all\", 1 or 0");
}

/**
 * A native batch's records, checked for their form (a text or base64 value,
 * headers as pairs, at most the header caps, which bound the work of one
 * request); their sizes are checked by the service (appendBatch), as the
 * Kafka codec's are.
 */
function parseRecords(s: BrokerServices, topic: string, raw: unknown): RecordInput[] {
  const { maxBatchRecords } = s.opts;
  const rules = new RecordRules(topic, s.topics.configs(topic), s.opts.maxRecordBytes);
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
    if (typeof v === "string") {
      out[i] = { key, value: v };
    } else if (typeof bytes === "string") {
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

/**
 * A batch sent as lines (`lines: N` and an attachment of N values, each
 * ended by a newline; `yak produce`'s keyless text lines): the values go to
 * the log as the bytes that came, stored as text where they are UTF-8, else
 * base64, as a Kafka producer's are. Nothing is parsed per record here: the
 * leader reads the lines as it writes them (writeLines), and refuses the
 * batch then, before it takes offsets, when there are not N of them.
 */
function attachedLines(s: BrokerServices, req: Request, bytes: Uint8Array): { bytes: Uint8Array; count: number } {
  const count = int(req, "lines", 1, s.opts.maxBatchRecords);
  if (bytes.length === 0 || bytes[bytes.length - 1] !== NEWLINE) {
    throw new YakError("INVALID_REQUEST", "a produce's attached lines must each end in a newline");
  }
  if (bytes.length < count) {
    throw new YakError("INVALID_REQUEST", `'lines' says ${count} values, the attachment holds fewer`);
  }
  return { bytes, count };
}

const NEWLINE = 0x0a;

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

/**
 * `produce`: a batch to one partition, acknowledged after `acks` (all by
 * default), naming who acknowledged under which leader epoch.
 */
export async function produce(s: BrokerServices, req: Request): Promise<Reply> {
  s.requireLeader();
  const topic = checkTopicName(req.topic);
  const partition = int(req, "partition", 0, s.opts.maxPartitions - 1);
  const acks = acksOf(req);
  if (req.attachment !== undefined && req.records !== undefined) {
    throw new YakError("INVALID_REQUEST", "a produce carries 'records' or attached lines, not both");
  }
  const lines = req.attachment !== undefined ? attachedLines(s, req, req.attachment) : undefined;
  const records = lines ? [] : parseRecords(s, topic, req.records);
  const count = lines ? lines.count : records.length;
  // The server holds the request until we answer; it must not keep the batch alive that long.
  req.records = undefined;
  req.attachment = undefined;
  const producer = optStr(req, "producer", 64) ?? null;
  if (producer !== null && !ISSUED_ID.test(producer)) {
    throw new YakError(
      "UNKNOWN_PRODUCER_ID",
      "'producer' must be an id this cluster issued ('init_producer' answers one), as decimal text; a client that " +
        `names its own producer ('${producer.slice(0, 24)}') is older than this broker (before 2026-12-06): ` +
        "upgrade it",
    );
  }
  const baseSeq = producer === null ? 0 : int(req, "seq", 0, SEQ_MODULUS - 1);
  const producerEpoch = producer === null ? -1 : optInt(req, "producerEpoch", 0, 0, 32767);
  // `txn: true`: part of the producer's open transaction (init_producer with a transactionalId).
  const transactional = req.txn === true;
  const res = await s.partitions.appendBatch(
    { topic, partition },
    { records, lines, producerId: producer === null ? null : BigInt(producer), producerEpoch, baseSeq, transactional },
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

/** An idempotent producer's id, issued by the leader only: a follower's Kafka listener asks here for its clients. */
export async function initProducer(s: BrokerServices): Promise<Reply> {
  s.requireLeader();
  const id = await s.producerIds.issue(s.opts.requestTimeoutMs);
  return { producerId: String(id), producerEpoch: 0 };
}
