// Singularity-shaped response bodies built from stored records.
import type { PendingDeploy } from '../core/deploy/types.ts';
import type { Deploy, FledgeRequest, RequestRecord, TaskRecord } from '../core/model.ts';
import { isLive } from '../core/model.ts';
import { hostOf } from '../core/placement.ts';
import { healthy, inLb } from '../core/tasks.ts';
import type { DeployEntry, DeployHistoryEntry, DeployKey, LastDeployResult, Store } from '../store/types.ts';
import { jobParentFields } from './job-views.ts';
import type {
  DeployAction,
  DeployHistoryWire,
  DeployMarker,
  PendingDeployWire,
  RequestParentWire,
  TaskIdGroups,
  TaskView,
} from './types.ts';
import {
  deployOut,
  deployProgressOut,
  deployResultOut,
  expiringOut,
  lbTaskIds,
  requestOut,
  singularityTaskFields,
  taskIdHistoryFields,
  taskLbUpdates,
  type TaskIdLookup,
} from './singularity-shapes.ts';

/** One deploy of one request, as a map key. */
const deployKeyOf = (requestId: string, deployId: string) => `${requestId}\u0000${deployId}`;

/** Singularity's deploy marker; `user` is the name of the token that started the deploy. */
export function deployMarker(requestId: string, deployId: string, timestamp: number, message?: string, user?: string): DeployMarker {
  return { requestId, deployId, timestamp, ...(message ? { message } : {}), ...(user ? { user } : {}) };
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

/** Fledge's task view, with the fields of Singularity's task history beside its own. */
export function taskView(t: TaskRecord): TaskView {
  const { handle: _handle, ...rest } = t;
  const sandbox = typeof t.handle?.sandbox === 'string' ? t.handle.sandbox : undefined;
  const container = typeof t.handle?.container === 'string' ? t.handle.container : undefined;
  return {
    ...rest,
    taskId: t.taskId,
    // the service's own process; pgid is the process group Fledge signals (the wrapper's)
    pid: typeof t.handle?.servicePid === 'number' ? t.handle.servicePid : typeof t.handle?.pid === 'number' ? t.handle.pid : undefined,
    pgid: typeof t.handle?.pid === 'number' ? t.handle.pid : undefined,
    sandbox,
    // Where it runs (or was placed to run): its host, and for a container the container's name.
    host: hostOf(t),
    address: typeof t.handle?.address === 'string' ? t.handle.address : undefined,
    container,
    ...taskIdHistoryFields(t),
    taskUpdates: t.updates.map((u) => ({
      taskId: t.taskId,
      taskState: u.state,
      timestamp: u.timestamp,
      ...(u.message !== undefined ? { statusMessage: u.message } : {}),
    })),
    healthcheckResults: t.health.results.map((r) => ({ taskId: t.taskId, ...r })),
    loadBalancerState: t.lb,
    loadBalancerUpdates: taskLbUpdates(t),
    ...(sandbox !== undefined ? { directory: sandbox } : {}),
    ...(container !== undefined ? { containerId: container } : {}),
    shellCommandHistory: [],
    taskMetadata: [],
  };
}

/** Tasks as SingularityTask (its request, deploy, offer, Mesos task) beside Fledge's view. */
export async function tasksOut(store: Store, tasks: TaskRecord[]) {
  const requests = new Map<string, Promise<FledgeRequest | undefined>>();
  const deploys = new Map<string, Promise<Deploy | undefined>>();
  const out = [];
  for (const t of tasks) {
    const { requestId, deployId } = t.taskId;
    if (!requests.has(requestId))
      requests.set(
        requestId,
        store.getRequest(requestId).then((r) => r?.request),
      );
    const key = deployKeyOf(requestId, deployId);
    if (!deploys.has(key)) deploys.set(key, store.getDeploy(requestId, deployId));
    const [request, deploy] = await Promise.all([requests.get(requestId), deploys.get(key)]);
    out.push({ ...taskView(t), ...singularityTaskFields(t, { request, deploy }) });
  }
  return out;
}

/** SingularityTaskHistory: the task (SingularityTask) and its history, Fledge's view alongside. */
export async function taskHistoryOut(store: Store, t: TaskRecord) {
  const [task] = await tasksOut(store, [t]);
  const { taskId, taskRequest, offer, offers, mesosTask, rackId } = task as Record<string, unknown>;
  return { ...task, task: { taskId, taskRequest, offer, offers, mesosTask, rackId } };
}

/** Looks up the TaskId objects of the tasks named in LB operations (live ones first, then the store). */
async function lookupTaskIds(store: Store, ids: string[], known: TaskRecord[]): Promise<TaskIdLookup> {
  const found = new Map(known.map((t) => [t.taskId.id, t.taskId]));
  const missing = ids.filter((id) => !found.has(id)).slice(0, 1000);
  for (const t of await Promise.all(missing.map((id) => store.getTask(id)))) if (t) found.set(t.taskId.id, t.taskId);
  return (id) => found.get(id);
}

export function pendingDeployView(pending: PendingDeploy, user?: string, lookup: TaskIdLookup = () => undefined): PendingDeployWire {
  return {
    deployMarker: deployMarker(pending.requestId, pending.deployId, pending.startedAt, pending.message, user),
    currentDeployState: 'WAITING',
    ...(pending.updatedRequest ? { updatedRequest: requestOut(pending.updatedRequest) } : {}),
    deployProgress: deployProgressOut(pending.progress, pending.requestId, lookup),
    intents: pending.intents,
  };
}

/** What a list already read for many requests at once: pending deploys, live tasks, last results, deploys. */
export interface ParentsPreload {
  pending: ReadonlyMap<string, PendingDeploy>;
  tasks: ReadonlyMap<string, TaskRecord[]>;
  lastResults: ReadonlyMap<string, LastDeployResult>;
  /** the active and pending deploys' entries, by deployKeyOf (no progress: a parent shows none) */
  deploys?: ReadonlyMap<string, DeployEntry>;
}

/**
 * What a chunk of a list of request parents needs, one query each: the live tasks, the last
 * results and the active and pending deploys of its requests.
 */
export async function preloadParents(
  store: Store,
  records: readonly RequestRecord[],
  pending: ReadonlyMap<string, PendingDeploy>,
): Promise<ParentsPreload> {
  const requestIds = records.map((r) => r.request.id);
  const keys: DeployKey[] = [];
  for (const r of records) {
    const requestId = r.request.id;
    if (r.activeDeployId) keys.push({ requestId, deployId: r.activeDeployId });
    const p = pending.get(requestId);
    if (p) keys.push({ requestId, deployId: p.deployId });
  }
  const [live, lastResults, entries] = await Promise.all([
    store.listTasks({ requestIds, live: true }),
    store.lastDeployResults(requestIds),
    store.listDeployEntries(keys),
  ]);
  const tasks = new Map<string, TaskRecord[]>();
  for (const task of live) {
    const list = tasks.get(task.taskId.requestId);
    if (list) list.push(task);
    else tasks.set(task.taskId.requestId, [task]);
  }
  return { pending, tasks, lastResults, deploys: new Map(entries.map((e) => [deployKeyOf(e.requestId, e.deployId), e])) };
}

export async function requestParent(store: Store, record: RequestRecord, preload?: ParentsPreload): Promise<RequestParentWire> {
  const id = record.request.id;
  const entry = (deployId: string) =>
    preload?.deploys ? Promise.resolve(preload.deploys.get(deployKeyOf(id, deployId))) : store.getDeployHistory(id, deployId);
  const [active, pending, tasks, last] = await Promise.all([
    record.activeDeployId ? entry(record.activeDeployId) : Promise.resolve(undefined),
    preload ? preload.pending.get(id) : store.getPending(id),
    preload ? (preload.tasks.get(id) ?? []) : store.listTasks({ requestId: id, live: true }),
    preload ? preload.lastResults.get(id) : store.lastDeployResults([id]).then((m) => m.get(id)),
  ]);
  const pendingEntry = pending ? await entry(pending.deployId) : undefined;
  const activeDeploy = active?.deploy;
  const pendingDeploy = pendingEntry?.deploy;
  const marker = (e?: DeployEntry) => (e ? deployMarker(id, e.deploy.id, e.deploy.timestamp, undefined, e.user) : undefined);
  const groups = groupTaskIds(tasks);
  const lookup = pending ? await lookupTaskIds(store, lbTaskIds([pending]), tasks) : () => undefined;
  return {
    request: requestOut(record.request),
    state: record.state,
    requestDeployState: {
      requestId: id,
      ...(active ? { activeDeploy: marker(active) } : {}),
      ...(pendingEntry ? { pendingDeploy: marker(pendingEntry) } : {}),
    },
    ...(activeDeploy ? { activeDeploy: deployOut(activeDeploy) } : {}),
    ...(pendingDeploy ? { pendingDeploy: deployOut(pendingDeploy) } : {}),
    ...(pending ? { pendingDeployState: pendingDeployView(pending, pendingEntry?.user, lookup) } : {}),
    ...(last ? { lastDeployResult: { deployId: last.deployId, deployResult: deployResultOut(last.result) } } : {}),
    ...(record.bounce ? { bounce: record.bounce } : {}),
    ...expiringOut(record),
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

export async function deployHistoryView(
  store: Store,
  entry: DeployHistoryEntry,
  pending?: PendingDeploy,
  actions?: DeployAction[],
): Promise<DeployHistoryWire> {
  const progress = pending && pending.deployId === entry.deployId ? pending.progress : entry.progress;
  const lookup = progress ? await lookupTaskIds(store, lbTaskIds([{ progress }]), []) : () => undefined;
  return {
    deployMarker: deployMarker(entry.requestId, entry.deployId, entry.createdAt, entry.message, entry.user),
    deploy: deployOut(entry.deploy),
    ...(entry.result ? { deployResult: deployResultOut(entry.result) } : {}),
    ...(progress ? { deployProgress: deployProgressOut(progress, entry.requestId, lookup), decisionLog: progress.decisionLog } : {}),
    deployState: entry.result?.deployState ?? (pending?.deployId === entry.deployId ? 'WAITING' : undefined),
    ...(actions && actions.length > 0 ? { actions } : {}),
  };
}
