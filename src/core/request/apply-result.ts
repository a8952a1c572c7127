import type { Deploy, RequestRecord } from '../model.ts';
import type { PendingOutcome } from '../deploy/step.ts';
import type { RequestObservation } from '../deploy/types.ts';

/**
 * Part 1: the result of a deploy that ended in this step. SUCCEEDED makes it the active
 * deploy (and its updatedRequest the request), unpauses a DEPLOYING_TO_UNPAUSE request and
 * ends any crash-loop backoff; any other end leaves the active deploy as it was (a
 * DEPLOYING_TO_UNPAUSE request goes back to PAUSED). Either way the request has no pending
 * deploy any more, and an LB operation the deploy ended with in flight is handed over to it.
 */
export function applyDeployResult(
  obs: RequestObservation,
  record: RequestRecord,
  pending: PendingOutcome,
): { record: RequestRecord; activeDeploy?: Deploy } {
  const active = obs.activeDeploy ? { activeDeploy: obs.activeDeploy } : {};
  if (pending.kind !== 'ENDED') return { record, ...active };
  const next: RequestRecord = { ...record };
  delete next.pendingDeployId;
  // The deploy's LB operation in flight is the request's from now on (lb-membership.ts settles it).
  if (pending.lbHandover) next.lbHandedOver = [...(record.lbHandedOver ?? []), pending.lbHandover];
  if (pending.result.deployState !== 'SUCCEEDED') {
    if (next.state === 'DEPLOYING_TO_UNPAUSE') next.state = 'PAUSED';
    return { record: next, ...active };
  }
  next.activeDeployId = pending.deployId;
  if (obs.pending?.updatedRequest) next.request = obs.pending.updatedRequest;
  if (next.state === 'DEPLOYING_TO_UNPAUSE') next.state = 'ACTIVE';
  delete next.backoff;
  return { record: next, ...(obs.pendingDeploy ? { activeDeploy: obs.pendingDeploy } : {}) };
}
