// Bad input gets a clear 4xx from a real `fledge serve`: malformed JSON, unknown keys, missing
// fields and ids that do not exist, each answered with {message, details} naming the problem.
// Also the OpenAPI document. No tasks run here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, leakedProcesses, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';

const PORTS = reservePorts(100);

let fledge: FledgeProcess;
beforeAll(async () => {
  fledge = await startFledgeProcess({ portRange: PORTS });
  await fledge.client.createRequest({ id: 'web', requestType: 'SERVICE', instances: 1 });
});
afterAll(async () => {
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

interface ErrorBody {
  message: string;
  details: { field?: string; rule?: string }[];
}

async function call(method: string, path: string, body?: string): Promise<{ status: number; body: ErrorBody }> {
  const res = await fetch(fledge.url + path, {
    method,
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${fledge.token}` },
    ...(body !== undefined ? { body } : {}),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: (await res.json()) as ErrorBody };
}

const validDeploy = { requestId: 'web', id: 'v1', command: 'true' };

describe('API errors', () => {
  it.each([
    ['a request', '/api/requests', '{"id": "web", "requestType": '],
    ['a deploy', '/api/deploys', '{deploy: {}}'],
    ['a scale', '/api/requests/request/web/scale', '{"instances": 2,}'],
  ])('answers malformed JSON in %s with 400', async (_what, path, body) => {
    const res = await call(path.endsWith('/scale') ? 'PUT' : 'POST', path, body);
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/^Malformed JSON/);
  });

  it('answers an empty body with 400', async () => {
    const res = await call('POST', '/api/requests', '');
    expect(res.status).toBe(400);
    expect(res.body.message).toMatch(/empty/);
  });

  it.each([
    ['request', '/api/requests', { id: 'web2', requestType: 'SERVICE', colour: 'red' }, 'colour'],
    ['deploy', '/api/deploys', { deploy: { ...validDeploy, colour: 'red' } }, 'deploy.colour'],
    [
      'healthcheck',
      '/api/deploys',
      { deploy: { ...validDeploy, healthcheck: { uri: '/health', everySeconds: 1 } } },
      'deploy.healthcheck.everySeconds',
    ],
  ])('names an unknown %s key in a 400', async (_what, path, body, field) => {
    const res = await call('POST', path, JSON.stringify(body));
    expect(res.status).toBe(400);
    expect(res.body.details).toContainEqual(expect.objectContaining({ field, rule: 'unknown field' }));
    expect(res.body.message).toContain(field);
  });

  it.each([
    // requestType may be absent: it is derived from daemon, schedule and loadBalanced, as Singularity does.
    ['request id', '/api/requests', {}, ['id']],
    ['deploy id', '/api/deploys', { deploy: { requestId: 'web', command: 'true' } }, ['deploy.id']],
    ['deploy', '/api/deploys', {}, ['deploy']],
    ['deploy command', '/api/deploys', { deploy: { requestId: 'web', id: 'v1' } }, ['deploy.command']],
  ])('names a missing %s in a 400', async (_what, path, body, fields) => {
    const res = await call('POST', path, JSON.stringify(body));
    expect(res.status).toBe(400);
    expect(res.body.details.map((d) => d.field)).toEqual(expect.arrayContaining(fields));
  });

  it.each([
    ['a request id', '/api/requests', { id: 'bad id!', requestType: 'SERVICE' }, 'id'],
    ['a deploy id', '/api/deploys', { deploy: { ...validDeploy, id: 'bad/id' } }, 'deploy.id'],
    [
      'a field type',
      '/api/deploys',
      { deploy: { ...validDeploy, deployHealthTimeoutSeconds: 'soon' } },
      'deploy.deployHealthTimeoutSeconds',
    ],
  ])('rejects %s that is not allowed with a 400 naming it', async (_what, path, body, field) => {
    const res = await call('POST', path, JSON.stringify(body));
    expect(res.status).toBe(400);
    expect(res.body.details.map((d) => d.field)).toContain(field);
  });

  it.each([
    ['GET', '/api/requests/request/nope', undefined, /Request nope not found/],
    ['PUT', '/api/requests/request/nope/scale', '{"instances": 2}', /Request nope not found/],
    ['POST', '/api/requests/request/nope/pause', undefined, /Request nope not found/],
    ['DELETE', '/api/requests/request/nope', undefined, /Request nope not found/],
    ['POST', '/api/deploys', JSON.stringify({ deploy: { ...validDeploy, requestId: 'nope' } }), /Request nope not found/],
    ['GET', '/api/tasks/task/nope', undefined, /Task nope not found/],
    ['DELETE', '/api/tasks/task/nope', undefined, /Task nope not found/],
    ['GET', '/api/sandbox/nope/read', undefined, /Task nope not found/],
    ['GET', '/api/history/request/web/deploy/nope', undefined, /Deploy nope of request web not found/],
    ['DELETE', '/api/deploys/deploy/nope/request/web', undefined, /Deploy nope of request web is not pending/],
    ['POST', '/api/deploys/advance', '{"requestId": "web", "deployId": "nope"}', /Deploy nope of request web is not pending/],
  ])('answers %s %s for an id that does not exist with 404', async (method, path, body, message) => {
    const res = await call(method, path, body);
    expect(res.status).toBe(404);
    expect(res.body.message).toMatch(message);
    expect(res.body.details).toEqual([]);
  });

  it('serves an OpenAPI document that lists /api/deploys', async () => {
    const res = await fetch(`${fledge.url}/api/openapi.json`, {
      headers: { authorization: `Bearer ${fledge.token}` },
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status).toBe(200);
    const doc = JSON.parse(await res.text()) as { openapi?: string; paths?: Record<string, unknown> };
    expect(doc.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.paths ?? {})).toContain('/api/deploys');
  });
});
