import { describe, expect, it } from 'vitest';
import {
  assessHealth,
  assessRunningProbe,
  checksWhileRunning,
  describeProbe,
  healthWindowMillis,
  recordHealthResults,
  type HealthAssessment,
} from './health.ts';
import type { HealthcheckOptions, HealthResult, TaskHealth } from './model.ts';
import { testHealthcheck } from '../../test/helpers/model-fixtures.ts';

// Task runs at t=0; times below are millis since TASK_RUNNING.
// startup deadline 45_000; window 45s + (5s + 5s) × 4 = 85_000.
const opts: HealthcheckOptions = testHealthcheck({ maxRetries: 3, failureStatusCodes: [503, 404] });

const refused = (t: number): HealthResult => ({ timestamp: t, durationMillis: 0, startup: true, errorMessage: 'Connection refused' });
const status = (t: number, statusCode: number, durationMillis = 10): HealthResult => ({
  timestamp: t,
  durationMillis,
  statusCode,
  startup: false,
});
const timedOut = (t: number): HealthResult => ({
  timestamp: t,
  durationMillis: 5_000,
  startup: false,
  errorMessage: 'No response within 5s',
});

const assess = (results: HealthResult[], o: HealthcheckOptions = opts, now = 1_000_000) => assessHealth(o, 5, 0, results, now);

describe('healthWindowMillis', () => {
  it.each([
    ['the default options', opts, 85_000],
    ['maxRetries 0 allows one attempt', { ...opts, maxRetries: 0 }, 55_000],
    ['fractional seconds', { ...opts, startupTimeoutSeconds: 0.3, intervalSeconds: 0.1, responseTimeoutSeconds: 0.2, maxRetries: 1 }, 900],
  ])('%s', (_name, o, expected) => {
    expect(healthWindowMillis(o)).toBe(expected);
  });

  it('is considerHealthyAfterRunningForSeconds without a healthcheck', () => {
    expect(healthWindowMillis(undefined, 5)).toBe(5_000);
    expect(healthWindowMillis(undefined)).toBe(0);
  });
});

describe('assessHealth without a healthcheck', () => {
  it.each<[string, number, HealthAssessment]>([
    ['waits, asking to be woken when it turns healthy', 4_999, { state: 'UNKNOWN', nextProbeAt: 5_000 }],
    ['is healthy exactly at considerHealthyAfterRunningForSeconds', 5_000, { state: 'HEALTHY', healthyAt: 5_000 }],
    ['stays healthy afterwards', 60_000, { state: 'HEALTHY', healthyAt: 5_000 }],
  ])('%s', (_name, now, expected) => {
    expect(assessHealth(undefined, 5, 0, [], now)).toEqual(expected);
  });

  it('counts from when the task started running', () => {
    expect(assessHealth(undefined, 2, 10_000, [], 11_000)).toEqual({ state: 'UNKNOWN', nextProbeAt: 12_000 });
  });
});

describe('assessHealth with a healthcheck', () => {
  it.each<[string, HealthResult[], Partial<HealthcheckOptions>, HealthAssessment]>([
    // scheduling
    ['probes first as soon as the task runs', [], {}, { state: 'UNKNOWN', nextProbeAt: 0 }],
    ['probes first after startupDelaySeconds', [], { startupDelaySeconds: 3 }, { state: 'UNKNOWN', nextProbeAt: 3_000 }],
    ['retries a refused port every startupIntervalSeconds', [refused(0)], {}, { state: 'UNKNOWN', nextProbeAt: 2_000 }],
    ['retries every intervalSeconds after a response', [refused(0), status(2_000, 500)], {}, { state: 'UNKNOWN', nextProbeAt: 7_010 }],
    ['counts the next interval from the end of a slow probe', [status(0, 500, 3_000)], {}, { state: 'UNKNOWN', nextProbeAt: 8_000 }],
    ['retries a timeout before any response at the startup interval', [timedOut(0)], {}, { state: 'UNKNOWN', nextProbeAt: 7_000 }],
    ['probes once more exactly at the startup deadline', [refused(44_000)], {}, { state: 'UNKNOWN', nextProbeAt: 45_000 }],
    [
      'probes once more exactly at the window end',
      [status(0, 500), status(78_000, 500, 3_000)],
      {},
      { state: 'UNKNOWN', nextProbeAt: 85_000 },
    ],
    // healthy
    ['is healthy at the first 2xx', [status(0, 200)], {}, { state: 'HEALTHY', healthyAt: 10 }],
    ['is healthy at any 2xx, e.g. 204', [status(0, 204)], {}, { state: 'HEALTHY', healthyAt: 10 }],
    [
      'is healthy when the port opens after refusing',
      [refused(0), refused(2_000), status(4_000, 200)],
      {},
      { state: 'HEALTHY', healthyAt: 4_010 },
    ],
    [
      'is healthy after up to maxRetries failures',
      [status(0, 500), status(5_000, 500), status(10_000, 500), status(15_000, 200)],
      {},
      { state: 'HEALTHY', healthyAt: 15_010 },
    ],
    [
      'is healthy at a 2xx that arrives at the window end',
      [status(0, 500), status(85_000, 200)],
      {},
      { state: 'HEALTHY', healthyAt: 85_010 },
    ],
    ['treats 3xx as not healthy (redirects are followed by the probe)', [status(0, 301)], {}, { state: 'UNKNOWN', nextProbeAt: 5_010 }],
    // failure status
    [
      'is unhealthy at once on a failure status',
      [status(0, 503)],
      {},
      { state: 'UNHEALTHY', message: 'Health check returned failure status 503' },
    ],
    [
      'is unhealthy on a failure status even with retries left',
      [status(0, 500), status(5_000, 404)],
      {},
      { state: 'UNHEALTHY', message: 'Health check returned failure status 404' },
    ],
    [
      'keeps the first verdict: a failure status before a 2xx',
      [status(0, 503), status(5_000, 200)],
      {},
      { state: 'UNHEALTHY', message: 'Health check returned failure status 503' },
    ],
    [
      'keeps the first verdict: a 2xx before a failure status',
      [status(0, 200), status(5_000, 503)],
      {},
      { state: 'HEALTHY', healthyAt: 10 },
    ],
    // startup timeout
    ['is still starting when refused just before the startup deadline', [refused(44_999)], {}, { state: 'UNKNOWN', nextProbeAt: 45_000 }],
    [
      'is unhealthy when refused at the startup deadline',
      [refused(45_000)],
      {},
      { state: 'UNHEALTHY', message: 'Health check did not respond within the startup timeout of 45s' },
    ],
    [
      'counts the startup timeout from running, not from the delay',
      [refused(45_000)],
      { startupDelaySeconds: 10 },
      { state: 'UNHEALTHY', message: 'Health check did not respond within the startup timeout of 45s' },
    ],
    [
      'does not apply the startup timeout once the port answered',
      [status(0, 500), refused(46_000)],
      {},
      { state: 'UNKNOWN', nextProbeAt: 51_000 },
    ],
    [
      'does not apply the startup timeout to timeouts (only to refusals)',
      [timedOut(41_000)],
      {},
      { state: 'UNKNOWN', nextProbeAt: 48_000 },
    ],
    // failed responses
    [
      'tolerates exactly maxRetries failed responses',
      [status(0, 500), status(5_000, 500), status(10_000, 500)],
      {},
      { state: 'UNKNOWN', nextProbeAt: 15_010 },
    ],
    [
      'is unhealthy after more than maxRetries failed responses',
      [status(0, 500), status(5_000, 500), status(10_000, 500), status(15_000, 500)],
      {},
      { state: 'UNHEALTHY', message: 'Health check failed 4 times (maxRetries 3)' },
    ],
    [
      'is unhealthy at the first failure with maxRetries 0',
      [status(0, 500)],
      { maxRetries: 0 },
      { state: 'UNHEALTHY', message: 'Health check failed 1 times (maxRetries 0)' },
    ],
    [
      'counts timeouts after a first response as failures',
      [status(0, 500), timedOut(5_000), timedOut(15_000), timedOut(25_000)],
      {},
      { state: 'UNHEALTHY', message: 'Health check failed 4 times (maxRetries 3)' },
    ],
    [
      'counts a refused port after a first response as a failure',
      [status(0, 500), refused(5_000)],
      { maxRetries: 1 },
      { state: 'UNHEALTHY', message: 'Health check failed 2 times (maxRetries 1)' },
    ],
    [
      'does not count refusals or timeouts before the first response',
      [refused(0), timedOut(2_000), refused(9_000), status(11_000, 500)],
      { maxRetries: 1 },
      { state: 'UNKNOWN', nextProbeAt: 16_010 },
    ],
    // window
    ['is still waiting just before the window ends', [status(0, 500), status(84_989, 500)], {}, { state: 'UNKNOWN', nextProbeAt: 85_000 }],
    [
      'is unhealthy when the window passes without a 2xx',
      [status(0, 500), status(84_990, 500)],
      {},
      { state: 'UNHEALTHY', message: 'Health check did not pass within 85s of the task running' },
    ],
    [
      'is unhealthy when a server never answers for the whole window',
      [timedOut(0), timedOut(7_000), timedOut(80_500)],
      {},
      { state: 'UNHEALTHY', message: 'Health check did not pass within 85s of the task running' },
    ],
    [
      'prefers the startup-timeout message when both deadlines passed',
      [refused(90_000)],
      {},
      { state: 'UNHEALTHY', message: 'Health check did not respond within the startup timeout of 45s' },
    ],
  ])('%s', (_name, results, overrides, expected) => {
    expect(assess(results, { ...opts, ...overrides })).toEqual(expected);
  });

  it('judges on results, not the clock alone: a late scheduler probes first', () => {
    // e.g. after a restart with nothing recorded since before the deadline
    expect(assess([refused(0)], opts, 200_000)).toEqual({ state: 'UNKNOWN', nextProbeAt: 2_000 });
    expect(assess([], opts, 200_000)).toEqual({ state: 'UNKNOWN', nextProbeAt: 0 });
  });

  it('formats fractional seconds without float noise', () => {
    const o = { ...opts, startupTimeoutSeconds: 0.3, intervalSeconds: 0.1, responseTimeoutSeconds: 0.2, maxRetries: 1 };
    expect(assess([refused(300)], o).message).toBe('Health check did not respond within the startup timeout of 0.3s');
    expect(assess([timedOut(900)], o).message).toBe('Health check did not pass within 0.9s of the task running');
  });

  it('counts deadlines from runningAt', () => {
    expect(assessHealth(opts, 5, 100_000, [refused(144_999)], 0)).toEqual({ state: 'UNKNOWN', nextProbeAt: 145_000 });
    expect(assessHealth(opts, 5, 100_000, [refused(145_000)], 0).state).toBe('UNHEALTHY');
  });
});

describe('checks while running', () => {
  const o = testHealthcheck({ maxRetries: 2, intervalSeconds: 5, responseTimeoutSeconds: 5, failureStatusCodes: [418] });
  const ok = (t: number) => status(t, 200, 3);
  const fail = (t: number, statusCode = 500) => status(t, statusCode, 3);
  const timeout = (t: number): HealthResult => ({ ...timedOut(t), timedOut: true });
  const refusedLater = (t: number): HealthResult => ({
    timestamp: t,
    durationMillis: 1,
    startup: true,
    errorMessage: 'Connection refused',
  });

  it.each<[string, number, HealthResult, HealthAssessment]>([
    ['a 2xx keeps it healthy and ends a run of failures', 2, ok(100), { state: 'HEALTHY', consecutiveFailures: 0, nextProbeAt: 5_103 }],
    [
      'a failure is counted, the next probe an interval after it ended',
      0,
      fail(100),
      { state: 'HEALTHY', consecutiveFailures: 1, nextProbeAt: 5_103 },
    ],
    ['maxRetries failures in a row are still healthy', 1, fail(100), { state: 'HEALTHY', consecutiveFailures: 2, nextProbeAt: 5_103 }],
    [
      'one more than maxRetries makes it UNHEALTHY, saying how many and what the last one was',
      2,
      timeout(100),
      { state: 'UNHEALTHY', consecutiveFailures: 3, message: 'unhealthy while running: 3 failed checks, last: timeout after 5 s' },
    ],
    [
      'any non-2xx status counts',
      2,
      fail(100, 404),
      { state: 'UNHEALTHY', consecutiveFailures: 3, message: 'unhealthy while running: 3 failed checks, last: status 404' },
    ],
    [
      'a refused connection counts (the service went away)',
      2,
      refusedLater(100),
      { state: 'UNHEALTHY', consecutiveFailures: 3, message: 'unhealthy while running: 3 failed checks, last: connection refused' },
    ],
    [
      'a failureStatusCodes status is unhealthy at once',
      0,
      fail(100, 418),
      { state: 'UNHEALTHY', consecutiveFailures: 1, message: 'unhealthy while running: 1 failed check, last: status 418' },
    ],
  ])('%s', (_name, before, result, expected) => {
    expect(assessRunningProbe(o, before, result)).toEqual(expected);
  });

  it('with maxRetries 0 the first failure is enough', () => {
    expect(assessRunningProbe({ ...o, maxRetries: 0 }, 0, fail(0)).state).toBe('UNHEALTHY');
  });

  it.each([
    ['a healthcheck without the field', testHealthcheck(), true],
    ['checkWhileRunning: true', testHealthcheck({ checkWhileRunning: true }), true],
    ['checkWhileRunning: false', testHealthcheck({ checkWhileRunning: false }), false],
    ['no healthcheck', undefined, false],
  ])('%s: checked while running = %s', (_name, options, expected) => {
    expect(checksWhileRunning(options)).toBe(expected);
  });

  it.each([
    ['a timeout', timeout(0), 'timeout after 5 s'],
    ['a status', fail(0, 503), 'status 503'],
    ['an error', { ...fail(0), statusCode: undefined, errorMessage: 'Socket hang up' }, 'socket hang up'],
    ['a fractional timeout', { ...timeout(0) }, 'timeout after 0.25 s'],
  ])('describes %s', (name, r, text) => {
    expect(describeProbe(r, { responseTimeoutSeconds: name === 'a fractional timeout' ? 0.25 : 5 })).toBe(text);
  });
});

describe('recordHealthResults', () => {
  const base: TaskHealth = { state: 'UNKNOWN', results: [] };
  const ok = (t: number) => status(t, 200, 2);
  const bad = (t: number) => status(t, 500, 2);

  it.each<[string, TaskHealth, HealthResult[], Parameters<typeof recordHealthResults>[2], Partial<TaskHealth>]>([
    [
      'the first pass: HEALTHY since the time the assessment says, counted',
      base,
      [ok(10)],
      { state: 'HEALTHY', healthyAt: 12, consecutiveFailures: 0 },
      { state: 'HEALTHY', healthyAt: 12, lastCheckAt: 12, checks: 1, consecutiveFailures: 0 },
    ],
    [
      'a failure while running: counted, still healthy, healthyAt unchanged',
      { ...base, state: 'HEALTHY', healthyAt: 12, checks: 1, consecutiveFailures: 0 },
      [bad(20)],
      { state: 'HEALTHY', consecutiveFailures: 1 },
      { state: 'HEALTHY', healthyAt: 12, lastCheckAt: 22, checks: 2, failedChecks: 1, consecutiveFailures: 1 },
    ],
    [
      'a batch (a write that waited) is counted whole',
      { ...base, state: 'HEALTHY', healthyAt: 12, checks: 1 },
      [bad(20), bad(30), bad(40)],
      { state: 'UNHEALTHY', consecutiveFailures: 3, message: 'unhealthy while running: 3 failed checks, last: status 500' },
      {
        state: 'UNHEALTHY',
        checks: 4,
        failedChecks: 3,
        lastCheckAt: 42,
        consecutiveFailures: 3,
        message: 'unhealthy while running: 3 failed checks, last: status 500',
      },
    ],
    [
      'a verdict without a probe (no healthcheck) counts no check',
      base,
      [],
      { state: 'HEALTHY' },
      { state: 'HEALTHY', healthyAt: 1_000, results: [] },
    ],
  ])('%s', (_name, health, results, assessment, expected) => {
    expect(recordHealthResults(health, results, assessment, 1_000, 20)).toMatchObject(expected);
  });

  it('keeps only the latest results; the counters cover the rest', () => {
    let health = base;
    for (let i = 0; i < 30; i++)
      health = recordHealthResults(health, [ok(i * 10)], { state: 'HEALTHY', consecutiveFailures: 0 }, 1_000, 20);
    expect(health.results).toHaveLength(20);
    expect(health.results[0]?.timestamp).toBe(100);
    expect(health.checks).toBe(30);
  });

  it('counts the probes a long wait did not keep the results of', () => {
    const kept = [bad(0), ok(10)];
    const h = recordHealthResults({ ...base, state: 'HEALTHY', checks: 5 }, kept, { state: 'HEALTHY' }, 0, 20, { checks: 40, failed: 7 });
    expect(h).toMatchObject({ checks: 45, failedChecks: 7, results: kept });
  });

  it('drops the message of an earlier state, keeps one said for the same state', () => {
    const unhealthy: TaskHealth = { ...base, state: 'UNHEALTHY', message: 'old' };
    expect(recordHealthResults(unhealthy, [], { state: 'HEALTHY' }, 0, 20).message).toBeUndefined();
    const skipped: TaskHealth = { ...base, state: 'HEALTHY', message: 'Health checks skipped' };
    expect(recordHealthResults(skipped, [ok(0)], { state: 'HEALTHY' }, 0, 20).message).toBe('Health checks skipped');
  });
});
