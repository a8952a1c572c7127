// The host registry and the composite runtime over scriptable fake runtimes, an in-memory
// store and a manual clock: routing by the placed host and by handle, snapshots for placement
// (holds of placed tasks included), states, reachability.
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

  async function setup(
    hosts: { definition: HostDefinition; capacity?: { cpus: number; memoryMb: number } }[],
    store?: Store,
    pingIntervalMs = 60_000,
  ) {
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
    const registry = new HostRegistry(entries, { store: db, clock, logger: silentLogger, unreachableMs: 10_000, pingIntervalMs });
    await registry.start();
    closing.push(() => registry.close());
    const runtime = new HostRuntime(registry);
    return { clock, store: db, registry, runtime, runtimes, pings };
  }

  it('starts each task on the host placement chose, recording the host in the handle, and routes every later call there', async () => {
    const { runtime, runtimes } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker', '10.0.0.1') }]);
    const proc = await runtime.start(baseSpec('p1', { command: 'run', host: 'local' }));
    const box = await runtime.start(baseSpec('c1', { container, host: 'd1' }));
    // A spec without a host is a process task of a record from before placement: local.
    const legacy = await runtime.start(baseSpec('p0', { command: 'run' }));
    expect(proc).toMatchObject({ kind: 'started', handle: { taskId: 'p1', host: 'local', address: '127.0.0.1' } });
    expect(box).toMatchObject({ kind: 'started', handle: { taskId: 'c1', host: 'd1', address: '10.0.0.1' } });
    expect(legacy).toMatchObject({ kind: 'started', handle: { host: 'local' } });
    expect(runtimes.get('local')?.started).toEqual(['p1', 'p0']);
    expect(runtimes.get('d1')?.started).toEqual(['c1']);
    if (box.kind !== 'started') throw new Error('not started');
    await runtime.stop(box.handle, 100);
    expect(runtimes.get('d1')?.stopped).toEqual(['c1']);
    expect(runtimes.get('local')?.stopped).toEqual([]);
    expect(await runtime.start(baseSpec('x', { host: 'gone' }))).toEqual({ kind: 'error', message: 'Host gone is not configured' });
  });

  it('waits with the host runtime’s own reason when it is short of room after all', async () => {
    const { runtime } = await setup([
      { definition: def('local', 'process') },
      { definition: def('d1', 'docker'), capacity: { cpus: 1, memoryMb: 100 } },
    ]);
    const big = baseSpec('big', { container, memoryMb: 80, host: 'd1' });
    expect(await runtime.start(big)).toMatchObject({ kind: 'started', handle: { host: 'd1' } });
    expect(await runtime.start({ ...big, taskId: 'big2' })).toEqual({
      kind: 'waiting',
      reason: 'Not enough memory: needs 80 MB, 20 MB free of 100 MB',
    });
  });

  it('snapshots every host for placement: state, reachability, attributes, and what started and placed tasks hold', async () => {
    const { runtime, registry, clock, pings } = await setup([
      { definition: def('local', 'process') },
      {
        definition: { ...def('d1', 'docker'), attributes: { rack: 'r1', gpu: 'yes' }, reservedAttributes: { gpu: 'yes' } },
        capacity: { cpus: 4, memoryMb: 1000 },
      },
    ]);
    await runtime.start(baseSpec('c1', { container, host: 'd1', cpus: 0.5, memoryMb: 100, numPorts: 1 }));
    registry.hold('c2', 'd1', { runs: 'docker', cpus: 0.25, memoryMb: 50, numPorts: 2, literalPorts: [8080] });
    // A hold whose task started meanwhile is not counted twice.
    registry.hold('c1', 'd1', { runs: 'docker', cpus: 0.5, memoryMb: 100, numPorts: 1, literalPorts: [] });
    const d1 = registry.snapshots().find((h) => h.id === 'd1')!;
    expect(d1).toMatchObject({
      runs: 'docker',
      adminState: 'ACTIVE',
      reachable: true,
      rack: 'r1',
      attributes: { rack: 'r1', gpu: 'yes' },
      reservedAttributes: { gpu: 'yes' },
      capacity: { cpus: 4, memoryMb: 1000 },
      used: { cpus: 0.75, memoryMb: 150, portsInRange: 3 },
    });
    expect([...d1.heldPorts].sort()).toEqual([31000, 8080]);
    registry.drop('c2');
    expect(registry.snapshots().find((h) => h.id === 'd1')?.used).toEqual({ cpus: 0.5, memoryMb: 100, portsInRange: 1 });
    expect(registry.snapshots().find((h) => h.id === 'local')).toMatchObject({ runs: 'process', rack: 'local', reachable: true });

    await registry.change('d1', 'freeze', 'maintenance');
    expect(registry.snapshots().find((h) => h.id === 'd1')).toMatchObject({ adminState: 'FROZEN', reachable: true });
    pings.set('d1', () => {
      throw new Error('connection refused');
    });
    clock.advance(5_000);
    await registry.tick();
    expect(registry.get('d1')?.state).toBe('FROZEN');
    clock.advance(5_000);
    await registry.tick();
    expect(registry.get('d1')).toMatchObject({ state: 'UNREACHABLE', reachability: { reachable: false, lastError: 'connection refused' } });
    expect(registry.snapshots().find((h) => h.id === 'd1')).toMatchObject({
      adminState: 'FROZEN',
      reachable: false,
      lastError: 'connection refused',
    });
    pings.delete('d1');
    clock.advance(1_000);
    await registry.tick();
    expect(registry.get('d1')).toMatchObject({ state: 'FROZEN', reachability: { reachable: true } });
  });

  it('tells its listeners when a host goes silent, answers again, or changes state', async () => {
    const { registry, clock, pings } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }]);
    const seen: string[] = [];
    registry.onChange((id, change) => seen.push(`${id}:${change}`));
    pings.set('d1', () => {
      throw new Error('down');
    });
    clock.advance(10_000);
    await registry.tick();
    await registry.tick();
    pings.delete('d1');
    await registry.tick();
    await registry.change('d1', 'freeze');
    expect(seen).toEqual(['d1:silent', 'd1:answers', 'd1:state']);
  });

  it('says whether a host answers now: at once if it does, false once a silent one is UNREACHABLE', async () => {
    const { registry, clock, pings } = await setup(
      [{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }],
      undefined,
      5,
    );
    expect(await registry.answers('local')).toBe(true);
    expect(await registry.answers('d1')).toBe(true);
    pings.set('d1', () => {
      throw new Error('down');
    });
    let settled: boolean | undefined;
    const asked = registry.answers('d1').then((v) => (settled = v));
    await new Promise((r) => setTimeout(r, 30));
    // Still within its grace: no verdict yet (a failed check there waits for the host's).
    expect(settled).toBeUndefined();
    clock.advance(10_000);
    await registry.tick();
    expect(await asked).toBe(false);
    pings.delete('d1');
    expect(await registry.answers('d1')).toBe(true);
  });

  it('completes a decommission once the host runs nothing, and keeps states across a restart', async () => {
    const store = await createStore({ kind: 'memory' });
    const first = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }], store);
    const started = await first.runtime.start(baseSpec('c1', { container, host: 'd1' }));
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

  it('completes a decommission only once no task placed there is waiting to start either', async () => {
    const { registry } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker') }]);
    registry.hold('placed', 'd1', { runs: 'docker', cpus: 0.1, memoryMb: 10, numPorts: 0, literalPorts: [] });
    await registry.change('d1', 'decommission');
    await registry.tick();
    expect(registry.get('d1')?.record.current.state).toBe('DECOMMISSIONING');
    registry.drop('placed');
    await registry.close();
    expect(registry.get('d1')?.record.current.state).toBe('DECOMMISSIONED');
  });

  it('finds a task on whichever host has it, and routes handles from before hosts existed to local', async () => {
    const { runtime, runtimes } = await setup([{ definition: def('local', 'process') }, { definition: def('d1', 'docker', '10.0.0.1') }]);
    await runtimes.get('d1')?.start(baseSpec('orphan', { container }));
    expect(await runtime.find('orphan')).toMatchObject({ taskId: 'orphan', host: 'd1', address: '10.0.0.1' });
    // Placed on a host: only that host is asked.
    expect(await runtime.find('orphan', 'd1')).toMatchObject({ host: 'd1' });
    expect(await runtime.find('orphan', 'local')).toBeUndefined();
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
    await runtime.start(baseSpec('p1', { command: 'x', host: 'local' }));
    await runtime.start(baseSpec('c1', { container, host: 'd1' }));
    runtimes.get('d1')?.exit('c1', 3);
    runtimes.get('local')?.exit('p1', 0);
    expect(exits).toEqual(['c1:3', 'p1:0']);
  });
});
