// What `--store` (FLEDGE_STORE) and `fledge store --from/--to` accept, parsed without opening
// anything: SQLite in the data dir (default), `sqlite:<file or data dir>`, or a PostgreSQL URL.
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export type StoreLocation = { kind: 'sqlite'; file: string } | { kind: 'postgres'; url: string };

/** The URL without its password, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

/** Whether a PostgreSQL URL carries a password (visible in the process list when given as a flag). */
export function urlHasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}

export class StoreSpecError extends Error {}

/**
 * `--store` as given (undefined: SQLite in the data dir). `sqlite:<path>` names a file, or a
 * data dir when the path is an existing directory (its fledge.db).
 */
export function parseStoreSpec(spec: string | undefined, dataDir: string): StoreLocation {
  if (spec === undefined || spec === '') return { kind: 'sqlite', file: join(resolve(dataDir), 'fledge.db') };
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
  return { kind: 'sqlite', file: isDirectory(path) ? join(resolve(path), 'fledge.db') : resolve(path) };
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
