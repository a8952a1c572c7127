// Several hosts under the real loop: placement spreading instances and honouring constraints,
// a host that stops answering (its tasks lost and replaced elsewhere, a deploy carrying on),
// a host that answers again (what it still runs for replaced tasks is stopped), decommission
// (replacements healthy and in the LB first) and freeze. Fake runtimes per host, fake LB and
// health, a manual clock; the registry's pings are scripted.
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskRecord } from '../../src/core/model.ts';
import { hostOf } from '../../src/core/placement.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

let f: EngineFixture;
afterEach(async () => f?.close());

const container = { containerInfo: { type: 'DOCKER', docker: { image: 'app:1' } }, resources: { cpus: 0.5, memoryMb: 128, numPorts: 1 } };
const twoHosts = [
  { id: 'd1', capacity: { cpus: 4, memoryMb: 4096 } },
  { id: 'd2', capacity: { cpus: 4, memoryMb: 4096 } },
];
const hostsOf = (tasks: TaskRecord[]) => tasks.map((t) => `${t.taskId.instanceNo}@${hostOf(t)}`).sort();

describe('placement across hosts', () => {
  it('spreads a request’s instances over the hosts, and the task ids name the real host', async () => {
    f = await engineFixture({ hosts: [...twoHosts, { id: 'local' }] });
    await f.activeRequest('web', 4, { deploy: container });
    const tasks = await f.serving('web');
    expect(hostsOf(tasks)).toEqual(['1@d1', '2@d2', '3@d1', '4@d2']);
    for (const t of tasks) expect(t.taskId.id.endsWith(`-${t.taskId.instanceNo}-${t.taskId.host}-local`)).toBe(true);
    expect(f.runtimes.get('d1')?.running()).toHaveLength(2);
    expect(f.runtimes.get('local')?.running()).toEqual([]);
    // A process deploy of another request goes to local.
    await f.activeRequest('proc', 1);
    expect(hostsOf(await f.serving('proc'))).toEqual(['1@local']);
  });

  it('honours requiredAgentAttributes and rackSensitive', async () => {
    f = await engineFixture({
      hosts: [
        { id: 'd1', attributes: { rack: 'r1', zone: 'a' } },
        { id: 'd2', attributes: { rack: 'r1', zone: 'b' } },
        { id: 'd3', attributes: { rack: 'r2', zone: 'b' } },
      ],
    });
    await f.activeRequest('zoned', 3, { request: { requiredAgentAttributes: { zone: 'b' } }, deploy: container });
    expect(hostsOf(await f.serving('zoned'))).toEqual(['1@d2', '2@d3', '3@d2']);
    await f.activeRequest('racked', 4, { request: { rackSensitive: true }, deploy: container });
    const racks = (await f.serving('racked')).map((t) => t.taskId.rackId).sort();
    expect(racks).toEqual(['r1', 'r1', 'r2', 'r2']);
  });

  it('a task that fits nowhere waits and says why; the deploy ends OVERDUE naming the reason', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.createRequest({ id: 'web', instances: 3, agentPlacement: 'SEPARATE' });
    await f.deploy({ requestId: 'web', id: 'd1', ...container, deployHealthTimeoutSeconds: 5, considerHealthyAfterRunningForSeconds: 0 });
    const tasks = await f.tasks('web');
    const waiting = tasks.filter((t) => t.waitingReason);
    expect(hostsOf(tasks.filter((t) => !t.waitingReason))).toEqual(['1@d1', '2@d2']);
    expect(waiting).toMatchObject([
      {
        taskId: { instanceNo: 3, host: 'unplaced' },
        waitingReason:
          'host d1 already runs a task of deploy d1 (agentPlacement SEPARATE); host d2 already runs a task of deploy d1 (agentPlacement SEPARATE)',
      },
    ]);
    await f.advance(130_000);
    const result = await f.result('web', 'd1');
    expect(result).toMatchObject({ deployState: 'OVERDUE', message: 'Only 2 of 3 tasks could be launched' });
    expect(result?.deployFailures).toMatchObject([
      { reason: 'TASK_COULD_NOT_BE_SCHEDULED', message: expect.stringContaining('(agentPlacement SEPARATE)') },
    ]);
  });

  it('places a waiting task as soon as a host can take it, under a new id with that host', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.registry.change('d2', 'freeze');
    await f.createRequest({ id: 'web', instances: 2, agentPlacement: 'SEPARATE' });
    await f.deploy({ requestId: 'web', id: 'd1', ...container });
    const [waiting] = (await f.tasks('web')).filter((t) => t.waitingReason);
    expect(waiting?.waitingReason).toBe(
      'host d1 already runs a task of deploy d1 (agentPlacement SEPARATE); host d2 is FROZEN and takes no new tasks',
    );
    await f.registry.change('d2', 'activate');
    await f.settle();
    expect(await f.store.getTask(waiting!.taskId.id)).toBeUndefined();
    expect(hostsOf(await f.serving('web'))).toEqual(['1@d1', '2@d2']);
    expect((await f.result('web', 'd1'))?.deployState).toBe('SUCCEEDED');
  });

  it('freeze stops new placements there and keeps what runs; activate takes it back', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.activeRequest('web', 2, { deploy: container });
    await f.registry.change('d1', 'freeze');
    await f.service.scale('web', 4);
    await f.settle();
    expect(hostsOf(await f.serving('web'))).toEqual(['1@d1', '2@d2', '3@d2', '4@d2']);
    await f.registry.change('d1', 'activate');
    await f.service.scale('web', 5);
    await f.settle();
    expect(hostsOf(await f.serving('web'))).toContain('5@d1');
  });
});

describe('a host that stops answering', () => {
  it('loses its tasks mid-deploy; they are replaced on the other host, uncounted, and the deploy succeeds', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.activeRequest('web', 4, { request: { loadBalanced: true }, deploy: container });
    f.health.policy = (id) => (id.startsWith('web-d2-') ? 'WAIT' : 'HEALTHY');
    await f.deploy({ requestId: 'web', id: 'd2', ...container, serviceBasePath: '/svc', loadBalancerGroups: ['default'] });
    expect(hostsOf(await f.serving('web', 'd2'))).toEqual(['1@d1', '2@d2', '3@d1', '4@d2']);

    f.setSilent('d1', true);
    await f.advance(5_000);
    expect((await f.tasks('web')).filter((t) => hostOf(t) === 'd1')).toHaveLength(4);
    await f.advance(5_000); // 10 s without an answer: UNREACHABLE
    expect(f.registry.get('d1')?.state).toBe('UNREACHABLE');

    const lost = (await f.allTasks('web')).filter((t) => t.state === 'TASK_LOST');
    expect(lost.map((t) => `${t.taskId.deployId}#${t.taskId.instanceNo}`).sort()).toEqual(['d1#1', 'd1#3', 'd2#1', 'd2#3']);
    for (const t of lost) {
      expect(t.lostWithHost).toBe('d1');
      expect(t.updates.at(-1)?.message).toBe('Lost with its host: host d1 is UNREACHABLE (connection refused)');
    }
    // The old deploy is refilled on d2 at once (its LB membership with it); the new one replaces its own.
    expect(hostsOf(await f.serving('web', 'd1'))).toEqual(['1@d2', '2@d2', '3@d2', '4@d2']);
    expect(await f.lbMembers('web')).toEqual((await f.serving('web', 'd1')).map((t) => t.taskId.id).sort());
    const fresh = await f.serving('web', 'd2');
    expect(hostsOf(fresh)).toEqual(['1@d2', '2@d2', '3@d2', '4@d2']);

    for (const t of fresh) f.health.report(t.taskId.id, 'HEALTHY');
    await f.settle();
    const result = await f.result('web', 'd2');
    expect(result).toMatchObject({ deployState: 'SUCCEEDED', deployFailures: [] });
    const progress = (await f.history('web', 'd2'))?.progress;
    expect(progress?.failedDeployTasks).toEqual([]);
    expect(progress?.lostDeployTasks?.map((t) => t.instanceNo).sort()).toEqual([1, 3]);
    expect(progress?.decisionLog.filter((d) => d.kind === 'TASK_LOST')).toHaveLength(2);
    expect(await f.lbMembers('web')).toEqual(fresh.map((t) => t.taskId.id).sort());

    // d1 answers again: what it still runs for the lost tasks is stopped and released.
    expect(f.runtimes.get('d1')?.running()).toHaveLength(4);
    f.setSilent('d1', false);
    await f.advance(1_000);
    expect(f.registry.get('d1')?.state).toBe('ACTIVE');
    expect(f.runtimes.get('d1')?.running()).toEqual([]);
    expect([...f.runtimes.get('d1')!.stopped].sort()).toEqual(lost.map((t) => t.taskId.id).sort());
    expect([...(f.runtimes.get('d1')?.hostUsage().tasks ?? [])]).toEqual([]);
    // Nothing of the request runs twice: one live task per instance.
    expect(hostsOf(await f.serving('web'))).toEqual(['1@d2', '2@d2', '3@d2', '4@d2']);
  });

  it('keeps a request’s instances waiting for the host when no other host may take them', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.activeRequest('web', 2, { request: { agentPlacement: 'SEPARATE' }, deploy: container });
    f.setSilent('d2', true);
    await f.advance(10_000);
    const waiting = (await f.tasks('web')).filter((t) => t.waitingReason);
    expect(waiting).toMatchObject([
      {
        taskId: { instanceNo: 2, host: 'unplaced' },
        waitingReason: 'host d1 already runs a task of deploy d1 (agentPlacement SEPARATE); host d2 is UNREACHABLE (connection refused)',
      },
    ]);
    f.setSilent('d2', false);
    await f.advance(1_000);
    expect(hostsOf(await f.serving('web'))).toEqual(['1@d1', '2@d2']);
    expect(f.runtimes.get('d2')?.running()).toHaveLength(1);
  });
});

describe('decommission', () => {
  it('moves the host’s tasks elsewhere, each replacement healthy and in the LB before the old one leaves, then DECOMMISSIONED', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.activeRequest('web', 2, { request: { loadBalanced: true }, deploy: container });
    const [onD1] = (await f.serving('web')).filter((t) => hostOf(t) === 'd1');
    f.balancer.setBehaviour('wait');
    await f.registry.change('d1', 'decommission', 'retiring it');
    await f.settle();
    const replacement = (await f.serving('web')).find((t) => t.taskId.instanceNo === onD1!.taskId.instanceNo && hostOf(t) === 'd2');
    expect(replacement).toMatchObject({ state: 'TASK_RUNNING', health: { state: 'HEALTHY' }, lb: { add: { state: 'WAITING' } } });
    expect((await f.store.getTask(onD1!.taskId.id))?.cleanup).toBeUndefined();
    expect(f.registry.get('d1')?.state).toBe('DECOMMISSIONING');

    f.balancer.complete(f.balancer.operations.at(-1)!.operationId, 'SUCCESS');
    await f.settle();
    const leaving = await f.store.getTask(onD1!.taskId.id);
    expect(leaving).toMatchObject({ cleanup: { reason: 'DECOMMISSIONING', message: 'host d1 is decommissioning' } });
    expect(leaving?.state).not.toBe('TASK_KILLED');
    expect(f.balancer.operations.at(-1)?.remove.map((u) => u.taskId)).toEqual([onD1!.taskId.id]);

    f.balancer.complete(f.balancer.operations.at(-1)!.operationId, 'SUCCESS');
    await f.settle();
    expect((await f.store.getTask(onD1!.taskId.id))?.state).toBe('TASK_KILLED');
    expect(f.registry.get('d1')?.state).toBe('DECOMMISSIONED');
    expect(hostsOf(await f.serving('web'))).toEqual(['1@d2', '2@d2']);

    await f.registry.change('d1', 'activate');
    f.balancer.setBehaviour('succeed');
    await f.service.scale('web', 3);
    await f.settle();
    expect(hostsOf(await f.serving('web'))).toContain('3@d1');
  });

  it('waits with the placement reason when no other host may take the tasks, and stays DECOMMISSIONING', async () => {
    f = await engineFixture({ hosts: twoHosts });
    await f.activeRequest('web', 2, { request: { agentPlacement: 'SEPARATE' }, deploy: container });
    await f.registry.change('d1', 'decommission');
    await f.settle();
    const waiting = (await f.tasks('web')).filter((t) => t.waitingReason);
    expect(waiting.map((t) => t.waitingReason)).toEqual([
      'host d1 is DECOMMISSIONING and takes no new tasks; host d2 already runs a task of deploy d1 (agentPlacement SEPARATE)',
    ]);
    expect(hostsOf(await f.serving('web')).filter((h) => !h.includes('undefined'))).toEqual(['1@d1', '2@d2']);
    expect(f.registry.get('d1')?.state).toBe('DECOMMISSIONING');
  });
});

describe('a scheduler restart', () => {
  it('counts the tasks placed but not started on their hosts again', async () => {
    f = await engineFixture({ hosts: [{ id: 'd1', capacity: { cpus: 1, memoryMb: 4096 } }] });
    f.runtime.script({ deployId: 'd1' }, { waiting: 'pulling the image' });
    await f.createRequest({ id: 'web', instances: 1 });
    await f.deploy({ requestId: 'web', id: 'd1', ...container });
    const [placed] = await f.tasks('web');
    expect(placed).toMatchObject({ taskId: { host: 'd1' }, waitingReason: 'pulling the image' });
    expect(f.registry.snapshots()[0]?.used.cpus).toBe(0.5);
    await f.crash();
    await f.boot();
    expect(f.registry.snapshots()[0]?.used.cpus).toBe(0.5);
  });
});
