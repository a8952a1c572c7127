// Choose and open a store from configuration: SQLite in the data dir (default), an explicit
// SQLite file (`sqlite:<path>`), or PostgreSQL (`postgres://user:pass@host:port/db`).
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from '../logger.ts';
import { createPostgresStore, redactUrl } from './postgres/index.ts';
import { createSqliteStore } from './sqlite/index.ts';
import type { Store } from './types.ts';

export type StoreConfig =
  | { kind: 'sqlite'; dataDir: string }
  | { kind: 'sqlite'; file: string }
  | { kind: 'memory' }
  | { kind: 'postgres'; url: string; schedulerId?: string; logger?: Logger; poolSize?: number };

export class StoreSpecError extends Error {}

/**
 * `--store` as given (undefined: SQLite in the data dir). `sqlite:<path>` names a file, or a
 * data dir when the path is an existing directory (its fledge.db).
 */
export function parseStoreSpec(spec: string | undefined, dataDir: string): StoreConfig {
  if (spec === undefined || spec === '') return { kind: 'sqlite', dataDir };
  if (/^postgres(ql)?:\/\//i.test(spec)) {
    try {
      const u = new URL(spec);
      if (!u.hostname && !u.searchParams.get('host')) throw new Error('no host');
    } catch {
      throw new StoreSpecError(`${redactUrl(spec)} is not a valid postgres:// URL (postgres://user:pass@host:port/db)`);
    }
    return { kind: 'postgres', url: spec };
  }
  const path = spec.startsWith('sqlite:') ? spec.slice('sqlite:'.length) : spec;
  if (path === '' || /^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    throw new StoreSpecError(
      `${JSON.stringify(describeStoreSpec(spec))} is not a store: use postgres://user:pass@host:port/db or sqlite:<file or data dir>`,
    );
  }
  return isDirectory(path) ? { kind: 'sqlite', dataDir: resolve(path) } : { kind: 'sqlite', file: resolve(path) };
}

/** A store spec with any password hidden, for messages. */
export function describeStoreSpec(spec: string): string {
  return /^postgres(ql)?:\/\//i.test(spec) ? redactUrl(spec) : spec;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

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

export type { Store, ChangeSet, DeployHistoryEntry, TaskQuery } from './types.ts';
export { FencedError, StoreUnavailableError, fencedStore } from './types.ts';
