import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testHost, testTask } from '../../../test/helpers/engine-values.ts';
import { createTask } from '../tasks.ts';
import { loseTasksOnSilentHosts } from './host-loss.ts';

const v1 = engineDeploy('v1');
const silent = testHost('d1', { runs: 'docker', reachable: false, lastError: 'connect ECONNREFUSED' });

describe('loseTasksOnSilentHosts', () => {
  it.each([
    ['a running task on a silent host is lost with it', testTask(v1, 1, 'healthy', T0, 'd1'), true],
    ['a task being cleaned up there too', testTask(v1, 1, 'cleaning', T0, 'd1'), true],
    ['a task placed there and not started too', createTask(v1, 1, T0, new Set(), { host: 'd1', rack: 'local' }), true],
    ['a task on a host that answers is not', testTask(v1, 1, 'healthy', T0, 'd2'), false],
    ['a task no host took is not', createTask(v1, 1, T0, new Set(), { waiting: 'no room' }), false],
    ['a task that ended is not touched', testTask(v1, 1, 'exited', T0, 'd1'), false],
  ])('%s', (_name, task, lost) => {
    const out = loseTasksOnSilentHosts([task], [silent, testHost('d2', { runs: 'docker' })], T0 + 5);
    expect(out.length === 1).toBe(lost);
    if (!lost) return;
    expect(out[0]).toMatchObject({ state: 'TASK_LOST', doneAt: T0 + 5, lostWithHost: 'd1' });
    expect(out[0]?.updates.at(-1)).toEqual({
      state: 'TASK_LOST',
      timestamp: T0 + 5,
      message: 'Lost with its host: host d1 is UNREACHABLE (connect ECONNREFUSED)',
    });
  });

  it('changes nothing while every host answers', () => {
    expect(loseTasksOnSilentHosts([testTask(v1, 1, 'healthy', T0, 'd1')], [testHost('d1')], T0)).toEqual([]);
  });
});
