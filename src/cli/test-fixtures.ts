// API answers shaped like views.ts, trimmed to what the CLI reads. Tests only.
import type { DeployHistoryView, DeployProgress, RequestParent, TaskView } from '../api/client.ts';

export const T0 = Date.UTC(2024, 0, 2, 3, 4, 5);

export function parent(id = 'web', over: Partial<RequestParent> = {}): RequestParent {
  return {
    request: { id, requestType: 'SERVICE', instances: 3, loadBalanced: true },
    state: 'ACTIVE',
    requestDeployState: { requestId: id, activeDeploy: { requestId: id, deployId: 'd1', timestamp: T0 } },
    taskIds: { healthy: [], notYetHealthy: [], pending: [], cleaning: [], loadBalanced: [], killed: [] },
    instanceCounts: { desired: 3, healthy: 3, total: 3 },
    timestamp: T0,
    ...over,
  } as RequestParent;
}

export function progress(over: Partial<DeployProgress> = {}): DeployProgress {
  return {
    phase: 'LAUNCH',
    step: 1,
    totalSteps: 2,
    targetActiveInstances: 1,
    currentActiveInstances: 0,
    stepLaunchComplete: false,
    failedDeployTasks: [],
    timestamp: T0,
    canary: true,
    stepStartedAt: T0,
    stepFailures: 0,
    retiredOldInstances: [],
    lbUpdates: [],
    stepAcceptanceResults: {},
    acceptanceResultMessageHistory: [],
    decisionLog: [],
    ...over,
  };
}

export function historyEntry(requestId: string, deployId: string, over: Partial<DeployHistoryView> = {}): DeployHistoryView {
  return {
    deployMarker: { requestId, deployId, timestamp: T0 },
    deploy: { requestId, id: deployId } as DeployHistoryView['deploy'],
    ...over,
  };
}

export function task(requestId: string, deployId: string, instanceNo: number, over: Partial<TaskView> = {}): TaskView {
  const id = `${requestId}-${deployId}-${instanceNo}-${T0}`;
  return {
    taskId: {
      requestId,
      deployId,
      instanceNo,
      startedAt: T0,
      host: 'local',
      sanitizedHost: 'local',
      rackId: 'r',
      sanitizedRackId: 'r',
      id,
    },
    state: 'TASK_RUNNING',
    ports: [31000 + instanceNo],
    health: { state: 'HEALTHY', results: [] },
    lb: { add: { operationId: 'op', state: 'SUCCESS', timestamp: T0 } },
    ...over,
  };
}
