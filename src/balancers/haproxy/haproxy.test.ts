// The HAProxy balancer against a real HAProxy (Debian's haproxy package; .ci/run installs it):
// the balancer contract, routing, seamless reloads, restart after a crash, drift repair.
// A missing haproxy fails these tests; it never skips them.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { balancerContract, proxyBalancerContract, type BalancerContractDriver } from '../contract.case.ts';
import { proxyContractDriver, request, testClock, settled, startUpstream, waitFor, type TestUpstream } from '../test-support.ts';
import type { LbService } from '../types.ts';
import { createHaproxyBalancer, type HaproxyBalancer, type HaproxyBalancerOptions } from './index.ts';
import { haproxyCommand } from './runtime-api.ts';
import { silentLogger } from '../../logger.ts';
import { startAttachedHaproxy } from '../../../test/helpers/haproxy-attached.ts';
import { freePort } from '../../../test/helpers/ports.ts';

function isAlive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('haproxy');
  } catch {
    return false;
  }
}

const dirs: string[] = [];
const started: HaproxyBalancer[] = [];
const allPids = new Set<number>();

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fledge-hap-'));
  dirs.push(dir);
  return dir;
}

/** A managed balancer; closing it stops its HAProxy unless the test says stopOnClose: false. */
/** the frontend port per data dir: a balancer on the same dir adopts (or replaces) the same HAProxy */
const frontendPorts = new Map<string, number>();

async function startHaproxy(options: Partial<HaproxyBalancerOptions> = {}): Promise<HaproxyBalancer> {
  const dataDir = options.dataDir ?? tempDir();
  const port = options.port ?? frontendPorts.get(dataDir) ?? (await freePort());
  frontendPorts.set(dataDir, port);
  const balancer = await createHaproxyBalancer({
    dataDir,
    port,
    drainTimeoutMs: 10_000,
    reconcileIntervalMs: 0,
    drainPollMs: 20,
    stopOnClose: true,
    ...options,
  });
  started.push(balancer);
  for (const pid of await balancer.pids()) allPids.add(pid);
  return balancer;
}

afterAll(async () => {
  for (const b of started) await b.shutdown().catch(() => undefined);
  // Nothing of ours may outlive the suite, whatever happened to the balancers.
  for (const pid of allPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('haproxy is installed', () => {
  it('runs `haproxy -v` (CI installs Debian haproxy; a missing binary fails, never skips)', () => {
    const res = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
    expect(res.error, 'haproxy is not on PATH: apt-get install -y haproxy').toBeUndefined();
    expect(res.stdout).toMatch(/HAProxy version 2\./);
  });
});

balancerContract('haproxy', async (): Promise<BalancerContractDriver> => {
  const clock = testClock();
  // Passive protection off (proxyBalancerContract covers it): once it marks the only server down,
  // HAProxy answers itself (<NOSRV>), and those answers count for no task.
  return proxyContractDriver(await startHaproxy({ now: clock.now, ejectAfterFailures: 0 }), clock);
});

proxyBalancerContract('haproxy', (o) =>
  startHaproxy({
    ejectAfterFailures: o.ejectAfterFailures,
    ejectBaseMs: o.ejectBaseMs,
    upstreamTimeoutMs: o.upstreamTimeoutMs,
    observePollMs: 50,
  }),
);

describe('haproxy balancer', () => {
  const upstreams: TestUpstream[] = [];
  const up = async (name: string) => {
    const u = await startUpstream(name);
    upstreams.push(u);
    return u;
  };
  afterEach(async () => {
    await Promise.all(upstreams.splice(0).map((u) => u.close()));
  });

  const svc = (id: string, basePath: string): LbService => ({ serviceId: id, basePath, groups: [] });
  const body = async (port: number, path: string) => {
    const res = await request(port, path);
    return res.status === 200 ? res.body : `HTTP ${res.status}`;
  };

  it('routes by basePath on segment boundaries, longest prefix first', async () => {
    const balancer = await startHaproxy();
    const port = balancer.address().port;
    const root = await up('root');
    const api = await up('api');
    const deep = await up('deep');
    await settled(balancer, (await balancer.apply('r', svc('root', '/'), [root.upstream()], [])).operationId);
    await settled(balancer, (await balancer.apply('a', svc('api', '/api'), [api.upstream()], [])).operationId);
    await settled(balancer, (await balancer.apply('d', svc('deep', '/api/v2/'), [deep.upstream()], [])).operationId);
    expect(await body(port, '/api')).toBe('api');
    expect(await body(port, '/api/x?q=1')).toBe('api');
    expect(await body(port, '/apix')).toBe('root');
    expect(await body(port, '/api/v2')).toBe('deep');
    expect(await body(port, '/api/v2/z')).toBe('deep');
    expect(await body(port, '/api/v20')).toBe('api');
    expect(await body(port, '/')).toBe('root');
    await balancer.close();
  });

  it('keeps its configuration, maps, state and log to its owner', async () => {
    const umask = process.umask(0o022);
    try {
      const lb = await startHaproxy();
      const a = await up('a');
      await settled(lb, (await lb.apply('modes-1', svc('a', '/a'), [a.upstream()], [])).operationId);
      const dir = join(lb.paths.configPath, '..');
      const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);
      expect(mode(dir)).toBe('700');
      for (const p of [lb.paths.configPath, lb.paths.exactMap, lb.paths.prefixMap, lb.paths.stateFile, join(dir, 'haproxy.log')]) {
        expect(mode(p), p).toBe('600');
      }
    } finally {
      process.umask(umask);
    }
  });

  it('answers 503 where no service is routed', async () => {
    const balancer = await startHaproxy();
    expect((await request(balancer.address().port, '/nothing')).status).toBe(503);
    await balancer.close();
  });

  it("fails an operation HAProxy rejects, with HAProxy's own message, and never hangs", async () => {
    const balancer = await startHaproxy();
    const status = await balancer.apply('bad', svc('bad', '/bad'), [{ taskId: 'x', host: 'bad..host', port: 80 }], []);
    const final = status.state === 'WAITING' ? await settled(balancer, 'bad') : status;
    expect(final.state).toBe('FAILED');
    expect(final.message).toMatch(/^haproxy: Can't create DNS resolution/);
    expect(await balancer.upstreams('bad')).toEqual([]);
    await balancer.close();
  });

  it('adds a backend beyond the spares with a seamless reload: no request fails under load', async () => {
    const balancer = await startHaproxy({ spareBackends: 1 });
    const port = balancer.address().port;
    const a = await up('a');
    await settled(balancer, (await balancer.apply('a', svc('a', '/a'), [a.upstream()], [])).operationId);
    const failures: string[] = [];
    let ok = 0;
    let stop = false;
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          try {
            const res = await request(port, '/a/x');
            if (res.status === 200) ok += 1;
            else failures.push(`HTTP ${res.status}`);
          } catch (err) {
            failures.push(String(err));
          }
        }
      }),
    );
    const before = await balancer.pids();
    for (let i = 0; i < 3; i++) {
      const u = await up(`n${i}`);
      const s = await settled(balancer, (await balancer.apply(`n${i}`, svc(`n${i}`, `/n${i}`), [u.upstream()], [])).operationId, 15_000);
      expect(s.state).toBe('SUCCESS');
      expect(await body(port, `/n${i}/y`)).toBe(`n${i}`);
    }
    for (const pid of await balancer.pids()) allPids.add(pid);
    stop = true;
    await load;
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    // reloads happened: the worker changed
    expect(await balancer.pids()).not.toEqual(before);
    expect(readFileSync(balancer.paths.configPath, 'utf8')).toMatch(/backend fledge_b3/);
    await balancer.close();
  });

  it('keeps counting traffic across a seamless reload and a restart of HAProxy, each request once', async () => {
    const balancer = await startHaproxy({ spareBackends: 1 });
    const port = balancer.address().port;
    const a = await up('a');
    await settled(balancer, (await balancer.apply('add-a', svc('s', '/s'), [{ ...a.upstream(), deployId: 'v1' }], [])).operationId);
    const counted = async (n: number) => {
      await waitFor(async () => (await balancer.traffic('s', { windowMs: 60_000 })).total.requests === n, `${n} requests counted`, {
        timeoutMs: 10_000,
      });
    };
    for (let i = 0; i < 3; i++) expect((await request(port, '/s/x')).status).toBe(200);
    await counted(3);
    // two more services: no spare left, so a reload; the reader follows the new worker
    for (const id of ['t', 'u']) {
      const other = await up(id);
      await settled(balancer, (await balancer.apply(`add-${id}`, svc(id, `/${id}`), [other.upstream()], [])).operationId);
    }
    for (let i = 0; i < 3; i++) expect((await request(port, '/s/x')).status).toBe(200);
    await counted(6);
    // HAProxy killed and restarted by Fledge: counting goes on
    const pids = await balancer.pids();
    pids.forEach((p) => allPids.add(p));
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await waitFor(() => balancer.restarts() >= 1, 'haproxy restarted', { timeoutMs: 10_000 });
    for (const pid of await balancer.pids()) allPids.add(pid);
    await waitFor(async () => (await request(port, '/s/x').catch(() => ({ status: 0 }))).status === 200, 'haproxy serving again', {
      timeoutMs: 10_000,
    });
    await new Promise((r) => setTimeout(r, 300));
    const before = (await balancer.traffic('s', { windowMs: 60_000 })).total.requests;
    for (let i = 0; i < 3; i++) expect((await request(port, '/s/x')).status).toBe(200);
    await counted(before + 3);
    await new Promise((r) => setTimeout(r, 300));
    const t = await balancer.traffic('s', { windowMs: 60_000 });
    expect(t.total.requests).toBe(before + 3);
    expect(t.tasks.map((x) => [x.taskId, x.deployId, x.requests])).toEqual([['a', 'v1', a.received.length]]);
    await balancer.close();
  });

  it('restores every service and server when HAProxy is killed mid-deploy', async () => {
    const balancer = await startHaproxy();
    const port = balancer.address().port;
    const [a, b, c] = [await up('a'), await up('b'), await up('c')];
    await settled(balancer, (await balancer.apply('add-ab', svc('s', '/s'), [a.upstream(), b.upstream()], [])).operationId);
    const other = await up('o');
    await settled(balancer, (await balancer.apply('add-o', svc('o', '/o'), [other.upstream()], [])).operationId);
    // a removal in progress: a request held by b through HAProxy... (round robin: send two)
    const held = [
      request(port, '/s/slow', { timeoutMs: 10_000 }).catch(() => undefined),
      request(port, '/s/slow', { timeoutMs: 10_000 }).catch(() => undefined),
    ];
    await waitFor(() => b.held() > 0 && a.held() > 0, 'slow requests on a and b');
    expect((await balancer.apply('swap', svc('s', '/s'), [c.upstream()], [b.upstream()])).state).toBe('WAITING');

    const pids = await balancer.pids();
    pids.forEach((p) => allPids.add(p));
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    // the drain ends with HAProxy's sessions: the removal succeeds once HAProxy is back
    expect((await settled(balancer, 'swap', 20_000)).state).toBe('SUCCESS');
    await waitFor(() => balancer.restarts() >= 1, 'haproxy restarted');
    for (const pid of await balancer.pids()) allPids.add(pid);
    a.release();
    b.release();
    await Promise.all(held);

    expect((await balancer.upstreams('s')).map((u) => u.taskId).sort()).toEqual(['a', 'c']);
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await body(port, '/s/q'));
    expect([...answers].sort()).toEqual(['a', 'c']);
    expect(await body(port, '/o')).toBe('o');
    const live = await haproxyCommand(balancer.paths.runtimeSocket, 'show servers state');
    expect(live).not.toMatch(/ b 127\.0\.0\.1/);
    // and a deploy after the restart works
    const d = await up('d');
    expect(
      (await settled(balancer, (await balancer.apply('add-d', svc('s', '/s'), [d.upstream()], [a.upstream()])).operationId)).state,
    ).toBe('SUCCESS');
    expect((await balancer.upstreams('s')).map((u) => u.taskId).sort()).toEqual(['c', 'd']);
    await balancer.close();
  });

  describe('routing for testers and cohorts', () => {
    const routed = (deployId: string): LbService => ({
      ...svc('r', '/r'),
      routing: { deployId, match: [{ header: 'X-Canary', value: 'yes' }], sticky: { cookie: 'fl_v' } },
    });
    const versionOf = async (port: number, headers: Record<string, string>) => {
      const res = await request(port, '/r/x', { headers });
      if (res.status !== 200) return `HTTP ${res.status}`;
      return res.body.startsWith('new') ? 'new' : 'old';
    };
    /** Old v1 and new v2 in one operation with routing on for v2, settled. */
    const applyRouted = async (balancer: HaproxyBalancer, old: TestUpstream, fresh: TestUpstream) =>
      settled(
        balancer,
        (
          await balancer.apply(
            'add',
            routed('v2'),
            [
              { ...old.upstream(), deployId: 'v1' },
              { ...fresh.upstream(), deployId: 'v2' },
            ],
            [],
          )
        ).operationId,
        15_000,
      );
    const onlyNew = async (port: number, n = 8) => {
      const seen = new Set<string>();
      for (let i = 0; i < n; i++) {
        seen.add(await versionOf(port, { 'x-canary': 'yes' }));
        seen.add(await versionOf(port, { cookie: 'fl_v=v2' }));
      }
      return [...seen];
    };

    it('new rules load with one seamless reload (0 failed requests under load); the same rules for the next deploy and clearing need none', async () => {
      const balancer = await startHaproxy();
      const port = balancer.address().port;
      const [old, fresh] = [await up('old'), await up('new')];
      await settled(balancer, (await balancer.apply('add-old', svc('r', '/r'), [{ ...old.upstream(), deployId: 'v1' }], [])).operationId);
      const failures: string[] = [];
      let ok = 0;
      let stop = false;
      const load = Promise.all(
        Array.from({ length: 4 }, async () => {
          while (!stop) {
            try {
              const res = await request(port, '/r/x', { headers: { cookie: 'fl_v=v2' } });
              if (res.status === 200) ok += 1;
              else failures.push(`HTTP ${res.status}`);
            } catch (err) {
              failures.push(String(err));
            }
          }
        }),
      );
      const before = await balancer.pids();
      const s = await settled(
        balancer,
        (await balancer.apply('add-new', routed('v2'), [{ ...fresh.upstream(), deployId: 'v2' }], [])).operationId,
        15_000,
      );
      expect(s.state).toBe('SUCCESS');
      const reloaded = await balancer.pids();
      reloaded.forEach((p) => allPids.add(p));
      expect(reloaded).not.toEqual(before);
      expect(await onlyNew(port)).toEqual(['new']);
      // cleared at runtime: no reload, pinned clients back on the old version at once
      await balancer.apply('clear', svc('r', '/r'), [], [{ ...fresh.upstream(), deployId: 'v2' }]);
      expect(await onlyNew(port)).toEqual(['old']);
      expect(await settled(balancer, 'clear', 15_000)).toMatchObject({ state: 'SUCCESS' });
      // the next deploy with the same rules: only the maps change
      const again = await up('new2');
      await settled(balancer, (await balancer.apply('add-new2', routed('v2'), [{ ...again.upstream(), deployId: 'v2' }], [])).operationId);
      expect(await onlyNew(port)).toEqual(['new']);
      stop = true;
      await load;
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThan(20);
      expect((await balancer.pids()).filter((p) => !reloaded.includes(p))).toEqual([]);
      await balancer.close();
    });

    it('attached: new rules reload the HAProxy the user runs through its master socket, then the maps follow', async () => {
      const attached = await startAttachedHaproxy(await freePort());
      try {
        const balancer = await createHaproxyBalancer({
          mode: 'attached',
          runtimeSocket: attached.statsSocket,
          configPath: attached.configPath,
          masterSocket: attached.masterSocket,
          port: attached.port,
          reconcileIntervalMs: 0,
          drainPollMs: 20,
        });
        started.push(balancer);
        const [old, fresh] = [await up('old'), await up('new')];
        const s = await applyRouted(balancer, old, fresh);
        expect(s.state, s.message).toBe('SUCCESS');
        expect(await onlyNew(attached.port)).toEqual(['new']);
        expect(await balancer.reconcile()).toEqual([]);
        await balancer.close();
      } finally {
        try {
          process.kill(-attached.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    });

    it('routing survives Fledge restarted (state.json, the same HAProxy adopted) and HAProxy killed (restarted from the files)', async () => {
      const dataDir = tempDir();
      const first = await startHaproxy({ dataDir, stopOnClose: false });
      const port = first.address().port;
      const [old, fresh] = [await up('old'), await up('new')];
      await applyRouted(first, old, fresh);
      expect(await onlyNew(port)).toEqual(['new']);
      // Fledge goes away and comes back: it adopts the same HAProxy, routing still on, nothing to repair
      await first.close();
      const balancer = await startHaproxy({ dataDir, port });
      expect(balancer.adopted()).toBe(true);
      expect(await onlyNew(port)).toEqual(['new']);
      expect(await balancer.reconcile()).toEqual([]);
      // HAProxy killed: restarted from the configuration and maps on disk, routing on again
      const pids = await balancer.pids();
      pids.forEach((p) => allPids.add(p));
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      await waitFor(() => balancer.restarts() >= 1, 'haproxy restarted', { timeoutMs: 10_000 });
      for (const pid of await balancer.pids()) allPids.add(pid);
      await waitFor(async () => (await request(port, '/r/x').catch(() => ({ status: 0 }))).status === 200, 'haproxy serving again', {
        timeoutMs: 10_000,
      });
      expect(await onlyNew(port)).toEqual(['new']);
      await balancer.shutdown();
    });
  });

  it('keeps weights across a restart of HAProxy and repairs a weight changed behind its back', async () => {
    const balancer = await startHaproxy();
    const port = balancer.address().port;
    const [a, b] = [await up('a'), await up('b')];
    await settled(balancer, (await balancer.apply('add', svc('s', '/s'), [{ ...a.upstream(), weight: 32 }, b.upstream()], [])).operationId);
    const split = async (n: number) => {
      const got = { a: 0, b: 0 };
      for (let i = 0; i < n; i++) got[(await body(port, '/s/w')) as 'a' | 'b'] += 1;
      return got;
    };
    // 32 : 100 → a gets 32 of every 132 requests
    expect(Math.abs((await split(264)).a - 64)).toBeLessThanOrEqual(3);
    expect(readFileSync(balancer.paths.configPath, 'utf8')).toMatch(/server a 127\.0\.0\.1:\d+ weight 32/);

    const pids = await balancer.pids();
    pids.forEach((p) => allPids.add(p));
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await waitFor(() => balancer.restarts() >= 1, 'haproxy restarted', { timeoutMs: 20_000 });
    for (const pid of await balancer.pids()) allPids.add(pid);
    await waitFor(async () => (await body(port, '/s/w').catch(() => '')) !== '', 'haproxy serving again', { timeoutMs: 20_000 });
    expect(Math.abs((await split(264)).a - 64)).toBeLessThanOrEqual(3);

    const sock = balancer.paths.runtimeSocket;
    await haproxyCommand(sock, 'set server fledge_b0/a weight 100');
    const repairs = await balancer.reconcile();
    expect(repairs.join('\n')).toMatch(/fledge_b0\/a weight set back to 32 \(haproxy had 100\)/);
    expect(Math.abs((await split(264)).a - 64)).toBeLessThanOrEqual(3);
    expect(await balancer.reconcile()).toEqual([]);
    await balancer.close();
  });

  it('a restarted Fledge rebuilds exactly what was live from the files on disk', async () => {
    const dataDir = tempDir();
    const first = await startHaproxy({ dataDir });
    const a = await up('a');
    await settled(first, (await first.apply('add', svc('s', '/s'), [a.upstream()], [])).operationId);
    const port = first.address().port;
    // HAProxy stopped with it: the second one starts a fresh HAProxy from the files on disk
    await first.shutdown();
    const second = await startHaproxy({ dataDir, port });
    expect(second.adopted()).toBe(false);
    expect((await second.upstreams('s')).map((u) => u.taskId)).toEqual(['a']);
    expect(await body(port, '/s/again')).toBe('a');
    // re-applying what Fledge thinks is live changes nothing
    expect((await settled(second, (await second.apply('again', svc('s', '/s'), [a.upstream()], [])).operationId)).state).toBe('SUCCESS');
    await second.close();
  });

  it('repairs drift: a server deleted behind its back comes back, an unknown one goes, routes are restored', async () => {
    const balancer = await startHaproxy();
    const port = balancer.address().port;
    const [a, b, rogue] = [await up('a'), await up('b'), await up('rogue')];
    await settled(balancer, (await balancer.apply('add', svc('s', '/s'), [a.upstream(), b.upstream()], [])).operationId);
    const sock = balancer.paths.runtimeSocket;
    await haproxyCommand(sock, 'set server fledge_b0/a state maint');
    expect((await haproxyCommand(sock, 'del server fledge_b0/a')).trim()).toBe('Server deleted.');
    await haproxyCommand(sock, `add server fledge_b0/rogue 127.0.0.1:${rogue.port}`);
    await haproxyCommand(sock, 'enable server fledge_b0/rogue');
    await haproxyCommand(sock, `del map ${balancer.paths.prefixMap} /s/`);
    expect(await body(port, '/s/x')).toBe('HTTP 503');

    const repairs = await balancer.reconcile();
    expect(repairs.join('\n')).toMatch(/re-added server fledge_b0\/a/);
    expect(repairs.join('\n')).toMatch(/deleted server fledge_b0\/rogue/);
    expect(repairs.join('\n')).toMatch(/route maps/);
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await body(port, '/s/x'));
    expect([...answers].sort()).toEqual(['a', 'b']);
    expect(await balancer.reconcile()).toEqual([]);
    await balancer.close();
  });

  /** Requests through the LB in a bounded loop until stop(): counts answers and failures. */
  function steadyLoad(port: number, path: string) {
    const failures: string[] = [];
    let ok = 0;
    let stop = false;
    const done = Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = 0; i < 100_000 && !stop; i++) {
          try {
            const res = await request(port, path, { timeoutMs: 5_000 });
            if (res.status === 200) ok += 1;
            else failures.push(`HTTP ${res.status}`);
          } catch (err) {
            failures.push(String(err));
          }
        }
      }),
    );
    return {
      get ok() {
        return ok;
      },
      failures,
      async stop() {
        stop = true;
        await done;
      },
    };
  }

  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('outlives the balancer: a new one on the same data dir adopts the same master, nothing reloads, no request fails across the gap', async () => {
    const dataDir = tempDir();
    const first = await startHaproxy({ dataDir, stopOnClose: false });
    const port = first.address().port;
    const [a, b, o] = [await up('a'), await up('b'), await up('o')];
    await settled(first, (await first.apply('add', svc('s', '/s'), [a.upstream(), b.upstream()], [])).operationId);
    await settled(first, (await first.apply('add-o', svc('o', '/o'), [o.upstream()], [])).operationId);
    const before = await first.pids();
    before.forEach((p) => allPids.add(p));
    const load = steadyLoad(port, '/s/x');
    await sleep(200);
    await first.close();
    // Fledge is down: HAProxy serves on
    const during = load.ok;
    await sleep(500);
    expect(load.ok).toBeGreaterThan(during);
    const second = await startHaproxy({ dataDir, stopOnClose: false }); // port 0: keeps the adopted one's
    await sleep(200);
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(second.address().port).toBe(port);
    expect(second.adopted()).toBe(true);
    // the same master and the same worker: adopted, not restarted, not reloaded
    expect(await second.pids()).toEqual(before);
    expect((await second.upstreams('s')).map((u) => u.taskId).sort()).toEqual(['a', 'b']);
    expect(await second.reconcile()).toEqual([]);
    expect(await body(port, '/o')).toBe('o');
    // and the adopted HAProxy takes changes
    const c = await up('c');
    expect((await settled(second, (await second.apply('swap', svc('s', '/s'), [c.upstream()], [a.upstream()])).operationId)).state).toBe(
      'SUCCESS',
    );
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await body(port, '/s/q'));
    expect([...answers].sort()).toEqual(['b', 'c']);
    await second.shutdown();
    expect(before.filter((pid) => isAlive(pid))).toEqual([]);
  });

  it('adopting repairs drift made while Fledge was down, and reloads seamlessly when more backends are needed', async () => {
    const dataDir = tempDir();
    const first = await startHaproxy({ dataDir, stopOnClose: false, spareBackends: 1 });
    const port = first.address().port;
    const [a, b, rogue] = [await up('a'), await up('b'), await up('rogue')];
    await settled(first, (await first.apply('add', svc('s', '/s'), [a.upstream(), b.upstream()], [])).operationId);
    const [master] = await first.pids();
    (await first.pids()).forEach((p) => allPids.add(p));
    await first.close();
    const sock = first.paths.runtimeSocket;
    await haproxyCommand(sock, 'set server fledge_b0/a state maint');
    await haproxyCommand(sock, 'del server fledge_b0/a');
    await haproxyCommand(sock, `add server fledge_b0/rogue 127.0.0.1:${rogue.port}`);
    await haproxyCommand(sock, 'enable server fledge_b0/rogue');

    const load = steadyLoad(port, '/s/x');
    const second = await startHaproxy({ dataDir, stopOnClose: false, spareBackends: 4 });
    await sleep(200);
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(second.adopted()).toBe(true);
    expect((await second.pids())[0]).toBe(master);
    (await second.pids()).forEach((p) => allPids.add(p));
    expect(readFileSync(second.paths.configPath, 'utf8')).toMatch(/backend fledge_b4/);
    expect(await haproxyCommand(sock, 'show backend')).toMatch(/fledge_b4/);
    const live = await haproxyCommand(sock, 'show servers state');
    expect(live).not.toMatch(/ rogue /);
    const answers = new Set<string>();
    for (let i = 0; i < 6; i++) answers.add(await body(port, '/s/q'));
    expect([...answers].sort()).toEqual(['a', 'b']);
    await second.shutdown();
  });

  it.each([
    { cut: 1, what: 'after writing the state file' },
    { cut: 2, what: 'after adding the new server (in maintenance)' },
    { cut: 3, what: 'after putting the new server in rotation' },
  ])(
    'a Fledge stopped half-way through a swap ($what) leaves a state file naming it; the next one repairs towards it with something always in rotation',
    async ({ cut }) => {
      const dataDir = tempDir();
      // The first scheduler loses the right to act after the swap's first HAProxy command: the
      // effect of a SIGKILL between telling HAProxy and writing the state file.
      let commands = 0;
      let cutAfter = Infinity;
      const first = await startHaproxy({
        dataDir,
        stopOnClose: false,
        mayAct: () => {
          commands += 1;
          return commands <= cutAfter;
        },
      });
      const port = first.address().port;
      const [a, b] = [await up('a'), await up('b')];
      await settled(first, (await first.apply('old', svc('s', '/s'), [a.upstream()], [])).operationId);
      (await first.pids()).forEach((p) => allPids.add(p));
      // the state file's write-ahead, `add server`, `enable server`: cut after `cut` of them, so b
      // is not yet (or is) in HAProxy, and the drain of a never started
      cutAfter = commands + cut;
      const swap = await first.apply('swap', svc('s', '/s'), [b.upstream()], [a.upstream()]);
      expect(swap.state).toBe('FAILED');
      const onDisk = JSON.parse(readFileSync(join(dataDir, 'haproxy', 'state.json'), 'utf8')) as {
        services: { servers: { taskId: string; draining: boolean }[] }[];
      };
      expect(onDisk.services[0]?.servers.map((s) => [s.taskId, s.draining]).sort()).toEqual([
        ['a', true],
        ['b', false],
      ]);
      await first.close();

      const load = steadyLoad(port, '/s/x');
      const second = await startHaproxy({ dataDir, stopOnClose: false });
      await sleep(200);
      await load.stop();
      expect(load.failures).toEqual([]);
      expect(second.adopted()).toBe(true);
      // nothing was deleted: b serves, a drains as the swap meant
      expect((await second.upstreams('s')).map((u) => u.taskId)).toEqual(['b']);
      const answers = new Set<string>();
      for (let i = 0; i < 6; i++) answers.add(await body(port, '/s/q'));
      expect([...answers]).toEqual(['b']);
      await second.shutdown();
    },
  );

  it('a repair takes an unknown server out only after the right ones are in rotation, and lets its requests finish', async () => {
    const balancer = await startHaproxy();
    const port = balancer.address().port;
    const [a, rogue] = [await up('a'), await up('rogue')];
    await settled(balancer, (await balancer.apply('add', svc('s', '/s'), [a.upstream()], [])).operationId);
    const sock = balancer.paths.runtimeSocket;
    // the state HAProxy was left in by a lost write: the known server draining, an unknown one serving
    await haproxyCommand(sock, 'set server fledge_b0/a state drain');
    await haproxyCommand(sock, `add server fledge_b0/rogue 127.0.0.1:${rogue.port}`);
    await haproxyCommand(sock, 'enable server fledge_b0/rogue');
    const held = request(port, '/s/slow', { timeoutMs: 10_000 });
    await waitFor(() => rogue.held() > 0, 'a request held on the unknown server');
    const load = steadyLoad(port, '/s/x');
    const repairs = await balancer.reconcile();
    await sleep(200);
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(repairs.join('\n')).toMatch(/fledge_b0\/a put back into rotation/);
    expect(repairs.join('\n')).toMatch(/rogue, unknown to Fledge, out of rotation/);
    rogue.release();
    expect((await held).status).toBe(200);
    // idle now: the next repair deletes it
    expect((await balancer.reconcile()).join('\n')).toMatch(/deleted server fledge_b0\/rogue, unknown to Fledge/);
    expect(await haproxyCommand(sock, 'show servers state')).not.toMatch(/ rogue /);
    await balancer.close();
  });

  it('replaces an unresponsive leftover HAProxy (SIGSTOPped master) and says so', async () => {
    const dataDir = tempDir();
    const first = await startHaproxy({ dataDir, stopOnClose: false });
    const port = first.address().port;
    const a = await up('a');
    await settled(first, (await first.apply('add', svc('s', '/s'), [a.upstream()], [])).operationId);
    const old = await first.pids();
    old.forEach((p) => allPids.add(p));
    await first.close();
    process.kill(old[0]!, 'SIGSTOP');
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (_obj: object, msg?: string) => void warnings.push(msg ?? '') };
    const second = await startHaproxy({ dataDir, stopOnClose: false, port, logger });
    (await second.pids()).forEach((p) => allPids.add(p));
    expect(second.adopted()).toBe(false);
    expect(warnings.join('\n')).toMatch(/does not answer on its master socket; replacing it/);
    expect((await second.pids())[0]).not.toBe(old[0]);
    await waitFor(() => old.every((pid) => !isAlive(pid)), 'the old haproxy processes to be gone');
    expect(await body(port, '/s/x')).toBe('a');
    await second.shutdown();
  });

  it('supervises an adopted master: killed, it is restarted with every server', async () => {
    const dataDir = tempDir();
    const first = await startHaproxy({ dataDir, stopOnClose: false });
    const port = first.address().port;
    const a = await up('a');
    await settled(first, (await first.apply('add', svc('s', '/s'), [a.upstream()], [])).operationId);
    await first.close();
    const second = await startHaproxy({ dataDir, stopOnClose: false });
    expect(second.adopted()).toBe(true);
    const pids = await second.pids();
    pids.forEach((p) => allPids.add(p));
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    await waitFor(() => second.restarts() >= 1, 'the adopted haproxy to be restarted');
    (await second.pids()).forEach((p) => allPids.add(p));
    await waitFor(async () => (await body(port, '/s/x').catch(() => '')) === 'a', 'the restarted haproxy to route /s', {
      timeoutMs: 10_000,
    });
    // and the HAProxy it restarted is adopted in turn by the next Fledge, not replaced
    const restarted = await second.pids();
    await second.close();
    const third = await startHaproxy({ dataDir, stopOnClose: false });
    expect(third.adopted()).toBe(true);
    expect((await third.pids())[0]).toBe(restarted[0]);
    (await third.pids()).forEach((p) => allPids.add(p));
    expect(await body(port, '/s/y')).toBe('a');
    await third.shutdown();
  });
});
