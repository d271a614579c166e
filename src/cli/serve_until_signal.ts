/**
 * Keeps a server process alive until SIGINT or SIGTERM, then stops it cleanly.
 *
 * @module
 */

/**
 * Set by `yak cluster` for its children: stop (as on SIGTERM) when stdin
 * reaches its end. The children's stdin is a pipe from the parent, so a
 * parent that dies without stopping them (SIGKILL, a crash) still stops
 * them: they run in their own session, out of reach of the terminal.
 */
export const STOP_ON_STDIN_EOF_ENV = "YAK_STOP_ON_STDIN_EOF";

/**
 * Resolves after `stop` has run once a termination signal arrives (or, in a
 * child of `yak cluster`, once its parent is gone).
 *
 * @example
 * ```ts ignore
 * await serveUntilSignal(() => broker.stop());
 * ```
 */
export function serveUntilSignal(stop: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) return;
      stopping = true;
      for (const sig of ["SIGINT", "SIGTERM"] as const) {
        Deno.removeSignalListener(sig, onSignal);
      }
      stop().finally(resolve);
    };
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, onSignal);
    }
    if (Deno.env.get(STOP_ON_STDIN_EOF_ENV) === "1") {
      (async () => {
        const buf = new Uint8Array(256);
        try {
          while ((await Deno.stdin.read(buf)) !== null) { /* the parent writes nothing */ }
        } catch { /* closed */ }
        onSignal();
      })();
    }
  });
}
