// The API's timings with real processes beside the simulation's:
// `npx tsx bench/scale-real.ts [--requests R] [--instances I] [--samples N]` (default 30 × 10 = 300 tasks).
//
// In one run: (1) a real `fledge serve` (bin/fledge.js, its own process, the process runtime,
// the builtin LB) runs R requests × I instances of a real, tiny process (`sleep`); (2) an
// in-process server of fakes (as bench/scale.ts builds it) runs the same R × I. Against each,
// through the HTTP API: single GETs of a request, single writes (a request posted again
// unchanged), `GET /api/requests` and one atomic deploy of one request, POST → SUCCEEDED. It
// prints each figure for both and the ratio real / simulated: what real processes, their
// sandboxes and the server's own process cost on top of what bench/scale.ts measures.
import { performance } from 'node:perf_hooks';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/index.ts';
import { silentLogger } from '../src/logger.ts';
import { startServer } from '../src/server.ts';
import { cleanup, startFledgeProcess } from '../test/helpers/fledge-process.ts';
import { freePort, reservePorts } from '../test/helpers/ports.ts';

const argv = process.argv.slice(2);
const num = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const REQUESTS = num('requests', 30);
const INSTANCES = num('instances', 10);
const SAMPLES = num('samples', 200);
const DEADLINE_MS = 180_000;

interface Target {
  url: string;
  token: string;
}

interface Figures {
  readP50: number;
  readP99: number;
  writeP50: number;
  writeP99: number;
  listMs: number;
  deployMs: number;
}

const quantile = (xs: number[], q: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
};

async function call(t: Target, method: string, path: string, body?: unknown): Promise<{ ms: number; json: unknown }> {
  const start = performance.now();
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const ms = performance.now() - start;
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
  return { ms, json: JSON.parse(text) };
}

const ids = Array.from({ length: REQUESTS }, (_, i) => `r${String(i).padStart(3, '0')}`);
const request = (id: string) => ({ id, requestType: 'SERVICE', instances: INSTANCES });
const deploy = (id: string, deployId: string) => ({
  deploy: {
    requestId: id,
    id: deployId,
    command: 'exec sleep 100000',
    shell: true,
    considerHealthyAfterRunningForSeconds: 1,
    resources: { cpus: 0.01, memoryMb: 1, numPorts: 0 },
  },
});

async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function healthyCount(t: Target): Promise<number> {
  const list = (await call(t, 'GET', '/api/requests')).json as { instanceCounts?: { healthy: number } }[];
  return list.reduce((sum, r) => sum + (r.instanceCounts?.healthy ?? 0), 0);
}

async function measure(t: Target): Promise<Figures> {
  for (let i = 0; i < ids.length; i += 5) {
    await Promise.all(
      ids.slice(i, i + 5).map(async (id) => {
        await call(t, 'POST', '/api/requests', request(id));
        await call(t, 'POST', '/api/deploys', deploy(id, 'd1'));
      }),
    );
  }
  await until(`${REQUESTS * INSTANCES} healthy tasks`, async () => (await healthyCount(t)) >= REQUESTS * INSTANCES);
  const reads: number[] = [];
  const writes: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    const id = ids[i % ids.length]!;
    reads.push((await call(t, 'GET', `/api/requests/request/${id}`)).ms);
    writes.push((await call(t, 'POST', '/api/requests', request(id))).ms);
  }
  const lists: number[] = [];
  for (let i = 0; i < 5; i++) lists.push((await call(t, 'GET', '/api/requests')).ms);
  const started = performance.now();
  await call(t, 'POST', '/api/deploys', deploy(ids[0]!, 'd2'));
  await until('the deploy of d2', async () => {
    const h = (await call(t, 'GET', `/api/history/request/${ids[0]}/deploy/d2`)).json as { deployResult?: { deployState: string } };
    if (h.deployResult && h.deployResult.deployState !== 'SUCCEEDED') throw new Error(`d2 ended ${h.deployResult.deployState}`);
    return h.deployResult?.deployState === 'SUCCEEDED';
  });
  const deployMs = performance.now() - started;
  for (const id of ids) await call(t, 'DELETE', `/api/requests/request/${id}`);
  return {
    readP50: quantile(reads, 0.5),
    readP99: quantile(reads, 0.99),
    writeP50: quantile(writes, 0.5),
    writeP99: quantile(writes, 0.99),
    listMs: quantile(lists, 0.5),
    deployMs,
  };
}

async function real(): Promise<Figures> {
  // Room for every task: the host's capacity is not what this measures.
  const fledge = await startFledgeProcess({
    portRange: reservePorts(50),
    args: ['--log-level', 'warn', '--cpus', '1000', '--memory-mb', '1000000'],
  });
  try {
    return await measure({ url: fledge.url, token: fledge.token });
  } finally {
    fledge.kill('SIGTERM');
    await fledge.waitExit(30_000).catch(() => fledge.kill('SIGKILL'));
  }
}

async function simulated(): Promise<Figures> {
  const server = await startServer(
    loadConfig(
      {
        dataDir: mkdtempSync(join(tmpdir(), 'fledge-scale-real-')),
        port: await freePort(),
        runtime: 'fake',
        lb: 'fake',
        health: 'fake',
        checks: 'fake',
        allowFakes: true,
        cpus: 1000,
        memoryMb: 1_000_000,
        logLevel: 'silent',
      },
      {},
    ),
    { logger: silentLogger },
  );
  try {
    return await measure({ url: server.url, token: server.adminToken ?? '' });
  } finally {
    await server.close();
  }
}

const rows: [string, keyof Figures][] = [
  ['GET request p50 (ms)', 'readP50'],
  ['GET request p99 (ms)', 'readP99'],
  ['POST request p50 (ms)', 'writeP50'],
  ['POST request p99 (ms)', 'writeP99'],
  ['GET /api/requests (ms, median of 5)', 'listMs'],
  ['atomic deploy of one request, POST → SUCCEEDED (ms)', 'deployMs'],
];

try {
  console.log(`${REQUESTS} requests × ${INSTANCES} instances (${REQUESTS * INSTANCES} tasks), ${SAMPLES} samples per figure`);
  const sim = await simulated();
  const live = await real();
  console.log(`${'figure'.padEnd(52)} ${'real'.padStart(9)} ${'simulated'.padStart(10)} ${'ratio'.padStart(7)}`);
  for (const [label, key] of rows) {
    console.log(
      `${label.padEnd(52)} ${live[key].toFixed(1).padStart(9)} ${sim[key].toFixed(1).padStart(10)} ${(live[key] / sim[key]).toFixed(2).padStart(6)}×`,
    );
  }
} finally {
  await cleanup();
}
