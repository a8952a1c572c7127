import { describe, expect, it } from 'vitest';
import { balancerContract } from '../contract.case.ts';
import { decideRouting, inVersion, parseCookies, stickyCookie } from '../routing.ts';
import { testClock } from '../test-support.ts';
import { upstreamWeight, type LbOperationStatus, type LbService, type Upstream } from '../types.ts';
import { createFakeBalancer } from './index.ts';

/**
 * The fake has no proxy: the driver plays one, smooth weighted round-robin over the upstreams in rotation,
 * answering what the path names (/status/<code>, /delay/<ms>) and 502 for a refusing upstream.
 */
balancerContract('fake', async () => {
  const clock = testClock();
  const balancer = createFakeBalancer({ now: clock.now });
  const refusing = new Set<string>();
  const received = new Map<string, number>();
  const score = new Map<string, number>();
  const pickWeighted = (upstreams: Upstream[]): Upstream | undefined => {
    let total = 0;
    let u: Upstream | undefined;
    for (const x of upstreams) {
      const w = upstreamWeight(x);
      if (w === 0) continue;
      score.set(x.taskId, (score.get(x.taskId) ?? 0) + w);
      total += w;
      if (!u || score.get(x.taskId)! > score.get(u.taskId)!) u = x;
    }
    if (u) score.set(u.taskId, score.get(u.taskId)! - total);
    return u;
  };
  return {
    balancer,
    upstream: async (taskId, deployId) => ({ taskId, host: '127.0.0.1', port: 10_000 + taskId.length, ...(deployId ? { deployId } : {}) }),
    async refusingUpstream(taskId, deployId) {
      refusing.add(taskId);
      return { taskId, host: '127.0.0.1', port: 1, ...(deployId ? { deployId } : {}) };
    },
    async send(service, path) {
      const u = pickWeighted(await balancer.upstreams(service.serviceId));
      if (!u) return 503;
      const dead = refusing.has(u.taskId);
      if (!dead) received.set(u.taskId, (received.get(u.taskId) ?? 0) + 1);
      const status = dead ? 502 : Number(/\/status\/(\d{3})/.exec(path)?.[1] ?? 200);
      const latencyMs = Number(/\/delay\/(\d+)/.exec(path)?.[1] ?? 1);
      balancer.recordTraffic({
        serviceId: service.serviceId,
        taskId: u.taskId,
        ...(u.deployId ? { deployId: u.deployId } : {}),
        status,
        latencyMs,
        upstreamError: dead,
      });
      return status;
    },
    // The routing a proxy would do (routing.ts), over the upstreams in rotation.
    async exchange(service, _path, headers = {}) {
      const upstreams = await balancer.upstreams(service.serviceId);
      if (upstreams.length === 0) return { status: 503, servedBy: '', setCookie: [] };
      const routing = balancer.routing(service.serviceId);
      const lower = new Map(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
      const cookies = parseCookies(lower.get('cookie'));
      const decision = decideRouting(routing, { header: (n) => lower.get(n.toLowerCase()), cookie: (n) => cookies.get(n) });
      const version = decision.version;
      const own = routing && version ? upstreams.filter((u) => inVersion(routing, version, u.deployId)) : [];
      const u = pickWeighted(own.length > 0 ? own : upstreams) ?? pickWeighted(upstreams);
      if (!u) return { status: 503, servedBy: '', setCookie: [] };
      received.set(u.taskId, (received.get(u.taskId) ?? 0) + 1);
      const cookie = routing?.sticky?.cookie;
      const setCookie =
        decision.setCookie && cookie !== undefined && u.deployId !== undefined ? [stickyCookie(cookie, u.deployId, service.basePath)] : [];
      return { status: 200, servedBy: u.taskId, setCookie };
    },
    received: (taskId) => received.get(taskId) ?? 0,
    advanceClock: (ms) => clock.advance(ms),
    async holdRemoval(operationId) {
      balancer.script(operationId, 'wait');
      return async () => {
        if ((await balancer.state(operationId))?.state === 'WAITING') balancer.complete(operationId, 'SUCCESS');
      };
    },
    close: () => balancer.close(),
  };
});

describe('fake balancer', () => {
  const service: LbService = { serviceId: 'web', basePath: '/web', groups: [] };
  const up = (taskId: string, port = 31_000): Upstream => ({ taskId, host: '127.0.0.1', port });

  it('records each operation once, so a test can assert one swap added all new and removed all old', async () => {
    const fake = createFakeBalancer();
    await fake.apply('deploy-lb1', service, [up('old1'), up('old2')], []);
    await fake.apply('deploy-lb2', service, [up('new1'), up('new2')], [up('old1'), up('old2')]);
    await fake.apply('deploy-lb2', service, [up('new1'), up('new2')], [up('old1'), up('old2')]);

    expect(fake.operations.map((o) => o.operationId)).toEqual(['deploy-lb1', 'deploy-lb2']);
    expect(fake.applyCalls).toEqual(['deploy-lb1', 'deploy-lb2', 'deploy-lb2']);
    const swap = fake.operations[1];
    expect(swap?.add.map((u) => u.taskId)).toEqual(['new1', 'new2']);
    expect(swap?.remove.map((u) => u.taskId)).toEqual(['old1', 'old2']);
    expect((await fake.upstreams('web')).map((u) => u.taskId)).toEqual(['new1', 'new2']);
  });

  it('keeps scripted operations WAITING until the test completes them', async () => {
    const fake = createFakeBalancer({ behaviour: 'wait' });
    const seen: LbOperationStatus[] = [];
    fake.onChange((s) => seen.push(s));
    expect((await fake.apply('op1', service, [up('a')], [])).state).toBe('WAITING');
    expect(fake.complete('op1', 'SUCCESS')).toMatchObject({ state: 'SUCCESS' });
    expect(seen.map((s) => s.state)).toEqual(['WAITING', 'SUCCESS']);
    expect(() => fake.complete('op1', 'FAILED')).toThrow(/already SUCCESS/);
    expect(() => fake.complete('nope', 'SUCCESS')).toThrow(/no operation/);
  });

  it('reverts an operation completed as FAILED and reports its message', async () => {
    const fake = createFakeBalancer();
    await fake.apply('op1', service, [up('old')], []);
    fake.script('op2', 'wait');
    await fake.apply('op2', service, [up('new')], [up('old')]);
    expect((await fake.upstreams('web')).map((u) => u.taskId)).toEqual(['new']);

    fake.complete('op2', 'FAILED', 'haproxy reload failed');
    expect(await fake.state('op2')).toMatchObject({ state: 'FAILED', message: 'haproxy reload failed' });
    expect((await fake.upstreams('web')).map((u) => u.taskId)).toEqual(['old']);
  });

  it('fails scripted operations at once without changing anything', async () => {
    const fake = createFakeBalancer();
    fake.script('op1', { fail: 'no capacity' });
    expect(await fake.apply('op1', service, [up('a')], [])).toMatchObject({ state: 'FAILED', message: 'no capacity' });
    expect(await fake.upstreams('web')).toEqual([]);
    // A script is consumed by its operation; the next one follows the default behaviour.
    expect((await fake.apply('op2', service, [up('a')], [])).state).toBe('SUCCESS');
  });

  it('can act unreachable: apply rejects and nothing is recorded as applied', async () => {
    const fake = createFakeBalancer();
    fake.setBehaviour({ throw: 'connection refused' });
    await expect(fake.apply('op1', service, [up('a')], [])).rejects.toThrow('connection refused');
    expect(fake.operations).toEqual([]);
    expect(await fake.state('op1')).toBeUndefined();
  });

  it('reports stats per service', async () => {
    const fake = createFakeBalancer();
    await fake.apply('op1', service, [up('a')], []);
    expect(fake.stats()).toEqual({
      web: { basePath: '/web', upstreams: [{ ...up('a'), inRotation: true, inFlight: 0, total: 0 }] },
    });
  });
});
