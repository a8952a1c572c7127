// The `lb` check on the real loop with a fake balancer whose counters run on the engine's clock:
// what the check runner hands it (the deploys of both sides, the window from the step's start).
import { afterEach, describe, expect, it } from 'vitest';
import type { TrafficRecord } from '../../src/balancers/traffic.ts';
import { createLbCheck } from '../../src/checks/lb/index.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const lbCheck = (extra: Record<string, unknown> = {}) => ({
  name: 'errors',
  type: 'lb',
  intervalSeconds: 1,
  maxErrorRate: 0.05,
  minRequests: 20,
  ...extra,
});

function send(deployId: string, taskId: string, n: number, status = 200): void {
  for (let i = 0; i < n; i++) {
    const r: TrafficRecord = { serviceId: 'web', taskId, deployId, status, latencyMs: 3, upstreamError: false };
    f.balancer.recordTraffic(r);
  }
}

async function canary(check: Record<string, unknown>) {
  f = await engineFixture({ factories: { lb: createLbCheck } });
  await f.activeRequest('web', 2, { request: { loadBalanced: true } });
  await f.deploy({
    requestId: 'web',
    id: 'd2',
    serviceBasePath: '/svc',
    loadBalancerGroups: ['default'],
    canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'CHECKS' },
    acceptanceChecks: [check],
    acceptanceTimeoutSeconds: 30,
  });
}

describe('lb check in the loop', () => {
  it('is PENDING without requests, then FAILS the canary from the new deploy’s counts against the old one', async () => {
    await canary(lbCheck({ maxErrorRateVsOld: 2 }));
    const pending = await f.pending('web');
    expect(pending?.progress.phase).toBe('ACCEPTANCE');
    expect(pending?.progress.acceptanceResultMessageHistory.at(-1)).toMatch(/^\(errors - PENDING\) too few requests/);
    await f.advance(1500);
    const [fresh] = await f.serving('web', 'd2');
    const old = await f.serving('web', 'd1');
    send('d2', fresh!.taskId.id, 30);
    send('d2', fresh!.taskId.id, 10, 503);
    send('d1', old[0]!.taskId.id, 60);
    send('d1', old[1]!.taskId.id, 59);
    send('d1', old[1]!.taskId.id, 1, 500);
    await f.advance(1000);
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.message).toBe(
      'Acceptance check errors failed: new 25.0 % errors over 40 requests vs old 0.8 % over 120 over the last 3 s: FAILED (error rate 25.0 % > maxErrorRate 5.0 %; error rate 25.0 % > 2 × old 0.8 %)',
    );
  });

  it('counts nothing from before the step was ready: errors the deploy id had earlier do not fail it', async () => {
    f = await engineFixture({ factories: { lb: createLbCheck } });
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    // 500s recorded for d2 (e.g. a tester hitting it) before its step was in the LB
    send('d2', 'early', 100, 500);
    await f.advance(2000);
    await f.deploy({
      requestId: 'web',
      id: 'd2',
      serviceBasePath: '/svc',
      loadBalancerGroups: ['default'],
      canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'CHECKS' },
      acceptanceChecks: [lbCheck({ windowSeconds: 600 })],
    });
    await f.advance(1000);
    const [fresh] = await f.serving('web', 'd2');
    send('d2', fresh!.taskId.id, 25);
    for (const t of await f.serving('web', 'd1')) send('d1', t.taskId.id, 25);
    await f.advance(1000);
    const pending = await f.pending('web');
    const lines =
      pending?.progress.acceptanceResultMessageHistory ?? (await f.history('web', 'd2'))?.progress?.acceptanceResultMessageHistory;
    expect(lines?.find((l) => l.includes('SUCCEEDED'))).toMatch(
      /^\(errors - SUCCEEDED\) new 0\.0 % errors over 25 requests vs old 0\.0 % over /,
    );
  });

  it('without an old deploy serving, judges the new one alone', async () => {
    f = await engineFixture({ factories: { lb: createLbCheck } });
    await f.createRequest({ id: 'web', instances: 1, loadBalanced: true });
    await f.deploy({
      requestId: 'web',
      id: 'd1',
      serviceBasePath: '/svc',
      loadBalancerGroups: ['default'],
      canaryDeploySettings: { acceptanceMode: 'CHECKS' },
      acceptanceChecks: [lbCheck({ maxErrorRateVsOld: 2 })],
    });
    await f.advance(1500);
    const [task] = await f.serving('web', 'd1');
    send('d1', task!.taskId.id, 30);
    await f.advance(1000);
    const result = await f.result('web', 'd1');
    expect(result?.deployState).toBe('SUCCEEDED');
    const lines = (await f.history('web', 'd1'))?.progress?.acceptanceResultMessageHistory ?? [];
    expect(lines.at(-1)).toBe(
      '(errors - SUCCEEDED) new 0.0 % errors over 30 requests (no old deploy serves) over the last 3 s: SUCCEEDED; maxErrorRateVsOld not applied without an old deploy',
    );
  });
});
