import type { TaskRecord } from '../../model.ts';
import { inLb, touchesLb } from '../../tasks.ts';
import { reasons } from '../reasons.ts';
import { healthyNew, type DeployStepContext } from '../step.ts';

/**
 * LB_UPDATE: canary off swaps atomically (add every new task, remove every old one, one
 * operation); canary on only adds. Bounded by loadBalancerTimeoutSeconds.
 */
export function stepLbUpdate(ctx: DeployStepContext): boolean {
  const { progress, plan, deploy, obs, pending } = ctx;
  const op = progress.pendingLbUpdate;
  if (op?.state === 'WAITING') {
    const seen = obs.lbOps[op.loadBalancerRequestId];
    if (!seen || seen.state === 'WAITING') {
      const deadline = progress.deadline ?? plan.now;
      if (plan.now >= deadline) {
        const message = reasons.lbTimedOut(deploy.loadBalancerTimeoutSeconds);
        ctx.end('FAILED', message, [{ reason: 'LOAD_BALANCER_UPDATE_FAILED', message }]);
        return false;
      }
      plan.wake(deadline);
      return false;
    }
    const finished = { ...op, state: seen.state, ...(seen.message ? { message: seen.message } : {}) };
    progress.pendingLbUpdate = undefined;
    progress.lbUpdates.push(finished);
    recordLbState(ctx, finished.add, 'add', finished.loadBalancerRequestId, seen.state);
    recordLbState(ctx, finished.remove, 'remove', finished.loadBalancerRequestId, seen.state);
    if (seen.state !== 'SUCCESS') {
      const message = reasons.lbFailed(seen.message);
      ctx.end('FAILED', message, [{ reason: 'LOAD_BALANCER_UPDATE_FAILED', message }]);
      return false;
    }
    progress.stepReadyAt = plan.now;
    progress.deadline = undefined;
    ctx.enter('ACCEPTANCE', `LB operation ${op.loadBalancerRequestId} succeeded`, 'step is healthy and in the LB');
    return true;
  }

  const add = healthyNew(ctx).filter((t) => !touchesLb(t));
  const remove = progress.canary ? [] : ctx.oldTasks().filter(touchesLb);
  if (add.length === 0 && remove.length === 0 && healthyNew(ctx).every(inLb)) {
    progress.stepReadyAt = plan.now;
    ctx.enter('ACCEPTANCE', 'every new task already in the LB', 'step is healthy and in the LB');
    return true;
  }
  if (add.length === 0 && remove.length === 0) {
    // An earlier ADD of ours is still settling (recorded on the task); look again soon.
    plan.wake(plan.now + 250);
    return false;
  }
  const operationId = `${pending.requestId}-${pending.deployId}-lb${progress.lbUpdates.length + 1}`;
  const update = {
    loadBalancerRequestId: operationId,
    state: 'WAITING' as const,
    add: add.map((t) => t.taskId.id),
    remove: remove.map((t) => t.taskId.id),
    startedAt: plan.now,
  };
  progress.pendingLbUpdate = update;
  progress.deadline = plan.now + deploy.loadBalancerTimeoutSeconds * 1000;
  recordLbState(ctx, update.add, 'add', operationId, 'WAITING');
  recordLbState(ctx, update.remove, 'remove', operationId, 'WAITING');
  plan.act({ kind: 'lbApply', operationId, add: update.add, remove: update.remove });
  ctx.log(
    `${add.length} new task(s) healthy and not in the LB`,
    `LB ${operationId}: add ${add.length}, remove ${remove.length}`,
    progress.canary ? 'canary: add the step, old tasks leave one by one' : 'atomic swap: add all new, remove all old',
  );
  plan.wake(progress.deadline);
  return false;
}

function recordLbState(
  ctx: DeployStepContext,
  taskIds: string[],
  which: 'add' | 'remove',
  operationId: string,
  state: 'WAITING' | 'SUCCESS' | 'FAILED' | 'CANCELED',
): void {
  const all = [...ctx.newTasks(), ...ctx.oldTasks()];
  for (const id of taskIds) {
    const task = all.find((t) => t.taskId.id === id);
    if (!task) continue;
    const next: TaskRecord = { ...task, lb: { ...task.lb, [which]: { operationId, state, timestamp: ctx.plan.now } } };
    ctx.plan.putTask(next);
  }
}
