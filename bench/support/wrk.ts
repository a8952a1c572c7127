// What the proxy benches share: small Node backends answering 200 "ok" in child processes, and
// wrk (Debian's package: a C load generator, so the generator does not set the pace) with the
// machine's idle share measured over each run.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** A child's source: an HTTP server on a free loopback port that prints the port. */
export const BACKEND = `
const http = require('node:http');
const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok'); });
s.keepAliveTimeout = 60000;
s.listen(0, '127.0.0.1', () => console.log(s.address().port));
`;

/** The port a child prints on a line of its own. */
export async function childPort(child: ChildProcess): Promise<number> {
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

export interface WrkResult {
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

function parseWrk(out: string): Omit<WrkResult, 'idle'> {
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

/** One wrk run against a URL on loopback, with the latency distribution and an optional header. */
export async function wrk(url: string, seconds: number, connections: number, header?: string): Promise<WrkResult> {
  const threads = Math.max(1, Math.min(2, connections));
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--latency', ...(header ? ['-H', header] : []), url];
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
