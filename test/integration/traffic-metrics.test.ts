// Known traffic through each load balancer, read back exactly: a real in-process Fledge (process
// runtime, HTTP health checks) with the builtin proxy, then with a managed HAProxy, serves a
// MANUAL canary of the example service held at its first acceptance wait (v1 and v2 in the
// LB side by side). Requests sent through the LB — answers counted per version by what the
// service itself said, some of them 503s — must come back as the same numbers from the API's
// traffic view and from /metrics (per deploy and per task), with the deploy counters, task
// gauges, health-check and reconcile series beside them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FledgeClient } from '../../src/api/client.ts';
import type { TrafficView } from '../../src/api/traffic-view.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { boundedClient } from '../helpers/fledge-process.ts';
import { freePort, reservePorts } from '../helpers/ports.ts';
import { killSandboxTasks } from '../helpers/process-cleanup.ts';
import { waitFor } from '../helpers/wait-for.ts';

const LB = { serviceBasePath: '/web', loadBalancerGroups: ['default'] };
const MANUAL = { canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' } };

/** The value of one series (labels as a subset), summed over what else differs. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const body = /\{(.*)\}/.exec(line)?.[1] ?? '';
    const have = Object.fromEntries([...body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

for (const lb of ['builtin', 'haproxy'] as const) {
  describe(`traffic and metrics through the ${lb} load balancer`, () => {
    let server: FledgeServer | undefined;
    let client: FledgeClient;
    let dataDir: string;
    let lbUrl: string;
    const ports = reservePorts(50);

    beforeAll(async () => {
      dataDir = mkdtempSync(path.join(tmpdir(), `fledge-traffic-${lb}-`));
      server = await startServer(
        loadConfig(
          {
            dataDir,
            port: 0,
            lb,
            lbPort: lb === 'haproxy' ? await freePort() : 0,
            portRangeFrom: ports.from,
            portRangeTo: ports.to,
            killGraceSeconds: 2,
            drainTimeoutSeconds: 2,
            // exact counts: passive protection would mark servers answering 503 down, and
            // HAProxy's own answers then (<NOSRV>) count for no task
            lbEjectAfterFailures: 0,
            logLevel: 'warn',
          },
          {},
        ),
      );
      client = boundedClient(server.url, server.adminToken);
      lbUrl = server.lbUrl!;
      await client.createRequest(serviceRequest('web', 2, { loadBalanced: true }));
      await client.createDeploy(exampleDeploy('web', 'v1', { deploy: LB }));
      await waitForDeployResult(client, 'web', 'v1');
      await client.createDeploy(exampleDeploy('web', 'v2', { deploy: { ...LB, ...MANUAL } }));
      await waitFor(
        async () => {
          const p = (await client.getRequest('web')).pendingDeployState?.deployProgress;
          return p?.phase === 'ACCEPTANCE' && p.step === 1;
        },
        { timeoutMs: 30_000, message: 'v2 to wait at its first acceptance' },
      );
    }, 90_000);

    afterAll(async () => {
      if (server) {
        await client.deleteRequest('web').catch(() => undefined);
        const s = server;
        await waitFor(async () => (await s.store.listTasks({ live: true })).length === 0, { timeoutMs: 20_000 }).catch(() => undefined);
        await (server.balancer as { shutdown?: () => Promise<void> } | undefined)?.shutdown?.();
        await server.close();
      }
      await killSandboxTasks(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    });

    async function through(pathname: string): Promise<{ status: number; version: string }> {
      const res = await fetch(`${lbUrl}/web${pathname}`, { signal: AbortSignal.timeout(5_000) });
      const body = (await res.json()) as { version: string };
      return { status: res.status, version: body.version };
    }

    it('reads back exactly the requests sent, per version and status class, from the API and /metrics', async () => {
      // both versions serve side by side at the gate
      const members = await server!.balancer!.upstreams('web');
      expect(new Set(members.map((m) => m.deployId))).toEqual(new Set(['v1', 'v2']));
      const sent: Record<string, { ok: number; failed: number }> = {};
      const note = (r: { status: number; version: string }) => {
        const s = (sent[r.version] ??= { ok: 0, failed: 0 });
        if (r.status === 503) s.failed += 1;
        else s.ok += 1;
      };
      for (let i = 0; i < 30; i++) note(await through('/ok'));
      for (let i = 0; i < 10; i++) note(await through('/status/503'));
      const total = 40;

      let view: TrafficView | undefined;
      await waitFor(
        async () => {
          const res = await fetch(`${server!.url}/api/requests/request/web/traffic?windowSeconds=120&stepSeconds=10`, {
            headers: { authorization: `Bearer ${server!.adminToken}` },
          });
          view = (await res.json()) as TrafficView;
          return view.total.requests >= total;
        },
        { timeoutMs: 10_000, message: `${total} requests in the traffic view` },
      );
      expect(view!.available).toBe(true);
      expect(view!.balancer).toBe(lb);
      expect(view!.total.requests).toBe(total);
      for (const version of ['v1', 'v2']) {
        const v = view!.versions.find((x) => x.deployId === version)!;
        expect(v.role).toBe(version === 'v1' ? 'active' : 'pending');
        expect(v.requests).toBe((sent[version]?.ok ?? 0) + (sent[version]?.failed ?? 0));
        expect(v.responses['5xx']).toBe(sent[version]?.failed ?? 0);
        expect(v.responses['2xx']).toBe(sent[version]?.ok ?? 0);
        expect(v.series.reduce((n, p) => n + p.requests, 0)).toBe(v.requests);
        expect(v.latencyMs.p99).not.toBeNull();
        expect(v.tasksInLb).toBeGreaterThanOrEqual(1);
      }
      // round robin over the tasks in the LB: the split is by membership and by requests alike
      expect(view!.splitBasis).toBe('requests');
      expect(view!.split).toMatch(/^v1 \d+ % \/ v2 \d+ %$/);
      expect(view!.total.errorRate).toBeCloseTo(10 / 40, 5);

      const res = await fetch(`${server!.url}/metrics`, { headers: { authorization: `Bearer ${server!.adminToken}` } });
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(metric(text, 'fledge_lb_requests_total', { service: 'web', balancer: lb })).toBe(total);
      for (const version of ['v1', 'v2']) {
        const s = sent[version] ?? { ok: 0, failed: 0 };
        expect(metric(text, 'fledge_lb_requests_total', { service: 'web', deploy: version })).toBe(s.ok + s.failed);
        expect(metric(text, 'fledge_lb_responses_total', { service: 'web', deploy: version, class: '5xx' })).toBe(s.failed);
        expect(metric(text, 'fledge_lb_request_duration_seconds_count', { service: 'web', deploy: version })).toBe(s.ok + s.failed);
      }
      // per task: every live task of the request that served has its own series
      const tasks = await client.requestTasks('web');
      const perTask = tasks.map((t) => metric(text, 'fledge_lb_requests_total', { task: t.taskId.id }));
      expect(perTask.reduce((a, b) => a + b, 0)).toBe(total);
      expect(metric(text, 'fledge_lb_upstream_errors_total', { service: 'web' })).toBe(0);

      // the engine's own series
      expect(metric(text, 'fledge_deploys_started_total')).toBe(2);
      expect(metric(text, 'fledge_deploys_ended_total', { result: 'SUCCEEDED' })).toBe(1);
      expect(metric(text, 'fledge_deploy_phase_seconds_count', { phase: 'HEALTH' })).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'fledge_deploy_step_seconds_count')).toBeGreaterThanOrEqual(1);
      expect(metric(text, 'fledge_tasks', { state: 'TASK_RUNNING', host: 'local' })).toBe(
        tasks.filter((t) => t.state === 'TASK_RUNNING').length,
      );
      expect(metric(text, 'fledge_pending_deploys')).toBe(1);
      expect(metric(text, 'fledge_health_checks_total', { result: 'ok' })).toBeGreaterThan(0);
      expect(metric(text, 'fledge_reconcile_pass_seconds_count')).toBeGreaterThan(0);
      expect(metric(text, 'fledge_store_operation_seconds_count', { operation: 'apply' })).toBeGreaterThan(0);
      expect(metric(text, 'fledge_leader')).toBe(1);
    });

    it('times a rejected canary back to the old deploy at full capacity', async () => {
      await client.rejectDeploy('web', 'v2', 'errors too high');
      const result = await waitForDeployResult(client, 'web', 'v2');
      expect(result.deployResult.deployState).toBe('FAILED');
      await waitForHealthyTasks(client, 'web', { count: 2, deployId: 'v1' });
      await waitFor(
        async () => {
          const res = await fetch(`${server!.url}/metrics`, { headers: { authorization: `Bearer ${server!.adminToken}` } });
          return metric(await res.text(), 'fledge_deploy_recovery_seconds_count', { result: 'FAILED' }) === 1;
        },
        { timeoutMs: 15_000, message: 'the recovery to be timed' },
      );
    });
  });
}
