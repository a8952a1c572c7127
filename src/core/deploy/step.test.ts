// The deploy step as a whole: request-level conditions, intents, failure counting, the phases
// run in sequence, and the decision log it writes. One observation in, one outcome out.
import { describe, expect, it } from 'vitest';
import {
  engineDeploy,
  T0,
  TEST_ENGINE_SETTINGS,
  testObservation,
  testPending,
  testRecord,
  testRequest,
  testTask,
} from '../../../test/helpers/engine-values.ts';
import type { TaskRecord } from '../model.ts';
import { stepRequest } from '../request/step.ts';
import { stepDeploy, type DeployStepOutcome } from './step.ts';
import { DECISION_KINDS, type DeployIntent, type DeployPhase, type DeployProgress, type RequestObservation } from './types.ts';

const request = testRequest(2);
const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2');
const old = [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'healthy')];
const DEADLINE = T0 + 125_000;

function observe(
  progress: Partial<DeployProgress>,
  fresh: (v2: typeof v1) => TaskRecord[],
  more: Partial<RequestObservation> = {},
  intents: DeployIntent[] = [],
) {
  const pending = testPending(v2, request, { stepLaunchComplete: true, deadline: DEADLINE, ...progress }, { intents });
  return testObservation({ request, activeDeploy: v1, pendingDeploy: v2, pending, tasks: [...old, ...fresh(v2)], ...more });
}
const inPhase = (phase: DeployPhase) => ({ phase });
const ended = (o: DeployStepOutcome) =>
  o.pending.kind === 'ENDED' ? `${o.pending.result.deployState}: ${o.pending.result.message}` : undefined;
const phaseOf = (o: DeployStepOutcome, before: DeployPhase) =>
  o.pending.kind === 'UPDATED' ? o.pending.pending.progress.phase : o.pending.kind === 'ENDED' ? 'END' : before;
const kinds = (o: DeployStepOutcome) => o.decisions.map((d) => (d.kind === 'PHASE_CHANGED' ? `${d.from}→${d.to}` : d.kind));

describe('stepDeploy', () => {
  it.each([
    {
      name: 'LAUNCH starts the missing new tasks and waits for health',
      obs: observe({ phase: 'LAUNCH', stepLaunchComplete: false, deadline: undefined }, () => []),
      now: T0,
      phase: 'HEALTH',
      end: undefined,
      decisions: ['TASKS_LAUNCHED', 'LAUNCH→HEALTH'],
    },
    {
      name: 'HEALTH waits while a new task is starting',
      obs: observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'starting')]),
      now: T0 + 1000,
      phase: 'HEALTH',
      end: undefined,
      decisions: [],
    },
    {
      name: 'HEALTH with every new task healthy runs through acceptance NONE and succeeds, in one step',
      obs: observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'healthy')]),
      now: T0 + 1000,
      phase: 'END',
      end: 'SUCCEEDED: Deploy succeeded',
      decisions: ['HEALTH→ACCEPTANCE', 'ACCEPTANCE→ADVANCE', 'ENDED'],
    },
    {
      name: 'a new task exiting with no failures allowed fails the deploy',
      obs: observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'exited')]),
      now: T0 + 1000,
      phase: 'END',
      end: `FAILED: Task ${testTask(v2, 2, 'exited').taskId.id} exited with code 1 during the deploy`,
      decisions: ['TASK_FAILED', 'ENDED'],
    },
    {
      name: 'an unhealthy new task fails the deploy with the health message',
      obs: observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'unhealthy'), testTask(d, 2, 'healthy')]),
      now: T0 + 1000,
      phase: 'END',
      end: 'FAILED: Health check returned failure status 503',
      decisions: ['TASK_FAILED', 'ENDED'],
    },
    {
      name: 'a failure allowed by allowedTasksFailuresPerGroup is counted and replaced',
      obs: observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'exited')], {
        pendingDeploy: engineDeploy('v2', { allowedTasksFailuresPerGroup: 1 }),
      }),
      now: T0 + 1000,
      phase: 'HEALTH',
      end: undefined,
      decisions: ['TASK_FAILED', 'TASKS_LAUNCHED'],
    },
    {
      name: 'an allowed failure after the step was healthy goes back to LAUNCH to replace it',
      obs: observe(inPhase('ACCEPTANCE'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'finished')], {
        pendingDeploy: engineDeploy('v2', { allowedTasksFailuresPerGroup: 1, acceptanceMode: 'MANUAL', enableCanaryDeploy: true }),
      }),
      now: T0 + 1000,
      phase: 'HEALTH',
      end: undefined,
      decisions: ['TASK_FAILED', 'ACCEPTANCE→LAUNCH', 'TASKS_LAUNCHED', 'LAUNCH→HEALTH'],
    },
    {
      name: 'the step deadline passing ends the deploy OVERDUE',
      obs: observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'starting')]),
      now: DEADLINE,
      phase: 'END',
      end: 'OVERDUE: Deploy step was not healthy within 125 seconds',
      decisions: ['ENDED'],
    },
    {
      name: 'a paused request fails its deploy',
      obs: observe(inPhase('HEALTH'), () => [], { requestState: 'PAUSED' }),
      now: T0,
      phase: 'END',
      end: 'FAILED: Request web was paused during the deploy',
      decisions: ['ENDED'],
    },
    {
      name: 'a deleted request fails its deploy naming it missing',
      obs: observe(inPhase('HEALTH'), () => [], { requestState: 'DELETING' }),
      now: T0,
      phase: 'END',
      end: 'FAILED: Request web is missing (deleted during the deploy)',
      decisions: ['ENDED'],
    },
    {
      name: 'a deploy missing from the store ends FAILED_INTERNAL_STATE',
      obs: (() => {
        const { pendingDeploy: _gone, ...rest } = observe(inPhase('HEALTH'), () => []);
        return rest;
      })(),
      now: T0,
      phase: 'END',
      end: 'FAILED_INTERNAL_STATE: Internal error: deploy v2 is missing from the store',
      decisions: ['ENDED'],
    },
    {
      name: 'cancel ends CANCELED',
      obs: observe(inPhase('HEALTH'), () => [], {}, [{ kind: 'cancel', at: T0, message: 'not today' }]),
      now: T0,
      phase: 'END',
      end: 'CANCELED: Canceled: not today',
      decisions: ['ENDED'],
    },
    {
      name: 'reject ends FAILED',
      obs: observe(inPhase('ACCEPTANCE'), () => [], {}, [{ kind: 'reject', at: T0 }]),
      now: T0,
      phase: 'END',
      end: 'FAILED: Rejected by user',
      decisions: ['ENDED'],
    },
    {
      name: 'advance approves a MANUAL step',
      obs: observe(
        { phase: 'ACCEPTANCE', stepReadyAt: T0, targetActiveInstances: 1, totalSteps: 2 },
        (d) => [testTask(d, 1, 'healthy')],
        { pendingDeploy: engineDeploy('v2', { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' }) },
        [{ kind: 'advance', at: T0 }],
      ),
      now: T0,
      phase: 'HEALTH',
      end: undefined,
      decisions: ['INTENT', 'ACCEPTANCE→ADVANCE', 'ADVANCE→LAUNCH', 'TASKS_LAUNCHED', 'LAUNCH→HEALTH'],
    },
    {
      name: 'update jumps to another target, skipping acceptance',
      obs: observe({ phase: 'ACCEPTANCE', targetActiveInstances: 1 }, (d) => [testTask(d, 1, 'healthy')], {}, [
        { kind: 'update', at: T0, targetActiveInstances: 2 },
      ]),
      now: T0,
      phase: 'HEALTH',
      end: undefined,
      decisions: ['ACCEPTANCE→LAUNCH', 'TASKS_LAUNCHED', 'LAUNCH→HEALTH'],
    },
  ])('$name', ({ obs, now, phase, end, decisions }) => {
    const outcome = stepDeploy(obs, now);
    expect(ended(outcome)).toBe(end);
    expect(phaseOf(outcome, obs.pending!.progress.phase)).toBe(phase);
    expect(kinds(outcome)).toEqual(decisions);
  });

  it('an update to every instance approves that last MANUAL step (Singularity’s Advance); an update to fewer approves nothing', () => {
    const manual = engineDeploy('v2', { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' });
    const waiting = { phase: 'ACCEPTANCE' as const, stepReadyAt: T0, targetActiveInstances: 1, totalSteps: 2 };
    const partial = stepDeploy(
      observe(waiting, (d) => [testTask(d, 1, 'healthy')], { pendingDeploy: manual }, [
        { kind: 'update', at: T0, targetActiveInstances: 1 },
      ]),
      T0,
    );
    expect(partial.pending.kind === 'UPDATED' && partial.pending.pending.progress.approvedStep).toBeUndefined();
    expect(partial.waiting?.why).toBe('waiting for a user to advance or reject');

    const all = stepDeploy(
      observe(waiting, (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'healthy')], { pendingDeploy: manual }, [
        { kind: 'update', at: T0, targetActiveInstances: 2 },
      ]),
      T0,
    );
    expect(ended(all)).toMatch(/^SUCCEEDED/);
    expect(JSON.stringify(all.decisions)).toContain('approved by the deploy update that moved to every instance');
  });

  it('stamps each decision with its time, phase, step and the counts it was taken on', () => {
    const outcome = stepDeploy(
      observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'healthy')]),
      T0 + 7,
    );
    expect(outcome.decisions[0]).toEqual({
      kind: 'PHASE_CHANGED',
      from: 'HEALTH',
      to: 'ACCEPTANCE',
      at: T0 + 7,
      phase: 'ACCEPTANCE',
      step: 1,
      counts: { wanted: 2, accepted: 0, newHealthy: 2, newInLb: 0, oldHealthy: 2, oldInLb: 0 },
      observed: '2 of 2 new task(s) healthy',
      action: 'HEALTH → ACCEPTANCE',
      reason: 'step is ready; run acceptance',
    });
    expect(outcome.decisions.at(-1)).toMatchObject({ kind: 'ENDED', from: 'ADVANCE', state: 'SUCCEEDED', phase: 'END' });
    expect(outcome.pending.kind === 'ENDED' && outcome.pending.progress.decisionLog).toEqual(outcome.decisions);
  });

  it('keeps the decision log within its limit, but always keeps the end', () => {
    const full = Array.from({ length: 3 }, (_, i) => ({
      at: i,
      phase: 'HEALTH' as const,
      step: 1,
      observed: 'o',
      action: `old ${i}`,
      reason: 'r',
    }));
    const obs = observe({ ...inPhase('HEALTH'), decisionLog: full }, (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'healthy')], {
      settings: { ...TEST_ENGINE_SETTINGS, decisionLogLimit: 3 },
    });
    const outcome = stepDeploy(obs, T0);
    const log = outcome.pending.kind === 'ENDED' ? outcome.pending.progress.decisionLog : [];
    expect(log.map((d) => d.kind ?? d.action)).toEqual(['old 2', 'PHASE_CHANGED', 'PHASE_CHANGED', 'ENDED']);
  });

  it.each([
    { how: 'cancel', intents: [{ kind: 'cancel' as const, at: T0 }], now: T0, state: 'CANCELED' },
    { how: 'reject', intents: [{ kind: 'reject' as const, at: T0 }], now: T0, state: 'FAILED' },
    { how: 'the LB timeout', intents: [], now: T0 + 60_000, state: 'FAILED' },
  ])('ended by $how with the LB operation in flight: cancels it and hands it over to the request', ({ intents, now, state }) => {
    const op = { loadBalancerRequestId: 'web-v2-lb1', state: 'WAITING' as const, add: ['n1'], remove: ['o1'], startedAt: T0 };
    const outcome = stepDeploy(
      observe({ phase: 'LB_UPDATE', pendingLbUpdate: op, deadline: T0 + 30_000 }, () => [], {}, intents),
      now,
    );
    expect(outcome.actions).toEqual([{ kind: 'lbCancel', operationId: 'web-v2-lb1' }]);
    expect(outcome.pending).toMatchObject({
      kind: 'ENDED',
      result: { deployState: state },
      lbHandover: { operationId: 'web-v2-lb1', add: ['n1'], remove: ['o1'], startedAt: T0, canceling: true },
    });
    // No outcome is assumed: the history keeps the operation as it was, saying who has it now.
    const progress = outcome.pending.kind === 'ENDED' ? outcome.pending.progress : undefined;
    expect(progress?.pendingLbUpdate).toBeUndefined();
    expect(progress?.lbUpdates.at(-1)).toMatchObject({ loadBalancerRequestId: 'web-v2-lb1', state: 'WAITING', message: /handed over/ });
    expect(outcome.decisions.at(-1)).toMatchObject({ kind: 'ENDED', from: 'LB_UPDATE' });
  });

  it('reports nothing changed when nothing did', () => {
    const outcome = stepDeploy(
      observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'starting'), testTask(d, 2, 'starting')]),
      T0 + 1,
    );
    expect(outcome).toMatchObject({ pending: { kind: 'UNCHANGED' }, tasks: [], actions: [], decisions: [], wakeAt: DEADLINE });
    expect(outcome.waiting).toEqual({ why: '0 of 2 new task(s) healthy', until: DEADLINE });
  });

  it('creates at most launchBatchSize tasks in one pass and comes back at once for the rest', () => {
    const big = testRequest(250);
    const pending = testPending(v2, big);
    const obs = testObservation({ request: big, activeDeploy: v1, pendingDeploy: v2, pending });
    const first = stepDeploy(obs, T0);
    expect(first.tasks).toHaveLength(100);
    expect(first.wakeAt).toBe(T0);
    expect(first.pending.kind === 'UPDATED' && first.pending.pending.progress).toMatchObject({
      phase: 'LAUNCH',
      stepLaunchComplete: false,
    });
    const second = stepDeploy(
      { ...obs, tasks: [...first.tasks], pending: first.pending.kind === 'UPDATED' ? first.pending.pending : pending },
      T0 + 1,
    );
    expect(second.tasks.map((t) => t.taskId.instanceNo)).toEqual(Array.from({ length: 100 }, (_, i) => 101 + i));
  });
});

describe('the decision kinds', () => {
  it('every kind is written by some path of the deploy step', () => {
    const lb = testRequest(1, { loadBalanced: true });
    const checks = engineDeploy(
      'v2',
      { acceptanceMode: 'CHECKS' },
      { acceptanceChecks: [{ name: 'smoke', type: 'http', intervalSeconds: 5, timeoutSeconds: 5, failOnError: true, options: {} }] },
    );
    const paths: RequestObservation[] = [
      observe({ phase: 'LAUNCH', stepLaunchComplete: false }, () => []),
      observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'exited')]),
      testObservation({
        request: lb,
        activeDeploy: v1,
        pendingDeploy: v2,
        pending: testPending(v2, lb, { phase: 'LB_UPDATE' }),
        tasks: [testTask(v2, 1, 'healthy')],
      }),
      observe({ phase: 'ACCEPTANCE', stepReadyAt: T0 }, () => [], {
        pendingDeploy: checks,
        checkResults: [{ deployId: 'v2', step: 1, name: 'smoke', state: 'PENDING', message: 'wait', at: T0 }],
      }),
      observe(inPhase('ACCEPTANCE'), () => [], {}, [{ kind: 'advance', at: T0 }]),
      observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), { ...testTask(d, 2, 'lost'), lostWithHost: 'd1' }]),
      observe(inPhase('HEALTH'), (d) => [testTask(d, 1, 'healthy'), { ...testTask(d, 2, 'exited'), portInUse: true }]),
    ];
    const written = new Set(paths.flatMap((obs) => stepDeploy(obs, T0).decisions.map((d) => d.kind)));
    expect([...written].sort()).toEqual([...DECISION_KINDS].sort());
  });
});

describe('stepRequest deciding a pending deploy', () => {
  it.each([
    {
      name: 'the deploy succeeding stops the old tasks',
      fresh: (d: typeof v2) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'healthy')],
      stops: 2,
    },
    {
      name: 'the deploy failing keeps every old task',
      fresh: (d: typeof v2) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'exited')],
      stops: 0,
    },
    {
      name: 'the deploy still waiting keeps every old task',
      fresh: (d: typeof v2) => [testTask(d, 1, 'healthy'), testTask(d, 2, 'starting')],
      stops: 0,
    },
  ])('$name', ({ fresh, stops }) => {
    const outcome = stepRequest(observe(inPhase('HEALTH'), fresh), testRecord(request, { pendingDeployId: 'v2' }), T0 + 1000);
    // Old tasks stop only once the new deploy serves in full; on every other outcome they stay.
    expect(outcome.actions.filter((a) => a.kind === 'stopTask' && a.taskId.includes('-v1-'))).toHaveLength(stops);
  });

  it('shares one launch batch between the deploy and the steady state', () => {
    const big = testRequest(150);
    const obs = testObservation({
      request: big,
      activeDeploy: v1,
      pendingDeploy: v2,
      pending: testPending(v2, big, { targetActiveInstances: 80 }),
    });
    const outcome = stepRequest(obs, testRecord(big, { pendingDeployId: 'v2' }), T0);
    const created = (id: string) => outcome.tasks.filter((t) => t.taskId.deployId === id).length;
    expect([created('v2'), created('v1')]).toEqual([80, 20]);
    expect(outcome.wakeAt).toBe(T0);
  });

  it('is deterministic: the same observation gives the same decision', () => {
    const obs = observe({ phase: 'LAUNCH', stepLaunchComplete: false }, () => []);
    const decide = () => JSON.stringify(stepRequest(obs, testRecord(request, { pendingDeployId: 'v2' }), T0));
    expect(decide()).toBe(decide());
  });
});
