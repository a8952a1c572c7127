// Health while running (issue 9, item 1) on the real loop with fakes: a task judged UNHEALTHY
// after it was healthy and in the LB leaves the LB at once, is stopped and replaced, counted in
// the crash-loop backoff, and says why; during a deploy it is that task's failure, as a startup
// failure would be.
import { afterEach, describe, expect, it } from 'vitest';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const lb = { serviceBasePath: '/svc', loadBalancerGroups: ['default'] };
const WHY = 'unhealthy while running: 3 failed checks, last: timeout after 5 s';

describe('a task that turns unhealthy while running', () => {
  it('leaves the LB first, is stopped, and is replaced at once; the update says why', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const [victim, other] = await f.serving('web', 'd1');
    f.balancer.setBehaviour('wait');
    f.health.report(victim!.taskId.id, 'UNHEALTHY', WHY);
    await f.settle();
    // Out of rotation at once (the removal drains), not stopped before the removal is done.
    expect(await f.lbMembers('web')).toEqual([other!.taskId.id]);
    expect(f.runtime.stopped).not.toContain(victim!.taskId.id);
    const marked = (await f.store.getTask(victim!.taskId.id))!;
    expect(marked.cleanup).toMatchObject({ reason: 'UNHEALTHY', message: WHY });
    expect(marked.updates.at(-1)).toMatchObject({ state: 'TASK_CLEANING', message: WHY });
    // Its replacement is started right away (the first failure has no backoff).
    const replacement = (await f.serving('web', 'd1')).find((t) => t.taskId.instanceNo === victim!.taskId.instanceNo);
    expect(replacement?.taskId.id).not.toBe(victim!.taskId.id);
    expect((await f.request('web'))?.backoff?.[String(victim!.taskId.instanceNo)]).toMatchObject({
      failures: 1,
      lastTaskId: victim!.taskId.id,
    });

    for (const op of f.balancer.operations)
      if ((await f.balancer.state(op.operationId))?.state === 'WAITING') f.balancer.complete(op.operationId, 'SUCCESS');
    f.balancer.setBehaviour('succeed');
    await f.settle();
    expect(f.runtime.stopped).toContain(victim!.taskId.id);
    expect((await f.store.getTask(victim!.taskId.id))?.state).toBe('TASK_KILLED');
    expect(await f.lbMembers('web')).toEqual([other!.taskId.id, replacement!.taskId.id].sort());
  });

  it('again and again: the crash-loop backoff delays each next replacement', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    for (const [round, delay] of [
      [1, 0],
      [2, 1_000],
      [3, 2_000],
    ] as const) {
      const [t] = await f.serving('web', 'd1');
      f.health.report(t!.taskId.id, 'UNHEALTHY', WHY);
      await f.settle();
      expect((await f.request('web'))?.backoff?.['1']?.failures, `round ${round}`).toBe(round);
      if (delay > 0) {
        expect(await f.serving('web', 'd1'), `round ${round}: waits`).toEqual([]);
        await f.advance(delay);
      }
      expect((await f.serving('web', 'd1')).length, `round ${round}: replaced`).toBe(1);
    }
  });

  it('during a deploy, a new task that turns unhealthy after it was healthy and in the LB is that task’s failure', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    await f.deploy({
      requestId: 'web',
      id: 'd2',
      ...lb,
      canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' },
    });
    expect((await f.pending('web'))?.progress.phase).toBe('ACCEPTANCE');
    const [fresh] = await f.serving('web', 'd2');
    expect(await f.lbMembers('web')).toContain(fresh!.taskId.id);
    f.health.report(fresh!.taskId.id, 'UNHEALTHY', WHY);
    await f.settle();
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.deployFailures).toEqual([{ reason: 'TASK_FAILED_HEALTH_CHECKS', taskId: fresh!.taskId, message: WHY }]);
    // The old deploy is whole and alone in the LB.
    const old = (await f.serving('web', 'd1')).map((t) => t.taskId.id).sort();
    expect(old).toHaveLength(2);
    expect(await f.lbMembers('web')).toEqual(old);
  });

  it('during a deploy with a failure allowed, it is replaced and the deploy goes on', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    await f.deploy({
      requestId: 'web',
      id: 'd2',
      canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL', allowedTasksFailuresPerGroup: 1 },
    });
    const [fresh] = await f.serving('web', 'd2');
    f.health.report(fresh!.taskId.id, 'UNHEALTHY', WHY);
    await f.settle();
    expect(await f.pending('web')).toBeDefined();
    const now = await f.serving('web', 'd2');
    expect(now).toHaveLength(1);
    expect(now[0]!.taskId.id).not.toBe(fresh!.taskId.id);
    expect((await f.pending('web'))?.progress.failedDeployTasks.map((t) => t.id)).toEqual([fresh!.taskId.id]);
  });

  it('the load balancer saying a task failed requests in a row gets it probed at once', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const [t] = await f.serving('web', 'd1');
    f.balancer.emitUpstreamEvent({ kind: 'EJECTED', serviceId: 'web', taskId: t!.taskId.id, failures: 3, reason: 'timeout' });
    expect(f.health.probedNow).toEqual([t!.taskId.id]);
    // Only a health verdict removes it: the event alone changes nothing.
    await f.settle();
    expect((await f.store.getTask(t!.taskId.id))?.cleanup).toBeUndefined();
    f.balancer.emitUpstreamEvent({ kind: 'RESTORED', serviceId: 'web', taskId: t!.taskId.id, failures: 0, reason: 'back-off over' });
    expect(f.health.probedNow).toHaveLength(1);
  });
});
