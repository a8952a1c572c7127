// The run and webhook routes through app.request(): who may call them, what they refuse, and
// that secrets (webhook secrets, envOverrides for read tokens) never come back.
import { describe, expect, it } from 'vitest';
import { requestEvent } from '../core/webhooks.ts';
import { ApiFixture } from '../../test/helpers/api-fixture.ts';

const SECRET = 'sixteen-chars-or-more';

async function onDemand(f: ApiFixture, id = 'job') {
  const res = await f.post('/api/requests', { id, requestType: 'ON_DEMAND', instances: 1 });
  expect(res.status).toBe(200);
  await f.seedDeploy(id, { id: 'd1', command: 'echo' }, { at: 1 });
}

describe('webhooks', () => {
  it('keeps the secret write-only: no list, summary or queue shows it', async () => {
    const f = await ApiFixture.create();
    expect((await f.post('/api/webhooks', { uri: 'http://127.0.0.1:9/hook', type: 'REQUEST', secret: SECRET })).body).toBe('CREATED');
    const again = await f.post('/api/webhooks', { uri: 'http://127.0.0.1:9/hook', type: 'REQUEST', secret: `${SECRET}!` });
    expect(again.body).toBe('EXISTED');
    const hook = (await f.store.listWebhooks())[0]!;
    expect(hook).toMatchObject({ secret: `${SECRET}!`, user: 'admin' });
    await f.store.apply({
      webhookEvents: [requestEvent('CREATED', { id: 'web', requestType: 'SERVICE', instances: 1, loadBalanced: false }, 1)],
    });
    const reads = [
      await f.call('GET', '/api/webhooks'),
      await f.call('GET', '/api/webhooks/summary'),
      await f.call('GET', `/api/webhooks/request?webhookId=${encodeURIComponent(hook.id)}`),
      await f.call('GET', `/api/webhooks/request/${encodeURIComponent(hook.id)}`),
    ];
    for (const r of reads) {
      expect(r.status).toBe(200);
      expect(JSON.stringify(r.body)).not.toContain(SECRET);
    }
    expect(reads[0]?.body).toMatchObject([{ id: hook.id, type: 'REQUEST', secretSet: true, user: 'admin' }]);
    expect(reads[1]?.body).toMatchObject([{ queueSize: 1 }]);
    expect(reads[2]?.body).toMatchObject([{ eventType: 'CREATED' }]);
    expect((await f.call('GET', `/api/webhooks/task?webhookId=${encodeURIComponent(hook.id)}`)).status).toBe(409);
  });

  it('is for admin tokens only, reads included', async () => {
    const f = await ApiFixture.create();
    for (const role of ['read', 'deploy'] as const) {
      const auth = { authorization: `Bearer ${await f.token(role)}` };
      expect((await f.call('GET', '/api/webhooks', undefined, auth)).status).toBe(403);
      expect((await f.call('POST', '/api/webhooks', { uri: 'http://127.0.0.1:9/', type: 'TASK' }, auth)).status).toBe(403);
    }
    expect(await f.store.listWebhooks()).toEqual([]);
  });

  it.each([
    [{ uri: 'ftp://127.0.0.1/x', type: 'TASK' }, 'uri: must be an http:// or https:// URL'],
    [{ uri: 'http://user:pw@127.0.0.1/x', type: 'TASK' }, 'uri: must not carry credentials'],
    [{ uri: 'http://127.0.0.1/x', type: 'TASK', secret: 'short' }, 'secret: must be at least 16 characters'],
    [{ uri: 'http://127.0.0.1/x', type: 'TASK', events: ['PAUSED'] }, 'events[0]: "PAUSED" is not a TASK event'],
    [{ uri: 'http://10.1.2.3/x', type: 'TASK' }, 'uri: 10.1.2.3 is not an address this server may send webhooks to'],
  ])('refuses %j naming the field', async (body, message) => {
    const f = await ApiFixture.create({ webhookAllow: ['127.0.0.0/8'] });
    const res = await f.post<{ message: string }>('/api/webhooks', body);
    expect(res.status).toBe(400);
    expect(res.body.message).toContain(message);
    expect(await f.store.listWebhooks()).toEqual([]);
  });
});

describe('runs', () => {
  it('queues a run with the token name, and shows its envOverrides to a read token as ***', async () => {
    const f = await ApiFixture.create();
    await onDemand(f);
    const deployer = await f.token('deploy', 'ci');
    const res = await f.call(
      'POST',
      '/api/requests/request/job/run',
      { runId: 'r1', envOverrides: { PASSWORD: 'hunter2' } },
      {
        authorization: `Bearer ${deployer}`,
      },
    );
    expect(res.status).toBe(200);
    expect(res.body.pendingRequest).toMatchObject({ runId: 'r1', user: 'ci', envOverrides: { PASSWORD: 'hunter2' } });
    const read = { authorization: `Bearer ${await f.token('read')}` };
    for (const path of ['/api/requests/queued/pending', '/api/requests/request/job', '/api/track/run/job/r1']) {
      const r = await f.call('GET', path, undefined, read);
      expect(r.status, path).toBe(200);
      expect(JSON.stringify(r.body), path).not.toContain('hunter2');
    }
    expect((await f.call('GET', '/api/requests/queued/pending', undefined, read)).body).toMatchObject([
      { envOverrides: { PASSWORD: '***' } },
    ]);
    expect((await f.call('POST', '/api/requests/request/job/run', {}, read)).status).toBe(403);
  });

  it('refuses a run of a SERVICE, a reused run id and a full queue, and queues nothing', async () => {
    const f = await ApiFixture.create({ maxQueuedRuns: 1 });
    await f.createRequest('web');
    const service = await f.post<{ message: string }>('/api/requests/request/web/run', {});
    expect(service.status).toBe(400);
    expect(service.body.message).toContain('run is for ON_DEMAND and SCHEDULED requests');
    await onDemand(f);
    expect((await f.post('/api/requests/request/job/run', { runId: 'a' })).status).toBe(200);
    expect((await f.post('/api/requests/request/job/run', { runId: 'a' })).status).toBe(409);
    const full = await f.post<{ message: string }>('/api/requests/request/job/run', { runId: 'b' });
    expect(full.status).toBe(409);
    expect(full.body.message).toContain('already has 1 runs waiting');
    expect((await f.store.getRequest('job'))?.jobs?.queue?.map((q) => q.runId)).toEqual(['a']);
  });
});
