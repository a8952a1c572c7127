// How Fledge's API, loop and store hold up as the number of requests grows:
// `npx tsx bench/scale.ts [--quick] [--sizes R1,R2] [--instances I] [--deploys D] [--max-seconds S] [--big-request N]`.
//
// For each size R (1,000 and 10,000 requests; --quick: 100 and 1,000) a child process starts
// an in-process `fledge serve` built with the fakes (--runtime fake --lb fake --health fake
// --checks fake), the real SQLite store on file and the real loop, and drives it through its
// HTTP API only: R requests × I instances (default 10: 100,000 tasks at R = 10,000), then D
// concurrent canary deploys (default 500) of load-balanced requests, while single-entity
// reads and writes run. It prints, per size and as the ratio between sizes: API p50/p99 of
// single reads and writes (at rest, during the list call, during the deploys), the time of
// `GET /api/requests`, event-loop lag p99, peak RSS and the deploys' completion time. A ratio
// near 1 means the figure does not grow with the number of requests. The machine is shared:
// compare ratios, not absolute times. Each phase is bounded (--max-seconds per phase).
//
// `--big-request N` measures one request of N instances instead (and of N/10, for the ratio):
// its atomic deploy, then a canary deploy of it, and what one health result costs once it is
// at rest — a passing probe of a healthy task (nothing changes for the engine) and a failing
// one that gets its task replaced — in milliseconds and store calls per result.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config/index.ts';
import { silentLogger } from '../src/logger.ts';
import type { FakeRuntime } from '../src/runtimes/fake/index.ts';
import { startServer, type FledgeServer } from '../src/server.ts';
import { freePort } from '../test/helpers/ports.ts';

const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const num = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const QUICK = flag('quick');
const INSTANCES = num('instances', QUICK ? 3 : 10);
const DEPLOYS = num('deploys', QUICK ? 50 : 500);
const MAX_SECONDS = num('max-seconds', QUICK ? 120 : 600);
const SIZES = argv.includes('--sizes') ? argv[argv.indexOf('--sizes') + 1]!.split(',').map(Number) : QUICK ? [100, 1_000] : [1_000, 10_000];
/** API calls in flight at once while creating (a busy client, not a flood) */
const CONCURRENCY = 8;
const SAMPLES = QUICK ? 100 : 300;
/** --big-request N: one request of N instances (and N/10) instead of the R × I fleet */
const BIG = num('big-request', 0);

interface Figures {
  requests: number;
  tasks: number;
  setupSeconds: number;
  readP50: number;
  readP99: number;
  writeP50: number;
  writeP99: number;
  listMs: number;
  listBytes: number;
  readP99DuringList: number;
  deploySeconds: number;
  deployPostP99: number;
  readP99DuringDeploys: number;
  lagP99: number;
  lagMax: number;
  rssMb: number;
  incomplete: string[];
}

// ---- the child: one size ----

async function fakeServer(dataDir: string): Promise<FledgeServer> {
  return startServer(
    loadConfig(
      {
        dataDir,
        port: await freePort(),
        runtime: 'fake',
        lb: 'fake',
        health: 'fake',
        checks: 'fake',
        allowFakes: true,
        cpus: 100_000,
        memoryMb: 1e9,
        // fake tasks bind nothing; only the load-balanced ones take a port
        portRangeFrom: 10_000,
        portRangeTo: 30_000,
        maxInstances: Math.max(10_000, BIG),
        logLevel: 'silent',
      },
      {},
    ),
    { logger: silentLogger },
  );
}

type Call = (method: string, path: string, body?: unknown) => Promise<{ ms: number; bytes: number; json: unknown }>;

/** API calls as a client makes them, timed; `resets` counts the ones sent again. */
function apiOf(server: FledgeServer): { call: Call; resets: number } {
  const api = { call: undefined as unknown as Call, resets: 0 };
  const headers = { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' };
  api.call = async (method: string, path: string, body?: unknown): Promise<{ ms: number; bytes: number; json: unknown }> => {
    const start = performance.now();
    const send = () => fetch(`${server.url}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    // A kept-alive connection the server closed as the request left (its 5 s idle timeout, late
    // timers on a loaded machine) resets it or is found closed: sent again once, and counted. Every call here may
    // be repeated (a deploy posted again unchanged is answered with what exists).
    const res = await send().catch((err: unknown) => {
      if (!['ECONNRESET', 'UND_ERR_SOCKET'].includes((err as { cause?: { code?: string } }).cause?.code ?? '')) throw err;
      api.resets++;
      return send();
    });
    const text = await res.text();
    const ms = performance.now() - start;
    if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
    return { ms, bytes: text.length, json: text.length < 100_000 ? JSON.parse(text) : undefined };
  };

  return api;
}

async function runSize(requests: number): Promise<Figures> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fledge-scale-'));
  const incomplete: string[] = [];
  const server = await fakeServer(dataDir);
  const fake = server.hosts.entries().find((e) => e.definition.id === 'local')!.runtime as FakeRuntime;
  const api = apiOf(server);
  const { call } = api;

  const lag = monitorEventLoopDelay({ resolution: 10 });
  lag.enable();
  let rss = 0;
  const rssTimer = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 250);
  const deadline = () => performance.now() + MAX_SECONDS * 1000;
  const lbRequests = Math.min(DEPLOYS, requests);
  const ids = Array.from({ length: requests }, (_, i) => `r${String(i).padStart(5, '0')}`);
  const isLb = (i: number) => i < lbRequests;
  const deployBody = (i: number, deployId: string, canary: boolean) => ({
    deploy: {
      requestId: ids[i],
      id: deployId,
      command: 'simulated',
      resources: { cpus: 0.01, memoryMb: 1, numPorts: isLb(i) ? 1 : 0 },
      ...(isLb(i) ? { serviceBasePath: `/${ids[i]}`, loadBalancerGroups: ['default'] } : {}),
      ...(canary
        ? { canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: Math.ceil(INSTANCES / 2), acceptanceMode: 'CHECKS' } }
        : {}),
      ...(canary ? { acceptanceChecks: [{ name: 'smoke', type: 'http', url: 'http://127.0.0.1:1/fake' }] } : {}),
    },
  });

  try {
    // ---- setup: R requests, each with an active deploy of I instances ----
    const setupStart = performance.now();
    const writes: number[] = [];
    // how many of the first requests exist (a setup cut short by the deadline reads only those)
    let created = 0;
    await pool(requests, CONCURRENCY, deadline(), async (i) => {
      const id = ids[i]!;
      writes.push((await call('POST', '/api/requests', { id, requestType: 'SERVICE', instances: INSTANCES, loadBalanced: isLb(i) })).ms);
      writes.push((await call('POST', '/api/deploys', deployBody(i, 'd1', false))).ms);
      created = Math.max(created, i + 1);
    }).catch((err: unknown) => incomplete.push(`setup: ${String(err)}`));
    const allUp = await until(
      deadline(),
      async () => fake.running().length >= requests * INSTANCES && (await server.store.listPending()).length === 0,
    );
    if (!allUp) incomplete.push(`setup: ${fake.running().length} of ${requests * INSTANCES} tasks running at the deadline`);
    const setupSeconds = (performance.now() - setupStart) / 1000;
    progress(`R=${requests}: ${fake.running().length} tasks up in ${setupSeconds.toFixed(1)} s`);

    // ---- at rest: single-entity reads and writes (safety passes run meanwhile) ----
    lag.reset();
    const reads: number[] = [];
    const scaleWrites: number[] = [];
    // the ones surely made: with CONCURRENCY in flight, those past the last finished one minus that may not be
    const known = created >= requests ? requests : Math.max(1, created - CONCURRENCY);
    const pick = (n: number) => Math.floor((n * 7919) % known);
    const restEnd = performance.now() + (QUICK ? 6_000 : 11_000); // at least two 5 s safety passes
    await pool(SAMPLES, 4, deadline(), async (n) => {
      const id = ids[pick(n)]!;
      if (n % 3 === 2)
        scaleWrites.push(
          (await call('POST', '/api/requests', { id, requestType: 'SERVICE', instances: INSTANCES, loadBalanced: isLb(pick(n)) })).ms,
        );
      else reads.push((await call('GET', `/api/requests/request/${id}`)).ms);
      if (performance.now() < restEnd) await sleep(Math.max(0, ((restEnd - performance.now()) * 4) / (SAMPLES - n)));
    });

    // ---- GET /api/requests, with single reads running beside it ----
    const during: number[] = [];
    let listing = true;
    const side = (async () => {
      for (let n = 0; listing; n++) {
        during.push((await call('GET', `/api/requests/request/${ids[pick(n + 1)]}`)).ms);
        await sleep(20);
      }
    })();
    const list = await call('GET', '/api/requests');
    listing = false;
    await side;
    progress(`R=${requests}: GET /api/requests ${list.ms.toFixed(0)} ms, ${(list.bytes / 1e6).toFixed(1)} MB`);

    // ---- D concurrent canary deploys, with single reads running beside them ----
    const deployStart = performance.now();
    const deployPosts: number[] = [];
    const readsDuringDeploys: number[] = [];
    let deploying = true;
    const reader = (async () => {
      for (let n = 0; deploying; n++) {
        readsDuringDeploys.push((await call('GET', `/api/requests/request/${ids[pick(n + 3)]}`)).ms);
        await sleep(20);
      }
    })();
    await pool(lbRequests, CONCURRENCY * 4, deadline(), async (i) => {
      deployPosts.push((await call('POST', '/api/deploys', deployBody(i, 'd2', true))).ms);
    }).catch((err: unknown) => incomplete.push(`deploys: ${String(err)}`));
    const done = await until(deadline(), async () => {
      if ((await server.store.listPending()).length > 0) return false;
      for (let i = 0; i < lbRequests; i++) if ((await server.store.getRequest(ids[i]!))?.activeDeployId !== 'd2') return false;
      return true;
    });
    const deploySeconds = (performance.now() - deployStart) / 1000;
    deploying = false;
    await reader;
    if (!done) incomplete.push(`deploys: not all ${lbRequests} done at the deadline`);
    progress(`R=${requests}: ${lbRequests} canary deploys in ${deploySeconds.toFixed(1)} s`);

    return {
      requests,
      tasks: fake.running().length,
      setupSeconds,
      readP50: pct(reads, 50),
      readP99: pct(reads, 99),
      writeP50: pct([...scaleWrites], 50),
      writeP99: pct([...scaleWrites], 99),
      listMs: list.ms,
      listBytes: list.bytes,
      readP99DuringList: pct(during, 99),
      deploySeconds,
      deployPostP99: pct(deployPosts, 99),
      readP99DuringDeploys: pct(readsDuringDeploys, 99),
      lagP99: lag.percentile(99) / 1e6,
      lagMax: lag.max / 1e6,
      rssMb: Math.max(rss, process.memoryUsage().rss) / 1024 / 1024,
      incomplete: api.resets > 0 ? [...incomplete, `${api.resets} API call(s) reset by the server and sent again`] : incomplete,
    };
  } finally {
    clearInterval(rssTimer);
    lag.disable();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---- the child, --big-request: one request of many instances ----

interface BigFigures {
  instances: number;
  atomicSeconds: number;
  canarySeconds: number;
  passMs: number;
  passCalls: number;
  passPasses: number;
  failMs: number;
  failCalls: number;
  failPasses: number;
  lagP99: number;
  rssMb: number;
  incomplete: string[];
}

/** How many probe results of each kind are timed (one after another, each to rest). */
const BIG_RESULTS = QUICK ? 20 : 50;

async function runBig(instances: number): Promise<BigFigures> {
  const dataDir = mkdtempSync(join(tmpdir(), 'fledge-scale-'));
  const incomplete: string[] = [];
  const server = await fakeServer(dataDir);
  const fake = server.hosts.entries().find((e) => e.definition.id === 'local')!.runtime as FakeRuntime;
  const { call } = apiOf(server);
  const lag = monitorEventLoopDelay({ resolution: 10 });
  let rss = 0;
  const rssTimer = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 250);
  const deadline = () => performance.now() + MAX_SECONDS * 1000;
  const deploy = (id: string, canary: boolean) => ({
    deploy: {
      requestId: 'big',
      id,
      command: 'simulated',
      resources: { cpus: 0.01, memoryMb: 1, numPorts: 1 },
      serviceBasePath: '/big',
      loadBalancerGroups: ['default'],
      ...(canary
        ? {
            canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: Math.ceil(instances / 4), acceptanceMode: 'CHECKS' },
            acceptanceChecks: [{ name: 'smoke', type: 'http', url: 'http://127.0.0.1:1/fake' }],
          }
        : {}),
    },
  });
  const active = (id: string) =>
    until(deadline(), async () => {
      const r = await server.store.getRequest('big');
      return r?.activeDeployId === id && !(await server.store.getPending('big'));
    });
  /** Store calls and passes so far, from /metrics (what an operator sees). */
  const counters = async () => {
    const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    const text = await res.text();
    const sum = (name: string) =>
      [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
    return { calls: sum('fledge_store_operation_seconds_count'), passes: sum('fledge_reconcile_pass_seconds_count') };
  };
  /** Until the loop and every action it started are done (the health fake answers in microtasks). */
  const rest = async () => {
    for (let calm = 0; calm < 3;) {
      await new Promise((r) => setImmediate(r));
      await server.loop.idle();
      calm = server.loop.hasWork ? 0 : calm + 1;
    }
  };
  /** `count` results delivered one after another, each until the loop is at rest: per result. */
  const perResult = async (count: number, deliver: (taskId: string) => Promise<unknown>) => {
    const tasks = (await server.store.listTasks({ requestId: 'big', live: true })).map((t) => t.taskId.id);
    const before = await counters();
    const t0 = performance.now();
    for (let n = 0; n < count; n++) {
      await deliver(tasks[(n * 7919) % tasks.length]!);
      await rest();
    }
    const ms = (performance.now() - t0) / count;
    const after = await counters();
    // minus the /metrics scrape itself (none: it reads no timed store call twice)
    return { ms, calls: (after.calls - before.calls) / count, passes: (after.passes - before.passes) / count };
  };
  try {
    lag.enable();
    await call('POST', '/api/requests', { id: 'big', requestType: 'SERVICE', instances, loadBalanced: true });
    let t0 = performance.now();
    await call('POST', '/api/deploys', deploy('d1', false));
    if (!(await active('d1'))) incomplete.push('atomic deploy not done at the deadline');
    const atomicSeconds = (performance.now() - t0) / 1000;
    progress(`big request of ${instances}: atomic deploy in ${atomicSeconds.toFixed(1)} s, ${fake.running().length} running`);
    t0 = performance.now();
    await call('POST', '/api/deploys', deploy('d2', true));
    if (!(await active('d2'))) incomplete.push('canary deploy not done at the deadline');
    const canarySeconds = (performance.now() - t0) / 1000;
    progress(`big request of ${instances}: canary deploy in ${canarySeconds.toFixed(1)} s, ${fake.running().length} running`);
    const lagP99 = lag.percentile(99) / 1e6;
    lag.disable();
    await rest();

    const executor = server.loop.executor;
    const result = (statusCode: number) => ({ timestamp: Date.now(), statusCode, durationMillis: 1, startup: false });
    // A passing probe of a healthy task: recorded on the task, nothing for the engine to decide.
    const pass = await perResult(BIG_RESULTS, (id) => executor.onHealthResult(id, result(200), { state: 'HEALTHY' }));
    // A failing one past its retries: the task is replaced (killed, a new one launched and healthy).
    const fail = await perResult(BIG_RESULTS, (id) =>
      executor.onHealthResult(id, result(503), { state: 'UNHEALTHY', message: 'Health check returned failure status 503' }),
    );
    if (fake.running().length !== instances) incomplete.push(`${fake.running().length} of ${instances} running after the failed probes`);
    return {
      instances,
      atomicSeconds,
      canarySeconds,
      passMs: pass.ms,
      passCalls: pass.calls,
      passPasses: pass.passes,
      failMs: fail.ms,
      failCalls: fail.calls,
      failPasses: fail.passes,
      lagP99,
      rssMb: Math.max(rss, process.memoryUsage().rss) / 1024 / 1024,
      incomplete,
    };
  } finally {
    clearInterval(rssTimer);
    lag.disable();
    await server.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const BIG_ROWS: [string, (f: BigFigures) => number, number][] = [
  ['atomic deploy (s)', (f) => f.atomicSeconds, 1],
  ['canary deploy, 4 steps (s)', (f) => f.canarySeconds, 1],
  ['event-loop lag p99 during deploys (ms)', (f) => f.lagP99, 1],
  ['passing probe: ms per result', (f) => f.passMs, 2],
  ['passing probe: store calls per result', (f) => f.passCalls, 1],
  ['passing probe: passes per result', (f) => f.passPasses, 1],
  ['failing probe (task replaced): ms per result', (f) => f.failMs, 1],
  ['failing probe: store calls per result', (f) => f.failCalls, 1],
  ['failing probe: passes per result', (f) => f.failPasses, 1],
  ['peak RSS (MB)', (f) => f.rssMb, 0],
];

/** Run `count` jobs, `width` at a time; stops starting new ones past the deadline. */
async function pool(count: number, width: number, deadlineAt: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(width, count) }, async () => {
    while (next < count) {
      if (performance.now() > deadlineAt) throw new Error(`deadline passed after ${next} of ${count}`);
      await job(next++);
    }
  });
  await Promise.all(workers);
}

async function until(deadlineAt: number, cond: () => Promise<boolean>): Promise<boolean> {
  while (performance.now() < deadlineAt) {
    if (await cond()) return true;
    await sleep(200);
  }
  return false;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const progress = (line: string) => process.stderr.write(`${line}\n`);

function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

// ---- the parent: one child per size, then the table ----

function child<F>(mode: '--size' | '--big', size: number): Promise<F> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...argv, mode, String(size)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${mode} ${size} exited with ${code}`));
      resolve(JSON.parse(out) as F);
    });
  });
}

/** Figures per size, and the ratio of the last to the first. */
function printTable<F>(heads: string[], results: F[], rows: [string, (f: F) => number, number][], ratioHead: string): void {
  const [a, b] = [results[0]!, results[1]];
  const table = [
    ['', ...heads, ...(b ? [ratioHead] : [])],
    ...rows.map(([name, get, digits]) => [
      name,
      ...results.map((f) => get(f).toFixed(digits)),
      ...(b ? [(get(b) / get(a)).toFixed(2)] : []),
    ]),
  ];
  const widths = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  for (const r of table) console.log(r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
}

const ROWS: [string, (f: Figures) => number, number][] = [
  ['tasks', (f) => f.tasks, 0],
  ['setup (s)', (f) => f.setupSeconds, 1],
  ['GET request p50 (ms)', (f) => f.readP50, 1],
  ['GET request p99 (ms)', (f) => f.readP99, 1],
  ['POST request p50 (ms)', (f) => f.writeP50, 1],
  ['POST request p99 (ms)', (f) => f.writeP99, 1],
  ['GET /api/requests (ms)', (f) => f.listMs, 0],
  ['GET /api/requests (MB)', (f) => f.listBytes / 1e6, 1],
  ['GET request p99 during list (ms)', (f) => f.readP99DuringList, 1],
  ['canary deploys done (s)', (f) => f.deploySeconds, 1],
  ['POST deploy p99 (ms)', (f) => f.deployPostP99, 1],
  ['GET request p99 during deploys (ms)', (f) => f.readP99DuringDeploys, 1],
  ['event-loop lag p99 (ms)', (f) => f.lagP99, 1],
  ['event-loop lag max (ms)', (f) => f.lagMax, 0],
  ['peak RSS (MB)', (f) => f.rssMb, 0],
];

const sizeIndex = argv.indexOf('--size');
const bigIndex = argv.indexOf('--big');
if (sizeIndex >= 0 || bigIndex >= 0) {
  const figures = sizeIndex >= 0 ? await runSize(Number(argv[sizeIndex + 1])) : await runBig(Number(argv[bigIndex + 1]));
  process.stdout.write(JSON.stringify(figures));
  process.exit(0);
} else if (BIG > 0) {
  const sizes = [Math.ceil(BIG / 10), BIG];
  console.log(`fledge scale bench: one request of ${sizes.join(' and of ')} instances (fake runtime, LB, health, checks; SQLite on file)`);
  const results: BigFigures[] = [];
  for (const size of sizes) results.push(await child<BigFigures>('--big', size));
  printTable(
    sizes.map((n) => `I = ${n.toLocaleString('en')}`),
    results,
    BIG_ROWS,
    `ratio (×${sizes[1]! / sizes[0]!} I)`,
  );
  for (const f of results) for (const note of f.incomplete) console.log(`I = ${f.instances}: NOTE ${note}`);
} else {
  console.log(
    `fledge scale bench: ${INSTANCES} instances per request, ${DEPLOYS} concurrent canary deploys (fake runtime, LB, health, checks; SQLite on file)`,
  );
  const results: Figures[] = [];
  for (const size of SIZES) results.push(await child<Figures>('--size', size));
  printTable(
    SIZES.map((s) => `R = ${s.toLocaleString('en')}`),
    results,
    ROWS,
    `ratio (×${SIZES[1]! / SIZES[0]!} R)`,
  );
  for (const f of results) for (const note of f.incomplete) console.log(`R = ${f.requests}: NOTE ${note}`);
}
