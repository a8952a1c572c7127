// What the named parts of the request step share: the facts fixed once the deploy result is
// applied, and the shape of the changes each part returns.
import type { Action, DeployResultState, RequestObservation } from '../deploy/types.ts';
import type { CleanupReason, RequestRecord, TaskRecord } from '../model.ts';
import { healthy } from '../tasks.ts';

export interface RequestContext {
  now: number;
  obs: RequestObservation;
  /** the request's load balancing, as the request is after the deploy result */
  lbEnabled: boolean;
  activeId?: string;
  /** the pending deploy, if it is still pending after this step */
  pendingId?: string;
  /** old instance numbers the pending deploy has retired so far (none once it ended) */
  retired: ReadonlySet<number>;
  /** the result of the deploy that ended in this step, if one did */
  ended?: { deployId: string; state: DeployResultState };
  /** The request wants one serving task of its active deploy for instance `n`. */
  isDesired(n: number): boolean;
  /** Some instance from `from` to `to` is desired (counted without listing the range). */
  anyDesired(from: number, to: number): boolean;
  /** Why an active-deploy task that is no longer desired is stopped. */
  cleanupReason(t: TaskRecord): CleanupReason;
  /** A steady-state task that belongs in the LB (added by the LB membership step). */
  wantInLb(t: TaskRecord): boolean;
}

/** What one named part of the request step changed. */
export interface RequestChanges {
  /** the request record after the part, when it changed */
  record?: RequestRecord;
  /** task records created or changed, in order */
  tasks?: readonly TaskRecord[];
  actions?: readonly Action[];
  wakeAt?: number;
}

export function requestContext(
  obs: RequestObservation,
  record: RequestRecord,
  now: number,
  pendingAfter: { deployId: string; progress: { retiredOldInstances: number[] } } | undefined,
  ended: RequestContext['ended'],
): RequestContext {
  const lbEnabled = record.request.loadBalanced;
  const activeId = record.activeDeployId;
  const pendingId = pendingAfter?.deployId;
  const retired = new Set(pendingAfter?.progress.retiredOldInstances ?? []);
  const instances = record.request.instances;
  const wanted = record.state === 'ACTIVE' && !!activeId;
  const isDesired = (n: number) => wanted && n >= 1 && n <= instances && !retired.has(n);
  return {
    now,
    obs,
    lbEnabled,
    ...(activeId !== undefined ? { activeId } : {}),
    ...(pendingId !== undefined ? { pendingId } : {}),
    retired,
    ...(ended ? { ended } : {}),
    isDesired,
    anyDesired: (from, to) => {
      const lo = Math.max(from, 1);
      const hi = Math.min(to, instances);
      if (!wanted || hi < lo) return false;
      let retiredInRange = 0;
      for (const n of retired) if (n >= lo && n <= hi) retiredInRange++;
      return retiredInRange < hi - lo + 1;
    },
    cleanupReason: (t) =>
      record.state === 'PAUSED' || record.state === 'DEPLOYING_TO_UNPAUSE'
        ? 'PAUSING'
        : record.state === 'DELETING'
          ? 'REQUEST_DELETING'
          : retired.has(t.taskId.instanceNo)
            ? 'DEPLOY_REPLACED'
            : 'SCALING_DOWN',
    wantInLb: (t) =>
      lbEnabled &&
      t.taskId.deployId === activeId &&
      healthy(t) &&
      isDesired(t.taskId.instanceNo) &&
      !removedByPendingSwap(t, record.request.id, pendingId),
  };
}

/** Old tasks that a pending non-canary deploy swapped out stay out while it is pending. */
function removedByPendingSwap(t: TaskRecord, requestId: string, pendingId: string | undefined): boolean {
  return pendingId !== undefined && t.lb.remove?.operationId.startsWith(`${requestId}-${pendingId}-lb`) === true;
}
