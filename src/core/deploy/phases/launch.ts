import { launchAction, launchTasks, servingNew, stepDeadline, type DecisionDraft, type PhaseInput, type PhaseResult } from '../phase.ts';

/**
 * LAUNCH: create the missing new tasks of the step's target, then wait for health. More than
 * a pass may create (launchBatchSize) are created over several passes, staying in LAUNCH.
 */
export function stepLaunch(input: PhaseInput): PhaseResult {
  const { progress, now, deploy } = input;
  const target = progress.targetActiveInstances;
  const missing = target - servingNew(input).length;
  const launched = missing > 0 ? launchTasks(input, missing) : { tasks: [], actions: [] };
  const decisions: DecisionDraft[] =
    launched.tasks.length > 0
      ? [
          {
            kind: 'TASKS_LAUNCHED',
            taskIds: launched.tasks.map((t) => t.taskId.id),
            observed: `${target - missing} of ${target} new tasks running`,
            action: launchAction(launched.tasks),
            reason: `step ${progress.step} of ${progress.totalSteps} targets ${target} new task(s)`,
          },
        ]
      : [];
  const deadline = progress.deadline ?? stepDeadline(deploy, progress.stepStartedAt);
  const effects = { tasks: launched.tasks, actions: launched.actions, decisions };
  if (launched.tasks.length < missing) {
    return {
      ...effects,
      progress: { ...progress, deadline },
      wait: { why: `${target - missing + launched.tasks.length} of ${target} new tasks created; the rest in the next pass`, until: now },
    };
  }
  return {
    ...effects,
    progress: { ...progress, stepLaunchComplete: true, deadline },
    to: 'HEALTH',
    observed: `${target} task(s) launched`,
    reason: 'wait until every new task is healthy',
    wakeAt: deadline,
  };
}
