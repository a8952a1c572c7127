// The store's queries, dialect-neutral: SQLite and PostgreSQL run the same Kysely code over
// the same tables. Each dialect gives only the column that orders rows by insertion (SQLite's
// rowid, PostgreSQL's seq) and how values come back (both give numbers and strings here).
import { sql, type Generated, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import { isRole } from '../../auth/roles.ts';
import { isLive, type Deploy, type RequestRecord, type TaskRecord } from '../../core/model.ts';
import type { DeployProgress, DeployResult, PendingDeploy } from '../../core/deploy/types.ts';
import { wants, type Webhook } from '../../core/webhooks.ts';
import type { HostRecord } from '../../hosts/types.ts';
import {
  COPIED_TABLES,
  StoreConflictError,
  type AuditQuery,
  type AuditRecord,
  type StoredAudit,
  type LastDeployResult,
  type ChangeSet,
  type CopiedTable,
  type Delivery,
  type DeployHistoryEntry,
  type DeployEntry,
  type DeployKey,
  type ExpiredTaskQuery,
  type Row,
  type TaskQuery,
  type TokenRecord,
} from '../types.ts';

/** The tables both dialects share; documents are JSON text, the columns beside them are what queries filter on. */
export interface Tables {
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
    /** the name of the token that created the deploy */
    created_by: string | null;
  };
  pending_deploys: { request_id: string; deploy_id: string; doc: string };
  tasks: {
    id: string;
    request_id: string;
    deploy_id: string;
    live: number;
    done_at: number | null;
    doc: string;
    /** a run-to-completion task's run id (ON_DEMAND runId, or the one Fledge chose) */
    run_id: string | null;
  };
  hosts: { id: string; state: string; doc: string; updated_at: number };
  meta: { key: string; value: string };
  /** API tokens: the hash only */
  tokens: {
    id: string;
    name: string;
    role: string;
    hash: string;
    created_at: number;
    created_by: string | null;
    last_used_at: number | null;
  };
  /** every mutating API call, allowed or refused; `id` increases with insertion */
  audit: {
    id: Generated<number>;
    at: number;
    token_name: string | null;
    role: string | null;
    method: string;
    path: string;
    request_id: string | null;
    deploy_id: string | null;
    task_id: string | null;
    source: string;
    status: number;
  };
  /** registered webhooks; `doc` holds the secret (never returned by a view) */
  webhooks: { id: string; doc: string; created_at: number };
  /** queued deliveries, one per (event, webhook); `seq` is the order and the delivery id */
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
}

export interface Dialect {
  /** orders a table's rows by insertion: `rowid` (SQLite) or `seq` (PostgreSQL) */
  insertionOrder: RawBuilder<unknown>;
  /**
   * After rows with their own `seq` were imported: make the next generated one follow them
   * (PostgreSQL's sequence; SQLite's AUTOINCREMENT follows by itself). Delivery ids must never
   * be given out twice: receivers drop what they have seen.
   */
  followImportedSequence?: (db: Db, table: 'webhook_deliveries') => Promise<void>;
}

export type Db = Kysely<Tables>;

/** The columns `fledge store copy` moves, per table, and how each table is ordered. */
const COLUMNS: Record<CopiedTable, readonly string[]> = {
  requests: ['id', 'state', 'doc', 'updated_at'],
  deploys: ['request_id', 'id', 'doc', 'message', 'created_at', 'result_state', 'result', 'progress', 'created_by'],
  pending_deploys: ['request_id', 'deploy_id', 'doc'],
  tasks: ['id', 'request_id', 'deploy_id', 'live', 'done_at', 'doc', 'run_id'],
  hosts: ['id', 'state', 'doc', 'updated_at'],
  meta: ['key', 'value'],
  tokens: ['id', 'name', 'role', 'hash', 'created_at', 'created_by', 'last_used_at'],
  // without `id`: the target numbers the records again, in the same order
  audit: ['at', 'token_name', 'role', 'method', 'path', 'request_id', 'deploy_id', 'task_id', 'source', 'status'],
  webhooks: ['id', 'doc', 'created_at'],
  // with `seq`: it is the delivery id receivers have already seen
  webhook_deliveries: ['seq', 'webhook_id', 'type', 'created_at', 'next_attempt_at', 'attempts', 'last_error', 'body'],
};

const HISTORY_COLUMNS = ['request_id', 'id', 'doc', 'message', 'created_at', 'result_state', 'result', 'progress', 'created_by'] as const;

export class SqlQueries {
  constructor(
    private readonly dialect: Dialect,
    private readonly now: () => number,
  ) {}

  /** Every write of a change set; the caller runs it inside one transaction. */
  async write(db: Db, changes: ChangeSet): Promise<void> {
    for (const record of changes.requests ?? []) {
      const row = { id: record.request.id, state: record.state, doc: JSON.stringify(record), updated_at: this.now() };
      await db
        .insertInto('requests')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet({ state: row.state, doc: row.doc, updated_at: row.updated_at }))
        .execute();
    }
    for (const id of changes.deleteRequests ?? []) {
      await db.deleteFrom('requests').where('id', '=', id).execute();
    }
    for (const { deploy, message, user } of changes.deploys ?? []) {
      await db
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
          created_by: user ?? null,
        })
        .execute();
    }
    for (const pending of changes.pending ?? []) {
      const doc = JSON.stringify(pending);
      await db
        .insertInto('pending_deploys')
        .values({ request_id: pending.requestId, deploy_id: pending.deployId, doc })
        .onConflict((oc) => oc.column('request_id').doUpdateSet({ deploy_id: pending.deployId, doc }))
        .execute();
    }
    for (const requestId of changes.deletePending ?? []) {
      await db.deleteFrom('pending_deploys').where('request_id', '=', requestId).execute();
    }
    for (const r of changes.results ?? []) {
      await db
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
        done_at: live ? null : (task.doneAt ?? this.now()),
        doc: JSON.stringify(task),
        run_id: task.run?.runId ?? null,
      };
      await db
        .insertInto('tasks')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet({ live: row.live, done_at: row.done_at, doc: row.doc, run_id: row.run_id }))
        .execute();
    }
    for (const id of changes.deleteTasks ?? []) {
      await db.deleteFrom('tasks').where('id', '=', id).execute();
    }
    if (changes.webhookEvents?.length) {
      const hooks = await this.listWebhooks(db);
      for (const event of changes.webhookEvents) {
        const body = JSON.stringify(event.payload);
        for (const hook of hooks) {
          if (!wants(hook, event)) continue;
          await db
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
  }

  async getRequest(db: Db, id: string): Promise<RequestRecord | undefined> {
    const row = await db.selectFrom('requests').select('doc').where('id', '=', id).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as RequestRecord) : undefined;
  }

  async listRequests(db: Db): Promise<RequestRecord[]> {
    const rows = await db.selectFrom('requests').select('doc').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.doc) as RequestRecord);
  }

  async getDeploy(db: Db, requestId: string, deployId: string): Promise<Deploy | undefined> {
    const row = await db
      .selectFrom('deploys')
      .select('doc')
      .where('request_id', '=', requestId)
      .where('id', '=', deployId)
      .executeTakeFirst();
    return row ? (JSON.parse(row.doc) as Deploy) : undefined;
  }

  async listDeployHistory(db: Db, requestId: string): Promise<DeployHistoryEntry[]> {
    const rows = await db
      .selectFrom('deploys')
      .select(HISTORY_COLUMNS)
      .where('request_id', '=', requestId)
      .orderBy('created_at', 'desc')
      .orderBy(this.dialect.insertionOrder, 'desc')
      .execute();
    return rows.map(toHistory);
  }

  /** Each request's last ended deploy (the newest with a result), in one query for them all. */
  async lastDeployResults(db: Db, requestIds: readonly string[]): Promise<Map<string, LastDeployResult>> {
    const out = new Map<string, LastDeployResult>();
    if (requestIds.length === 0) return out;
    const rows = await db
      .selectFrom('deploys as d')
      .select(['d.request_id', 'd.id', 'd.result'])
      .where('d.request_id', 'in', [...requestIds])
      .where('d.result', 'is not', null)
      .where('d.created_at', '=', (eb) =>
        eb
          .selectFrom('deploys as e')
          .select((e) => e.fn.max('e.created_at').as('newest'))
          .whereRef('e.request_id', '=', 'd.request_id')
          .where('e.result', 'is not', null),
      )
      .orderBy('d.id', 'desc')
      .execute();
    for (const row of rows) {
      if (row.result === null || out.has(row.request_id)) continue;
      out.set(row.request_id, { deployId: row.id, result: JSON.parse(row.result) as DeployResult });
    }
    return out;
  }

  async getDeployHistory(db: Db, requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined> {
    const row = await db
      .selectFrom('deploys')
      .select(HISTORY_COLUMNS)
      .where('request_id', '=', requestId)
      .where('id', '=', deployId)
      .executeTakeFirst();
    return row ? toHistory(row) : undefined;
  }

  async listDeployEntries(db: Db, keys: readonly DeployKey[]): Promise<DeployEntry[]> {
    if (keys.length === 0) return [];
    const requestIds = [...new Set(keys.map((k) => k.requestId))];
    const deployIds = [...new Set(keys.map((k) => k.deployId))];
    // Both columns by IN (one statement per chunk size), the pairs not asked for dropped here.
    const rows = await db
      .selectFrom('deploys')
      .select(HISTORY_COLUMNS.filter((c) => c !== 'progress'))
      .where('request_id', 'in', requestIds)
      .where('id', 'in', deployIds)
      .execute();
    const wanted = new Set(keys.map((k) => `${k.requestId}\u0000${k.deployId}`));
    return rows.filter((r) => wanted.has(`${r.request_id}\u0000${r.id}`)).map((r) => toHistory({ ...r, progress: null }));
  }

  async getPending(db: Db, requestId: string): Promise<PendingDeploy | undefined> {
    const row = await db.selectFrom('pending_deploys').select('doc').where('request_id', '=', requestId).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as PendingDeploy) : undefined;
  }

  async listPending(db: Db): Promise<PendingDeploy[]> {
    const rows = await db.selectFrom('pending_deploys').select('doc').orderBy('request_id').execute();
    return rows.map((r) => JSON.parse(r.doc) as PendingDeploy);
  }

  async getTask(db: Db, taskId: string): Promise<TaskRecord | undefined> {
    const row = await db.selectFrom('tasks').select('doc').where('id', '=', taskId).executeTakeFirst();
    return row ? (JSON.parse(row.doc) as TaskRecord) : undefined;
  }

  async listTasks(db: Db, query: TaskQuery = {}): Promise<TaskRecord[]> {
    let q = db.selectFrom('tasks').select('doc');
    if (query.requestId !== undefined) q = q.where('request_id', '=', query.requestId);
    if (query.requestIds !== undefined) {
      if (query.requestIds.length === 0) return [];
      q = q.where('request_id', 'in', [...query.requestIds]);
    }
    if (query.deployId !== undefined) q = q.where('deploy_id', '=', query.deployId);
    // For a chunk of requests, `+live` keeps the live flag off the index choice: SQLite, without
    // statistics, otherwise walks every live task by the (live) index for its rowid order —
    // 100,000 rows per chunk of a 10,000-request list — instead of the chunk's by request.
    if (query.live) q = query.requestIds !== undefined ? q.where(sql<number>`+${sql.ref('live')}`, '=', 1) : q.where('live', '=', 1);
    if (query.endedSince !== undefined) {
      const since = query.endedSince;
      q = q.where((eb) => eb.or([eb('live', '=', 1), eb('done_at', '>=', since)]));
    }
    q = q.orderBy(this.dialect.insertionOrder, 'desc');
    if (query.limit !== undefined) q = q.limit(query.limit);
    const rows = await q.execute();
    return rows.map((r) => JSON.parse(r.doc) as TaskRecord).reverse();
  }

  async findTaskByRunId(db: Db, requestId: string, runId: string): Promise<TaskRecord | undefined> {
    const row = await db
      .selectFrom('tasks')
      .select('doc')
      .where('request_id', '=', requestId)
      .where('run_id', '=', runId)
      .orderBy(this.dialect.insertionOrder, 'desc')
      .executeTakeFirst();
    return row ? (JSON.parse(row.doc) as TaskRecord) : undefined;
  }

  async listExpiredTasks(db: Db, q: ExpiredTaskQuery): Promise<TaskRecord[]> {
    // Ranked newest first per request; past the kept count (and old enough), or past the age.
    const order = this.dialect.insertionOrder;
    const rows = await sql<{ doc: string }>`
      SELECT doc FROM (
        SELECT doc, done_at, ROW_NUMBER() OVER (PARTITION BY request_id ORDER BY done_at DESC, ${order} DESC) AS rank
        FROM tasks WHERE live = 0
      ) AS ranked WHERE done_at < ${q.doneBefore} OR (rank > ${q.keepPerRequest} AND done_at < ${q.minAgeBefore})
      ORDER BY done_at ASC LIMIT ${q.limit}`.execute(db);
    return rows.rows.map((r) => JSON.parse(r.doc) as TaskRecord);
  }

  /** Only ended tasks: a task that came back to life meanwhile stays. */
  async deleteTasks(db: Db, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await db.deleteFrom('tasks').where('id', 'in', ids).where('live', '=', 0).execute();
  }

  // ---- webhooks and their queued deliveries ----

  async listWebhooks(db: Db): Promise<Webhook[]> {
    const rows = await db.selectFrom('webhooks').select('doc').orderBy('created_at').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.doc) as Webhook);
  }

  /** The caller runs it in a transaction. */
  async saveWebhook(db: Db, webhook: Webhook): Promise<boolean> {
    const doc = JSON.stringify(webhook);
    const existing = await db.selectFrom('webhooks').select('id').where('id', '=', webhook.id).executeTakeFirst();
    if (existing) await db.updateTable('webhooks').set({ doc }).where('id', '=', webhook.id).execute();
    else await db.insertInto('webhooks').values({ id: webhook.id, doc, created_at: webhook.timestamp }).execute();
    return !existing;
  }

  /** The caller runs it in a transaction: the webhook and its queue go together. */
  async deleteWebhook(db: Db, id: string): Promise<boolean> {
    await db.deleteFrom('webhook_deliveries').where('webhook_id', '=', id).execute();
    const r = await db.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  async listDeliveries(db: Db, webhookId: string, limit: number): Promise<Delivery[]> {
    const rows = await db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', webhookId)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map(toDelivery);
  }

  async headDeliveries(db: Db): Promise<Delivery[]> {
    const rows = await db
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

  async countDeliveries(db: Db): Promise<Record<string, number>> {
    const rows = await db
      .selectFrom('webhook_deliveries')
      .select(['webhook_id', (e) => e.fn.countAll<number | string>().as('n')])
      .groupBy('webhook_id')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.webhook_id, Number(r.n)]));
  }

  async removeDelivery(db: Db, seq: number): Promise<void> {
    await db.deleteFrom('webhook_deliveries').where('seq', '=', seq).execute();
  }

  async failDelivery(db: Db, seq: number, nextAttemptAt: number, error: string): Promise<void> {
    await db
      .updateTable('webhook_deliveries')
      .set((eb) => ({ attempts: eb('attempts', '+', 1), next_attempt_at: nextAttemptAt, last_error: error.slice(0, 500) }))
      .where('seq', '=', seq)
      .execute();
  }

  async listHosts(db: Db): Promise<HostRecord[]> {
    const rows = await db.selectFrom('hosts').select('doc').orderBy('id').execute();
    return rows.map((r) => JSON.parse(r.doc) as HostRecord);
  }

  async putHost(db: Db, host: HostRecord): Promise<void> {
    const row = { id: host.id, state: host.current.state, doc: JSON.stringify(host), updated_at: this.now() };
    await db
      .insertInto('hosts')
      .values(row)
      .onConflict((oc) => oc.column('id').doUpdateSet({ state: row.state, doc: row.doc, updated_at: row.updated_at }))
      .execute();
  }

  /** The first writer wins: an insert that does nothing on conflict, then a read. */
  async ensureMeta(db: Db, key: string, value: string): Promise<string> {
    await db
      .insertInto('meta')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doNothing())
      .execute();
    const row = await db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirstOrThrow();
    return row.value;
  }

  // ---- tokens and the audit log ----

  async createToken(db: Db, token: TokenRecord): Promise<void> {
    try {
      await db
        .insertInto('tokens')
        .values({
          id: token.id,
          name: token.name,
          role: token.role,
          hash: token.hash,
          created_at: token.createdAt,
          created_by: token.createdBy ?? null,
          last_used_at: token.lastUsedAt ?? null,
        })
        .execute();
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new StoreConflictError(`A token called ${token.name} exists already, or this token is known`, { cause: err });
      }
      throw err;
    }
  }

  async findTokenByHash(db: Db, hash: string): Promise<TokenRecord | undefined> {
    const row = await db.selectFrom('tokens').selectAll().where('hash', '=', hash).executeTakeFirst();
    return row ? toToken(row) : undefined;
  }

  async listTokens(db: Db): Promise<TokenRecord[]> {
    const rows = await db.selectFrom('tokens').selectAll().orderBy('name').execute();
    return rows.map(toToken);
  }

  async revokeToken(db: Db, name: string): Promise<boolean> {
    const result = await db.deleteFrom('tokens').where('name', '=', name).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }

  async touchToken(db: Db, id: string, at: number): Promise<void> {
    await db.updateTable('tokens').set({ last_used_at: at }).where('id', '=', id).execute();
  }

  async recordAudit(db: Db, entry: AuditRecord): Promise<void> {
    await db
      .insertInto('audit')
      .values({
        at: entry.at,
        token_name: entry.tokenName ?? null,
        role: entry.role ?? null,
        method: entry.method,
        path: entry.path,
        request_id: entry.requestId ?? null,
        deploy_id: entry.deployId ?? null,
        task_id: entry.taskId ?? null,
        source: entry.source,
        status: entry.status,
      })
      .execute();
  }

  async listAudit(db: Db, query: AuditQuery): Promise<StoredAudit[]> {
    let q = db.selectFrom('audit').selectAll();
    if (query.requestId !== undefined) q = q.where('request_id', '=', query.requestId);
    if (query.deployId !== undefined) q = q.where('deploy_id', '=', query.deployId);
    if (query.tokenName !== undefined) q = q.where('token_name', '=', query.tokenName);
    if (query.since !== undefined) q = q.where('at', '>=', query.since);
    if (query.until !== undefined) q = q.where('at', '<', query.until);
    if (query.succeeded) q = q.where('status', '>=', 200).where('status', '<', 300);
    const rows = await q.orderBy('at', 'desc').orderBy('id', 'desc').limit(query.limit).execute();
    return rows.map(toAudit);
  }

  async pruneAudit(db: Db, keep: number): Promise<number> {
    const cut = await db.selectFrom('audit').select('id').orderBy('id', 'desc').limit(1).offset(keep).executeTakeFirst();
    if (!cut) return 0;
    const result = await db.deleteFrom('audit').where('id', '<=', cut.id).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  // ---- raw rows, for `fledge store copy` ----

  async counts(db: Db): Promise<Record<CopiedTable, number>> {
    const out = {} as Record<CopiedTable, number>;
    for (const table of COPIED_TABLES) {
      const row = await db
        .selectFrom(table)
        .select(sql<number | string>`count(*)`.as('n'))
        .executeTakeFirstOrThrow();
      out[table] = Number(row.n);
    }
    return out;
  }

  async exportTable(db: Db, table: CopiedTable): Promise<Row[]> {
    const ordered =
      table === 'requests' || table === 'hosts'
        ? sql`id`
        : table === 'pending_deploys'
          ? sql`request_id`
          : table === 'meta'
            ? sql`key`
            : table === 'tokens'
              ? sql`name`
              : table === 'audit'
                ? sql`id`
                : table === 'webhooks'
                  ? sql`id`
                  : table === 'webhook_deliveries'
                    ? sql`seq`
                    : this.dialect.insertionOrder;
    const rows = await db
      .selectFrom(table)
      .select(COLUMNS[table].map((c) => sql.ref(c).as(c)))
      .orderBy(ordered)
      .execute();
    return rows.map((r) => normalizeRow(r as Record<string, unknown>));
  }

  async importTable(db: Db, table: CopiedTable, rows: Row[]): Promise<void> {
    const columns = COLUMNS[table];
    // Batches keep each statement well under both dialects' bound-parameter limits.
    const batch = Math.max(1, Math.floor(900 / columns.length));
    for (let i = 0; i < rows.length; i += batch) {
      const values = rows.slice(i, i + batch).map((r) => Object.fromEntries(columns.map((c) => [c, r[c] ?? null])));
      await db
        .insertInto(table)
        .values(values as never)
        .execute();
    }
    if (table === 'webhook_deliveries' && rows.length > 0) await this.dialect.followImportedSequence?.(db, table);
  }
}

function toDelivery(r: Selectable<Tables['webhook_deliveries']>): Delivery {
  return {
    seq: Number(r.seq),
    webhookId: r.webhook_id,
    type: r.type as Delivery['type'],
    createdAt: Number(r.created_at),
    nextAttemptAt: Number(r.next_attempt_at),
    attempts: Number(r.attempts),
    ...(r.last_error !== null ? { lastError: r.last_error } : {}),
    body: r.body,
  };
}

function normalizeRow(r: Record<string, unknown>): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(r)) {
    out[k] =
      v === null || v === undefined
        ? null
        : typeof v === 'number' || typeof v === 'string'
          ? v
          : typeof v === 'bigint'
            ? Number(v)
            : String(v);
  }
  return out;
}

function toHistory(row: Tables['deploys']): DeployHistoryEntry {
  const entry: DeployHistoryEntry = {
    requestId: row.request_id,
    deployId: row.id,
    deploy: JSON.parse(row.doc) as Deploy,
    createdAt: Number(row.created_at),
  };
  if (row.message !== null) entry.message = row.message;
  if (row.created_by !== null) entry.user = row.created_by;
  if (row.result !== null) entry.result = JSON.parse(row.result) as DeployResult;
  if (row.progress !== null) entry.progress = JSON.parse(row.progress) as DeployProgress;
  return entry;
}

/** A UNIQUE / PRIMARY KEY violation, in either dialect. */
function isUniqueViolation(err: unknown): boolean {
  const code = String((err as { code?: unknown } | undefined)?.code ?? '');
  return code === '23505' || code.startsWith('SQLITE_CONSTRAINT');
}

function toToken(row: Tables['tokens']): TokenRecord {
  if (!isRole(row.role)) throw new Error(`token ${row.name} has an unknown role ${row.role}`);
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    hash: row.hash,
    createdAt: Number(row.created_at),
    ...(row.created_by !== null ? { createdBy: row.created_by } : {}),
    ...(row.last_used_at !== null ? { lastUsedAt: Number(row.last_used_at) } : {}),
  };
}

function toAudit(row: Omit<Tables['audit'], 'id'> & { id: number }): StoredAudit {
  return {
    id: Number(row.id),
    at: Number(row.at),
    ...(row.token_name !== null ? { tokenName: row.token_name } : {}),
    ...(row.role !== null && isRole(row.role) ? { role: row.role } : {}),
    method: row.method,
    path: row.path,
    ...(row.request_id !== null ? { requestId: row.request_id } : {}),
    ...(row.deploy_id !== null ? { deployId: row.deploy_id } : {}),
    ...(row.task_id !== null ? { taskId: row.task_id } : {}),
    source: row.source,
    status: Number(row.status),
  };
}
