import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testObservation, testRecord, testRequest, testTask } from '../../../test/helpers/engine-values.ts';
import type { DeployResultState } from '../deploy/types.ts';
import type { RequestState, TaskRecord } from '../model.ts';
import { TaskView } from '../task-view.ts';
import { requestContext } from './context.ts';
import { retireOtherDeploys } from './retire.ts';

// v2 is active now; v1 is the deploy it replaced (or v3 one that failed); v4 is pending.
const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2');
const v3 = engineDeploy('v3');
const v4 = engineDeploy('v4');

function run(
  tasks: TaskRecord[],
  options: { loadBalanced?: boolean; state?: RequestState; ended?: Record<string, DeployResultState>; endedNow?: DeployResultState } = {},
) {
  const request = testRequest(2, { loadBalanced: options.loadBalanced ?? false });
  const obs = testObservation({ request, activeDeploy: v1, tasks, endedDeploys: options.ended ?? {} });
  const record = testRecord(request, { activeDeployId: 'v2', state: options.state ?? 'ACTIVE' });
  const ended = options.endedNow ? { deployId: 'v3', state: options.endedNow } : undefined;
  const ctx = requestContext(obs, record, T0, { deployId: 'v4', progress: { retiredOldInstances: [] } }, ended);
  const result = retireOtherDeploys(ctx, record, TaskView.of(tasks));
  return (result.tasks ?? []).map((t) => `${t.taskId.deployId}#${t.taskId.instanceNo} ${t.cleanup?.reason}`);
}

const full = [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'healthy')];
const fullInLb = [testTask(v2, 1, 'in-lb'), testTask(v2, 2, 'in-lb')];
const old = [testTask(v1, 1, 'in-lb'), testTask(v1, 2, 'in-lb')];

describe('retireOtherDeploys', () => {
  it.each([
    {
      name: 'the active deploy at full capacity: the replaced deploy’s tasks go',
      tasks: [...full, ...old],
      options: {},
      retired: ['v1#1 DEPLOY_REPLACED', 'v1#2 DEPLOY_REPLACED'],
    },
    {
      name: 'an active task still starting: every other task stays',
      tasks: [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'starting'), ...old],
      options: {},
      retired: [],
    },
    {
      name: 'an active task still starting: an unhealthy task of another deploy goes anyway (it adds nothing)',
      tasks: [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'starting'), testTask(v1, 1, 'in-lb'), testTask(v3, 2, 'unhealthy')],
      options: {},
      retired: ['v3#2 UNHEALTHY'],
    },
    {
      name: 'load balanced, an active task healthy but swapped out by the pending deploy: the others stay',
      tasks: [
        testTask(v2, 1, 'in-lb'),
        { ...testTask(v2, 2, 'healthy'), lb: { remove: { operationId: 'web-v4-lb1', state: 'SUCCESS' as const, timestamp: T0 } } },
        ...old,
      ],
      options: { loadBalanced: true },
      retired: [],
    },
    { name: 'an active instance missing: every other task stays', tasks: [testTask(v2, 1, 'healthy'), ...old], options: {}, retired: [] },
    {
      name: 'an active task being stopped does not count',
      tasks: [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'cleaning'), ...old],
      options: {},
      retired: [],
    },
    {
      name: 'load balanced, healthy and in the LB: the others go',
      tasks: [...fullInLb, ...old],
      options: { loadBalanced: true },
      retired: ['v1#1 DEPLOY_REPLACED', 'v1#2 DEPLOY_REPLACED'],
    },
    {
      name: 'load balanced, healthy and about to be added in this step’s LB operation: counted as in the LB',
      tasks: [...full, ...old],
      options: { loadBalanced: true },
      retired: ['v1#1 DEPLOY_REPLACED', 'v1#2 DEPLOY_REPLACED'],
    },
    {
      // The add in flight was issued with the removals of these very tasks, in one operation.
      name: 'load balanced, an active task whose add is in flight: counted as in the LB',
      tasks: [testTask(v2, 1, 'in-lb'), testTask(v2, 2, 'adding'), ...old],
      options: { loadBalanced: true },
      retired: ['v1#1 DEPLOY_REPLACED', 'v1#2 DEPLOY_REPLACED'],
    },
    {
      name: 'a deploy that failed in this step: its tasks go once the active one is full',
      tasks: [...full, testTask(v3, 1, 'healthy')],
      options: { endedNow: 'FAILED' as const },
      retired: ['v3#1 DEPLOY_FAILED'],
    },
    {
      name: 'a deploy cancelled earlier: its tasks go as cancelled',
      tasks: [...full, testTask(v3, 1, 'healthy')],
      options: { ended: { v3: 'CANCELED' as const } },
      retired: ['v3#1 DEPLOY_CANCELED'],
    },
    { name: 'the pending deploy’s tasks are never touched here', tasks: [...full, testTask(v4, 1, 'healthy')], options: {}, retired: [] },
    {
      name: 'paused: every other task goes, whatever the capacity',
      tasks: [testTask(v2, 1, 'starting'), ...old],
      options: { state: 'PAUSED' as const },
      retired: ['v1#1 PAUSING', 'v1#2 PAUSING'],
    },
    {
      name: 'deleting: every other task goes',
      tasks: [testTask(v2, 1, 'starting'), ...old],
      options: { state: 'DELETING' as const },
      retired: ['v1#1 REQUEST_DELETING', 'v1#2 REQUEST_DELETING'],
    },
  ])('$name', ({ tasks, options, retired }) => {
    expect(run(tasks, options)).toEqual(retired);
  });
});
