import { join } from 'node:path';
import { createSqliteStore } from './sqlite/index.ts';
import type { Store } from './types.ts';

export type StoreConfig = { kind: 'sqlite'; dataDir: string } | { kind: 'memory' };

export async function createStore(config: StoreConfig, now?: () => number): Promise<Store> {
  const filename = config.kind === 'memory' ? ':memory:' : join(config.dataDir, 'fledge.db');
  const store = createSqliteStore(now ? { filename, now } : { filename });
  await store.migrate();
  return store;
}

export type { Store, ChangeSet, DeployHistoryEntry, TaskQuery } from './types.ts';
