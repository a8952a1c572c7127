// Runs health-check probes for running tasks on the schedule the pure assessment asks for and
// reports every result. Two stages per task (core/health.ts): until its first verdict, then —
// with checkWhileRunning (the default) — every intervalSeconds for as long as it runs, until a
// run of failures makes it UNHEALTHY. One probe at a time per task; all tasks share one
// scheduler (probe-scheduler.ts) with bounded concurrency. It keeps no state worth saving: the
// caller stores results and counters on the task and, after a restart, hands them back to
// watch(). It never waits on the store: a slow or locked store delays nothing here.
import { assessHealth, assessRunningProbe, checksWhileRunning, type HealthAssessment } from '../../core/health.ts';
import type { HealthcheckOptions, HealthResult } from '../../core/model.ts';
import { probeHealth } from './probe.ts';
import { ProbeScheduler } from './probe-scheduler.ts';
import type { HealthReport, HealthWatcher, PreviousHealth, WatchedTask } from '../types.ts';

export interface HealthMonitorOptions {
  now: () => number;
  /**
   * Every probe result with the assessment that follows from all results so far.
   * `result` is undefined for a task without a healthcheck, reported once when it turns healthy.
   */
  onResult: HealthReport;
  /** skip certificate checks for HTTPS health checks (self-signed task certificates) */
  allowInsecure?: boolean;
  /** a throwing onResult must not stop the schedule; it is reported here */
  onError?(taskId: string, err: unknown): void;
  /** probes in flight at most, over all tasks; default 64 */
  maxConcurrentProbes?: number;
}

interface Watch {
  task: WatchedTask;
  opts: HealthcheckOptions | undefined;
  considerHealthyAfter: number;
  /** startup: every result so far; running: unused */
  results: HealthResult[];
  stage: 'startup' | 'running';
  consecutiveFailures: number;
}

export class HealthMonitor implements HealthWatcher {
  private readonly watches = new Map<string, Watch>();
  private readonly scheduler: ProbeScheduler;
  private closed = false;

  constructor(private readonly options: HealthMonitorOptions) {
    this.scheduler = new ProbeScheduler({
      now: options.now,
      concurrency: options.maxConcurrentProbes ?? 64,
      run: (taskId) => this.step(taskId),
    });
  }

  /**
   * Start (or restart, replacing any earlier watch of the task) probing one task. `previous`
   * is the task's stored health, so a restarted scheduler continues the schedule instead of
   * starting it over. Returns the current assessment; when that is final nothing is scheduled.
   */
  watch(
    task: WatchedTask,
    opts: HealthcheckOptions | undefined,
    considerHealthyAfter: number,
    previous: HealthResult[] | PreviousHealth = [],
  ): HealthAssessment {
    if (this.closed) throw new Error('HealthMonitor is closed');
    this.unwatch(task.taskId);
    const prev: PreviousHealth = Array.isArray(previous) ? { results: previous } : previous;
    const w: Watch = {
      task,
      opts,
      considerHealthyAfter,
      results: [...(prev.results ?? [])],
      stage: 'startup',
      consecutiveFailures: prev.consecutiveFailures ?? 0,
    };
    if (prev.state === 'HEALTHY') {
      if (!checksWhileRunning(opts)) return { state: 'HEALTHY' };
      w.stage = 'running';
      this.watches.set(task.taskId, w);
      // Re-watched (a restart): the next probe an interval after the last one, spread over one
      // more interval so that many tasks re-watched at once are not probed at once.
      const interval = opts.intervalSeconds * 1000;
      const last = prev.lastCheckAt ?? this.options.now();
      const at = Math.max(this.options.now(), last + interval) + Math.floor(spread(task.taskId) * interval);
      this.scheduler.schedule(task.taskId, at);
      return { state: 'HEALTHY', consecutiveFailures: w.consecutiveFailures, nextProbeAt: at };
    }
    this.watches.set(task.taskId, w);
    return this.scheduleStartup(w);
  }

  unwatch(taskId: string): void {
    // an in-flight probe of this watch finds itself replaced and drops its result
    this.watches.delete(taskId);
    this.scheduler.cancel(taskId);
  }

  watching(taskId: string): boolean {
    return this.watches.has(taskId);
  }

  /** Probe a watched task as soon as a probe slot is free (the load balancer saw it fail). */
  probeNow(taskId: string): void {
    if (!this.watches.has(taskId) || this.scheduler.inFlight(taskId)) return;
    this.scheduler.schedule(taskId, this.options.now());
  }

  /** Tasks watched, and probes scheduled and in flight (metrics, tests). */
  stats(): { watched: number; scheduled: number; running: number } {
    return { watched: this.watches.size, ...this.scheduler.size };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watches.clear();
    await this.scheduler.close();
  }

  private current(w: Watch): boolean {
    return !this.closed && this.watches.get(w.task.taskId) === w;
  }

  private scheduleStartup(w: Watch): HealthAssessment {
    const a = assessHealth(w.opts, w.considerHealthyAfter, w.task.runningAt, w.results, this.options.now());
    if (a.state === 'HEALTHY' && checksWhileRunning(w.opts)) {
      // Passed: from now on checked while running, the first time an interval after it passed.
      w.stage = 'running';
      w.results = [];
      w.consecutiveFailures = 0;
      const at = (a.healthyAt ?? this.options.now()) + w.opts.intervalSeconds * 1000;
      this.scheduler.schedule(w.task.taskId, at);
      return { ...a, consecutiveFailures: 0 };
    }
    if (a.state !== 'UNKNOWN' || a.nextProbeAt === undefined) {
      this.watches.delete(w.task.taskId);
      return a;
    }
    this.scheduler.schedule(w.task.taskId, a.nextProbeAt);
    return a;
  }

  private async step(taskId: string): Promise<void> {
    const w = this.watches.get(taskId);
    if (!w || !this.current(w)) return;
    let result: HealthResult | undefined;
    if (w.opts) {
      const startedAt = this.options.now();
      const probed = await this.probe(w.task, w.opts);
      if (!this.current(w)) return;
      // stamp with the injected clock so assessment and schedule share one timeline
      result = { ...probed, timestamp: startedAt };
    }
    if (w.stage === 'running' && w.opts && result) {
      const a = assessRunningProbe(w.opts, w.consecutiveFailures, result);
      w.consecutiveFailures = a.consecutiveFailures ?? 0;
      if (a.state === 'UNHEALTHY' || a.nextProbeAt === undefined) this.watches.delete(taskId);
      else this.scheduler.schedule(taskId, a.nextProbeAt);
      this.report(taskId, result, a);
      return;
    }
    if (result) w.results.push(result);
    const a = this.scheduleStartup(w);
    // without a healthcheck the timer only fires to re-assess; report only the change
    if (result || a.state !== 'UNKNOWN') this.report(taskId, result, a);
  }

  private probe(task: WatchedTask, opts: HealthcheckOptions): Promise<HealthResult> {
    const port = opts.portNumber ?? task.ports[opts.portIndex];
    if (port === undefined) {
      return Promise.resolve({
        timestamp: this.options.now(),
        durationMillis: 0,
        startup: false,
        errorMessage: `Task has no port at index ${opts.portIndex}`,
      });
    }
    return probeHealth(healthUrl(opts, task.host, port), opts.method, opts.responseTimeoutSeconds * 1000, this.options.allowInsecure);
  }

  private report(taskId: string, result: HealthResult | undefined, a: HealthAssessment): void {
    try {
      this.options.onResult(taskId, result, a);
    } catch (err) {
      try {
        this.options.onError?.(taskId, err);
      } catch {
        // nowhere left to report it
      }
    }
  }
}

/** A stable fraction in [0, 1) per task id (FNV-1a), to spread probes of tasks re-watched together. */
function spread(taskId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < taskId.length; i++) h = Math.imul(h ^ taskId.charCodeAt(i), 0x01000193);
  return (h >>> 0) / 2 ** 32;
}

/** `http(s)://<host>:<port><uri>` */
export function healthUrl(opts: Pick<HealthcheckOptions, 'protocol' | 'uri'>, host: string, port: number): string {
  const scheme = opts.protocol === 'HTTPS' ? 'https' : 'http';
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host; // IPv6 literal
  const uri = opts.uri.startsWith('/') ? opts.uri : `/${opts.uri}`;
  return `${scheme}://${h}:${port}${uri}`;
}
