/**
 * Whether a broker's process on this machine is running, stopped (SIGSTOP)
 * or gone, from /proc: what tells a paused broker from one that is merely
 * slow, since a stopped process's port still completes the TCP handshake.
 *
 * @module
 */

/** A local process as /proc shows it: `stopped` (state T or t), `gone` (no such process, or a zombie), or `running`. */
export type ProcessState = "running" | "stopped" | "gone";

const decoder = new TextDecoder();

/** Whether `host` names this machine (only then does a pid mean anything here). */
export function isLocalHost(host: string): boolean {
  return host === "localhost" || host.startsWith("127.") || host === "::1";
}

/**
 * The state of process `pid` on this machine, or undefined where that cannot
 * be known (not Linux, or no permission to run `cat`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { localProcessState } from "./process_state.ts";
 * if (Deno.build.os === "linux") assert.equal(await localProcessState(Deno.pid), "running");
 * ```
 */
export async function localProcessState(pid: number): Promise<ProcessState | undefined> {
  if (Deno.build.os !== "linux") return undefined;
  let out: Deno.CommandOutput;
  try {
    // Through `cat`: Deno reads other processes' /proc files only with --allow-all.
    out = await new Deno.Command("cat", { args: [`/proc/${pid}/stat`], stdout: "piped", stderr: "null" }).output();
  } catch {
    return undefined;
  }
  if (!out.success) return "gone";
  // The state letter follows the command name, which is in parentheses and may hold anything.
  const text = decoder.decode(out.stdout);
  const letter = text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3);
  if (letter === "T" || letter === "t") return "stopped";
  if (letter === "Z" || letter === "") return "gone";
  return "running";
}
