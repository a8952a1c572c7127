// Failures, cancel, timeouts and restarts (scenarios.md 25–36) on the real loop with fakes.
import { afterEach, describe, expect, it } from 'vitest';
import { engineFixture, lbFields, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const lb = { serviceBasePath: '/svc', loadBalancerGroups: ['default'] };
const canary = (extra: Record<string, unknown> = {}) => ({
  canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, ...extra },
});

describe('failures, cancel, timeouts', () => {
  it('S25 a new task exiting with 0 failures allowed fails the deploy; old tasks are never touched', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const old = (await f.serving('web', 'd1')).map((t) => t.taskId.id);
    f.runtime.script({ deployId: 'd2' }, { exit: 3 });
    await f.deploy({ requestId: 'web', id: 'd2' });
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.deployFailures[0]?.reason).toBe('TASK_FAILED_ON_STARTUP');
    expect((await f.serving('web', 'd1')).map((t) => t.taskId.id)).toEqual(old);
    expect(f.runtime.stopped.filter((id) => old.includes(id))).toEqual([]);
    expect(await f.tasks('web', 'd2')).toEqual([]);
  });

  it('a new task whose port was taken (EADDRINUSE) is started again without counting against allowedTasksFailuresPerGroup 0', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' });
    const [first] = await f.serving('web', 'd2');
    f.runtime.exit(first!.taskId.id, 1, null, { portInUse: true });
    await f.settle();
    expect(await f.pending('web')).toBeDefined();
    const dead = (await f.store.getTask(first!.taskId.id))!;
    expect(dead).toMatchObject({ state: 'TASK_FAILED', portInUse: true });
    expect(dead.updates.at(-1)?.message).toMatch(/EADDRINUSE.*started again on other ports/);
    const now = await f.serving('web', 'd2');
    expect(f.instances(now)).toEqual([1, 2]);
    expect(now.map((t) => t.taskId.id)).not.toContain(first!.taskId.id);
    for (const t of now) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('SUCCEEDED');
    expect(result?.deployFailures).toEqual([]);
    const log = (await f.history('web', 'd2'))?.progress?.decisionLog ?? [];
    expect(log.some((d) => d.kind === 'TASK_RETRIED')).toBe(true);
  });

  it('a task stopped while its start is still in flight is stopped once started, never left running unknown', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const start = f.runtime.start.bind(f.runtime);
    f.runtime.start = async (spec) => {
      await new Promise((r) => setTimeout(r, 50));
      return start(spec);
    };
    await f.service.scale('web', 3);
    await f.loop.tick(); // #3 created, its start in flight
    const third = (await f.tasks('web')).find((t) => t.taskId.instanceNo === 3)!;
    expect(third.handle).toBeUndefined();
    await f.service.scale('web', 2);
    await f.loop.tick(); // #3 unwanted before its start landed
    await f.loop.idle();
    await f.settle();
    expect(f.runtime.running()).not.toContain(third.taskId.id);
    expect(f.runtime.stopped).toContain(third.taskId.id);
    expect((await f.store.getTask(third.taskId.id))?.state).toBe('TASK_KILLED');
    expect((await f.serving('web')).map((t) => t.taskId.instanceNo).sort()).toEqual([1, 2]);
  });

  it('S26 one allowed failure is replaced; a second in the same group fails; one per group still succeeds', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2', ...canary({ allowedTasksFailuresPerGroup: 1 }) });
    f.runtime.exit((await f.serving('web', 'd2'))[0]!.taskId.id, 1);
    await f.settle();
    expect(await f.pending('web')).toBeDefined();
    const replacement = await f.serving('web', 'd2');
    expect(f.instances(replacement)).toEqual([1]);
    f.runtime.exit(replacement[0]!.taskId.id, 1);
    await f.settle();
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.message).toBe('At least 2 task(s) for this instance group failed');

    // one failure in each of two groups
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd3', ...canary({ allowedTasksFailuresPerGroup: 1 }) });
    for (let group = 1; group <= 2; group++) {
      const mine = (await f.serving('web', 'd3')).filter((t) => t.taskId.instanceNo === group);
      f.runtime.exit(mine[0]!.taskId.id, 1);
      await f.settle();
      const fresh = (await f.serving('web', 'd3')).filter((t) => t.taskId.instanceNo === group);
      expect(fresh).toHaveLength(1);
      f.health.report(fresh[0]!.taskId.id, 'HEALTHY');
      await f.settle();
    }
    expect((await f.result('web', 'd3'))?.deployState).toBe('SUCCEEDED');
  });

  it('S27 a failureStatusCodes answer makes the task unhealthy at once: TASK_FAILED_HEALTH_CHECKS', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    f.health.policy = () => 'UNHEALTHY';
    await f.deploy({ requestId: 'web', id: 'd2' });
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('FAILED');
    expect(result?.deployFailures[0]?.reason).toBe('TASK_FAILED_HEALTH_CHECKS');
    expect(result?.deployFailures[0]?.message).toContain('503');
  });

  it('S28 no health within deployHealthTimeoutSeconds + window: OVERDUE; the old deploy is refilled before new tasks stop', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    f.health.policy = () => 'WAIT';
    await f.deploy({
      requestId: 'web',
      id: 'd2',
      ...lb,
      ...canary(),
      deployHealthTimeoutSeconds: 30,
      healthcheck: { uri: '/health', startupTimeoutSeconds: 5, intervalSeconds: 1, responseTimeoutSeconds: 1, maxRetries: 0 },
    });
    // first group passes, old #1 retires; the second group never gets healthy
    f.health.report((await f.serving('web', 'd2'))[0]!.taskId.id, 'HEALTHY');
    await f.settle();
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([2]);
    // window = 5 + (1 + 1) × 1 = 7 s; deadline = 37 s after the step started
    await f.advance(36_999);
    expect(await f.pending('web')).toBeDefined();
    f.balancer.setBehaviour('wait');
    await f.advance(1);
    expect((await f.result('web', 'd2'))?.deployState).toBe('OVERDUE');
    // old #1 comes back first; new tasks stay in the LB until it serves
    const refill = (await f.serving('web', 'd1')).find((t) => t.taskId.instanceNo === 1)!;
    expect(refill).toBeDefined();
    const newInLb = (await f.tasks('web', 'd2')).filter((t) => t.lb.add?.state === 'SUCCESS' && !t.lb.remove);
    expect(newInLb).toHaveLength(1);
    f.health.report(refill.taskId.id, 'HEALTHY');
    await f.settle();
    expect(f.runtime.stopped.some((id) => newInLb.some((t) => t.taskId.id === id))).toBe(false);
    const op = f.balancer.operations.at(-1)!;
    expect(op.add.map((u) => u.taskId)).toEqual([refill.taskId.id]);
    expect(op.remove.map((u) => u.taskId)).toEqual(newInLb.map((t) => t.taskId.id));
    f.balancer.complete(op.operationId, 'SUCCESS');
    await f.settle();
    expect(await f.tasks('web', 'd2')).toEqual([]);
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);
  });

  it('S29 not enough capacity: OVERDUE with TASK_COULD_NOT_BE_SCHEDULED "Only X of Y tasks could be launched"', async () => {
    f = await engineFixture({ capacity: { cpus: 1, memoryMb: 1024 } });
    await f.activeRequest('web', 2, { deploy: { resources: { cpus: 0.25, memoryMb: 64 } } });
    await f.deploy({
      requestId: 'web',
      id: 'd2',
      resources: { cpus: 0.4, memoryMb: 64 },
      deployHealthTimeoutSeconds: 10,
      considerHealthyAfterRunningForSeconds: 0,
    });
    const waiting = (await f.tasks('web', 'd2')).filter((t) => t.waitingReason);
    expect(waiting).toHaveLength(1);
    await f.advance(10_000);
    const result = await f.result('web', 'd2');
    expect(result?.deployState).toBe('OVERDUE');
    expect(result?.message).toBe('Only 1 of 2 tasks could be launched');
    expect(result?.deployFailures[0]?.reason).toBe('TASK_COULD_NOT_BE_SCHEDULED');
    expect(result?.deployFailures[0]?.message).toContain('cpu');
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);
  });

  it('S30 pausing the request fails its pending deploy; deleting names the request as missing', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' });
    await f.service.setState('web', 'pause');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('FAILED');
    expect((await f.result('web', 'd2'))?.message).toContain('paused');
    expect(await f.tasks('web')).toEqual([]);

    await f.service.setState('web', 'unpause');
    await f.settle();
    await f.deploy({ requestId: 'web', id: 'd3' });
    await f.service.setState('web', 'delete');
    await f.settle();
    expect((await f.result('web', 'd3'))?.message).toBe('Request web is missing (deleted during the deploy)');
    expect((await f.request('web'))?.state).toBe('DELETED');
    expect(await f.tasks('web')).toEqual([]);
  });

  it('S31 cancel after group 1 replaced old #1: old refilled to full, only then new #1 leaves the LB and stops', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    f.health.policy = (id) => (id.includes('-d2-') ? 'HEALTHY' : 'WAIT');
    await f.deploy({ requestId: 'web', id: 'd2', ...lb, ...canary({ acceptanceMode: 'MANUAL' }) });
    await f.service.deployIntent('web', 'd2', { kind: 'advance', at: f.clock.now() });
    f.health.policy = () => 'WAIT';
    await f.settle();
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([2]);
    const newOne = (await f.serving('web', 'd2')).find((t) => t.taskId.instanceNo === 1)!;

    await f.service.deployIntent('web', 'd2', { kind: 'cancel', at: f.clock.now() });
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('CANCELED');
    const refill = (await f.serving('web', 'd1')).find((t) => t.taskId.instanceNo === 1)!;
    expect(refill).toBeDefined();
    expect((await f.store.getTask(newOne.taskId.id))?.cleanup).toBeUndefined();
    expect(await f.lbMembers('web')).toContain(newOne.taskId.id);

    f.health.report(refill.taskId.id, 'HEALTHY');
    await f.settle();
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);
    expect(await f.tasks('web', 'd2')).toEqual([]);
    expect((await f.store.getTask(newOne.taskId.id))?.cleanup?.reason).toBe('DEPLOY_CANCELED');
    expect(await f.lbMembers('web')).toEqual((await f.serving('web', 'd1')).map((t) => t.taskId.id).sort());
  });

  it('S32 cancel while an LB operation is in flight cancels that operation too', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1, { request: { loadBalanced: true } });
    f.balancer.setBehaviour('wait');
    await f.deploy({ requestId: 'web', id: 'd2', ...lb });
    const op = (await f.pending('web'))?.progress.pendingLbUpdate;
    expect(op?.state).toBe('WAITING');
    await f.service.deployIntent('web', 'd2', { kind: 'cancel', at: f.clock.now() });
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('CANCELED');
    expect((await f.balancer.state(op!.loadBalancerRequestId))?.state).toBe('CANCELED');
  });

  it('S33 LB operation FAILED fails the deploy with old still in the LB; one that never finishes fails after loadBalancerTimeoutSeconds', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1, { request: { loadBalanced: true } });
    const old = (await f.serving('web', 'd1')).map((t) => t.taskId.id);
    f.balancer.setBehaviour({ fail: 'backend rejected' });
    await f.deploy({ requestId: 'web', id: 'd2', ...lb });
    const failed = await f.result('web', 'd2');
    expect(failed?.deployState).toBe('FAILED');
    expect(failed?.deployFailures[0]).toMatchObject({
      reason: 'LOAD_BALANCER_UPDATE_FAILED',
      message: expect.stringContaining('backend rejected'),
    });
    f.balancer.setBehaviour('succeed');
    await f.settle();
    expect(await f.lbMembers('web')).toEqual(old);

    f.balancer.setBehaviour('wait');
    await f.deploy({ requestId: 'web', id: 'd3', ...lb, loadBalancerTimeoutSeconds: 20 });
    await f.advance(19_999);
    expect(await f.pending('web')).toBeDefined();
    await f.advance(1);
    expect((await f.result('web', 'd3'))?.deployFailures[0]?.reason).toBe('LOAD_BALANCER_UPDATE_FAILED');
    expect((await f.result('web', 'd3'))?.message).toContain('20 seconds');
  });

  it('S34 a canary whose LB settings differ from the active deploy is a 400 saying why, unless the server allows it', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    await expect(
      f.deploy({ requestId: 'web', id: 'd2', serviceBasePath: '/other', loadBalancerGroups: ['default'], ...canary() }),
    ).rejects.toMatchObject({ status: 400, message: expect.stringContaining('serviceBasePath') });
    await f.close();

    f = await engineFixture({ allowCanaryLbChange: true });
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    await f.deploy({ requestId: 'web', id: 'd2', serviceBasePath: '/other', loadBalancerGroups: ['default'], ...canary() });
    const entry = await f.history('web', 'd2');
    expect(entry?.result?.deployState).toBe('SUCCEEDED');
    expect(entry?.deploy.canaryDeploySettings.enableCanaryDeploy).toBe(false);
  });
});

describe('restarts', () => {
  it('S35 a scheduler crash in any phase of a canary deploy: the deploy resumes, nothing duplicated, tasks re-adopted', async () => {
    for (const crashAt of ['REMOVE_OLD', 'HEALTH', 'LB_UPDATE', 'ACCEPTANCE'] as const) {
      f = await engineFixture();
      await f.activeRequest('web', 3, { request: { loadBalanced: true } });
      f.health.policy = () => 'WAIT';
      f.balancer.setBehaviour('wait');
      await f.deploy({ requestId: 'web', id: 'd2', ...lbFields({ loadBalanced: true }), ...canary({ acceptanceMode: 'MANUAL' }) });
      const first = (await f.serving('web', 'd2'))[0]!;
      if (crashAt !== 'HEALTH') {
        f.health.report(first.taskId.id, 'HEALTHY');
        await f.settle();
      }
      if (crashAt === 'ACCEPTANCE' || crashAt === 'REMOVE_OLD') {
        f.balancer.complete(f.balancer.operations.at(-1)!.operationId, 'SUCCESS');
        await f.settle();
      }
      if (crashAt === 'REMOVE_OLD') {
        await f.service.deployIntent('web', 'd2', { kind: 'advance', at: f.clock.now() });
        await f.settle();
      }
      const before = (await f.tasks('web')).map((t) => t.taskId.id).sort();
      const started = f.runtime.started.length;
      await f.crash();
      // the balancer forgets in-flight operations on a restart, like the builtin one
      await f.boot();
      expect((await f.tasks('web')).map((t) => t.taskId.id).sort()).toEqual(before);
      expect(f.runtime.started.length).toBe(started);
      // finish the deploy
      f.health.policy = () => 'HEALTHY';
      f.balancer.setBehaviour('succeed');
      for (const t of await f.serving('web')) if (t.health.state !== 'HEALTHY') f.health.report(t.taskId.id, 'HEALTHY');
      for (const op of f.balancer.operations)
        if ((await f.balancer.state(op.operationId))?.state === 'WAITING') f.balancer.complete(op.operationId, 'SUCCESS');
      await f.settle();
      for (let i = 0; i < 3 && (await f.pending('web')); i++) {
        if ((await f.pending('web'))?.progress.phase === 'ACCEPTANCE') {
          await f.service.deployIntent('web', 'd2', { kind: 'advance', at: f.clock.now() });
        }
        await f.settle();
      }
      expect((await f.result('web', 'd2'))?.deployState, crashAt).toBe('SUCCEEDED');
      const live = await f.tasks('web');
      expect(f.instances(live), crashAt).toEqual([1, 2, 3]);
      expect(
        live.every((t) => t.taskId.deployId === 'd2'),
        crashAt,
      ).toBe(true);
      expect(await f.lbMembers('web'), crashAt).toEqual(live.map((t) => t.taskId.id).sort());
      await f.close();
    }
  });

  it('S36 a task that dies while the scheduler is down is seen dead after the restart and replaced', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    const victim = (await f.serving('web'))[0]!;
    await f.crash();
    f.runtime.exit(victim.taskId.id, 137, 'SIGKILL');
    await f.boot();
    expect((await f.store.getTask(victim.taskId.id))?.state).toBe('TASK_FAILED');
    expect(f.instances(await f.serving('web'))).toEqual([1, 2]);
    expect((await f.serving('web')).map((t) => t.taskId.id)).not.toContain(victim.taskId.id);
  });

  it('S36 a new task that dies while the scheduler is down counts as a deploy failure', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' });
    const fresh = (await f.serving('web', 'd2'))[0]!;
    await f.crash();
    f.runtime.exit(fresh.taskId.id, 1);
    await f.boot();
    expect((await f.result('web', 'd2'))?.deployFailures[0]?.reason).toBe('TASK_FAILED_ON_STARTUP');
  });
});
