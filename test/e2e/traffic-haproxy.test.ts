// The under-traffic proof (test/e2e/traffic.test.ts) through HAProxy: a real in-process Fledge
// with `--lb haproxy` (managed: Fledge runs Debian's haproxy in master-worker mode) serves a
// load-balanced SERVICE of 4 instances under steady HTTP load during (a) an atomic deploy,
// (b) a canary deploy, (c) a canary failing at its second step, (d) a MANUAL canary cancelled
// after step 1 and (e) a rollback, each with 0 failed requests and never fewer than 4 healthy
// upstreams in rotation. Then (f) HAProxy is SIGKILLed mid-deploy: Fledge restarts it and it
// comes back with exactly the servers Fledge has, and (g) a server deleted behind Fledge's back
// is put back by the periodic reconcile. Same phases and helpers as the builtin test; task
// ports 37400-37599. Needs haproxy on PATH (.ci/run installs it): without it the suite fails.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeployInput, FledgeClient } from '../../src/api/client.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import { exampleDeploy, nodeCommand, serviceRequest, waitForDeployResult, waitForHealthyTasks, type FinishedDeploy } from '../helpers/example-service.ts';
import { boundedClient, cleanup, leakedProcesses, seenProcessCount, tempDataDir, trackTasks } from '../helpers/fledge-process.ts';
import { startLoad, startMembershipSampler, versionsSentSince, type LoadReport, type MembershipReport } from '../helpers/lb-traffic.ts';
import { waitFor } from '../helpers/wait-for.ts';
import type { HaproxyBalancer } from '../../src/balancers/index.ts';
import { serverName } from '../../src/balancers/haproxy/config.ts';
import { haproxyCommand } from '../../src/balancers/haproxy/index.ts';

const REQ = 'web';
const INSTANCES = 4;
const BASE_PATH = '/web';
const LB_FIELDS: Partial<DeployInput> = { serviceBasePath: BASE_PATH, loadBalancerGroups: ['default'] };
const CANARY = { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 3 };
const FAIL_INSTANCE_SERVICE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fail-instance-service.mjs');
/** per phase: how long a deploy (and its clean-up) may take */
const PHASE_TIMEOUT_MS = 30_000;
/** answers to collect after a phase settled */
const AFTER_SETTLED = 40;

let server: FledgeServer | undefined;
let client: FledgeClient;
let lbUrl: string;

function fledge(): FledgeServer {
  if (!server) throw new Error('fledge did not start');
  return server;
}

/** A deploy of `command` (default: the example service) in the LB at /web. */
function deployOf(deployId: string, deploy: Partial<DeployInput> = {}) {
  return exampleDeploy(REQ, deployId, { deploy: { ...LB_FIELDS, ...deploy } });
}

/**
 * The request is back to steady state on `deployId`: exactly INSTANCES healthy tasks of it,
 * nothing else live (old tasks stopped), and the LB has exactly those tasks in rotation.
 */
async function settledOn(deployId: string): Promise<string[]> {
  const tasks = await waitForHealthyTasks(client, REQ, { count: INSTANCES, deployId, exclusive: true, timeoutMs: PHASE_TIMEOUT_MS });
  const ids = tasks.map((t) => t.taskId.id).sort();
  await waitFor(
    async () => {
      const members = (await fledge().balancer!.upstreams(REQ)).map((u) => u.taskId).sort();
      return JSON.stringify(members) === JSON.stringify(ids) ? members : undefined;
    },
    { timeoutMs: PHASE_TIMEOUT_MS, intervalMs: 20, message: `the LB to serve exactly the ${INSTANCES} tasks of ${deployId}` },
  );
  return ids;
}

/** `n` requests through the LB, one after the other: VERSION → count. */
async function versionsThroughLb(n = 20): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${lbUrl}${BASE_PATH}/probe`, { signal: AbortSignal.timeout(5_000) });
    const text = await res.text();
    const key = res.ok ? String((JSON.parse(text) as { version?: unknown }).version) : `HTTP ${res.status}: ${text.slice(0, 100)}`;
    seen[key] = (seen[key] ?? 0) + 1;
  }
  return seen;
}

interface PhaseOutcome<T> {
  result: T;
  load: LoadReport;
  membership: MembershipReport;
  /** how long the action (deploy and clean-up) took */
  ms: number;
  /** when the action was done: the request was back in steady state */
  settledAt: number;
}

/** Run `action` with steady load through the LB and the membership sampled; print what was seen. */
async function underTraffic<T>(phase: string, action: () => Promise<T>, floor: number | null = INSTANCES): Promise<PhaseOutcome<T>> {
  const s = fledge();
  const membership = startMembershipSampler(s.store, s.balancer!, { requestId: REQ }, { intervalMs: 20, ...(floor !== null ? { floor } : {}) });
  const load = startLoad(`${lbUrl}${BASE_PATH}/traffic`, { concurrency: 4, maxRequests: 200_000, maxDurationMs: 45_000, requestTimeoutMs: 5_000 });
  let result: T;
  let report: LoadReport | undefined;
  let members: MembershipReport | undefined;
  const t0 = Date.now();
  let ms = 0;
  let settledAt = 0;
  try {
    await Promise.all([load.warmedUp(20), membership.sampled()]);
    result = await action();
    settledAt = Date.now();
    ms = settledAt - t0;
    // Keep the load on a little longer: what the LB serves once the deploy is over.
    await load.warmedUp(load.report.ok + AFTER_SETTLED + 4);
  } finally {
    report = await load.stop();
    members = await membership.stop();
    console.log(
      `[traffic haproxy] ${phase}: ${report.sent} requests, ${report.ok} ok, ${report.failures.length} failed, versions ${JSON.stringify(report.versions)}` +
        ` in ${report.durationMs} ms (stopped by ${report.stoppedBy}); LB healthy members min ${members.minHealthy}` +
        ` (in rotation ${members.minInRotation}..${members.maxInRotation}) over ${members.samples} samples; action took ${ms} ms`,
    );
    if (report.failures.length > 0) console.log(`[traffic haproxy] ${phase} failures:\n${report.failures.slice(0, 50).map((f) => JSON.stringify(f)).join('\n')}`);
    if (members.belowFloor.length > 0) console.log(`[traffic haproxy] ${phase} samples below ${INSTANCES}:\n${members.belowFloor.map((m) => JSON.stringify(m)).join('\n')}`);
    if (members.errors.length > 0) console.log(`[traffic haproxy] ${phase} sampler errors: ${members.errors.join('; ')}`);
  }
  return { result: result!, load: report, membership: members, ms, settledAt };
}

/** The guarantees every phase must keep. */
function expectNoDisruption(outcome: PhaseOutcome<unknown>): void {
  expect(outcome.load.failures, 'failed requests through the LB').toEqual([]);
  expect(outcome.load.ok).toBeGreaterThan(AFTER_SETTLED + 20);
  expect(outcome.load.stoppedBy).toBe('stop');
  expect(outcome.membership.errors).toEqual([]);
  expect(outcome.membership.samples).toBeGreaterThan(10);
  expect(outcome.membership.minHealthy, `fewest healthy LB members, at ${JSON.stringify(outcome.membership.atMin)}`).toBeGreaterThanOrEqual(INSTANCES);
}

/** The load's answers once the phase settled, and fresh ones, all come from `version`. */
async function expectServing(outcome: PhaseOutcome<unknown>, version: string): Promise<void> {
  const after = versionsSentSince(outcome.load, outcome.settledAt);
  expect(Object.keys(after), `versions answered after the phase settled: ${JSON.stringify(after)}`).toEqual([version]);
  expect(after[version]).toBeGreaterThanOrEqual(AFTER_SETTLED);
  expect(await versionsThroughLb()).toEqual({ [version]: 20 });
}

async function activeDeployId(): Promise<string | undefined> {
  return (await client.getRequest(REQ)).requestDeployState?.activeDeploy?.deployId;
}

beforeAll(async () => {
  const dataDir = tempDataDir();
  server = await startServer(
    loadConfig(
      {
        host: '127.0.0.1',
        port: 0,
        lbPort: 0,
        lb: 'haproxy',
        haproxyReconcileSeconds: 1,
        dataDir,
        portRangeFrom: 37400,
        portRangeTo: 37599,
        killGraceSeconds: 2,
        drainTimeoutSeconds: 5,
        logLevel: 'warn',
      },
      {},
    ),
    {},
  );
  client = boundedClient(server.url);
  if (!server.lbUrl || !server.balancer) throw new Error('the haproxy LB did not start');
  lbUrl = server.lbUrl;

  await client.createRequest(serviceRequest(REQ, INSTANCES, { loadBalanced: true }));
  await client.createDeploy(deployOf('v1'));
  const done = await waitForDeployResult(client, REQ, 'v1', PHASE_TIMEOUT_MS);
  expect(done.deployResult.deployState).toBe('SUCCEEDED');
  await settledOn('v1');
  expect(await versionsThroughLb(8)).toEqual({ v1: 8 });
});

afterAll(async () => {
  try {
    if (server) {
      trackTasks(await client.requestTasks(REQ).catch(() => []));
      await client.deleteRequest(REQ).catch((err: unknown) => console.log(`[traffic haproxy] delete request: ${String(err)}`));
      const s = server;
      await waitFor(async () => (await s.store.listTasks({ requestId: REQ, live: true })).length === 0, {
        timeoutMs: 20_000,
        intervalMs: 50,
        message: `the tasks of ${REQ} to end after the request was deleted`,
      }).catch((err: unknown) => console.log(`[traffic haproxy] ${String(err)}`));
      await server.close();
      server = undefined;
    }
  } finally {
    // Safety net: SIGKILL every task group seen through the API or in the sandboxes, remove the data dir.
    await cleanup();
  }
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
});

describe('deploys under traffic through HAProxy (4 instances)', () => {
  it('(a) atomic deploy: no failed request, never fewer than 4 healthy upstreams, then only v2', async () => {
    const outcome = await underTraffic('a atomic', async () => {
      await client.createDeploy(deployOf('v2'));
      const done = await waitForDeployResult(client, REQ, 'v2', PHASE_TIMEOUT_MS);
      if (done.deployResult.deployState === 'SUCCEEDED') await settledOn('v2');
      return done;
    });
    expect(outcome.result.deployResult.deployState).toBe('SUCCEEDED');
    expectNoDisruption(outcome);
    expect(outcome.load.versions.v1).toBeGreaterThan(0);
    await expectServing(outcome, 'v2');
    expect(await activeDeployId()).toBe('v2');
  });

  it('(b) canary deploy in steps 1, 2, 3, 4: no failed request, never fewer than 4 healthy upstreams, then only v3', async () => {
    const outcome = await underTraffic('b canary', async () => {
      await client.createDeploy(deployOf('v3', { canaryDeploySettings: CANARY }));
      const done = await waitForDeployResult(client, REQ, 'v3', PHASE_TIMEOUT_MS);
      if (done.deployResult.deployState === 'SUCCEEDED') await settledOn('v3');
      return done;
    });
    expect(outcome.result.deployResult.deployState).toBe('SUCCEEDED');
    expect(outcome.result.deployProgress?.step).toBe(4);
    expectNoDisruption(outcome);
    // Both versions answered while the canary ran.
    expect(outcome.load.versions.v2).toBeGreaterThan(0);
    expect(outcome.load.versions.v3).toBeGreaterThan(0);
    await expectServing(outcome, 'v3');
    expect(await activeDeployId()).toBe('v3');
  });

  it('(c) canary failing at its second step: FAILED, no failed request, the old deploy back at 4 and serving', async () => {
    const outcome = await underTraffic('c canary fails at step 2', async () => {
      await client.createDeploy(
        deployOf('v4', {
          command: nodeCommand(FAIL_INSTANCE_SERVICE),
          taskEnv: { '2': { FAIL_INSTANCE: '2' } },
          canaryDeploySettings: CANARY,
        }),
      );
      const done = await waitForDeployResult(client, REQ, 'v4', PHASE_TIMEOUT_MS);
      await settledOn('v3');
      return done;
    });
    const done: FinishedDeploy = outcome.result;
    expect(done.deployResult.deployState, done.deployResult.message).toBe('FAILED');
    // It failed in step 2, after step 1 was accepted and old #1 retired.
    expect(done.deployProgress?.step).toBe(2);
    expect(done.deployProgress?.retiredOldInstances).toEqual([1]);
    expect(done.deployResult.deployFailures.map((f) => f.taskId?.instanceNo)).toContain(2);
    expectNoDisruption(outcome);
    expect(outcome.load.versions.v4).toBeGreaterThan(0); // v4 #1 served in step 1
    await expectServing(outcome, 'v3');
    expect(await activeDeployId()).toBe('v3');
  });

  it('(d) MANUAL canary cancelled after step 1 was accepted: CANCELED, no failed request, the old deploy back at 4', async () => {
    const v3Tasks = await waitForHealthyTasks(client, REQ, { count: INSTANCES, deployId: 'v3', exclusive: true });
    const oldFirst = v3Tasks.find((t) => t.taskId.instanceNo === 1)!;
    const outcome = await underTraffic('d cancel mid-canary', async () => {
      await client.createDeploy(deployOf('v5', { canaryDeploySettings: { ...CANARY, acceptanceMode: 'MANUAL' } }));
      await waitFor(
        async () => {
          const progress = (await client.getRequest(REQ)).pendingDeployState?.deployProgress;
          return progress?.step === 1 && progress.phase === 'ACCEPTANCE';
        },
        { timeoutMs: PHASE_TIMEOUT_MS, intervalMs: 50, message: 'v5 step 1 to wait for manual acceptance' },
      );
      await client.advanceDeploy(REQ, 'v5', 'step 1 looks fine');
      // Step 1 accepted: old #1 leaves the LB and is stopped.
      await waitFor(async () => !(await fledge().store.listTasks({ requestId: REQ, live: true })).some((t) => t.taskId.id === oldFirst.taskId.id), {
        timeoutMs: PHASE_TIMEOUT_MS,
        intervalMs: 20,
        message: `old #1 (${oldFirst.taskId.id}) to be retired`,
      });
      await client.cancelDeploy(REQ, 'v5');
      const done = await waitForDeployResult(client, REQ, 'v5', PHASE_TIMEOUT_MS);
      await settledOn('v3');
      return done;
    });
    expect(outcome.result.deployResult.deployState, outcome.result.deployResult.message).toBe('CANCELED');
    expect(outcome.result.deployProgress?.retiredOldInstances).toEqual([1]);
    expectNoDisruption(outcome);
    expect(outcome.load.versions.v5).toBeGreaterThan(0);
    await expectServing(outcome, 'v3');
    expect(await activeDeployId()).toBe('v3');
    // Old #1 was replaced by a fresh v3 task.
    const now = await waitForHealthyTasks(client, REQ, { count: INSTANCES, deployId: 'v3', exclusive: true });
    expect(now.map((t) => t.taskId.id)).not.toContain(oldFirst.taskId.id);
  });

  it('(e) rollback to v2: no failed request, never fewer than 4 healthy upstreams, then only v2', async () => {
    let rollbackId = '';
    const outcome = await underTraffic('e rollback', async () => {
      const parent = await client.rollback(REQ, { message: 'back to v2 under traffic' });
      rollbackId = parent.requestDeployState?.pendingDeploy?.deployId ?? '';
      expect(rollbackId).not.toBe('');
      const done = await waitForDeployResult(client, REQ, rollbackId, PHASE_TIMEOUT_MS);
      if (done.deployResult.deployState === 'SUCCEEDED') await settledOn(rollbackId);
      return done;
    });
    expect(outcome.result.deployResult.deployState, outcome.result.deployResult.message).toBe('SUCCEEDED');
    expectNoDisruption(outcome);
    expect(outcome.load.versions.v3).toBeGreaterThan(0);
    await expectServing(outcome, 'v2');
    expect(await activeDeployId()).toBe(rollbackId);
  });

  // A dead task's address may be handed to another task: it must leave the rotation at once.
  it('a task that dies on its own leaves the LB rotation', async () => {
    const before = await waitForHealthyTasks(client, REQ, { count: INSTANCES, exclusive: true });
    const victim = before[1]!;
    process.kill(-victim.pid!, 'SIGKILL');
    await waitForHealthyTasks(client, REQ, { count: INSTANCES, exclusive: true, notIds: [victim.taskId.id], timeoutMs: PHASE_TIMEOUT_MS });
    await waitFor(async () => !(await fledge().balancer!.upstreams(REQ)).some((u) => u.taskId === victim.taskId.id), {
      timeoutMs: 3_000,
      intervalMs: 50,
      message: `dead task ${victim.taskId.id} to leave the LB after its replacement became healthy`,
    });
  });

  it('(f) HAProxy SIGKILLed mid-deploy: restarted and restored with exactly the servers Fledge has', async () => {
    const balancer = fledge().balancer as HaproxyBalancer;
    const restartsBefore = balancer.restarts();
    await client.createDeploy(deployOf('v6'));
    // mid-deploy: new tasks are starting or joining the LB
    await waitFor(async () => (await fledge().store.listTasks({ requestId: REQ, live: true })).some((t) => t.taskId.deployId === 'v6'), {
      timeoutMs: PHASE_TIMEOUT_MS,
      intervalMs: 20,
      message: 'v6 tasks to start',
    });
    const pids = await balancer.pids();
    expect(pids.length).toBeGreaterThanOrEqual(2);
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const done = await waitForDeployResult(client, REQ, 'v6', PHASE_TIMEOUT_MS);
    expect(done.deployResult.deployState, done.deployResult.message).toBe('SUCCEEDED');
    const ids = await settledOn('v6');
    expect(balancer.restarts()).toBeGreaterThan(restartsBefore);
    await waitFor(async () => JSON.stringify(await haproxyServers(balancer)) === JSON.stringify(ids.map(serverName).sort()), {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: `haproxy to have exactly the servers ${ids.join(', ')}`,
    });
    expect(await versionsThroughLb()).toEqual({ v6: 20 });
    // and the next deploy runs through the restarted HAProxy without a failed request
    const outcome = await underTraffic('f atomic after the restart', async () => {
      await client.createDeploy(deployOf('v7'));
      const next = await waitForDeployResult(client, REQ, 'v7', PHASE_TIMEOUT_MS);
      if (next.deployResult.deployState === 'SUCCEEDED') await settledOn('v7');
      return next;
    });
    expect(outcome.result.deployResult.deployState).toBe('SUCCEEDED');
    expectNoDisruption(outcome);
    await expectServing(outcome, 'v7');
  });

  it('(g) a server deleted behind Fledge\'s back is put back by the periodic reconcile', async () => {
    const balancer = fledge().balancer as HaproxyBalancer;
    const ids = await settledOn('v7');
    const sock = balancer.paths.runtimeSocket;
    const victim = (await haproxyServerRows(balancer))[0]!;
    await haproxyCommand(sock, `set server ${victim.key} state maint`);
    expect((await haproxyCommand(sock, `del server ${victim.key}`)).trim()).toBe('Server deleted.');
    expect(await haproxyServers(balancer)).toHaveLength(INSTANCES - 1);
    await waitFor(async () => JSON.stringify(await haproxyServers(balancer)) === JSON.stringify(ids.map(serverName).sort()), {
      timeoutMs: 10_000,
      intervalMs: 50,
      message: 'the reconcile to re-add the deleted server',
    });
    expect(await versionsThroughLb()).toEqual({ v7: 20 });
  });
});

/** HAProxy's servers in Fledge's backends (runtime API), as "backend/server" keys. */
async function haproxyServerRows(balancer: HaproxyBalancer): Promise<{ key: string; name: string }[]> {
  const text = await haproxyCommand(balancer.paths.runtimeSocket, 'show servers state');
  return text
    .split('\n')
    .filter((l) => /^\d+ fledge_b\d+ /.test(l))
    .map((l) => l.split(' '))
    .map((f) => ({ key: `${f[1]}/${f[3]}`, name: f[3]! }));
}

/** HAProxy's server names (serverName(taskId)), sorted. */
async function haproxyServers(balancer: HaproxyBalancer): Promise<string[]> {
  return (await haproxyServerRows(balancer)).map((r) => r.name).sort();
}
