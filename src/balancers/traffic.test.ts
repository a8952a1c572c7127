import { describe, expect, it } from 'vitest';
import { isUpstreamFailure, parseTrafficLine } from './haproxy/traffic-log.ts';
import {
  emptyCounts,
  errorRate,
  LATENCY_BUCKETS_MS,
  latencyQuantile,
  MAX_WINDOW_MS,
  TrafficRecorder,
  type TrafficRecord,
} from './traffic.ts';

const rec = (taskId: string, status: number, latencyMs: number, extra: Partial<TrafficRecord> = {}): TrafficRecord => ({
  serviceId: 'web',
  taskId,
  deployId: taskId.startsWith('n') ? 'v2' : 'v1',
  status,
  latencyMs,
  upstreamError: false,
  ...extra,
});

describe('latency quantiles from the histogram', () => {
  it.each([
    // 100 answers of 1 ms: all in the first bucket (0–5 ms), p99 interpolated inside it
    [[[1, 100]], 0.99, 4.95],
    // 99 fast and 1 slow: p99 is still fast, p100 lands in the slow bucket (250–500)
    [
      [
        [1, 99],
        [300, 1],
      ],
      0.99,
      5,
    ],
    [
      [
        [1, 99],
        [300, 1],
      ],
      1,
      500,
    ],
    // beyond the last bound it answers that bound
    [[[60_000, 10]], 0.5, LATENCY_BUCKETS_MS.at(-1)],
  ] as [number[][], number, number][])('%j at q=%s reads %s ms', (samples, q, expected) => {
    const r = new TrafficRecorder(() => 1_000_000);
    for (const [ms, n] of samples) for (let i = 0; i < n!; i++) r.record(rec('o1', 200, ms!));
    expect(latencyQuantile(r.window('web', { windowMs: 60_000 }).total.latency, q)).toBeCloseTo(expected, 5);
  });

  it('knows no quantile and no error rate without samples', () => {
    expect(latencyQuantile(emptyCounts().latency, 0.99)).toBeUndefined();
    expect(errorRate(emptyCounts())).toBeUndefined();
  });
});

describe('traffic recorder', () => {
  it('counts per task and per deploy, 5xx and upstream errors apart', () => {
    const r = new TrafficRecorder(() => 5_000_000);
    r.record(rec('o1', 200, 3));
    r.record(rec('o1', 503, 3));
    r.record(rec('n1', 502, 3, { upstreamError: true }));
    r.record(rec('n1', 204, 3));
    const t = r.window('web', { windowMs: 10_000 });
    expect(t.total).toMatchObject({ requests: 4, upstreamErrors: 1, responses: { '2xx': 2, '5xx': 2 } });
    expect(t.deploys.map((d) => [d.deployId, d.requests, d.responses['5xx']])).toEqual([
      ['v1', 2, 1],
      ['v2', 2, 1],
    ]);
    expect(errorRate(t.total)).toBe(0.5);
  });

  it('forgets what is older than the window and keeps totals', () => {
    let now = 10_000_000;
    const r = new TrafficRecorder(() => now);
    r.record(rec('o1', 200, 1));
    now += 30_000;
    r.record(rec('o1', 200, 1));
    expect(r.window('web', { windowMs: 10_000 }).total.requests).toBe(1);
    expect(r.window('web', { windowMs: 60_000 }).total.requests).toBe(2);
    // a slot reused after a whole turn of the ring does not bring old counts back
    now += MAX_WINDOW_MS;
    expect(r.window('web', { windowMs: MAX_WINDOW_MS }).total.requests).toBe(0);
    expect(r.totals()[0]?.requests).toBe(2);
  });

  it('drops the totals of a retired upstream after a while', () => {
    let now = 1_000;
    const r = new TrafficRecorder(() => now);
    r.record(rec('o1', 200, 1));
    r.retire('web', 'o1');
    now += 60_000;
    expect(r.totals()).toHaveLength(1);
    now += 10 * 60_000;
    expect(r.totals()).toHaveLength(0);
  });
});

describe("HAProxy's traffic log lines", () => {
  it('parses a line of the log format, and nothing else', () => {
    expect(parseTrafficLine('F 123 7 fledge_b0 web-v1-1-1-localhost-local 503 12 SC')).toEqual({
      pid: 123,
      counter: 7,
      backend: 'fledge_b0',
      server: 'web-v1-1-1-localhost-local',
      status: 503,
      totalMs: 12,
      termination: 'SC',
    });
    expect(parseTrafficLine('[NOTICE] something')).toBeUndefined();
    expect(parseTrafficLine('F 1 2 b s')).toBeUndefined();
  });

  it.each([
    ['--', false],
    ['SC', true],
    ['SH', true],
    ['sH', true],
    ['CD', false],
  ])('termination state %s is an upstream failure: %s', (ts, failed) => {
    expect(isUpstreamFailure(ts)).toBe(failed);
  });
});
