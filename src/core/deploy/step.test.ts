// Unit tests of the pure state machine: one observation in, one decision out, no I/O.
import { describe, expect, it } from 'vitest';
import type { Deploy, FledgeRequest, TaskRecord } from '../model.ts';
import { createTask } from '../tasks.ts';
import { testDeploy } from '../../../test/helpers/model-fixtures.ts';
import { stepRequest } from '../request/step.ts';
import { createPendingDeploy } from './step.ts';
import type { DeployPhase, PendingDeploy, RequestObservation } from './types.ts';

const T0 = 1_700_000_000_000;
const request: FledgeRequest = { id: 'web', requestType: 'SERVICE', instances: 2, loadBalanced: false };

function deploy(id: string, canary: Partial<Deploy['canaryDeploySettings']> = {}): Deploy {
  const { healthcheck: _none, ...rest } = testDeploy({ requestId: 'web', id, command: 'serve', timestamp: T0 }, canary);
  return rest;
}

type TaskShape = 'healthy' | 'starting' | 'unhealthy' | 'exited';

function task(d: Deploy, instanceNo: number, shape: TaskShape): TaskRecord {
  const t = createTask(d, instanceNo, T0, new Set());
  const running: TaskRecord = { ...t, state: 'TASK_RUNNING', handle: { taskId: t.taskId.id }, ports: [31000 + instanceNo], runningAt: T0 };
  switch (shape) {
    case 'healthy':
      return { ...running, health: { state: 'HEALTHY', healthyAt: T0, results: [] } };
    case 'starting':
      return running;
    case 'unhealthy':
      return { ...running, health: { state: 'UNHEALTHY', message: 'Health check returned failure status 503', results: [] } };
    case 'exited':
      return { ...running, state: 'TASK_FAILED', exitCode: 1, doneAt: T0 + 10 };
  }
}

function observe(pending: PendingDeploy, active: Deploy, next: Deploy, tasks: TaskRecord[]): RequestObservation {
  return {
    request,
    requestState: 'ACTIVE',
    activeDeploy: active,
    pendingDeploy: next,
    pending,
    tasks,
    endedDeploys: {},
    lbOps: {},
    checkResults: [],
    settings: {
      killGraceMillis: 1000,
      backoffBaseMillis: 1000,
      backoffMaxMillis: 60_000,
      capacityRetryMillis: 1000,
      decisionLogLimit: 100,
      launchBatchSize: 100,
      serverChecks: [],
      serverCheckIntervalSeconds: 5,
    },
  };
}

function inPhase(p: PendingDeploy, phase: DeployPhase): PendingDeploy {
  return { ...p, progress: { ...p.progress, phase, stepLaunchComplete: true, deadline: T0 + 125_000 } };
}

describe('stepRequest deciding a pending deploy', () => {
  const v1 = deploy('v1');
  const v2 = deploy('v2');
  const old = [task(v1, 1, 'healthy'), task(v1, 2, 'healthy')];

  it.each([
    {
      name: 'LAUNCH starts the missing new tasks at the lowest instance numbers and waits for health',
      pending: createPendingDeploy(v2, request, T0, {}),
      fresh: [] as TaskRecord[],
      now: T0,
      phase: 'HEALTH',
      starts: 2,
      result: undefined,
    },
    {
      name: 'HEALTH waits while a new task is starting',
      pending: inPhase(createPendingDeploy(v2, request, T0, {}), 'HEALTH'),
      fresh: [task(v2, 1, 'healthy'), task(v2, 2, 'starting')],
      now: T0 + 1000,
      phase: 'HEALTH',
      starts: 0,
      result: undefined,
    },
    {
      name: 'HEALTH with every new task healthy passes acceptance NONE and succeeds',
      pending: inPhase(createPendingDeploy(v2, request, T0, {}), 'HEALTH'),
      fresh: [task(v2, 1, 'healthy'), task(v2, 2, 'healthy')],
      now: T0 + 1000,
      phase: undefined,
      starts: 0,
      result: 'SUCCEEDED',
    },
    {
      name: 'a new task exiting with no failures allowed fails the deploy',
      pending: inPhase(createPendingDeploy(v2, request, T0, {}), 'HEALTH'),
      fresh: [task(v2, 1, 'healthy'), task(v2, 2, 'exited')],
      now: T0 + 1000,
      phase: undefined,
      starts: 0,
      result: 'FAILED',
    },
    {
      name: 'an unhealthy new task fails the deploy',
      pending: inPhase(createPendingDeploy(v2, request, T0, {}), 'HEALTH'),
      fresh: [task(v2, 1, 'unhealthy'), task(v2, 2, 'healthy')],
      now: T0 + 1000,
      phase: undefined,
      starts: 0,
      result: 'FAILED',
    },
    {
      name: 'the step deadline passing ends the deploy OVERDUE',
      pending: inPhase(createPendingDeploy(v2, request, T0, {}), 'HEALTH'),
      fresh: [task(v2, 1, 'healthy'), task(v2, 2, 'starting')],
      now: T0 + 125_000,
      phase: undefined,
      starts: 0,
      result: 'OVERDUE',
    },
  ])('$name', ({ pending, fresh, now, phase, starts, result }) => {
    const obs = observe(pending, v1, v2, [...old, ...fresh]);
    const outcome = stepRequest(obs, { request, state: 'ACTIVE', activeDeployId: 'v1', pendingDeployId: 'v2', timestamp: T0 }, now);
    expect(outcome.pending.kind === 'ENDED' ? outcome.pending.result.deployState : undefined).toBe(result);
    if (phase) expect(outcome.pending.kind === 'UPDATED' ? outcome.pending.pending.progress.phase : pending.progress.phase).toBe(phase);
    const byId = new Map(outcome.tasks.map((t) => [t.taskId.id, t]));
    const started = outcome.actions.flatMap((a) => (a.kind === 'startTask' ? [byId.get(a.taskId)!] : []));
    expect(started.filter((t) => t.taskId.deployId === 'v2')).toHaveLength(starts);
    if (starts) expect(started.map((t) => t.taskId.instanceNo)).toEqual([1, 2]);
    // Old tasks stop only once the new deploy serves in full; on every other outcome they stay.
    const oldStops = outcome.actions.filter((a) => a.kind === 'stopTask' && a.taskId.includes('-v1-'));
    expect(oldStops).toHaveLength(result === 'SUCCEEDED' ? 2 : 0);
  });

  it('asks to be woken at the step deadline while waiting for health', () => {
    const pending = inPhase(createPendingDeploy(v2, request, T0, {}), 'HEALTH');
    const outcome = stepRequest(
      observe(pending, v1, v2, [...old, task(v2, 1, 'starting'), task(v2, 2, 'starting')]),
      { request, state: 'ACTIVE', activeDeployId: 'v1', timestamp: T0 },
      T0 + 1000,
    );
    expect(outcome.wakeAt).toBe(T0 + 125_000);
  });

  it('is deterministic: the same observation gives the same decision', () => {
    const pending = createPendingDeploy(deploy('v3', { enableCanaryDeploy: true }), request, T0, {});
    const decide = () => {
      const outcome = stepRequest(
        observe(pending, v1, deploy('v3', { enableCanaryDeploy: true }), old),
        { request, state: 'ACTIVE', activeDeployId: 'v1', timestamp: T0 },
        T0,
      );
      return JSON.stringify(outcome);
    };
    expect(decide()).toBe(decide());
  });
});
