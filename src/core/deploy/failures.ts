import { isLive, type TaskRecord } from '../model.ts';
import { markCleanup } from '../tasks.ts';
import { newTasks, type DecisionDraft, type End, type PhaseEffects, type PhaseInput } from './phase.ts';
import { describeExit, reasons } from './reasons.ts';
import type { DeployFailure } from './types.ts';

/**
 * New-task deaths and unhealthy verdicts not yet counted: each is counted against
 * allowedTasksFailuresPerGroup (an unhealthy task is also marked for cleanup). One too many
 * ends the deploy; a death after the step was healthy sends it back to LAUNCH to replace it.
 */
export function assessFailures(input: PhaseInput): PhaseEffects & { end?: End['end']; replace?: { observed: string; reason: string } } {
  const { progress, deploy, now } = input;
  const counted = new Set(progress.failedDeployTasks.map((t) => t.id));
  const allowed = deploy.canaryDeploySettings.allowedTasksFailuresPerGroup;
  const failures: DeployFailure[] = [];
  const cleanups: TaskRecord[] = [];
  const decisions: DecisionDraft[] = [];
  let stepFailures = progress.stepFailures;
  for (const task of newTasks(input)) {
    if (counted.has(task.taskId.id)) continue;
    let failure: DeployFailure | undefined;
    if (isLive(task.state) && !task.cleanup && task.health.state === 'UNHEALTHY') {
      const marked = markCleanup(task, 'UNHEALTHY', now, task.health.message);
      if (marked) cleanups.push(marked);
      failure = {
        reason: 'TASK_FAILED_HEALTH_CHECKS',
        taskId: task.taskId,
        message: task.health.message ?? reasons.neverHealthy(task.taskId.id),
      };
    } else if (!isLive(task.state) && !task.cleanup) {
      const reason =
        task.state === 'TASK_FINISHED'
          ? 'TASK_EXPECTED_RUNNING_FINISHED'
          : task.state === 'TASK_LOST' && task.runningAt === undefined
            ? 'TASK_NEVER_ENTERED_RUNNING'
            : 'TASK_FAILED_ON_STARTUP';
      const how =
        task.state === 'TASK_ERROR'
          ? `could not start (${task.updates.at(-1)?.message ?? 'error'})`
          : task.state === 'TASK_LOST'
            ? 'was lost'
            : describeExit(task.exitCode, task.signal);
      failure = { reason, taskId: task.taskId, message: reasons.taskFailed(task.taskId.id, how) };
    }
    if (!failure) continue;
    stepFailures += 1;
    failures.push(failure);
    decisions.push({
      kind: 'TASK_FAILED',
      taskId: task.taskId.id,
      failure: failure.reason,
      observed: failure.message,
      action: 'count failure',
      reason:
        stepFailures > allowed
          ? `failure ${stepFailures} in this step; it tolerates ${allowed} (allowedTasksFailuresPerGroup)`
          : `failure ${stepFailures} of the ${allowed} this step tolerates (allowedTasksFailuresPerGroup)`,
    });
  }
  const effects: PhaseEffects = {
    progress:
      failures.length > 0
        ? { ...progress, failedDeployTasks: [...progress.failedDeployTasks, ...failures.map((f) => f.taskId!)], stepFailures }
        : progress,
    tasks: cleanups,
    decisions,
  };
  if (stepFailures > allowed && failures.length > 0) {
    const message = allowed > 0 ? reasons.tooManyFailures(allowed) : (failures[0]?.message ?? 'Task failed');
    return { ...effects, end: { state: 'FAILED', message, failures } };
  }
  if (failures.length > 0 && progress.phase !== 'LAUNCH' && progress.phase !== 'HEALTH') {
    // A task died after its step was healthy: go back and replace it before moving on.
    return {
      ...effects,
      progress: { ...effects.progress, stepReadyAt: undefined },
      replace: { observed: `${failures.length} task(s) failed`, reason: 'replace failed tasks (allowed by allowedTasksFailuresPerGroup)' },
    };
  }
  return effects;
}
