// Routing for testers and sticky cohorts (canaryDeploySettings.routing) through each real
// balancer, with a real `fledge serve` and real task processes: header-routed requests all land
// on the new deploy while others follow the split; sticky clients (cookie, hashed header) stay
// on their version across many requests and across a SIGKILL and restart of the scheduler; a
// cancel sends pinned clients back to the old version at once; bad routing is a 400 naming the field.
import { afterAll, describe, expect, it } from 'vitest';
import { cohortOf } from '../../src/balancers/routing.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult } from '../helpers/example-service.ts';
import { cleanup, freePort, reservePorts, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REQ = 'routed';
const PHASE_TIMEOUT_MS = 60_000;
const ROUTING = {
  match: [{ header: 'X-Canary', value: 'yes' }],
  sticky: { cookie: 'fl_v', header: 'X-User', percent: 40 },
};

// cleanup() also stops the managed HAProxy each server's data dir left (it outlives Fledge on purpose).
afterAll(cleanup);

interface Answer {
  status: number;
  version?: string;
  setCookie: string[];
}

describe.each(['builtin', 'haproxy'] as const)('routing for testers and cohorts through the %s balancer', (lb) => {
  it('testers and cohorts hold across many requests and a scheduler SIGKILL; a cancel sends pinned clients back at once', async () => {
    const lbPort = await freePort();
    const args = ['--lb', lb, '--log-level', 'info'];
    const portRange = reservePorts(40);
    let fledge: FledgeProcess = await startFledgeProcess({ args, portRange, lbPort });
    const lbUrl = fledge.lbUrl;
    const ask = async (headers: Record<string, string> = {}): Promise<Answer> => {
      const res = await fetch(`${lbUrl}/rt/x`, { headers, signal: AbortSignal.timeout(5_000) });
      const text = await res.text();
      const version = res.ok ? (JSON.parse(text) as { version: string }).version : undefined;
      return { status: res.status, ...(version ? { version } : {}), setCookie: res.headers.getSetCookie() };
    };
    const versions = async (n: number, headers: Record<string, string> = {}) => {
      const seen = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const a = await ask(headers);
        const key = a.version ?? `HTTP ${a.status}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
      }
      return Object.fromEntries([...seen].sort());
    };
    const deploy = (id: string, canary: Record<string, unknown> = {}) =>
      exampleDeploy(REQ, id, { deploy: { serviceBasePath: '/rt', loadBalancerGroups: ['default'], canaryDeploySettings: canary } });

    await fledge.client.createRequest(serviceRequest(REQ, 3, { loadBalanced: true }));
    await fledge.client.createDeploy(deploy('v1'));
    expect((await waitForDeployResult(fledge.client, REQ, 'v1', PHASE_TIMEOUT_MS)).deployResult.deployState).toBe('SUCCEEDED');

    // Bad routing: a 400 naming the field, nothing recorded.
    const bad = await fetch(`${fledge.url}/api/deploys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fledge.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(
        deploy('v9', { enableCanaryDeploy: true, routing: { match: [{ header: 'X Canary' }], sticky: { header: 'X-User' } } }),
      ),
    });
    expect(bad.status).toBe(400);
    const problem = (await bad.json()) as { details: { field: string }[] };
    expect(problem.details.map((d) => d.field).sort()).toEqual([
      'deploy.canaryDeploySettings.routing.match[0].header',
      'deploy.canaryDeploySettings.routing.sticky.percent',
    ]);

    // v2: one new task beside three old, held at its first step (MANUAL), with routing.
    await fledge.client.createDeploy(
      deploy('v2', { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL', routing: ROUTING }),
    );
    // The new task enters rotation a moment before its routing is on (HAProxy: a seamless reload,
    // then the maps), so one tester answered by v2 may be the split's luck: wait for ten in a row.
    await waitFor(async () => (await versions(10, { 'x-canary': 'yes' })).v2 === 10, {
      timeoutMs: PHASE_TIMEOUT_MS,
      intervalMs: 100,
      message: 'testers to reach v2',
    });
    // testers: every request on v2; everyone else: the normal split (3 old, 1 new)
    expect(await versions(30, { 'x-canary': 'yes' })).toEqual({ v2: 30 });
    const split = await versions(80);
    expect(split.v1).toBeGreaterThan(40);
    expect(split.v2).toBeGreaterThan(5);

    // sticky cookie: each client keeps the version of its first answer
    const clients: { cookie: string; version: string }[] = [];
    for (let i = 0; i < 16 && new Set(clients.map((c) => c.version)).size < 2; i++) {
      const first = await ask();
      const pin = first.setCookie.find((c) => c.startsWith('fl_v='));
      expect(pin).toBe(`fl_v=${first.version}; Path=/rt; HttpOnly; SameSite=Lax`);
      clients.push({ cookie: pin!.split(';')[0]!, version: first.version! });
    }
    expect(new Set(clients.map((c) => c.version))).toEqual(new Set(['v1', 'v2']));
    const pinnedKeep = async () => {
      for (const c of clients) expect(await versions(10, { cookie: c.cookie })).toEqual({ [c.version]: 10 });
    };
    await pinnedKeep();
    // sticky header: the same cohort the hash says, in both balancers
    const users = Array.from({ length: 12 }, (_, i) => `user-${i}`);
    const cohort = (u: string) => (cohortOf(u) < ROUTING.sticky.percent ? 'v2' : 'v1');
    expect(new Set(users.map(cohort))).toEqual(new Set(['v1', 'v2']));
    for (const u of users) expect(await versions(5, { 'x-user': u })).toEqual({ [cohort(u)]: 5 });

    // The scheduler SIGKILLed and restarted: rules and cohorts are back (HAProxy kept them; the
    // builtin proxy restarts with the scheduler and gets them with its membership).
    fledge.kill('SIGKILL');
    await fledge.waitExit(10_000);
    fledge = await startFledgeProcess({ dataDir: fledge.dataDir, args, portRange, lbPort });
    await waitFor(async () => (await ask({ 'x-canary': 'yes' }).catch(() => ({ version: undefined }))).version === 'v2', {
      timeoutMs: PHASE_TIMEOUT_MS,
      intervalMs: 100,
      message: 'testers to reach v2 after the restart',
    });
    expect(await versions(20, { 'x-canary': 'yes' })).toEqual({ v2: 20 });
    await pinnedKeep();
    for (const u of users) expect(await versions(3, { 'x-user': u })).toEqual({ [cohort(u)]: 3 });

    // Cancel: pinned clients and testers are back on v1 as soon as the deploy has ended.
    const onV2 = clients.find((c) => c.version === 'v2')!;
    await fledge.client.cancelDeploy(REQ, 'v2');
    const ended = await waitForDeployResult(fledge.client, REQ, 'v2', PHASE_TIMEOUT_MS);
    expect(ended.deployResult.deployState).toBe('CANCELED');
    const t0 = Date.now();
    await waitFor(async () => (await ask({ cookie: onV2.cookie, 'x-canary': 'yes' })).version === 'v1', {
      timeoutMs: 5_000,
      intervalMs: 10,
      message: 'pinned clients back on v1',
    });
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await versions(20, { cookie: onV2.cookie })).toEqual({ v1: 20 });
    expect(await versions(20, { 'x-canary': 'yes' })).toEqual({ v1: 20 });
    const after = await ask();
    expect(after.setCookie).toEqual([]);
    await fledge.client.deleteRequest(REQ).catch(() => undefined);
  });
});
