// Part 4 of the request step, in two halves: the steady-state LB operation in flight is
// settled first (so every other part sees each task's LB state as it is now), and a new one
// is issued after the other parts decided who is wanted and who leaves.
import type { Action, RequestObservation } from '../deploy/types.ts';
import { isLive, type RequestRecord, type TaskRecord } from '../model.ts';
import { touchesLb } from '../tasks.ts';
import type { TaskView } from '../task-view.ts';
import type { RequestChanges, RequestContext } from './context.ts';

/** The LB timeout of steady-state operations when the request has no active deploy. */
const DEFAULT_LB_TIMEOUT_SECONDS = 300;

/**
 * Record the outcome of the steady-state LB operation in flight, if it finished (or cancel
 * it once it timed out). `mayIssue`: whether a new operation may be issued in this step —
 * not while one is in flight, nor right after one failed.
 */
export function settleLbOperation(
  obs: RequestObservation,
  record: RequestRecord,
  tasks: TaskView,
  now: number,
): RequestChanges & { record: RequestRecord; mayIssue: boolean } {
  const op = record.lbOperation;
  if (!op) return { record, mayIssue: true };
  const seen = obs.lbOps[op.operationId];
  const timeoutMs = (obs.activeDeploy?.loadBalancerTimeoutSeconds ?? DEFAULT_LB_TIMEOUT_SECONDS) * 1000;
  const actions: Action[] = [];
  if (!seen || seen.state === 'WAITING') {
    if (now - op.startedAt < timeoutMs) return { record, mayIssue: false, wakeAt: op.startedAt + timeoutMs };
    actions.push({ kind: 'lbCancel', operationId: op.operationId });
  }
  const state = seen && seen.state !== 'WAITING' ? seen.state : 'CANCELED';
  const changes: TaskRecord[] = [];
  for (const [ids, which] of [
    [op.add, 'add'],
    [op.remove, 'remove'],
  ] as const) {
    for (const id of ids) {
      const t = tasks.get(id);
      if (!t) continue;
      const lb = { ...t.lb, [which]: { operationId: op.operationId, state, timestamp: now } };
      // A failed removal leaves the task in the LB: forget the attempt so it is retried.
      if (which === 'remove' && state !== 'SUCCESS') delete lb.remove;
      changes.push({ ...t, lb });
    }
  }
  const next = { ...record };
  delete next.lbOperation;
  // After a failure, try again shortly rather than spin on a failing balancer.
  if (state !== 'SUCCESS') return { record: next, tasks: changes, actions, mayIssue: false, wakeAt: now + 1000 };
  return { record: next, tasks: changes, actions, mayIssue: true };
}

/**
 * One operation adding the active deploy's wanted tasks that are not in the LB and removing
 * tasks marked for cleanup (or dead) that still are.
 */
export function issueLbOperation(ctx: RequestContext, record: RequestRecord, tasks: TaskView): RequestChanges {
  const { now } = ctx;
  const all = tasks.all();
  const add = all.filter((t) => ctx.wantInLb(t) && !touchesLb(t));
  // Cleaned-up tasks leave before they stop; a task that died on its own leaves at once, so its
  // address (which the runtime may hand to another task) is never routed to.
  const remove = all.filter((t) => (t.cleanup || !isLive(t.state)) && touchesLb(t) && t.lb.remove?.state !== 'WAITING');
  if (add.length === 0 && remove.length === 0) return {};
  const seq = (record.lbSeq ?? 0) + 1;
  const operationId = `${record.request.id}-lb${seq}`;
  const changes: TaskRecord[] = [
    ...add.map((t) => ({ ...t, lb: { add: { operationId, state: 'WAITING' as const, timestamp: now } } })),
    ...remove.map((t) => ({ ...t, lb: { ...t.lb, remove: { operationId, state: 'WAITING' as const, timestamp: now } } })),
  ];
  const addIds = add.map((t) => t.taskId.id);
  const removeIds = remove.map((t) => t.taskId.id);
  return {
    record: { ...record, lbSeq: seq, lbOperation: { operationId, add: addIds, remove: removeIds, startedAt: now } },
    tasks: changes,
    actions: [{ kind: 'lbApply', operationId, add: addIds, remove: removeIds }],
  };
}
