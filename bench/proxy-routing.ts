// Proxy throughput with routing rules and weights on vs off: `npx tsx bench/proxy-routing.ts [seconds] [connections] [rounds]`.
//
// Each balancer (the builtin proxy in its own child process, and HAProxy managed by the haproxy
// balancer) serves two services over the same two backends (child Node processes answering 200
// "ok", one of deploy v1, one of v2): /off without routing, /on with the routing of a canary
// (four header and cookie rules, a sticky cookie, a hashed sticky header; v2 pending). wrk drives,
// in the same run and alternating rounds: /off; /on with requests matching no rule (every rule is
// evaluated, the normal split chooses, each answer sets the sticky cookie: the costliest path);
// and /on with testers' requests (X-Canary: yes, routed to v2); then /weighted (v2 at weight 5
// of 100: a 5 % traffic step, no routing) and /both (those weights and the routing). Prints
// requests/s and p99 of each, and the on/off ratios per balancer.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBuiltinBalancer, createHaproxyBalancer } from '../src/balancers/index.ts';
import type { LbService, Upstream } from '../src/balancers/types.ts';
import { freePort } from '../test/helpers/ports.ts';
import { BACKEND, childPort, wrk, type WrkResult } from './support/wrk.ts';

const ROUTING: LbService['routing'] = {
  deployId: 'v2',
  match: [{ header: 'X-Canary', value: 'yes' }, { header: 'X-Beta-Tester' }, { cookie: 'beta', value: '1' }, { cookie: 'canary' }],
  sticky: { cookie: 'fl_v', header: 'X-User-Id', percent: 10 },
};
/** Each service, and the weight of v2's backend in it (v1 keeps the default 100). */
const SERVICES: [string, LbService, number | undefined][] = [
  ['off', { serviceId: 'off', basePath: '/off', groups: [] }, undefined],
  ['on', { serviceId: 'on', basePath: '/on', groups: [], routing: ROUTING }, undefined],
  ['weighted', { serviceId: 'weighted', basePath: '/weighted', groups: [] }, 5],
  ['both', { serviceId: 'both', basePath: '/both', groups: [], routing: ROUTING }, 5],
];

const weighted = (upstreams: Upstream[], v2Weight: number | undefined): Upstream[] =>
  v2Weight === undefined ? upstreams : upstreams.map((u) => (u.deployId === 'v2' ? { ...u, weight: v2Weight } : u));

const SELF = fileURLToPath(import.meta.url);
/** Child role: the builtin proxy with both services in front of the backends in argv[4] (JSON), printing its port. */
async function builtinRole(upstreams: Upstream[]): Promise<void> {
  const balancer = await createBuiltinBalancer({ port: 0 });
  for (const [id, service, w] of SERVICES) await balancer.apply(id, service, weighted(upstreams, w), []);
  console.log(balancer.address().port);
  process.on('SIGTERM', () => void balancer.close().then(() => process.exit(0)));
}

const load = (port: number, seconds: number, connections: number, path: string, header?: string): Promise<WrkResult> =>
  wrk(`http://127.0.0.1:${port}${path}`, seconds, connections, header);

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const dir = mkdtempSync(join(tmpdir(), 'fledge-routing-bench-'));
  const children: ChildProcess[] = [];
  let haproxy: Awaited<ReturnType<typeof createHaproxyBalancer>> | undefined;
  try {
    const upstreams: Upstream[] = [];
    for (const deployId of ['v1', 'v2']) {
      const backend = spawn(process.execPath, ['-e', BACKEND], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(backend);
      upstreams.push({ taskId: `b-${deployId}`, host: '127.0.0.1', port: await childPort(backend), deployId });
    }
    const builtin = spawn(process.execPath, ['--import', 'tsx', SELF, '--role', 'builtin', JSON.stringify(upstreams)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(builtin);
    const builtinPort = await childPort(builtin);
    haproxy = await createHaproxyBalancer({ dataDir: dir, port: await freePort(), reconcileIntervalMs: 0 });
    for (const [id, service, w] of SERVICES) {
      const status = await haproxy.apply(id, service, weighted(upstreams, w), []);
      if (status.state !== 'SUCCESS') throw new Error(`haproxy: ${status.state} ${status.message ?? ''}`);
    }
    const haproxyPort = haproxy.address().port;

    const cases = [
      { name: 'off', path: '/off/x' },
      { name: 'on, no rule matches', path: '/on/x' },
      { name: 'on, testers routed', path: '/on/x', header: 'X-Canary: yes' },
      { name: 'weights 5/100', path: '/weighted/x' },
      { name: 'weights and routing', path: '/both/x' },
    ] as const;
    type Name = (typeof cases)[number]['name'];
    // Warm up every path once (the JIT, keep-alive pools), unmeasured.
    for (const port of [builtinPort, haproxyPort])
      for (const c of cases) await load(port, 1, connections, c.path, 'header' in c ? c.header : undefined);
    const results = new Map<string, WrkResult[]>();
    for (let round = 0; round < rounds; round++) {
      for (const [lb, port] of [
        ['builtin', builtinPort],
        ['haproxy', haproxyPort],
      ] as const) {
        for (const c of cases) {
          const r = await load(port, seconds, connections, c.path, 'header' in c ? c.header : undefined);
          const key = `${lb}|${c.name}`;
          results.set(key, [...(results.get(key) ?? []), r]);
          console.log(
            `round ${round + 1} ${lb.padEnd(8)} ${c.name.padEnd(20)} ${r.rps.toFixed(0).padStart(7)} req/s  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}  machine idle ${(r.idle * 100).toFixed(0)} %`,
          );
        }
      }
    }
    const median = (lb: string, name: Name) =>
      [...(results.get(`${lb}|${name}`) ?? [])].sort((a, b) => a.rps - b.rps)[Math.floor(rounds / 2)]!;
    console.log(`\nwrk, loopback, ${connections} keep-alive connections, 2 backends, ${seconds} s per run, median of ${rounds}:`);
    for (const lb of ['builtin', 'haproxy']) {
      const off = median(lb, 'off');
      for (const c of cases) {
        const r = median(lb, c.name);
        const ratio = c.name === 'off' ? '' : `  on/off: throughput ×${(r.rps / off.rps).toFixed(2)}, p99 ×${(r.p99 / off.p99).toFixed(2)}`;
        console.log(`  ${lb.padEnd(8)} ${c.name.padEnd(20)} ${r.rps.toFixed(0).padStart(7)} req/s, p99 ${r.p99.toFixed(2)} ms${ratio}`);
      }
    }
  } finally {
    await haproxy?.shutdown(); // close() alone would leave HAProxy running
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--role') {
  await builtinRole(JSON.parse(process.argv[4] ?? '[]') as Upstream[]);
} else {
  await main();
}
