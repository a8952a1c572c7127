// Steady state of a request: replacing, scaling, bouncing, pausing, deleting, killing tasks.
import { afterEach, describe, expect, it } from 'vitest';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

describe('request steady state', () => {
  it('replaces a task that dies, keeping its instance number', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 3);
    const victim = (await f.serving('web')).find((t) => t.taskId.instanceNo === 2)!;
    f.runtime.exit(victim.taskId.id, 137, 'SIGKILL');
    await f.settle();
    const now = await f.serving('web');
    expect(f.instances(now)).toEqual([1, 2, 3]);
    expect(now.map((t) => t.taskId.id)).not.toContain(victim.taskId.id);
    expect((await f.store.getTask(victim.taskId.id))?.state).toBe('TASK_FAILED');
  });

  it('backs off a crash-looping instance, doubling the wait, and shows it on the request', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    const crash = async () => {
      f.runtime.exit((await f.serving('web'))[0]!.taskId.id, 1);
      await f.settle();
    };
    await crash(); // first death: replaced at once
    expect(await f.serving('web')).toHaveLength(1);
    await crash(); // second: 1 s
    expect(await f.serving('web')).toHaveLength(0);
    expect((await f.request('web'))?.backoff?.['1']).toMatchObject({ failures: 2 });
    await f.advance(999);
    expect(await f.serving('web')).toHaveLength(0);
    await f.advance(1);
    expect(await f.serving('web')).toHaveLength(1);
    await crash(); // third: 2 s
    await f.advance(1999);
    expect(await f.serving('web')).toHaveLength(0);
    await f.advance(1);
    expect(await f.serving('web')).toHaveLength(1);
    expect((await f.request('web'))?.backoff?.['1']).toMatchObject({ failures: 3 });
    // serving for a whole backoff window (60 s) ends the crash loop
    await f.advance(60_000);
    expect((await f.request('web'))?.backoff?.['1']).toBeUndefined();
    await crash();
    expect(await f.serving('web')).toHaveLength(1);
  });

  it('scales up with the next instance numbers and down from the highest', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.service.scale('web', 4);
    await f.settle();
    expect(f.instances(await f.serving('web'))).toEqual([1, 2, 3, 4]);
    await f.service.scale('web', 1);
    await f.settle();
    expect(f.instances(await f.serving('web'))).toEqual([1]);
    await expect(f.service.scale('web', 1)).rejects.toMatchObject({ status: 400 });
  });

  it('bounces: starts a replacement per instance and stops the old one once the replacement is healthy', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const old = (await f.serving('web')).map((t) => t.taskId.id);
    f.health.policy = () => 'WAIT';
    f.clock.advance(1);
    await f.service.setState('web', 'bounce');
    await f.settle();
    const all = await f.serving('web');
    expect(all).toHaveLength(4);
    expect(f.runtime.stopped).toEqual([]);
    for (const t of all.filter((t) => !old.includes(t.taskId.id))) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    const after = await f.serving('web');
    expect(f.instances(after)).toEqual([1, 2]);
    expect(after.map((t) => t.taskId.id).some((id) => old.includes(id))).toBe(false);
    expect(await f.lbMembers('web')).toEqual(after.map((t) => t.taskId.id).sort());
    expect((await f.request('web'))?.bounce).toBeUndefined();
  });

  it('pauses (stopping every task, LB first) and unpauses (tasks come back)', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    await f.service.setState('web', 'pause');
    await f.settle();
    expect(await f.tasks('web')).toEqual([]);
    expect(await f.lbMembers('web')).toEqual([]);
    await expect(f.service.setState('web', 'pause')).rejects.toMatchObject({ status: 409 });
    await f.service.setState('web', 'unpause');
    await f.settle();
    expect(f.instances(await f.serving('web'))).toEqual([1, 2]);
    expect(await f.lbMembers('web')).toHaveLength(2);
  });

  it('deletes: stops every task, then the request is gone', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.service.setState('web', 'delete');
    await f.settle();
    expect(await f.tasks('web')).toEqual([]);
    expect((await f.request('web'))?.state).toBe('DELETED');
    await expect(f.service.scale('web', 3)).rejects.toMatchObject({ status: 404 });
  });

  it('kills a task and replaces it; with waitForReplacementTask the old one stops only once the new one serves', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    const first = (await f.serving('web'))[0]!;
    await f.service.killTask(first.taskId.id, 'bye');
    await f.settle();
    expect((await f.store.getTask(first.taskId.id))?.state).toBe('TASK_KILLED');
    const second = (await f.serving('web'))[0]!;
    expect(second.taskId.id).not.toBe(first.taskId.id);

    f.health.policy = () => 'WAIT';
    f.clock.advance(1);
    await f.service.killTask(second.taskId.id, undefined, true);
    await f.settle();
    expect((await f.serving('web')).map((t) => t.taskId.id)).toContain(second.taskId.id);
    const third = (await f.serving('web')).find((t) => t.taskId.id !== second.taskId.id)!;
    f.health.report(third.taskId.id, 'HEALTHY');
    await f.settle();
    expect((await f.serving('web')).map((t) => t.taskId.id)).toEqual([third.taskId.id]);
  });
});
