import { describe, expect, it } from 'vitest';
import { phaseInput, T0, testRequest, testTask } from '../../../../test/helpers/engine-values.ts';
import { stepDeadline } from '../phase.ts';
import { stepLaunch } from './launch.ts';

const next = (r: ReturnType<typeof stepLaunch>) =>
  'to' in r ? `to ${r.to}` : 'wait' in r ? `wait until ${r.wait.until}` : `end ${r.end.state}`;

describe('stepLaunch', () => {
  it.each([
    {
      name: 'creates every task of the target at the lowest numbers and moves to HEALTH',
      input: phaseInput({ progress: { targetActiveInstances: 2 } }),
      next: 'to HEALTH',
      launched: [1, 2],
      complete: true,
    },
    {
      name: 'creates only the missing ones, at the free numbers',
      input: phaseInput({
        progress: { targetActiveInstances: 3 },
        request: testRequest(3),
        tasks: (_v1, v2) => [testTask(v2, 2, 'starting')],
      }),
      next: 'to HEALTH',
      launched: [1, 3],
      complete: true,
    },
    {
      name: 'a task being stopped does not count: its number is launched again',
      input: phaseInput({ progress: { targetActiveInstances: 1 }, tasks: (_v1, v2) => [testTask(v2, 1, 'cleaning')] }),
      next: 'to HEALTH',
      launched: [1],
      complete: true,
    },
    {
      name: 'with every task there it launches nothing and moves on',
      input: phaseInput({ progress: { targetActiveInstances: 1 }, tasks: (_v1, v2) => [testTask(v2, 1, 'starting')] }),
      next: 'to HEALTH',
      launched: [],
      complete: true,
    },
    {
      name: 'more than a pass may create: creates the batch and stays in LAUNCH, looking again at once',
      input: phaseInput({ progress: { targetActiveInstances: 5 }, request: testRequest(5), launchBudget: 2 }),
      next: `wait until ${T0}`,
      launched: [1, 2],
      complete: false,
    },
  ])('$name', ({ input, next: expected, launched, complete }) => {
    const result = stepLaunch(input);
    expect(next(result)).toBe(expected);
    expect(result.tasks?.map((t) => t.taskId.instanceNo)).toEqual(launched);
    expect(result.actions).toEqual(result.tasks?.map((t) => ({ kind: 'startTask', taskId: t.taskId.id })));
    expect(result.tasks?.every((t) => t.state === 'TASK_LAUNCHED' && t.taskId.deployId === 'v2')).toBe(true);
    expect(result.progress.stepLaunchComplete).toBe(complete);
    expect(result.progress.deadline).toBe(stepDeadline(input.deploy, input.progress.stepStartedAt));
    expect(result.decisions?.map((d) => d.kind)).toEqual(launched.length > 0 ? ['TASKS_LAUNCHED'] : []);
  });

  it('keeps a deadline already set and asks to be woken at it', () => {
    const result = stepLaunch(phaseInput({ progress: { targetActiveInstances: 1, deadline: T0 + 5000 } }));
    expect(result.progress.deadline).toBe(T0 + 5000);
    expect(result.wakeAt).toBe(T0 + 5000);
  });

  it('names the tasks it launched in its decision', () => {
    const result = stepLaunch(phaseInput({ progress: { targetActiveInstances: 2 } }));
    const [decision] = result.decisions ?? [];
    expect(decision).toMatchObject({
      kind: 'TASKS_LAUNCHED',
      taskIds: result.tasks?.map((t) => t.taskId.id),
      action: 'launch #1, #2 on local',
    });
  });
});
