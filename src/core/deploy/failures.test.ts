import { describe, expect, it } from 'vitest';
import { phaseInput, T0, testTask, type TaskShape } from '../../../test/helpers/engine-values.ts';
import type { DeployPhase } from './types.ts';
import { assessFailures } from './failures.ts';
import { stepDeadline } from './phase.ts';

function run(
  shape: TaskShape,
  options: { allowed?: number; phase?: DeployPhase; counted?: boolean; cleaned?: boolean; lostWithHost?: string } = {},
) {
  let victim = testTask(phaseInput().deploy, 2, shape);
  if (options.cleaned) victim = { ...victim, cleanup: { reason: 'DEPLOY_REPLACED', timestamp: T0 } };
  if (options.lostWithHost) victim = { ...victim, lostWithHost: options.lostWithHost };
  const input = phaseInput({
    canary: { allowedTasksFailuresPerGroup: options.allowed ?? 0 },
    progress: { phase: options.phase ?? 'HEALTH', ...(options.counted ? { failedDeployTasks: [victim.taskId] } : {}) },
    tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), victim],
  });
  return assessFailures(input);
}

describe('assessFailures', () => {
  it.each([
    {
      name: 'a task that exited non-zero failed on startup',
      shape: 'exited' as const,
      options: {},
      reason: 'TASK_FAILED_ON_STARTUP',
      end: true,
      replace: false,
    },
    {
      name: 'a task that exited 0 was expected to keep running',
      shape: 'finished' as const,
      options: {},
      reason: 'TASK_EXPECTED_RUNNING_FINISHED',
      end: true,
      replace: false,
    },
    {
      name: 'a task lost before it ran never entered running',
      shape: 'lost' as const,
      options: {},
      reason: 'TASK_NEVER_ENTERED_RUNNING',
      end: true,
      replace: false,
    },
    {
      name: 'a task the runtime could not start failed on startup',
      shape: 'error' as const,
      options: {},
      reason: 'TASK_FAILED_ON_STARTUP',
      end: true,
      replace: false,
    },
    {
      name: 'an unhealthy task failed its health checks',
      shape: 'unhealthy' as const,
      options: {},
      reason: 'TASK_FAILED_HEALTH_CHECKS',
      end: true,
      replace: false,
    },
    {
      name: 'a failure within the allowance is counted, nothing ends',
      shape: 'exited' as const,
      options: { allowed: 1 },
      reason: 'TASK_FAILED_ON_STARTUP',
      end: false,
      replace: false,
    },
    {
      name: 'an allowed failure after the step was healthy sends it back to LAUNCH',
      shape: 'exited' as const,
      options: { allowed: 1, phase: 'ACCEPTANCE' as const },
      reason: 'TASK_FAILED_ON_STARTUP',
      end: false,
      replace: true,
    },
    {
      name: 'a failure counted before is not counted again',
      shape: 'exited' as const,
      options: { counted: true },
      reason: undefined,
      end: false,
      replace: false,
    },
    {
      name: 'a task that ended after it was cleaned up is no failure',
      shape: 'exited' as const,
      options: { cleaned: true },
      reason: undefined,
      end: false,
      replace: false,
    },
    { name: 'a starting task is no failure', shape: 'starting' as const, options: {}, reason: undefined, end: false, replace: false },
  ])('$name', ({ shape, options, reason, end, replace }) => {
    const result = run(shape, options);
    expect(result.decisions?.map((d) => d.kind === 'TASK_FAILED' && d.failure)).toEqual(reason ? [reason] : []);
    expect(result.end !== undefined).toBe(end);
    expect(result.replace !== undefined).toBe(replace);
    if (reason) expect(result.progress.failedDeployTasks).toHaveLength(1);
    if (end) expect(result.end?.failures?.map((f) => f.reason)).toEqual([reason]);
  });

  it('marks an unhealthy task for cleanup, with the health message', () => {
    const result = run('unhealthy');
    expect(result.tasks?.map((t) => t.cleanup)).toEqual([
      { reason: 'UNHEALTHY', timestamp: T0, message: 'Health check returned failure status 503' },
    ]);
  });

  it.each([
    { phase: 'HEALTH' as const, replace: false },
    { phase: 'ACCEPTANCE' as const, replace: true },
  ])('a task lost with its host in $phase is replaced, never counted, with a fresh health deadline', ({ phase, replace }) => {
    const result = run('lost', { lostWithHost: 'd1', phase });
    const deadline = stepDeadline(phaseInput().deploy, T0);
    expect(result.end).toBeUndefined();
    expect(result.replace !== undefined).toBe(replace);
    expect(result.progress.failedDeployTasks).toEqual([]);
    expect(result.progress.stepFailures).toBe(0);
    expect(result.progress.lostDeployTasks?.map((t) => t.instanceNo)).toEqual([2]);
    expect(result.progress.deadline).toBe(deadline);
    expect(result.decisions).toMatchObject([{ kind: 'TASK_LOST', host: 'd1', action: 'replace it on another host' }]);
    // Seen once: the next pass does not see it again.
    const again = assessFailures(
      phaseInput({
        progress: { phase, lostDeployTasks: result.progress.lostDeployTasks ?? [] },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), { ...testTask(v2, 2, 'lost'), lostWithHost: 'd1' }],
      }),
    );
    expect(again.decisions).toEqual([]);
    expect(again.replace).toBeUndefined();
  });

  it('names the allowance in the end message once more tasks failed than allowed', () => {
    const input = phaseInput({
      canary: { allowedTasksFailuresPerGroup: 1 },
      progress: { phase: 'HEALTH', stepFailures: 1 },
      tasks: (_v1, v2) => [testTask(v2, 1, 'exited')],
    });
    expect(assessFailures(input).end?.message).toBe('At least 2 task(s) for this instance group failed');
  });
});

describe('assessFailures: a port taken by another process (EADDRINUSE)', () => {
  const portTaken = (n: number, startedAt = T0) => ({ ...testTask(phaseInput().deploy, n, 'exited', startedAt), portInUse: true });
  const run = (
    tasks: ReturnType<typeof portTaken>[],
    phase: DeployPhase = 'HEALTH',
    retried: { taskId: string; instanceNo: number }[] = [],
  ) =>
    assessFailures(
      phaseInput({
        progress: { phase, ...(retried.length > 0 ? { portInUseRetries: retried } : {}) },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), ...tasks],
      }),
    );

  it('is not counted: the task is noted as retried, the deploy goes on (0 failures allowed)', () => {
    const r = run([portTaken(2)]);
    expect(r.end).toBeUndefined();
    expect(r.progress.stepFailures).toBe(0);
    expect(r.progress.failedDeployTasks).toEqual([]);
    expect(r.progress.portInUseRetries).toEqual([{ taskId: portTaken(2).taskId.id, instanceNo: 2 }]);
    expect(r.decisions).toMatchObject([{ kind: 'TASK_RETRIED', why: 'PORT_IN_USE', taskId: portTaken(2).taskId.id }]);
  });

  it('is seen once: a retried task is not looked at again', () => {
    const t = portTaken(2);
    const r = run([t], 'HEALTH', [{ taskId: t.taskId.id, instanceNo: 2 }]);
    expect(r.decisions).toEqual([]);
    expect(r.progress.portInUseRetries).toHaveLength(1);
  });

  it('after the step was ready, sends it back to replace the task, uncounted', () => {
    const r = run([portTaken(2)], 'ACCEPTANCE');
    expect(r.replace).toMatchObject({ reason: 'start them again on other ports' });
    expect(r.progress.stepFailures).toBe(0);
  });

  it('is forgiven 3 times per instance; the 4th is a failure like any other', () => {
    const earlier = [1, 2, 3].map((i) => ({ taskId: `earlier-${i}`, instanceNo: 2 }));
    const r = run([portTaken(2, T0 + 5)], 'HEALTH', earlier);
    expect(r.end).toMatchObject({ state: 'FAILED' });
    expect(r.end?.failures?.[0]).toMatchObject({
      reason: 'TASK_FAILED_ON_STARTUP',
      message: expect.stringContaining('a port it needed was taken, 4 times'),
    });
    // Another instance still has its retries.
    expect(run([portTaken(3)], 'HEALTH', earlier).end).toBeUndefined();
  });
});
