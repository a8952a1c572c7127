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
// - Two stages. Until its first verdict a task is assessed on all its results (assessHealth,
//   deploys.md §3). Once HEALTHY it is, unless checkWhileRunning is false, probed every
//   intervalSeconds for as long as it runs and judged on failures in a row
//   (assessRunningProbe); UNHEALTHY there is final too: the engine replaces the task.
import type { HealthcheckOptions, HealthResult, HealthState, TaskHealth } from './model.ts';

export interface HealthAssessment {
  state: HealthState;
  /** why UNHEALTHY, in user words */
  message?: string;
  /** when to probe (or, without a healthcheck, re-assess) next; absent once final */
  nextProbeAt?: number;
  /** when the task became HEALTHY */
  healthyAt?: number;
  /** while running: failed probes in a row */
  consecutiveFailures?: number;
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

/** Whether a healthy task goes on being probed (Fledge's healthcheck.checkWhileRunning, default true). */
export function checksWhileRunning(opts: HealthcheckOptions | undefined): opts is HealthcheckOptions {
  return opts !== undefined && opts.checkWhileRunning !== false;
}

/** A probe passes on a 2xx (redirects followed) and on nothing else. */
export const probePassed = (r: HealthResult): boolean => is2xx(r.statusCode);

/** A failed probe in a few words: "timeout after 5 s", "status 500", "connection refused". */
export function describeProbe(r: HealthResult, opts: Pick<HealthcheckOptions, 'responseTimeoutSeconds'>): string {
  if (r.timedOut) return `timeout after ${Number(opts.responseTimeoutSeconds.toFixed(3))} s`;
  if (r.statusCode !== undefined) return `status ${r.statusCode}`;
  const text = r.errorMessage ?? 'no answer';
  return text.charAt(0).toLowerCase() + text.slice(1);
}

/**
 * One more probe of a task that is HEALTHY and checked while running. A 2xx ends a run of
 * failures; any other status, an error or a timeout adds to it; more than maxRetries failures in
 * a row make the task UNHEALTHY — at once for a failureStatusCodes status, which the service
 * uses to say it is broken. The next probe is intervalSeconds after this one ended.
 */
export function assessRunningProbe(opts: HealthcheckOptions, failuresBefore: number, result: HealthResult): HealthAssessment {
  const next = result.timestamp + result.durationMillis + ms(opts.intervalSeconds);
  if (probePassed(result)) return { state: 'HEALTHY', consecutiveFailures: 0, nextProbeAt: next };
  const failures = failuresBefore + 1;
  const fatal = result.statusCode !== undefined && opts.failureStatusCodes.includes(result.statusCode);
  if (fatal || failures > opts.maxRetries) {
    const checks = `${failures} failed check${failures === 1 ? '' : 's'}`;
    return {
      state: 'UNHEALTHY',
      consecutiveFailures: failures,
      message: `unhealthy while running: ${checks}, last: ${describeProbe(result, opts)}`,
    };
  }
  return { state: 'HEALTHY', consecutiveFailures: failures, nextProbeAt: next };
}

/**
 * Whether the engine would see a difference: it decides on a task's health state, why, and
 * since when it is healthy — never on its probe history or counters. A passing probe of a
 * healthy task is recorded on the task, with nothing for the engine to decide.
 */
export function engineSeesHealthChange(before: TaskHealth, after: TaskHealth): boolean {
  return before.state !== after.state || before.message !== after.message || before.healthyAt !== after.healthyAt;
}

/**
 * A task's health after probe results (none: a verdict without a probe, e.g. no healthcheck)
 * and the assessment that follows the last of them: the latest `keep` results, the counters, the
 * state and why. Several results at once are a write that waited (the store was busy).
 */
export function recordHealthResults(
  health: TaskHealth,
  results: readonly HealthResult[],
  assessment: Pick<HealthAssessment, 'state' | 'message' | 'consecutiveFailures' | 'healthyAt'>,
  now: number,
  keep: number,
  /** how many probes (and failed ones) `results` stands for, when a long wait kept only its latest */
  counted: { checks: number; failed: number } = { checks: results.length, failed: results.filter((r) => !probePassed(r)).length },
): TaskHealth {
  const next: TaskHealth = { ...health, state: assessment.state };
  const last = results.at(-1);
  if (last) {
    next.results = [...health.results, ...results].slice(-keep);
    next.lastCheckAt = last.timestamp + last.durationMillis;
    next.checks = (health.checks ?? 0) + counted.checks;
    if (counted.failed > 0) next.failedChecks = (health.failedChecks ?? 0) + counted.failed;
  }
  if (assessment.consecutiveFailures !== undefined) next.consecutiveFailures = assessment.consecutiveFailures;
  if (assessment.message) next.message = assessment.message;
  else if (assessment.state !== health.state) delete next.message;
  if (assessment.state === 'HEALTHY' && health.healthyAt === undefined) next.healthyAt = assessment.healthyAt ?? now;
  return next;
}
