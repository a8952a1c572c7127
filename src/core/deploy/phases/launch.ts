import { launchTasks, servingNew, stepDeadline, type DeployStepContext } from '../step.ts';

/** LAUNCH: create the missing new tasks of the step's target, then wait for health. */
export function stepLaunch(ctx: DeployStepContext): boolean {
  const { progress, plan, deploy } = ctx;
  const missing = progress.targetActiveInstances - servingNew(ctx).length;
  if (missing > 0) {
    const created = launchTasks(ctx, missing);
    ctx.log(
      `${progress.targetActiveInstances - missing} of ${progress.targetActiveInstances} new tasks running`,
      `launch ${created.map((t) => `#${t.taskId.instanceNo}`).join(', ')}`,
      `step ${progress.step} of ${progress.totalSteps} targets ${progress.targetActiveInstances} new task(s)`,
    );
  }
  progress.stepLaunchComplete = true;
  progress.deadline ??= stepDeadline(deploy, progress.stepStartedAt);
  ctx.enter('HEALTH', `${progress.targetActiveInstances} task(s) launched`, 'wait until every new task is healthy');
  plan.wake(progress.deadline);
  return true;
}
