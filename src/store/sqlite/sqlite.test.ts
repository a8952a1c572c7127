import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scheduler, storeContract } from '../contract.case.ts';
import { FencedError, fencedStore } from '../types.ts';
import { createStore } from '../index.ts';

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
