/**
 * Keeps a server process alive until SIGINT or SIGTERM, then stops it cleanly.
 *
 * @module
 */

/**
 * Resolves after `stop` has run once a termination signal arrives.
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
  });
}
