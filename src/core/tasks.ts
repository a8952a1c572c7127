// Pure predicates and transitions over task records, shared by the deploy and request steps.
import type { CleanupReason, Deploy, LbOpState, TaskRecord } from './model.ts';
import { isLive } from './model.ts';
import { UNPLACED } from './placement.ts';

/** live and not on its way out */
export const serving = (t: TaskRecord) => isLive(t.state) && !t.cleanup;
export const healthy = (t: TaskRecord) => serving(t) && t.state === 'TASK_RUNNING' && t.health.state === 'HEALTHY';

/** In the LB: an ADD succeeded and no REMOVE has started since. */
export const inLb = (t: TaskRecord) => t.lb.add?.state === 'SUCCESS' && !t.lb.remove;
/** An ADD or REMOVE of this task is in flight. */
export const lbInFlight = (t: TaskRecord) => t.lb.add?.state === 'WAITING' || t.lb.remove?.state === 'WAITING';
/**
 * The LB may route to this task: an ADD was issued and no REMOVE has succeeded since. An ADD
 * that ended CANCELED or FAILED counts too: a cancel only reverts what was not done yet, and a
 * failure may come half-way, so the task may be in. A task is stopped only once this is false
 * (removing an upstream the balancer does not have succeeds).
 */
export const touchesLb = (t: TaskRecord) => t.lb.add !== undefined && t.lb.remove?.state !== 'SUCCESS';
/** Wanted in the LB and not there: neither in nor on its way in or out. */
export const needsLbAdd = (t: TaskRecord) => !inLb(t) && !lbInFlight(t);

/**
 * How an LB operation ended, recorded on one task it added (`which` = add) or removed. A
 * removal that did not succeed is forgotten: the task is where it was (in the LB), and is
 * removed again if it still has to go. A task whose ADD or REMOVE is now another operation's
 * is left alone. undefined: nothing to record.
 */
export function settleLbOnTask(
  t: TaskRecord,
  operationId: string,
  which: 'add' | 'remove',
  state: LbOpState,
  now: number,
): TaskRecord | undefined {
  const current = t.lb[which];
  if (current && current.operationId !== operationId) return undefined;
  if (which === 'remove' && state !== 'SUCCESS') {
    if (!current) return undefined;
    const lb = { ...t.lb };
    delete lb.remove;
    return { ...t, lb };
  }
  if (current?.state === state) return undefined;
  return { ...t, lb: { ...t.lb, [which]: { operationId, state, timestamp: now } } };
}

/** The tasks an operation adds or removes (those still known), each with which side it is on. */
export function lbMembers(
  get: (taskId: string) => TaskRecord | undefined,
  op: { add: readonly string[]; remove: readonly string[] },
): { task: TaskRecord; which: 'add' | 'remove' }[] {
  const sides = [
    [op.add, 'add'],
    [op.remove, 'remove'],
  ] as const;
  return sides.flatMap(([ids, which]) => ids.flatMap((id) => (get(id) ? [{ task: get(id)!, which }] : [])));
}

/** settleLbOnTask for every task an operation adds or removes; the changed records. */
export function settleLbOperationOnTasks(
  get: (taskId: string) => TaskRecord | undefined,
  op: { operationId: string; add: readonly string[]; remove: readonly string[] },
  state: LbOpState,
  now: number,
): TaskRecord[] {
  return lbMembers(get, op).flatMap(({ task, which }) => settleLbOnTask(task, op.operationId, which, state, now) ?? []);
}

/**
 * The task marked to be stopped (the request step removes it from the LB first, then stops
 * it); undefined when it already is, or has ended.
 */
export function markCleanup(task: TaskRecord, reason: CleanupReason, now: number, message?: string): TaskRecord | undefined {
  if (task.cleanup || !isLive(task.state)) return undefined;
  return {
    ...task,
    state: 'TASK_CLEANING',
    cleanup: { reason, timestamp: now, ...(message ? { message } : {}) },
    updates: [...task.updates, { state: 'TASK_CLEANING', timestamp: now, message: message ?? reason }],
  };
}

export function byInstance(a: TaskRecord, b: TaskRecord): number {
  return a.taskId.instanceNo - b.taskId.instanceNo || a.taskId.startedAt - b.taskId.startedAt;
}

/** Where a new task goes: a host and its rack, or nowhere yet and why. */
export type TaskPlace = { host: string; rack: string } | { waiting: string };

// Singularity's sanitized host and rack: the id string is split on '-', so they carry none.
const sanitize = (s: string) => s.replace(/-/g, '_');

/** A new task record for `deploy`'s instance `instanceNo` on its host, not started yet. */
export function createTask(deploy: Deploy, instanceNo: number, now: number, taken: ReadonlySet<string>, place: TaskPlace): TaskRecord {
  const host = 'host' in place ? place.host : UNPLACED;
  const rack = 'host' in place ? place.rack : UNPLACED;
  const where = `${sanitize(host)}-${sanitize(rack)}`;
  let startedAt = now;
  let id = `${deploy.requestId}-${deploy.id}-${startedAt}-${instanceNo}-${where}`;
  // Two tasks for one instance in the same millisecond (a crash-replace) must still differ.
  while (taken.has(id)) id = `${deploy.requestId}-${deploy.id}-${++startedAt}-${instanceNo}-${where}`;
  return {
    taskId: {
      requestId: deploy.requestId,
      deployId: deploy.id,
      startedAt,
      instanceNo,
      host,
      sanitizedHost: sanitize(host),
      rackId: rack,
      sanitizedRackId: sanitize(rack),
      id,
    },
    state: 'TASK_LAUNCHED',
    ports: [],
    health: { state: 'UNKNOWN', results: [] },
    lb: {},
    updates: [{ state: 'TASK_LAUNCHED', timestamp: now, ...('waiting' in place ? { message: place.waiting } : {}) }],
    ...('waiting' in place ? { waitingReason: place.waiting } : {}),
  };
}

/** The deploy as one run of a job needs it: its resources replaced field by field by the run's. */
export function runDeploy(deploy: Deploy, run: { resources?: Partial<Deploy['resources']> } | undefined): Deploy {
  return run?.resources ? { ...deploy, resources: { ...deploy.resources, ...run.resources } } : deploy;
}
