import type { RequestObservation } from '../deploy/types.ts';
import type { Deploy, RequestRecord } from '../model.ts';
import { resolvePlacement, spreadAllCount, spreadsToAll } from '../placement.ts';
import type { RequestChanges } from './context.ts';

/**
 * Part 1a: agentPlacement SPREAD_ALL_AGENTS (or _SLAVES) runs one instance on every host the
 * request may use, so its instance count follows the hosts (Singularity's
 * SingularityAutoScaleSpreadAllPoller): ACTIVE hosts of the active deploy's kind, in its racks,
 * with its attributes. Not while a deploy is pending (its steps were computed for the count it
 * started with); never to zero.
 */
export function spreadToAllHosts(
  obs: RequestObservation,
  record: RequestRecord,
  activeDeploy: Deploy | undefined,
  pendingAfter: unknown,
): RequestChanges & { record: RequestRecord } {
  const request = record.request;
  if (!spreadsToAll(resolvePlacement(request, obs.settings.defaultAgentPlacement))) return { record };
  if (record.state !== 'ACTIVE' || !activeDeploy || pendingAfter) return { record };
  const count = spreadAllCount(request, activeDeploy, obs.hosts);
  if (count === 0 || count === request.instances) return { record };
  return { record: { ...record, request: { ...request, instances: count } } };
}
