// How fast a failed traffic step stops sending requests to the new deploy:
// `npx tsx bench/traffic-abort.ts [rounds]` (default 3).
//
// In one run, for the builtin proxy and for HAProxy (Debian's, managed by Fledge): an
// in-process Fledge serves a load-balanced request of 2 instances under steady load (4
// clients, one request at a time each); each round deploys a new version with trafficSteps
// [25] and MANUAL acceptance, waits until Fledge judged the step's share on the balancer's
// counters, then rejects it (the failing verdict) and times, from the reject:
//   - lb:      until the balancer lists no task of the new deploy in rotation (polled 5 ms);
//   - clients: until the last request the load sent that the new deploy answered — after it,
//              every request went to the old deploy (the observed share is 0);
//   - counted: until the first whole second (1 s resolution) in which the balancer's own counters
//              show the new deploy at 0 begins.
// Printed per balancer (median and max over the rounds), and HAProxy over builtin as ratios.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { FledgeClient } from '../src/api/client.ts';
import { loadConfig } from '../src/config/index.ts';
import type { DeployProgress } from '../src/core/deploy/types.ts';
import { startServer, type FledgeServer } from '../src/server.ts';
import { exampleDeploy, serviceRequest } from '../test/helpers/example-service.ts';
import { startLoad } from '../test/helpers/lb-traffic.ts';
import { freePort, reservePorts } from '../test/helpers/ports.ts';

const ROUNDS = Math.max(1, Math.min(20, Number(process.argv[2] ?? 3)));
const REQ = 'abort';
const LB = { serviceBasePath: '/abort', loadBalancerGroups: ['default'] };
const TASK_PORTS = reservePorts(200);

interface Round {
  lbMs: number;
  clientsMs: number;
  countedMs: number;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await pause(everyMs);
  }
}

async function deployState(client: FledgeClient, deployId: string): Promise<string | undefined> {
  const h = await client.deployHistoryEntry(REQ, deployId).catch(() => undefined);
  return (h as { deployResult?: { deployState: string } } | undefined)?.deployResult?.deployState;
}

async function runBalancer(lb: 'builtin' | 'haproxy'): Promise<Round[]> {
  const dataDir = mkdtempSync(join(tmpdir(), `fledge-bench-abort-${lb}-`));
  const server: FledgeServer = await startServer(
    loadConfig({
      dataDir,
      port: 0,
      lb,
      lbPort: lb === 'haproxy' ? await freePort() : 0,
      portRangeFrom: TASK_PORTS.from,
      portRangeTo: TASK_PORTS.to,
      logLevel: 'warn',
    }),
    {},
  );
  const client = new FledgeClient(server.url, server.adminToken ? { token: server.adminToken } : {});
  const balancer = server.balancer!;
  const rounds: Round[] = [];
  let load: ReturnType<typeof startLoad> | undefined;
  try {
    await client.createRequest(serviceRequest(REQ, 2, { loadBalanced: true }));
    await client.createDeploy(exampleDeploy(REQ, 'v1', { deploy: LB }));
    await until('v1 to succeed', async () => ((await deployState(client, 'v1')) === 'SUCCEEDED' ? true : undefined));
    await until('v1 through the LB', async () => {
      const res = await fetch(`${server.lbUrl}/abort`, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      await res?.arrayBuffer();
      return res?.ok ? true : undefined;
    });
    load = startLoad(`${server.lbUrl}/abort`, { concurrency: 4, maxRequests: 5_000_000, maxDurationMs: 600_000 });
    await load.warmedUp(100);

    for (let r = 1; r <= ROUNDS; r++) {
      const deployId = `c${r}`;
      await client.createDeploy(
        exampleDeploy(REQ, deployId, {
          deploy: {
            ...LB,
            canaryDeploySettings: { enableCanaryDeploy: true, acceptanceMode: 'MANUAL', trafficSteps: [25] },
            acceptanceTimeoutSeconds: 600,
          },
        }),
      );
      await until(`${deployId}'s share judged`, async () => {
        const p = (await client.getRequest(REQ)).pendingDeployState?.deployProgress as DeployProgress | undefined;
        return p?.phase === 'ACCEPTANCE' && p.traffic?.verdict?.state === 'SUCCEEDED' ? true : undefined;
      });
      const t0 = Date.now();
      await client.rejectDeploy(REQ, deployId, 'bench: the failing verdict');
      const lbOut = await until(
        'the new tasks out of rotation',
        async () => ((await balancer.upstreams(REQ)).some((u) => u.deployId === deployId) ? undefined : Date.now()),
        30_000,
        5,
      );
      // the counters: a whole second without the new deploy
      const counted = await until(
        'the counters to show 0',
        async () => {
          // the last complete second (the series' first of two points), started after the reject
          const t = await balancer.traffic(REQ, { windowMs: 2_000, stepMs: 1_000 });
          const done = t.series?.points[0];
          return done && done.at >= t0 && !done.deploys.some((d) => d.deployId === deployId && d.requests > 0) ? done.at : undefined;
        },
        30_000,
        20,
      );
      await until(`${deployId} to end`, async () => ((await deployState(client, deployId)) ? true : undefined));
      await pause(1_000);
      const lastNew = Math.max(t0, ...load.report.answers.filter((a) => a.version === deployId).map((a) => a.sentAt));
      rounds.push({ lbMs: lbOut - t0, clientsMs: lastNew - t0, countedMs: Math.max(0, counted - t0) });
      console.log(
        `  ${lb} round ${r}: out of rotation ${lbOut - t0} ms, last request to ${deployId} sent ${lastNew - t0} ms, counters at 0 from ${Math.max(0, counted - t0)} ms after the reject`,
      );
    }
    const report = await load.stop();
    load = undefined;
    console.log(`  ${lb} load: ${report.sent} requests, ${report.failures.length} failed`);
  } finally {
    await load?.stop();
    await client.deleteRequest(REQ).catch(() => undefined);
    await until(
      'the tasks to end',
      async () => ((await server.store.listTasks({ requestId: REQ, live: true })).length === 0 ? true : undefined),
      30_000,
    ).catch(() => undefined);
    await server.close();
    // closing Fledge leaves a managed HAProxy serving (the next start adopts it): stop it
    await (balancer as { shutdown?: () => Promise<void> }).shutdown?.();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return rounds;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  console.log(`traffic abort: reject a traffic step (25 %) under load, ${ROUNDS} round(s) per balancer`);
  const results: Record<string, Round[]> = {};
  for (const lb of ['builtin', 'haproxy'] as const) results[lb] = await runBalancer(lb);
  console.log('');
  for (const [lb, rounds] of Object.entries(results)) {
    const f = (k: keyof Round) => `${median(rounds.map((r) => r[k]))} ms (max ${Math.max(...rounds.map((r) => r[k]))})`;
    console.log(
      `  ${lb.padEnd(8)} out of rotation ${f('lbMs')}; last request to the new deploy ${f('clientsMs')}; counters at 0 ${f('countedMs')}`,
    );
  }
  const ratio = (k: keyof Round) =>
    (median(results.haproxy!.map((r) => r[k])) / Math.max(1, median(results.builtin!.map((r) => r[k])))).toFixed(2);
  console.log(
    `  haproxy / builtin: out of rotation ${ratio('lbMs')}× (the load runs in this process, beside the builtin proxy and the API)`,
  );
}

await main();
