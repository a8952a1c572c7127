import { chmodSync, readdirSync, readFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect, sql, type Generated, type Selectable } from 'kysely';
import { isLive, type Deploy, type RequestRecord, type TaskRecord } from '../../core/model.ts';
import type { DeployResult, DeployProgress, PendingDeploy } from '../../core/deploy/types.ts';
import { wants, type Webhook } from '../../core/webhooks.ts';
import type { ChangeSet, Delivery, DeployHistoryEntry, Store, TaskQuery } from '../types.ts';

interface Tables {
  requests: { id: string; state: string; doc: string; updated_at: number };
  deploys: {
    request_id: string;
    id: string;
    doc: string;
    message: string | null;
    created_at: number;
    result_state: string | null;
    result: string | null;
    progress: string | null;
  };
  pending_deploys: { request_id: string; deploy_id: string; doc: string };
  tasks: { id: string; request_id: string; deploy_id: string; live: number; done_at: number | null; doc: string; run_id: string | null };
  webhooks: { id: string; doc: string; created_at: number };
  webhook_deliveries: {
    seq: Generated<number>;
    webhook_id: string;
    type: string;
    created_at: number;
    next_attempt_at: number;
    attempts: number;
    last_error: string | null;
    body: string;
  };
  schema_migrations: { version: Generated<number>; name: string; applied_at: number };
}

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface SqliteStoreOptions {
  /** file path, or ':memory:' */
  filename: string;
  now?: () => number;
}

export function createSqliteStore(options: SqliteStoreOptions): Store {
  return new SqliteStore(options);
}

class SqliteStore implements Store {
  readonly #raw: Database.Database;
  readonly #db: Kysely<Tables>;
  readonly #now: () => number;

  constructor(options: SqliteStoreOptions) {
    if (options.filename !== ':memory:') mkdirSync(dirname(options.filename), { recursive: true });
    this.#raw = new Database(options.filename);
    // It holds webhook secrets: readable by the server's user alone (SQLite gives -wal/-shm the same mode).
    if (options.filename !== ':memory:') chmodSync(options.filename, 0o600);
    // WAL keeps readers (API) from blocking the loop's writes; NORMAL sync is durable at checkpoints
    // and never corrupts, which is the trade SQLite recommends for WAL.
    this.#raw.pragma('journal_mode = WAL');
    this.#raw.pragma('synchronous = NORMAL');
    this.#raw.pragma('busy_timeout = 5000');
    this.#db = new Kysely<Tables>({ dialect: new SqliteDialect({ database: this.#raw }) });
    this.#now = options.now ?? Date.now;
  }

  async migrate(): Promise<void> {
    this.#raw.exec(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
    );
    const applied = new Set((await this.#db.selectFrom('schema_migrations').select('version').execute()).map((r) => r.version));
    const files = readdirSync(MIGRATIONS_DIR)
      .filter((f) => /^\d+_.*\.sql$/.test(f))
      .sort();
    for (const file of files) {
      const version = Number.parseInt(file, 10);
      if (applied.has(version)) continue;
      const body = readFileSync(join(MIGRATIONS_DIR, file), 'utf8');
      this.#raw.transaction(() => {
        this.#raw.exec(body);
        this.#raw.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(version, file, this.#now());
      })();
    }
  }

  async apply(changes: ChangeSet): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      for (const record of changes.requests ?? []) {
        const row = { id: record.request.id, state: record.state, doc: JSON.stringify(record), updated_at: this.#now() };
        await trx
          .insertInto('requests')
          .values(row)
          .onConflict((oc) => oc.column('id').doUpdateSet({ state: row.state, doc: row.doc, updated_at: row.updated_at }))
          .execute();
      }
      for (const id of changes.deleteRequests ?? []) {
        await trx.deleteFrom('requests').where('id', '=', id).execute();
      }
      for (const { deploy, message } of changes.deploys ?? []) {
        await trx
          .insertInto('deploys')
          .values({
            request_id: deploy.requestId,
            id: deploy.id,
            doc: JSON.stringify(deploy),
            message: message ?? null,
            created_at: deploy.timestamp,
            result_state: null,
            result: null,
            progress: null,
          })
          .execute();
      }
      for (const pending of changes.pending ?? []) {
        const doc = JSON.stringify(pending);
        await trx
          .insertInto('pending_deploys')
          .values({ request_id: pending.requestId, deploy_id: pending.deployId, doc })
          .onConflict((oc) => oc.column('request_id').doUpdateSet({ deploy_id: pending.deployId, doc }))
          .execute();
      }
      for (const requestId of changes.deletePending ?? []) {
        await trx.deleteFrom('pending_deploys').where('request_id', '=', requestId).execute();
      }
      for (const r of changes.results ?? []) {
        await trx
          .updateTable('deploys')
          .set({
            result_state: r.result.deployState,
            result: JSON.stringify(r.result),
            progress: r.progress ? JSON.stringify(r.progress) : null,
          })
          .where('request_id', '=', r.requestId)
          .where('id', '=', r.deployId)
          .execute();
      }
      for (const task of changes.tasks ?? []) {
        const live = isLive(task.state) ? 1 : 0;
        const row = {
          id: task.taskId.id,
          request_id: task.taskId.requestId,
          deploy_id: task.taskId.deployId,
          live,
          done_at: live ? null : (task.doneAt ?? this.#now()),
          doc: JSON.stringify(task),
          run_id: task.run?.runId ?? null,
        };
        await trx
          .insertInto('tasks')
          .values(row)
          .onConflict((oc) => oc.column('id').doUpdateSet({ live: row.live, done_at: row.done_at, doc: row.doc, run_id: row.run_id }))
          .execute();
      }
      if (changes.webhookEvents?.length) {
        const hooks = (await trx.selectFrom('webhooks').select('doc').orderBy('id').execute()).map((r) => JSON.parse(r.doc) as Webhook);
        for (const event of changes.webhookEvents) {
          const body = JSON.stringify(event.payload);
          for (const hook of hooks) {
            if (!wants(hook, event)) continue;
            await trx
              .insertInto('webhook_deliveries')
              .values({
                webhook_id: hook.id,
                type: event.type,
                created_at: event.at,
                next_attempt_at: event.at,
                attempts: 0,
                last_error: null,
                body,
              })
              .execute();
          }
        }
      }
    });
  }

  async getRequest(id: string): Promise<RequestRecord | undefined> {
    const row = await this.#db.selectFrom('requests').select('doc').where('id', '=', id).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as RequestRecord) : undefined;
  }

  async listRequests(): Promise<RequestRecord[]> {
    const rows = await this.#db.selectFrom('requests').select('doc').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.doc) as RequestRecord);
  }

  async getDeploy(requestId: string, deployId: string): Promise<Deploy | undefined> {
    const row = await this.#db
      .selectFrom('deploys')
      .select('doc')
      .where('request_id', '=', requestId)
      .where('id', '=', deployId)
      .executeTakeFirst();
    return row ? (JSON.parse(row.doc) as Deploy) : undefined;
  }

  async listDeployHistory(requestId: string): Promise<DeployHistoryEntry[]> {
    const rows = await this.#db
      .selectFrom('deploys')
      .selectAll()
      .where('request_id', '=', requestId)
      .orderBy('created_at', 'desc')
      .orderBy(sql`rowid`, 'desc')
      .execute();
    return rows.map(toHistory);
  }

  async getDeployHistory(requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined> {
    const row = await this.#db
      .selectFrom('deploys')
      .selectAll()
      .where('request_id', '=', requestId)
      .where('id', '=', deployId)
      .executeTakeFirst();
    return row ? toHistory(row) : undefined;
  }

  async getPending(requestId: string): Promise<PendingDeploy | undefined> {
    const row = await this.#db.selectFrom('pending_deploys').select('doc').where('request_id', '=', requestId).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as PendingDeploy) : undefined;
  }

  async listPending(): Promise<PendingDeploy[]> {
    const rows = await this.#db.selectFrom('pending_deploys').select('doc').orderBy('request_id').execute();
    return rows.map((r) => JSON.parse(r.doc) as PendingDeploy);
  }

  async getTask(taskId: string): Promise<TaskRecord | undefined> {
    const row = await this.#db.selectFrom('tasks').select('doc').where('id', '=', taskId).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as TaskRecord) : undefined;
  }

  async listTasks(query: TaskQuery = {}): Promise<TaskRecord[]> {
    let q = this.#db.selectFrom('tasks').select('doc');
    if (query.requestId !== undefined) q = q.where('request_id', '=', query.requestId);
    if (query.deployId !== undefined) q = q.where('deploy_id', '=', query.deployId);
    if (query.live) q = q.where('live', '=', 1);
    if (query.endedSince !== undefined) {
      const since = query.endedSince;
      q = q.where((eb) => eb.or([eb('live', '=', 1), eb('done_at', '>=', since)]));
    }
    q = q.orderBy(sql`rowid`, 'desc');
    if (query.limit !== undefined) q = q.limit(query.limit);
    const rows = await q.execute();
    return rows.map((r) => JSON.parse(r.doc) as TaskRecord).reverse();
  }

  async findTaskByRunId(requestId: string, runId: string): Promise<TaskRecord | undefined> {
    const row = await this.#db
      .selectFrom('tasks')
      .select('doc')
      .where('request_id', '=', requestId)
      .where('run_id', '=', runId)
      .orderBy(sql`rowid`, 'desc')
      .executeTakeFirst();
    return row ? (JSON.parse(row.doc) as TaskRecord) : undefined;
  }

  async listExpiredTasks(q: { doneBefore: number; keepPerRequest: number; minAgeBefore: number; limit: number }): Promise<TaskRecord[]> {
    // Ranked newest first per request; past the kept count (and old enough), or past the age.
    const rows = await sql<{ doc: string }>`
      SELECT doc FROM (
        SELECT doc, done_at, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY done_at DESC, rowid DESC) AS rank
        FROM tasks WHERE live = 0
      ) WHERE done_at < ${q.doneBefore} OR (rank > ${q.keepPerRequest} AND done_at < ${q.minAgeBefore})
      ORDER BY done_at ASC LIMIT ${q.limit}`.execute(this.#db);
    return rows.rows.map((r) => JSON.parse(r.doc) as TaskRecord);
  }

  async deleteTasks(ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#db.deleteFrom('tasks').where('id', 'in', ids).where('live', '=', 0).execute();
  }

  async listWebhooks(): Promise<Webhook[]> {
    const rows = await this.#db.selectFrom('webhooks').select('doc').orderBy('created_at').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.doc) as Webhook);
  }

  async saveWebhook(webhook: Webhook): Promise<boolean> {
    const doc = JSON.stringify(webhook);
    return this.#db.transaction().execute(async (trx) => {
      const existing = await trx.selectFrom('webhooks').select('id').where('id', '=', webhook.id).executeTakeFirst();
      if (existing) await trx.updateTable('webhooks').set({ doc }).where('id', '=', webhook.id).execute();
      else await trx.insertInto('webhooks').values({ id: webhook.id, doc, created_at: webhook.timestamp }).execute();
      return !existing;
    });
  }

  async deleteWebhook(id: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('webhook_deliveries').where('webhook_id', '=', id).execute();
      const r = await trx.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
      return Number(r.numDeletedRows) > 0;
    });
  }

  async listDeliveries(webhookId: string, limit: number): Promise<Delivery[]> {
    const rows = await this.#db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', webhookId)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map(toDelivery);
  }

  async headDeliveries(): Promise<Delivery[]> {
    const rows = await this.#db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('seq', 'in', (eb) =>
        eb
          .selectFrom('webhook_deliveries')
          .select((e) => e.fn.min('seq').as('seq'))
          .groupBy('webhook_id'),
      )
      .orderBy('seq')
      .execute();
    return rows.map(toDelivery);
  }

  async countDeliveries(): Promise<Record<string, number>> {
    const rows = await this.#db
      .selectFrom('webhook_deliveries')
      .select(['webhook_id', (e) => e.fn.countAll<number>().as('n')])
      .groupBy('webhook_id')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.webhook_id, Number(r.n)]));
  }

  async removeDelivery(seq: number): Promise<void> {
    await this.#db.deleteFrom('webhook_deliveries').where('seq', '=', seq).execute();
  }

  async failDelivery(seq: number, nextAttemptAt: number, error: string): Promise<void> {
    await this.#db
      .updateTable('webhook_deliveries')
      .set((eb) => ({ attempts: eb('attempts', '+', 1), next_attempt_at: nextAttemptAt, last_error: error.slice(0, 500) }))
      .where('seq', '=', seq)
      .execute();
  }

  async close(): Promise<void> {
    await this.#db.destroy();
  }
}

function toDelivery(r: Selectable<Tables['webhook_deliveries']>): Delivery {
  return {
    seq: r.seq,
    webhookId: r.webhook_id,
    type: r.type as Delivery['type'],
    createdAt: r.created_at,
    nextAttemptAt: r.next_attempt_at,
    attempts: r.attempts,
    ...(r.last_error !== null ? { lastError: r.last_error } : {}),
    body: r.body,
  };
}

function toHistory(row: Tables['deploys']): DeployHistoryEntry {
  const entry: DeployHistoryEntry = {
    requestId: row.request_id,
    deployId: row.id,
    deploy: JSON.parse(row.doc) as Deploy,
    createdAt: row.created_at,
  };
  if (row.message !== null) entry.message = row.message;
  if (row.result !== null) entry.result = JSON.parse(row.result) as DeployResult;
  if (row.progress !== null) entry.progress = JSON.parse(row.progress) as DeployProgress;
  return entry;
}
