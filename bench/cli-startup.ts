// How long `fledge` takes to start, against bare `node -e ''` on the same machine in the same
// run: `fledge --help`, and `fledge request list` against a running server (one API call).
// Also the same through the TypeScript sources (what a changed checkout runs until `npm run build`).
//
//   npx tsx bench/cli-startup.ts [runs]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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

async function timeOf(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) samples.push(await once(args, env));
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

const dataDir = mkdtempSync(join(tmpdir(), 'fledge-bench-cli-'));
const server = await startServer(loadConfig({ dataDir, port: 0, lbPort: 0, lb: 'none', logLevel: 'warn' }, {}));
try {
  // the CLI finds the server's admin token in its data dir, as it would next to `fledge serve`
  const env = { ...process.env, FLEDGE_URL: server.url, FLEDGE_DATA_DIR: dataDir };
  const bare = await timeOf(['-e', '']);
  const rows: [string, number][] = [
    ["node -e ''", bare],
    ['fledge --help', await timeOf([bin, '--help'], env)],
    ['fledge request list', await timeOf([bin, 'request', 'list'], env)],
    ['fledge --help (sources via tsx)', await timeOf([bin, '--help'], { ...env, FLEDGE_FROM_SOURCES: '1' })],
  ];
  console.log(`median of ${runs} runs each`);
  for (const [what, ms] of rows) console.log(`${what.padEnd(32)} ${ms.toFixed(1).padStart(7)} ms  ${(ms / bare).toFixed(2)}× bare node`);
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
