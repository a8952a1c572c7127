// Kysely's SQLite driver prepares every query anew; on a busy scheduler preparing cost as much as
// running (a pass issues the same few statements for every request). Statements are cached by
// their SQL text, least recently used out first; better-sqlite3 re-prepares one by itself after
// a schema change. Queries of varying shape (IN lists) only cycle through the cache.
import type Database from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from 'kysely';

export const STATEMENT_CACHE_SIZE = 256;

export interface CachingDatabase extends SqliteDatabase {
  /** statements prepared so far (cache misses), for tests */
  readonly prepared: number;
}

export function cachingDatabase(db: Database.Database, size = STATEMENT_CACHE_SIZE): CachingDatabase {
  const cache = new Map<string, SqliteStatement>();
  let prepared = 0;
  return {
    get prepared() {
      return prepared;
    },
    close: () => db.close(),
    prepare(sql: string): SqliteStatement {
      const hit = cache.get(sql);
      if (hit) {
        // Map order is insertion order: re-inserting makes it the most recent.
        cache.delete(sql);
        cache.set(sql, hit);
        return hit;
      }
      const stmt = db.prepare(sql);
      prepared++;
      cache.set(sql, stmt);
      if (cache.size > size) cache.delete(cache.keys().next().value!);
      return stmt;
    },
  };
}
