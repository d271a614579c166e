/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4) for
 * tests: it throws on anything a Prometheus server would refuse, and on
 * breaches of the naming conventions yak follows (`_total` on counters,
 * histogram series complete and cumulative).
 *
 * @module
 */

/** One sample line. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A metric family: its TYPE, HELP and samples. */
export interface PromFamily {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string | null;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, line: string): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`bad value '${text}' in: ${line}`);
  return Number(text);
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`bad labels in: ${line}`);
    const name = text.slice(i, eq).trim();
    if (!LABEL_NAME.test(name) || name.startsWith("__")) throw new Error(`bad label name '${name}' in: ${line}`);
    if (text[eq + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let j = eq + 2;
    let value = "";
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        if (next === "n") value += "\n";
        else if (next === "\\" || next === '"') value += next;
        else throw new Error(`bad escape in: ${line}`);
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`unterminated label value in: ${line}`);
    if (name in labels) throw new Error(`label '${name}' twice in: ${line}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (i < text.length) throw new Error(`expected ',' between labels in: ${line}`);
  }
  return labels;
}

function familyOf(sample: string, families: Map<string, PromFamily>): PromFamily | undefined {
  for (const suffix of ["_bucket", "_sum", "_count", ""]) {
    if (!sample.endsWith(suffix)) continue;
    const f = families.get(sample.slice(0, sample.length - suffix.length));
    if (f && (suffix === "" || f.type === "histogram" || f.type === "summary")) return f;
  }
  return undefined;
}

/**
 * Parses and checks exposition text; returns the families by name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parsePromText } from "./prom_text.ts";
 * const f = parsePromText("# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n");
 * assert.equal(f.get("x_total")!.samples[0].value, 3);
 * ```
 */
export function parsePromText(text: string): Map<string, PromFamily> {
  if (!text.endsWith("\n")) throw new Error("the text must end with a newline");
  const families = new Map<string, PromFamily>();
  const finished = new Set<string>();
  let current: string | null = null;
  const enter = (name: string) => {
    if (current === name) return;
    if (finished.has(name)) throw new Error(`family ${name} is not contiguous`);
    if (current !== null) finished.add(current);
    current = name;
  };
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("#")) {
      const m = line.match(/^# (HELP|TYPE) (\S+)(?: (.*))?$/);
      if (!m) continue; // a plain comment
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      enter(name);
      const f = families.get(name) ?? { name, type: "untyped" as const, help: null, samples: [] };
      families.set(name, f);
      if (kind === "HELP") {
        if (f.help !== null) throw new Error(`second HELP for ${name}`);
        f.help = rest;
      } else {
        if (!TYPES.has(rest)) throw new Error(`bad type in: ${line}`);
        if (f.samples.length > 0) throw new Error(`TYPE after samples for ${name}`);
        f.type = rest as PromFamily["type"];
      }
      continue;
    }
    const m = line.match(/^([^\s{]+)(?:\{(.*)\})?\s+(\S+)(?:\s+(-?\d+))?$/);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, labelText, valueText] = m;
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
    const f = familyOf(name, families);
    if (!f) throw new Error(`sample ${name} has no TYPE before it`);
    enter(f.name);
    f.samples.push({ name, labels: parseLabels(labelText ?? "", line), value: parseValue(valueText, line) });
  }
  for (const f of families.values()) check(f);
  return families;
}

function check(f: PromFamily): void {
  if (f.type === "counter") {
    if (!f.name.endsWith("_total")) throw new Error(`counter ${f.name} does not end in _total`);
    for (const s of f.samples) if (!(s.value >= 0)) throw new Error(`counter ${s.name} is ${s.value}`);
  }
  if (f.type !== "histogram") return;
  if (!/_seconds$|_bytes$/.test(f.name)) throw new Error(`histogram ${f.name} has no unit in its name`);
  const series = new Map<string, PromSample[]>();
  for (const s of f.samples) {
    const { le: _le, ...rest } = s.labels;
    const key = JSON.stringify(rest);
    series.set(key, [...(series.get(key) ?? []), s]);
  }
  for (const [key, samples] of series) {
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = samples.find((s) => s.name === `${f.name}_count`);
    const sum = samples.find((s) => s.name === `${f.name}_sum`);
    if (!count || !sum || buckets.length === 0) throw new Error(`histogram ${f.name}${key} is incomplete`);
    let last = -Infinity;
    let prev = 0;
    for (const b of buckets) {
      if (b.labels.le === undefined) throw new Error(`bucket of ${f.name} without le`);
      const le = parseValue(b.labels.le, b.labels.le);
      if (le <= last) throw new Error(`buckets of ${f.name} not in increasing order`);
      if (b.value < prev) throw new Error(`buckets of ${f.name} not cumulative`);
      last = le;
      prev = b.value;
    }
    if (last !== Infinity) throw new Error(`histogram ${f.name} has no +Inf bucket`);
    if (prev !== count.value) throw new Error(`+Inf bucket of ${f.name} differs from its count`);
  }
}

/** The value of the sample `name` with exactly `labels` (0 when it is absent). */
export function sampleValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string> = {}) {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want) return s.value;
    }
  }
  return 0;
}
