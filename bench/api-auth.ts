// What authentication costs an API call: `npx tsx bench/api-auth.ts [seconds] [connections] [rounds]`.
//
// Two `fledge serve` processes on 127.0.0.1 (no load balancer, no tasks): one as shipped
// (tokens checked, every call's token looked up by its hash in SQLite, Host and Origin
// checked), one with --no-auth (the same Host and Origin checks, no token). wrk (Debian's
// package) drives GET /api/state on each, alternating rounds in the same run; prints req/s and
// p99 of each and their ratio, and how idle the machine was (near 0 %: a busy machine).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/ports.ts';

const BIN = fileURLToPath(new URL('../bin/fledge.js', import.meta.url));

interface Result {
  rps: number;
  p99: number;
  errors: number;
  idle: number;
}

function cpuTimes(): { idle: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { idle: (fields[3] ?? 0) + (fields[4] ?? 0), total: fields.reduce((a, b) => a + b, 0) };
}

function millis(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

async function wrk(url: string, headers: string[], seconds: number, connections: number): Promise<Result> {
  const args = ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', ...headers.flatMap((h) => ['-H', h]), url];
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
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  if (!Number.isFinite(rps)) throw new Error(`cannot read wrk's output:\n${out}`);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  return {
    rps,
    p99: millis(/^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? ''),
    errors: non2xx,
    idle: (after.idle - before.idle) / Math.max(1, after.total - before.total),
  };
}

async function serve(dataDir: string, extra: string[]): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--data-dir', dataDir, '--port', String(port), '--lb', 'none', '--log-level', 'warn', ...extra],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (
      await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return { child, url };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`fledge serve on ${url} did not answer`);
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 3);
  const connections = Number(process.argv[3] ?? 8);
  const rounds = Number(process.argv[4] ?? 3);
  const dirs = [mkdtempSync(join(tmpdir(), 'fledge-auth-bench-')), mkdtempSync(join(tmpdir(), 'fledge-auth-bench-'))];
  const children: ChildProcess[] = [];
  try {
    const on = await serve(dirs[0]!, []);
    const off = await serve(dirs[1]!, ['--no-auth']);
    children.push(on.child, off.child);
    const token = readFileSync(join(dirs[0]!, 'admin.token'), 'utf8').trim();
    const results: Record<'auth' | 'noAuth', Result[]> = { auth: [], noAuth: [] };
    for (let round = 1; round <= rounds; round++) {
      for (const [name, url, headers] of [
        ['auth', on.url, [`Authorization: Bearer ${token}`]],
        ['noAuth', off.url, []],
      ] as const) {
        const r = await wrk(`${url}/api/state`, [...headers], seconds, connections);
        results[name].push(r);
        console.log(
          `round ${round} ${name.padEnd(6)} ${r.rps.toFixed(0).padStart(6)} req/s  p99 ${r.p99.toFixed(2)} ms  non-2xx ${r.errors}  machine idle ${(r.idle * 100).toFixed(0)} %`,
        );
      }
    }
    const median = (rs: Result[]) => [...rs].sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)]!;
    const a = median(results.auth);
    const n = median(results.noAuth);
    console.log(`\nwrk, loopback, GET /api/state, ${connections} keep-alive connections, ${seconds} s per run, median of ${rounds}:`);
    console.log(`  tokens on  ${a.rps.toFixed(0)} req/s, p99 ${a.p99.toFixed(2)} ms`);
    console.log(`  --no-auth  ${n.rps.toFixed(0)} req/s, p99 ${n.p99.toFixed(2)} ms`);
    console.log(`  tokens on / --no-auth: throughput ×${(a.rps / n.rps).toFixed(2)}, p99 ×${(a.p99 / n.p99).toFixed(2)}`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

await main();
