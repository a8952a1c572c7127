/*
 * The request step: one decision for one request, pure. `stepRequest(obs, record, now)`
 * returns one StepOutcome; the loop persists it, then runs its actions.
 *
 * It runs these parts in this order, each a pure function of what the parts before it
 * changed (one file each, table-tested):
 *
 * 0. expiring.ts: Singularity's expiring actions whose time is up are undone.
 *    host-loss.ts: tasks on a host that stopped answering are TASK_LOST (lost with it).
 *    Then the pending deploy steps (../deploy/step.ts).
 * 1. apply-result.ts: if the deploy ended, its result is applied to the request — on
 *    SUCCEEDED it becomes the active deploy (and `updatedRequest` the request) — and an LB
 *    operation it ended with in flight is handed over to the request.
 *    spread-all.ts: SPREAD_ALL_AGENTS follows the number of hosts.
 *    lb-membership.ts, first half: the LB operations the request owns (its own, handed-over
 *    ones) are settled: how each really ended is recorded on every task it touches.
 *    waiting-tasks.ts: tasks waiting for a host get one when one fits (or keep waiting).
 * 2. active-instances.ts: an ACTIVE request wants one serving task of its active deploy per
 *    instance number 1…instances — minus the old instances a canary deploy has retired so
 *    far. A missing one is started (after a crash-loop backoff); an unwanted one is cleaned
 *    up; a bounce starts a replacement per instance and cleans up the old task once the
 *    replacement serves. At most launchBatchSize task records are created per pass (the
 *    deploy's count first); the rest follow in the next pass, at once.
 * 3. retire.ts: tasks of any other deploy (the last active one after a success, a failed or
 *    cancelled deploy's) are cleaned up only once the active deploy serves at full capacity:
 *    healthy, and in the LB for load-balanced requests. This one rule is the capacity
 *    guarantee.
 * 4. lb-membership.ts, second half: serving tasks of the active deploy are added, cleaned-up
 *    tasks removed — in one operation at a time per request, so a revert (old back in, new
 *    out) is a single operation.
 * 5. cleanup.ts: a task marked for cleanup leaves the LB first (drained), then is stopped.
 *
 * Ordering hazards, each also written where it lives:
 * - Host loss first, so that the deploy step counts (or rather, does not count) the lost
 *   tasks and replaces them in the same pass, and part 4 takes them out of the LB at once.
 * - Waiting tasks are placed before part 2 creates new ones: the older wait goes first.
 * - The deploy steps first, so that its result (a new active deploy, or the end of the
 *   retirements that kept old instances undesired) is what parts 2–5 act on: a deploy that
 *   ended other than SUCCEEDED leaves no retired instances, so part 2 refills the old deploy.
 * - The LB operations in flight are settled before part 2, so "healthy and in the LB" (which
 *   lets a bounce drop its old task) reads the LB as it is now; no new operation is issued
 *   while one is still in flight, so part 4 always starts from a known membership.
 * - Part 3 runs before part 4 and counts the tasks part 4 is about to add as in the LB: safe
 *   only because part 4 puts those adds and part 3's removals into one operation.
 * - Part 5 runs last, so a task cleaned up in this step that is in the LB waits for the
 *   removal part 4 just issued instead of being stopped while it still receives traffic.
 */
import type { PendingOutcome } from '../deploy/step.ts';
import { stepDeploy } from '../deploy/step.ts';
import type { Action, RequestObservation } from '../deploy/types.ts';
import { stepJobRequest } from '../jobs/step.ts';
import type { StepOutcome } from './outcome.ts';

export type { StepOutcome };
import { isLive, isRunToCompletion, type RequestRecord, type TaskRecord } from '../model.ts';
import { collapseChanges, TaskView } from '../task-view.ts';
import { reconcileActiveInstances } from './active-instances.ts';
import { applyDeployResult } from './apply-result.ts';
import { expireActions } from './expiring.ts';
import { loseTasksOnSilentHosts } from './host-loss.ts';
import { spreadToAllHosts } from './spread-all.ts';
import { placeWaitingTasks } from './waiting-tasks.ts';
import { cleanUp } from './cleanup.ts';
import { requestContext, type RequestChanges } from './context.ts';
import { issueLbOperation, settleLbOperation } from './lb-membership.ts';
import { retireOtherDeploys } from './retire.ts';

/** Everything one step decided for one request. Persist it, then run its actions. */

export function stepRequest(observed: RequestObservation, record: RequestRecord, now: number): StepOutcome {
  // Expired actions are undone first, so every part below reads the request as it now is.
  const expired = expireActions(record, now);
  const current = expired.record ?? record;
  const lost = loseTasksOnSilentHosts(observed.tasks, observed.hosts, now);
  const lostById = new Map(lost.map((t) => [t.taskId.id, t]));
  const withLost = lost.length > 0 ? { ...observed, tasks: observed.tasks.map((t) => lostById.get(t.taskId.id) ?? t) } : observed;
  const obs = expired.record ? { ...withLost, request: current.request, requestState: current.state } : withLost;
  // SCHEDULED, ON_DEMAND and RUN_ONCE requests have their own step (../jobs/step.ts); a run
  // lost with its host is lost for it too, and an expired pause is undone for it too.
  if (isRunToCompletion(current.request.requestType)) {
    const job = stepJobRequest(obs, current, now);
    const request = job.request ?? (expired.record ? { ...current, timestamp: now } : undefined);
    const wakes = [job.wakeAt, expired.wakeAt].filter((w): w is number => w !== undefined);
    return {
      ...job,
      ...(request ? { request } : {}),
      ...(wakes.length > 0 ? { wakeAt: Math.min(...wakes) } : {}),
      tasks: lost.length > 0 ? collapseChanges([...lost, ...job.tasks]) : job.tasks,
    };
  }
  const deploy = obs.pending ? stepDeploy(obs, now) : undefined;
  const pending: PendingOutcome = deploy?.pending ?? { kind: 'UNCHANGED' };
  const pendingAfter = pending.kind === 'UPDATED' ? pending.pending : pending.kind === 'ENDED' ? undefined : obs.pending;

  let rec = current;
  let tasks = TaskView.of(obs.tasks);
  const changes: TaskRecord[] = [...lost];
  const actions: Action[] = [];
  const deleted: string[] = [];
  let wakeAt: number | undefined;
  const asked = new Set<string>();
  const take = (part: RequestChanges) => {
    if (part.record) rec = part.record;
    tasks = tasks.with(part.tasks ?? []);
    changes.push(...(part.tasks ?? []));
    // An action asked twice (the deploy cancels its LB operation, and the part that took it over asks again) runs once.
    for (const action of part.actions ?? []) {
      const key = JSON.stringify(action);
      if (asked.has(key)) continue;
      asked.add(key);
      actions.push(action);
    }
    if (part.wakeAt !== undefined) wakeAt = wakeAt === undefined ? part.wakeAt : Math.min(wakeAt, part.wakeAt);
  };
  if (expired.wakeAt !== undefined) wakeAt = expired.wakeAt;
  if (deploy) take(deploy);

  const applied = applyDeployResult(obs, rec, pending);
  take(applied);
  take(spreadToAllHosts(obs, rec, applied.activeDeploy, pendingAfter));
  const ended = pending.kind === 'ENDED' ? { deployId: pending.deployId, state: pending.result.deployState } : undefined;
  const ctx = requestContext(obs, rec, now, pendingAfter, ended);

  let mayIssueLb = true;
  if (ctx.lbEnabled || rec.lbOperation || rec.lbHandedOver) {
    const settled = settleLbOperation(obs, rec, tasks, now);
    take(settled);
    mayIssueLb = settled.mayIssue;
  }
  // One launch batch per pass, shared: the deploy's new records, then waiting tasks placed, then the steady state's.
  let createdByDeploy = 0;
  if (deploy && deploy.tasks.length > 0) {
    const observedIds = new Set(obs.tasks.map((t) => t.taskId.id));
    createdByDeploy = deploy.tasks.filter((t) => !observedIds.has(t.taskId.id)).length;
  }
  const budget = Math.max(0, obs.settings.launchBatchSize - createdByDeploy);
  const placed = placeWaitingTasks(ctx, tasks, budget);
  take(placed);
  deleted.push(...placed.deleted);
  tasks = tasks.without(placed.deleted);
  take(reconcileActiveInstances(ctx, rec, tasks, applied.activeDeploy, budget - placed.deleted.length));
  take(retireOtherDeploys(ctx, rec, tasks));
  if (ctx.lbEnabled && mayIssueLb) take(issueLbOperation(ctx, rec, tasks));
  const starting = new Set(actions.flatMap((a) => (a.kind === 'startTask' ? [a.taskId] : [])));
  take(cleanUp(ctx, tasks, starting));

  if (rec.state === 'DELETING' && !pendingAfter && !tasks.all().some((t) => isLive(t.state))) rec = { ...rec, state: 'DELETED' };
  const gone = new Set(deleted);
  return {
    now,
    ...(rec !== record ? { request: { ...rec, timestamp: now } } : {}),
    tasks: collapseChanges(changes).filter((t) => !gone.has(t.taskId.id)),
    deletedTasks: deleted,
    pending,
    actions,
    ...(wakeAt !== undefined ? { wakeAt } : {}),
    decisions: deploy?.decisions ?? [],
    ...(deploy?.waiting ? { waiting: deploy.waiting } : {}),
  };
}
