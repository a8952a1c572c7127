import { reasons } from '../reasons.ts';
import { calculateStepTargets } from '../targets.ts';
import type { DeployStepContext } from '../step.ts';

/**
 * ADVANCE: the step is accepted. Retire as many old instances as it added (lowest numbers
 * first; the request step drains and stops them), then start the next step — or, after the
 * last one, end SUCCEEDED.
 */
export function stepAdvance(ctx: DeployStepContext): boolean {
  const { progress, plan, deploy, obs } = ctx;
  const target = Math.min(progress.targetActiveInstances, ctx.instances);
  const added = Math.max(0, target - progress.currentActiveInstances);
  progress.currentActiveInstances = target;

  if (target >= ctx.instances) {
    ctx.end('SUCCEEDED', reasons.succeeded(progress.step, progress.totalSteps));
    return false;
  }

  const oldCount = obs.request.instances;
  const retired = new Set(progress.retiredOldInstances);
  const toRetire: number[] = [];
  for (let n = 1; n <= oldCount && toRetire.length < added; n++) if (!retired.has(n)) toRetire.push(n);
  progress.retiredOldInstances.push(...toRetire);

  const next = calculateStepTargets(ctx.instances, deploy.canaryDeploySettings).find((t) => t > target) ?? ctx.instances;
  const remaining = calculateStepTargets(ctx.instances, deploy.canaryDeploySettings).filter((t) => t > target).length;
  progress.step += 1;
  progress.totalSteps = progress.step + Math.max(0, remaining - 1);
  progress.targetActiveInstances = next;
  progress.stepStartedAt = plan.now;
  progress.stepReadyAt = undefined;
  progress.stepFailures = 0;
  progress.stepLaunchComplete = false;
  progress.deadline = undefined;
  progress.stepAcceptanceResults = {};
  ctx.enter(
    'LAUNCH',
    `step accepted with ${target} new task(s)`,
    toRetire.length > 0 ? `retire old #${toRetire.join(', #')}; next target ${next}` : `next target ${next}`,
  );
  return true;
}
