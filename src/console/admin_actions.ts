/**
 * The console's admin actions (`POST /api/admin/ACTION`, a JSON body), only
 * with the cluster's auth token: each sends the leader the requests `yak
 * topics` and `yak groups` send (create_topic, alter_topic, reset_offsets,
 * delete_group), so the broker's services check them the same way.
 *
 * @module
 */
import { offsetsOf, resetTargets, targetOffsets } from "../client/group_offsets.ts";
import { YakError } from "../errors.ts";
import { checkGroupName, checkTopicName } from "../log/names.ts";
import type { Connection } from "../protocol/connection.ts";

/** The actions, by the last part of their path. */
export const ADMIN_ACTIONS = ["create-topic", "add-partitions", "reset-offsets", "delete-group"] as const;

/** One admin action. */
export type AdminAction = typeof ADMIN_ACTIONS[number];

/** What an action did: a sentence for people, and the leader's answer. */
export interface AdminOutcome {
  message: string;
  result: Record<string, unknown>;
}

/** Where a reset moves a group's offsets: `yak groups --reset-offsets`' choices. */
const RESETS: Record<string, "to-earliest" | "to-latest" | "to-offset" | "shift-by"> = {
  earliest: "to-earliest",
  latest: "to-latest",
  offset: "to-offset",
  shift: "shift-by",
};

function bad(message: string): YakError {
  return new YakError("INVALID_ARGUMENT", message);
}

function partitionsOf(body: Record<string, unknown>, fallback?: number): number {
  const raw = body.partitions ?? fallback;
  const n = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : raw;
  if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > 1000) {
    throw bad("partitions must be a whole number from 1 to 1000");
  }
  return n as number;
}

/**
 * Topic configs as `KEY=VALUE` lines (the console's text box), sent as the
 * list `--config` sends; the leader checks them (INVALID_CONFIG names the key).
 */
function configsOf(raw: unknown): string[] {
  if (raw === undefined || raw === null) return [];
  if (typeof raw !== "string") throw bad("configs are KEY=VALUE lines");
  return raw.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "").slice(0, 100);
}

/**
 * Runs `action` with its `body` against the leader on `conn`.
 *
 * @example
 * ```ts ignore
 * const { message } = await runAdminAction(conn, "create-topic", { topic: "orders", partitions: 6 });
 * ```
 */
export async function runAdminAction(
  conn: Connection,
  action: AdminAction,
  body: Record<string, unknown>,
): Promise<AdminOutcome> {
  switch (action) {
    case "create-topic": {
      const topic = checkTopicName(body.topic);
      const configs = configsOf(body.configs);
      const res = await conn.request({ type: "create_topic", topic, partitions: partitionsOf(body, 3), configs });
      return { message: `created topic '${topic}' with ${res.partitions} partitions`, result: res };
    }
    case "add-partitions": {
      const topic = checkTopicName(body.topic);
      const res = await conn.request({ type: "alter_topic", topic, partitions: partitionsOf(body) });
      return { message: `topic '${topic}' has ${res.partitions} partitions`, result: res };
    }
    case "reset-offsets":
      return await resetOffsets(conn, body);
    case "delete-group": {
      const group = checkGroupName(body.group);
      const res = await conn.request({ type: "delete_group", group });
      return { message: `deleted group '${group}'`, result: res };
    }
  }
}

/** A group's commits on a topic moved, as `yak groups --reset-offsets` moves them. */
async function resetOffsets(conn: Connection, body: Record<string, unknown>): Promise<AdminOutcome> {
  const group = checkGroupName(body.group);
  const topic = checkTopicName(body.topic);
  const reset = RESETS[String(body.to)];
  if (reset === undefined) throw bad("to must be earliest, latest, offset or shift");
  const amount = body.value === undefined || body.value === null ? "" : String(body.value).trim();
  if ((reset === "to-offset" || reset === "shift-by") && !/^-?\d+$/.test(amount)) {
    throw bad(
      `${reset === "to-offset" ? "an offset" : "a shift"} must be a whole number, not '${amount.slice(0, 40)}'`,
    );
  }
  const { start, hw } = await offsetsOf(conn, topic);
  const committed = (await conn.request({ type: "committed", group, topic })).offsets as Record<string, number>;
  const offsets = targetOffsets(resetTargets(reset, amount, start, hw, committed));
  const res = await conn.request({ type: "reset_offsets", group, topic, offsets });
  const moved = Object.entries(res.committed as Record<string, number>).map(([p, o]) => `${p}→${o}`).join(", ");
  return { message: `group '${group}' on '${topic}': ${moved}`, result: res };
}
