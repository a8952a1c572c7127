// Run-to-completion requests through the real loop, service and store, with the fake runtime
// and a manual clock: schedules over a scheduler restart, no overlap, retries, the ON_DEMAND
// queue, RUN_ONCE per deploy, and the webhook deliveries the changes queue.
import { afterEach, describe, expect, it } from 'vitest';
import { parseInput, schemas } from '../../src/api/schemas/index.ts';
import type { TaskRecord } from '../../src/core/model.ts';
import { webhookId } from '../../src/core/webhooks.ts';
import { engineFixture, type EngineFixture } from '../helpers/engine-fixture.ts';

const MIN = 60_000;
let f: EngineFixture;
afterEach(async () => f?.close());

/** Align the manual clock to a whole hour, so `*\/5` due times are easy to name. */
function alignToHour(fx: EngineFixture): number {
  const now = fx.clock.now();
  fx.clock.set(now - (now % (60 * MIN)) + 60 * MIN);
  return fx.clock.now();
}
const runsOf = (tasks: TaskRecord[]) => tasks.filter((t) => t.run).sort((a, b) => a.taskId.startedAt - b.taskId.startedAt);
const runNow = async (id: string, body: Record<string, unknown> = {}) => {
  const parsed = parseInput(schemas.run, body);
  if (!parsed.ok) throw new Error(parsed.message);
  const out = await f.service.runNow(id, parsed.value);
  await f.settle();
  return out;
};

describe('SCHEDULED', () => {
  it("runs Singularity's scheduled request on its schedule with the deploy that is active", async () => {
    f = await engineFixture();
    const t0 = alignToHour(f);
    await f.createRequest({ id: 'cron-job', requestType: 'SCHEDULED', schedule: '*/5 * * * *', numRetriesOnFailure: 0 } as never);
    await f.deploy({ requestId: 'cron-job', id: 'd1', command: 'echo hi' });
    expect((await f.result('cron-job', 'd1'))?.deployState).toBe('SUCCEEDED');
    expect((await f.request('cron-job'))?.jobs?.nextRunAt).toBe(t0 + 5 * MIN);
    expect(runsOf(await f.allTasks('cron-job'))).toEqual([]);

    await f.advance(5 * MIN);
    const [first] = await f.tasks('cron-job');
    expect(first?.run).toMatchObject({ trigger: 'SCHEDULED', dueAt: t0 + 5 * MIN });
    f.runtime.exit(first?.taskId.id as string, 0);
    await f.settle();
    expect((await f.store.getTask(first?.taskId.id as string))?.state).toBe('TASK_FINISHED');

    await f.deploy({ requestId: 'cron-job', id: 'd2', command: 'echo again' });
    await f.advance(5 * MIN);
    const [second] = await f.tasks('cron-job');
    expect(second?.taskId.deployId).toBe('d2');
  });

  it('makes one catch-up run for the due times missed while the scheduler was down', async () => {
    f = await engineFixture();
    const t0 = alignToHour(f);
    await f.createRequest({ id: 'cron', requestType: 'SCHEDULED', schedule: '*/5 * * * *' } as never);
    await f.deploy({ requestId: 'cron', id: 'd1' });
    await f.crash();
    f.clock.advance(32 * MIN);
    await f.boot();
    const runs = runsOf(await f.allTasks('cron'));
    expect(runs.map((t) => t.run?.dueAt)).toEqual([t0 + 5 * MIN]);
    expect((await f.request('cron'))?.jobs?.nextRunAt).toBe(t0 + 35 * MIN);
  });

  it('skips a due time while the last run is still going, and never runs two', async () => {
    f = await engineFixture();
    alignToHour(f);
    await f.createRequest({ id: 'slow', requestType: 'SCHEDULED', schedule: '*/5 * * * *' } as never);
    await f.deploy({ requestId: 'slow', id: 'd1' });
    await f.advance(5 * MIN);
    await f.advance(5 * MIN);
    await f.advance(5 * MIN);
    expect((await f.tasks('slow')).length).toBe(1);
    expect((await f.request('slow'))?.jobs?.skipped?.count).toBe(2);
  });

  it('retries a failed run numRetriesOnFailure times, then waits for the next due time', async () => {
    f = await engineFixture();
    alignToHour(f);
    await f.createRequest({ id: 'flaky', requestType: 'SCHEDULED', schedule: '*/5 * * * *', numRetriesOnFailure: 2 } as never);
    await f.deploy({ requestId: 'flaky', id: 'd1' });
    await f.advance(5 * MIN);
    for (let i = 0; i < 3; i++) {
      const [live] = await f.tasks('flaky');
      f.runtime.exit(live?.taskId.id as string, 1);
      await f.settle();
    }
    const runs = runsOf(await f.allTasks('flaky'));
    expect(runs.map((t) => [t.run?.trigger, t.run?.retry, t.state])).toEqual([
      ['SCHEDULED', 0, 'TASK_FAILED'],
      ['RETRY', 1, 'TASK_FAILED'],
      ['RETRY', 2, 'TASK_FAILED'],
    ]);
    expect(await f.tasks('flaky')).toEqual([]);
  });

  it('counts successfulExitCodes as success', async () => {
    f = await engineFixture();
    alignToHour(f);
    await f.createRequest({ id: 'codes', requestType: 'SCHEDULED', schedule: '*/5 * * * *', numRetriesOnFailure: 1 } as never);
    await f.deploy({ requestId: 'codes', id: 'd1', successfulExitCodes: [0, 3] });
    await f.advance(5 * MIN);
    const [live] = await f.tasks('codes');
    f.runtime.exit(live?.taskId.id as string, 3);
    await f.settle();
    expect(runsOf(await f.allTasks('codes')).map((t) => t.state)).toEqual(['TASK_FINISHED']);
  });
});

describe('ON_DEMAND', () => {
  it('runs with the arguments, env and resources asked for; instances bounds how many run, the rest queue', async () => {
    f = await engineFixture();
    await f.createRequest({ id: 'od', requestType: 'ON_DEMAND', instances: 2 });
    await f.deploy({ requestId: 'od', id: 'd1', arguments: ['/bin/echo', 'base'], env: { A: 'deploy' } });
    for (const runId of ['r1', 'r2', 'r3']) {
      await runNow('od', { runId, commandLineArgs: ['--n', runId], envOverrides: { A: runId }, resources: { memoryMb: 8 } });
    }
    const live = await f.tasks('od');
    expect(live.map((t) => t.run?.runId).sort()).toEqual(['r1', 'r2']);
    const spec = f.runtime.spec(live.find((t) => t.run?.runId === 'r1')?.taskId.id as string);
    expect(spec).toMatchObject({ arguments: ['/bin/echo', 'base', '--n', 'r1'], env: { A: 'r1' }, memoryMb: 8 });
    expect((await f.request('od'))?.jobs?.queue?.map((q) => q.runId)).toEqual(['r3']);

    f.runtime.exit(live[0]?.taskId.id as string, 0);
    await f.settle();
    const other = live[1]?.run?.runId as string;
    expect((await f.tasks('od')).map((t) => t.run?.runId).sort()).toEqual([other, 'r3'].sort());
    expect((await f.request('od'))?.jobs?.queue).toBeUndefined();
    expect(await f.store.findTaskByRunId('od', 'r3')).toBeDefined();
  });

  it('keeps the handle and a duration, and frees the resources, of a run that exits before its start returns', async () => {
    f = await engineFixture();
    await f.createRequest({ id: 'fast', requestType: 'ON_DEMAND' });
    await f.deploy({ requestId: 'fast', id: 'd1', command: 'echo' });
    f.runtime.script({ deployId: 'd1' }, { exitWhileStarting: 0 });
    await runNow('fast', { runId: 'r1' });
    const task = await f.store.findTaskByRunId('fast', 'r1');
    expect(task).toMatchObject({ state: 'TASK_FINISHED', exitCode: 0, handle: { taskId: task?.taskId.id } });
    // It ran: from its start request to its exit, so the run has a duration (never negative).
    expect(task?.runningAt).toBeDefined();
    expect((task?.doneAt ?? 0) - (task?.runningAt ?? Infinity)).toBeGreaterThanOrEqual(0);
    expect(f.runtime.released).toContain(task?.taskId.id);
    expect(f.runtime.usage()).toEqual({ cpus: 0, memoryMb: 0 });
  });

  it('keeps the queue across a scheduler restart', async () => {
    f = await engineFixture();
    await f.createRequest({ id: 'q', requestType: 'ON_DEMAND' });
    await f.deploy({ requestId: 'q', id: 'd1' });
    await runNow('q', { runId: 'a' });
    await runNow('q', { runId: 'b' });
    await f.crash();
    await f.boot();
    expect((await f.request('q'))?.jobs?.queue?.map((r) => r.runId)).toEqual(['b']);
    const [a] = await f.tasks('q');
    f.runtime.exit(a?.taskId.id as string, 0);
    await f.settle();
    expect((await f.tasks('q')).map((t) => t.run?.runId)).toEqual(['b']);
  });

  it('refuses a run id used before, and a run of a paused request', async () => {
    f = await engineFixture();
    await f.createRequest({ id: 'once', requestType: 'ON_DEMAND' });
    await f.deploy({ requestId: 'once', id: 'd1' });
    await runNow('once', { runId: 'x' });
    await expect(runNow('once', { runId: 'x' })).rejects.toThrow('Run x of request once exists already');
    await f.service.setState('once', 'pause');
    await expect(runNow('once', {})).rejects.toThrow('is paused');
  });
});

describe('RUN_ONCE', () => {
  it('runs once per deploy, when the deploy becomes active', async () => {
    f = await engineFixture();
    await f.createRequest({ id: 'deploy-it-request-run-once', requestType: 'RUN_ONCE', instances: 2 });
    await f.deploy({ requestId: 'deploy-it-request-run-once', id: 'd1', command: 'sleep 10' });
    expect((await f.result('deploy-it-request-run-once', 'd1'))?.deployState).toBe('SUCCEEDED');
    const [run] = await f.tasks('deploy-it-request-run-once');
    f.runtime.exit(run?.taskId.id as string, 0);
    await f.advance(MIN);
    expect(runsOf(await f.allTasks('deploy-it-request-run-once')).map((t) => t.taskId.deployId)).toEqual(['d1']);
    await f.deploy({ requestId: 'deploy-it-request-run-once', id: 'd2', command: 'sleep 10' });
    expect(runsOf(await f.allTasks('deploy-it-request-run-once')).map((t) => t.taskId.deployId)).toEqual(['d1', 'd2']);
  });
});

describe('webhook deliveries queued with the changes', () => {
  it('queues request, deploy and task events in the order they happened, per webhook', async () => {
    f = await engineFixture();
    for (const type of ['REQUEST', 'DEPLOY', 'TASK'] as const) {
      await f.store.saveWebhook({
        id: webhookId(type, `http://127.0.0.1:1/${type}`),
        uri: `http://127.0.0.1:1/${type}`,
        type,
        timestamp: 0,
      });
    }
    await f.createRequest({ id: 'hooked', requestType: 'RUN_ONCE' });
    await f.deploy({ requestId: 'hooked', id: 'd1' });
    const [run] = await f.tasks('hooked');
    f.runtime.exit(run?.taskId.id as string, 2);
    await f.settle();
    const bodies = async (type: 'REQUEST' | 'DEPLOY' | 'TASK') =>
      (await f.store.listDeliveries(webhookId(type, `http://127.0.0.1:1/${type}`), 100)).map(
        (d) => JSON.parse(d.body) as Record<string, unknown>,
      );
    expect((await bodies('REQUEST')).map((b) => b.eventType)).toEqual(['CREATED']);
    const deploys = await bodies('DEPLOY');
    expect(deploys.map((b) => b.eventType)).toEqual(['STARTING', 'FINISHED']);
    expect(deploys[1]).toMatchObject({ deployMarker: { requestId: 'hooked', deployId: 'd1' }, deployResult: { deployState: 'SUCCEEDED' } });
    const tasks = await bodies('TASK');
    expect(tasks.map((b) => b.taskState)).toEqual(['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_FAILED']);
    expect(tasks[3]).toMatchObject({ exitCode: 2, statusMessage: 'exit code 2', previous: [] });
  });
});
