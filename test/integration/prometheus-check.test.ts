// The `prometheus` acceptance check against a real Prometheus (Debian's package): started here
// on a reserved loopback port with a temp config scraping small local HTTP services that expose
// per-task request counters, the way a deploy's tasks would; stopped by pid, temp dir removed.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FledgeClient } from '../../src/api/client.ts';
import { prometheusCheckFactory } from '../../src/checks/prometheus/index.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import type { CheckContext } from '../../src/checks/types.ts';
import type { AcceptanceCheckSpec, Deploy, FledgeRequest, TaskId } from '../../src/core/model.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult } from '../helpers/example-service.ts';
import { boundedClient, cleanup, tempDataDir, trackTasks } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const BINARY = '/usr/bin/prometheus';
const present = existsSync(BINARY);
if (!present) console.log(`[prometheus check] skipped: ${BINARY} is absent (apt-get install prometheus; CI installs it)`);

// Task ids shaped like Fledge's, with a dot (deploy ids may have one) to exercise the escaping.
const NEW = ['web-v2.0-1-1700000000001', 'web-v2.0-2-1700000000002'];
const OLD = ['web-v1.0-1-1700000000003', 'web-v1.0-2-1700000000004'];
// requests and 500s each task reports (a counter, as a service would keep)
const COUNTS: Record<string, { ok: number; errors: number }> = {
  [NEW[0]!]: { ok: 950, errors: 50 },
  [NEW[1]!]: { ok: 960, errors: 40 },
  [OLD[0]!]: { ok: 995, errors: 5 },
  [OLD[1]!]: { ok: 1000, errors: 3 },
};
const ERRORS_RATIO = 'sum(app_requests_total{code="500",task=~"$TASK_IDS"}) / sum(app_requests_total{task=~"$TASK_IDS"})';
const REQUESTS = 'sum(app_requests_total{task=~"$TASK_IDS"})';

const ports = present ? reservePorts(6) : { from: 0, to: 0 };
const PROM_PORT = ports.from;
const PROM_URL = `http://127.0.0.1:${PROM_PORT}`;
let prometheus: ChildProcess | undefined;
let dir: string | undefined;
const servers: Server[] = [];

const taskId = (id: string): TaskId => {
  const deployId = id.startsWith('web-v2') ? 'v2.0' : 'v1.0';
  return { id, requestId: 'web', deployId, instanceNo: 1, startedAt: 0, host: 'local' } as unknown as TaskId;
};
const context = (newIds = NEW, oldIds = OLD): CheckContext => ({
  request: { id: 'web' } as FledgeRequest,
  deploy: { id: 'v2.0' } as Deploy,
  progress: {} as CheckContext['progress'],
  step: 1,
  taskIds: { newActive: newIds.map(taskId), newInactive: [], otherActive: oldIds.map(taskId) },
  deployIds: { new: 'v2.0', old: oldIds.length > 0 ? ['v1.0'] : [] },
  now: Date.now(),
  signal: AbortSignal.timeout(20_000),
});
const spec = (options: Record<string, unknown>, failOnError = true): AcceptanceCheckSpec => ({
  name: 'errors',
  type: 'prometheus',
  intervalSeconds: 1,
  timeoutSeconds: 20,
  failOnError,
  options: { oldFloor: 0, ...options },
});
const factory = prometheusCheckFactory({ url: PROM_URL, allow: [] });
const ask = (options: Record<string, unknown>, ctx = context()) => factory(spec(options)).evaluate(ctx);

async function query(q: string): Promise<unknown> {
  const res = await fetch(`${PROM_URL}/api/v1/query?query=${encodeURIComponent(q)}`, { signal: AbortSignal.timeout(5_000) });
  return ((await res.json()) as { data?: { result?: unknown[] } }).data?.result;
}

describe.skipIf(!present)('prometheus check against a real Prometheus', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fledge-prom-'));
    const targets: string[] = [];
    for (const [i, id] of [...NEW, ...OLD].entries()) {
      const port = ports.from + 1 + i;
      const { ok, errors } = COUNTS[id]!;
      const server = createServer((req, res) => {
        if (req.url !== '/metrics') return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(
          `# TYPE app_requests_total counter\napp_requests_total{task="${id}",code="200"} ${ok}\napp_requests_total{task="${id}",code="500"} ${errors}\n`,
        );
      });
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
      servers.push(server);
      targets.push(`127.0.0.1:${port}`);
    }
    const config = join(dir, 'prometheus.yml');
    writeFileSync(
      config,
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tasks\n    static_configs:\n      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]\n`,
    );
    prometheus = spawn(
      BINARY,
      [
        `--config.file=${config}`,
        `--web.listen-address=127.0.0.1:${PROM_PORT}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        '--storage.tsdb.retention.time=1h',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    prometheus.stderr!.on('data', (c: Buffer) => (log = (log + c.toString()).slice(-4000)));
    await waitFor(
      async () => {
        if (prometheus?.exitCode !== null) throw new Error(`prometheus exited: ${log}`);
        const result = await query('count(app_requests_total)').catch(() => undefined);
        return Array.isArray(result) && (result[0] as { value: [number, string] } | undefined)?.value[1] === '8';
      },
      { timeoutMs: 30_000, intervalMs: 250, message: 'Prometheus to scrape the 4 tasks' },
    );
  });

  afterAll(async () => {
    const child = prometheus;
    if (child?.pid !== undefined && child.exitCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('threshold mode: passes below max, fails above it, with the value', async () => {
    const q = 'sum(app_requests_total{code="500",task=~"$NEW_TASK_IDS"}) / sum(app_requests_total{task=~"$NEW_TASK_IDS"})';
    expect(await ask({ query: q, max: 0.1 })).toEqual({ state: 'SUCCEEDED', message: '0.045: SUCCEEDED' });
    expect(await ask({ query: q, max: 0.01 })).toEqual({ state: 'FAILED', message: '0.045: FAILED (> max 0.01)' });
    // the old tasks through $OLD_TASK_IDS, and min
    const old = 'sum(app_requests_total{task=~"$OLD_TASK_IDS"})';
    expect(await ask({ query: old, min: 2000 })).toEqual({ state: 'SUCCEEDED', message: '2003: SUCCEEDED' });
  });

  it('compare mode: the new tasks against the old ones through $TASK_IDS', async () => {
    // new 4.5 % vs old 0.4 %
    const failed = await ask({ query: ERRORS_RATIO, maxVsOld: 2 });
    expect(failed).toEqual({ state: 'FAILED', message: 'new 0.045 vs old 0.003994: FAILED (> 2 × old 0.003994)' });
    expect((await ask({ query: ERRORS_RATIO, maxVsOld: 20 })).state).toBe('SUCCEEDED');
  });

  it('too few samples is PENDING, never a pass; enough samples judges', async () => {
    const pending = await ask({ query: ERRORS_RATIO, maxVsOld: 20, samplesQuery: REQUESTS, minSamples: 5000 });
    expect(pending).toEqual({ state: 'PENDING', message: 'too few samples: new 2000, old 2003 (minSamples 5000)' });
    expect((await ask({ query: ERRORS_RATIO, maxVsOld: 20, samplesQuery: REQUESTS, minSamples: 1000 })).state).toBe('SUCCEEDED');
  });

  it('no series for the new tasks is PENDING', async () => {
    const q = 'sum(app_requests_total{task=~"$NEW_TASK_IDS"})';
    expect(await ask({ query: q, max: 10 }, context(['web-v2.0-9-1700000000009']))).toEqual({
      state: 'PENDING',
      message: 'the query gave nothing (no series) for the new deploy yet',
    });
  });

  it('a query Prometheus refuses is an error naming its reason (the runner applies failOnError)', async () => {
    await expect(ask({ query: 'sum(app_requests_total{', max: 1 })).rejects.toThrow(
      /Prometheus refused the query \(400 bad_data\): .*parse error/,
    );
    await expect(ask({ query: 'app_requests_total', max: 1 })).rejects.toThrow('the query returned 8 series; aggregate it to one');
  });

  it('a Prometheus that does not answer is an error naming where', async () => {
    const down = `http://127.0.0.1:${ports.to}`;
    const check = prometheusCheckFactory({ url: down, allow: [] })(spec({ query: 'up', max: 1 }));
    await expect(check.evaluate(context())).rejects.toThrow(`Prometheus at ${down} could not be reached: connect ECONNREFUSED`);
    // a url the server does not allow is refused at each call
    const other = prometheusCheckFactory({ url: PROM_URL, allow: [] })(spec({ query: 'up', max: 1, url: 'http://127.0.0.2:9090' }));
    await expect(other.evaluate(context())).rejects.toThrow('127.0.0.2:9090 is not a Prometheus server this server may query');
  });

  describe('deployed through the API of a server started with --prometheus-url', () => {
    const taskRange = reservePorts(20);
    let server: FledgeServer | undefined;
    let client: FledgeClient;
    const deploy = (id: string, check: Record<string, unknown>) =>
      exampleDeploy('svc', id, {
        deploy: {
          canaryDeploySettings: { acceptanceMode: 'CHECKS' },
          acceptanceChecks: [{ name: 'errors', type: 'prometheus', intervalSeconds: 0.5, ...check } as never],
        },
      });

    beforeAll(async () => {
      server = await startServer(
        loadConfig(
          {
            host: '127.0.0.1',
            port: 0,
            lb: 'none',
            portRangeFrom: taskRange.from,
            portRangeTo: taskRange.to,
            dataDir: tempDataDir(),
            prometheusUrl: PROM_URL,
            killGraceSeconds: 2,
            logLevel: 'warn',
          },
          {},
        ),
        {},
      );
      client = boundedClient(server.url, server.adminToken);
      await client.createRequest(serviceRequest('svc', 1));
    });

    afterAll(async () => {
      try {
        if (server) {
          trackTasks(await client.requestTasks('svc').catch(() => []));
          await client.deleteRequest('svc').catch(() => undefined);
          const s = server;
          await waitFor(async () => (await s.store.listTasks({ requestId: 'svc', live: true })).length === 0, {
            timeoutMs: 20_000,
            intervalMs: 50,
          }).catch(() => undefined);
          await server.close();
          server = undefined;
        }
      } finally {
        await cleanup();
      }
    });

    it('passes a deploy under its max and fails one over it, with the value in the message', async () => {
      // 98 500s counted across the four scraped tasks
      const total = 'sum(app_requests_total{code="500"})';
      await client.createDeploy(deploy('v1', { query: total, max: 200 }));
      const passed = await waitForDeployResult(client, 'svc', 'v1', 30_000);
      expect(passed.deployResult.deployState, passed.deployResult.message).toBe('SUCCEEDED');
      await client.createDeploy(deploy('v2', { query: total, max: 10 }));
      const failed = await waitForDeployResult(client, 'svc', 'v2', 30_000);
      expect(failed.deployResult.deployState).toBe('FAILED');
      expect(failed.deployResult.message).toBe('Acceptance check errors failed: 98: FAILED (> max 10)');
    });

    it('refuses a check naming a Prometheus the server may not ask, with a 400 on its url', async () => {
      const res = await fetch(`${server!.url}/api/deploys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server!.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(deploy('v3', { query: 'up', max: 1, url: 'http://169.254.169.254/' })),
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { message: string; details: { field: string }[] };
      expect(body.message).toContain('169.254.169.254 is not a Prometheus server this server may query');
      expect(body.details.map((d) => d.field)).toEqual(['deploy.acceptanceChecks[0].url']);
    });
  });
});
