import { afterEach, describe, expect, it } from 'vitest';
import type { HostView } from '../api/client.ts';
import { runCli } from './main.ts';
import { captureIo, reply, startFake, type FakeFledge } from './fake-server.ts';
import { T0 } from './test-fixtures.ts';

let fake: FakeFledge;
afterEach(async () => fake?.close());

const run = (args: string[], io = captureIo()) => runCli(['--server', fake.url, ...args], io).then((code) => ({ code, io }));

const host = (id: string, more: Partial<HostView> = {}): HostView => ({
  id,
  kind: 'docker',
  runtimes: ['docker'],
  address: '10.0.0.7',
  endpoint: 'tcp://10.0.0.7:2376',
  state: 'ACTIVE',
  adminState: { state: 'ACTIVE', timestamp: T0, message: 'first seen' },
  firstSeenAt: T0,
  reachability: { reachable: true, lastOkAt: T0 },
  capacity: { cpus: 8, memoryMb: 16384, ports: { from: 31000, to: 31099, count: 100 } },
  reserved: { cpus: 0.5, memoryMb: 256, ports: 1 },
  tasks: ['web-v1-1'],
  attributes: { rack: 'r1' },
  rackId: 'r1',
  ...more,
});

describe('fledge host', () => {
  it('lists hosts with state, capacity, reservations and tasks', async () => {
    const hosts = [
      host('local', {
        kind: 'process',
        runtimes: ['process'],
        address: '127.0.0.1',
        tasks: [],
        reserved: { cpus: 0, memoryMb: 0, ports: 0 },
      }),
      host('d1'),
      host('d2', { state: 'UNREACHABLE', capacity: null, reachability: { reachable: false, lastError: 'connection refused' }, tasks: [] }),
    ];
    fake = await startFake({ 'GET /api/hosts': () => hosts });
    const { code, io } = await run(['host', 'list']);
    expect(code).toBe(0);
    expect(io.out()).toBe(
      [
        'HOST   KIND     ADDRESS    STATE        CPUS   MEMORY MB  PORTS  TASKS',
        'local  process  127.0.0.1  ACTIVE       0/8    0/16384    0/100  0',
        'd1     docker   10.0.0.7   ACTIVE       0.5/8  256/16384  1/100  1',
        'd2     docker   10.0.0.7   UNREACHABLE  0.5/?  256/?      1/?    0',
        '',
      ].join('\n'),
    );
    expect(JSON.parse((await run(['host', 'ls', '--json'])).io.out())).toEqual(hosts);
  });

  it('shows one host, and changes its state with a message', async () => {
    fake = await startFake({
      'GET /api/hosts/d1': () => host('d1'),
      'POST /api/hosts/d1/decommission': () => host('d1', { state: 'DECOMMISSIONING', warnings: [] }),
      'POST /api/hosts/nope/freeze': () => reply(404, { message: 'Host nope not found', details: [] }),
    });
    const shown = await run(['host', 'get', 'd1']);
    expect(shown.io.out()).toContain('memory       256 of 16384 MB reserved');
    expect(shown.io.out()).toContain('  web-v1-1');
    const changed = await run(['host', 'decommission', 'd1', '-m', 'retire']);
    expect(changed.io.out()).toBe('host d1: DECOMMISSIONING\n');
    expect(fake.calls.find((c) => c.method === 'POST')?.body).toEqual({ message: 'retire' });
    const missing = await run(['host', 'freeze', 'nope']);
    expect(missing.code).toBe(3);
    expect(missing.io.err()).toContain('Host nope not found');
  });
});
