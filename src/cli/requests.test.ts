// `fledge request`, errors and global options, against the real server (test/helpers/cli-app.ts).
import { createServer as createHttpServer } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  captureIo,
  cliRunner,
  deployed,
  deployOf,
  manualCanary,
  pendingAt,
  requestBody,
  requestWithDeploy,
  startCliApp,
  uniqueId,
  type CliApp,
} from '../../test/helpers/cli-app.ts';
import { FledgeClient } from '../api/client.ts';
import { freePort } from '../../test/helpers/ports.ts';
import { runCli } from './main.ts';

let app: CliApp;
beforeAll(async () => {
  app = await startCliApp();
});
afterAll(async () => app?.close());

const { io, run, since } = cliRunner(() => app);

interface RequestState {
  request: { instances: number };
  state: string;
}
const getRequest = (id: string) => app.api<RequestState>('GET', `/api/requests/request/${encodeURIComponent(id)}`);

describe('fledge request list', () => {
  // its own server: the list is every request there is
  let own: CliApp;
  beforeAll(async () => {
    own = await startCliApp();
  });
  afterAll(async () => own?.close());
  const runOwn = (args: string[]) => {
    const out = captureIo({ env: { FLEDGE_TOKEN: own.adminToken } });
    return runCli(['--server', own.url, ...args], out).then((code) => ({ code, io: out }));
  };

  it('is "no requests" with none', async () => {
    const { code, io } = await runOwn(['request', 'list']);
    expect(code).toBe(0);
    expect(io.out()).toBe('no requests\n');
  });

  it('lists requests as a padded table, a pending deploy with its step', async () => {
    await requestWithDeploy(own, 'web');
    await requestWithDeploy(own, 'paused-one', { request: { instances: 2 } });
    await own.api('POST', '/api/requests/request/paused-one/pause', {});
    await requestWithDeploy(own, 'api-server', { request: { instances: 4, loadBalanced: true }, deploy: { ...LB_DEPLOY } });
    await own.api('POST', '/api/deploys', { deploy: deployOf('api-server', 'd7', { ...LB_DEPLOY, ...manualCanary(1) }) });
    await pendingAt(own, 'api-server', 'ACCEPTANCE', 1);
    const { code, io } = await runOwn(['request', 'list']);
    expect(code).toBe(0);
    expect(io.out()).toBe(
      [
        'ID          TYPE     STATE   HEALTHY       ACTIVE DEPLOY  PENDING DEPLOY',
        // the canary's task is healthy beside the 4 of d1: a surge, not "5/4"
        'api-server  SERVICE  ACTIVE  4/4 +1 surge  d1             d7 (step 1/4 ACCEPTANCE, new tasks: 1 wanted, 0 accepted)',
        'paused-one  SERVICE  PAUSED  0/2           d1             -',
        'web         SERVICE  ACTIVE  3/3           d1             -',
        '',
      ].join('\n'),
    );
  });

  it('prints the API JSON with --json', async () => {
    const { code, io } = await runOwn(['request', 'list', '--json']);
    expect(code).toBe(0);
    // the API's answer as the client reads it (Fledge's own fields over their Singularity forms)
    expect(JSON.parse(io.out())).toEqual(await new FledgeClient(own.server.url, { token: own.adminToken }).listRequests());
  });
});

const LB_DEPLOY = { serviceBasePath: '/api-server', loadBalancerGroups: ['default'] };

describe('fledge request', () => {
  it('creates a request from a file and from stdin', async () => {
    const id = uniqueId('web');
    const dir = await mkdtemp(join(tmpdir(), 'fledge-cli-'));
    const file = join(dir, 'web.json');
    // a Singularity field Fledge keeps but does not act on: the API warns about it
    await writeFile(file, JSON.stringify({ id, requestType: 'SERVICE', instances: 3, hideEvenNumberAcrossRacksHint: true }));
    const calls = since();
    const fromFile = await run(['request', 'create', '-f', file]);
    expect(fromFile.io.err()).toBe(
      "warning: hideEvenNumberAcrossRacksHint: accepted and stored, but Fledge does not act on it (a hint for Singularity's UI)\n",
    );
    expect(fromFile.code).toBe(0);
    expect(fromFile.io.out()).toBe(`request ${id}: ACTIVE, 0/3 healthy, active deploy -\n`);

    const fromStdin = await run(
      ['request', 'create', '-f', '-'],
      io({ readStdin: async () => `{"id":"${id}","requestType":"SERVICE","instances":1}` }),
    );
    expect(fromStdin.code, fromStdin.io.err()).toBe(0);
    expect(calls.calls().map((c) => c.body)).toEqual([
      { id, requestType: 'SERVICE', instances: 3, hideEvenNumberAcrossRacksHint: true },
      { id, requestType: 'SERVICE', instances: 1 },
    ]);
    expect((await getRequest(id)).request.instances).toBe(1);
  });

  it('rejects a request file that is not JSON without calling the API', async () => {
    const calls = since();
    const { code, io: out } = await run(['request', 'create', '-f', '-'], io({ readStdin: async () => '{nope' }));
    expect(code).toBe(2);
    expect(out.err()).toBe("error: stdin:1:2: not valid JSON: Expected property name or '}'\n  {nope\n   ^\n");
    expect(calls.calls()).toEqual([]);
  });

  it('shows one request in detail', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    const { code, io } = await run(['request', 'get', id]);
    expect(code).toBe(0);
    expect(io.out()).toContain('state           ACTIVE\n');
    expect(io.out()).toContain('active deploy   d1\n');
    expect(io.out()).toContain('tasks           healthy 3, not yet healthy 0, pending 0, cleaning 0, load balanced 0\n');
  });

  it('sends scale with the instance count and message', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    const calls = since();
    const { code, io } = await run(['request', 'scale', id, '5', '-m', 'more traffic']);
    expect(code).toBe(0);
    expect(calls.calls()[0]).toMatchObject({
      method: 'PUT',
      path: `/api/requests/request/${id}/scale`,
      body: { instances: 5, message: 'more traffic' },
    });
    expect(io.out()).toMatch(new RegExp(`^request ${id}: ACTIVE, \\d/5 healthy, active deploy d1\\n`));
    expect((await getRequest(id)).request.instances).toBe(5);
  });

  it.each([
    [['pause'], 'POST', 'pause', {}, 'PAUSED'],
    [['unpause', '-m', 'back'], 'POST', 'unpause', { message: 'back' }, 'ACTIVE'],
    [['bounce'], 'POST', 'bounce', {}, 'ACTIVE'],
    [['delete', '-m', 'gone'], 'DELETE', '', { message: 'gone' }, 'DELETING'],
  ])('request %j calls %s .../%s', async (args, method, action, body, state) => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    if (action === 'unpause') await app.api('POST', `/api/requests/request/${id}/pause`, {});
    const route = `${method} /api/requests/request/${id}${action ? `/${action}` : ''}`;
    const calls = since();
    const { code, io } = await run(['request', args[0]!, id, ...args.slice(1)]);
    expect(code, io.err()).toBe(0);
    expect(calls.paths().filter((p) => !p.startsWith('GET '))).toEqual([route]);
    expect(calls.calls().find((c) => c.method !== 'GET')?.body).toEqual(body);
    expect(io.out()).toMatch(new RegExp(`^request ${id}: ${state}`));
  });

  it('rolls back to the previous deploy or a chosen one, naming it', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id, { deployId: 'd0' });
    await app.api('POST', '/api/deploys', { deploy: deployOf(id, 'd1') });
    await deployed(app, id, 'd1');
    await app.api('POST', '/api/deploys', { deploy: deployOf(id, 'd2') });
    await deployed(app, id, 'd2');
    const calls = since();
    const plainOne = await run(['request', 'rollback', id]);
    expect(plainOne.code, plainOne.io.err()).toBe(0);
    expect(calls.calls()[0]?.body).toEqual({});
    const pending = /as deploy (\S+)\n/.exec(plainOne.io.out())?.[1];
    expect(plainOne.io.out()).toMatch(new RegExp(`^rolling ${id} back to d1 as deploy d1_rb\\d+\\nrequest ${id}: ACTIVE`));
    expect(plainOne.io.out()).toContain(`follow it: fledge deploy watch ${id} ${pending}\n`);
    await deployed(app, id, pending!);
    const chosen = await run(['request', 'rollback', id, '--deploy', 'd0', '-m', 'bad release']);
    expect(chosen.code, chosen.io.err()).toBe(0);
    expect(calls.calls().filter((c) => c.method === 'POST')[1]?.body).toEqual({ deployId: 'd0', message: 'bad release' });
    expect(chosen.io.out()).toMatch(new RegExp(`^rolling ${id} back to d0 as deploy d0_rb\\d+\\n`));
  });

  it('escapes ids in paths', async () => {
    const calls = since();
    const { code, io } = await run(['request', 'get', 'a/b']);
    // the id reached the API as one path segment: its 404 names it whole
    expect(calls.paths()).toEqual(['GET /api/requests/request/a%2Fb']);
    expect([code, io.err()]).toEqual([3, 'error: Request a/b not found\n']);
  });

  it('rejects a non-numeric instance count before calling the API', async () => {
    const calls = since();
    const { code, io } = await run(['request', 'scale', 'web', 'many']);
    expect(code).toBe(2);
    expect(io.err()).toContain('instances: must be an integer >= 0, got "many"');
    expect(calls.calls()).toEqual([]);
  });
});

describe('errors', () => {
  it('prints the API message and details and exits 2 on a 400', async () => {
    const id = uniqueId('web');
    await app.api('POST', '/api/requests', requestBody(id));
    const { code, io } = await run(['request', 'scale', id, '3']);
    expect(code).toBe(2);
    expect(io.out()).toBe('');
    expect(io.err()).toBe(`error: instances: request ${id} already has 3 instance(s)\n  instances: must change\n`);
  });

  it('exits 3 on a 404', async () => {
    const missing = await run(['request', 'get', 'nope']);
    expect([missing.code, missing.io.err()]).toEqual([3, 'error: Request nope not found\n']);
  });

  it('exits 7 on a 500', async () => {
    // A server error cannot be asked of the real API: a server that answers only that.
    const broken = createHttpServer((_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'Internal error: disk full', details: [] }));
    });
    await new Promise<void>((resolve) => broken.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = broken.address() as { port: number };
      const out = captureIo();
      expect(await runCli(['--server', `127.0.0.1:${port}`, 'request', 'list'], out)).toBe(7);
      expect(out.err()).toBe('error: Internal error: disk full\n');
    } finally {
      await new Promise<void>((resolve) => broken.close(() => resolve()));
    }
  });

  it('names the URL when the server cannot be reached', async () => {
    const port = await freePort();
    const out = captureIo();
    const code = await runCli(['--server', `http://127.0.0.1:${port}`, 'request', 'list'], out);
    expect(code).toBe(5);
    expect(out.err()).toBe(`error: cannot reach Fledge at http://127.0.0.1:${port}: connect ECONNREFUSED\n`);
  });

  it('reports a missing argument as a usage error', async () => {
    const out = captureIo();
    expect(await runCli(['request', 'scale', 'web'], out)).toBe(2);
    expect(out.err()).toContain("error: missing required argument 'instances'");
  });
});

describe('global options', () => {
  it('takes the server from FLEDGE_URL and sends FLEDGE_TOKEN as a bearer token', async () => {
    const calls = since();
    const out = captureIo({ env: { FLEDGE_URL: app.url, FLEDGE_TOKEN: app.adminToken } });
    expect(await runCli(['request', 'list', '--json'], out)).toBe(0);
    expect(Array.isArray(JSON.parse(out.out()))).toBe(true);
    expect(calls.calls()[0]?.headers.authorization).toBe(`Bearer ${app.adminToken}`);
  });

  it('accepts --server after the subcommand', async () => {
    const state = await app.api<{ activeRequests: number; pendingDeploys: number }>('GET', '/api/state');
    const out = io();
    expect(await runCli(['state', '--server', app.url], out)).toBe(0);
    expect(out.out()).toMatch(new RegExp(`^active requests +${state.activeRequests}\n`, 'm'));
    expect(out.out()).toMatch(new RegExp(`^pending deploys +${state.pendingDeploys}\n`, 'm'));
  });
});

describe('fledge serve', () => {
  it('passes only the flags given, under the server config names', async () => {
    const seen: unknown[] = [];
    const out = captureIo({ loadServer: async () => ({ runServe: async (flags) => void seen.push(flags) }) });
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
      out,
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
    const out = captureIo({ loadServer: async () => ({ runServe: async () => undefined }) });
    expect(await runCli(['serve', '--lb', 'nginx'], out)).toBe(2);
    expect(out.err()).toContain('Allowed choices are builtin, haproxy, none, fake.');
  });
});
