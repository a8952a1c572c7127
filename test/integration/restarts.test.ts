// Tasks outlive the scheduler: SIGTERM and SIGKILL of a real `fledge serve`, restarts on the
// same data dir, re-adoption of running tasks (same ids, same pids), a deploy finishing across
// a crash and a task that died while nobody was watching.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { TaskView } from '../../src/api/client.ts';
import { askService, deployExample, exampleDeploy, isHealthy, portOf, waitForHealthyTasks } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, seenProcessCount, startFledgeProcess, trackTasks } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { groupMembers, isRunning, killGroup } from '../helpers/procfs.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(100);

afterEach(cleanup);
afterAll(async () => {
  await cleanup();
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
});

const byId = (tasks: readonly TaskView[]) => Object.fromEntries(tasks.map((t) => [t.taskId.id, t.pid]));

describe('restarts', () => {
  it('exits 0 on SIGTERM, leaves the tasks running and re-adopts them on restart', async () => {
    const first = await startFledgeProcess({ portRange: PORTS });
    const before = await deployExample(first.client, 'web', 'v1', { instances: 3 });

    first.kill('SIGTERM');
    expect(await first.waitExit()).toEqual({ code: 0, signal: null });
    for (const t of before) {
      expect(isRunning(t.pid!)).toBe(true);
      expect((await askService(portOf(t))).task).toBe(t.taskId.id);
    }

    const second = await startFledgeProcess({ portRange: PORTS, dataDir: first.dataDir });
    const after = await waitForHealthyTasks(second.client, 'web', { count: 3, deployId: 'v1', exclusive: true });
    expect(byId(after)).toEqual(byId(before));
    for (const t of after) expect((await askService(portOf(t))).task).toBe(t.taskId.id);
    expect((await second.client.getRequest('web')).instanceCounts).toMatchObject({ desired: 3, healthy: 3, total: 3 });
  });

  it('finishes a deploy interrupted by SIGKILL of fledge serve, re-adopting its tasks', async () => {
    const first = await startFledgeProcess({ portRange: PORTS });
    await deployExample(first.client, 'web', 'v1', { instances: 3 });

    // v2 takes 1.5 s to listen: long enough to kill the scheduler while its tasks start.
    await first.client.createDeploy(exampleDeploy('web', 'v2', { env: { STARTUP_DELAY_MS: '1500' } }));
    const snapshot = await waitFor(
      async () => {
        const tasks = await first.client.requestTasks('web');
        trackTasks(tasks);
        const v2 = tasks.filter((t) => t.taskId.deployId === 'v2' && typeof t.pid === 'number');
        return v2.length === 3 ? tasks : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 20, message: 'all v2 tasks to be launched' },
    );
    first.kill('SIGKILL');
    await first.waitExit();
    const entry = snapshot;
    const v2Before = entry.filter((t) => t.taskId.deployId === 'v2').sort((a, b) => a.taskId.instanceNo - b.taskId.instanceNo);
    const aliveBefore = entry.filter((t) => isRunning(t.pid!));
    // The deploy was caught in the middle: its tasks were not healthy yet.
    expect(v2Before.some(isHealthy)).toBe(false);
    expect(aliveBefore.length).toBeGreaterThanOrEqual(6);

    const second = await startFledgeProcess({ portRange: PORTS, dataDir: first.dataDir });
    // Right after restart, every task that was running is known with the same pid.
    for (const t of aliveBefore) {
      const known = await second.client.getTask(t.taskId.id);
      expect(known.pid).toBe(t.pid);
    }
    // Until the deploy ends, no instance ever has two serving tasks of one deploy.
    const duplicates: string[] = [];
    const result = await waitFor(
      async () => {
        const tasks = (await second.client.requestTasks('web')).filter((t) => !t.cleanup);
        trackTasks(tasks);
        const keys = tasks.map((t) => `${t.taskId.deployId}#${t.taskId.instanceNo}`);
        for (const k of keys) if (keys.indexOf(k) !== keys.lastIndexOf(k)) duplicates.push(k);
        return (await second.client.deployHistoryEntry('web', 'v2')).deployResult;
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'the v2 deploy to finish after the restart' },
    );
    expect(duplicates).toEqual([]);
    expect(result.deployState).toBe('SUCCEEDED');

    const after = await waitForHealthyTasks(second.client, 'web', { count: 3, deployId: 'v2', exclusive: true });
    // The v2 tasks are the very ones started before the crash: re-adopted, not replaced.
    expect(byId(after)).toEqual(byId(v2Before));
    for (const t of after) expect((await askService(portOf(t))).version).toBe('v2');
    const v1 = entry.filter((t) => t.taskId.deployId === 'v1');
    await waitFor(() => v1.every((t) => groupMembers(t.pgid!).length === 0), { timeoutMs: 15_000, message: 'v1 processes to exit' });
  });

  it('replaces a task killed while fledge serve is down, after restart', async () => {
    const first = await startFledgeProcess({ portRange: PORTS });
    const before = await deployExample(first.client, 'web', 'v1', { instances: 3 });
    first.kill('SIGKILL');
    await first.waitExit();

    const victim = before[0]!;
    killGroup(victim.pgid!, 'SIGKILL');
    await waitFor(() => groupMembers(victim.pgid!).length === 0, { message: 'the killed task to be gone' });

    const second = await startFledgeProcess({ portRange: PORTS, dataDir: first.dataDir });
    const after = await waitForHealthyTasks(second.client, 'web', {
      count: 3,
      deployId: 'v1',
      exclusive: true,
      notIds: [victim.taskId.id],
      timeoutMs: 20_000,
    });
    const replacement = after.find((t) => t.taskId.instanceNo === victim.taskId.instanceNo)!;
    expect(replacement.pid).not.toBe(victim.pid);
    expect((await askService(portOf(replacement))).task).toBe(replacement.taskId.id);
    // The survivors were adopted as they were.
    expect(byId(after.filter((t) => t !== replacement))).toEqual(byId(before.slice(1)));
    const dead = await second.client.getTask(victim.taskId.id);
    expect(['TASK_FAILED', 'TASK_LOST', 'TASK_KILLED']).toContain(dead.state);
  });
});
