// Load balancer throughput: `npx tsx bench/lb-throughput.ts [seconds] [connections] [rounds] [backends]`.
//
// The same small backends (child Node processes answering 200 "ok") behind the builtin proxy
// (in its own child process) and behind HAProxy (managed by the haproxy balancer: Debian's
// haproxy, master-worker), both on 127.0.0.1, driven by wrk (Debian's package: a C load
// generator, so the generator is not what sets the pace), in the same run, alternating rounds.
// Prints requests/s and p99 latency of each, their ratio, and how idle the machine's CPUs were
// during each run (near 0 % idle: the numbers say as much about the machine as about the LB).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBuiltinBalancer, createHaproxyBalancer } from '../src/balancers/index.ts';
import type { Upstream } from '../src/balancers/types.ts';
import { freePort } from '../test/helpers/ports.ts';

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

/** Child role: the builtin proxy in front of the backends in argv[4] (JSON), printing its port. */
async function builtinRole(upstreams: Upstream[]): Promise<void> {
  const balancer = await createBuiltinBalancer({ port: 0 });
  await balancer.apply('bench', { serviceId: 'bench', basePath: '/bench', groups: [] }, upstreams, []);
  console.log(balancer.address().port);
  process.on('SIGTERM', () => void balancer.close().then(() => process.exit(0)));
}

interface Result {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  /** share of CPU time the machine spent idle during the run */
  idle: number;
}

function cpuTimes(): { idle: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { idle, total: fields.reduce((a, b) => a + b, 0) };
}

/** wrk's latency figures ("123.45us", "1.20ms", "2.00s") in milliseconds. */
function millis(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return NaN;
  const value = Number(m[1]);
  return m[2] === 'us' ? value / 1000 : m[2] === 's' ? value * 1000 : value;
}

function parseWrk(out: string): Omit<Result, 'idle'> {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const p50 = millis(/^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const p99 = millis(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (socket ? socket.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  if (!Number.isFinite(rps)) throw new Error(`cannot read wrk's output:\n${out}`);
  return { requests, errors, rps, p50, p99 };
}

async function load(port: number, seconds: number, connections: number): Promise<Result> {
  const threads = Math.max(1, Math.min(2, connections));
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/bench/x`];
  const before = cpuTimes();
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (c: Buffer) => (text += c.toString()));
    child.stderr.on('data', (c: Buffer) => (text += c.toString()));
    child.once('error', (err) => reject(new Error(`wrk: ${err.message} (apt-get install wrk)`)));
    child.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text}`))));
  });
  const after = cpuTimes();
  return { ...parseWrk(out), idle: (after.idle - before.idle) / Math.max(1, after.total - before.total) };
}

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

    const results: Record<'builtin' | 'haproxy', Result[]> = { builtin: [], haproxy: [] };
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
    const median = (rs: Result[]) => [...rs].sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)]!;
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
