import { describe, expect, it } from 'vitest';
import {
  evaluatePrometheus,
  readValue,
  substituteQuery,
  taskIdsAlternation,
  type PrometheusCheckOptions,
  type PromSide,
} from './evaluate.ts';
import { prometheusTarget } from './target.ts';

const options = (o: Partial<PrometheusCheckOptions>): PrometheusCheckOptions => ({ query: 'q', oldFloor: 0, ...o });
const v = (value: number, samples?: number): PromSide => ({ value: { value }, ...(samples !== undefined ? { samples } : {}) });
const vector = (...values: string[]) => ({ resultType: 'vector', result: values.map((x) => ({ metric: {}, value: [1700000000, x] })) });

describe('prometheus answers', () => {
  it('reads a scalar and a vector of one series', () => {
    expect(readValue({ resultType: 'scalar', result: [1700000000, '0.25'] })).toEqual({ value: 0.25 });
    expect(readValue(vector('3'))).toEqual({ value: 3 });
  });

  it('an empty vector or NaN is no data, not a value', () => {
    expect(readValue(vector())).toEqual({ empty: 'no series' });
    expect(readValue(vector('NaN'))).toEqual({ empty: 'NaN' });
  });

  it('refuses more than one series and a range, saying what to do', () => {
    expect(() => readValue(vector('1', '2'))).toThrow('the query returned 2 series; aggregate it to one');
    expect(() => readValue({ resultType: 'matrix', result: [] })).toThrow('the query returned a matrix');
  });
});

describe('prometheus verdict', () => {
  it.each([
    ['below max', { max: 0.01 }, 0.005, 'SUCCEEDED', '0.005: SUCCEEDED'],
    ['above max', { max: 0.01 }, 0.021, 'FAILED', '0.021: FAILED (> max 0.01)'],
    ['at max', { max: 0.01 }, 0.01, 'SUCCEEDED', '0.01: SUCCEEDED'],
    ['below min', { min: 100 }, 99.5, 'FAILED', '99.5: FAILED (< min 100)'],
    ['within both', { min: 1, max: 2 }, 1.5, 'SUCCEEDED', '1.5: SUCCEEDED'],
  ])('threshold %s', (_name, o, value, state, message) => {
    expect(evaluatePrometheus(options(o), v(value), undefined)).toEqual({ state, message });
  });

  it('compare mode: the new value against maxVsOld × the old one', () => {
    expect(evaluatePrometheus(options({ maxVsOld: 2 }), v(0.03), v(0.02))).toEqual({
      state: 'SUCCEEDED',
      message: 'new 0.03 vs old 0.02: SUCCEEDED',
    });
    expect(evaluatePrometheus(options({ maxVsOld: 2 }), v(0.05), v(0.02))).toEqual({
      state: 'FAILED',
      message: 'new 0.05 vs old 0.02: FAILED (> 2 × old 0.02)',
    });
  });

  it('compare mode with an old value of 0: the floor, or any new value above 0 fails without one', () => {
    expect(evaluatePrometheus(options({ maxVsOld: 2 }), v(0), v(0)).state).toBe('SUCCEEDED');
    expect(evaluatePrometheus(options({ maxVsOld: 2 }), v(0.001), v(0)).state).toBe('FAILED');
    const floored = evaluatePrometheus(options({ maxVsOld: 2, oldFloor: 0.01 }), v(0.015), v(0));
    expect(floored).toEqual({ state: 'SUCCEEDED', message: 'new 0.015 vs old 0: SUCCEEDED' });
    expect(evaluatePrometheus(options({ maxVsOld: 2, oldFloor: 0.01 }), v(0.03), v(0)).message).toContain('> 2 × old 0.01 (floor)');
  });

  it('compare mode without an old deploy: max alone, saying maxVsOld was not applied', () => {
    expect(evaluatePrometheus(options({ maxVsOld: 2, max: 1 }), v(0.5), undefined)).toEqual({
      state: 'SUCCEEDED',
      message: 'new 0.5: SUCCEEDED; maxVsOld not applied without an old deploy',
    });
  });

  describe('too few samples', () => {
    it('is PENDING, never a pass, even when the value would fail', () => {
      const o = options({ max: 0.01, samplesQuery: 's', minSamples: 100 });
      expect(evaluatePrometheus(o, v(0.5, 99), undefined)).toEqual({
        state: 'PENDING',
        message: 'too few samples: new 99 (minSamples 100)',
      });
      expect(evaluatePrometheus(o, v(0.005, 99), undefined).state).toBe('PENDING');
      expect(evaluatePrometheus(o, v(0.005, 100), undefined).state).toBe('SUCCEEDED');
    });

    it('counts each side in compare mode', () => {
      const o = options({ maxVsOld: 2, samplesQuery: 's', minSamples: 50 });
      expect(evaluatePrometheus(o, v(1, 500), v(1, 10))).toEqual({ state: 'PENDING', message: 'too few samples: old 10 (minSamples 50)' });
    });

    it('no data is PENDING too', () => {
      expect(evaluatePrometheus(options({ max: 1 }), { value: { empty: 'no series' } }, undefined)).toEqual({
        state: 'PENDING',
        message: 'the query gave nothing (no series) for the new deploy yet',
      });
      expect(evaluatePrometheus(options({ maxVsOld: 1 }), v(1), { value: { empty: 'NaN' } }).state).toBe('PENDING');
    });
  });
});

describe('prometheus query substitution', () => {
  it('task ids become a regex alternation escaped for a double-quoted PromQL string', () => {
    expect(taskIdsAlternation(['web-v1-1', 'web-v1.2'])).toBe('web-v1-1|web-v1\\\\.2');
    const q = substituteQuery(
      'sum(rate(x{task=~"$NEW_TASK_IDS"}[1m])) / sum(rate(x{task=~"$OLD_TASK_IDS",d="$DEPLOY_ID",r="$REQUEST_ID"}[1m]))',
      {
        requestId: 'web',
        deployId: 'v2',
        step: 1,
        newTaskIds: ['a.1'],
        oldTaskIds: ['b', 'c'],
      },
    );
    expect(q).toBe('sum(rate(x{task=~"a\\\\.1"}[1m])) / sum(rate(x{task=~"b|c",d="v2",r="web"}[1m]))');
  });

  it('$TASK_IDS is the side being asked; no ids match nothing, not the empty label', () => {
    const vars = { requestId: 'r', deployId: 'd', step: 2, newTaskIds: ['n'], oldTaskIds: [] };
    expect(substituteQuery('x{task=~"$TASK_IDS"} $STEP', { ...vars, taskIds: ['o"1'] })).toBe('x{task=~"o\\"1"} 2');
    expect(substituteQuery('x{task=~"$OLD_TASK_IDS"}', vars)).toBe('x{task=~"[^\\\\s\\\\S]"}');
  });
});

describe('prometheus targets', () => {
  it('the server option by default; a check url only when allowed', () => {
    expect(prometheusTarget({ url: 'http://127.0.0.1:9090/', allow: [] }, undefined)).toEqual({ url: 'http://127.0.0.1:9090' });
    expect(prometheusTarget({ url: 'http://127.0.0.1:9090', allow: [] }, 'http://127.0.0.1:9090/')).toEqual({
      url: 'http://127.0.0.1:9090',
    });
    expect(prometheusTarget({ allow: [] }, undefined)).toMatchObject({ refused: expect.stringContaining('--prometheus-url') });
    expect(prometheusTarget({ allow: [] }, 'http://169.254.169.254/')).toMatchObject({
      refused: expect.stringContaining('169.254.169.254'),
    });
    expect(prometheusTarget({ allow: ['10.0.0.0/8'] }, 'http://10.2.3.4:9090')).toEqual({ url: 'http://10.2.3.4:9090' });
    expect(prometheusTarget({ allow: ['prom.internal'] }, 'http://other.internal:9090')).toHaveProperty('refused');
  });
});
