import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeployHistoryView, TaskView } from '../api/client.ts';
import { runCli } from './main.ts';
import { captureIo, reply, startFake, type FakeFledge } from './fake-server.ts';
import { historyEntry, parent, progress, T0, task } from './test-fixtures.ts';

let fake: FakeFledge;
afterEach(async () => fake?.close());

const run = (args: string[], io = captureIo()) => runCli(['--server', fake.url, ...args], io).then((code) => ({ code, io }));

async function jsonFile(value: unknown): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), 'fledge-cli-')), 'deploy.json');
  await writeFile(file, JSON.stringify(value));
  return file;
}

describe('fledge deploy', () => {
  it('wraps a bare deploy file into the POST body, with --message and --unpause', async () => {
    fake = await startFake({ 'POST /api/deploys': () => parent('web') });
    const file = await jsonFile({ requestId: 'web', id: 'd2', command: 'serve' });
    const { code, io } = await run(['deploy', 'create', '-f', file, '--message', 'v2', '--unpause']);
    expect(code).toBe(0);
    expect(fake.calls[0]?.body).toEqual({
      deploy: { requestId: 'web', id: 'd2', command: 'serve' },
      message: 'v2',
      unpauseOnSuccessfulDeploy: true,
    });
    expect(io.out()).toBe('deploy d2 of request web started\nrequest web: ACTIVE, 3/3 healthy, active deploy d1\n');
  });

  it('sends a whole {deploy, ...} body as it is', async () => {
    fake = await startFake({ 'POST /api/deploys': () => parent('web') });
    const body = { deploy: { requestId: 'web', id: 'd2' }, updatedRequest: { id: 'web', instances: 4 }, message: 'from file' };
    const { code, io } = await run(['deploy', 'create', '-f', await jsonFile(body), '--json']);
    expect(code).toBe(0);
    expect(fake.calls[0]?.body).toEqual(body);
    expect(JSON.parse(io.out())).toEqual(parent('web'));
  });

  it('refuses a deploy without ids before calling the API', async () => {
    fake = await startFake();
    const { code, io } = await run(['deploy', 'create', '-f', await jsonFile({ deploy: { command: 'x' } })]);
    expect(code).toBe(2);
    expect(io.err()).toMatch(/the deploy needs string "requestId" and "id"/);
    expect(fake.calls).toEqual([]);
  });

  it('shows a 409 from a second deploy as an error', async () => {
    fake = await startFake({
      'POST /api/deploys': () => reply(409, { message: 'Request web already has a pending deploy d1', details: [] }),
    });
    const { code, io } = await run(['deploy', 'create', '-f', await jsonFile({ requestId: 'web', id: 'd2' })]);
    expect(code).toBe(4);
    expect(io.err()).toBe('error: Request web already has a pending deploy d1\n');
  });

  it('prints a plan as a table with the ETA', async () => {
    fake = await startFake({
      'POST /api/deploys/plan': () => ({
        steps: [
          {
            step: 1,
            targetActiveInstances: 1,
            newInstances: 1,
            oldInstances: 2,
            loadBalanced: { new: 1, old: 2 },
            acceptance: { mode: 'TIMED', waitMillis: 30000 },
          },
          {
            step: 2,
            targetActiveInstances: 3,
            newInstances: 3,
            oldInstances: 0,
            loadBalanced: { new: 3, old: 0 },
            acceptance: { mode: 'NONE' },
          },
        ],
        etaSeconds: { min: 40, max: 300 },
        warnings: ['no health check'],
      }),
    });
    const { code, io } = await run(['deploy', 'plan', '-f', await jsonFile({ requestId: 'web', id: 'd2' })]);
    expect(code).toBe(0);
    expect(fake.calls[0]?.body).toEqual({ deploy: { requestId: 'web', id: 'd2' } });
    expect(io.out()).toBe(
      [
        'STEP  NEW WANTED  STARTS  OLD LEFT  IN LB NEW/OLD  NEW SHARE  ACCEPTANCE',
        '1     1           1       2         1/2            -          TIMED (wait 30s)',
        '2     3           3       0         3/0            -          NONE',
        '',
        'eta: 40–300 s',
        '',
      ].join('\n'),
    );
    expect(io.err()).toBe('warning: no health check\n');
  });

  it.each([
    [['cancel', 'web', 'd2'], 'DELETE /api/deploys/deploy/d2/request/web', undefined],
    [
      ['advance', 'web', 'd2', '-m', 'looks good'],
      'POST /api/deploys/advance',
      { requestId: 'web', deployId: 'd2', message: 'looks good' },
    ],
    [['reject', 'web', 'd2'], 'POST /api/deploys/reject', { requestId: 'web', deployId: 'd2' }],
    [['update', 'web', 'd2', '--target', '3'], 'POST /api/deploys/update', { requestId: 'web', deployId: 'd2', targetActiveInstances: 3 }],
  ])('deploy %j calls %s', async (args, route, body) => {
    fake = await startFake({ [route]: () => parent('web') });
    const { code } = await run(['deploy', ...args]);
    expect(code).toBe(0);
    // it reads the deploy before and after, to print where it stands once the loop acted
    expect(fake.paths().filter((p) => !p.startsWith('GET '))).toEqual([route]);
    expect(fake.calls.find((c) => c.method !== 'GET')?.body).toEqual(body);
  });

  it('lists pending deploys', async () => {
    fake = await startFake({
      'GET /api/deploys/pending': () => [
        {
          deployMarker: { requestId: 'web', deployId: 'd2', timestamp: T0 },
          currentDeployState: 'WAITING',
          deployProgress: progress({ phase: 'ACCEPTANCE', step: 1, totalSteps: 3 }),
        },
      ],
    });
    const { code, io } = await run(['deploy', 'pending']);
    expect(code).toBe(0);
    expect(io.out()).toBe(
      'REQUEST  DEPLOY  STEP  PHASE       NEW WANTED  NEW ACCEPTED  STARTED\nweb      d2      1/3   ACCEPTANCE  1           0             2024-01-02 03:04:05\n',
    );
  });

  it('lists deploy history and shows one entry with failures and decisions', async () => {
    const failed = historyEntry('web', 'd2', {
      actions: [{ action: 'reject', user: 'ops', at: T0 + 30_000 }],
      deployResult: {
        deployState: 'FAILED',
        message: 'step 1 failed',
        timestamp: T0 + 60_000,
        deployFailures: [{ reason: 'TASK_FAILED_HEALTH_CHECKS', taskId: task('web', 'd2', 1).taskId, message: 'HTTP 500' }],
      },
      decisionLog: [{ at: T0, phase: 'HEALTH', step: 1, observed: '1 unhealthy', action: 'fail deploy', reason: 'health timeout' }],
    });
    fake = await startFake({
      'GET /api/history/request/web/deploys': () => [
        historyEntry('web', 'd1', {
          deployMarker: { requestId: 'web', deployId: 'd1', timestamp: T0, user: 'ci' },
          deployResult: { deployState: 'SUCCEEDED', message: 'ok', timestamp: T0, deployFailures: [] },
        }),
        failed,
      ],
      'GET /api/history/request/web/deploy/d2': () => failed,
    });
    const list = await run(['deploy', 'history', 'web']);
    expect(list.io.out()).toBe(
      [
        'DEPLOY  STATE      CREATED              BY  ENDED                MESSAGE',
        'd1      SUCCEEDED  2024-01-02 03:04:05  ci  2024-01-02 03:04:05  ok',
        'd2      FAILED     2024-01-02 03:04:05  -   2024-01-02 03:05:05  step 1 failed',
        '',
      ].join('\n'),
    );
    const one = await run(['deploy', 'history', 'web', 'd2']);
    expect(one.code).toBe(0);
    expect(one.io.out()).toContain(`failures:\n  TASK_FAILED_HEALTH_CHECKS web-d2-1-${T0}: HTTP 500\n`);
    expect(one.io.out()).toContain('actions:\n  03:04:35 reject by ops\n');
    expect(one.io.out()).toContain('decisions:\n  03:04:05 HEALTH step 1: 1 unhealthy → fail deploy (health timeout)\n');
  });
});

/** A fake whose deploy history entry and tasks the test changes between events. */
async function deployServer(requestId: string, deployId: string, initial: DeployHistoryView) {
  const state = { entry: initial, tasks: [] as TaskView[] };
  fake = await startFake({
    'POST /api/deploys': () => parent(requestId),
    [`GET /api/history/request/${requestId}/deploy/${deployId}`]: () => state.entry,
    [`GET /api/requests/request/${requestId}`]: () => parent(requestId),
    [`GET /api/tasks/request/${requestId}`]: () => state.tasks,
  });
  const deployEvent = (eventType: string, extra: object = {}) =>
    fake.send('deploy', { type: 'DEPLOY', at: T0, requestId, deployId, eventType, ...extra });
  return { state, deployEvent };
}

describe('watching a deploy', () => {
  it('follows a deploy created with --watch to SUCCEEDED and exits 0', async () => {
    const { state, deployEvent } = await deployServer(
      'web',
      'd2',
      historyEntry('web', 'd2', { deployProgress: progress(), deployState: 'WAITING' }),
    );
    const io = captureIo();
    const done = run(['deploy', 'create', '-f', await jsonFile({ requestId: 'web', id: 'd2' }), '--watch', '--settle-timeout', '0'], io);

    await fake.subscribed();
    await io.printed('step 1/2 LAUNCH, new tasks: 1 wanted, 0 accepted');
    state.tasks = [
      task('web', 'd1', 1),
      task('web', 'd2', 1, { state: 'TASK_STARTING', health: { state: 'UNKNOWN', results: [] }, lb: {} }),
    ];
    const decisions = [
      { at: T0, phase: 'HEALTH' as const, step: 1, observed: 'task 1 healthy', action: 'add to LB', reason: 'all step tasks healthy' },
    ];
    state.entry = historyEntry('web', 'd2', {
      deployProgress: progress({ phase: 'HEALTH', decisionLog: decisions }),
      decisionLog: decisions,
    });
    fake.send('task', { type: 'TASK', at: T0, task: state.tasks[1] });
    // Wait for every line of this stage before the next change, so none is skipped over.
    await io.printed('decision 03:04:05 HEALTH step 1: task 1 healthy → add to LB (all step tasks healthy)');
    await io.printed(`task web-d2-1-${T0} #1 TASK_STARTING`);
    await io.printed(`task web-d1-1-${T0} #1 TASK_RUNNING`);
    await io.printed('step 1/2 HEALTH');

    state.tasks = [task('web', 'd2', 1), task('web', 'd2', 2)];
    const accepted = progress({ phase: 'ACCEPTANCE', acceptanceResultMessageHistory: ['http check: 200 OK'], decisionLog: decisions });
    state.entry = historyEntry('web', 'd2', { deployProgress: accepted, decisionLog: decisions });
    deployEvent('PROGRESS', { progress: accepted });
    await io.printed('acceptance: http check: 200 OK');
    await io.printed(`task web-d2-2-${T0} #2 TASK_RUNNING`);
    await io.printed('step 1/2 ACCEPTANCE');
    await io.printed(`task web-d2-1-${T0} #1 TASK_RUNNING`);

    const result = { deployState: 'SUCCEEDED' as const, message: 'Deploy succeeded', timestamp: T0 + 90_000, deployFailures: [] };
    state.entry = historyEntry('web', 'd2', {
      deployResult: result,
      deployProgress: progress({ step: 2, phase: 'ADVANCE', targetActiveInstances: 2, currentActiveInstances: 2 }),
    });
    deployEvent('FINISHED', { result });

    const { code } = await done;
    expect(code).toBe(0);
    expect(fake.calls[0]?.path).toBe('/api/deploys');
    const lines = io.out().split('\n');
    // A refresh may land between two of the test's changes, so within a stage the order of
    // progress and task lines can vary; every change is still printed exactly once.
    expect([...lines].sort()).toEqual(
      [
        'deploy d2 of request web started',
        'step 1/2 LAUNCH, new tasks: 1 wanted, 0 accepted',
        'step 1/2 HEALTH, new tasks: 1 wanted, 0 accepted',
        `task web-d1-1-${T0} #1 TASK_RUNNING health HEALTHY lb add SUCCESS [deploy d1]`,
        `task web-d2-1-${T0} #1 TASK_STARTING health UNKNOWN lb -`,
        'decision 03:04:05 HEALTH step 1: task 1 healthy → add to LB (all step tasks healthy)',
        'step 1/2 ACCEPTANCE, new tasks: 1 wanted, 0 accepted',
        `task web-d2-1-${T0} #1 TASK_RUNNING health HEALTHY lb add SUCCESS`,
        `task web-d2-2-${T0} #2 TASK_RUNNING health HEALTHY lb add SUCCESS`,
        'acceptance: http check: 200 OK',
        'step 2/2 ADVANCE, new tasks: 2 wanted, 2 accepted',
        'deploy d2 SUCCEEDED: Deploy succeeded (2024-01-02 03:05:35)',
        '',
      ].sort(),
    );
    const steps = lines.filter((l) => l.startsWith('step '));
    expect(steps.map((l) => l.split(',')[0])).toEqual(['step 1/2 LAUNCH', 'step 1/2 HEALTH', 'step 1/2 ACCEPTANCE', 'step 2/2 ADVANCE']);
    expect(lines.at(-2)).toBe('deploy d2 SUCCEEDED: Deploy succeeded (2024-01-02 03:05:35)');
  });

  it('exits 1 with the failures when the deploy FAILED', async () => {
    const { state, deployEvent } = await deployServer(
      'web',
      'd3',
      historyEntry('web', 'd3', { deployProgress: progress({ phase: 'HEALTH' }) }),
    );
    const io = captureIo();
    const done = run(['deploy', 'watch', 'web', 'd3', '--settle-timeout', '0'], io);
    await fake.subscribed();
    await io.printed('step 1/2 HEALTH');
    const result = {
      deployState: 'FAILED' as const,
      message: 'Task failed health checks',
      timestamp: T0,
      deployFailures: [{ reason: 'TASK_FAILED_HEALTH_CHECKS' as const, taskId: task('web', 'd3', 1).taskId, message: 'HTTP 503 x3' }],
    };
    state.entry = historyEntry('web', 'd3', { deployResult: result, deployProgress: progress({ phase: 'HEALTH' }) });
    deployEvent('FINISHED', { result });
    const { code } = await done;
    expect(code).toBe(1);
    expect(io.out()).toContain('deploy d3 FAILED: Task failed health checks (2024-01-02 03:04:05)\n');
    expect(io.out()).toContain(`  failure TASK_FAILED_HEALTH_CHECKS web-d3-1-${T0}: HTTP 503 x3\n`);
  });

  it('on a terminal redraws one summary in place (step, traffic, the gate and what to type), then leaves the result', async () => {
    const manual = { canaryDeploySettings: { acceptanceMode: 'MANUAL' } } as Partial<DeployHistoryView['deploy']>;
    const gated = historyEntry('web', 'd7', {
      deploy: { requestId: 'web', id: 'd7', ...manual } as DeployHistoryView['deploy'],
      deployProgress: progress({ phase: 'HEALTH' }),
    });
    const { state, deployEvent } = await deployServer('web', 'd7', gated);
    const traffic = {
      requestId: 'web',
      serviceId: 'web',
      available: true,
      balancer: 'builtin',
      windowSeconds: 300,
      stepSeconds: 15,
      from: T0,
      to: T0,
      split: 'd1 75 % / d7 25 %',
      splitBasis: 'requests',
      total: { requests: 400, requestsPerSecond: 4, errorRate: 0, latencyMs: { p50: 3, p99: 9 } },
      versions: [],
    };
    fake.route('GET /api/requests/request/web/traffic', () => traffic);
    const io = captureIo({ isTTY: true, columns: 100 });
    const done = run(['deploy', 'watch', 'web', 'd7', '--settle-timeout', '0'], io);
    await fake.subscribed();
    await io.printed('step 1 of 2  HEALTH');
    // the plain log stays off a terminal: no "step 1/2 HEALTH, new tasks" line
    expect(io.out()).not.toContain('step 1/2 HEALTH, new tasks');

    const atGate = progress({ phase: 'ACCEPTANCE', deadline: T0 + 1_800_000 });
    state.entry = { ...gated, deployProgress: atGate };
    deployEvent('PROGRESS', { progress: atGate });
    await io.printed('waiting   for your approval of step 1/2 (MANUAL acceptance)');
    await io.printed('deploy advance web d7   (or reject / cancel)');
    const ESC = String.fromCharCode(27);
    const plainOut = () => io.out().replaceAll(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '');
    expect(plainOut()).toContain('traffic   d1 75 % / d7 25 %');
    // every redraw first moves up over the summary drawn before and clears it
    const redraws = [...io.out().matchAll(new RegExp(`${ESC}\\[(\\d+)A${ESC}\\[0J`, 'g'))].map((m) => Number(m[1]));
    expect(redraws.length).toBeGreaterThan(0);
    for (const n of redraws) expect(n).toBeGreaterThanOrEqual(3);

    const result = { deployState: 'SUCCEEDED' as const, message: 'Deploy succeeded', timestamp: T0 + 60_000, deployFailures: [] };
    state.entry = { ...gated, deployResult: result, deployProgress: progress({ step: 2, phase: 'ADVANCE' }) };
    deployEvent('FINISHED', { result });
    const { code } = await done;
    expect(code).toBe(0);
    // the summary is cleared for good; the result stays, marked
    const tail = plainOut().split(`${ESC}[0J`).at(-1) ?? '';
    expect(tail).not.toContain('step 1 of 2');
    expect(tail).toMatch(/✓ deploy d7 SUCCEEDED: Deploy succeeded/);
  });

  it('ends at once for a deploy that is already over, printing the entry with --json', async () => {
    const over = historyEntry('web', 'd4', {
      deployResult: { deployState: 'CANCELED', message: 'canceled by user', timestamp: T0, deployFailures: [] },
    });
    await deployServer('web', 'd4', over);
    const { code, io } = await run(['deploy', 'watch', 'web', 'd4', '--json']);
    expect(code).toBe(1);
    expect(JSON.parse(io.out())).toEqual(over);
  });

  it('stops with an error when the deploy does not exist', async () => {
    fake = await startFake({
      'GET /api/history/request/web/deploy/zz': () => reply(404, { message: 'Deploy zz of request web not found', details: [] }),
      'GET /api/requests/request/web': () => parent('web'),
      'GET /api/tasks/request/web': () => [],
    });
    const { code, io } = await run(['deploy', 'watch', 'web', 'zz']);
    expect(code).toBe(3);
    expect(io.err()).toBe('error: Deploy zz of request web not found\n');
  });

  it('returns 1 without a result when interrupted', async () => {
    await deployServer('web', 'd5', historyEntry('web', 'd5', { deployProgress: progress() }));
    const interrupt = new AbortController();
    const io = captureIo({ signal: interrupt.signal });
    const done = run(['deploy', 'watch', 'web', 'd5', '--settle-timeout', '0'], io);
    await fake.subscribed();
    await io.printed('step 1/2 LAUNCH');
    interrupt.abort();
    const { code } = await done;
    expect(code).toBe(130);
    expect(io.err()).toBe('interrupted; deploy d5 goes on on the server\n');
  });

  it('reconnects when the event stream drops and still sees the end', async () => {
    const { state, deployEvent } = await deployServer('web', 'd6', historyEntry('web', 'd6', { deployProgress: progress() }));
    const io = captureIo();
    const done = run(['deploy', 'watch', 'web', 'd6', '--settle-timeout', '0'], io);
    await fake.subscribed();
    await io.printed('step 1/2 LAUNCH');
    fake.dropStreams();
    await fake.subscribed(2);
    state.entry = historyEntry('web', 'd6', {
      deployResult: { deployState: 'SUCCEEDED', message: 'ok', timestamp: T0, deployFailures: [] },
    });
    deployEvent('FINISHED');
    expect((await done).code).toBe(0);
  });
});
