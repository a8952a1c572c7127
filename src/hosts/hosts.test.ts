// The host registry and the composite runtime over scriptable fake runtimes, an in-memory
// store and a manual clock: placement at the edge, routing by handle, states, reachability.
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../core/clock.ts';
import { silentLogger } from '../logger.ts';
import { createFakeRuntime, type FakeRuntime } from '../runtimes/fake/index.ts';
import { baseSpec } from '../runtimes/contract.case.ts';
import type { TaskSpec } from '../runtimes/types.ts';
import { createStore } from '../store/index.ts';
import type { Store } from '../store/types.ts';
import { HostRuntime } from './host-runtime.ts';
import { HostRegistry, type HostEntry } from './registry.ts';
import { transition } from './states.ts';
import type { AdminState, HostAction, HostDefinition } from './types.ts';

const def = (id: string, kind: HostDefinition['kind'], address = '127.0.0.1'): HostDefinition => ({
  id,
  kind,
  address,
  portRange: { from: 31000, to: 31099 },
  capacity: {},
  attributes: {},
});

const container: TaskSpec['container'] = {
  docker: { image: 'app:1', privileged: false, network: 'HOST', portMappings: [], forcePullImage: false, dockerParameters: [] },
  volumes: [],
};

describe('host states (Singularity transitions)', () => {
  it.each<[AdminState, HostAction, AdminState | string]>([
    ['ACTIVE', 'decommission', 'DECOMMISSIONING'],
    ['FROZEN', 'decommission', 'DECOMMISSIONING'],
    ['DECOMMISSIONING', 'decommission', 'is DECOMMISSIONING already'],
    ['DECOMMISSIONED', 'decommission', 'is DECOMMISSIONED already'],
    ['ACTIVE', 'freeze', 'FROZEN'],
    ['FROZEN', 'freeze', 'is FROZEN already'],
    ['DECOMMISSIONING', 'freeze', 'is DECOMMISSIONING: activate it before freezing it'],
    ['FROZEN', 'activate', 'ACTIVE'],
    ['DECOMMISSIONED', 'activate', 'ACTIVE'],
    ['ACTIVE', 'activate', 'is ACTIVE already'],
  ])('%s + %s → %s', (from, action, expected) => {
    const t = transition(from, action);
    expect(t.ok ? t.next : t.reason).toBe(expected);
  });
});

describe('host registry and runtime', () => {
  const closing: (() => Promise<void>)[] = [];
  afterEach(async () => {
    while (closing.length > 0) await closing.pop()?.();
  });

  async function setup(hosts: { definition: HostDefinition; capacity?: { cpus: number; memoryMb: number } }[], store?: Store) {
    const clock = new ManualClock();
    const db = store ?? (await createStore({ kind: 'memory' }));
    const runtimes = new Map<string, FakeRuntime>();
    const pings = new Map<string, () => void>();
    const entries: HostEntry[] = hosts.map(({ definition, capacity }) => {
      const runtime = createFakeRuntime({ capacity: capacity ?? { cpus: 4, memoryMb: 4096 }, portRange: definition.portRange });
      runtimes.set(definition.id, runtime);
      return {
        definition,
        runtime,
        ...(definition.kind === 'docker'
          ? {
              ping: async () => {
                pings.get(definition.id)?.();
              },
            }
          : {}),
      };
    });
    const registry = new HostRegistry(entries, { store: db, clock, logger: silentLogger, unreachableMs: 10_000, pingIntervalMs: 60_000 });
    await registry.start();
    closing.push(() => registry.close());
    const runtime = new HostRuntime(registry);
    return { clock, store: db, registry, runtime, runtimes, pings };
  }

  it('runs containers on Docker hosts and everything else on local, recording the host in the handle', async () => {
    const { runtime, runtimes } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker', '10.0.0.1') }]);
    const proc = await runtime.start(baseSpec('p1', { command: 'run' }));
    const box = await runtime.start(baseSpec('c1', { container }));
    expect(proc).toMatchObject({ kind: 'started', handle: { taskId: 'p1', host: 'local', address: '127.0.0.1' } });
    expect(box).toMatchObject({ kind: 'started', handle: { taskId: 'c1', host: 'd1', address: '10.0.0.1' } });
    expect(runtimes.get('local')?.started).toEqual(['p1']);
    expect(runtimes.get('d1')?.started).toEqual(['c1']);
    // Later calls go to the task's host.
    if (box.kind !== 'started') throw new Error('not started');
    await runtime.stop(box.handle, 100);
    expect(runtimes.get('d1')?.stopped).toEqual(['c1']);
    expect(runtimes.get('local')?.stopped).toEqual([]);
  });

  it('fails a container with no Docker host, and waits with every host’s reason when none has room', async () => {
    const single = await setup([{ definition: def('local', 'process') }]);
    expect(await single.runtime.start(baseSpec('c1', { container }))).toEqual({
      kind: 'error',
      message: 'No Docker host is configured (start Fledge with --docker-host)',
    });

    const two = await setup([
      { definition: def('local', 'process') },
      { definition: def('d1', 'docker'), capacity: { cpus: 1, memoryMb: 100 } },
      { definition: def('d2', 'docker', '10.0.0.2'), capacity: { cpus: 1, memoryMb: 100 } },
    ]);
    const big = baseSpec('big', { container, memoryMb: 80 });
    expect(await two.runtime.start(big)).toMatchObject({ kind: 'started', handle: { host: 'd1' } });
    expect(await two.runtime.start({ ...big, taskId: 'big2' })).toMatchObject({ kind: 'started', handle: { host: 'd2' } });
    const third = await two.runtime.start({ ...big, taskId: 'big3' });
    expect(third).toEqual({
      kind: 'waiting',
      reason:
        'host d1: Not enough memory: needs 80 MB, 20 MB free of 100 MB; host d2: Not enough memory: needs 80 MB, 20 MB free of 100 MB',
    });
  });

  it('places nothing new on a frozen, decommissioning or unreachable host', async () => {
    const { runtime, registry, clock, pings } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }]);
    await registry.change('d1', 'freeze', 'maintenance');
    expect(await runtime.start(baseSpec('c1', { container }))).toEqual({
      kind: 'waiting',
      reason: 'host d1 is FROZEN and takes no new tasks',
    });
    await registry.change('d1', 'activate');
    expect((await runtime.start(baseSpec('c1', { container }))).kind).toBe('started');

    pings.set('d1', () => {
      throw new Error('connection refused');
    });
    clock.advance(5_000);
    await registry.tick();
    expect(registry.get('d1')?.state).toBe('ACTIVE');
    clock.advance(5_000);
    await registry.tick();
    expect(registry.get('d1')).toMatchObject({ state: 'UNREACHABLE', reachability: { reachable: false, lastError: 'connection refused' } });
    expect(await runtime.start(baseSpec('c2', { container }))).toEqual({
      kind: 'waiting',
      reason: 'host d1 is UNREACHABLE (connection refused)',
    });

    pings.delete('d1');
    clock.advance(1_000);
    await registry.tick();
    expect(registry.get('d1')).toMatchObject({ state: 'ACTIVE', reachability: { reachable: true } });
  });

  it('completes a decommission once the host runs nothing, and keeps states across a restart', async () => {
    const store = await createStore({ kind: 'memory' });
    const first = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }], store);
    const started = await first.runtime.start(baseSpec('c1', { container }));
    if (started.kind !== 'started') throw new Error('not started');
    const decommissioning = await first.registry.change('d1', 'decommission', 'retiring it');
    expect(decommissioning.record.current).toMatchObject({ state: 'DECOMMISSIONING', message: 'retiring it' });
    await expect(first.registry.change('d1', 'decommission')).rejects.toMatchObject({
      status: 409,
      message: 'Host d1 is DECOMMISSIONING already',
    });
    await expect(first.registry.change('nope', 'activate')).rejects.toMatchObject({ status: 404 });

    await first.runtime.stop(started.handle, 100);
    await first.runtime.release(started.handle);
    await first.registry.tick();
    expect(first.registry.get('d1')?.record.current.state).toBe('DECOMMISSIONED');
    expect(first.registry.get('d1')?.record.history.map((h) => h.state)).toEqual(['DECOMMISSIONED', 'DECOMMISSIONING', 'ACTIVE']);
    await first.registry.close();

    const second = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }], store);
    expect(second.registry.get('d1')?.state).toBe('DECOMMISSIONED');
    expect(second.registry.get('local')?.state).toBe('ACTIVE');
  });

  it('finds a task on whichever host has it, and routes handles from before hosts existed to local', async () => {
    const { runtime, runtimes } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker', '10.0.0.1') }]);
    await runtimes.get('d1')?.start(baseSpec('orphan', { container }));
    expect(await runtime.find('orphan')).toMatchObject({ taskId: 'orphan', host: 'd1', address: '10.0.0.1' });
    expect(await runtime.find('nowhere')).toBeUndefined();
    await runtimes.get('local')?.start(baseSpec('old', { command: 'x' }));
    expect(await runtime.inspect({ taskId: 'old' })).toMatchObject({ state: 'running' });
    expect(await runtime.inspect({ taskId: 'old', host: 'gone' })).toEqual({
      state: 'lost',
      message: 'Host gone is not configured any more',
    });
  });

  it('reports exits of every host through one onExit', async () => {
    const { runtime, runtimes } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }]);
    const exits: string[] = [];
    runtime.onExit((taskId, status) => exits.push(`${taskId}:${status.exitCode}`));
    await runtime.start(baseSpec('p1', { command: 'x' }));
    await runtime.start(baseSpec('c1', { container }));
    runtimes.get('d1')?.exit('c1', 3);
    runtimes.get('local')?.exit('p1', 0);
    expect(exits).toEqual(['c1:3', 'p1:0']);
  });
});
