/*
 * Traffic steps (canaryDeploySettings.trafficSteps, e.g. [1, 5, 25, 50]): each is a deploy
 * step whose new tasks together get that percent of the service's requests, through upstream
 * weights, whatever the instance counts; one more step then completes the deploy as a canary
 * does today (every new task at the normal weight, the old ones retired once it succeeded).
 *
 * Weights: old tasks keep the balancers' normal weight (NORMAL_WEIGHT); the new tasks of a
 * step all get one weight w, so with `old` old and `n` new tasks the new deploy's share is
 * n·w / (n·w + old·NORMAL_WEIGHT), and one new task carries w / NORMAL_WEIGHT times an old
 * task's load. A step launches the fewest new tasks that keep that ratio within
 * maxLoadPerTaskRatio; one that would need more than the deploy's instances is refused.
 *
 * Truth: a step with a share passes acceptance only once the balancer's own counters show
 * the new deploy got that share (judgeShare). Normal approximation of the binomial at 99.9 %
 * confidence; the sample must be large enough that the tolerance is at most half the share,
 * so no share of 0 (or twice the intended one) can ever pass.
 */
import type { CanaryDeploySettings } from '../model.ts';
import type { DeployProgress, TrafficPlan, TrafficStepPlan } from './types.ts';

/** The weight an upstream gets when it does not say; the balancers' DEFAULT_UPSTREAM_WEIGHT. */
export const NORMAL_WEIGHT = 100;
/** HAProxy's (and so every balancer's) largest weight. */
export const MAX_WEIGHT = 256;
export const DEFAULT_MAX_LOAD_PER_TASK_RATIO = 2;
/** a new task can carry at most MAX_WEIGHT / NORMAL_WEIGHT times an old task's load */
export const MAX_LOAD_PER_TASK_RATIO = MAX_WEIGHT / NORMAL_WEIGHT;
export const MAX_TRAFFIC_STEPS = 20;
/** the share integer weights give may differ from the one asked for by this much, relative */
const MAX_WEIGHT_ERROR = 0.1;

/** z for a two-sided 99.9 % interval */
export const SHARE_Z = 3.29;
/** fewest requests any share is judged on */
export const MIN_SHARE_SAMPLE = 500;

export type PlanResult = { plan: TrafficPlan } | { problem: string; field: string };

export function usesTrafficSteps(canary: CanaryDeploySettings): boolean {
  return canary.enableCanaryDeploy && (canary.trafficSteps?.length ?? 0) > 0;
}

const pct = (share: number) => `${Number((share * 100).toPrecision(3))} %`;

/**
 * The plan of a deploy with trafficSteps: `oldTasks` old tasks stay in the LB while new
 * tasks (at most `instances`) take each step's share. No old tasks (a first deploy): no
 * traffic steps, the deploy goes to every instance at once.
 */
export function planTraffic(percents: readonly number[], oldTasks: number, instances: number, maxRatio: number): PlanResult {
  if (oldTasks === 0) return { plan: { oldTasks, steps: [] } };
  const maxWeight = Math.min(MAX_WEIGHT, Math.floor(maxRatio * NORMAL_WEIGHT + 1e-9));
  const steps: TrafficStepPlan[] = [];
  for (const [i, percent] of percents.entries()) {
    const field = `deploy.canaryDeploySettings.trafficSteps[${i}]`;
    const s = percent / 100;
    let chosen: TrafficStepPlan | undefined;
    for (let n = Math.max(1, steps.at(-1)?.newTasks ?? 1); n <= instances; n++) {
      const exact = (s * oldTasks * NORMAL_WEIGHT) / (n * (1 - s));
      const w = Math.round(exact);
      if (w > maxWeight) continue;
      if (w < 1) {
        return {
          field,
          problem: `${percent} % cannot be given with integer weights: ${n} new task(s) beside ${oldTasks} old ones would need weight ${exact.toFixed(2)} (at least 1, old tasks ${NORMAL_WEIGHT})`,
        };
      }
      const share = (n * w) / (n * w + oldTasks * NORMAL_WEIGHT);
      if (Math.abs(share - s) > MAX_WEIGHT_ERROR * s) {
        return {
          field,
          problem: `${percent} % cannot be given closely with integer weights: ${n} new task(s) at weight ${w} beside ${oldTasks} old at ${NORMAL_WEIGHT} give ${pct(share)}`,
        };
      }
      chosen = { percent, newTasks: n, newWeight: w, share, loadRatio: w / NORMAL_WEIGHT };
      break;
    }
    if (!chosen) {
      const need = (s * oldTasks) / (instances * (1 - s));
      return {
        field,
        problem: `${percent} % of the requests would give each new task ${need.toFixed(2)}× an old task's load even with all ${instances} new instance(s) beside ${oldTasks} old (maxLoadPerTaskRatio ${maxRatio})`,
      };
    }
    steps.push(chosen);
  }
  return { plan: { oldTasks, steps } };
}

/** Step targets (new tasks wanted by the end of each step) of a traffic plan: its steps, then all. */
export function trafficTargets(plan: TrafficPlan, instances: number): number[] {
  return [...plan.steps.map((s) => Math.min(s.newTasks, instances)), instances];
}

/** The traffic step the deploy is in, or undefined (no traffic steps, or the final step). */
export function currentTrafficStep(progress: Pick<DeployProgress, 'step' | 'traffic'> | undefined): TrafficStepPlan | undefined {
  return progress?.traffic?.plan.steps[progress.step - 1];
}

/**
 * The weight a task of `deployId` is given in the LB while `pending` runs: the step's weight
 * for the new deploy's tasks during a traffic step; undefined (the normal weight) otherwise.
 * The executor puts it on every upstream it applies, so a restarted balancer gets it back.
 */
export function upstreamWeightFor(
  pending: { deployId: string; progress: Pick<DeployProgress, 'step' | 'traffic'> } | undefined,
  deployId: string,
): number | undefined {
  const step = currentTrafficStep(pending?.progress);
  return step && pending?.deployId === deployId ? step.newWeight : undefined;
}

/** Requests needed to judge `share`: the tolerance is then at most half of it. */
export function requiredSample(share: number): number {
  return Math.max(MIN_SHARE_SAMPLE, Math.ceil((4 * SHARE_Z * SHARE_Z * (1 - share)) / share));
}

export interface ShareVerdict {
  state: 'PENDING' | 'SUCCEEDED' | 'FAILED';
  message: string;
  observed?: number;
  tolerance: number;
}

const num = (n: number) => n.toLocaleString('en-US');

/** Did the new deploy get `share` of the requests? newRequests of requests, since the weights were applied. */
export function judgeShare(newRequests: number, requests: number, share: number): ShareVerdict {
  const needed = requiredSample(share);
  const tolerance = SHARE_Z * Math.sqrt((share * (1 - share)) / Math.max(requests, needed));
  const intended = `intended ${pct(share)} ± ${pct(tolerance)}`;
  if (requests < needed) {
    return {
      state: 'PENDING',
      tolerance,
      message: `new got ${num(newRequests)} of ${num(requests)} requests; ${num(needed)} needed to judge ${pct(share)}: waiting`,
    };
  }
  const observed = newRequests / requests;
  const ok = Math.abs(observed - share) <= tolerance;
  return {
    state: ok ? 'SUCCEEDED' : 'FAILED',
    observed,
    tolerance,
    message: `new got ${pct(observed)} of ${num(requests)} requests, ${intended}: ${ok ? 'OK' : 'FAILED'}`,
  };
}
