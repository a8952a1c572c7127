/*
 * The dry run of a deploy (POST /api/deploys/plan): the steps the state machine will walk
 * and how long that can take, computed from the deploy and its request alone — no tasks, no
 * clock. It follows the same rules as step.ts (targets.ts for the step sizes, stepDeadline
 * for the OVERDUE bound, the phases' timeouts), so what the preview shows is what will run.
 */
import type { AcceptanceMode, Deploy, FledgeRequest } from '../model.ts';
import { calculateStepTargets } from './targets.ts';
import {
  DEFAULT_MAX_LOAD_PER_TASK_RATIO,
  NORMAL_WEIGHT,
  planTraffic,
  requiredSample,
  trafficTargets,
  usesTrafficSteps,
} from './traffic.ts';
import type { TrafficPlan } from './types.ts';
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
  /** the new deploy's share of the requests then (by task count, or a traffic step's weights); null without an LB */
  trafficShare: number | null;
  /** a traffic step: the weights that give the share, and the fewest requests it is judged on */
  traffic?: { percent: number; newWeight: number; oldWeight: number; loadRatio: number; minRequests: number };
  acceptance: { mode: AcceptanceMode; waitMillis: number; checks: string[] };
  /** what the step waits for once its tasks serve */
  waitsFor: 'nothing' | 'approval' | 'timer' | 'checks';
  /** what the step does, in words */
  description: string;
}

/** Machine time apart from the waits for people and timers. */
export interface PreviewEstimate {
  /** spawning, health probes and LB changes of one step (a floor-ish typical value) */
  workSecondsPerStep: number;
  workSeconds: number;
  /** TIMED waits, in all */
  timerSeconds: number;
  /** steps that wait for a person (MANUAL acceptance, or a manual check) */
  approvals: number;
  /** how long one such wait may last before the deploy fails */
  approvalTimeoutSeconds?: number;
  /** steps that wait for acceptance checks */
  checkSteps: number;
  /** "4 steps, each waits for your approval; about 0.6 s of work per step" */
  summary: string;
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
   * balanced, and the acceptance wait or timeout — but not the time a person takes to
   * approve a MANUAL step (estimate.approvals, each bounded by approvalTimeoutSeconds).
   */
  etaSeconds: { min: number; max: number };
  estimate: PreviewEstimate;
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
  const oldTasks = activeDeploy ? request.instances : 0;
  const planned =
    usesTrafficSteps(canary) && target.loadBalanced
      ? planTraffic(canary.trafficSteps ?? [], oldTasks, target.instances, canary.maxLoadPerTaskRatio ?? DEFAULT_MAX_LOAD_PER_TASK_RATIO)
      : undefined;
  const trafficPlan: TrafficPlan | undefined = planned && 'plan' in planned && planned.plan.steps.length > 0 ? planned.plan : undefined;
  const targets = trafficPlan ? trafficTargets(trafficPlan, target.instances) : calculateStepTargets(target.instances, canary);
  const lb = target.loadBalanced;
  const mode = canary.acceptanceMode;
  const checks = mode === 'CHECKS' ? [...settings.serverChecks, ...deploy.acceptanceChecks.map((c) => c.name)] : [];
  const waitMillis = mode === 'TIMED' ? canary.waitMillisBetweenGroups : 0;

  const oldCount = activeDeploy ? request.instances : 0;
  const manualChecks = mode === 'CHECKS' ? deploy.acceptanceChecks.filter((c) => c.type === 'manual').length : 0;
  const waitsFor: PreviewStep['waitsFor'] =
    mode === 'MANUAL' || manualChecks > 0
      ? 'approval'
      : mode === 'TIMED' && waitMillis > 0
        ? 'timer'
        : mode === 'CHECKS' && checks.length > 0
          ? 'checks'
          : 'nothing';
  const words = {
    newId: deploy.id,
    oldId: activeDeploy?.id,
    advance: `fledge deploy advance ${deploy.requestId} ${deploy.id}`,
    acceptanceTimeout: deploy.acceptanceTimeoutSeconds * 1000,
    waitMillis,
    checks,
  };
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
    // Traffic steps keep every old task until the last step.
    retired = last ? oldCount : trafficPlan ? 0 : Math.min(oldCount, retired + added);
    const lbNew = lb ? targetActiveInstances : 0;
    const share = trafficPlan?.steps[i];
    const trafficShare = share ? share.share : lb && lbNew + oldInLb > 0 ? lbNew / (lbNew + oldInLb) : null;
    return {
      step: i + 1,
      targetActiveInstances,
      newInstances: added,
      oldInstances: oldCount - retired,
      loadBalanced: { new: lbNew, old: oldInLb },
      trafficShare,
      ...(share
        ? {
            traffic: {
              percent: share.percent,
              newWeight: share.newWeight,
              oldWeight: NORMAL_WEIGHT,
              loadRatio: share.loadRatio,
              minRequests: requiredSample(share.share),
            },
          }
        : {}),
      acceptance: { mode, waitMillis, checks: [...checks] },
      waitsFor,
      description: describeStep({
        ...words,
        step: i + 1,
        total: targets.length,
        added,
        lb,
        canary: canary.enableCanaryDeploy,
        lbNew,
        oldInLb,
        oldBefore,
        retiring: oldBefore - (oldCount - retired),
        waitsFor,
        ...(share ? { share: { ...share, minRequests: requiredSample(share.share) } } : {}),
        ...(trafficPlan && !share ? { weightsBack: true } : {}),
      }),
    };
  });

  const perStepMin = STEP_OVERHEAD_MILLIS + healthFloorMillis(deploy, request) + waitMillis;
  const acceptanceMax =
    mode === 'TIMED'
      ? waitMillis
      : mode === 'MANUAL' || (mode === 'CHECKS' && checks.length > 0)
        ? deploy.acceptanceTimeoutSeconds * 1000
        : 0;
  // A person's approval is not machine time: it is bounded by the acceptance timeout, said apart.
  const perStepMax =
    stepDeadline(deploy, 0) + (lb ? deploy.loadBalancerTimeoutSeconds * 1000 : 0) + (waitsFor === 'approval' ? 0 : acceptanceMax);
  const workPerStep = STEP_OVERHEAD_MILLIS + healthFloorMillis(deploy, request) + probeMillis(deploy, request);
  const n = steps.length;
  const estimate: PreviewEstimate = {
    workSecondsPerStep: toSeconds(workPerStep),
    workSeconds: toSeconds(workPerStep * n),
    timerSeconds: toSeconds(waitMillis * n),
    approvals: waitsFor === 'approval' ? n : 0,
    ...(waitsFor === 'approval' ? { approvalTimeoutSeconds: deploy.acceptanceTimeoutSeconds } : {}),
    checkSteps: waitsFor === 'checks' ? n : 0,
    summary: summarize(n, waitsFor, waitMillis, checks, workPerStep),
  };
  return {
    steps,
    etaSeconds: { min: toSeconds(perStepMin * n), max: toSeconds(perStepMax * n) },
    estimate,
  };
}

/** The expected wait for the probe that finds a new task listening: one startup interval. */
function probeMillis(deploy: Deploy, request: FledgeRequest): number {
  if (request.skipHealthchecks || deploy.skipHealthchecksOnDeploy || !deploy.healthcheck) return 0;
  return Math.round(deploy.healthcheck.startupIntervalSeconds * 1000);
}

/** 30 s, 5 min, 1 h 30 min */
export function durationWords(millis: number): string {
  const s = millis / 1000;
  if (s < 1) return `${Math.round(s * 10) / 10} s`;
  if (s < 90) return `${Math.round(s * 10) / 10} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  const h = Math.floor(s / 3600);
  const m = Math.round((s - h * 3600) / 60);
  return m > 0 ? `${h} h ${m} min` : `${h} h`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function summarize(n: number, waitsFor: PreviewStep['waitsFor'], waitMillis: number, checks: string[], workPerStep: number): string {
  const each = n === 1 ? 'it' : 'each';
  const wait =
    waitsFor === 'approval'
      ? `${each} waits for your approval`
      : waitsFor === 'timer'
        ? `${each} waits ${durationWords(waitMillis)} before going on`
        : waitsFor === 'checks'
          ? `${each} waits for acceptance checks (${checks.join(', ')})`
          : 'no waits';
  return `${plural(n, 'step')}, ${wait}; about ${durationWords(workPerStep)} of work ${n === 1 ? 'in all' : 'per step'}`;
}

interface StepWords {
  step: number;
  total: number;
  newId: string;
  oldId: string | undefined;
  added: number;
  lb: boolean;
  canary: boolean;
  lbNew: number;
  oldInLb: number;
  /** old tasks running when the step starts */
  oldBefore: number;
  /** old tasks stopped once the step is accepted */
  retiring: number;
  waitsFor: PreviewStep['waitsFor'];
  /** a traffic step */
  share?: { percent: number; newWeight: number; share: number; loadRatio: number; minRequests: number };
  /** the step after the traffic steps: every new task back at the normal weight */
  weightsBack?: boolean;
  advance: string;
  acceptanceTimeout: number;
  waitMillis: number;
  checks: string[];
}

function describeStep(w: StepWords): string {
  const them = w.added === 1 ? 'it' : 'them';
  const parts = [w.added > 0 ? `Start ${plural(w.added, 'task')} of ${w.newId} and health-check ${them}` : `No new task to start`];
  if (w.share && w.oldId) {
    const pct = Number((w.share.share * 100).toPrecision(3));
    parts.push(
      `give ${w.newId}'s ${plural(w.lbNew, 'task')} weight ${w.share.newWeight} beside ${w.oldInLb} of ${w.oldId} at ${NORMAL_WEIGHT}: ${w.share.percent} % of requests asked, ${pct} % by these weights (each new task carries ${w.share.loadRatio}× an old task's load)`,
      `pass only once the load balancer's counters show that share (judged on at least ${w.share.minRequests.toLocaleString('en-US')} requests)`,
    );
  } else if (w.weightsBack && w.oldId) {
    parts.push(
      `add ${them} to the load balancer and put every task of ${w.newId} at the normal weight beside ${w.oldInLb} of ${w.oldId}: about ${Math.round((w.lbNew / (w.lbNew + w.oldInLb)) * 100)} % of requests`,
    );
  } else if (w.lb && w.canary && w.oldInLb > 0 && w.oldId) {
    const share = Math.round((w.lbNew / (w.lbNew + w.oldInLb)) * 100);
    parts.push(
      `add ${them} to the load balancer beside ${w.oldInLb} of ${w.oldId}: ${w.newId} has ${w.lbNew} of ${w.lbNew + w.oldInLb} tasks, about ${share} % of requests`,
    );
  } else if (w.lb && w.oldId && w.oldBefore > 0) {
    parts.push(`then move the load balancer from ${w.oldId} to ${w.newId} in one operation (100 % of requests)`);
  } else if (w.lb) {
    parts.push(`add ${them} to the load balancer (${w.newId} has ${w.lbNew} of ${w.lbNew} tasks, 100 % of requests)`);
  }
  if (w.waitsFor === 'approval') parts.push(`wait for your approval (${w.advance}), at most ${durationWords(w.acceptanceTimeout)}`);
  else if (w.waitsFor === 'timer') parts.push(`wait ${durationWords(w.waitMillis)}`);
  else if (w.waitsFor === 'checks')
    parts.push(`wait for the checks ${w.checks.join(', ')} (at most ${durationWords(w.acceptanceTimeout)})`);
  if (w.oldId && w.retiring > 0) {
    const last = w.step === w.total;
    parts.push(`${last ? 'finally stop the remaining' : 'then stop'} ${plural(w.retiring, 'task')} of ${w.oldId}`);
  }
  return `${parts.join('; ')}.`;
}

/** What a new task must wait before it can count as healthy, however fast it starts. */
function healthFloorMillis(deploy: Deploy, request: FledgeRequest): number {
  if (request.skipHealthchecks || deploy.skipHealthchecksOnDeploy) return 0;
  if (!deploy.healthcheck) return Math.round(deploy.considerHealthyAfterRunningForSeconds * 1000);
  return Math.round(deploy.healthcheck.startupDelaySeconds * 1000);
}

const toSeconds = (millis: number) => Math.round(millis) / 1000;
