/*
 * The balancer contract: behaviour every implementation (builtin, fake, later haproxy) must
 * show, written against the Balancer interface plus a small driver the implementation
 * supplies for what only it knows how to do (provide upstreams, keep a removal waiting).
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  refusedPort,
  request,
  settled,
  startFaultyUpstream,
  startUpstream,
  startUpstreamOn,
  waitFor,
  type BalancerContractDriver,
} from './test-support.ts';
import { LATENCY_BUCKETS_MS, type ServiceTraffic, type TrafficCounts } from './traffic.ts';
import { cohortOf } from './routing.ts';
import type { Balancer, LbOperationStatus, LbRouting, LbService, Upstream, UpstreamEvent } from './types.ts';

export type { BalancerContractDriver };

export interface BalancerContractOptions {
  /** bound on waiting for an operation to finish; default 5 s */
  settleTimeoutMs?: number;
}

export function balancerContract(
  name: string,
  makeDriver: () => Promise<BalancerContractDriver>,
  options: BalancerContractOptions = {},
): void {
  const timeoutMs = options.settleTimeoutMs ?? 5_000;

  describe(`balancer contract: ${name}`, () => {
    let driver: BalancerContractDriver | undefined;
    let seq = 0;

    afterEach(async () => {
      await driver?.close();
      driver = undefined;
    });

    async function setup() {
      driver = await makeDriver();
      seq += 1;
      const service: LbService = { serviceId: `svc${seq}`, basePath: `/svc${seq}`, groups: [] };
      return { driver, balancer: driver.balancer, service };
    }

    async function applied(balancer: Balancer, id: string, service: LbService, add: Upstream[], remove: Upstream[]) {
      await balancer.apply(id, service, add, remove);
      return settled(balancer, id, timeoutMs);
    }

    const ids = (upstreams: Upstream[]) => upstreams.map((u) => u.taskId).sort();

    it('adds upstreams: the operation succeeds and the service lists them', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      const status = await applied(balancer, 'add-1', service, [a, b], []);
      expect(status).toMatchObject({ operationId: 'add-1', state: 'SUCCESS' });
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a', 'b']);
    });

    it('treats adding an upstream already present as a no-op success', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      expect((await applied(balancer, 'add-2', service, [a], [])).state).toBe('SUCCESS');
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);
    });

    it('re-applying an id returns the first result and does not re-add what was removed since', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      await applied(balancer, 'add-1', service, [a, b], []);
      expect((await applied(balancer, 'remove-1', service, [], [a])).state).toBe('SUCCESS');

      const again = await balancer.apply('add-1', service, [a, b], []);
      expect(again).toMatchObject({ operationId: 'add-1', state: 'SUCCESS' });
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['b']);
    });

    it('removing an unknown upstream succeeds', async () => {
      const { driver, balancer, service } = await setup();
      const ghost = await driver.upstream('ghost');
      expect((await applied(balancer, 'remove-ghost', service, [], [ghost])).state).toBe('SUCCESS');
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);
    });

    it('knows nothing about ids it never saw', async () => {
      const { balancer } = await setup();
      expect(await balancer.state('never-applied')).toBeUndefined();
      expect(await balancer.cancel('never-applied')).toBeUndefined();
      expect(await balancer.upstreams('no-such-service')).toEqual([]);
    });

    it('keeps a removal WAITING while it is held, out of rotation, then SUCCESS', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      const release = await driver.holdRemoval('remove-1', service, a);

      expect((await balancer.apply('remove-1', service, [], [a])).state).toBe('WAITING');
      expect((await balancer.state('remove-1'))?.state).toBe('WAITING');
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);

      await release();
      expect((await settled(balancer, 'remove-1', timeoutMs)).state).toBe('SUCCESS');
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);
    });

    it('cancels a WAITING removal: CANCELED, and the upstream is back in rotation', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      const release = await driver.holdRemoval('remove-1', service, a);
      expect((await balancer.apply('remove-1', service, [], [a])).state).toBe('WAITING');

      expect(await balancer.cancel('remove-1')).toMatchObject({ operationId: 'remove-1', state: 'CANCELED' });
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);

      await release();
      // Canceling is final and idempotent.
      expect((await balancer.cancel('remove-1'))?.state).toBe('CANCELED');
      expect((await balancer.state('remove-1'))?.state).toBe('CANCELED');
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);
    });

    it('canceling a finished operation changes nothing', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      expect((await balancer.cancel('add-1'))?.state).toBe('SUCCESS');
      expect(ids(await balancer.upstreams(service.serviceId))).toEqual(['a']);
    });

    it('tells onChange listeners about every state change, until they unsubscribe', async () => {
      const { driver, balancer, service } = await setup();
      const seen: LbOperationStatus[] = [];
      const unsubscribe = balancer.onChange((s) => seen.push(s));
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      await waitFor(() => seen.some((s) => s.operationId === 'add-1' && s.state === 'SUCCESS'), 'onChange for add-1', { timeoutMs });

      const release = await driver.holdRemoval('remove-1', service, a);
      await balancer.apply('remove-1', service, [], [a]);
      await release();
      await waitFor(() => seen.some((s) => s.operationId === 'remove-1' && s.state === 'SUCCESS'), 'onChange for remove-1', { timeoutMs });

      unsubscribe();
      const before = seen.length;
      await applied(balancer, 'add-2', service, [a], []);
      expect(seen.length).toBe(before);
    });

    it('fails an operation whose basePath belongs to another service, changing nothing', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      await applied(balancer, 'add-1', service, [a], []);
      const thief: LbService = { serviceId: `${service.serviceId}-other`, basePath: `${service.basePath}/`, groups: [] };
      const status = await applied(balancer, 'steal-1', thief, [b], []);
      expect(status.state).toBe('FAILED');
      expect(status.message).toMatch(/already routed/);
      expect(await balancer.upstreams(thief.serviceId)).toEqual([]);
    });

    // ---- weights: a canary's share of the requests, whatever the instance counts ----

    const weights = async (balancer: Balancer, service: LbService) =>
      Object.fromEntries((await balancer.upstreams(service.serviceId)).map((u) => [u.taskId, u.weight]));

    it('lists an upstream with its weight; adding it again changes the weight, without one resets it', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      const b = await driver.upstream('b');
      await applied(balancer, 'add-1', service, [{ ...a, weight: 7 }, b], []);
      expect(await weights(balancer, service)).toEqual({ a: 7, b: undefined });
      expect(
        (
          await applied(
            balancer,
            'reweigh-1',
            service,
            [
              { ...a, weight: 0 },
              { ...b, weight: 256 },
            ],
            [],
          )
        ).state,
      ).toBe('SUCCESS');
      expect(await weights(balancer, service)).toEqual({ a: 0, b: 256 });
      // re-applying an id changes nothing, again
      await balancer.apply('add-1', service, [{ ...a, weight: 7 }, b], []);
      expect(await weights(balancer, service)).toEqual({ a: 0, b: 256 });
      await applied(balancer, 'reset-1', service, [a, b], []);
      expect(await weights(balancer, service)).toEqual({ a: undefined, b: undefined });
    });

    it('refuses a weight outside 0..256 (or not an integer) and changes nothing', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a');
      await applied(balancer, 'add-1', service, [a], []);
      for (const [i, weight] of [257, -1, 1.5].entries()) {
        const status = await applied(balancer, `bad-${i}`, service, [{ ...a, weight }], []);
        expect(status.state).toBe('FAILED');
        expect(status.message).toMatch(/weight/);
      }
      expect(await weights(balancer, service)).toEqual({ a: undefined });
    });

    it('splits new requests by weight, follows a re-weigh at once, and sends nothing to weight 0', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a', 'v1');
      const b = await driver.upstream('b', 'v2');
      await applied(
        balancer,
        'add-1',
        service,
        [
          { ...a, weight: 64 },
          { ...b, weight: 192 },
        ],
        [],
      );
      for (let i = 0; i < 200; i++) expect(await driver.send(service, '/ok')).toBe(200);
      // weighted round-robin is exact over each cycle of 4; a few requests of slack for where a cycle starts
      expect(Math.abs(driver.received('b') - 150)).toBeLessThanOrEqual(3);
      expect(driver.received('a') + driver.received('b')).toBe(200);

      await applied(balancer, 'reweigh-1', service, [{ ...a, weight: 0 }, b], []);
      const before = driver.received('a');
      for (let i = 0; i < 50; i++) expect(await driver.send(service, '/ok')).toBe(200);
      expect(driver.received('a')).toBe(before);
    });

    // ---- traffic: the counters behind /metrics, the API's per-version rates and acceptance ----

    /** Traffic once `n` requests are counted (HAProxy's log lines arrive a moment later). */
    async function trafficOf(balancer: Balancer, service: LbService, n: number, windowMs = 60_000): Promise<ServiceTraffic> {
      let t: ServiceTraffic | undefined;
      await waitFor(
        async () => {
          t = await balancer.traffic(service.serviceId, { windowMs });
          return t.total.requests >= n;
        },
        `${n} requests counted for ${service.serviceId}`,
        // only how long a failure takes to show: a loaded machine delays HAProxy's log lines
        { timeoutMs: Math.max(timeoutMs, 15_000) },
      );
      return t!;
    }

    const histogramCount = (c: TrafficCounts) => c.latency.counts.reduce((a, b) => a + b, 0);

    it('counts known traffic exactly, per task and per deploy, by status class', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a', 'v1');
      const b = await driver.upstream('b', 'v2');
      await applied(balancer, 'add-1', service, [a, b], []);
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) statuses.push(await driver.send(service, '/ok'));
      for (let i = 0; i < 4; i++) statuses.push(await driver.send(service, '/status/503'));
      for (let i = 0; i < 2; i++) statuses.push(await driver.send(service, '/status/404'));
      expect(statuses.filter((s) => s === 200)).toHaveLength(10);

      const t = await trafficOf(balancer, service, 16);
      // nothing more arrives later
      await new Promise((r) => setTimeout(r, 200));
      const again = await balancer.traffic(service.serviceId, { windowMs: 60_000 });
      expect(again.total.requests).toBe(16);
      expect(t.total).toMatchObject({ requests: 16, upstreamErrors: 0, responses: { '1xx': 0, '2xx': 10, '3xx': 0, '4xx': 2, '5xx': 4 } });
      expect(histogramCount(t.total)).toBe(16);
      const task = (id: string) => t.tasks.find((x) => x.taskId === id);
      // each task's count is what its own server received
      expect(task('a')?.requests).toBe(driver.received('a'));
      expect(task('b')?.requests).toBe(driver.received('b'));
      expect(driver.received('a') + driver.received('b')).toBe(16);
      expect(task('a')?.deployId).toBe('v1');
      const deploy = (id: string) => t.deploys.find((x) => x.deployId === id);
      expect(deploy('v1')?.requests).toBe(driver.received('a'));
      expect(deploy('v2')?.requests).toBe(driver.received('b'));
      // and the totals since the start say the same
      const totals = balancer.trafficTotals().filter((x) => x.serviceId === service.serviceId);
      expect(totals.reduce((n, x) => n + x.requests, 0)).toBe(16);
      expect(totals.reduce((n, x) => n + x.responses['5xx'], 0)).toBe(4);
    });

    it('counts requests to an upstream that refuses connections as upstream errors', async () => {
      const { driver, balancer, service } = await setup();
      const dead = await driver.refusingUpstream('dead', 'v3');
      await applied(balancer, 'add-1', service, [dead], []);
      for (let i = 0; i < 2; i++) expect(await driver.send(service, '/ok')).toBeGreaterThanOrEqual(500);
      const t = await trafficOf(balancer, service, 2);
      expect(t.tasks).toHaveLength(1);
      expect(t.tasks[0]).toMatchObject({ taskId: 'dead', deployId: 'v3', requests: 2, upstreamErrors: 2 });
      expect(t.tasks[0]?.responses['5xx']).toBe(2);
    });

    it('puts each answer in the latency bucket of its duration', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a', 'v1');
      await applied(balancer, 'add-1', service, [a], []);
      for (let i = 0; i < 2; i++) await driver.send(service, '/delay/300');
      const t = await trafficOf(balancer, service, 2);
      const slowFrom = LATENCY_BUCKETS_MS.findIndex((b) => b >= 300);
      const slow = t.total.latency.counts.slice(slowFrom).reduce((x, y) => x + y, 0);
      expect(slow).toBe(2);
      expect(t.total.latency.sumMs).toBeGreaterThanOrEqual(580);
    });

    it('sums only the window asked for, and cuts it into steps', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a', 'v1');
      await applied(balancer, 'add-1', service, [a], []);
      for (let i = 0; i < 3; i++) await driver.send(service, '/ok');
      await trafficOf(balancer, service, 3);
      driver.advanceClock(120_000);
      for (let i = 0; i < 2; i++) await driver.send(service, '/ok');
      const recent = await trafficOf(balancer, service, 2, 60_000);
      expect(recent.total.requests).toBe(2);
      const all = await balancer.traffic(service.serviceId, { windowMs: 300_000, stepMs: 60_000 });
      expect(all.total.requests).toBe(5);
      expect(all.series?.stepMs).toBe(60_000);
      expect(all.series?.points).toHaveLength(5);
      const perPoint = all.series!.points.map((p) => p.deploys.reduce((n, d) => n + d.requests, 0));
      expect(perPoint.reduce((x, y) => x + y, 0)).toBe(5);
      expect(perPoint.at(-1)).toBe(2);
      expect((await balancer.traffic('no-such-service', { windowMs: 60_000 })).total.requests).toBe(0);
    });

    // ---- routing for testers and cohorts (routing.ts) -----------------------------------

    /** Two old upstreams (deploy v1) and one new (v2), added with `routing`. */
    async function routedSetup(rules: Omit<LbRouting, 'deployId'>) {
      const ctx = await setup();
      const routed: LbService = { ...ctx.service, routing: { deployId: 'v2', ...rules } };
      const old1 = await ctx.driver.upstream('old1', 'v1');
      const old2 = await ctx.driver.upstream('old2', 'v1');
      const fresh = await ctx.driver.upstream('new1', 'v2');
      expect((await applied(ctx.balancer, 'add-r', routed, [old1, old2, fresh], [])).state).toBe('SUCCESS');
      return { ...ctx, routed, old1, old2, fresh };
    }
    const served = async (driver: BalancerContractDriver, service: LbService, n: number, headers?: Record<string, string>) => {
      const out = new Set<string>();
      for (let i = 0; i < n; i++) {
        const x = await driver.exchange(service, '/r', headers);
        expect(x.status).toBe(200);
        out.add(x.servedBy);
      }
      return [...out].sort();
    };
    /** The versions that answered (which upstream within a version is the balancer's choice). */
    const versions = async (driver: BalancerContractDriver, service: LbService, n: number, headers?: Record<string, string>) =>
      [...new Set((await served(driver, service, n, headers)).map((id) => (id.startsWith('new') ? 'new' : 'old')))].sort();

    it('routing: requests with the header (and value) of a rule all go to the new deploy, others follow the split', async () => {
      const { driver, routed } = await routedSetup({ match: [{ header: 'X-Canary', value: 'yes' }, { cookie: 'beta' }] });
      expect(await served(driver, routed, 12, { 'x-canary': 'yes' })).toEqual(['new1']);
      expect(await served(driver, routed, 6, { cookie: 'theme=dark; beta=1' })).toEqual(['new1']);
      // another value, or no header: the normal split, over every upstream
      expect(await served(driver, routed, 12, { 'x-canary': 'no' })).toEqual(['new1', 'old1', 'old2']);
      expect(await served(driver, routed, 12)).toEqual(['new1', 'old1', 'old2']);
    });

    it('routing: a sticky cookie pins each client to the version that first answered it, for every request after', async () => {
      const { driver, routed } = await routedSetup({ match: [], sticky: { cookie: 'fl_v' } });
      const seen = new Map<string, string>();
      for (let client = 0; client < 6; client++) {
        const first = await driver.exchange(routed, '/r');
        const deploy = first.servedBy === 'new1' ? 'v2' : 'v1';
        expect(first.setCookie).toEqual([`fl_v=${deploy}; Path=${routed.basePath}; HttpOnly; SameSite=Lax`]);
        const cookie = { cookie: `fl_v=${deploy}` };
        expect(await versions(driver, routed, 8, cookie)).toEqual([deploy === 'v2' ? 'new' : 'old']);
        // a pinned client is not told again
        expect((await driver.exchange(routed, '/r', cookie)).setCookie).toEqual([]);
        seen.set(deploy, first.servedBy);
      }
      expect(seen.size).toBe(2);
      // a cookie naming an earlier (or unknown) deploy means the old version
      expect(await versions(driver, routed, 6, { cookie: 'fl_v=v0' })).toEqual(['old']);
    });

    it('routing: a sticky header is hashed into a cohort that stays on its version (the same one in every balancer)', async () => {
      const { driver, routed } = await routedSetup({ match: [], sticky: { header: 'X-User', percent: 30 } });
      let onNew = 0;
      for (let user = 0; user < 40; user++) {
        const id = `user-${user}`;
        const want = cohortOf(id) < 30 ? 'new' : 'old';
        expect(await versions(driver, routed, 4, { 'x-user': id }), id).toEqual([want]);
        if (want === 'new') onNew += 1;
      }
      expect(onNew).toBeGreaterThan(0);
      expect(onNew).toBeLessThan(40);
    });

    it('routing: with no new-deploy upstream in rotation, matching requests go to the old version (never a 503)', async () => {
      const { driver, balancer, routed, fresh } = await routedSetup({ match: [{ header: 'X-Canary' }], sticky: { cookie: 'fl_v' } });
      expect((await applied(balancer, 'remove-new', routed, [], [fresh])).state).toBe('SUCCESS');
      expect(await versions(driver, routed, 6, { 'x-canary': '1' })).toEqual(['old']);
      expect(await versions(driver, routed, 6, { cookie: 'fl_v=v2' })).toEqual(['old']);
    });

    it('routing: the operation that takes the new deploy out clears routing, so pinned clients are back on the old version at once', async () => {
      const { driver, balancer, service, routed, fresh } = await routedSetup({
        match: [{ header: 'X-Canary' }],
        sticky: { cookie: 'fl_v', header: 'X-User', percent: 100 },
      });
      expect(await served(driver, routed, 3, { cookie: 'fl_v=v2' })).toEqual(['new1']);
      // abort: routing absent in the same operation that removes the new upstream
      await balancer.apply('abort', service, [], [fresh]);
      expect(await served(driver, service, 8, { 'x-canary': '1', cookie: 'fl_v=v2', 'x-user': 'u1' })).toEqual(['old1', 'old2']);
      expect(await versions(driver, service, 4, { 'x-canary': '1' })).toEqual(['old']);
      const answer = await driver.exchange(service, '/r');
      expect(answer.setCookie).toEqual([]);
      expect((await settled(balancer, 'abort', timeoutMs)).state).toBe('SUCCESS');
    });

    it('routing: clearing it alone (no upstream change) sends everyone back to the normal split', async () => {
      const { driver, balancer, service, routed } = await routedSetup({ match: [{ header: 'X-Canary' }] });
      expect(await served(driver, routed, 4, { 'x-canary': '1' })).toEqual(['new1']);
      expect((await applied(balancer, 'clear', service, [], [])).state).toBe('SUCCESS');
      expect(await served(driver, service, 12, { 'x-canary': '1' })).toEqual(['new1', 'old1', 'old2']);
    });

    it('routing: invalid rules fail the operation and change nothing', async () => {
      const { driver, balancer, service } = await setup();
      const a = await driver.upstream('a', 'v1');
      const bad: LbService = { ...service, routing: { deployId: 'v2', match: [{ header: 'X Canary' }] } };
      const status = await applied(balancer, 'bad', bad, [a], []);
      expect(status.state).toBe('FAILED');
      expect(status.message).toMatch(/invalid header or cookie/);
      expect(await balancer.upstreams(service.serviceId)).toEqual([]);
    });
  });
}

/** What the passive-protection contract asks of a proxying balancer (builtin, haproxy). */
export interface ProxyContractOptions {
  /** failures in a row that take an upstream out of rotation */
  ejectAfterFailures: number;
  /** how long an upstream stays out of rotation at least (builtin: the first back-off; haproxy: the down-check interval) */
  ejectBaseMs: number;
  /** an upstream silent this long fails the attempt */
  upstreamTimeoutMs: number;
}

/**
 * Passive protection and retries, for every balancer that proxies HTTP itself: a request that
 * could not have been processed goes once to another upstream; an upstream that fails N times in
 * a row leaves rotation for a short while and the listeners of onUpstreamEvent are told; it comes
 * back once it works again; a request whose body was sent, or a non-idempotent one the upstream
 * may have seen, is never sent twice.
 */
export function proxyBalancerContract(
  name: string,
  make: (options: ProxyContractOptions) => Promise<Balancer & { address(): { port: number } }>,
): void {
  const defaults: ProxyContractOptions = { ejectAfterFailures: 3, ejectBaseMs: 300, upstreamTimeoutMs: 600 };

  describe(`proxy contract: ${name}`, () => {
    const cleanups: (() => Promise<void>)[] = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });
    let seq = 0;

    async function setup(overrides: Partial<ProxyContractOptions> = {}) {
      const balancer = await make({ ...defaults, ...overrides });
      cleanups.push(() => balancer.close());
      const events: UpstreamEvent[] = [];
      const unsubscribe = balancer.onUpstreamEvent?.((e) => events.push(e));
      if (!unsubscribe) throw new Error(`${name} does not report upstream events`);
      cleanups.push(async () => void unsubscribe());
      seq += 1;
      const service: LbService = { serviceId: `px${seq}`, basePath: `/px${seq}`, groups: [] };
      return { balancer, events, service, port: balancer.address().port };
    }

    async function upstream(taskId: string) {
      const server = await startUpstream(taskId);
      cleanups.push(() => server.close());
      return server;
    }

    async function faulty(taskId: string, behaviour: 'reset' | 'hang') {
      const server = await startFaultyUpstream(taskId, behaviour);
      cleanups.push(() => server.close());
      return server;
    }

    async function add(balancer: Balancer, service: LbService, upstreams: Upstream[]) {
      const id = `${service.serviceId}-add`;
      await balancer.apply(id, service, upstreams, []);
      expect((await settled(balancer, id)).state).toBe('SUCCESS');
    }

    it('sends a request whose connection was refused to another upstream, whatever its method, body intact', async () => {
      const { balancer, service, port } = await setup();
      const a = await upstream('a');
      const refused: Upstream = { taskId: 'refused', host: '127.0.0.1', port: await refusedPort() };
      await add(balancer, service, [refused, a.upstream()]);
      for (let i = 0; i < 6; i++) {
        expect(await request(port, `${service.basePath}/get`)).toMatchObject({ status: 200, body: 'a' });
        expect(await request(port, `${service.basePath}/post`, { method: 'POST', body: `body ${i}` })).toMatchObject({
          status: 200,
          body: 'a',
        });
      }
      expect(a.received.filter((r) => r.method === 'POST').map((r) => r.body)).toEqual([0, 1, 2, 3, 4, 5].map((i) => `body ${i}`));
    });

    it('takes an upstream that refuses connections out of rotation, tells the listeners, and puts it back once it listens', async () => {
      const { balancer, events, service, port } = await setup();
      const a = await upstream('a');
      const gone: Upstream = { taskId: 'gone', host: '127.0.0.1', port: await refusedPort() };
      await add(balancer, service, [gone, a.upstream()]);
      // Every request is answered meanwhile: a refused connection moves over.
      await waitFor(
        async () => {
          expect(await request(port, `${service.basePath}/x`)).toMatchObject({ status: 200, body: 'a' });
          return events.some((e) => e.kind === 'EJECTED');
        },
        'an EJECTED event',
        { timeoutMs: 10_000, intervalMs: 20 },
      );
      expect(events.filter((e) => e.kind === 'EJECTED')).toMatchObject([{ serviceId: service.serviceId, taskId: 'gone' }]);
      // It comes back to life on the same address.
      const back = await startUpstreamOn('gone', gone.port);
      cleanups.push(() => back.close());
      await waitFor(() => events.some((e) => e.kind === 'RESTORED' && e.taskId === 'gone'), 'a RESTORED event', { timeoutMs: 10_000 });
      await waitFor(async () => (await request(port, `${service.basePath}/z`)).body === 'gone', 'it to answer again', { timeoutMs: 5_000 });
    });

    it('answers an idempotent request stuck on a silent upstream from another one', async () => {
      const { balancer, service, port } = await setup();
      const a = await upstream('a');
      const hung = await faulty('hung', 'hang');
      await add(balancer, service, [hung.upstream(), a.upstream()]);
      for (let i = 0; i < 3; i++) {
        expect(await request(port, `${service.basePath}/get`, { timeoutMs: 10_000 })).toMatchObject({ status: 200, body: 'a' });
      }
      expect(hung.hits()).toBeGreaterThanOrEqual(1);
    });

    it('never sends a request twice that an upstream may have seen: a POST to a silent upstream is a 504, once', async () => {
      const { balancer, service, port } = await setup();
      const [h1, h2] = [await faulty('h1', 'hang'), await faulty('h2', 'hang')];
      await add(balancer, service, [h1.upstream(), h2.upstream()]);
      const post = await request(port, `${service.basePath}/pay`, { method: 'POST', body: 'once', timeoutMs: 10_000 });
      expect(post.status).toBe(504);
      expect(h1.hits() + h2.hits()).toBe(1);
      // A GET is repeated once, on the other one.
      expect((await request(port, `${service.basePath}/read`, { timeoutMs: 10_000 })).status).toBe(504);
      expect(h1.hits() + h2.hits()).toBe(3);
    });

    it('never sends a request again once its body went to an upstream that then dropped the connection', async () => {
      const { balancer, service, port } = await setup();
      const [b1, b2] = [await faulty('b1', 'reset'), await faulty('b2', 'reset')];
      await add(balancer, service, [b1.upstream(), b2.upstream()]);
      const post = await request(port, `${service.basePath}/pay`, { method: 'POST', body: 'once' });
      expect(post.status).toBe(502);
      expect(b1.hits() + b2.hits()).toBe(1);
    });
  });
}
