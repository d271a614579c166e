/**
 * The worker that runs a broker's zookeeper session (see zk_thread.ts): its
 * own event loop, so heartbeats go out on time however long the broker
 * thread is busy with a request.
 *
 * @module
 */
import { monotonicMs } from "../clock.ts";
import { YakError } from "../errors.ts";
import type { Lease } from "../protocol/messages.ts";
import { configureSecurity } from "../protocol/security.ts";
import { ZkSession } from "./zk_session.ts";
import { ClockOffset, logToMain, SHARED, type ZkInit, type ZkToMain, type ZkToWorker } from "./zk_thread.ts";

const scope = globalThis as unknown as {
  postMessage(m: ZkToMain): void;
  onmessage: ((e: MessageEvent<ZkToWorker>) => void) | null;
  close(): void;
};
const post = (m: ZkToMain) => scope.postMessage(m);
const state = { logEndTotal: 0, epoch: 0, lost: 0, leading: false };
let session: ZkSession | null = null;
// The broker thread's clock: lease times written here are compared there (see ClockOffset).
const mainClock = new ClockOffset();

function start(init: ZkInit): void {
  configureSecurity(init.security);
  state.lost = init.lost;
  const shared = new Float64Array(init.shared);
  mainClock.observe(init.nowMs, monotonicMs());
  const clock = () => mainClock.toMain(monotonicMs());
  session = new ZkSession({
    ...init.opts,
    instance: init.instance,
    log: logToMain(post),
    clock,
    logEndTotal: () => state.logEndTotal,
    epoch: () => state.epoch,
    lost: () => state.lost,
    leading: () => state.leading,
    onLease: (lease) => post({ type: "lease", lease }),
    onRefused: (err) => post({ type: "refused", message: err.message }),
    onAcked: (sentMs) => (shared[SHARED.lastAckedSendMs] = sentMs),
    onBrokers: (brokers) => post({ type: "brokers", brokers }),
    holdHeartbeats: () => clock() - shared[SHARED.mainTickMs] > init.stallLimitMs,
  });
  session.start();
}

function errorOf(err: unknown): { code: string; message: string } {
  return err instanceof YakError
    ? { code: err.code, message: err.message }
    : { code: "UNAVAILABLE", message: err instanceof Error ? err.message : String(err) };
}

/** Sends the broker thread the outcome of its request `id`. */
function answer(id: number, outcome: Promise<Lease | null>): void {
  outcome.then(
    (lease) => post({ type: "reply", id, lease }),
    (err) => post({ type: "reply", id, error: errorOf(err) }),
  );
}

scope.onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case "init":
      start(m);
      break;
    case "state":
      mainClock.observe(m.nowMs, monotonicMs());
      Object.assign(state, { logEndTotal: m.logEndTotal, epoch: m.epoch, lost: m.lost, leading: m.leading });
      break;
    case "isr":
      if (session) answer(m.id, session.proposeIsr(m.epoch, m.isr));
      break;
    case "leave":
      if (session) answer(m.id, session.leave(m.epoch, m.timeoutMs, m.resign === true));
      break;
    case "stop":
      (session?.stop() ?? Promise.resolve()).finally(() => {
        post({ type: "stopped" });
        scope.close();
      });
      break;
  }
};
