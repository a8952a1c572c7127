// SIGKILL a `fledge serve` started by fledge-process.ts and start it again on the same data
// dir, API port and LB port (startFledgeProcess always picks fresh ports), timing how long
// the scheduler — and with it the built-in LB — was away.
//
// Restarted servers are registered with fledge-process.ts as process groups so its leak check
// sees them; `cleanupRestarted()` SIGKILLs them (and waits) before calling its `cleanup()`, so
// no restarted server can start a task while cleanup is already killing tasks.
import {
  boundedClient,
  cleanup,
  processHandle,
  spawnServe,
  trackProcessGroup,
  waitReady,
  type FledgeProcess,
  type ServeChild,
} from './fledge-process.ts';
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

const restarted = new Set<ServeChild>();

function portOfUrl(url: string): number {
  return Number(new URL(url).port);
}

/** SIGKILL `previous` now, wait until it is gone, start it again on the same data dir and ports. */
export async function killAndRestart(previous: FledgeProcess, options: RestartOptions = {}): Promise<Restarted> {
  const killedAt = Date.now();
  previous.kill('SIGKILL');
  await previous.waitExit(10_000);
  // Polled from the moment the old LB is surely gone, timed from the kill like the restart.
  const lbUp =
    options.lbPath !== undefined ? waitForLb(`${previous.lbUrl}${options.lbPath}`, killedAt, options.timeoutMs ?? 30_000) : undefined;
  lbUp?.catch(() => {});

  const serve = spawnServe({
    dataDir: previous.dataDir,
    port: portOfUrl(previous.url),
    lbPort: portOfUrl(previous.lbUrl),
    portRange: options.portRange,
    args: options.args,
  });
  trackProcessGroup(serve.pid, 'fledge serve (restarted)');
  restarted.add(serve);

  const client = boundedClient(previous.url);
  await waitReady(serve, client, {
    timeoutMs: options.timeoutMs ?? 30_000,
    intervalMs: 10,
    message: `restarted fledge serve on ${previous.url} to answer /health`,
    failOnPortInUse: true,
    notReady: (why) => `restarted fledge serve did not get ready (${why})`,
  });
  const restartMs = Date.now() - killedAt;

  const fledge = processHandle(serve, { url: previous.url, lbUrl: previous.lbUrl, dataDir: previous.dataDir });
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
