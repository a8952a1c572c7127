// The store away for a while (issue 9, item 4), on the real loop and executor with fakes: a
// task's exit and its health results that arrive meanwhile are written once it is back — nothing
// lost, nothing half-applied — and the loop backs off instead of failing.
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../src/store/types.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';
import { waitFor } from '../helpers/wait-for.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

/** Make every store write fail as unavailable until the returned function is called. */
function storeAway(fixture: EngineFixture): { back(): void; refused(): number; applyAnyway: EngineFixture['store']['apply'] } {
  const apply = fixture.store.apply.bind(fixture.store);
  let away = true;
  let refused = 0;
  fixture.store.apply = async (changes) => {
    if (away) {
      refused++;
      throw new StoreUnavailableError('The store is busy (test)');
    }
    return apply(changes);
  };
  return {
    back: () => {
      away = false;
    },
    refused: () => refused,
    applyAnyway: apply,
  };
}

describe('the store unavailable for a while', () => {
  it('a task exit seen meanwhile is applied once it is back, and the task replaced', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const [victim] = await f.serving('web', 'd1');
    const store = storeAway(f);
    f.runtime.exit(victim!.taskId.id, 1);
    await waitFor(() => store.refused() >= 2, { message: 'the exit write to be tried again' });
    expect((await f.store.getTask(victim!.taskId.id))?.state).toBe('TASK_RUNNING');
    store.back();
    await waitFor(async () => (await f.store.getTask(victim!.taskId.id))?.state === 'TASK_FAILED', { message: 'the exit to land' });
    await f.settle();
    const serving = await f.serving('web', 'd1');
    expect(serving.map((t) => t.taskId.instanceNo).sort()).toEqual([1, 2]);
    expect(serving.map((t) => t.taskId.id)).not.toContain(victim!.taskId.id);
  });

  it('an exit that lands after the engine chose to stop the task is still its own death: TASK_FAILED, not killed', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const [victim] = await f.serving('web', 'd1');
    const store = storeAway(f);
    f.runtime.exit(victim!.taskId.id, null, 'SIGKILL');
    await waitFor(() => store.refused() >= 2, { message: 'the exit write to be tried again' });
    // Meanwhile (a pass whose write went through first) the engine marked it to be stopped.
    f.clock.advance(5_000);
    const live = (await f.store.getTask(victim!.taskId.id))!;
    await store.applyAnyway({ tasks: [{ ...live, cleanup: { reason: 'DEPLOY_REPLACED', timestamp: f.clock.now() } }] });
    store.back();
    await waitFor(async () => (await f.store.getTask(victim!.taskId.id))?.state !== 'TASK_RUNNING', { message: 'the exit to land' });
    expect(await f.store.getTask(victim!.taskId.id)).toMatchObject({ state: 'TASK_FAILED', signal: 'SIGKILL' });
  });

  it('health results that arrive meanwhile are all counted once it is back; the latest verdict wins', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    const [t] = await f.serving('web', 'd1');
    const before = (await f.store.getTask(t!.taskId.id))!.health;
    const store = storeAway(f);
    const now = f.clock.now();
    const results = Array.from({ length: 30 }, (_, i) => ({
      timestamp: now + i * 10,
      durationMillis: 2,
      statusCode: i < 25 ? 200 : 500,
      startup: false,
    }));
    const writes = results.map((r, i) =>
      f.loop.executor.onHealthResult(t!.taskId.id, r, { state: 'HEALTHY', consecutiveFailures: i < 25 ? 0 : i - 24 }),
    );
    await waitFor(() => store.refused() >= 2, { message: 'a health write to be refused' });
    store.back();
    await Promise.all(writes);
    const after = (await f.store.getTask(t!.taskId.id))!.health;
    expect(after.checks).toBe((before.checks ?? 0) + 30);
    expect(after.failedChecks).toBe((before.failedChecks ?? 0) + 5);
    expect(after.consecutiveFailures).toBe(5);
    expect(after.results).toHaveLength(20);
    expect(after.results.at(-1)?.timestamp).toBe(now + 290);
    expect(after.lastCheckAt).toBe(now + 292);
  });

  it('the loop backs off while its writes fail (nothing acted on), and catches up once the store is back', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const record = (await f.request('web'))!;
    await f.store.apply({ requests: [{ ...record, request: { ...record.request, instances: 3 } }] });
    const store = storeAway(f);
    const started = f.runtime.started.length;
    f.loop.wake('web');
    await f.loop.tick();
    await f.loop.idle();
    // The pass could not persist its decision: nothing was started, and it asked to look again later.
    expect(store.refused()).toBeGreaterThan(0);
    expect(f.runtime.started.length).toBe(started);
    expect(f.loop.nextWakeAt).toBeGreaterThanOrEqual(f.clock.now() + 250);
    // The API answers a write with the same error (a 503 over HTTP), and changes nothing.
    await expect(f.service.scale('web', 4)).rejects.toBeInstanceOf(StoreUnavailableError);
    store.back();
    await f.advance(250);
    expect((await f.serving('web')).map((t) => t.taskId.instanceNo).sort()).toEqual([1, 2, 3]);
    expect((await f.request('web'))?.request.instances).toBe(3);
  });
});
