import { reasons } from '../reasons.ts';
import { healthyNew, launchTasks, servingNew, targetRequest, type DeployStepContext } from '../step.ts';
import type { DeployFailure } from '../types.ts';

/** HEALTH: every new task of the target healthy; replace allowed failures; OVERDUE at the deadline. */
export function stepHealth(ctx: DeployStepContext): boolean {
  const { progress, plan, deploy, obs } = ctx;
  const target = progress.targetActiveInstances;
  const missing = target - servingNew(ctx).length;
  if (missing > 0) {
    const created = launchTasks(ctx, missing);
    ctx.log(
      `${missing} new task(s) missing`,
      `launch ${created.map((t) => `#${t.taskId.instanceNo}`).join(', ')}`,
      'replace failed task(s)',
    );
  }
  const ready = healthyNew(ctx).length;
  if (ready >= target) {
    const request = targetRequest(obs);
    if (request.loadBalanced) {
      ctx.enter('LB_UPDATE', `${ready} of ${target} new task(s) healthy`, 'put the step in the load balancer');
    } else {
      progress.stepReadyAt = plan.now;
      ctx.enter('ACCEPTANCE', `${ready} of ${target} new task(s) healthy`, 'step is ready; run acceptance');
    }
    return true;
  }
  const deadline = progress.deadline ?? plan.now;
  if (plan.now >= deadline) {
    const serving = servingNew(ctx);
    const unplaced = serving.filter((t) => t.handle === undefined);
    const seconds = Math.round((deadline - progress.stepStartedAt) / 1000);
    if (unplaced.length > 0) {
      const launched = serving.length - unplaced.length;
      const message = reasons.couldNotLaunch(launched, target);
      const failures: DeployFailure[] = unplaced.map((t) => ({
        reason: 'TASK_COULD_NOT_BE_SCHEDULED',
        taskId: t.taskId,
        message: t.waitingReason ? `${message}: ${t.waitingReason}` : message,
      }));
      ctx.end('OVERDUE', message, failures);
    } else {
      const failures: DeployFailure[] = serving
        .filter((t) => t.health.state !== 'HEALTHY')
        .map((t) => ({
          reason: t.state === 'TASK_RUNNING' ? 'TASK_FAILED_HEALTH_CHECKS' : 'TASK_NEVER_ENTERED_RUNNING',
          taskId: t.taskId,
          message: reasons.neverHealthy(t.taskId.id),
        }));
      ctx.end('OVERDUE', reasons.overdue(seconds), failures);
    }
    return false;
  }
  void deploy;
  plan.wake(deadline);
  return false;
}
