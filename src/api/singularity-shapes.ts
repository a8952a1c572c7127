// Singularity's response shapes (its model classes, as Jackson writes them), built beside
// Fledge's own fields, never instead of them. Rules:
// - a Singularity field carries only values of Singularity's enums; a Fledge-only value
//   (MANUAL acceptance, ACCEPTANCE_* failures, a cleanup Singularity has no name for) goes in
//   a Fledge-only field next to it (fledgeAcceptanceMode, fledgeDeployFailures, cleanup);
// - ignored Singularity fields (stored in `extra`) come back where Singularity puts them;
// - where Fledge has no meaning for a field, it is written as Singularity writes "nothing"
//   (0, [], absent), so a client reading it never fails.
// test/compat/shapes.test.ts checks every shape against the model classes' property lists.
import type { DeployFailure, DeployProgress, DeployResult, LbUpdate, PendingDeploy } from '../core/deploy/types.ts';
import type { CleanupReason, Deploy, FledgeRequest, RequestRecord, TaskId, TaskRecord } from '../core/model.ts';
import { hostOf } from '../core/placement.ts';

/** A request as Singularity writes it: its ignored Singularity fields at the top level again. */
export function requestOut(r: FledgeRequest): Record<string, unknown> {
  const { extra, ...own } = r;
  return { ...extra, ...own };
}

/** Singularity's acceptance modes; Fledge's MANUAL waits for a person like a check that asks one. */
const SINGULARITY_ACCEPTANCE = new Set(['NONE', 'TIMED', 'CHECKS']);

/** A deploy as Singularity writes it, with Fledge's own fields alongside. */
export function deployOut(d: Deploy): Record<string, unknown> {
  const { extra, executorData, canaryDeploySettings, ...own } = d;
  const mode = canaryDeploySettings.acceptanceMode;
  return {
    ...extra,
    ...own,
    canaryDeploySettings: {
      ...canaryDeploySettings,
      acceptanceMode: SINGULARITY_ACCEPTANCE.has(mode) ? mode : 'CHECKS',
      fledgeAcceptanceMode: mode,
    },
    ...(executorData ? { executorData: executorDataOut(executorData) } : {}),
  };
}

function executorDataOut(e: NonNullable<Deploy['executorData']>): Record<string, unknown> {
  const { extra, ...own } = e;
  return { ...extra, ...own };
}

const SINGULARITY_FAILURES = new Set([
  'TASK_FAILED_ON_STARTUP',
  'TASK_FAILED_HEALTH_CHECKS',
  'TASK_COULD_NOT_BE_SCHEDULED',
  'TASK_NEVER_ENTERED_RUNNING',
  'TASK_EXPECTED_RUNNING_FINISHED',
  'LOAD_BALANCER_UPDATE_FAILED',
]);

/**
 * SingularityDeployResult: `deployFailures` holds the failures Singularity has a reason for
 * (it reports a failed acceptance in `message` only, as Fledge does too); every failure,
 * ACCEPTANCE_CHECK_FAILED and ACCEPTANCE_TIMED_OUT included, is in `fledgeDeployFailures`.
 */
export function deployResultOut(r: DeployResult): Record<string, unknown> {
  return {
    ...r,
    deployFailures: r.deployFailures.filter((f: DeployFailure) => SINGULARITY_FAILURES.has(f.reason)),
    fledgeDeployFailures: r.deployFailures,
  };
}

/** What Fledge knows of a task named only by its id string (the LB operations keep ids). */
export type TaskIdLookup = (id: string) => TaskId | undefined;

/** SingularityLoadBalancerUpdate for one of Fledge's LB operations. */
export function lbUpdateOut(u: LbUpdate, requestId: string): Record<string, unknown> {
  return {
    loadBalancerState: u.state,
    loadBalancerRequestId: { id: u.loadBalancerRequestId, requestType: 'DEPLOY', attemptNumber: 1 },
    timestamp: u.startedAt,
    method: u.state === 'WAITING' ? 'CHECK_STATE' : u.state === 'CANCELED' ? 'CANCEL' : 'ENQUEUE',
    ...(u.message !== undefined ? { message: u.message } : {}),
    uri: `fledge:${requestId}`,
  };
}

/**
 * SingularityDeployProgress: `lbUpdates` as Singularity's map (operation id → {loadBalancerUpdate,
 * added, removed}), `pendingLbUpdate` as a SingularityLoadBalancerUpdate; Fledge's lists are
 * `fledgeLbUpdates` and `fledgePendingLbUpdate`.
 */
export function deployProgressOut(p: DeployProgress, requestId: string, lookup: TaskIdLookup): Record<string, unknown> {
  const { lbUpdates, pendingLbUpdate, ...own } = p;
  const ids = (list: string[]) => list.map((id) => lookup(id) ?? { id, requestId });
  return {
    ...own,
    lbUpdates: Object.fromEntries(
      lbUpdates.map((u) => [
        u.loadBalancerRequestId,
        { loadBalancerUpdate: lbUpdateOut(u, requestId), added: ids(u.add), removed: ids(u.remove) },
      ]),
    ),
    ...(pendingLbUpdate ? { pendingLbUpdate: lbUpdateOut(pendingLbUpdate, requestId) } : {}),
    fledgeLbUpdates: lbUpdates,
    ...(pendingLbUpdate ? { fledgePendingLbUpdate: pendingLbUpdate } : {}),
    acceptanceResultMessageHistory: acceptanceMessages(p),
  };
}

function acceptanceMessages(p: DeployProgress): string[] {
  const out: string[] = [];
  for (const d of p.decisionLog ?? []) if (d.kind === 'ACCEPTANCE_RESULT') out.push(`${d.check}: ${d.state}`);
  return out;
}

/** The ids of every task named in a set of pending deploys' LB operations. */
export function lbTaskIds(pending: readonly (PendingDeploy | { progress?: DeployProgress })[]): string[] {
  const out = new Set<string>();
  for (const p of pending) {
    for (const u of [...(p.progress?.lbUpdates ?? []), ...(p.progress?.pendingLbUpdate ? [p.progress.pendingLbUpdate] : [])]) {
      for (const id of [...u.add, ...u.remove]) out.add(id);
    }
  }
  return [...out];
}

/** Fledge's cleanup reasons in Singularity's TaskCleanupType words. */
const CLEANUP_TYPES: Record<CleanupReason, string> = {
  SCALING_DOWN: 'SCALING_DOWN',
  DEPLOY_REPLACED: 'NEW_DEPLOY_SUCCEEDED',
  DEPLOY_FAILED: 'DEPLOY_FAILED',
  DEPLOY_CANCELED: 'DEPLOY_CANCELED',
  BOUNCING: 'BOUNCING',
  PAUSING: 'PAUSING',
  REQUEST_DELETING: 'REQUEST_DELETING',
  USER_REQUESTED: 'USER_REQUESTED',
  UNHEALTHY: 'UNHEALTHY_NEW_TASK',
  DEPLOY_STEP_FAILED: 'INCREMENTAL_DEPLOY_FAILED',
  DECOMMISSIONING: 'DECOMISSIONING',
  RESCHEDULED: 'REBALANCE_SLAVE_ATTRIBUTES',
  TASK_EXCEEDED_TIME_LIMIT: 'TASK_EXCEEDED_TIME_LIMIT',
};

export function cleanupType(reason: CleanupReason): string {
  return CLEANUP_TYPES[reason];
}

/** SingularityTaskCleanup for a task being stopped (or, with waitForReplacement, replaced). */
export function taskCleanupOut(t: TaskRecord, user?: string): Record<string, unknown> | undefined {
  const at = t.cleanup?.timestamp ?? t.replaceRequested?.timestamp;
  if (at === undefined) return undefined;
  const message = t.cleanup?.message ?? t.replaceRequested?.message;
  return {
    taskId: t.taskId,
    cleanupType: t.cleanup ? cleanupType(t.cleanup.reason) : 'USER_REQUESTED_TASK_BOUNCE',
    timestamp: at,
    ...(user !== undefined ? { user } : {}),
    ...(message !== undefined ? { message } : {}),
    removeFromLoadBalancer: true,
  };
}

/** Mesos' task resources for a task of `deploy`: cpus, mem, disk and its ports as ranges. */
function mesosResources(t: TaskRecord, deploy: Deploy | undefined): Record<string, unknown>[] {
  const scalar = (name: string, value: number) => ({ name, type: 'SCALAR', scalar: { value } });
  const out: Record<string, unknown>[] = [];
  if (deploy) {
    out.push(scalar('cpus', deploy.resources.cpus), scalar('mem', deploy.resources.memoryMb));
    if (deploy.resources.diskMb > 0) out.push(scalar('disk', deploy.resources.diskMb));
  }
  if (t.ports.length > 0) {
    out.push({ name: 'ports', type: 'RANGES', ranges: { range: t.ports.map((p) => ({ begin: p, end: p })) } });
  }
  return out;
}

export interface TaskContext {
  request?: FledgeRequest;
  deploy?: Deploy;
}

/**
 * SingularityTask's fields (taskId and the ones below), added to Fledge's task view: the task
 * request it was started for, the "offer" (the host it runs on) and the Mesos task with its
 * resources, ports included, as Singularity's clients read ports (mesosTask.resources).
 */
export function singularityTaskFields(t: TaskRecord, ctx: TaskContext): Record<string, unknown> {
  const host = hostOf(t) ?? t.taskId.host;
  const agentId = { value: t.taskId.sanitizedHost };
  const offer = { id: { value: `${t.taskId.id}-offer` }, frameworkId: { value: 'fledge' }, agentId, slaveId: agentId, hostname: host };
  const pendingTaskId = {
    requestId: t.taskId.requestId,
    deployId: t.taskId.deployId,
    nextRunAt: t.taskId.startedAt,
    instanceNo: t.taskId.instanceNo,
    pendingType: 'NEW_DEPLOY',
    createdAt: t.taskId.startedAt,
    id: `${t.taskId.requestId}-${t.taskId.deployId}-${t.taskId.startedAt}-${t.taskId.instanceNo}`,
  };
  return {
    taskRequest: {
      ...(ctx.request ? { request: requestOut(ctx.request) } : {}),
      ...(ctx.deploy ? { deploy: deployOut(ctx.deploy) } : {}),
      pendingTask: { pendingTaskId, cmdLineArgsList: [], skipHealthchecks: ctx.request?.skipHealthchecks ?? false },
    },
    offer,
    offers: [offer],
    mesosTask: {
      taskId: { value: t.taskId.id },
      name: t.taskId.requestId,
      resources: mesosResources(t, ctx.deploy),
      agentId,
      slaveId: agentId,
      labels: { labels: [] },
    },
    rackId: t.taskId.rackId,
  };
}

/** When the task last changed and its last state (SingularityTaskIdHistory). */
export function taskIdHistoryFields(t: TaskRecord): { updatedAt: number; lastTaskState: string } {
  const last = t.updates.at(-1);
  return { updatedAt: last?.timestamp ?? t.taskId.startedAt, lastTaskState: last?.state ?? t.state };
}

/** The LB operations that added or removed this task, as SingularityLoadBalancerUpdate. */
export function taskLbUpdates(t: TaskRecord): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const [kind, op] of [
    ['ADD', t.lb.add],
    ['REMOVE', t.lb.remove],
  ] as const) {
    if (!op) continue;
    out.push({
      loadBalancerState: op.state,
      loadBalancerRequestId: { id: op.operationId, requestType: kind, attemptNumber: 1 },
      timestamp: op.timestamp,
      method: op.state === 'WAITING' ? 'CHECK_STATE' : 'ENQUEUE',
      uri: `fledge:${t.taskId.requestId}`,
    });
  }
  return out;
}

/** SingularityState's counters that have no meaning in Fledge (no Mesos, no scheduled tasks). */
export const STATE_ZEROES = {
  launchingTasks: 0,
  cooldownRequests: 0,
  scheduledTasks: 0,
  pendingRequests: 0,
  lbCleanupTasks: 0,
  lbCleanupRequests: 0,
  cleaningRequests: 0,
  activeRacks: 0,
  deadRacks: 0,
  decommissioningRacks: 0,
  decomissioningRacks: 0,
  unknownRacks: 0,
  lateTasks: 0,
  listLateTasks: [],
  onDemandLateTasks: 0,
  onDemandListLateTasks: [],
  futureTasks: 0,
  maxTaskLag: 0,
  finishedRequests: 0,
  avgStatusUpdateDelayMs: 0,
  hostStates: [],
  minimumPriorityLevel: 0,
} as const;

/** The request parent's expiringScale, expiringPause, expiringBounce and expiringSkipHealthchecks. */
export function expiringOut(record: RequestRecord): Record<string, unknown> {
  const e = record.expiring;
  if (!e) return {};
  const requestId = record.request.id;
  const common = (
    a: { startMillis: number; durationMillis: number; user?: string; message?: string; actionId?: string },
    body: object,
  ) => ({
    requestId,
    startMillis: a.startMillis,
    actionId: a.actionId ?? `${requestId}-${a.startMillis}`,
    ...(a.user !== undefined ? { user: a.user } : {}),
    expiringAPIRequestObject: { durationMillis: a.durationMillis, ...(a.message !== undefined ? { message: a.message } : {}), ...body },
    // Fledge's own: when it is undone
    endsAt: a.startMillis + a.durationMillis,
  });
  return {
    ...(e.scale
      ? {
          expiringScale: {
            ...common(e.scale, { instances: record.request.instances, ...(e.scale.bounce ? { bounce: true } : {}) }),
            revertToInstances: e.scale.revertToInstances,
            bounce: e.scale.bounce ?? false,
          },
        }
      : {}),
    ...(e.pause ? { expiringPause: common(e.pause, {}) } : {}),
    ...(e.bounce
      ? { expiringBounce: { ...common(e.bounce, {}), ...(record.activeDeployId ? { deployId: record.activeDeployId } : {}) } }
      : {}),
    ...(e.skipHealthchecks
      ? {
          expiringSkipHealthchecks: {
            ...common(e.skipHealthchecks, { skipHealthchecks: record.request.skipHealthchecks ?? false }),
            revertToSkipHealthchecks: e.skipHealthchecks.revertToSkipHealthchecks,
          },
        }
      : {}),
  };
}
