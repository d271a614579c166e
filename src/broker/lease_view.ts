/**
 * A broker's `lease.json`: the newest lease with an in-sync set it followed
 * (see LeaseView), kept across restarts. When the zookeeper's own lease file
 * is lost, garbled or older than the cluster, the brokers' views are what
 * tells it who held every acknowledged record (see Zookeeper, "views").
 *
 * @module
 */
import { writeFileAtomic } from "../files.ts";
import { type Lease, type LeaseView, leaseViewOf } from "../protocol/messages.ts";

/** The view in `path`, or null when there is none (a broker that never followed a lease) or it is not one. */
export async function readLeaseView(path: string): Promise<LeaseView | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return null;
  }
  try {
    return leaseViewOf(JSON.parse(text));
  } catch {
    return null;
  }
}

/** Writes each lease with an in-sync set to `path`, in order, the last one winning. */
export class LeaseViewFile {
  #writing: Promise<void> = Promise.resolve();
  #next: LeaseView | null = null;

  constructor(readonly path: string, readonly onError: (err: unknown) => void) {}

  /** Keeps `lease` (a lease without an in-sync set says nothing of one and is left out). */
  save(lease: Lease): void {
    if (lease.isr.length === 0) return;
    const queued = this.#next !== null;
    this.#next = { epoch: lease.epoch, version: lease.version, isr: lease.isr };
    if (queued) return;
    this.#writing = this.#writing.then(async () => {
      const view = this.#next!;
      this.#next = null;
      try {
        await writeFileAtomic(this.path, JSON.stringify(view) + "\n", { sync: true });
      } catch (err) {
        this.onError(err);
      }
    });
  }

  /** Resolves once every view saved so far is written (or failed). */
  flush(): Promise<void> {
    return this.#writing;
  }
}
