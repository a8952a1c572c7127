// The PostgreSQL store against a real private cluster (test/helpers/postgres.ts): the store
// contract, then what only a shared database has — migrations under a lock, request locks
// across servers, the lease and its fencing, and the database going away and coming back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../core/model.ts';
import { startPostgres, type TestPostgres } from '../../../test/helpers/postgres.ts';
import { scheduler, storeContract } from '../contract.case.ts';
import { createStore } from '../index.ts';
import { FencedError, StoreUnavailableError, type Store } from '../types.ts';
import { createPostgresStore, redactUrl } from './index.ts';

let pg: TestPostgres;
const opened: Store[] = [];

beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  for (const s of opened) await s.close().catch(() => undefined);
  await pg?.destroy();
});

const record = (id: string, extra: Partial<RequestRecord> = {}): RequestRecord => ({
  request: { id, requestType: 'SERVICE', instances: 1, loadBalanced: false },
  state: 'ACTIVE',
  timestamp: 1,
  ...extra,
});

async function open(url: string, schedulerId?: string): Promise<Store> {
  const store = await createStore({ kind: 'postgres', url, ...(schedulerId ? { schedulerId } : {}) });
  opened.push(store);
  return store;
}

storeContract('postgres', async () => ({ store: await createStore({ kind: 'postgres', url: await pg.createDatabase() }) }));

describe('postgres store', () => {
  it('migrates once when several schedulers start together', async () => {
    const url = await pg.createDatabase();
    const stores = Array.from({ length: 4 }, () => createPostgresStore({ url }));
    opened.push(...stores);
    await Promise.all(stores.map((s) => s.migrate()));
    const versions = await pg.query<{ version: number }>(
      'SELECT version FROM schema_migrations ORDER BY version',
      [],
      new URL(url).pathname.slice(1),
    );
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5]);
  });

  it('never shows the password', async () => {
    const url = await pg.createDatabase();
    const store = await open(url);
    expect(new URL(url).password.length).toBeGreaterThan(8);
    expect(store.description).not.toContain(new URL(url).password);
    expect(redactUrl(url)).toContain(':***@');
  });

  it('locks a request across servers, so their read-modify-writes lose nothing', async () => {
    const url = await pg.createDatabase();
    const [a, b] = [await open(url), await open(url)];
    await a.apply({ requests: [record('r', { lbSeq: 0 })] });
    const bump = (s: Store) =>
      s.locked('r', async () => {
        const current = (await s.getRequest('r')) as RequestRecord;
        await new Promise((r) => setTimeout(r, 3));
        await s.apply({ requests: [{ ...current, lbSeq: (current.lbSeq ?? 0) + 1 }] });
      });
    await Promise.all(Array.from({ length: 10 }, (_, i) => bump(i % 2 ? a : b)));
    expect((await a.getRequest('r'))?.lbSeq).toBe(10);
  });

  it('makes locked work one transaction: what it wrote and notified is gone if it throws', async () => {
    const url = await pg.createDatabase();
    const [a, b] = [await open(url), await open(url)];
    const heard: string[] = [];
    await b.cluster.listen('fledge_wake', (p) => heard.push(p));
    await expect(
      a.locked('r', async () => {
        await a.apply({ requests: [record('r')] });
        await a.cluster.notify('fledge_wake', 'rolled-back');
        expect((await a.getRequest('r'))?.state).toBe('ACTIVE'); // visible inside
        expect(await b.getRequest('r')).toBeUndefined(); // not outside, before commit
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await a.getRequest('r')).toBeUndefined();
    await a.locked('r', async () => {
      await a.apply({ requests: [record('r')] });
      await a.cluster.notify('fledge_wake', 'committed');
    });
    expect((await b.getRequest('r'))?.state).toBe('ACTIVE');
    await expect.poll(() => heard, { timeout: 5_000 }).toContain('committed');
    expect(heard).not.toContain('rolled-back');
  });

  it('keeps a change set whole inside locked work: a failing one is undone, the rest stays', async () => {
    const url = await pg.createDatabase();
    const a = await open(url);
    const d = { ...(await import('../../../test/helpers/model-fixtures.ts')).testDeploy({ requestId: 'r', id: 'v1' }) };
    await a.locked('r', async () => {
      await a.apply({ deploys: [{ deploy: d }] });
      await expect(a.apply({ requests: [record('r')], deploys: [{ deploy: d }] })).rejects.toThrow();
      await a.apply({ requests: [record('r', { state: 'PAUSED' })] });
    });
    expect((await a.getRequest('r'))?.state).toBe('PAUSED');
    expect(await a.getDeploy('r', 'v1')).toBeDefined();
  });

  it('gives the lease to one scheduler; a follower takes it at once when the holder has no connection left', async () => {
    const url = await pg.createDatabase();
    const a = await open(url, 'sched-a');
    const b = await open(url, 'sched-b');
    const lease = await a.cluster.acquireLease(scheduler('sched-a'), 10_000);
    expect(lease).toMatchObject({ holder: 'sched-a', epoch: 1, url: 'http://127.0.0.1:1/sched-a' });
    await a.cluster.listen('fledge_lease', () => undefined); // a's LISTEN connection: it is alive
    expect(await b.cluster.acquireLease(scheduler('sched-b'), 10_000)).toBeUndefined();
    expect((await a.cluster.renewLease({ holder: 'sched-a', epoch: 1 }, 10_000))?.expiresAt).toBeGreaterThan(lease!.expiresAt - 1);
    await a.close(); // every connection of sched-a ends, as when the kernel closes a killed process's sockets
    // the server notices the closed connections within milliseconds
    let taken: Awaited<ReturnType<Store['cluster']['acquireLease']>>;
    await expect
      .poll(async () => (taken = await b.cluster.acquireLease(scheduler('sched-b'), 10_000)), { timeout: 2_000, interval: 20 })
      .toBeDefined();
    expect(taken).toMatchObject({ holder: 'sched-b', epoch: 2 });
    await expect(b.apply({ requests: [record('x')] }, { holder: 'sched-a', epoch: 1 })).rejects.toBeInstanceOf(FencedError);
    await b.apply({ requests: [record('x')] }, { holder: 'sched-b', epoch: 2 });
    expect((await b.cluster.currentLease())?.holder).toBe('sched-b');
  });

  it('fences a holder whose lease expired while it stayed connected, and cuts its sessions off at takeover', async () => {
    const url = await pg.createDatabase();
    const a = await open(url, 'slow-a');
    const b = await open(url, 'slow-b');
    await a.cluster.listen('fledge_lease', () => undefined);
    const lease = await a.cluster.acquireLease(scheduler('slow-a'), 400);
    const fence = { holder: 'slow-a', epoch: lease!.epoch };
    expect(await b.cluster.acquireLease(scheduler('slow-b'), 10_000)).toBeUndefined();
    await new Promise((r) => setTimeout(r, 600));
    // expired: a's writes are refused even before anyone takes over
    await expect(a.apply({ requests: [record('late')] }, fence)).rejects.toBeInstanceOf(FencedError);
    const taken = await b.cluster.acquireLease(scheduler('slow-b'), 10_000);
    expect(taken?.holder).toBe('slow-b');
    const sessions = await pg.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'fledge:slow-a'",
    );
    expect(sessions[0]?.n).toBe(0);
    // a reconnects (its pool replaces the terminated connections) and is still refused
    await expect
      .poll(
        async () =>
          a.getRequest('late').then(
            () => 'ok',
            (e: unknown) => String(e),
          ),
        { timeout: 5_000 },
      )
      .toBe('ok');
    await expect(a.apply({ requests: [record('late')] }, fence)).rejects.toBeInstanceOf(FencedError);
    expect(await a.cluster.renewLease(fence, 10_000)).toBeUndefined();
    expect(await b.getRequest('late')).toBeUndefined();
  });

  it('survives its connections being terminated inside a transaction (a takeover cutting a frozen leader off)', async () => {
    const url = await pg.createDatabase();
    const a = await open(url, 'cut-a');
    await a.apply({ requests: [record('r')] });
    await expect(
      a.locked('r', async () => {
        await a.getRequest('r');
        await pg.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'fledge:cut-a'");
        // the termination reaches the client while it is checked out and idle: no crash
        await new Promise((r) => setTimeout(r, 200));
        return a.getRequest('r');
      }),
    ).rejects.toBeInstanceOf(StoreUnavailableError);
    expect((await a.getRequest('r'))?.state).toBe('ACTIVE');
  });

  it('answers StoreUnavailableError while the database is down, and works again when it is back', async () => {
    const url = await pg.createDatabase();
    const a = await open(url);
    await a.apply({ requests: [record('r')] });
    const heard: string[] = [];
    let reconnected = 0;
    await a.cluster.listen(
      'fledge_wake',
      (p) => heard.push(p),
      () => reconnected++,
    );
    await pg.stop();
    try {
      await expect(a.getRequest('r')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(a.apply({ requests: [record('s')] })).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(a.locked('r', async () => a.getRequest('r'))).rejects.toBeInstanceOf(StoreUnavailableError);
    } finally {
      await pg.start();
    }
    await expect.poll(async () => (await a.getRequest('r').catch(() => undefined))?.state, { timeout: 10_000 }).toBe('ACTIVE');
    await a.apply({ requests: [record('s')] });
    expect((await a.getRequest('s'))?.state).toBe('ACTIVE');
    // the LISTEN connection came back by itself
    await expect.poll(() => reconnected, { timeout: 10_000 }).toBeGreaterThan(0);
    await a.cluster.notify('fledge_wake', 'after-restart');
    await expect.poll(() => heard, { timeout: 5_000 }).toContain('after-restart');
  });
});
