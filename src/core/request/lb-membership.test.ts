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
const OP = 'web-lb3';
const adding: TaskRecord = { ...testTask(v1, 1, 'healthy'), lb: { add: { operationId: OP, state: 'WAITING', timestamp: T0 } } };
const removing: TaskRecord = {
  ...testTask(v1, 2, 'removing'),
  lb: { add: { operationId: 'web-lb1', state: 'SUCCESS', timestamp: T0 }, remove: { operationId: OP, state: 'WAITING', timestamp: T0 } },
};
const op = { operationId: OP, add: [adding.taskId.id], remove: [removing.taskId.id], startedAt: T0 };

describe('settleLbOperation', () => {
  it.each([
    {
      name: 'nothing in flight: a new operation may be issued',
      own: undefined,
      handed: undefined,
      seen: undefined,
      now: T0,
      may: true,
      wakeAt: undefined,
      actions: [],
      add: 'WAITING',
      remove: 'WAITING',
      left: { own: undefined, handed: undefined },
    },
    {
      name: 'in flight: no new operation; look again at its timeout',
      own: op,
      handed: undefined,
      seen: 'WAITING',
      now: T0 + 1,
      may: false,
      wakeAt: T0 + 10_000,
      actions: [],
      add: 'WAITING',
      remove: 'WAITING',
      left: { own: op, handed: undefined },
    },
    {
      name: 'not seen (balancer restarted, being applied again): waits the same',
      own: op,
      handed: undefined,
      seen: undefined,
      now: T0 + 1,
      may: false,
      wakeAt: T0 + 10_000,
      actions: [],
      add: 'WAITING',
      remove: 'WAITING',
      left: { own: op, handed: undefined },
    },
    {
      name: 'SUCCESS: recorded on its tasks; a new operation may follow',
      own: op,
      handed: undefined,
      seen: 'SUCCESS',
      now: T0 + 1,
      may: true,
      wakeAt: undefined,
      actions: [],
      add: 'SUCCESS',
      remove: 'SUCCESS',
      left: { own: undefined, handed: undefined },
    },
    {
      name: 'FAILED: the removal is forgotten (the task is still in); a second later at the soonest',
      own: op,
      handed: undefined,
      seen: 'FAILED',
      now: T0 + 1,
      may: false,
      wakeAt: T0 + 1001,
      actions: [],
      add: 'FAILED',
      remove: undefined,
      left: { own: undefined, handed: undefined },
    },
    {
      name: 'timed out: cancelled and waited for — nothing is assumed, the tasks keep WAITING',
      own: op,
      handed: undefined,
      seen: 'WAITING',
      now: T0 + 10_000,
      may: false,
      wakeAt: T0 + 11_000,
      actions: ['lbCancel'],
      add: 'WAITING',
      remove: 'WAITING',
      left: { own: { ...op, canceling: true }, handed: undefined },
    },
    {
      name: 'cancelled after its timeout: CANCELED recorded, the removal forgotten',
      own: { ...op, canceling: true },
      handed: undefined,
      seen: 'CANCELED',
      now: T0 + 10_001,
      may: false,
      wakeAt: T0 + 11_001,
      actions: [],
      add: 'CANCELED',
      remove: undefined,
      left: { own: undefined, handed: undefined },
    },
    {
      name: 'handed over by a deploy, still WAITING: the cancel is asked again, nothing else may be issued',
      own: undefined,
      handed: [{ ...op, canceling: true }],
      seen: 'WAITING',
      now: T0 + 5,
      may: false,
      wakeAt: T0 + 1005,
      actions: ['lbCancel'],
      add: 'WAITING',
      remove: 'WAITING',
      left: { own: undefined, handed: [{ ...op, canceling: true }] },
    },
    {
      name: 'handed over, then CANCELED: the real outcome on every task it touched; the membership may change at once',
      own: undefined,
      handed: [{ ...op, canceling: true }],
      seen: 'CANCELED',
      now: T0 + 5,
      may: true,
      wakeAt: undefined,
      actions: [],
      add: 'CANCELED',
      remove: undefined,
      left: { own: undefined, handed: undefined },
    },
    {
      name: 'handed over, but it had finished first (SUCCESS): that is what is recorded',
      own: undefined,
      handed: [{ ...op, canceling: true }],
      seen: 'SUCCESS',
      now: T0 + 5,
      may: true,
      wakeAt: undefined,
      actions: [],
      add: 'SUCCESS',
      remove: 'SUCCESS',
      left: { own: undefined, handed: undefined },
    },
  ] as const)('$name', ({ own, handed, seen, now, may, wakeAt, actions, add, remove, left }) => {
    const obs: RequestObservation = testObservation({
      request,
      activeDeploy: v1,
      tasks: [adding, removing],
      ...(seen ? { lbOps: { [OP]: { state: seen } } } : {}),
    });
    const record: RequestRecord = testRecord(request, {
      ...(own ? { lbOperation: own } : {}),
      ...(handed ? { lbHandedOver: [...handed] } : {}),
    });
    const result = settleLbOperation(obs, record, TaskView.of(obs.tasks), now);
    expect(result.mayIssue).toBe(may);
    expect(result.wakeAt).toBe(wakeAt);
    expect((result.actions ?? []).map((a) => a.kind)).toEqual(actions);
    const after = TaskView.of(obs.tasks).with(result.tasks ?? []);
    expect(after.get(adding.taskId.id)?.lb.add?.state).toBe(add);
    expect(after.get(removing.taskId.id)?.lb.remove?.state).toBe(remove);
    // A failed or cancelled removal leaves the task as it was: in the LB.
    expect(after.get(removing.taskId.id)?.lb.add?.state).toBe('SUCCESS');
    expect(result.record.lbOperation).toEqual(left.own);
    expect(result.record.lbHandedOver).toEqual(left.handed);
  });

  it('settles its own operation and handed-over ones in the same step, each on its own tasks', () => {
    const other: TaskRecord = {
      ...testTask(v1, 3, 'healthy'),
      lb: { add: { operationId: 'web-v2-lb1', state: 'WAITING', timestamp: T0 } },
    };
    const handed = { operationId: 'web-v2-lb1', add: [other.taskId.id], remove: [], startedAt: T0, canceling: true };
    const obs = testObservation({
      request,
      activeDeploy: v1,
      tasks: [adding, removing, other],
      lbOps: { [OP]: { state: 'SUCCESS' }, 'web-v2-lb1': { state: 'CANCELED' } },
    });
    const result = settleLbOperation(obs, testRecord(request, { lbOperation: op, lbHandedOver: [handed] }), TaskView.of(obs.tasks), T0);
    const after = TaskView.of(obs.tasks).with(result.tasks ?? []);
    expect(after.get(adding.taskId.id)?.lb.add?.state).toBe('SUCCESS');
    expect(after.get(other.taskId.id)?.lb.add?.state).toBe('CANCELED');
    expect(result.record.lbOperation).toBeUndefined();
    expect(result.record.lbHandedOver).toBeUndefined();
  });

  it('leaves a task alone whose ADD or REMOVE is now another operation’s', () => {
    const readded: TaskRecord = { ...adding, lb: { add: { operationId: 'web-lb4', state: 'SUCCESS', timestamp: T0 } } };
    const obs = testObservation({ request, activeDeploy: v1, tasks: [readded, removing], lbOps: { [OP]: { state: 'CANCELED' } } });
    const result = settleLbOperation(obs, testRecord(request, { lbOperation: op }), TaskView.of(obs.tasks), T0);
    expect((result.tasks ?? []).map((t) => t.taskId.id)).toEqual([removing.taskId.id]);
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
    {
      name: 'removes a task marked for cleanup whose add was cancelled (it may be in: a cancel keeps what was done)',
      tasks: [{ ...testTask(v2, 1, 'cleaning'), lb: { add: { operationId: 'web-v2-lb1', state: 'CANCELED' as const, timestamp: T0 } } }],
      add: [],
      remove: [0],
    },
    {
      name: 'adds again a wanted task whose add failed or was cancelled',
      tasks: [
        { ...testTask(v1, 1, 'healthy'), lb: { add: { operationId: 'web-lb1', state: 'FAILED' as const, timestamp: T0 } } },
        { ...testTask(v1, 2, 'healthy'), lb: { add: { operationId: 'web-lb1', state: 'CANCELED' as const, timestamp: T0 } } },
      ],
      add: [0, 1],
      remove: [],
    },
    {
      name: 'leaves a task whose removal succeeded alone',
      tasks: [
        {
          ...testTask(v2, 1, 'cleaning'),
          lb: {
            add: { operationId: 'web-lb1', state: 'SUCCESS' as const, timestamp: T0 },
            remove: { operationId: 'web-lb2', state: 'SUCCESS' as const, timestamp: T0 },
          },
        },
      ],
      add: [],
      remove: [],
    },
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

describe('issueLbOperation: routing of a deploy that is no longer pending', () => {
  const served = engineDeploy('v1', {}, { serviceBasePath: '/web' });
  const issue = (tasks: TaskRecord[], lbRouting: string | undefined, routed: string | undefined, active = served) => {
    const obs = testObservation({ request, activeDeploy: active, tasks });
    const record = testRecord(request, { lbSeq: 2, ...(lbRouting ? { lbRouting } : {}) });
    return issueLbOperation(requestContext(obs, record, T0, undefined, undefined), record, TaskView.of(tasks), routed);
  };

  it('issues an operation with no membership change to clear it, and forgets it', () => {
    const out = issue([testTask(v1, 1, 'in-lb')], 'v2', undefined);
    expect(out.actions).toEqual([{ kind: 'lbApply', operationId: 'web-lb3', add: [], remove: [] }]);
    expect(out.record?.lbRouting).toBeUndefined();
    expect(out.record?.lbOperation).toMatchObject({ operationId: 'web-lb3', add: [], remove: [] });
  });

  it('clears it in the operation that takes the new deploy out, when one is due', () => {
    const tasks = [testTask(v1, 1, 'in-lb'), testTask(v2, 1, 'cleaning-in-lb')];
    const out = issue(tasks, 'v2', undefined);
    expect(out.actions).toEqual([{ kind: 'lbApply', operationId: 'web-lb3', add: [], remove: [tasks[1]!.taskId.id] }]);
    expect(out.record?.lbRouting).toBeUndefined();
  });

  it('issues nothing while the routed deploy is still pending, or when nothing was routed', () => {
    expect(issue([testTask(v1, 1, 'in-lb')], 'v2', 'v2')).toEqual({});
    expect(issue([testTask(v1, 1, 'in-lb')], undefined, undefined)).toEqual({});
  });

  it('forgets it without an operation when there is no active deploy to name the service', () => {
    const out = issue([], 'v2', undefined, v1);
    expect(out.actions).toBeUndefined();
    expect(out.record?.lbRouting).toBeUndefined();
  });
});
