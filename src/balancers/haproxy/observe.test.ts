// Upstream events from HAProxy's server statuses, one row per transition.
import { describe, expect, it } from 'vitest';
import { upstreamEvents, type ObservedServer } from './observe.ts';
import type { StatRow } from './runtime-api.ts';

const stat = (server: string, status: string, checkStatus?: string): StatRow => ({
  backend: 'fledge_b0',
  server,
  scur: 0,
  qcur: 0,
  stot: 0,
  status,
  ...(checkStatus !== undefined ? { checkStatus } : {}),
});
const known = (draining = false) => new Map<string, ObservedServer>([['fledge_b0/a', { serviceId: 's', taskId: 'a', draining }]]);

describe('upstreamEvents', () => {
  it.each<{ name: string; before?: string; row: StatRow; draining?: boolean; events: string[] }>([
    { name: 'first seen up: nothing', row: stat('a', 'UP'), events: [] },
    {
      name: 'up, then down: ejected, with the check status',
      before: 'UP',
      row: stat('a', 'DOWN', 'L4CON'),
      events: ['EJECTED a haproxy marked it down (L4CON)'],
    },
    { name: 'first seen down: ejected', row: stat('a', 'DOWN'), events: ['EJECTED a haproxy marked it down'] },
    { name: 'still down (another phrasing): nothing', before: 'DOWN', row: stat('a', 'DOWN 1/2'), events: [] },
    { name: 'down, then up: restored', before: 'DOWN', row: stat('a', 'UP'), events: ['RESTORED a connect check passed'] },
    { name: 'up going down: nothing until down', before: 'UP', row: stat('a', 'UP 1/3'), events: [] },
    { name: 'a draining server going down is its drain', before: 'UP', row: stat('a', 'DOWN'), draining: true, events: [] },
    { name: 'a server Fledge does not know is ignored', row: stat('rogue', 'DOWN'), events: [] },
  ])('$name', ({ before, row, draining, events }) => {
    const last = new Map(before !== undefined ? [['fledge_b0/a', before]] : []);
    const got = upstreamEvents([row], known(draining), last);
    expect(got.map((e) => `${e.kind} ${e.taskId} ${e.reason}`)).toEqual(events);
  });

  it('remembers each status and forgets servers no longer listed', () => {
    const last = new Map([['fledge_b0/gone', 'UP']]);
    upstreamEvents([stat('a', 'DOWN'), stat('rogue', 'UP')], known(true), last);
    expect([...last]).toEqual([['fledge_b0/a', 'DOWN']]);
  });
});
