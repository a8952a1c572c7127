/*
 * The PostgreSQL store: several schedulers share one database; one of them leads.
 *
 * - Queries are the shared ones in ../sql; this file gives them a connection pool, runs the
 *   numbered migrations under an advisory lock (schedulers starting together migrate once),
 *   and maps transient failures (connection refused or lost, a restarting database) to
 *   StoreUnavailableError.
 * - locked(key, fn) is a transaction holding `pg_advisory_xact_lock(key)`: one writer per
 *   request across every server. The transaction travels with fn through AsyncLocalStorage,
 *   so fn's reads and writes through this store are that transaction, whatever code they go
 *   through; a NOTIFY sent meanwhile is delivered at its commit. Each apply() inside it is a
 *   savepoint, so a failed change set leaves nothing half-applied.
 * - apply(changes, fence) checks the lease in the same transaction (`FOR SHARE` on its row,
 *   compared with clock_timestamp()): a takeover, which updates that row, waits for fenced
 *   writes in flight, and every fenced write after it fails with FencedError.
 * - Sessions end a transaction left idle too long (a frozen scheduler's locks are freed).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { PendingDeploy } from '../../core/deploy/types.ts';
import type { Deploy, RequestRecord, TaskRecord } from '../../core/model.ts';
import type { Webhook } from '../../core/webhooks.ts';
import type { HostRecord } from '../../hosts/types.ts';
import { silentLogger, type Logger } from '../../logger.ts';
import { KeyedMutex } from '../../reconciler/locks.ts';
import { readMigrations } from '../sql/migrations.ts';
import { SqlQueries, type Tables } from '../sql/queries.ts';
import {
  COPIED_TABLES,
  FencedError,
  type ChangeSet,
  type CopiedTable,
  type Delivery,
  type DeployHistoryEntry,
  type DeployEntry,
  type DeployKey,
  type ExpiredTaskQuery,
  type Fence,
  type NotifyChannel,
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
import { applicationName, PgCluster } from './cluster.ts';
import { storeError } from './errors.ts';
import { redactUrl } from '../spec.ts';

export { redactUrl } from '../spec.ts';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');
/** advisory lock classes: per-request locks, and the migration lock */
const REQUEST_LOCK = 0x464c;
const MIGRATION_LOCK = 0x464d;

export interface PostgresStoreOptions {
  /** postgres://user:pass@host:port/db (any libpq URL parameter pg understands) */
  url: string;
  /** the scheduler id: its sessions are `fledge:<id>` in pg_stat_activity (the lease checks its holder is alive) */
  schedulerId?: string;
  now?: () => number;
  logger?: Logger;
  /** default 10 */
  poolSize?: number;
  /** a transaction idle longer than this is ended by the server; default 5 s */
  idleInTransactionMs?: number;
  /** default 15 s */
  statementTimeoutMs?: number;
  /** default 5 s */
  connectTimeoutMs?: number;
}

interface TxContext {
  trx: Transaction<Tables>;
  open: boolean;
  /** store operations inside the transaction run one at a time, in order */
  queue: Promise<unknown>;
  notifications: { channel: NotifyChannel; payload: string }[];
}

// int8 (counts, millis) as numbers: every value Fledge stores fits in 2^53.
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

export function createPostgresStore(options: PostgresStoreOptions): PostgresStore {
  return new PostgresStore(options);
}

export class PostgresStore implements Store {
  readonly description: string;
  readonly cluster: PgCluster;
  readonly rows: StoreRows;
  readonly #pool: pg.Pool;
  readonly #db: Kysely<Tables>;
  readonly #q: SqlQueries;
  readonly #als = new AsyncLocalStorage<TxContext>();
  readonly #mutex = new KeyedMutex();
  readonly #logger: Logger;

  constructor(options: PostgresStoreOptions) {
    this.description = redactUrl(options.url);
    this.#logger = options.logger ?? silentLogger;
    const config: pg.PoolConfig = {
      connectionString: options.url,
      application_name: options.schedulerId ? applicationName(options.schedulerId) : 'fledge',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      idle_in_transaction_session_timeout: options.idleInTransactionMs ?? 5_000,
      statement_timeout: options.statementTimeoutMs ?? 15_000,
      keepAlive: true,
      types,
    };
    this.#pool = new pg.Pool({ ...config, max: options.poolSize ?? 10, idleTimeoutMillis: 30_000 });
    // A connection that dies (the database restarts, a takeover terminates a frozen leader's
    // sessions) must not crash the process: idle ones report to the pool, checked-out ones
    // (inside a transaction, between statements) to their own listener. Their next query
    // fails, as a StoreUnavailableError.
    this.#pool.on('error', (err) => this.#logger.warn({ err: err.message }, 'PostgreSQL connection lost'));
    this.#pool.on('connect', (client) => {
      client.on('error', (err) => this.#logger.warn({ err: err.message }, 'PostgreSQL connection lost'));
    });
    this.#db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool: this.#pool }) });
    this.#q = new SqlQueries(
      {
        insertionOrder: sql`seq`,
        followImportedSequence: async (db, table) => {
          await sql`select setval(pg_get_serial_sequence(${table}, 'seq'), (select max(seq) from ${sql.table(table)}))`.execute(db);
        },
      },
      options.now ?? Date.now,
    );
    this.cluster = new PgCluster({
      use: (what, fn) => this.#use(what, fn),
      db: this.#db,
      notifyInTransaction: (channel, payload) => {
        const ctx = this.#als.getStore();
        if (!ctx?.open) return false;
        ctx.notifications.push({ channel, payload });
        return true;
      },
      listenerConfig: config,
      logger: this.#logger,
    });
    this.rows = {
      counts: () => this.#use('count rows', (db) => this.#q.counts(db)),
      exportAll: () =>
        this.#use('export rows', (db) =>
          // One snapshot for every table, even while schedulers write.
          db
            .transaction()
            .setIsolationLevel('repeatable read')
            .execute(async (trx) => {
              const out = {} as Record<CopiedTable, Row[]>;
              for (const table of COPIED_TABLES) out[table] = await this.#q.exportTable(trx, table);
              return out;
            }),
        ),
      importAll: (rows) =>
        this.#use('import rows', (db) =>
          db.transaction().execute(async (trx) => {
            for (const table of COPIED_TABLES) await this.#q.importTable(trx, table, rows[table]);
          }),
        ),
    };
  }

  /** Run a store operation: inside locked()'s transaction when there is one, else on the pool. */
  #use<T>(what: string, fn: (db: Kysely<Tables>) => Promise<T>): Promise<T> {
    const ctx = this.#als.getStore();
    const run = ctx?.open ? ctx.queue.then(() => fn(ctx.trx)) : fn(this.#db);
    if (ctx?.open) ctx.queue = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      throw storeError(err, what);
    });
  }

  async migrate(): Promise<void> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw storeError(err, 'migrate');
    }
    try {
      // Waiting for another scheduler's migrations must not hit the statement timeout.
      await client.query('SET statement_timeout = 0');
      await client.query('SELECT pg_advisory_lock($1, 0)', [MIGRATION_LOCK]);
      try {
        await client.query(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
        );
        const applied = new Set(
          (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version),
        );
        const known = readMigrations(MIGRATIONS_DIR);
        for (const m of known) {
          if (applied.has(m.version)) continue;
          await client.query('BEGIN');
          try {
            await client.query(m.sql);
            await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
              m.version,
              m.name,
              Date.now(),
            ]);
            await client.query('COMMIT');
          } catch (err) {
            await client.query('ROLLBACK').catch(() => undefined);
            throw new Error(`PostgreSQL migration ${m.name} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
          }
          this.#logger.info({ migration: m.name }, 'PostgreSQL migration applied');
        }
        const newest = Math.max(0, ...known.map((m) => m.version));
        const ahead = [...applied].filter((v) => v > newest);
        if (ahead.length > 0) {
          this.#logger.warn(
            { migrations: ahead.sort(), known: newest },
            'the database has migrations this Fledge does not know: a newer Fledge upgraded it; upgrade this one too',
          );
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, 0)', [MIGRATION_LOCK]).catch(() => undefined);
        await client.query('RESET statement_timeout').catch(() => undefined);
      }
    } catch (err) {
      throw storeError(err, 'migrate');
    } finally {
      client.release();
    }
  }

  async apply(changes: ChangeSet, fence?: Fence): Promise<void> {
    const ctx = this.#als.getStore();
    if (ctx?.open) {
      return this.#use('apply', async (trx) => {
        await sql`SAVEPOINT fledge_changes`.execute(trx);
        try {
          await this.#checkFence(trx, fence);
          await this.#q.write(trx, changes);
          await sql`RELEASE SAVEPOINT fledge_changes`.execute(trx);
        } catch (err) {
          await sql`ROLLBACK TO SAVEPOINT fledge_changes`.execute(trx).catch(() => undefined);
          throw err;
        }
      });
    }
    await this.#use('apply', (db) =>
      db.transaction().execute(async (trx) => {
        await this.#checkFence(trx, fence);
        await this.#q.write(trx, changes);
      }),
    );
  }

  /** `fn` all or nothing: a savepoint inside locked()'s transaction, else a transaction of its own. */
  #atomic<T>(what: string, fn: (trx: Kysely<Tables>) => Promise<T>): Promise<T> {
    const ctx = this.#als.getStore();
    if (ctx?.open) {
      return this.#use(what, async (trx) => {
        await sql`SAVEPOINT fledge_atomic`.execute(trx);
        try {
          const result = await fn(trx);
          await sql`RELEASE SAVEPOINT fledge_atomic`.execute(trx);
          return result;
        } catch (err) {
          await sql`ROLLBACK TO SAVEPOINT fledge_atomic`.execute(trx).catch(() => undefined);
          throw err;
        }
      });
    }
    return this.#use(what, (db) => db.transaction().execute(fn));
  }

  async #checkFence(trx: Kysely<Tables>, fence: Fence | undefined): Promise<void> {
    if (!fence) return;
    const held = await sql`select 1 from leader_lease where id = 1 and holder = ${fence.holder} and epoch = ${fence.epoch}
      and expires_at > clock_timestamp() for share`.execute(trx);
    if (held.rows.length === 0) throw new FencedError(fence);
  }

  locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    // In-process first, so waiters of this process hold no connection.
    return this.#mutex.run(key, async () => {
      try {
        return await this.#db.transaction().execute(async (trx) => {
          await sql`select pg_advisory_xact_lock(${REQUEST_LOCK}, hashtext(${key}))`.execute(trx);
          const ctx: TxContext = { trx, open: true, queue: Promise.resolve(), notifications: [] };
          let result: T;
          try {
            result = await this.#als.run(ctx, fn);
          } finally {
            // Nothing may run on the connection once Kysely commits and releases it.
            ctx.open = false;
            await ctx.queue;
          }
          if (ctx.notifications.length > 0) {
            const channels = ctx.notifications.map((n) => n.channel);
            const payloads = ctx.notifications.map((n) => n.payload);
            await sql`select pg_notify(c, p) from unnest(${channels}::text[], ${payloads}::text[]) as n(c, p)`.execute(trx);
          }
          return result;
        });
      } catch (err) {
        throw storeError(err, `lock ${key}`);
      }
    });
  }

  getRequest(id: string): Promise<RequestRecord | undefined> {
    return this.#use('get request', (db) => this.#q.getRequest(db, id));
  }
  listRequests(): Promise<RequestRecord[]> {
    return this.#use('list requests', (db) => this.#q.listRequests(db));
  }
  getDeploy(requestId: string, deployId: string): Promise<Deploy | undefined> {
    return this.#use('get deploy', (db) => this.#q.getDeploy(db, requestId, deployId));
  }
  listDeployHistory(requestId: string): Promise<DeployHistoryEntry[]> {
    return this.#use('list deploy history', (db) => this.#q.listDeployHistory(db, requestId));
  }
  lastDeployResults(requestIds: readonly string[]): Promise<Map<string, LastDeployResult>> {
    return this.#use('last deploy results', (db) => this.#q.lastDeployResults(db, requestIds));
  }
  getDeployHistory(requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined> {
    return this.#use('get deploy history', (db) => this.#q.getDeployHistory(db, requestId, deployId));
  }
  listDeployEntries(keys: readonly DeployKey[]): Promise<DeployEntry[]> {
    return this.#use('list deploy entries', (db) => this.#q.listDeployEntries(db, keys));
  }
  getPending(requestId: string): Promise<PendingDeploy | undefined> {
    return this.#use('get pending deploy', (db) => this.#q.getPending(db, requestId));
  }
  listPending(): Promise<PendingDeploy[]> {
    return this.#use('list pending deploys', (db) => this.#q.listPending(db));
  }
  getTask(taskId: string): Promise<TaskRecord | undefined> {
    return this.#use('get task', (db) => this.#q.getTask(db, taskId));
  }
  listTasks(query: TaskQuery = {}): Promise<TaskRecord[]> {
    return this.#use('list tasks', (db) => this.#q.listTasks(db, query));
  }
  findTaskByRunId(requestId: string, runId: string): Promise<TaskRecord | undefined> {
    return this.#use('find task by run id', (db) => this.#q.findTaskByRunId(db, requestId, runId));
  }
  listExpiredTasks(query: ExpiredTaskQuery): Promise<TaskRecord[]> {
    return this.#use('list expired tasks', (db) => this.#q.listExpiredTasks(db, query));
  }
  deleteTasks(ids: string[]): Promise<void> {
    return this.#use('delete tasks', (db) => this.#q.deleteTasks(db, ids));
  }
  listWebhooks(): Promise<Webhook[]> {
    return this.#use('list webhooks', (db) => this.#q.listWebhooks(db));
  }
  saveWebhook(webhook: Webhook): Promise<boolean> {
    return this.#atomic('save webhook', (trx) => this.#q.saveWebhook(trx, webhook));
  }
  deleteWebhook(id: string): Promise<boolean> {
    return this.#atomic('delete webhook', (trx) => this.#q.deleteWebhook(trx, id));
  }
  listDeliveries(webhookId: string, limit: number): Promise<Delivery[]> {
    return this.#use('list webhook deliveries', (db) => this.#q.listDeliveries(db, webhookId, limit));
  }
  headDeliveries(): Promise<Delivery[]> {
    return this.#use('list webhook deliveries', (db) => this.#q.headDeliveries(db));
  }
  countDeliveries(): Promise<Record<string, number>> {
    return this.#use('count webhook deliveries', (db) => this.#q.countDeliveries(db));
  }
  removeDelivery(seq: number): Promise<void> {
    return this.#use('remove webhook delivery', (db) => this.#q.removeDelivery(db, seq));
  }
  failDelivery(seq: number, nextAttemptAt: number, error: string): Promise<void> {
    return this.#use('fail webhook delivery', (db) => this.#q.failDelivery(db, seq, nextAttemptAt, error));
  }
  listHosts(): Promise<HostRecord[]> {
    return this.#use('list hosts', (db) => this.#q.listHosts(db));
  }
  putHost(host: HostRecord): Promise<void> {
    return this.#use('put host', (db) => this.#q.putHost(db, host));
  }
  ensureMeta(key: string, value: string): Promise<string> {
    return this.#use('ensure meta', (db) => this.#q.ensureMeta(db, key, value));
  }
  createToken(token: TokenRecord): Promise<void> {
    return this.#use('create token', (db) => this.#q.createToken(db, token));
  }
  findTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.#use('find token', (db) => this.#q.findTokenByHash(db, hash));
  }
  listTokens(): Promise<TokenRecord[]> {
    return this.#use('list tokens', (db) => this.#q.listTokens(db));
  }
  revokeToken(name: string): Promise<boolean> {
    return this.#use('revoke token', (db) => this.#q.revokeToken(db, name));
  }
  touchToken(id: string, at: number): Promise<void> {
    return this.#use('touch token', (db) => this.#q.touchToken(db, id, at));
  }
  recordAudit(entry: AuditRecord): Promise<void> {
    return this.#use('record audit', (db) => this.#q.recordAudit(db, entry));
  }
  listAudit(query: AuditQuery): Promise<StoredAudit[]> {
    return this.#use('list audit', (db) => this.#q.listAudit(db, query));
  }
  pruneAudit(keep: number): Promise<number> {
    return this.#use('prune audit', (db) => this.#q.pruneAudit(db, keep));
  }

  async close(): Promise<void> {
    await this.cluster.close();
    await this.#db.destroy();
  }
}
