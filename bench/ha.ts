// Several schedulers on PostgreSQL, measured in one run: `npx tsx bench/ha.ts [rounds]`.
//
// On a private PostgreSQL cluster (test/helpers/postgres.ts) with three real `fledge serve`
// processes (--lb none, a non-balanced SERVICE of 3 instances of examples/http-service.mjs):
//  1. takeover: a canary step waits for a manual advance; the leader is SIGKILLed and the
//     advance is posted to a follower at once; takeover = SIGKILL → the new leader's first
//     decision (the decision-log entry that starts step 2). Defaults: lease 10 s, renew 2 s.
//  2. API latency on a follower vs the leader: GET /api/requests/request/<id> and
//     POST /api/requests (an upsert that records and wakes the loop), p50 / p99 each.
//  3. deploy latency, PostgreSQL vs SQLite: the same atomic deploy of 3 (POST → SUCCEEDED) on
//     one scheduler of each store, alternated, median of the rounds, as a ratio.
import { performance } from 'node:perf_hooks';
import type { FledgeClient } from '../src/api/client.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../test/helpers/example-service.ts';
import { cleanup, reservePorts, startFledgeProcess, tempDataDir, type FledgeProcess } from '../test/helpers/fledge-process.ts';
import { startPostgres } from '../test/helpers/postgres.ts';
import { waitFor } from '../test/helpers/wait-for.ts';

const ROUNDS = Number(process.argv[2] ?? 3);
const PORTS = reservePorts(200);
const REQUEST = 'bench';
const FAST = { uri: '/health', startupIntervalSeconds: 0.05, intervalSeconds: 1 };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))] ?? NaN;
const fmt = (ms: number) => ms.toFixed(ms < 10 ? 2 : 0);

async function leaderOf(servers: FledgeProcess[], not?: FledgeProcess): Promise<FledgeProcess> {
  return waitFor(
    async () => {
      for (const s of servers) {
        if (s === not || s.exited) continue;
        if ((await s.client.state().catch(() => undefined))?.leader?.self) return s;
      }
      return undefined;
    },
    { timeoutMs: 30_000, intervalMs: 5, message: 'a leader' },
  );
}

async function atomicDeploy(client: FledgeClient, requestId: string, deployId: string): Promise<number> {
  const t0 = performance.now();
  await client.createDeploy(exampleDeploy(requestId, deployId, { deploy: { healthcheck: FAST } }));
  const done = await waitForDeployResult(client, requestId, deployId, 60_000);
  const ms = performance.now() - t0;
  if (done.deployResult.deployState !== 'SUCCEEDED') throw new Error(`${deployId}: ${JSON.stringify(done.deployResult)}`);
  return ms;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const pg = await startPostgres();
  try {
    const url = await pg.createDatabase();
    const start = (dataDir: string, store = url) =>
      startFledgeProcess({ dataDir, portRange: PORTS, args: ['--lb', 'none', '--log-level', 'warn'], env: { FLEDGE_STORE: store } });
    const dirs = [tempDataDir(), tempDataDir(), tempDataDir()];
    const servers: FledgeProcess[] = [];
    for (const d of dirs) servers.push(await start(d));
    let leader = await leaderOf(servers);
    await leader.client.createRequest(serviceRequest(REQUEST, 3));
    await atomicDeploy(leader.client, REQUEST, 'v0');

    // ---- 1. takeover ----
    const takeovers: number[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const deployId = `c${round}`;
      const follower = servers.find((s) => s !== leader && !s.exited)!;
      await follower.client.createDeploy(
        exampleDeploy(REQUEST, deployId, {
          deploy: { healthcheck: FAST, canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'MANUAL' } },
        }),
      );
      await waitFor(
        async () => {
          const p = (await follower.client.pendingDeploys()).find((d) => d.deployMarker.deployId === deployId)?.deployProgress;
          return p?.phase === 'ACCEPTANCE' && p.stepReadyAt !== undefined;
        },
        { timeoutMs: 30_000, intervalMs: 10, message: 'step 1 to wait for approval' },
      );
      const killedAt = Date.now();
      leader.kill('SIGKILL');
      await follower.client.advanceDeploy(REQUEST, deployId, 'advance recorded while nobody leads');
      await leader.waitExit();
      const decision = await waitFor(
        async () => {
          const entry = await follower.client.deployHistoryEntry(REQUEST, deployId).catch(() => undefined);
          const log = entry?.deployProgress?.decisionLog ?? [];
          return log.find((d) => d.at >= killedAt && d.step === 2);
        },
        { timeoutMs: 30_000, intervalMs: 5, message: 'the new leader to decide' },
      );
      takeovers.push(decision.at - killedAt);
      const next = await leaderOf(servers, leader);
      servers[servers.indexOf(leader)] = await start(leader.dataDir);
      leader = next;
      // finish the deploy
      await waitFor(
        async () => {
          const entry = await leader.client.deployHistoryEntry(REQUEST, deployId);
          if (entry.deployResult) return true;
          const p = (await leader.client.pendingDeploys()).find((d) => d.deployMarker.deployId === deployId)?.deployProgress;
          if (p?.phase === 'ACCEPTANCE' && p.stepReadyAt !== undefined)
            await leader.client.advanceDeploy(REQUEST, deployId).catch(() => undefined);
          return undefined;
        },
        { timeoutMs: 60_000, intervalMs: 50, message: `${deployId} to finish` },
      );
    }

    // ---- 2. API latency: follower vs leader ----
    const follower = servers.find((s) => s !== leader && !s.exited)!;
    const request = serviceRequest(REQUEST, 3);
    const api: Record<string, { read: number[]; write: number[] }> = { leader: { read: [], write: [] }, follower: { read: [], write: [] } };
    for (let i = 0; i < 30; i++) {
      // warm-up
      await leader.client.getRequest(REQUEST);
      await follower.client.getRequest(REQUEST);
    }
    for (let i = 0; i < 200; i++) {
      for (const [name, s] of [
        ['leader', leader],
        ['follower', follower],
      ] as const) {
        api[name]!.read.push(await timed(() => s.client.getRequest(REQUEST)));
        if (i % 2 === 0) api[name]!.write.push(await timed(() => s.client.createRequest(request)));
      }
    }

    // ---- 3. deploy latency: PostgreSQL vs SQLite ----
    for (const s of servers) s.kill('SIGTERM');
    for (const s of servers) await s.waitExit();
    await cleanup();
    const pgServer = await start(tempDataDir(), await pg.createDatabase());
    const sqliteServer = await startFledgeProcess({
      dataDir: tempDataDir(),
      portRange: PORTS,
      args: ['--lb', 'none', '--log-level', 'warn'],
    });
    const deploys = { postgres: [] as number[], sqlite: [] as number[] };
    for (const [name, s] of [
      ['postgres', pgServer],
      ['sqlite', sqliteServer],
    ] as const) {
      await s.client.createRequest(serviceRequest(`${REQUEST}-${name}`, 3));
    }
    for (let round = 0; round <= ROUNDS; round++) {
      for (const [name, s] of [
        ['postgres', pgServer],
        ['sqlite', sqliteServer],
      ] as const) {
        const ms = await atomicDeploy(s.client, `${REQUEST}-${name}`, `d${round}`);
        if (round > 0) deploys[name].push(ms); // round 0 warms up
        await waitForHealthyTasks(s.client, `${REQUEST}-${name}`, { count: 3, deployId: `d${round}`, exclusive: true });
      }
    }

    console.log(`\n# several schedulers on PostgreSQL (${ROUNDS} rounds; lease 10 s, renew 2 s)\n`);
    console.log(
      `takeover, leader SIGKILL → first decision by the new leader: median ${fmt(median(takeovers))} ms (${takeovers.map(fmt).join(', ')})`,
    );
    console.log('\n| API call | leader p50 / p99 ms | follower p50 / p99 ms | follower / leader (p50) |');
    console.log('|---|---|---|---|');
    for (const kind of ['read', 'write'] as const) {
      const l = api.leader![kind];
      const f = api.follower![kind];
      const label = kind === 'read' ? 'GET /api/requests/request/:id' : 'POST /api/requests (upsert)';
      console.log(
        `| ${label} | ${fmt(pct(l, 50))} / ${fmt(pct(l, 99))} | ${fmt(pct(f, 50))} / ${fmt(pct(f, 99))} | ${(pct(f, 50) / pct(l, 50)).toFixed(2)}× |`,
      );
    }
    const pgMs = median(deploys.postgres);
    const sqliteMs = median(deploys.sqlite);
    console.log(
      `\natomic deploy of 3, POST → SUCCEEDED: SQLite ${fmt(sqliteMs)} ms, PostgreSQL ${fmt(pgMs)} ms → ${(pgMs / sqliteMs).toFixed(2)}×`,
    );
  } finally {
    await cleanup();
    await pg.destroy();
  }
}

await main();
