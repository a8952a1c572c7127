import { describe, expect, it } from 'vitest';
import { calculateStepTargets } from './targets.ts';

const canary = (instanceGroupSize: number, canaryCycleCount: number) => ({
  enableCanaryDeploy: true,
  instanceGroupSize,
  canaryCycleCount,
  acceptanceMode: 'NONE' as const,
  waitMillisBetweenGroups: 0,
  allowedTasksFailuresPerGroup: 0,
});

describe('calculateStepTargets', () => {
  it.each([
    ['S4 group 1, cycles 3, 10 instances', 10, canary(1, 3), [1, 2, 3, 10]],
    ['S4 group 2, cycles 3, 10 instances', 10, canary(2, 3), [2, 4, 6, 10]],
    ['S4 cycles 1: the first group, then all', 10, canary(2, 1), [2, 10]],
    ['S3 group 2, 4 instances, cycles 3', 4, canary(2, 3), [2, 4]],
    ['S2 group 1, 2 instances', 2, canary(1, 3), [1, 2]],
    ['group larger than instances', 3, canary(5, 3), [3]],
    ['canary off is one step', 5, { ...canary(1, 3), enableCanaryDeploy: false }, [5]],
  ])('%s', (_name, instances, settings, expected) => {
    expect(calculateStepTargets(instances, settings)).toEqual(expected);
  });
});
