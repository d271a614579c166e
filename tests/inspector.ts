/**
 * A Chrome DevTools protocol session with a deno process started with
 * `--inspect` (found by the "Debugger listening on ws://..." line it
 * prints): calls and events over the inspector's WebSocket. Tests pause a
 * broker's thread or stop it at a line with it; `deno task profile` runs V8's
 * profiler through it.
 */
import type { Proc } from "./harness.ts";

export class Inspector {
  #ws: WebSocket;
  #next = 0;
  #answers = new Map<number, (result: Record<string, unknown>) => void>();
  #listeners = new Map<string, ((params: Record<string, unknown>) => void)[]>();

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const m = JSON.parse(String(e.data));
      if (m.method !== undefined) { for (const fn of this.#listeners.get(m.method) ?? []) fn(m.params ?? {}); }
      if (m.id !== undefined) this.#answers.get(m.id)?.(m.result ?? m.error ?? {});
    };
  }

  /** Connects to the inspector of `proc`, waiting up to `timeoutMs` for it to print its address. */
  static async of(proc: Proc, timeoutMs = 15_000): Promise<Inspector> {
    const m = await proc.waitFor(/Debugger listening on (ws:\/\/\S+)/, timeoutMs);
    return await Inspector.connect(m[1], proc.name);
  }

  /** Connects to the inspector at `url` (the `ws://` address a process printed); `name` is for errors. */
  static async connect(url: string, name: string): Promise<Inspector> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = (e) => reject(new Error(`inspector of ${name}: ${(e as ErrorEvent).message}`));
    });
    return new Inspector(ws);
  }

  /** Calls a protocol method; resolves with its result. */
  call(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.#next;
    const answer = new Promise<Record<string, unknown>>((resolve) => this.#answers.set(id, resolve));
    this.#ws.send(JSON.stringify({ id, method, params }));
    return answer;
  }

  /** Runs `fn` on every event named `method` (e.g. "Debugger.paused"). */
  on(method: string, fn: (params: Record<string, unknown>) => void): void {
    this.#listeners.set(method, [...(this.#listeners.get(method) ?? []), fn]);
  }

  close(): void {
    this.#ws.close();
  }
}
