// SIGKILL a `fledge serve` started by fledge-process.ts and start it again on the same data
// dir, API port and LB port (startFledgeProcess always picks fresh ports), timing how long
// the scheduler — and with it the built-in LB — was away.
//
// Restarted servers are registered with fledge-process.ts as process groups so its leak check
// sees them; `cleanupRestarted()` SIGKILLs them (and waits) before calling its `cleanup()`, so
// no restarted server can start a task while cleanup is already killing tasks.
import { spawn } from 'node:child_process';
import { cleanup, FLEDGE_BIN, REPO_ROOT, boundedClient, trackProcessGroup, type ExitStatus, type FledgeProcess } from './fledge-process.ts';
import { killGroup } from './procfs.ts';
import { waitFor } from './wait-for.ts';

export interface RestartOptions {
  /** `serve` flags besides data dir, host and ports (give the same ones as the first start) */
  args?: string[];
  portRange?: { from: number; to: number };
  /** how long to wait for /health; default 30 s */
  timeoutMs?: number;
  /** a path routed by the built-in LB: also time SIGKILL → first 2xx there */
  lbPath?: string;
}

export interface Restarted {
  fledge: FledgeProcess;
  /** SIGKILL → the new process answers /health */
  restartMs: number;
  /** SIGKILL → first 2xx from the LB at `lbPath` (undefined without lbPath) */
  lbDowntimeMs?: number;
}

interface RestartedEntry {
  pid: number;
  exit: Promise<ExitStatus>;
  exited: boolean;
}

const restarted = new Set<RestartedEntry>();

function portOfUrl(url: string): number {
  return Number(new URL(url).port);
}

/** SIGKILL `previous` now, wait until it is gone, start it again on the same data dir and ports. */
export async function killAndRestart(previous: FledgeProcess, options: RestartOptions = {}): Promise<Restarted> {
  const killedAt = Date.now();
  previous.kill('SIGKILL');
  await previous.waitExit(10_000);
  // Polled from the moment the old LB is surely gone, timed from the kill like the restart.
  const lbUp = options.lbPath !== undefined ? waitForLb(`${previous.lbUrl}${options.lbPath}`, killedAt, options.timeoutMs ?? 30_000) : undefined;
  lbUp?.catch(() => {});

  const args = [
    FLEDGE_BIN,
    'serve',
    '--data-dir', previous.dataDir,
    '--host', '127.0.0.1',
    '--port', String(portOfUrl(previous.url)),
    '--lb-port', String(portOfUrl(previous.lbUrl)),
    ...(options.portRange ? ['--port-range-from', String(options.portRange.from), '--port-range-to', String(options.portRange.to)] : []),
    ...(options.args ?? []),
  ];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEDGE_')));
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn fledge serve');
  trackProcessGroup(pid, 'fledge serve (restarted)');
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const entry: RestartedEntry = {
    pid,
    exited: false,
    exit: new Promise<ExitStatus>((resolve) =>
      child.once('exit', (code, signal) => {
        entry.exited = true;
        resolve({ code, signal });
      }),
    ),
  };
  restarted.add(entry);

  const client = boundedClient(previous.url);
  const ready = await waitFor(
    async () => {
      if (entry.exited) return 'exited' as const;
      // `fledge serve` keeps running when it cannot bind its API port: do not wait that out.
      if (output.includes('EADDRINUSE')) return 'port in use' as const;
      await client.health();
      return 'ready' as const;
    },
    { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 10, message: `restarted fledge serve on ${previous.url} to answer /health` },
  ).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- server output ---\n${output.slice(-4000)}`);
  });
  if (ready !== 'ready') throw new Error(`restarted fledge serve did not get ready (${ready})\n--- server output ---\n${output.slice(-4000)}`);
  const restartMs = Date.now() - killedAt;

  const fledge: FledgeProcess = {
    url: previous.url,
    lbUrl: previous.lbUrl,
    pid,
    dataDir: previous.dataDir,
    client,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!entry.exited) process.kill(pid, signal);
    },
    async waitExit(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`fledge serve (pid ${pid}) did not exit within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        return await Promise.race([entry.exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    output: () => output,
    get exited() {
      return entry.exited;
    },
  };
  return { fledge, restartMs, ...(lbUp ? { lbDowntimeMs: await lbUp } : {}) };
}

/** Polls `url` from `since` until it answers 2xx; resolves to the milliseconds since `since`. */
async function waitForLb(url: string, since: number, timeoutMs: number): Promise<number> {
  await waitFor(
    async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      return res.ok;
    },
    { timeoutMs, intervalMs: 10, message: `the LB to answer 2xx at ${url}` },
  );
  return Date.now() - since;
}

/** SIGKILL every restarted server (and wait until it is gone), then fledge-process.ts cleanup(). */
export async function cleanupRestarted(): Promise<void> {
  const live = [...restarted].filter((s) => !s.exited);
  for (const s of live) killGroup(s.pid, 'SIGKILL');
  await Promise.all(live.map((s) => Promise.race([s.exit, new Promise((resolve) => setTimeout(resolve, 5_000))])));
  restarted.clear();
  await cleanup();
}
