import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testObservation, testRecord, testRequest, testTask } from '../../../test/helpers/engine-values.ts';
import type { RequestObservation } from '../deploy/types.ts';
import type { RequestRecord, TaskRecord } from '../model.ts';
import { TaskView } from '../task-view.ts';
import { requestContext } from './context.ts';
import { issueLbOperation, settleLbOperation } from './lb-membership.ts';

const request = testRequest(2, { loadBalanced: true });
const v1 = engineDeploy('v1', {}, { loadBalancerTimeoutSeconds: 10 });
const v2 = engineDeploy('v2');
const adding = testTask(v1, 1, 'adding');
const removing = testTask(v1, 2, 'removing');
const op = { operationId: 'web-lb3', add: [adding.taskId.id], remove: [removing.taskId.id], startedAt: T0 };

describe('settleLbOperation', () => {
  it.each([
    {
      name: 'nothing in flight: a new operation may be issued',
      lbOperation: undefined,
      seen: undefined,
      now: T0,
      may: true,
      wakeAt: undefined,
      actions: [],
      add: 'WAITING',
      remove: 'WAITING',
    },
    {
      name: 'in flight: no new operation; look again at its timeout',
      lbOperation: op,
      seen: 'WAITING',
      now: T0 + 1,
      may: false,
      wakeAt: T0 + 10_000,
      actions: [],
      add: 'WAITING',
      remove: 'WAITING',
    },
    {
      name: 'not seen (balancer restarted): waits the same',
      lbOperation: op,
      seen: undefined,
      now: T0 + 1,
      may: false,
      wakeAt: T0 + 10_000,
      actions: [],
      add: 'WAITING',
      remove: 'WAITING',
    },
    {
      name: 'SUCCESS: recorded on its tasks; a new operation may follow',
      lbOperation: op,
      seen: 'SUCCESS',
      now: T0 + 1,
      may: true,
      wakeAt: undefined,
      actions: [],
      add: 'SUCCESS',
      remove: 'SUCCESS',
    },
    {
      name: 'FAILED: the removal is forgotten (retried later); a second later at the soonest',
      lbOperation: op,
      seen: 'FAILED',
      now: T0 + 1,
      may: false,
      wakeAt: T0 + 1001,
      actions: [],
      add: 'FAILED',
      remove: undefined,
    },
    {
      name: 'timed out: cancelled, recorded CANCELED, the removal forgotten',
      lbOperation: op,
      seen: 'WAITING',
      now: T0 + 10_000,
      may: false,
      wakeAt: T0 + 11_000,
      actions: ['lbCancel'],
      add: 'CANCELED',
      remove: undefined,
    },
  ] as const)('$name', ({ lbOperation, seen, now, may, wakeAt, actions, add, remove }) => {
    const obs: RequestObservation = testObservation({
      request,
      activeDeploy: v1,
      tasks: [adding, removing],
      ...(seen ? { lbOps: { 'web-lb3': { state: seen } } } : {}),
    });
    const record: RequestRecord = testRecord(request, lbOperation ? { lbOperation } : {});
    const result = settleLbOperation(obs, record, TaskView.of(obs.tasks), now);
    expect(result.mayIssue).toBe(may);
    expect(result.wakeAt).toBe(wakeAt);
    expect((result.actions ?? []).map((a) => a.kind)).toEqual(actions);
    const after = TaskView.of(obs.tasks).with(result.tasks ?? []);
    expect(after.get(adding.taskId.id)?.lb.add?.state).toBe(add);
    expect(after.get(removing.taskId.id)?.lb.remove?.state).toBe(remove);
    // Once settled, the operation is no longer the request's.
    expect(result.record.lbOperation).toEqual(lbOperation && (seen === 'WAITING' || !seen) && now < T0 + 10_000 ? lbOperation : undefined);
  });
});

describe('issueLbOperation', () => {
  const run = (tasks: TaskRecord[], pendingAfter?: { deployId: string; progress: { retiredOldInstances: number[] } }) => {
    const obs = testObservation({ request, activeDeploy: v1, tasks });
    const record = testRecord(request, { lbSeq: 2 });
    return issueLbOperation(requestContext(obs, record, T0, pendingAfter, undefined), record, TaskView.of(tasks));
  };
  const names = (ids: string[] | undefined, tasks: TaskRecord[]) => (ids ?? []).map((id) => tasks.findIndex((t) => t.taskId.id === id));

  it.each([
    { name: 'adds a healthy active task not in the LB', tasks: [testTask(v1, 1, 'healthy')], add: [0], remove: [] },
    { name: 'removes a task marked for cleanup that is in the LB', tasks: [testTask(v1, 1, 'cleaning-in-lb')], add: [], remove: [0] },
    {
      name: 'removes a task that died while in the LB',
      tasks: [{ ...testTask(v1, 1, 'in-lb'), state: 'TASK_FAILED' as const }],
      add: [],
      remove: [0],
    },
    {
      name: 'adds and removes in one operation (a revert is atomic)',
      tasks: [testTask(v1, 1, 'healthy'), testTask(v2, 1, 'cleaning-in-lb')],
      add: [0],
      remove: [1],
    },
    { name: 'leaves a removal in flight alone', tasks: [testTask(v1, 1, 'removing')], add: [], remove: [] },
    {
      name: 'leaves a task already in the LB, or being added, alone',
      tasks: [testTask(v1, 1, 'in-lb'), testTask(v1, 2, 'adding')],
      add: [],
      remove: [],
    },
    { name: 'adds no task that is not healthy', tasks: [testTask(v1, 1, 'starting')], add: [], remove: [] },
    { name: 'adds no task of another deploy', tasks: [testTask(v2, 1, 'healthy')], add: [], remove: [] },
  ])('$name', ({ tasks, add, remove }) => {
    const result = run(tasks);
    const apply = result.actions?.[0];
    if (add.length + remove.length === 0) {
      expect(result).toEqual({});
      return;
    }
    expect(apply?.kind).toBe('lbApply');
    if (apply?.kind !== 'lbApply') return;
    expect(apply.operationId).toBe('web-lb3');
    expect(names(apply.add, tasks)).toEqual(add);
    expect(names(apply.remove, tasks)).toEqual(remove);
    expect(result.record?.lbOperation).toEqual({ operationId: 'web-lb3', add: apply.add, remove: apply.remove, startedAt: T0 });
    expect(result.record?.lbSeq).toBe(3);
  });

  it('keeps out the old tasks a pending atomic swap took out of the LB', () => {
    const swapped: TaskRecord = {
      ...testTask(v1, 1, 'healthy'),
      lb: { remove: { operationId: 'web-v2-lb1', state: 'SUCCESS', timestamp: T0 } },
    };
    expect(run([swapped], { deployId: 'v2', progress: { retiredOldInstances: [] } })).toEqual({});
    expect(run([swapped]).actions?.length).toBe(1);
  });
});
