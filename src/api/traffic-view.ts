// GET /api/requests/request/:id/traffic: the live traffic split and, per version (deploy), the
// request rate, error rate and latency over a window and as a series, from the counters of the
// leader's load balancer. Shared shape for the CLI watch and the UI.
import {
  addCounts,
  emptyCounts,
  errorRate,
  latencyQuantile,
  MAX_WINDOW_MS,
  type ServiceTraffic,
  type TrafficCounts,
} from '../balancers/traffic.ts';
import type { RequestRecord, TaskRecord } from '../core/model.ts';
import { inLb } from '../core/tasks.ts';

export const TRAFFIC_LIMITS = { defaultWindowSeconds: 300, defaultStepSeconds: 10, maxWindowSeconds: MAX_WINDOW_MS / 1000 };
/** The split is judged on the last minute of the window (what the balancer does now). */
const SPLIT_SECONDS = 60;
/** Fewer requests than this in that minute: the split shown is the LB membership's. */
const SPLIT_MIN_REQUESTS = 20;

export interface LatencySummary {
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface TrafficPointView {
  at: number;
  requests: number;
  requestsPerSecond: number;
  errors: number;
  errorRate: number | null;
  p99Ms: number | null;
}

export interface VersionTrafficView {
  deployId: string;
  role: 'active' | 'pending' | 'other';
  /** its tasks in the load balancer now */
  tasksInLb: number;
  /** its share of the tasks in the LB: what round robin gives it of new requests */
  intendedShare: number | null;
  /** its share of the requests of the window's last minute */
  observedShare: number | null;
  requests: number;
  requestsPerSecond: number;
  responses: TrafficCounts['responses'];
  upstreamErrors: number;
  /** 5xx (the balancer's own answers for failed tasks included) over requests */
  errorRate: number | null;
  latencyMs: LatencySummary;
  series: TrafficPointView[];
}

export interface TrafficView {
  requestId: string;
  serviceId: string;
  /** false where this server has no counters (a follower, or no load balancer) */
  available: boolean;
  balancer: string;
  /** why not available, in words */
  note?: string;
  /** the leader's API, which has them */
  leaderUrl?: string;
  windowSeconds: number;
  stepSeconds: number;
  from: number;
  to: number;
  /** "v1 75 % / v2 25 %" */
  split: string;
  /** what the split is measured on: the last minute's requests, or the LB membership */
  splitBasis: 'requests' | 'tasks' | 'none';
  total: { requests: number; requestsPerSecond: number; errorRate: number | null; latencyMs: LatencySummary };
  versions: VersionTrafficView[];
}

export interface TrafficViewInput {
  record: RequestRecord;
  serviceId: string;
  tasks: TaskRecord[];
  traffic: ServiceTraffic | undefined;
  balancerKind: string;
  windowSeconds: number;
  stepSeconds: number;
  leaderUrl?: string | undefined;
}

const round = (n: number, digits = 4) => Math.round(n * 10 ** digits) / 10 ** digits;
const nullable = (n: number | undefined, digits = 4) => (n === undefined ? null : round(n, digits));

function latency(c: TrafficCounts): LatencySummary {
  return {
    p50: nullable(latencyQuantile(c.latency, 0.5), 1),
    p90: nullable(latencyQuantile(c.latency, 0.9), 1),
    p99: nullable(latencyQuantile(c.latency, 0.99), 1),
  };
}

export function trafficView(input: TrafficViewInput): TrafficView {
  const { record, traffic, windowSeconds, stepSeconds } = input;
  const active = record.activeDeployId;
  const pending = record.pendingDeployId;
  const lbTasks = new Map<string, number>();
  for (const t of input.tasks) if (inLb(t)) lbTasks.set(t.taskId.deployId, (lbTasks.get(t.taskId.deployId) ?? 0) + 1);
  const inLbTotal = [...lbTasks.values()].reduce((a, b) => a + b, 0);

  const ids = new Set<string>([...(active ? [active] : []), ...(pending ? [pending] : []), ...lbTasks.keys()]);
  for (const d of traffic?.deploys ?? []) ids.add(d.deployId ?? 'unknown');
  const counts = (id: string) => traffic?.deploys.find((d) => (d.deployId ?? 'unknown') === id) ?? emptyCounts();

  // the split: the last minute's requests, or (too few of them) the LB membership
  const to = traffic?.to ?? 0;
  const recent = new Map<string, number>();
  let recentTotal = 0;
  for (const p of traffic?.series?.points ?? []) {
    if (p.at < to - SPLIT_SECONDS * 1000) continue;
    for (const d of p.deploys) {
      const id = d.deployId ?? 'unknown';
      recent.set(id, (recent.get(id) ?? 0) + d.requests);
      recentTotal += d.requests;
    }
  }

  const role = (id: string): VersionTrafficView['role'] => (id === active ? 'active' : id === pending ? 'pending' : 'other');
  const order = { active: 0, pending: 1, other: 2 } as const;
  const versions: VersionTrafficView[] = [...ids]
    .map((deployId) => {
      const c = counts(deployId);
      const tasksInLb = lbTasks.get(deployId) ?? 0;
      return {
        deployId,
        role: role(deployId),
        tasksInLb,
        intendedShare: inLbTotal > 0 ? round(tasksInLb / inLbTotal) : null,
        observedShare: recentTotal > 0 ? round((recent.get(deployId) ?? 0) / recentTotal) : null,
        requests: c.requests,
        requestsPerSecond: round(c.requests / windowSeconds, 3),
        responses: { ...c.responses },
        upstreamErrors: c.upstreamErrors,
        errorRate: nullable(errorRate(c)),
        latencyMs: latency(c),
        series: (traffic?.series?.points ?? []).map((p) => {
          const d = p.deploys.find((x) => (x.deployId ?? 'unknown') === deployId) ?? emptyCounts();
          return {
            at: p.at,
            requests: d.requests,
            requestsPerSecond: round(d.requests / stepSeconds, 3),
            errors: d.responses['5xx'],
            errorRate: nullable(errorRate(d)),
            p99Ms: nullable(latencyQuantile(d.latency, 0.99), 1),
          };
        }),
      };
    })
    .sort((a, b) => order[a.role] - order[b.role] || a.deployId.localeCompare(b.deployId));

  const basis: TrafficView['splitBasis'] = recentTotal >= SPLIT_MIN_REQUESTS ? 'requests' : inLbTotal > 0 ? 'tasks' : 'none';
  const shareOf = (v: VersionTrafficView) => (basis === 'requests' ? v.observedShare : v.intendedShare) ?? 0;
  const split =
    basis === 'none'
      ? 'no traffic'
      : versions
          .filter((v) => shareOf(v) > 0 || v.role !== 'other')
          .map((v) => `${v.deployId} ${Math.round(shareOf(v) * 100)} %`)
          .join(' / ');
  const total = traffic?.total ?? emptyCounts();
  const all = emptyCounts();
  addCounts(all, total);
  return {
    requestId: record.request.id,
    serviceId: input.serviceId,
    available: traffic !== undefined,
    balancer: input.balancerKind,
    ...(traffic === undefined
      ? {
          note:
            input.balancerKind === 'none'
              ? 'this Fledge runs without a load balancer (--lb none)'
              : 'traffic is counted by the leading scheduler; ask it',
        }
      : {}),
    ...(traffic === undefined && input.leaderUrl ? { leaderUrl: input.leaderUrl } : {}),
    windowSeconds,
    stepSeconds,
    from: traffic?.from ?? 0,
    to,
    split,
    splitBasis: basis,
    total: {
      requests: all.requests,
      requestsPerSecond: round(all.requests / windowSeconds, 3),
      errorRate: nullable(errorRate(all)),
      latencyMs: latency(all),
    },
    versions,
  };
}
