// Pure health assessment (deploys.md §3): given a task's probe results so far, decide
// HEALTHY / UNHEALTHY / UNKNOWN and when to probe next. The clock is passed in.
//
// Conventions:
// - A result's `timestamp` is when its probe started; it was observed at
//   `timestamp + durationMillis` ("end"). Deadlines compare against the end.
// - Results are in the order they were taken. They are scanned in that order and the
//   first decisive one wins, so a verdict never changes as more results arrive.
// - Verdicts rest on probe results, never on the clock alone: after a scheduler restart
//   a task nobody probed for a while gets a fresh probe before it is judged.
import type { HealthcheckOptions, HealthResult, HealthState } from './model.ts';

export interface HealthAssessment {
  state: HealthState;
  /** why UNHEALTHY, in user words */
  message?: string;
  /** when to probe (or, without a healthcheck, re-assess) next; absent once final */
  nextProbeAt?: number;
  /** when the task became HEALTHY */
  healthyAt?: number;
}

const ms = (seconds: number) => Math.round(seconds * 1000);
/** seconds for messages, without float noise (0.30000000000000004 → 0.3) */
const secs = (millis: number) => `${Number((millis / 1000).toFixed(3))}s`;

const is2xx = (status: number | undefined) => status !== undefined && status >= 200 && status < 300;

/**
 * The longest a healthcheck may take to pass:
 * startupTimeout + (interval + responseTimeout) × (maxRetries + 1), counted from TASK_RUNNING.
 * Without a healthcheck it is considerHealthyAfterRunningForSeconds (0 when not given).
 */
export function healthWindowMillis(opts: HealthcheckOptions | undefined, considerHealthyAfterRunningForSeconds = 0): number {
  if (!opts) return ms(considerHealthyAfterRunningForSeconds);
  return ms(opts.startupTimeoutSeconds) + (ms(opts.intervalSeconds) + ms(opts.responseTimeoutSeconds)) * (opts.maxRetries + 1);
}

export function assessHealth(
  opts: HealthcheckOptions | undefined,
  considerHealthyAfterRunningForSeconds: number,
  runningAt: number,
  results: HealthResult[],
  now: number,
): HealthAssessment {
  if (!opts) {
    const healthyAt = runningAt + ms(considerHealthyAfterRunningForSeconds);
    return now >= healthyAt ? { state: 'HEALTHY', healthyAt } : { state: 'UNKNOWN', nextProbeAt: healthyAt };
  }

  const startupDeadline = runningAt + ms(opts.startupTimeoutSeconds);
  const windowDeadline = runningAt + healthWindowMillis(opts);
  const unhealthy = (message: string): HealthAssessment => ({ state: 'UNHEALTHY', message });

  // Until the first HTTP response the task is still coming up: refusals are "starting",
  // and timeouts or other errors do not count as failed responses either.
  let responded = false;
  let failures = 0;
  for (const r of results) {
    const end = r.timestamp + r.durationMillis;
    if (is2xx(r.statusCode)) return { state: 'HEALTHY', healthyAt: end };
    if (r.statusCode !== undefined && opts.failureStatusCodes.includes(r.statusCode)) {
      return unhealthy(`Health check returned failure status ${r.statusCode}`);
    }
    if (r.statusCode !== undefined) responded = true;
    if (responded) {
      failures++;
      if (failures > opts.maxRetries) return unhealthy(`Health check failed ${failures} times (maxRetries ${opts.maxRetries})`);
    } else if (r.startup && end >= startupDeadline) {
      return unhealthy(`Health check did not respond within the startup timeout of ${secs(ms(opts.startupTimeoutSeconds))}`);
    }
    if (end >= windowDeadline) {
      return unhealthy(`Health check did not pass within ${secs(windowDeadline - runningAt)} of the task running`);
    }
  }

  const last = results.at(-1);
  if (!last) return { state: 'UNKNOWN', nextProbeAt: runningAt + ms(opts.startupDelaySeconds) };
  const end = last.timestamp + last.durationMillis;
  let next = end + ms(responded ? opts.intervalSeconds : opts.startupIntervalSeconds);
  // Probe once more exactly at a deadline rather than judge up to an interval late.
  if (!responded && end < startupDeadline) next = Math.min(next, startupDeadline);
  next = Math.min(next, windowDeadline);
  return { state: 'UNKNOWN', nextProbeAt: next };
}
