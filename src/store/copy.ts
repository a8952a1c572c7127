// `fledge store copy` and `fledge store backup`: moving state between stores.
//
// copy: every row of the copied tables, read from the source in one consistent snapshot and
// written into an empty target in one transaction (all or nothing), then verified by
// counting each table on both sides. Lease and scheduler rows are not state: they are not copied.
// backup (SQLite): SQLite's online backup API, safe while a scheduler writes.
import { chmodSync, closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { createStore } from './index.ts';
import { createSqliteStore } from './sqlite/index.ts';
import { redactUrl, type StoreLocation } from './spec.ts';
import { COPIED_TABLES, type CopiedTable, type Store } from './types.ts';

export class StoreCopyError extends Error {}

export const describeLocation = (l: StoreLocation) => (l.kind === 'postgres' ? redactUrl(l.url) : `sqlite:${l.file}`);

async function open(location: StoreLocation, role: 'source' | 'target'): Promise<Store> {
  if (location.kind === 'sqlite') {
    if (role === 'source' && !existsSync(location.file)) throw new StoreCopyError(`No SQLite store at ${location.file}`);
    return createStore({ kind: 'sqlite', file: location.file });
  }
  return createStore({ kind: 'postgres', url: location.url, poolSize: 2 });
}

export async function copyStore(from: StoreLocation, to: StoreLocation): Promise<Record<CopiedTable, number>> {
  if (describeLocation(from) === describeLocation(to)) throw new StoreCopyError('--from and --to are the same store');
  const source = await open(from, 'source');
  try {
    const target = await open(to, 'target');
    try {
      const existing = await target.rows.counts();
      const nonEmpty = COPIED_TABLES.filter((t) => existing[t] > 0);
      if (nonEmpty.length > 0) {
        throw new StoreCopyError(
          `The target ${describeLocation(to)} is not empty (${nonEmpty.map((t) => `${existing[t]} ${t}`).join(', ')}): copy only into an empty store`,
        );
      }
      const rows = await source.rows.exportAll();
      await target.rows.importAll(rows);
      const copied = await target.rows.counts();
      const expected = Object.fromEntries(COPIED_TABLES.map((t) => [t, rows[t].length])) as Record<CopiedTable, number>;
      const wrong = COPIED_TABLES.filter((t) => copied[t] !== expected[t]);
      if (wrong.length > 0) {
        throw new StoreCopyError(`Copy verification failed: ${wrong.map((t) => `${t} ${copied[t]} copied of ${expected[t]}`).join(', ')}`);
      }
      return copied;
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

/** An online backup of a SQLite store into `file` (created 0600: state holds deploy env). */
export async function backupSqlite(source: string, file: string, options: { force?: boolean } = {}): Promise<Record<CopiedTable, number>> {
  if (!existsSync(source)) throw new StoreCopyError(`No SQLite store at ${source}`);
  if (existsSync(file)) {
    if (!options.force) throw new StoreCopyError(`${file} exists; give --force to overwrite it`);
    rmSync(file, { force: true });
  }
  closeSync(openSync(file, 'wx', 0o600));
  const store = createSqliteStore({ filename: source });
  try {
    await store.database.backup(file);
  } catch (err) {
    rmSync(file, { force: true });
    throw err;
  } finally {
    await store.close();
  }
  chmodSync(file, 0o600);
  const copy = createSqliteStore({ filename: file, readonly: true });
  try {
    const integrity = copy.database.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') throw new StoreCopyError(`The backup ${file} fails its integrity check: ${String(integrity)}`);
    return await copy.rows.counts();
  } finally {
    await copy.close();
  }
}
