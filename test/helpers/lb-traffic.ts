// Traffic through the built-in load balancer while something happens, and what it saw:
//
// - `startLoad` sends steady GETs (a fixed number of workers, each one request at a time over a
//   keep-alive agent) until stopped, bounded by a request count and a duration. Every answer
//   that is not 2xx, and every connection error or timeout, is a failure recorded with details.
// - `startMembershipSampler` reads, every few milliseconds, the balancer's upstreams in rotation
//   for a service joined with the store's task health, and keeps the minimum number of healthy
//   upstreams (and the membership at that minimum, to explain a dip).
//
// Loopback only: the URL must point at 127.0.0.1.
import http from 'node:http';
import { setTimeout as pause } from 'node:timers/promises';
import type { Balancer } from '../../src/balancers/types.ts';
import type { TaskRecord } from '../../src/core/model.ts';
import type { Store } from '../../src/store/types.ts';

export interface LoadFailure {
  /** ms since the load started */
  atMs: number;
  worker: number;
  status?: number;
  error?: string;
  body?: string;
  durationMs: number;
}

export interface LoadReport {
  sent: number;
  ok: number;
  failures: LoadFailure[];
  /** 2xx answers per VERSION the service reported */
  versions: Record<string, number>;
  /** every 2xx answer: when its request was sent (epoch ms) and the VERSION it reported */
  answers: { sentAt: number; version: string }[];
  durationMs: number;
  stoppedBy: 'stop' | 'maxRequests' | 'maxDuration';
}

export interface LoadOptions {
  concurrency?: number;
  /** stop after this many requests in all; default 200 000 */
  maxRequests?: number;
  /** stop after this long; default 60 s */
  maxDurationMs?: number;
  /** one request may take this long before it counts as failed; default 5 s */
  requestTimeoutMs?: number;
}

export interface Load {
  /** resolves once at least `n` answers in all were 2xx (rejects if the load stops first) */
  warmedUp(n?: number): Promise<void>;
  stop(): Promise<LoadReport>;
  readonly report: LoadReport;
}

export function startLoad(url: string, options: LoadOptions = {}): Load {
  const target = new URL(url);
  if (target.hostname !== '127.0.0.1' && target.hostname !== 'localhost') throw new Error(`load is for loopback only, not ${url}`);
  const concurrency = options.concurrency ?? 4;
  const maxRequests = options.maxRequests ?? 200_000;
  const maxDurationMs = options.maxDurationMs ?? 60_000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 5_000;
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const started = Date.now();
  const report: LoadReport = { sent: 0, ok: 0, failures: [], versions: {}, answers: [], durationMs: 0, stoppedBy: 'stop' };
  let stopping = false;
  const okWaiters: { n: number; resolve: () => void }[] = [];

  const finish = (why: LoadReport['stoppedBy']) => {
    if (stopping) return;
    stopping = true;
    report.stoppedBy = why;
  };
  const limitTimer = setTimeout(() => finish('maxDuration'), maxDurationMs);

  const one = (worker: number): Promise<void> =>
    new Promise((resolve) => {
      const t0 = Date.now();
      let settled = false;
      const fail = (detail: Omit<LoadFailure, 'atMs' | 'worker' | 'durationMs'>) => {
        if (settled) return;
        settled = true;
        report.failures.push({ atMs: t0 - started, worker, durationMs: Date.now() - t0, ...detail });
        resolve();
      };
      const req = http.get(target, { agent, timeout: requestTimeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => fail({ status: res.statusCode, error: `response: ${err.message}` }));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 299) return fail({ status, body: body.slice(0, 300) });
          if (settled) return;
          settled = true;
          report.ok++;
          let version = '?';
          try {
            version = String((JSON.parse(body) as { version?: unknown }).version ?? '?');
          } catch {
            /* not the example service's JSON: counted as '?' */
          }
          report.versions[version] = (report.versions[version] ?? 0) + 1;
          report.answers.push({ sentAt: t0, version });
          for (const w of [...okWaiters]) {
            if (report.ok >= w.n) {
              okWaiters.splice(okWaiters.indexOf(w), 1);
              w.resolve();
            }
          }
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${requestTimeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => fail({ error: err.code ? `${err.code}: ${err.message}` : err.message }));
    });

  const worker = async (n: number) => {
    while (!stopping) {
      if (report.sent >= maxRequests) return finish('maxRequests');
      report.sent++;
      await one(n);
    }
  };
  const workers = Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));

  return {
    report,
    async warmedUp(n = 1) {
      if (report.ok >= n) return;
      await Promise.race([
        new Promise<void>((resolve) => okWaiters.push({ n, resolve })),
        workers.then(() => {
          throw new Error(
            `load stopped (${report.stoppedBy}) before ${n} answers were 2xx; failures: ${JSON.stringify(report.failures.slice(0, 5))}`,
          );
        }),
      ]);
    },
    async stop() {
      finish('stop');
      await workers;
      clearTimeout(limitTimer);
      agent.destroy();
      report.durationMs = Date.now() - started;
      return report;
    },
  };
}

/** VERSION → count of the 2xx answers to requests sent at or after `since` (epoch ms). */
export function versionsSentSince(report: LoadReport, since: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of report.answers) if (a.sentAt >= since) out[a.version] = (out[a.version] ?? 0) + 1;
  return out;
}

export interface MembershipSample {
  /** ms since sampling started */
  atMs: number;
  /** task ids in rotation */
  inRotation: string[];
  /** of those, the ones whose task is HEALTHY and running (TASK_RUNNING, or TASK_CLEANING) in the store */
  healthy: string[];
  /** the others in rotation: their state and health in the store (to explain a dip) */
  others?: { id: string; state?: string; health?: string }[];
}

export interface MembershipReport {
  samples: number;
  minHealthy: number;
  minInRotation: number;
  maxInRotation: number;
  /** the first sample with the fewest healthy upstreams */
  atMin?: MembershipSample;
  /** every sample below `floor`, if one was given (at most 20 kept) */
  belowFloor: MembershipSample[];
  /** samples that could not be taken (at most 20 kept) */
  errors: string[];
}

export interface MembershipSampler {
  /** resolves after at least one more sample was taken */
  sampled(): Promise<void>;
  stop(): Promise<MembershipReport>;
}

/** Serving capacity: a healthy running process — also one marked for clean-up (TASK_CLEANING) that
 * the engine keeps in the LB until its replacement is in; not one already being stopped (TASK_KILLING). */
const isHealthyRecord = (t: TaskRecord) => (t.state === 'TASK_RUNNING' || t.state === 'TASK_CLEANING') && t.health.state === 'HEALTHY';

/**
 * Every `intervalMs`, the store's tasks of `requestId` are read first and the balancer's
 * upstreams in rotation for `serviceId` second: a task is added to the LB only after it is
 * healthy and leaves the LB before it is stopped, so this order never shows a dip that was
 * not there.
 */
export function startMembershipSampler(
  store: Store,
  balancer: Balancer,
  ids: { requestId: string; serviceId?: string },
  options: { intervalMs?: number; floor?: number } = {},
): MembershipSampler {
  const intervalMs = options.intervalMs ?? 20;
  const serviceId = ids.serviceId ?? ids.requestId;
  const started = Date.now();
  const report: MembershipReport = {
    samples: 0,
    minHealthy: Infinity,
    minInRotation: Infinity,
    maxInRotation: 0,
    belowFloor: [],
    errors: [],
  };
  let stopped = false;
  let waiters: (() => void)[] = [];

  const sample = async () => {
    // The store and the balancer are read one after the other, not at one instant: an upstream
    // counts as healthy when its task was healthy just before or just after the membership was
    // read (a task that turned healthy and joined between two reads is not a dip).
    const before = await store.listTasks({ requestId: ids.requestId, live: true });
    const inRotation = (await balancer.upstreams(serviceId)).map((u) => u.taskId);
    const after = await store.listTasks({ requestId: ids.requestId, live: true });
    const healthyIds = new Set([...before, ...after].filter(isHealthyRecord).map((t) => t.taskId.id));
    const s: MembershipSample = { atMs: Date.now() - started, inRotation, healthy: inRotation.filter((id) => healthyIds.has(id)) };
    report.samples++;
    if (s.healthy.length < inRotation.length) {
      const byId = new Map(after.map((t) => [t.taskId.id, t]));
      s.others = inRotation
        .filter((id) => !healthyIds.has(id))
        .map((id) => ({ id, state: byId.get(id)?.state ?? 'not live', health: byId.get(id)?.health.state }));
    }
    if (s.healthy.length < report.minHealthy) {
      report.minHealthy = s.healthy.length;
      report.atMin = s;
    }
    report.minInRotation = Math.min(report.minInRotation, inRotation.length);
    report.maxInRotation = Math.max(report.maxInRotation, inRotation.length);
    if (options.floor !== undefined && s.healthy.length < options.floor && report.belowFloor.length < 20) report.belowFloor.push(s);
  };

  const running = (async () => {
    while (!stopped) {
      await sample().catch((err: unknown) => {
        if (report.errors.length < 20) report.errors.push(err instanceof Error ? err.message : String(err));
      });
      const w = waiters;
      waiters = [];
      for (const resolve of w) resolve();
      await pause(intervalMs);
    }
  })();

  return {
    sampled: () => new Promise<void>((resolve) => waiters.push(resolve)),
    async stop() {
      stopped = true;
      await running;
      await sample();
      return report;
    },
  };
}
