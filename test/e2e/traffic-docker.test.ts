// A canary deploy of containers under steady traffic, through the builtin LB and through
// HAProxy: a real in-process Fledge with a Docker host (a private dockerd and the locally built
// image), 3 instances, canary steps of 1. Every request must answer 2xx and the LB must never
// have fewer than 3 healthy upstreams. The Docker host's address is 127.0.0.2 and the
// containers bind only that address, so health checks and LB upstreams can only work if they
// use the task's host address (as they must for hosts that are other machines).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FledgeClient } from '../../src/api/client.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { dockerDeploy } from '../helpers/docker-service.ts';
import { importTestImage } from '../helpers/docker-images.ts';
import { startDockerd, type Dockerd } from '../helpers/dockerd.ts';
import { serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { boundedClient, cleanup, tempDataDir } from '../helpers/fledge-process.ts';
import { startLoad, startMembershipSampler, versionsSentSince } from '../helpers/lb-traffic.ts';
import { freePort, reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REQ = 'shop';
const INSTANCES = 3;
const ADDRESS = '127.0.0.2';
const TIMEOUT_MS = 45_000;
let dockerd: Dockerd;
let image: string;

beforeAll(async () => {
  dockerd = await startDockerd({ name: 'traffic' });
  image = await importTestImage(dockerd.client);
}, 120_000);

afterAll(async () => {
  await cleanup();
  await dockerd?.stop();
});

const deployOf = (deployId: string, canary = false) =>
  dockerDeploy(REQ, deployId, image, {
    env: { VERSION: deployId, LISTEN_HOST: ADDRESS },
    serviceBasePath: '/shop',
    loadBalancerGroups: ['default'],
    ...(canary ? { canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 3 } } : {}),
  });

for (const lb of ['builtin', 'haproxy'] as const) {
  describe(`containers under traffic through the ${lb} LB`, () => {
    let server: FledgeServer | undefined;
    let client: FledgeClient;
    const dockerPorts = reservePorts(50);
    const localPorts = reservePorts(50);

    beforeAll(async () => {
      server = await startServer(
        loadConfig(
          {
            host: '127.0.0.1',
            port: 0,
            lbPort: lb === 'haproxy' ? await freePort() : 0,
            lb,
            ...(lb === 'haproxy' ? { haproxyReconcileSeconds: 1 } : {}),
            dataDir: tempDataDir(),
            portRangeFrom: localPorts.from,
            portRangeTo: localPorts.to,
            dockerHost: [`id=d1,endpoint=${dockerd.endpoint},address=${ADDRESS},ports=${dockerPorts.from}-${dockerPorts.to}`],
            killGraceSeconds: 2,
            drainTimeoutSeconds: 5,
            logLevel: 'warn',
          },
          {},
        ),
      );
      client = boundedClient(server.url, server.adminToken);
      await client.createRequest(serviceRequest(REQ, INSTANCES, { loadBalanced: true }));
      await client.createDeploy(deployOf('v1'));
      expect((await waitForDeployResult(client, REQ, 'v1', TIMEOUT_MS)).deployResult.deployState).toBe('SUCCEEDED');
      await waitForHealthyTasks(client, REQ, { count: INSTANCES, deployId: 'v1', exclusive: true, timeoutMs: TIMEOUT_MS });
    }, 120_000);

    afterAll(async () => {
      if (!server) return;
      const s = server;
      server = undefined;
      await client.deleteRequest(REQ).catch(() => undefined);
      await waitFor(async () => (await s.store.listTasks({ requestId: REQ, live: true })).length === 0, {
        timeoutMs: 20_000,
        message: `the containers of ${REQ} to stop`,
      }).catch((err: unknown) => console.log(`[docker ${lb}] ${String(err)}`));
      await s.close();
      await (s.balancer as { shutdown?: () => Promise<void> } | undefined)?.shutdown?.();
    });

    it('canary deploy of containers: 0 failed requests, never fewer than 3 healthy upstreams, upstreams on the host address', async () => {
      const s = server!;
      const lbUrl = s.lbUrl!;
      const upstreams = await waitFor(async () => {
        const u = await s.balancer!.upstreams(REQ);
        return u.length === INSTANCES && u;
      });
      for (const u of upstreams) {
        expect(u.host).toBe(ADDRESS);
        expect(u.port >= dockerPorts.from && u.port <= dockerPorts.to).toBe(true);
      }

      const membership = startMembershipSampler(s.store, s.balancer!, { requestId: REQ }, { intervalMs: 20, floor: INSTANCES });
      const load = startLoad(`${lbUrl}/shop/traffic`, { concurrency: 4, maxDurationMs: 60_000, requestTimeoutMs: 5_000 });
      let settledAt = 0;
      try {
        await Promise.all([load.warmedUp(20), membership.sampled()]);
        await client.createDeploy(deployOf('v2', true));
        const done = await waitForDeployResult(client, REQ, 'v2', TIMEOUT_MS);
        expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
        expect(done.deployProgress?.step).toBe(3);
        await waitForHealthyTasks(client, REQ, { count: INSTANCES, deployId: 'v2', exclusive: true, timeoutMs: TIMEOUT_MS });
        await waitFor(async () => {
          const live = new Set((await s.store.listTasks({ requestId: REQ, live: true })).map((t) => t.taskId.id));
          const members = (await s.balancer!.upstreams(REQ)).map((u) => u.taskId);
          return members.length === INSTANCES && members.every((id) => live.has(id));
        });
        settledAt = Date.now();
        await load.warmedUp(load.report.ok + 40);
      } finally {
        const report = await load.stop();
        const members = await membership.stop();
        console.log(
          `[docker ${lb}] canary: ${report.sent} requests, ${report.ok} ok, ${report.failures.length} failed, versions ${JSON.stringify(report.versions)}; ` +
            `healthy upstreams min ${members.minHealthy} over ${members.samples} samples`,
        );
        expect(report.failures.slice(0, 10)).toEqual([]);
        expect(members.errors).toEqual([]);
        expect(members.minHealthy, JSON.stringify(members.atMin)).toBeGreaterThanOrEqual(INSTANCES);
        expect(report.versions.v1).toBeGreaterThan(0);
        expect(report.versions.v2).toBeGreaterThan(0);
        if (settledAt > 0) expect(Object.keys(versionsSentSince(report, settledAt))).toEqual(['v2']);
      }
    });
  });
}
