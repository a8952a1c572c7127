// `lb` acceptance check: the new deploy against the old one over the same window, from the
// balancer's own counters (no metrics pipeline). The verdict is evaluate.ts's.
import { addCounts, emptyCounts, type ServiceTraffic } from '../../balancers/traffic.ts';
import type { AcceptanceCheckSpec } from '../../core/model.ts';
import { specCheck } from '../spec-check.ts';
import type { Check, CheckAnswer, CheckContext } from '../types.ts';
import { LB_CHECK_DEFAULTS, evaluateLb, lbWindowMs, sideOf, type LbCheckOptions } from './evaluate.ts';

export function createLbCheck(spec: AcceptanceCheckSpec): Check {
  const o: LbCheckOptions = { ...LB_CHECK_DEFAULTS, ...(spec.options as Partial<LbCheckOptions>) };
  return specCheck(spec, async (ctx: CheckContext): Promise<CheckAnswer> => {
    if (!ctx.traffic) throw new Error('this server runs no load balancer to read traffic from');
    const readyAt = ctx.progress.stepReadyAt ?? ctx.progress.stepStartedAt;
    const windowMs = lbWindowMs(ctx.now, readyAt, o.windowSeconds);
    const traffic = windowMs > 0 ? await ctx.traffic({ windowMs }) : undefined;
    const fresh = sum(traffic, [ctx.deployIds.new]);
    const old = ctx.deployIds.old.length > 0 ? sideOf(sum(traffic, ctx.deployIds.old)) : undefined;
    return evaluateLb(o, sideOf(fresh), old, windowMs);
  });
}

function sum(traffic: ServiceTraffic | undefined, deployIds: readonly string[]) {
  const total = emptyCounts();
  for (const d of traffic?.deploys ?? []) if (d.deployId !== undefined && deployIds.includes(d.deployId)) addCounts(total, d);
  return total;
}
