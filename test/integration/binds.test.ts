// The API and the load balancer listen where they are told, independently (--host, --lb-host),
// an API reachable from other machines says so in the log, with its addresses, and slow or
// idle clients cannot hold the API's connections.
import http from 'node:http';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import type { Logger } from '../../src/logger.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { tempDataDir } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(4);

function capture(): Logger & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, ...(msg !== undefined ? { msg } : {}) });
  return { lines, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

function get(host: string, port: number, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/api/requests', headers, agent: false, timeout: 5_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

let server: FledgeServer | undefined;
let dataDir: string | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('listen addresses', () => {
  it('puts the load balancer on --lb-host, apart from the API', async () => {
    dataDir = tempDataDir();
    const logger = capture();
    server = await startServer(
      loadConfig({ dataDir, host: '127.0.0.1', port: PORTS.from, lbHost: '127.0.0.2', lbPort: PORTS.from + 1, logLevel: 'silent' }, {}),
      { logger },
    );
    expect(server.lbUrl).toBe(`http://127.0.0.2:${PORTS.from + 1}`);
    // the LB answers on its own address only (503: nothing routed), the API on its own
    expect(await get('127.0.0.2', PORTS.from + 1)).toBe(503);
    await expect(get('127.0.0.1', PORTS.from + 1)).rejects.toThrow(/ECONNREFUSED/);
    await expect(get('127.0.0.2', PORTS.from)).rejects.toThrow(/ECONNREFUSED/);
    expect(await get('127.0.0.1', PORTS.from, { authorization: `Bearer ${server.adminToken}` })).toBe(200);
    expect(logger.lines.some((l) => l.level === 'warn' && /non-loopback/.test(l.msg ?? ''))).toBe(false);
  });

  it('logs the addresses of an API on all interfaces, and accepts them (not other names) as Host', async () => {
    dataDir = tempDataDir();
    const logger = capture();
    const port = PORTS.from + 2;
    server = await startServer(loadConfig({ dataDir, host: '0.0.0.0', port, lb: 'none', logLevel: 'silent' }, {}), { logger });
    const warning = logger.lines.find((l) => l.level === 'warn' && /non-loopback address/.test(l.msg ?? ''));
    expect(warning?.obj).toMatchObject({ addresses: expect.arrayContaining([`http://127.0.0.1:${port}`]) });
    const auth = { authorization: `Bearer ${server.adminToken}` };
    const address = Object.values(networkInterfaces())
      .flatMap((l) => l ?? [])
      .find((a) => a.family === 'IPv4')?.address;
    expect(await get('127.0.0.1', port, { ...auth, host: `${address}:${port}` })).toBe(200);
    expect(await get('127.0.0.1', port, { ...auth, host: `fledge.example:${port}` })).toBe(421);
  });
});

describe('the API against slow and idle clients', () => {
  async function connect(port: number) {
    const socket = net.connect(port, '127.0.0.1');
    let closed = false;
    let data = '';
    socket.on('close', () => (closed = true));
    socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
    socket.on('error', () => {});
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return { socket, closed: () => closed, data: () => data };
  }

  it('cuts slow headers and idle keep-alive connections, and keeps event streams', async () => {
    dataDir = tempDataDir();
    const port = PORTS.from + 3;
    server = await startServer(loadConfig({ dataDir, host: '127.0.0.1', port, lb: 'none', logLevel: 'silent' }, {}), {
      logger: capture(),
      apiServer: { headersTimeout: 400, requestTimeout: 800, keepAliveTimeout: 300 },
    });
    const slow = await connect(port);
    slow.socket.write('GET /api/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const drip = setInterval(() => slow.socket.writable && slow.socket.write('X'), 50);
    const idle = await connect(port);
    idle.socket.write(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    const stream = await connect(port);
    stream.socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${server.adminToken}\r\n\r\n`);
    try {
      await waitFor(() => slow.closed() && idle.closed(), {
        timeoutMs: 10_000,
        intervalMs: 20,
        message: 'slow and idle connections to be closed',
      });
      expect(idle.data()).toMatch(/^HTTP\/1\.1 200 /);
      // an open event stream is a response in progress: no timeout applies to it, even past them all
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      expect(stream.closed()).toBe(false);
      expect(stream.data()).toMatch(/^HTTP\/1\.1 200 [\s\S]*event: hello/);
    } finally {
      clearInterval(drip);
      for (const c of [slow, idle, stream]) c.socket.destroy();
    }
  });
});
