// Health while running (issue 9, item 1) with a real `fledge serve`, real tasks and each load
// balancer, under steady traffic: a task frozen with SIGSTOP after it became healthy is noticed
// by its checks, taken out of the LB, killed and replaced, and says why — while every request
// through the LB is answered (a GET stuck on the frozen task goes to another one after the
// upstream timeout). A task whose health endpoint starts failing is replaced the same way.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { TaskView } from '../../src/api/client.ts';
import { exampleDeploy, nodeCommand, serviceRequest, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess, trackTasks, type FledgeProcess } from '../helpers/fledge-process.ts';
import { startLoad } from '../helpers/lb-traffic.ts';
import { reservePorts } from '../helpers/ports.ts';
import { waitFor } from '../helpers/wait-for.ts';

const WAIT = 45_000;
const HOLDABLE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'holdable-service.mjs');
/** Judged within about 2 s of freezing: two failed checks (0.5 s apart, 0.5 s each). */
const RUNNING_CHECKS = { uri: '/health', startupIntervalSeconds: 0.1, intervalSeconds: 0.5, responseTimeoutSeconds: 0.5, maxRetries: 1 };

afterAll(async () => {
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

describe.each(['builtin', 'haproxy'] as const)('a task that breaks while running, behind the %s LB', (lb) => {
  const portRange = reservePorts(60);
  let fledge: FledgeProcess;

  afterAll(async () => {
    if (!fledge) return;
    const pidFile = path.join(fledge.dataDir, 'haproxy', 'haproxy.pid');
    await cleanup();
    if (lb !== 'haproxy') return;
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').trim().split('\n')[0]);
      if (pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('haproxy')) process.kill(-pid, 'SIGKILL');
    } catch {
      // not running
    }
  });

  async function serving(requestId: string, env: Record<string, string> = {}, command?: string): Promise<TaskView[]> {
    if (!fledge) {
      fledge = await startFledgeProcess({
        portRange,
        args: ['--lb', lb, '--kill-grace-seconds', '1', '--drain-timeout-seconds', '10', '--lb-upstream-timeout-seconds', '1'],
      });
    }
    await fledge.client.createRequest(serviceRequest(requestId, 3, { loadBalanced: true }));
    await fledge.client.createDeploy(
      exampleDeploy(requestId, 'v1', {
        env,
        deploy: {
          serviceBasePath: `/${requestId}`,
          loadBalancerGroups: ['default'],
          healthcheck: RUNNING_CHECKS,
          ...(command ? { command } : {}),
        },
      }),
    );
    expect((await waitForDeployResult(fledge.client, requestId, 'v1', WAIT)).deployResult.deployState).toBe('SUCCEEDED');
    const tasks = await waitForHealthyTasks(fledge.client, requestId, { count: 3, exclusive: true, timeoutMs: WAIT });
    await waitFor(async () => (await fetch(`${fledge.lbUrl}/${requestId}`, { signal: AbortSignal.timeout(2_000) })).ok, {
      timeoutMs: 10_000,
      message: 'the service to answer through the LB',
    });
    return tasks;
  }

  it('frozen with SIGSTOP: out of the LB, killed and replaced, saying why; every request answered meanwhile', async () => {
    const before = await serving('frozen');
    const load = startLoad(`${fledge.lbUrl}/frozen`, { concurrency: 4, maxDurationMs: 120_000, requestTimeoutMs: 10_000 });
    await load.warmedUp(30);
    const victim = before[1]!;
    process.kill(-victim.pgid!, 'SIGSTOP');
    try {
      const after = await waitForHealthyTasks(fledge.client, 'frozen', {
        count: 3,
        exclusive: true,
        notIds: [victim.taskId.id],
        timeoutMs: WAIT,
      });
      trackTasks(after);
      expect(after.map((t) => t.taskId.instanceNo)).toEqual([1, 2, 3]);
    } finally {
      // Whatever happened, leave nothing stopped behind (a SIGKILLed task ignores this).
      try {
        process.kill(-victim.pgid!, 'SIGCONT');
      } catch {
        // gone: killed by Fledge
      }
    }
    const dead = await fledge.client.getTask(victim.taskId.id);
    expect(dead.state).toBe('TASK_KILLED');
    expect(dead.cleanup).toMatchObject({
      reason: 'UNHEALTHY',
      message: expect.stringMatching(/^unhealthy while running: 2 failed checks, last: timeout after 0\.5 s$/),
    });
    expect(dead.taskUpdates?.some((u) => /unhealthy while running/.test(u.statusMessage ?? ''))).toBe(true);
    expect(dead.health).toMatchObject({ state: 'UNHEALTHY', consecutiveFailures: 2 });
    expect(dead.health.lastCheckAt).toBeGreaterThan(victim.health.lastCheckAt ?? 0);
    // It left the LB before it was stopped.
    expect(dead.lb.remove?.state).toBe('SUCCESS');
    await load.warmedUp(load.report.ok + 30);
    const report = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    // The crash-loop backoff counted it.
    const parent = await fledge.client.getRequest('frozen');
    expect(parent.crashLoopBackoff?.[String(victim.taskId.instanceNo)]).toMatchObject({ failures: 1, lastTaskId: victim.taskId.id });
  });

  it('its health endpoint failing while it still serves: replaced the same way, the last failure named', async () => {
    const holdDir = mkdtempSync(path.join(tmpdir(), 'fledge-sick-'));
    const before = await serving('sick', { HOLD_DIR: holdDir }, nodeCommand(HOLDABLE));
    const load = startLoad(`${fledge.lbUrl}/sick`, { concurrency: 2, maxDurationMs: 120_000 });
    await load.warmedUp(20);
    const victim = before[0]!;
    writeFileSync(path.join(holdDir, `unhealthy-${victim.taskId.id}`), '');
    await waitForHealthyTasks(fledge.client, 'sick', { count: 3, exclusive: true, notIds: [victim.taskId.id], timeoutMs: WAIT });
    const dead = await fledge.client.getTask(victim.taskId.id);
    expect(dead.cleanup).toMatchObject({ reason: 'UNHEALTHY', message: 'unhealthy while running: 2 failed checks, last: status 500' });
    expect(dead.state).toBe('TASK_KILLED');
    const report = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    rmSync(holdDir, { recursive: true, force: true });
  });
});
