import { describe, expect, it } from 'vitest';
import { phaseInput, T0, testRequest, testTask } from '../../../../test/helpers/engine-values.ts';
import { stepHealth } from './health.ts';

const DEADLINE = T0 + 60_000;
const outcome = (r: ReturnType<typeof stepHealth>) =>
  'to' in r ? `to ${r.to}` : 'wait' in r ? `wait until ${r.wait.until}` : `end ${r.end.state}: ${r.end.message}`;

describe('stepHealth', () => {
  it.each([
    {
      name: 'waits for a starting task until the deadline',
      input: phaseInput({
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'starting')],
      }),
      outcome: `wait until ${DEADLINE}`,
      failures: [],
    },
    {
      name: 'every new task healthy: a plain request goes to ACCEPTANCE, ready now',
      input: phaseInput({
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'healthy')],
      }),
      outcome: 'to ACCEPTANCE',
      failures: [],
    },
    {
      name: 'every new task healthy: a load-balanced request goes to LB_UPDATE',
      input: phaseInput({
        request: testRequest(2, { loadBalanced: true }),
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'healthy')],
      }),
      outcome: 'to LB_UPDATE',
      failures: [],
    },
    {
      name: 'the deadline passed with a task not healthy: OVERDUE naming it',
      input: phaseInput({
        now: DEADLINE,
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'starting')],
      }),
      outcome: 'end OVERDUE: Deploy step was not healthy within 60 seconds',
      failures: ['TASK_FAILED_HEALTH_CHECKS'],
    },
    {
      name: 'the deadline passed with a task never placed: OVERDUE, could not be scheduled',
      input: phaseInput({
        now: DEADLINE,
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'waiting')],
      }),
      outcome: 'end OVERDUE: Only 1 of 2 tasks could be launched',
      failures: ['TASK_COULD_NOT_BE_SCHEDULED'],
    },
    {
      name: 'the deadline passed with a task launched but not running: never entered running',
      input: phaseInput({
        now: DEADLINE,
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), { ...testTask(v2, 2, 'launched'), handle: { pid: 2 } }],
      }),
      outcome: 'end OVERDUE: Deploy step was not healthy within 60 seconds',
      failures: ['TASK_NEVER_ENTERED_RUNNING'],
    },
    {
      // e.g. a replacement held by the crash-loop backoff, or a slow machine's spawn: placed, not waiting for a host
      name: 'the deadline passed with a placed task whose start has not happened: never entered running, not unschedulable',
      input: phaseInput({
        now: DEADLINE,
        progress: { phase: 'HEALTH', deadline: DEADLINE },
        tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'launched')],
      }),
      outcome: 'end OVERDUE: Deploy step was not healthy within 60 seconds',
      failures: ['TASK_NEVER_ENTERED_RUNNING'],
    },
  ])('$name', ({ input, outcome: expected, failures }) => {
    const result = stepHealth(input);
    expect(outcome(result)).toBe(expected);
    expect('end' in result ? result.end.failures?.map((f) => f.reason) : []).toEqual(failures);
    if ('to' in result && result.to === 'ACCEPTANCE') expect(result.progress.stepReadyAt).toBe(input.now);
  });

  it.each([
    { name: 'replaces a missing task (one that failed and was counted) at once', budget: 100, launched: [2], wakeAt: undefined },
    { name: 'with no launch budget left it launches nothing and looks again at once', budget: 0, launched: [], wakeAt: T0 },
  ])('$name', ({ budget, launched, wakeAt }) => {
    const input = phaseInput({
      progress: { phase: 'HEALTH', deadline: DEADLINE },
      launchBudget: budget,
      tasks: (_v1, v2) => [testTask(v2, 1, 'healthy'), testTask(v2, 2, 'exited')],
    });
    const result = stepHealth(input);
    expect(result.tasks?.map((t) => t.taskId.instanceNo)).toEqual(launched);
    expect(result.wakeAt).toBe(wakeAt);
    expect(outcome(result)).toBe(`wait until ${DEADLINE}`);
  });
});
