// The request step as a whole, over several passes, for what spans its parts: an atomic swap
// in flight when its deploy ends is handed over, settled on its real outcome, and the capacity
// rule then restores the old deploy in the LB before a new task is stopped.
import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testObservation, testPending, testRecord, testRequest, testTask } from '../../../test/helpers/engine-values.ts';
import type { Action, DeployIntent, LbUpdate, RequestObservation } from '../deploy/types.ts';
import type { LbOpState, RequestRecord, TaskRecord } from '../model.ts';
import { TaskView } from '../task-view.ts';
import { inLb, touchesLb } from '../tasks.ts';
import { stepRequest, type StepOutcome } from './step.ts';

const request = testRequest(2, { loadBalanced: true });
const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2');
const SWAP = 'web-v2-lb1';
const lb = (operationId: string, state: LbOpState) => ({ operationId, state, timestamp: T0 });

/** v1 serving two tasks in the LB; v2's two healthy tasks in an atomic swap still WAITING. */
function swapInFlight(intents: DeployIntent[]) {
  const old = [1, 2].map((n) => ({ ...testTask(v1, n, 'healthy'), lb: { add: lb('web-lb1', 'SUCCESS'), remove: lb(SWAP, 'WAITING') } }));
  const fresh = [1, 2].map((n) => ({ ...testTask(v2, n, 'healthy', T0 + 1), lb: { add: lb(SWAP, 'WAITING') } }));
  const op: LbUpdate = {
    loadBalancerRequestId: SWAP,
    state: 'WAITING',
    add: fresh.map((t) => t.taskId.id),
    remove: old.map((t) => t.taskId.id),
    startedAt: T0,
  };
  const pending = testPending(v2, request, { phase: 'LB_UPDATE', pendingLbUpdate: op, deadline: T0 + 300_000 }, { intents });
  return { old, fresh, pending, record: testRecord(request, { pendingDeployId: 'v2' }) };
}

/** Runs one pass and carries its changes into the next observation. */
class Passes {
  tasks: TaskView;
  record: RequestRecord;
  pending: RequestObservation['pending'];
  constructor(tasks: TaskRecord[], record: RequestRecord, pending: RequestObservation['pending']) {
    this.tasks = TaskView.of(tasks);
    this.record = record;
    this.pending = pending;
  }
  step(now: number, lbOps: RequestObservation['lbOps'] = {}): StepOutcome {
    const obs = testObservation({
      request,
      activeDeploy: v1,
      ...(this.pending ? { pending: this.pending, pendingDeploy: v2 } : {}),
      tasks: [...this.tasks.all()],
      lbOps,
      endedDeploys: this.pending ? {} : { v2: 'CANCELED' },
    });
    const out = stepRequest(obs, this.record, now);
    this.tasks = this.tasks.with(out.tasks);
    if (out.request) this.record = out.request;
    if (out.pending.kind === 'ENDED') this.pending = undefined;
    if (out.pending.kind === 'UPDATED') this.pending = out.pending.pending;
    return out;
  }
  get(t: TaskRecord): TaskRecord {
    return this.tasks.get(t.taskId.id)!;
  }
}

const kinds = (actions: readonly Action[]) => actions.map((a) => (a.kind === 'lbApply' ? `lbApply ${a.operationId}` : a.kind));
const stops = (actions: readonly Action[]) =>
  actions.filter((a) => a.kind === 'stopTask').map((a) => (a.kind === 'stopTask' ? a.taskId : ''));

describe('an atomic swap in flight when its deploy ends', () => {
  it.each([
    { how: 'cancel', intents: [{ kind: 'cancel', at: T0 }] as DeployIntent[], at: T0 + 10 },
    { how: 'reject', intents: [{ kind: 'reject', at: T0 }] as DeployIntent[], at: T0 + 10 },
    { how: 'LB timeout', intents: [] as DeployIntent[], at: T0 + 300_000 },
  ])('$how: cancelled, its CANCELED outcome recorded, the old deploy back in the LB before a new task stops', ({ intents, at }) => {
    const { old, fresh, pending, record } = swapInFlight(intents);
    const p = new Passes([...old, ...fresh], record, pending);

    const ended = p.step(at);
    expect(ended.pending.kind).toBe('ENDED');
    expect(kinds(ended.actions)).toEqual(['lbCancel']);
    expect(p.record.lbHandedOver).toMatchObject([{ operationId: SWAP, canceling: true }]);
    // The new tasks are unwanted now, but nothing is stopped while the swap's outcome is unknown.
    expect(fresh.every((t) => p.get(t).cleanup)).toBe(true);

    const waiting = p.step(at + 5, { [SWAP]: { state: 'WAITING' } });
    expect(kinds(waiting.actions)).toEqual(['lbCancel']);
    expect(stops(waiting.actions)).toEqual([]);

    const settled = p.step(at + 10, { [SWAP]: { state: 'CANCELED' } });
    expect(p.record.lbHandedOver).toBeUndefined();
    expect(old.every((t) => inLb(p.get(t)))).toBe(true);
    // A cancel keeps the adds it made: the new tasks may be in the LB, so they leave it first.
    expect(fresh.every((t) => p.get(t).lb.add?.state === 'CANCELED' && touchesLb(p.get(t)))).toBe(true);
    expect(kinds(settled.actions)).toEqual(['lbApply web-lb1']);
    const removal = settled.actions[0];
    expect(removal?.kind === 'lbApply' && removal).toMatchObject({ add: [], remove: fresh.map((t) => t.taskId.id) });

    const out = p.step(at + 20, { [SWAP]: { state: 'CANCELED' }, 'web-lb1': { state: 'SUCCESS' } });
    expect(stops(out.actions).sort()).toEqual(fresh.map((t) => t.taskId.id).sort());
    expect(old.every((t) => inLb(p.get(t)) && !p.get(t).cleanup)).toBe(true);
  });

  it('a swap that finished before the cancel took effect: the old deploy is put back and the new one removed in one operation', () => {
    const { old, fresh, pending, record } = swapInFlight([{ kind: 'cancel', at: T0 }]);
    const p = new Passes([...old, ...fresh], record, pending);
    p.step(T0 + 10);
    const settled = p.step(T0 + 20, { [SWAP]: { state: 'SUCCESS' } });
    const revert = settled.actions.find((a) => a.kind === 'lbApply');
    expect(revert?.kind === 'lbApply' && revert).toMatchObject({
      add: old.map((t) => t.taskId.id),
      remove: fresh.map((t) => t.taskId.id),
    });
    expect(stops(settled.actions)).toEqual([]);
    const out = p.step(T0 + 30, {
      [SWAP]: { state: 'SUCCESS' },
      [revert?.kind === 'lbApply' ? revert.operationId : '']: { state: 'SUCCESS' },
    });
    expect(old.every((t) => inLb(p.get(t)))).toBe(true);
    expect(stops(out.actions).sort()).toEqual(fresh.map((t) => t.taskId.id).sort());
  });

  it('scale-down afterwards stops the old task it no longer wants (no member is stranded on WAITING)', () => {
    const { old, fresh, pending, record } = swapInFlight([{ kind: 'cancel', at: T0 }]);
    const p = new Passes([...old, ...fresh], record, pending);
    p.step(T0 + 10);
    p.step(T0 + 20, { [SWAP]: { state: 'CANCELED' } });
    p.record = { ...p.record, request: { ...request, instances: 1 } };
    const scaled = p.step(T0 + 30, { [SWAP]: { state: 'CANCELED' }, 'web-lb1': { state: 'SUCCESS' } });
    const second = scaled.actions.find((a) => a.kind === 'lbApply');
    expect(second?.kind === 'lbApply' && second.remove).toEqual([old[1]!.taskId.id]);
    const out = p.step(T0 + 40, { [SWAP]: { state: 'CANCELED' }, 'web-lb1': { state: 'SUCCESS' }, 'web-lb2': { state: 'SUCCESS' } });
    expect(stops(out.actions)).toContain(old[1]!.taskId.id);
  });
});

describe('the routing of a pending deploy (canaryDeploySettings.routing)', () => {
  const served = engineDeploy('v1', {}, { serviceBasePath: '/web' });
  const routed = engineDeploy(
    'v2',
    { enableCanaryDeploy: true, acceptanceMode: 'MANUAL', routing: { match: [{ header: 'X-Canary' }] } },
    { serviceBasePath: '/web' },
  );
  const old = [1, 2].map((n) => testTask(served, n, 'in-lb'));
  const canary = testTask(routed, 1, 'in-lb', T0 + 1);
  const observe = (record: RequestRecord, intents: DeployIntent[], tasks: TaskRecord[]) => {
    const pending = testPending(routed, request, { phase: 'ACCEPTANCE', stepReadyAt: T0, deadline: T0 + 3_600_000 }, { intents });
    return stepRequest(testObservation({ request, activeDeploy: served, pending, pendingDeploy: routed, tasks }), record, T0 + 1000);
  };

  it('is remembered while the deploy is pending, and cleared by the operation that takes the canary out after a cancel', () => {
    const waiting = observe(testRecord(request, { pendingDeployId: 'v2' }), [], [...old, canary]);
    expect(waiting.request?.lbRouting).toBe('v2');
    expect(waiting.actions.filter((a) => a.kind === 'lbApply')).toEqual([]);

    const record = waiting.request!;
    const cancelled = observe(record, [{ kind: 'cancel', at: T0 + 500 }], [...old, canary]);
    expect(cancelled.pending.kind).toBe('ENDED');
    expect(cancelled.request?.lbRouting).toBeUndefined();
    const ops = cancelled.actions.filter((a) => a.kind === 'lbApply');
    expect(ops).toEqual([{ kind: 'lbApply', operationId: expect.any(String), add: [], remove: [canary.taskId.id] }]);
  });
});
