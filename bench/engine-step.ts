// The cost of one pure decision as a request grows: `npx tsx bench/engine-step.ts [rounds]`.
//
// For requests of 100 and 1,000 (and 10,000) instances it times `stepRequest` on the
// observations the loop sees most: a steady request after one health result, a canary step
// waiting for health, and a scale-up from half the instances (one launch batch). It prints the
// time per decision and per instance, and the ratio between sizes: a ratio near the size
// ratio (10×) means the work grows with the request, not with its square.
import { performance } from 'node:perf_hooks';
import { stepRequest } from '../src/core/request/step.ts';
import type { RequestObservation } from '../src/core/deploy/types.ts';
import type { RequestRecord } from '../src/core/model.ts';
import { engineDeploy, T0, testObservation, testPending, testRecord, testRequest, testTask } from '../test/helpers/engine-values.ts';

const ROUNDS = Number(process.argv[2] ?? 20);
const SIZES = [100, 1_000, 10_000];
const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2', { enableCanaryDeploy: true, instanceGroupSize: 10 });

type Case = (n: number) => { obs: RequestObservation; record: RequestRecord };
const cases: Record<string, Case> = {
  'steady, one health result': (n) => {
    const request = testRequest(n, { loadBalanced: true });
    const tasks = Array.from({ length: n }, (_, i) => testTask(v1, i + 1, i === 0 ? 'healthy' : 'in-lb'));
    return { obs: testObservation({ request, activeDeploy: v1, tasks }), record: testRecord(request) };
  },
  'canary step waiting for health': (n) => {
    const request = testRequest(n, { loadBalanced: true });
    const old = Array.from({ length: n }, (_, i) => testTask(v1, i + 1, 'in-lb'));
    const fresh = Array.from({ length: 10 }, (_, i) => testTask(v2, i + 1, i < 5 ? 'healthy' : 'starting'));
    const pending = testPending(v2, request, { phase: 'HEALTH', stepLaunchComplete: true, deadline: T0 + 600_000 });
    return {
      obs: testObservation({ request, activeDeploy: v1, pendingDeploy: v2, pending, tasks: [...old, ...fresh] }),
      record: testRecord(request, { pendingDeployId: 'v2' }),
    };
  },
  'scale-up from half (one batch)': (n) => {
    const request = testRequest(n);
    const tasks = Array.from({ length: n / 2 }, (_, i) => testTask(v1, i + 1, 'healthy'));
    return { obs: testObservation({ request, activeDeploy: v1, tasks }), record: testRecord(request) };
  },
};

function time(make: Case, n: number): number {
  const { obs, record } = make(n);
  stepRequest(obs, record, T0 + 1000); // warm up
  const start = performance.now();
  for (let i = 0; i < ROUNDS; i++) stepRequest(obs, record, T0 + 1000);
  return (performance.now() - start) / ROUNDS;
}

const rows: string[][] = [['case', ...SIZES.map((n) => `${n} inst. (ms)`), ...SIZES.slice(1).map((n, i) => `×${n / SIZES[i]!} size → ×`)]];
for (const [name, make] of Object.entries(cases)) {
  const ms = SIZES.map((n) => time(make, n));
  rows.push([name, ...ms.map((m) => m.toFixed(2)), ...ms.slice(1).map((m, i) => (m / ms[i]!).toFixed(1))]);
}
const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
