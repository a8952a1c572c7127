import type { LbOpState, TaskRecord } from '../../model.ts';
import { inLb, lbMembers, needsLbAdd, settleLbOperationOnTasks, touchesLb } from '../../tasks.ts';
import type { TaskView } from '../../task-view.ts';
import { reasons } from '../reasons.ts';
import { healthyNew, oldTasks, type PhaseInput, type PhaseResult } from '../phase.ts';
import { currentTrafficStep, NORMAL_WEIGHT } from '../traffic.ts';
import type { DeployProgress, LbUpdate } from '../types.ts';

/**
 * LB_UPDATE: canary off swaps atomically (add every new task, remove every old one, one
 * operation); canary on only adds. Bounded by loadBalancerTimeoutSeconds.
 */
export function stepLbUpdate(input: PhaseInput): PhaseResult {
  const { progress, now, deploy, obs, pending } = input;
  const op = progress.pendingLbUpdate;
  if (op?.state === 'WAITING') {
    const seen = obs.lbOps[op.loadBalancerRequestId];
    if (!seen || seen.state === 'WAITING') {
      const deadline = progress.deadline ?? now;
      if (now >= deadline) {
        const message = reasons.lbTimedOut(deploy.loadBalancerTimeoutSeconds);
        return { progress, end: { state: 'FAILED', message, failures: [{ reason: 'LOAD_BALANCER_UPDATE_FAILED', message }] } };
      }
      return { progress, wait: { why: `LB operation ${op.loadBalancerRequestId} in flight`, until: deadline } };
    }
    const finished: LbUpdate = { ...op, state: seen.state, ...(seen.message ? { message: seen.message } : {}) };
    const tasks = settleLbOperationOnTasks((id) => input.tasks.get(id), { ...op, operationId: op.loadBalancerRequestId }, seen.state, now);
    const settled: DeployProgress = { ...progress, pendingLbUpdate: undefined, lbUpdates: [...progress.lbUpdates, finished] };
    // The step's weights are in the balancer from now on: its counters are judged from here.
    if (seen.state === 'SUCCESS' && progress.traffic && progress.traffic.appliedStep !== progress.step) {
      settled.traffic = { ...progress.traffic, appliedStep: progress.step, since: now };
    }
    if (seen.state !== 'SUCCESS') {
      const message = reasons.lbFailed(seen.message);
      return {
        progress: settled,
        tasks,
        end: { state: 'FAILED', message, failures: [{ reason: 'LOAD_BALANCER_UPDATE_FAILED', message }] },
      };
    }
    // A task replaced meanwhile (one died, or was lost with its host) is healthy and not in
    // the LB yet: put it in before the step is called ready.
    const after = { ...input, progress: settled, tasks: input.tasks.with(tasks) };
    if (healthyNew(after).some((t) => !touchesLb(t))) {
      const next = stepLbUpdate(after);
      return { ...next, tasks: [...tasks, ...(next.tasks ?? [])] };
    }
    return {
      progress: { ...settled, stepReadyAt: now, deadline: undefined },
      tasks,
      to: 'ACCEPTANCE',
      observed: `LB operation ${op.loadBalancerRequestId} succeeded`,
      reason: 'step is healthy and in the LB',
      operationId: op.loadBalancerRequestId,
    };
  }

  const add = healthyNew(input).filter(needsLbAdd);
  const remove = progress.canary ? [] : oldTasks(input).filter(touchesLb);
  // A traffic step changes the weight of the new tasks already in: they are applied again.
  const traffic = progress.traffic;
  const weighDue = traffic !== undefined && traffic.appliedStep !== progress.step;
  const reweigh = weighDue ? healthyNew(input).filter((t) => inLb(t) && !add.includes(t)) : [];
  if (weighDue && healthyNew(input).some((t) => !inLb(t) && !add.includes(t))) {
    return { progress, wait: { why: 'an earlier LB add of a new task is still settling', until: now + 250 } };
  }
  if (add.length === 0 && remove.length === 0 && reweigh.length === 0) {
    if (healthyNew(input).every(inLb)) {
      return {
        progress: { ...progress, stepReadyAt: now },
        to: 'ACCEPTANCE',
        observed: 'every new task already in the LB',
        reason: 'step is healthy and in the LB',
      };
    }
    return { progress, wait: { why: 'an earlier LB add of a new task is still settling', until: now + 250 } };
  }
  const operationId = `${pending.requestId}-${pending.deployId}-lb${progress.lbUpdates.length + 1}`;
  const update: LbUpdate = {
    loadBalancerRequestId: operationId,
    state: 'WAITING',
    add: add.map((t) => t.taskId.id),
    remove: remove.map((t) => t.taskId.id),
    ...(reweigh.length > 0 ? { reweigh: reweigh.map((t) => t.taskId.id) } : {}),
    startedAt: now,
  };
  const share = currentTrafficStep(progress);
  const weights = !weighDue
    ? ''
    : share
      ? `; new tasks at weight ${share.newWeight} (old ${NORMAL_WEIGHT}) for ${share.percent} % of the requests`
      : `; every task at the normal weight`;
  const deadline = now + deploy.loadBalancerTimeoutSeconds * 1000;
  return {
    progress: { ...progress, pendingLbUpdate: update, deadline },
    tasks: recordLbState(input.tasks, update, 'WAITING', now),
    actions: [
      { kind: 'lbApply', operationId, add: update.add, remove: update.remove, ...(update.reweigh ? { reweigh: update.reweigh } : {}) },
    ],
    decisions: [
      {
        kind: 'LB_OPERATION',
        operationId,
        adding: add.length,
        removing: remove.length,
        observed: `${add.length} new task(s) healthy and not in the LB`,
        action: `LB ${operationId}: add ${add.length}, remove ${remove.length}${reweigh.length > 0 ? `, re-weigh ${reweigh.length}` : ''}${weights}`,
        reason: traffic
          ? "traffic step: the new tasks together get the step's share through their weight"
          : progress.canary
            ? 'canary: add the step, old tasks leave one by one'
            : 'atomic swap: add all new, remove all old',
      },
    ],
    wait: { why: `LB operation ${operationId} in flight`, until: deadline },
  };
}

/** A new operation, WAITING, on each task it adds or removes. */
function recordLbState(tasks: TaskView, op: LbUpdate, state: LbOpState, now: number): TaskRecord[] {
  return lbMembers((id) => tasks.get(id), op).map(({ task, which }) => ({
    ...task,
    lb: { ...task.lb, [which]: { operationId: op.loadBalancerRequestId, state, timestamp: now } },
  }));
}
