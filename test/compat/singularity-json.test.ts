// Singularity's own JSON (its docs' examples and the bodies its UI's modals post, in
// test/fixtures/singularity/bodies.json with their sources), posted unchanged through the real
// app, each with the outcome Singularity gives; and every response shape read back checked
// against the property list of its Singularity model class (properties.json).
import { readFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { taskCleanupOut } from '../../src/api/singularity-shapes.ts';
import type { RequestRecord, TaskRecord } from '../../src/core/model.ts';
import { ApiFixture } from '../helpers/api-fixture.ts';

interface Case {
  name: string;
  source: string;
  method: string;
  path: string;
  body: unknown;
  expect: { status: number; warnings?: string[]; field?: string };
}
const FIXTURE = JSON.parse(readFileSync(new URL('../fixtures/singularity/bodies.json', import.meta.url), 'utf8')) as { cases: Case[] };
const PROPERTIES = JSON.parse(readFileSync(new URL('../fixtures/singularity/properties.json', import.meta.url), 'utf8')) as {
  classes: Record<string, { output: string[] }>;
  enums: Record<string, { values: string[] }>;
};

/** Every property Singularity's model class writes is in `value` (Fledge's own may be there too). */
function expectShape(className: string, value: unknown, optional: string[] = []) {
  const cls = PROPERTIES.classes[className];
  if (!cls) throw new Error(`no property list for ${className}`);
  const missing = cls.output.filter((k) => !(k in (value as Record<string, unknown>)) && !optional.includes(k));
  expect(missing, `${className} properties missing`).toEqual([]);
}
const enumOf = (name: string) => PROPERTIES.enums[name]!.values;

let f: ApiFixture;
afterEach(() => undefined);

describe("Singularity's JSON, posted unchanged", () => {
  beforeAll(async () => {
    f = await ApiFixture.create();
  });

  it.each(FIXTURE.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const res = await f.call<{ warnings?: string[]; details?: { field: string }[]; message?: string }>(
      c.method,
      c.path,
      c.body ?? undefined,
    );
    expect(res.status, JSON.stringify(res.body)).toBe(c.expect.status);
    for (const w of c.expect.warnings ?? []) expect((res.body.warnings ?? []).join('\n')).toContain(w);
    if (c.expect.field) expect(res.body.details?.map((d) => d.field)).toContain(c.expect.field);
    // No loop runs here: do what it does with a cancel, so the next deploy can start.
    const cancel = /^\/api\/deploys\/deploy\/[^/]+\/request\/([^/]+)$/.exec(c.path);
    if (c.method === 'DELETE' && cancel) await f.store.apply({ deletePending: [cancel[1]!] });
  });
});

describe("responses in Singularity's shapes", () => {
  let record: RequestRecord;
  let task: TaskRecord;

  beforeAll(async () => {
    f = await ApiFixture.create();
    await f.createRequest('web', { loadBalanced: true, instances: 2 });
    const deploy = await f.seedDeploy(
      'web',
      {
        id: 'v1',
        serviceBasePath: '/web',
        loadBalancerGroups: ['g'],
        resources: { cpus: 0.5, memoryMb: 64, numPorts: 2 },
        canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' },
        mesosLabels: [{ key: 'a', value: 'b' }],
      },
      { at: 10 },
    );
    record = (await f.store.getRequest('web'))!;
    task = {
      taskId: {
        requestId: 'web',
        deployId: deploy.id,
        startedAt: 20,
        instanceNo: 1,
        host: 'local',
        sanitizedHost: 'local',
        rackId: 'local',
        sanitizedRackId: 'local',
        id: 'web-v1-20-1-local-local',
      },
      state: 'TASK_RUNNING',
      handle: { taskId: 'web-v1-20-1-local-local', sandbox: '/nonexistent' },
      ports: [31000, 31001],
      health: { state: 'HEALTHY', results: [{ timestamp: 21, statusCode: 200, durationMillis: 3, startup: false }] },
      lb: { add: { operationId: 'web-lb-1', state: 'SUCCESS', timestamp: 22 } },
      updates: [
        { state: 'TASK_LAUNCHED', timestamp: 20 },
        { state: 'TASK_RUNNING', timestamp: 21 },
      ],
    };
    await f.store.apply({ tasks: [task], requests: [{ ...record, activeDeployId: 'v1' }] });
  });

  it('SingularityRequestParent with SingularityRequest, SingularityDeploy (ignored fields at the top again) and the task ids', async () => {
    const res = await f.call<Record<string, Record<string, unknown>>>('GET', '/api/requests/request/web');
    expectShape('SingularityRequestParent', res.body, [
      'expiringBounce',
      'expiringPause',
      'expiringPriority',
      'expiringScale',
      'expiringSkipHealthchecks',
      'pendingDeploy',
      'pendingDeployState',
    ]);
    expectShape('SingularityTaskIdsByStatus', res.body.taskIds);
    expect(res.body.request).toMatchObject({ id: 'web', requestType: 'SERVICE', instances: 2 });
    expect(res.body.activeDeploy).toMatchObject({ mesosLabels: [{ key: 'a', value: 'b' }] });
    expect(res.body.activeDeploy).not.toHaveProperty('extra');
    // MANUAL is Fledge's: Singularity's field holds one of its own values, Fledge's beside it.
    const canary = res.body.activeDeploy!.canaryDeploySettings as Record<string, string>;
    expect(enumOf('DeployAcceptanceMode')).toContain(canary.acceptanceMode);
    expect(canary.fledgeAcceptanceMode).toBe('MANUAL');
  });

  it('SingularityTask with its task request, offer and Mesos task (ports as resources)', async () => {
    const res = await f.call<Record<string, Record<string, unknown>>>('GET', `/api/tasks/task/${task.taskId.id}`);
    expectShape('SingularityTask', res.body);
    expectShape('SingularityTaskId', res.body.taskId);
    expectShape('SingularityTaskRequest', res.body.taskRequest);
    expectShape('MesosOfferObject', (res.body.offers as unknown as unknown[])[0]);
    expectShape('MesosTaskObject', res.body.mesosTask, ['executor']);
    const resources = res.body.mesosTask!.resources as { name: string; ranges?: { range: { begin: number; end: number }[] } }[];
    expect(resources.find((r) => r.name === 'ports')?.ranges?.range).toEqual([
      { begin: 31000, end: 31000 },
      { begin: 31001, end: 31001 },
    ]);
    // Fledge's own fields alongside
    expect(res.body).toMatchObject({ state: 'TASK_RUNNING', ports: [31000, 31001], health: { state: 'HEALTHY' } });
  });

  it('SingularityTaskHistory, SingularityTaskIdHistory, task counts and task ids', async () => {
    const history = await f.call<Record<string, unknown[]>>('GET', `/api/history/task/${task.taskId.id}`);
    expectShape('SingularityTaskHistory', history.body, ['containerId']);
    expectShape('SingularityTask', history.body.task);
    expectShape('SingularityTaskHistoryUpdate', history.body.taskUpdates![0], ['previous', 'statusMessage', 'statusReason']);
    expectShape('SingularityTaskHealthcheckResult', history.body.healthcheckResults![0], ['errorMessage', 'responseBody']);
    expectShape('SingularityLoadBalancerUpdate', history.body.loadBalancerUpdates![0], ['message']);
    const ids = await f.call<Record<string, unknown>[]>('GET', '/api/history/request/web/tasks/active');
    expectShape('SingularityTaskIdHistory', ids.body[0], ['runId']);
    expect(ids.body[0]).toMatchObject({ updatedAt: 21, lastTaskState: 'TASK_RUNNING' });
    const counts = await f.call('GET', '/api/tasks/counts/request/web');
    expectShape('SingularityTaskCounts', counts.body);
    expect(counts.body).toEqual({ requestId: 'web', active: 1, pending: 0, cleaning: 0 });
    const active = await f.call<unknown[]>('GET', '/api/tasks/active/ids');
    expectShape('SingularityTaskId', active.body[0]);
    const deployTasks = await f.call<unknown[]>('GET', '/api/history/request/web/deploy/v1/tasks/active');
    expect(deployTasks.body).toHaveLength(1);
    expect((await f.call<unknown[]>('GET', '/api/history/request/web/deploy/v1/tasks/inactive')).body).toEqual([]);
  });

  it('SingularityState with every counter', async () => {
    const res = await f.call('GET', '/api/state');
    expectShape('SingularityState', res.body, ['fireAlarm']);
  });

  it('a deploy in progress: deployProgress with lbUpdates as Singularity’s map, Fledge’s list beside it', async () => {
    const res = await f.post<Record<string, Record<string, Record<string, unknown>>>>('/api/deploys', {
      deploy: { requestId: 'web', id: 'v2', command: 'node server.mjs', serviceBasePath: '/web', loadBalancerGroups: ['g'] },
    });
    expect(res.status).toBe(200);
    const pending = (await f.store.getPending('web'))!;
    await f.store.apply({
      pending: [
        {
          ...pending,
          progress: {
            ...pending.progress,
            lbUpdates: [{ loadBalancerRequestId: 'web-v2-lb-1', state: 'SUCCESS', add: [task.taskId.id], remove: [], startedAt: 30 }],
          },
        },
      ],
    });
    const parent = await f.call<Record<string, Record<string, Record<string, unknown>>>>('GET', '/api/requests/request/web');
    const progress = parent.body.pendingDeployState!.deployProgress as Record<string, unknown>;
    expectShape('SingularityPendingDeploy', parent.body.pendingDeployState, ['updatedRequest']);
    expectShape('SingularityDeployProgress', progress, ['pendingLbUpdate']);
    const holder = (progress.lbUpdates as Record<string, { loadBalancerUpdate: unknown; added: { id: string }[] }>)['web-v2-lb-1']!;
    expectShape('SingularityLoadBalancerUpdate', holder.loadBalancerUpdate, ['message']);
    expect(holder.added[0]).toMatchObject(task.taskId);
    expect(progress.fledgeLbUpdates).toHaveLength(1);
    const history = await f.call<Record<string, unknown>>('GET', '/api/history/request/web/deploy/v2');
    expectShape('SingularityDeployHistory', history.body, ['deployResult', 'deployStatistics']);
  });

  it('a failed acceptance: deployFailures holds only Singularity’s reasons, fledgeDeployFailures every one', async () => {
    await f.createRequest('acc');
    await f.seedDeploy('acc', { id: 'v1' }, { at: 1 });
    await f.store.apply({
      results: [
        {
          requestId: 'acc',
          deployId: 'v1',
          result: {
            deployState: 'FAILED',
            message: 'check failed',
            deployFailures: [{ reason: 'ACCEPTANCE_CHECK_FAILED', message: 'check failed' }],
            timestamp: 2,
          },
        },
      ],
    });
    const res = await f.call<{ deployResult: Record<string, unknown[]> }>('GET', '/api/history/request/acc/deploy/v1');
    expectShape('SingularityDeployResult', res.body.deployResult);
    expect(res.body.deployResult.deployFailures).toEqual([]);
    expect(res.body.deployResult.fledgeDeployFailures).toHaveLength(1);
  });

  it('SingularityTaskCleanup on a kill, SingularityRequest on a delete, expiring actions in the parent', async () => {
    const scaled = await f.call<Record<string, unknown>>('PUT', '/api/requests/request/web/scale', {
      instances: 3,
      durationMillis: 60_000,
    });
    expect(scaled.status).toBe(200);
    expectShape('SingularityExpiringScale', scaled.body.expiringScale, ['actionId', 'user']);
    expect(scaled.body.expiringScale).toMatchObject({
      revertToInstances: 2,
      expiringAPIRequestObject: { instances: 3, durationMillis: 60_000 },
    });
    const kept = await f.call<Record<string, unknown>>('DELETE', '/api/requests/request/web/scale');
    expect(kept.status).toBe(200);
    expect(kept.body).not.toHaveProperty('expiringScale');
    expect((await f.call('DELETE', '/api/requests/request/web/scale')).status).toBe(404);

    const killed = await f.call<Record<string, unknown>>('DELETE', `/api/tasks/task/${task.taskId.id}`, {});
    expect(killed.status).toBe(200);
    expectShape('SingularityTaskCleanup', killed.body, ['actionId', 'runBeforeKillId', 'user', 'message']);
    expect(enumOf('TaskCleanupType')).toContain(killed.body.cleanupType);
    const cleanup = await f.call('GET', `/api/tasks/task/${task.taskId.id}/cleanup`);
    expect(cleanup.body).toMatchObject({ cleanupType: 'USER_REQUESTED' });

    const deleted = await f.call<Record<string, unknown>>('DELETE', '/api/requests/request/web');
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({ id: 'web', requestType: 'SERVICE', state: 'DELETING' });
    const history = await f.call<Record<string, unknown>[]>('GET', '/api/history/request/web/requests');
    expect(history.body.map((e) => e.eventType)).toEqual(['DELETING', 'SCALE_REVERTED', 'SCALED', 'CREATED']);
    expectShape('SingularityRequestHistory', history.body[0], ['user']);
  });

  it('every Fledge cleanup reason has a Singularity TaskCleanupType', () => {
    const reasons = [
      'SCALING_DOWN',
      'DEPLOY_REPLACED',
      'DEPLOY_FAILED',
      'DEPLOY_CANCELED',
      'BOUNCING',
      'PAUSING',
      'REQUEST_DELETING',
      'USER_REQUESTED',
      'UNHEALTHY',
      'DEPLOY_STEP_FAILED',
      'DECOMMISSIONING',
      'RESCHEDULED',
    ] as const;
    for (const reason of reasons) {
      const out = taskCleanupOut({ ...task, cleanup: { reason, timestamp: 1 } });
      expect(enumOf('TaskCleanupType')).toContain(out?.cleanupType);
    }
  });
});
