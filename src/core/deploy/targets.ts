import type { CanaryDeploySettings } from '../model.ts';

/**
 * Step targets (new-deploy task counts) of a deploy. Canary off: one step of all instances.
 * Canary on: k × group for k = 1 … while k < cycles, then all instances.
 * Group 1, 3 cycles, 10 instances → 1, 2, 3, 10.
 */
export function calculateStepTargets(instances: number, canary: CanaryDeploySettings): number[] {
  if (!canary.enableCanaryDeploy) return [instances];
  const targets: number[] = [];
  for (let k = 1; k <= canary.canaryCycleCount; k++) {
    const target = Math.min(k * canary.instanceGroupSize, instances);
    if (target >= instances) break;
    if (targets.at(-1) !== target) targets.push(target);
  }
  targets.push(instances);
  return targets;
}
