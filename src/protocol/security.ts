/**
 * Who may connect: a shared auth token every connection presents first, and
 * TLS for every listener and connection when certificates are given. One
 * setting per process, made once at start (from flags or environment).
 *
 * @module
 */

/** A process's security settings (PEM texts, not paths). */
export interface Security {
  /** Every connection must send `{"type":"auth","token":...}` first. */
  authToken?: string;
  /** Servers listen with TLS when both are set. */
  tlsCert?: string;
  tlsKey?: string;
  /** Clients connect with TLS and trust this CA when set. */
  tlsCa?: string;
}

let current: Security = {};

/**
 * Sets the process's security settings.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { configureSecurity, security } from "./security.ts";
 * configureSecurity({ authToken: "s3cret" });
 * assert.equal(security().authToken, "s3cret");
 * ```
 */
export function configureSecurity(s: Security): void {
  current = { ...s };
}

/** The process's security settings. */
export function security(): Readonly<Security> {
  return current;
}

/**
 * Compares tokens in time that does not depend on where they differ.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { tokensEqual } from "./security.ts";
 * assert.equal(tokensEqual("s3cret", "s3cret"), true);
 * assert.equal(tokensEqual("s3creT", "s3cret"), false);
 * ```
 */
export function tokensEqual(given: unknown, expected: string): boolean {
  if (typeof given !== "string") return false;
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i % Math.max(1, a.length)] ?? 0) ^ b[i];
  return diff === 0;
}
