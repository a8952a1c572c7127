// Singularity-shaped response bodies built from stored records.
import type { PendingDeploy } from '../core/deploy/types.ts';
import type { RequestRecord, TaskId, TaskRecord } from '../core/model.ts';
import { isLive } from '../core/model.ts';
import { hostOf } from '../core/placement.ts';
import { healthy, inLb } from '../core/tasks.ts';
import type { DeployHistoryEntry, Store } from '../store/types.ts';
import { jobParentFields } from './job-views.ts';

/** Singularity's deploy marker; `user` is the name of the token that started the deploy. */
export function deployMarker(requestId: string, deployId: string, timestamp: number, message?: string, user?: string) {
  return { requestId, deployId, timestamp, ...(message ? { message } : {}), ...(user ? { user } : {}) };
}

/** A call on a deploy after it started, from the audit log: who advanced, rejected, updated or cancelled it. */
export interface DeployAction {
  action: 'advance' | 'reject' | 'cancel' | 'update';
  user?: string;
  at: number;
}

export interface TaskIdGroups {
  healthy: TaskId[];
  notYetHealthy: TaskId[];
  pending: TaskId[];
  cleaning: TaskId[];
  loadBalanced: TaskId[];
  killed: TaskId[];
}

export function groupTaskIds(tasks: TaskRecord[]): TaskIdGroups {
  const groups: TaskIdGroups = { healthy: [], notYetHealthy: [], pending: [], cleaning: [], loadBalanced: [], killed: [] };
  for (const t of tasks) {
    if (!isLive(t.state)) continue;
    if (t.cleanup) {
      groups.cleaning.push(t.taskId);
      if (t.state === 'TASK_KILLING') groups.killed.push(t.taskId);
    } else if (t.handle === undefined) groups.pending.push(t.taskId);
    else if (healthy(t)) groups.healthy.push(t.taskId);
    else groups.notYetHealthy.push(t.taskId);
    if (inLb(t)) groups.loadBalanced.push(t.taskId);
  }
  return groups;
}

export function taskView(t: TaskRecord) {
  const { handle: _handle, ...rest } = t;
  return {
    ...rest,
    taskId: t.taskId,
    // the service's own process; pgid is the process group Fledge signals (the wrapper's)
    pid: typeof t.handle?.servicePid === 'number' ? t.handle.servicePid : typeof t.handle?.pid === 'number' ? t.handle.pid : undefined,
    pgid: typeof t.handle?.pid === 'number' ? t.handle.pid : undefined,
    sandbox: typeof t.handle?.sandbox === 'string' ? t.handle.sandbox : undefined,
    // Where it runs (or was placed to run): its host, and for a container the container's name.
    host: hostOf(t),
    address: typeof t.handle?.address === 'string' ? t.handle.address : undefined,
    container: typeof t.handle?.container === 'string' ? t.handle.container : undefined,
    taskUpdates: t.updates.map((u) => ({ taskState: u.state, timestamp: u.timestamp, statusMessage: u.message })),
    healthcheckResults: t.health.results,
    loadBalancerState: t.lb,
  };
}

export function pendingDeployView(pending: PendingDeploy, user?: string) {
  return {
    deployMarker: deployMarker(pending.requestId, pending.deployId, pending.startedAt, pending.message, user),
    currentDeployState: 'WAITING',
    ...(pending.updatedRequest ? { updatedRequest: pending.updatedRequest } : {}),
    deployProgress: pending.progress,
    intents: pending.intents,
  };
}

export async function requestParent(store: Store, record: RequestRecord) {
  const id = record.request.id;
  const [active, pending, tasks] = await Promise.all([
    record.activeDeployId ? store.getDeployHistory(id, record.activeDeployId) : Promise.resolve(undefined),
    store.getPending(id),
    store.listTasks({ requestId: id, live: true }),
  ]);
  const pendingEntry = pending ? await store.getDeployHistory(id, pending.deployId) : undefined;
  const activeDeploy = active?.deploy;
  const pendingDeploy = pendingEntry?.deploy;
  const marker = (e?: DeployHistoryEntry) => (e ? deployMarker(id, e.deploy.id, e.deploy.timestamp, undefined, e.user) : undefined);
  const groups = groupTaskIds(tasks);
  return {
    request: record.request,
    state: record.state,
    requestDeployState: {
      requestId: id,
      ...(active ? { activeDeploy: marker(active) } : {}),
      ...(pendingEntry ? { pendingDeploy: marker(pendingEntry) } : {}),
    },
    ...(activeDeploy ? { activeDeploy } : {}),
    ...(pendingDeploy ? { pendingDeploy } : {}),
    ...(pending ? { pendingDeployState: pendingDeployView(pending, pendingEntry?.user) } : {}),
    ...(record.bounce ? { bounce: record.bounce } : {}),
    ...(record.backoff && Object.keys(record.backoff).length > 0 ? { crashLoopBackoff: record.backoff } : {}),
    taskIds: groups,
    instanceCounts: {
      desired: record.request.instances,
      healthy: groups.healthy.length,
      total: tasks.filter((t) => !t.cleanup).length,
    },
    ...jobParentFields(record),
    timestamp: record.timestamp,
  };
}

export function deployHistoryView(entry: DeployHistoryEntry, pending?: PendingDeploy, actions?: DeployAction[]) {
  const progress = pending && pending.deployId === entry.deployId ? pending.progress : entry.progress;
  return {
    deployMarker: deployMarker(entry.requestId, entry.deployId, entry.createdAt, entry.message, entry.user),
    deploy: entry.deploy,
    ...(entry.result ? { deployResult: entry.result } : {}),
    ...(progress ? { deployProgress: progress, decisionLog: progress.decisionLog } : {}),
    deployState: entry.result?.deployState ?? (pending?.deployId === entry.deployId ? 'WAITING' : undefined),
    ...(actions && actions.length > 0 ? { actions } : {}),
  };
}
