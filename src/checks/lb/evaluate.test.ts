import { describe, expect, it } from 'vitest';
import { emptyCounts, LATENCY_BUCKETS_MS } from '../../balancers/traffic.ts';
import { evaluateLb, LB_CHECK_DEFAULTS, lbWindowMs, sideOf, type LbCheckOptions, type LbSide } from './evaluate.ts';

const options = (o: Partial<LbCheckOptions>): LbCheckOptions => ({ ...LB_CHECK_DEFAULTS, ...o });
const side = (requests: number, errors: number, p99Ms?: number, p50Ms?: number): LbSide => ({
  requests,
  errors,
  ...(p99Ms !== undefined ? { p99Ms } : {}),
  ...(p50Ms !== undefined ? { p50Ms } : {}),
});
const MINUTE = 60_000;

describe('lb check verdict', () => {
  it('fails an error rate above twice the old one, giving the numbers', () => {
    const answer = evaluateLb(options({ maxErrorRateVsOld: 2 }), side(1204, 25), side(3611, 7), MINUTE);
    expect(answer).toEqual({
      state: 'FAILED',
      message: 'new 2.1 % errors over 1,204 requests vs old 0.2 % over 3,611 over the last 60 s: FAILED (error rate 2.1 % > 2 × old 0.2 %)',
    });
  });

  it('passes within every threshold', () => {
    const answer = evaluateLb(
      options({ maxErrorRate: 0.05, maxErrorRateVsOld: 2, maxP99Ms: 300, maxP50Ms: 50, maxP99MsVsOld: 1.5 }),
      side(500, 2, 120, 20),
      side(1500, 3, 100, 18),
      MINUTE,
    );
    expect(answer.state).toBe('SUCCEEDED');
    expect(answer.message).toBe(
      'new 0.4 % errors, p50 20 ms, p99 120 ms over 500 requests vs old 0.2 %, p50 18 ms, p99 100 ms over 1,500 over the last 60 s: SUCCEEDED',
    );
  });

  it.each([
    ['maxErrorRate', { maxErrorRate: 0.01 }, side(200, 3), 'error rate 1.5 % > maxErrorRate 1.0 %'],
    ['maxP50Ms', { maxP50Ms: 10 }, side(200, 0, 30, 12), 'p50 12 ms > maxP50Ms 10'],
    ['maxP99Ms', { maxP99Ms: 250 }, side(200, 0, 400), 'p99 400 ms > maxP99Ms 250'],
    ['maxP99MsVsOld', { maxP99MsVsOld: 2 }, side(200, 0, 250), 'p99 250 ms > 2 × old 100 ms'],
  ])('fails on %s alone, naming it', (_name, o, fresh, why) => {
    const answer = evaluateLb(options(o), fresh, side(200, 0, 100, 10), MINUTE);
    expect(answer.state).toBe('FAILED');
    expect(answer.message).toContain(why);
  });

  it('an error rate exactly at a threshold passes', () => {
    expect(evaluateLb(options({ maxErrorRate: 0.05 }), side(100, 5), side(100, 0), MINUTE).state).toBe('SUCCEEDED');
  });

  describe('an old deploy without errors', () => {
    it('compares with the floor: 0.1 % by default', () => {
      // 1 error in 2,000 = 0.05 %: within 2 × 0.1 %
      expect(evaluateLb(options({ maxErrorRateVsOld: 2 }), side(2000, 1), side(2000, 0), MINUTE).state).toBe('SUCCEEDED');
      const answer = evaluateLb(options({ maxErrorRateVsOld: 2 }), side(2000, 5), side(2000, 0), MINUTE);
      expect(answer.state).toBe('FAILED');
      expect(answer.message).toContain('> 2 × old 0.1 % (floor)');
    });

    it('a floor of 0 fails any error at all', () => {
      const o = options({ maxErrorRateVsOld: 10, errorRateFloor: 0 });
      expect(evaluateLb(o, side(2000, 1), side(2000, 0), MINUTE).state).toBe('FAILED');
      expect(evaluateLb(o, side(2000, 0), side(2000, 0), MINUTE).state).toBe('SUCCEEDED');
    });

    it('a p99 ratio is taken against at least the first bucket bound', () => {
      const answer = evaluateLb(options({ maxP99MsVsOld: 2 }), side(200, 0, 9), side(200, 0, 1), MINUTE);
      expect(answer.state).toBe('SUCCEEDED');
      expect(evaluateLb(options({ maxP99MsVsOld: 2 }), side(200, 0, 11), side(200, 0, 1), MINUTE).state).toBe('FAILED');
    });
  });

  describe('too few requests', () => {
    it('is PENDING on the new side, never a pass, even when everything else is fine', () => {
      const answer = evaluateLb(options({ maxErrorRate: 0.5, minRequests: 100 }), side(99, 0), side(5000, 0), 20_000);
      expect(answer).toEqual({
        state: 'PENDING',
        message: 'too few requests over the last 20 s: new 99, old 5,000 (minRequests 100 per side)',
      });
    });

    it('is PENDING on the old side too', () => {
      expect(evaluateLb(options({ maxErrorRate: 0.5 }), side(5000, 0), side(10, 0), MINUTE).state).toBe('PENDING');
    });

    it('is PENDING with no traffic at all, even when the errors would fail it', () => {
      expect(evaluateLb(options({ maxErrorRate: 0 }), side(0, 0), side(0, 0), 0).state).toBe('PENDING');
      expect(evaluateLb(options({ maxErrorRate: 0, minRequests: 10 }), side(9, 9), side(100, 0), MINUTE).state).toBe('PENDING');
    });
  });

  it('without an old deploy: absolute thresholds only, and says the relative ones were not applied', () => {
    const answer = evaluateLb(options({ maxErrorRate: 0.05, maxErrorRateVsOld: 2 }), side(300, 3), undefined, MINUTE);
    expect(answer).toEqual({
      state: 'SUCCEEDED',
      message:
        'new 1.0 % errors over 300 requests (no old deploy serves) over the last 60 s: SUCCEEDED; maxErrorRateVsOld not applied without an old deploy',
    });
    expect(evaluateLb(options({ maxErrorRate: 0.005 }), side(300, 3), undefined, MINUTE).state).toBe('FAILED');
  });
});

describe('lb check counts', () => {
  it('errors are the 5xx answers, or the upstream errors when more (the balancer cut answers), never both added', () => {
    const c = emptyCounts();
    c.requests = 100;
    c.responses['2xx'] = 95;
    c.responses['5xx'] = 5;
    c.upstreamErrors = 3; // its own 502s for a refused upstream: among the 5xx
    expect(sideOf(c).errors).toBe(5);
    c.upstreamErrors = 8;
    expect(sideOf(c).errors).toBe(8);
  });

  it('p50 and p99 come from the histogram, exact to its bucket', () => {
    const c = emptyCounts();
    c.requests = 100;
    const fast = LATENCY_BUCKETS_MS.indexOf(10);
    const slow = LATENCY_BUCKETS_MS.indexOf(500);
    c.latency.counts[fast] = 98;
    c.latency.counts[slow] = 2;
    const s = sideOf(c);
    expect(s.p50Ms).toBeGreaterThan(5);
    expect(s.p50Ms).toBeLessThanOrEqual(10);
    expect(s.p99Ms).toBeGreaterThan(250);
    expect(s.p99Ms).toBeLessThanOrEqual(500);
  });

  it('no requests: no latency', () => {
    expect(sideOf(emptyCounts())).toEqual({ requests: 0, errors: 0 });
  });
});

describe('lb check window', () => {
  const at = (s: number) => s * 1000;
  it('is windowSeconds of whole seconds when the step is older than that', () => {
    expect(lbWindowMs(at(1000) + 300, at(100), 60)).toBe(60_000);
  });

  it('starts at the first whole second after the step was ready', () => {
    // ready at 100.4 s, now 110.2 s: seconds 101..110
    expect(lbWindowMs(at(110) + 200, at(100) + 400, 60)).toBe(10_000);
    expect(lbWindowMs(at(110) + 200, at(100), 60)).toBe(11_000);
  });

  it('is empty until a whole second passed since', () => {
    expect(lbWindowMs(at(100) + 900, at(100) + 400, 60)).toBe(0);
  });
});
