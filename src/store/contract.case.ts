// The store contract: every Store implementation runs this suite (sqlite now, postgres next).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPendingDeploy } from '../core/deploy/step.ts';
import type { DeployResult } from '../core/deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from '../core/model.ts';
import { createTask } from '../core/tasks.ts';
import { requestEvent, type Webhook } from '../core/webhooks.ts';
import type { Store } from './types.ts';
import { testDeploy } from '../../test/helpers/model-fixtures.ts';

const T0 = 1_700_000_000_000;

const request = (id: string, instances = 2): FledgeRequest => ({ id, requestType: 'SERVICE', instances, loadBalanced: false });
const record = (id: string, extra: Partial<RequestRecord> = {}): RequestRecord => ({
  request: request(id),
  state: 'ACTIVE',
  timestamp: T0,
  ...extra,
});

function deploy(requestId: string, id: string, timestamp = T0): Deploy {
  return testDeploy({ requestId, id, env: { A: '1' }, timestamp });
}

const result = (deployState: DeployResult['deployState']): DeployResult => ({
  deployState,
  message: deployState,
  deployFailures: [],
  timestamp: T0 + 5,
});

function task(d: Deploy, instanceNo: number, state: TaskRecord['state'] = 'TASK_RUNNING', doneAt?: number): TaskRecord {
  const t = createTask(d, instanceNo, T0 + instanceNo, new Set());
  return { ...t, state, ...(doneAt !== undefined ? { doneAt } : {}) };
}

export function storeContract(name: string, make: () => Promise<{ store: Store; cleanup?: () => Promise<void> }>): void {
  describe(`${name} store contract`, () => {
    let store: Store;
    let cleanup: (() => Promise<void>) | undefined;
    beforeEach(async () => {
      ({ store, cleanup } = await make());
    });
    afterEach(async () => {
      await store.close();
      await cleanup?.();
    });

    it('migrates twice without harm', async () => {
      await store.migrate();
      await store.apply({ requests: [record('a')] });
      await store.migrate();
      expect((await store.getRequest('a'))?.request.id).toBe('a');
    });

    it('creates, updates and lists requests by id', async () => {
      await store.apply({ requests: [record('b'), record('a')] });
      await store.apply({ requests: [record('a', { state: 'PAUSED' })] });
      expect((await store.listRequests()).map((r) => [r.request.id, r.state])).toEqual([
        ['a', 'PAUSED'],
        ['b', 'ACTIVE'],
      ]);
      expect(await store.getRequest('missing')).toBeUndefined();
    });

    it('stores deploys, and refuses a second deploy with the same id for a request', async () => {
      await store.apply({ deploys: [{ deploy: deploy('a', 'v1'), message: 'first' }] });
      expect((await store.getDeploy('a', 'v1'))?.env).toEqual({ A: '1' });
      await expect(store.apply({ deploys: [{ deploy: deploy('a', 'v1') }] })).rejects.toThrow();
      // the same id is fine for another request
      await store.apply({ deploys: [{ deploy: deploy('b', 'v1') }] });
      expect(await store.getDeploy('b', 'v1')).toBeDefined();
    });

    it('applies a change set atomically: a failing part leaves nothing half-applied', async () => {
      await store.apply({ deploys: [{ deploy: deploy('a', 'v1') }] });
      await expect(
        store.apply({
          requests: [record('a')],
          pending: [createPendingDeploy(deploy('a', 'v2'), request('a'), T0, {})],
          deploys: [{ deploy: deploy('a', 'v1') }],
        }),
      ).rejects.toThrow();
      expect(await store.getRequest('a')).toBeUndefined();
      expect(await store.getPending('a')).toBeUndefined();
    });

    it('keeps one pending deploy per request and deletes it', async () => {
      const p1 = createPendingDeploy(deploy('a', 'v2'), request('a'), T0, { message: 'go' });
      await store.apply({ pending: [p1] });
      await store.apply({ pending: [{ ...p1, progress: { ...p1.progress, phase: 'HEALTH' } }] });
      expect((await store.listPending()).map((p) => [p.deployId, p.progress.phase])).toEqual([['v2', 'HEALTH']]);
      await store.apply({ deletePending: ['a'] });
      expect(await store.getPending('a')).toBeUndefined();
    });

    it('records deploy results with their progress, newest deploy first in the history', async () => {
      const p = createPendingDeploy(deploy('a', 'v2'), request('a'), T0, {});
      await store.apply({ deploys: [{ deploy: deploy('a', 'v1', T0) }, { deploy: deploy('a', 'v2', T0 + 1) }] });
      await store.apply({ results: [{ requestId: 'a', deployId: 'v2', result: result('FAILED'), progress: p.progress }] });
      const history = await store.listDeployHistory('a');
      expect(history.map((h) => [h.deployId, h.result?.deployState])).toEqual([
        ['v2', 'FAILED'],
        ['v1', undefined],
      ]);
      expect((await store.getDeployHistory('a', 'v2'))?.progress?.phase).toBe('LAUNCH');
    });

    it('queries tasks by request, deploy, liveness and end time', async () => {
      const v1 = deploy('a', 'v1');
      const v2 = deploy('a', 'v2');
      await store.apply({
        tasks: [task(v1, 1), task(v1, 2, 'TASK_FAILED', T0 + 100), task(v2, 1, 'TASK_KILLED', T0 + 10), task(deploy('b', 'v1'), 1)],
      });
      const ids = (ts: TaskRecord[]) => ts.map((t) => `${t.taskId.deployId}#${t.taskId.instanceNo}:${t.state}`).sort();
      expect(ids(await store.listTasks({ requestId: 'a', live: true }))).toEqual(['v1#1:TASK_RUNNING']);
      expect(ids(await store.listTasks({ requestId: 'a', deployId: 'v2' }))).toEqual(['v2#1:TASK_KILLED']);
      expect(ids(await store.listTasks({ requestId: 'a', endedSince: T0 + 50 }))).toEqual(['v1#1:TASK_RUNNING', 'v1#2:TASK_FAILED']);
      expect(await store.listTasks({ live: true })).toHaveLength(2);
    });

    it('updates a task in place and moves it out of the live set when it ends', async () => {
      const t = task(deploy('a', 'v1'), 1);
      await store.apply({ tasks: [t] });
      await store.apply({ tasks: [{ ...t, state: 'TASK_KILLED', doneAt: T0 + 9, health: { state: 'HEALTHY', results: [] } }] });
      expect((await store.getTask(t.taskId.id))?.state).toBe('TASK_KILLED');
      expect(await store.listTasks({ live: true })).toEqual([]);
      expect(await store.getTask('nope')).toBeUndefined();
    });

    it('finds the newest task of a run id', async () => {
      const d = deploy('a', 'v1');
      const run = { trigger: 'ONEOFF' as const, runId: 'r1', successfulExitCodes: [0], retry: 0 };
      const first = { ...task(d, 1, 'TASK_FAILED', T0 + 5), run };
      const retry = { ...task(d, 2), run: { ...run, trigger: 'RETRY' as const, retry: 1 } };
      await store.apply({ tasks: [first, retry, task(d, 3)] });
      expect((await store.findTaskByRunId('a', 'r1'))?.taskId.id).toBe(retry.taskId.id);
      expect(await store.findTaskByRunId('b', 'r1')).toBeUndefined();
      expect(await store.findTaskByRunId('a', 'r2')).toBeUndefined();
    });

    it('lists finished tasks past the retention by age and by count per request, and deletes them', async () => {
      const a = deploy('a', 'v1');
      const b = deploy('b', 'v1');
      const done = (d: Deploy, n: number, at: number) => task(d, n, 'TASK_FINISHED', at);
      await store.apply({ tasks: [done(a, 1, T0 + 1), done(a, 2, T0 + 2), done(a, 3, T0 + 3), done(b, 1, T0 + 1), task(a, 4)] });
      const expired = (q: Partial<Parameters<Store['listExpiredTasks']>[0]>) =>
        store
          .listExpiredTasks({ doneBefore: 0, keepPerRequest: 100, minAgeBefore: T0 + 100, limit: 100, ...q })
          .then((ts) => ts.map((t) => `${t.taskId.requestId}#${t.taskId.instanceNo}`));
      expect(await expired({ keepPerRequest: 2 })).toEqual(['a#1']);
      expect(await expired({ keepPerRequest: 2, minAgeBefore: T0 + 1 })).toEqual([]);
      expect(await expired({ doneBefore: T0 + 2 })).toEqual(['a#1', 'b#1']);
      await store.deleteTasks([done(a, 1, 0).taskId.id, task(a, 4).taskId.id]);
      expect((await store.listTasks({ requestId: 'a' })).map((t) => t.taskId.instanceNo).sort()).toEqual([2, 3, 4]);
    });

    it('queues a delivery per matching webhook with the change, in order, and drops them with the webhook', async () => {
      const hook = (id: string, type: Webhook['type'], events?: string[]): Webhook => ({
        id,
        uri: `http://x/${id}`,
        type,
        timestamp: T0,
        ...(events ? { events } : {}),
      });
      expect(await store.saveWebhook(hook('w1', 'REQUEST'))).toBe(true);
      expect(await store.saveWebhook({ ...hook('w1', 'REQUEST'), secret: 'x'.repeat(16) })).toBe(false);
      await store.saveWebhook(hook('w2', 'REQUEST', ['PAUSED']));
      await store.saveWebhook(hook('w3', 'TASK'));
      const ev = (type: 'CREATED' | 'PAUSED', at: number) => requestEvent(type, request('a'), at);
      await store.apply({ requests: [record('a')], webhookEvents: [ev('CREATED', T0), ev('PAUSED', T0 + 1)] });
      expect((await store.getRequest('a'))?.state).toBe('ACTIVE');
      const w1 = await store.listDeliveries('w1', 10);
      expect(w1.map((d) => JSON.parse(d.body).eventType)).toEqual(['CREATED', 'PAUSED']);
      expect((w1[0] as { seq: number }).seq).toBeLessThan((w1[1] as { seq: number }).seq);
      expect(await store.countDeliveries()).toEqual({ w1: 2, w2: 1 });
      expect((await store.headDeliveries()).map((d) => [d.webhookId, JSON.parse(d.body).eventType])).toEqual([
        ['w1', 'CREATED'],
        ['w2', 'PAUSED'],
      ]);
      const head = w1[0] as (typeof w1)[number];
      await store.failDelivery(head.seq, T0 + 500, 'connection refused');
      expect((await store.listDeliveries('w1', 1))[0]).toMatchObject({
        attempts: 1,
        nextAttemptAt: T0 + 500,
        lastError: 'connection refused',
      });
      await store.removeDelivery(head.seq);
      expect((await store.headDeliveries()).map((d) => JSON.parse(d.body).eventType)).toEqual(['PAUSED', 'PAUSED']);
      expect(await store.deleteWebhook('w1')).toBe(true);
      expect(await store.deleteWebhook('w1')).toBe(false);
      expect(await store.countDeliveries()).toEqual({ w2: 1 });
      expect((await store.listWebhooks()).map((w) => w.id)).toEqual(['w2', 'w3']);
    });
  });
}
