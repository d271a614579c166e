/**
 * The leader lease file: written to a temp file, fsynced, renamed over the
 * old one, and the directory fsynced, so a reader sees the old lease or the
 * new one, never half of one, and a power cut cannot undo a rename.
 *
 * @module
 */
import { writeFileAtomic } from "../files.ts";
import type { Lease } from "../protocol/messages.ts";

/**
 * Writes the lease atomically.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLease, writeLease } from "./lease_file.ts";
 * const dir = await Deno.makeTempDir();
 * const lease = {
 *   epoch: 1, leaderId: 1, host: "127.0.0.1", port: 9092, isr: [1], issuedAt: Date.now(), ttlMs: 1000, version: 1,
 * };
 * await writeLease(`${dir}/leader.lease`, lease);
 * assert.deepEqual(await readLease(`${dir}/leader.lease`), lease);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeLease(path: string, lease: Lease): Promise<void> {
  // Synced, file and directory: without it a power cut can bring the old lease back, and with it
  // an epoch already issued.
  await writeFileAtomic(path, JSON.stringify(lease) + "\n", { sync: true });
}

/**
 * Reads a lease file: the lease, null when there is none, or an error string
 * when the file exists but does not hold a lease (truncated, garbage).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { readLease } from "./lease_file.ts";
 * const dir = await Deno.makeTempDir(); // a zookeeper's is data/zookeeper/leader.lease
 * assert.equal(await readLease(`${dir}/leader.lease`), null); // none yet
 * await Deno.writeTextFile(`${dir}/leader.lease`, '{"epoch":1,"lea');
 * assert.equal(typeof await readLease(`${dir}/leader.lease`), "string"); // what is wrong with it
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readLease(path: string): Promise<Lease | null | string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    return `cannot read ${path}: ${err instanceof Error ? err.message : err}`;
  }
  try {
    const v = JSON.parse(text);
    if (
      Number.isSafeInteger(v.epoch) && v.epoch >= 0 &&
      (v.leaderId === null || Number.isSafeInteger(v.leaderId)) &&
      typeof v.host === "string" && Number.isSafeInteger(v.port) &&
      Array.isArray(v.isr) && v.isr.every(Number.isSafeInteger)
    ) {
      return {
        epoch: v.epoch,
        leaderId: v.leaderId,
        host: v.host,
        port: v.port,
        isr: v.isr,
        issuedAt: Number(v.issuedAt) || 0,
        ttlMs: Number(v.ttlMs) || 0,
        version: Number.isSafeInteger(v.version) && v.version >= 0 ? v.version : 0,
      };
    }
  } catch { /* reported below */ }
  return `${path} does not hold a valid lease`;
}
