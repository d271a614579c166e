// The yak console: renders each snapshot the zookeeper pushes over
// server-sent events (/api/events). Plain DOM, no framework, no build step.
// Every name that came from the cluster is set as text, never as HTML.
"use strict";

const WINDOW_MS = 3 * 60 * 1000;
const GAP_MS = 3500;
const MIN_SPAN_MS = 30_000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");

/** An element with attributes and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function ago(ms) {
  if (typeof ms !== "number") return "never"; // e.g. a leader named by the lease file that never registered
  if (ms < 1000) return `${ms} ms ago`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`;
  return `${(ms / 3_600_000).toFixed(1)} h ago`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(0)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function short(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  return fmt.format(n);
}

function answered(view) {
  return view && !("error" in view);
}

/**
 * A broker's Kafka address, if it reports one: `kafkaPort` (and `kafkaHost`)
 * or `kafka` ("host:port" or {host, port}) in its registration, or a `kafka`
 * listener in its own status.
 */
function kafkaAddress(b, view) {
  const from = (x) => {
    if (!x) return null;
    if (typeof x.kafkaPort === "number") return `${x.kafkaHost ?? b.host}:${x.kafkaPort}`;
    if (typeof x.kafka === "string") return x.kafka;
    if (x.kafka && typeof x.kafka.port === "number") return `${x.kafka.host ?? b.host}:${x.kafka.port}`;
    return null;
  };
  return from(b) ?? from(view) ?? view?.listeners?.kafka ?? null;
}

// ---- brokers

function renderBrokers(status, viewById) {
  const { lease } = status;
  const box = $("brokers");
  if (status.brokers.length === 0) {
    box.replaceChildren(el("p", { class: "empty" }, "no broker has registered yet"));
    return;
  }
  box.replaceChildren(...status.brokers.map((b) => {
    const view = viewById.get(b.id);
    const leader = b.id === lease.leaderId;
    const inSync = lease.isr.includes(b.id);
    const kafka = kafkaAddress(b, view);
    const http = view?.listeners?.http;
    const role = b.state !== "alive"
      ? null
      : el("span", { class: `badge ${leader ? "leader" : "follower"}` }, leader ? "leader" : "follower");
    // The state from /proc when the broker runs on the zookeeper's machine, else from its silence alone.
    const stateText = b.state === "paused" ? "paused · not answering" : b.state;
    const rows = [
      ["native", `${b.host}:${b.port}`],
      kafka ? ["kafka", kafka] : null,
      http ? ["metrics", el("a", { href: `http://${http}/metrics`, target: "_blank", rel: "noreferrer" }, http)] : null,
      ["epoch", answered(view) ? String(view.epoch) : "–"],
      [b.state === "alive" ? "heartbeat" : "last heard", ago(b.lastSeenMsAgo)],
      // Its own figure when it answers; else the one from its last heartbeat, marked.
      [
        "log end Σ",
        b.logEndTotalNow === null ? `${fmt.format(b.logEndTotal)} (heartbeat)` : fmt.format(b.logEndTotalNow),
      ],
      ["in sync", inSync ? "yes" : "no"],
      answered(view) && view.memory ? ["memory", `${bytes(view.memory.rss)} RSS`] : null,
    ].filter(Boolean);
    return el(
      "div",
      { class: "broker", "data-broker": b.id, "data-state": b.state, "data-leader": leader ? "true" : "false" },
      el("div", { class: "b-head" }, el("span", { class: "b-name" }, `broker ${b.id}`), role),
      el("div", { class: `state ${b.state.replace(" ", "-")}` }, stateText),
      el("dl", {}, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    );
  }));
}

// ---- partitions

function lagBar(lag, scale, cls) {
  const width = lag <= 0 ? 0 : Math.max(4, Math.min(100, (100 * lag) / scale));
  const fill = el("span");
  fill.style.width = `${width}%`;
  return el("span", { class: `bar ${cls}` }, fill);
}

function renderPartitions(status, leaderView, viewById) {
  const body = $("partitions");
  const all = (leaderView?.topics ?? []).filter((t) => t.name !== "__cluster");
  const filter = $("topic-filter").value.trim().toLowerCase();
  const topics = filter ? all.filter((t) => t.name.toLowerCase().includes(filter)) : all;
  const count = (ts) => ts.reduce((n, t) => n + t.partitions.length, 0);
  $("partitions-shown").textContent = filter
    ? `${fmt.format(count(topics))} of ${fmt.format(count(all))} partitions`
    : "";
  if (!leaderView || topics.length === 0) {
    const why = !leaderView
      ? "no leader answers right now"
      : all.length === 0
      ? "no topics yet: produce to one"
      : "no topic matches the filter";
    body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty" }, why)));
    $("metadata-log").textContent = "";
    return;
  }
  const ids = status.brokers.map((b) => b.id);
  const isr = status.lease.isr;
  const endOf = (id, topic, p) => replicaEnd(viewById.get(id), topic, p);
  const shown = {
    leaderId: leaderView.brokerId,
    stateOf: new Map(status.brokers.map((b) => [b.id, b.state])),
    isr,
    scale: largestLag(topics, ids, endOf),
  };
  const rows = [];
  for (const t of topics) {
    t.partitions.forEach((p, i) => {
      const replicas = ids.map((id) => replicaCell(id, p.logEndOffset, endOf(id, t.name, p.partition), shown));
      rows.push(partitionRow(t.name, p, i, replicas, isr));
    });
  }
  body.replaceChildren(...rows);
  const m = leaderView.metadataLog;
  $("metadata-log").textContent = m
    ? `metadata log (__cluster): offsets ${fmt.format(m.logStart)}–${fmt.format(m.logEnd)}, ${bytes(m.bytes)}`
    : "";
}

/** A replica's log end as its broker reported it (the lag is the leader's log end minus that); null if silent. */
function replicaEnd(view, topic, p) {
  if (!answered(view)) return null;
  return view.topics.find((t) => t.name === topic)?.partitions[p]?.logEndOffset ?? 0;
}

/** The largest lag of any replica of any partition (at least 1): the full width of a lag bar. */
function largestLag(topics, ids, endOf) {
  let scale = 1;
  for (const t of topics) {
    for (const p of t.partitions) {
      for (const id of ids) {
        const end = endOf(id, t.name, p.partition);
        if (end !== null) scale = Math.max(scale, p.logEndOffset - end);
      }
    }
  }
  return scale;
}

/** One replica of a partition: its lag behind the leader's log end `leaderEnd`, or why it has none. */
function replicaCell(id, leaderEnd, end, { leaderId, stateOf, isr, scale }) {
  const isLeader = id === leaderId;
  if (end === null || stateOf.get(id) === "dead") {
    return el(
      "span",
      { class: "replica", "data-replica": id, title: `broker ${id} is ${stateOf.get(id) ?? "unknown"}` },
      el("span", { class: "id" }, `b${id}`),
      lagBar(0, 1, "down"),
      el(
        "span",
        { class: "lag muted" },
        { paused: "paused", "not answering": "silent" }[stateOf.get(id)] ?? "down",
      ),
    );
  }
  const lag = Math.max(0, leaderEnd - end);
  return el(
    "span",
    { class: `replica${isLeader ? " leader" : ""}`, "data-replica": id, "data-lag": lag },
    el("span", { class: "id" }, `b${id}`),
    lagBar(lag, scale, isr.includes(id) ? "" : "behind"),
    el("span", { class: "lag" }, isLeader ? "leader" : short(lag)),
  );
}

/** A partition's row: its offsets, its replicas, and the in-sync set (the topic named on its first row only). */
function partitionRow(topic, p, i, replicas, isr) {
  return el(
    "tr",
    { class: i === 0 ? "first" : "", "data-topic": topic, "data-partition": p.partition },
    el("td", { class: "topic" }, i === 0 ? topic : ""),
    el("td", { class: "num" }, p.partition),
    el("td", { class: "num" }, fmt.format(p.logStartOffset ?? 0)),
    el("td", { class: "num" }, fmt.format(p.logEndOffset)),
    el("td", { class: "num" }, fmt.format(p.highWatermark)),
    el("td", {}, el("div", { class: "replicas" }, replicas)),
    el("td", {}, el("span", { class: "chips" }, isr.map((id) => el("span", { class: "chip" }, id)))),
  );
}

// ---- groups

function renderGroups(leaderView) {
  const box = $("groups");
  if (!leaderView) {
    box.replaceChildren(el("p", { class: "empty" }, "no leader answers right now"));
    return;
  }
  const lags = leaderView.groups ?? {};
  const described = new Map((leaderView.groupMembers ?? []).map((g) => [g.group, g]));
  const names = [...new Set([...Object.keys(lags), ...described.keys()])].sort();
  if (names.length === 0) {
    box.replaceChildren(el("p", { class: "empty" }, "no consumer groups yet: consume with --group"));
    return;
  }
  const hwOf = (topic, p) =>
    leaderView.topics.find((t) => t.name === topic)?.partitions[Number(p)]?.highWatermark ?? null;
  box.replaceChildren(...names.map((name) => groupCard(name, described.get(name), lags[name] ?? {}, hwOf)));
}

/** One group: its head, its members and what each partition's commit lags (`g` undefined when not described). */
function groupCard(name, g, lags, hwOf) {
  const { rows, total } = groupLagRows(lags, groupOwners(g), hwOf);
  const members = (g?.members ?? []).map(memberItem);
  return el(
    "div",
    { class: "group", "data-group": name, "data-lag": total },
    groupHead(name, g, total),
    members.length > 0 ? el("ul", { class: "members" }, members) : null,
    rows.length > 0 ? groupTable(rows) : el("p", { class: "empty" }, "no commits yet"),
  );
}

/** "topic/partition" -> the client id of the member it is assigned to. */
function groupOwners(g) {
  const owner = new Map();
  for (const m of g?.members ?? []) {
    for (const [topic, ps] of Object.entries(m.partitions)) {
      for (const p of ps) owner.set(`${topic}/${p}`, m.clientId);
    }
  }
  return owner;
}

/** A row per committed partition, sorted by topic and partition, and the group's total lag. */
function groupLagRows(lags, owner, hwOf) {
  const rows = [];
  let total = 0;
  let scale = 1;
  for (const byP of Object.values(lags)) {
    for (const x of Object.values(byP)) scale = Math.max(scale, x.lag);
  }
  for (const [topic, byP] of Object.entries(lags).sort()) {
    for (const [p, x] of Object.entries(byP).sort((a, b) => Number(a[0]) - Number(b[0]))) {
      total += x.lag;
      const hw = hwOf(topic, p);
      rows.push(el(
        "tr",
        { "data-group-partition": `${topic}/${p}`, "data-lag": x.lag },
        el("td", {}, topic),
        el("td", { class: "num" }, p),
        el("td", { class: "num" }, fmt.format(x.committed)),
        el("td", { class: "num" }, hw === null ? "–" : fmt.format(hw)),
        el(
          "td",
          {},
          el(
            "div",
            { class: "lagcell" },
            lagBar(x.lag, scale, x.lag > 0 ? "behind" : ""),
            el("span", { class: "num" }, fmt.format(x.lag)),
          ),
        ),
        el("td", { class: "muted" }, owner.get(`${topic}/${p}`) ?? "–"),
      ));
    }
  }
  return { rows, total };
}

/** A member: its client id, the partitions assigned to it, and its host. */
function memberItem(m) {
  const parts = Object.entries(m.partitions).map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ");
  return el(
    "li",
    {},
    el("span", { class: "client" }, m.clientId),
    " ",
    el("span", { class: "assigned" }, parts ? `→ ${parts}` : "→ no partitions"),
    el("span", { class: "muted" }, ` · ${m.host}`),
  );
}

/** A group's name, state, generation, member count and total lag. */
function groupHead(name, g, total) {
  const state = g?.state ?? "Empty";
  return el(
    "div",
    { class: "g-head" },
    el("span", { class: "g-name" }, name),
    el("span", { class: "g-state", "data-state": state }, state),
    g && g.generation > 0 ? el("span", { class: "muted" }, `generation ${g.generation} · ${g.protocol || "–"}`) : null,
    el("span", { class: "muted" }, `${g?.members.length ?? 0} member${g?.members.length === 1 ? "" : "s"}`),
    el("span", { class: "g-total" }, `lag ${fmt.format(total)}`),
  );
}

function groupTable(rows) {
  return el(
    "table",
    {},
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["topic", "p", "committed", "high watermark", "lag", "member"].map((h, i) =>
          el("th", { class: i > 0 && i < 4 ? "num" : "" }, h)
        ),
      ),
    ),
    el("tbody", {}, rows),
  );
}

// ---- charts

function renderChart(figure, label, points, pick, now) {
  // The last 3 minutes, or less while there is less history (samples exist only while someone watches).
  const oldest = points.find((p) => p.t >= now - WINDOW_MS)?.t ?? now;
  const spanMs = Math.max(MIN_SPAN_MS, now - oldest);
  const from = now - spanMs;
  const shown = points.filter((p) => p.t >= from);
  const current = shown.length > 0 ? pick(shown[shown.length - 1]) : 0;
  const max = Math.max(10, ...shown.map(pick));
  const W = 300;
  const H = 70;
  const x = (t) => ((t - from) / spanMs) * W;
  const y = (v) => H - 2 - (v / max) * (H - 6);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  for (const f of [0.25, 0.5, 0.75]) {
    chart.append(svg("line", { x1: 0, x2: W, y1: H * f, y2: H * f, stroke: "#2a3340", "stroke-width": 1 }));
  }
  // Samples exist only while someone watched: a gap is drawn as a gap, not as a slope.
  const runs = [];
  for (const p of shown) {
    const run = runs[runs.length - 1];
    if (run && p.t - run[run.length - 1].t <= GAP_MS) run.push(p);
    else runs.push([p]);
  }
  for (const run of runs.filter((r) => r.length > 1)) {
    const line = run.map((p) => `${x(p.t).toFixed(1)},${y(pick(p)).toFixed(1)}`).join(" ");
    const first = x(run[0].t).toFixed(1);
    const last = x(run[run.length - 1].t).toFixed(1);
    chart.append(svg("polygon", { points: `${first},${H} ${line} ${last},${H}`, fill: "rgba(88,166,255,0.16)" }));
    chart.append(
      svg("polyline", {
        points: line,
        fill: "none",
        stroke: "#58a6ff",
        "stroke-width": 1.6,
        "vector-effect": "non-scaling-stroke",
      }),
    );
  }
  figure.replaceChildren(
    el(
      "div",
      { class: "chart-head" },
      el("span", { class: "chart-label" }, label),
      el("span", { class: "chart-now", "data-rate": current }, `${fmt.format(current)}/s`),
    ),
    chart,
    el(
      "div",
      { class: "axis" },
      el("span", {}, spanMs >= WINDOW_MS - 1000 ? "−3 min" : `−${Math.round(spanMs / 1000)} s`),
      el("span", {}, `peak ${short(max)}/s`),
      el("span", {}, "now"),
    ),
  );
}

// ---- timeline

function describe(e) {
  switch (e.event) {
    case "broker_dead":
      return [
        "death",
        `broker ${e.broker} dead`,
        e.silentMs !== undefined ? `silent ${fmt.format(e.silentMs)} ms` : e.reason,
      ];
    case "broker_left":
      return ["death", `broker ${e.broker} left`, "clean stop"];
    case "leader_elected":
      return [
        "election",
        `broker ${e.leader} elected leader · epoch ${e.epoch}`,
        `${String(e.reason ?? "").replaceAll("_", " ")}${e.previous ? `, was broker ${e.previous}` : ""}; in sync [${
          (e.isr ?? []).join(", ")
        }]`,
      ];
    case "no_leader":
      return ["death", "no leader", e.note ?? e.reason];
    case "isr_changed":
      return [
        "isr",
        `in-sync set [${(e.from ?? []).join(", ")}] → [${(e.to ?? []).join(", ")}]`,
        `epoch ${e.epoch}${e.reason ? ` · ${e.reason}` : ""}`,
      ];
    case "broker_registered":
      return [
        "join",
        `broker ${e.broker} ${e.reconnected ? "reconnected" : e.rejoined ? "rejoined" : "registered"}`,
        `${e.host}:${e.port}`,
      ];
    case "broker_alive":
      return ["join", `broker ${e.broker} heard again`, ""];
    case "broker_id_refused":
      return ["death", `a second broker ${e.broker} refused`, `${e.host}:${e.port}`];
    case "zookeeper_paused":
      return ["death", "zookeeper was paused", `${fmt.format(e.pausedMs)} ms; grace ${e.graceMs} ms`];
    case "started":
      return ["join", "zookeeper started", `epoch ${e.epoch}, leader ${e.leader ?? "none"}`];
    case "stopped":
      return ["death", "zookeeper stopped", ""];
    default:
      return ["other", e.event.replaceAll("_", " "), ""];
  }
}

function renderTimeline(entries) {
  const list = $("timeline");
  if (entries.length === 0) {
    list.replaceChildren(el("li", { class: "empty" }, "nothing yet"));
    return;
  }
  list.replaceChildren(...entries.map((e) => {
    const [kind, what, why] = describe(e);
    const time = typeof e.ts === "string" ? e.ts.slice(11, 23) : "";
    return el(
      "li",
      { class: `k-${kind}`, "data-event": e.event },
      el("time", { datetime: e.ts }, time),
      el("span", { class: "what" }, what),
      why ? el("span", { class: "why" }, why) : null,
    );
  }));
}

// ---- transactions

function renderTransactions(leaderView) {
  const box = $("transactions");
  const open = leaderView?.transactions ?? [];
  if (open.length === 0) {
    box.replaceChildren(el("p", { class: "empty" }, "none open"));
    return;
  }
  const now = Date.now();
  const row = (t) =>
    el(
      "tr",
      {},
      el("td", {}, t.id),
      el("td", {}, t.state),
      el("td", {}, `${t.producer} epoch ${t.epoch}`),
      el("td", { class: "num" }, `${(Math.max(0, now - t.startedAt) / 1000).toFixed(1)} s`),
      el("td", { class: "num" }, `${(t.timeoutMs / 1000).toFixed(1)} s`),
      el("td", {}, t.partitions.join(", ")),
    );
  const head = ["transactional id", "state", "producer", "open for", "timeout", "partitions"];
  box.replaceChildren(
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...open.map(row)),
    ),
  );
}

// ---- the whole page

/** The last snapshot's parts, for what re-renders between updates (the topic filter). */
let latest = null;

function render(snap) {
  const { status } = snap;
  const viewById = new Map(status.views.map((v) => [v.brokerId, v]));
  const leaderView = answered(viewById.get(status.lease.leaderId))
    ? viewById.get(status.lease.leaderId)
    : status.views.find(answered) ?? null;
  latest = { status, leaderView, viewById };
  updatePickers(leaderView);
  $("leader").textContent = status.lease.leaderId === null ? "none" : `broker ${status.lease.leaderId}`;
  $("epoch").textContent = String(status.lease.epoch);
  $("isr").textContent = `[${status.lease.isr.join(", ")}]`;
  $("updated").textContent = `updated ${new Date(snap.gatheredAt).toLocaleTimeString()}`;
  renderBrokers(status, viewById);
  const now = Date.now();
  renderChart($("chart-produce"), "produced", snap.rates, (p) => p.produce, now);
  renderChart($("chart-consume"), "consumed", snap.rates, (p) => p.consume, now);
  renderPartitions(status, leaderView, viewById);
  renderGroups(leaderView);
  renderTransactions(leaderView);
  renderTimeline(snap.timeline);
  document.body.dataset.seq = String(snap.seq);
}

function connect() {
  const conn = $("conn");
  const source = new EventSource("/api/events");
  source.onopen = () => {
    conn.dataset.state = "live";
    conn.textContent = "live";
  };
  source.onmessage = (msg) => {
    try {
      render(JSON.parse(msg.data));
    } catch (err) {
      console.error("yak console: could not render an update", err);
    }
  };
  source.addEventListener("full", () => {
    conn.dataset.state = "lost";
    conn.textContent = "too many viewers";
    source.close();
  });
  source.onerror = () => {
    conn.dataset.state = "lost";
    conn.textContent = "reconnecting";
  };
}

// ---- topic and group pickers (record browser, admin forms)

/** Replaces a select's options when the choices changed, keeping the one chosen. */
function setOptions(select, values, labelOf = String) {
  const wanted = values.map(String);
  const have = [...select.options].map((o) => o.value);
  if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) return;
  const chosen = select.value;
  select.replaceChildren(...wanted.map((v) => el("option", { value: v }, labelOf(v))));
  if (wanted.includes(chosen)) select.value = chosen;
}

function updatePickers(leaderView) {
  if (!leaderView) return;
  const topics = leaderView.topics.filter((t) => t.name !== "__cluster");
  const names = topics.map((t) => t.name).sort();
  setOptions($("b-topic"), names);
  for (const select of document.querySelectorAll("select[data-topics]")) setOptions(select, names);
  const chosen = topics.find((t) => t.name === $("b-topic").value);
  setOptions($("b-partition"), (chosen?.partitions ?? []).map((p) => p.partition));
  const groups = [
    ...new Set([...Object.keys(leaderView.groups ?? {}), ...(leaderView.groupMembers ?? []).map((g) => g.group)]),
  ];
  const list = $("group-names");
  const have = [...list.options].map((o) => o.value);
  if (have.join("\n") !== groups.sort().join("\n")) {
    list.replaceChildren(...groups.map((g) => el("option", { value: g })));
  }
}

// ---- record browser

/** The read the form asks for, as /api/records' query; `from` overrides where it starts (for "More"). */
function browseQuery(from) {
  const q = new URLSearchParams({
    topic: $("b-topic").value,
    partition: $("b-partition").value || "0",
    limit: $("b-limit").value || "50",
  });
  const mode = from === undefined ? $("b-from").value : "offset";
  q.set("from", mode);
  if (mode === "offset") q.set("offset", String(from ?? $("b-offset").value ?? 0));
  if (mode === "time") q.set("time", String(Date.parse(`${$("b-time").value}Z`)));
  const key = $("b-key").value;
  if (key) q.set("key", key);
  return q;
}

/** A key or value as the reader asked: text, JSON (pretty, when it parses), bytes as base64; each marked. */
function dataCell(text, b64, format, cutFrom) {
  const tags = [];
  let shown;
  if (b64 !== undefined) {
    tags.push("base64");
    shown = b64;
  } else if (text === null || text === undefined) {
    return el("td", {}, el("span", { class: "tag" }, "null"));
  } else if (format === "json") {
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
      tags.push("json");
    } catch {
      shown = text;
      tags.push("not JSON");
    }
  } else shown = text;
  if (cutFrom) tags.push(`first ${fmt.format(shown.length)} of ${fmt.format(cutFrom)} chars`);
  return el("td", {}, tags.map((t) => el("span", { class: "tag" }, t)), el("pre", { class: "data" }, shown));
}

function recordRow(r, format) {
  const headers = (r.headers ?? []).map((h) => `${h.key}=${h.value ?? h.valueB64 ?? "null"}`).join("\n");
  return el(
    "tr",
    { "data-offset": r.offset },
    el("td", { class: "num" }, String(r.offset)),
    el("td", { class: "muted" }, new Date(r.ts).toISOString().replace("T", " ").slice(0, 23)),
    dataCell(r.key, r.keyB64, format),
    dataCell(r.value, r.valueB64, format, r.valueChars),
    el("td", {}, headers ? el("pre", { class: "data" }, headers) : ""),
  );
}

async function readRecords(from) {
  const status = $("b-status");
  if (!$("b-topic").value) {
    status.textContent = "no topic to read yet";
    return;
  }
  status.textContent = "reading…";
  const format = $("b-format").value;
  const res = await fetch(`/api/records?${browseQuery(from)}`, { headers: { accept: "application/json" } });
  const out = await res.json().catch(() => ({ error: { message: `HTTP ${res.status}` } }));
  if (out.error) {
    status.textContent = `could not read: ${out.error.message}`;
    status.dataset.state = "error";
    return;
  }
  status.dataset.state = "ok";
  const rows = out.records.map((r) => recordRow(r, format));
  if (from === undefined) $("records").replaceChildren(...rows);
  else $("records").append(...rows);
  status.textContent = `${out.topic} / partition ${out.partition}: log ${fmt.format(out.logStart)}–` +
    `${fmt.format(out.highWatermark)}; ${fmt.format(out.records.length)} record(s) from offset ` +
    `${fmt.format(out.startedAt)}${out.note ? ` · ${out.note}` : ""}`;
  const more = $("b-more");
  more.hidden = out.next >= out.highWatermark;
  more.dataset.next = String(out.next);
}

function setUpBrowser() {
  const showFields = () => {
    for (const label of document.querySelectorAll("#browse label[data-for]")) {
      label.hidden = label.dataset.for !== $("b-from").value;
    }
  };
  $("b-from").addEventListener("change", showFields);
  $("b-topic").addEventListener("change", () => latest && updatePickers(latest.leaderView));
  $("browse").addEventListener("submit", (e) => {
    e.preventDefault();
    readRecords().catch((err) => ($("b-status").textContent = `could not read: ${err}`));
  });
  $("b-more").addEventListener("click", () => {
    readRecords(Number($("b-more").dataset.next)).catch((err) => ($("b-status").textContent = `${err}`));
  });
  $("topic-filter").addEventListener("input", () => {
    if (latest) renderPartitions(latest.status, latest.leaderView, latest.viewById);
  });
  showFields();
}

// ---- admin actions (need the cluster's auth token)

async function sendAdmin(form) {
  const out = $("admin-result");
  const fields = Object.fromEntries(new FormData(form));
  const what = form.dataset.confirm;
  if (what && !confirm(`${what === "delete" ? "Delete" : "Reset the offsets of"} group '${fields.group}'?`)) return;
  out.textContent = "…";
  const res = await fetch(`/api/admin/${form.dataset.action}`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(fields),
  });
  const body = await res.text();
  let answer = null;
  try {
    answer = JSON.parse(body);
  } catch { /* a plain-text refusal (no token, another origin) */ }
  out.dataset.state = res.ok ? "ok" : "error";
  out.textContent = answer?.message ?? answer?.error?.message ?? body.trim();
}

async function setUpAdmin() {
  const forms = [...document.querySelectorAll("form[data-action]")];
  for (const form of forms) {
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      sendAdmin(form).catch((err) => ($("admin-result").textContent = `${err}`));
    });
  }
  const state = await fetch("/api/admin").then((r) => r.json()).catch(() => ({ enabled: false, reason: "unknown" }));
  $("admin-state").textContent = state.enabled ? "with the cluster's token" : state.reason;
  for (const control of document.querySelectorAll("form[data-action] :is(input, select, textarea, button)")) {
    control.disabled = !state.enabled;
  }
  document.body.dataset.admin = state.enabled ? "on" : "off";
}

setUpBrowser();
setUpAdmin();
connect();
