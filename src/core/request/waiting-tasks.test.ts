import { describe, expect, it } from 'vitest';
import {
  engineDeploy,
  T0,
  testHost,
  testObservation,
  testPending,
  testRecord,
  testRequest,
  testTask,
} from '../../../test/helpers/engine-values.ts';
import type { TaskRecord } from '../model.ts';
import type { HostSnapshot } from '../placement.ts';
import { createTask } from '../tasks.ts';
import { TaskView } from '../task-view.ts';
import { requestContext } from './context.ts';
import { placeWaitingTasks } from './waiting-tasks.ts';

const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2');
const unplaced = (d = v1, n = 1) => createTask(d, n, T0, new Set(), { waiting: 'no host fits' });

function run(tasks: TaskRecord[], hosts: HostSnapshot[], pending = false, budget = 100) {
  const request = testRequest(2);
  const obs = testObservation({
    request,
    activeDeploy: v1,
    tasks,
    hosts,
    ...(pending ? { pendingDeploy: v2, pending: testPending(v2, request) } : {}),
  });
  const ctx = requestContext(
    obs,
    testRecord(request),
    T0 + 10,
    pending ? { deployId: 'v2', progress: { retiredOldInstances: [] } } : undefined,
    undefined,
  );
  return placeWaitingTasks(ctx, TaskView.of(tasks), budget);
}

describe('placeWaitingTasks', () => {
  it('gives a waiting task the host that fits now: a new record there, the unplaced one deleted, a start', () => {
    const waiting = unplaced();
    const out = run([waiting], [testHost('local')]);
    expect(out.deleted).toEqual([waiting.taskId.id]);
    expect(out.tasks).toMatchObject([{ taskId: { instanceNo: 1, host: 'local', deployId: 'v1' }, state: 'TASK_LAUNCHED' }]);
    expect(out.tasks?.[0]?.waitingReason).toBeUndefined();
    expect(out.actions).toEqual([{ kind: 'startTask', taskId: out.tasks?.[0]?.taskId.id }]);
    expect(out.wakeAt).toBeUndefined();
  });

  it('places the pending deploy’s waiting tasks too', () => {
    const out = run([unplaced(v2, 2)], [testHost('local')], true);
    expect(out.tasks).toMatchObject([{ taskId: { instanceNo: 2, deployId: 'v2', host: 'local' } }]);
  });

  it('keeps one that still fits nowhere waiting, with the reason of now, and looks again later', () => {
    const frozen = [testHost('local', { adminState: 'FROZEN' })];
    const out = run([unplaced()], frozen);
    expect(out.deleted).toEqual([]);
    expect(out.actions).toEqual([]);
    expect(out.tasks).toMatchObject([{ waitingReason: 'host local is FROZEN and takes no new tasks' }]);
    expect(out.wakeAt).toBe(T0 + 10 + 1000);
    // Same reason as stored: nothing to write.
    const same = run([{ ...unplaced(), waitingReason: 'host local is FROZEN and takes no new tasks' }], frozen);
    expect(same.tasks).toEqual([]);
  });

  it('places two waiting tasks against each other’s room', () => {
    const one = [testHost('local', { capacity: { cpus: 0.1, memoryMb: 1000 } })];
    const out = run([unplaced(v1, 1), unplaced(v1, 2)], one);
    expect(out.deleted).toHaveLength(1);
    expect(out.tasks?.map((t) => t.waitingReason ?? t.taskId.host)).toEqual([
      'local',
      'Not enough cpus: needs 0.1, 0 free of 0.1'.replace(/^/, 'host local: '),
    ]);
  });

  it.each([
    [
      'decommissioning',
      [testHost('local'), testHost('d1', { runs: 'process', adminState: 'DECOMMISSIONING' })],
      'host d1 is DECOMMISSIONING; placed again',
    ],
    ['gone from the configuration', [testHost('local')], 'host d1 is not configured any more; placed again'],
  ])('cleans up at once a task placed on a host that is %s and that never started', (_name, hosts, message) => {
    const placed = createTask(v1, 1, T0, new Set(), { host: 'd1', rack: 'local' });
    const out = run([placed], hosts);
    expect(out.tasks).toMatchObject([{ cleanup: { reason: 'RESCHEDULED', message } }]);
  });

  it('leaves alone started tasks, tasks on hosts that take tasks, and frozen hosts’ placed ones', () => {
    const hosts = [testHost('local'), testHost('d1', { runs: 'process', adminState: 'FROZEN' })];
    const out = run([testTask(v1, 1, 'healthy'), createTask(v1, 2, T0, new Set(), { host: 'd1', rack: 'local' })], hosts);
    expect(out).toMatchObject({ tasks: [], actions: [], deleted: [] });
  });
});
