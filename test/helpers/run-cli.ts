// Runs the real `fledge` command line (bin/fledge.js) as a child process against a server.
import { spawn } from 'node:child_process';
import { FLEDGE_BIN, REPO_ROOT, trackProcessGroup } from './fledge-process.ts';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  url: string;
  timeoutMs?: number;
  /** FLEDGE_DATA_DIR: where the CLI finds admin.token (the server's data dir) */
  dataDir?: string;
  /** the working directory (the CLI looks for ./.fledge/admin.token there); default the repo */
  cwd?: string;
  /** more environment, e.g. FLEDGE_TOKEN */
  env?: Record<string, string>;
}

/** `node bin/fledge.js ...args` with FLEDGE_URL set; killed (and failing) after timeoutMs. */
export function runCli(args: string[], options: CliOptions): Promise<CliResult> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEDGE_')));
  const child = spawn(process.execPath, [FLEDGE_BIN, ...args], {
    cwd: options.cwd ?? REPO_ROOT,
    env: {
      ...env,
      FLEDGE_URL: options.url,
      ...(options.dataDir !== undefined ? { FLEDGE_DATA_DIR: options.dataDir } : {}),
      ...options.env,
    },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) trackProcessGroup(child.pid, `fledge ${args.slice(0, 2).join(' ')}`);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      reject(new Error(`fledge ${args.join(' ')} did not finish within ${options.timeoutMs ?? 60_000} ms\n${stdout}\n${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
