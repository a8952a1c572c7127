// Traffic steps (issue 15, items 1, 3 and 6) with a real `fledge serve`, real tasks and each
// balancer, under steady load from outside: a deploy with trafficSteps [1, 5, 25, 50] (MANUAL,
// so each step can be measured before it is advanced) must give the new deploy each share of
// the requests the load sees, within the same sample-size-dependent tolerance the engine uses
// (core/deploy/traffic.ts judgeShare, on at least requiredSample answers); the split must hold
// right after a SIGKILL of the scheduler mid-step and, with HAProxy, right after HAProxy is
// killed mid-step (both restore the weights from what was persisted); and a weight changed
// behind Fledge's back (HAProxy's runtime API) must fail the step, not pass it.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FledgeClient } from '../../src/api/client.ts';
import { serverName } from '../../src/balancers/haproxy/config.ts';
import { haproxyCommand } from '../../src/balancers/haproxy/runtime-api.ts';
import { judgeShare, requiredSample } from '../../src/core/deploy/traffic.ts';
import type { DeployProgress } from '../../src/core/deploy/types.ts';
import { exampleDeploy, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { cleanupRestarted, killAndRestart } from '../helpers/fledge-restart.ts';
import { startLoad, type Load, type LoadFailure } from '../helpers/lb-traffic.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const REQ = 'split';
const LB = { serviceBasePath: '/split', loadBalancerGroups: ['default'] };
const WAIT = 60_000;
const STEPS = [1, 5, 25, 50];

afterAll(async () => {
  await cleanupRestarted();
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

describe.each(['builtin', 'haproxy'] as const)('traffic steps through the %s LB', (lb) => {
  const portRange = reservePorts(60);
  // no periodic drift repair: the mis-set weight below must stay until Fledge judges it
  const args = [
    '--lb',
    lb,
    '--kill-grace-seconds',
    '2',
    '--log-level',
    'info',
    ...(lb === 'haproxy' ? ['--haproxy-reconcile-seconds', '3600'] : []),
  ];
  let fledge: FledgeProcess | undefined;
  const client = (): FledgeClient => fledge!.client;

  async function progressOf(deployId: string): Promise<DeployProgress | undefined> {
    const p = (await client().getRequest(REQ)).pendingDeployState as
      { deployMarker?: { deployId: string }; deployProgress?: DeployProgress } | undefined;
    return p?.deployMarker?.deployId === deployId ? p.deployProgress : undefined;
  }

  /** The step in acceptance with its traffic share judged OK by Fledge. */
  async function stepPassed(deployId: string, step: number): Promise<DeployProgress> {
    return waitFor(
      async () => {
        const p = await progressOf(deployId);
        return p?.step === step && p.phase === 'ACCEPTANCE' && p.traffic?.appliedStep === step && p.traffic.verdict?.state === 'SUCCEEDED'
          ? p
          : undefined;
      },
      { timeoutMs: WAIT, intervalMs: 100, message: `step ${step} of ${deployId} to pass its traffic share` },
    );
  }

  /** The share of `deployId` among the next `n` answers the load gets (requests sent from now on). */
  async function measure(load: Load, deployId: string, n: number): Promise<{ share: number; n: number; got: number }> {
    const since = Date.now();
    const from = load.report.answers.length;
    await waitFor(() => load.report.answers.slice(from).filter((a) => a.sentAt >= since).length >= n, {
      timeoutMs: WAIT,
      intervalMs: 50,
      message: `${n} answers through the LB`,
    });
    const answers = load.report.answers
      .slice(from)
      .filter((a) => a.sentAt >= since)
      .slice(0, n);
    const got = answers.filter((a) => a.version === deployId).length;
    return { share: got / answers.length, n: answers.length, got };
  }

  async function expectSplit(load: Load, deployId: string, share: number, what: string): Promise<void> {
    // the engine's smallest sample, and never fewer than 2,000 answers
    const n = Math.max(requiredSample(share), 2_000);
    const m = await measure(load, deployId, n);
    const verdict = judgeShare(m.got, m.n, share);
    console.log(`[traffic steps ${lb}] ${what}: measured from outside, ${verdict.message}`);
    if (verdict.state !== 'SUCCEEDED') {
      const r = await client().getRequest(REQ);
      const log = (r.pendingDeployState?.deployProgress.decisionLog ?? []).slice(-5).map((d) => `${d.observed} → ${d.action}`);
      const history = await client()
        .deployHistoryEntry(REQ, deployId)
        .catch(() => undefined);
      console.log(
        `[traffic steps ${lb}] ${what}: pending ${JSON.stringify(log)}; ${deployId} result ${JSON.stringify((history as { deployResult?: unknown } | undefined)?.deployResult)}`,
      );
    }
    expect(verdict.state, verdict.message).toBe('SUCCEEDED');
  }

  it('gives the new deploy 1, 5, 25 and 50 % of the requests, and keeps the split across restarts mid-step', async () => {
    fledge = await startFledgeProcess({ args, portRange });
    await client().createRequest(serviceRequest(REQ, 4, { loadBalanced: true }));
    await client().createDeploy(exampleDeploy(REQ, 'v1', { deploy: LB }));
    expect((await waitForDeployResult(client(), REQ, 'v1', WAIT)).deployResult.deployState).toBe('SUCCEEDED');
    await waitForHealthyTasks(client(), REQ, { count: 4, deployId: 'v1', exclusive: true, timeoutMs: WAIT });
    await waitFor(async () => (await fetch(`${fledge!.lbUrl}/split`, { signal: AbortSignal.timeout(2_000) })).ok, {
      timeoutMs: 10_000,
      message: 'v1 to answer through the LB',
    });

    const loadStartedAt = Date.now();
    const load = startLoad(`${fledge.lbUrl}/split`, { concurrency: 4, maxRequests: 3_000_000, maxDurationMs: 400_000 });
    const excused: { from: number; to: number }[] = [];
    try {
      await load.warmedUp(50);
      await client().createDeploy(
        exampleDeploy(REQ, 'v2', {
          deploy: {
            ...LB,
            canaryDeploySettings: { enableCanaryDeploy: true, acceptanceMode: 'MANUAL', trafficSteps: STEPS },
            acceptanceTimeoutSeconds: 600,
          },
        }),
      );
      for (const [i, percent] of STEPS.entries()) {
        const step = i + 1;
        const p = await stepPassed('v2', step);
        const planned = p.traffic!.plan.steps[i]!;
        expect(planned.percent).toBe(percent);
        const decision = p.decisionLog.filter((d) => d.kind === 'ACCEPTANCE_RESULT' && d.state === 'SUCCEEDED').at(-1);
        console.log(`[traffic steps ${lb}] step ${step}: Fledge logged "${decision?.observed}"`);
        await expectSplit(load, 'v2', planned.share, `step ${step} (${percent} %)`);

        if (step === 2) {
          // The scheduler SIGKILLed mid-step: the weights come back from the store.
          const t0 = Date.now();
          const restarted = await killAndRestart(fledge, { args, portRange: { from: portRange.from, to: portRange.to }, lbPath: '/split' });
          fledge = restarted.fledge;
          // the builtin LB lives in the scheduler: its downtime is the LB's (HAProxy serves on)
          if (lb === 'builtin') excused.push({ from: t0, to: Date.now() });
          await expectSplit(load, 'v2', planned.share, `step ${step} right after a scheduler SIGKILL`);
          await stepPassed('v2', step);
        }
        if (step === 3 && lb === 'haproxy') {
          // HAProxy killed mid-step: Fledge starts it again from its configuration, weights included.
          const t0 = Date.now();
          const before = readFileSync(path.join(fledge.dataDir, 'haproxy', 'haproxy.pid'), 'utf8').trim();
          stopHaproxy(fledge.dataDir);
          await waitFor(
            () => {
              const now = readFileSync(path.join(fledge!.dataDir, 'haproxy', 'haproxy.pid'), 'utf8').trim();
              return now !== before && now !== '';
            },
            { timeoutMs: 30_000, message: 'haproxy started again' },
          );
          await waitFor(async () => (await fetch(`${fledge!.lbUrl}/split`, { signal: AbortSignal.timeout(2_000) })).ok, {
            timeoutMs: 30_000,
            message: 'haproxy to serve again',
          });
          excused.push({ from: t0, to: Date.now() });
          await expectSplit(load, 'v2', planned.share, `step ${step} right after HAProxy was killed`);
        }
        await client().advanceDeploy(REQ, 'v2');
      }
      // the last step: every instance at the normal weight, approved, then the old deploy leaves
      await waitFor(async () => (await progressOf('v2'))?.step === STEPS.length + 1 && (await progressOf('v2'))?.phase === 'ACCEPTANCE', {
        timeoutMs: WAIT,
        message: 'the final step to wait for approval',
      });
      await client().advanceDeploy(REQ, 'v2');
      expect((await waitForDeployResult(client(), REQ, 'v2', WAIT)).deployResult.deployState).toBe('SUCCEEDED');
      await waitForHealthyTasks(client(), REQ, { count: 4, deployId: 'v2', exclusive: true, timeoutMs: WAIT });
      const after = await measure(load, 'v2', 200);
      expect(after.share).toBe(1);
    } finally {
      const report = await load.stop();
      // with the builtin LB the scheduler's downtime is the LB's; HAProxy's own restart refuses connections meanwhile
      const inWindow = (f: LoadFailure) =>
        excused.some((w) => loadStartedAt + f.atMs >= w.from - 50 && loadStartedAt + f.atMs <= w.to + 50);
      const failures = report.failures.filter((f) => !inWindow(f));
      console.log(
        `[traffic steps ${lb}] load: ${report.sent} requests, ${report.ok} ok, ${report.failures.length} failed (${report.failures.length - failures.length} during a restart)`,
      );
      expect(failures, JSON.stringify(failures.slice(0, 5))).toEqual([]);
    }
  }, 300_000);

  it.runIf(lb === 'haproxy')(
    "fails a step whose weight was changed behind Fledge's back, and takes the new deploy out",
    async () => {
      const load = startLoad(`${fledge!.lbUrl}/split`, { concurrency: 4, maxRequests: 1_000_000, maxDurationMs: 120_000 });
      try {
        await load.warmedUp(50);
        await client().createDeploy(
          exampleDeploy(REQ, 'v3', {
            deploy: {
              ...LB,
              canaryDeploySettings: { enableCanaryDeploy: true, acceptanceMode: 'MANUAL', trafficSteps: [5] },
              acceptanceTimeoutSeconds: 600,
            },
          }),
        );
        await stepPassed('v3', 1);
        const task = (await client().requestTasks(REQ)).find((t) => t.taskId.deployId === 'v3' && t.state === 'TASK_RUNNING');
        expect(task).toBeDefined();
        const sock = runtimeSocket(fledge!.dataDir);
        const name = serverName(task!.taskId.id);
        const state = await haproxyCommand(sock, 'show servers state');
        const backend = state
          .split('\n')
          .find((l) => l.split(' ')[3] === name)
          ?.split(' ')[1];
        expect(backend).toBeDefined();
        expect((await haproxyCommand(sock, `set server ${backend}/${name} weight 256`)).trim()).toBe('');

        const result = await waitForDeployResult(client(), REQ, 'v3', WAIT);
        expect(result.deployResult.deployState).toBe('FAILED');
        expect(result.deployResult.message).toMatch(
          /traffic share failed: new got [\d.]+ % of [\d,]+ requests, intended 4\.99 % ± [\d.]+ %: FAILED/,
        );
        console.log(`[traffic steps ${lb}] mis-set weight: ${result.deployResult.message}`);
        // Fledge checked on the counters that the new deploy's share went to 0, and said so
        await waitFor(() => /deploy v3 \(FAILED\) is out of the load balancer: its share of the requests is 0 %/.test(fledge!.output()), {
          timeoutMs: 15_000,
          message: "Fledge's log line saying v3's share is 0",
        });
        // the new deploy is out: every answer is v2's
        await waitForHealthyTasks(client(), REQ, { count: 4, deployId: 'v2', exclusive: true, timeoutMs: WAIT });
        const after = await measure(load, 'v2', 200);
        expect(after.share).toBe(1);
      } finally {
        const report = await load.stop();
        expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
      }
    },
    120_000,
  );
});

/** The runtime socket Fledge's managed HAProxy uses for this data dir (as haproxy-balancer.ts picks it). */
function runtimeSocket(dataDir: string): string {
  const dir = path.join(dataDir, 'haproxy');
  const sockDir =
    path.join(dir, 'master.sock').length > 100
      ? path.join(tmpdir(), `fledge-haproxy-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`)
      : dir;
  return path.join(sockDir, 'haproxy.sock');
}

/** SIGKILL the managed HAProxy of this data dir (its process group), if it runs. */
function stopHaproxy(dataDir: string): void {
  try {
    const pid = Number(
      readFileSync(path.join(dataDir, 'haproxy', 'haproxy.pid'), 'utf8')
        .trim()
        .split('\n')[0],
    );
    if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('haproxy')) process.kill(-pid, 'SIGKILL');
  } catch {
    // not running
  }
}
