// The under-traffic proof through HAProxy: a real in-process Fledge with `--lb haproxy`
// (managed: Fledge runs Debian's haproxy in master-worker mode) runs the shared phases (a)-(e) of
// test/e2e/traffic-suite.ts (atomic, canary, failing canary, cancelled MANUAL canary, rollback),
// each with 0 failed requests and never fewer than 4 healthy upstreams in rotation, and a dead
// task leaving the rotation. Then (f) HAProxy is SIGKILLed mid-deploy: Fledge restarts it and it
// comes back with exactly the servers Fledge has, and (g) a server deleted behind Fledge's back
// is put back by the periodic reconcile. Then a real `fledge serve --lb haproxy` process is
// SIGKILLed: HAProxy (detached) keeps serving every request while Fledge is down, and the
// restarted Fledge adopts the same master.
// Needs haproxy on PATH (.ci/run installs it): without it the suite fails.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { HaproxyBalancer } from '../../src/balancers/index.ts';
import { serverName } from '../../src/balancers/haproxy/config.ts';
import { haproxyCommand } from '../../src/balancers/haproxy/index.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { freePort, reservePorts, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { startLoad } from '../helpers/lb-traffic.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { INSTANCES, PHASE_TIMEOUT_MS, REQ, taskPorts, trafficSuite } from './traffic-suite.ts';

trafficSuite({
  lb: 'haproxy',
  config: { haproxyReconcileSeconds: 1, ...taskPorts(150) },
  label: 'traffic haproxy',
  title: 'deploys under traffic through HAProxy (4 instances)',
  more: (s) => {
    s.itDeadTaskLeavesRotation();

    it('(f) HAProxy SIGKILLed mid-deploy: restarted and restored with exactly the servers Fledge has', async () => {
      const { client } = s;
      const balancer = s.fledge().balancer as HaproxyBalancer;
      const restartsBefore = balancer.restarts();
      await client.createDeploy(s.deployOf('v6'));
      // mid-deploy: new tasks are starting or joining the LB
      await waitFor(
        async () => (await s.fledge().store.listTasks({ requestId: REQ, live: true })).some((t) => t.taskId.deployId === 'v6'),
        {
          timeoutMs: PHASE_TIMEOUT_MS,
          intervalMs: 20,
          message: 'v6 tasks to start',
        },
      );
      const pids = await balancer.pids();
      expect(pids.length).toBeGreaterThanOrEqual(2);
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      const done = await waitForDeployResult(client, REQ, 'v6', PHASE_TIMEOUT_MS);
      expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
      const ids = await s.settledOn('v6');
      expect(balancer.restarts()).toBeGreaterThan(restartsBefore);
      await waitFor(async () => JSON.stringify(await haproxyServers(balancer)) === JSON.stringify(ids.map(serverName).sort()), {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: `haproxy to have exactly the servers ${ids.join(', ')}`,
      });
      expect(await s.versionsThroughLb()).toEqual({ v6: 20 });
      // and the next deploy runs through the restarted HAProxy without a failed request
      const outcome = await s.underTraffic('f atomic after the restart', async () => {
        await client.createDeploy(s.deployOf('v7'));
        const next = await waitForDeployResult(client, REQ, 'v7', PHASE_TIMEOUT_MS);
        if (next.deployResult.deployState === 'SUCCEEDED') await s.settledOn('v7');
        return next;
      });
      expect(outcome.result.deployResult.deployState).toBe('SUCCEEDED');
      s.expectNoDisruption(outcome);
      await s.expectServing(outcome, 'v7');
    });

    it("(g) a server deleted behind Fledge's back is put back by the periodic reconcile", async () => {
      const balancer = s.fledge().balancer as HaproxyBalancer;
      const ids = await s.settledOn('v7');
      const sock = balancer.paths.runtimeSocket;
      const victim = (await haproxyServerRows(balancer))[0]!;
      await haproxyCommand(sock, `set server ${victim.key} state maint`);
      expect((await haproxyCommand(sock, `del server ${victim.key}`)).trim()).toBe('Server deleted.');
      expect(await haproxyServers(balancer)).toHaveLength(INSTANCES - 1);
      await waitFor(async () => JSON.stringify(await haproxyServers(balancer)) === JSON.stringify(ids.map(serverName).sort()), {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: 'the reconcile to re-add the deleted server',
      });
      expect(await s.versionsThroughLb()).toEqual({ v7: 20 });
    });
  },
});

/** HAProxy's servers in Fledge's backends (runtime API), as "backend/server" keys. */
async function haproxyServerRows(balancer: HaproxyBalancer): Promise<{ key: string; name: string }[]> {
  const text = await haproxyCommand(balancer.paths.runtimeSocket, 'show servers state');
  return text
    .split('\n')
    .filter((l) => /^\d+ fledge_b\d+ /.test(l))
    .map((l) => l.split(' '))
    .map((f) => ({ key: `${f[1]}/${f[3]}`, name: f[3]! }));
}

/** HAProxy's server names (serverName(taskId)), sorted. */
async function haproxyServers(balancer: HaproxyBalancer): Promise<string[]> {
  return (await haproxyServerRows(balancer)).map((r) => r.name).sort();
}

describe('a SIGKILLed Fledge process: HAProxy keeps serving, the restarted Fledge adopts it', () => {
  const CRASH_REQ = 'crash';
  let dataDir: string | undefined;
  let fledge: FledgeProcess | undefined;

  /** The managed HAProxy's master, from its pid file. */
  const masterPid = () => (dataDir ? Number(readFileSync(path.join(dataDir, 'haproxy', 'haproxy.pid'), 'utf8').trim()) : NaN);
  const haproxyAlive = (pid: number) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('haproxy');
    } catch {
      return false;
    }
  };

  afterAll(async () => {
    // Fledge first (it would restart HAProxy), then HAProxy, which outlives Fledge on purpose.
    // Tasks and the server are also killed by the file's cleanup().
    if (fledge && !fledge.exited) {
      fledge.kill('SIGKILL');
      await fledge.waitExit(10_000).catch(() => undefined);
    }
    const pid = masterPid();
    if (Number.isInteger(pid) && haproxyAlive(pid)) {
      process.kill(-pid, 'SIGKILL'); // its own process group: master and workers
      await waitFor(() => !haproxyAlive(pid), { timeoutMs: 5_000, intervalMs: 20, message: 'haproxy to stop' });
    }
  });

  it('0 failed requests through the LB across a SIGKILL and restart of Fledge; the same HAProxy master', async () => {
    const lbPort = await freePort();
    const args = ['--lb', 'haproxy', '--lb-port', String(lbPort), '--haproxy-reconcile-seconds', '1', '--log-level', 'info'];
    const portRange = reservePorts(50);
    fledge = await startFledgeProcess({ args, portRange });
    dataDir = fledge.dataDir;
    await fledge.client.createRequest(serviceRequest(CRASH_REQ, 2, { loadBalanced: true }));
    await fledge.client.createDeploy(
      exampleDeploy(CRASH_REQ, 'v1', { deploy: { serviceBasePath: '/crash', loadBalancerGroups: ['default'] } }),
    );
    expect((await waitForDeployResult(fledge.client, CRASH_REQ, 'v1', PHASE_TIMEOUT_MS)).deployResult.deployState).toBe('SUCCEEDED');
    const tasks = await waitForHealthyTasks(fledge.client, CRASH_REQ, { count: 2, exclusive: true });
    const lbUrl = `http://127.0.0.1:${lbPort}`;
    await waitFor(async () => (await fetch(`${lbUrl}/crash/x`, { signal: AbortSignal.timeout(2_000) })).ok, {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: 'the service to answer through HAProxy',
    });
    const master = masterPid();
    expect(haproxyAlive(master)).toBe(true);

    const load = startLoad(`${lbUrl}/crash/load`, { maxDurationMs: 60_000 });
    await load.warmedUp(50);
    fledge.kill('SIGKILL');
    await fledge.waitExit(10_000);
    // Fledge is gone: HAProxy serves on
    const okAtCrash = load.report.ok;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(haproxyAlive(master)).toBe(true);
    expect(load.report.ok).toBeGreaterThan(okAtCrash + 20);

    fledge = await startFledgeProcess({ dataDir, args, portRange });
    await new Promise((r) => setTimeout(r, 500));
    const report = await load.stop();
    expect(report.failures).toEqual([]);
    expect(masterPid()).toBe(master);
    expect(fledge.output()).toMatch(/adopted the haproxy left running by an earlier Fledge/);
    // the tasks were re-adopted too, and the LB still sends to exactly them
    const after = await waitForHealthyTasks(fledge.client, CRASH_REQ, { count: 2, exclusive: true });
    expect(after.map((t) => t.taskId.id).sort()).toEqual(tasks.map((t) => t.taskId.id).sort());
    expect(report.versions).toEqual({ v1: report.ok });
    // and the adopted HAProxy takes the next deploy
    await fledge.client.createDeploy(
      exampleDeploy(CRASH_REQ, 'v2', { deploy: { serviceBasePath: '/crash', loadBalancerGroups: ['default'] } }),
    );
    expect((await waitForDeployResult(fledge.client, CRASH_REQ, 'v2', PHASE_TIMEOUT_MS)).deployResult.deployState).toBe('SUCCEEDED');
    await waitFor(
      async () => JSON.parse(await (await fetch(`${lbUrl}/crash/v`, { signal: AbortSignal.timeout(2_000) })).text()).version === 'v2',
      {
        timeoutMs: 10_000,
        intervalMs: 50,
        message: 'v2 to serve through the adopted HAProxy',
      },
    );
    expect(masterPid()).toBe(master);
    await fledge.client.deleteRequest(CRASH_REQ).catch(() => undefined);
  });
});
