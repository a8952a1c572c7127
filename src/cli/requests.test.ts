import { writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from './main.ts';
import { captureIo, reply, startFake, type FakeFledge } from './fake-server.ts';
import { parent, progress, T0 } from './test-fixtures.ts';

let fake: FakeFledge;
afterEach(async () => fake?.close());

const run = (args: string[], io = captureIo()) => runCli(['--server', fake.url, ...args], io).then((code) => ({ code, io }));

describe('fledge request', () => {
  it('lists requests as a padded table', async () => {
    fake = await startFake({
      'GET /api/requests': () => [
        parent('web'),
        parent('api-server', {
          state: 'PAUSED',
          instanceCounts: { desired: 10, healthy: 0, total: 0 },
          pendingDeployState: {
            deployMarker: { requestId: 'api-server', deployId: 'd7', timestamp: 0 },
            currentDeployState: 'WAITING',
            deployProgress: progress({ phase: 'HEALTH', step: 2, totalSteps: 4, targetActiveInstances: 5, currentActiveInstances: 2 }),
          },
        }),
      ],
    });
    const { code, io } = await run(['request', 'list']);
    expect(code).toBe(0);
    expect(io.out()).toBe(
      [
        'ID          TYPE     STATE   HEALTHY  ACTIVE DEPLOY  PENDING DEPLOY',
        'web         SERVICE  ACTIVE  3/3      d1             -',
        'api-server  SERVICE  PAUSED  0/10     d1             d7 (step 2/4 HEALTH, new tasks: 5 wanted, 2 accepted)',
        '',
      ].join('\n'),
    );
  });

  it('prints the API JSON with --json', async () => {
    const body = [parent('web')];
    fake = await startFake({ 'GET /api/requests': () => body });
    const { code, io } = await run(['request', 'list', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(io.out())).toEqual(body);
  });

  it('creates a request from a file and from stdin', async () => {
    fake = await startFake({ 'POST /api/requests': (c) => ({ ...parent('web'), warnings: ['owners: ignored'], echo: c.body }) });
    const dir = await mkdtemp(join(tmpdir(), 'fledge-cli-'));
    const file = join(dir, 'web.json');
    await writeFile(file, JSON.stringify({ id: 'web', requestType: 'SERVICE', instances: 3 }));

    const fromFile = await run(['request', 'create', '-f', file]);
    expect(fromFile.code).toBe(0);
    expect(fromFile.io.out()).toBe('request web: ACTIVE, 3/3 healthy, active deploy d1\n');
    expect(fromFile.io.err()).toBe('warning: owners: ignored\n');

    const fromStdin = await run(['request', 'create', '-f', '-'], captureIo({ readStdin: async () => '{"id":"web","instances":1}' }));
    expect(fromStdin.code).toBe(0);
    expect(fake.calls.map((c) => c.body)).toEqual([
      { id: 'web', requestType: 'SERVICE', instances: 3 },
      { id: 'web', instances: 1 },
    ]);
  });

  it('rejects a request file that is not JSON without calling the API', async () => {
    fake = await startFake();
    const { code, io } = await run(['request', 'create', '-f', '-'], captureIo({ readStdin: async () => '{nope' }));
    expect(code).toBe(2);
    expect(io.err()).toBe("error: stdin:1:2: not valid JSON: Expected property name or '}'\n  {nope\n   ^\n");
    expect(fake.calls).toEqual([]);
  });

  it('shows one request in detail', async () => {
    fake = await startFake({ 'GET /api/requests/request/web': () => parent('web') });
    const { code, io } = await run(['request', 'get', 'web']);
    expect(code).toBe(0);
    expect(io.out()).toContain('state           ACTIVE\n');
    expect(io.out()).toContain('active deploy   d1\n');
    expect(io.out()).toContain('tasks           healthy 0, not yet healthy 0, pending 0, cleaning 0, load balanced 0\n');
  });

  it('sends scale with the instance count and message', async () => {
    fake = await startFake({ 'PUT /api/requests/request/web/scale': () => parent('web') });
    const { code } = await run(['request', 'scale', 'web', '5', '-m', 'more traffic']);
    expect(code).toBe(0);
    expect(fake.calls[0]).toMatchObject({
      method: 'PUT',
      path: '/api/requests/request/web/scale',
      body: { instances: 5, message: 'more traffic' },
    });
  });

  it.each([
    [['pause', 'web'], 'POST /api/requests/request/web/pause', {}],
    [['unpause', 'web', '-m', 'back'], 'POST /api/requests/request/web/unpause', { message: 'back' }],
    [['bounce', 'web'], 'POST /api/requests/request/web/bounce', {}],
    [['delete', 'web', '-m', 'gone'], 'DELETE /api/requests/request/web', { message: 'gone' }],
  ])('request %j calls %s', async (args, route, body) => {
    fake = await startFake({ [route]: () => parent('web') });
    const { code, io } = await run(['request', ...args]);
    expect(code).toBe(0);
    expect(fake.paths()).toEqual([route]);
    expect(fake.calls[0]?.body).toEqual(body);
    expect(io.out()).toMatch(/^request web: ACTIVE/);
  });

  it('rolls back to the previous deploy or a chosen one, naming it', async () => {
    const rolled = parent('web', {
      pendingDeployState: { deployMarker: { requestId: 'web', deployId: 'd1-rollback-1', timestamp: T0 }, deployProgress: progress() },
    } as never);
    fake = await startFake({ 'POST /api/requests/request/web/rollback': () => ({ ...rolled, rollbackTo: 'd1' }) });
    const plainOne = await run(['request', 'rollback', 'web']);
    expect(plainOne.code).toBe(0);
    expect(fake.calls[0]?.body).toEqual({});
    expect(plainOne.io.out()).toMatch(/^rolling web back to d1 as deploy d1-rollback-1\nrequest web: ACTIVE/);
    expect(plainOne.io.out()).toContain('follow it: fledge deploy watch web d1-rollback-1\n');
    await run(['request', 'rollback', 'web', '--deploy', 'd0', '-m', 'bad release']);
    expect(fake.calls[1]?.body).toEqual({ deployId: 'd0', message: 'bad release' });
  });

  it('escapes ids in paths', async () => {
    fake = await startFake({ 'GET /api/requests/request/a%2Fb': () => parent('a/b') });
    expect((await run(['request', 'get', 'a/b'])).code).toBe(0);
  });

  it('rejects a non-numeric instance count before calling the API', async () => {
    fake = await startFake();
    const { code, io } = await run(['request', 'scale', 'web', 'many']);
    expect(code).toBe(2);
    expect(io.err()).toContain('instances: must be an integer >= 0, got "many"');
    expect(fake.calls).toEqual([]);
  });
});

describe('errors', () => {
  it('prints the API message and details and exits 2 on a 400', async () => {
    fake = await startFake({
      'PUT /api/requests/request/web/scale': () =>
        reply(400, { message: 'instances: request web already has 3 instance(s)', details: [{ field: 'instances', rule: 'must change' }] }),
    });
    const { code, io } = await run(['request', 'scale', 'web', '3']);
    expect(code).toBe(2);
    expect(io.out()).toBe('');
    expect(io.err()).toBe('error: instances: request web already has 3 instance(s)\n  instances: must change\n');
  });

  it('exits 3 on a 404 and 7 on a 500', async () => {
    fake = await startFake({
      'GET /api/requests/request/nope': () => reply(404, { message: 'Request nope not found', details: [] }),
      'GET /api/requests': () => reply(500, { message: 'Internal error: disk full', details: [] }),
    });
    const missing = await run(['request', 'get', 'nope']);
    expect([missing.code, missing.io.err()]).toEqual([3, 'error: Request nope not found\n']);
    const broken = await run(['request', 'list']);
    expect([broken.code, broken.io.err()]).toEqual([7, 'error: Internal error: disk full\n']);
  });

  it('names the URL when the server cannot be reached', async () => {
    const port = await closedPort();
    const io = captureIo();
    const code = await runCli(['--server', `http://127.0.0.1:${port}`, 'request', 'list'], io);
    expect(code).toBe(5);
    expect(io.err()).toBe(`error: cannot reach Fledge at http://127.0.0.1:${port}: connect ECONNREFUSED\n`);
  });

  it('reports a missing argument as a usage error', async () => {
    const io = captureIo();
    expect(await runCli(['request', 'scale', 'web'], io)).toBe(2);
    expect(io.err()).toContain("error: missing required argument 'instances'");
  });
});

describe('global options', () => {
  it('takes the server from FLEDGE_URL and sends FLEDGE_TOKEN as a bearer token', async () => {
    fake = await startFake({ 'GET /api/requests': () => [] });
    const io = captureIo({ env: { FLEDGE_URL: fake.url, FLEDGE_TOKEN: 's3cret' } });
    expect(await runCli(['request', 'list'], io)).toBe(0);
    expect(io.out()).toBe('no requests\n');
    expect(fake.calls[0]?.headers.authorization).toBe('Bearer s3cret');
  });

  it('accepts --server after the subcommand', async () => {
    fake = await startFake({ 'GET /api/state': () => ({ activeRequests: 2, pendingDeploys: 1 }) });
    const io = captureIo();
    expect(await runCli(['state', '--server', fake.url], io)).toBe(0);
    expect(io.out()).toBe('active requests  2\npending deploys  1\n');
  });
});

describe('fledge serve', () => {
  it('passes only the flags given, under the server config names', async () => {
    const seen: unknown[] = [];
    const io = captureIo({ loadServer: async () => ({ runServe: async (flags) => void seen.push(flags) }) });
    const code = await runCli(
      [
        'serve',
        '--port',
        '8080',
        '--lb',
        'none',
        '--data-dir',
        '/tmp/f',
        '--port-range-from',
        '32000',
        '--memory-mb',
        '512',
        '--allow-canary-lb-change',
        '--log-level',
        'debug',
        '--cpus',
        '1.5',
        '--no-auth',
        '--allowed-origin',
        'http://localhost:5173',
      ],
      io,
    );
    expect(code).toBe(0);
    expect(seen).toEqual([
      {
        port: 8080,
        lb: 'none',
        dataDir: '/tmp/f',
        portRangeFrom: 32000,
        memoryMb: 512,
        allowCanaryLbChange: true,
        logLevel: 'debug',
        cpus: 1.5,
        noAuth: true,
        allowedOrigin: ['http://localhost:5173'],
      },
    ]);
  });

  it('rejects an unknown load balancer kind', async () => {
    const io = captureIo({ loadServer: async () => ({ runServe: async () => undefined }) });
    expect(await runCli(['serve', '--lb', 'nginx'], io)).toBe(2);
    expect(io.err()).toContain('Allowed choices are builtin, haproxy, none');
  });
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
