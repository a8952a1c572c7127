// LB operations always settle onto the tasks they touch (issue 9, item 3), on the real loop with
// the fake balancer (which rotates like the builtin one: a removal takes effect at once and a
// cancel puts it back). An atomic swap held WAITING is ended by a cancel, a reject, the LB
// timeout, or a scheduler crash followed by a cancel; each time the old deploy ends at full
// capacity in the LB, no live task is left on a WAITING LB state, and scale-down and delete work.
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../../src/core/model.ts';
import { createFakeBalancer } from '../../src/balancers/fake/index.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const lb = { serviceBasePath: '/svc', loadBalancerGroups: ['default'] };
const waitingOn = (t: TaskRecord) => t.lb.add?.state === 'WAITING' || t.lb.remove?.state === 'WAITING';

async function swapHeldWaiting(loadBalancerTimeoutSeconds = 300) {
  f = await engineFixture();
  await f.activeRequest('web', 2, { request: { loadBalanced: true }, deploy: { loadBalancerTimeoutSeconds } });
  const old = (await f.serving('web', 'd1')).map((t) => t.taskId.id).sort();
  f.balancer.setBehaviour('wait');
  await f.deploy({ requestId: 'web', id: 'd2', ...lb, loadBalancerTimeoutSeconds });
  const swap = (await f.pending('web'))?.progress.pendingLbUpdate;
  expect(swap).toMatchObject({ state: 'WAITING', remove: old });
  // The fake applied the swap's effect at once (like the builtin): only the new tasks are in rotation.
  expect(await f.lbMembers('web')).toEqual([...swap!.add].sort());
  f.balancer.setBehaviour('succeed');
  return { old, swap: swap! };
}

async function expectOldAtFullCapacity(old: string[], swapId: string) {
  expect(await f.pending('web')).toBeUndefined();
  expect((await f.serving('web')).map((t) => t.taskId.id).sort()).toEqual(old);
  expect(await f.lbMembers('web')).toEqual(old);
  expect((await f.balancer.state(swapId))?.state).toBe('CANCELED');
  const live = await f.tasks('web');
  expect(live.filter(waitingOn)).toEqual([]);
  expect(live.every((t) => t.lb.add?.state === 'SUCCESS' && !t.lb.remove)).toBe(true);
  expect((await f.request('web'))?.lbHandedOver).toBeUndefined();
  // Every new task that the swap added left the LB before it was stopped, with its real outcome recorded.
  for (const t of (await f.allTasks('web')).filter((t) => t.taskId.deployId === 'd2')) {
    expect(t.state).toBe('TASK_KILLED');
    expect(t.lb.add).toMatchObject({ operationId: swapId, state: 'CANCELED' });
    expect(t.lb.remove?.state).toBe('SUCCESS');
  }
}

async function expectScaleDownAndDelete(old: string[]) {
  await f.service.scale('web', 1);
  await f.settle();
  expect((await f.serving('web')).map((t) => t.taskId.id)).toEqual([old[0]]);
  expect(await f.lbMembers('web')).toEqual([old[0]]);
  await f.service.setState('web', 'delete');
  await f.settle();
  expect(await f.tasks('web')).toEqual([]);
  expect(await f.lbMembers('web')).toEqual([]);
  expect((await f.request('web'))?.state).toBe('DELETED');
}

describe('an atomic swap held WAITING when its deploy ends', () => {
  it('cancel: the swap is cancelled, CANCELED is recorded on every task it touched, the old deploy serves at full capacity', async () => {
    const { old, swap } = await swapHeldWaiting();
    await f.service.deployIntent('web', 'd2', { kind: 'cancel', at: f.clock.now() });
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('CANCELED');
    await expectOldAtFullCapacity(old, swap.loadBalancerRequestId);
    await expectScaleDownAndDelete(old);
  });

  it('reject: the same', async () => {
    const { old, swap } = await swapHeldWaiting();
    // A MANUAL reject is taken in any phase: it fails the step.
    await f.store.apply({
      pending: [{ ...(await f.pending('web'))!, intents: [{ kind: 'reject', at: f.clock.now(), message: 'no' }] }],
    });
    f.loop.wake('web');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('FAILED');
    await expectOldAtFullCapacity(old, swap.loadBalancerRequestId);
    await expectScaleDownAndDelete(old);
  });

  it('the LB timeout: the same', async () => {
    const { old, swap } = await swapHeldWaiting(20);
    await f.advance(20_000);
    expect((await f.result('web', 'd2'))?.deployFailures[0]?.reason).toBe('LOAD_BALANCER_UPDATE_FAILED');
    await expectOldAtFullCapacity(old, swap.loadBalancerRequestId);
    await expectScaleDownAndDelete(old);
  });

  it('a balancer that cannot take the cancel yet: nothing is stopped or changed in the LB until it does, the cancel is asked again', async () => {
    const { old, swap } = await swapHeldWaiting();
    const cancel = f.balancer.cancel.bind(f.balancer);
    let refused = 0;
    f.balancer.cancel = async () => {
      refused++;
      throw new Error('balancer unreachable');
    };
    await f.service.deployIntent('web', 'd2', { kind: 'cancel', at: f.clock.now() });
    await f.settle();
    for (let i = 0; i < 5; i++) await f.advance(1_000);
    expect((await f.result('web', 'd2'))?.deployState).toBe('CANCELED');
    expect(refused).toBeGreaterThanOrEqual(5);
    expect(f.runtime.stopped).toEqual([]);
    expect((await f.request('web'))?.lbHandedOver).toMatchObject([{ operationId: swap.loadBalancerRequestId }]);
    expect(f.balancer.operations.at(-1)?.operationId).toBe(swap.loadBalancerRequestId);
    f.balancer.cancel = cancel;
    await f.advance(1_000);
    await expectOldAtFullCapacity(old, swap.loadBalancerRequestId);
  });

  it('a scheduler crash with the swap WAITING, then a cancel: after the restart nothing is skipped or stranded', async () => {
    const { old, swap } = await swapHeldWaiting();
    f.balancer.setBehaviour('wait');
    await f.crash();
    await f.boot();
    // The swap goes on after the restart (the balancer still knows it).
    expect((await f.pending('web'))?.progress.pendingLbUpdate?.state).toBe('WAITING');
    f.balancer.setBehaviour('succeed');
    await f.service.deployIntent('web', 'd2', { kind: 'cancel', at: f.clock.now() });
    await f.settle();
    await expectOldAtFullCapacity(old, swap.loadBalancerRequestId);
    await expectScaleDownAndDelete(old);
  });

  it('a scheduler crash right after the deploy ended with the swap in flight: the handed-over swap settles after the restart', async () => {
    const { old, swap } = await swapHeldWaiting();
    const cancel = f.balancer.cancel.bind(f.balancer);
    f.balancer.cancel = async () => undefined; // lost: the balancer never got it
    await f.service.deployIntent('web', 'd2', { kind: 'cancel', at: f.clock.now() });
    await f.settle();
    expect((await f.request('web'))?.lbHandedOver).toHaveLength(1);
    await f.crash();
    f.balancer.cancel = cancel;
    await f.boot();
    await f.advance(1_000);
    await expectOldAtFullCapacity(old, swap.loadBalancerRequestId);
  });
});

describe('a restart with a removal in flight', () => {
  it('acts on no request until the LB is restored: a wake during recovery waits, so the restore never undoes a removal it then reports done', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const [keep, leave] = (await f.serving('web', 'd1')).map((t) => t.taskId.id).sort();
    // Scale down with the removal held: the leaving task is TASK_CLEANING, its removal WAITING.
    f.balancer.setBehaviour('wait');
    await f.service.scale('web', 1);
    await f.settle();
    expect((await f.allTasks('web')).find((t) => t.taskId.id === leave)?.lb.remove?.state).toBe('WAITING');
    await f.crash();
    // A balancer that lost its operations (a restarted builtin): the removal is applied again
    // after the restart, and the restore puts every member whose removal it forgot back first.
    f.balancer = createFakeBalancer({ now: () => f.clock.now() });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let recovering!: () => void;
    const reached = new Promise<void>((resolve) => (recovering = resolve));
    const recover = f.runtime.recover.bind(f.runtime);
    f.runtime.recover = async (handle) => {
      recovering();
      await gate;
      return recover(handle);
    };
    const booting = f.boot();
    await reached;
    // Something wakes the request while its tasks are being re-adopted (an API call, a health result).
    f.loop.wake('web');
    await f.loop.tick();
    await f.loop.idle();
    expect(f.balancer.applyCalls, 'no LB operation before the restore').toEqual([]);
    release();
    await booting;
    f.runtime.recover = recover;
    await f.settle();
    expect(f.balancer.applyCalls[0]).toMatch(/-restore-/);
    const tasks = await f.allTasks('web');
    expect(tasks.find((t) => t.taskId.id === leave)?.state).toBe('TASK_KILLED');
    // The stopped task is out of the LB; only the one kept serves.
    expect(await f.lbMembers('web')).toEqual([keep]);
  });
});
