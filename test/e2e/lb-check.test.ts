// The `lb` acceptance check end to end, through each balancer (builtin proxy and a managed
// HAProxy): a real in-process Fledge runs the example service as processes in the LB while a
// client loop sends steady GETs through the balancer.
// - a canary whose new version answers 5 % 500s is FAILED by the check and rolled back, and the
//   only failed requests the client saw are the canary's own 500s (none from the abort);
// - a healthy canary passes it, the message giving both sides' numbers;
// - with too few requests the check stays PENDING until the acceptance timeout fails the deploy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeployInput, FledgeClient } from '../../src/api/client.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { boundedClient, cleanup, leakedProcesses, tempDataDir, trackTasks } from '../helpers/fledge-process.ts';
import { startLoad, type LoadFailure } from '../helpers/lb-traffic.ts';
import { freePort, reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REQ = 'web';
const INSTANCES = 2;
const TIMEOUT_MS = 45_000;
/** The decision log's acceptance answers, as `(check - STATE) message`. */
const acceptanceLines = (entry: object) =>
  ((entry as { decisionLog?: { kind: string; observed?: string }[] }).decisionLog ?? [])
    .filter((d) => d.kind === 'ACCEPTANCE_RESULT')
    .map((d) => d.observed ?? '');
const LB_FIELDS: Partial<DeployInput> = { serviceBasePath: '/web', loadBalancerGroups: ['default'] };

describe.each(['builtin', 'haproxy'] as const)('lb check through the %s balancer', (lb) => {
  const range = reservePorts(60);
  let server: FledgeServer | undefined;
  let client: FledgeClient;
  let lbUrl: string;

  const canary = (deployId: string, check: Record<string, unknown>, deploy: Partial<DeployInput> = {}, env: Record<string, string> = {}) =>
    exampleDeploy(REQ, deployId, {
      env,
      deploy: {
        ...LB_FIELDS,
        canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'CHECKS' },
        acceptanceChecks: [{ name: 'errors', type: 'lb', intervalSeconds: 0.5, ...check } as never],
        ...deploy,
      },
    });

  const settledOn = async (deployId: string) => {
    const tasks = await waitForHealthyTasks(client, REQ, { count: INSTANCES, deployId, exclusive: true, timeoutMs: TIMEOUT_MS });
    const ids = tasks.map((t) => t.taskId.id).sort();
    await waitFor(
      async () => JSON.stringify((await server!.balancer!.upstreams(REQ)).map((u) => u.taskId).sort()) === JSON.stringify(ids),
      { timeoutMs: TIMEOUT_MS, intervalMs: 20, message: `the LB to serve exactly the tasks of ${deployId}` },
    );
  };

  beforeAll(async () => {
    server = await startServer(
      loadConfig(
        {
          host: '127.0.0.1',
          port: 0,
          lbPort: lb === 'haproxy' ? await freePort() : 0,
          lb,
          portRangeFrom: range.from,
          portRangeTo: range.to,
          dataDir: tempDataDir(),
          killGraceSeconds: 2,
          drainTimeoutSeconds: 5,
          logLevel: 'warn',
        },
        {},
      ),
      {},
    );
    client = boundedClient(server.url, server.adminToken);
    if (!server.lbUrl || !server.balancer) throw new Error(`the ${lb} LB did not start`);
    lbUrl = server.lbUrl;
    await client.createRequest(serviceRequest(REQ, INSTANCES, { loadBalanced: true }));
    await client.createDeploy(exampleDeploy(REQ, 'v1', { deploy: LB_FIELDS }));
    expect((await waitForDeployResult(client, REQ, 'v1', TIMEOUT_MS)).deployResult.deployState).toBe('SUCCEEDED');
    await settledOn('v1');
  });

  afterAll(async () => {
    try {
      if (server) {
        trackTasks(await client.requestTasks(REQ).catch(() => []));
        await client.deleteRequest(REQ).catch(() => undefined);
        const s = server;
        await waitFor(async () => (await s.store.listTasks({ requestId: REQ, live: true })).length === 0, {
          timeoutMs: 20_000,
          intervalMs: 50,
          message: 'the tasks to end after the request was deleted',
        }).catch((err: unknown) => console.log(`[lb check ${lb}] ${String(err)}`));
        await server.close();
        const balancer = server.balancer as { shutdown?: () => Promise<void> } | undefined;
        server = undefined;
        await balancer?.shutdown?.();
      }
    } finally {
      await cleanup();
    }
    expect(leakedProcesses()).toEqual([]);
  });

  it('fails a canary answering 5 % 500s and rolls it back; no request failed by the abort itself', async () => {
    const load = startLoad(`${lbUrl}/web/traffic`, { concurrency: 4, maxDurationMs: 60_000, requestTimeoutMs: 5_000 });
    let failures: LoadFailure[] = [];
    try {
      await load.warmedUp(20);
      await client.createDeploy(
        canary('v2', { maxErrorRate: 0.02, maxErrorRateVsOld: 2, minRequests: 150, windowSeconds: 60 }, {}, { ERROR_RATE: '0.05' }),
      );
      const done = await waitForDeployResult(client, REQ, 'v2', TIMEOUT_MS);
      expect(done.deployResult.deployState).toBe('FAILED');
      expect(done.deployResult.message).toMatch(
        /^Acceptance check errors failed: new \d+\.\d % errors over [\d,]+ requests vs old 0\.0 % over [\d,]+ over the last \d+ s: FAILED \(error rate/,
      );
      // the new deploy's share is 0 right after: out of the rotation, then no more of its answers
      await waitFor(async () => !(await server!.balancer!.upstreams(REQ)).some((u) => u.deployId === 'v2'), {
        timeoutMs: 5_000,
        intervalMs: 20,
        message: 'v2 to leave the LB after the FAILED verdict',
      });
      const outAt = Date.now();
      await settledOn('v1');
      await load.warmedUp(load.report.ok + 50);
      const report = await load.stop();
      failures = report.failures;
      expect(report.answers.filter((a) => a.version === 'v2' && a.sentAt > outAt + 100)).toEqual([]);
      console.log(
        `[lb check ${lb}] ${report.sent} requests, ${report.failures.length} failed, versions ${JSON.stringify(report.versions)}; ${done.deployResult.message}`,
      );
    } finally {
      failures = (await load.stop()).failures;
    }
    // The canary's own 500s are the only failures: v2's body, status 500. Nothing else (no
    // connection error, no 502/503/504, no v1 failure) came from the abort.
    const notCanary = failures.filter((f) => !(f.status === 500 && f.body?.includes('"version":"v2"')));
    expect(notCanary).toEqual([]);
    expect(failures.length).toBeGreaterThan(0);
  });

  it('passes a healthy canary, giving both sides’ numbers', async () => {
    const load = startLoad(`${lbUrl}/web/traffic`, { concurrency: 4, maxDurationMs: 60_000, requestTimeoutMs: 5_000 });
    try {
      await load.warmedUp(20);
      await client.createDeploy(canary('v3', { maxErrorRate: 0.01, maxErrorRateVsOld: 2, maxP99Ms: 5000, minRequests: 50 }));
      const done = await waitForDeployResult(client, REQ, 'v3', TIMEOUT_MS);
      expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
      const lines = acceptanceLines(done);
      expect(lines.filter((l) => l.includes('SUCCEEDED')).length).toBeGreaterThanOrEqual(INSTANCES);
      for (const line of lines.filter((l) => l.includes('SUCCEEDED')))
        expect(line).toMatch(
          /^\(errors - SUCCEEDED\) new 0\.0 % errors, p99 [\d.]+ ms over [\d,]+ requests vs old 0\.0 %, p99 [\d.]+ ms over [\d,]+/,
        );
      await settledOn('v3');
      expect((await load.stop()).failures).toEqual([]);
    } finally {
      await load.stop();
    }
  });

  it('with too few requests stays PENDING, never passes, and the acceptance timeout fails it saying so', async () => {
    // no load: the step's window holds no requests
    await client.createDeploy(canary('v4', { maxErrorRate: 0.5, minRequests: 100 }, { acceptanceTimeoutSeconds: 4 }));
    const done = await waitForDeployResult(client, REQ, 'v4', TIMEOUT_MS);
    expect(done.deployResult.deployState).toBe('FAILED');
    expect(done.deployResult.message).toMatch(
      /^Acceptance did not pass within 4 seconds; last: \(errors - PENDING\) too few requests over the last \d s: new 0, old 0 \(minRequests 100 per side\)/,
    );
    const lines = acceptanceLines(done);
    expect(lines.some((l) => l.startsWith('(errors - PENDING) too few requests'))).toBe(true);
    expect(lines.some((l) => l.includes('SUCCEEDED'))).toBe(false);
    await settledOn('v3');
  });
});
