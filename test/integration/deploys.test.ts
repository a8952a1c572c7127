// Deploys of a real HTTP service through a real `fledge serve`: healthy tasks answering on
// their ports, replacement of a killed task, a second deploy, a failing one, OVERDUE and
// unschedulable deploys.
import { spawn } from 'node:child_process';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  askService,
  deployExample,
  EXAMPLE_SERVICE,
  exampleDeploy,
  nodeEval,
  portOf,
  serviceRequest,
  waitForDeployResult,
  waitForHealthyTasks,
} from '../helpers/example-service.ts';
import {
  cleanup,
  freePort,
  leakedProcesses,
  sandboxTaskGroups,
  seenProcessCount,
  startFledgeProcess,
  trackProcessGroup,
  trackTasks,
} from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { groupMembers, isRunning, killGroup } from '../helpers/procfs.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(100);
/** Judges a task that never answers within about 2.5 s of it running. */
const FAST_FAILING_HEALTHCHECK = {
  uri: '/health',
  startupIntervalSeconds: 0.2,
  startupTimeoutSeconds: 1,
  intervalSeconds: 0.5,
  responseTimeoutSeconds: 1,
};

afterEach(cleanup);
afterAll(async () => {
  await cleanup();
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
});

describe('deploys', () => {
  it('runs 3 instances of an HTTP service, healthy and answering on their ports', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    const tasks = await deployExample(fledge.client, 'web', 'v1', { instances: 3 });

    expect(tasks.map((t) => t.taskId.instanceNo)).toEqual([1, 2, 3]);
    expect(new Set(tasks.map(portOf)).size).toBe(3);
    for (const t of tasks) {
      expect(portOf(t)).toBeGreaterThanOrEqual(PORTS.from);
      expect(portOf(t)).toBeLessThanOrEqual(PORTS.to);
      expect(isRunning(t.pgid!)).toBe(true);
      const answer = await askService(portOf(t));
      expect(answer).toMatchObject({ version: 'v1', task: t.taskId.id, instance: String(t.taskId.instanceNo) });
    }
    const parent = await fledge.client.getRequest('web');
    expect(parent.requestDeployState?.activeDeploy?.deployId).toBe('v1');
    expect(parent.instanceCounts).toMatchObject({ desired: 3, healthy: 3, total: 3 });
  });

  it('replaces a task killed with SIGKILL', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    const before = await deployExample(fledge.client, 'web', 'v1', { instances: 3 });
    const victim = before[1]!;

    const killedAt = Date.now();
    killGroup(victim.pgid!, 'SIGKILL');
    const after = await waitForHealthyTasks(fledge.client, 'web', {
      count: 3,
      deployId: 'v1',
      exclusive: true,
      notIds: [victim.taskId.id],
      timeoutMs: 15_000,
    });
    const replacedInMs = Date.now() - killedAt;
    console.log(`[deploys] SIGKILLed task replaced and healthy in ${replacedInMs} ms`);

    const replacement = after.find((t) => t.taskId.instanceNo === victim.taskId.instanceNo)!;
    expect(replacement.taskId.id).not.toBe(victim.taskId.id);
    expect(replacement.pid).not.toBe(victim.pid);
    expect((await askService(portOf(replacement))).task).toBe(replacement.taskId.id);
    // The other instances were left alone.
    expect(after.filter((t) => t !== replacement).map((t) => t.taskId.id)).toEqual(
      before.filter((t) => t !== victim).map((t) => t.taskId.id),
    );
    const dead = await fledge.client.getTask(victim.taskId.id);
    expect(['TASK_FAILED', 'TASK_LOST', 'TASK_KILLED']).toContain(dead.state);
  });

  it('replaces all tasks with a second deploy', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    const v1 = await deployExample(fledge.client, 'web', 'v1', { instances: 3 });

    await fledge.client.createDeploy(exampleDeploy('web', 'v2'));
    const result = await waitForDeployResult(fledge.client, 'web', 'v2');
    expect(result.deployResult.deployState).toBe('SUCCEEDED');
    const v2 = await waitForHealthyTasks(fledge.client, 'web', { count: 3, deployId: 'v2', exclusive: true });

    expect(v2.map((t) => t.taskId.instanceNo)).toEqual([1, 2, 3]);
    for (const t of v2) expect((await askService(portOf(t))).version).toBe('v2');
    const v1Ids = new Set(v1.map((t) => t.taskId.id));
    expect(v2.some((t) => v1Ids.has(t.taskId.id))).toBe(false);
    // The old processes are gone, not just forgotten.
    await waitFor(() => v1.every((t) => groupMembers(t.pgid!).length === 0), { timeoutMs: 15_000, message: 'v1 processes to exit' });
    expect((await fledge.client.getRequest('web')).requestDeployState?.activeDeploy?.deployId).toBe('v2');
  });

  it('fails a deploy whose command exits at once and keeps the old deploy running all 3', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    const v1 = await deployExample(fledge.client, 'web', 'v1', { instances: 3 });

    await fledge.client.createDeploy(exampleDeploy('web', 'broken', { deploy: { command: nodeEval('process.exit(3)') } }));
    const result = await waitForDeployResult(fledge.client, 'web', 'broken');
    expect(result.deployResult.deployState).toBe('FAILED');
    expect(result.deployResult.deployFailures.length).toBeGreaterThan(0);

    const parent = await fledge.client.getRequest('web');
    expect(parent.requestDeployState?.activeDeploy?.deployId).toBe('v1');
    expect(parent.requestDeployState?.pendingDeploy).toBeUndefined();
    const after = await waitForHealthyTasks(fledge.client, 'web', { count: 3, deployId: 'v1', exclusive: true });
    expect(after.map((t) => t.taskId.id)).toEqual(v1.map((t) => t.taskId.id));
    for (const t of after) expect((await askService(portOf(t))).version).toBe('v1');
  });

  it('marks a deploy OVERDUE when its tasks never become healthy before the deadline', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest(serviceRequest('slow', 1));
    // The service never listens. Each task fails its 1 s startup window; failures are allowed
    // (and replaced), so the deploy runs into its deadline: deployHealthTimeoutSeconds plus
    // the health-check window (1 + 0.5 + 1 s).
    await fledge.client.createDeploy(
      exampleDeploy('slow', 'never', {
        env: { STARTUP_DELAY_MS: '600000' },
        deploy: {
          deployHealthTimeoutSeconds: 2,
          canaryDeploySettings: { allowedTasksFailuresPerGroup: 100 },
          healthcheck: FAST_FAILING_HEALTHCHECK,
        },
      }),
    );
    const result = await waitForDeployResult(fledge.client, 'slow', 'never', 20_000);
    expect(result.deployResult.deployState).toBe('OVERDUE');
    // At the deadline the step's task is failing its checks, or is a replacement not yet
    // running (its start held by the crash-loop backoff, or slow on a loaded machine): never
    // "could not be scheduled", which is for a task no host can take.
    const reasons = result.deployResult.deployFailures.map((f) => f.reason);
    expect(reasons.length).toBeGreaterThan(0);
    for (const r of reasons) expect(['TASK_FAILED_HEALTH_CHECKS', 'TASK_NEVER_ENTERED_RUNNING']).toContain(r);
    // and the tasks that failed before it are in the decision log, each for its health checks
    const failed = (result.decisionLog ?? []).filter((d) => d.kind === 'TASK_FAILED');
    expect(failed.length).toBeGreaterThan(0);
    for (const d of failed) expect(d).toMatchObject({ failure: 'TASK_FAILED_HEALTH_CHECKS' });
    expect((await fledge.client.getRequest('slow')).requestDeployState?.activeDeploy).toBeUndefined();
    // Nothing of the failed deploy keeps running.
    await waitFor(async () => (await fledge.client.requestTasks('slow')).length === 0, {
      timeoutMs: 15_000,
      message: 'the overdue tasks to stop',
    });
  });

  // The OVERDUE deadline is deployHealthTimeoutSeconds plus the health window, which without a
  // healthcheck is considerHealthyAfterRunningForSeconds.
  it('gives a deploy without healthcheck its considerHealthyAfterRunningForSeconds before OVERDUE', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest(serviceRequest('nohc', 1));
    const { healthcheck: _healthcheck, ...deploy } = exampleDeploy('nohc', 'v1').deploy;
    await fledge.client.createDeploy({ deploy: { ...deploy, considerHealthyAfterRunningForSeconds: 2, deployHealthTimeoutSeconds: 1 } });
    const result = await waitForDeployResult(fledge.client, 'nohc', 'v1', 20_000);
    expect(result.deployResult.deployState).toBe('SUCCEEDED');
  });

  // health.watch() answers a verdict that is final at once without scheduling a probe.
  it('considers a task without healthcheck healthy at once with considerHealthyAfterRunningForSeconds 0', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest(serviceRequest('instant', 1));
    const { healthcheck: _healthcheck, ...deploy } = exampleDeploy('instant', 'v1').deploy;
    await fledge.client.createDeploy({ deploy: { ...deploy, considerHealthyAfterRunningForSeconds: 0, deployHealthTimeoutSeconds: 3 } });
    const result = await waitForDeployResult(fledge.client, 'instant', 'v1', 20_000);
    expect(result.deployResult.deployState).toBe('SUCCEEDED');
  });

  it('fails with TASK_COULD_NOT_BE_SCHEDULED when the resources do not fit', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS, args: ['--cpus', '1'] });
    await fledge.client.createRequest(serviceRequest('big', 1));
    await fledge.client.createDeploy(
      exampleDeploy('big', 'v1', {
        deploy: { resources: { cpus: 2, memoryMb: 64, numPorts: 1 }, deployHealthTimeoutSeconds: 1, healthcheck: FAST_FAILING_HEALTHCHECK },
      }),
    );
    const result = await waitForDeployResult(fledge.client, 'big', 'v1', 20_000);
    expect(result.deployResult.deployState).not.toBe('SUCCEEDED');
    const failures = result.deployResult.deployFailures;
    expect(failures.map((f) => f.reason)).toContain('TASK_COULD_NOT_BE_SCHEDULED');
    expect(failures.map((f) => f.message).join('\n')).toMatch(/cpus/);
    const tasks = await fledge.client.requestTasks('big');
    expect(tasks.filter((t) => typeof t.pid === 'number')).toEqual([]);
    expect(sandboxTaskGroups(fledge.dataDir)).toEqual([]);
  });

  it('reports how long a 3-instance deploy takes next to starting the bare processes', async () => {
    // Bare: the same three processes, started directly and polled until /health answers.
    const bareStart = Date.now();
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      const child = spawn(process.execPath, [EXAMPLE_SERVICE], {
        env: { ...process.env, PORT: String(port), VERSION: 'bare' },
        detached: true,
        stdio: 'ignore',
      });
      child.unref();
      trackProcessGroup(child.pid!, `bare service on ${port}`);
    }
    await waitFor(
      async () => {
        const answers = await Promise.all(
          ports.map((p) =>
            fetch(`http://127.0.0.1:${p}/health`, { signal: AbortSignal.timeout(2_000) }).then(
              (r) => r.ok,
              () => false,
            ),
          ),
        );
        return answers.every(Boolean);
      },
      { timeoutMs: 15_000, intervalMs: 20, message: 'bare services to answer /health' },
    );
    const bareMs = Date.now() - bareStart;

    const fledge = await startFledgeProcess({ portRange: PORTS });
    await fledge.client.createRequest(serviceRequest('timed', 3));
    const deployStart = Date.now();
    await fledge.client.createDeploy(exampleDeploy('timed', 'v1'));
    const result = await waitFor(
      async () => {
        const entry = await fledge.client.deployHistoryEntry('timed', 'v1');
        return entry.deployResult;
      },
      { timeoutMs: 30_000, intervalMs: 20, message: 'the timed deploy to finish' },
    );
    const deployMs = Date.now() - deployStart;
    expect(result.deployState).toBe('SUCCEEDED');
    trackTasks(await fledge.client.requestTasks('timed'));

    console.log(
      `[deploys] 3-instance deploy: POST /api/deploys → SUCCEEDED in ${deployMs} ms; bare processes healthy in ${bareMs} ms; ratio ${(deployMs / Math.max(bareMs, 1)).toFixed(2)}`,
    );
  });
});
