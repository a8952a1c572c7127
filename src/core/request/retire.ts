import type { CleanupReason, RequestRecord, TaskRecord } from '../model.ts';
import { healthy, inLb, markCleanup, serving } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type { RequestChanges, RequestContext } from './context.ts';

/**
 * Part 3, the capacity rule: tasks of any deploy other than the active and the pending one
 * (the last active deploy after a success, a failed or cancelled deploy's) are cleaned up
 * only once the active deploy serves at full capacity — every desired instance healthy and,
 * for a load-balanced request, in the LB. A paused or deleted request (or one without an
 * active deploy) keeps nothing.
 *
 * Ordering hazard: "in the LB" counts the tasks the LB membership part is about to add in
 * this same step (`wantInLb`). That is safe only because that part runs after this one and
 * puts those adds and the removal of the tasks cleaned up here into ONE operation: a revert
 * (old back in, new out) is atomic, and a failed operation fails both halves. Run this part
 * after the LB part, or issue the two in separate operations, and a revert would first drop
 * the new tasks with the old ones not yet back.
 */
export function retireOtherDeploys(ctx: RequestContext, record: RequestRecord, tasks: TaskView): RequestChanges {
  const { now, obs, activeId, pendingId } = ctx;
  const keepNothing = record.state !== 'ACTIVE' || !activeId;
  const changes: TaskRecord[] = [];
  const other = (t: TaskRecord) => serving(t) && t.taskId.deployId !== activeId && t.taskId.deployId !== pendingId;
  if (!keepNothing && !atFullCapacity(ctx, record.request.instances, tasks)) {
    // An unhealthy task adds nothing to capacity: it leaves (the LB first) without waiting.
    for (const t of tasks.all()) {
      if (!other(t) || t.health.state !== 'UNHEALTHY') continue;
      const marked = markCleanup(t, 'UNHEALTHY', now, t.health.message);
      if (marked) changes.push(marked);
    }
    return { tasks: changes };
  }
  for (const t of tasks.all()) {
    if (!serving(t) || t.taskId.deployId === activeId || t.taskId.deployId === pendingId) continue;
    const ended = ctx.ended?.deployId === t.taskId.deployId ? ctx.ended.state : obs.endedDeploys[t.taskId.deployId];
    const reason: CleanupReason =
      record.state === 'PAUSED'
        ? 'PAUSING'
        : record.state === 'DELETING'
          ? 'REQUEST_DELETING'
          : ended === 'CANCELED'
            ? 'DEPLOY_CANCELED'
            : ended === 'SUCCEEDED' || t.taskId.deployId === obs.activeDeploy?.id
              ? 'DEPLOY_REPLACED'
              : 'DEPLOY_FAILED';
    const marked = markCleanup(t, reason, now);
    if (marked) changes.push(marked);
  }
  return { tasks: changes };
}

/** Every desired instance has a healthy active task that is (or is being put) in the LB. */
function atFullCapacity(ctx: RequestContext, instances: number, tasks: TaskView): boolean {
  const ok = new Set<number>();
  for (const t of tasks.ofDeploy(ctx.activeId)) {
    if (healthy(t) && (!ctx.lbEnabled || inLb(t) || ctx.wantInLb(t))) ok.add(t.taskId.instanceNo);
  }
  // Stops at the first desired instance without one, so a huge request costs no more than its tasks.
  for (let n = 1; n <= instances; n++) if (ctx.isDesired(n) && !ok.has(n)) return false;
  return true;
}
