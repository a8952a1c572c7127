import { describe, expect, it } from 'vitest';
import type { CanaryDeploySettings, Deploy, FledgeRequest } from '../model.ts';
import { testDeploy, testHealthcheck } from '../../../test/helpers/model-fixtures.ts';
import { healthWindowMillis } from '../health.ts';
import { previewDeploy, STEP_OVERHEAD_MILLIS, type PreviewStep } from './preview.ts';

const healthcheck = testHealthcheck();

function deployOf(canary: Partial<CanaryDeploySettings> = {}, rest: Partial<Deploy> = {}): Deploy {
  return testDeploy(rest, canary);
}

const requestOf = (instances: number, loadBalanced = false): FledgeRequest => ({
  id: 'svc',
  requestType: 'SERVICE',
  instances,
  loadBalanced,
});
const active = deployOf({}, { id: 'v1' });
const noServerChecks = { serverChecks: [] };
const canary = (group: number, cycles: number, more: Partial<CanaryDeploySettings> = {}) => ({
  enableCanaryDeploy: true,
  instanceGroupSize: group,
  canaryCycleCount: cycles,
  ...more,
});
const pick = (steps: PreviewStep[], key: 'targetActiveInstances' | 'newInstances' | 'oldInstances') => steps.map((s) => s[key]);

describe('previewDeploy steps', () => {
  it.each([
    {
      name: 'canary off: one step of every instance, no old task left after it',
      deploy: deployOf(),
      request: requestOf(4),
      targets: [4],
      added: [4],
      old: [0],
    },
    {
      name: 'group 1, 3 cycles over 4 instances: 1, 2, 3 then all, retiring one old task per step',
      deploy: deployOf(canary(1, 3)),
      request: requestOf(4),
      targets: [1, 2, 3, 4],
      added: [1, 1, 1, 1],
      old: [3, 2, 1, 0],
    },
    {
      name: 'group 2, 3 cycles over 10 instances: 2, 4, 6 then all',
      deploy: deployOf(canary(2, 3)),
      request: requestOf(10),
      targets: [2, 4, 6, 10],
      added: [2, 2, 2, 4],
      old: [8, 6, 4, 0],
    },
    {
      name: 'a group as large as the request is one step',
      deploy: deployOf(canary(5, 3)),
      request: requestOf(3),
      targets: [3],
      added: [3],
      old: [0],
    },
  ])('$name', ({ deploy, request, targets, added, old }) => {
    const { steps } = previewDeploy(deploy, request, active, noServerChecks);
    expect(pick(steps, 'targetActiveInstances')).toEqual(targets);
    expect(pick(steps, 'newInstances')).toEqual(added);
    expect(pick(steps, 'oldInstances')).toEqual(old);
    expect(steps.map((s) => s.step)).toEqual(targets.map((_, i) => i + 1));
  });

  it('counts no old tasks when the request has no active deploy', () => {
    const { steps } = previewDeploy(deployOf(canary(1, 3)), requestOf(3), undefined, noServerChecks);
    expect(pick(steps, 'oldInstances')).toEqual([0, 0, 0]);
  });

  it('retires only the old tasks there are when updatedRequest grows the request', () => {
    const { steps } = previewDeploy(deployOf(canary(1, 3)), requestOf(2), active, {
      serverChecks: [],
      updatedRequest: requestOf(4),
    });
    expect(pick(steps, 'targetActiveInstances')).toEqual([1, 2, 3, 4]);
    expect(pick(steps, 'oldInstances')).toEqual([1, 0, 0, 0]);
  });
});

describe('previewDeploy load balancer counts', () => {
  it.each([
    {
      name: 'canary keeps the old tasks in the LB next to each step until they are retired',
      deploy: deployOf(canary(1, 3)),
      request: requestOf(4, true),
      lb: [
        { new: 1, old: 4 },
        { new: 2, old: 3 },
        { new: 3, old: 2 },
        { new: 4, old: 1 },
      ],
    },
    {
      name: 'canary off swaps atomically: only new tasks in the LB',
      deploy: deployOf(),
      request: requestOf(4, true),
      lb: [{ new: 4, old: 0 }],
    },
    {
      name: 'a request that is not load balanced has nothing in the LB',
      deploy: deployOf(canary(1, 2)),
      request: requestOf(2),
      lb: [
        { new: 0, old: 0 },
        { new: 0, old: 0 },
      ],
    },
  ])('$name', ({ deploy, request, lb }) => {
    const { steps } = previewDeploy(deploy, request, active, noServerChecks);
    expect(steps.map((s) => s.loadBalanced)).toEqual(lb);
  });
});

describe('previewDeploy acceptance', () => {
  const checks = [
    { name: 'smoke', type: 'http' as const, intervalSeconds: 5, timeoutSeconds: 30, failOnError: true, options: {} },
    { name: 'owner', type: 'manual' as const, intervalSeconds: 5, timeoutSeconds: 30, failOnError: true, options: {} },
  ];
  it.each([
    { name: 'NONE waits for nothing', mode: 'NONE' as const, wait: 0, expected: { mode: 'NONE', waitMillis: 0, checks: [] } },
    {
      name: 'TIMED waits waitMillisBetweenGroups',
      mode: 'TIMED' as const,
      wait: 1500,
      expected: { mode: 'TIMED', waitMillis: 1500, checks: [] },
    },
    {
      name: 'CHECKS names the server checks, then the declared ones',
      mode: 'CHECKS' as const,
      wait: 0,
      expected: { mode: 'CHECKS', waitMillis: 0, checks: ['error-budget', 'smoke', 'owner'] },
    },
    { name: 'MANUAL waits for an advance', mode: 'MANUAL' as const, wait: 0, expected: { mode: 'MANUAL', waitMillis: 0, checks: [] } },
  ])('$name', ({ mode, wait, expected }) => {
    const deploy = deployOf(canary(1, 2, { acceptanceMode: mode, waitMillisBetweenGroups: wait }), { acceptanceChecks: checks });
    const { steps } = previewDeploy(deploy, requestOf(2), active, { serverChecks: ['error-budget'] });
    expect(steps).toHaveLength(2);
    for (const step of steps) expect(step.acceptance).toEqual(expected);
  });
});

describe('previewDeploy eta', () => {
  const window = healthWindowMillis(healthcheck);
  const health = 120_000 + window;
  const lbTimeout = 300_000;
  const acceptanceTimeout = 3_600_000;
  it.each([
    {
      name: 'NONE, one step: min is the overhead, max the OVERDUE deadline',
      deploy: deployOf(),
      request: requestOf(2),
      min: STEP_OVERHEAD_MILLIS,
      max: health,
    },
    {
      name: 'load balanced adds the LB timeout to each step',
      deploy: deployOf(canary(1, 2)),
      request: requestOf(2, true),
      min: 2 * STEP_OVERHEAD_MILLIS,
      max: 2 * (health + lbTimeout),
    },
    {
      name: 'TIMED adds the wait after every step to both',
      deploy: deployOf(canary(1, 3, { acceptanceMode: 'TIMED', waitMillisBetweenGroups: 2000 })),
      request: requestOf(3),
      min: 3 * (STEP_OVERHEAD_MILLIS + 2000),
      max: 3 * (health + 2000),
    },
    {
      name: 'MANUAL: the approval is a person, not machine time, so the bound leaves it out',
      deploy: deployOf(canary(1, 2, { acceptanceMode: 'MANUAL' })),
      request: requestOf(2),
      min: 2 * STEP_OVERHEAD_MILLIS,
      max: 2 * health,
    },
    {
      name: 'CHECKS with no check configured passes at once',
      deploy: deployOf({ acceptanceMode: 'CHECKS' }),
      request: requestOf(2),
      min: STEP_OVERHEAD_MILLIS,
      max: health,
    },
    {
      name: 'a startup delay is a floor every step pays',
      deploy: deployOf(canary(1, 2), { healthcheck: { ...healthcheck, startupDelaySeconds: 3 } }),
      request: requestOf(2),
      min: 2 * (STEP_OVERHEAD_MILLIS + 3000),
      max: 2 * health,
    },
    {
      name: 'without a healthcheck a task is healthy after considerHealthyAfterRunningForSeconds',
      deploy: deployOf({}, { healthcheck: undefined, considerHealthyAfterRunningForSeconds: 5, deployHealthTimeoutSeconds: 60 }),
      request: requestOf(1),
      min: STEP_OVERHEAD_MILLIS + 5000,
      max: 65_000, // deployHealthTimeoutSeconds + the window, which is considerHealthyAfter without a healthcheck
    },
  ])('$name', ({ deploy, request, min, max }) => {
    const { etaSeconds } = previewDeploy(deploy, request, active, noServerChecks);
    expect(etaSeconds).toEqual({ min: min / 1000, max: max / 1000 });
  });

  it('CHECKS with a server check waits up to the acceptance timeout', () => {
    const { etaSeconds } = previewDeploy(deployOf({ acceptanceMode: 'CHECKS' }), requestOf(1), active, { serverChecks: ['slo'] });
    expect(etaSeconds.max).toBe((health + acceptanceTimeout) / 1000);
  });
});

describe('previewDeploy in words', () => {
  const hc = { ...healthcheck, startupIntervalSeconds: 0.5, startupDelaySeconds: 0 };
  it('says what each canary step does with its traffic share, and what it waits for', () => {
    const plan = previewDeploy(
      deployOf(canary(1, 3, { acceptanceMode: 'MANUAL' }), {
        id: 'v2',
        requestId: 'hello',
        healthcheck: hc,
        acceptanceTimeoutSeconds: 1800,
      }),
      requestOf(4, true),
      active,
      noServerChecks,
    );
    expect(plan.steps.map((s) => s.trafficShare)).toEqual([0.2, 0.4, 0.6, 0.8]);
    expect(plan.steps.map((s) => s.waitsFor)).toEqual(['approval', 'approval', 'approval', 'approval']);
    expect(plan.steps[0]!.description).toBe(
      'Start 1 task of v2 and health-check it; add it to the load balancer beside 4 of v1: v2 has 1 of 5 tasks, about 20 % of requests; wait for your approval (fledge deploy advance hello v2), at most 30 min; then stop 1 task of v1.',
    );
    expect(plan.steps[3]!.description).toMatch(/finally stop the remaining 1 task of v1\.$/);
    expect(plan.estimate).toEqual({
      workSecondsPerStep: (STEP_OVERHEAD_MILLIS + 500) / 1000,
      workSeconds: (4 * (STEP_OVERHEAD_MILLIS + 500)) / 1000,
      timerSeconds: 0,
      approvals: 4,
      approvalTimeoutSeconds: 1800,
      checkSteps: 0,
      summary: '4 steps, each waits for your approval; about 0.6 s of work per step',
    });
  });

  it('says an atomic deploy swaps the load balancer in one operation', () => {
    const plan = previewDeploy(deployOf({}, { id: 'v2', healthcheck: hc }), requestOf(3, true), active, noServerChecks);
    expect(plan.steps[0]!.description).toBe(
      'Start 3 tasks of v2 and health-check them; then move the load balancer from v1 to v2 in one operation (100 % of requests); finally stop the remaining 3 tasks of v1.',
    );
    expect(plan.steps[0]!.trafficShare).toBe(1);
    expect(plan.estimate.summary).toBe('1 step, no waits; about 0.6 s of work in all');
  });

  it('counts TIMED waits apart from the work', () => {
    const plan = previewDeploy(
      deployOf(canary(1, 1, { acceptanceMode: 'TIMED', waitMillisBetweenGroups: 30_000 }), { healthcheck: hc }),
      requestOf(2),
      active,
      noServerChecks,
    );
    expect(plan.estimate).toMatchObject({ timerSeconds: 60, approvals: 0 });
    expect(plan.estimate.summary).toBe('2 steps, each waits 30 s before going on; about 0.6 s of work per step');
    expect(plan.steps[0]!.trafficShare).toBeNull();
  });
});
