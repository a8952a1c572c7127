import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scheduler, storeContract } from '../contract.case.ts';
import { FencedError, fencedStore, StoreUnavailableError } from '../types.ts';
import { createStore } from '../index.ts';
import { createSqliteStore } from './index.ts';
import { isBusy } from './busy.ts';
import { holdSqliteWriteLock } from '../../../test/helpers/sqlite-lock.ts';
import { cleanup } from '../../../test/helpers/fledge-process.ts';

afterAll(cleanup);

storeContract('sqlite in memory', async () => ({ store: await createStore({ kind: 'memory' }) }));

storeContract('sqlite file', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fledge-store-'));
  return { store: await createStore({ kind: 'sqlite', dataDir }), cleanup: async () => rmSync(dataDir, { recursive: true, force: true }) };
});

describe('sqlite file store', () => {
  it('keeps what was written across a reopen (a scheduler restart)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fledge-store-'));
    const first = await createStore({ kind: 'sqlite', dataDir });
    await first.apply({
      requests: [{ request: { id: 'a', requestType: 'SERVICE', instances: 1, loadBalanced: false }, state: 'ACTIVE', timestamp: 1 }],
    });
    await first.close();
    const second = await createStore({ kind: 'sqlite', dataDir });
    expect((await second.getRequest('a'))?.state).toBe('ACTIVE');
    await second.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates the database and its -wal and -shm files readable by their owner only', async () => {
    // The usual umask: without the explicit mode the files would be 0644.
    const umask = process.umask(0o022);
    const dataDir = mkdtempSync(join(tmpdir(), 'fledge-store-'));
    try {
      const store = await createStore({ kind: 'sqlite', dataDir });
      await store.apply({
        requests: [{ request: { id: 'a', requestType: 'SERVICE', instances: 1, loadBalanced: false }, state: 'ACTIVE', timestamp: 1 }],
      });
      for (const name of ['fledge.db', 'fledge.db-wal', 'fledge.db-shm']) {
        expect((statSync(join(dataDir, name)).mode & 0o777).toString(8), name).toBe('600');
      }
      await store.close();
    } finally {
      process.umask(umask);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('tightens a database file left world-readable by an older version', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fledge-store-'));
    try {
      writeFileSync(join(dataDir, 'fledge.db'), '');
      chmodSync(join(dataDir, 'fledge.db'), 0o644);
      const store = await createStore({ kind: 'sqlite', dataDir });
      expect((statSync(join(dataDir, 'fledge.db')).mode & 0o777).toString(8)).toBe('600');
      await store.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('fenced store', () => {
  it("refuses writes once the leader's own view of its lease says it may have run out, before asking the store", async () => {
    const store = await createStore({ kind: 'memory' });
    const lease = await store.cluster.acquireLease(scheduler('me'), 10_000);
    let valid = true;
    const refused: unknown[] = [];
    const fenced = fencedStore(
      store,
      lease!,
      (err) => refused.push(err),
      () => valid,
    );
    const request = { id: 'a', requestType: 'SERVICE' as const, instances: 1, loadBalanced: false };
    await fenced.apply({ requests: [{ request, state: 'ACTIVE', timestamp: 1 }] });
    valid = false;
    await expect(fenced.apply({ requests: [{ request: { ...request, id: 'b' }, state: 'ACTIVE', timestamp: 1 }] })).rejects.toBeInstanceOf(
      FencedError,
    );
    expect(refused).toHaveLength(1);
    expect((await fenced.listRequests()).map((r) => r.request.id)).toEqual(['a']);
    await store.close();
  });
});

describe('sqlite file locked by another process', () => {
  const record = (id: string) => ({
    request: { id, requestType: 'SERVICE' as const, instances: 1, loadBalanced: false },
    state: 'ACTIVE' as const,
    timestamp: 1,
  });

  it('a write waits out the lock asynchronously for its budget, then fails as unavailable, changing nothing; reads answer meanwhile', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fledge-store-'));
    const store = createSqliteStore({ filename: join(dataDir, 'fledge.db'), busyBudgetMs: 300 });
    await store.migrate();
    await store.apply({ requests: [record('a')] });
    const lock = await holdSqliteWriteLock(join(dataDir, 'fledge.db'));
    try {
      // The process goes on meanwhile: a timer keeps firing while the write waits.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const started = Date.now();
      const failed = await store.apply({ requests: [record('b')] }).catch((err: unknown) => err);
      clearInterval(timer);
      expect(failed).toBeInstanceOf(StoreUnavailableError);
      expect((failed as Error).message).toMatch(/busy: another process holds the SQLite file's lock/);
      expect(isBusy((failed as Error).cause)).toBe(true);
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(ticks).toBeGreaterThan(0);
      expect((await store.getRequest('a'))?.state).toBe('ACTIVE');
      expect(await store.getRequest('b')).toBeUndefined();
      expect((await store.listRequests()).map((r) => r.request.id)).toEqual(['a']);
      // Known busy: the next write tries once and gives up at once, not after another budget.
      const again = Date.now();
      await expect(store.apply({ requests: [record('b')] })).rejects.toBeInstanceOf(StoreUnavailableError);
      expect(Date.now() - again).toBeLessThan(290);
    } finally {
      await lock.release();
    }
    await store.apply({ requests: [record('b')] });
    expect((await store.listRequests()).map((r) => r.request.id)).toEqual(['a', 'b']);
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a write that finds the lock released within its budget goes through', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fledge-store-'));
    const store = createSqliteStore({ filename: join(dataDir, 'fledge.db'), busyBudgetMs: 10_000 });
    await store.migrate();
    const lock = await holdSqliteWriteLock(join(dataDir, 'fledge.db'));
    const write = store.apply({ requests: [record('c')] });
    setTimeout(() => void lock.release(), 200);
    await write;
    expect((await store.getRequest('c'))?.state).toBe('ACTIVE');
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
});

describe('prepared statements', () => {
  it('prepares a repeated query once, however many requests it reads and writes', async () => {
    const store = createSqliteStore({ filename: ':memory:' });
    await store.migrate();
    const request = (id: string) => ({
      request: { id, requestType: 'SERVICE' as const, instances: 1, loadBalanced: false },
      state: 'ACTIVE' as const,
      timestamp: 1,
    });
    await store.apply({ requests: [request('r0')] });
    await store.getRequest('r0');
    await store.listTasks({ requestId: 'r0', live: true });
    const before = store.statementsPrepared;
    for (let i = 1; i <= 50; i++) {
      await store.apply({ requests: [request(`r${i}`)] });
      await store.getRequest(`r${i}`);
      await store.listTasks({ requestId: `r${i}`, live: true });
    }
    expect(store.statementsPrepared).toBe(before);
    expect((await store.getRequest('r50'))?.request.id).toBe('r50');
    await store.close();
  });
});
