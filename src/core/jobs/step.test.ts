import { describe, expect, it } from 'vitest';
import {
  engineDeploy,
  T0,
  testHost,
  testObservation,
  testPending,
  testRecord,
  testRequest,
  testTask,
} from '../../../test/helpers/engine-values.ts';
import type { FledgeRequest, JobState, QueuedRun, RequestRecord, TaskRecord, TaskRun } from '../model.ts';
import type { HostSnapshot } from '../placement.ts';
import { stepRequest } from '../request/step.ts';

const MIN = 60_000;
const v1 = engineDeploy('v1');
const v2 = engineDeploy('v2', {}, { successfulExitCodes: [0, 3] });

function job(type: FledgeRequest['requestType'], more: Partial<FledgeRequest> = {}): FledgeRequest {
  return testRequest(1, { requestType: type, ...(type === 'SCHEDULED' ? { schedule: '*/10 * * * *' } : {}), ...more });
}
/** A task of a run, in a shape. */
function runTask(shape: Parameters<typeof testTask>[2], run: Partial<TaskRun> = {}, n = 1, deploy = v1, startedAt = T0): TaskRecord {
  return { ...testTask(deploy, n, shape, startedAt), run: { trigger: 'ONEOFF', successfulExitCodes: [0], retry: 0, ...run } };
}
function queued(runId: string, more: Partial<QueuedRun> = {}): QueuedRun {
  return { runId, trigger: 'ONEOFF', queuedAt: T0, ...more };
}
function step(
  request: FledgeRequest,
  opts: {
    tasks?: TaskRecord[];
    jobs?: JobState;
    now?: number;
    record?: Partial<RequestRecord>;
    pending?: boolean;
    hosts?: HostSnapshot[];
  } = {},
) {
  const record = testRecord(request, { ...(opts.jobs ? { jobs: opts.jobs } : {}), ...opts.record });
  const obs = testObservation({
    request,
    activeDeploy: v1,
    tasks: opts.tasks ?? [],
    ...(opts.hosts ? { hosts: opts.hosts } : {}),
    ...(opts.pending ? { pendingDeploy: v2, pending: testPending(v2, request) } : {}),
  });
  const out = stepRequest(obs, opts.pending ? { ...record, pendingDeployId: 'v2' } : record, opts.now ?? T0);
  const started = out.tasks.filter((t) => out.actions.some((a) => a.kind === 'startTask' && a.taskId === t.taskId.id));
  const stopped = out.actions.flatMap((a) => (a.kind === 'stopTask' ? [a.reason] : []));
  return { out, started, stopped, jobs: out.request?.jobs ?? record.jobs };
}

describe('deploys of run-to-completion requests', () => {
  it.each(['SCHEDULED', 'ON_DEMAND', 'RUN_ONCE'] as const)('a %s deploy succeeds at once and becomes active', (type) => {
    const { out } = step(job(type), { pending: true });
    expect(out.pending.kind).toBe('ENDED');
    expect(out.pending.kind === 'ENDED' && out.pending.result.deployState).toBe('SUCCEEDED');
    expect(out.request?.activeDeployId).toBe('v2');
    expect(out.decisions.map((d) => d.kind)).toEqual(['ENDED']);
  });

  it('a RUN_ONCE request runs once per deploy, with the new deploy', () => {
    const first = step(job('RUN_ONCE'), { pending: true });
    expect(first.started.map((t) => [t.taskId.deployId, t.run?.trigger, t.run?.successfulExitCodes])).toEqual([
      ['v2', 'NEW_DEPLOY', [0, 3]],
    ]);
    expect(first.jobs?.ranDeployId).toBe('v2');
    const again = step(job('RUN_ONCE'), {
      jobs: { ranDeployId: 'v1' },
      tasks: [runTask('finished', { trigger: 'NEW_DEPLOY', settled: true })],
    });
    expect(again.started).toEqual([]);
  });
});

describe('SCHEDULED runs', () => {
  const key = 'CRON:*/10 * * * *@UTC';
  it.each([
    ['first sight: computes the next due time, runs nothing', undefined, T0, 0, T0 + 10 * MIN],
    ['due: one run, the next due time after now', T0, T0, 1, T0 + 10 * MIN],
    ['several due times missed while down: one catch-up run', T0 - 60 * MIN, T0, 1, T0 + 10 * MIN],
    ['not due yet: nothing', T0 + 5 * MIN, T0, 0, T0 + 5 * MIN],
  ])('%s', (_name, nextRunAt, now, runs, next) => {
    const base = T0 - (T0 % (10 * MIN));
    const fix = (t: number | undefined) => (t === undefined ? undefined : t - T0 + base);
    const jobs: JobState = nextRunAt === undefined ? {} : { nextRunAt: fix(nextRunAt) as number, scheduleKey: key };
    const r = step(job('SCHEDULED'), { jobs, now: fix(now) as number });
    expect(r.started.length).toBe(runs);
    expect(r.jobs?.nextRunAt).toBe(fix(next));
    expect(r.out.wakeAt).toBe(fix(next));
    if (runs) expect(r.started[0]?.run).toMatchObject({ trigger: 'SCHEDULED', dueAt: fix(nextRunAt) });
  });

  it('skips a due time while the previous run is still going, and notes it', () => {
    const running = runTask('starting', { trigger: 'SCHEDULED' });
    const r = step(job('SCHEDULED'), { jobs: { nextRunAt: T0, scheduleKey: key }, tasks: [running], now: T0 });
    expect(r.started).toEqual([]);
    expect(r.jobs?.skipped).toEqual({ count: 1, lastDueAt: T0, runningTaskId: running.taskId.id });
    expect(r.jobs?.nextRunAt).toBeGreaterThan(T0);
    expect(r.out.notes?.map((n) => n.msg)).toEqual(['scheduled run skipped: the previous run is still going']);
  });

  it('recomputes the due time when the schedule changes', () => {
    const r = step(job('SCHEDULED', { schedule: '0 0 * * *' }), { jobs: { nextRunAt: T0, scheduleKey: key } });
    expect(r.started).toEqual([]);
    expect(r.jobs?.scheduleKey).toBe('CRON:0 0 * * *@UTC');
    expect(r.jobs?.nextRunAt).toBe(Math.ceil((T0 + 1) / 86_400_000) * 86_400_000);
  });

  it('reads the schedule in scheduleTimeZone', () => {
    const r = step(job('SCHEDULED', { schedule: '0 0 * * *', scheduleTimeZone: 'Asia/Kolkata' }));
    expect(new Date(r.jobs?.nextRunAt as number).toISOString().slice(11, 16)).toBe('18:30');
  });

  it('waits waitAtLeastMillisAfterTaskFinishesForReschedule after the last run', () => {
    const done = { ...runTask('finished', { trigger: 'SCHEDULED', settled: true }), doneAt: T0 - 1000 };
    const r = step(job('SCHEDULED', { waitAtLeastMillisAfterTaskFinishesForReschedule: 5000 }), {
      jobs: { nextRunAt: T0, scheduleKey: key },
      tasks: [done],
    });
    expect(r.started).toEqual([]);
    expect(r.out.wakeAt).toBe(T0 + 4000);
  });

  it('a paused request lets due times pass without running', () => {
    const r = step(job('SCHEDULED'), { jobs: { nextRunAt: T0, scheduleKey: key }, record: { state: 'PAUSED' } });
    expect(r.started).toEqual([]);
    expect(r.jobs?.nextRunAt).toBeGreaterThan(T0);
    expect(r.jobs?.skipped).toBeUndefined();
  });

  it('a schedule with no next run finishes the request', () => {
    const r = step(job('SCHEDULED', { quartzSchedule: '0 0 0 1 1 ? 2020', schedule: undefined }));
    expect(r.out.request?.state).toBe('FINISHED');
  });

  it.each([
    ['by scheduledExpectedRuntimeMillis', { scheduledExpectedRuntimeMillis: 30_000 }, T0 + 31_000, true],
    ['not yet', { scheduledExpectedRuntimeMillis: 30_000 }, T0 + 29_000, false],
    ['by default, once it runs into its next due time', {}, T0 - (T0 % (10 * MIN)) + 10 * MIN + 1, true],
  ])('reports a run overdue %s', (_name, more, now, overdue) => {
    const r = step(job('SCHEDULED', more), {
      jobs: { nextRunAt: now + MIN, scheduleKey: key },
      tasks: [runTask('starting', { trigger: 'SCHEDULED' })],
      now,
    });
    const t = r.out.tasks.find((x) => x.run?.overdue);
    expect(!!t).toBe(overdue);
    if (overdue) expect(r.out.notes?.[0]?.msg).toMatch(/^run is overdue/);
  });
});

describe('queued runs (ON_DEMAND, run now)', () => {
  it('starts queued runs oldest first up to instances; the rest wait in the queue', () => {
    const r = step(job('ON_DEMAND', { instances: 2 }), {
      jobs: { queue: [queued('a', { commandLineArgs: ['x'] }), queued('b'), queued('c')] },
      tasks: [runTask('starting', { runId: 'z' }, 1)],
    });
    expect(r.started.map((t) => [t.run?.runId, t.taskId.instanceNo, t.run?.commandLineArgs])).toEqual([['a', 2, ['x']]]);
    expect(r.jobs?.queue?.map((q) => q.runId)).toEqual(['b', 'c']);
  });

  it('keeps runs queued while the request is paused, and a run with a later runAt until then', () => {
    expect(step(job('ON_DEMAND'), { jobs: { queue: [queued('a')] }, record: { state: 'PAUSED' } }).started).toEqual([]);
    const later = step(job('ON_DEMAND'), { jobs: { queue: [queued('a', { runAt: T0 + 5000 })] } });
    expect(later.started).toEqual([]);
    expect(later.out.wakeAt).toBe(T0 + 5000);
  });

  it('a run-now of a SCHEDULED request starts only when no run is going', () => {
    const key = 'CRON:*/10 * * * *@UTC';
    const busy = step(job('SCHEDULED'), {
      jobs: { nextRunAt: T0 + MIN, scheduleKey: key, queue: [queued('n', { trigger: 'IMMEDIATE' })] },
      tasks: [runTask('starting')],
    });
    expect(busy.started).toEqual([]);
    const idle = step(job('SCHEDULED'), {
      jobs: { nextRunAt: T0 + MIN, scheduleKey: key, queue: [queued('n', { trigger: 'IMMEDIATE' })] },
    });
    expect(idle.started.map((t) => t.run?.trigger)).toEqual(['IMMEDIATE']);
  });
});

describe('ended runs', () => {
  const failed = (run: Partial<TaskRun> = {}, more: Partial<TaskRecord> = {}) => ({
    ...runTask('exited', { runId: 'r1', commandLineArgs: ['a'], ...run }),
    ...more,
  });
  it.each([
    [
      'a failed run is retried with its parameters and runId',
      job('ON_DEMAND', { numRetriesOnFailure: 2 }),
      failed(),
      [['RETRY', 1, 'r1', ['a']]],
    ],
    ['no more than numRetriesOnFailure in a row', job('ON_DEMAND', { numRetriesOnFailure: 2 }), failed({ retry: 2 }), []],
    ['without numRetriesOnFailure, never', job('ON_DEMAND'), failed(), []],
    ['a success is not retried', job('ON_DEMAND', { numRetriesOnFailure: 2 }), runTask('finished'), []],
    [
      'a run killed by a user is not retried',
      job('ON_DEMAND', { numRetriesOnFailure: 2 }),
      failed({}, { state: 'TASK_KILLED', cleanup: { reason: 'USER_REQUESTED', timestamp: T0 } }),
      [],
    ],
    [
      'a run killed by its time limit is',
      job('ON_DEMAND', { numRetriesOnFailure: 1 }),
      failed({}, { state: 'TASK_KILLED', cleanup: { reason: 'TASK_EXCEEDED_TIME_LIMIT', timestamp: T0 } }),
      [['RETRY', 1, 'r1', ['a']]],
    ],
    ['a run-now of a SCHEDULED request is not retried', job('SCHEDULED', { numRetriesOnFailure: 2 }), failed({ trigger: 'IMMEDIATE' }), []],
    ['a settled run is not looked at again', job('ON_DEMAND', { numRetriesOnFailure: 2 }), failed({ settled: true }), []],
  ])('%s', (_name, request, task, expected) => {
    const r = step(request, {
      tasks: [task],
      jobs: request.requestType === 'SCHEDULED' ? { nextRunAt: T0 + MIN, scheduleKey: 'CRON:*/10 * * * *@UTC' } : {},
    });
    expect(r.started.map((t) => [t.run?.trigger, t.run?.retry, t.run?.runId, t.run?.commandLineArgs])).toEqual(expected);
    if (!task.run?.settled) expect(r.out.tasks.find((t) => t.taskId.id === task.taskId.id)?.run?.settled).toBe(true);
  });
});

describe('live runs', () => {
  it('kills a run over taskExecutionTimeLimitMillis, and wakes at the limit before', () => {
    const t = runTask('starting');
    const before = step(job('ON_DEMAND', { taskExecutionTimeLimitMillis: 5000 }), { tasks: [t], now: T0 + 4000 });
    expect(before.stopped).toEqual([]);
    expect(before.out.wakeAt).toBe(T0 + 5000);
    const after = step(job('ON_DEMAND', { taskExecutionTimeLimitMillis: 5000 }), { tasks: [t], now: T0 + 5000 });
    expect(after.stopped).toEqual(['TASK_EXCEEDED_TIME_LIMIT']);
    expect(after.out.tasks[0]?.cleanup?.message).toBe('Task has run for 5s, which exceeds the maximum execution time of 5s');
  });

  it('lets a run of a replaced deploy finish within killOldNonLongRunningTasksAfterMillis, then kills it', () => {
    const old = runTask('starting', {}, 1, engineDeploy('v0'));
    const request = job('ON_DEMAND', { killOldNonLongRunningTasksAfterMillis: 10_000 });
    const first = step(request, { tasks: [old] });
    expect(first.stopped).toEqual([]);
    const marked = first.out.tasks[0] as TaskRecord;
    expect(marked.run?.killAfter).toEqual({ at: T0 + 10_000, reason: 'DEPLOY_REPLACED' });
    expect(step(request, { tasks: [marked], now: T0 + 9999 }).stopped).toEqual([]);
    expect(step(request, { tasks: [marked], now: T0 + 10_000 }).stopped).toEqual(['DEPLOY_REPLACED']);
  });

  it('a deleted request kills its runs at once and drops its queue', () => {
    const r = step(job('ON_DEMAND'), { tasks: [runTask('starting')], jobs: { queue: [queued('a')] }, record: { state: 'DELETING' } });
    expect(r.stopped).toEqual(['REQUEST_DELETING']);
    expect(r.jobs?.queue).toBeUndefined();
  });
});

describe('runs on hosts', () => {
  const small = (id: string, more: Partial<HostSnapshot> = {}) =>
    testHost(id, { runs: 'process', capacity: { cpus: 2, memoryMb: 4096 }, ...more });

  it('a run no host fits waits (no start), and once one fits it starts there with its run', () => {
    const request = job('ON_DEMAND');
    const first = step(request, { jobs: { queue: [queued('big', { resources: { cpus: 3 } })] }, hosts: [small('a')] });
    expect(first.started).toEqual([]);
    const waiting = first.out.tasks[0] as TaskRecord;
    expect(waiting.waitingReason).toMatch(/cpu/i);
    expect(waiting.run).toMatchObject({ runId: 'big', resources: { cpus: 3 } });
    expect(first.out.wakeAt).toBe(T0 + 1000);
    expect(first.jobs?.queue).toBeUndefined();

    const later = step(request, {
      tasks: [waiting],
      hosts: [small('a'), small('b', { capacity: { cpus: 4, memoryMb: 4096 } })],
      now: T0 + 1000,
    });
    expect(later.out.deletedTasks).toEqual([waiting.taskId.id]);
    expect(later.started.map((t) => [t.taskId.host, t.run?.runId, t.run?.resources])).toEqual([['b', 'big', { cpus: 3 }]]);
  });

  it('a run lost with its host runs again elsewhere without using a retry', () => {
    const request = job('ON_DEMAND', { numRetriesOnFailure: 0 });
    const running = {
      ...testTask(v1, 1, 'starting', T0, 'a'),
      run: { trigger: 'ONEOFF' as const, runId: 'r', successfulExitCodes: [0], retry: 0 },
    };
    const r = step(request, { tasks: [running], hosts: [small('a', { reachable: false }), small('b')], now: T0 + 5000 });
    const lost = r.out.tasks.find((t) => t.taskId.id === running.taskId.id);
    expect(lost).toMatchObject({ state: 'TASK_LOST', lostWithHost: 'a', run: { settled: true } });
    expect(r.started.map((t) => [t.taskId.host, t.run?.runId, t.run?.retry, t.run?.retryOf])).toEqual([['b', 'r', 0, running.taskId.id]]);
  });

  it('a run placed on a host that is decommissioned before it started is placed again, without using a retry', () => {
    const request = job('ON_DEMAND');
    const placed = {
      ...testTask(v1, 1, 'launched', T0, 'a'),
      run: { trigger: 'ONEOFF' as const, runId: 'r', successfulExitCodes: [0], retry: 0 },
    };
    const hosts = [small('a', { adminState: 'DECOMMISSIONING' }), small('b')];
    const first = step(request, { tasks: [placed], hosts });
    expect(first.stopped).toEqual(['RESCHEDULED']);
    const killed = first.out.tasks.find((t) => t.taskId.id === placed.taskId.id) as TaskRecord;
    const ended = { ...killed, state: 'TASK_KILLED' as const, doneAt: T0 + 10 };
    const again = step(request, { tasks: [ended], hosts, now: T0 + 10 });
    expect(again.started.map((t) => [t.taskId.host, t.run?.runId, t.run?.retry])).toEqual([['b', 'r', 0]]);
  });

  it.each([
    [0, true],
    [2, true],
    [3, false],
  ])('a run whose port was taken (%i times before) runs again without using a retry: %s', (before, again) => {
    const run = { trigger: 'ONEOFF' as const, runId: 'p', successfulExitCodes: [0], retry: 0, portRetries: before };
    const died = { ...testTask(v1, 1, 'exited', T0, 'a'), portInUse: true, run };
    const started = step(job('ON_DEMAND'), { tasks: [died], hosts: [small('a')] }).started;
    expect(started.map((t) => [t.run?.runId, t.run?.retry, t.run?.portRetries])).toEqual(again ? [['p', 0, before + 1]] : []);
  });

  it('a run that failed on a host that answers is retried only as numRetriesOnFailure says', () => {
    const failed = { ...testTask(v1, 1, 'exited', T0, 'a'), run: { trigger: 'ONEOFF' as const, successfulExitCodes: [0], retry: 0 } };
    expect(step(job('ON_DEMAND'), { tasks: [failed], hosts: [small('a')] }).started).toEqual([]);
    const retried = step(job('ON_DEMAND', { numRetriesOnFailure: 1 }), { tasks: [failed], hosts: [small('a')] }).started;
    expect(retried.map((t) => [t.taskId.host, t.run?.trigger, t.run?.retry])).toEqual([['a', 'RETRY', 1]]);
  });
});
