// The `lb` check's verdict, pure: the balancer's counts for the new and the old deploy over the
// same window in, a state and a message with the numbers out.
import { LATENCY_BUCKETS_MS, latencyQuantile, type TrafficCounts } from '../../balancers/traffic.ts';
import type { CheckAnswer } from '../types.ts';

export interface LbCheckOptions {
  /** at most this share of the new deploy's requests may be errors (0..1) */
  maxErrorRate?: number;
  /** the new error rate may be at most this many times the old one (floored at errorRateFloor) */
  maxErrorRateVsOld?: number;
  /** the old error rate a ratio is taken against is at least this (an old rate of 0 compares with it) */
  errorRateFloor: number;
  maxP50Ms?: number;
  maxP99Ms?: number;
  /** the new p99 may be at most this many times the old one (floored at the first bucket's bound) */
  maxP99MsVsOld?: number;
  /** each side needs this many requests in the window before anything is judged */
  minRequests: number;
  /** how far back to look, at most 600 s; never before the step's new tasks took traffic */
  windowSeconds: number;
}

export const LB_CHECK_DEFAULTS = { errorRateFloor: 0.001, minRequests: 100, windowSeconds: 60 } as const;
export const LB_THRESHOLDS = ['maxErrorRate', 'maxErrorRateVsOld', 'maxP50Ms', 'maxP99Ms', 'maxP99MsVsOld'] as const;

/** The smallest latency a p99 ratio is taken against: the histogram knows nothing finer. */
const LATENCY_FLOOR_MS = LATENCY_BUCKETS_MS[0];

export interface LbSide {
  /** requests the balancer answered for this side in the window */
  requests: number;
  errors: number;
  p50Ms?: number;
  p99Ms?: number;
}

/**
 * Errors of one side: 5xx answers (the balancer's own 502/504 for an upstream that failed are
 * among them) or, if more, the upstream errors (an answer the balancer cut after a 2xx header).
 * The counters do not say which requests were both, so the larger of the two is the count:
 * never more than the true one, and at least every 5xx.
 */
export function sideOf(c: TrafficCounts): LbSide {
  const p50 = latencyQuantile(c.latency, 0.5);
  const p99 = latencyQuantile(c.latency, 0.99);
  return {
    requests: c.requests,
    errors: Math.min(c.requests, Math.max(c.responses['5xx'], c.upstreamErrors)),
    ...(p50 !== undefined ? { p50Ms: p50 } : {}),
    ...(p99 !== undefined ? { p99Ms: p99 } : {}),
  };
}

/**
 * The window to read, in whole seconds (the counters keep one-second slots): at most
 * windowSeconds, and starting no earlier than the first whole second after `readyAt` (when the
 * step's new tasks were in the LB), so traffic from before the step never counts. 0: not yet.
 */
export function lbWindowMs(now: number, readyAt: number, windowSeconds: number): number {
  const nowSecond = Math.floor(now / 1000);
  const firstSecond = Math.max(Math.ceil(readyAt / 1000), nowSecond - windowSeconds + 1);
  return Math.max(0, nowSecond - firstSecond + 1) * 1000;
}

const count = (n: number) => n.toLocaleString('en-US');
const percent = (rate: number) => {
  const p = rate * 100;
  return `${p > 0 && p < 0.1 ? p.toFixed(2) : p.toFixed(1)} %`;
};
const ms = (v: number | undefined) => (v === undefined ? '-' : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);
const rateOf = (s: LbSide) => (s.requests === 0 ? 0 : s.errors / s.requests);

function describe(side: LbSide, o: LbCheckOptions, full: boolean): string {
  const parts = [full ? `${percent(rateOf(side))} errors` : percent(rateOf(side))];
  if (o.maxP50Ms !== undefined) parts.push(`p50 ${ms(side.p50Ms)}`);
  if (o.maxP99Ms !== undefined || o.maxP99MsVsOld !== undefined) parts.push(`p99 ${ms(side.p99Ms)}`);
  return `${parts.join(', ')} over ${count(side.requests)}${full ? ' requests' : ''}`;
}

/**
 * The verdict. `old` undefined: no other deploy serves (a first deploy, or an atomic swap that
 * took the old tasks out of the LB), so only the absolute thresholds apply and the message says
 * the relative ones were not. Too few requests on a side is PENDING, never a pass: the engine
 * asks again until the acceptance timeout, which fails the deploy with this message.
 */
export function evaluateLb(o: LbCheckOptions, fresh: LbSide, old: LbSide | undefined, windowMs: number): CheckAnswer {
  const over = `over the last ${Math.round(windowMs / 1000)} s`;
  if (fresh.requests < o.minRequests || (old && old.requests < o.minRequests)) {
    const sides = [`new ${count(fresh.requests)}`];
    if (old) sides.push(`old ${count(old.requests)}`);
    return {
      state: 'PENDING',
      message: `too few requests ${over}: ${sides.join(', ')} (minRequests ${count(o.minRequests)} per side)`,
    };
  }
  const failures: string[] = [];
  const newRate = rateOf(fresh);
  if (o.maxErrorRate !== undefined && newRate > o.maxErrorRate)
    failures.push(`error rate ${percent(newRate)} > maxErrorRate ${percent(o.maxErrorRate)}`);
  if (o.maxP50Ms !== undefined && (fresh.p50Ms ?? 0) > o.maxP50Ms) failures.push(`p50 ${ms(fresh.p50Ms)} > maxP50Ms ${o.maxP50Ms}`);
  if (o.maxP99Ms !== undefined && (fresh.p99Ms ?? 0) > o.maxP99Ms) failures.push(`p99 ${ms(fresh.p99Ms)} > maxP99Ms ${o.maxP99Ms}`);
  const skipped: string[] = [];
  if (old) {
    if (o.maxErrorRateVsOld !== undefined) {
      const base = Math.max(rateOf(old), o.errorRateFloor);
      if (newRate > o.maxErrorRateVsOld * base)
        failures.push(
          `error rate ${percent(newRate)} > ${o.maxErrorRateVsOld} × old ${percent(base)}${base > rateOf(old) ? ' (floor)' : ''}`,
        );
    }
    if (o.maxP99MsVsOld !== undefined) {
      const base = Math.max(old.p99Ms ?? 0, LATENCY_FLOOR_MS);
      if ((fresh.p99Ms ?? 0) > o.maxP99MsVsOld * base) failures.push(`p99 ${ms(fresh.p99Ms)} > ${o.maxP99MsVsOld} × old ${ms(base)}`);
    }
  } else {
    if (o.maxErrorRateVsOld !== undefined) skipped.push('maxErrorRateVsOld');
    if (o.maxP99MsVsOld !== undefined) skipped.push('maxP99MsVsOld');
  }
  const state = failures.length > 0 ? 'FAILED' : 'SUCCEEDED';
  const versus = old ? ` vs old ${describe(old, o, false)}` : ' (no old deploy serves)';
  const why = failures.length > 0 ? ` (${failures.join('; ')})` : '';
  const unapplied = skipped.length > 0 ? `; ${skipped.join(' and ')} not applied without an old deploy` : '';
  return { state, message: `new ${describe(fresh, o, true)}${versus} ${over}: ${state}${why}${unapplied}` };
}
