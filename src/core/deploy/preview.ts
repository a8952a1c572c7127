/*
 * The dry run of a deploy (POST /api/deploys/plan): the steps the state machine will walk
 * and how long that can take, computed from the deploy and its request alone — no tasks, no
 * clock. It follows the same rules as step.ts (targets.ts for the step sizes, stepDeadline
 * for the OVERDUE bound, the phases' timeouts), so what the preview shows is what will run.
 */
import type { AcceptanceMode, Deploy, FledgeRequest } from '../model.ts';
import { calculateStepTargets } from './targets.ts';
import { stepDeadline } from './phase.ts';

export interface PreviewStep {
  /** 1-based */
  step: number;
  /** new-deploy tasks wanted by the end of the step */
  targetActiveInstances: number;
  /** new-deploy tasks this step starts */
  newInstances: number;
  /** old-deploy tasks still running once the step is done (after its advance) */
  oldInstances: number;
  /** tasks in the load balancer while the step's acceptance runs: the split being judged */
  loadBalanced: { new: number; old: number };
  acceptance: { mode: AcceptanceMode; waitMillis: number; checks: string[] };
}

export interface DeployPreview {
  steps: PreviewStep[];
  /**
   * min: the soonest the deploy can succeed — every task healthy at its first probe, every
   * LB operation and check answered at once — so only what the deploy makes it wait for
   * counts: startup delays, TIMED waits, plus a small per-step overhead. It is a floor,
   * not a forecast.
   * max: the latest it can still be running before a deadline ends it — each step's OVERDUE
   * deadline (deployHealthTimeoutSeconds + health window), the LB timeout when load
   * balanced, and the acceptance wait or timeout. Past it the deploy has ended one way or
   * the other.
   */
  etaSeconds: { min: number; max: number };
}

export interface PreviewSettings {
  /** names of server-wide acceptance hooks that apply to every CHECKS deploy */
  serverChecks: string[];
  /** the request once the deploy succeeds (a deploy body's updatedRequest); else `request` */
  updatedRequest?: FledgeRequest;
}

/**
 * Spawning a task, its first probe and the loop's reaction: a few tens of milliseconds on a
 * local machine (bench/deploy-latency.ts measures it). Only the floor uses it.
 */
export const STEP_OVERHEAD_MILLIS = 50;

/**
 * `request` is the request as it is now (its instances are the old deploy's tasks); the
 * target instance count is `settings.updatedRequest ?? request`'s. Without `activeDeploy`
 * there are no old tasks to replace.
 */
export function previewDeploy(
  deploy: Deploy,
  request: FledgeRequest,
  activeDeploy: Deploy | undefined,
  settings: PreviewSettings,
): DeployPreview {
  const target = settings.updatedRequest ?? request;
  const canary = deploy.canaryDeploySettings;
  const targets = calculateStepTargets(target.instances, canary);
  const lb = target.loadBalanced;
  const mode = canary.acceptanceMode;
  const checks = mode === 'CHECKS' ? [...settings.serverChecks, ...deploy.acceptanceChecks.map((c) => c.name)] : [];
  const waitMillis = mode === 'TIMED' ? canary.waitMillisBetweenGroups : 0;

  const oldCount = activeDeploy ? request.instances : 0;
  let retired = 0;
  let previous = 0;
  const steps: PreviewStep[] = targets.map((targetActiveInstances, i) => {
    const last = i === targets.length - 1;
    const added = targetActiveInstances - previous;
    previous = targetActiveInstances;
    const oldBefore = oldCount - retired;
    // Canary off swaps atomically, so the old tasks leave the LB as the new ones enter it.
    const oldInLb = lb && canary.enableCanaryDeploy ? oldBefore : 0;
    // An advance retires as many old tasks as the step added; the last one retires the rest.
    retired = last ? oldCount : Math.min(oldCount, retired + added);
    return {
      step: i + 1,
      targetActiveInstances,
      newInstances: added,
      oldInstances: oldCount - retired,
      loadBalanced: { new: lb ? targetActiveInstances : 0, old: oldInLb },
      acceptance: { mode, waitMillis, checks: [...checks] },
    };
  });

  const perStepMin = STEP_OVERHEAD_MILLIS + healthFloorMillis(deploy, request) + waitMillis;
  const acceptanceMax =
    mode === 'TIMED'
      ? waitMillis
      : mode === 'MANUAL' || (mode === 'CHECKS' && checks.length > 0)
        ? deploy.acceptanceTimeoutSeconds * 1000
        : 0;
  const perStepMax = stepDeadline(deploy, 0) + (lb ? deploy.loadBalancerTimeoutSeconds * 1000 : 0) + acceptanceMax;
  return {
    steps,
    etaSeconds: { min: toSeconds(perStepMin * steps.length), max: toSeconds(perStepMax * steps.length) },
  };
}

/** What a new task must wait before it can count as healthy, however fast it starts. */
function healthFloorMillis(deploy: Deploy, request: FledgeRequest): number {
  if (request.skipHealthchecks || deploy.skipHealthchecksOnDeploy) return 0;
  if (!deploy.healthcheck) return Math.round(deploy.considerHealthyAfterRunningForSeconds * 1000);
  return Math.round(deploy.healthcheck.startupDelaySeconds * 1000);
}

const toSeconds = (millis: number) => Math.round(millis) / 1000;
