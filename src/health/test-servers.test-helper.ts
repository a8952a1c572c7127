// Real HTTP servers on 127.0.0.1 for the health tests, and a condition waiter (no fixed sleeps).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HealthcheckOptions } from '../core/model.ts';

export interface TestServer {
  port: number;
  /** method and url of every request received */
  requests: { method: string; url: string }[];
  close(): Promise<void>;
}

export async function startServer(handler: http.RequestListener, port = 0): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections(); // servers that never answer keep sockets open
        server.close(() => resolve());
      }),
  };
}

export { freePort } from '../../test/helpers/ports.ts';

export async function waitFor(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A healthcheck for these tests: options are seconds, fractions keep the tests fast. */
export const hc = (overrides: Partial<HealthcheckOptions> = {}): HealthcheckOptions => ({
  uri: '/health',
  portIndex: 0,
  protocol: 'HTTP',
  method: 'GET',
  startupDelaySeconds: 0,
  startupTimeoutSeconds: 10,
  startupIntervalSeconds: 0.03,
  intervalSeconds: 0.03,
  responseTimeoutSeconds: 2,
  maxRetries: 3,
  failureStatusCodes: [503],
  ...overrides,
});
