// The API's front door (guard.ts) through app.request(): Host, Origin, tokens and roles, JSON
// bodies within the size limit, redaction for read tokens, the audit log, --max-instances.
// A refused call changes nothing in the store.
import { beforeEach, describe, expect, it } from 'vitest';
import { ApiFixture, deployBody } from '../../test/helpers/api-fixture.ts';
import { ROUTE_ACCESS } from './access.ts';

const json = { 'content-type': 'application/json' };
const request = { id: 'web', requestType: 'SERVICE', instances: 2 };

async function storeState(f: ApiFixture) {
  return JSON.stringify({
    requests: await f.store.listRequests(),
    pending: await f.store.listPending(),
    tokens: (await f.store.listTokens()).map((t) => t.name),
  });
}

describe('the route table', () => {
  it('has one row per route of the app, and no row without a route', async () => {
    const f = await ApiFixture.create();
    const routes = new Set(f.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`));
    expect([...routes].sort()).toEqual(Object.keys(ROUTE_ACCESS).sort());
  });
});

describe('Host', () => {
  let f: ApiFixture;
  beforeEach(async () => {
    f = await ApiFixture.create({ allowedHosts: ['fledge.internal'], publicUrl: 'https://fledge.example.com/' });
  });

  it.each(['/api/requests', '/api/events', '/', '/requests/web', '/health', '/metrics'])(
    'answers 421 to a foreign Host on GET %s',
    async (path) => {
      const res = await f.call('GET', path, undefined, { host: 'evil.example:7099' });
      expect(res.status).toBe(421);
      expect((res.body as { message: string }).message).toMatch(/Host "evil.example:7099" is not a name of this server/);
    },
  );

  it.each(['localhost:7099', '127.0.0.1', '127.1.2.3:80', '[::1]:7099', 'fledge.internal:7099', 'fledge.example.com'])(
    'accepts Host %s',
    async (host) => {
      expect((await f.call('GET', '/api/requests', undefined, { host })).status).toBe(200);
    },
  );

  it('checks the host of an absolute-form request target too', async () => {
    const res = await f.app.request(new Request('http://evil.example/api/requests', { headers: { host: '127.0.0.1' } }));
    expect(res.status).toBe(421);
  });

  it('refuses a write from a foreign Host before reading it, and stores nothing', async () => {
    const before = await storeState(f);
    const res = await f.call('POST', '/api/requests', request, { host: 'rebound.evil.example' });
    expect(res.status).toBe(421);
    expect(await storeState(f)).toBe(before);
  });
});

describe('Origin', () => {
  let f: ApiFixture;
  beforeEach(async () => {
    f = await ApiFixture.create({ allowedOrigins: ['https://ui.example.com'] });
  });

  it('refuses a text/plain POST from a foreign page (no preflight) with 403, and stores nothing', async () => {
    const before = await storeState(f);
    const res = await f.call('POST', '/api/requests', JSON.stringify(request), {
      'content-type': 'text/plain',
      origin: 'https://evil.example',
      authorization: '',
    });
    expect(res.status).toBe(403);
    expect((res.body as { message: string }).message).toMatch(/Origin https:\/\/evil.example may not call this API/);
    expect(await storeState(f)).toBe(before);
  });

  it.each(['https://evil.example', 'null', 'http://localhost:7099.evil.example', 'file://'])(
    'refuses Origin %s, even with a valid token',
    async (origin) => {
      expect((await f.call('GET', '/api/requests', undefined, { origin, host: 'localhost:7099' })).status).toBe(403);
    },
  );

  it('accepts the page the server itself serves (same origin)', async () => {
    const res = await f.call('POST', '/api/requests', request, { origin: 'http://localhost:7099', host: 'localhost:7099' });
    expect(res.status).toBe(200);
  });

  it('answers an allowed origin with CORS, its preflight included', async () => {
    const preflight = await f.app.request('/api/requests', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://ui.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://ui.example.com');
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    const res = await f.call('GET', '/api/requests', undefined, { origin: 'https://ui.example.com' });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe('https://ui.example.com');
    expect(res.headers.get('vary')).toBe('Origin');
  });

  it('gives a foreign preflight no CORS headers', async () => {
    const res = await f.app.request('/api/requests', { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
    expect(res.status).toBe(403);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('tokens and roles', () => {
  let f: ApiFixture;
  beforeEach(async () => {
    f = await ApiFixture.create();
    await f.createRequest('web');
  });

  it('answers 401 with WWW-Authenticate without a token, and stores nothing', async () => {
    const before = await storeState(f);
    const res = await f.call('PUT', '/api/requests/request/web/scale', { instances: 5 }, { authorization: '' });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="fledge"');
    expect(await storeState(f)).toBe(before);
  });

  it.each(['Bearer fl_' + 'x'.repeat(43), 'Bearer nonsense', 'Basic YWRtaW46YWRtaW4=', `Bearer ${'a'.repeat(10_000)}`])(
    'answers 401 invalid_token to Authorization %#',
    async (authorization) => {
      const res = await f.call('GET', '/api/requests', undefined, { authorization });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/Bearer .*invalid_token|Bearer realm/);
    },
  );

  it('answers 403 naming the role needed to a token that is too weak', async () => {
    const read = await f.token('read', 'viewer');
    const deploy = await f.token('deploy', 'ci');
    const scale = await f.call('PUT', '/api/requests/request/web/scale', { instances: 5 }, { authorization: `Bearer ${read}` });
    expect(scale.status).toBe(403);
    expect((scale.body as { message: string }).message).toBe(
      'PUT /api/requests/request/web/scale needs a token with role deploy (or admin); token viewer has role read',
    );
    const tokens = await f.call('GET', '/api/tokens', undefined, { authorization: `Bearer ${deploy}` });
    expect(tokens.status).toBe(403);
    expect((tokens.body as { message: string }).message).toMatch(/needs a token with role admin; token ci has role deploy/);
    expect((await f.store.getRequest('web'))?.request.instances).toBe(2);
  });

  it('lets each role do what it allows', async () => {
    const read = await f.token('read');
    const deploy = await f.token('deploy');
    expect((await f.call('GET', '/api/requests', undefined, { authorization: `Bearer ${read}` })).status).toBe(200);
    expect((await f.call('GET', '/metrics', undefined, { authorization: `Bearer ${read}` })).status).toBe(200);
    expect((await f.call('PUT', '/api/requests/request/web/scale', { instances: 3 }, { authorization: `Bearer ${deploy}` })).status).toBe(
      200,
    );
    expect((await f.call('GET', '/api/audit')).status).toBe(200);
  });

  it('keeps /health and the UI open, and /health says nothing', async () => {
    const health = await f.call('GET', '/health', undefined, { authorization: '' });
    expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect((await f.call('GET', '/', undefined, { authorization: '' })).status).not.toBe(401);
  });

  it('needs a token for a path nothing serves', async () => {
    expect((await f.call('GET', '/api/nothing', undefined, { authorization: '' })).status).toBe(401);
    expect((await f.call('POST', '/nothing', {}, { authorization: '' })).status).toBe(401);
    expect((await f.call('GET', '/api/nothing')).status).toBe(404);
  });

  it('makes, lists and revokes tokens; a token is shown once and never stored', async () => {
    const made = await f.call<{ token: string; name: string; role: string; createdBy: string }>('POST', '/api/tokens', {
      name: 'ci',
      role: 'deploy',
    });
    expect(made.status).toBe(200);
    expect(made.body).toMatchObject({ name: 'ci', role: 'deploy', createdBy: 'admin' });
    expect(made.body.token).toMatch(/^fl_/);
    const list = await f.call<unknown[]>('GET', '/api/tokens');
    expect(JSON.stringify(list.body)).not.toContain(made.body.token);
    expect(JSON.stringify(list.body)).not.toContain('hash');
    const me = await f.call('GET', '/api/auth/whoami', undefined, { authorization: `Bearer ${made.body.token}` });
    expect(me.body).toEqual({ name: 'ci', role: 'deploy', auth: true });
    expect((await f.call('POST', '/api/tokens', { name: 'ci', role: 'read' })).status).toBe(409);
    expect((await f.call('POST', '/api/tokens', { name: 'bad name', role: 'read' })).status).toBe(400);
    expect((await f.call('POST', '/api/tokens', { name: 'x', role: 'root' })).status).toBe(400);
    expect((await f.call('DELETE', '/api/tokens/ci')).status).toBe(200);
    expect((await f.call('DELETE', '/api/tokens/ci')).status).toBe(404);
    expect((await f.call('GET', '/api/requests', undefined, { authorization: `Bearer ${made.body.token}` })).status).toBe(401);
  });
});

describe('bodies', () => {
  let f: ApiFixture;
  beforeEach(async () => {
    f = await ApiFixture.create({ maxBodyBytes: 4096 });
    await f.createRequest('web');
  });

  it.each(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', ''])(
    'answers 415 to a body sent as %j, and stores nothing',
    async (type) => {
      const before = await storeState(f);
      const res = await f.call('POST', '/api/requests', JSON.stringify({ ...request, id: 'other' }), { 'content-type': type });
      expect(res.status).toBe(415);
      expect(await storeState(f)).toBe(before);
    },
  );

  it('accepts application/json with a charset, and calls without a body', async () => {
    expect(
      (await f.call('POST', '/api/requests', { ...request, id: 'b' }, { 'content-type': 'application/json; charset=utf-8' })).status,
    ).toBe(200);
    expect((await f.call('POST', '/api/requests/request/web/pause')).status).toBe(200);
  });

  it('answers 413 to a body over the limit, declared or streamed, and stores nothing', async () => {
    const before = await storeState(f);
    const big = JSON.stringify({ ...request, id: 'big', owners: ['x'.repeat(5000)] });
    const declared = await f.call('POST', '/api/requests', big, { 'content-length': String(big.length) });
    expect(declared.status).toBe(413);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        // an endless body: the guard must stop reading at the limit
        sent += 1024;
        controller.enqueue(new Uint8Array(1024).fill(32));
        if (sent > 10 * 1024 * 1024) controller.close();
      },
    });
    const streamed = await f.app.request(
      new Request('http://localhost/api/requests', {
        method: 'POST',
        body: stream,
        headers: { ...json, authorization: `Bearer ${f.adminToken}` },
        duplex: 'half',
      } as RequestInit),
    );
    expect(streamed.status).toBe(413);
    expect(sent).toBeLessThan(64 * 1024);
    expect(await storeState(f)).toBe(before);
  });
});

describe('--max-instances', () => {
  let f: ApiFixture;
  beforeEach(async () => {
    f = await ApiFixture.create({ maxInstances: 10 });
    await f.createRequest('web', { loadBalanced: false });
  });

  it.each([
    ['a request', 'POST', '/api/requests', { ...request, instances: 11 }, 'instances'],
    ['a scale', 'PUT', '/api/requests/request/web/scale', { instances: 11 }, 'instances'],
    [
      'an updatedRequest',
      'POST',
      '/api/deploys',
      deployBody('web', 'v1', {}, { updatedRequest: { ...request, instances: 11 } }),
      'updatedRequest.instances',
    ],
    [
      'a plan',
      'POST',
      '/api/deploys/plan',
      deployBody('web', 'v1', {}, { updatedRequest: { ...request, instances: 11 } }),
      'updatedRequest.instances',
    ],
    [
      'a deploy update',
      'POST',
      '/api/deploys/update',
      { requestId: 'web', deployId: 'v1', targetActiveInstances: 11 },
      'targetActiveInstances',
    ],
  ])('refuses %s above it, naming the field', async (_what, method, path, body, field) => {
    const before = await storeState(f);
    const res = await f.call<{ message: string; details: { field: string }[] }>(method, path, body);
    expect(res.status).toBe(400);
    expect(res.body.details.map((d) => d.field)).toContain(field);
    expect(res.body.message).toContain('at most 10');
    expect(await storeState(f)).toBe(before);
  });

  it('accepts it exactly', async () => {
    expect((await f.call('PUT', '/api/requests/request/web/scale', { instances: 10 })).status).toBe(200);
  });
});

describe('what a read token sees', () => {
  it('deploy env and taskEnv values as ***, the names kept; deploy and admin tokens see the values', async () => {
    const f = await ApiFixture.create();
    await f.createRequest('web', { loadBalanced: false });
    const created = await f.post(
      '/api/deploys',
      deployBody('web', 'v1', { env: { DB_PASSWORD: 's3cret' }, taskEnv: { '1': { KEY: 'k1' } } }),
    );
    expect(created.status).toBe(200);
    const read = `Bearer ${await f.token('read')}`;
    const deploy = `Bearer ${await f.token('deploy')}`;
    for (const path of [
      '/api/requests/request/web',
      '/api/requests',
      '/api/history/request/web/deploys',
      '/api/history/request/web/deploy/v1',
    ]) {
      const seen = JSON.stringify((await f.call('GET', path, undefined, { authorization: read })).body);
      expect(seen, path).not.toContain('s3cret');
      expect(seen, path).not.toContain('k1');
      expect(seen, path).toContain('"DB_PASSWORD":"***"');
      expect(JSON.stringify((await f.call('GET', path, undefined, { authorization: deploy })).body), path).toContain('s3cret');
    }
  });
});

describe('the event stream', () => {
  async function readUntil(res: Response, done: (text: string) => boolean, timeoutMs = 5_000): Promise<{ text: string; ended: boolean }> {
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    const deadline = Date.now() + timeoutMs;
    try {
      while (!done(text) && Date.now() < deadline) {
        const next = await Promise.race([reader.read(), new Promise<'late'>((r) => setTimeout(() => r('late'), deadline - Date.now()))]);
        if (next === 'late') break;
        if (next.done) return { text, ended: true };
        text += decoder.decode(next.value, { stream: true });
      }
      return { text, ended: false };
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }

  it('shows a read token env values as *** in events too, and a deploy token the values', async () => {
    const f = await ApiFixture.create();
    await f.createRequest('web', { loadBalanced: false });
    const record = await f.store.getRequest('web');
    const open = async (role: 'read' | 'deploy') => {
      const res = await f.app.request('/api/events', { headers: { authorization: `Bearer ${await f.token(role)}` } });
      expect(res.status).toBe(200);
      return readUntil(res, (t) => t.includes('event: request'));
    };
    const [read, deploy] = [open('read'), open('deploy')];
    await new Promise((r) => setTimeout(r, 100));
    // An event that carries an env (whatever its kind): the stream redacts by key.
    f.events.publish({
      type: 'REQUEST',
      at: 1,
      request: { ...record!, request: { ...record!.request, extra: { env: { DB_PASSWORD: 's3cret' } } } },
    });
    const [seenByRead, seenByDeploy] = [(await read).text, (await deploy).text];
    expect(seenByRead).toContain('"DB_PASSWORD":"***"');
    expect(seenByRead).not.toContain('s3cret');
    expect(seenByDeploy).toContain('s3cret');
  });

  it('ends the stream of a token revoked after it opened', async () => {
    const f = await ApiFixture.create({ eventsPingMillis: 50 });
    const token = await f.token('read', 'viewer');
    const res = await f.app.request('/api/events', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    await f.store.revokeToken('viewer');
    const { ended } = await readUntil(res, () => false);
    expect(ended).toBe(true);
  });
});

describe('the audit log', () => {
  it('records every write, refused ones too, and not reads or plans; deployMarker.user and the history name who acted', async () => {
    const f = await ApiFixture.create();
    const ci = await f.token('deploy', 'ci');
    const viewer = await f.token('read', 'viewer');
    const as = (t: string) => ({ authorization: `Bearer ${t}` });
    await f.call('POST', '/api/requests', { ...request, loadBalanced: false }, as(ci));
    await f.call('GET', '/api/requests', undefined, as(ci));
    await f.call('POST', '/api/deploys/plan', deployBody('web', 'v1'), as(ci));
    await f.call(
      'POST',
      '/api/deploys',
      deployBody('web', 'v1', { canaryDeploySettings: { enableCanaryDeploy: true, acceptanceMode: 'MANUAL' } }),
      as(ci),
    );
    await f.call('PUT', '/api/requests/request/web/scale', { instances: 9 }, as(viewer));
    await f.call('PUT', '/api/requests/request/web/scale', { instances: 9 }, { authorization: '' });
    await f.call('DELETE', '/api/deploys/deploy/v1/request/web', undefined, as(ci));

    const audit = await f.call<
      { tokenName?: string; role?: string; method: string; path: string; requestId?: string; deployId?: string; status: number }[]
    >('GET', '/api/audit');
    expect(audit.body.map((a) => [a.tokenName, a.role, a.method, a.path, a.requestId, a.deployId, a.status])).toEqual([
      ['ci', 'deploy', 'DELETE', '/api/deploys/deploy/v1/request/web', 'web', 'v1', 200],
      [undefined, undefined, 'PUT', '/api/requests/request/web/scale', 'web', undefined, 401],
      ['viewer', 'read', 'PUT', '/api/requests/request/web/scale', 'web', undefined, 403],
      ['ci', 'deploy', 'POST', '/api/deploys', 'web', 'v1', 200],
      ['ci', 'deploy', 'POST', '/api/requests', 'web', undefined, 200],
    ]);
    expect((await f.call<unknown[]>('GET', '/api/audit?tokenName=viewer')).body).toHaveLength(1);
    expect((await f.call<unknown[]>('GET', '/api/audit?requestId=web&limit=2')).body).toHaveLength(2);
    expect((await f.call('GET', '/api/audit?limit=100000')).status).toBe(400);
    expect((await f.call('GET', '/api/audit?colour=red')).status).toBe(400);

    const history = await f.call<{ deployMarker: { user?: string }; actions?: { action: string; user?: string }[] }>(
      'GET',
      '/api/history/request/web/deploy/v1',
    );
    expect(history.body.deployMarker.user).toBe('ci');
    expect(history.body.actions).toEqual([{ action: 'cancel', user: 'ci', at: expect.any(Number) }]);
  });
});

describe('--no-auth', () => {
  it('needs no token, acts as anonymous admin, and still checks Host and Origin', async () => {
    const f = await ApiFixture.create({ noAuth: true });
    expect((await f.call('POST', '/api/requests', request, { authorization: '' })).status).toBe(200);
    expect((await f.call('GET', '/api/auth/whoami', undefined, { authorization: '' })).body).toEqual({
      name: 'anonymous',
      role: 'admin',
      auth: false,
    });
    expect((await f.call('GET', '/api/requests', undefined, { authorization: '', host: 'evil.example' })).status).toBe(421);
    expect((await f.call('POST', '/api/requests', request, { authorization: '', origin: 'https://evil.example' })).status).toBe(403);
  });
});

describe('security headers', () => {
  it('keeps API answers out of caches and the UI out of frames', async () => {
    const f = await ApiFixture.create();
    const api = await f.call('GET', '/api/requests');
    expect(api.headers.get('cache-control')).toBe('no-store');
    expect(api.headers.get('x-content-type-options')).toBe('nosniff');
    const ui = await f.call('GET', '/requests/web', undefined, { authorization: '' });
    expect(ui.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(ui.headers.get('referrer-policy')).toBe('no-referrer');
  });
});

describe('the OpenAPI document', () => {
  it('lists every API route with the role the route table gives it', async () => {
    const { openApiDocument, routeKey } = await import('./openapi.ts');
    const doc = openApiDocument() as { paths: Record<string, Record<string, { 'x-fledge-role': string }>> };
    const listed = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => [routeKey(path, method), op['x-fledge-role']]),
    );
    const expected = Object.entries(ROUTE_ACCESS)
      .filter(([key]) => key !== 'GET /*')
      .map(([key, access]) => [key, access.role]);
    expect(listed.sort()).toEqual(expected.sort());
  });
});

describe('query bounds', () => {
  it.each(['offset=1e300', 'offset=-1', 'length=abc', `offset=${2 ** 53}`])('answers 400 to a log read with %s', async (query) => {
    const { createTask } = await import('../core/tasks.ts');
    const { testDeploy } = await import('../../test/helpers/model-fixtures.ts');
    const f = await ApiFixture.create();
    const task = createTask(testDeploy({ requestId: 'web', id: 'v1' }), 1, 1, new Set(), { host: 'local', rack: 'local' });
    await f.store.apply({ tasks: [task] });
    const res = await f.call('GET', `/api/sandbox/${encodeURIComponent(task.taskId.id)}/read?${query}`);
    expect(res.status).toBe(400);
  });
});

describe('hostile JSON', () => {
  it.each([
    [
      'a deeply nested ignored Singularity field',
      '/api/requests',
      (deep: string) => `{"id":"a","requestType":"SERVICE","rackAffinity":${deep}}`,
    ],
    [
      'deeply nested LB options',
      '/api/deploys',
      (deep: string) => `{"deploy":{"requestId":"a","id":"v1","command":"x","loadBalancerOptions":{"x":${deep}}}}`,
    ],
    ['a deeply nested body', '/api/requests', (deep: string) => deep],
  ])('answers %s with a 400, not a crash', async (_what, path, body) => {
    const f = await ApiFixture.create();
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const res = await f.call('POST', path, body(deep));
    expect(res.status).toBe(400);
  });
});
