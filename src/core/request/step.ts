/*
 * The request step: one decision for one request, pure.
 *
 * 1. The pending deploy steps (../deploy/step.ts). If it ended, its result is applied to the
 *    request: on SUCCEEDED it becomes the active deploy (and `updatedRequest` the request).
 * 2. Steady state. An ACTIVE request wants one serving task of its active deploy per instance
 *    number 1…instances — minus the old instances a canary deploy has retired so far. A
 *    missing one is started (after a crash-loop backoff); an unwanted one is cleaned up; a
 *    bounce starts a replacement per instance and cleans up the old task once the
 *    replacement serves.
 * 3. Tasks of any other deploy (the last active one after a success, a failed or cancelled
 *    deploy's) are cleaned up only once the active deploy serves at full capacity: healthy,
 *    and in the LB for load-balanced requests. This one rule is the capacity guarantee.
 * 4. Load balancer membership of steady-state tasks: serving tasks of the active deploy are
 *    added; cleaned-up tasks are removed — in one operation at a time per request, so a
 *    revert (old back in, new out) is a single operation.
 * 5. Cleanup: a task marked for cleanup leaves the LB first (drained), then is stopped.
 */
import { isLive, type CleanupReason, type RequestRecord, type TaskRecord } from '../model.ts';
import { createTask, type Plan } from '../plan.ts';
import { stepDeploy } from '../deploy/step.ts';
import type { RequestObservation } from '../deploy/types.ts';
import { byInstance, healthy, inLb, markCleanup, serving, touchesLb } from '../tasks.ts';

export function stepRequest(obs: RequestObservation, record: RequestRecord, plan: Plan): void {
  let rec: RequestRecord = record;
  let activeDeploy = obs.activeDeploy;
  if (obs.pending) stepDeploy(obs, plan);
  const pending = plan.pending === null ? undefined : (plan.pending ?? obs.pending);

  if (plan.result) {
    const { deployId, result } = plan.result;
    rec = { ...rec };
    delete rec.pendingDeployId;
    if (result.deployState === 'SUCCEEDED') {
      rec.activeDeployId = deployId;
      activeDeploy = obs.pendingDeploy;
      if (obs.pending?.updatedRequest) rec.request = obs.pending.updatedRequest;
      if (rec.state === 'DEPLOYING_TO_UNPAUSE') rec.state = 'ACTIVE';
      delete rec.backoff;
    } else if (rec.state === 'DEPLOYING_TO_UNPAUSE') {
      rec.state = 'PAUSED';
    }
  }

  const { now } = plan;
  const all = new Map(obs.tasks.map((t) => [t.taskId.id, t]));
  for (const [id, t] of plan.tasks) all.set(id, t);
  const get = (t: TaskRecord) => plan.tasks.get(t.taskId.id) ?? t;
  const tasks = () => [...all.values()].map(get).sort(byInstance);
  const lbEnabled = rec.request.loadBalanced;
  const requireLb = (t: TaskRecord) => !lbEnabled || inLb(t);
  let mayIssueLb = true;
  if (lbEnabled) ({ rec, mayIssue: mayIssueLb } = settleLbOperation(obs, rec, plan, tasks()));
  const activeId = rec.activeDeployId;
  const pendingId = pending?.deployId;
  const retired = new Set(pending?.progress.retiredOldInstances ?? []);
  const desired: number[] = [];
  if (rec.state === 'ACTIVE' && activeId) {
    for (let n = 1; n <= rec.request.instances; n++) if (!retired.has(n)) desired.push(n);
  }
  const desiredSet = new Set(desired);
  const cleanupReason = (t: TaskRecord): CleanupReason =>
    rec.state === 'PAUSED' || rec.state === 'DEPLOYING_TO_UNPAUSE'
      ? 'PAUSING'
      : rec.state === 'DELETING'
        ? 'REQUEST_DELETING'
        : retired.has(t.taskId.instanceNo)
          ? 'DEPLOY_REPLACED'
          : 'SCALING_DOWN';

  // 2. Steady state of the active deploy.
  const backoff = { ...(rec.backoff ?? {}) };
  let backoffChanged = false;
  for (const t of tasks()) {
    if (t.taskId.deployId === activeId && serving(t) && !desiredSet.has(t.taskId.instanceNo)) {
      markCleanup(plan, t, cleanupReason(t));
    }
  }
  const taken = new Set(all.keys());
  for (const n of desired) {
    const mine = tasks().filter((t) => t.taskId.deployId === activeId && t.taskId.instanceNo === n);
    const servingNow = mine.filter(serving).sort((a, b) => b.taskId.startedAt - a.taskId.startedAt);
    let current = servingNow[0];
    const key = String(n);
    // A task that served for a whole backoff window ends the crash loop.
    const resetMillis = obs.settings.backoffMaxMillis;
    if (current && healthy(current) && backoff[key]) {
      const servedSince = current.health.healthyAt ?? now;
      if (now - servedSince >= resetMillis) {
        delete backoff[key];
        backoffChanged = true;
      } else {
        plan.wake(servedSince + resetMillis);
      }
    }
    if (!current) {
      const crashed = mine
        .filter((t) => !isLive(t.state) && !t.cleanup)
        .sort((a, b) => (b.doneAt ?? 0) - (a.doneAt ?? 0) || b.taskId.startedAt - a.taskId.startedAt)[0];
      if (crashed && backoff[key]?.lastTaskId !== crashed.taskId.id) {
        const served = crashed.health.healthyAt === undefined ? 0 : (crashed.doneAt ?? now) - crashed.health.healthyAt;
        const failures = served >= resetMillis ? 1 : (backoff[key]?.failures ?? 0) + 1;
        const delay = failures <= 1 ? 0 : Math.min(obs.settings.backoffBaseMillis * 2 ** (failures - 2), obs.settings.backoffMaxMillis);
        backoff[key] = { failures, until: (crashed.doneAt ?? now) + delay, lastTaskId: crashed.taskId.id };
        backoffChanged = true;
      }
      const until = backoff[key]?.until ?? 0;
      if (now < until) {
        plan.wake(until);
        continue;
      }
      current = startTask(plan, activeDeploy, n, taken);
      if (!current) continue;
    } else if ((rec.bounce && current.taskId.startedAt < rec.bounce.startedAt) || current.replaceRequested) {
      current = startTask(plan, activeDeploy, n, taken) ?? current;
    }
    // Older serving tasks of the same instance (bounce, kill with replacement) go once the newest serves.
    const older = servingNow.filter((t) => t !== current && t.taskId.id !== current?.taskId.id);
    if (current && healthy(get(current)) && requireLb(get(current))) {
      for (const t of older) markCleanup(plan, t, rec.bounce ? 'BOUNCING' : 'USER_REQUESTED');
    }
  }
  // The bounce is over once no serving task of the active deploy predates it.
  const bounce = rec.bounce;
  if (bounce && !tasks().some((t) => t.taskId.deployId === activeId && serving(t) && t.taskId.startedAt < bounce.startedAt)) {
    rec = { ...rec };
    delete rec.bounce;
  }
  if (backoffChanged) rec = { ...rec, backoff };

  // 3. Tasks of other deploys leave once the active deploy serves at full capacity.
  const wantInLb = (t: TaskRecord) =>
    lbEnabled &&
    t.taskId.deployId === activeId &&
    healthy(t) &&
    desiredSet.has(t.taskId.instanceNo) &&
    !removedByPendingSwap(t, rec.request.id, pendingId);
  const fullCapacity = desired.every((n) =>
    tasks().some(
      (t) => t.taskId.deployId === activeId && t.taskId.instanceNo === n && healthy(t) && (!lbEnabled || inLb(t) || wantInLb(t)),
    ),
  );
  for (const t of tasks()) {
    if (!serving(t) || t.taskId.deployId === activeId || t.taskId.deployId === pendingId) continue;
    if (fullCapacity || rec.state !== 'ACTIVE' || !activeId) {
      const ended = plan.result?.deployId === t.taskId.deployId ? plan.result.result.deployState : obs.endedDeploys[t.taskId.deployId];
      const reason: CleanupReason =
        rec.state === 'PAUSED'
          ? 'PAUSING'
          : rec.state === 'DELETING'
            ? 'REQUEST_DELETING'
            : ended === 'CANCELED'
              ? 'DEPLOY_CANCELED'
              : ended === 'SUCCEEDED' || t.taskId.deployId === obs.activeDeploy?.id
                ? 'DEPLOY_REPLACED'
                : 'DEPLOY_FAILED';
      markCleanup(plan, t, reason);
    }
  }

  // 4. Load balancer membership of steady-state tasks.
  if (lbEnabled && mayIssueLb) rec = issueLbOperation(rec, plan, tasks(), wantInLb);

  // 5. Cleanup and (re)starts at the edge.
  let waitingForCapacity = false;
  for (const t of tasks()) {
    if (!isLive(t.state)) continue;
    if (t.cleanup) {
      if (lbEnabled && touchesLb(t)) continue; // leaves the LB first
      if (t.state !== 'TASK_KILLING') {
        plan.putTask({ ...t, state: 'TASK_KILLING', updates: [...t.updates, { state: 'TASK_KILLING', timestamp: now }] });
      }
      plan.act({ kind: 'stopTask', taskId: t.taskId.id, reason: t.cleanup.reason });
    } else if (t.handle === undefined && !plan.actions.some((a) => a.kind === 'startTask' && a.taskId === t.taskId.id)) {
      plan.act({ kind: 'startTask', taskId: t.taskId.id });
      if (t.waitingReason) waitingForCapacity = true;
    }
  }
  if (waitingForCapacity) plan.wake(now + obs.settings.capacityRetryMillis);

  if (rec.state === 'DELETING' && !pending && !tasks().some((t) => isLive(t.state))) {
    rec = { ...rec, state: 'DELETED' };
  }
  if (rec !== record) plan.request = { ...rec, timestamp: now };
}

function startTask(plan: Plan, deploy: RequestObservation['activeDeploy'], instanceNo: number, taken: Set<string>): TaskRecord | undefined {
  if (!deploy) return undefined;
  const task = createTask(deploy, instanceNo, plan.now, taken);
  taken.add(task.taskId.id);
  plan.putTask(task);
  plan.act({ kind: 'startTask', taskId: task.taskId.id });
  return task;
}

/** Old tasks that a pending non-canary deploy swapped out stay out while it is pending. */
function removedByPendingSwap(t: TaskRecord, requestId: string, pendingId: string | undefined): boolean {
  return pendingId !== undefined && t.lb.remove?.operationId.startsWith(`${requestId}-${pendingId}-lb`) === true;
}

/**
 * Record the outcome of the steady-state LB operation in flight, if it finished. Runs before
 * the steady-state decisions so they see tasks' LB state as it is now. Returns whether a new
 * operation may be issued in this step.
 */
function settleLbOperation(
  obs: RequestObservation,
  rec: RequestRecord,
  plan: Plan,
  tasks: TaskRecord[],
): { rec: RequestRecord; mayIssue: boolean } {
  const { now } = plan;
  const op = rec.lbOperation;
  if (!op) return { rec, mayIssue: true };
  const seen = obs.lbOps[op.operationId];
  const timeoutMs = (obs.activeDeploy?.loadBalancerTimeoutSeconds ?? 300) * 1000;
  if (!seen || seen.state === 'WAITING') {
    if (now - op.startedAt < timeoutMs) {
      plan.wake(op.startedAt + timeoutMs);
      return { rec, mayIssue: false };
    }
    plan.act({ kind: 'lbCancel', operationId: op.operationId });
  }
  const state = seen && seen.state !== 'WAITING' ? seen.state : 'CANCELED';
  const byId = new Map(tasks.map((t) => [t.taskId.id, t]));
  for (const [ids, which] of [
    [op.add, 'add'],
    [op.remove, 'remove'],
  ] as const) {
    for (const id of ids) {
      const t = byId.get(id);
      if (!t) continue;
      const lb = { ...t.lb, [which]: { operationId: op.operationId, state, timestamp: now } };
      // A failed removal leaves the task in the LB: forget the attempt so it is retried.
      if (which === 'remove' && state !== 'SUCCESS') delete lb.remove;
      plan.putTask({ ...t, lb });
    }
  }
  const next = { ...rec };
  delete next.lbOperation;
  if (state !== 'SUCCESS') {
    // Try again shortly rather than spinning on a failing balancer.
    plan.wake(now + 1000);
    return { rec: next, mayIssue: false };
  }
  return { rec: next, mayIssue: true };
}

/** One operation adding the active deploy's serving tasks and removing cleaned-up ones. */
function issueLbOperation(rec: RequestRecord, plan: Plan, tasks: TaskRecord[], wantInLb: (t: TaskRecord) => boolean): RequestRecord {
  const { now } = plan;
  const add = tasks.filter((t) => wantInLb(t) && !touchesLb(t));
  // Cleaned-up tasks leave before they stop; a task that died on its own leaves at once, so its
  // address (which the runtime may hand to another task) is never routed to.
  const remove = tasks.filter((t) => (t.cleanup || !isLive(t.state)) && touchesLb(t) && t.lb.remove?.state !== 'WAITING');
  if (add.length === 0 && remove.length === 0) return rec;
  const seq = (rec.lbSeq ?? 0) + 1;
  const operationId = `${rec.request.id}-lb${seq}`;
  for (const t of add) {
    const lb = { add: { operationId, state: 'WAITING' as const, timestamp: now } };
    plan.putTask({ ...t, lb });
  }
  for (const t of remove) {
    plan.putTask({ ...t, lb: { ...t.lb, remove: { operationId, state: 'WAITING' as const, timestamp: now } } });
  }
  plan.act({ kind: 'lbApply', operationId, add: add.map((t) => t.taskId.id), remove: remove.map((t) => t.taskId.id) });
  return {
    ...rec,
    lbSeq: seq,
    lbOperation: { operationId, add: add.map((t) => t.taskId.id), remove: remove.map((t) => t.taskId.id), startedAt: now },
  };
}
