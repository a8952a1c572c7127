import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { storeContract } from '../contract.case.ts';
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
