// The store contract: every Store implementation runs this suite (SQLite in memory and on
// file, PostgreSQL), by swapping the factory.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPendingDeploy } from '../core/deploy/step.ts';
import type { DeployResult } from '../core/deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from '../core/model.ts';
import { createTask } from '../core/tasks.ts';
import { requestEvent, type Webhook } from '../core/webhooks.ts';
import { FencedError, StoreConflictError, type AuditRecord, type SchedulerInfo, type Store, type TokenRecord } from './types.ts';
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
  const t = createTask(d, instanceNo, T0 + instanceNo, new Set(), { host: 'local', rack: 'local' });
  return { ...t, state, ...(doneAt !== undefined ? { doneAt } : {}) };
}

const token = (name: string, extra: Partial<TokenRecord> = {}): TokenRecord => ({
  id: `id-${name}`,
  name,
  role: 'deploy',
  hash: `hash-${name}`,
  createdAt: T0,
  ...extra,
});

const audit = (at: number, extra: Partial<AuditRecord> = {}): AuditRecord => ({
  at,
  tokenName: 'ci',
  role: 'deploy',
  method: 'POST',
  path: '/api/deploys',
  source: '127.0.0.1',
  status: 200,
  ...extra,
});

export const scheduler = (id: string): SchedulerInfo => ({
  id,
  url: `http://127.0.0.1:1/${id}`,
  hostname: 'test-host',
  machine: 'test-machine',
  pid: process.pid,
  dataDir: `/tmp/${id}`,
  version: 'test',
});

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

    it("reads each request's last ended deploy in one call: the newest with a result, not a pending one", async () => {
      await store.apply({
        deploys: [
          { deploy: deploy('a', 'v1', T0) },
          { deploy: deploy('a', 'v2', T0 + 1) },
          { deploy: deploy('a', 'v3', T0 + 2) },
          { deploy: deploy('b', 'v1', T0) },
          { deploy: deploy('c', 'v1', T0) },
        ],
      });
      await store.apply({
        results: [
          { requestId: 'a', deployId: 'v1', result: result('SUCCEEDED') },
          { requestId: 'a', deployId: 'v2', result: result('FAILED') },
          { requestId: 'b', deployId: 'v1', result: result('CANCELED') },
        ],
      });
      const last = await store.lastDeployResults(['a', 'b', 'c', 'none']);
      // a's v3 has no result yet (it is the pending one): v2 is its last ended deploy
      expect([...last].map(([id, r]) => [id, r.deployId, r.result.deployState]).sort()).toEqual([
        ['a', 'v2', 'FAILED'],
        ['b', 'v1', 'CANCELED'],
      ]);
      expect((await store.lastDeployResults([])).size).toBe(0);
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
      // several requests in one query (a list's chunk); none asked, none answered
      expect(ids(await store.listTasks({ requestIds: ['a', 'b'], live: true }))).toEqual(['v1#1:TASK_RUNNING', 'v1#1:TASK_RUNNING']);
      expect((await store.listTasks({ requestIds: ['b', 'c'] })).map((t) => t.taskId.requestId)).toEqual(['b']);
      expect(await store.listTasks({ requestIds: [] })).toEqual([]);
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

    it('deletes tasks in the same change set that adds their successors', async () => {
      const d = deploy('a', 'v1');
      const waiting = createTask(d, 1, T0, new Set(), { waiting: 'no host fits' });
      await store.apply({ tasks: [waiting] });
      const placed = task(d, 1, 'TASK_LAUNCHED');
      await store.apply({ tasks: [placed], deleteTasks: [waiting.taskId.id, 'never-there'] });
      expect(await store.getTask(waiting.taskId.id)).toBeUndefined();
      expect((await store.listTasks({ requestId: 'a' })).map((t) => t.taskId.id)).toEqual([placed.taskId.id]);
    });

    it('stores who created a deploy and shows it in the history', async () => {
      await store.apply({ deploys: [{ deploy: deploy('a', 'v1'), user: 'ci' }, { deploy: deploy('a', 'v2', T0 + 1) }] });
      expect((await store.getDeployHistory('a', 'v1'))?.user).toBe('ci');
      expect((await store.listDeployHistory('a')).map((h) => [h.deployId, h.user])).toEqual([
        ['v2', undefined],
        ['v1', 'ci'],
      ]);
    });

    it('keeps tokens by hash, refuses a taken name or hash, and revokes by name', async () => {
      await store.createToken(token('ci', { createdBy: 'admin' }));
      await store.createToken(token('admin', { role: 'admin' }));
      expect(await store.findTokenByHash('hash-ci')).toEqual(token('ci', { createdBy: 'admin' }));
      expect(await store.findTokenByHash('nope')).toBeUndefined();
      await expect(store.createToken(token('ci', { id: 'other', hash: 'other' }))).rejects.toThrow(StoreConflictError);
      await expect(store.createToken(token('other', { id: 'other', hash: 'hash-ci' }))).rejects.toThrow(StoreConflictError);
      expect((await store.listTokens()).map((t) => [t.name, t.role])).toEqual([
        ['admin', 'admin'],
        ['ci', 'deploy'],
      ]);
      await store.touchToken('id-ci', T0 + 60_000);
      expect((await store.findTokenByHash('hash-ci'))?.lastUsedAt).toBe(T0 + 60_000);
      expect(await store.revokeToken('ci')).toBe(true);
      expect(await store.revokeToken('ci')).toBe(false);
      expect(await store.findTokenByHash('hash-ci')).toBeUndefined();
      // a revoked name can be given again
      await store.createToken(token('ci', { id: 'id-ci2', hash: 'hash-ci2' }));
      expect((await store.findTokenByHash('hash-ci2'))?.name).toBe('ci');
    });

    it('lists audit records newest first, filtered by request, deploy, token, time and outcome', async () => {
      await store.recordAudit(audit(T0, { requestId: 'a', deployId: 'v1' }));
      await store.recordAudit(audit(T0 + 10, { requestId: 'a', deployId: 'v2', status: 403, tokenName: 'viewer', role: 'read' }));
      await store.recordAudit(audit(T0 + 10, { requestId: 'b', method: 'PUT', path: '/api/requests/request/b/scale' }));
      await store.recordAudit(audit(T0 + 20, { tokenName: undefined, role: undefined, status: 401, taskId: 't1' }));
      const all = await store.listAudit({ limit: 10 });
      expect(all.map((r) => r.at)).toEqual([T0 + 20, T0 + 10, T0 + 10, T0]);
      // same time: the later record first
      expect(all[1]?.requestId).toBe('b');
      expect(all[0]).toMatchObject({ status: 401, taskId: 't1', source: '127.0.0.1' });
      expect(all[0]?.tokenName).toBeUndefined();
      expect(typeof all[0]?.id).toBe('number');
      expect((await store.listAudit({ requestId: 'a', limit: 10 })).map((r) => r.deployId)).toEqual(['v2', 'v1']);
      expect((await store.listAudit({ requestId: 'a', deployId: 'v1', limit: 10 })).map((r) => r.at)).toEqual([T0]);
      expect((await store.listAudit({ tokenName: 'viewer', limit: 10 })).map((r) => r.role)).toEqual(['read']);
      expect((await store.listAudit({ since: T0 + 10, until: T0 + 20, limit: 10 })).map((r) => r.requestId)).toEqual(['b', 'a']);
      expect((await store.listAudit({ succeeded: true, limit: 10 })).map((r) => r.status)).toEqual([200, 200]);
      expect(await store.listAudit({ limit: 1 })).toHaveLength(1);
    });

    it('prunes the audit log to the newest records', async () => {
      for (let i = 0; i < 7; i++) await store.recordAudit(audit(T0 + i));
      expect(await store.pruneAudit(10)).toBe(0);
      expect(await store.pruneAudit(3)).toBe(4);
      expect((await store.listAudit({ limit: 10 })).map((r) => r.at)).toEqual([T0 + 6, T0 + 5, T0 + 4]);
    });

    it('runs locked work on one key one at a time, so read-modify-writes lose nothing', async () => {
      await store.apply({ requests: [record('a', { lbSeq: 0 })] });
      const bump = () =>
        store.locked('a', async () => {
          const current = (await store.getRequest('a')) as RequestRecord;
          await new Promise((r) => setTimeout(r, 2));
          await store.apply({ requests: [{ ...current, lbSeq: (current.lbSeq ?? 0) + 1 }] });
        });
      await Promise.all(Array.from({ length: 8 }, bump));
      expect((await store.getRequest('a'))?.lbSeq).toBe(8);
    });

    it('applies fenced writes while the lease is held, and refuses them once it is released', async () => {
      const lease = await store.cluster.acquireLease(scheduler('s1'), 10_000);
      expect(lease?.holder).toBe('s1');
      const fence = { holder: 's1', epoch: lease!.epoch };
      await store.apply({ requests: [record('a')] }, fence);
      await store.cluster.releaseLease(fence);
      await expect(store.apply({ requests: [record('b')], deploys: [{ deploy: deploy('b', 'v1') }] }, fence)).rejects.toBeInstanceOf(
        FencedError,
      );
      expect(await store.getRequest('b')).toBeUndefined();
      expect(await store.getDeploy('b', 'v1')).toBeUndefined();
      expect((await store.getRequest('a'))?.request.id).toBe('a');
    });

    it('registers schedulers with a heartbeat', async () => {
      await store.cluster.heartbeat(scheduler('s1'));
      await store.cluster.heartbeat(scheduler('s1'));
      const [s] = await store.cluster.listSchedulers();
      expect(s).toMatchObject({ id: 's1', url: 'http://127.0.0.1:1/s1', machine: 'test-machine', dataDir: '/tmp/s1' });
      expect(s!.heartbeatAt).toBeGreaterThanOrEqual(s!.startedAt);
      await store.cluster.removeScheduler('s1');
      expect(await store.cluster.listSchedulers()).toEqual([]);
    });

    it('delivers notifications to listeners', async () => {
      const got: string[] = [];
      const stop = await store.cluster.listen('fledge_wake', (p) => got.push(p));
      await store.cluster.notify('fledge_wake', 'req-1');
      await waitUntil(() => got.includes('req-1'));
      await stop();
    });

    it('exports every row and imports it into another store, counts and order kept', async () => {
      const v1 = deploy('a', 'v1', T0);
      const v2 = deploy('a', 'v2', T0);
      await store.apply({
        requests: [record('a'), record('b')],
        deploys: [{ deploy: v1, message: 'first', user: 'ci' }, { deploy: v2 }],
        pending: [createPendingDeploy(v2, request('a'), T0, {})],
        tasks: [task(v1, 1), task(v1, 2, 'TASK_FAILED', T0 + 100), task(v2, 1)],
      });
      await store.putHost({ id: 'd1', firstSeenAt: T0, current: { state: 'FROZEN', timestamp: T0 }, history: [] });
      const installation = await store.ensureMeta('installation-id', 'abc');
      await store.createToken(token('ci', { lastUsedAt: T0 + 1 }));
      await store.recordAudit(audit(T0, { requestId: 'a', deployId: 'v1' }));
      await store.recordAudit(audit(T0 + 1, { status: 401, tokenName: undefined, role: undefined }));
      await store.apply({ results: [{ requestId: 'a', deployId: 'v1', result: result('SUCCEEDED') }] });
      await store.saveWebhook({ id: 'w1', uri: 'http://x/w1', type: 'REQUEST', timestamp: T0, secret: 's'.repeat(16) });
      await store.apply({ webhookEvents: [requestEvent('CREATED', request('a'), T0), requestEvent('PAUSED', request('a'), T0 + 1)] });
      await store.removeDelivery((await store.listDeliveries('w1', 1))[0]!.seq);
      await store.apply({
        tasks: [{ ...task(v2, 2, 'TASK_FINISHED', T0 + 2), run: { trigger: 'ONEOFF', runId: 'r1', successfulExitCodes: [0], retry: 0 } }],
      });
      const other = await make();
      try {
        const rows = await store.rows.exportAll();
        await other.store.rows.importAll(rows);
        expect(await other.store.rows.counts()).toEqual(await store.rows.counts());
        expect(await other.store.rows.counts()).toEqual({
          requests: 2,
          deploys: 2,
          pending_deploys: 1,
          tasks: 4,
          hosts: 1,
          meta: 1,
          tokens: 1,
          audit: 2,
          webhooks: 1,
          webhook_deliveries: 1,
        });
        // delivery ids are what receivers de-duplicate on: kept, and never given out again
        const copied = await other.store.listDeliveries('w1', 10);
        expect(copied).toEqual(await store.listDeliveries('w1', 10));
        await other.store.apply({ webhookEvents: [requestEvent('UNPAUSED', request('a'), T0 + 3)] });
        const after = await other.store.listDeliveries('w1', 10);
        expect(after).toHaveLength(2);
        expect(after[1]!.seq).toBeGreaterThan(copied[0]!.seq);
        expect(await other.store.listWebhooks()).toEqual(await store.listWebhooks());
        expect((await other.store.findTaskByRunId('a', 'r1'))?.taskId.instanceNo).toBe(2);
        expect(await other.store.listTokens()).toEqual(await store.listTokens());
        expect(await other.store.listAudit({ limit: 10 })).toEqual(await store.listAudit({ limit: 10 }));
        expect(await other.store.listDeployHistory('a')).toEqual(await store.listDeployHistory('a'));
        expect(await other.store.listTasks({ requestId: 'a' })).toEqual(await store.listTasks({ requestId: 'a' }));
        expect(await other.store.getPending('a')).toEqual(await store.getPending('a'));
        expect(await other.store.listHosts()).toEqual(await store.listHosts());
        expect(await other.store.ensureMeta('installation-id', 'other')).toBe(installation);
      } finally {
        await other.store.close();
        await other.cleanup?.();
      }
    });

    it('keeps host states, updating one by id', async () => {
      const host = (id: string, state: 'ACTIVE' | 'DECOMMISSIONING', at: number) => ({
        id,
        firstSeenAt: T0,
        current: { state, timestamp: at, message: `${id} ${state}` },
        history: [{ state, timestamp: at }],
      });
      expect(await store.listHosts()).toEqual([]);
      await store.putHost(host('d2', 'ACTIVE', T0));
      await store.putHost(host('d1', 'ACTIVE', T0));
      await store.putHost(host('d2', 'DECOMMISSIONING', T0 + 1));
      expect(await store.listHosts()).toEqual([host('d1', 'ACTIVE', T0), host('d2', 'DECOMMISSIONING', T0 + 1)]);
    });

    it('stores a meta value once: the first writer wins', async () => {
      expect(await store.ensureMeta('installation-id', 'first')).toBe('first');
      expect(await store.ensureMeta('installation-id', 'second')).toBe('first');
      expect(await Promise.all([store.ensureMeta('k', 'a'), store.ensureMeta('k', 'b')])).toEqual(['a', 'a']);
    });
  });
}

async function waitUntil(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
