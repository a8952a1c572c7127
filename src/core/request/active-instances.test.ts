import { describe, expect, it } from 'vitest';
import { engineDeploy, T0, testHost, testObservation, testRecord, testRequest, testTask } from '../../../test/helpers/engine-values.ts';
import type { HostSnapshot } from '../placement.ts';
import type { FledgeRequest, RequestRecord, TaskRecord } from '../model.ts';
import { TaskView } from '../task-view.ts';
import { requestContext } from './context.ts';
import { reconcileActiveInstances } from './active-instances.ts';

const v1 = engineDeploy('v1');

function run(
  options: {
    request?: FledgeRequest;
    record?: Partial<RequestRecord>;
    tasks?: TaskRecord[];
    now?: number;
    budget?: number;
    retired?: number[];
    noDeploy?: boolean;
    hosts?: HostSnapshot[];
  } = {},
) {
  const request = options.request ?? testRequest(2);
  const tasks = options.tasks ?? [];
  const obs = testObservation({ request, activeDeploy: v1, tasks, ...(options.hosts ? { hosts: options.hosts } : {}) });
  const record = testRecord(request, options.record);
  const pendingAfter = options.retired ? { deployId: 'v2', progress: { retiredOldInstances: options.retired } } : undefined;
  const ctx = requestContext(obs, record, options.now ?? T0, pendingAfter, undefined);
  return reconcileActiveInstances(ctx, record, TaskView.of(tasks), options.noDeploy ? undefined : v1, options.budget ?? 100);
}
const started = (r: ReturnType<typeof run>) => (r.actions ?? []).filter((a) => a.kind === 'startTask').length;
const cleaned = (r: ReturnType<typeof run>) =>
  (r.tasks ?? []).filter((t) => t.cleanup).map((t) => [t.taskId.instanceNo, t.cleanup?.reason]);
const newInstances = (r: ReturnType<typeof run>) =>
  (r.tasks ?? []).filter((t) => t.state === 'TASK_LAUNCHED').map((t) => t.taskId.instanceNo);

/** HEALTHY until the checks while running failed maxRetries + 1 times in a row. */
const unhealthyWhileRunning = (n: number): TaskRecord => {
  const t = testTask(v1, n, 'healthy');
  return {
    ...t,
    health: {
      ...t.health,
      state: 'UNHEALTHY',
      consecutiveFailures: 3,
      message: 'unhealthy while running: 3 failed checks, last: timeout after 5 s',
    },
  };
};

describe('reconcileActiveInstances', () => {
  it.each([
    { name: 'starts every missing instance', options: {}, starts: [1, 2], cleanups: [], wakeAt: undefined },
    {
      name: 'leaves a full, healthy request alone',
      options: { tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'healthy')] },
      starts: [],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'replaces a task that died for the first time at once',
      options: { tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'exited')], now: T0 + 10 },
      starts: [2],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'a second death in a row waits the backoff (1 s), then asks to be woken',
      options: {
        tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'exited')],
        now: T0 + 10,
        record: { backoff: { '2': { failures: 1, until: T0, lastTaskId: 'older' } } },
      },
      starts: [],
      cleanups: [],
      wakeAt: T0 + 10 + 1000,
    },
    {
      name: 'an unhealthy task (failed checks while running) is cleaned up and replaced at once, the first time',
      options: { tasks: [testTask(v1, 1, 'healthy'), unhealthyWhileRunning(2)], now: T0 + 10 },
      starts: [2],
      cleanups: [[2, 'UNHEALTHY']],
      wakeAt: undefined,
    },
    {
      name: 'an unhealthy task after a crash of the same instance waits the backoff before its replacement',
      options: {
        tasks: [testTask(v1, 1, 'healthy'), unhealthyWhileRunning(2)],
        now: T0 + 10,
        record: { backoff: { '2': { failures: 1, until: T0, lastTaskId: 'older' } } },
      },
      starts: [],
      cleanups: [[2, 'UNHEALTHY']],
      wakeAt: T0 + 10 + 1000,
    },
    {
      name: 'a task that found a port taken (EADDRINUSE) is started again at once, even in a crash loop',
      options: {
        tasks: [testTask(v1, 1, 'healthy'), { ...testTask(v1, 2, 'exited'), portInUse: true }],
        now: T0 + 10,
        record: { backoff: { '2': { failures: 3, until: T0, lastTaskId: 'older' } } },
      },
      starts: [2],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'after 3 port-taken exits in a row, the 4th counts in the backoff',
      options: {
        tasks: [testTask(v1, 1, 'healthy'), { ...testTask(v1, 2, 'exited'), portInUse: true }],
        now: T0 + 10,
        record: { backoff: { '2': { failures: 1, until: T0, lastTaskId: 'older', portInUse: 3 } } },
      },
      starts: [],
      cleanups: [],
      wakeAt: T0 + 10 + 1000,
    },
    {
      name: 'a task that never passed its startup checks is cleaned up and replaced too',
      options: { tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'unhealthy')], now: T0 + 10 },
      starts: [2],
      cleanups: [[2, 'UNHEALTHY']],
      wakeAt: undefined,
    },
    {
      name: 'scaled down: the highest instances are cleaned up',
      options: { request: testRequest(1), tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'healthy')] },
      starts: [],
      cleanups: [[2, 'SCALING_DOWN']],
      wakeAt: undefined,
    },
    {
      name: 'an instance a canary retired is cleaned up as replaced',
      options: { tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'healthy')], retired: [1] },
      starts: [],
      cleanups: [[1, 'DEPLOY_REPLACED']],
      wakeAt: undefined,
    },
    {
      name: 'paused: every task is cleaned up, none started',
      options: { tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 2, 'healthy')], record: { state: 'PAUSED' as const } },
      starts: [],
      cleanups: [
        [1, 'PAUSING'],
        [2, 'PAUSING'],
      ],
      wakeAt: undefined,
    },
    {
      name: 'deleting: every task is cleaned up',
      options: { request: testRequest(1), tasks: [testTask(v1, 1, 'healthy')], record: { state: 'DELETING' as const } },
      starts: [],
      cleanups: [[1, 'REQUEST_DELETING']],
      wakeAt: undefined,
    },
    {
      name: 'a bounce starts a replacement per instance and keeps the old one until it serves',
      options: { request: testRequest(1), tasks: [testTask(v1, 1, 'healthy')], now: T0 + 5, record: { bounce: { startedAt: T0 + 1 } } },
      starts: [1],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'a bounce drops the old task once its replacement is healthy',
      options: {
        request: testRequest(1),
        tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 1, 'healthy', T0 + 2)],
        now: T0 + 5,
        record: { bounce: { startedAt: T0 + 1 } },
      },
      starts: [],
      cleanups: [[1, 'BOUNCING']],
      wakeAt: undefined,
    },
    {
      name: 'load balanced: a healthy replacement not yet in the LB keeps the old task',
      options: {
        request: testRequest(1, { loadBalanced: true }),
        tasks: [testTask(v1, 1, 'in-lb'), testTask(v1, 1, 'healthy', T0 + 2)],
        now: T0 + 5,
        record: { bounce: { startedAt: T0 + 1 } },
      },
      starts: [],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'a kill with replacement starts a new task, and the killed one goes once it serves',
      options: { request: testRequest(1), tasks: [{ ...testTask(v1, 1, 'healthy'), replaceRequested: { timestamp: T0 } }] },
      starts: [1],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'without the active deploy’s record nothing is started',
      options: { noDeploy: true },
      starts: [],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'a task lost with its host is no crash: replaced at once, no backoff',
      options: {
        tasks: [testTask(v1, 1, 'healthy'), { ...testTask(v1, 2, 'lost'), lostWithHost: 'd1' }],
        now: T0 + 10,
        record: { backoff: { '2': { failures: 3, until: T0, lastTaskId: 'older' } } },
      },
      starts: [2],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'a decommissioning host: a replacement starts elsewhere, the old task keeps serving meanwhile',
      options: {
        request: testRequest(1),
        tasks: [testTask(v1, 1, 'healthy', T0, 'd1')],
        hosts: [testHost('local'), testHost('d1', { runs: 'process', adminState: 'DECOMMISSIONING' })],
      },
      starts: [1],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'a decommissioning host: the old task goes once its replacement serves',
      options: {
        request: testRequest(1),
        tasks: [testTask(v1, 1, 'healthy', T0, 'd1'), testTask(v1, 1, 'healthy', T0 + 2)],
        hosts: [testHost('local'), testHost('d1', { runs: 'process', adminState: 'DECOMMISSIONING' })],
      },
      starts: [],
      cleanups: [[1, 'DECOMMISSIONING']],
      wakeAt: undefined,
    },
    {
      name: 'a frozen host keeps its tasks',
      options: {
        request: testRequest(1),
        tasks: [testTask(v1, 1, 'healthy', T0, 'd1')],
        hosts: [testHost('local'), testHost('d1', { runs: 'process', adminState: 'FROZEN' })],
      },
      starts: [],
      cleanups: [],
      wakeAt: undefined,
    },
    {
      name: 'more missing than a pass may create: creates the batch and looks again at once',
      options: { request: testRequest(5), budget: 2 },
      starts: [1, 2],
      cleanups: [],
      wakeAt: T0,
    },
  ])('$name', ({ options, starts, cleanups, wakeAt }) => {
    const result = run(options);
    expect(newInstances(result)).toEqual(starts);
    expect(started(result)).toBe(starts.length);
    expect(cleaned(result)).toEqual(cleanups);
    expect(result.wakeAt).toBe(wakeAt);
  });

  it.each([
    { name: 'a task that served a whole backoff window ends the crash loop', healthyFor: 60_000, backoff: undefined, wakeAt: undefined },
    {
      name: 'a task serving for less keeps the backoff and asks to be woken when the window ends',
      healthyFor: 59_000,
      backoff: 3,
      wakeAt: T0 + 60_000,
    },
  ])('$name', ({ healthyFor, backoff, wakeAt }) => {
    const result = run({
      request: testRequest(1),
      tasks: [testTask(v1, 1, 'healthy')],
      now: T0 + healthyFor,
      record: { backoff: { '1': { failures: 3, until: T0, lastTaskId: 'x' } } },
    });
    expect(result.record.backoff?.['1']?.failures).toBe(backoff);
    expect(result.wakeAt).toBe(wakeAt);
  });

  it('records the backoff of a crash, doubling the wait with each death', () => {
    const crashed = testTask(v1, 1, 'exited');
    const result = run({
      request: testRequest(1),
      tasks: [crashed],
      record: { backoff: { '1': { failures: 2, until: T0 - 5000, lastTaskId: 'older' } } },
    });
    expect(result.record.backoff?.['1']).toEqual({ failures: 3, until: crashed.doneAt! + 2000, lastTaskId: crashed.taskId.id });
  });

  it('ends the bounce once no serving task predates it', () => {
    const result = run({
      request: testRequest(1),
      tasks: [testTask(v1, 1, 'healthy'), testTask(v1, 1, 'healthy', T0 + 2)],
      now: T0 + 5,
      record: { bounce: { startedAt: T0 + 1 } },
    });
    expect(result.record.bounce).toBeUndefined();
  });

  it('places new tasks across the hosts; one that fits nowhere waits, says why, and gets no start', () => {
    const hosts = [testHost('local'), testHost('d1', { runs: 'process', capacity: { cpus: 1000, memoryMb: 1_000_000 } })];
    const spread = run({ request: testRequest(3), hosts });
    expect((spread.tasks ?? []).map((t) => t.taskId.host)).toEqual(['local', 'd1', 'local']);
    const full = run({ request: testRequest(1), hosts: [testHost('local', { adminState: 'FROZEN' })] });
    expect(full.tasks).toMatchObject([
      { taskId: { host: 'unplaced' }, state: 'TASK_LAUNCHED', waitingReason: 'host local is FROZEN and takes no new tasks' },
    ]);
    expect(started(full)).toBe(0);
  });

  it('walks a request of 2^31 instances in bounded work, creating one batch', () => {
    const result = run({ request: testRequest(2 ** 31), tasks: [testTask(v1, 7, 'exited')], budget: 100 });
    expect(newInstances(result)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1 + (i >= 6 ? 1 : 0)));
    expect(result.deferred).toBe(true);
    expect(result.wakeAt).toBe(T0);
  });

  it('says why on the task: the update carries the health verdict', () => {
    const r = run({ tasks: [testTask(v1, 1, 'healthy'), unhealthyWhileRunning(2)], now: T0 + 10 });
    const marked = (r.tasks ?? []).find((t) => t.cleanup)!;
    expect(marked.cleanup).toMatchObject({
      reason: 'UNHEALTHY',
      message: 'unhealthy while running: 3 failed checks, last: timeout after 5 s',
    });
    expect(marked.updates.at(-1)).toMatchObject({
      state: 'TASK_CLEANING',
      message: 'unhealthy while running: 3 failed checks, last: timeout after 5 s',
    });
    expect(r.record.backoff?.['2']).toMatchObject({ failures: 1, lastTaskId: marked.taskId.id });
  });
});
