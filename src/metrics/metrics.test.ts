import { describe, expect, it } from 'vitest';
import type { Decision } from '../core/deploy/types.ts';
import { emptyCounts } from '../balancers/traffic.ts';
import { phaseSpans, stepSpans } from './index.ts';
import { lbExposition } from './lb.ts';

const counts = { wanted: 1, accepted: 0, newHealthy: 0, newInLb: 0, oldHealthy: 1, oldInLb: 1 };
const base = { observed: '', action: '', reason: '' };
const log: Decision[] = [
  { ...base, at: 1000, step: 1, phase: 'LAUNCH', kind: 'TASKS_LAUNCHED', taskIds: ['t1'], counts },
  { ...base, at: 1500, step: 1, phase: 'HEALTH', kind: 'PHASE_CHANGED', from: 'LAUNCH', to: 'HEALTH', counts },
  { ...base, at: 2500, step: 1, phase: 'ACCEPTANCE', kind: 'PHASE_CHANGED', from: 'HEALTH', to: 'ACCEPTANCE', counts },
  { ...base, at: 9000, step: 2, phase: 'LAUNCH', kind: 'PHASE_CHANGED', from: 'ACCEPTANCE', to: 'LAUNCH', counts },
  { ...base, at: 9800, step: 2, phase: 'END', kind: 'ENDED', from: 'LAUNCH', state: 'CANCELED', intent: 'cancel', counts },
];

describe('deploy durations from a decision log', () => {
  it('measures each phase from the change that entered it to the one that left it', () => {
    expect(phaseSpans(log, 9800)).toEqual([
      ['LAUNCH', 500],
      ['HEALTH', 1000],
      ['ACCEPTANCE', 6500],
      ['LAUNCH', 800],
    ]);
  });

  it('measures each step from its first entry to the next step (or the end)', () => {
    expect(stepSpans(log, 9800)).toEqual([8000, 800]);
  });
});

describe('load balancer series in the Prometheus text format', () => {
  it('writes counters per task and deploy and a cumulative histogram', () => {
    const c = emptyCounts();
    c.requests = 3;
    c.responses['2xx'] = 2;
    c.responses['5xx'] = 1;
    c.latency.counts[0] = 2;
    c.latency.counts[11] = 1;
    c.latency.sumMs = 12_004;
    const text = lbExposition([{ serviceId: 'web', taskId: 'web-v1-1', deployId: 'v1', ...c }], 'builtin');
    const labels = 'balancer="builtin",service="web",deploy="v1",task="web-v1-1"';
    expect(text).toContain(`fledge_lb_requests_total{${labels}} 3`);
    expect(text).toContain(`fledge_lb_responses_total{${labels},class="5xx"} 1`);
    expect(text).toContain(`fledge_lb_request_duration_seconds_bucket{${labels},le="0.005"} 2`);
    expect(text).toContain(`fledge_lb_request_duration_seconds_bucket{${labels},le="10"} 2`);
    expect(text).toContain(`fledge_lb_request_duration_seconds_bucket{${labels},le="+Inf"} 3`);
    expect(text).toContain(`fledge_lb_request_duration_seconds_sum{${labels}} 12.004`);
    expect(text).toMatch(/# TYPE fledge_lb_request_duration_seconds histogram/);
  });

  it('escapes label values', () => {
    const text = lbExposition([{ serviceId: 'we"b\\', taskId: 't', ...emptyCounts() }], 'haproxy');
    expect(text).toContain('service="we\\"b\\\\"');
  });
});
