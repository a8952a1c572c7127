// Real `fledge serve` processes for integration tests, and the bookkeeping that makes sure
// none of them (nor any task they started) outlives the test file.
//
// Every server, task process group and extra process a test starts is registered here.
// `cleanup()` (afterEach/afterAll) SIGKILLs all of them: servers first, after asking them for
// their tasks' pids, then every task group found through the API or in
// `<dataDir>/tasks/*/task.json` (tasks run detached, in their own process groups, and outlive
// the server on purpose). `leakedProcesses()` (afterAll) lists any process seen by the tests
// that still runs.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FledgeClient, type TaskView } from '../../src/api/client.ts';
import { cgroupRootPath, removeCgroup } from '../../src/runtimes/process/tree.ts';
import { killSandboxTasks } from './process-cleanup.ts';
import { groupIsOurs, groupMembers, isRunning, killGroup, startTimeOf } from './procfs.ts';
import { freePort, type PortRange } from './ports.ts';
import { waitFor } from './wait-for.ts';

export { freePort, reservePorts, type PortRange } from './ports.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FLEDGE_BIN = path.join(REPO_ROOT, 'bin', 'fledge.js');

export interface StartFledgeOptions {
  /** reuse a data dir (a restart); default: a fresh temp dir */
  dataDir?: string;
  /** extra `serve` flags, e.g. ['--cpus', '1'] */
  args?: string[];
  /** ports handed to tasks; use a distinct range per test file */
  portRange?: PortRange;
  /** how long to wait for /health; default 30 s */
  timeoutMs?: number;
  /** FLEDGE_* variables for the server (e.g. FLEDGE_STORE, so a password stays out of argv) */
  env?: Record<string, string>;
  /** the --lb-port (default: a free port); several schedulers attached to one HAProxy share its port */
  lbPort?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface FledgeProcess {
  url: string;
  lbUrl: string;
  pid: number;
  dataDir: string;
  /** the admin token the server wrote into <dataDir>/admin.token (what the CLI would use); '' with --no-auth */
  token: string;
  /** a client sending that admin token */
  client: FledgeClient;
  /** signal the server process (default SIGKILL) */
  kill(signal?: NodeJS.Signals): void;
  /** resolves when the server process has exited (bounded: rejects after timeoutMs) */
  waitExit(timeoutMs?: number): Promise<ExitStatus>;
  /** whatever the server printed so far (for failure messages) */
  output(): string;
  readonly exited: boolean;
}

interface Tracked {
  pid: number;
  startTime: number | undefined;
  what: string;
}

interface ServerEntry {
  serve: ServeChild;
  dataDir: string;
  url: string;
}

const servers = new Set<ServerEntry>();
const dataDirs = new Set<string>();
/** temp dirs this module created and removes */
const ownedDirs = new Set<string>();
/** process groups to kill at cleanup (pgid → leader start time) */
const groups = new Map<number, Tracked>();
/** everything any test saw, checked by leakedProcesses() */
const seen = new Map<string, Tracked>();

function remember(pid: number, startTime: number | undefined, what: string): void {
  const key = `${pid}:${startTime ?? '?'}`;
  if (!seen.has(key)) seen.set(key, { pid, startTime, what });
}

/** Register a process group the tests started themselves (e.g. with child_process), for cleanup. */
export function trackProcessGroup(pgid: number, what = 'process'): void {
  const startTime = startTimeOf(pgid);
  groups.set(pgid, { pid: pgid, startTime, what });
  remember(pgid, startTime, what);
}

/** Register task process groups seen through the API (TaskView.pgid). */
export function trackTasks(tasks: readonly TaskView[]): void {
  for (const t of tasks) {
    if (typeof t.pgid !== 'number' || groups.has(t.pgid)) continue;
    trackProcessGroup(t.pgid, `task ${t.taskId.id}`);
  }
}

export function tempDataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'fledge-it-'));
  ownedDirs.add(dir);
  dataDirs.add(dir);
  return dir;
}

/** A client whose calls cannot hang a test: every request is bounded. */
export function boundedClient(url: string, token?: string, timeoutMs = 10_000): FledgeClient {
  return new FledgeClient(url, {
    ...(token !== undefined ? { token } : {}),
    fetch: (input, init) => fetch(input, { ...init, signal: init?.signal ?? AbortSignal.timeout(timeoutMs) }),
  });
}

/** The admin token `fledge serve` writes at its first start (empty while it has not yet). */
export function adminToken(dataDir: string): string {
  try {
    return readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  } catch {
    return '';
  }
}

/** `Authorization` for raw fetch calls as admin. */
export function authHeaders(fledge: { token: string }): Record<string, string> {
  return { authorization: `Bearer ${fledge.token}` };
}

/** Where a `fledge serve` listens and what it runs on. */
export interface ServeArgs {
  dataDir: string;
  port: number;
  lbPort: number;
  portRange?: PortRange;
  /** extra `serve` flags */
  args?: string[];
  /** FLEDGE_* variables for the server */
  env?: Record<string, string>;
}

/** A spawned `fledge serve` child: its exit and what it printed so far (bounded). */
export interface ServeChild {
  pid: number;
  child: ChildProcess;
  exit: Promise<ExitStatus>;
  readonly exited: boolean;
  output(): string;
}

/** Spawn `node bin/fledge.js serve` (detached, in its own process group) without waiting for it. */
export function spawnServe(options: ServeArgs): ServeChild {
  const args = [
    FLEDGE_BIN,
    'serve',
    '--data-dir',
    options.dataDir,
    '--host',
    '127.0.0.1',
    '--port',
    String(options.port),
    '--lb-port',
    String(options.lbPort),
    ...(options.portRange ? ['--port-range-from', String(options.portRange.from), '--port-range-to', String(options.portRange.to)] : []),
    ...(options.args ?? []),
  ];
  // FLEDGE_* settings of whoever runs the tests must not leak into the server.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEDGE_'))), ...options.env };
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn fledge serve');
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  // For chasing a rare failure: every server's whole output, one file per pid.
  const keep = process.env.FLEDGE_TEST_OUTPUT_DIR;
  if (keep) {
    const file = path.join(keep, `fledge-${pid}.log`);
    const toFile = (chunk: Buffer) => appendFileSync(file, chunk);
    child.stdout?.on('data', toFile);
    child.stderr?.on('data', toFile);
  }
  let exited = false;
  const exit = new Promise<ExitStatus>((resolve) =>
    child.once('exit', (code, signal) => {
      exited = true;
      resolve({ code, signal });
    }),
  );
  return {
    pid,
    child,
    exit,
    get exited() {
      return exited;
    },
    output: () => output,
  };
}

export interface WaitReadyOptions {
  timeoutMs: number;
  intervalMs: number;
  /** what waitFor says it waited for */
  message: string;
  /** stop as soon as the server printed EADDRINUSE (`fledge serve` keeps running when it cannot bind its API port) */
  failOnPortInUse?: boolean;
  /** the error message when the server exited (or could not bind) before it answered */
  notReady(why: 'exited' | 'port in use'): string;
}

/** Poll /health until `serve` answers; every failure carries the tail of the server's output. */
export async function waitReady(serve: ServeChild, client: FledgeClient, options: WaitReadyOptions): Promise<void> {
  const withOutput = (message: string) => new Error(`${message}\n--- server output ---\n${serve.output().slice(-4000)}`);
  const ready = await waitFor(
    async () => {
      if (serve.exited) return 'exited' as const;
      if (options.failOnPortInUse && serve.output().includes('EADDRINUSE')) return 'port in use' as const;
      await client.health();
      return 'ready' as const;
    },
    { timeoutMs: options.timeoutMs, intervalMs: options.intervalMs, message: options.message },
  ).catch((err: unknown) => {
    throw withOutput(err instanceof Error ? err.message : String(err));
  });
  if (ready !== 'ready') throw withOutput(options.notReady(ready));
}

/** The FledgeProcess a test holds for a spawned server (ready: its admin token is written). */
export function processHandle(serve: ServeChild, where: { url: string; lbUrl: string; dataDir: string }): FledgeProcess {
  const { pid } = serve;
  // Empty only with --no-auth: the server writes its token file before it listens.
  const token = adminToken(where.dataDir);
  return {
    url: where.url,
    lbUrl: where.lbUrl,
    pid,
    dataDir: where.dataDir,
    token,
    client: boundedClient(where.url, token || undefined),
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!serve.exited) process.kill(pid, signal);
    },
    async waitExit(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`fledge serve (pid ${pid}) did not exit within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        return await Promise.race([serve.exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    output: () => serve.output(),
    get exited() {
      return serve.exited;
    },
  };
}

/** Spawn `node bin/fledge.js serve` on free ports and wait until it answers /health. */
export async function startFledgeProcess(options: StartFledgeOptions = {}): Promise<FledgeProcess> {
  const dataDir = options.dataDir ?? tempDataDir();
  dataDirs.add(dataDir);
  const [port, lbPort] = [await freePort(), options.lbPort ?? (await freePort())];
  const serve = spawnServe({
    dataDir,
    port,
    lbPort,
    portRange: options.portRange,
    args: options.args,
    ...(options.env ? { env: options.env } : {}),
  });
  const url = `http://127.0.0.1:${port}`;
  const client = boundedClient(url);
  servers.add({ serve, dataDir, url });
  remember(serve.pid, startTimeOf(serve.pid), 'fledge serve');

  await waitReady(serve, client, {
    timeoutMs: options.timeoutMs ?? 30_000,
    intervalMs: 50,
    message: `fledge serve on ${url} to answer /health`,
    notReady: () => 'fledge serve exited before it was ready',
  });
  return processHandle(serve, { url, lbUrl: `http://127.0.0.1:${lbPort}`, dataDir });
}

/** Task process groups recorded in a data dir's sandboxes: `<dataDir>/tasks/*\/task.json`. */
export function sandboxTaskGroups(dataDir: string): { taskId: string; pid: number; startTime: number | undefined }[] {
  const found: { taskId: string; pid: number; startTime: number | undefined }[] = [];
  let names: string[];
  try {
    names = readdirSync(path.join(dataDir, 'tasks'));
  } catch {
    return found;
  }
  for (const name of names) {
    try {
      const file = JSON.parse(readFileSync(path.join(dataDir, 'tasks', name, 'task.json'), 'utf8')) as {
        taskId?: unknown;
        pid?: unknown;
        startTime?: unknown;
      };
      if (typeof file.pid !== 'number') continue;
      found.push({
        taskId: typeof file.taskId === 'string' ? file.taskId : name,
        pid: file.pid,
        startTime: typeof file.startTime === 'number' ? file.startTime : undefined,
      });
    } catch {
      // a sandbox without a (whole) task.json: nothing was started there
    }
  }
  return found;
}

/**
 * Kill everything the tests started: every server (SIGKILL) and every task process group,
 * found through the servers' API and the sandboxes; wait until they are gone; remove the
 * temp data dirs. Safe to call repeatedly and when a test failed half-way.
 */
export async function cleanup(): Promise<void> {
  const live = [...servers].filter((s) => !s.serve.exited);
  // Ask the servers for their tasks while they still answer (bounded: a stuck one must not block).
  await Promise.all(
    live.map(async (s) => {
      try {
        const tasks = await new FledgeClient(s.url, {
          token: adminToken(s.dataDir),
          fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(2_000) }),
        }).activeTasks();
        trackTasks(tasks);
      } catch {
        // not answering: the sandboxes still say where the tasks are
      }
    }),
  );
  for (const s of live) killGroup(s.serve.pid, 'SIGKILL');
  await Promise.all(live.map((s) => Promise.race([s.serve.exit, new Promise((resolve) => setTimeout(resolve, 5_000))])));

  for (const dir of dataDirs) {
    for (const t of sandboxTaskGroups(dir)) {
      if (!groups.has(t.pid)) groups.set(t.pid, { pid: t.pid, startTime: t.startTime, what: `task ${t.taskId}` });
      remember(t.pid, t.startTime, `task ${t.taskId}`);
    }
  }
  const targets = [...groups.values()].filter((g) => groupIsOurs(g.pid, g.startTime));
  for (const g of targets) killGroup(g.pid, 'SIGKILL');
  await waitFor(() => targets.every((g) => groupMembers(g.pid).length === 0), {
    timeoutMs: 5_000,
    intervalMs: 20,
    message: 'killed process groups to empty',
  });

  // whatever the tasks' trees hold beyond their groups (setsid children), and their cgroups
  for (const dir of dataDirs) {
    await killSandboxTasks(dir);
    removeCgroup(cgroupRootPath(dir));
    stopManagedHaproxy(dir);
  }

  servers.clear();
  groups.clear();
  if (!process.env.FLEDGE_TEST_OUTPUT_DIR) for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  ownedDirs.clear();
  dataDirs.clear();
}

/**
 * A managed HAProxy outlives Fledge on purpose: stop the one a server of this data dir left
 * (its master's process group), whichever scheduler started it.
 */
function stopManagedHaproxy(dataDir: string): void {
  try {
    const pid = Number(
      readFileSync(path.join(dataDir, 'haproxy', 'haproxy.pid'), 'utf8')
        .trim()
        .split('\n')[0],
    );
    if (!(pid > 0) || !readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(path.join(dataDir, 'haproxy'))) return;
    killGroup(pid, 'SIGKILL');
  } catch {
    // none, or gone
  }
}

/** Processes any test saw (servers, tasks, extra groups) that still run. */
export function leakedProcesses(): string[] {
  const leaks: string[] = [];
  for (const t of seen.values()) {
    if (isRunning(t.pid, t.startTime)) leaks.push(`${t.what} (pid ${t.pid})`);
    else if (t.startTime !== undefined && groupIsOurs(t.pid, t.startTime) && groupMembers(t.pid).length > 0) {
      leaks.push(`${t.what} (group ${t.pid}: ${groupMembers(t.pid).join(', ')})`);
    }
  }
  return leaks;
}

/** How many processes the tests have seen (to show the leak check checked something). */
export function seenProcessCount(): number {
  return seen.size;
}
