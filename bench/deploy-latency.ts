// How close a deploy gets to the physical limit: `npx tsx bench/deploy-latency.ts [N] [rounds]`.
//
// In one run, on one machine: (1) the limit — spawn N copies of examples/http-service.mjs
// with a bare script and poll each /health every 50 ms until its first 2xx (trials taken
// between the deploys, so both see the same machine load; the median counts); (2) an atomic
// deploy of the same N processes through an in-process Fledge, POST → SUCCEEDED; (3) canary
// deploys (group 1, 3 cycles, NONE), each step timed from its decision log; (4) the delay
// between an observation (a task's healthyAt) and the phase change it allows (HEALTH →
// ACCEPTANCE). Fledge probes every 50 ms while a task starts, like the bare script, so the
// ratio shows what scheduling, persistence and the loop cost on top of the processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/index.ts';
import type { Decision, DeployResult } from '../src/core/deploy/types.ts';
import type { FledgeEvent } from '../src/core/events.ts';
import type { TaskRecord } from '../src/core/model.ts';
import { calculateStepTargets } from '../src/core/deploy/targets.ts';
import { startServer, type FledgeServer } from '../src/server.ts';
import { freePort, reservePorts } from '../test/helpers/ports.ts';

const N = Number(process.argv[2] ?? 3);
const ROUNDS = Number(process.argv[3] ?? 5);
const SERVICE = resolve(dirname(fileURLToPath(import.meta.url)), '../examples/http-service.mjs');
const ARGV = [process.execPath, SERVICE];
const REQUEST = 'bench';
const POLL_MS = 50;
const CANARY = { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 3, acceptanceMode: 'NONE' as const };

// ---- the physical limit ----

const TASK_PORTS = reservePorts(1000);

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Spawn `count` services at once; ms from spawn to the last one's first 2xx on /health. */
async function measureLimit(count: number): Promise<number> {
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  const children: ChildProcess[] = [];
  const start = performance.now();
  try {
    const times = await Promise.all(
      ports.map(async (port) => {
        // The env the process runtime gives a task (PATH, HOME, the deploy's env, PORT).
        const env = {
          PATH: process.env.PATH ?? '',
          ...(process.env.HOME ? { HOME: process.env.HOME } : {}),
          VERSION: 'limit',
          PORT: String(port),
        };
        const child = spawn(ARGV[0] as string, ARGV.slice(1), { env, stdio: 'ignore' });
        children.push(child);
        const began = performance.now();
        for (;;) {
          if (await healthy(port)) return performance.now() - start;
          if (child.exitCode !== null) throw new Error(`service on port ${port} exited with ${child.exitCode}`);
          // Sleep what is left of the 50 ms poll period, as a prober with that interval would.
          const next = began + Math.ceil((performance.now() - began + 1) / POLL_MS) * POLL_MS;
          await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
        }
      }),
    );
    return Math.max(...times);
  } finally {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((res) => {
            if (c.exitCode !== null || c.signalCode !== null) return res();
            c.once('exit', () => res());
            c.kill('SIGTERM');
          }),
      ),
    );
  }
}

/** Limit trials, taken between the deploys so both see the same machine load. */
class Limits {
  readonly n: number[] = [];
  readonly one: number[] = [];
  async trial(): Promise<void> {
    this.n.push(await measureLimit(N));
    this.one.push(N === 1 ? (this.n.at(-1) as number) : await measureLimit(1));
  }
}

// ---- Fledge ----

class Api {
  constructor(
    private readonly url: string,
    private readonly token: string | undefined,
  ) {}
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const auth: Record<string, string> = this.token ? { authorization: `Bearer ${this.token}` } : {};
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: body === undefined ? auth : { ...auth, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as T;
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }
}

interface TaskView {
  taskId: TaskRecord['taskId'];
  health: TaskRecord['health'];
}

interface DeployRun {
  id: string;
  postToSucceeded: number;
  decisionLog: Decision[];
  tasks: TaskView[];
}

/** Resolves with the deploy's result once the loop publishes it. */
function finished(server: FledgeServer, deployId: string): Promise<DeployResult> {
  return new Promise((res) => {
    const off = server.loop.events.subscribe((e: FledgeEvent) => {
      if (e.type === 'DEPLOY' && e.deployId === deployId && e.eventType === 'FINISHED' && e.result) {
        off();
        res(e.result);
      }
    });
  });
}

async function deploy(server: FledgeServer, api: Api, id: string, canary?: object): Promise<DeployRun> {
  const done = finished(server, id);
  const start = Date.now();
  await api.call('POST', '/api/deploys', {
    deploy: {
      requestId: REQUEST,
      id,
      arguments: ARGV.slice(),
      env: { VERSION: id },
      healthcheck: { uri: '/health', startupIntervalSeconds: 0.05, intervalSeconds: 1 },
      ...(canary ? { canaryDeploySettings: canary } : {}),
    },
  });
  const result = await done;
  if (result.deployState !== 'SUCCEEDED') throw new Error(`deploy ${id} ended ${result.deployState}: ${result.message}`);
  const history = await api.call<{ decisionLog: Decision[] }>('GET', `/api/history/request/${REQUEST}/deploy/${id}`);
  // Right after SUCCEEDED the new tasks are all live; the old ones may already be gone.
  const live = await api.call<TaskView[]>('GET', `/api/tasks/request/${REQUEST}`);
  return {
    id,
    // Both stamps come from this process's clock: the server's result time is exact.
    postToSucceeded: result.timestamp - start,
    decisionLog: history.decisionLog,
    tasks: live.filter((t) => t.taskId.deployId === id),
  };
}

/** Per step: its first LAUNCH entry to its ADVANCE (acceptance passed) or END. */
function stepDurations(log: Decision[]): number[] {
  const steps = [...new Set(log.map((d) => d.step))].sort((a, b) => a - b);
  return steps.map((step) => {
    const entries = log.filter((d) => d.step === step);
    const start = entries.find((d) => d.phase === 'LAUNCH')?.at;
    const end = entries.find((d) => (d.kind === 'PHASE_CHANGED' && d.to === 'ADVANCE') || d.kind === 'ENDED')?.at;
    if (start === undefined || end === undefined) throw new Error(`step ${step} has no LAUNCH or ADVANCE/END entry`);
    return end - start;
  });
}

/** For each HEALTH → ACCEPTANCE: decision time minus the latest healthyAt it could have seen. */
function observationDelays(run: DeployRun): { at: string; ms: number }[] {
  const healthyAt = run.tasks.map((t) => t.health.healthyAt).filter((at): at is number => at !== undefined);
  return run.decisionLog
    .filter((d) => d.kind === 'PHASE_CHANGED' && d.from === 'HEALTH' && d.to === 'ACCEPTANCE')
    .map((d) => {
      const seen = healthyAt.filter((at) => at <= d.at);
      if (seen.length === 0) throw new Error(`no healthy task before the decision at step ${d.step}`);
      return { at: `${run.id} step ${d.step}`, ms: d.at - Math.max(...seen) };
    });
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- stats and output ----

function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** Nearest-rank percentile. */
function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? NaN;
}

const fmt = (ms: number) => `${ms.toFixed(0)} ms`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ')).join('\n');
}

// ---- main ----

async function main(): Promise<void> {
  if (!Number.isInteger(N) || N < 1) throw new Error(`N must be a positive integer (got ${process.argv[2]})`);
  const dataDir = mkdtempSync(join(tmpdir(), 'fledge-bench-'));
  const server = await startServer(
    loadConfig({ dataDir, port: 0, lbPort: 0, portRangeFrom: TASK_PORTS.from, portRangeTo: TASK_PORTS.to, logLevel: 'warn' }),
    {},
  );
  const api = new Api(server.url, server.adminToken);
  const limits = new Limits();
  try {
    // The first fetch in a process loads undici; keep that out of the first trial.
    await healthy(await freePort());
    await limits.trial();

    await api.call('POST', '/api/requests', { id: REQUEST, requestType: 'SERVICE', instances: N });
    const atomic = await deploy(server, api, 'atomic1');
    await limits.trial();

    const canaries: DeployRun[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      canaries.push(await deploy(server, api, `canary${r}`, CANARY));
      await limits.trial();
    }

    const limitN = median(limits.n);
    const limit1 = median(limits.one);
    const steps = canaries.map((c) => stepDurations(c.decisionLog));
    const stepCount = Math.max(...steps.map((s) => s.length));
    const observed = [atomic, ...canaries].flatMap(observationDelays);
    const delays = observed.map((o) => o.ms);
    const worst = observed.reduce((a, b) => (b.ms > a.ms ? b : a));

    const trials = limits.n.length;
    const rows: string[][] = [['measure', 'ms', 'ratio to limit']];
    rows.push([`limit: ${N} process(es) to first 2xx (median of ${trials})`, fmt(limitN), '1.00×']);
    rows.push([`limit: 1 process to first 2xx (median of ${trials})`, fmt(limit1), '1.00×']);
    rows.push([`atomic deploy of ${N}: POST → SUCCEEDED`, fmt(atomic.postToSucceeded), ratio(atomic.postToSucceeded, limitN)]);
    const canaryTotal = median(canaries.map((c) => c.postToSucceeded));
    rows.push([`canary deploy: POST → SUCCEEDED (median of ${canaries.length})`, fmt(canaryTotal), '']);
    const targets = calculateStepTargets(N, { ...CANARY, waitMillisBetweenGroups: 0, allowedTasksFailuresPerGroup: 0 });
    for (let i = 0; i < stepCount; i++) {
      const xs = steps.map((s) => s[i]).filter((x): x is number => x !== undefined);
      const m = median(xs);
      // The last step adds every remaining instance; the 1-process limit flatters it then.
      const adds = (targets[i] ?? 0) - (targets[i - 1] ?? 0);
      rows.push([
        `canary step ${i + 1} (+${adds}) LAUNCH → ADVANCE (median of ${xs.length}; vs 1-process limit)`,
        fmt(m),
        ratio(m, limit1),
      ]);
    }
    rows.push([`observation → decision, HEALTH → ACCEPTANCE p50 (n=${delays.length})`, fmt(percentile(delays, 50)), '']);
    rows.push([`observation → decision, HEALTH → ACCEPTANCE p99 (n=${delays.length})`, fmt(percentile(delays, 99)), '']);

    console.log(
      `limit trials ms: N=${N}: ${limits.n.map((x) => x.toFixed(0)).join(', ')}; 1: ${limits.one.map((x) => x.toFixed(0)).join(', ')}`,
    );
    console.log(`limit ms: ${limitN.toFixed(0)} (N=${N}), ${limit1.toFixed(0)} (1 process)`);
    console.log(`atomic deploy ms: ${atomic.postToSucceeded}, ratio ${ratio(atomic.postToSucceeded, limitN)}`);
    steps.forEach((s, r) =>
      console.log(`canary${r + 1} steps ms: ${s.join(', ')}; ratio vs 1-process limit: ${s.map((x) => ratio(x, limit1)).join(', ')}`),
    );
    console.log(`observation → decision ms: ${delays.join(', ')} (worst: ${worst.at})`);
    console.log('');
    console.log(table(rows));
  } finally {
    await cleanUp(server, api);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Tasks outlive the scheduler, so stop them through the request before closing it. */
async function cleanUp(server: FledgeServer, api: Api): Promise<void> {
  try {
    if (await server.store.getRequest(REQUEST)) await api.call('DELETE', `/api/requests/request/${REQUEST}`, {});
    await until('every task to stop', async () => (await api.call<unknown[]>('GET', '/api/tasks/active')).length === 0);
  } finally {
    await server.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
