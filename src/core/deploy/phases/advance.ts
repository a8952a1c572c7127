import { reasons } from '../reasons.ts';
import { calculateStepTargets } from '../targets.ts';
import type { PhaseInput, PhaseResult } from '../phase.ts';
import { trafficTargets } from '../traffic.ts';
import type { DeployProgress, TrafficPlan } from '../types.ts';

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
  const traffic = accepted.traffic;
  if (traffic) return advanceTraffic(input, accepted, traffic.plan);
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
      ...freshStep(now),
    },
    to: 'LAUNCH',
    observed: `step accepted with ${target} new task(s)`,
    reason: toRetire.length > 0 ? `retire old #${toRetire.join(', #')}; next target ${next}` : `next target ${next}`,
  };
}

/**
 * Traffic steps keep every old task in the LB (the shares are planned against them), so an
 * advance retires none; the step after the last traffic step ends the deploy SUCCEEDED, and
 * the request step retires the old tasks once every new one serves.
 */
function advanceTraffic(input: PhaseInput, accepted: DeployProgress, plan: TrafficPlan): PhaseResult {
  const { now, instances } = input;
  if (accepted.step >= accepted.totalSteps) {
    return { progress: accepted, end: { state: 'SUCCEEDED', message: reasons.succeeded(accepted.step, accepted.totalSteps) } };
  }
  const step = accepted.step + 1;
  const next = trafficTargets(plan, instances)[step - 1] ?? instances;
  const share = plan.steps[step - 1];
  return {
    progress: {
      ...accepted,
      step,
      targetActiveInstances: next,
      ...freshStep(now),
      traffic: { plan },
    },
    to: 'LAUNCH',
    observed: `traffic step ${accepted.step} accepted`,
    reason: share
      ? `next: ${share.percent} % of the requests to ${next} new task(s) at weight ${share.newWeight}`
      : `next: every instance (${next}) at the normal weight`,
  };
}

/** A step's own state, as it is when the step starts. */
function freshStep(
  now: number,
): Pick<DeployProgress, 'stepStartedAt' | 'stepReadyAt' | 'stepFailures' | 'stepLaunchComplete' | 'deadline' | 'stepAcceptanceResults'> {
  return {
    stepStartedAt: now,
    stepReadyAt: undefined,
    stepFailures: 0,
    stepLaunchComplete: false,
    deadline: undefined,
    stepAcceptanceResults: {},
  };
}
