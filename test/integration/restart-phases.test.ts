// Restart safety (scenarios.md 35): SIGKILL a real `fledge serve` in every phase of a
// load-balanced canary deploy, start it again on the same data dir and ports, and check that
// the deploy ends as it would have, that no task is duplicated or orphaned, that tasks which
// were serving are re-adopted (same ids, same pids) and that the built-in LB ends with
// `instances` healthy tasks. The restart time (SIGKILL → /health, and → first 2xx through the
// LB, which lives in the scheduler process) is printed, not asserted.
//
// Every case: request `web`, 3 instances, load balanced at /web; v1 deployed without canary;
// then v2 as a canary of group 1 with 1 cycle (steps of 1, then all 3 new tasks) with MANUAL
// acceptance, advanced by the test.
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { DeployProgress, FledgeClient, TaskView } from '../../src/api/client.ts';
import {
  exampleDeploy,
  isHealthy,
  nodeCommand,
  serviceRequest,
  waitForDeployResult,
  waitForHealthyTasks,
  type FinishedDeploy,
} from '../helpers/example-service.ts';
import {
  leakedProcesses,
  sandboxTaskGroups,
  seenProcessCount,
  startFledgeProcess,
  trackTasks,
  type FledgeProcess,
} from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { cleanupRestarted, killAndRestart } from '../helpers/fledge-restart.ts';
import { groupIsOurs, groupMembers, isRunning } from '../helpers/procfs.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(200);
const SERVE_ARGS = ['--kill-grace-seconds', '2'];
const REQUEST = 'web';
const BASE_PATH = '/web';
const INSTANCES = 3;
const SERVICE = fileURLToPath(new URL('./fixtures/slow-exit-service.mjs', import.meta.url));
const LB_SETTINGS = { serviceBasePath: BASE_PATH, loadBalancerGroups: ['restart-it'] };
const CANARY = {
  enableCanaryDeploy: true,
  instanceGroupSize: 1,
  canaryCycleCount: 1,
  acceptanceMode: 'MANUAL',
  allowedTasksFailuresPerGroup: 0,
};

/** how long v1 keeps serving after SIGTERM in the drain cases */
const SLOW_EXIT_MS = 20_000;

const restartTimes: string[] = [];

afterEach(cleanupRestarted);
afterAll(async () => {
  await cleanupRestarted();
  console.log(`[restart-phases] restart times (SIGKILL → /health; SIGKILL → first 2xx through the LB):\n  ${restartTimes.join('\n  ')}`);
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
});

// ---- setup ----

interface DeployOptions {
  /** default: run the fixture service under `sh -c` (no exec) */
  command?: string;
  env?: Record<string, string>;
  taskEnv?: Record<string, Record<string, string>>;
  canary?: boolean;
}

function deployBody(deployId: string, options: DeployOptions = {}) {
  return exampleDeploy(REQUEST, deployId, {
    ...(options.env ? { env: options.env } : {}),
    deploy: {
      command: options.command ?? nodeCommand(SERVICE),
      ...LB_SETTINGS,
      ...(options.taskEnv ? { taskEnv: options.taskEnv } : {}),
      ...(options.canary ? { canaryDeploySettings: CANARY } : {}),
    },
  });
}

/**
 * startFledgeProcess, tried again once when the free port it picked was taken before the
 * server bound it (the server then keeps running without its API, so the wait is bounded).
 */
async function startServer(): Promise<FledgeProcess> {
  try {
    return await startFledgeProcess({ portRange: PORTS, args: SERVE_ARGS, timeoutMs: 20_000 });
  } catch (err) {
    if (!String(err).includes('EADDRINUSE')) throw err;
    return startFledgeProcess({ portRange: PORTS, args: SERVE_ARGS, timeoutMs: 20_000 });
  }
}

/** A server with v1 active: 3 healthy, load-balanced tasks. */
async function startWithV1(v1Env: Record<string, string> = {}, command?: string): Promise<{ fledge: FledgeProcess; v1: TaskView[] }> {
  const fledge = await startServer();
  await fledge.client.createRequest(serviceRequest(REQUEST, INSTANCES, { loadBalanced: true }));
  await fledge.client.createDeploy(deployBody('v1', { env: v1Env, ...(command ? { command } : {}) }));
  const done = await waitForDeployResult(fledge.client, REQUEST, 'v1');
  expect(done.deployResult.deployState, JSON.stringify(done.deployResult)).toBe('SUCCEEDED');
  const v1 = await waitForHealthyTasks(fledge.client, REQUEST, { count: INSTANCES, deployId: 'v1', exclusive: true });
  return { fledge, v1 };
}

// ---- observing and killing ----

interface Snapshot {
  at: number;
  progress: DeployProgress | undefined;
  tasks: TaskView[];
}

async function snapshot(client: FledgeClient, deployId: string): Promise<Snapshot> {
  const [pending, tasks] = await Promise.all([client.pendingDeploys(), client.requestTasks(REQUEST)]);
  trackTasks(tasks);
  return { at: Date.now(), progress: pending.find((p) => p.deployMarker.deployId === deployId)?.deployProgress, tasks };
}

const ofDeploy = (tasks: readonly TaskView[], deployId: string) => tasks.filter((t) => t.taskId.deployId === deployId);

function describeSnapshot(s: Snapshot): string {
  const phase = s.progress ? `step ${s.progress.step}/${s.progress.totalSteps} ${s.progress.phase}` : 'no pending deploy';
  const tasks = s.tasks
    .map(
      (t) =>
        `${t.taskId.deployId}#${t.taskId.instanceNo} ${t.state}${t.cleanup ? ' cleanup' : ''} ${t.health.state}${t.pid ? '' : ' (no pid)'}`,
    )
    .join(', ');
  return `${phase}; tasks: ${tasks}`;
}

/** Poll fast until `when` holds for a snapshot; that snapshot is the "before the kill" view. */
function waitForMoment(
  client: FledgeClient,
  deployId: string,
  what: string,
  when: (s: Snapshot) => boolean,
  timeoutMs = 20_000,
): Promise<Snapshot> {
  return waitFor(
    async () => {
      const s = await snapshot(client, deployId);
      return when(s) ? s : undefined;
    },
    { timeoutMs, intervalMs: 5, message: what },
  );
}

interface AfterRestart {
  fledge: FledgeProcess;
  /** the first snapshot taken after the restart */
  first: Snapshot;
}

/** SIGKILL the server now, start it again on the same data dir and ports, record the times. */
async function killAndRestartServer(name: string, fledge: FledgeProcess, before: Snapshot, deployId: string): Promise<AfterRestart> {
  const {
    fledge: again,
    restartMs,
    lbDowntimeMs,
  } = await killAndRestart(fledge, { args: SERVE_ARGS, portRange: PORTS, lbPath: BASE_PATH });
  const line = `${name}: ${restartMs} ms; LB ${lbDowntimeMs ?? '?'} ms (killed at: ${describeSnapshot(before)})`;
  restartTimes.push(line);
  console.log(`[restart-phases] ${line}`);
  const first = await snapshot(again.client, deployId);
  return { fledge: again, first };
}

/** Advance every MANUAL acceptance of `deployId` until it has a result. */
async function advanceToEnd(client: FledgeClient, deployId: string, timeoutMs = 40_000): Promise<FinishedDeploy> {
  let advanced = 0;
  return waitFor(
    async () => {
      const entry = await client.deployHistoryEntry(REQUEST, deployId);
      if (entry.deployResult) return entry as FinishedDeploy;
      const progress = (await client.pendingDeploys()).find((p) => p.deployMarker.deployId === deployId)?.deployProgress;
      if (progress?.phase === 'ACCEPTANCE' && progress.step > advanced) {
        await client.advanceDeploy(REQUEST, deployId, `step ${progress.step} looks good`);
        advanced = progress.step;
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 50, message: `deploy ${deployId} to be advanced to its end` },
  );
}

// ---- what every case checks at the end ----

interface EndExpectation {
  fledge: FledgeProcess;
  before: Snapshot;
  after: AfterRestart;
  result: FinishedDeploy;
  state: 'SUCCEEDED' | 'FAILED';
  /** the deploy active at the end */
  active: string;
}

async function expectCleanEnd({ fledge, before, after, result, state, active }: EndExpectation): Promise<void> {
  const { client } = fledge;
  // The deploy ended as it would have without the restart.
  expect(result.deployResult.deployState, JSON.stringify(result.deployResult)).toBe(state);
  const parent = await client.getRequest(REQUEST);
  expect(parent.requestDeployState?.activeDeploy?.deployId).toBe(active);
  expect(parent.requestDeployState?.pendingDeploy).toBeUndefined();

  // Settled: `instances` healthy tasks of the active deploy and nothing on its way out.
  const final = await waitForHealthyTasks(client, REQUEST, { count: INSTANCES, deployId: active, exclusive: true, timeoutMs: 30_000 });
  const live = await client.activeTasks();
  trackTasks(live);

  // No duplicate: at most one live task per instance number per deploy.
  const byInstance = new Map<string, string[]>();
  for (const t of live) {
    const key = `${t.taskId.deployId}#${t.taskId.instanceNo}`;
    byInstance.set(key, [...(byInstance.get(key) ?? []), t.taskId.id]);
  }
  expect(
    [...byInstance].filter(([, ids]) => ids.length > 1),
    'instances with more than one live task',
  ).toEqual([]);
  expect(final.map((t) => t.taskId.instanceNo)).toEqual([1, 2, 3]);

  // No orphan: every task process that runs is a live task in the API (same pid), every live
  // task's process runs, and every task the API says ended is dead, its whole group.
  const sandboxes = new Map(sandboxTaskGroups(fledge.dataDir).map((s) => [s.taskId, s]));
  const liveById = new Map(live.map((t) => [t.taskId.id, t]));
  const running = [...sandboxes.values()].filter((s) => groupIsOurs(s.pid, s.startTime) && groupMembers(s.pid).length > 0);
  expect(
    running
      .filter((s) => liveById.get(s.taskId)?.pgid !== s.pid)
      .map((s) => `${s.taskId} (pid ${s.pid}, API: ${JSON.stringify(liveById.get(s.taskId)?.state)})`),
    'task processes running without a live task in the API',
  ).toEqual([]);
  for (const t of live) {
    expect(t.pgid, `live task ${t.taskId.id} has a process group`).toBeTypeOf('number');
    expect(isRunning(t.pgid!, sandboxes.get(t.taskId.id)?.startTime), `process of live task ${t.taskId.id}`).toBe(true);
  }
  const ended = await endedTasks(fledge);
  const everSeen = new Set([...before.tasks, ...after.first.tasks].map((t) => t.taskId.id));
  for (const id of everSeen) {
    if (liveById.has(id)) continue;
    expect(
      ended.some((t) => t.taskId.id === id),
      `task ${id} is neither live nor ended in the API`,
    ).toBe(true);
  }
  const stillRunning = ended
    .filter((t) => typeof t.pid === 'number')
    .filter(
      (t) =>
        isRunning(t.pgid!, sandboxes.get(t.taskId.id)?.startTime) ||
        (groupIsOurs(t.pgid!, sandboxes.get(t.taskId.id)?.startTime) && groupMembers(t.pgid!).length > 0),
    )
    .map((t) => `${t.taskId.id} (${t.state}, pid ${t.pid})`);
  expect(stillRunning, 'tasks the API says ended whose processes still run').toEqual([]);

  // Nothing was started twice: after a success, every task process ever started beside the
  // old deploy's (all live at the kill) is one of the final tasks.
  if (state === 'SUCCEEDED') {
    const old = new Set(before.tasks.filter((t) => t.taskId.deployId !== active).map((t) => t.taskId.id));
    expect([...sandboxes.keys()].filter((id) => !old.has(id)).sort(), 'tasks the new deploy started').toEqual(
      final.map((t) => t.taskId.id).sort(),
    );
  }

  // Re-adopted, not restarted: a task of the active deploy that was live before the kill
  // (with a process) is still the one serving its instance, with the same pid.
  const wanted = ofDeploy(before.tasks, active).filter((t) => !t.cleanup && typeof t.pid === 'number');
  const finalById = new Map(final.map((t) => [t.taskId.id, t]));
  expect(
    wanted
      .filter((t) => finalById.get(t.taskId.id)?.pid !== t.pid)
      .map((t) => `${t.taskId.id} (pid ${t.pid}, ${t.state} ${t.health.state})`),
    'tasks live before the kill that were replaced or restarted',
  ).toEqual([]);
  // And right after the restart, every task that had a process before the kill still had it.
  const firstById = new Map(after.first.tasks.map((t) => [t.taskId.id, t]));
  for (const t of before.tasks.filter((b) => typeof b.pid === 'number')) {
    const seen = firstById.get(t.taskId.id) ?? (await client.getTask(t.taskId.id));
    expect(seen.pid, `pid of ${t.taskId.id} after the restart`).toBe(t.pid);
  }

  // The LB serves exactly the final tasks: the API says so, and round-robin reaches each of them.
  const ids = await client.taskIds(REQUEST);
  expect(ids.loadBalanced.map((t) => t.id).sort()).toEqual(final.map((t) => t.taskId.id).sort());
  const answeredBy = new Set<string>();
  for (let i = 0; i < INSTANCES * 3; i++) {
    const res = await fetch(`${fledge.lbUrl}${BASE_PATH}/ping`, { signal: AbortSignal.timeout(5_000) });
    expect(res.status, `GET ${BASE_PATH}/ping through the LB`).toBeGreaterThanOrEqual(200);
    expect(res.status).toBeLessThan(300);
    const body = (await res.json()) as { version: string; task: string };
    expect(body.version).toBe(active);
    answeredBy.add(body.task);
  }
  expect([...answeredBy].sort()).toEqual(final.map((t) => t.taskId.id).sort());
}

async function endedTasks(fledge: FledgeProcess): Promise<TaskView[]> {
  const res = await fetch(`${fledge.url}/api/history/request/${REQUEST}/tasks`, {
    headers: { authorization: `Bearer ${fledge.token}` },
    signal: AbortSignal.timeout(5_000),
  });
  expect(res.ok).toBe(true);
  return (await res.json()) as TaskView[];
}

/** The pending deploy did not go back: same step or later than before the kill. */
function expectNoRegression(before: Snapshot, after: Snapshot, result: FinishedDeploy | undefined): void {
  if (!before.progress || !after.progress || result) return;
  expect(after.progress.step, `step after the restart (${describeSnapshot(after)})`).toBeGreaterThanOrEqual(before.progress.step);
}

// ---- the cases ----

describe('SIGKILL of the scheduler during a load-balanced canary deploy', () => {
  it('LAUNCH: killed the moment POST /api/deploys returns, the deploy starts its first step once and succeeds', async () => {
    const { fledge } = await startWithV1();
    const before = await snapshot(fledge.client, 'v2');
    await fledge.client.createDeploy(deployBody('v2', { canary: true }));

    const after = await killAndRestartServer('LAUNCH (just after POST /api/deploys)', fledge, before, 'v2');
    const result = await advanceToEnd(after.fledge.client, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'SUCCEEDED', active: 'v2' });
  });

  it('LAUNCH: killed as the first new task shows up, that task is kept and the deploy succeeds', async () => {
    const { fledge } = await startWithV1();
    await fledge.client.createDeploy(deployBody('v2', { canary: true }));
    const before = await waitForMoment(fledge.client, 'v2', 'the first v2 task', (s) => ofDeploy(s.tasks, 'v2').length > 0);

    const after = await killAndRestartServer('LAUNCH (first new task seen)', fledge, before, 'v2');
    expectNoRegression(before, after.first, undefined);
    const result = await advanceToEnd(after.fledge.client, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'SUCCEEDED', active: 'v2' });
  });

  it('HEALTH: a new task that is still starting is re-adopted, becomes healthy, and the deploy succeeds', async () => {
    const { fledge } = await startWithV1();
    await fledge.client.createDeploy(deployBody('v2', { canary: true, taskEnv: { '1': { STARTUP_DELAY_MS: '2500' } } }));
    const before = await waitForMoment(fledge.client, 'v2', 'v2 #1 running but not yet healthy', (s) => {
      const starting = ofDeploy(s.tasks, 'v2');
      return s.progress?.phase === 'HEALTH' && starting.length === 1 && typeof starting[0]!.pid === 'number' && !isHealthy(starting[0]!);
    });

    const after = await killAndRestartServer('HEALTH', fledge, before, 'v2');
    expectNoRegression(before, after.first, undefined);
    const result = await advanceToEnd(after.fledge.client, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'SUCCEEDED', active: 'v2' });
  });

  it('LB_UPDATE: killed as soon as the step shows LB_UPDATE (or just after it), the new task stays in the LB and the deploy succeeds', async () => {
    const { fledge } = await startWithV1();
    await fledge.client.createDeploy(deployBody('v2', { canary: true }));
    const before = await waitForMoment(
      fledge.client,
      'v2',
      'step 1 in LB_UPDATE or ACCEPTANCE',
      (s) => s.progress?.step === 1 && (s.progress.phase === 'LB_UPDATE' || s.progress.phase === 'ACCEPTANCE'),
    );

    const after = await killAndRestartServer(
      `LB_UPDATE (seen ${before.progress?.phase}${before.progress?.pendingLbUpdate ? ', operation in flight' : ''})`,
      fledge,
      before,
      'v2',
    );
    expectNoRegression(before, after.first, undefined);
    const result = await advanceToEnd(after.fledge.client, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'SUCCEEDED', active: 'v2' });
  });

  it('ACCEPTANCE: a step waiting for a manual advance still waits after the restart, and succeeds once advanced', async () => {
    const { fledge } = await startWithV1();
    await fledge.client.createDeploy(deployBody('v2', { canary: true }));
    const before = await waitForMoment(
      fledge.client,
      'v2',
      'step 1 waiting for a manual advance',
      (s) => s.progress?.step === 1 && s.progress.phase === 'ACCEPTANCE' && s.progress.stepReadyAt !== undefined,
    );

    const after = await killAndRestartServer('ACCEPTANCE', fledge, before, 'v2');
    // Still waiting where it was: nothing advanced on its own, nothing was relaunched.
    expect(after.first.progress).toMatchObject({ step: 1, phase: 'ACCEPTANCE' });
    expect(ofDeploy(after.first.tasks, 'v2').map((t) => t.taskId.id)).toEqual(ofDeploy(before.tasks, 'v2').map((t) => t.taskId.id));
    const result = await advanceToEnd(after.fledge.client, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'SUCCEEDED', active: 'v2' });
  });

  it('drain: an old task being stopped after an advance (slow to exit on SIGTERM) is stopped after the restart, and the deploy succeeds', async () => {
    await runDrainCase('drain (old #1 KILLING, exec command)', `exec ${nodeCommand(SERVICE)}`);
  });

  // With a command that does not exec, a group-wide SIGTERM kills the intermediate shell at once:
  // the wrapper records exit 143 while the service still runs. A restarted scheduler must not
  // leave that service orphaned holding its port.
  it('drain: the same with a command that does not exec (sh -c, the service a grandchild of the wrapper)', async () => {
    await runDrainCase('drain (old #1 KILLING, sh -c command)', nodeCommand(SERVICE));
  });

  async function runDrainCase(name: string, command: string): Promise<void> {
    // v1 keeps serving 20 s after SIGTERM, far longer than the restart takes: the restarted
    // scheduler must finish the stop it began (SIGKILL after the 2 s grace), not wait it out.
    const { fledge, v1 } = await startWithV1({ SLOW_EXIT_MS: String(SLOW_EXIT_MS) }, command);
    await fledge.client.createDeploy(deployBody('v2', { canary: true }));
    await waitForMoment(
      fledge.client,
      'v2',
      'step 1 waiting for a manual advance',
      (s) => s.progress?.step === 1 && s.progress.phase === 'ACCEPTANCE',
    );
    await fledge.client.advanceDeploy(REQUEST, 'v2', 'step 1 looks good');
    const oldOne = v1[0]!;
    const before = await waitForMoment(fledge.client, 'v2', `old #1 (${oldOne.taskId.id}) being killed`, (s) =>
      s.tasks.some((t) => t.taskId.id === oldOne.taskId.id && t.state === 'TASK_KILLING'),
    );
    // The old service really is still there, past its SIGTERM.
    expect(groupMembers(oldOne.pgid!).length, 'processes of old #1 when the scheduler is killed').toBeGreaterThan(0);

    const after = await killAndRestartServer(name, fledge, before, 'v2');
    // Old #1 ends, and by then its processes are gone: an ended task holds no port.
    const gone = await waitFor(
      async () => {
        const t = await after.fledge.client.getTask(oldOne.taskId.id);
        return ['TASK_KILLED', 'TASK_FINISHED', 'TASK_FAILED', 'TASK_LOST'].includes(t.state) ? t : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 20, message: 'old #1 to end after the restart' },
    );
    expect(groupMembers(oldOne.pgid!), `processes of old #1 still running when the API says ${gone.state}`).toEqual([]);
    const sigtermAt = before.tasks
      .find((t) => t.taskId.id === oldOne.taskId.id)
      ?.taskUpdates?.find((u) => u.taskState === 'TASK_KILLING')?.timestamp;
    expect(sigtermAt, 'when old #1 was told to stop').toBeTypeOf('number');
    expect(Date.now() - sigtermAt!, 'old #1 was stopped, not waited out').toBeLessThan(SLOW_EXIT_MS - 5_000);
    const result = await advanceToEnd(after.fledge.client, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'SUCCEEDED', active: 'v2' });
  }

  it('failure refill: step 2 fails after old #1 was retired; killed while old #1 is refilled, the deploy stays FAILED and v1 is back to 3', async () => {
    // v1 starts slowly, so its refill of instance 1 takes a while; v2's instance 2 fails on startup.
    const { fledge, v1 } = await startWithV1({ STARTUP_DELAY_MS: '1500' });
    await fledge.client.createDeploy(deployBody('v2', { canary: true, taskEnv: { '2': { EXIT_AT_START: '1' } } }));
    await waitForMoment(
      fledge.client,
      'v2',
      'step 1 waiting for a manual advance',
      (s) => s.progress?.step === 1 && s.progress.phase === 'ACCEPTANCE',
    );
    await fledge.client.advanceDeploy(REQUEST, 'v2', 'step 1 looks good');
    const oldOne = v1[0]!;
    const before = await waitForMoment(fledge.client, 'v2', 'a new v1 #1 starting (the refill)', (s) =>
      ofDeploy(s.tasks, 'v1').some(
        (t) => t.taskId.instanceNo === 1 && t.taskId.id !== oldOne.taskId.id && !t.cleanup && typeof t.pid === 'number' && !isHealthy(t),
      ),
    );
    const history = await fledge.client.deployHistoryEntry(REQUEST, 'v2');
    expect(history.deployResult?.deployState, 'v2 had failed before the kill').toBe('FAILED');

    const after = await killAndRestartServer('failure refill (v1 #1 starting)', fledge, before, 'v2');
    const result = await waitForDeployResult(after.fledge.client, REQUEST, 'v2');
    await expectCleanEnd({ fledge: after.fledge, before, after, result, state: 'FAILED', active: 'v1' });
    expect(result.deployResult.deployFailures.map((f) => f.reason)).toContain('TASK_FAILED_ON_STARTUP');
    // v1 #2 and #3 served throughout and still do.
    const final = await waitForHealthyTasks(after.fledge.client, REQUEST, { count: INSTANCES, deployId: 'v1', exclusive: true });
    expect(final.slice(1).map((t) => [t.taskId.id, t.pid])).toEqual(v1.slice(1).map((t) => [t.taskId.id, t.pid]));
  });
});
