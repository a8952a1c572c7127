// /api/hosts and Singularity's agent endpoints through app.request() (no port), over a host
// registry of fake runtimes and an in-memory store.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../core/clock.ts';
import { EventBus } from '../core/events.ts';
import { createTask } from '../core/tasks.ts';
import { HostRegistry } from '../hosts/registry.ts';
import { HostRuntime } from '../hosts/host-runtime.ts';
import type { HostDefinition } from '../hosts/types.ts';
import { silentLogger } from '../logger.ts';
import { KeyedMutex } from '../reconciler/locks.ts';
import { createFakeRuntime } from '../runtimes/fake/index.ts';
import { baseSpec } from '../runtimes/contract.case.ts';
import { createStore } from '../store/index.ts';
import { testDeploy } from '../../test/helpers/model-fixtures.ts';
import { TrustList } from '../net/addresses.ts';
import { createApp } from './app.ts';
import { FledgeService } from './service.ts';

const def = (id: string, kind: HostDefinition['kind'], extra: Partial<HostDefinition> = {}): HostDefinition => ({
  id,
  kind,
  address: kind === 'process' ? '127.0.0.1' : '10.0.0.7',
  portRange: { from: 31000, to: 31099 },
  capacity: {},
  attributes: {},
  ...extra,
});

async function fixture() {
  const store = await createStore({ kind: 'memory' });
  const clock = new ManualClock();
  const entries = [
    { definition: def('local', 'process'), runtime: createFakeRuntime({ capacity: { cpus: 2, memoryMb: 1024 } }) },
    {
      definition: def('d1', 'docker', { endpoint: 'tcp://10.0.0.7:2376', attributes: { rack: 'r1', zone: 'a' } }),
      runtime: createFakeRuntime({ capacity: { cpus: 8, memoryMb: 16384 }, portRange: { from: 31000, to: 31099 } }),
      ping: async () => undefined,
    },
  ];
  const registry = new HostRegistry(entries, { store, clock, logger: silentLogger, unreachableMs: 30_000, pingIntervalMs: 60_000 });
  await registry.start();
  const runtime = new HostRuntime(registry);
  const events = new EventBus();
  const service = new FledgeService({ store, locks: new KeyedMutex(), clock, events, wake: () => undefined, allowCanaryLbChange: false });
  // Tokens are the guard's business (guard.test.ts); these calls act as --no-auth's admin.
  const security = {
    authenticator: undefined,
    bindHost: '127.0.0.1',
    allowedHosts: [],
    allowedOrigins: [],
    trustForwardedFrom: new TrustList([]),
    maxBodyBytes: 1024 * 1024,
    maxInstances: 1000,
  };
  const app = createApp({ store, service, runtime, hosts: registry, events, clock, containers: true, logger: silentLogger, security });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await app.request(path, {
      method,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & Record<string, unknown>[] };
  };
  return { store, clock, registry, runtime, call };
}

describe('hosts API', () => {
  it('lists each host with its state, capacity, reservations and tasks', async () => {
    const { call, runtime, store, clock } = await fixture();
    const started = await runtime.start(
      baseSpec('web-v1-1', {
        host: 'd1',
        cpus: 0.5,
        memoryMb: 256,
        numPorts: 1,
        container: {
          docker: { image: 'a', privileged: false, network: 'HOST', portMappings: [], forcePullImage: false, dockerParameters: [] },
          volumes: [],
        },
      }),
    );
    if (started.kind !== 'started') throw new Error('not started');
    const task = createTask(testDeploy({ requestId: 'web', id: 'v1' }), 1, clock.now(), new Set(), { host: 'd1', rack: 'r1' });
    await store.apply({ tasks: [{ ...task, handle: started.handle, state: 'TASK_RUNNING' }] });

    const { status, body } = await call('GET', '/api/hosts');
    expect(status).toBe(200);
    expect(body).toEqual([
      expect.objectContaining({ id: 'local', kind: 'process', runtimes: ['process'], state: 'ACTIVE', tasks: [] }),
      {
        id: 'd1',
        kind: 'docker',
        runtimes: ['docker'],
        address: '10.0.0.7',
        endpoint: 'tcp://10.0.0.7:2376',
        state: 'ACTIVE',
        adminState: { state: 'ACTIVE', timestamp: clock.now(), message: 'first seen' },
        firstSeenAt: clock.now(),
        reachability: expect.objectContaining({ reachable: true }),
        capacity: { cpus: 8, memoryMb: 16384, ports: { from: 31000, to: 31099, count: 100 } },
        reserved: { cpus: 0.5, memoryMb: 256, ports: 1 },
        tasks: [task.taskId.id],
        attributes: { rack: 'r1', zone: 'a' },
        rackId: 'r1',
      },
    ]);
    expect((await call('GET', '/api/hosts/d1')).body).toMatchObject({ id: 'd1', tasks: [task.taskId.id] });
    expect((await call('GET', '/api/hosts/nope')).status).toBe(404);
  });

  it("answers Singularity's agent endpoints in SingularityAgent's shape", async () => {
    const { call, clock } = await fixture();
    const agents = await call('GET', '/api/agents');
    expect(agents.body[1]).toEqual({
      id: 'd1',
      firstSeenAt: clock.now(),
      currentState: { objectId: 'd1', state: 'ACTIVE', timestamp: clock.now(), message: 'first seen' },
      host: '10.0.0.7',
      rackId: 'r1',
      attributes: { rack: 'r1', zone: 'a' },
      resources: { cpus: 8, mem: 16384, ports: '[31000-31099]' },
      fledgeState: 'ACTIVE',
    });
    expect((await call('GET', '/api/slaves')).body).toEqual(agents.body);
    expect((await call('GET', '/api/agents/agent/d1/details')).body).toEqual(agents.body[1]);
    expect((await call('GET', '/api/slaves/slave/d1/details')).body).toEqual(agents.body[1]);
    expect((await call('GET', '/api/agents?state=ACTIVE')).body).toHaveLength(2);
    expect((await call('GET', '/api/agents?state=DECOMMISSIONED')).body).toEqual([]);
    expect((await call('GET', '/api/agents?state=GONE')).status).toBe(400);
  });

  it('decommissions, freezes and activates a host, keeping the history, with 409 for a change that does not apply', async () => {
    const { call, clock } = await fixture();
    clock.advance(1000);
    const freeze = await call('POST', '/api/agents/agent/d1/freeze', { message: 'kernel upgrade', durationMillis: 60_000 });
    expect(freeze.status).toBe(200);
    expect(freeze.body).toMatchObject({ currentState: { state: 'FROZEN', message: 'kernel upgrade' } });
    expect(freeze.body.warnings).toEqual([
      'durationMillis: accepted and stored, but Fledge does not act on it (host state changes do not expire in Fledge)',
    ]);
    expect((await call('POST', '/api/agents/agent/d1/freeze')).status).toBe(409);
    clock.advance(1000);
    // Empty: DECOMMISSIONING completes at once.
    const decommission = await call('POST', '/api/slaves/slave/d1/decommission', {});
    expect(decommission.body).toMatchObject({ currentState: { state: 'DECOMMISSIONED', message: 'no tasks left' } });
    const history = await call('GET', '/api/agents/agent/d1');
    expect((history.body as unknown as { state: string }[]).map((h) => h.state)).toEqual([
      'DECOMMISSIONED',
      'DECOMMISSIONING',
      'FROZEN',
      'ACTIVE',
    ]);
    expect((await call('POST', '/api/hosts/d1/freeze')).body).toMatchObject({
      message: expect.stringContaining('Host d1 is DECOMMISSIONED: activate it before freezing it'),
    });
    const activate = await call('POST', '/api/hosts/d1/activate', { message: 'back' });
    expect(activate.body).toMatchObject({ id: 'd1', state: 'ACTIVE', adminState: { state: 'ACTIVE', message: 'back' }, warnings: [] });
    expect((await call('POST', '/api/agents/agent/nope/activate')).status).toBe(404);
    expect((await call('POST', '/api/hosts/d1/freeze', { reason: 'x' })).status).toBe(400);
  });
});
