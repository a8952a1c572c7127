// Placement, table by table: one row per rule of core/placement.ts, then the ranking, then
// several placements in one pass (Placer) and where a task record says it runs (hostOf).
import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testHost, testRequest, testTask } from '../../test/helpers/engine-values.ts';
import type { AgentPlacement, FledgeRequest } from './model.ts';
import { chooseHost, hostOf, Placer, spreadAllCount, type HostSnapshot, type PlacedTask, type PlacementInput } from './placement.ts';
import { createTask } from './tasks.ts';

const docker = (id: string, more: Partial<HostSnapshot> = {}) => testHost(id, { runs: 'docker', ...more });
const small = { cpus: 2, memoryMb: 1024 };
const demand = { runs: 'docker' as const, cpus: 0.5, memoryMb: 256, numPorts: 1, literalPorts: [] as number[] };
const on = (host: string, more: Partial<PlacedTask> = {}): PlacedTask => ({
  deployId: 'v1',
  host,
  rack: 'local',
  cleaning: false,
  ...more,
});

function choose(over: Partial<PlacementInput> & { hosts: HostSnapshot[] }, request: Partial<FledgeRequest> = {}) {
  return chooseHost({
    demand,
    deployId: 'v1',
    request: testRequest(3, request),
    instances: 3,
    placement: 'GREEDY',
    tasks: [],
    pending: 1,
    ...over,
  });
}
const hostOrReason = (r: ReturnType<typeof chooseHost>) => (r.ok ? r.host : r.reason);

describe('which hosts may take a task', () => {
  it.each<[string, Partial<PlacementInput> & { hosts: HostSnapshot[] }, Partial<FledgeRequest>, string]>([
    [
      'a container with no Docker host',
      { hosts: [testHost('local')] },
      {},
      'No Docker host is configured (start Fledge with --docker-host)',
    ],
    ['a process with Docker hosts only', { hosts: [docker('d1')], demand: { ...demand, runs: 'process' } }, {}, 'No host runs processes'],
    [
      'processes go to local, never to a Docker host',
      { hosts: [docker('d1'), testHost('local')], demand: { ...demand, runs: 'process' } },
      {},
      'local',
    ],
    ['a frozen host', { hosts: [docker('d1', { adminState: 'FROZEN' })] }, {}, 'host d1 is FROZEN and takes no new tasks'],
    [
      'a decommissioning host',
      { hosts: [docker('d1', { adminState: 'DECOMMISSIONING' })] },
      {},
      'host d1 is DECOMMISSIONING and takes no new tasks',
    ],
    [
      'a silent host, named with its error',
      { hosts: [docker('d1', { reachable: false, lastError: 'connect ECONNREFUSED' })] },
      {},
      'host d1 is UNREACHABLE (connect ECONNREFUSED)',
    ],
    [
      'every host refusing: every reason, in host order',
      {
        hosts: [
          docker('d1', { adminState: 'FROZEN' }),
          docker('d2', { capacity: small, used: { cpus: 1.75, memoryMb: 0, portsInRange: 0 } }),
        ],
      },
      {},
      'host d1 is FROZEN and takes no new tasks; host d2: Not enough cpus: needs 0.5, 0.25 free of 2',
    ],
    ['rackAffinity', { hosts: [docker('d1', { rack: 'r1' }), docker('d2', { rack: 'r2' })] }, { rackAffinity: ['r2'] }, 'd2'],
    [
      'rackAffinity matching none',
      { hosts: [docker('d1', { rack: 'r1' })] },
      { rackAffinity: ['r2', 'r3'] },
      'host d1 is in rack r1, not in rackAffinity [r2, r3]',
    ],
    [
      'requiredAgentAttributes',
      { hosts: [docker('d1', { attributes: { zone: 'a' } }), docker('d2', { attributes: { zone: 'b', ssd: 'yes' } })] },
      { requiredAgentAttributes: { zone: 'b' } },
      'd2',
    ],
    [
      'requiredAgentAttributes no host has, saying what it has',
      { hosts: [docker('d1', { attributes: { zone: 'a' } }), docker('d2')] },
      { requiredAgentAttributes: { zone: 'b', ssd: 'yes' } },
      'host d1 lacks requiredAgentAttributes zone=b, ssd=yes (it has zone=a); host d2 lacks requiredAgentAttributes zone=b, ssd=yes',
    ],
    [
      'an attribute named like an Object method is only ever an attribute',
      { hosts: [docker('d1')] },
      { requiredAgentAttributes: { constructor: 'x', toString: 'y' } },
      'host d1 lacks requiredAgentAttributes constructor=x, toString=y',
    ],
    [
      'a reserved host for a request that does not ask for it',
      { hosts: [docker('d1', { attributes: { gpu: 'yes' }, reservedAttributes: { gpu: 'yes' } })] },
      {},
      'host d1 is reserved for tasks that require or allow gpu=yes',
    ],
    [
      'a reserved host for a request that allows it',
      { hosts: [docker('d1', { attributes: { gpu: 'yes' }, reservedAttributes: { gpu: 'yes' } })] },
      { allowedAgentAttributes: { gpu: 'yes' } },
      'd1',
    ],
    [
      'a reserved host for a request that requires it',
      { hosts: [docker('d1', { attributes: { gpu: 'yes' }, reservedAttributes: { gpu: 'yes' } })] },
      { requiredAgentAttributes: { gpu: 'yes' } },
      'd1',
    ],
    [
      'capacity not known yet',
      { hosts: [docker('d1', { capacity: undefined, capacityUnknown: 'docker info: no answer yet' })] },
      {},
      'host d1: capacity unknown (docker info: no answer yet)',
    ],
    [
      'memory and ports short, both said',
      {
        hosts: [docker('d1', { capacity: small, used: { cpus: 0, memoryMb: 900, portsInRange: 1000 } })],
      },
      {},
      'host d1: Not enough memory: needs 256 MB, 124 MB free of 1024 MB; Not enough ports: needs 1, 0 free in 31000-31999',
    ],
    [
      'a literal host port held there',
      { hosts: [docker('d1', { heldPorts: new Set([8080]) }), docker('d2')], demand: { ...demand, literalPorts: [8080] } },
      {},
      'd2',
    ],
    [
      'a literal host port held everywhere',
      { hosts: [docker('d1', { heldPorts: new Set([8080]) })], demand: { ...demand, literalPorts: [8080] } },
      {},
      'host d1: host port(s) 8080 held by another task',
    ],
  ])('%s', (_name, input, request, expected) => {
    expect(hostOrReason(choose(input, request))).toBe(expected);
  });
});

describe("agentPlacement and rackSensitive (Singularity's rules)", () => {
  const two = [docker('d1'), docker('d2')];
  it.each<[string, AgentPlacement, PlacedTask[], Partial<FledgeRequest>, string]>([
    ['GREEDY takes a host that runs the deploy already', 'GREEDY', [on('d1'), on('d2')], {}, 'd1'],
    [
      'SEPARATE refuses a host with a task of the deploy, cleaning ones included',
      'SEPARATE',
      [on('d1'), on('d2', { cleaning: true })],
      {},
      'host d1 already runs a task of deploy v1 (agentPlacement SEPARATE); host d2 already runs a task of deploy v1 (agentPlacement SEPARATE)',
    ],
    ['SEPARATE shares a host with another deploy of the request', 'SEPARATE', [on('d1'), on('d2', { deployId: 'v0' })], {}, 'd2'],
    ['SEPARATE_BY_DEPLOY is SEPARATE', 'SEPARATE_BY_DEPLOY', [on('d1')], {}, 'd2'],
    ['SPREAD_ALL_AGENTS is one per host', 'SPREAD_ALL_AGENTS', [on('d1')], {}, 'd2'],
    [
      'SEPARATE_BY_REQUEST refuses any task of the request',
      'SEPARATE_BY_REQUEST',
      [on('d1'), on('d2', { deployId: 'v0' })],
      {},
      'host d1 already runs a task of request web (agentPlacement SEPARATE_BY_REQUEST); host d2 already runs a task of request web (agentPlacement SEPARATE_BY_REQUEST)',
    ],
    [
      // 3 tasks on 2 hosts: 1.5 per host, times 1 + 0.09 for the one waiting: 1.635.
      'OPTIMISTIC refuses a host above its share of the request',
      'OPTIMISTIC',
      [on('d1'), on('d1'), on('d2')],
      { agentPlacement: 'OPTIMISTIC' },
      'd2',
    ],
    ['OPTIMISTIC places anywhere when the request has no task yet', 'OPTIMISTIC', [], {}, 'd1'],
  ])('%s', (_name, placement, tasks, request, expected) => {
    expect(hostOrReason(choose({ hosts: two, placement, tasks }, request))).toBe(expected);
  });

  it('OPTIMISTIC says the share it is above', () => {
    const r = choose({
      hosts: [docker('d1'), docker('d2', { adminState: 'FROZEN' })],
      placement: 'OPTIMISTIC',
      tasks: [on('d1'), on('d1'), on('d2')],
    });
    expect(hostOrReason(r)).toBe(
      'host d1 already runs 2 task(s) of deploy v1, above its share of 1.64 (agentPlacement OPTIMISTIC); host d2 is FROZEN and takes no new tasks',
    );
  });

  // Racks r1 (d1, d2) and r2 (d3); 4 instances: 2 per rack.
  const racked = [docker('d1', { rack: 'r1' }), docker('d2', { rack: 'r1' }), docker('d3', { rack: 'r2' })];
  it.each<[string, PlacedTask[], number, string]>([
    ['an empty rack first', [on('d1', { rack: 'r1' })], 4, 'd3'],
    [
      'a full rack is refused, whatever the host',
      [on('d1', { rack: 'r1' }), on('d2', { rack: 'r1' }), on('d3', { rack: 'r2' }), on('d3', { rack: 'r2' })],
      4,
      "host d1: rack r1 already runs 2 of the deploy's 4 instance(s) spread over 2 rack(s) (rackSensitive); host d2: rack r1 already runs 2 of the deploy's 4 instance(s) spread over 2 rack(s) (rackSensitive); host d3: rack r2 already runs 2 of the deploy's 4 instance(s) spread over 2 rack(s) (rackSensitive)",
    ],
    ['an odd instance count goes to either rack once both hold their floor', [on('d1', { rack: 'r1' }), on('d3', { rack: 'r2' })], 3, 'd2'],
    ['cleaning tasks do not count for the rack', [on('d1', { rack: 'r1', cleaning: true }), on('d3', { rack: 'r2' })], 2, 'd1'],
  ])('rackSensitive: %s', (_name, tasks, instances, expected) => {
    expect(hostOrReason(choose({ hosts: racked, tasks, instances }, { rackSensitive: true }))).toBe(expected);
  });

  it('counts only the racks of hosts that take tasks of the kind', () => {
    const withDown = [...racked, docker('d4', { rack: 'r3', reachable: false }), testHost('local', { rack: 'r9' })];
    // Two racks take tasks: r1 may hold 2 of 4, so with 2 there d3 (r2) is the one.
    expect(
      hostOrReason(
        choose({ hosts: withDown, tasks: [on('d1', { rack: 'r1' }), on('d2', { rack: 'r1' })], instances: 4 }, { rackSensitive: true }),
      ),
    ).toBe('d3');
  });
});

describe('the ranking of hosts that may take a task', () => {
  it.each<[string, HostSnapshot[], PlacedTask[], Partial<FledgeRequest>, string]>([
    ['fewest tasks of the deploy first: instances spread', [docker('d1'), docker('d2')], [on('d1')], {}, 'd2'],
    ['then fewest of the request', [docker('d1'), docker('d2')], [on('d1', { deployId: 'v0' })], {}, 'd2'],
    [
      'then a host an allowedAgentAttributes entry prefers',
      [docker('d1'), docker('d2', { attributes: { ssd: 'yes' } })],
      [],
      { allowedAgentAttributes: { ssd: 'yes', zone: 'q' } },
      'd2',
    ],
    [
      'then the most free cpus and memory',
      [docker('d1', { capacity: small, used: { cpus: 1, memoryMb: 512, portsInRange: 0 } }), docker('d2', { capacity: small })],
      [],
      {},
      'd2',
    ],
    ['then the first configured', [docker('d2'), docker('d1')], [], {}, 'd2'],
  ])('%s', (_name, hosts, tasks, request, expected) => {
    expect(hostOrReason(choose({ hosts, tasks }, request))).toBe(expected);
  });
});

describe('Placer: several tasks in one pass', () => {
  const v1 = engineDeploy('v1', {}, { containerInfo: containerOf(), resources: { cpus: 1, memoryMb: 512, numPorts: 1, diskMb: 0 } });

  it('spreads the instances of one pass over the hosts and counts each against the next', () => {
    const placer = new Placer({
      request: testRequest(5),
      instances: 5,
      defaultPlacement: 'GREEDY',
      hosts: [docker('d1', { capacity: small }), docker('d2', { capacity: small })],
      tasks: [],
      counted: () => true,
      deploys: [v1],
    });
    const got = Array.from({ length: 5 }, () => hostOrReason(placer.place(v1)));
    expect(got).toEqual([
      'd1',
      'd2',
      'd1',
      'd2',
      'host d1: Not enough cpus: needs 1, 0 free of 2; Not enough memory: needs 512 MB, 0 MB free of 1024 MB; host d2: Not enough cpus: needs 1, 0 free of 2; Not enough memory: needs 512 MB, 0 MB free of 1024 MB',
    ]);
  });

  it('adds what tasks created earlier in the step hold (the snapshots count only persisted ones)', () => {
    const mine = createTask(v1, 1, T0, new Set(), { host: 'd1', rack: 'local' });
    const placer = (counted: boolean) =>
      new Placer({
        request: testRequest(2, { agentPlacement: 'GREEDY' }),
        instances: 2,
        defaultPlacement: 'SEPARATE',
        hosts: [docker('d1', { capacity: { cpus: 1, memoryMb: 4096 } })],
        tasks: [mine],
        counted: () => counted,
        deploys: [v1],
      });
    expect(hostOrReason(placer(true).place(v1))).toBe('d1');
    expect(hostOrReason(placer(false).place(v1))).toBe('host d1: Not enough cpus: needs 1, 0 free of 1');
  });

  it('falls back to the server default placement, and a request’s own wins', () => {
    const mine = createTask(v1, 1, T0, new Set(), { host: 'd1', rack: 'local' });
    const make = (request: FledgeRequest) =>
      new Placer({
        request,
        instances: 2,
        defaultPlacement: 'SEPARATE',
        hosts: [docker('d1')],
        tasks: [mine],
        counted: () => true,
        deploys: [v1],
      });
    expect(hostOrReason(make(testRequest(2)).place(v1))).toBe('host d1 already runs a task of deploy v1 (agentPlacement SEPARATE)');
    expect(hostOrReason(make(testRequest(2, { agentPlacement: 'GREEDY' })).place(v1))).toBe('d1');
  });

  it('counts SPREAD_ALL_AGENTS hosts: ACTIVE by the operator, of the kind, with the attributes', () => {
    const hosts = [
      docker('d1', { attributes: { zone: 'a' } }),
      docker('d2', { attributes: { zone: 'a' }, reachable: false }),
      docker('d3', { attributes: { zone: 'a' }, adminState: 'FROZEN' }),
      docker('d4', { attributes: { zone: 'b' } }),
      testHost('local', { attributes: { zone: 'a' } }),
    ];
    expect(spreadAllCount(testRequest(1, { requiredAgentAttributes: { zone: 'a' } }), v1, hosts)).toBe(2);
  });
});

describe('where a task record runs', () => {
  const d = engineDeploy('v1');
  it.each<[string, ReturnType<typeof testTask>, string | undefined]>([
    ['placed, not started', createTask(d, 1, T0, new Set(), { host: 'd2', rack: 'r1' }), 'd2'],
    ['started: its handle says', { ...testTask(d, 1, 'healthy'), handle: { host: 'd3' } }, 'd3'],
    ['no host took it yet', createTask(d, 1, T0, new Set(), { waiting: 'no room' }), undefined],
    [
      'a record from before placement that ran',
      { ...testTask(d, 1, 'healthy'), taskId: { ...testTask(d, 1, 'healthy').taskId, host: 'localhost' } },
      'local',
    ],
  ])('%s', (_name, task, expected) => {
    expect(hostOf(task)).toBe(expected);
  });

  it('puts the host and rack in the task id, sanitized as Singularity does', () => {
    const t = createTask(d, 2, T0, new Set(), { host: 'dock-1', rack: 'rack-a' });
    expect(t.taskId).toMatchObject({ host: 'dock-1', sanitizedHost: 'dock_1', rackId: 'rack-a', sanitizedRackId: 'rack_a' });
    expect(t.taskId.id).toBe(`web-v1-${T0}-2-dock_1-rack_a`);
    const waiting = createTask(d, 2, T0, new Set(), { waiting: 'no room' });
    expect(waiting).toMatchObject({ taskId: { id: `web-v1-${T0}-2-unplaced-unplaced`, host: 'unplaced' }, waitingReason: 'no room' });
  });
});

function containerOf() {
  return {
    type: 'DOCKER' as const,
    docker: { image: 'app:1', privileged: false, network: 'HOST' as const, portMappings: [], forcePullImage: false, dockerParameters: [] },
    volumes: [],
  };
}
