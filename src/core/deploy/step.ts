/*
 * The deploy state machine.
 *
 * A pending deploy replaces the request's active deploy in steps. Each step has a target:
 * the number of new-deploy tasks wanted by its end (targets.ts). Each step walks the phases
 *
 *   LAUNCH → HEALTH → LB_UPDATE → ACCEPTANCE → ADVANCE → (next step's LAUNCH | end SUCCEEDED)
 *
 * LAUNCH      creates task records for the missing new tasks (lowest free instance numbers);
 *             the loop starts them after the records are persisted.
 * HEALTH      waits until every new task of the target is healthy. A new task that dies or is
 *             judged unhealthy counts against allowedTasksFailuresPerGroup and is replaced;
 *             one failure too many ends the deploy FAILED. The step's deadline
 *             (deployHealthTimeoutSeconds + the health-check window) ends it OVERDUE.
 * LB_UPDATE   load-balanced requests only. Canary off: one operation adds every new task and
 *             removes every old one (atomic swap). Canary on: add only. Bounded by
 *             loadBalancerTimeoutSeconds; FAILED or timed out ends the deploy FAILED.
 * ACCEPTANCE  NONE passes; TIMED waits waitMillisBetweenGroups after the step was ready;
 *             CHECKS asks every check until all SUCCEEDED (any FAILED fails the deploy);
 *             MANUAL waits for an advance (or a reject). Bounded by acceptanceTimeoutSeconds.
 * ADVANCE     retires as many old instances as the step added, lowest instance numbers first
 *             (the request step takes them out of the LB, then stops them), and moves to the
 *             next step — or, after the last step, ends the deploy SUCCEEDED.
 *
 * Intents recorded by the API are handled before the phase: cancel ends CANCELED (cancelling
 * an LB operation in flight), reject ends FAILED, update jumps to another target skipping
 * the current acceptance. A paused or deleted request fails the deploy.
 *
 * Ending a deploy only records the result and drops the pending record. Everything after
 * that — making the deploy active, refilling the old deploy to full, healthy, load-balanced
 * capacity, reverting an atomic swap, then draining and stopping the tasks that are no
 * longer wanted — is the request step's steady-state work (../request/step.ts). That is
 * what makes every failure path keep capacity: nothing is removed before its replacement
 * serves.
 *
 * Everything here is pure: the time is `plan.now`, deadlines are stored timestamps, and
 * "not done yet" returns with a reason and a time to look again.
 */
import type { Deploy, FledgeRequest, TaskRecord } from '../model.ts';
import { isLive } from '../model.ts';
import { assertNever, createTask, type Plan } from '../plan.ts';
import { healthy, inLb, markCleanup, serving, byInstance } from '../tasks.ts';
import { healthWindowMillis } from '../health.ts';
import { describeExit, reasons } from './reasons.ts';
import { calculateStepTargets } from './targets.ts';
import { stepLaunch } from './phases/launch.ts';
import { stepHealth } from './phases/health.ts';
import { stepLbUpdate } from './phases/lb-update.ts';
import { stepAcceptance } from './phases/acceptance.ts';
import { stepAdvance } from './phases/advance.ts';
import type { DeployFailure, DeployPhase, DeployProgress, DeployResultState, PendingDeploy, RequestObservation } from './types.ts';

/** The request as it will be once this deploy succeeds. */
export function targetRequest(obs: RequestObservation): FledgeRequest {
  return obs.pending?.updatedRequest ?? obs.request;
}

export function createPendingDeploy(
  deploy: Deploy,
  request: FledgeRequest,
  now: number,
  options: { message?: string; unpauseOnSuccessfulDeploy?: boolean; updatedRequest?: FledgeRequest },
): PendingDeploy {
  const target = options.updatedRequest ?? request;
  const targets = calculateStepTargets(target.instances, deploy.canaryDeploySettings);
  return {
    requestId: request.id,
    deployId: deploy.id,
    startedAt: now,
    ...(options.message ? { message: options.message } : {}),
    unpauseOnSuccessfulDeploy: options.unpauseOnSuccessfulDeploy ?? false,
    ...(options.updatedRequest ? { updatedRequest: options.updatedRequest } : {}),
    intents: [],
    progress: {
      phase: 'LAUNCH',
      step: 1,
      totalSteps: targets.length,
      targetActiveInstances: targets[0] ?? target.instances,
      currentActiveInstances: 0,
      stepLaunchComplete: false,
      failedDeployTasks: [],
      timestamp: now,
      canary: deploy.canaryDeploySettings.enableCanaryDeploy,
      stepStartedAt: now,
      stepFailures: 0,
      retiredOldInstances: [],
      lbUpdates: [],
      stepAcceptanceResults: {},
      acceptanceResultMessageHistory: [],
      decisionLog: [],
    },
  };
}

/** Context shared by the phase functions of one step() call. */
export interface DeployStepContext {
  obs: RequestObservation;
  plan: Plan;
  deploy: Deploy;
  pending: PendingDeploy;
  /** mutable copy; written back to plan.pending at the end */
  progress: DeployProgress;
  /** tasks of the pending deploy, after this step's changes so far */
  newTasks: () => TaskRecord[];
  /** tasks of the active deploy */
  oldTasks: () => TaskRecord[];
  instances: number;
  ended: boolean;
  log(observed: string, action: string, reason: string): void;
  enter(phase: DeployPhase, observed: string, reason: string): void;
  end(state: DeployResultState, message: string, failures?: DeployFailure[]): void;
}

export function stepDeploy(obs: RequestObservation, plan: Plan): void {
  const pending = obs.pending;
  const deploy = obs.pendingDeploy;
  if (!pending) return;
  const progress: DeployProgress = {
    ...pending.progress,
    decisionLog: [...pending.progress.decisionLog],
    failedDeployTasks: [...pending.progress.failedDeployTasks],
    retiredOldInstances: [...pending.progress.retiredOldInstances],
    acceptanceResultMessageHistory: [...pending.progress.acceptanceResultMessageHistory],
    stepAcceptanceResults: { ...pending.progress.stepAcceptanceResults },
    lbUpdates: [...pending.progress.lbUpdates],
  };
  const before = JSON.stringify(pending);
  const current = (t: TaskRecord) => plan.tasks.get(t.taskId.id) ?? t;
  const tasksOf = (deployId: string | undefined) => () => {
    const known = new Map(obs.tasks.map((t) => [t.taskId.id, t]));
    for (const [id, t] of plan.tasks) known.set(id, t);
    return [...known.values()]
      .filter((t) => t.taskId.deployId === deployId)
      .map(current)
      .sort(byInstance);
  };
  const ctx: DeployStepContext = {
    obs,
    plan,
    deploy: deploy as Deploy,
    pending,
    progress,
    newTasks: tasksOf(pending.deployId),
    oldTasks: tasksOf(obs.activeDeploy?.id),
    instances: targetRequest(obs).instances,
    ended: false,
    log(observed, action, reason) {
      progress.decisionLog.push({ at: plan.now, phase: progress.phase, step: progress.step, observed, action, reason });
      const limit = obs.settings.decisionLogLimit;
      if (progress.decisionLog.length > limit) progress.decisionLog.splice(0, progress.decisionLog.length - limit);
    },
    enter(phase, observed, reason) {
      const from = progress.phase;
      progress.phase = phase;
      progress.timestamp = plan.now;
      ctx.log(observed, `${from} → ${phase}`, reason);
    },
    end(state, message, failures = []) {
      if (ctx.ended) return;
      ctx.ended = true;
      progress.timestamp = plan.now;
      progress.decisionLog.push({
        at: plan.now,
        phase: 'END',
        step: progress.step,
        observed: failures.map((f) => f.message).join('; ') || message,
        action: `deploy ${state}`,
        reason: message,
      });
      if (progress.pendingLbUpdate?.state === 'WAITING') {
        plan.act({ kind: 'lbCancel', operationId: progress.pendingLbUpdate.loadBalancerRequestId });
        progress.pendingLbUpdate = { ...progress.pendingLbUpdate, state: 'CANCELED' };
      }
      plan.pending = null;
      plan.result = {
        deployId: pending.deployId,
        result: { deployState: state, message, deployFailures: failures, timestamp: plan.now },
        progress,
      };
    },
  };

  if (!deploy) {
    ctx.end('FAILED_INTERNAL_STATE', reasons.internal(`deploy ${pending.deployId} is missing from the store`));
  } else {
    try {
      runStep(ctx);
    } catch (err) {
      // A bug must not wedge the request: end the deploy; the request step restores capacity.
      ctx.end('FAILED_INTERNAL_STATE', reasons.internal(err instanceof Error ? err.message : String(err)));
    }
  }

  if (ctx.ended) return;
  const next: PendingDeploy = { ...pending, intents: [], progress };
  if (JSON.stringify(next) !== before) plan.pending = next;
}

function runStep(ctx: DeployStepContext): void {
  const { obs, pending, progress } = ctx;

  // Request-level conditions first: they end the deploy whatever its phase.
  if (obs.requestState === 'PAUSED') {
    return ctx.end('FAILED', reasons.requestPaused(obs.request.id));
  }
  if (obs.requestState === 'DELETING' || obs.requestState === 'DELETED') {
    return ctx.end('FAILED', reasons.requestMissing(obs.request.id));
  }

  // Intents, in the order they were recorded.
  let advance = false;
  for (const intent of pending.intents) {
    switch (intent.kind) {
      case 'cancel':
        return ctx.end('CANCELED', reasons.canceled(intent.message));
      case 'reject':
        return ctx.end('FAILED', reasons.rejected(intent.message), [
          { reason: 'ACCEPTANCE_CHECK_FAILED', message: reasons.rejected(intent.message) },
        ]);
      case 'advance':
        advance = true;
        ctx.log('advance requested', 'approve current step', intent.message ?? 'user approved');
        break;
      case 'update': {
        const target = Math.min(intent.targetActiveInstances, ctx.instances);
        progress.targetActiveInstances = target;
        progress.totalSteps = progress.step + (target < ctx.instances ? 1 : 0);
        progress.stepAcceptanceResults = {};
        progress.stepReadyAt = undefined;
        progress.stepStartedAt = ctx.plan.now;
        progress.stepFailures = 0;
        progress.deadline = undefined;
        ctx.enter('LAUNCH', `target set to ${target}`, 'update requested: skip acceptance, jump to new target');
        break;
      }
      default:
        assertNever(intent);
    }
  }

  // Task deaths and unhealthy verdicts among the new tasks, whatever the phase.
  if (countFailures(ctx)) return;

  // Phases run in sequence within one call while each completes at once.
  for (let guard = 0; guard < 16 && !ctx.ended; guard++) {
    const phase = progress.phase;
    const done = runPhase(ctx, phase, advance);
    if (!done || ctx.ended) return;
    if (phase === 'ACCEPTANCE') advance = false;
  }
}

/** Runs one phase; true when it moved on to another phase in this call. */
function runPhase(ctx: DeployStepContext, phase: DeployPhase, advance: boolean): boolean {
  switch (phase) {
    case 'LAUNCH':
      return stepLaunch(ctx);
    case 'HEALTH':
      return stepHealth(ctx);
    case 'LB_UPDATE':
      return stepLbUpdate(ctx);
    case 'ACCEPTANCE':
      return stepAcceptance(ctx, advance);
    case 'ADVANCE':
      return stepAdvance(ctx);
    default:
      return assertNever(phase);
  }
}

/**
 * Counts new-task deaths and unhealthy verdicts not yet counted. Returns true when the
 * deploy ended because of them.
 */
function countFailures(ctx: DeployStepContext): boolean {
  const { plan, progress, deploy } = ctx;
  const counted = new Set(progress.failedDeployTasks.map((t) => t.id));
  const allowed = deploy.canaryDeploySettings.allowedTasksFailuresPerGroup;
  const failures: DeployFailure[] = [];
  for (const task of ctx.newTasks()) {
    if (counted.has(task.taskId.id)) continue;
    let failure: DeployFailure | undefined;
    if (isLive(task.state) && !task.cleanup && task.health.state === 'UNHEALTHY') {
      markCleanup(plan, task, 'UNHEALTHY', task.health.message);
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
    progress.failedDeployTasks.push(task.taskId);
    progress.stepFailures += 1;
    failures.push(failure);
    ctx.log(failure.message, 'count failure', `${progress.stepFailures} of ${allowed} allowed in this step`);
  }
  if (progress.stepFailures > allowed && failures.length > 0) {
    const message = allowed > 0 ? reasons.tooManyFailures(allowed) : (failures[0]?.message ?? 'Task failed');
    ctx.end('FAILED', message, failures);
    return true;
  }
  if (failures.length > 0 && progress.phase !== 'LAUNCH' && progress.phase !== 'HEALTH') {
    // A task died after its step was healthy: go back and replace it before moving on.
    progress.stepReadyAt = undefined;
    ctx.enter('LAUNCH', `${failures.length} task(s) failed`, 'replace failed tasks (allowed by allowedTasksFailuresPerGroup)');
  }
  return false;
}

/** Live, serving new tasks (not being stopped). */
export function servingNew(ctx: DeployStepContext): TaskRecord[] {
  return ctx.newTasks().filter(serving);
}

export function healthyNew(ctx: DeployStepContext): TaskRecord[] {
  return ctx.newTasks().filter(healthy);
}

export function lbNew(ctx: DeployStepContext): TaskRecord[] {
  return ctx.newTasks().filter((t) => healthy(t) && inLb(t));
}

/** OVERDUE deadline of a step: deployHealthTimeoutSeconds plus the health-check window. */
export function stepDeadline(deploy: Deploy, from: number): number {
  return (
    from + deploy.deployHealthTimeoutSeconds * 1000 + healthWindowMillis(deploy.healthcheck, deploy.considerHealthyAfterRunningForSeconds)
  );
}

/** Shared by phases: create task records for `count` lowest free instance numbers. */
export function launchTasks(ctx: DeployStepContext, count: number): TaskRecord[] {
  const { plan, deploy } = ctx;
  const used = new Set(servingNew(ctx).map((t) => t.taskId.instanceNo));
  const taken = new Set([...ctx.obs.tasks.map((t) => t.taskId.id), ...plan.tasks.keys()]);
  const created: TaskRecord[] = [];
  for (let n = 1; created.length < count; n++) {
    if (used.has(n)) continue;
    const task = createTask(deploy, n, plan.now, taken);
    taken.add(task.taskId.id);
    plan.putTask(task);
    plan.act({ kind: 'startTask', taskId: task.taskId.id });
    created.push(task);
  }
  return created;
}
