import { describe, expect, it } from 'vitest';
import { capacityOf, type CapacityTask } from './capacity.ts';

const task = (deployId: string, extra: Partial<CapacityTask> = {}): CapacityTask => ({
  taskId: { deployId },
  state: 'TASK_RUNNING',
  health: { state: 'HEALTHY' },
  lb: { add: { state: 'SUCCESS' } },
  ...extra,
});

describe('capacity of a request', () => {
  it.each([
    ['full and settled: every wanted task healthy and in the LB, nothing else', [task('v1'), task('v1')], true, true],
    [
      'full but not settled: a failed deploy still has a task',
      [task('v1'), task('v1'), task('v2', { state: 'TASK_CLEANING' })],
      true,
      false,
    ],
    ['not full: one is healthy but not yet in the LB', [task('v1'), task('v1', { lb: {} })], false, false],
    ['not full: one is leaving the LB', [task('v1'), task('v1', { lb: { add: { state: 'SUCCESS' }, remove: {} } })], false, false],
    ['not full: one is still starting', [task('v1'), task('v1', { health: { state: 'UNKNOWN' } })], false, false],
    ['ended tasks do not count', [task('v1'), task('v1'), task('v2', { state: 'TASK_KILLED' })], true, true],
  ])('%s', (_name, tasks, full, settled) => {
    const c = capacityOf({ instances: 2, loadBalanced: true }, 'v1', tasks);
    expect([c.full, c.settled]).toEqual([full, settled]);
  });

  it('counts healthy tasks alone for a request without a load balancer', () => {
    const c = capacityOf({ instances: 2, loadBalanced: false }, 'v1', [task('v1', { lb: {} }), task('v1', { lb: {} })]);
    expect(c).toMatchObject({ wanted: 2, healthy: 2, inLb: 0, full: true });
  });

  it('a task on its way out does not count for the active deploy', () => {
    const c = capacityOf({ instances: 2, loadBalanced: true }, 'v1', [task('v1'), task('v1', { cleanup: { reason: 'SCALING_DOWN' } })]);
    expect(c).toMatchObject({ running: 1, inLb: 1, full: false });
  });
});
