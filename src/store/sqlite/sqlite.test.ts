import { mkdtempSync, rmSync } from 'node:fs';
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
