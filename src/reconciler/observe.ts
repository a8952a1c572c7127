import type { EngineSettings, RequestObservation } from '../core/deploy/types.ts';
import { currentTrafficStep } from '../core/deploy/traffic.ts';
import type { RequestRecord } from '../core/model.ts';
import type { Store } from '../store/types.ts';
import type { EngineHosts, Executor } from './execute.ts';

/** Done tasks older than this no longer matter to any decision. */
const RECENT_MILLIS = 10 * 60_000;

export async function observeRequest(
  store: Store,
  record: RequestRecord,
  now: number,
  settings: EngineSettings,
  executor: Executor,
  hosts: EngineHosts,
): Promise<RequestObservation> {
  const id = record.request.id;
  const pending = await store.getPending(id);
  const activeDeploy = record.activeDeployId ? await store.getDeploy(id, record.activeDeployId) : undefined;
  const pendingDeploy = pending ? await store.getDeploy(id, pending.deployId) : undefined;
  const since = Math.min(pending?.progress.stepStartedAt ?? now, now - RECENT_MILLIS);
  const tasks = await store.listTasks({ requestId: id, endedSince: since });

  const endedDeploys: RequestObservation['endedDeploys'] = {};
  for (const deployId of new Set(tasks.map((t) => t.taskId.deployId))) {
    if (deployId === record.activeDeployId || deployId === pending?.deployId) continue;
    const state = (await store.getDeployHistory(id, deployId))?.result?.deployState;
    if (state) endedDeploys[deployId] = state;
  }

  const lbOps: RequestObservation['lbOps'] = {};
  const referenced = [
    ...(pending?.progress.pendingLbUpdate?.state === 'WAITING'
      ? [
          {
            operationId: pending.progress.pendingLbUpdate.loadBalancerRequestId,
            add: pending.progress.pendingLbUpdate.add,
            remove: pending.progress.pendingLbUpdate.remove,
            ...(pending.progress.pendingLbUpdate.reweigh ? { reweigh: pending.progress.pendingLbUpdate.reweigh } : {}),
          },
        ]
      : []),
    ...(record.lbOperation ? [record.lbOperation] : []),
    ...(record.lbHandedOver ?? []),
  ];
  for (const op of referenced) {
    const status = await executor.observeLbOperation(id, op);
    if (status) lbOps[op.operationId] = status;
  }

  // A traffic step in acceptance is judged on the balancer's own counters.
  const traffic = pending?.progress.traffic;
  const observed =
    pending &&
    pendingDeploy &&
    traffic?.since !== undefined &&
    traffic.appliedStep === pending.progress.step &&
    currentTrafficStep(pending.progress)
      ? await executor.observeTraffic(pendingDeploy.loadBalancerServiceIdOverride ?? id, pending.deployId, traffic.since)
      : undefined;

  return {
    request: record.request,
    requestState: record.state,
    ...(activeDeploy ? { activeDeploy } : {}),
    ...(pendingDeploy ? { pendingDeploy } : {}),
    ...(pending ? { pending } : {}),
    tasks,
    endedDeploys,
    lbOps,
    checkResults: pending ? executor.checkResults(id, pending.deployId) : [],
    ...(observed ? { traffic: observed } : {}),
    hosts: hosts.snapshots(),
    settings,
  };
}
