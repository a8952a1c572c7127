// Part 4 of the request step, in two halves: the LB operations in flight (its own and those
// deploys handed over) are settled first (so every other part sees each task's LB state as it is now), and a new one
// is issued after the other parts decided who is wanted and who leaves.
import type { Action, RequestObservation } from '../deploy/types.ts';
import { isLive, type LbOperationRef, type RequestRecord, type TaskRecord } from '../model.ts';
import { needsLbAdd, settleLbOperationOnTasks, touchesLb } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type { RequestChanges, RequestContext } from './context.ts';

/** The LB timeout of steady-state operations when the request has no active deploy. */
const DEFAULT_LB_TIMEOUT_SECONDS = 300;
/** How often a cancel is asked again while the balancer has not answered it. */
const CANCEL_RETRY_MILLIS = 1000;

/**
 * Record the outcome of every LB operation the request owns — its own steady-state one and
 * those handed over by deploys that ended with them in flight — once the balancer says how it
 * ended, on every task it adds or removes. An operation past its timeout (and every handed-over
 * one) is cancelled, and waited for: its real outcome is recorded, never an assumed one.
 * `mayIssue`: whether a new operation may be issued in this step — not while any is in flight
 * (the membership is not known yet), nor right after one failed.
 */
export function settleLbOperation(
  obs: RequestObservation,
  record: RequestRecord,
  tasks: TaskView,
  now: number,
): RequestChanges & { record: RequestRecord; mayIssue: boolean } {
  const own = record.lbOperation;
  const handedOver = record.lbHandedOver ?? [];
  if (!own && handedOver.length === 0) return { record, mayIssue: true };
  const timeoutMs = (obs.activeDeploy?.loadBalancerTimeoutSeconds ?? DEFAULT_LB_TIMEOUT_SECONDS) * 1000;
  const actions: Action[] = [];
  let view = tasks;
  const changes: TaskRecord[] = [];
  let wakeAt: number | undefined;
  const wake = (at: number) => (wakeAt = wakeAt === undefined ? at : Math.min(wakeAt, at));
  let failed = false;

  /** The operation still in flight (maybe now canceling), or undefined once settled. */
  const settle = (op: LbOperationRef, handed: boolean): LbOperationRef | undefined => {
    const seen = obs.lbOps[op.operationId];
    if (!seen || seen.state === 'WAITING') {
      if (op.canceling) {
        actions.push({ kind: 'lbCancel', operationId: op.operationId });
        wake(now + CANCEL_RETRY_MILLIS);
        return op;
      }
      if (now - op.startedAt < timeoutMs) {
        wake(op.startedAt + timeoutMs);
        return op;
      }
      actions.push({ kind: 'lbCancel', operationId: op.operationId });
      wake(now + CANCEL_RETRY_MILLIS);
      return { ...op, canceling: true };
    }
    const settled = settleLbOperationOnTasks((id) => view.get(id), op, seen.state, now);
    view = view.with(settled);
    changes.push(...settled);
    // A handed-over operation was cancelled on purpose; anything else that did not succeed is the balancer's trouble.
    if (seen.state === 'FAILED' || (seen.state === 'CANCELED' && !handed)) failed = true;
    return undefined;
  };

  const next: RequestRecord = { ...record };
  const ownLeft = own && settle(own, false);
  if (ownLeft) next.lbOperation = ownLeft;
  else delete next.lbOperation;
  const handedLeft = handedOver.map((op) => settle(op, true)).filter((op): op is LbOperationRef => op !== undefined);
  if (handedLeft.length > 0) next.lbHandedOver = handedLeft;
  else delete next.lbHandedOver;

  const inFlight = ownLeft !== undefined || handedLeft.length > 0;
  const unchanged = ownLeft === own && handedLeft.length === handedOver.length && handedLeft.every((op, i) => op === handedOver[i]);
  // After a failure, try again shortly rather than spin on a failing balancer.
  if (failed) wake(now + 1000);
  return {
    record: unchanged ? record : next,
    tasks: changes,
    actions,
    mayIssue: !inFlight && !failed,
    ...(wakeAt !== undefined ? { wakeAt } : {}),
  };
}

/**
 * One operation adding the active deploy's wanted tasks that are not in the LB and removing
 * tasks marked for cleanup (or dead) that still are. `routed`: the pending deploy with routing,
 * if any; when the LB may still hold the routing of a deploy that is no longer pending, this
 * operation clears it (the executor gives operations the pending deploy's routing only) — with
 * no membership change if none is due, so pinned clients go back to the old version at once.
 */
export function issueLbOperation(ctx: RequestContext, record: RequestRecord, tasks: TaskView, routed?: string): RequestChanges {
  const { now } = ctx;
  const all = tasks.all();
  const add = all.filter((t) => ctx.wantInLb(t) && needsLbAdd(t));
  // Cleaned-up tasks leave before they stop; a task that died on its own leaves at once, so its
  // address (which the runtime may hand to another task) is never routed to.
  const remove = all.filter((t) => (t.cleanup || !isLive(t.state)) && touchesLb(t) && t.lb.remove?.state !== 'WAITING');
  const clearRouting = record.lbRouting !== undefined && routed === undefined;
  if (add.length === 0 && remove.length === 0 && !(clearRouting && ctx.obs.activeDeploy?.serviceBasePath)) {
    if (!clearRouting) return {};
    const { lbRouting: _gone, ...rest } = record;
    return { record: rest };
  }
  const seq = (record.lbSeq ?? 0) + 1;
  const operationId = `${record.request.id}-lb${seq}`;
  const changes: TaskRecord[] = [
    ...add.map((t) => ({ ...t, lb: { add: { operationId, state: 'WAITING' as const, timestamp: now } } })),
    ...remove.map((t) => ({ ...t, lb: { ...t.lb, remove: { operationId, state: 'WAITING' as const, timestamp: now } } })),
  ];
  const addIds = add.map((t) => t.taskId.id);
  const removeIds = remove.map((t) => t.taskId.id);
  const { lbRouting: _cleared, ...unrouted } = record;
  return {
    record: {
      ...(clearRouting ? unrouted : record),
      lbSeq: seq,
      lbOperation: { operationId, add: addIds, remove: removeIds, startedAt: now },
    },
    tasks: changes,
    actions: [{ kind: 'lbApply', operationId, add: addIds, remove: removeIds }],
  };
}
