// Test helpers for the balancer suites: real upstream servers, a bounded HTTP client, waits.
// Network on 127.0.0.1 only; every wait has a deadline so a broken balancer fails, never hangs.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Balancer, LbOperationStatus, LbService, Upstream } from './types.ts';
import { freePort } from '../../test/helpers/ports.ts';

/** What an implementation supplies to the balancer contract (contract.case.ts). */
export interface BalancerContractDriver {
  balancer: Balancer;
  /**
   * An upstream the balancer can add (backed by a live server where the implementation needs
   * one). It answers 200, or the status a path `/status/<code>` names, after the delay a path
   * `/delay/<ms>` names.
   */
  upstream(taskId: string, deployId?: string): Promise<Upstream>;
  /** An upstream whose address refuses connections. */
  refusingUpstream(taskId: string, deployId?: string): Promise<Upstream>;
  /** One request through the balancer to `path` (under the service's basePath); its status. */
  send(service: LbService, path: string): Promise<number>;
  /**
   * One request with these headers: its status, the task whose upstream answered (its body),
   * and the Set-Cookie values of the answer.
   */
  exchange(service: LbService, path: string, headers?: Record<string, string>): Promise<Exchange>;
  /** How many requests reached this upstream (what its own server saw). */
  received(taskId: string): number;
  /** Move the traffic counters' clock forward. */
  advanceClock(ms: number): void;
  /**
   * Make the removal `operationId` of `upstream` stay WAITING until the returned release is
   * called. Called once the upstream is the only one of `service` in rotation, before the
   * removal is applied. The builtin balancer keeps a request in flight; the fake scripts it.
   */
  holdRemoval(operationId: string, service: LbService, upstream: Upstream): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface Exchange {
  status: number;
  servedBy: string;
  setCookie: string[];
}

export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  { timeoutMs = 5_000, intervalMs = 5 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The operation's state once it left WAITING. */
export async function settled(balancer: Balancer, operationId: string, timeoutMs = 5_000): Promise<LbOperationStatus> {
  let status: LbOperationStatus | undefined;
  await waitFor(
    async () => {
      status = await balancer.state(operationId);
      return status !== undefined && status.state !== 'WAITING';
    },
    `operation ${operationId} to finish`,
    { timeoutMs },
  );
  return status as LbOperationStatus;
}

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A clock the traffic counters read, which a test can move forward. */
export function testClock(): { now: () => number; advance(ms: number): void } {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance(ms: number) {
      offset += ms;
    },
  };
}

export interface TestUpstream {
  name: string;
  port: number;
  /** every request that reached this server */
  received: ReceivedRequest[];
  /** requests to a path containing "/slow" currently held without a response */
  held(): number;
  /** answer every held request (and later ones stop being held) */
  release(): void;
  /** hold "/slow" requests again after a release */
  holdAgain(): void;
  upstream(taskId?: string): Upstream;
  close(): Promise<void>;
}

/**
 * A real upstream answering 200 with its name. Paths containing "/slow" are held until
 * release(), so tests can keep a request in flight for as long as they need.
 */
export async function startUpstream(name: string): Promise<TestUpstream> {
  return startUpstreamOn(name);
}

/** startUpstream on a given port (one handed out earlier), or a reserved one. */
export async function startUpstreamOn(name: string, fixedPort?: number): Promise<TestUpstream> {
  const received: ReceivedRequest[] = [];
  const held: http.ServerResponse[] = [];
  let holding = true;
  const answer = (res: http.ServerResponse) => {
    if (res.destroyed) return;
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
    res.end(name);
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      if (holding && (req.url ?? '').includes('/slow')) {
        held.push(res);
        res.on('close', () => {
          const i = held.indexOf(res);
          if (i !== -1) held.splice(i, 1);
        });
        return;
      }
      const status = Number(/\/status\/(\d{3})/.exec(req.url ?? '')?.[1] ?? 200);
      const delay = Number(/\/delay\/(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
      const send = () => {
        if (res.destroyed) return;
        res.writeHead(status, { 'content-type': 'text/plain', 'x-upstream': name });
        res.end(name);
      };
      if (delay > 0) setTimeout(send, delay);
      else if (status !== 200) send();
      else answer(res);
    });
  });
  const port = await listenReserved(server, fixedPort);
  return {
    name,
    port,
    received,
    held: () => held.length,
    release() {
      holding = false;
      for (const res of held.splice(0)) answer(res);
    },
    holdAgain() {
      holding = true;
    },
    upstream: (taskId = name) => ({ taskId, host: '127.0.0.1', port }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/**
 * A port nothing listens on: connections to it are refused. Reserved for this process and
 * outside the ephemeral range (test/helpers/ports.ts), so nothing else takes it meanwhile.
 */
export async function refusedPort(): Promise<number> {
  return freePort();
}

/** Listen on a reserved port (never port 0: HAProxy, another process, is given the number). */
async function listenReserved(server: http.Server, fixedPort?: number): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = fixedPort ?? (await freePort());
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      return (server.address() as AddressInfo).port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || fixedPort !== undefined || attempt >= 5) throw err;
    }
  }
}

export interface FaultyUpstream {
  name: string;
  port: number;
  /** requests that reached it */
  hits(): number;
  /** answer 200 with its name from now on */
  heal(): void;
  upstream(taskId?: string): Upstream;
  close(): Promise<void>;
}

/**
 * An upstream that reads each request and then fails it: `reset` drops the connection without
 * answering (a crash mid-request), `hang` never answers (a frozen process).
 */
export async function startFaultyUpstream(name: string, behaviour: 'reset' | 'hang'): Promise<FaultyUpstream> {
  let hits = 0;
  let healed = false;
  const server = http.createServer((req, res) => {
    hits += 1;
    req.resume();
    req.on('end', () => {
      if (healed) {
        res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': name });
        res.end(name);
      } else if (behaviour === 'reset') req.socket.destroy();
    });
  });
  const port = await listenReserved(server);
  return {
    name,
    port,
    hits: () => hits,
    heal: () => (healed = true),
    upstream: (taskId = name) => ({ taskId, host: '127.0.0.1', port }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

export interface TestResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RequestOptions {
  method?: string;
  body?: string;
  agent?: http.Agent;
  headers?: http.OutgoingHttpHeaders;
  timeoutMs?: number;
}

/** One request to 127.0.0.1:port; rejects on error or after timeoutMs, never hangs. */
export function request(port: number, path: string, options: RequestOptions = {}): Promise<TestResponse> {
  const { method = 'GET', body, agent, headers = {}, timeoutMs = 5_000 } = options;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, ...(agent ? { agent } : { agent: false }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() });
      });
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`request ${method} ${path} timed out after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}

/**
 * The contract driver for a balancer that proxies HTTP on `address().port` (builtin, haproxy):
 * each upstream is a live server (startUpstream), and a removal is held by a request kept in
 * flight through the balancer to the upstream (`<basePath>/slow`), which keeps its removal
 * draining (the builtin's in-flight count, HAProxy's session count) until released.
 */
export function proxyContractDriver(
  balancer: Balancer & { address(): { port: number } },
  clock: { advance(ms: number): void } = { advance: () => undefined },
): BalancerContractDriver {
  const servers = new Map<string, TestUpstream>();
  return {
    balancer,
    async upstream(taskId, deployId) {
      const server = await startUpstream(taskId);
      servers.set(taskId, server);
      return { ...server.upstream(taskId), ...(deployId !== undefined ? { deployId } : {}) };
    },
    async refusingUpstream(taskId, deployId) {
      return { taskId, host: '127.0.0.1', port: await refusedPort(), ...(deployId !== undefined ? { deployId } : {}) };
    },
    async send(service, path) {
      const base = service.basePath.replace(/\/+$/, '');
      return (await request(balancer.address().port, `${base}${path}`)).status;
    },
    async exchange(service, path, headers = {}) {
      const base = service.basePath.replace(/\/+$/, '');
      const res = await request(balancer.address().port, `${base}${path}`, { headers });
      return { status: res.status, servedBy: res.body, setCookie: res.headers['set-cookie'] ?? [] };
    },
    received: (taskId) => servers.get(taskId)?.received.length ?? 0,
    advanceClock: (ms) => clock.advance(ms),
    async holdRemoval(_operationId, service, upstream) {
      const server = servers.get(upstream.taskId);
      if (!server) throw new Error(`no server for ${upstream.taskId}`);
      const before = server.held();
      const response = request(balancer.address().port, `${service.basePath}/slow`, { timeoutMs: 10_000 });
      await waitFor(() => server.held() > before, `a request held by ${upstream.taskId}`);
      return async () => {
        server.release();
        await response;
      };
    },
    async close() {
      await balancer.close();
      await Promise.all([...servers.values()].map((s) => s.close()));
    },
  };
}
