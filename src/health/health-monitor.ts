// Runs health-check probes for running tasks on the schedule the pure assessment asks for,
// one probe at a time per task, and reports every result. It keeps no state worth saving:
// the caller stores results on the task and, after a restart, hands them back to watch().
import { assessHealth, type HealthAssessment } from '../core/health.ts';
import type { HealthcheckOptions, HealthResult } from '../core/model.ts';
import { probeHealth } from './probe.ts';

export interface WatchedTask {
  taskId: string;
  host: string;
  ports: number[];
  runningAt: number;
}

export interface HealthMonitorOptions {
  now: () => number;
  /**
   * Every probe result with the assessment that follows from all results so far.
   * `result` is undefined for a task without a healthcheck, reported once when it turns healthy.
   */
  onResult(taskId: string, result: HealthResult | undefined, assessment: HealthAssessment): void;
  /** skip certificate checks for HTTPS health checks (self-signed task certificates) */
  allowInsecure?: boolean;
  /** a throwing onResult must not stop the schedule; it is reported here */
  onError?(taskId: string, err: unknown): void;
}

interface Watch {
  task: WatchedTask;
  opts: HealthcheckOptions | undefined;
  considerHealthyAfter: number;
  results: HealthResult[];
  timer?: ReturnType<typeof setTimeout>;
}

export class HealthMonitor {
  private readonly watches = new Map<string, Watch>();
  /** probes in flight; close() waits for them so nothing reports after it resolved */
  private readonly inFlight = new Set<Promise<void>>();
  private closed = false;

  constructor(private readonly options: HealthMonitorOptions) {}

  /**
   * Start (or restart, replacing any earlier watch of the task) probing one task.
   * `previousResults` are the results already on the task, so a restarted scheduler
   * continues the schedule instead of starting it over. Returns the current assessment;
   * when that is already final nothing is scheduled.
   */
  watch(
    task: WatchedTask,
    opts: HealthcheckOptions | undefined,
    considerHealthyAfter: number,
    previousResults: HealthResult[] = [],
  ): HealthAssessment {
    if (this.closed) throw new Error('HealthMonitor is closed');
    this.unwatch(task.taskId);
    const w: Watch = { task, opts, considerHealthyAfter, results: [...previousResults] };
    this.watches.set(task.taskId, w);
    return this.schedule(w);
  }

  unwatch(taskId: string): void {
    const w = this.watches.get(taskId);
    if (!w) return;
    clearTimeout(w.timer);
    // an in-flight probe of this watch finds itself replaced and drops its result
    this.watches.delete(taskId);
  }

  watching(taskId: string): boolean {
    return this.watches.has(taskId);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const id of [...this.watches.keys()]) this.unwatch(id);
    await Promise.allSettled([...this.inFlight]);
  }

  private current(w: Watch): boolean {
    return !this.closed && this.watches.get(w.task.taskId) === w;
  }

  private assess(w: Watch): HealthAssessment {
    return assessHealth(w.opts, w.considerHealthyAfter, w.task.runningAt, w.results, this.options.now());
  }

  private schedule(w: Watch): HealthAssessment {
    const a = this.assess(w);
    if (a.state !== 'UNKNOWN' || a.nextProbeAt === undefined) {
      this.watches.delete(w.task.taskId);
      return a;
    }
    const delay = Math.max(0, a.nextProbeAt - this.options.now());
    w.timer = setTimeout(() => this.track(this.step(w)), delay);
    return a;
  }

  private track(work: Promise<void>): void {
    const p = work
      .catch(() => {}) // step() reports its own errors; never leave a rejection unhandled
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  private async step(w: Watch): Promise<void> {
    w.timer = undefined;
    if (!this.current(w)) return;
    let result: HealthResult | undefined;
    if (w.opts) {
      const startedAt = this.options.now();
      const probed = await this.probe(w.task, w.opts);
      if (!this.current(w)) return;
      // stamp with the injected clock so assessment and schedule share one timeline
      result = { ...probed, timestamp: startedAt };
      w.results.push(result);
    }
    const a = this.schedule(w);
    // without a healthcheck the timer only fires to re-assess; report only the change
    if (result || a.state !== 'UNKNOWN') this.report(w.task.taskId, result, a);
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

/** `http(s)://<host>:<port><uri>` */
export function healthUrl(opts: Pick<HealthcheckOptions, 'protocol' | 'uri'>, host: string, port: number): string {
  const scheme = opts.protocol === 'HTTPS' ? 'https' : 'http';
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host; // IPv6 literal
  const uri = opts.uri.startsWith('/') ? opts.uri : `/${opts.uri}`;
  return `${scheme}://${h}:${port}${uri}`;
}
