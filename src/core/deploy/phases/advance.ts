import { reasons } from '../reasons.ts';
import { calculateStepTargets } from '../targets.ts';
import type { PhaseInput, PhaseResult } from '../phase.ts';

/**
 * ADVANCE: the step is accepted. Retire as many old instances as it added (lowest numbers
 * first; the request step drains and stops them), then start the next step — or, after the
 * last one, end SUCCEEDED.
 */
export function stepAdvance(input: PhaseInput): PhaseResult {
  const { now, deploy, obs, instances } = input;
  const target = Math.min(input.progress.targetActiveInstances, instances);
  const added = Math.max(0, target - input.progress.currentActiveInstances);
  const accepted = { ...input.progress, currentActiveInstances: target };
  if (target >= instances) {
    return { progress: accepted, end: { state: 'SUCCEEDED', message: reasons.succeeded(accepted.step, accepted.totalSteps) } };
  }

  const oldCount = obs.request.instances;
  const retired = new Set(accepted.retiredOldInstances);
  const toRetire: number[] = [];
  for (let n = 1; n <= oldCount && toRetire.length < added; n++) if (!retired.has(n)) toRetire.push(n);

  const later = calculateStepTargets(instances, deploy.canaryDeploySettings).filter((t) => t > target);
  const next = later[0] ?? instances;
  const step = accepted.step + 1;
  return {
    progress: {
      ...accepted,
      retiredOldInstances: [...accepted.retiredOldInstances, ...toRetire],
      step,
      totalSteps: step + Math.max(0, later.length - 1),
      targetActiveInstances: next,
      stepStartedAt: now,
      stepReadyAt: undefined,
      stepFailures: 0,
      stepLaunchComplete: false,
      deadline: undefined,
      stepAcceptanceResults: {},
    },
    to: 'LAUNCH',
    observed: `step accepted with ${target} new task(s)`,
    reason: toRetire.length > 0 ? `retire old #${toRetire.join(', #')}; next target ${next}` : `next target ${next}`,
  };
}
