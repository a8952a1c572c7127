// Pure predicates and transitions over task records, shared by the deploy and request steps.
import type { CleanupReason, TaskRecord } from './model.ts';
import { isLive } from './model.ts';
import type { Plan } from './plan.ts';

export const live = (t: TaskRecord) => isLive(t.state);
/** live and not on its way out */
export const serving = (t: TaskRecord) => isLive(t.state) && !t.cleanup;
export const healthy = (t: TaskRecord) => serving(t) && t.state === 'TASK_RUNNING' && t.health.state === 'HEALTHY';

/** In the LB: an ADD succeeded and no REMOVE has started since. */
export const inLb = (t: TaskRecord) => t.lb.add?.state === 'SUCCESS' && !t.lb.remove;
/** An ADD or REMOVE is in flight, or the task is in the LB. */
export const touchesLb = (t: TaskRecord) =>
  (t.lb.add !== undefined && t.lb.add.state !== 'FAILED' && t.lb.add.state !== 'CANCELED' && !t.lb.remove) ||
  t.lb.remove?.state === 'WAITING';

/** Mark a task to be stopped; the request step removes it from the LB first, then stops it. */
export function markCleanup(plan: Plan, task: TaskRecord, reason: CleanupReason, message?: string): TaskRecord {
  if (task.cleanup || !isLive(task.state)) return task;
  const next: TaskRecord = {
    ...task,
    state: 'TASK_CLEANING',
    cleanup: { reason, timestamp: plan.now, ...(message ? { message } : {}) },
    updates: [...task.updates, { state: 'TASK_CLEANING', timestamp: plan.now, message: message ?? reason }],
  };
  plan.putTask(next);
  return next;
}

export function byInstance(a: TaskRecord, b: TaskRecord): number {
  return a.taskId.instanceNo - b.taskId.instanceNo || a.taskId.startedAt - b.taskId.startedAt;
}
