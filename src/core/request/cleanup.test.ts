import { describe, expect, it } from 'vitest';
import {
  engineDeploy,
  T0,
  testObservation,
  testRecord,
  testRequest,
  testTask,
  type TaskShape,
} from '../../../test/helpers/engine-values.ts';
import { TaskView } from '../task-view.ts';
import { requestContext } from './context.ts';
import { cleanUp } from './cleanup.ts';

const v1 = engineDeploy('v1');

function run(shape: TaskShape, options: { loadBalanced?: boolean; starting?: boolean; killing?: boolean } = {}) {
  const request = testRequest(1, { loadBalanced: options.loadBalanced ?? false });
  let task = testTask(v1, 1, shape);
  if (options.killing) task = { ...task, state: 'TASK_KILLING' };
  const obs = testObservation({ request, activeDeploy: v1, tasks: [task] });
  const ctx = requestContext(obs, testRecord(request), T0, undefined, undefined);
  return cleanUp(ctx, TaskView.of([task]), new Set(options.starting ? [task.taskId.id] : []));
}

describe('cleanUp', () => {
  it.each([
    {
      name: 'a cleaned-up task out of the LB is stopped',
      shape: 'cleaning' as const,
      options: {},
      actions: ['stopTask'],
      killing: true,
      wakeAt: undefined,
    },
    {
      name: 'a cleaned-up task still in the LB waits for its removal',
      shape: 'cleaning-in-lb' as const,
      options: { loadBalanced: true },
      actions: [],
      killing: false,
      wakeAt: undefined,
    },
    {
      name: 'a cleaned-up task whose removal is in flight waits for it',
      shape: 'removing' as const,
      options: { loadBalanced: true },
      actions: [],
      killing: false,
      wakeAt: undefined,
    },
    {
      name: 'without load balancing a cleaned-up task is stopped at once',
      shape: 'cleaning-in-lb' as const,
      options: {},
      actions: ['stopTask'],
      killing: true,
      wakeAt: undefined,
    },
    {
      name: 'a task already being killed is asked to stop again, unchanged',
      shape: 'cleaning' as const,
      options: { killing: true },
      actions: ['stopTask'],
      killing: false,
      wakeAt: undefined,
    },
    {
      name: 'a task never started (crash between persist and start) is started',
      shape: 'launched' as const,
      options: {},
      actions: ['startTask'],
      killing: false,
      wakeAt: undefined,
    },
    {
      name: 'a task an earlier part already starts is not started twice',
      shape: 'launched' as const,
      options: { starting: true },
      actions: [],
      killing: false,
      wakeAt: undefined,
    },
    {
      name: 'a task waiting for capacity is started again after the retry interval',
      shape: 'waiting' as const,
      options: {},
      actions: ['startTask'],
      killing: false,
      wakeAt: T0 + 1000,
    },
    {
      name: 'a task no host took yet is the waiting part’s, never started here',
      shape: 'unplaced' as const,
      options: {},
      actions: [],
      killing: false,
      wakeAt: undefined,
    },
    { name: 'a running task is left alone', shape: 'healthy' as const, options: {}, actions: [], killing: false, wakeAt: undefined },
    { name: 'an ended task is left alone', shape: 'exited' as const, options: {}, actions: [], killing: false, wakeAt: undefined },
  ])('$name', ({ shape, options, actions, killing, wakeAt }) => {
    const result = run(shape, options);
    expect(result.actions?.map((a) => a.kind)).toEqual(actions);
    expect(result.tasks?.map((t) => t.state)).toEqual(killing ? ['TASK_KILLING'] : []);
    expect(result.wakeAt).toBe(wakeAt);
  });

  it('stops with the reason the task was cleaned up for', () => {
    expect(run('cleaning').actions).toEqual([
      { kind: 'stopTask', taskId: testTask(v1, 1, 'cleaning').taskId.id, reason: 'DEPLOY_REPLACED' },
    ]);
  });
});
