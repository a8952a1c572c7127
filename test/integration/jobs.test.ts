// Run-to-completion requests on a real `fledge serve` with real task processes, driven and
// tracked through Singularity's endpoints only: on-demand runs with arguments, env and a queue;
// exit codes, retries and time limits; a Quartz schedule across a SIGKILL of the scheduler;
// Singularity's RUN_ONCE example; webhooks to a receiver that fails, hangs and recovers.
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { cleanup, freePort, leakedProcesses, startFledgeProcess, type FledgeProcess } from '../helpers/fledge-process.ts';
import { reservePorts } from '../helpers/ports.ts';
import { runCli } from '../helpers/run-cli.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(50);
afterEach(cleanup);
afterAll(async () => {
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

type Json = Record<string, unknown> & { [k: string]: never | unknown };
async function call(f: FledgeProcess, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${f.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${f.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Json };
}
async function ok(f: FledgeProcess, method: string, path: string, body?: unknown): Promise<Json> {
  const r = await call(f, method, path, body);
  if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
async function job(f: FledgeProcess, request: Json, deploy: Json): Promise<void> {
  await ok(f, 'POST', '/api/requests', request);
  await ok(f, 'POST', '/api/deploys', { deploy: { requestId: request.id, id: 'd1', ...deploy } });
  await waitFor(async () => (await ok(f, 'GET', `/api/history/request/${request.id as string}/deploy/d1`)).deployResult, {
    message: 'the deploy result',
  });
}
const track = (f: FledgeProcess, requestId: string, runId: string) => ok(f, 'GET', `/api/track/run/${requestId}/${runId}`);
async function finished(f: FledgeProcess, requestId: string, runId: string, timeoutMs = 15_000): Promise<Json> {
  return waitFor(
    async () => {
      const s = await track(f, requestId, runId);
      return ['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_ERROR', 'TASK_LOST'].includes(s.currentState as string) ? s : undefined;
    },
    { timeoutMs, message: `run ${runId} to end` },
  );
}
const history = async (f: FledgeProcess, requestId: string) =>
  (await ok(f, 'GET', `/api/history/request/${requestId}/tasks`)) as unknown as Json[];

describe('ON_DEMAND on real processes', () => {
  it('runs with commandLineArgs and envOverrides, queues beyond instances, and keeps the exit code, duration and logs', async () => {
    const f = await startFledgeProcess({ portRange: PORTS });
    await job(
      f,
      { id: 'od', requestType: 'ON_DEMAND', instances: 1 },
      { command: 'sleep 0.5; echo "foo=$FOO" args', env: { FOO: 'deploy' } },
    );
    const first = await ok(f, 'POST', '/api/requests/request/od/run', {
      runId: 'r1',
      commandLineArgs: ['--x', "it's here"],
      envOverrides: { FOO: 'bar' },
    });
    expect(first.pendingRequest).toMatchObject({
      requestId: 'od',
      runId: 'r1',
      pendingType: 'ONEOFF',
      cmdLineArgsList: ['--x', "it's here"],
    });
    await ok(f, 'POST', '/api/requests/request/od/run', { runId: 'r2' });
    await waitFor(async () => (await track(f, 'od', 'r1')).currentState === 'TASK_RUNNING', { message: 'r1 running' });
    expect(await track(f, 'od', 'r2')).toMatchObject({ pending: true, runId: 'r2', queuePosition: 1 });
    expect((await ok(f, 'GET', '/api/requests/request/od')).pendingRequests).toMatchObject([{ runId: 'r2' }]);

    const done = await finished(f, 'od', 'r1');
    expect(done).toMatchObject({ currentState: 'TASK_FINISHED', exitCode: 0, pending: false });
    expect(done.durationMillis as number).toBeGreaterThanOrEqual(400);
    const taskId = (done.taskId as { id: string }).id;
    expect(await ok(f, 'GET', '/api/requests/request/od/run/r1')).toMatchObject({ id: taskId });
    const log = await ok(f, 'GET', `/api/sandbox/${encodeURIComponent(taskId)}/read?path=stdout`);
    expect(log.data).toBe("foo=bar args --x it's here\n");
    expect(await finished(f, 'od', 'r2')).toMatchObject({ currentState: 'TASK_FINISHED' });
    expect((await call(f, 'POST', '/api/requests/request/od/run', { runId: 'r1' })).status).toBe(409);
    expect((await history(f, 'od')).map((t) => t.exitCode)).toEqual([0, 0]);
  });

  it('fails on an exit code outside successfulExitCodes, retries numRetriesOnFailure times, and kills a run over its time limit', async () => {
    const f = await startFledgeProcess({ portRange: PORTS });
    await job(f, { id: 'codes', requestType: 'ON_DEMAND', numRetriesOnFailure: 1 }, { command: 'exit 4' });
    await ok(f, 'POST', '/api/requests/request/codes/run', { runId: 'fail' });
    await waitFor(async () => (await history(f, 'codes')).length === 2, { message: 'a run and its retry' });
    const runs = await history(f, 'codes');
    expect(runs.map((t) => [t.state, t.exitCode, (t.run as Json).retry])).toEqual([
      ['TASK_FAILED', 4, 0],
      ['TASK_FAILED', 4, 1],
    ]);

    await job(f, { id: 'ok4', requestType: 'ON_DEMAND' }, { command: 'exit 4', successfulExitCodes: [0, 4] });
    await ok(f, 'POST', '/api/requests/request/ok4/run', { runId: 'x' });
    expect(await finished(f, 'ok4', 'x')).toMatchObject({ currentState: 'TASK_FINISHED', exitCode: 4 });

    await job(f, { id: 'slow', requestType: 'ON_DEMAND', taskExecutionTimeLimitMillis: 1000 }, { command: 'sleep 30' });
    await ok(f, 'POST', '/api/requests/request/slow/run', { runId: 'x' });
    const killed = await finished(f, 'slow', 'x');
    expect(killed.currentState).toBe('TASK_KILLED');
    expect(JSON.stringify(killed.taskHistory)).toContain('exceeds the maximum execution time of 1s');
  });
});

describe('SCHEDULED on real processes', () => {
  it('runs a Quartz schedule, skips due times while a run goes on, and makes one catch-up run after a SIGKILL', async () => {
    const first = await startFledgeProcess({ portRange: PORTS });
    await job(
      first,
      { id: 'tick', requestType: 'SCHEDULED', quartzSchedule: '*/2 * * * * ?', scheduleTimeZone: 'UTC' },
      { command: 'sleep 3' },
    );
    const parent = await ok(first, 'GET', '/api/requests/request/tick');
    expect(parent.nextRunAt).toBeGreaterThan(Date.now() - 1000);
    await waitFor(async () => ((await ok(first, 'GET', '/api/requests/request/tick')).skippedRuns as Json | undefined)?.count, {
      timeoutMs: 10_000,
      message: 'a skipped due time',
    });
    const live = (await ok(first, 'GET', '/api/tasks/request/tick')) as unknown as Json[];
    expect(live).toHaveLength(1);

    first.kill('SIGKILL');
    await first.waitExit();
    await new Promise((r) => setTimeout(r, 5000)); // two or more due times pass while it is down
    const second = await startFledgeProcess({ portRange: PORTS, dataDir: first.dataDir });
    await waitFor(async () => (await history(second, 'tick')).length >= 1, { timeoutMs: 15_000, message: 'the first run to end' });
    // The run that was going is re-adopted; after it, one catch-up run, never two at once.
    for (let i = 0; i < 10; i++) {
      expect(((await ok(second, 'GET', '/api/tasks/request/tick')) as unknown as Json[]).length).toBeLessThanOrEqual(1);
      await new Promise((r) => setTimeout(r, 300));
    }
    const ended = await history(second, 'tick');
    expect(ended.every((t) => t.state === 'TASK_FINISHED')).toBe(true);
    await ok(second, 'DELETE', '/api/requests/request/tick');
    await waitFor(async () => (await call(second, 'GET', '/api/requests/request/tick')).status === 404, { message: 'the request gone' });
  });
});

describe('the CLI', () => {
  it('runs a request with arguments after --, follows the run to its end, and shows the next due time', async () => {
    const f = await startFledgeProcess({ portRange: PORTS });
    await job(f, { id: 'cli', requestType: 'ON_DEMAND' }, { command: 'echo' });
    const queued = await runCli(['request', 'run', 'cli', '--run-id', 'c1', '--', '--flag', 'two words'], {
      url: f.url,
      dataDir: f.dataDir,
    });
    expect(queued.stdout).toContain('queued run c1 of cli');
    const watched = await runCli(['run', 'watch', 'cli', 'c1', '--interval-ms', '100'], {
      url: f.url,
      dataDir: f.dataDir,
      timeoutMs: 20_000,
    });
    expect(watched.code).toBe(0);
    expect(watched.stdout).toMatch(/exit code\s+0/);
    expect((await runCli(['run', 'get', 'cli', 'c1'], { url: f.url, dataDir: f.dataDir })).stdout).toMatch(/state\s+TASK_FINISHED/);
    const taskId = ((await track(f, 'cli', 'c1')).taskId as { id: string }).id;
    expect((await ok(f, 'GET', `/api/sandbox/${encodeURIComponent(taskId)}/read?path=stdout`)).data).toBe('--flag two words\n');

    await ok(f, 'POST', '/api/requests', {
      id: 'nightly',
      requestType: 'SCHEDULED',
      schedule: '0 3 * * *',
      scheduleTimeZone: 'Europe/Berlin',
    });
    expect((await runCli(['request', 'get', 'nightly'], { url: f.url, dataDir: f.dataDir })).stdout).toMatch(/next run\s+\d{4}-/);
  });
});

describe('RUN_ONCE', () => {
  it("runs Singularity's own run-once example once per deploy", async () => {
    const f = await startFledgeProcess({ portRange: PORTS });
    await ok(f, 'POST', '/api/requests', { id: 'deploy-it-request-run-once', requestType: 'RUN_ONCE', instances: 2 });
    await ok(f, 'POST', '/api/deploys', { deploy: { requestId: 'deploy-it-request-run-once', id: '1700000000000', command: 'sleep 1' } });
    const h = await waitFor(
      async () => (await ok(f, 'GET', '/api/history/request/deploy-it-request-run-once/deploy/1700000000000')).deployResult,
    );
    expect(h).toMatchObject({ deployState: 'SUCCEEDED' });
    await waitFor(async () => (await history(f, 'deploy-it-request-run-once')).length === 1, { message: 'the one run to end' });
    await new Promise((r) => setTimeout(r, 1000));
    expect(await history(f, 'deploy-it-request-run-once')).toMatchObject([{ state: 'TASK_FINISHED', exitCode: 0 }]);
  });
});

describe('webhooks', () => {
  interface Received {
    delivery: string;
    signature: string | undefined;
    body: string;
  }
  /** A receiver that answers 500 to the first `failures` posts, hangs on the next one, then 200. */
  async function receiver(failures: number): Promise<{ url: string; got: Received[]; close: () => Promise<void>; server: Server }> {
    const got: Received[] = [];
    let seen = 0;
    const server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        seen++;
        if (seen <= failures) return void res.writeHead(500).end('down');
        if (seen === failures + 1) return; // no answer: the delivery times out
        got.push({
          delivery: String(req.headers['x-fledge-delivery']),
          signature: req.headers['x-fledge-signature'] as string | undefined,
          body,
        });
        res.writeHead(204).end();
      });
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    return {
      url: `http://127.0.0.1:${port}/hook`,
      got,
      server,
      close: () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }

  it('delivers every event once it recovers, in order, signed, with a stable delivery id, across a SIGKILL', async () => {
    const hook = await receiver(3);
    try {
      const flags = ['--webhook-timeout-seconds', '1', '--webhook-retry-max-seconds', '1'];
      const first = await startFledgeProcess({ portRange: PORTS, args: flags });
      const secret = 'a-secret-of-sixteen+';
      expect(await ok(first, 'POST', '/api/webhooks', { uri: hook.url, type: 'TASK', secret })).toBe('CREATED');
      const [listed] = (await ok(first, 'GET', '/api/webhooks')) as unknown as Json[];
      expect(listed).toMatchObject({ uri: hook.url, type: 'TASK', secretSet: true });
      expect(JSON.stringify(listed)).not.toContain(secret);
      await job(first, { id: 'hooked', requestType: 'ON_DEMAND', instances: 3 }, { command: 'exit 0' });
      for (const runId of ['a', 'b']) await ok(first, 'POST', '/api/requests/request/hooked/run', { runId });
      await finished(first, 'hooked', 'b');
      first.kill('SIGKILL');
      await first.waitExit();
      const second = await startFledgeProcess({ portRange: PORTS, dataDir: first.dataDir, args: flags });
      await ok(second, 'POST', '/api/requests/request/hooked/run', { runId: 'c' });
      await finished(second, 'hooked', 'c');
      await waitFor(async () => ((await ok(second, 'GET', '/api/webhooks/summary')) as unknown as Json[])[0]?.queueSize === 0, {
        timeoutMs: 30_000,
        message: 'the webhook queue to drain',
      });

      // At least once: de-duplicate on the delivery id; what is left is in order and complete.
      const unique = [...new Map(hook.got.map((g) => [g.delivery, g])).values()];
      const ids = unique.map((g) => Number(g.delivery));
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
      for (const g of unique) expect(g.signature).toBe(`sha256=${createHmac('sha256', secret).update(g.body).digest('hex')}`);
      const events = unique.map((g) => JSON.parse(g.body) as { taskId: { id: string }; taskState: string; runId?: string });
      // Nothing lost: each run's events are its task's whole state history, in order.
      for (const runId of ['a', 'b', 'c']) {
        const taskId = ((await track(second, 'hooked', runId)).taskId as { id: string }).id;
        const states = (
          (await ok(second, 'GET', `/api/history/task/${encodeURIComponent(taskId)}`)).taskUpdates as { taskState: string }[]
        ).map((u) => u.taskState);
        expect(states[0]).toBe('TASK_LAUNCHED');
        expect(states.at(-1)).toBe('TASK_FINISHED');
        expect(events.filter((e) => e.taskId.id === taskId).map((e) => e.taskState)).toEqual(states);
      }
      expect(await ok(second, 'DELETE', `/api/webhooks?webhookId=${encodeURIComponent(listed?.id as string)}`)).toBe('DELETED');
      // Write-only: never logged, not by the server that took it nor by the one that sent with it.
      expect(first.output()).not.toContain(secret);
      expect(second.output()).not.toContain(secret);
    } finally {
      await hook.close();
    }
  });

  it('refuses a webhook URI that is not http(s), naming the field', async () => {
    const f = await startFledgeProcess({ portRange: PORTS });
    const r = await call(f, 'POST', '/api/webhooks', { uri: 'file:///etc/passwd', type: 'TASK' });
    expect(r.status).toBe(400);
    expect(r.body.message).toContain('uri: must be an http:// or https:// URL');
  });
});
