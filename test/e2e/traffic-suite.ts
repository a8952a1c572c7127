// The proof under traffic (issue "phased canary deploy engine", item 10), shared by the builtin
// LB (traffic.test.ts) and HAProxy (traffic-haproxy.test.ts): a real in-process Fledge
// (process runtime, HTTP health checks, the given LB on a free port) serves a load-balanced
// SERVICE of 4 instances while steady HTTP load goes through its load balancer, during
//   (a) an atomic deploy, (b) a canary deploy (group 1, 3 cycles: steps 1, 2, 3, 4),
//   (c) a canary that fails at its second step, (d) a MANUAL canary cancelled after step 1
//   was accepted (old #1 retired), and (e) a rollback.
// Each phase must answer every request 2xx (a connection error or non-2xx is a failure) and
// never have fewer than 4 healthy upstreams in rotation (sampled every 20 ms: the balancer's
// membership joined with the store's task health); afterwards the LB serves only the version
// that should be active. Each test file gives its own task port range and adds its own phases.
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeployInput, FledgeClient } from '../../src/api/client.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startServer, type FledgeServer } from '../../src/server.ts';
import {
  exampleDeploy,
  nodeCommand,
  serviceRequest,
  waitForDeployResult,
  waitForHealthyTasks,
  type FinishedDeploy,
} from '../helpers/example-service.ts';
import { boundedClient, cleanup, leakedProcesses, seenProcessCount, tempDataDir, trackTasks } from '../helpers/fledge-process.ts';
import { startLoad, startMembershipSampler, versionsSentSince, type LoadReport, type MembershipReport } from '../helpers/lb-traffic.ts';
import { freePort, reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

export const REQ = 'web';
export const INSTANCES = 4;
const BASE_PATH = '/web';
const LB_FIELDS: Partial<DeployInput> = { serviceBasePath: BASE_PATH, loadBalancerGroups: ['default'] };
const CANARY = { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 3 };
const FAIL_INSTANCE_SERVICE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fail-instance-service.mjs');
/** per phase: how long a deploy (and its clean-up) may take */
export const PHASE_TIMEOUT_MS = 30_000;
/** answers to collect after a phase settled */
const AFTER_SETTLED = 40;

export interface PhaseOutcome<T> {
  result: T;
  load: LoadReport;
  membership: MembershipReport;
  /** how long the action (deploy and clean-up) took */
  ms: number;
  /** when the action was done: the request was back in steady state */
  settledAt: number;
}

/** A task port range reserved for this test file (outside the ephemeral range). */
export function taskPorts(count: number): { portRangeFrom: number; portRangeTo: number } {
  const range = reservePorts(count);
  return { portRangeFrom: range.from, portRangeTo: range.to };
}

export interface TrafficSuiteOptions {
  /** the balancer the in-process Fledge runs */
  lb: 'builtin' | 'haproxy';
  /** the balancer's own server config and this file's task port range */
  config: { portRangeFrom: number; portRangeTo: number; haproxyReconcileSeconds?: number };
  /** log prefix, e.g. "traffic" or "traffic haproxy" */
  label: string;
  /** the describe block's title */
  title: string;
  /** registers the file's own tests inside the describe block, after (a)-(e) */
  more: (suite: TrafficSuite) => void;
}

export interface TrafficSuite {
  /** the running Fledge (throws before beforeAll started it) */
  fledge(): FledgeServer;
  /** the API client (set in beforeAll: read it inside a test, not at module level) */
  readonly client: FledgeClient;
  /** A deploy of `command` (default: the example service) in the LB at /web. */
  deployOf(deployId: string, deploy?: Partial<DeployInput>): ReturnType<typeof exampleDeploy>;
  /** Back to steady state on `deployId`: exactly INSTANCES healthy tasks of it, nothing else live, and exactly those in the LB. */
  settledOn(deployId: string): Promise<string[]>;
  /** `n` requests through the LB, one after the other: VERSION → count. */
  versionsThroughLb(n?: number): Promise<Record<string, number>>;
  /** Run `action` with steady load through the LB and the membership sampled; print what was seen. */
  underTraffic<T>(phase: string, action: () => Promise<T>, floor?: number | null): Promise<PhaseOutcome<T>>;
  /** The guarantees every phase must keep. */
  expectNoDisruption(outcome: PhaseOutcome<unknown>): void;
  /** The load's answers once the phase settled, and fresh ones, all come from `version`. */
  expectServing(outcome: PhaseOutcome<unknown>, version: string): Promise<void>;
  /** the request's active deploy */
  activeDeployId(): Promise<string | undefined>;
  /** waitForHealthyTasks for the request */
  waitForHealthyTasks(options: Parameters<typeof waitForHealthyTasks>[2]): ReturnType<typeof waitForHealthyTasks>;
  /** registers the test "a task that dies on its own leaves the LB rotation" */
  itDeadTaskLeavesRotation(): void;
}

/**
 * Starts an in-process Fledge with `options.lb` in beforeAll (request REQ with INSTANCES
 * instances, v1 deployed and serving) and stops it in afterAll, then registers
 * describe(options.title) with the phases (a)-(e) followed by `options.more(suite)`.
 */
export function trafficSuite(options: TrafficSuiteOptions): TrafficSuite {
  const { label } = options;
  let server: FledgeServer | undefined;
  let client: FledgeClient;
  let lbUrl: string;

  function fledge(): FledgeServer {
    if (!server) throw new Error('fledge did not start');
    return server;
  }

  function deployOf(deployId: string, deploy: Partial<DeployInput> = {}) {
    return exampleDeploy(REQ, deployId, { deploy: { ...LB_FIELDS, ...deploy } });
  }

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

  async function underTraffic<T>(phase: string, action: () => Promise<T>, floor: number | null = INSTANCES): Promise<PhaseOutcome<T>> {
    const s = fledge();
    const membership = startMembershipSampler(
      s.store,
      s.balancer!,
      { requestId: REQ },
      { intervalMs: 20, ...(floor !== null ? { floor } : {}) },
    );
    const load = startLoad(`${lbUrl}${BASE_PATH}/traffic`, {
      concurrency: 4,
      maxRequests: 200_000,
      maxDurationMs: 45_000,
      requestTimeoutMs: 5_000,
    });
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
        `[${label}] ${phase}: ${report.sent} requests, ${report.ok} ok, ${report.failures.length} failed, versions ${JSON.stringify(report.versions)}` +
          ` in ${report.durationMs} ms (stopped by ${report.stoppedBy}); LB healthy members min ${members.minHealthy}` +
          ` (in rotation ${members.minInRotation}..${members.maxInRotation}) over ${members.samples} samples; action took ${ms} ms`,
      );
      if (report.failures.length > 0)
        console.log(
          `[${label}] ${phase} failures:\n${report.failures
            .slice(0, 50)
            .map((f) => JSON.stringify(f))
            .join('\n')}`,
        );
      if (members.belowFloor.length > 0)
        console.log(`[${label}] ${phase} samples below ${INSTANCES}:\n${members.belowFloor.map((m) => JSON.stringify(m)).join('\n')}`);
      if (members.errors.length > 0) console.log(`[${label}] ${phase} sampler errors: ${members.errors.join('; ')}`);
    }
    return { result: result!, load: report, membership: members, ms, settledAt };
  }

  function expectNoDisruption(outcome: PhaseOutcome<unknown>): void {
    expect(outcome.load.failures, 'failed requests through the LB').toEqual([]);
    expect(outcome.load.ok).toBeGreaterThan(AFTER_SETTLED + 20);
    expect(outcome.load.stoppedBy).toBe('stop');
    expect(outcome.membership.errors).toEqual([]);
    expect(outcome.membership.samples).toBeGreaterThan(10);
    expect(
      outcome.membership.minHealthy,
      `fewest healthy LB members, at ${JSON.stringify(outcome.membership.atMin)}`,
    ).toBeGreaterThanOrEqual(INSTANCES);
  }

  async function expectServing(outcome: PhaseOutcome<unknown>, version: string): Promise<void> {
    const after = versionsSentSince(outcome.load, outcome.settledAt);
    expect(Object.keys(after), `versions answered after the phase settled: ${JSON.stringify(after)}`).toEqual([version]);
    expect(after[version]).toBeGreaterThanOrEqual(AFTER_SETTLED);
    expect(await versionsThroughLb()).toEqual({ [version]: 20 });
  }

  async function activeDeployId(): Promise<string | undefined> {
    return (await client.getRequest(REQ)).requestDeployState?.activeDeploy?.deployId;
  }

  const suite: TrafficSuite = {
    fledge,
    get client() {
      return client;
    },
    deployOf,
    settledOn,
    versionsThroughLb,
    underTraffic,
    expectNoDisruption,
    expectServing,
    activeDeployId,
    waitForHealthyTasks: (opts) => waitForHealthyTasks(client, REQ, opts),
    itDeadTaskLeavesRotation() {
      // A dead task's address may be handed to another task: it must leave the rotation at once.
      it('a task that dies on its own leaves the LB rotation', async () => {
        const before = await waitForHealthyTasks(client, REQ, { count: INSTANCES, exclusive: true });
        const victim = before[1]!;
        process.kill(-victim.pgid!, 'SIGKILL');
        await waitForHealthyTasks(client, REQ, {
          count: INSTANCES,
          exclusive: true,
          notIds: [victim.taskId.id],
          timeoutMs: PHASE_TIMEOUT_MS,
        });
        await waitFor(async () => !(await fledge().balancer!.upstreams(REQ)).some((u) => u.taskId === victim.taskId.id), {
          timeoutMs: 3_000,
          intervalMs: 50,
          message: `dead task ${victim.taskId.id} to leave the LB after its replacement became healthy`,
        });
      });
    },
  };

  beforeAll(async () => {
    const dataDir = tempDataDir();
    server = await startServer(
      loadConfig(
        {
          host: '127.0.0.1',
          port: 0,
          lbPort: options.lb === 'haproxy' ? await freePort() : 0,
          lb: options.lb,
          ...options.config,
          dataDir,
          killGraceSeconds: 2,
          drainTimeoutSeconds: 5,
          logLevel: 'warn',
        },
        {},
      ),
      {},
    );
    client = boundedClient(server.url, server.adminToken);
    if (!server.lbUrl || !server.balancer) throw new Error(`the ${options.lb} LB did not start`);
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
        await client.deleteRequest(REQ).catch((err: unknown) => console.log(`[${label}] delete request: ${String(err)}`));
        const s = server;
        await waitFor(async () => (await s.store.listTasks({ requestId: REQ, live: true })).length === 0, {
          timeoutMs: 20_000,
          intervalMs: 50,
          message: `the tasks of ${REQ} to end after the request was deleted`,
        }).catch((err: unknown) => console.log(`[${label}] ${String(err)}`));
        await server.close();
        // closing Fledge leaves a managed HAProxy serving (the next Fledge adopts it): stop it
        const lb = server.balancer as { shutdown?: () => Promise<void> } | undefined;
        server = undefined;
        await lb?.shutdown?.();
      }
    } finally {
      // Safety net: SIGKILL every task group seen through the API or in the sandboxes, remove the data dir.
      await cleanup();
    }
    expect(seenProcessCount()).toBeGreaterThan(0);
    expect(leakedProcesses()).toEqual([]);
  });

  describe(options.title, () => {
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
        await waitFor(
          async () => !(await fledge().store.listTasks({ requestId: REQ, live: true })).some((t) => t.taskId.id === oldFirst.taskId.id),
          {
            timeoutMs: PHASE_TIMEOUT_MS,
            intervalMs: 20,
            message: `old #1 (${oldFirst.taskId.id}) to be retired`,
          },
        );
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

    it('(f) a request smuggled behind `Connection: content-length` is a 400, and the LB serves on', async () => {
      const { hostname, port } = new URL(lbUrl);
      const smuggled = `GET ${BASE_PATH}/admin HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n`;
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(port), hostname);
        let data = '';
        const timer = setTimeout(() => {
          socket.destroy();
          resolve(data);
        }, 5_000);
        socket.on('data', (c: Buffer) => {
          data += c.toString('latin1');
          if (data.includes('\r\n\r\n')) {
            clearTimeout(timer);
            socket.destroy();
            resolve(data);
          }
        });
        socket.on('error', reject);
        socket.write(
          `POST ${BASE_PATH}/x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, content-length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`,
        );
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      const served = await versionsThroughLb(4);
      expect(Object.keys(served).filter((k) => k.startsWith('HTTP'))).toEqual([]);
    });

    options.more(suite);
  });

  return suite;
}
