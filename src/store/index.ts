// Choose and open a store from configuration: SQLite in the data dir (default), an explicit
// SQLite file (`sqlite:<path>`), or PostgreSQL (`postgres://user:pass@host:port/db`).
import { join } from 'node:path';
import type { Logger } from '../logger.ts';
import { createPostgresStore } from './postgres/index.ts';
import { createSqliteStore } from './sqlite/index.ts';
import type { Store } from './types.ts';

export type StoreConfig =
  | { kind: 'sqlite'; dataDir: string }
  | { kind: 'sqlite'; file: string }
  | { kind: 'memory' }
  | { kind: 'postgres'; url: string; schedulerId?: string; logger?: Logger; poolSize?: number };

/** Open the store and apply its migrations. */
export async function createStore(config: StoreConfig, now?: () => number): Promise<Store> {
  let store: Store;
  if (config.kind === 'postgres') {
    store = createPostgresStore({
      url: config.url,
      ...(config.schedulerId ? { schedulerId: config.schedulerId } : {}),
      ...(config.logger ? { logger: config.logger } : {}),
      ...(config.poolSize ? { poolSize: config.poolSize } : {}),
      ...(now ? { now } : {}),
    });
  } else {
    const filename = config.kind === 'memory' ? ':memory:' : 'file' in config ? config.file : join(config.dataDir, 'fledge.db');
    store = createSqliteStore(now ? { filename, now } : { filename });
  }
  try {
    await store.migrate();
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
  return store;
}

export { parseStoreSpec, describeStoreSpec, redactUrl, StoreSpecError, type StoreLocation } from './spec.ts';
export type { Store, ChangeSet, DeployHistoryEntry, TaskQuery } from './types.ts';
export { FencedError, StoreUnavailableError, fencedStore } from './types.ts';
