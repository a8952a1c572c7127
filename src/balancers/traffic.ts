/*
 * Per-upstream traffic counters, shared by every balancer: each request answered through the
 * balancer is recorded once, on the upstream (task) that gave the final answer, with the
 * status the client got, whether the balancer answered for a failed upstream, and how long
 * the whole exchange took (request received → last byte of the response sent).
 *
 * Two views of the same records:
 * - totals since the balancer started, per upstream (Prometheus counters and histograms);
 * - one-second slots kept for SLOT_COUNT seconds, so any window up to that long can be summed
 *   exactly (the API's per-version rates, the CLI watch, the UI charts, acceptance checks).
 *
 * Latency is a histogram with fixed bucket bounds (LATENCY_BUCKETS_MS); quantiles are read
 * from it by linear interpolation inside the bucket, so a p99 is exact to the bucket it falls
 * in and never finer than its bounds.
 */

export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];

/** Upper bounds (ms, inclusive) of the latency buckets; one more bucket holds what is slower. */
export const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000] as const;

/** How many one-second slots are kept: the longest window traffic() can sum. */
export const SLOT_COUNT = 600;
export const MAX_WINDOW_MS = SLOT_COUNT * 1000;
/** Totals of an upstream that left the balancer are kept this long, then forgotten. */
const RETIRED_KEEP_MS = 10 * 60_000;

export interface LatencyHistogram {
  /** per bucket of LATENCY_BUCKETS_MS, plus one for slower answers (not cumulative) */
  counts: number[];
  sumMs: number;
}

export interface TrafficCounts {
  /** requests answered through this upstream (the client got a status) */
  requests: number;
  responses: Record<StatusClass, number>;
  /** the balancer answered because the upstream failed it: refused, reset, timed out */
  upstreamErrors: number;
  latency: LatencyHistogram;
}

export interface TaskTraffic extends TrafficCounts {
  taskId: string;
  deployId?: string;
}

export interface DeployTraffic extends TrafficCounts {
  /** undefined for upstreams added without a deploy id */
  deployId?: string;
}

export interface TrafficPoint {
  /** start of the step (epoch ms) */
  at: number;
  deploys: DeployTraffic[];
}

export interface ServiceTraffic {
  serviceId: string;
  /** the window summed: [from, to) in epoch ms */
  from: number;
  to: number;
  total: TrafficCounts;
  deploys: DeployTraffic[];
  tasks: TaskTraffic[];
  /** with `stepMs`: the window cut into steps, oldest first */
  series?: { stepMs: number; points: TrafficPoint[] };
}

export interface TrafficWindow {
  /** how far back to sum, at most MAX_WINDOW_MS */
  windowMs: number;
  /** also cut the window into steps of this length (a time series) */
  stepMs?: number;
}

/** Cumulative counts of one upstream since the balancer started. */
export interface TrafficTotal extends TaskTraffic {
  serviceId: string;
}

/** What one request taught us. */
export interface TrafficRecord {
  serviceId: string;
  taskId: string;
  deployId?: string;
  status: number;
  latencyMs: number;
  upstreamError: boolean;
}

export function emptyCounts(): TrafficCounts {
  return {
    requests: 0,
    responses: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 },
    upstreamErrors: 0,
    latency: { counts: new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0), sumMs: 0 },
  };
}

export function statusClass(status: number): StatusClass | undefined {
  const c = Math.floor(status / 100);
  return c >= 1 && c <= 5 ? STATUS_CLASSES[c - 1] : undefined;
}

function bucketOf(ms: number): number {
  for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) if (ms <= LATENCY_BUCKETS_MS[i]!) return i;
  return LATENCY_BUCKETS_MS.length;
}

function addRecord(c: TrafficCounts, r: TrafficRecord): void {
  c.requests += 1;
  const cls = statusClass(r.status);
  if (cls) c.responses[cls] += 1;
  if (r.upstreamError) c.upstreamErrors += 1;
  const ms = Math.max(0, r.latencyMs);
  c.latency.counts[bucketOf(ms)]! += 1;
  c.latency.sumMs += ms;
}

export function addCounts(into: TrafficCounts, from: TrafficCounts): void {
  into.requests += from.requests;
  for (const k of STATUS_CLASSES) into.responses[k] += from.responses[k];
  into.upstreamErrors += from.upstreamErrors;
  for (let i = 0; i < into.latency.counts.length; i++) into.latency.counts[i]! += from.latency.counts[i] ?? 0;
  into.latency.sumMs += from.latency.sumMs;
}

/**
 * The q-quantile (0 < q ≤ 1) of a histogram in ms, interpolated inside its bucket; undefined
 * without samples. Past the last bound it answers that bound (the histogram knows no more).
 */
export function latencyQuantile(h: LatencyHistogram, q: number): number | undefined {
  const total = h.counts.reduce((a, b) => a + b, 0);
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const n = h.counts[i] ?? 0;
    if (seen + n >= rank) {
      const lower = i === 0 ? 0 : LATENCY_BUCKETS_MS[i - 1]!;
      const upper = LATENCY_BUCKETS_MS[i];
      if (upper === undefined) return lower;
      return lower + ((upper - lower) * (rank - seen)) / n;
    }
    seen += n;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1];
}

/** 5xx answers (the balancer's own for failed upstreams included) over requests; undefined without requests. */
export function errorRate(c: TrafficCounts): number | undefined {
  return c.requests === 0 ? undefined : c.responses['5xx'] / c.requests;
}

interface Entry {
  serviceId: string;
  taskId: string;
  deployId?: string;
  counts: TrafficCounts;
  lastAt: number;
  retiredAt?: number;
}

interface Slot {
  second: number;
  entries: Map<string, { serviceId: string; taskId: string; deployId?: string; counts: TrafficCounts }>;
}

const keyOf = (serviceId: string, taskId: string) => `${serviceId}\u0000${taskId}`;

export class TrafficRecorder {
  readonly #now: () => number;
  readonly #totals = new Map<string, Entry>();
  readonly #slots: (Slot | undefined)[] = new Array<Slot | undefined>(SLOT_COUNT);

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  record(r: TrafficRecord): void {
    const at = this.#now();
    const key = keyOf(r.serviceId, r.taskId);
    let total = this.#totals.get(key);
    if (!total) {
      total = {
        serviceId: r.serviceId,
        taskId: r.taskId,
        ...(r.deployId !== undefined ? { deployId: r.deployId } : {}),
        counts: emptyCounts(),
        lastAt: at,
      };
      this.#totals.set(key, total);
    }
    total.lastAt = at;
    delete total.retiredAt;
    addRecord(total.counts, r);

    const second = Math.floor(at / 1000);
    const index = second % SLOT_COUNT;
    let slot = this.#slots[index];
    if (!slot || slot.second !== second) {
      slot = { second, entries: new Map() };
      this.#slots[index] = slot;
    }
    let entry = slot.entries.get(key);
    if (!entry) {
      entry = {
        serviceId: r.serviceId,
        taskId: r.taskId,
        ...(r.deployId !== undefined ? { deployId: r.deployId } : {}),
        counts: emptyCounts(),
      };
      slot.entries.set(key, entry);
    }
    addRecord(entry.counts, r);
  }

  /** The upstream left the balancer: its totals stay for a while (a last scrape), then go. */
  retire(serviceId: string, taskId: string): void {
    const total = this.#totals.get(keyOf(serviceId, taskId));
    if (total) total.retiredAt ??= this.#now();
  }

  totals(): TrafficTotal[] {
    const now = this.#now();
    const out: TrafficTotal[] = [];
    for (const [key, e] of this.#totals) {
      if (e.retiredAt !== undefined && now - e.retiredAt > RETIRED_KEEP_MS) {
        this.#totals.delete(key);
        continue;
      }
      out.push({
        serviceId: e.serviceId,
        taskId: e.taskId,
        ...(e.deployId !== undefined ? { deployId: e.deployId } : {}),
        ...cloneCounts(e.counts),
      });
    }
    return out;
  }

  /** The service's traffic in the last `windowMs` (whole seconds, the current one included). */
  window(serviceId: string, window: TrafficWindow): ServiceTraffic {
    const windowMs = Math.min(MAX_WINDOW_MS, Math.max(1000, Math.round(window.windowMs)));
    const seconds = Math.ceil(windowMs / 1000);
    const nowSecond = Math.floor(this.#now() / 1000);
    const firstSecond = nowSecond - seconds + 1;
    const stepSeconds = window.stepMs !== undefined ? Math.max(1, Math.round(window.stepMs / 1000)) : undefined;

    const total = emptyCounts();
    const deploys = new Map<string, DeployTraffic>();
    const tasks = new Map<string, TaskTraffic>();
    const points: { at: number; deploys: Map<string, DeployTraffic> }[] = [];
    if (stepSeconds !== undefined) {
      for (let s = firstSecond; s <= nowSecond; s += stepSeconds) points.push({ at: s * 1000, deploys: new Map() });
    }
    for (let s = firstSecond; s <= nowSecond; s++) {
      const slot = this.#slots[((s % SLOT_COUNT) + SLOT_COUNT) % SLOT_COUNT];
      if (!slot || slot.second !== s) continue;
      for (const e of slot.entries.values()) {
        if (e.serviceId !== serviceId) continue;
        addCounts(total, e.counts);
        const dkey = e.deployId ?? '';
        addCounts(deployEntry(deploys, dkey, e.deployId), e.counts);
        let t = tasks.get(e.taskId);
        if (!t) {
          t = { taskId: e.taskId, ...(e.deployId !== undefined ? { deployId: e.deployId } : {}), ...emptyCounts() };
          tasks.set(e.taskId, t);
        }
        addCounts(t, e.counts);
        if (stepSeconds !== undefined) {
          const point = points[Math.floor((s - firstSecond) / stepSeconds)];
          if (point) addCounts(deployEntry(point.deploys, dkey, e.deployId), e.counts);
        }
      }
    }
    return {
      serviceId,
      from: firstSecond * 1000,
      to: (nowSecond + 1) * 1000,
      total,
      deploys: [...deploys.values()],
      tasks: [...tasks.values()],
      ...(stepSeconds !== undefined
        ? { series: { stepMs: stepSeconds * 1000, points: points.map((p) => ({ at: p.at, deploys: [...p.deploys.values()] })) } }
        : {}),
    };
  }
}

function deployEntry(map: Map<string, DeployTraffic>, key: string, deployId: string | undefined): DeployTraffic {
  let d = map.get(key);
  if (!d) {
    d = { ...(deployId !== undefined ? { deployId } : {}), ...emptyCounts() };
    map.set(key, d);
  }
  return d;
}

function cloneCounts(c: TrafficCounts): TrafficCounts {
  return {
    requests: c.requests,
    responses: { ...c.responses },
    upstreamErrors: c.upstreamErrors,
    latency: { counts: [...c.latency.counts], sumMs: c.latency.sumMs },
  };
}
