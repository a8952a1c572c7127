// The client side's limits, the same for the builtin proxy and HAProxy (--lb-* options).
export interface ClientLimits {
  /** client connections at once */
  maxConnections: number;
  /** request line plus headers */
  maxHeaderBytes: number;
  /** a client must send its request head within this (slow clients) */
  headerTimeoutMs: number;
  /** ...and its whole request within this (HAProxy: the client's inactivity) */
  requestTimeoutMs: number;
  /** an idle keep-alive client connection is closed after this */
  keepAliveTimeoutMs: number;
}

export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  maxConnections: 4096,
  maxHeaderBytes: 16 * 1024,
  headerTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  keepAliveTimeoutMs: 5_000,
};

export function clientLimits(given: Partial<ClientLimits>): ClientLimits {
  const out = { ...DEFAULT_CLIENT_LIMITS };
  for (const key of Object.keys(out) as (keyof ClientLimits)[]) {
    const v = given[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}
