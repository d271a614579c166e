/**
 * DescribeConfigs (API 32), AlterConfigs (API 33) and
 * IncrementalAlterConfigs (API 44) over the broker's topic admin: the same
 * descriptions and the same `alter` that `yak topics --describe` and
 * `--alter` use. Topics (resource type 2) are described and altered on any
 * broker (a follower hands changes to the leader); a broker (type 4) is
 * described by itself, and its configs are start-time flags, so altering
 * one is refused.
 *
 * @module
 */
import { type ConfigEntry, type ConfigSource, describeBrokerConfigs } from "../broker/describe_configs.ts";
import {
  CONFIG_OPS,
  type ConfigChange,
  type ConfigOp,
  type ConfigType,
  incrementalChange,
  replacementChange,
} from "../broker/topic_config.ts";
import { YakError } from "../errors.ts";
import { adminErrorOf } from "./admin.ts";
import type { ApiRequest, KafkaContext } from "./context.ts";
import { KAFKA } from "./errors.ts";
import type { Reader, Writer } from "./wire.ts";

/** Kafka's config resource types. */
const TOPIC = 2;
const BROKER = 4;

/** DescribeConfigs' numbers for sources and types. */
const SOURCE: Record<ConfigSource, number> = { TOPIC_CONFIG: 1, STATIC_BROKER_CONFIG: 4, DEFAULT_CONFIG: 5 };
const TYPE: Record<ConfigType, number> = { BOOLEAN: 1, STRING: 2, INT: 3, LONG: 5, DOUBLE: 6, LIST: 7 };

/** One resource's answer: its configs (describe), or its error. */
interface ResourceResult {
  type: number;
  name: string;
  error: number;
  message: string | null;
  configs: ConfigEntry[];
}

/** A nullable array of strings (no tagged fields per element). */
function nullableStrings(r: Reader): string[] | null {
  const n = r.arrayLength(r.flexible ? 1 : 2);
  if (n === -1) return null;
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(r.string());
  return out;
}

function failed(type: number, name: string, err: unknown): ResourceResult {
  const e = err instanceof YakError && err.code === "UNKNOWN_TOPIC"
    ? { error: KAFKA.UNKNOWN_TOPIC_OR_PARTITION, message: err.message }
    : adminErrorOf(err);
  return { type, name, error: e.error, message: e.message, configs: [] };
}

function unsupportedType(type: number): YakError {
  return new YakError("INVALID_REQUEST", `resource type ${type} is not one yak has configs for (2 topic, 4 broker)`);
}

/** A broker resource names this broker (or "" for the cluster's dynamic defaults, of which yak has none). */
function describeBroker(ctx: KafkaContext, name: string, keys: string[] | null): ConfigEntry[] {
  const opts = ctx.services.opts;
  if (name === "") return [];
  if (name !== String(opts.id)) {
    throw new YakError("INVALID_REQUEST", `this is broker ${opts.id}: ask broker '${name}' for its own configs`);
  }
  return describeBrokerConfigs(opts, keys);
}

/** One resource's configs (those in `keys`, or all). */
function describeResource(ctx: KafkaContext, type: number, name: string, keys: string[] | null): ConfigEntry[] {
  if (type === TOPIC) return ctx.services.topics.describeConfigs(name, keys);
  if (type === BROKER) return describeBroker(ctx, name, keys);
  throw unsupportedType(type);
}

/** Handles DescribeConfigs v0-4 (v1 adds sources and synonyms, v3 types and documentation, v4 is flexible). */
export function describeConfigs(ctx: KafkaContext, req: ApiRequest, w: Writer): void {
  const { version: v, body: r } = req;
  const resources = r.array((r) => ({ type: r.int8(), name: r.string(), keys: nullableStrings(r) }), 4);
  const synonyms = v >= 1 ? r.bool() : false;
  const documentation = v >= 3 ? r.bool() : false;
  const results = resources.map((res): ResourceResult => {
    try {
      const configs = describeResource(ctx, res.type, res.name, res.keys);
      return { type: res.type, name: res.name, error: 0, message: null, configs };
    } catch (err) {
      return failed(res.type, res.name, err);
    }
  });
  w.int32(0);
  w.array(results, (w, res) => {
    w.int16(res.error).nullableString(res.message).int8(res.type).string(res.name);
    w.array(res.configs, (w, c) => {
      w.string(c.name).nullableString(c.value).bool(c.readOnly);
      // v0 has no source, only "is default": for a topic, whether the topic leaves it unset.
      if (v === 0) w.bool(res.type === TOPIC ? c.source !== "TOPIC_CONFIG" : c.source === "DEFAULT_CONFIG");
      else w.int8(SOURCE[c.source]);
      w.bool(c.sensitive);
      if (v >= 1) {
        w.array(synonyms ? c.synonyms : [], (w, s) => w.string(s.name).nullableString(s.value).int8(SOURCE[s.source]));
      }
      if (v >= 3) w.int8(TYPE[c.type]).nullableString(documentation ? c.doc : null);
    });
  });
}

/** Applies one resource's change; a broker's configs are start-time flags. */
async function alterResource(
  ctx: KafkaContext,
  type: number,
  name: string,
  change: (current: Record<string, string>) => ConfigChange,
  count: number,
  validateOnly: boolean,
): Promise<ResourceResult> {
  try {
    if (type === BROKER) {
      if (count > 0) {
        throw new YakError(
          "INVALID_CONFIG",
          `broker configs are flags of 'yak broker' (--min-insync-replicas, --retention-ms, ...), read when it ` +
            "starts: restart the broker with the flag to change one, or alter the topic's own config",
        );
      }
    } else if (type === TOPIC) {
      await ctx.services.topics.alterConfigsFromAnyBroker(name, change, validateOnly);
    } else throw unsupportedType(type);
    return { type, name, error: 0, message: null, configs: [] };
  } catch (err) {
    return failed(type, name, err);
  }
}

function writeAlterResults(w: Writer, results: ResourceResult[]): void {
  w.int32(0);
  w.array(results, (w, res) => w.int16(res.error).nullableString(res.message).int8(res.type).string(res.name));
}

/** Handles AlterConfigs v0-2 (v2 is flexible): each topic's configs become exactly the ones given. */
export async function alterConfigs(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const r = req.body;
  const resources = r.array((r) => ({
    type: r.int8(),
    name: r.string(),
    configs: r.array((r) => [r.string(), r.nullableString()] as [string, string | null], 2),
  }), 4);
  const validateOnly = r.bool();
  const results: ResourceResult[] = [];
  for (const res of resources) {
    const change = (current: Record<string, string>) => replacementChange(current, res.configs);
    results.push(await alterResource(ctx, res.type, res.name, change, res.configs.length, validateOnly));
  }
  writeAlterResults(w, results);
}

/** Handles IncrementalAlterConfigs v0-1 (v1 is flexible): SET, DELETE, APPEND and SUBTRACT per config. */
export async function incrementalAlterConfigs(ctx: KafkaContext, req: ApiRequest, w: Writer): Promise<void> {
  const r = req.body;
  const resources = r.array((r) => ({
    type: r.int8(),
    name: r.string(),
    ops: r.array((r) => ({ name: r.string(), code: r.int8(), value: r.nullableString() }), 3),
  }), 4);
  const validateOnly = r.bool();
  const results: ResourceResult[] = [];
  for (const res of resources) {
    const change = (current: Record<string, string>) => {
      const ops = res.ops.map((o): ConfigOp => {
        const op = CONFIG_OPS[o.code];
        if (op === undefined) throw new YakError("INVALID_REQUEST", `config '${o.name}': unknown operation ${o.code}`);
        return { name: o.name, op, value: o.value };
      });
      return incrementalChange(current, ops);
    };
    results.push(await alterResource(ctx, res.type, res.name, change, res.ops.length, validateOnly));
  }
  writeAlterResults(w, results);
}
