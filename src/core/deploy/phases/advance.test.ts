import { describe, expect, it } from 'vitest';
import { phaseInput, T0, testRequest } from '../../../../test/helpers/engine-values.ts';
import { stepAdvance } from './advance.ts';

const canary = (group: number, cycles = 3) => ({ enableCanaryDeploy: true, instanceGroupSize: group, canaryCycleCount: cycles });

describe('stepAdvance', () => {
  it.each([
    {
      name: 'group 1 of 4: retires old #1, next target 2',
      input: phaseInput({
        request: testRequest(4),
        canary: canary(1),
        progress: { phase: 'ADVANCE', targetActiveInstances: 1, totalSteps: 4 },
      }),
      retired: [1],
      next: { step: 2, targetActiveInstances: 2, totalSteps: 4, currentActiveInstances: 1 },
    },
    {
      name: 'group 2 of 10, second step: retires old #3 and #4, next target 6',
      input: phaseInput({
        request: testRequest(10),
        canary: canary(2),
        progress: {
          phase: 'ADVANCE',
          step: 2,
          targetActiveInstances: 4,
          currentActiveInstances: 2,
          retiredOldInstances: [1, 2],
          totalSteps: 4,
        },
      }),
      retired: [1, 2, 3, 4],
      next: { step: 3, targetActiveInstances: 6, totalSteps: 4, currentActiveInstances: 4 },
    },
    {
      name: 'the last canary group before all: next target is every instance',
      input: phaseInput({
        request: testRequest(4),
        canary: canary(1, 1),
        progress: { phase: 'ADVANCE', targetActiveInstances: 1, totalSteps: 2 },
      }),
      retired: [1],
      next: { step: 2, targetActiveInstances: 4, totalSteps: 2, currentActiveInstances: 1 },
    },
    {
      name: 'an updatedRequest larger than the old request retires only the old instances there are',
      input: phaseInput({
        request: testRequest(1),
        canary: canary(1),
        progress: { phase: 'ADVANCE', step: 2, targetActiveInstances: 2, currentActiveInstances: 1, retiredOldInstances: [1] },
        obs: { pending: undefined },
      }),
      retired: [1],
      next: { step: 3, currentActiveInstances: 2 },
    },
  ])('$name', ({ input, retired, next }) => {
    const result = stepAdvance({ ...input, instances: Math.max(input.instances, 4), now: T0 + 1 });
    expect(result).toMatchObject({ to: 'LAUNCH' });
    expect(result.progress.retiredOldInstances).toEqual(retired);
    expect(result.progress).toMatchObject({
      ...next,
      stepStartedAt: T0 + 1,
      stepFailures: 0,
      stepLaunchComplete: false,
      stepAcceptanceResults: {},
    });
    expect(result.progress.deadline).toBeUndefined();
    expect(result.progress.stepReadyAt).toBeUndefined();
  });

  it.each([
    { name: 'after the only step', steps: 1, message: 'Deploy succeeded' },
    { name: 'after the last of several steps', steps: 3, message: 'Deploy succeeded after 3 steps' },
  ])('ends SUCCEEDED $name, with every instance accepted', ({ steps, message }) => {
    const input = phaseInput({
      progress: { phase: 'ADVANCE', step: steps, totalSteps: steps, targetActiveInstances: 2, currentActiveInstances: 1 },
    });
    const result = stepAdvance(input);
    expect(result).toMatchObject({ end: { state: 'SUCCEEDED', message } });
    expect(result.progress.currentActiveInstances).toBe(2);
  });
});
