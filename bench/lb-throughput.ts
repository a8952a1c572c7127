// Load balancer throughput: `npx tsx bench/lb-throughput.ts [seconds] [connections] [rounds] [backends]`.
//
// The same small backends (child Node processes answering 200 "ok") behind the builtin proxy
// (in its own child process) and behind HAProxy (managed by the haproxy balancer: Debian's
// haproxy, master-worker), both on 127.0.0.1, driven by wrk (Debian's package: a C load
// generator, so the generator is not what sets the pace), in the same run, alternating rounds.
// Prints requests/s and p99 latency of each, their ratio, and how idle the machine's CPUs were
// during each run (near 0 % idle: the numbers say as much about the machine as about the LB).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBuiltinBalancer, createHaproxyBalancer } from '../src/balancers/index.ts';
import type { Upstream } from '../src/balancers/types.ts';
import { freePort } from '../test/helpers/ports.ts';
import { BACKEND, childPort, wrk, type WrkResult } from './support/wrk.ts';

const SELF = fileURLToPath(import.meta.url);
/** Child role: the builtin proxy in front of the backends in argv[4] (JSON), printing its port. */
async function builtinRole(upstreams: Upstream[]): Promise<void> {
  const balancer = await createBuiltinBalancer({ port: 0 });
  await balancer.apply('bench', { serviceId: 'bench', basePath: '/bench', groups: [] }, upstreams, []);
  console.log(balancer.address().port);
  process.on('SIGTERM', () => void balancer.close().then(() => process.exit(0)));
}

const load = (port: number, seconds: number, connections: number): Promise<WrkResult> =>
  wrk(`http://127.0.0.1:${port}/bench/x`, seconds, connections);

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const backends = Number(process.argv[5] ?? 2);
  const dir = mkdtempSync(join(tmpdir(), 'fledge-lb-bench-'));
  const children: ChildProcess[] = [];
  let haproxy: Awaited<ReturnType<typeof createHaproxyBalancer>> | undefined;
  try {
    const upstreams = [];
    for (let i = 0; i < backends; i++) {
      const backend = spawn(process.execPath, ['-e', BACKEND], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(backend);
      upstreams.push({ taskId: `b${i + 1}`, host: '127.0.0.1', port: await childPort(backend) });
    }
    const builtin = spawn(process.execPath, ['--import', 'tsx', SELF, '--role', 'builtin', JSON.stringify(upstreams)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(builtin);
    const builtinPort = await childPort(builtin);
    haproxy = await createHaproxyBalancer({ dataDir: dir, port: await freePort(), reconcileIntervalMs: 0 });
    await haproxy.apply('bench', { serviceId: 'bench', basePath: '/bench', groups: [] }, upstreams, []);
    const haproxyPort = haproxy.address().port;

    const results: Record<'builtin' | 'haproxy', WrkResult[]> = { builtin: [], haproxy: [] };
    for (let round = 0; round < rounds; round++) {
      for (const [name, port] of [
        ['builtin', builtinPort],
        ['haproxy', haproxyPort],
      ] as const) {
        const r = await load(port, seconds, connections);
        results[name].push(r);
        console.log(
          `round ${round + 1} ${name.padEnd(8)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}  machine idle ${(r.idle * 100).toFixed(0)} %`,
        );
      }
    }
    const median = (rs: WrkResult[]) => [...rs].sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)]!;
    const b = median(results.builtin);
    const h = median(results.haproxy);
    console.log(`\nwrk, loopback, ${connections} keep-alive connections, ${backends} backends, ${seconds} s per run, median of ${rounds}:`);
    console.log(`  builtin  ${b.rps.toFixed(0)} req/s, p99 ${b.p99.toFixed(2)} ms (machine idle ${(b.idle * 100).toFixed(0)} %)`);
    console.log(`  haproxy  ${h.rps.toFixed(0)} req/s, p99 ${h.p99.toFixed(2)} ms (machine idle ${(h.idle * 100).toFixed(0)} %)`);
    console.log(`  haproxy/builtin: throughput ×${(h.rps / b.rps).toFixed(2)}, p99 ×${(h.p99 / b.p99).toFixed(2)}`);
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
