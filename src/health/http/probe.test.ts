import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BODY_BYTES, probeHealth } from './probe.ts';
import { freePort, startServer, type TestServer } from '../test-servers.test-helper.ts';

const servers: TestServer[] = [];
const serve = async (...args: Parameters<typeof startServer>) => {
  const s = await startServer(...args);
  servers.push(s);
  return s;
};
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('probeHealth', () => {
  it('reports the status, duration and body of a 2xx', async () => {
    const s = await serve((_req, res) => res.end('ok'));
    const r = await probeHealth(`http://127.0.0.1:${s.port}/health`, 'GET', 1_000);
    expect(r).toMatchObject({ statusCode: 200, responseBody: 'ok', startup: false });
    expect(r.errorMessage).toBeUndefined();
    expect(r.durationMillis).toBeGreaterThanOrEqual(0);
    expect(s.requests).toEqual([{ method: 'GET', url: '/health' }]);
  });

  it('reports a refused connection as a startup result', async () => {
    const port = await freePort();
    const r = await probeHealth(`http://127.0.0.1:${port}/`, 'GET', 1_000);
    expect(r).toMatchObject({ startup: true, errorMessage: 'Connection refused' });
    expect(r.statusCode).toBeUndefined();
  });

  it('follows redirects to the final status', async () => {
    const s = await serve((req, res) => {
      if (req.url === '/health') res.writeHead(302, { location: '/moved' }).end();
      else if (req.url === '/moved') res.writeHead(301, { location: '/final' }).end();
      else res.writeHead(204).end();
    });
    const r = await probeHealth(`http://127.0.0.1:${s.port}/health`, 'GET', 1_000);
    expect(r.statusCode).toBe(204);
    expect(s.requests.map((q) => q.url)).toEqual(['/health', '/moved', '/final']);
  });

  it('gives up after the response timeout on a server that never answers', async () => {
    const s = await serve(() => {});
    const r = await probeHealth(`http://127.0.0.1:${s.port}/`, 'GET', 100);
    expect(r).toMatchObject({ startup: false, errorMessage: 'No response within 100ms' });
    expect(r.statusCode).toBeUndefined();
    expect(r.durationMillis).toBeGreaterThanOrEqual(90);
    expect(r.durationMillis).toBeLessThan(2_000);
  });

  it('keeps only the first bytes of a large body', async () => {
    const s = await serve((_req, res) => res.writeHead(500).end('x'.repeat(100_000)));
    const r = await probeHealth(`http://127.0.0.1:${s.port}/`, 'GET', 1_000);
    expect(r.statusCode).toBe(500);
    expect(r.responseBody).toBe('x'.repeat(BODY_BYTES));
  });

  it('returns after the first bytes of a body that never ends', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200);
      res.write('y'.repeat(2 * BODY_BYTES)); // and never end
    });
    const r = await probeHealth(`http://127.0.0.1:${s.port}/`, 'GET', 5_000);
    expect(r).toMatchObject({ statusCode: 200, responseBody: 'y'.repeat(BODY_BYTES) });
    expect(r.durationMillis).toBeLessThan(4_000);
  });

  it('keeps the status when the body stalls past the timeout', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200);
      res.write('partial'); // and never end
    });
    const r = await probeHealth(`http://127.0.0.1:${s.port}/`, 'GET', 150);
    expect(r).toMatchObject({ statusCode: 200, responseBody: 'partial', startup: false });
  });

  it('sends POST when asked', async () => {
    const s = await serve((req, res) => res.writeHead(req.method === 'POST' ? 200 : 405).end());
    const r = await probeHealth(`http://127.0.0.1:${s.port}/health`, 'POST', 1_000);
    expect(r.statusCode).toBe(200);
    expect(s.requests).toEqual([{ method: 'POST', url: '/health' }]);
  });

  it('reports other errors without calling them startup', async () => {
    const s = await serve((req) => req.socket.destroy());
    const r = await probeHealth(`http://127.0.0.1:${s.port}/`, 'GET', 1_000);
    expect(r.startup).toBe(false);
    expect(r.statusCode).toBeUndefined();
    expect(r.errorMessage).toMatch(/fetch failed/);
  });

  const hasOpenssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!hasOpenssl)('checks certificates unless allowInsecure', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fledge-health-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-subj',
          '/CN=localhost',
          '-days',
          '1',
          '-keyout',
          join(dir, 'key.pem'),
          '-out',
          join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      const server = https.createServer(
        { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
        (req, res) => {
          if (req.url === '/health') res.writeHead(302, { location: '/ok' }).end();
          else res.end('secure ok');
        },
      );
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
        const strict = await probeHealth(url, 'GET', 2_000);
        expect(strict.statusCode).toBeUndefined();
        expect(strict.startup).toBe(false);
        const insecure = await probeHealth(url, 'GET', 2_000, true);
        expect(insecure).toMatchObject({ statusCode: 200, responseBody: 'secure ok' });
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
