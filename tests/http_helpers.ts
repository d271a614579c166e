/**
 * HTTP helpers for the console and metrics tests.
 *
 * @module
 */
import type { TestCluster } from "./harness.ts";

/** GET (or another method) and read the whole body. */
export async function http(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(url, { redirect: "manual", ...init, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** The URL a process printed for its HTTP server (`console on URL`, `broker N metrics on URL`). */
export async function printedUrl(cluster: TestCluster, who: "zookeeper" | number): Promise<string> {
  const proc = who === "zookeeper" ? cluster.zk : cluster.brokers.get(who)!;
  const pattern = who === "zookeeper" ? /^console on (http\S+)$/ : /^broker \d+ metrics on (http\S+)$/;
  return (await proc.waitFor(pattern, 10_000))[1];
}
