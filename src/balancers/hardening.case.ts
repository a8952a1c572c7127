// A proxying balancer (builtin, HAProxy) against hostile clients, over raw sockets on
// 127.0.0.1: requests that try to smuggle a second request past it, forged X-Forwarded-*,
// oversized headers, slow headers and bodies, idle keep-alive connections and too many
// connections. Every wait is bounded; every socket is closed.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClientLimits } from './limits.ts';
import { request, startUpstream, waitFor, type TestUpstream } from './test-support.ts';
import type { Balancer, LbService } from './types.ts';

export interface HardeningOptions extends Partial<ClientLimits> {
  trustForwardedFrom?: string[];
}

export interface HardenedBalancer {
  balancer: Balancer;
  port: number;
  close(): Promise<void>;
}

/** How an implementation answers what both refuse in their own way. */
export interface HardeningTraits {
  /** status of a request head larger than maxHeaderBytes */
  headerTooLarge: number;
  /** beyond maxConnections: the connection is closed (builtin) or waits unserved in the backlog (HAProxy) */
  beyondMaxConnections: 'closed' | 'queued';
  /** drops the other headers a client names in Connection (RFC 9110 §7.6.1); HAProxy 2.6 cannot */
  dropsConnectionNamedHeaders: boolean;
}

const web: LbService = { serviceId: 'web', basePath: '/web', groups: [] };

interface RawClient {
  socket: net.Socket;
  /** everything the server sent so far */
  data(): string;
  closed(): boolean;
  /** ms from connect to close (undefined while open) */
  closedAfterMs(): number | undefined;
}

export function hardeningSuite(
  name: string,
  make: (options: HardeningOptions) => Promise<HardenedBalancer>,
  traits: HardeningTraits,
): void {
  describe(`${name} balancer against hostile clients`, () => {
    const cleanups: (() => Promise<void> | void)[] = [];
    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    async function setup(options: HardeningOptions = {}): Promise<{ port: number; up: TestUpstream }> {
      const lb = await make(options);
      cleanups.push(() => lb.close());
      const up = await startUpstream('a');
      cleanups.push(() => up.close());
      const status = await lb.balancer.apply(`op-${Math.random().toString(36).slice(2)}`, web, [up.upstream()], []);
      if (status.state !== 'SUCCESS')
        await waitFor(async () => (await lb.balancer.state(status.operationId))?.state === 'SUCCESS', 'the upstream to be added');
      return { port: lb.port, up };
    }

    async function connect(port: number): Promise<RawClient> {
      const socket = net.connect(port, '127.0.0.1');
      cleanups.push(() => void socket.destroy());
      const started = Date.now();
      let data = '';
      let closedAt: number | undefined;
      socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
      socket.on('error', () => {});
      socket.on('close', () => (closedAt = Date.now()));
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      return {
        socket,
        data: () => data,
        closed: () => closedAt !== undefined,
        closedAfterMs: () => (closedAt === undefined ? undefined : closedAt - started),
      };
    }

    const smuggled = 'GET /admin HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n';

    it.each([
      [
        'content-length',
        `POST /web/x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, content-length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
      ],
      [
        'transfer-encoding',
        `POST /web/x HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`,
      ],
      ['host', 'GET /web/x HTTP/1.1\r\nHost: a\r\nConnection: close, Host\r\n\r\n'],
    ])('refuses a request whose Connection names %s with a 400 and forwards nothing', async (_name, raw) => {
      const { port, up } = await setup();
      const client = await connect(port);
      client.socket.write(raw);
      // Answered at once; whether the connection stays open is the proxy's choice (its own framing is sound).
      await waitFor(() => client.data().includes('may not name') || client.closed(), 'the proxy to answer');
      expect(client.data()).toMatch(/^HTTP\/1\.1 400 /);
      expect(client.data()).toContain('the Connection header may not name');
      // and the connection was not read on: nothing reached the upstream, the smuggled request least of all
      expect(up.received).toEqual([]);
      expect((await request(port, '/web/ok')).status).toBe(200);
      expect(up.received.map((r) => r.url)).toEqual(['/web/ok']);
    });

    it('sets X-Forwarded-For/Host/Proto itself, dropping what an untrusted client claims', async () => {
      const { port, up } = await setup();
      await request(port, '/web/x', {
        headers: {
          'x-forwarded-for': '203.0.113.9',
          'x-forwarded-host': 'bank.example',
          'x-forwarded-proto': 'https',
          'x-real-ip': '203.0.113.9',
          forwarded: 'for=203.0.113.9',
        },
      });
      expect(up.received[0]?.headers).toMatchObject({
        'x-forwarded-for': '127.0.0.1',
        'x-forwarded-host': `127.0.0.1:${port}`,
        'x-forwarded-proto': 'http',
      });
      expect(up.received[0]?.headers['x-real-ip']).toBeUndefined();
      expect(up.received[0]?.headers.forwarded).toBeUndefined();
    });

    it('keeps the X-Forwarded-* of a --trust-forwarded-from proxy, appending to its chain', async () => {
      const { port, up } = await setup({ trustForwardedFrom: ['127.0.0.0/8'] });
      await request(port, '/web/x', {
        headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-host': 'shop.example', 'x-forwarded-proto': 'https' },
      });
      expect(up.received[0]?.headers).toMatchObject({
        'x-forwarded-for': '203.0.113.9, 127.0.0.1',
        'x-forwarded-host': 'shop.example',
        'x-forwarded-proto': 'https',
      });
    });

    it(`${traits.dropsConnectionNamedHeaders ? 'drops' : 'forwards'} other headers a client names in Connection`, async () => {
      const { port, up } = await setup();
      await request(port, '/web/x', {
        headers: { connection: 'keep-alive, x-hop', 'x-hop': '1', 'x-end': '2', 'keep-alive': 'timeout=5' },
      });
      expect(up.received[0]?.headers['x-hop']).toBe(traits.dropsConnectionNamedHeaders ? undefined : '1');
      expect(up.received[0]?.headers['keep-alive']).toBeUndefined();
      expect(up.received[0]?.headers['x-end']).toBe('2');
    });

    it(`answers ${traits.headerTooLarge} to headers larger than the limit`, async () => {
      const { port, up } = await setup({ maxHeaderBytes: 4096 });
      const big = await request(port, '/web/x', { headers: { 'x-big': 'a'.repeat(8000) } }).catch((err: Error) => ({
        status: err.message,
      }));
      expect(big.status).toBe(traits.headerTooLarge);
      expect((await request(port, '/web/x', { headers: { 'x-small': 'a'.repeat(1000) } })).status).toBe(200);
      expect(up.received).toHaveLength(1);
    });

    it('closes a connection whose headers do not arrive within the header timeout (slowloris)', async () => {
      const { port, up } = await setup({ headerTimeoutMs: 400 });
      const client = await connect(port);
      client.socket.write('GET /web/x HTTP/1.1\r\nHost: a\r\n');
      // a header byte now and then, never the end of the headers
      const drip = setInterval(() => client.socket.writable && client.socket.write('X'), 50);
      cleanups.push(() => clearInterval(drip));
      await waitFor(() => client.closed(), 'the slow connection to be closed', { timeoutMs: 5_000, intervalMs: 20 });
      clearInterval(drip);
      expect(client.data()).toMatch(/^HTTP\/1\.1 408 |^$/);
      expect(client.closedAfterMs()).toBeGreaterThanOrEqual(400);
      expect(up.received).toEqual([]);
    });

    it('closes a connection that never sends a request', async () => {
      const { port } = await setup({ headerTimeoutMs: 400 });
      const client = await connect(port);
      await waitFor(() => client.closed(), 'the silent connection to be closed', { timeoutMs: 5_000, intervalMs: 20 });
    });

    it('closes a request whose body does not arrive within the request timeout', async () => {
      const { port, up } = await setup({ headerTimeoutMs: 300, requestTimeoutMs: 600 });
      const client = await connect(port);
      client.socket.write('POST /web/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nabc');
      const drip = setInterval(() => client.socket.writable && client.socket.write('x'), 50);
      cleanups.push(() => clearInterval(drip));
      await waitFor(() => client.closed(), 'the slow upload to be cut', { timeoutMs: 5_000, intervalMs: 20 });
      clearInterval(drip);
      // at the request timeout (builtin), or at the header timeout, which covers a buffered body (HAProxy)
      expect(client.closedAfterMs()).toBeGreaterThanOrEqual(300);
      // the upstream never saw a whole request
      expect(up.received).toEqual([]);
    });

    it('closes idle keep-alive connections after the keep-alive timeout', async () => {
      const { port } = await setup({ keepAliveTimeoutMs: 300 });
      const clients = await Promise.all(Array.from({ length: 20 }, () => connect(port)));
      for (const c of clients) c.socket.write('GET /web/x HTTP/1.1\r\nHost: a\r\n\r\n');
      await waitFor(() => clients.every((c) => /^HTTP\/1\.1 200 /.test(c.data())), 'every answer');
      expect(clients.every((c) => !c.closed())).toBe(true);
      await waitFor(() => clients.every((c) => c.closed()), 'idle keep-alive connections to be closed', {
        timeoutMs: 5_000,
        intervalMs: 20,
      });
    });

    it('serves no connection beyond the maximum, and serves again once the others are gone', async () => {
      const { port, up } = await setup({ maxConnections: 5, headerTimeoutMs: 60_000, requestTimeoutMs: 60_000 });
      const held = await Promise.all(Array.from({ length: 5 }, () => connect(port)));
      // Each held connection has started a request, so the proxy counts it as busy.
      for (const c of held) c.socket.write('GET /web/held HTTP/1.1\r\nHost: a\r\n');
      const extra = await connect(port);
      extra.socket.write('GET /web/extra HTTP/1.1\r\nHost: a\r\n\r\n');
      if (traits.beyondMaxConnections === 'closed') {
        await waitFor(() => extra.closed(), 'the connection beyond the maximum to be closed');
        expect(extra.data()).toBe('');
      } else {
        // Not accepted: it waits in the kernel's backlog. Give it time to be (wrongly) served.
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(extra.data()).toBe('');
        expect(up.received.map((r) => r.url)).not.toContain('/web/extra');
      }
      expect(held.every((c) => !c.closed())).toBe(true);
      for (const c of held) c.socket.destroy();
      await waitFor(async () => (await request(port, '/web/x').catch(() => ({ status: 0 }))).status === 200, 'the proxy to serve again');
    });
  });
}
