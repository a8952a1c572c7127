// Load balancer throughput: `npx tsx bench/lb-throughput.ts [seconds] [concurrency] [rounds]`.
//
// The same small backend (a child Node process answering 200 "ok") behind the builtin proxy
// (in its own child process, so it does not share a CPU with the load generator) and behind
// HAProxy (managed by the haproxy balancer: Debian's haproxy, master-worker, default threads),
// both on 127.0.0.1, driven by the same keep-alive load generator in this process, in the
// same run, alternating rounds. Prints requests/s and p99 latency of each and their ratio.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBuiltinBalancer, createHaproxyBalancer } from '../src/balancers/index.ts';

const SELF = fileURLToPath(import.meta.url);
const BACKEND = `
const http = require('node:http');
const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); });
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => console.log(s.address().port));
`;

async function childPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /^(\d+)$/m.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before printing its port: ${out}`)));
  });
}

/** Child role: the builtin proxy in front of the backend at argv[3], printing its port. */
async function builtinRole(backendPort: number): Promise<void> {
  const balancer = await createBuiltinBalancer({ port: 0 });
  await balancer.apply(
    'bench',
    { serviceId: 'bench', basePath: '/bench', groups: [] },
    [{ taskId: 'b1', host: '127.0.0.1', port: backendPort }],
    [],
  );
  console.log(balancer.address().port);
  process.on('SIGTERM', () => void balancer.close().then(() => process.exit(0)));
}

interface Result {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

async function load(port: number, seconds: number, concurrency: number): Promise<Result> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let errors = 0;
  let measuring = false;
  const warmupMs = 500;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = process.hrtime.bigint();
      const req = http.get({ host: '127.0.0.1', port, path: '/bench/x', agent }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) errors += 1;
          else if (measuring) latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
          resolve();
        });
      });
      req.on('error', () => {
        errors += 1;
        resolve();
      });
    });
  let stop = false;
  const workers = Array.from({ length: concurrency }, async () => {
    while (!stop) await one();
  });
  await new Promise((r) => setTimeout(r, warmupMs));
  measuring = true;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (Date.now() - t0) / 1000;
  stop = true;
  await Promise.all(workers);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN;
  return { requests: latencies.length, errors, rps: latencies.length / elapsed, p50: q(0.5), p99: q(0.99) };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const concurrency = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 2);
  const dir = mkdtempSync(join(tmpdir(), 'fledge-lb-bench-'));
  const children: ChildProcess[] = [];
  let haproxy: Awaited<ReturnType<typeof createHaproxyBalancer>> | undefined;
  try {
    const backend = spawn(process.execPath, ['-e', BACKEND], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(backend);
    const backendPort = await childPort(backend);
    const builtin = spawn(process.execPath, ['--import', 'tsx', SELF, '--role', 'builtin', String(backendPort)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(builtin);
    const builtinPort = await childPort(builtin);
    haproxy = await createHaproxyBalancer({ dataDir: dir, port: 0, reconcileIntervalMs: 0 });
    await haproxy.apply(
      'bench',
      { serviceId: 'bench', basePath: '/bench', groups: [] },
      [{ taskId: 'b1', host: '127.0.0.1', port: backendPort }],
      [],
    );
    const haproxyPort = haproxy.address().port;

    const results: Record<'builtin' | 'haproxy', Result[]> = { builtin: [], haproxy: [] };
    for (let round = 0; round < rounds; round++) {
      for (const [name, port] of [
        ['builtin', builtinPort],
        ['haproxy', haproxyPort],
      ] as const) {
        const r = await load(port, seconds, concurrency);
        results[name].push(r);
        console.log(
          `round ${round + 1} ${name.padEnd(8)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  errors ${r.errors}`,
        );
      }
    }
    const best = (rs: Result[]) => rs.reduce((a, b) => (b.rps > a.rps ? b : a));
    const b = best(results.builtin);
    const h = best(results.haproxy);
    console.log(`\nloopback, ${concurrency} keep-alive clients, ${seconds} s per run, best of ${rounds}:`);
    console.log(`  builtin  ${b.rps.toFixed(0)} req/s, p99 ${b.p99.toFixed(2)} ms`);
    console.log(`  haproxy  ${h.rps.toFixed(0)} req/s, p99 ${h.p99.toFixed(2)} ms`);
    console.log(`  haproxy/builtin: throughput ×${(h.rps / b.rps).toFixed(2)}, p99 ×${(h.p99 / b.p99).toFixed(2)}`);
  } finally {
    await haproxy?.shutdown(); // close() alone would leave HAProxy running
    for (const c of children) c.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--role') {
  await builtinRole(Number(process.argv[4]));
} else {
  await main();
}
