// LB operations always settle onto their tasks (issue 9, item 3), with a real `fledge serve` and
// each balancer, under steady traffic: an atomic deploy's swap is held WAITING — a request kept
// in flight on an old task keeps its drain open, so the window is as long as the test wants —
// and the deploy is then ended by a cancel, a reject or its LB timeout, or the scheduler is
// SIGKILLed in the middle. Afterwards the old deploy serves at full capacity in the LB (or, when
// the swap could finish after the crash, the new one does), no live task is left on a WAITING
// LB state, no request failed (outside the scheduler's own downtime with the builtin LB), and
// scale-down and delete still work.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { DeployInput, FledgeClient, TaskView } from '../../src/api/client.ts';
import { exampleDeploy, nodeCommand, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { cleanupRestarted, killAndRestart } from '../helpers/fledge-restart.ts';
import { startLoad, type Load, type LoadFailure } from '../helpers/lb-traffic.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const HOLDABLE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'holdable-service.mjs');
const REQ = 'swap';
const LB = { serviceBasePath: '/swap', loadBalancerGroups: ['default'] };
const WAIT = 45_000;

const waitingOn = (t: TaskView) => t.lb.add?.state === 'WAITING' || t.lb.remove?.state === 'WAITING';
const inLb = (t: TaskView) => t.lb.add?.state === 'SUCCESS' && !t.lb.remove;

afterAll(async () => {
  await cleanupRestarted();
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

describe.each(['builtin', 'haproxy'] as const)('an atomic swap held WAITING, through the %s LB', (lb) => {
  const portRange = reservePorts(100);
  let fledge: FledgeProcess;
  let args: string[];
  let seq = 0;
  let holdDir: string;

  const client = (): FledgeClient => fledge.client;
  const lbUrl = () => fledge.lbUrl;

  /** A fresh active deploy of the holdable service, settled: 2 healthy tasks in the LB. */
  async function activeHoldable(): Promise<{ deployId: string; tasks: TaskView[] }> {
    if (!fledge) {
      args = ['--lb', lb, '--drain-timeout-seconds', '60', '--kill-grace-seconds', '2', '--log-level', 'info'];
      fledge = await startFledgeProcess({ args, portRange });
      await client().createRequest(serviceRequest(REQ, 2, { loadBalanced: true }));
    }
    seq++;
    holdDir = path.join(fledge.dataDir, `hold-${seq}`);
    mkdirSync(holdDir, { recursive: true });
    const deployId = `h${seq}`;
    await client().createDeploy(
      exampleDeploy(REQ, deployId, { env: { HOLD_DIR: holdDir }, deploy: { ...LB, command: nodeCommand(HOLDABLE) } }),
    );
    expect((await waitForDeployResult(client(), REQ, deployId, WAIT)).deployResult.deployState).toBe('SUCCEEDED');
    const tasks = await settledOn(deployId);
    await waitFor(async () => (await fetch(`${lbUrl()}/swap`, { signal: AbortSignal.timeout(2_000) })).ok, {
      timeoutMs: 10_000,
      message: 'the service to answer through the LB',
    });
    return { deployId, tasks };
  }

  /** Exactly 2 healthy tasks of `deployId`, nothing else live, all in the LB, none on a WAITING LB state. */
  async function settledOn(deployId: string): Promise<TaskView[]> {
    await waitForHealthyTasks(client(), REQ, { count: 2, deployId, exclusive: true, timeoutMs: WAIT });
    return waitFor(
      async () => {
        const tasks = (await client().requestTasks(REQ)).filter((t) => t.state !== 'TASK_FINISHED');
        return tasks.length === 2 && tasks.every((t) => inLb(t) && !waitingOn(t) && t.taskId.deployId === deployId) ? tasks : undefined;
      },
      { timeoutMs: WAIT, message: `the LB state of ${deployId}'s tasks to settle` },
    );
  }

  /** A request held on one old task: its drain, and the swap removing it, stay WAITING until release. */
  async function holdOne(): Promise<{ response: Promise<number> }> {
    const response = fetch(`${lbUrl()}/swap/hold`, { signal: AbortSignal.timeout(120_000) }).then(
      (r) => r.status,
      () => 0,
    );
    await waitFor(() => readdirSync(holdDir).some((f) => f.startsWith('held-')), { timeoutMs: 10_000, message: 'a held request' });
    return { response };
  }

  async function swapWaiting(deploy: Partial<DeployInput> = {}): Promise<string> {
    const deployId = `v${seq}`;
    await client().createDeploy(exampleDeploy(REQ, deployId, { deploy: { ...LB, ...deploy } }));
    await waitFor(
      async () => {
        const p = await client().getRequest(REQ);
        const progress = p.pendingDeployState?.deployProgress;
        return progress?.phase === 'LB_UPDATE' && progress.pendingLbUpdate?.state === 'WAITING';
      },
      { timeoutMs: WAIT, message: `deploy ${deployId}'s swap to be in flight` },
    );
    return deployId;
  }

  const release = () => writeFileSync(path.join(holdDir, 'release'), '');

  async function expectNoFailures(load: Load, excused: (f: LoadFailure) => boolean = () => false): Promise<void> {
    const report = await load.stop();
    const failures = report.failures.filter((f) => !excused(f));
    expect(failures, JSON.stringify(failures.slice(0, 5))).toEqual([]);
    expect(report.ok).toBeGreaterThan(20);
  }

  async function versionsThroughLb(n = 12): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const body = (await (await fetch(`${lbUrl()}/swap`, { signal: AbortSignal.timeout(5_000) })).json()) as { version: string };
      out[body.version] = (out[body.version] ?? 0) + 1;
    }
    return out;
  }

  it.each([
    { how: 'cancel', state: 'CANCELED' },
    { how: 'reject', state: 'FAILED' },
    { how: 'the LB timeout', state: 'FAILED' },
  ])('ended by $how: the swap is cancelled, the old deploy serves at full capacity, 0 failed requests', async ({ how, state }) => {
    const old = await activeHoldable();
    const load = startLoad(`${lbUrl()}/swap`, { concurrency: 3, maxDurationMs: 120_000 });
    await load.warmedUp(20);
    const held = await holdOne();
    const deployId = await swapWaiting(how === 'the LB timeout' ? { loadBalancerTimeoutSeconds: 3 } : {});
    if (how === 'cancel') await client().cancelDeploy(REQ, deployId);
    if (how === 'reject') await client().rejectDeploy(REQ, deployId, 'not this one');
    const done = await waitForDeployResult(client(), REQ, deployId, WAIT);
    expect(done.deployResult.deployState).toBe(state);
    if (how === 'the LB timeout') expect(done.deployResult.deployFailures[0]?.reason).toBe('LOAD_BALANCER_UPDATE_FAILED');
    const after = await settledOn(old.deployId);
    expect(after.map((t) => t.taskId.id).sort()).toEqual(old.tasks.map((t) => t.taskId.id).sort());
    expect(await versionsThroughLb()).toEqual({ [old.deployId]: 12 });
    // The held request was never cut: its task stayed in.
    release();
    expect(await held.response).toBe(200);
    await expectNoFailures(load);
    // The new tasks left the LB before they stopped, with the swap's real outcome on them.
    const fresh = (await client().requestTasks(REQ)).filter((t) => t.taskId.deployId === deployId);
    expect(fresh).toEqual([]);
  });

  it('the scheduler SIGKILLed during the swap: nothing is stranded after the restart, and the deploy ends as it should', async () => {
    const old = await activeHoldable();
    const load = startLoad(`${lbUrl()}/swap`, { concurrency: 3, maxDurationMs: 120_000 });
    await load.warmedUp(20);
    const loadStarted = Date.now();
    const held = await holdOne();
    const deployId = await swapWaiting();
    const killedAt = Date.now();
    const restarted = await killAndRestart(fledge, { args, portRange, lbPath: '/swap' });
    fledge = restarted.fledge;
    let expectActive: string;
    if (lb === 'haproxy') {
      // HAProxy outlived the scheduler and still drains the old task under the held request:
      // the swap is applied again, WAITING again; cancel it.
      await waitFor(async () => (await client().getRequest(REQ)).pendingDeployState?.deployProgress.pendingLbUpdate?.state === 'WAITING', {
        timeoutMs: WAIT,
        message: 'the swap in flight again after the restart',
      });
      await client().cancelDeploy(REQ, deployId);
      expect((await waitForDeployResult(client(), REQ, deployId, WAIT)).deployResult.deployState).toBe('CANCELED');
      expectActive = old.deployId;
    } else {
      // The builtin LB died with the scheduler, and with it the held request: the swap, applied
      // again from its record after the restart, has nothing left to drain and completes.
      expect((await waitForDeployResult(client(), REQ, deployId, WAIT)).deployResult.deployState).toBe('SUCCEEDED');
      expectActive = deployId;
    }
    await settledOn(expectActive);
    expect(await versionsThroughLb()).toEqual({ [expectActive]: 12 });
    release();
    if (lb === 'haproxy') expect(await held.response).toBe(200);
    else await held.response;
    // With the builtin LB, requests fail only while the scheduler (and the LB in it) is down.
    const down = { from: killedAt - loadStarted - 50, to: killedAt - loadStarted + (restarted.lbDowntimeMs ?? 0) + 200 };
    await expectNoFailures(load, (f) => lb === 'builtin' && f.atMs >= down.from && f.atMs <= down.to);
  });

  it('scale-down and delete still work afterwards', async () => {
    const active = (await client().getRequest(REQ)).activeDeploy?.id;
    await client().scale(REQ, 1);
    await waitForHealthyTasks(client(), REQ, { count: 1, ...(active ? { deployId: active } : {}), exclusive: true, timeoutMs: WAIT });
    await client().deleteRequest(REQ);
    await waitFor(
      async () => {
        const tasks = await client()
          .requestTasks(REQ)
          .catch(() => []);
        return tasks.every((t) => t.state === 'TASK_KILLED' || t.state === 'TASK_FINISHED' || t.state === 'TASK_FAILED');
      },
      { timeoutMs: WAIT, message: 'every task to stop after the delete' },
    );
    rmSync(holdDir, { recursive: true, force: true });
  });
});
