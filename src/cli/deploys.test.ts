// `fledge deploy` and its watch, against the real server (test/helpers/cli-app.ts): every state
// a test needs (a canary at its gate, a failed deploy with stderr) is reached through the API.
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cliRunner,
  deployed,
  deployOf,
  manualCanary,
  pendingAt,
  requestBody,
  requestWithDeploy,
  startCliApp,
  uniqueId,
  utc,
  type CliApp,
} from '../../test/helpers/cli-app.ts';
import { waitFor } from '../../test/helpers/wait-for.ts';
import type { DeployHistoryView, PendingDeployView, RequestParent, TaskView } from '../api/client.ts';
import { FledgeClient } from '../api/client.ts';

let app: CliApp;
let client: FledgeClient;
beforeAll(async () => {
  app = await startCliApp();
  client = new FledgeClient(app.server.url, { token: app.adminToken });
});
afterAll(async () => app?.close());

const { io, run, since } = cliRunner(() => app);

async function jsonFile(value: unknown): Promise<string> {
  const file = join(await mkdtemp(join(tmpdir(), 'fledge-cli-')), 'deploy.json');
  await writeFile(file, JSON.stringify(value));
  return file;
}

const LB = (id: string) => ({ serviceBasePath: `/${id}`, loadBalancerGroups: ['default'] });

/** A load-balanced request of 3 with d1 active, and d2 (a MANUAL canary, one task a step) at its first gate. */
async function atGate(prefix = 'web'): Promise<string> {
  const id = uniqueId(prefix);
  await requestWithDeploy(app, id, { request: { loadBalanced: true }, deploy: LB(id) });
  await app.api('POST', '/api/deploys', { deploy: deployOf(id, 'd2', { ...LB(id), ...manualCanary(1) }) });
  await pendingAt(app, id, 'ACCEPTANCE', 1);
  return id;
}

const entryOf = (id: string, deployId: string) => client.deployHistoryEntry(id, deployId);
const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19);
const decisionLine = (d: NonNullable<DeployHistoryView['decisionLog']>[number]) =>
  `${clock(d.at)} ${d.phase} step ${d.step}: ${d.observed} → ${d.action} (${d.reason})`;

describe('fledge deploy', () => {
  it('wraps a bare deploy file into the POST body, with --message and --unpause', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    const file = await jsonFile(deployOf(id, 'd2'));
    const calls = since();
    const { code, io } = await run(['deploy', 'create', '-f', file, '--message', 'v2', '--unpause']);
    expect(code, io.err()).toBe(0);
    expect(calls.mutations()[0]?.body).toEqual({ deploy: deployOf(id, 'd2'), message: 'v2', unpauseOnSuccessfulDeploy: true });
    expect(io.out()).toMatch(
      new RegExp(
        `^deploy d2 of request ${id} started\\nrequest ${id}: ACTIVE, 3/3 healthy, active deploy d1, pending deploy d2 \\(step 1/1 `,
      ),
    );
    await deployed(app, id, 'd2');
    expect((await entryOf(id, 'd2')).deployMarker.message).toBe('v2');
  });

  it('sends a whole {deploy, ...} body as it is', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    const body = { deploy: deployOf(id, 'd2'), updatedRequest: requestBody(id, { instances: 4 }), message: 'from file' };
    const calls = since();
    const { code, io } = await run(['deploy', 'create', '-f', await jsonFile(body), '--json']);
    expect(code, io.err()).toBe(0);
    expect(calls.mutations()[0]?.body).toEqual(body);
    const printed = JSON.parse(io.out()) as RequestParent;
    expect(printed.request.id).toBe(id);
    expect(printed.pendingDeploy?.id).toBe('d2');
    await deployed(app, id, 'd2');
    expect((await client.getRequest(id)).request.instances).toBe(4);
  });

  it('refuses a deploy without ids before calling the API', async () => {
    const calls = since();
    const { code, io } = await run(['deploy', 'create', '-f', await jsonFile({ deploy: { command: 'x' } })]);
    expect(code).toBe(2);
    expect(io.err()).toMatch(/the deploy needs string "requestId" and "id"/);
    expect(calls.calls()).toEqual([]);
  });

  it('shows a 409 from a second deploy as an error', async () => {
    const id = await atGate();
    const { code, io } = await run(['deploy', 'create', '-f', await jsonFile(deployOf(id, 'd3'))]);
    expect(code).toBe(4);
    expect(io.err()).toBe(`error: Request ${id} already has a pending deploy d2\n`);
  });

  it('prints a plan as a table, the steps in words and the estimate', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id, { request: { loadBalanced: true }, deploy: LB(id) });
    const deploy = deployOf(id, 'd2', {
      ...LB(id),
      canaryDeploySettings: { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'TIMED', waitMillisBetweenGroups: 30_000 },
    });
    const calls = since();
    const { code, io } = await run(['deploy', 'plan', '-f', await jsonFile(deploy)]);
    expect(code, io.err()).toBe(0);
    expect(calls.mutations().map((c) => [c.path, c.body])).toEqual([['/api/deploys/plan', { deploy }]]);
    const plan = (await client.planDeploy({ deploy })) as unknown as {
      steps: { step: number; targetActiveInstances: number; oldInstances: number; acceptance: { mode: string } }[];
      warnings?: string[];
    };
    expect(plan.steps.length).toBe(3);
    const table = io
      .out()
      .split('\n\n')
      .find((part) => part.startsWith('STEP'));
    expect(table?.split('\n')).toEqual([
      'STEP  NEW WANTED  STARTS  OLD LEFT  IN LB NEW/OLD  NEW SHARE  ACCEPTANCE',
      // an old task leaves the LB only once its replacement is in: capacity never drops
      '1     1           1       2         1/3            25 %       TIMED (wait 30s)',
      '2     2           1       1         2/2            50 %       TIMED (wait 30s)',
      '3     3           1       0         3/1            75 %       TIMED (wait 30s)',
    ]);
    expect(io.err()).toBe((plan.warnings ?? []).map((w) => `warning: ${w}\n`).join(''));
  });

  it.each([
    [['cancel'], 'DELETE', (id: string) => `/api/deploys/deploy/d2/request/${id}`, () => undefined, 'CANCELED'],
    [
      ['advance', '-m', 'looks good'],
      'POST',
      () => '/api/deploys/advance',
      (id: string) => ({ requestId: id, deployId: 'd2', message: 'looks good' }),
      undefined,
    ],
    [['reject'], 'POST', () => '/api/deploys/reject', (id: string) => ({ requestId: id, deployId: 'd2' }), 'FAILED'],
    [
      ['update', '--target', '3'],
      'POST',
      () => '/api/deploys/update',
      (id: string) => ({ requestId: id, deployId: 'd2', targetActiveInstances: 3 }),
      undefined,
    ],
  ])('deploy %j calls %s, and prints the state after it', async (args, method, path, body, ended) => {
    const id = await atGate();
    const calls = since();
    const { code, io } = await run(['deploy', args[0]!, id, 'd2', ...args.slice(1)]);
    expect(code, io.err()).toBe(0);
    expect(calls.mutations().map((c) => `${c.method} ${c.path}`)).toEqual([`${method} ${path(id)}`]);
    expect(calls.mutations()[0]?.body).toEqual(body(id));
    expect(io.out()).toMatch(new RegExp(`^request ${id}: ACTIVE`));
    // the state once the loop acted, not step 1's gate any more
    expect(io.out()).not.toContain('now at step 1/3 ACCEPTANCE');
    if (ended) {
      await waitFor(async () => (await entryOf(id, 'd2')).deployResult !== undefined, { timeoutMs: 10_000 });
      expect((await entryOf(id, 'd2')).deployResult?.deployState).toBe(ended);
    }
  });

  it('lists pending deploys', async () => {
    const id = await atGate();
    const { code, io } = await run(['deploy', 'pending']);
    expect(code).toBe(0);
    const mine = (await client.pendingDeploys()).find((p: PendingDeployView) => p.deployMarker.requestId === id)!;
    const lines = io.out().split('\n');
    expect(lines[0]).toMatch(/^REQUEST +DEPLOY +STEP +PHASE +NEW WANTED +NEW ACCEPTED +STARTED$/);
    expect(lines).toContainEqual(
      expect.stringMatching(new RegExp(`^${id} +d2 +1/3 +ACCEPTANCE +1 +0 +${utc(mine.deployMarker.timestamp)}$`)),
    );
  });

  it('lists deploy history and shows one entry with failures, actions and decisions', async () => {
    const id = await atGate();
    await app.api('POST', '/api/deploys/reject', { requestId: id, deployId: 'd2', message: 'not this one' });
    await waitFor(async () => (await entryOf(id, 'd2')).deployResult !== undefined, { timeoutMs: 10_000 });
    const [d1, d2] = [await entryOf(id, 'd1'), await entryOf(id, 'd2')];
    const list = await run(['deploy', 'history', id]);
    expect(list.code).toBe(0);
    const rows = list.io.out().split('\n');
    expect(rows[0]).toMatch(/^DEPLOY +STATE +CREATED +BY +ENDED +MESSAGE$/);
    const row = (e: DeployHistoryView) =>
      new RegExp(
        `^${e.deployMarker.deployId} +${e.deployResult!.deployState} +${utc(e.deployMarker.timestamp)} +${e.deployMarker.user ?? '-'} +${utc(e.deployResult!.timestamp)} +${e.deployResult!.message}$`,
      );
    // newest first
    expect(rows.slice(1)).toEqual([expect.stringMatching(row(d2)), expect.stringMatching(row(d1)), '']);

    const one = await run(['deploy', 'history', id, 'd2']);
    expect(one.code).toBe(0);
    const reject = d2.actions?.find((a) => a.action === 'reject');
    expect(reject?.user).toBe('admin');
    expect(one.io.out()).toContain(`actions:\n  ${clock(reject!.at)} reject by admin\n`);
    const log = d2.decisionLog ?? [];
    expect(log.length).toBeGreaterThan(0);
    expect(one.io.out()).toContain(`decisions:\n${log.map((d) => `  ${decisionLine(d)}\n`).join('')}`);
  });

  it('shows the failures of a deploy whose tasks exited', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    app.runtime.script({ deployId: 'broken' }, { exit: 3, stderr: 'config: DATABASE_URL is not set\n' });
    await app.api('POST', '/api/deploys', { deploy: deployOf(id, 'broken') });
    await waitFor(async () => (await entryOf(id, 'broken')).deployResult !== undefined, { timeoutMs: 20_000 });
    const entry = await entryOf(id, 'broken');
    const failures = entry.deployResult?.deployFailures ?? [];
    expect(failures.length).toBeGreaterThan(0);
    const one = await run(['deploy', 'history', id, 'broken']);
    expect(one.io.out()).toContain(
      `failures:\n${failures.map((f) => `  ${f.reason}${f.taskId ? ` ${f.taskId.id}` : ''}: ${f.message}\n`).join('')}`,
    );
  });
});

describe('watching a deploy', () => {
  it('follows a deploy created with --watch through its gates to SUCCEEDED, and ends once capacity settled', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id, { request: { loadBalanced: true, instances: 2 }, deploy: LB(id) });
    const out = io();
    const file = await jsonFile(deployOf(id, 'd2', { ...LB(id), ...manualCanary(1) }));
    const done = run(['deploy', 'create', '-f', file, '--watch'], out);

    await out.printed('... waiting for your approval of step 1/2 (MANUAL acceptance), up to ');
    await out.printed(`  continue:  fledge --server ${app.url} deploy advance ${id} d2\n`);
    await app.api('POST', '/api/deploys/advance', { requestId: id, deployId: 'd2' });
    await out.printed('... waiting for your approval of step 2/2 (MANUAL acceptance)');
    await app.api('POST', '/api/deploys/advance', { requestId: id, deployId: 'd2' });

    const { code } = await done;
    expect(code, out.out() + out.err()).toBe(0);
    const entry = await entryOf(id, 'd2');
    const result = entry.deployResult!;
    const tasks: TaskView[] = await client.requestTasks(id);
    const lines = out.out().split('\n');
    expect(lines[0]).toBe(`deploy d2 of request ${id} started`);
    const steps = lines.filter((l) => l.startsWith('step '));
    expect(steps[0]).toMatch(/^step 1\/2 [A-Z_]+, new tasks: 1 wanted, 0 accepted$/);
    expect(steps).toContainEqual('step 1/2 ACCEPTANCE, new tasks: 1 wanted, 0 accepted');
    expect(steps).toContainEqual(expect.stringMatching(/^step 2\/2 [A-Z_]+, new tasks: 2 wanted, 1 accepted$/));
    // each progress line once: only changes are printed
    for (let i = 1; i < steps.length; i++) expect(steps[i]).not.toBe(steps[i - 1]);
    for (const d of entry.decisionLog ?? []) expect(lines.filter((l) => l === `decision ${decisionLine(d)}`)).toHaveLength(1);
    for (const t of tasks.filter((t) => t.taskId.deployId === 'd2'))
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^task ${t.taskId.id} #${t.taskId.instanceNo} TASK_`)));
    expect(out.out()).toContain(`  fail it:   fledge --server ${app.url} deploy reject ${id} d2 -m "why"`);
    expect(out.out()).toContain(`deploy d2 SUCCEEDED: ${result.message} (${utc(result.timestamp)})\n`);
    expect(out.out()).not.toContain('\u001b[');
    expect(lines.at(-2)).toBe('OK capacity: d2 at 2/2 healthy, in LB; nothing else running');
  });

  it("exits 1 with the failures and the task's stderr when the deploy FAILED", async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id);
    app.runtime.script({ deployId: 'd3' }, { exit: 3, stderr: 'config: DATABASE_URL is not set\n' });
    const out = io();
    const done = run(['deploy', 'create', '-f', await jsonFile(deployOf(id, 'd3')), '--watch', '--settle-timeout', '0'], out);
    const { code } = await done;
    expect(code).toBe(1);
    const result = (await entryOf(id, 'd3')).deployResult!;
    expect(result.deployState).toBe('FAILED');
    expect(out.out()).toContain(`deploy d3 FAILED: ${result.message} (${utc(result.timestamp)})\n`);
    for (const f of result.deployFailures) expect(out.out()).toContain(`  failure ${f.reason} ${f.taskId!.id}: ${f.message}\n`);
    expect(out.out()).toContain('config: DATABASE_URL is not set');
  });

  it('on a terminal redraws one summary in place (step, traffic, the gate and what to type), then leaves the result', async () => {
    const id = uniqueId('web');
    await requestWithDeploy(app, id, { request: { loadBalanced: true, instances: 2 }, deploy: LB(id) });
    await app.api('POST', '/api/deploys', { deploy: deployOf(id, 'd7', { ...LB(id), ...manualCanary(1) }) });
    const out = io({ isTTY: true, columns: 100 });
    const done = run(['deploy', 'watch', id, 'd7', '--settle-timeout', '0'], out);
    await out.printed('waiting   for your approval of step 1/2 (MANUAL acceptance)');
    await out.printed(`deploy advance ${id} d7   (or reject / cancel)`);
    const ESC = String.fromCharCode(27);
    const plainOut = () => out.out().replaceAll(new RegExp(`${ESC}\\[[0-9;]*m`, 'g'), '');
    expect(plainOut()).toContain('step 1 of 2  ACCEPTANCE');
    // the plain log stays off a terminal
    expect(out.out()).not.toMatch(/step 1\/2 [A-Z]+, new tasks/);
    const traffic = await client.traffic(id);
    expect(plainOut()).toContain(`traffic   ${traffic.split}`);
    await app.api('POST', '/api/deploys/advance', { requestId: id, deployId: 'd7' });
    await pendingAt(app, id, 'ACCEPTANCE', 2);
    await app.api('POST', '/api/deploys/advance', { requestId: id, deployId: 'd7' });
    const { code } = await done;
    expect(code).toBe(0);
    // every redraw first moves up over the summary drawn before and clears it
    const redraws = [...out.out().matchAll(new RegExp(`${ESC}\\[(\\d+)A${ESC}\\[0J`, 'g'))].map((m) => Number(m[1]));
    expect(redraws.length).toBeGreaterThan(0);
    for (const n of redraws) expect(n).toBeGreaterThanOrEqual(3);

    // the summary is cleared for good; the result stays, marked
    const tail = plainOut().split(`${ESC}[0J`).at(-1) ?? '';
    expect(tail).not.toContain('step 1 of 2');
    expect(tail).toMatch(/✓ deploy d7 SUCCEEDED: /);
  });

  it('ends at once for a deploy that is already over, printing the entry with --json', async () => {
    const id = await atGate();
    await app.api('DELETE', `/api/deploys/deploy/d2/request/${id}`);
    await waitFor(async () => (await entryOf(id, 'd2')).deployResult !== undefined, { timeoutMs: 10_000 });
    const { code, io } = await run(['deploy', 'watch', id, 'd2', '--json']);
    expect(code).toBe(1);
    const printed = JSON.parse(io.out()) as DeployHistoryView;
    expect(printed.deployResult?.deployState).toBe('CANCELED');
    expect(printed).toEqual(await entryOf(id, 'd2'));
  });

  it('stops with an error when the deploy does not exist', async () => {
    const id = uniqueId('web');
    await app.api('POST', '/api/requests', requestBody(id));
    const { code, io } = await run(['deploy', 'watch', id, 'zz']);
    expect(code).toBe(3);
    expect(io.err()).toBe(`error: Deploy zz of request ${id} not found\n`);
  });

  it('returns 130 without a result when interrupted', async () => {
    const id = await atGate();
    const interrupt = new AbortController();
    const out = io({ signal: interrupt.signal });
    const done = run(['deploy', 'watch', id, 'd2', '--settle-timeout', '0'], out);
    await out.printed('step 1/3 ACCEPTANCE');
    interrupt.abort();
    const { code } = await done;
    expect(code).toBe(130);
    expect(out.err()).toBe('interrupted; deploy d2 goes on on the server\n');
    expect((await entryOf(id, 'd2')).deployResult).toBeUndefined();
  });

  it('reconnects when the event stream drops and still sees the end', async () => {
    const id = await atGate();
    const out = io();
    const before = app.calls.filter((c) => c.path === '/api/events').length;
    const done = run(['deploy', 'watch', id, 'd2', '--settle-timeout', '0'], out);
    await app.subscribed(before + 1);
    await out.printed('step 1/3 ACCEPTANCE');
    app.dropStreams();
    await app.subscribed(before + 2);
    await app.api('DELETE', `/api/deploys/deploy/d2/request/${id}`);
    const { code } = await done;
    expect(code).toBe(1);
    expect(out.out()).toMatch(/deploy d2 CANCELED: /);
  });
});
