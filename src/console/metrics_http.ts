/**
 * A broker's `GET /metrics` (`yak broker --http-port`): its metrics in
 * Prometheus' text format, behind the bearer token when the process has one.
 *
 * @module
 */
import { httpSecurity, type HttpServer, respond, serveHttp, text } from "./http.ts";

/** The content type of Prometheus' text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Options of {@link serveMetrics}. */
export interface MetricsHttpOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** The text to serve, or null while the broker is still starting. */
  metrics: () => string | null;
  onError?: (message: string, fields: Record<string, unknown>) => void;
}

/**
 * Serves `/metrics` until closed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serveMetrics } from "./metrics_http.ts";
 * // A broker passes `() => broker.services.metricsText()`.
 * const http = await serveMetrics({ host: "127.0.0.1", port: 0, metrics: () => "yak_leader_epoch 3\n" });
 * assert.equal(await (await fetch(`${http.url}metrics`)).text(), "yak_leader_epoch 3\n");
 * await http.close();
 * ```
 */
export async function serveMetrics(opts: MetricsHttpOptions): Promise<HttpServer> {
  const routes = {
    "/metrics": () => {
      const body = opts.metrics();
      if (body === null) return text(503, "503 the broker is starting\n", { "retry-after": "1" });
      return respond(body, 200, { "content-type": METRICS_CONTENT_TYPE });
    },
  };
  return serveHttp({ host: opts.host, port: opts.port, routes, onError: opts.onError, ...await httpSecurity(false) });
}
