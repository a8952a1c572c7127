// What one pass does: it reconciles only the requests that were woken, and it creates task
// records in bounded batches (launchBatchSize), coming back at once for the rest.
import { afterEach, describe, expect, it } from 'vitest';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

/** Let the loop run on its own until nothing is left to do (bounded). */
async function quiet(fixture: EngineFixture): Promise<void> {
  let calm = 0;
  for (let i = 0; i < 2000 && calm < 5; i++) {
    await new Promise((r) => setImmediate(r));
    await fixture.loop.idle();
    calm = fixture.loop.hasWork ? 0 : calm + 1;
  }
  if (calm < 5) throw new Error('the loop did not come to rest');
}

describe('passes', () => {
  it('one API call reconciles one request, however many times its own work wakes it', async () => {
    f = await engineFixture({ timers: true });
    for (const id of ['a', 'b', 'c']) await f.activeRequest(id, 2);
    await quiet(f);
    const reconciled: string[] = [];
    const reconcile = f.loop.reconcileRequest.bind(f.loop);
    f.loop.reconcileRequest = (id: string) => {
      reconciled.push(id);
      // An event for the same request (a task exit, a health result) arrives during the pass.
      if (reconciled.length === 1) f.loop.wake(id);
      return reconcile(id);
    };

    await f.service.scale('a', 5);
    await quiet(f);

    expect(f.instances(await f.serving('a'))).toEqual([1, 2, 3, 4, 5]);
    // Its own work and the event woke 'a' again, during and after passes; never the others.
    expect(reconciled.length).toBeGreaterThan(1);
    expect(new Set(reconciled)).toEqual(new Set(['a']));
  });

  it('a deploy and a scale-up to hundreds of instances create task records 100 per pass', async () => {
    f = await engineFixture();
    const batches: number[] = [];
    const apply = f.store.apply.bind(f.store);
    f.store.apply = (changes) => {
      const created = (changes.tasks ?? []).filter((t) => t.updates.length === 1 && t.state === 'TASK_LAUNCHED' && !t.waitingReason);
      if (created.length > 0) batches.push(created.length);
      return apply(changes);
    };
    await f.activeRequest('web', 250);
    expect(f.instances(await f.serving('web', 'd1'))).toHaveLength(250);
    expect(batches).toEqual([100, 100, 50]);

    batches.length = 0;
    await f.service.scale('web', 420);
    await f.settle();
    expect(f.instances(await f.serving('web'))).toEqual(Array.from({ length: 420 }, (_, i) => i + 1));
    expect(batches).toEqual([100, 70]);
  });

  it('a long pass gives the event loop a turn between ticks, and reconciles every woken request once', async () => {
    // tickMillis 0: a turn before every request but the first (the default is 10 ms of work).
    f = await engineFixture({ tickMillis: 0 });
    for (const id of ['a', 'b', 'c', 'd']) await f.activeRequest(id, 1);
    const order: string[] = [];
    const reconcile = f.loop.reconcileRequest.bind(f.loop);
    f.loop.reconcileRequest = (id: string) => {
      order.push(id);
      // What waits for the event loop (an API call, a probe answer) runs before the next request.
      setImmediate(() => order.push(`turn after ${id}`));
      return reconcile(id);
    };
    for (const id of ['a', 'b', 'c', 'd']) f.loop.wake(id);
    await f.loop.tick();
    expect(order.slice(0, 7)).toEqual(['a', 'turn after a', 'b', 'turn after b', 'c', 'turn after c', 'd']);
  });
});
