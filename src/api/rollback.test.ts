import { beforeEach, describe, expect, it } from 'vitest';
import { ApiFixture, deployBody } from '../../test/helpers/api-fixture.ts';

type ErrorBody = { message: string };
type Parent = {
  pendingDeploy?: { id: string; command?: string; env: Record<string, string> };
  pendingDeployState?: { deployMarker: { message?: string } };
};

let f: ApiFixture;
beforeEach(async () => {
  f = await ApiFixture.create();
  await f.createRequest('svc');
});

const canaryManual = { canaryDeploySettings: { enableCanaryDeploy: true, acceptanceMode: 'MANUAL' } };

describe('POST /api/requests/request/{id}/rollback', () => {
  it("deploys the previous successful deploy's spec under a fresh id, atomic and without acceptance", async () => {
    await f.seedDeploy('svc', { id: 'v1', env: { VERSION: 'one' }, ...canaryManual }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v2', env: { VERSION: 'two' } }, { at: 2 });
    const res = await f.post<Parent>('/api/requests/request/svc/rollback', { message: 'bad release' });
    expect(res.status).toBe(200);
    expect(res.body.pendingDeploy?.id).toBe('v1_rb1');
    expect(res.body.pendingDeploy?.env).toEqual({ VERSION: 'one' });
    expect(res.body.pendingDeployState?.deployMarker.message).toBe('Rollback to v1: bad release');
    const stored = await f.store.getDeploy('svc', 'v1_rb1');
    expect(stored?.canaryDeploySettings).toMatchObject({ enableCanaryDeploy: false, acceptanceMode: 'NONE' });
    expect(f.woken).toContain('svc');
  });

  it('says "Rollback to <id>" when no message is given', async () => {
    await f.seedDeploy('svc', { id: 'v1' }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 2 });
    const res = await f.post<Parent>('/api/requests/request/svc/rollback');
    expect(res.status).toBe(200);
    expect(res.body.pendingDeployState?.deployMarker.message).toBe('Rollback to v1');
  });

  it('skips deploys that did not succeed', async () => {
    await f.seedDeploy('svc', { id: 'v1' }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 2, state: 'FAILED' });
    await f.seedDeploy('svc', { id: 'v3' }, { at: 3, state: 'CANCELED' });
    await f.seedDeploy('svc', { id: 'v4' }, { at: 4 });
    const res = await f.post<Parent>('/api/requests/request/svc/rollback', {});
    expect(res.body.pendingDeploy?.id).toBe('v1_rb1');
  });

  it('picks the next free id when an earlier rollback used one', async () => {
    await f.seedDeploy('svc', { id: 'v1' }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v1_rb1' }, { at: 2, state: 'FAILED', makeActive: false });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 3 });
    const res = await f.post<Parent>('/api/requests/request/svc/rollback', {});
    expect(res.body.pendingDeploy?.id).toBe('v1_rb2');
  });

  it('keeps the fresh id within 50 characters', async () => {
    const long = 'a'.repeat(50);
    await f.seedDeploy('svc', { id: long }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 2 });
    const res = await f.post<Parent>('/api/requests/request/svc/rollback', {});
    expect(res.status).toBe(200);
    expect(res.body.pendingDeploy?.id).toBe(`${'a'.repeat(46)}_rb1`);
  });

  it('answers 409 when there is no earlier successful deploy', async () => {
    await f.seedDeploy('svc', { id: 'v1' }, { at: 1, state: 'FAILED', makeActive: false });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 2 });
    const res = await f.post<ErrorBody>('/api/requests/request/svc/rollback', {});
    expect(res.status).toBe(409);
    expect(res.body.message).toContain('no earlier successful deploy than v2');
  });

  it('answers 409 when the request has never been deployed', async () => {
    const res = await f.post<ErrorBody>('/api/requests/request/svc/rollback', {});
    expect(res.status).toBe(409);
    expect(res.body.message).toContain('no active deploy');
  });

  it('answers 409 while a deploy is pending', async () => {
    await f.seedDeploy('svc', { id: 'v1' }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 2 });
    expect((await f.post('/api/deploys', deployBody('svc', 'v3'))).status).toBe(200);
    const res = await f.post<ErrorBody>('/api/requests/request/svc/rollback', {});
    expect(res.status).toBe(409);
    expect(res.body.message).toContain('pending deploy v3');
  });

  it('answers 404 for an unknown request', async () => {
    const res = await f.post<ErrorBody>('/api/requests/request/nope/rollback', {});
    expect(res.status).toBe(404);
  });

  it('answers 400 to an unknown body field', async () => {
    const res = await f.post<ErrorBody>('/api/requests/request/svc/rollback', { target: 'v1' });
    expect(res.status).toBe(400);
    expect(res.body.message).toContain('target');
  });
});

describe('POST /api/requests/request/{id}/rollback with a deployId (Roll back to this)', () => {
  it('deploys the chosen successful deploy, not only the one before the active', async () => {
    await f.seedDeploy('svc', { id: 'v1', env: { VERSION: 'one' } }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v2', env: { VERSION: 'two' } }, { at: 2 });
    await f.seedDeploy('svc', { id: 'v3', env: { VERSION: 'three' } }, { at: 3 });
    const res = await f.post<Parent & { rollbackTo: string }>('/api/requests/request/svc/rollback', { deployId: 'v1' });
    expect(res.status).toBe(200);
    expect(res.body.rollbackTo).toBe('v1');
    expect(res.body.pendingDeploy?.id).toBe('v1_rb1');
    expect(res.body.pendingDeploy?.env).toEqual({ VERSION: 'one' });
    expect(res.body.pendingDeployState?.deployMarker.message).toBe('Rollback to v1');
  });

  it.each([
    ['the active deploy', 'v2', 409, 'is the active deploy'],
    ['a deploy that failed', 'v1f', 409, 'did not succeed (FAILED)'],
    ['an unknown deploy', 'nope', 404, 'Deploy nope of request svc not found'],
  ])('refuses %s', async (_what, deployId, status, message) => {
    await f.seedDeploy('svc', { id: 'v1' }, { at: 1 });
    await f.seedDeploy('svc', { id: 'v1f' }, { at: 2, state: 'FAILED', makeActive: false });
    await f.seedDeploy('svc', { id: 'v2' }, { at: 3 });
    const res = await f.post<ErrorBody>('/api/requests/request/svc/rollback', { deployId });
    expect(res.status).toBe(status);
    expect(res.body.message).toContain(message);
  });
});
