import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from './main.ts';
import { captureIo, startFake, type FakeFledge } from './fake-server.ts';
import { T0, task } from './test-fixtures.ts';

let fake: FakeFledge;
afterEach(async () => fake?.close());

const run = (args: string[], io = captureIo()) => runCli(['--server', fake.url, ...args], io).then((code) => ({ code, io }));

describe('fledge task', () => {
  it("lists all live tasks, or one request's, as a table", async () => {
    const tasks = [
      task('web', 'd1', 2, {
        cleanup: { reason: 'DEPLOY_REPLACED', timestamp: T0 },
        state: 'TASK_CLEANING',
        lb: { add: { operationId: 'a', state: 'SUCCESS', timestamp: T0 }, remove: { operationId: 'r', state: 'WAITING', timestamp: T0 } },
      }),
      task('web', 'd2', 1, { health: { state: 'UNKNOWN', results: [] }, lb: {} }),
    ];
    fake = await startFake({ 'GET /api/tasks/active': () => tasks, 'GET /api/tasks/request/web': () => tasks.slice(1) });
    const all = await run(['task', 'list']);
    expect(all.code).toBe(0);
    expect(all.io.out()).toBe(
      [
        'TASK                    INSTANCE  DEPLOY  STATE          HEALTH   LB                           PORTS  NOTE',
        `web-d2-1-${T0}  1         d2      TASK_RUNNING   UNKNOWN  -                            31001  -`,
        `web-d1-2-${T0}  2         d1      TASK_CLEANING  HEALTHY  add SUCCESS, remove WAITING  31002  cleanup DEPLOY_REPLACED`,
        '',
      ].join('\n'),
    );
    const one = await run(['task', 'list', 'web', '--json']);
    expect(JSON.parse(one.io.out())).toEqual(tasks.slice(1));
    expect(fake.paths()).toEqual(['GET /api/tasks/active', 'GET /api/tasks/request/web']);
  });

  it('shows a task with its updates', async () => {
    const t = task('web', 'd2', 1, { pid: 4242, taskUpdates: [{ taskState: 'TASK_RUNNING', timestamp: T0, statusMessage: 'started' }] });
    fake = await startFake({ [`GET /api/tasks/task/${t.taskId.id}`]: () => t });
    const { code, io } = await run(['task', 'get', t.taskId.id]);
    expect(code).toBe(0);
    expect(io.out()).toContain('state     TASK_RUNNING\n');
    expect(io.out()).toContain('pid       4242\n');
    expect(io.out()).toContain('updates:\n  2024-01-02 03:04:05  TASK_RUNNING  started\n');
  });

  it("shows a task's checks while running: the latest one's time and age, failures in a row and in all", async () => {
    const at = Date.now() - 4_000;
    const t = task('web', 'd2', 1, {
      health: { state: 'HEALTHY', results: [], lastCheckAt: at, consecutiveFailures: 2, checks: 40, failedChecks: 3 },
    });
    fake = await startFake({ [`GET /api/tasks/task/${t.taskId.id}`]: () => t, 'GET /api/tasks/active': () => [t] });
    const { io } = await run(['task', 'get', t.taskId.id]);
    expect(io.out()).toContain('health    HEALTHY (2 failed)\n');
    expect(io.out()).toMatch(/checks {4}last \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\), 2 failed in a row, 40 in all \(3 failed\)\n/);
    const list = await run(['task', 'list']);
    expect(list.io.out()).toContain('HEALTHY (2 failed)');
  });

  it('kills a task with a message', async () => {
    const t = task('web', 'd2', 1, { state: 'TASK_CLEANING', cleanup: { reason: 'USER_REQUESTED', timestamp: T0, message: 'stuck' } });
    fake = await startFake({ [`DELETE /api/tasks/task/${t.taskId.id}`]: () => t });
    const { code, io } = await run(['task', 'kill', t.taskId.id, '-m', 'stuck']);
    expect(code).toBe(0);
    expect(fake.calls[0]?.body).toEqual({ message: 'stuck' });
    expect(io.out()).toBe(`task ${t.taskId.id}: TASK_CLEANING (cleanup USER_REQUESTED: stuck)\n`);
  });

  it("prints a task's whole log by reading until no more data", async () => {
    const log = 'line 1\nline 2\nline 3\n';
    fake = await startFake({
      'GET /api/sandbox/t1/read': (c) => {
        const offset = Number(c.query.offset);
        const data = log.slice(offset, offset + 7);
        return { path: c.query.path, offset, data, nextOffset: offset + data.length };
      },
    });
    const { code, io } = await run(['task', 'logs', 't1', '--stderr']);
    expect(code).toBe(0);
    expect(io.out()).toBe(log);
    expect(fake.calls.every((c) => c.query.path === 'stderr')).toBe(true);

    const json = await run(['task', 'logs', 't1', '--json']);
    expect(
      json.io
        .out()
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { data: string; nextOffset: number }),
    ).toEqual([
      { path: 'stdout', offset: 0, data: 'line 1\n', nextOffset: 7 },
      { path: 'stdout', offset: 7, data: 'line 2\n', nextOffset: 14 },
      { path: 'stdout', offset: 14, data: 'line 3\n', nextOffset: 21 },
    ]);
  });

  it('follows a log until the task ends and everything is read', async () => {
    let log = 'starting\n';
    let state = 'TASK_RUNNING';
    fake = await startFake({
      'GET /api/sandbox/t1/read': (c) => {
        const offset = Number(c.query.offset);
        const data = log.slice(offset);
        return { path: 'stdout', offset, data, nextOffset: offset + data.length };
      },
      // The task writes more and exits between two polls; the output after the last poll
      // must still be printed.
      'GET /api/tasks/task/t1': () => {
        const now = { ...task('web', 'd1', 1), state };
        if (state === 'TASK_RUNNING') {
          log += 'serving\n';
          state = 'TASK_FINISHED';
        } else log += 'bye\n';
        return now;
      },
    });
    const { code, io } = await run(['task', 'logs', 't1', '-f']);
    expect(code).toBe(0);
    expect(io.out()).toBe('starting\nserving\nbye\n');
  });
});
