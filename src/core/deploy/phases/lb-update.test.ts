import { describe, expect, it } from 'vitest';
import { phaseInput, T0, testRequest, testTask } from '../../../../test/helpers/engine-values.ts';
import type { Deploy } from '../../model.ts';
import type { LbUpdate } from '../types.ts';
import { stepLbUpdate } from './lb-update.ts';

const lb = testRequest(2, { loadBalanced: true });
const DEADLINE = T0 + 30_000;
const waiting = (over: Partial<LbUpdate> = {}): LbUpdate => ({
  loadBalancerRequestId: 'web-v2-lb1',
  state: 'WAITING',
  add: ['new-1'],
  remove: [],
  startedAt: T0,
  ...over,
});
const outcome = (r: ReturnType<typeof stepLbUpdate>) =>
  'to' in r ? `to ${r.to}` : 'wait' in r ? `wait until ${r.wait.until}` : `end ${r.end.state}: ${r.end.message}`;

describe('stepLbUpdate issuing an operation', () => {
  it.each([
    {
      name: 'canary: adds the healthy new tasks only; old ones stay',
      canary: true,
      add: [1, 2],
      remove: [],
    },
    {
      name: 'canary off: one operation adds every new task and removes every old one',
      canary: false,
      add: [1, 2],
      remove: [1, 2],
    },
  ])('$name', ({ canary, add, remove }) => {
    const input = phaseInput({
      request: lb,
      progress: { phase: 'LB_UPDATE', canary },
      tasks: (v1, v2) => [testTask(v1, 1, 'in-lb'), testTask(v1, 2, 'in-lb'), testTask(v2, 1, 'healthy'), testTask(v2, 2, 'healthy')],
    });
    const result = stepLbUpdate(input);
    const op = result.progress.pendingLbUpdate!;
    const no = (id: string) => input.tasks.get(id)!.taskId.instanceNo;
    expect(op.loadBalancerRequestId).toBe('web-v2-lb1');
    expect(op.add.map(no)).toEqual(add);
    expect(op.remove.map(no)).toEqual(remove);
    expect(result.actions).toEqual([{ kind: 'lbApply', operationId: 'web-v2-lb1', add: op.add, remove: op.remove }]);
    expect(result.tasks?.map((t) => [t.taskId.deployId, t.lb.add?.state ?? t.lb.remove?.state])).toEqual([
      ...add.map(() => ['v2', 'WAITING']),
      ...remove.map(() => ['v1', 'SUCCESS']),
    ]);
    expect(outcome(result)).toBe(`wait until ${T0 + input.deploy.loadBalancerTimeoutSeconds * 1000}`);
    expect(result.decisions?.[0]).toMatchObject({
      kind: 'LB_OPERATION',
      operationId: 'web-v2-lb1',
      adding: add.length,
      removing: remove.length,
    });
  });
});

describe('stepLbUpdate', () => {
  it.each([
    {
      name: 'every new task already in the LB: on to ACCEPTANCE without an operation',
      input: phaseInput({
        request: lb,
        progress: { phase: 'LB_UPDATE', canary: true },
        tasks: (_v1, v2) => [testTask(v2, 1, 'in-lb'), testTask(v2, 2, 'in-lb')],
      }),
      outcome: 'to ACCEPTANCE',
    },
    {
      name: 'an earlier add still settling: looks again in 250 ms',
      input: phaseInput({
        request: lb,
        progress: { phase: 'LB_UPDATE', canary: true },
        tasks: (_v1, v2) => [testTask(v2, 1, 'in-lb'), testTask(v2, 2, 'adding')],
      }),
      outcome: `wait until ${T0 + 250}`,
    },
    {
      name: 'the operation still in flight: waits until the LB deadline',
      input: phaseInput({ request: lb, progress: { phase: 'LB_UPDATE', pendingLbUpdate: waiting(), deadline: DEADLINE } }),
      outcome: `wait until ${DEADLINE}`,
    },
    {
      name: 'the operation not seen yet (after a restart): waits the same',
      input: phaseInput({
        request: lb,
        progress: { phase: 'LB_UPDATE', pendingLbUpdate: waiting(), deadline: DEADLINE },
        obs: { lbOps: {} },
      }),
      outcome: `wait until ${DEADLINE}`,
    },
    {
      name: 'the operation in flight past the LB deadline: FAILED, timed out',
      input: phaseInput({
        now: DEADLINE,
        request: lb,
        progress: { phase: 'LB_UPDATE', pendingLbUpdate: waiting(), deadline: DEADLINE },
        obs: { lbOps: { 'web-v2-lb1': { state: 'WAITING' } } },
      }),
      outcome: 'end FAILED: Load balancer update did not finish within 30 seconds',
    },
    {
      name: 'the operation FAILED: the deploy FAILED with the balancer’s message',
      input: phaseInput({
        request: lb,
        progress: { phase: 'LB_UPDATE', pendingLbUpdate: waiting(), deadline: DEADLINE },
        obs: { lbOps: { 'web-v2-lb1': { state: 'FAILED', message: 'backend rejected' } } },
      }),
      outcome: 'end FAILED: Load balancer update failed: backend rejected',
    },
    {
      name: 'the operation SUCCEEDED: on to ACCEPTANCE, the step ready now',
      input: phaseInput({
        request: lb,
        progress: { phase: 'LB_UPDATE', pendingLbUpdate: waiting(), deadline: DEADLINE },
        obs: { lbOps: { 'web-v2-lb1': { state: 'SUCCESS' } } },
      }),
      outcome: 'to ACCEPTANCE',
    },
  ])('$name', ({ input, outcome: expected }) => {
    const result = stepLbUpdate({ ...input, deploy: { ...input.deploy, loadBalancerTimeoutSeconds: 30 } });
    expect(outcome(result)).toBe(expected);
    if ('to' in result) expect(result.progress.stepReadyAt).toBe(input.now);
    const seen = input.obs.lbOps['web-v2-lb1']?.state;
    if (seen && seen !== 'WAITING') {
      // A finished operation moves from pendingLbUpdate to the history, whatever its state.
      expect(result.progress.pendingLbUpdate).toBeUndefined();
      expect(result.progress.lbUpdates.map((u) => u.state)).toEqual([seen]);
    }
  });

  it('puts a replacement made while its operation was in flight into the LB before the step is ready', () => {
    const input = phaseInput({
      request: lb,
      progress: { phase: 'LB_UPDATE', canary: true },
      tasks: (_v1, v2) => [
        { ...testTask(v2, 1, 'healthy'), lb: { add: { operationId: 'web-v2-lb1', state: 'WAITING' as const, timestamp: T0 } } },
        testTask(v2, 2, 'healthy', T0 + 5),
      ],
    });
    const [first, replacement] = input.tasks.all();
    const result = stepLbUpdate({
      ...input,
      progress: { ...input.progress, pendingLbUpdate: waiting({ add: [first!.taskId.id] }), deadline: DEADLINE },
      obs: { ...input.obs, lbOps: { 'web-v2-lb1': { state: 'SUCCESS' } } },
    });
    expect(result.progress.lbUpdates.map((u) => [u.loadBalancerRequestId, u.state])).toEqual([['web-v2-lb1', 'SUCCESS']]);
    expect(result.progress.pendingLbUpdate).toMatchObject({ loadBalancerRequestId: 'web-v2-lb2', add: [replacement!.taskId.id] });
    expect(result.actions).toEqual([{ kind: 'lbApply', operationId: 'web-v2-lb2', add: [replacement!.taskId.id], remove: [] }]);
    expect(result.tasks?.map((t) => [t.taskId.instanceNo, t.lb.add?.operationId, t.lb.add?.state])).toEqual([
      [1, 'web-v2-lb1', 'SUCCESS'],
      [2, 'web-v2-lb2', 'WAITING'],
    ]);
    expect('wait' in result).toBe(true);
  });

  const swapping = (v1: Deploy, v2: Deploy) => [
    { ...testTask(v2, 1, 'healthy'), lb: { add: { operationId: 'web-v2-lb1', state: 'WAITING' as const, timestamp: T0 } } },
    {
      ...testTask(v1, 1, 'in-lb'),
      lb: {
        add: { operationId: 'op-add', state: 'SUCCESS' as const, timestamp: T0 },
        remove: { operationId: 'web-v2-lb1', state: 'WAITING' as const, timestamp: T0 },
      },
    },
  ];

  it.each([
    { seen: 'SUCCESS', newAdd: 'SUCCESS', oldRemove: 'SUCCESS' },
    // A failed removal is forgotten: the old task is still in the LB.
    { seen: 'FAILED', newAdd: 'FAILED', oldRemove: undefined },
    { seen: 'CANCELED', newAdd: 'CANCELED', oldRemove: undefined },
  ] as const)('records how the operation ended ($seen) on every task it adds or removes', ({ seen, newAdd, oldRemove }) => {
    const input = phaseInput({ request: lb, progress: { phase: 'LB_UPDATE' }, tasks: swapping });
    const [fresh, old] = input.tasks.ofDeploy('v2').concat(input.tasks.ofDeploy('v1'));
    const result = stepLbUpdate({
      ...input,
      progress: { ...input.progress, pendingLbUpdate: waiting({ add: [fresh!.taskId.id], remove: [old!.taskId.id] }) },
      obs: { ...input.obs, lbOps: { 'web-v2-lb1': { state: seen } } },
    });
    const after = input.tasks.with(result.tasks ?? []);
    expect(after.get(fresh!.taskId.id)?.lb.add).toEqual({ operationId: 'web-v2-lb1', state: newAdd, timestamp: T0 });
    expect(after.get(old!.taskId.id)?.lb.remove?.state).toBe(oldRemove);
    expect(after.get(old!.taskId.id)?.lb.add?.state).toBe('SUCCESS');
    if (seen === 'SUCCESS') expect(result).toMatchObject({ to: 'ACCEPTANCE', operationId: 'web-v2-lb1' });
    else expect(result).toMatchObject({ end: { state: 'FAILED' } });
  });

  it('adds again a healthy new task whose earlier add was cancelled', () => {
    const input = phaseInput({
      request: lb,
      progress: { phase: 'LB_UPDATE' },
      tasks: (_v1, v2) => [{ ...testTask(v2, 1, 'healthy'), lb: { add: { operationId: 'x', state: 'CANCELED', timestamp: T0 } } }],
    });
    const result = stepLbUpdate(input);
    expect(result.actions).toMatchObject([{ kind: 'lbApply', add: [input.tasks.all()[0]!.taskId.id] }]);
  });
});
