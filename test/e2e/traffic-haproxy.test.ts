// The under-traffic proof through HAProxy: a real in-process Fledge with `--lb haproxy`
// (managed: Fledge runs Debian's haproxy in master-worker mode) runs the shared phases (a)-(e) of
// test/e2e/traffic-suite.ts (atomic, canary, failing canary, cancelled MANUAL canary, rollback),
// each with 0 failed requests and never fewer than 4 healthy upstreams in rotation, and a dead
// task leaving the rotation. Then (f) HAProxy is SIGKILLed mid-deploy: Fledge restarts it and it
// comes back with exactly the servers Fledge has, and (g) a server deleted behind Fledge's back
// is put back by the periodic reconcile. Task ports 37400-37599. Needs haproxy on PATH
// (.ci/run installs it): without it the suite fails.
import { expect, it } from 'vitest';
import type { HaproxyBalancer } from '../../src/balancers/index.ts';
import { serverName } from '../../src/balancers/haproxy/config.ts';
import { haproxyCommand } from '../../src/balancers/haproxy/index.ts';
import { waitForDeployResult } from '../helpers/example-service.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { INSTANCES, PHASE_TIMEOUT_MS, REQ, trafficSuite } from './traffic-suite.ts';

trafficSuite({
  lb: 'haproxy',
  config: { haproxyReconcileSeconds: 1, portRangeFrom: 37400, portRangeTo: 37599 },
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
      await waitFor(async () => (await s.fledge().store.listTasks({ requestId: REQ, live: true })).some((t) => t.taskId.deployId === 'v6'), {
        timeoutMs: PHASE_TIMEOUT_MS,
        intervalMs: 20,
        message: 'v6 tasks to start',
      });
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

    it('(g) a server deleted behind Fledge\'s back is put back by the periodic reconcile', async () => {
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
