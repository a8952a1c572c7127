// GET /api/requests reads what many views need once per chunk, not once per request, and
// answers exactly what the single-request view answers for each request.
import { describe, expect, it, vi } from 'vitest';
import { ApiFixture, deployBody } from '../../test/helpers/api-fixture.ts';
import { createTask } from '../core/tasks.ts';
import type { Deploy } from '../core/model.ts';
import { LIST_CHUNK } from './json-stream.ts';

describe('GET /api/requests', () => {
  it('reads live tasks once per chunk and pending deploys once, with the same views as GET one', async () => {
    const f = await ApiFixture.create();
    const n = 2 * LIST_CHUNK + 30;
    for (let i = 0; i < n; i++) {
      const id = `r${String(i).padStart(3, '0')}`;
      await f.createRequest(id);
      const d: Deploy = await f.seedDeploy(id, { id: 'v1' }, { at: 1_000 + i });
      // a failed deploy after it on some: the last result is the newest ended one, not the active one
      if (i % 7 === 0) await f.seedDeploy(id, { id: 'v1b' }, { at: 5_000 + i, state: 'FAILED' });
      const tasks = [1, 2].map((no) => createTask(d, no, 2_000 + no, new Set(), { host: 'local', rack: 'local' }));
      await f.store.apply({ tasks });
    }
    // one request with a deploy under way: its pending state comes from the one listPending
    expect((await f.post('/api/deploys', deployBody('r005', 'v2'))).status).toBe(200);
    const listTasks = vi.spyOn(f.store, 'listTasks');
    const getPending = vi.spyOn(f.store, 'getPending');
    const listPending = vi.spyOn(f.store, 'listPending');
    const lastResults = vi.spyOn(f.store, 'lastDeployResults');
    const res = await f.call<{ request: { id: string } }[]>('GET', '/api/requests');
    expect(res.status).toBe(200);
    expect(res.body).toHaveLength(n);
    expect(listTasks).toHaveBeenCalledTimes(Math.ceil(n / LIST_CHUNK));
    expect(listPending).toHaveBeenCalledTimes(1);
    expect(lastResults).toHaveBeenCalledTimes(Math.ceil(n / LIST_CHUNK));
    lastResults.mockRestore();
    expect(getPending).not.toHaveBeenCalled();
    listTasks.mockRestore();
    getPending.mockRestore();
    expect(res.body[5]).toHaveProperty('pendingDeployState.deployMarker.deployId', 'v2');
    expect(res.body[5]).toHaveProperty('lastDeployResult', {
      deployId: 'v1',
      deployResult: expect.objectContaining({ deployState: 'SUCCEEDED' }),
    });
    expect(res.body[7]).toHaveProperty('lastDeployResult.deployId', 'v1b');
    expect(res.body[7]).toHaveProperty('lastDeployResult.deployResult.deployState', 'FAILED');
    expect(res.body[7]).toHaveProperty('activeDeploy.id', 'v1');
    for (const i of [0, 5, 7, LIST_CHUNK, n - 1]) {
      const one = await f.call('GET', `/api/requests/request/${res.body[i]!.request.id}`);
      expect(res.body[i]).toEqual(one.body);
    }
    // the tasks are there, each under its own request
    const counts = (res.body as unknown as { request: { id: string }; instanceCounts: { total: number } }[]).map(
      (p) => p.instanceCounts.total,
    );
    expect(new Set(counts)).toEqual(new Set([2]));
  });
});
