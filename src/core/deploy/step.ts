/*
 * The deploy state machine.
 *
 * A pending deploy replaces the request's active deploy in steps. Each step has a target:
 * the number of new-deploy tasks wanted by its end (targets.ts). Each step walks the phases
 *
 *   LAUNCH → HEALTH → LB_UPDATE → ACCEPTANCE → ADVANCE → (next step's LAUNCH | end SUCCEEDED)
 *
 * LAUNCH      creates task records for the missing new tasks (lowest free instance numbers),
 *             at most launchBatchSize per pass (a larger target stays in LAUNCH and comes back
 *             at once); the loop starts them after the records are persisted.
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
 * One call of stepDeploy runs, in order: request-level conditions (a paused or deleted
 * request fails the deploy); the intents recorded by the API (cancel ends CANCELED, reject
 * ends FAILED, advance approves the current acceptance, update jumps to another target
 * skipping the current acceptance); the count of new tasks that died or were judged
 * unhealthy (failures.ts); then phases, one after another while each moves on at once.
 * Each phase (one file in phases/) is a pure function of what it sees (phase.ts) returning
 * a value: move `to` another phase, `wait` (why, and until when), or `end` (state, message,
 * failures), with the progress, task changes, actions and decisions it made. This file
 * applies those values, writes every phase change and the end into the decision log, and
 * returns one DeployStepOutcome.
 *
 * Ending a deploy only records the result and drops the pending record; an LB operation in
 * flight is cancelled and handed over to the request step, which records how it really ended
 * on its tasks. Everything after that — making the deploy active, refilling the old
 * deploy to full, healthy, load-balanced capacity, reverting an atomic swap, then draining
 * and stopping the tasks that are no longer wanted — is the request step's steady-state work
 * (../request/step.ts). That is what makes every failure path keep capacity: nothing is
 * removed before its replacement serves.
 *
 * Everything here is pure: the time is `now`, deadlines are stored timestamps, and "not done
 * yet" returns with a reason and a time to look again.
 */
import type { Deploy, FledgeRequest, LbOperationRef, TaskRecord } from '../model.ts';
import { assertNever, errorMessage } from '../errors.ts';
import { collapseChanges, TaskView } from '../task-view.ts';
import { reasons } from './reasons.ts';
import { calculateStepTargets } from './targets.ts';
import { DEFAULT_MAX_LOAD_PER_TASK_RATIO, planTraffic, trafficTargets, usesTrafficSteps } from './traffic.ts';
import { countTasks, targetRequest, type DecisionDraft, type End, type PhaseEffects, type PhaseInput, type PhaseResult } from './phase.ts';
import { assessFailures } from './failures.ts';
import { stepLaunch } from './phases/launch.ts';
import { stepHealth } from './phases/health.ts';
import { stepLbUpdate } from './phases/lb-update.ts';
import { stepAcceptance } from './phases/acceptance.ts';
import { stepAdvance } from './phases/advance.ts';
import type { Action, Decision, DeployPhase, DeployProgress, DeployResult, PendingDeploy, RequestObservation } from './types.ts';

/** What became of the pending deploy in one step. */
export type PendingOutcome =
  | { kind: 'UNCHANGED' }
  | { kind: 'UPDATED'; pending: PendingDeploy }
  | {
      kind: 'ENDED';
      deployId: string;
      result: DeployResult;
      progress: DeployProgress;
      /** the LB operation the deploy ended with in flight, for the request step to settle */
      lbHandover?: LbOperationRef;
    };

export interface DeployStepOutcome {
  pending: PendingOutcome;
  /** task records created or changed, one per task */
  tasks: readonly TaskRecord[];
  actions: readonly Action[];
  wakeAt?: number;
  /** the entries this step added to the decision log */
  decisions: readonly Decision[];
  /** why the deploy is not done yet, when it waits */
  waiting?: { why: string; until?: number };
}

export function createPendingDeploy(
  deploy: Deploy,
  request: FledgeRequest,
  now: number,
  options: {
    message?: string;
    unpauseOnSuccessfulDeploy?: boolean;
    updatedRequest?: FledgeRequest;
    /** tasks of the active deploy (0 without one): the traffic steps' weights are planned against them */
    oldTasks?: number;
  },
): PendingDeploy {
  const target = options.updatedRequest ?? request;
  const canary = deploy.canaryDeploySettings;
  // The API refused a plan with a problem; one seen here anyway (a race) runs without traffic steps.
  const planned = usesTrafficSteps(canary)
    ? planTraffic(
        canary.trafficSteps ?? [],
        options.oldTasks ?? 0,
        target.instances,
        canary.maxLoadPerTaskRatio ?? DEFAULT_MAX_LOAD_PER_TASK_RATIO,
      )
    : undefined;
  const plan = planned && 'plan' in planned && planned.plan.steps.length > 0 ? planned.plan : undefined;
  const targets = plan ? trafficTargets(plan, target.instances) : calculateStepTargets(target.instances, canary);
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
      ...(plan ? { traffic: { plan } } : {}),
    },
  };
}

/** The deploy step so far: the values the parts of one stepDeploy call hand on. */
interface Progressing {
  progress: DeployProgress;
  tasks: TaskView;
  changes: readonly TaskRecord[];
  actions: readonly Action[];
  decisions: readonly Decision[];
  wakeAt?: number;
  /** task records created so far in this pass */
  launched: number;
}

/** How a part of the step ended: the deploy goes on (to the next part), waits, or ends. */
type Next = { go: Progressing } | { wait: Progressing; why: string; until?: number } | { end: Progressing; how: End['end'] };

/** One step of the pending deploy of `obs` (which must have one). */
export function stepDeploy(obs: RequestObservation, now: number): DeployStepOutcome {
  const pending = obs.pending;
  if (!pending) throw new Error(`request ${obs.request.id} has no pending deploy`);
  const start: Progressing = {
    progress: pending.progress,
    tasks: TaskView.of(obs.tasks),
    changes: [],
    actions: [],
    decisions: [],
    launched: 0,
  };
  const deploy = obs.pendingDeploy;
  let next: Next;
  if (!deploy) {
    next = {
      end: start,
      how: { state: 'FAILED_INTERNAL_STATE', message: reasons.internal(`deploy ${pending.deployId} is missing from the store`) },
    };
  } else {
    try {
      next = runStep(obs, deploy, pending, now, start);
    } catch (err) {
      // A bug must not wedge the request: end the deploy; the request step restores capacity.
      next = { end: start, how: { state: 'FAILED_INTERNAL_STATE', message: reasons.internal(errorMessage(err)) } };
    }
  }
  if ('end' in next) return endDeploy(obs, pending, now, next.end, next.how);
  const acc = 'go' in next ? next.go : next.wait;
  const updated: PendingDeploy = { ...pending, intents: [], progress: acc.progress };
  const changed = JSON.stringify(updated) !== JSON.stringify(pending);
  return {
    pending: changed ? { kind: 'UPDATED', pending: updated } : { kind: 'UNCHANGED' },
    tasks: collapseChanges(acc.changes),
    actions: acc.actions,
    ...(acc.wakeAt !== undefined ? { wakeAt: acc.wakeAt } : {}),
    decisions: acc.decisions,
    ...('wait' in next ? { waiting: { why: next.why, ...(next.until !== undefined ? { until: next.until } : {}) } } : {}),
  };
}

function runStep(obs: RequestObservation, deploy: Deploy, pending: PendingDeploy, now: number, start: Progressing): Next {
  const instances = targetRequest(obs).instances;
  const inputOf = (acc: Progressing): PhaseInput => ({
    now,
    obs,
    deploy,
    pending,
    progress: acc.progress,
    tasks: acc.tasks,
    instances,
    launchBudget: Math.max(0, obs.settings.launchBatchSize - acc.launched),
  });
  const log = (acc: Progressing, drafts: readonly DecisionDraft[] | undefined) => logDecisions(obs, pending, now, acc, drafts);
  const apply = (acc: Progressing, effects: PhaseEffects): Progressing =>
    log(
      {
        progress: effects.progress,
        tasks: acc.tasks.with(effects.tasks ?? []),
        changes: [...acc.changes, ...(effects.tasks ?? [])],
        actions: [...acc.actions, ...(effects.actions ?? [])],
        decisions: acc.decisions,
        wakeAt: earliest(acc.wakeAt, effects.wakeAt),
        launched: acc.launched + (effects.tasks ?? []).filter((t) => !acc.tasks.get(t.taskId.id)).length,
      },
      effects.decisions,
    );
  const move = (
    acc: Progressing,
    to: DeployPhase,
    text: { observed: string; reason: string },
    more: { operationId?: string; intent?: 'update' } = {},
  ) => {
    const from = acc.progress.phase;
    const moved = { ...acc, progress: { ...acc.progress, phase: to, timestamp: now } };
    return log(moved, [
      { kind: 'PHASE_CHANGED', from, to, ...more, observed: text.observed, action: `${from} → ${to}`, reason: text.reason },
    ]);
  };

  // Request-level conditions first: they end the deploy whatever its phase.
  if (obs.requestState === 'PAUSED') return { end: start, how: { state: 'FAILED', message: reasons.requestPaused(obs.request.id) } };
  if (obs.requestState === 'DELETING' || obs.requestState === 'DELETED') {
    return { end: start, how: { state: 'FAILED', message: reasons.requestMissing(obs.request.id) } };
  }

  // Intents, in the order they were recorded.
  let acc = start;
  let advance = false;
  for (const intent of pending.intents) {
    switch (intent.kind) {
      case 'cancel':
        return { end: acc, how: { state: 'CANCELED', message: reasons.canceled(intent.message), intent: 'cancel' } };
      case 'reject': {
        const message = reasons.rejected(intent.message);
        return {
          end: acc,
          how: { state: 'FAILED', message, failures: [{ reason: 'ACCEPTANCE_CHECK_FAILED', message }], intent: 'reject' },
        };
      }
      case 'advance':
        advance = true;
        acc = log(acc, [
          {
            kind: 'INTENT',
            intent: 'advance',
            observed: 'advance requested',
            action: 'approve current step',
            reason: intent.message ?? 'user approved',
          },
        ]);
        break;
      case 'update': {
        // Traffic steps are a plan of shares, not of counts: an update jumps to the final step.
        const traffic = acc.progress.traffic;
        const target = traffic ? instances : Math.min(intent.targetActiveInstances, instances);
        acc = {
          ...acc,
          progress: {
            ...acc.progress,
            ...(traffic ? { step: acc.progress.totalSteps } : {}),
            targetActiveInstances: target,
            totalSteps: traffic ? acc.progress.totalSteps : acc.progress.step + (target < instances ? 1 : 0),
            stepAcceptanceResults: {},
            stepReadyAt: undefined,
            stepStartedAt: now,
            stepFailures: 0,
            deadline: undefined,
            // Singularity's UI and client advance a deploy this way. A jump to every instance is
            // also the approval of that last step, so the deploy finishes without a Fledge-only
            // advance; a jump to fewer waits at its step as any step does (scenario 22).
            approvedStep: target === instances ? (traffic ? acc.progress.totalSteps : acc.progress.step) : undefined,
          },
        };
        acc = move(
          acc,
          'LAUNCH',
          {
            observed: `target set to ${target}`,
            reason: traffic
              ? 'update requested: skip the remaining traffic steps, jump to every instance at the normal weight, and approve that last step'
              : target === instances
                ? 'update requested: skip acceptance, jump to every instance, and approve that last step'
                : 'update requested: skip acceptance, jump to new target',
          },
          { intent: 'update' },
        );
        break;
      }
      default:
        assertNever(intent);
    }
  }

  // Task deaths and unhealthy verdicts among the new tasks, whatever the phase.
  const failures = assessFailures(inputOf(acc));
  acc = apply(acc, failures);
  if (failures.end) return { end: acc, how: failures.end };
  if (failures.replace) acc = move(acc, 'LAUNCH', failures.replace);

  // Phases run in sequence within one call while each moves on at once.
  for (let guard = 0; guard < 16; guard++) {
    const phase = acc.progress.phase;
    const result = runPhase(phase, inputOf(acc), advance);
    acc = apply(acc, result);
    if ('end' in result) return { end: acc, how: result.end };
    if ('wait' in result) return { wait: { ...acc, wakeAt: earliest(acc.wakeAt, result.wait.until) }, ...result.wait };
    acc = move(acc, result.to, result, result.operationId ? { operationId: result.operationId } : {});
    if (phase === 'ACCEPTANCE') advance = false;
  }
  return { go: acc };
}

function runPhase(phase: DeployPhase, input: PhaseInput, advance: boolean): PhaseResult {
  switch (phase) {
    case 'LAUNCH':
      return stepLaunch(input);
    case 'HEALTH':
      return stepHealth(input);
    case 'LB_UPDATE':
      return stepLbUpdate(input);
    case 'ACCEPTANCE':
      return stepAcceptance(input, advance);
    case 'ADVANCE':
      return stepAdvance(input);
    default:
      return assertNever(phase);
  }
}

/** Stamps drafts with time, phase, step and counts and appends them, bounded by the log limit. */
function logDecisions(
  obs: RequestObservation,
  pending: PendingDeploy,
  now: number,
  acc: Progressing,
  drafts: readonly DecisionDraft[] | undefined,
): Progressing {
  if (!drafts || drafts.length === 0) return acc;
  const { progress } = acc;
  const limit = obs.settings.decisionLogLimit;
  const counts = countTasks({ obs, pending, progress, tasks: acc.tasks });
  const entries: Decision[] = drafts.map((d) => ({ ...d, at: now, phase: progress.phase, step: progress.step, counts }));
  const log = [...progress.decisionLog, ...entries];
  return {
    ...acc,
    progress: { ...progress, decisionLog: log.length > limit ? log.slice(log.length - limit) : log },
    decisions: [...acc.decisions, ...entries],
  };
}

function endDeploy(obs: RequestObservation, pending: PendingDeploy, now: number, acc: Progressing, how: End['end']): DeployStepOutcome {
  const failures = how.failures ?? [];
  const entry: Decision = {
    kind: 'ENDED',
    from: acc.progress.phase,
    state: how.state,
    ...(how.intent ? { intent: how.intent } : {}),
    counts: countTasks({ obs, pending, progress: acc.progress, tasks: acc.tasks }),
    at: now,
    phase: 'END',
    step: acc.progress.step,
    observed: failures.map((f) => f.message).join('; ') || how.message,
    action: `deploy ${how.state}`,
    reason: how.message,
  };
  // The end entry is never dropped to keep the log within its limit.
  let progress: DeployProgress = { ...acc.progress, timestamp: now, decisionLog: [...acc.progress.decisionLog, entry] };
  const actions = [...acc.actions];
  // An LB operation in flight outlives the deploy: cancel it and hand it to the request step,
  // which records its real outcome (CANCELED, or SUCCESS/FAILED if it finished first) on
  // every task it adds or removes. Assuming an outcome here would leave tasks on a WAITING
  // state for good, or claim a membership the balancer does not have.
  let lbHandover: LbOperationRef | undefined;
  const inFlight = progress.pendingLbUpdate;
  if (inFlight?.state === 'WAITING') {
    actions.push({ kind: 'lbCancel', operationId: inFlight.loadBalancerRequestId });
    lbHandover = {
      operationId: inFlight.loadBalancerRequestId,
      add: inFlight.add,
      remove: inFlight.remove,
      startedAt: inFlight.startedAt,
      canceling: true,
    };
    const { pendingLbUpdate: _handedOver, ...rest } = progress;
    progress = { ...rest, lbUpdates: [...progress.lbUpdates, { ...inFlight, message: reasons.lbHandedOver }] };
  }
  return {
    pending: {
      kind: 'ENDED',
      deployId: pending.deployId,
      result: { deployState: how.state, message: how.message, deployFailures: failures, timestamp: now },
      progress,
      ...(lbHandover ? { lbHandover } : {}),
    },
    tasks: collapseChanges(acc.changes),
    actions,
    ...(acc.wakeAt !== undefined ? { wakeAt: acc.wakeAt } : {}),
    decisions: [...acc.decisions, entry],
  };
}

function earliest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}
