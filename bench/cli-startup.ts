// How long `fledge` takes to start, against bare `node -e ''` on the same machine in the same
// run: `fledge --help`, and `fledge request list` against a running server (one API call).
// The server's own part of `request list` is timed apart (the same GET from this process, on a
// new connection each time, as the CLI makes it) and taken off, so the CLI's ratio is its own.
// Also `--help` through the TypeScript sources (what a changed checkout runs until `npm run build`).
// Prints the machine's load average too: on a busy machine every figure grows, the ratios less.
//
//   npx tsx bench/cli-startup.ts [runs]
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/index.ts';
import { startServer } from '../src/server.ts';

const runs = Number(process.argv[2] ?? 20);
const root = fileURLToPath(new URL('..', import.meta.url));
const bin = join(root, 'bin', 'fledge.js');

// Spawned asynchronously: the server under test runs in this process and must keep answering.
function once(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`${args.join(' ')} failed: ${stderr}`));
      else resolve(Number(process.hrtime.bigint() - started) / 1e6);
    });
  });
}

async function median(sample: () => Promise<number>): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) samples.push(await sample());
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

const timeOf = (args: string[], env: NodeJS.ProcessEnv = process.env) => median(() => once(args, env));

/** One GET as the CLI sends it, on a fresh connection: the server's part of a CLI call. */
function answerOnce(url: string, token: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const headers: Record<string, string> = { Accept: 'application/json', Connection: 'close' };
    if (token) headers.Authorization = `Bearer ${token}`;
    const req = request(url, { headers, agent: false }, (res) => {
      res.resume();
      res.once('end', () =>
        res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - started) / 1e6) : reject(new Error(`HTTP ${res.statusCode}`)),
      );
    });
    req.once('error', reject);
    req.end();
  });
}

const dataDir = mkdtempSync(join(tmpdir(), 'fledge-bench-cli-'));
const server = await startServer(loadConfig({ dataDir, port: 0, lbPort: 0, lb: 'none', logLevel: 'warn' }, {}));
try {
  // the CLI finds the server's admin token in its data dir, as it would next to `fledge serve`
  const env = { ...process.env, FLEDGE_URL: server.url, FLEDGE_DATA_DIR: dataDir };
  const before = loadavg()[0]!;
  const bare = await timeOf(['-e', '']);
  const help = await timeOf([bin, '--help'], env);
  const list = await timeOf([bin, 'request', 'list'], env);
  const answer = await median(() => answerOnce(`${server.url}/api/requests`, server.adminToken));
  const sources = await timeOf([bin, '--help'], { ...env, FLEDGE_FROM_SOURCES: '1' });
  const rows: [string, number, boolean][] = [
    ["node -e ''", bare, true],
    ['fledge --help', help, true],
    ['fledge request list', list, true],
    ["  the server's answer (GET /api/requests)", answer, false],
    ['  request list without the answer', list - answer, true],
    ['fledge --help (sources via tsx)', sources, true],
  ];
  console.log(
    `median of ${runs} runs each; load average ${before.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after (${cpus().length} cores)`,
  );
  for (const [what, ms, ratio] of rows)
    console.log(`${what.padEnd(42)} ${ms.toFixed(1).padStart(7)} ms${ratio ? `  ${(ms / bare).toFixed(2)}× bare node` : ''}`);
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
