// Traffic steps: the plan (tasks and weights per share), the share verdict, and a deploy
// walked through stepRequest with the balancer's counters faked as observations.
import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testObservation, testRecord, testRequest, testTask } from '../../../test/helpers/engine-values.ts';
import { DEFAULT_UPSTREAM_WEIGHT } from '../../balancers/types.ts';
import type { RequestRecord, TaskRecord } from '../model.ts';
import { stepRequest } from '../request/step.ts';
import { createPendingDeploy } from './step.ts';
import { judgeShare, NORMAL_WEIGHT, planTraffic, requiredSample, upstreamWeightFor } from './traffic.ts';
import type { Action, Decision, ObservedTraffic, PendingDeploy, RequestObservation } from './types.ts';

describe('planTraffic', () => {
  it('launches the fewest new tasks that keep each within maxLoadPerTaskRatio, with weights close to the share', () => {
    const result = planTraffic([1, 5, 25, 50], 4, 4, 2);
    expect('plan' in result).toBe(true);
    if (!('plan' in result)) return;
    expect(result.plan.steps.map((s) => [s.percent, s.newTasks, s.newWeight])).toEqual([
      [1, 1, 4],
      [5, 1, 21],
      [25, 1, 133],
      [50, 2, 200],
    ]);
    for (const s of result.plan.steps) {
      expect(Math.abs(s.share * 100 - s.percent) / s.percent).toBeLessThan(0.1);
      expect(s.loadRatio).toBeLessThanOrEqual(2);
    }
  });

  it('refuses a share the instances cannot carry, naming the step and the numbers', () => {
    const result = planTraffic([10, 90], 4, 4, 2);
    expect(result).toEqual({
      field: 'deploy.canaryDeploySettings.trafficSteps[1]',
      problem: expect.stringMatching(
        /90 % of the requests would give each new task 9\.00× an old task's load even with all 4 new instance\(s\) beside 4 old \(maxLoadPerTaskRatio 2\)/,
      ),
    });
  });

  it('refuses a share integer weights cannot give closely', () => {
    const result = planTraffic([0.1], 1, 1, 2);
    expect('problem' in result && result.problem).toMatch(/cannot be given/);
  });

  it('plans no traffic steps without old tasks (a first deploy)', () => {
    expect(planTraffic([5, 50], 0, 3, 2)).toEqual({ plan: { oldTasks: 0, steps: [] } });
  });

  it("uses the balancers' normal weight", () => {
    expect(NORMAL_WEIGHT).toBe(DEFAULT_UPSTREAM_WEIGHT);
  });
});

describe('judgeShare', () => {
  it('waits with too few requests, whatever they show', () => {
    expect(judgeShare(0, 100, 0.05).state).toBe('PENDING');
    expect(judgeShare(5, 100, 0.05).message).toMatch(/new got 5 of 100 requests; 823 needed to judge 5 %: waiting/);
  });

  it('passes the intended share within the tolerance and says what it saw', () => {
    const v = judgeShare(106, 2310, 0.05);
    expect(v.state).toBe('SUCCEEDED');
    expect(v.message).toBe('new got 4.59 % of 2,310 requests, intended 5 % ± 1.49 %: OK');
  });

  it('never passes a share of 0 or twice the intended one, at any sample it judges', () => {
    for (const share of [0.01, 0.05, 0.25, 0.5]) {
      const n = requiredSample(share);
      expect(judgeShare(0, n, share).state).toBe('FAILED');
      if (share <= 0.25) expect(judgeShare(Math.round(2 * share * n), n, share).state).toBe('FAILED');
      expect(judgeShare(Math.round(share * n), n, share).state).toBe('SUCCEEDED');
      // the tolerance at the smallest sample is at most half the share
      expect(judgeShare(Math.round(share * n), n, share).tolerance).toBeLessThanOrEqual(share / 2 + 1e-9);
    }
  });
});

// ---- a deploy walked through the request step ----------------------------------------------

const request = testRequest(4, { loadBalanced: true });
const v1 = engineDeploy('v1', {}, { serviceBasePath: '/web' });
const v2 = engineDeploy('v2', { enableCanaryDeploy: true, trafficSteps: [1, 5, 25, 50] }, { serviceBasePath: '/web' });

interface Walk {
  /** every action, in order, with the weights the executor would give its upstreams */
  applies: { operationId: string; add: string[]; remove: string[]; reweigh: string[]; weights: Record<string, number | undefined> }[];
  decisions: Decision[];
  actions: Action[];
  /** the actions of the last pass */
  lastPass: readonly Action[];
  end?: string;
  pending?: PendingDeploy;
  record: RequestRecord;
  tasks: TaskRecord[];
}

/**
 * Runs stepRequest until the deploy ends (or `passes` run out): started tasks become healthy,
 * every LB operation succeeds, and `counters` says what the balancer counted in a traffic step.
 */
function walk(
  counters: (share: number, step: number) => { newRequests: number; requests: number } | undefined,
  { passes = 80, stopWhen, deploy = v2 }: { passes?: number; stopWhen?: (w: Walk) => boolean; deploy?: typeof v2 } = {},
): Walk {
  let record = testRecord(request, { pendingDeployId: 'v2' });
  let pending: PendingDeploy | undefined = createPendingDeploy(deploy, request, T0, { oldTasks: 4 });
  let tasks: TaskRecord[] = [1, 2, 3, 4].map((n) => testTask(v1, n, 'in-lb'));
  const lbOps: RequestObservation['lbOps'] = {};
  const w: Walk = { applies: [], decisions: [], actions: [], lastPass: [], record, tasks };
  let now = T0;
  for (let i = 0; i < passes; i++) {
    now += 1000;
    const traffic = pending?.progress.traffic;
    const step = traffic?.plan.steps[pending!.progress.step - 1];
    let observed: ObservedTraffic | undefined;
    if (pending && step && traffic?.appliedStep === pending.progress.step && traffic.since !== undefined) {
      const c = counters(step.share, pending.progress.step);
      if (c) observed = { deployId: 'v2', from: traffic.since + 1000, ...c };
    }
    const obs = testObservation({
      request,
      activeDeploy: record.activeDeployId === 'v2' ? deploy : v1,
      ...(pending ? { pendingDeploy: deploy, pending } : {}),
      tasks,
      lbOps,
      ...(observed ? { traffic: observed } : {}),
    });
    const out = stepRequest(obs, record, now);
    record = out.request ?? record;
    const byId = new Map(tasks.map((t) => [t.taskId.id, t]));
    for (const t of out.tasks) byId.set(t.taskId.id, t);
    for (const id of out.deletedTasks) byId.delete(id);
    if (out.pending.kind === 'UPDATED') pending = out.pending.pending;
    if (out.pending.kind === 'ENDED') {
      w.end = `${out.pending.result.deployState}: ${out.pending.result.message}`;
      pending = undefined;
    }
    w.decisions.push(...out.decisions);
    w.lastPass = out.actions;
    for (const a of out.actions) {
      w.actions.push(a);
      if (a.kind === 'startTask') {
        const t = byId.get(a.taskId)!;
        byId.set(a.taskId, {
          ...t,
          state: 'TASK_RUNNING',
          handle: { pid: 1 },
          ports: [32000],
          runningAt: now,
          health: { state: 'HEALTHY', healthyAt: now, results: [] },
        });
      }
      if (a.kind === 'lbApply') {
        lbOps[a.operationId] = { state: 'SUCCESS' };
        const label = (id: string) => `${byId.get(id)!.taskId.deployId}#${byId.get(id)!.taskId.instanceNo}`;
        const weights: Record<string, number | undefined> = {};
        for (const id of [...a.add, ...(a.reweigh ?? [])]) weights[label(id)] = upstreamWeightFor(pending, byId.get(id)!.taskId.deployId);
        w.applies.push({
          operationId: a.operationId,
          add: a.add.map(label),
          remove: a.remove.map(label),
          reweigh: (a.reweigh ?? []).map(label),
          weights,
        });
      }
      if (a.kind === 'stopTask') {
        const t = byId.get(a.taskId)!;
        byId.set(a.taskId, { ...t, state: 'TASK_KILLED', doneAt: now });
      }
    }
    tasks = [...byId.values()];
    Object.assign(w, { record, tasks, pending });
    if (stopWhen?.(w)) break;
    if (w.end && !tasks.some((t) => t.taskId.deployId === 'v1' && t.state !== 'TASK_KILLED')) break;
  }
  return w;
}

const exact = (share: number) => ({ newRequests: Math.round(share * 5000), requests: 5000 });

describe('a traffic-step deploy', () => {
  it('gives each step its share by weight, judges it on the counters, then completes at the normal weight', () => {
    const w = walk(exact);
    expect(w.end).toMatch(/^SUCCEEDED/);
    const traffic = w.applies.filter((a) => a.operationId.startsWith('web-v2-'));
    // step 1: one new task at weight 4 (old tasks stay at the normal weight)
    expect(traffic[0]).toMatchObject({ add: ['v2#1'], reweigh: [], weights: { 'v2#1': 4 } });
    // step 2 and 3: the same task re-weighed; step 4: a second task, both at 200
    expect(traffic[1]).toMatchObject({ add: [], reweigh: ['v2#1'], weights: { 'v2#1': 21 } });
    expect(traffic[2]).toMatchObject({ add: [], reweigh: ['v2#1'], weights: { 'v2#1': 133 } });
    expect(traffic[3]).toMatchObject({ add: ['v2#2'], reweigh: ['v2#1'], weights: { 'v2#1': 200, 'v2#2': 200 } });
    // the final step: every new task at the normal weight
    expect(traffic[4]?.weights).toEqual({ 'v2#1': undefined, 'v2#2': undefined, 'v2#3': undefined, 'v2#4': undefined });
    const verdicts = w.decisions
      .filter((d) => d.kind === 'ACCEPTANCE_RESULT' && d.check === 'traffic share' && d.state !== 'PENDING')
      .map((d) => d.observed);
    expect(verdicts).toEqual([
      'new got 1 % of 5,000 requests, intended 0.99 % ± 0.461 %: OK',
      'new got 4.98 % of 5,000 requests, intended 4.99 % ± 1.01 %: OK',
      'new got 25 % of 5,000 requests, intended 25 % ± 2.01 %: OK',
      'new got 50 % of 5,000 requests, intended 50 % ± 2.33 %: OK',
    ]);
    // each step waited for its counters first
    expect(w.decisions.filter((d) => d.kind === 'ACCEPTANCE_RESULT' && d.state === 'PENDING')).toHaveLength(4);
    // no old task retired before the deploy succeeded
    const firstOldStop = w.actions.findIndex((a) => a.kind === 'stopTask' && a.taskId.startsWith('web-v1'));
    expect(firstOldStop).toBeGreaterThan(-1);
  });

  it('keeps waiting with too few requests, then fails as acceptance does when the timeout passes', () => {
    const w = walk(() => ({ newRequests: 1, requests: 50 }), { passes: 3700 });
    expect(w.end).toMatch(/^FAILED: .*Acceptance|^FAILED/);
    expect(w.decisions.some((d) => d.kind === 'ACCEPTANCE_RESULT' && d.state === 'PENDING' && /needed to judge/.test(d.observed))).toBe(
      true,
    );
    expect(w.decisions.some((d) => d.kind === 'ACCEPTANCE_RESULT' && d.state === 'SUCCEEDED')).toBe(false);
    const ended = w.decisions.find((d) => d.kind === 'ENDED');
    expect(ended?.reason ?? ended?.observed).toBeDefined();
  });

  it('fails a mis-set weight, and the first action after it takes every new task out of the LB in one operation', () => {
    // step 2 (5 %): the balancer sends the new deploy half the requests
    const w = walk((share, step) => (step === 2 ? { newRequests: 2500, requests: 5000 } : exact(share)), {
      stopWhen: (x) => x.end !== undefined,
    });
    expect(w.end).toMatch(/^FAILED: .*traffic share.*new got 50 % of 5,000 requests, intended 4\.99 % ± 1\.01 %: FAILED/);
    const verdict = w.decisions.find((d) => d.kind === 'ACCEPTANCE_RESULT' && d.state === 'FAILED');
    expect(verdict?.observed).toMatch(/new got 50 %/);
    // the pass that ended the deploy: its first action removes the new tasks, nothing else first
    expect(w.lastPass[0]).toMatchObject({ kind: 'lbApply', add: [] });
    const removal = w.lastPass[0];
    const after = walk((share, step) => (step === 2 ? { newRequests: 2500, requests: 5000 } : exact(share)), { passes: 200 });
    expect(removal).toMatchObject({ kind: 'lbApply', add: [], remove: [expect.stringMatching(/^web-v2-/)] });
    // one operation: the only removal of the new deploy's tasks
    expect(after.actions.filter((a) => a.kind === 'lbApply' && a.remove.length > 0)).toEqual([removal]);
    // and no new task is stopped before that removal
    const firstStop = after.actions.findIndex((a) => a.kind === 'stopTask');
    expect(firstStop).toBeGreaterThan(after.actions.findIndex((a) => JSON.stringify(a) === JSON.stringify(removal)));
  });

  it('judges a passed step again while it waits for approval: a weight changed afterwards fails it', () => {
    const manual = engineDeploy(
      'v2',
      { enableCanaryDeploy: true, trafficSteps: [5], acceptanceMode: 'MANUAL' },
      { serviceBasePath: '/web' },
    );
    let judged = 0;
    // right for a while, then the new deploy gets half of every request counted since
    const w = walk(
      (share) => {
        judged += 1;
        return judged < 5 ? exact(share) : { newRequests: Math.round(share * 5000) + 2500 * (judged - 4), requests: 5000 * (judged - 3) };
      },
      { deploy: manual, stopWhen: (x) => x.end !== undefined },
    );
    const states = w.decisions.filter((d) => d.kind === 'ACCEPTANCE_RESULT').map((d) => d.state);
    expect(states).toEqual(['PENDING', 'SUCCEEDED', 'FAILED']);
    expect(w.end).toMatch(/^FAILED: Acceptance check traffic share failed: new got/);
  });
});
