// The embedded store: one SQLite file (WAL) used by one scheduler. Its queries are the shared
// ones in ../sql; this file opens the database, runs its migrations and provides the
// single-scheduler cluster (a lease that is always held).
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Kysely, sql } from 'kysely';
import type { Deploy, RequestRecord, TaskRecord } from '../../core/model.ts';
import type { HostRecord } from '../../hosts/types.ts';
import type { PendingDeploy } from '../../core/deploy/types.ts';
import type { Webhook } from '../../core/webhooks.ts';
import { KeyedMutex } from '../../reconciler/locks.ts';
import { LocalCluster } from '../local-cluster.ts';
import { readMigrations } from '../sql/migrations.ts';
import { SqlQueries, type Tables } from '../sql/queries.ts';
import {
  COPIED_TABLES,
  type ChangeSet,
  type CopiedTable,
  type Delivery,
  type DeployHistoryEntry,
  type DeployEntry,
  type DeployKey,
  type ExpiredTaskQuery,
  type Fence,
  type Row,
  type Store,
  type StoreRows,
  type TaskQuery,
  type AuditQuery,
  type AuditRecord,
  type StoredAudit,
  type LastDeployResult,
  type TokenRecord,
} from '../types.ts';
import { BUSY_TIMEOUT_MS, retryWhileBusy } from './busy.ts';
import { QueuedSqliteDialect } from './queue.ts';
import { cachingDatabase, type CachingDatabase } from './statements.ts';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface SqliteStoreOptions {
  /** file path, or ':memory:' */
  filename: string;
  now?: () => number;
  /** open an existing file read-only (store copy, backup); no migrations */
  readonly?: boolean;
  /** how long an operation may wait out a file locked by another process before StoreUnavailableError; default 1 s */
  busyBudgetMs?: number;
}

export function createSqliteStore(options: SqliteStoreOptions): SqliteStore {
  return retryWhileBusy(new SqliteStore(options), options.busyBudgetMs ?? 1_000);
}

export class SqliteStore implements Store {
  readonly description: string;
  readonly cluster: LocalCluster;
  readonly rows: StoreRows;
  readonly #raw: Database.Database;
  readonly #db: Kysely<Tables>;
  readonly #statements: CachingDatabase;
  readonly #q: SqlQueries;
  readonly #now: () => number;
  readonly #locks = new KeyedMutex();

  constructor(options: SqliteStoreOptions) {
    if (options.filename !== ':memory:' && !options.readonly) prepareDatabaseFile(options.filename);
    this.description = `sqlite:${options.filename}`;
    this.#raw = new Database(options.filename, options.readonly ? { readonly: true, fileMustExist: true } : {});
    if (!options.readonly) {
      // WAL keeps readers (API) from blocking the loop's writes; NORMAL sync is durable at checkpoints
      // and never corrupts, which is the trade SQLite recommends for WAL.
      this.#raw.pragma('journal_mode = WAL');
      this.#raw.pragma('synchronous = NORMAL');
    }
    // Never a long synchronous wait for a lock (it would stop the whole process): busy.ts retries asynchronously.
    this.#raw.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.#statements = cachingDatabase(this.#raw);
    this.#db = new Kysely<Tables>({ dialect: new QueuedSqliteDialect({ database: this.#statements }) });
    this.#now = options.now ?? Date.now;
    this.#q = new SqlQueries({ insertionOrder: sql`rowid` }, this.#now);
    this.cluster = new LocalCluster(this.#now);
    this.rows = {
      counts: () => this.#q.counts(this.#db),
      exportAll: () =>
        // One read transaction: a consistent snapshot even while a scheduler writes (WAL).
        this.#db.transaction().execute(async (trx) => {
          const out = {} as Record<CopiedTable, Row[]>;
          for (const table of COPIED_TABLES) out[table] = await this.#q.exportTable(trx, table);
          return out;
        }),
      importAll: (rows) =>
        this.#db.transaction().execute(async (trx) => {
          for (const table of COPIED_TABLES) await this.#q.importTable(trx, table, rows[table]);
        }),
    };
  }

  /** statements prepared so far: a repeated query is prepared once (tests) */
  get statementsPrepared(): number {
    return this.#statements.prepared;
  }

  /** The better-sqlite3 handle, for the online backup (`fledge store backup`). */
  get database(): Database.Database {
    return this.#raw;
  }

  async migrate(): Promise<void> {
    this.#raw.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
    );
    const applied = new Set(
      (this.#raw.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version),
    );
    for (const m of readMigrations(MIGRATIONS_DIR)) {
      if (applied.has(m.version)) continue;
      this.#raw.transaction(() => {
        this.#raw.exec(m.sql);
        this.#raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, this.#now());
      })();
    }
  }

  async apply(changes: ChangeSet, fence?: Fence): Promise<void> {
    this.cluster.check(fence);
    await this.#db.transaction().execute((trx) => this.#q.write(trx, changes));
  }

  /** One scheduler per file: the lock only has to hold within this process. */
  locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(key, fn);
  }

  getRequest(id: string): Promise<RequestRecord | undefined> {
    return this.#q.getRequest(this.#db, id);
  }
  listRequests(): Promise<RequestRecord[]> {
    return this.#q.listRequests(this.#db);
  }
  getDeploy(requestId: string, deployId: string): Promise<Deploy | undefined> {
    return this.#q.getDeploy(this.#db, requestId, deployId);
  }
  listDeployHistory(requestId: string): Promise<DeployHistoryEntry[]> {
    return this.#q.listDeployHistory(this.#db, requestId);
  }
  lastDeployResults(requestIds: readonly string[]): Promise<Map<string, LastDeployResult>> {
    return this.#q.lastDeployResults(this.#db, requestIds);
  }
  getDeployHistory(requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined> {
    return this.#q.getDeployHistory(this.#db, requestId, deployId);
  }
  listDeployEntries(keys: readonly DeployKey[]): Promise<DeployEntry[]> {
    return this.#q.listDeployEntries(this.#db, keys);
  }
  getPending(requestId: string): Promise<PendingDeploy | undefined> {
    return this.#q.getPending(this.#db, requestId);
  }
  listPending(): Promise<PendingDeploy[]> {
    return this.#q.listPending(this.#db);
  }
  getTask(taskId: string): Promise<TaskRecord | undefined> {
    return this.#q.getTask(this.#db, taskId);
  }
  listTasks(query: TaskQuery = {}): Promise<TaskRecord[]> {
    return this.#q.listTasks(this.#db, query);
  }
  findTaskByRunId(requestId: string, runId: string): Promise<TaskRecord | undefined> {
    return this.#q.findTaskByRunId(this.#db, requestId, runId);
  }
  listExpiredTasks(query: ExpiredTaskQuery): Promise<TaskRecord[]> {
    return this.#q.listExpiredTasks(this.#db, query);
  }
  deleteTasks(ids: string[]): Promise<void> {
    return this.#q.deleteTasks(this.#db, ids);
  }
  listWebhooks(): Promise<Webhook[]> {
    return this.#q.listWebhooks(this.#db);
  }
  saveWebhook(webhook: Webhook): Promise<boolean> {
    return this.#db.transaction().execute((trx) => this.#q.saveWebhook(trx, webhook));
  }
  deleteWebhook(id: string): Promise<boolean> {
    return this.#db.transaction().execute((trx) => this.#q.deleteWebhook(trx, id));
  }
  listDeliveries(webhookId: string, limit: number): Promise<Delivery[]> {
    return this.#q.listDeliveries(this.#db, webhookId, limit);
  }
  headDeliveries(): Promise<Delivery[]> {
    return this.#q.headDeliveries(this.#db);
  }
  countDeliveries(): Promise<Record<string, number>> {
    return this.#q.countDeliveries(this.#db);
  }
  removeDelivery(seq: number): Promise<void> {
    return this.#q.removeDelivery(this.#db, seq);
  }
  failDelivery(seq: number, nextAttemptAt: number, error: string): Promise<void> {
    return this.#q.failDelivery(this.#db, seq, nextAttemptAt, error);
  }
  listHosts(): Promise<HostRecord[]> {
    return this.#q.listHosts(this.#db);
  }
  putHost(host: HostRecord): Promise<void> {
    return this.#q.putHost(this.#db, host);
  }
  ensureMeta(key: string, value: string): Promise<string> {
    return this.#q.ensureMeta(this.#db, key, value);
  }
  createToken(token: TokenRecord): Promise<void> {
    return this.#q.createToken(this.#db, token);
  }
  findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.#q.findTokenByHash(this.#db, hash);
  }
  listTokens(): Promise<TokenRecord[]> {
    return this.#q.listTokens(this.#db);
  }
  revokeToken(name: string): Promise<boolean> {
    return this.#q.revokeToken(this.#db, name);
  }
  touchToken(id: string, at: number): Promise<void> {
    return this.#q.touchToken(this.#db, id, at);
  }
  recordAudit(entry: AuditRecord): Promise<void> {
    return this.#q.recordAudit(this.#db, entry);
  }
  listAudit(query: AuditQuery): Promise<StoredAudit[]> {
    return this.#q.listAudit(this.#db, query);
  }
  pruneAudit(keep: number): Promise<number> {
    return this.#q.pruneAudit(this.#db, keep);
  }

  async close(): Promise<void> {
    await this.#db.destroy();
  }
}

/**
 * The database holds deploy env values (secrets): it is created 0600 before SQLite opens it,
 * and SQLite gives its -wal and -shm files the database file's mode. A file left by an older
 * version with a looser mode is tightened.
 */
function prepareDatabaseFile(filename: string): void {
  mkdirSync(dirname(filename), { recursive: true, mode: 0o700 });
  closeSync(openSync(filename, 'a', 0o600));
  for (const file of [filename, `${filename}-wal`, `${filename}-shm`]) {
    if (existsSync(file) && (statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  }
}
