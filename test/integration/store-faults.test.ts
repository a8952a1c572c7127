// A busy store (issue 9, item 4): another process holds the SQLite file's write lock for 10 s
// while a deploy runs under steady traffic through the built-in LB, and a task dies meanwhile.
// The LB keeps serving every request, API reads keep answering, writes get a 503 with
// Retry-After, nothing crashes, and once the lock is gone the task's exit is applied (it is
// replaced) and the deploy ends as it should.
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FledgeApiError } from '../../src/api/client.ts';
import { exampleDeploy, waitForDeployResult, waitForHealthyTasks } from '../helpers/example-service.ts';
import { cleanup, leakedProcesses, startFledgeProcess } from '../helpers/fledge-process.ts';
import { startLoad } from '../helpers/lb-traffic.ts';
import { reservePorts } from '../helpers/ports.ts';
import { killGroup } from '../helpers/procfs.ts';
import { holdSqliteWriteLock } from '../helpers/sqlite-lock.ts';
import { waitFor } from '../helpers/wait-for.ts';

const PORTS = reservePorts(100);
const LOCK_MS = 10_000;
const LB = { serviceBasePath: '/web', loadBalancerGroups: ['default'] };

afterEach(cleanup);
afterAll(async () => {
  await cleanup();
  expect(leakedProcesses()).toEqual([]);
});

describe('a store locked by another process', () => {
  it('for 10 s during a deploy under traffic: the LB serves every request, reads answer, writes get 503, and all resumes after', async () => {
    const fledge = await startFledgeProcess({ portRange: PORTS, args: ['--kill-grace-seconds', '2', '--drain-timeout-seconds', '5'] });
    const { client } = fledge;
    await client.createRequest({ id: 'web', requestType: 'SERVICE', instances: 3, loadBalanced: true });
    await client.createDeploy(exampleDeploy('web', 'v1', { deploy: LB }));
    expect((await waitForDeployResult(client, 'web', 'v1')).deployResult.deployState).toBe('SUCCEEDED');
    const before = await waitForHealthyTasks(client, 'web', { count: 3, deployId: 'v1', exclusive: true });
    const load = startLoad(`${fledge.lbUrl}/web`, { concurrency: 4, maxDurationMs: 120_000 });
    await load.warmedUp(20);

    // v2 starts slowly: the lock lands while it is launching and becoming healthy.
    await client.createDeploy(exampleDeploy('web', 'v2', { env: { STARTUP_DELAY_MS: '1500' }, deploy: LB }));
    // The outage starts when the lock is asked for (a CI run saw the exit stamped 4 ms before
    // the lock's await returned).
    const lockAsked = Date.now();
    const lock = await holdSqliteWriteLock(path.join(fledge.dataDir, 'fledge.db'), LOCK_MS + 20_000);
    const lockedAt = Date.now();
    let reads = 0;
    let unavailable = 0;
    try {
      // A task of the active deploy dies while nothing can be written.
      const victim = before[0]!;
      killGroup(victim.pgid!, 'SIGKILL');
      while (Date.now() - lockedAt < LOCK_MS) {
        expect((await client.listRequests()).map((r) => r.request.id)).toEqual(['web']);
        expect((await client.requestTasks('web')).length).toBeGreaterThan(0);
        reads++;
        const write = await client.scale('web', 4).catch((err: unknown) => err);
        expect(write).toBeInstanceOf(FledgeApiError);
        expect((write as FledgeApiError).status).toBe(503);
        expect((write as FledgeApiError).message).toMatch(/store is busy.*nothing was changed, try again/);
        unavailable++;
        await new Promise((r) => setTimeout(r, 500));
      }
      const raw = await fetch(`${fledge.url}/api/requests/request/web/scale`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${fledge.token}` },
        body: JSON.stringify({ instances: 4 }),
        signal: AbortSignal.timeout(10_000),
      });
      expect(raw.status).toBe(503);
      expect(raw.headers.get('retry-after')).toBe('2');
      // Nothing could be written: the deploy is still pending, the dead task still looks alive.
      expect((await client.deployHistoryEntry('web', 'v2')).deployResult).toBeUndefined();
      expect((await client.getTask(victim.taskId.id)).state).toBe('TASK_RUNNING');
    } finally {
      await lock.release();
    }
    expect(reads).toBeGreaterThanOrEqual(5);
    expect(unavailable).toBe(reads);
    expect(fledge.exited).toBe(false);

    // Afterwards: the deploy ends as it would have, with the dead task's exit applied on the way.
    const done = await waitForDeployResult(client, 'web', 'v2', 60_000);
    expect(done.deployResult.deployState).toBe('SUCCEEDED');
    const after = await waitForHealthyTasks(client, 'web', { count: 3, deployId: 'v2', exclusive: true, timeoutMs: 60_000 });
    expect(after).toHaveLength(3);
    // The exit seen during the outage was applied once the store was back.
    const dead = await client.getTask(before[0]!.taskId.id);
    // (Its health checks may have seen it gone first: then it was also marked unhealthy.)
    expect(dead.state).toBe('TASK_FAILED');
    expect(dead.signal).toBe('SIGKILL');
    expect(dead.doneAt).toBeGreaterThanOrEqual(lockAsked);
    await waitFor(async () => (await fetch(`${fledge.lbUrl}/web`)).ok, { message: 'the LB to answer' });
    const report = await load.stop();
    expect(report.failures, JSON.stringify(report.failures.slice(0, 5))).toEqual([]);
    expect(report.ok).toBeGreaterThan(100);
    expect(fledge.exited).toBe(false);
    expect(fledge.output()).not.toMatch(/unhandled|UnhandledPromiseRejection/i);
    // A write works again.
    await client.scale('web', 2);
  });
});
