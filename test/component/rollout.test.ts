// Rollout mechanics (scenarios.md 1–12) on the real loop with fake runtime, balancer and health.
import { afterEach, describe, expect, it } from 'vitest';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const canary = (group: number, extra: Record<string, unknown> = {}) => ({
  canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: group, ...extra },
});

describe('rollout mechanics', () => {
  it('S1 canary off: starts all new beside the old, succeeds when healthy, then stops the old', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' });
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);
    const fresh = await f.serving('web', 'd2');
    expect(f.instances(fresh)).toEqual([1, 2]);
    expect((await f.pending('web'))?.progress.phase).toBe('HEALTH');

    f.health.report(fresh[0]!.taskId.id, 'HEALTHY');
    await f.settle();
    expect(await f.pending('web')).toBeDefined();
    f.health.report(fresh[1]!.taskId.id, 'HEALTHY');
    await f.settle();

    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect((await f.request('web'))?.activeDeployId).toBe('d2');
    expect(await f.tasks('web', 'd1')).toEqual([]);
    expect(f.instances(await f.serving('web', 'd2'))).toEqual([1, 2]);
  });

  it('S2 canary group 1 over 2: one new, then old #1 stops, then the second new, then SUCCEEDED', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2', ...canary(1) });
    const first = await f.serving('web', 'd2');
    expect(f.instances(first)).toEqual([1]);
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([1, 2]);

    f.health.report(first[0]!.taskId.id, 'HEALTHY');
    await f.settle();
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([2]);
    expect((await f.pending('web'))?.progress.targetActiveInstances).toBe(2);
    const second = (await f.serving('web', 'd2')).filter((t) => t.taskId.instanceNo === 2);
    expect(second).toHaveLength(1);

    f.health.report(second[0]!.taskId.id, 'HEALTHY');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect(f.instances(await f.serving('web', 'd2'))).toEqual([1, 2]);
    expect(await f.tasks('web', 'd1')).toEqual([]);
  });

  it('S3 group 2 over 4 with 3 cycles targets 2 then 4, stopping old #1 and #2 after the first group', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 4);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2', ...canary(2) });
    const group = await f.serving('web', 'd2');
    expect(f.instances(group)).toEqual([1, 2]);
    for (const t of group) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    expect(f.instances(await f.serving('web', 'd1'))).toEqual([3, 4]);
    expect((await f.pending('web'))?.progress.targetActiveInstances).toBe(4);
    f.health.policy = () => 'HEALTHY';
    for (const t of await f.serving('web', 'd2')) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
  });

  it('S5 progress after each completed group of a group-1 deploy over 4 reads (1,1), (2,2), (3,3)', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 4);
    await f.deploy({ requestId: 'web', id: 'd2', ...canary(1) });
    const log = (await f.history('web', 'd2'))?.progress?.decisionLog ?? [];
    // Every step's advance is logged with what it completed: new tasks accepted, and healthy.
    const seen = log.flatMap((d) => (d.kind === 'PHASE_CHANGED' && d.from === 'ADVANCE' ? [[d.counts.accepted, d.counts.newHealthy]] : []));
    expect(seen).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect((await f.history('web', 'd2'))?.progress?.currentActiveInstances).toBe(4);
  });

  it('S6 load balanced canary: adds only new #1, old stay in the LB, old #1 leaves the LB before it stops', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const old = await f.serving('web', 'd1');
    expect(await f.lbMembers('web')).toEqual(old.map((t) => t.taskId.id).sort());
    f.health.policy = () => 'WAIT';
    f.balancer.setBehaviour('wait');
    await f.deploy({ requestId: 'web', id: 'd2', serviceBasePath: '/svc', loadBalancerGroups: ['default'], ...canary(1) });
    const fresh = await f.serving('web', 'd2');
    f.health.report(fresh[0]!.taskId.id, 'HEALTHY');
    await f.settle();
    const addOp = f.balancer.operations.at(-1)!;
    expect(addOp.add.map((u) => u.taskId)).toEqual([fresh[0]!.taskId.id]);
    expect(addOp.remove).toEqual([]);
    f.balancer.complete(addOp.operationId, 'SUCCESS');
    await f.settle();

    // old #1 is being removed from the LB, and still running until that finishes
    const removeOp = f.balancer.operations.at(-1)!;
    expect(removeOp.remove.map((u) => u.taskId)).toEqual([old[0]!.taskId.id]);
    expect((await f.tasks('web', 'd1')).map((t) => t.taskId.id)).toContain(old[0]!.taskId.id);
    expect(f.runtime.stopped).not.toContain(old[0]!.taskId.id);
    f.balancer.complete(removeOp.operationId, 'SUCCESS');
    await f.settle();
    expect(f.runtime.stopped).toContain(old[0]!.taskId.id);
    f.balancer.setBehaviour('succeed');
    f.health.policy = () => 'HEALTHY';
    for (const t of await f.serving('web', 'd2')) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect(await f.lbMembers('web')).toEqual((await f.serving('web', 'd2')).map((t) => t.taskId.id).sort());
  });

  it('S7 load balanced, canary off: one operation adds all new and removes all old; old stop without another removal', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2, { request: { loadBalanced: true } });
    const old = (await f.serving('web', 'd1')).map((t) => t.taskId.id).sort();
    const before = f.balancer.operations.length;
    await f.deploy({ requestId: 'web', id: 'd2', serviceBasePath: '/svc', loadBalancerGroups: ['default'] });
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    const ops = f.balancer.operations.slice(before);
    expect(ops).toHaveLength(1);
    const fresh = (await f.serving('web', 'd2')).map((t) => t.taskId.id).sort();
    expect(ops[0]!.add.map((u) => u.taskId).sort()).toEqual(fresh);
    expect(ops[0]!.remove.map((u) => u.taskId).sort()).toEqual(old);
    expect(f.runtime.stopped).toEqual(expect.arrayContaining(old));
    expect(await f.lbMembers('web')).toEqual(fresh);
  });

  it('S8 updatedRequest 2 → 1 launches one task; the request shows 2 until the deploy succeeds', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' }, { updatedRequest: { id: 'web', requestType: 'SERVICE', instances: 1 } });
    const fresh = await f.serving('web', 'd2');
    expect(fresh).toHaveLength(1);
    expect((await f.request('web'))?.request.instances).toBe(2);
    f.health.report(fresh[0]!.taskId.id, 'HEALTHY');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect((await f.request('web'))?.request.instances).toBe(1);
    expect(await f.serving('web')).toHaveLength(1);
  });

  it('S9 updating the request while a pending deploy carries updatedRequest is a 409', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 2);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' }, { updatedRequest: { id: 'web', requestType: 'SERVICE', instances: 1 } });
    await expect(f.createRequest({ id: 'web', instances: 3 })).rejects.toMatchObject({ status: 409 });
    await expect(f.service.scale('web', 3)).rejects.toMatchObject({ status: 409 });
  });

  it('S10 scaling down during a deploy: the deploy completes with the new count', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 4);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2', ...canary(1) });
    await f.service.scale('web', 2);
    await f.settle();
    f.health.policy = () => 'HEALTHY';
    for (const t of await f.serving('web', 'd2')) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    expect((await f.result('web', 'd2'))?.deployState).toBe('SUCCEEDED');
    expect(f.instances(await f.serving('web'))).toEqual([1, 2]);
  });

  it('S11 a second deploy while one is pending is a 409 naming the pending deploy', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    f.health.policy = () => 'WAIT';
    await f.deploy({ requestId: 'web', id: 'd2' });
    await expect(f.deploy({ requestId: 'web', id: 'd3' })).rejects.toMatchObject({ status: 409, message: expect.stringContaining('d2') });
  });

  it('S12 a reused deploy id is a 400', async () => {
    f = await engineFixture();
    await f.activeRequest('web', 1);
    // Other content under the id (the same content again is a retry, answered with what exists).
    await expect(f.deploy({ requestId: 'web', id: 'd1', command: 'sleep 1000' })).rejects.toMatchObject({
      status: 400,
      message: expect.stringContaining('deploy.id'),
    });
  });
});
