// Values for the pure engine's table tests: tasks in a given shape, observations, the input of
// one deploy phase. Everything is a plain value; nothing runs.
import { createPendingDeploy } from '../../src/core/deploy/step.ts';
import type { PhaseInput } from '../../src/core/deploy/phase.ts';
import type { DeployProgress, EngineSettings, PendingDeploy, RequestObservation } from '../../src/core/deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from '../../src/core/model.ts';
import type { HostSnapshot } from '../../src/core/placement.ts';
import { createTask } from '../../src/core/tasks.ts';
import { TaskView } from '../../src/core/task-view.ts';
import { testDeploy } from './model-fixtures.ts';

export const T0 = 1_700_000_000_000;

export const TEST_ENGINE_SETTINGS: EngineSettings = {
  killGraceMillis: 1000,
  backoffBaseMillis: 1000,
  backoffMaxMillis: 60_000,
  capacityRetryMillis: 1000,
  decisionLogLimit: 500,
  launchBatchSize: 100,
  serverChecks: [],
  serverCheckIntervalSeconds: 5,
  defaultAgentPlacement: 'GREEDY',
};

/** A host snapshot: ACTIVE, answering, plenty of room, nothing held (the process host `local` by default). */
export function testHost(id = 'local', more: Partial<HostSnapshot> = {}): HostSnapshot {
  return {
    id,
    runs: id === 'local' ? 'process' : 'docker',
    adminState: 'ACTIVE',
    reachable: true,
    rack: 'local',
    attributes: {},
    reservedAttributes: {},
    capacity: { cpus: 1000, memoryMb: 1_000_000 },
    used: { cpus: 0, memoryMb: 0, portsInRange: 0 },
    portRange: { from: 31000, to: 31999 },
    heldPorts: new Set(),
    ...more,
  };
}

export function testRequest(instances: number, more: Partial<FledgeRequest> = {}): FledgeRequest {
  return { id: 'web', requestType: 'SERVICE', instances, loadBalanced: false, ...more };
}

/** A deploy of request `web` without a healthcheck (healthy once running, in tests by shape). */
export function engineDeploy(id: string, canary: Partial<Deploy['canaryDeploySettings']> = {}, more: Partial<Deploy> = {}): Deploy {
  const { healthcheck: _none, ...rest } = testDeploy({ requestId: 'web', id, command: 'serve', timestamp: T0, ...more }, canary);
  return rest;
}

export type TaskShape =
  | 'launched'
  | 'waiting'
  | 'unplaced'
  | 'starting'
  | 'healthy'
  | 'unhealthy'
  | 'exited'
  | 'finished'
  | 'lost'
  | 'error'
  | 'in-lb'
  | 'adding'
  | 'removing'
  | 'cleaning'
  | 'cleaning-in-lb';

/** A task of `deploy` for instance `n`, started at `startedAt`, in one of a few shapes. */
export function testTask(deploy: Deploy, n: number, shape: TaskShape, startedAt = T0, host = 'local'): TaskRecord {
  const t = createTask(deploy, n, startedAt, new Set(), { host, rack: 'local' });
  const running: TaskRecord = { ...t, state: 'TASK_RUNNING', handle: { pid: n }, ports: [31000 + n], runningAt: startedAt };
  const healthy: TaskRecord = { ...running, health: { state: 'HEALTHY', healthyAt: startedAt, results: [] } };
  const lbAdd = { operationId: 'op-add', state: 'SUCCESS' as const, timestamp: startedAt };
  const cleanup = { reason: 'DEPLOY_REPLACED' as const, timestamp: startedAt };
  switch (shape) {
    case 'launched':
      return t;
    case 'waiting':
      return { ...t, waitingReason: 'not enough cpu' };
    case 'unplaced':
      return createTask(deploy, n, startedAt, new Set(), { waiting: 'no host fits' });
    case 'starting':
      return running;
    case 'healthy':
      return healthy;
    case 'unhealthy':
      return { ...running, health: { state: 'UNHEALTHY', message: 'Health check returned failure status 503', results: [] } };
    case 'exited':
      return { ...running, state: 'TASK_FAILED', exitCode: 1, doneAt: startedAt + 10 };
    case 'finished':
      return { ...running, state: 'TASK_FINISHED', exitCode: 0, doneAt: startedAt + 10 };
    case 'lost':
      return { ...t, state: 'TASK_LOST', doneAt: startedAt + 10 };
    case 'error':
      return {
        ...t,
        state: 'TASK_ERROR',
        doneAt: startedAt + 10,
        updates: [...t.updates, { state: 'TASK_ERROR', timestamp: startedAt, message: 'no such file' }],
      };
    case 'in-lb':
      return { ...healthy, lb: { add: lbAdd } };
    case 'adding':
      return { ...healthy, lb: { add: { ...lbAdd, state: 'WAITING' } } };
    case 'removing':
      return {
        ...healthy,
        state: 'TASK_CLEANING',
        cleanup,
        lb: { add: lbAdd, remove: { operationId: 'op-remove', state: 'WAITING', timestamp: startedAt } },
      };
    case 'cleaning':
      return { ...healthy, state: 'TASK_CLEANING', cleanup };
    case 'cleaning-in-lb':
      return { ...healthy, state: 'TASK_CLEANING', cleanup, lb: { add: lbAdd } };
  }
}

export function testObservation(over: Partial<RequestObservation> & { request: FledgeRequest }): RequestObservation {
  return {
    requestState: 'ACTIVE',
    tasks: [],
    endedDeploys: {},
    lbOps: {},
    checkResults: [],
    hosts: [testHost()],
    settings: TEST_ENGINE_SETTINGS,
    ...over,
  };
}

export function testRecord(request: FledgeRequest, more: Partial<RequestRecord> = {}): RequestRecord {
  return { request, state: 'ACTIVE', activeDeployId: 'v1', timestamp: T0, ...more };
}

/** A pending deploy of `deploy` over `request`, with its progress changed by `progress`. */
export function testPending(
  deploy: Deploy,
  request: FledgeRequest,
  progress: Partial<DeployProgress> = {},
  more: Partial<PendingDeploy> = {},
) {
  const p = createPendingDeploy(deploy, request, T0, {});
  return { ...p, ...more, progress: { ...p.progress, ...progress } };
}

/**
 * The input of one phase: v1 active over `request`, v2 pending with `progress`, the given
 * tasks. `obs` overrides parts of the observation.
 */
export function phaseInput(
  options: {
    request?: FledgeRequest;
    canary?: Partial<Deploy['canaryDeploySettings']>;
    deploy?: Partial<Deploy>;
    progress?: Partial<DeployProgress>;
    tasks?: (v1: Deploy, v2: Deploy) => TaskRecord[];
    obs?: Partial<RequestObservation>;
    now?: number;
    launchBudget?: number;
  } = {},
): PhaseInput {
  const request = options.request ?? testRequest(2);
  const v1 = engineDeploy('v1');
  const v2 = engineDeploy('v2', options.canary, options.deploy);
  const pending = testPending(v2, request, options.progress);
  const tasks = options.tasks?.(v1, v2) ?? [];
  const obs = testObservation({ request, activeDeploy: v1, pendingDeploy: v2, pending, tasks, ...options.obs });
  return {
    now: options.now ?? T0,
    obs,
    deploy: v2,
    pending,
    progress: pending.progress,
    tasks: TaskView.of(tasks),
    instances: (obs.pending?.updatedRequest ?? request).instances,
    launchBudget: options.launchBudget ?? 100,
  };
}
