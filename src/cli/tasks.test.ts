// `fledge task`, against the real server (test/helpers/cli-app.ts) and its fake runtime.
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo, cliRunner, requestWithDeploy, startCliApp, uniqueId, utc, type CliApp } from '../../test/helpers/cli-app.ts';
import { reservePorts } from '../../test/helpers/ports.ts';
import { waitFor } from '../../test/helpers/wait-for.ts';
import { FledgeClient, type TaskView } from '../api/client.ts';
import { runCli } from './main.ts';

const PORTS = reservePorts(5);

let app: CliApp;
let client: FledgeClient;
beforeAll(async () => {
  app = await startCliApp();
  client = new FledgeClient(app.server.url, { token: app.adminToken });
});
afterAll(async () => app?.close());

const { io, run, since } = cliRunner(() => app);

/** A load-balanced request with `instances` tasks of d1 running; its tasks by instance. */
async function running(instances = 2): Promise<{ id: string; tasks: TaskView[] }> {
  const id = uniqueId('web');
  await requestWithDeploy(app, id, {
    request: { instances, loadBalanced: true },
    deploy: { serviceBasePath: `/${id}`, loadBalancerGroups: ['default'] },
  });
  const tasks = await waitFor(
    async () => {
      const all = await client.requestTasks(id);
      return all.length === instances && all.every((t) => t.lb?.add?.state === 'SUCCESS') ? all : false;
    },
    { timeoutMs: 10_000 },
  );
  return { id, tasks: tasks.sort((a, b) => a.taskId.instanceNo - b.taskId.instanceNo) };
}

describe('fledge task', () => {
  it("lists all live tasks, or one request's, as a table", async () => {
    const { id, tasks } = await running(2);
    const calls = since();
    const all = await run(['task', 'list']);
    expect(all.code).toBe(0);
    const lines = all.io.out().split('\n');
    expect(lines[0]).toMatch(/^TASK +INSTANCE +DEPLOY +STATE +HEALTH +LB +PORTS +NOTE$/);
    for (const t of tasks) {
      expect(lines).toContainEqual(
        expect.stringMatching(
          new RegExp(`^${t.taskId.id} +${t.taskId.instanceNo} +d1 +TASK_RUNNING +HEALTHY +add SUCCESS +${t.ports[0]} +-$`),
        ),
      );
    }
    const one = await run(['task', 'list', id, '--json']);
    expect(JSON.parse(one.io.out())).toEqual(await client.requestTasks(id));
    expect(calls.calls().map((c) => `${c.method} ${c.path}`)).toEqual(['GET /api/tasks/active', `GET /api/tasks/request/${id}`]);
  });

  it('shows a task with its updates', async () => {
    const { tasks } = await running(1);
    const t = await client.getTask(tasks[0]!.taskId.id);
    const { code, io } = await run(['task', 'get', t.taskId.id]);
    expect(code).toBe(0);
    expect(io.out()).toContain('state     TASK_RUNNING\n');
    expect(io.out()).toContain(`ports     ${t.ports.join(', ')}\n`);
    const updates = t.taskUpdates ?? [];
    expect(updates.length).toBeGreaterThan(0);
    expect(io.out()).toContain(
      `updates:\n${updates.map((u) => `  ${utc(u.timestamp)}  ${u.taskState}${u.statusMessage ? `  ${u.statusMessage}` : ''}\n`).join('')}`,
    );
  });

  it('names a task by a unique prefix or request#instance', async () => {
    const { id, tasks } = await running(2);
    const t = tasks[1]!;
    const byInstance = await run(['task', 'get', `${id}#${t.taskId.instanceNo}`, '--json']);
    expect(byInstance.code, byInstance.io.err()).toBe(0);
    expect((JSON.parse(byInstance.io.out()) as TaskView).taskId.id).toBe(t.taskId.id);
    const ambiguous = await run(['task', 'get', `${id}-d1-`]);
    expect(ambiguous.code).toBe(2);
    for (const each of tasks) expect(ambiguous.io.err()).toContain(each.taskId.id);
  });

  it('kills a task with a message', async () => {
    const { tasks } = await running(1);
    const t = tasks[0]!;
    const calls = since();
    const { code, io } = await run(['task', 'kill', t.taskId.id, '-m', 'stuck']);
    expect(code, io.err()).toBe(0);
    expect(calls.calls().find((c) => c.method === 'DELETE')?.body).toEqual({ message: 'stuck' });
    expect(io.out()).toMatch(new RegExp(`^task ${t.taskId.id}: TASK_[A-Z_]+ \\(cleanup USER_REQUESTED: stuck\\)\\n$`));
  });

  it("prints a task's whole log by reading until no more data", async () => {
    const { tasks } = await running(1);
    const taskId = tasks[0]!.taskId.id;
    const log = 'line 1\nline 2\nline 3\n';
    app.runtime.writeLog(taskId, 'stderr', log);
    const calls = since();
    const { code, io } = await run(['task', 'logs', taskId, '--stderr']);
    expect(code).toBe(0);
    expect(io.out()).toBe(log);
    const reads = calls.calls().filter((c) => c.path.startsWith('/api/sandbox/'));
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every((c) => c.query.path === 'stderr')).toBe(true);

    app.runtime.writeLog(taskId, 'stdout', log);
    const json = await run(['task', 'logs', taskId, '--json']);
    const chunks = json.io
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { offset: number; data: string; nextOffset: number });
    expect(chunks.map((c) => c.data).join('')).toBe(log);
    expect(chunks[0]?.offset).toBe(0);
    for (let i = 1; i < chunks.length; i++) expect(chunks[i]?.offset).toBe(chunks[i - 1]?.nextOffset);
  });

  it('follows a log until the task ends and everything is read', async () => {
    const { tasks } = await running(1);
    const taskId = tasks[0]!.taskId.id;
    app.runtime.writeLog(taskId, 'stdout', 'starting\n');
    const out = io({ pollMillis: 20 });
    const done = run(['task', 'logs', taskId, '-f'], out);
    await out.printed('starting\n');
    // The task writes more and exits between two polls; the output after the last poll
    // must still be printed.
    app.runtime.writeLog(taskId, 'stdout', 'serving\n');
    app.runtime.exit(taskId, 0);
    app.runtime.writeLog(taskId, 'stdout', 'bye\n');
    const { code } = await done;
    expect(code).toBe(0);
    expect(out.out()).toBe('starting\nserving\nbye\n');
  });
});

describe("a task's checks while running", () => {
  // The real health probe against a task's port, where this test answers: first healthy, then
  // failing, while the deploy allows many failures before it calls the task unhealthy.
  let probed: CliApp;
  let status = 200;
  const target = createServer((_req, res) => {
    res.writeHead(status);
    res.end();
  });
  beforeAll(async () => {
    probed = await startCliApp({ health: 'probe', portRangeFrom: PORTS.from, portRangeTo: PORTS.to });
    await new Promise<void>((resolve) => target.listen(PORTS.from, '127.0.0.1', resolve));
  });
  afterAll(async () => {
    await probed?.close();
    await new Promise<void>((resolve) => target.close(() => resolve()));
  });

  it("shows the latest one's time and age, failures in a row and in all", async () => {
    const id = uniqueId('web');
    await requestWithDeploy(probed, id, {
      request: { instances: 1 },
      deploy: { healthcheck: { uri: '/health', intervalSeconds: 1, maxRetries: 1000 } },
    });
    const probedClient = new FledgeClient(probed.server.url, { token: probed.adminToken });
    const [task] = await probedClient.requestTasks(id);
    expect(task?.ports[0]).toBe(PORTS.from);
    status = 500;
    await waitFor(async () => ((await probedClient.getTask(task!.taskId.id)).health?.consecutiveFailures ?? 0) >= 2, {
      timeoutMs: 15_000,
    });
    const out = captureIo({ env: { FLEDGE_TOKEN: probed.adminToken } });
    expect(await runCli(['--server', probed.url, 'task', 'get', task!.taskId.id], out)).toBe(0);
    const failing = Number(/health {4}HEALTHY \((\d+) failed\)\n/.exec(out.out())?.[1]);
    expect(failing).toBeGreaterThanOrEqual(2);
    const checks =
      /checks {4}last (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \((\d+) s ago\), (\d+) failed in a row, (\d+) in all \((\d+) failed\)\n/.exec(
        out.out(),
      );
    expect(checks, out.out()).not.toBeNull();
    const [, at, , inRow, all, failed] = checks!;
    expect(Number(inRow)).toBe(failing);
    expect(Number(all)).toBeGreaterThan(Number(failed));
    expect(Number(failed)).toBeGreaterThanOrEqual(failing);
    expect(Date.parse(`${at!.replace(' ', 'T')}Z`)).toBeLessThanOrEqual(Date.now());
    const list = captureIo({ env: { FLEDGE_TOKEN: probed.adminToken } });
    await runCli(['--server', probed.url, 'task', 'list'], list);
    expect(list.out()).toMatch(/HEALTHY \(\d+ failed\)/);
  });
});
