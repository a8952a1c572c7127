// Several schedulers on one PostgreSQL store (issue 11): three real `fledge serve` processes
// share a private PostgreSQL cluster and one HAProxy they all attach to, and serve a
// load-balanced SERVICE of 3 instances under steady traffic through HAProxy while
//   - API writes go to followers (the leader acts within milliseconds; events reach every server),
//   - the leader is SIGKILLed in each deploy phase (LAUNCH, HEALTH, LB_UPDATE, ACCEPTANCE):
//     a follower leads within 5 s and the deploy ends as it would have, no task duplicated
//     or lost, HAProxy serving exactly the final tasks,
//   - the leader is frozen (SIGSTOP) past its lease: another takes over, and the thawed one
//     is fenced (its writes refused), steps down and leaves HAProxy alone,
//   - the database restarts mid-deploy: API writes answer 503 meanwhile, the deploy resumes,
// and a DEPLOY webhook, delivered by whichever scheduler leads, gets every deploy's events.
// Not one request through HAProxy may fail in any of it.
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FledgeApiError, FledgeClient, type DeployProgress, type FledgeStreamEvent, type TaskView } from '../../src/api/client.ts';
import { serverName } from '../../src/balancers/haproxy/config.ts';
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
  cleanup,
  freePort,
  leakedProcesses,
  reservePorts,
  sandboxTaskGroups,
  seenProcessCount,
  startFledgeProcess,
  tempDataDir,
  trackTasks,
  type FledgeProcess,
} from '../helpers/fledge-process.ts';
import { startAttachedHaproxy, type AttachedHaproxy } from '../helpers/haproxy-attached.ts';
import { startLoad, type Load } from '../helpers/lb-traffic.ts';
import { startPostgres, type TestPostgres } from '../helpers/postgres.ts';
import { groupIsOurs, groupMembers, isRunning } from '../helpers/procfs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(150);
const REQUEST = 'web';
const BASE_PATH = '/web';
const INSTANCES = 3;
const SERVICE = fileURLToPath(new URL('./fixtures/slow-exit-service.mjs', import.meta.url));
const LEASE_SECONDS = 4;
const SERVE_ARGS = [
  '--lease-seconds',
  String(LEASE_SECONDS),
  '--lease-renew-seconds',
  '1',
  '--kill-grace-seconds',
  '2',
  '--haproxy-reconcile-seconds',
  '1',
];
const CANARY = { enableCanaryDeploy: true, instanceGroupSize: 1, canaryCycleCount: 1, acceptanceMode: 'MANUAL' };

let pg: TestPostgres;
let haproxy: AttachedHaproxy;
let storeUrl: string;
/** the three schedulers (a killed one is replaced by a new process on its data dir) */
const schedulers: FledgeProcess[] = [];
const dataDirs: string[] = [];
const notes: string[] = [];

/** what a DEPLOY webhook receiver got: delivery id and body, in arrival order */
const hooked: { delivery: number; body: { eventType: string; deployMarker: { deployId: string } } }[] = [];
let hookServer: http.Server | undefined;

async function startHookReceiver(): Promise<string> {
  const port = await freePort();
  hookServer = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      hooked.push({ delivery: Number(req.headers['x-fledge-delivery']), body: JSON.parse(body) as (typeof hooked)[number]['body'] });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hookServer!.listen(port, '127.0.0.1', resolve));
  return `http://127.0.0.1:${port}/deploys`;
}

/** every scheduler process the file started, for the log checks at the end */
const everyScheduler: FledgeProcess[] = [];

async function startScheduler(dataDir: string): Promise<FledgeProcess> {
  const s = await startFledgeProcess({
    dataDir,
    lbPort: haproxy.port,
    portRange: PORTS,
    args: [...haproxy.args, ...SERVE_ARGS],
    // in the environment, so the password is not in the process list
    env: { FLEDGE_STORE: storeUrl },
    timeoutMs: 30_000,
  });
  everyScheduler.push(s);
  return s;
}

const live = () => schedulers.filter((s) => !s.exited);

/** The scheduler that says it leads (and is not `not`), as soon as one does. */
function leader(timeoutMs = 15_000, not?: FledgeProcess): Promise<FledgeProcess> {
  return waitFor(
    async () => {
      for (const s of live()) {
        if (s === not) continue;
        const state = await s.client.state().catch(() => undefined);
        if (state?.leader?.self) return s;
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 10, message: 'a scheduler to lead' },
  );
}

async function followers(): Promise<FledgeProcess[]> {
  const l = await leader();
  return live().filter((s) => s !== l);
}

function deployBody(deployId: string, taskEnv?: Record<string, Record<string, string>>) {
  return exampleDeploy(REQUEST, deployId, {
    deploy: {
      command: nodeCommand(SERVICE),
      serviceBasePath: BASE_PATH,
      loadBalancerGroups: ['ha'],
      canaryDeploySettings: CANARY,
      ...(taskEnv ? { taskEnv } : {}),
    },
  });
}

interface Snapshot {
  progress: DeployProgress | undefined;
  tasks: TaskView[];
}

async function snapshot(client: FledgeClient, deployId: string): Promise<Snapshot> {
  const [pending, tasks] = await Promise.all([client.pendingDeploys(), client.requestTasks(REQUEST)]);
  trackTasks(tasks);
  return { progress: pending.find((p) => p.deployMarker.deployId === deployId)?.deployProgress, tasks };
}

function waitForMoment(client: FledgeClient, deployId: string, what: string, when: (s: Snapshot) => boolean): Promise<Snapshot> {
  return waitFor(
    async () => {
      const s = await snapshot(client, deployId);
      return when(s) ? s : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 5, message: what },
  );
}

const ofDeploy = (tasks: readonly TaskView[], deployId: string) => tasks.filter((t) => t.taskId.deployId === deployId);

/** Advance every MANUAL acceptance of `deployId`, each on a follower, until it has a result. */
async function advanceToEnd(deployId: string, timeoutMs = 60_000): Promise<FinishedDeploy> {
  let advanced = 0;
  return waitFor(
    async () => {
      const client = (await followers())[0]?.client ?? (await leader()).client;
      const entry = await client.deployHistoryEntry(REQUEST, deployId);
      if (entry.deployResult) return entry as FinishedDeploy;
      const progress = (await client.pendingDeploys()).find((p) => p.deployMarker.deployId === deployId)?.deployProgress;
      if (progress?.phase === 'ACCEPTANCE' && progress.stepReadyAt !== undefined && progress.step > advanced) {
        await client.advanceDeploy(REQUEST, deployId, `step ${progress.step} looks good`);
        advanced = progress.step;
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 50, message: `deploy ${deployId} to be advanced to its end` },
  );
}

/** What HAProxy has for the request right now: server names, with `*` for any not in rotation. */
async function haproxyMembers(): Promise<string[]> {
  const rows = await haproxy.servers();
  return rows.map((r) => (r.ready ? r.server : `${r.server}*`)).sort();
}

/** One GET through HAProxy on a connection of its own, so round-robin is per request. */
function getOnce(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5_000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}`)));
    req.on('error', reject);
  });
}

/** The end of every case: the deploy ended as it would have, nothing duplicated or lost, HAProxy exact. */
async function expectCleanEnd(deployId: string, before: Snapshot, result: FinishedDeploy): Promise<void> {
  const client = (await leader()).client;
  expect(result.deployResult.deployState, JSON.stringify(result.deployResult)).toBe('SUCCEEDED');
  const parent = await client.getRequest(REQUEST);
  expect(parent.requestDeployState?.activeDeploy?.deployId).toBe(deployId);
  expect(parent.requestDeployState?.pendingDeploy).toBeUndefined();
  const final = await waitForHealthyTasks(client, REQUEST, { count: INSTANCES, deployId, exclusive: true, timeoutMs: 30_000 });
  expect(final.map((t) => t.taskId.instanceNo)).toEqual([1, 2, 3]);
  const liveTasks = await client.activeTasks();
  trackTasks(liveTasks);
  const liveById = new Map(liveTasks.map((t) => [t.taskId.id, t]));

  // Every task process on this machine, whichever scheduler started it.
  const sandboxes = new Map(dataDirs.flatMap((d) => sandboxTaskGroups(d)).map((s) => [s.taskId, s]));
  const running = [...sandboxes.values()].filter((s) => groupIsOurs(s.pid, s.startTime) && groupMembers(s.pid).length > 0);
  expect(
    running.filter((s) => liveById.get(s.taskId)?.pgid !== s.pid).map((s) => `${s.taskId} (pid ${s.pid})`),
    'task processes running without a live task in the API (orphans, duplicates)',
  ).toEqual([]);
  for (const t of liveTasks) expect(isRunning(t.pgid!, sandboxes.get(t.taskId.id)?.startTime), `process of ${t.taskId.id}`).toBe(true);
  // Nothing started twice: every sandbox on the machine is a task the API knows, and the
  // deploy's sandboxes are exactly its final tasks.
  const deployOf = new Map<string, string | undefined>();
  for (const id of sandboxes.keys()) {
    deployOf.set(
      id,
      await client.getTask(id).then(
        (t) => t.taskId.deployId,
        () => undefined,
      ),
    );
  }
  expect(
    [...deployOf].filter(([, d]) => d === undefined).map(([id]) => id),
    'sandboxes of tasks the API does not know',
  ).toEqual([]);
  expect(
    [...deployOf]
      .filter(([, d]) => d === deployId)
      .map(([id]) => id)
      .sort(),
    'tasks the deploy started',
  ).toEqual(final.map((t) => t.taskId.id).sort());
  // Tasks serving before the kill were re-adopted, not restarted.
  for (const t of ofDeploy(before.tasks, deployId).filter((b) => typeof b.pid === 'number' && !b.cleanup)) {
    expect(final.find((f) => f.taskId.id === t.taskId.id)?.pid, `pid of ${t.taskId.id}`).toBe(t.pid);
  }

  // HAProxy routes exactly the final tasks, and only they answer.
  const wanted = final.map((t) => serverName(t.taskId.id)).sort();
  let members: string[] = [];
  await waitFor(
    async () => {
      members = await haproxyMembers();
      return JSON.stringify(members) === JSON.stringify(wanted);
    },
    { timeoutMs: 30_000, intervalMs: 50, message: 'haproxy to route exactly the final tasks' },
  ).catch(async (err: unknown) => {
    // Say what HAProxy had and what each scheduler did about it, so a failure can be read.
    const logs = live()
      .map((s) => `--- ${s.url} ---\n${haproxyLines(s.output())}`)
      .join('\n');
    const extra = await Promise.all(
      members
        .map((m) => m.replace(/\*$/, ''))
        .filter((m) => !wanted.includes(m))
        .map((m) =>
          client.getTask(m).then(
            (t) => `${m}: ${JSON.stringify({ state: t.state, lb: t.lb, cleanup: t.cleanup, updates: t.taskUpdates?.slice(-6) })}`,
            (e: unknown) => `${m}: ${String(e)}`,
          ),
        ),
    );
    if (process.env.FLEDGE_TEST_DUMP)
      for (const s of everyScheduler)
        writeFileSync(`${process.env.FLEDGE_TEST_DUMP}/${new URL(s.url).port}-${everyScheduler.indexOf(s)}.log`, s.output());
    throw new Error(
      `${String(err)}\nhaproxy has ${JSON.stringify(members)}, wanted ${JSON.stringify(wanted)}\n${extra.join('\n')}\n${logs}`,
    );
  });
  // Round-robin (shared with the load running meanwhile) reaches each of them, and nothing else.
  const finalIds = final.map((t) => t.taskId.id).sort();
  const answeredBy = new Set<string>();
  for (let i = 0; i < 100 && answeredBy.size < finalIds.length; i++) {
    const res = await getOnce(`${haproxy.url}${BASE_PATH}/ping`);
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body) as { version: string; task: string };
    expect(body.version).toBe(deployId);
    expect(finalIds).toContain(body.task);
    answeredBy.add(body.task);
  }
  expect([...answeredBy].sort()).toEqual(finalIds);
}

/** The last `count` lines of a scheduler's log that match `pattern`, cut short, for failure messages. */
function logLines(output: string, pattern: RegExp, count: number): string {
  return output
    .split('\n')
    .filter((l) => pattern.test(l))
    .slice(-count)
    .map((l) => l.slice(0, 400))
    .join('\n');
}

/** What a scheduler's log says about HAProxy and its leadership. */
const haproxyLines = (output: string) => logLines(output, /haproxy|drain|server|elected|"leading"|stepping|lease|store/i, 60);

/** The leadership story in a scheduler's log. */
const leadershipLines = (output: string) =>
  logLines(output, /elected|"leading"|stepping|lease|renew|following|connection lost|listening to the/, 40);

async function underLoad<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const load: Load = startLoad(`${haproxy.url}${BASE_PATH}/load`, { concurrency: 3, maxDurationMs: 120_000 });
  await load.warmedUp(10);
  let result: T;
  try {
    result = await fn();
  } finally {
    const report = await load.stop();
    notes.push(`${name}: ${report.ok} requests through HAProxy, ${report.failures.length} failed`);
    expect(report.failures, `${name}: failed requests through HAProxy`).toEqual([]);
  }
  return result;
}

/**
 * SIGKILL the leader at `moment` (undefined: the moment POST /api/deploys returns); a follower
 * must lead within 5 s; the killed scheduler is started again on its data dir.
 */
async function killLeaderAt(
  name: string,
  deployId: string,
  moment: ((s: Snapshot) => boolean) | undefined,
  taskEnv?: Record<string, Record<string, string>>,
) {
  await underLoad(name, async () => {
    const old = await leader();
    const [follower] = await followers();
    const posted = await snapshot(follower!.client, deployId);
    await follower!.client.createDeploy(deployBody(deployId, taskEnv));
    const before = moment ? await waitForMoment(follower!.client, deployId, `${name}: the moment to kill`, moment) : posted;
    const killedAt = Date.now();
    old.kill('SIGKILL');
    await old.waitExit(10_000);
    const next = await leader(10_000, old);
    const takeoverMs = Date.now() - killedAt;
    const at = moment ? `${before.progress?.phase} step ${before.progress?.step}` : 'POST /api/deploys returned';
    notes.push(`${name}: SIGKILL → a follower leads in ${takeoverMs} ms (killed at ${at})`);
    expect(takeoverMs, 'SIGKILL of the leader → a follower leads').toBeLessThan(5_000);
    expect(next).not.toBe(old);
    schedulers[schedulers.indexOf(old)] = await startScheduler(old.dataDir);
    const after = await snapshot(next.client, deployId);
    if (before.progress && after.progress) expect(after.progress.step).toBeGreaterThanOrEqual(before.progress.step);
    const result = await advanceToEnd(deployId);
    await expectCleanEnd(deployId, before, result);
  });
}

beforeAll(async () => {
  pg = await startPostgres();
  storeUrl = await pg.createDatabase();
  haproxy = await startAttachedHaproxy(await freePort());
  for (let i = 0; i < 3; i++) {
    const dir = tempDataDir();
    dataDirs.push(dir);
    schedulers.push(await startScheduler(dir));
  }
  const l = await leader();
  const hook = await fetch(`${l.url}/api/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${l.token}` },
    body: JSON.stringify({ uri: await startHookReceiver(), type: 'DEPLOY', events: ['STARTING', 'FINISHED'] }),
  });
  expect(hook.status).toBe(200);
  await l.client.createRequest(serviceRequest(REQUEST, INSTANCES, { loadBalanced: true }));
  await l.client.createDeploy(
    exampleDeploy(REQUEST, 'v1', { deploy: { command: nodeCommand(SERVICE), serviceBasePath: BASE_PATH, loadBalancerGroups: ['ha'] } }),
  );
  const done = await waitForDeployResult(l.client, REQUEST, 'v1', 30_000);
  expect(done.deployResult.deployState, JSON.stringify(done.deployResult)).toBe('SUCCEEDED');
  await waitForHealthyTasks(l.client, REQUEST, { count: INSTANCES, deployId: 'v1', exclusive: true });
  await waitFor(async () => (await haproxyMembers()).length === INSTANCES, {
    timeoutMs: 20_000,
    intervalMs: 50,
    message: 'haproxy to serve v1',
  });
}, 120_000);

afterAll(async () => {
  console.log(`[ha] ${notes.join('\n[ha] ')}`);
  // No scheduler crashed or swallowed an unexpected rejection, whatever was done to it.
  const troubles = everyScheduler.flatMap((s) =>
    s
      .output()
      .split('\n')
      .filter((l) => /unhandled rejection|Unhandled 'error' event|^node:internal|^Node\.js v\d/.test(l))
      .slice(0, 3)
      .map((l) => `${s.url}: ${l.slice(0, 300)}`),
  );
  expect(troubles).toEqual([]);
  const password = new URL(storeUrl).password;
  for (const s of everyScheduler) expect(s.output().includes(password), `the store password in ${s.url}'s log`).toBe(false);
  await cleanup();
  await new Promise((resolve) => (hookServer ? hookServer.close(resolve) : resolve(undefined)));
  await pg?.destroy();
  expect(seenProcessCount()).toBeGreaterThan(0);
  expect(leakedProcesses()).toEqual([]);
}, 60_000);

describe('three schedulers on one PostgreSQL store, one HAProxy', () => {
  it('shows one leader on every server, with each scheduler and its heartbeat', async () => {
    const l = await leader();
    for (const s of live()) {
      const state = await s.client.state();
      expect(state.leader).toMatchObject({ id: state.schedulers?.find((x) => x.leader)?.id, url: l.url, self: s === l });
      expect(state.leader!.since).toBeTypeOf('number');
      const alive = state.schedulers!.filter((x) => x.alive);
      expect(alive.map((x) => x.url).sort()).toEqual(
        live()
          .map((x) => x.url)
          .sort(),
      );
      expect(alive.every((x) => x.heartbeatAgeMs < 5_000)).toBe(true);
    }
    // `fledge status` on a follower names the leader and every scheduler
    const follower = live().find((s) => s !== l)!;
    const status = await runCli(['status'], { url: follower.url, dataDir: follower.dataDir });
    expect(status.code, status.stderr).toBe(0);
    const leaderId = (await l.client.state()).leader!.id;
    expect(status.stdout).toContain(`leader: ${leaderId} at ${l.url}`);
    for (const s of (await l.client.state()).schedulers!.filter((x) => x.alive)) expect(status.stdout).toContain(s.id);
    expect(status.stdout).toMatch(/leader\s+\d+(\.\d)?m?s ago/);
  });

  it('acts on an advance sent to a follower within milliseconds, and streams its events from every server', async () => {
    await underLoad('follower advance', async () => {
      const [f1, f2] = await followers();
      const events: FledgeStreamEvent[] = [];
      const abort = new AbortController();
      // f2's own admin token: every scheduler's file token is known to the shared store
      const stream = new FledgeClient(f2!.url, { token: f2!.token }).events((e) => events.push(e), abort.signal).catch(() => undefined);
      await f1!.client.createDeploy(deployBody('v2'));
      await waitForMoment(
        f1!.client,
        'v2',
        'step 1 waiting for a manual advance',
        (s) => s.progress?.step === 1 && s.progress.stepReadyAt !== undefined,
      );
      const t0 = Date.now();
      await f1!.client.advanceDeploy(REQUEST, 'v2', 'approved on a follower');
      const moved = await waitForMoment(f1!.client, 'v2', 'step 2 to start', (s) => (s.progress?.step ?? 0) >= 2);
      const ms = Date.now() - t0;
      notes.push(`advance on a follower → the leader starts step 2 in ${ms} ms (seen through the follower's API)`);
      expect(moved.progress?.step).toBe(2);
      // Woken by NOTIFY, not found by the 5 s safety tick.
      expect(ms).toBeLessThan(2_500);
      // The other follower streamed the leader's progress.
      await waitFor(
        () =>
          events.some(
            (e) =>
              e.event === 'deploy' &&
              (e.data as { deployId?: string; progress?: DeployProgress }).deployId === 'v2' &&
              ((e.data as { progress?: DeployProgress }).progress?.step ?? 0) >= 2,
          ),
        { timeoutMs: 10_000, intervalMs: 20, message: 'a v2 step-2 event on the other follower' },
      );
      expect(events.some((e) => e.event === 'task' && (e.data as { task?: TaskView }).task?.taskId.deployId === 'v2')).toBe(true);
      const before = await snapshot(f1!.client, 'v2');
      const result = await advanceToEnd('v2');
      abort.abort();
      await stream;
      await expectCleanEnd('v2', before, result);
    });
  });

  it('LAUNCH: the leader SIGKILLed the moment the deploy is accepted; a follower leads and the deploy succeeds', async () => {
    await killLeaderAt('LAUNCH', 'v3', undefined);
  });

  it('HEALTH: the leader SIGKILLed while a new task is starting; it is re-adopted and the deploy succeeds', async () => {
    await killLeaderAt(
      'HEALTH',
      'v4',
      (s) => {
        const starting = ofDeploy(s.tasks, 'v4');
        return s.progress?.phase === 'HEALTH' && starting.length === 1 && typeof starting[0]!.pid === 'number' && !isHealthy(starting[0]!);
      },
      { '1': { STARTUP_DELAY_MS: '2000' } },
    );
  });

  it('LB_UPDATE: the leader SIGKILLed as the step reaches the LB; HAProxy keeps the new task and the deploy succeeds', async () => {
    await killLeaderAt(
      'LB_UPDATE',
      'v5',
      (s) => s.progress?.step === 1 && (s.progress.phase === 'LB_UPDATE' || s.progress.phase === 'ACCEPTANCE'),
    );
  });

  it('ACCEPTANCE: the leader SIGKILLed while a step waits for approval; it still waits, and succeeds once advanced', async () => {
    await killLeaderAt(
      'ACCEPTANCE',
      'v6',
      (s) => s.progress?.step === 1 && s.progress.phase === 'ACCEPTANCE' && s.progress.stepReadyAt !== undefined,
    );
  });

  it('a leader frozen past its lease is fenced: another leads, and thawed it steps down without touching HAProxy', async () => {
    await underLoad('SIGSTOP', async () => {
      const frozen = await leader();
      const [f1] = await followers();
      await f1!.client.createDeploy(deployBody('v7'));
      await waitForMoment(
        f1!.client,
        'v7',
        'step 1 waiting for a manual advance',
        (s) => s.progress?.step === 1 && s.progress.stepReadyAt !== undefined,
      );
      const before = await snapshot(f1!.client, 'v7');
      const stoppedAt = Date.now();
      frozen.kill('SIGSTOP');
      let thawed = false;
      try {
        const next = await leader(LEASE_SECONDS * 1000 + 10_000, frozen);
        notes.push(`SIGSTOP: another scheduler leads ${Date.now() - stoppedAt} ms after the freeze (lease ${LEASE_SECONDS} s)`);
        // While the old leader is frozen, the new one moves the deploy on: HAProxy changes under it.
        await next.client.advanceDeploy(REQUEST, 'v7', 'approved while the old leader is frozen');
        await waitForMoment(next.client, 'v7', 'step 2 to start', (s) => (s.progress?.step ?? 0) >= 2);
        frozen.kill('SIGCONT');
        thawed = true;
        // Thawed: it finds its lease gone, refuses its stale writes and steps down.
        await waitFor(() => frozen.output().includes('stepping down'), {
          timeoutMs: 10_000,
          intervalMs: 20,
          message: 'the thawed leader to step down',
        });
        // It still serves the API, as a follower.
        const state = await waitFor(() => frozen.client.state(), {
          timeoutMs: 10_000,
          intervalMs: 50,
          message: 'the thawed server to answer',
        });
        expect(state.leader).toMatchObject({ id: (await next.client.state()).leader?.id, self: false });
        const result = await advanceToEnd('v7');
        // Its stale timers (drain polls, HAProxy reconciles every second) have fired by now; the
        // guard kept them off HAProxy, which routes exactly the final tasks.
        await new Promise((r) => setTimeout(r, 2_500));
        await expectCleanEnd('v7', before, result);
        expect(frozen.output()).not.toMatch(/"msg":"haproxy drift repaired"/);
        expect(frozen.exited, 'the thawed scheduler is still running').toBe(false);
        expect((await leader()).url).not.toBe(frozen.url);
      } catch (err) {
        const others = live()
          .filter((x) => x !== frozen)
          .map((x) => `--- ${x.url} ---\n${leadershipLines(x.output())}`)
          .join('\n');
        throw new Error(`${String(err)}\n--- the frozen leader's output ---\n${frozen.output().slice(-8000)}\n${others}`);
      } finally {
        if (!thawed) frozen.kill('SIGCONT');
      }
    });
  });

  it('keeps going when the database restarts mid-deploy: API writes answer 503 meanwhile, then the deploy resumes', async () => {
    await underLoad('database restart', async () => {
      const [f1] = await followers();
      await f1!.client.createDeploy(deployBody('v8'));
      const before = await waitForMoment(
        f1!.client,
        'v8',
        'step 1 waiting for a manual advance',
        (s) => s.progress?.step === 1 && s.progress.stepReadyAt !== undefined,
      );
      await pg.stop();
      try {
        const err = await f1!.client.advanceDeploy(REQUEST, 'v8', 'while the database is down').then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(FledgeApiError);
        expect((err as FledgeApiError).status).toBe(503);
        const raw = await fetch(`${f1!.url}/api/deploys/advance`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${f1!.token}` },
          body: JSON.stringify({ requestId: REQUEST, deployId: 'v8' }),
          signal: AbortSignal.timeout(10_000),
        });
        expect(raw.status).toBe(503);
        expect(raw.headers.get('retry-after')).toMatch(/^\d+$/);
        await new Promise((r) => setTimeout(r, 1_000));
      } finally {
        await pg.start();
      }
      // Nothing was half-applied: still waiting at step 1, then it goes on as usual.
      const l = await leader(20_000);
      const after = await snapshot(l.client, 'v8');
      expect(after.progress).toMatchObject({ step: 1, phase: 'ACCEPTANCE' });
      const result = await advanceToEnd('v8');
      await expectCleanEnd('v8', before, result);
    });
  });

  it("delivers every deploy's STARTING and FINISHED to a DEPLOY webhook, in order, across every takeover", async () => {
    const l = await leader();
    const deploys = (await l.client.deployHistory(REQUEST)).map((h) => h.deployMarker.deployId);
    expect(deploys.length).toBeGreaterThan(5);
    const got = () => {
      const unique = [...new Map(hooked.map((h) => [h.delivery, h])).values()];
      return unique.map((h) => `${h.body.deployMarker.deployId} ${h.body.eventType}`);
    };
    await waitFor(() => deploys.every((d) => got().includes(`${d} STARTING`) && got().includes(`${d} FINISHED`)), {
      timeoutMs: 30_000,
      message: `every deploy's events (got ${got().join(', ')})`,
    });
    // At least once, de-duplicated on the delivery id: in the order they were queued.
    const ids = [...new Set(hooked.map((h) => h.delivery))];
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    for (const d of deploys) expect(got().indexOf(`${d} STARTING`)).toBeLessThan(got().indexOf(`${d} FINISHED`));
  });
});
