// Health checking, as the loop sees it: tasks are watched, verdicts come back through the
// callback the implementation was built with (the executor's onHealthResult). One interface;
// http/ probes over HTTP, fake/ answers by policy for engine tests and the scale bench;
// index.ts chooses one from configuration; contract.case.ts runs against both.
import type { HealthAssessment } from '../core/health.ts';
import type { HealthcheckOptions, HealthResult, HealthState } from '../core/model.ts';

/**
 * Where every verdict goes, with the assessment that follows from all results so far. `result`
 * is the probe's (undefined for a task without a healthcheck, and for the fake's verdicts).
 */
export type HealthReport = (taskId: string, result: HealthResult | undefined, assessment: HealthAssessment) => void;

export interface WatchedTask {
  taskId: string;
  host: string;
  ports: number[];
  runningAt: number;
}

/** Where a task's checks stand when it is (re)watched: its stored health. */
export interface PreviousHealth {
  results?: HealthResult[];
  /** HEALTHY: it passed already; only the checks while running are left */
  state?: HealthState;
  /** failed probes in a row while running */
  consecutiveFailures?: number;
  /** when its latest probe ended */
  lastCheckAt?: number;
}

export interface HealthWatcher {
  /**
   * Start (or restart) checking a task; returns the assessment as it stands. A watched task is
   * checked until its first verdict and, with checkWhileRunning, for as long as it runs.
   */
  watch(
    task: WatchedTask,
    options: HealthcheckOptions | undefined,
    considerHealthyAfterRunningForSeconds: number,
    previous: PreviousHealth,
  ): { state: HealthState; message?: string } | void;
  unwatch(taskId: string): void;
  /** Probe this task as soon as possible (the load balancer saw it fail). */
  probeNow(taskId: string): void;
  close(): Promise<void>;
}
