import { reasons } from '../reasons.ts';
import {
  healthyNew,
  launchAction,
  launchTasks,
  servingNew,
  targetRequest,
  type DecisionDraft,
  type PhaseInput,
  type PhaseResult,
} from '../phase.ts';
import type { DeployFailure } from '../types.ts';

/** HEALTH: every new task of the target healthy; replace allowed failures; OVERDUE at the deadline. */
export function stepHealth(input: PhaseInput): PhaseResult {
  const { progress, now, obs } = input;
  const target = progress.targetActiveInstances;
  const missing = target - servingNew(input).length;
  const launched = missing > 0 ? launchTasks(input, missing) : { tasks: [], actions: [] };
  const decisions: DecisionDraft[] =
    launched.tasks.length > 0
      ? [
          {
            kind: 'TASKS_LAUNCHED',
            taskIds: launched.tasks.map((t) => t.taskId.id),
            observed: `${missing} new task(s) missing`,
            action: launchAction(launched.tasks),
            reason: 'replace failed task(s)',
          },
        ]
      : [];
  // More to create than one pass may: the rest at once, in the next pass.
  const effects = {
    tasks: launched.tasks,
    actions: launched.actions,
    decisions,
    ...(launched.tasks.length < missing ? { wakeAt: now } : {}),
  };
  const after = { ...input, tasks: input.tasks.with(launched.tasks) };

  const ready = healthyNew(after).length;
  if (ready >= target) {
    const observed = `${ready} of ${target} new task(s) healthy`;
    if (targetRequest(obs).loadBalanced) {
      return { ...effects, progress, to: 'LB_UPDATE', observed, reason: 'put the step in the load balancer' };
    }
    return { ...effects, progress: { ...progress, stepReadyAt: now }, to: 'ACCEPTANCE', observed, reason: 'step is ready; run acceptance' };
  }
  const deadline = progress.deadline ?? now;
  if (now < deadline) {
    return { ...effects, progress, wait: { why: `${ready} of ${target} new task(s) healthy`, until: deadline } };
  }
  const serving = servingNew(after);
  // Waiting for a host is not being scheduled; a start still in flight (or held by the crash-loop
  // backoff) is a task that never entered running, reported below as such.
  const unplaced = serving.filter((t) => t.handle === undefined && t.waitingReason !== undefined);
  if (unplaced.length > 0) {
    const message = reasons.couldNotLaunch(serving.length - unplaced.length, target);
    const failures: DeployFailure[] = unplaced.map((t) => ({
      reason: 'TASK_COULD_NOT_BE_SCHEDULED',
      taskId: t.taskId,
      message: t.waitingReason ? `${message}: ${t.waitingReason}` : message,
    }));
    return { ...effects, progress, end: { state: 'OVERDUE', message, failures } };
  }
  const failures: DeployFailure[] = serving
    .filter((t) => t.health.state !== 'HEALTHY')
    .map((t) => ({
      reason: t.state === 'TASK_RUNNING' ? 'TASK_FAILED_HEALTH_CHECKS' : 'TASK_NEVER_ENTERED_RUNNING',
      taskId: t.taskId,
      message: reasons.neverHealthy(t.taskId.id),
    }));
  const seconds = Math.round((deadline - progress.stepStartedAt) / 1000);
  return { ...effects, progress, end: { state: 'OVERDUE', message: reasons.overdue(seconds), failures } };
}
