// The reconcile's decisions, one row per kind of drift: Fledge's servers against the rows of
// `show servers state`, as the ordered repairs the balancer runs.
import { describe, expect, it } from 'vitest';
import { backendsToCheck, mapDiffers, planReconcile, type ReconcileStep, type WantedServer } from './reconcile.ts';
import type { ServerStateRow } from './runtime-api.ts';

const upstream = (taskId: string, port: number, weight?: number) => ({
  taskId,
  host: '127.0.0.1',
  port,
  ...(weight !== undefined ? { weight } : {}),
});
const want = (name: string, port: number, o: { draining?: boolean; weight?: number; backend?: string } = {}): WantedServer => ({
  backend: o.backend ?? 'fledge_b0',
  name,
  upstream: upstream(name, port, o.weight),
  draining: o.draining ?? false,
});
const row = (server: string, port: number, o: Partial<ServerStateRow> = {}): ServerStateRow => ({
  backend: 'fledge_b0',
  server,
  host: '127.0.0.1',
  port,
  weight: 100,
  adminState: 0,
  maint: false,
  drain: false,
  ...o,
});
/** A step as a line: its kind and what it acts on. */
const brief = (s: ReconcileStep) => {
  switch (s.kind) {
    case 'add':
    case 'recreate':
      return `${s.kind} ${s.key}${s.enable ? '' : ' (drains)'}`;
    case 'note':
      return `note: ${s.repair}`;
    case 'weight':
      return `weight ${s.key} ${s.weight}`;
    default:
      return `${s.kind} ${s.key}`;
  }
};

describe('planReconcile', () => {
  it.each<{ name: string; wanted: WantedServer[]; live: ServerStateRow[]; steps: string[]; missing?: string[] }>([
    { name: 'in step: nothing to do', wanted: [want('a', 1)], live: [row('a', 1)], steps: [] },
    { name: 'a new server missing from haproxy is added and enabled', wanted: [want('a', 1)], live: [], steps: ['add fledge_b0/a'] },
    {
      name: 'a missing server that should drain is added, then set to drain',
      wanted: [want('a', 1, { draining: true })],
      live: [],
      steps: ['add fledge_b0/a (drains)', 'drain fledge_b0/a'],
    },
    {
      name: 'a server of a backend haproxy lacks is left for a reload',
      wanted: [want('a', 1, { backend: 'fledge_b3' })],
      live: [],
      missing: ['fledge_b3'],
      steps: [],
    },
    {
      name: 'a server at another address is re-created',
      wanted: [want('a', 2)],
      live: [row('a', 1)],
      steps: ['recreate fledge_b0/a'],
    },
    {
      name: 'a drained server serving again is set back to drain',
      wanted: [want('a', 1, { draining: true })],
      live: [row('a', 1)],
      steps: ['note: server fledge_b0/a set back to drain', 'drain fledge_b0/a'],
    },
    {
      name: 'a draining server haproxy has in maintenance stays so',
      wanted: [want('a', 1, { draining: true })],
      live: [row('a', 1, { maint: true })],
      steps: [],
    },
    {
      name: 'a serving server haproxy has draining is put back into rotation',
      wanted: [want('a', 1)],
      live: [row('a', 1, { drain: true })],
      steps: ['ready fledge_b0/a'],
    },
    {
      name: 'a weight changed behind Fledge is set back',
      wanted: [want('a', 1, { weight: 32 })],
      live: [row('a', 1, { weight: 100 })],
      steps: ['weight fledge_b0/a 32'],
    },
    {
      name: 'a server in maintenance with the wrong weight is put back, then re-weighed',
      wanted: [want('a', 1)],
      live: [row('a', 1, { maint: true, weight: 7 })],
      steps: ['ready fledge_b0/a', 'weight fledge_b0/a 100'],
    },
    {
      name: "a draining server's weight is left alone",
      wanted: [want('a', 1, { draining: true, weight: 32 })],
      live: [row('a', 1, { drain: true, weight: 100 })],
      steps: [],
    },
    {
      name: 'an unknown server (idle or busy) is taken out; it is deleted when idle',
      wanted: [want('a', 1)],
      live: [row('a', 1), row('rogue', 9)],
      steps: ['remove-unknown fledge_b0/rogue'],
    },
    {
      name: "servers of the user's own backends are not Fledge's to touch",
      wanted: [],
      live: [row('x', 9, { backend: 'users_backend' })],
      steps: [],
    },
    {
      name: 'serving ones first, then drains, unknown ones last',
      wanted: [want('old', 1, { draining: true }), want('new', 2)],
      live: [row('old', 1), row('rogue', 9)],
      steps: ['note: server fledge_b0/old set back to drain', 'add fledge_b0/new', 'drain fledge_b0/old', 'remove-unknown fledge_b0/rogue'],
    },
  ])('$name', ({ wanted, live, steps, missing }) => {
    expect(planReconcile(wanted, live, new Set(missing)).map(brief)).toEqual(steps);
  });

  it('says what each repair was, in the order it is made', () => {
    const steps = planReconcile(
      [want('a', 2), want('b', 3, { weight: 5 }), want('c', 4)],
      [row('a', 1), row('b', 3), row('c', 4, { maint: true })],
    );
    expect(steps.flatMap((s) => ('repair' in s ? [s.repair] : []))).toEqual([
      're-created server fledge_b0/a: haproxy had 127.0.0.1:1, Fledge 127.0.0.1:2',
      'server fledge_b0/b weight set back to 5 (haproxy had 100)',
      'server fledge_b0/c put back into rotation (haproxy had it in maintenance)',
    ]);
  });
});

describe('backendsToCheck', () => {
  it.each([
    { name: 'a backend with rows exists', wanted: [want('a', 1)], live: [row('b', 2)], check: [] },
    { name: 'a backend without rows may be empty or missing', wanted: [want('a', 1)], live: [], check: ['fledge_b0'] },
    {
      name: 'a server haproxy has needs no check',
      wanted: [want('a', 1, { backend: 'fledge_b1' })],
      live: [row('a', 1, { backend: 'fledge_b1' })],
      check: [],
    },
    { name: 'each backend once', wanted: [want('a', 1), want('b', 2)], live: [], check: ['fledge_b0'] },
  ])('$name', ({ wanted, live, check }) => {
    expect(backendsToCheck(wanted, live)).toEqual(check);
  });
});

describe('mapDiffers', () => {
  it.each([
    {
      name: 'same entries in another order',
      live: ['/b fledge_b1', '/a fledge_b0'],
      want: [
        ['/a', 'fledge_b0'],
        ['/b', 'fledge_b1'],
      ],
      differs: false,
    },
    {
      name: 'an entry missing',
      live: ['/a fledge_b0'],
      want: [
        ['/a', 'fledge_b0'],
        ['/b', 'fledge_b1'],
      ],
      differs: true,
    },
    { name: 'an entry pointing elsewhere', live: ['/a fledge_b1'], want: [['/a', 'fledge_b0']], differs: true },
    { name: 'an extra entry', live: ['/a fledge_b0', '/x fledge_b9'], want: [['/a', 'fledge_b0']], differs: true },
  ] as { name: string; live: string[]; want: [string, string][]; differs: boolean }[])('$name', ({ live, want: entries, differs }) => {
    expect(mapDiffers(live, entries)).toBe(differs);
  });
});
