/**
 * The scrubber: re-reads every closed segment of every partition in the
 * background and checks each record's checksum, so damage on disk (a bad
 * sector, a flipped bit, a stray write) is found and healed before a reader
 * or a failover needs those bytes. Paced in bytes a second, so it never
 * competes with clients for the disk.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import type { BrokerMetrics } from "./metrics.ts";
import type { TopicStore } from "./topic_store.ts";

/** Options of {@link Scrubber}. */
export interface ScrubberOptions {
  /** Bytes checked a second, at most. */
  bytesPerSec: number;
  /** The shortest time between the starts of two passes. */
  intervalMs: number;
  metrics: BrokerMetrics;
}

/**
 * Walks the closed segments, pass after pass; damage is reported through
 * each log's `onDamage` (the broker heals it).
 *
 * @example
 * ```ts
 * import { BrokerMetrics } from "./metrics.ts";
 * import { Scrubber } from "./scrubber.ts";
 * import { TopicStore } from "./topic_store.ts";
 * const dir = await Deno.makeTempDir();
 * const store = await TopicStore.open(dir, { segmentBytes: 1 << 26, indexIntervalBytes: 4096 });
 * const scrubber = new Scrubber(store, { bytesPerSec: 4 << 20, intervalMs: 3_600_000, metrics: new BrokerMetrics() });
 * scrubber.start();
 * await scrubber.stop();
 * await store.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Scrubber {
  readonly #store: TopicStore;
  readonly #o: ScrubberOptions;
  #stopped = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;

  constructor(store: TopicStore, o: ScrubberOptions) {
    this.#store = store;
    this.#o = o;
  }

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    // A tenth of a second's worth per step (4 KiB to 1 MiB): small steps keep the pace even.
    const step = Math.max(4096, Math.min(1024 * 1024, Math.floor(this.#o.bytesPerSec / 10)));
    while (!this.#stopped) {
      const started = monotonicMs();
      for (const ref of this.#store.all()) {
        for (const seg of ref.log.closedSegments()) {
          let at: { position: number; offset: number } | null = { position: 0, offset: seg.base };
          while (at && !this.#stopped) {
            const next: { position: number; offset: number; bytes: number } | null = await ref.log
              .scrub(seg.base, at.position, at.offset, step, seg.id)
              .catch(() => null);
            if (next) {
              this.#o.metrics.scrubBytes += next.bytes;
              await this.#sleep((next.bytes / this.#o.bytesPerSec) * 1000);
            }
            at = next;
          }
          if (this.#stopped) return;
        }
      }
      this.#o.metrics.scrubPasses++;
      await this.#sleep(Math.max(0, this.#o.intervalMs - (monotonicMs() - started)));
    }
  }

  /** Waits `ms`, or less when stopped. */
  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
