// Every backend family's fake is selectable from config (`fledge serve --runtime fake --lb fake
// --health fake --checks fake --store memory`), for tests and the scale bench — and only with
// --allow-fakes, so nobody runs one in production by mistake.
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { ConfigError } from '../../src/config/options.ts';
import { silentLogger } from '../../src/logger.ts';
import type { FakeRuntime } from '../../src/runtimes/fake/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { tempDataDir } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(2);
const ALL_FAKES = { runtime: 'fake', lb: 'fake', health: 'fake', checks: 'fake', store: 'memory' } as const;

let server: FledgeServer | undefined;
let dataDir: string | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe('fakes from config', () => {
  it.each([
    [{ runtime: 'fake' }, {}, 'Invalid runtime (FLEDGE_RUNTIME): fake is a fake for tests and the scale bench'],
    [{ lb: 'fake' }, {}, 'Invalid lb (FLEDGE_LB): fake is a fake'],
    [{}, { FLEDGE_HEALTH: 'fake' }, 'Invalid health (FLEDGE_HEALTH): fake is a fake'],
    [{ checks: 'fake' }, {}, 'Invalid checks (FLEDGE_CHECKS): fake is a fake'],
    [{ store: 'memory' }, {}, 'Invalid store (FLEDGE_STORE): memory is a fake'],
    [{ runtime: 'fake', allowFakes: false }, { FLEDGE_ALLOW_FAKES: 'true' }, 'give --allow-fakes'],
  ])('refuses %j %j without --allow-fakes, naming the flag', (flags, env, message) => {
    expect(() => loadConfig(flags, env)).toThrow(ConfigError);
    expect(() => loadConfig(flags, env)).toThrow(message);
    expect(() => loadConfig(flags, env)).toThrow('--allow-fakes (FLEDGE_ALLOW_FAKES=true)');
  });

  it('takes them with --allow-fakes (flag or variable); the defaults are the real ones', () => {
    expect(loadConfig({ ...ALL_FAKES, allowFakes: true }, {})).toMatchObject({ ...ALL_FAKES, store: { kind: 'memory' } });
    expect(loadConfig({ runtime: 'fake' }, { FLEDGE_ALLOW_FAKES: 'true' }).runtime).toBe('fake');
    expect(loadConfig({}, {})).toMatchObject({
      runtime: 'process',
      lb: 'builtin',
      health: 'probe',
      checks: 'real',
      store: { kind: 'sqlite' },
    });
  });

  it('runs a server of fakes end to end through its API: a canary deploy with a declared check succeeds, no process runs', async () => {
    dataDir = tempDataDir();
    const config = loadConfig({ ...ALL_FAKES, allowFakes: true, dataDir, port: PORTS.from, logLevel: 'silent' }, {});
    server = await startServer(config, { logger: silentLogger });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${server!.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${server!.adminToken}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    expect(server.store.description).toBe('sqlite::memory:');
    await call('POST', '/api/requests', { id: 'web', requestType: 'SERVICE', instances: 3, loadBalanced: true });
    const deploy = (id: string, canary: boolean) => ({
      deploy: {
        requestId: 'web',
        id,
        command: 'nothing runs this',
        resources: { cpus: 0.1, memoryMb: 16, numPorts: 1 },
        serviceBasePath: '/web',
        loadBalancerGroups: ['default'],
        healthcheck: { uri: '/health' },
        acceptanceChecks: [{ name: 'smoke', type: 'http', url: 'http://127.0.0.1:1/nothing-listens' }],
        ...(canary ? { canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'CHECKS' } } : {}),
      },
    });
    const settled = (id: string) =>
      waitFor(
        async () => {
          const p = await call('GET', '/api/requests/request/web');
          return (p.activeDeploy as { id?: string } | undefined)?.id === id && !p.pendingDeploy ? p : false;
        },
        { timeoutMs: 20_000 },
      );
    await call('POST', '/api/deploys', deploy('d1', false));
    await settled('d1');
    await call('POST', '/api/deploys', deploy('d2', true));
    const parent = await settled('d2');
    expect(parent.state).toBe('ACTIVE');
    const history = await call('GET', '/api/history/request/web/deploy/d2');
    expect((history.deployResult as { deployState: string }).deployState).toBe('SUCCEEDED');
    // The tasks ran in the fake runtime, and the fake balancer holds them.
    const fake = server.hosts.entries().find((e) => e.definition.id === 'local')!.runtime as FakeRuntime;
    await waitFor(() => fake.running().length === 3, { timeoutMs: 10_000 });
    expect(fake.running().every((t) => t.includes('web-d2'))).toBe(true);
    expect((await server.balancer!.upstreams('web')).map((u) => u.taskId).sort()).toEqual(fake.running().sort());

    // The loop's passes and ticks (its work between two turns of the event loop) are in /metrics.
    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    const text = await res.text();
    const value = (series: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(`${series} `))
          ?.slice(series.length + 1),
      );
    expect(text).toContain('# TYPE fledge_reconcile_tick_seconds histogram');
    const passes = value('fledge_reconcile_pass_seconds_count');
    const ticks = value('fledge_reconcile_tick_seconds_count');
    expect(passes).toBeGreaterThan(0);
    // every pass has at least one tick, its last
    expect(ticks).toBeGreaterThanOrEqual(passes);
    expect(value('fledge_reconcile_tick_seconds_bucket{le="+Inf"}')).toBe(ticks);
    expect(value('fledge_reconcile_tick_seconds_sum')).toBeLessThanOrEqual(value('fledge_reconcile_pass_seconds_sum'));
  });
});
