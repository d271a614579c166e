/**
 * `yak transactions`: the transactional ids the leader coordinates, with
 * their open transactions and how long each has been open, as
 * kafka-transactions.sh lists them.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { connectLeader } from "../client/discovery.ts";
import { bootstrapOf, CLUSTER_FLAGS, connectTimeoutOf, type Flags, helpRequested, parse, retryNotice } from "./args.ts";
import { table } from "./table.ts";

const USAGE = `
yak transactions [--open] [--json]
                 [--zookeeper HOST:PORT | --bootstrap HOST:PORT[,...]] [--connect-timeout-ms 10000]

Lists every transactional id the leader coordinates: its state (Empty,
Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort), its
producer as stored in the log (p<n>) and epoch, its timeout, and for an open
transaction how long it has been open and its partitions. An open
transaction holds read_committed consumers of its partitions back until it
ends; one open past its timeout is aborted by the coordinator.
--open lists only open transactions.
`;

const FLAGS: Flags = {
  ...CLUSTER_FLAGS,
  open: { type: "boolean" },
  json: { type: "boolean" },
};

/** A transaction as the leader's `transactions` request lists it. */
export interface TransactionRow {
  id: string;
  state: string;
  producer: string;
  epoch: number;
  timeoutMs: number;
  startedAt: number;
  ageMs: number | null;
  partitions: string[];
  groups: string[];
}

const OPEN = new Set(["Ongoing", "PrepareCommit", "PrepareAbort"]);

/** Runs `yak transactions`. */
export async function transactionsCommand(args: string[]): Promise<number> {
  const { values } = parse("transactions", args, FLAGS);
  if (helpRequested(values, USAGE)) return 0;
  const { conn } = await connectLeader(
    bootstrapOf(values),
    monotonicMs() + connectTimeoutOf(values),
    retryNotice("transactions", false),
  );
  let rows: TransactionRow[];
  try {
    rows = (await conn.request({ type: "transactions" })).transactions as TransactionRow[];
  } finally {
    conn.close();
  }
  if (values.open === true) rows = rows.filter((r) => OPEN.has(r.state));
  if (values.json === true) {
    console.log(JSON.stringify(rows, null, 2));
    return 0;
  }
  console.log(renderTransactions(rows, values.open === true));
  return 0;
}

/**
 * Transactions as a table: id, state, producer and epoch, timeout, age of
 * the open transaction, and its partitions.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { renderTransactions } from "./transactions.ts";
 * const text = renderTransactions([{ id: "loader", state: "Ongoing", producer: "p3", epoch: 1, timeoutMs: 60000,
 *   startedAt: 0, ageMs: 2500, partitions: ["t/0"], groups: [] }]);
 * assert.match(text, /loader +Ongoing +p3 +1 +60.0 s +2.5 s +t\/0/);
 * assert.equal(renderTransactions([], true), "no open transactions"); // --open, and none is open
 * ```
 */
export function renderTransactions(rows: readonly TransactionRow[], open = false): string {
  if (rows.length === 0) return open ? "no open transactions" : "no transactional ids";
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  return table([
    ["TRANSACTIONAL ID", "STATE", "PRODUCER", "EPOCH", "TIMEOUT", "OPEN FOR", "PARTITIONS"],
    ...rows.map((r) => [
      r.id,
      r.state,
      r.producer,
      r.epoch,
      seconds(r.timeoutMs),
      r.ageMs === null ? "-" : seconds(r.ageMs),
      [...r.partitions, ...r.groups.map((g) => `group ${g}`)].join(",") || "-",
    ]),
  ]);
}
