/**
 * Protocol fuzzing against a live cluster: thousands of generated frames
 * (random bytes, truncated JSON, wrong shapes, 10,000-deep nesting, wrong
 * field types for every request type, huge and odd numbers, long strings) on
 * several raw connections to the leader broker and to the zookeeper, plus
 * frames over the size limit, a stalled half frame, a client that never reads
 * its replies, and 300 connections at once, in several rounds. Every reply
 * must be a JSON object with a boolean `ok` and, on errors, a known `code`;
 * every request must be answered (or, with `noReply`, not). Afterwards the
 * cluster must be whole: same processes, same lease, memory levelled off (no
 * growth over the last round), the record produced before the fuzzing
 * byte-identical, and a fresh round trip.
 *
 * Requests that are valid and would change the cluster (a zookeeper
 * register/heartbeat/isr for brokers 1-3, replicate/epoch_end in the current
 * epoch, writes outside the fuzz topics, long polls) are never sent.
 *
 * The generator is seeded: the seed is printed, and `YAK_FUZZ_SEED=N` replays it.
 *
 * Run: deno test --allow-net --allow-read --allow-write --allow-env --allow-run tests/fuzz_test.ts
 *
 * @module
 */
import { Rng } from "./rng.ts";
import assert from "node:assert/strict";
import { FrameReader, writeAll } from "../src/protocol/frame.ts";
import { parseRequest } from "../src/protocol/messages.ts";
import { memoryOf, type RunResult, TestCluster, Waiters, withDeadline, yak } from "./harness.ts";
import { Inspector } from "./inspector.ts";

const encoder = new TextEncoder();

/** Every code of src/protocol/errors.ts. */
const KNOWN_CODES = new Set([
  "NOT_LEADER",
  "NO_LEADER",
  "UNKNOWN_TOPIC",
  "INVALID_TOPIC",
  "UNKNOWN_PARTITION",
  "MESSAGE_TOO_LARGE",
  "FRAME_TOO_LARGE",
  "OUT_OF_RANGE",
  "STALE_EPOCH",
  "OUT_OF_ORDER_SEQUENCE",
  "UNKNOWN_PRODUCER_ID",
  "INVALID_PRODUCER_EPOCH",
  "INVALID_REQUEST",
  "UNKNOWN_REQUEST",
  "INVALID_ARGUMENT",
  "TIMEOUT",
  "CONNECTION",
  "STORAGE",
  "CORRUPT_LOG",
  "TOO_MANY_CONNECTIONS",
  "UNAUTHORIZED",
  "UNAVAILABLE",
  "NOT_ENOUGH_REPLICAS",
  "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
  "BROKER_ID_IN_USE",
  "INVALID_CONFIG",
  "MEMBER_ID_REQUIRED",
  "UNKNOWN_MEMBER_ID",
  "ILLEGAL_GENERATION",
  "REBALANCE_IN_PROGRESS",
  "INCONSISTENT_GROUP_PROTOCOL",
  "GROUP_NOT_EMPTY",
  "GROUP_ID_NOT_FOUND",
  "GROUP_MAX_SIZE_REACHED",
  // INTERNAL is left out on purpose: a fuzzed frame that breaks an invariant is a bug.
]);

const BROKER_FRAME_LIMIT = 16 * 1024 * 1024;
const ZK_FRAME_LIMIT = 1024 * 1024;
/** Connections per target for the pipelined fuzzing, and frames on each. */
const FUZZ_CONNS = 4;
const FRAMES_PER_CONN = 400;
/** Replies a fuzz connection may wait for before it sends more. */
const WINDOW = 300;
/**
 * Rounds of abuse (300 connections, size limits, fuzzing, a silent reader);
 * the frames above are per round. YAK_FUZZ_ROUNDS=N runs more.
 */
const ROUNDS = Math.max(3, Number(Deno.env.get("YAK_FUZZ_ROUNDS") ?? 4));
/**
 * RSS growth per round that, kept up over each of the last two rounds, counts
 * as a leak. Freed memory is not all given back to the system: V8 keeps the
 * heap it grew to, and malloc keeps freed buffers (e.g. the 256 KiB read
 * buffer of each of the 300 connections, 75 MiB), so RSS climbs for two or
 * three rounds (to roughly start + 180-220 MB here) and then moves up and
 * down by up to 70 MB a round as malloc's high-water mark shifts (seen:
 * 191 -> 144 -> 209, and back). A leak or unbounded buffering keeps growing
 * round after round; that noise jumps once and falls back.
 */
const RSS_GROWTH_MB = 32;
/** RSS allowed over the start, at the end: a net for runaway growth within the first rounds. */
const RSS_CEILING_MB = 320;

// ---------------------------------------------------------------------------
// Values, as JSON text (so -0, 1e309 and 2**53+1 are sent exactly as written).

const NUMBERS = (
  "0 -0 1 -1 2 3 1.5 -0.5 0.1 1.0 1e0 1E2 1e308 -1e308 1e309 -1e309 5e-324 1e-320 9007199254740991 " +
  "9007199254740992 9007199254740993 -9007199254740993 123456789012345678901234567890 2147483648 " +
  "4294967296 65535 65536 999 1000 1001 1000000 1000001 30000 30001 4194304 4194305 16777217"
).split(" ");

const STRINGS = [
  "",
  "x",
  "fuzz",
  "keep",
  "fuzz-ct",
  "__cluster",
  "__cluster/0",
  "keep/0",
  "fuzz/0",
  ".",
  "..",
  "a/b",
  "../../etc/passwd",
  "NaN",
  "Infinity",
  "-Infinity",
  "-0",
  "1e308",
  "9007199254740993",
  "0",
  "00",
  " 0",
  "1.5",
  "-1",
  "1",
  "all",
  "none",
  "producer",
  "consumer",
  "metadata",
  "127.0.0.1",
  "ü",
  "日本語",
  "😀",
  "\u0000",
  "a\u0000b",
  "\ud800",
  "\udfff",
  'a"b',
  "\\",
  "\r",
  "\n",
  "\t",
  "\u2028",
  "\ufeff",
  "%s%n%x",
  "${x}",
  "<script>",
  "__proto__",
  "constructor",
  "toString",
  "x".repeat(64),
  "x".repeat(65),
  "t".repeat(249),
  "t".repeat(250),
  "s".repeat(1025),
];

const KEYS = [
  "id",
  "type",
  "topic",
  "partition",
  "records",
  "offsets",
  "epoch",
  "brokerId",
  "noReply",
  "__proto__",
  "constructor",
  "v",
  "k",
  "b",
  "0",
  "",
  "😀",
];

const BROKER_TYPES = [
  "produce",
  "init_producer",
  "fetch",
  "metadata",
  "list_offsets",
  "commit",
  "committed",
  "create_topic",
  "alter_topic",
  "register",
  "deregister",
  "status",
  "replicate",
  "epoch_end",
] as const;
const ZK_TYPES = ["register", "heartbeat", "isr", "metadata", "status"] as const;
const ODD_TYPES = [
  "",
  "PRODUCE",
  "Metadata",
  "auth",
  "push",
  "lease",
  "__proto__",
  "constructor",
  "hasOwnProperty",
  "toString",
  "x".repeat(64),
  "x".repeat(65),
  "metadata\u0000",
  " metadata",
  "😀",
];

const q = (s: string) => JSON.stringify(s);

function randomText(rng: Rng, maxChars: number): string {
  const n = rng.int(maxChars + 1);
  let out = "";
  for (let i = 0; i < n; i++) {
    const r = rng.int(10);
    if (r < 5) out += String.fromCharCode(0x20 + rng.int(95));
    else if (r < 7) out += String.fromCharCode(rng.int(0x20));
    else if (r < 8) out += String.fromCharCode(0xd800 + rng.int(0x800)); // lone surrogates
    else if (r < 9) out += String.fromCodePoint(0x80 + rng.int(0x10ff7f - 0x80 - 0x800));
    else out += rng.pick(['"', "\\", "{", "}", "[", "]", ":", ","]);
  }
  return out;
}

function deep(rng: Rng): string {
  const depth = rng.pick([50, 1000, 10_000, 10_000]);
  switch (rng.int(3)) {
    case 0:
      return "[".repeat(depth) + "]".repeat(depth);
    case 1:
      return '{"a":'.repeat(depth) + "1" + "}".repeat(depth);
    default:
      return '[{"x":'.repeat(depth) + "null" + "}]".repeat(depth);
  }
}

function anyValue(rng: Rng, depth = 0): string {
  switch (rng.int(12)) {
    case 0:
      return "null";
    case 1:
      return rng.pick(["true", "false"]);
    case 2:
    case 3:
      return rng.pick(NUMBERS);
    case 4:
    case 5:
      return q(rng.pick(STRINGS));
    case 6:
      return depth > 3 ? "[]" : `[${Array.from({ length: rng.int(4) }, () => anyValue(rng, depth + 1)).join(",")}]`;
    case 7:
      return depth > 3
        ? "{}"
        : `{${Array.from({ length: rng.int(4) }, () => `${q(rng.pick(KEYS))}:${anyValue(rng, depth + 1)}`).join(",")}}`;
    case 8:
      return rng.chance(0.3) ? deep(rng) : rng.pick(['{"toString":1}', '{"valueOf":1,"toString":1}', "[[[]]]"]);
    case 9:
      return q(randomText(rng, 40));
    case 10:
      return rng.pick(['"NaN"', '"1e308"', '"-0"', '"0x10"', "[0]", '{"0":0}', "[null]", "{}", "[]"]);
    default:
      return String(rng.int(2000) - 1000);
  }
}

/** A long string value: up to ~1 MB of JSON for brokers, well under the zookeeper's 1 MiB frame limit. */
function longString(rng: Rng, target: Target): string {
  const bytes = 10_000 + rng.int(target === "broker" ? 1_000_000 : 600_000);
  // Each unit with its size in the frame: "é" is 2 bytes of UTF-8, NUL 6 as "\u0000".
  const [unit, size] = rng.pick([["x", 1], ["é", 2], ["😀", 4], ["\u0000", 6], ['"', 2]] as const);
  return q(unit.repeat(Math.floor(bytes / size)));
}

type Target = "broker" | "zookeeper";
type Gen = (rng: Rng) => string;

/** Good (well-typed, harmless) values of each field, by request type. */
function fieldsOf(type: string, target: Target, epoch: number): Record<string, Gen> {
  const small = (n: number): Gen => (rng) => String(rng.int(n));
  const staleEpoch: Gen = (rng) => rng.pick(["0", String(epoch + 100 + rng.int(1000))]);
  const records: Gen = (rng) =>
    `[${
      Array.from({ length: 1 + rng.int(3) }, () =>
        rng.pick([
          () => `{"v":${q(randomText(rng, 30))}}`,
          () => `{"k":${q(randomText(rng, 10))},"v":"fz"}`,
          () => `{"k":null,"v":""}`,
          () => `{"b":"aGVsbG8="}`,
          () => `{"b":""}`,
        ])()).join(",")
    }]`;
  if (target === "zookeeper") {
    switch (type) {
      case "register":
        return {
          brokerId: (rng) => rng.pick(["1", "2", "3", "4", "1000000"]),
          host: () => q("127.0.0.1"),
          port: (rng) => rng.pick(["1", "9092", "65535"]),
          epoch: staleEpoch,
          logEndTotal: small(100),
          leading: (rng) => rng.pick(["true", "false"]),
        };
      case "heartbeat":
        return { brokerId: (rng) => rng.pick(["4", "5", "77", "1000000"]), logEndTotal: small(100) };
      case "isr":
        return {
          brokerId: (rng) => rng.pick(["1", "2", "3"]),
          epoch: staleEpoch,
          isr: (rng) => rng.pick(["[1,2,3]", "[]", "[1]", "[2,3]"]),
        };
      default:
        return {};
    }
  }
  switch (type) {
    case "produce":
      return {
        topic: () => q("fuzz"),
        partition: small(3),
        acks: (rng) => rng.pick(['"all"', "1", "0", "-1"]),
        records,
        // A made-up name, or a made-up id: neither was issued, so both are refused.
        producer: (rng) => q(rng.pick(["fuzz-p", "12345", "9007199254740993"])),
        seq: small(6),
      };
    case "fetch":
      return {
        topic: (rng) => q(rng.pick(["keep", "fuzz", "__cluster"])),
        offsets: (rng) => rng.pick(['{"0":0}', '{"0":0,"1":0,"2":0}', '{"1":1}', "{}"]),
        maxBytes: (rng) => rng.pick(["1", "100", "4194304"]),
        maxWaitMs: (rng) => rng.pick(["0", "20", "100"]),
      };
    case "metadata":
      return { topic: (rng) => q(rng.pick(["keep", "fuzz"])), create: (rng) => rng.pick(["true", "false"]) };
    case "list_offsets":
      return { topic: (rng) => q(rng.pick(["keep", "fuzz", "nothere"])) };
    case "commit":
      return { group: () => q("fuzz-g"), topic: () => q("fuzz"), offsets: (rng) => rng.pick(['{"0":0}', "{}"]) };
    case "committed":
      return { group: () => q("fuzz-g"), topic: (rng) => q(rng.pick(["keep", "fuzz"])) };
    case "create_topic":
      return { topic: () => q("fuzz-ct"), partitions: (rng) => String(1 + rng.int(4)) };
    case "alter_topic":
      return { topic: () => q("fuzz"), partitions: (rng) => String(1 + rng.int(6)) };
    case "register":
      return {
        role: (rng) => q(rng.pick(["producer", "consumer"])),
        client: () => q("fuzz-c"),
        topic: () => q("fuzz"),
        group: () => q("fuzz-g"),
      };
    case "replicate":
      return {
        epoch: staleEpoch,
        brokerId: (rng) => rng.pick(["2", "3", "4"]),
        offsets: () => '{"fuzz/0":0}',
        hw: () => "{}",
        maxBytes: () => "1000",
        maxWaitMs: () => "0",
      };
    case "epoch_end":
      return { epoch: staleEpoch, epochs: () => '{"fuzz/0":1,"__cluster/0":1}' };
    default:
      return {};
  }
}

/** What the fuzzer knows of the cluster, to stay clear of valid requests that would change it. */
interface ClusterView {
  leaderId: number;
  epoch: number;
}

const NAME = /^[A-Za-z0-9._-]{1,249}$/;
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const optIntOk = (v: unknown) => v === undefined || v === null || (isInt(v) && v >= 0);

/**
 * Generates frames for one connection. Every frame is one line (no "\n");
 * requests that could be valid and change the cluster are regenerated.
 */
class FrameGen {
  readonly rng: Rng;
  readonly target: Target;
  readonly view: ClusterView;
  nextId = 1;
  writes = 0;
  commits = 0;
  readonly kinds = new Map<string, number>();

  constructor(rng: Rng, target: Target, view: ClusterView) {
    this.rng = rng;
    this.target = target;
    this.view = view;
  }

  frame(): Uint8Array {
    // Frames over the limit are tested on their own: here every frame is read.
    const limit = this.target === "broker" ? 4 * 1024 * 1024 : ZK_FRAME_LIMIT - 1024;
    for (let attempt = 0; attempt < 50; attempt++) {
      const [kind, f] = this.#candidate();
      const bytes = typeof f === "string" ? encoder.encode(f) : f;
      if (bytes.length > limit || this.#dangerous(typeof f === "string" ? f : lineDecoder.decode(f))) continue;
      bump(this.kinds, kind);
      return bytes;
    }
    bump(this.kinds, "fallback metadata");
    return encoder.encode(`{"id":${this.nextId++},"type":"metadata"}`);
  }

  #candidate(): [string, string | Uint8Array] {
    const rng = this.rng;
    const r = rng.next();
    if (r < 0.12) return ["random bytes", this.#randomBytes()];
    if (r < 0.22) return ["truncated/mutated JSON", this.#truncated()];
    if (r < 0.32) return ["wrong shape", this.#wrongShape()];
    if (r < 0.33) return ["long string field", this.#request(longString(rng, this.target))];
    return ["request with fuzzed fields", this.#request()];
  }

  #randomBytes(): Uint8Array {
    const rng = this.rng;
    const special = [0x00, 0x0d, 0xff, 0xfe, 0xc0, 0xc1, 0xc3, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x22, 0x7b, 0x7d, 0x5c];
    const n = rng.pick([0, 1, 2, 16, 100, 256, rng.int(2000)]);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      const b = rng.chance(0.3) ? rng.pick(special) : rng.int(256);
      out[i] = b === 0x0a ? 0x0d : b;
    }
    if (n > 0 && rng.chance(0.2)) out[0] = 0x7b; // "{"
    return out;
  }

  #truncated(): string {
    const rng = this.rng;
    const whole = this.#request();
    if (rng.chance(0.5)) return whole.slice(0, rng.int(whole.length));
    // Or one character replaced by JSON punctuation or a control character.
    const at = rng.int(whole.length);
    const ch = rng.pick(["{", "}", "[", "]", '"', ":", ",", "\\", "\r", "\u0000", "\t", "'", " "]);
    return whole.slice(0, at) + ch + whole.slice(at + 1);
  }

  #wrongShape(): string {
    const rng = this.rng;
    switch (rng.int(6)) {
      case 0:
        return anyValue(rng);
      case 1:
        return deep(rng);
      case 2:
        return rng.pick([
          "[]",
          "[1,2,3]",
          "null",
          "true",
          "0",
          "-0",
          "1e308",
          '"metadata"',
          "{}",
          '{"id":1}',
          '{"type":"metadata"}',
          '{"id":null,"type":"metadata"}',
          '{"id":"1","type":"metadata"}',
          '{"id":1,"type":["metadata"]}',
          '{"id":1,"type":{"type":"metadata"}}',
          "[{},{}]",
          "\r",
          "\r\r",
          " ",
          "",
          "\ufeff{}",
          "{}{}",
          '{"id":1,"type":"metadata"} x',
          "NaN",
          "Infinity",
          "undefined",
        ]);
      case 3:
        return `{"id":${this.nextId++},"type":${q(rng.pick(BROKER_TYPES))},"x":${deep(rng)}}`;
      case 4:
        return `[${this.#request()}]`;
      default:
        return `{"id":${this.#id()},"type":${anyValue(rng)}}`;
    }
  }

  #id(): string {
    const rng = this.rng;
    if (rng.chance(0.92)) return String(this.nextId++);
    return rng.pick([
      "-1",
      "1.5",
      '"1"',
      "null",
      "0",
      "-0",
      "9007199254740991",
      "9007199254740992",
      "1e308",
      "[]",
      "{}",
      "true",
    ]);
  }

  /** A request of a type the target knows (mostly) with each field good, bad or missing. */
  #request(longValue?: string): string {
    const rng = this.rng;
    const known: readonly string[] = this.target === "broker" ? BROKER_TYPES : ZK_TYPES;
    const r = rng.next();
    const type = r < 0.8 ? rng.pick(known) : r < 0.9 ? rng.pick(ODD_TYPES) : rng.pick(BROKER_TYPES);
    const fields = fieldsOf(type, this.target, this.view.epoch);
    const parts: string[] = [];
    if (!rng.chance(0.02)) parts.push(`"id":${this.#id()}`);
    if (!rng.chance(0.02)) parts.push(`"type":${rng.chance(0.03) ? anyValue(rng) : q(type)}`);
    for (const [name, good] of Object.entries(fields)) {
      const p = rng.next();
      if (p < 0.65) parts.push(`${q(name)}:${good(rng)}`);
      else if (p < 0.9) parts.push(`${q(name)}:${anyValue(rng)}`);
    }
    if (longValue !== undefined) {
      const names = Object.keys(fields);
      const name = names.length > 0 && rng.chance(0.8) ? rng.pick(names) : rng.pick(["type", "pad", "id"]);
      parts.push(`${q(name)}:${longValue}`);
    }
    if (rng.chance(0.1)) {
      for (let i = 1 + rng.int(3); i > 0; i--) parts.push(`${q(rng.pick(KEYS))}:${anyValue(rng)}`);
    }
    if (rng.chance(0.04)) parts.push(`"noReply":${rng.pick(["true", "false", "1", "0", '"x"', "null"])}`);
    if (rng.chance(0.2)) {
      for (let i = parts.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [parts[i], parts[j]] = [parts[j], parts[i]];
      }
    }
    return `{${parts.join(",")}}`;
  }

  /** Whether a frame could be a valid request that changes the cluster (or waits long). */
  #dangerous(text: string): boolean {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return false;
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
    const r = v as Record<string, unknown>;
    const { epoch, leaderId } = this.view;
    if (this.target === "zookeeper") {
      switch (r.type) {
        case "register":
          return isInt(r.brokerId) && r.brokerId >= 1 && r.brokerId <= 1_000_000 &&
            typeof r.host === "string" && r.host.length <= 255 &&
            isInt(r.port) && r.port >= 1 && r.port <= 65535 && optIntOk(r.epoch) && optIntOk(r.logEndTotal);
        case "heartbeat":
          // A real broker's heartbeat refreshes it even when a later field is bad.
          return isInt(r.brokerId) && r.brokerId >= 1 && r.brokerId <= 3;
        case "isr":
          return r.brokerId === leaderId && isInt(r.epoch) && r.epoch >= epoch && r.epoch <= epoch + 5;
        default:
          return false;
      }
    }
    if ((r.type === "replicate" || r.type === "epoch_end") && isInt(r.epoch) && r.epoch >= epoch) {
      return r.epoch <= epoch + 5;
    }
    // A long poll would hold a slot for up to 30 s.
    if (isInt(r.maxWaitMs) && r.maxWaitMs > 300 && r.maxWaitMs <= 30_000) return true;
    const writes = r.type === "produce" || r.type === "create_topic" || r.type === "alter_topic" ||
      r.type === "commit" || (r.type === "metadata" && r.create === true);
    if (!writes) return false;
    if (typeof r.topic === "string" && NAME.test(r.topic) && r.topic !== "fuzz" && r.topic !== "fuzz-ct") return true;
    if ((r.type === "create_topic" || r.type === "alter_topic") && isInt(r.partitions) && r.partitions > 8) return true;
    if (r.type === "produce" && r.topic === "fuzz" && Array.isArray(r.records) && r.records.length > 0) {
      if (text.length > 4096 || this.writes >= 100) return true;
      this.writes++;
    }
    if (r.type === "commit" && r.topic === "fuzz") {
      if (this.commits >= 50) return true;
      this.commits++;
    }
    return false;
  }
}

// ---------------------------------------------------------------------------
// Raw connections.

/** Response counts by code ("ok" for successes), and what went wrong. */
class Tally {
  readonly counts = new Map<string, number>();
  readonly problems: string[] = [];
  readonly examples = new Map<string, string>();
  /** Replies by request type, then code. */
  readonly byType = new Map<string, Map<string, number>>();
  /** Frames by what the generator made. */
  readonly kinds = new Map<string, number>();
  sent = 0;
  bytes = 0;
  replies = 0;
  abandoned = 0;

  problem(text: string): void {
    if (this.problems.length < 30) this.problems.push(text);
  }

  count(key: string, request?: string, type?: string): void {
    bump(this.counts, key);
    if (request !== undefined && !this.examples.has(key)) this.examples.set(key, clip(request, 160));
    if (type !== undefined) {
      const t = KNOWN_TYPES.has(type) || type.startsWith("(") ? type : "(other types)";
      if (!this.byType.has(t)) this.byType.set(t, new Map());
      bump(this.byType.get(t)!, key);
    }
  }

  table(): string {
    return table(this.counts);
  }
}

function bump(m: Map<string, number>, key: string, n = 1): void {
  m.set(key, (m.get(key) ?? 0) + n);
}

function table(m: Map<string, number>): string {
  return [...m.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k}=${n}`).join(" ");
}

const KNOWN_TYPES = new Set<string>([...BROKER_TYPES, ...ZK_TYPES]);

function clip(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n)}... (${text.length} chars)` : text;
}

const lineDecoder = new TextDecoder();

/**
 * A frame the server sends unasked, no reply: the zookeeper's new lease or broker list, pushed to every
 * connection registered as a broker, which a fuzzed `register` frame may have made this one.
 */
function isPush(line: string): boolean {
  try {
    const f = JSON.parse(line);
    return typeof f === "object" && f !== null && (f.push === "lease" || f.push === "brokers") &&
      f.id === undefined && f.ok === undefined;
  } catch {
    return false;
  }
}

/** Checks one reply line: JSON, `ok` boolean, a known `code` and a `message` on errors. */
function checkReply(line: string, tally: Tally, what: string): Record<string, unknown> | null {
  let frame: unknown;
  try {
    frame = JSON.parse(line);
  } catch {
    tally.problem(`${what}: reply is not JSON: ${clip(line, 200)}`);
    return null;
  }
  if (typeof frame !== "object" || frame === null || Array.isArray(frame)) {
    tally.problem(`${what}: reply is not an object: ${clip(line, 200)}`);
    return null;
  }
  const f = frame as Record<string, unknown>;
  if (typeof f.ok !== "boolean") {
    tally.problem(`${what}: reply without a boolean ok: ${clip(line, 200)}`);
    return null;
  }
  if (!f.ok && (typeof f.code !== "string" || !KNOWN_CODES.has(f.code) || typeof f.message !== "string")) {
    tally.problem(`${what}: error without a known code and a message: ${clip(line, 200)}`);
    return null;
  }
  if (f.id !== null && !isInt(f.id)) {
    tally.problem(`${what}: reply id is neither null nor an integer: ${clip(line, 200)}`);
    return null;
  }
  return f;
}

/** The raw bytes after a fetch reply: as many as its parts announce, each a stored record line. */
function checkAttachment(f: Record<string, unknown>, data: Uint8Array, tally: Tally, what: string): void {
  const parts = Array.isArray(f.parts) ? f.parts as { len?: unknown; count?: unknown }[] : [];
  const announced = parts.reduce((n, p) => n + (typeof p.len === "number" ? p.len : 0), 0);
  const records = parts.reduce((n, p) => n + (typeof p.count === "number" ? p.count : 0), 0);
  const lines = lineDecoder.decode(data).split("\n");
  if (announced !== data.length || lines.pop() !== "" || lines.length !== records) {
    tally.problem(
      `${what}: attachment of ${data.length} bytes, ${lines.length} lines for ${clip(JSON.stringify(f), 300)}`,
    );
    return;
  }
  for (const l of lines) {
    try {
      if (!isInt(JSON.parse(l).offset)) throw new Error("no offset");
    } catch {
      tally.problem(`${what}: attached record is not a stored record line: ${clip(l, 200)}`);
      return;
    }
  }
}

/** A reply that announces raw bytes after its line (stored records): `{"attach":N,...}`. */

/**
 * A raw TCP connection whose reply lines are read as they come, so the
 * socket never blocks. A reply line that starts with `{"attach":N,` is
 * followed by N raw bytes, handed over with it.
 */
class Wire {
  readonly conn: Deno.TcpConn;
  readonly lines: string[] = [];
  ended = false;
  onLine: ((line: string, attachment?: Uint8Array) => void) | null = null;
  readonly #waiters = new Waiters();
  readonly #pump: Promise<void>;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#pump = this.#read();
  }

  static async open(port: number): Promise<Wire> {
    return new Wire(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async #read(): Promise<void> {
    // The client side of the protocol's own framing: lines, and the raw bytes a reply announces.
    const reader = new FrameReader(this.conn, 64 * 1024 * 1024, 64 * 1024 * 1024);
    try {
      while (true) {
        const frames = await reader.nextFrames();
        if (frames === null) break;
        for (const { line, attachment } of frames) {
          if (this.onLine) this.onLine(line, attachment);
          else this.lines.push(line);
        }
        this.#notify();
      }
    } catch { /* reset by the peer, or closed by us */ }
    this.ended = true;
    this.#notify();
  }

  #notify(): void {
    this.#waiters.notify();
  }

  /** Resolves once `pred` holds (checked on every read), or rejects after `timeoutMs`. */
  async until(pred: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    await this.#waiters.until(
      () => pred() || undefined,
      timeoutMs,
      () => new Error(`${what()} within ${timeoutMs} ms`),
    );
  }

  write(data: string | Uint8Array): Promise<void> {
    return writeAll(this.conn, typeof data === "string" ? encoder.encode(data) : data);
  }

  /** The next reply line. */
  async next(timeoutMs = 10_000): Promise<string> {
    await this.until(() => this.lines.length > 0 || this.ended, timeoutMs, () => "no reply");
    const line = this.lines.shift();
    if (line === undefined) throw new Error("connection closed before a reply");
    return line;
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.conn.close();
      } catch { /* already closed */ }
    }
    await this.#pump;
  }
}

/**
 * One pipelined fuzz connection: knows which ids it waits for (via the
 * server's own parseRequest) and how many "id": null errors are due.
 */
class FuzzConn {
  readonly wire: Wire;
  readonly tally: Tally;
  readonly label: string;
  readonly #byId = new Map<string, { text: string; type: string; shared: boolean }[]>();
  #nullsDue = 0;
  outstanding = 0;

  constructor(wire: Wire, tally: Tally, label: string) {
    this.wire = wire;
    this.tally = tally;
    this.label = label;
    wire.onLine = (line, attachment) => this.#onLine(line, attachment);
  }

  #onLine(line: string, attachment?: Uint8Array): void {
    if (isPush(line)) return;
    this.tally.replies++;
    const f = checkReply(line, this.tally, this.label);
    if (!f) return;
    if (attachment) checkAttachment(f, attachment, this.tally, this.label);
    if ("push" in f) {
      this.tally.problem(`${this.label}: unexpected push ${clip(line, 200)}`);
      return;
    }
    const key = f.ok ? "ok" : String(f.code);
    if (f.id === null) {
      if (this.#nullsDue === 0 || f.ok || f.code !== "INVALID_REQUEST") {
        this.tally.problem(`${this.label}: unexpected id-null reply ${clip(line, 200)}`);
        return;
      }
      this.#nullsDue--;
      this.outstanding--;
      this.tally.count(key, undefined, "(unparsable)");
      return;
    }
    const waiting = this.#byId.get(String(f.id));
    const sent = waiting?.shift();
    if (sent === undefined) {
      this.tally.problem(`${this.label}: reply to an id nobody waits for: ${clip(line, 200)}`);
      return;
    }
    // The generator repeats a few ids (0, 2**53 - 1) on purpose: which of those requests a reply answers is a guess.
    const type = sent.shared ? "(repeated id)" : sent.type;
    if (waiting!.length === 0) this.#byId.delete(String(f.id));
    this.outstanding--;
    this.tally.count(key, sent.text, type);
    if (key === "UNAVAILABLE") {
      this.tally.problem(
        `${this.label}: UNAVAILABLE (a handler threw) for ${clip(sent.text, 300)}: ${clip(line, 200)}`,
      );
    }
  }

  /** Sends frames (each one line); `split` cuts the bytes into several writes. */
  async send(frames: Uint8Array[], split: boolean, rng: Rng): Promise<void> {
    for (const frame of frames) {
      let req;
      try {
        req = parseRequest(lineDecoder.decode(frame));
      } catch {
        this.#nullsDue++;
        this.outstanding++;
        continue;
      }
      if (req.noReply) continue;
      const key = String(req.id);
      const text = lineDecoder.decode(frame.length > 400 ? frame.subarray(0, 400) : frame);
      const list = this.#byId.get(key);
      if (list) {
        for (const other of list) other.shared = true;
        list.push({ text, type: req.type, shared: list.length > 0 });
      } else this.#byId.set(key, [{ text, type: req.type, shared: false }]);
      this.outstanding++;
    }
    let total = 0;
    for (const f of frames) total += f.length + 1;
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const f of frames) {
      bytes.set(f, at);
      at += f.length;
      bytes[at++] = 0x0a;
    }
    this.tally.sent += frames.length;
    this.tally.bytes += total;
    if (!split || total < 4) {
      await this.wire.write(bytes);
      return;
    }
    // Frames cut across writes, with a pause, so the server sees partial lines.
    const cuts = [...new Set([1 + rng.int(total - 2), 1 + rng.int(total - 2)])].sort((a, b) => a - b);
    let from = 0;
    for (const cut of [...cuts, total]) {
      await this.wire.write(bytes.subarray(from, cut));
      from = cut;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Requests sent but not answered, for the report of a hang. */
  waitingFor(): string {
    const sample = [...this.#byId.values()].flat().slice(0, 5).map((t) => clip(t.text, 200));
    return `${this.outstanding} replies (${this.#nullsDue} parse errors) outstanding, e.g. ${sample.join(" | ")}`;
  }

  async drain(timeoutMs: number): Promise<void> {
    await this.wire.until(
      () => this.outstanding <= 0 || this.wire.ended,
      timeoutMs,
      () => `${this.label}: ${this.waitingFor()}`,
    );
    if (this.outstanding > 0) {
      this.tally.problem(`${this.label}: connection closed by the server with ${this.waitingFor()}`);
    }
  }

  /** Closes with requests in flight: what is still due is no longer expected. */
  async abandon(): Promise<void> {
    await this.wire.close();
    this.tally.abandoned += Math.max(0, this.outstanding);
    this.outstanding = 0;
  }
}

/** Sends `frameCount` frames on one connection (reconnecting now and then), waiting for every reply. */
async function fuzzConnection(
  port: number,
  gen: FrameGen,
  tally: Tally,
  label: string,
  frameCount: number,
): Promise<void> {
  const rng = gen.rng;
  let fc = new FuzzConn(await Wire.open(port), tally, label);
  try {
    let sent = 0;
    while (sent < frameCount) {
      const n = Math.min(frameCount - sent, rng.pick([1, 1, 2, 8, 32, 64]));
      const frames = Array.from({ length: n }, () => gen.frame());
      await fc.send(frames, rng.chance(0.03), rng);
      sent += n;
      if (rng.chance(0.004)) {
        // Gone with requests in flight: the server must clean up, not crash.
        await fc.abandon();
        fc = new FuzzConn(await Wire.open(port), tally, label);
        continue;
      }
      if (fc.outstanding > WINDOW) {
        await fc.wire.until(
          () => fc.outstanding <= WINDOW / 2 || fc.wire.ended,
          20_000,
          () => `${label}: ${fc.waitingFor()}`,
        );
      }
      if (fc.wire.ended) {
        tally.problem(`${label}: the server closed the connection (${fc.waitingFor()})`);
        return;
      }
    }
    await fc.drain(20_000);
  } finally {
    await fc.wire.close();
    for (const [kind, n] of gen.kinds) bump(tally.kinds, kind, n);
  }
}

// ---------------------------------------------------------------------------
// Directed cases: exact codes for inputs that once went wrong or are edge cases.

interface Directed {
  line: string | Uint8Array;
  /** The code expected ("ok" for a success), and the reply id. */
  code: string;
  id: number | null;
}

function directedCases(target: Target, view: ClusterView): Directed[] {
  const deep10k = "[".repeat(10_000) + "]".repeat(10_000);
  const deep100k = "[".repeat(100_000) + "]".repeat(100_000);
  const deepObj = '{"a":'.repeat(10_000) + "1" + "}".repeat(10_000);
  const common: Directed[] = [
    { line: deep10k, code: "INVALID_REQUEST", id: null },
    { line: deep100k, code: "INVALID_REQUEST", id: null },
    { line: deepObj, code: "INVALID_REQUEST", id: null },
    { line: "\r", code: "INVALID_REQUEST", id: null },
    { line: new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xed, 0xa0, 0x80]), code: "INVALID_REQUEST", id: null },
    { line: '{"id":1e308,"type":"metadata"}', code: "INVALID_REQUEST", id: null },
    { line: '{"id":9007199254740993,"type":"metadata"}', code: "INVALID_REQUEST", id: null },
    { line: '{"id":-0,"type":"metadata"}', code: "ok", id: 0 },
    { line: '{"id":50,"type":"metadata","x":' + deep10k + "}", code: "ok", id: 50 },
    { line: '{"id":51,"type":"nope"}', code: "UNKNOWN_REQUEST", id: 51 },
    { line: '{"id":52,"type":"__proto__"}', code: "UNKNOWN_REQUEST", id: 52 },
    { line: '{"id":53,"type":"status","__proto__":{"type":"x"}}', code: "ok", id: 53 },
  ];
  if (target === "zookeeper") {
    return [
      ...common,
      { line: `{"id":1,"type":"heartbeat","brokerId":${deep10k}}`, code: "INVALID_REQUEST", id: 1 },
      { line: '{"id":2,"type":"register","brokerId":1,"host":"h","port":0}', code: "INVALID_REQUEST", id: 2 },
      { line: '{"id":3,"type":"register","brokerId":"1","host":"h","port":1}', code: "INVALID_REQUEST", id: 3 },
      {
        line: '{"id":4,"type":"register","brokerId":2,"host":{"toString":1},"port":1}',
        code: "INVALID_REQUEST",
        id: 4,
      },
      {
        line: `{"id":5,"type":"isr","brokerId":${view.leaderId},"epoch":${view.epoch + 1000},"isr":[1]}`,
        code: "STALE_EPOCH",
        id: 5,
      },
      { line: '{"id":6,"type":"heartbeat","brokerId":77}', code: "INVALID_REQUEST", id: 6 },
      { line: '{"id":7,"type":"heartbeat","brokerId":NaN}', code: "INVALID_REQUEST", id: null },
      { line: '{"id":8,"type":"produce","topic":"fuzz"}', code: "UNKNOWN_REQUEST", id: 8 },
      { line: '{"id":9,"type":"status"}', code: "ok", id: 9 },
    ];
  }
  return [
    ...common,
    { line: `{"id":1,"type":"fetch","topic":${deep10k},"offsets":{"0":0}}`, code: "INVALID_TOPIC", id: 1 },
    { line: '{"id":2,"type":"metadata","topic":{"toString":1}}', code: "INVALID_TOPIC", id: 2 },
    {
      line: '{"id":3,"type":"committed","group":{"toString":1,"valueOf":1},"topic":"keep"}',
      code: "INVALID_ARGUMENT",
      id: 3,
    },
    {
      line: `{"id":4,"type":"register","role":"producer","client":"c","topic":"fuzz","group":${deep10k}}`,
      code: "INVALID_ARGUMENT",
      id: 4,
    },
    {
      line: '{"id":5,"type":"produce","topic":"fuzz","partition":"NaN","records":[{"v":"x"}]}',
      code: "INVALID_REQUEST",
      id: 5,
    },
    { line: '{"id":6,"type":"fetch","topic":"keep","offsets":{"0":-1}}', code: "INVALID_REQUEST", id: 6 },
    { line: '{"id":7,"type":"fetch","topic":"keep","offsets":{"0":1e308}}', code: "INVALID_REQUEST", id: 7 },
    { line: '{"id":8,"type":"fetch","topic":"keep","offsets":{"0":9007199254740993}}', code: "INVALID_REQUEST", id: 8 },
    { line: '{"id":9,"type":"fetch","topic":"keep","offsets":{"-0":0}}', code: "UNKNOWN_PARTITION", id: 9 },
    { line: '{"id":10,"type":"fetch","topic":"keep","offsets":{"__proto__":0}}', code: "UNKNOWN_PARTITION", id: 10 },
    { line: '{"id":11,"type":"replicate","epoch":"1","brokerId":2,"offsets":{}}', code: "INVALID_REQUEST", id: 11 },
    { line: `{"id":12,"type":"epoch_end","epoch":${view.epoch + 1000},"epochs":{}}`, code: "STALE_EPOCH", id: 12 },
    { line: '{"id":13,"type":"create_topic","topic":"fuzz-x","partitions":1.5}', code: "INVALID_REQUEST", id: 13 },
    { line: '{"id":14,"type":"alter_topic","topic":"fuzz","partitions":1001}', code: "INVALID_REQUEST", id: 14 },
    { line: '{"id":15,"type":"list_offsets","topic":"a\\u0000b"}', code: "INVALID_TOPIC", id: 15 },
    {
      line: '{"id":16,"type":"fetch","topic":"keep","offsets":{"0":0},"maxWaitMs":30001}',
      code: "INVALID_REQUEST",
      id: 16,
    },
    { line: '{"id":17,"type":"fetch","topic":"keep","offsets":{"0":0},"maxBytes":0}', code: "INVALID_REQUEST", id: 17 },
    { line: '{"id":18,"type":"metadata","topic":"__cluster"}', code: "INVALID_TOPIC", id: 18 },
    { line: '{"id":19,"type":"fetch","topic":"keep","offsets":{"0":0}}', code: "ok", id: 19 },
    {
      line: '{"id":20,"type":"produce","topic":"fuzz","partition":0,"records":[{"v":"x","k":{"toString":1}}]}',
      code: "INVALID_REQUEST",
      id: 20,
    },
    {
      line: '{"id":21,"type":"produce","topic":"fuzz","partition":0,"records":[{"b":"%%%"}]}',
      code: "INVALID_REQUEST",
      id: 21,
    },
    { line: '{"id":22,"type":"deregister"}', code: "ok", id: 22 },
  ];
}

/** The next line that is a reply, pushes skipped (see {@link isPush}). */
async function nextReply(wire: { next(): Promise<string> }): Promise<string> {
  let line = await wire.next();
  while (isPush(line)) line = await wire.next();
  return line;
}

async function runDirected(port: number, target: Target, view: ClusterView, tally: Tally): Promise<void> {
  const wire = await Wire.open(port);
  try {
    for (const c of directedCases(target, view)) {
      const what = `${target} directed ${clip(typeof c.line === "string" ? c.line : `bytes ${c.line}`, 120)}`;
      await wire.write(typeof c.line === "string" ? `${c.line}\n` : new Uint8Array([...c.line, 0x0a]));
      const line = await nextReply(wire);
      const f = checkReply(line, tally, what);
      assert.ok(f, `${what}: ${tally.problems.at(-1)}`);
      assert.equal(f.ok ? "ok" : f.code, c.code, `${what}: ${clip(line, 300)}`);
      assert.equal(f.id, c.id, `${what}: ${clip(line, 300)}`);
      tally.count(c.code);
      tally.sent++;
    }
    // noReply: no reply at all, and the connection stays in step.
    await wire.write('{"id":100,"type":"metadata","noReply":true}\n{"id":101,"type":"metadata"}\n');
    const f = JSON.parse(await nextReply(wire));
    assert.equal(f.id, 101, `${target}: the noReply request was answered: ${JSON.stringify(f)}`);
    tally.sent += 2;
  } finally {
    await wire.close();
  }
}

// ---------------------------------------------------------------------------
// Size limits, stalls, silent readers, many connections.

/** `bytes` of "a" without a newline (after one good request): FRAME_TOO_LARGE, then the connection is closed. */
async function oversizeFrame(port: number, limit: number, who: string): Promise<void> {
  const wire = await Wire.open(port);
  try {
    await wire.write('{"id":1,"type":"metadata"}\n');
    const first = JSON.parse(await nextReply(wire));
    assert.equal(first.ok, true, `${who}: ${JSON.stringify(first)}`);
    const chunk = new Uint8Array(1 << 20).fill(0x61);
    const total = limit + 4096;
    try {
      for (let sent = 0; sent < total && !wire.ended;) {
        const n = Math.min(chunk.length, total - sent);
        await wire.write(chunk.subarray(0, n));
        sent += n;
      }
    } catch { /* closed by the server while we were writing */ }
    const line = await wire.next(15_000);
    const f = JSON.parse(line);
    assert.equal(f.ok, false, `${who}: ${line}`);
    assert.equal(f.code, "FRAME_TOO_LARGE", `${who}: ${line}`);
    assert.equal(f.id, null, `${who}: ${line}`);
    await wire.until(() => wire.ended, 10_000, () => `${who}: connection not closed after FRAME_TOO_LARGE`);
  } finally {
    await wire.close();
  }
}

/** A request of exactly `limit` bytes (newline excluded) is still served. */
async function frameAtLimit(port: number, limit: number, who: string): Promise<void> {
  const wire = await Wire.open(port);
  try {
    const head = '{"id":7,"type":"metadata","pad":"';
    const line = head + "p".repeat(limit - head.length - 2) + '"}';
    assert.equal(line.length, limit);
    await wire.write(line + "\n");
    const f = JSON.parse(await wire.next(15_000));
    assert.equal(f.ok, true, `${who}: frame of exactly ${limit} bytes: ${JSON.stringify(f)}`);
    assert.equal(f.id, 7);
  } finally {
    await wire.close();
  }
}

/**
 * Sends status requests and never reads a reply, until the server stops
 * reading (a write stalls) or `capBytes` are sent; the connection is left open.
 */
async function silentReader(
  port: number,
  capBytes: number,
  opened: Opened,
): Promise<{ sent: number; stalled: boolean }> {
  // Not a Wire: nothing may be read.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  opened.silent.push(conn);
  const batch = encoder.encode('{"id":1,"type":"status"}\n'.repeat(8192));
  let sent = 0;
  let stalled = false;
  while (sent < capBytes) {
    const w = writeAll(conn, batch).catch(() => {});
    const timedOut = await Promise.race([
      w.then(() => false),
      new Promise<boolean>((r) => setTimeout(() => r(true), 1500)),
    ]);
    if (timedOut) {
      stalled = true;
      opened.pending.push(w);
      break;
    }
    sent += batch.length;
  }
  return { sent, stalled };
}

/** Connections kept open across steps, closed together. */
class Opened {
  readonly wires: Wire[] = [];
  readonly silent: Deno.TcpConn[] = [];
  readonly pending: Promise<void>[] = [];
  readonly rounds: Opened[] = [];

  async closeAll(): Promise<void> {
    for (const r of this.rounds.splice(0)) await r.closeAll();
    for (const conn of this.silent.splice(0)) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await Promise.all(this.wires.splice(0).map((w) => w.close()));
    await Promise.all(this.pending.splice(0));
  }
}

/** `n` connections at once, each sending one metadata request: answered, or refused with TOO_MANY_CONNECTIONS. */
async function manyConnections(port: number, n: number, who: string): Promise<Map<string, number>> {
  const outcomes = new Map<string, number>();
  const bump = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  const wires: Wire[] = [];
  const late: Promise<unknown>[] = [];
  try {
    await Promise.all(Array.from({ length: n }, async (_, i) => {
      const opening = Wire.open(port);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const wire = await Promise.race([
        opening,
        new Promise<null>((r) => (timer = setTimeout(() => r(null), 10_000))),
      ]).catch(() => "refused" as const);
      clearTimeout(timer);
      if (wire === null) {
        late.push(opening.then((w) => w.close()).catch(() => {}));
        bump("connect timed out");
        return;
      }
      if (wire === "refused") {
        bump("connect refused");
        return;
      }
      wires.push(wire);
      try {
        await wire.write(`{"id":${i + 1},"type":"metadata"}\n`);
        const f = JSON.parse(await wire.next(10_000));
        if (f.ok === true && f.id === i + 1) bump("ok");
        else if (f.ok === false && f.code === "TOO_MANY_CONNECTIONS") bump("TOO_MANY_CONNECTIONS");
        else bump(`unexpected ${JSON.stringify(f).slice(0, 100)}`);
      } catch (err) {
        bump(`failed: ${err instanceof Error ? err.message.slice(0, 80) : err}`);
      }
    }));
  } finally {
    await Promise.all(wires.map((w) => w.close()));
    await Promise.all(late);
  }
  const bad = [...outcomes.keys()].filter((k) => k !== "ok" && k !== "TOO_MANY_CONNECTIONS");
  assert.deepEqual(bad, [], `${who}: ${n} connections at once: ${JSON.stringify([...outcomes])}`);
  return outcomes;
}

// ---------------------------------------------------------------------------

/** VmRSS of `pid` in MB. */
async function rssMb(pid: number): Promise<number> {
  const bytes = await memoryOf(pid, "VmRSS");
  assert.ok(bytes !== null, `no VmRSS for pid ${pid}`);
  return Math.round(bytes / 1024 / 1024);
}

function ok(res: RunResult, what: string): string {
  assert.equal(res.code, 0, `${what} exited ${res.code}: ${res.stderr}`);
  return res.stdout;
}

Deno.test("fuzzed frames against the live leader and zookeeper: every reply well-formed, the cluster unharmed", async () => {
  const envSeed = Deno.env.get("YAK_FUZZ_SEED");
  const seed = envSeed !== undefined ? Number(envSeed) >>> 0 : (Date.now() ^ (Math.random() * 2 ** 32)) >>> 0;
  console.log(`fuzz seed ${seed} (replay with YAK_FUZZ_SEED=${seed})`);
  const t0 = Date.now();
  // The brokers' inspectors: the leader's memory is sampled after a full collection (see leaderRss).
  const cluster = await TestCluster.start({ brokers: 3, brokerDenoFlags: ["--inspect=127.0.0.1:0"] });
  const opened = new Opened();
  const held: { inspector: Inspector | null } = { inspector: null };
  try {
    await withDeadline(100_000, "fuzz test", async () => {
      const zk = cluster.zkFlag;
      const message = `fuzz "keep" ‘quoted’ \\ \u00e9\u00e8 日本語 😀 tab\there 'single' {"json":[1]}`;
      ok(await yak(["produce", "--topic", "keep", "--message", message, ...zk], { timeoutMs: 20_000 }), "produce keep");
      const consumeKeep = ["consume", "--topic", "keep", "--from-beginning", "--max-messages", "1", "--format", "json"];
      const before = ok(
        await yak([...consumeKeep, "--timeout-ms", "10000", ...zk], { timeoutMs: 20_000 }),
        "consume keep",
      );
      assert.equal(JSON.parse(before).value, message, before);

      const lease0 = await cluster.waitFor((l) => l.leaderId !== null && l.isr.length === 3);
      const view: ClusterView = { leaderId: lease0.leaderId!, epoch: lease0.epoch };
      const leader = cluster.brokers.get(view.leaderId)!;
      const leaderPort = lease0.port;
      // RSS after a full collection: garbage V8 has not collected yet is not a leak. Sampled as it came, the
      // check tripped on 23-48 MB of dead ArrayBuffers waiting for the next scavenge (a leader that makes less
      // JavaScript garbage is scavenged less often), while the heap in use after a collection was the same.
      const leaderInspector = held.inspector = await Inspector.of(leader);
      await leaderInspector.call("HeapProfiler.enable");
      const leaderRss = async () => {
        await leaderInspector.call("HeapProfiler.collectGarbage");
        return await rssMb(leader.pid);
      };
      const rss0 = { leader: await leaderRss(), zk: await rssMb(cluster.zk.pid) };
      console.log(
        `leader broker ${view.leaderId} (pid ${leader.pid}, port ${leaderPort}), epoch ${view.epoch}; ` +
          `RSS before: leader ${rss0.leader.toFixed(1)} MB, zookeeper ${rss0.zk.toFixed(1)} MB`,
      );

      const targets: { target: Target; port: number; limit: number }[] = [
        { target: "broker", port: leaderPort, limit: BROKER_FRAME_LIMIT },
        { target: "zookeeper", port: cluster.zkPort, limit: ZK_FRAME_LIMIT },
      ];
      const tallies = new Map<Target, Tally>(targets.map((t) => [t.target, new Tally()]));

      // Half a frame, then silence, on both: kept open for the whole run. One whole request first: a
      // connection that never finishes one is closed at the auth deadline (src/protocol/listener.ts).
      const halves: Wire[] = [];
      for (const t of targets) {
        const w = await Wire.open(t.port);
        opened.wires.push(w);
        await w.write('{"id":424241,"type":"metadata"}\n');
        assert.equal(JSON.parse(await w.next()).id, 424241);
        await w.write('{"id":424242,"type":"metadata","pad":"half a fr');
        halves.push(w);
      }

      // Directed edge cases first, with exact codes.
      for (const t of targets) await runDirected(t.port, t.target, view, tallies.get(t.target)!);

      // The abuse, in ROUNDS identical rounds: memory a server merely keeps
      // (V8 heap capacity, malloc free lists) is reused by the next round; a
      // leak or unbounded buffering grows with every round.
      const many = new Map<Target, Map<string, number>[]>(targets.map((t) => [t.target, []]));
      const silentSent = new Map<Target, string[]>(targets.map((t) => [t.target, []]));
      const steps: string[] = [];
      const rssRounds: { leader: number; zk: number }[] = [];
      let fuzzMs = 0;
      const step = async (name: string) =>
        steps.push(`${name} ${(await rssMb(leader.pid)).toFixed(0)}/${(await rssMb(cluster.zk.pid)).toFixed(0)}`);
      for (let round = 0; round < ROUNDS; round++) {
        // 300 connections at once.
        for (const t of targets) many.get(t.target)!.push(await manyConnections(t.port, 300, t.target));
        await step(`r${round} 300 connections`);

        // Over the frame limit; exactly at it (the zookeeper's 1 MiB; 16 MiB
        // on the broker is the same code and would only inflate its heap).
        for (const t of targets) await oversizeFrame(t.port, t.limit, t.target);
        await frameAtLimit(cluster.zkPort, ZK_FRAME_LIMIT, "zookeeper");
        await step(`r${round} size limits`);

        // The fuzzing: FUZZ_CONNS connections per target at once, each with its own seeded generator.
        const fuzzStart = Date.now();
        await Promise.all(targets.flatMap((t, ti) =>
          Array.from({ length: FUZZ_CONNS }, (_, ci) => {
            const rng = new Rng(seed + 7919 * (round * 100 + ti * FUZZ_CONNS + ci + 1));
            const label = `${t.target}#${round}.${ci}`;
            return fuzzConnection(
              t.port,
              new FrameGen(rng, t.target, view),
              tallies.get(t.target)!,
              label,
              FRAMES_PER_CONN,
            );
          })
        ));
        fuzzMs += Date.now() - fuzzStart;
        await step(`r${round} fuzz`);

        // A client that never reads its replies: the server must stop reading, not queue replies without limit.
        const silentConns = new Opened();
        opened.rounds.push(silentConns);
        const silent = await Promise.all(targets.map((t) => silentReader(t.port, 8 * 1024 * 1024, silentConns)));
        for (const [i, s] of silent.entries()) {
          const what = `${(s.sent / 1048576).toFixed(1)} MB`;
          silentSent.get(targets[i].target)!.push(what);
          assert.ok(s.stalled, `${targets[i].target} read all ${what} of requests whose replies nobody reads`);
        }
        await step(`r${round} silent reader`);
        await silentConns.closeAll();
        await new Promise((r) => setTimeout(r, 1000));
        rssRounds.push({ leader: await leaderRss(), zk: await rssMb(cluster.zk.pid) });
        await step(`r${round} closed`);
      }

      // The stalled half frames are still live connections: finish them.
      for (const w of halves) {
        await w.write('ame"}\n');
        const f = JSON.parse(await w.next());
        assert.equal(f.id, 424242, JSON.stringify(f));
        assert.equal(f.ok, true, JSON.stringify(f));
      }
      await opened.closeAll();
      console.log(`RSS (leader/zookeeper, MB) after each step: ${steps.join(", ")}`);

      for (const t of targets) {
        const tally = tallies.get(t.target)!;
        const fuzzed = [...tally.kinds.values()].reduce((a, b) => a + b, 0);
        console.log(
          `${t.target}: ${tally.sent} frames sent (${tally.sent - fuzzed} directed, ${fuzzed} generated; ` +
            `${(tally.bytes / 1048576).toFixed(1)} MB generated, in ${fuzzMs} ms over ${ROUNDS} rounds of ` +
            `${FUZZ_CONNS} connections); ${tally.replies} replies to generated frames; ` +
            `${tally.abandoned} replies given up with connections closed on purpose`,
        );
        console.log(`  frames by kind: ${table(tally.kinds)}`);
        console.log(`  replies by code: ${tally.table()}`);
        console.log(`  replies by request type:`);
        for (const [type, codes] of [...tally.byType].sort()) console.log(`    ${type}: ${table(codes)}`);
        for (const [code, example] of tally.examples) console.log(`  e.g. ${code}: ${example}`);
        const rounds = many.get(t.target)!.map((m) => JSON.stringify(Object.fromEntries(m)));
        console.log(`  300 connections at once, per round: ${rounds.join(" ")}`);
        console.log(
          `  silent reader (never reads): the server stopped reading after ${silentSent.get(t.target)!.join(", ")}`,
        );
        assert.deepEqual(tally.problems, [], `${t.target}: problems`);
        assert.ok(tally.sent >= 5000, `${t.target}: only ${tally.sent} frames sent`);
      }

      // The cluster afterwards: same processes, same lease, memory levelled off, data intact.
      for (const [id, proc] of cluster.brokers) assert.equal(proc.exited, false, `broker ${id} exited`);
      assert.equal(cluster.zk.exited, false, "zookeeper exited");
      for (const proc of [leader, cluster.zk]) {
        const failed = proc.lines.filter((l) => l.includes("handler failed"));
        assert.deepEqual(failed.slice(0, 5), [], `${proc.name} logged handler failures`);
      }
      const lease1 = await cluster.waitFor((l) => l.isr.join() === "1,2,3" && l.leaderId !== null, 15_000);
      console.log(`lease after: leader ${lease1.leaderId}, epoch ${lease1.epoch}, isr [${lease1.isr}]`);
      if (lease1.epoch !== view.epoch) console.log(`note: the epoch moved from ${view.epoch} to ${lease1.epoch}`);
      const status = ok(await yak(["status", ...zk], { timeoutMs: 20_000 }), "status");
      assert.match(status, /^leader: \d+ {2}epoch: \d+ {2}in sync: \[1, 2, 3\]/, status);
      assert.equal(status.match(/^ *\d+ +\S+ +alive\b/gm)?.length, 3, status);
      assert.doesNotMatch(status, /DEAD/, status);

      // Memory: no sustained growth from one round of abuse to the next, and a ceiling over the start.
      await new Promise((r) => setTimeout(r, 1000));
      const rss1 = { leader: await leaderRss(), zk: await rssMb(cluster.zk.pid) };
      const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" -> ");
      console.log(
        `RSS (MB) at the start, after each round, at the end: leader ` +
          fmt([rss0.leader, ...rssRounds.map((r) => r.leader), rss1.leader]) +
          `; zookeeper ${fmt([rss0.zk, ...rssRounds.map((r) => r.zk), rss1.zk])}`,
      );
      for (const who of ["leader", "zk"] as const) {
        const start = rss0[who], end = rss1[who];
        // After each of the last three rounds: a leak grows through both of the last two.
        const [a, b, c] = rssRounds.slice(-3).map((r) => r[who]);
        assert.ok(
          !(b - a > RSS_GROWTH_MB && c - b > RSS_GROWTH_MB),
          `${who} RSS grew in each of the last two rounds: ${fmt([a, b, c])} MB`,
        );
        assert.ok(end <= start + RSS_CEILING_MB, `${who} RSS ${end} MB, ${start} MB at the start`);
      }

      const after = ok(
        await yak([...consumeKeep, "--timeout-ms", "10000", ...zk], { timeoutMs: 20_000 }),
        "consume keep after",
      );
      assert.equal(after, before, "the record produced before the fuzzing changed");

      const fresh = `after the fuzz ✓ "${seed}"`;
      ok(await yak(["produce", "--topic", "roundtrip", "--message", fresh, ...zk], { timeoutMs: 20_000 }), "produce");
      const back = ok(
        await yak(
          [
            "consume",
            "--topic",
            "roundtrip",
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "10000",
            ...zk,
          ],
          { timeoutMs: 20_000 },
        ),
        "consume roundtrip",
      );
      assert.equal(back, `${fresh}\n`);
      console.log(`fuzz test done in ${((Date.now() - t0) / 1000).toFixed(1)} s (seed ${seed})`);
    });
  } finally {
    held.inspector?.close();
    await opened.closeAll();
    await cluster.stop();
  }
});
