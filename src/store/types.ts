// The state store, in domain words. One interface; sqlite/ (embedded default, one scheduler)
// and postgres/ (several schedulers, one leader) implement it over the dialect-neutral
// queries in sql/; contract.case.ts runs against each.
import type { Deploy, RequestRecord, TaskRecord } from '../core/model.ts';
import type { DeployResult, PendingDeploy, DeployProgress } from '../core/deploy/types.ts';
import type { Webhook, WebhookEvent, WebhookType } from '../core/webhooks.ts';
import type { Role } from '../auth/roles.ts';
import type { HostRecord } from '../hosts/types.ts';

export interface DeployHistoryEntry {
  requestId: string;
  deployId: string;
  deploy: Deploy;
  /** set once the deploy has ended */
  result?: DeployResult;
  /** the final (or current) progress, decision log included */
  progress?: DeployProgress;
  createdAt: number;
  message?: string;
  /** the name of the token that created the deploy (Singularity's deployMarker.user) */
  user?: string;
}

/** A deploy's history entry without its progress (what a request parent shows). */
export type DeployEntry = Omit<DeployHistoryEntry, 'progress'>;

export interface DeployKey {
  requestId: string;
  deployId: string;
}

/** A request's last ended deploy: which, and how it ended. */
export interface LastDeployResult {
  deployId: string;
  result: DeployResult;
}

/** Everything one decision writes, applied atomically. */
export interface ChangeSet {
  requests?: RequestRecord[];
  deleteRequests?: string[];
  deploys?: { deploy: Deploy; message?: string; user?: string }[];
  pending?: PendingDeploy[];
  deletePending?: string[];
  results?: { requestId: string; deployId: string; result: DeployResult; progress?: DeployProgress }[];
  tasks?: TaskRecord[];
  /** task records to delete (a task that waited for a host and got one under a new id); after `tasks` */
  deleteTasks?: string[];
  /** queued for every webhook that wants them, in this order, in the same transaction */
  webhookEvents?: WebhookEvent[];
}

/** A queued webhook delivery. */
export interface Delivery {
  /** store-wide order; also the delivery id receivers de-duplicate on */
  seq: number;
  webhookId: string;
  type: WebhookType;
  createdAt: number;
  nextAttemptAt: number;
  attempts: number;
  lastError?: string;
  /** the JSON body, exactly as sent */
  body: string;
}

/** What task-history retention removes (see Store.listExpiredTasks). */
export interface ExpiredTaskQuery {
  doneBefore: number;
  keepPerRequest: number;
  /** the kept count applies only to tasks done before this (a burst of runs keeps its logs a while) */
  minAgeBefore: number;
  limit: number;
}

export interface TaskQuery {
  requestId?: string;
  /** tasks of any of these requests (at most a list chunk's worth: one query for many views) */
  requestIds?: readonly string[];
  deployId?: string;
  /** only tasks in a live state */
  live?: boolean;
  /** live tasks plus those that ended at or after this time */
  endedSince?: number;
  limit?: number;
}

/** An API token. The token itself is shown once when made and never stored: only its hash. */
export interface TokenRecord {
  /** short random id, stable for the token's life */
  id: string;
  /** unique among tokens; what the audit log and deployMarker.user show */
  name: string;
  role: Role;
  /** SHA-256 of the whole token, lowercase hex */
  hash: string;
  createdAt: number;
  /** the name of the token that made this one (absent for the admin token file's) */
  createdBy?: string;
  /** updated at most about once a minute */
  lastUsedAt?: number;
}

/** An audit entry as the store returns it: with its id. */
export type StoredAudit = AuditRecord & { id: number };

/** One mutating API call, allowed or refused. */
export interface AuditRecord {
  /** assigned by the store, increasing */
  id?: number;
  at: number;
  /** absent when no valid token was sent */
  tokenName?: string;
  role?: Role;
  method: string;
  path: string;
  requestId?: string;
  deployId?: string;
  taskId?: string;
  /** the client's address */
  source: string;
  /** the HTTP status of the answer */
  status: number;
}

export interface AuditQuery {
  requestId?: string;
  deployId?: string;
  tokenName?: string;
  /** at >= since */
  since?: number;
  /** at < until */
  until?: number;
  /** only calls answered 2xx */
  succeeded?: boolean;
  /** newest first, at most this many */
  limit: number;
}

/**
 * The leadership a write is made under: the change set is applied only while `holder` still
 * holds the lease with this `epoch` (checked in the write's own transaction).
 */
export interface Fence {
  holder: string;
  epoch: number;
}

/** Who a scheduler is, as it registers itself (the `schedulers` list of GET /api/state). */
export interface SchedulerInfo {
  /** unique per process start */
  id: string;
  /** the API URL other servers and users reach it at */
  url: string;
  hostname: string;
  /** /etc/machine-id and hostname: process tasks are only manageable on their own machine */
  machine: string;
  pid: number;
  dataDir: string;
  version: string;
}

export interface SchedulerView extends SchedulerInfo {
  startedAt: number;
  /** the store's clock, millis */
  heartbeatAt: number;
  /** how long ago that was, by the store's clock */
  heartbeatAgeMs: number;
}

export interface Lease extends Fence {
  url: string;
  /** when this holder got the lease (the store's clock, millis) */
  since: number;
  /** the store's clock, millis */
  expiresAt: number;
}

/** A one-line notification between the servers sharing a store (PostgreSQL NOTIFY). */
export type NotifyChannel = 'fledge_wake' | 'fledge_events' | 'fledge_lease';

/**
 * Coordination between the schedulers sharing one store. SQLite: one scheduler, whose lease
 * is always held and whose notifications stay in the process.
 */
export interface ClusterStore {
  /** false: one scheduler per store (SQLite), leadership is trivially held */
  readonly shared: boolean;
  /**
   * Take the lease if it is free, expired, or its holder has no connection to the store any
   * more (it died); keep it if `self` holds it. Undefined: another scheduler holds it.
   */
  acquireLease(self: SchedulerInfo, termMs: number): Promise<Lease | undefined>;
  /** Extend a lease still held; undefined when it was lost (expired or taken over). */
  renewLease(lease: Fence, termMs: number): Promise<Lease | undefined>;
  /** Give the lease up at once (a clean stop), so another scheduler takes over now. */
  releaseLease(lease: Fence): Promise<void>;
  /** The lease as it stands, expired or not; undefined when nobody ever held one. */
  currentLease(): Promise<(Lease & { expired: boolean }) | undefined>;
  /** Register or refresh this scheduler's row. */
  heartbeat(self: SchedulerInfo): Promise<void>;
  listSchedulers(): Promise<SchedulerView[]>;
  removeScheduler(id: string): Promise<void>;
  /** Delivered to every server listening (this one included); inside locked(), at its commit. */
  notify(channel: NotifyChannel, payload: string): Promise<void>;
  /** Subscribe; `onReconnect` runs when the subscription came back after a lost connection. */
  listen(channel: NotifyChannel, onMessage: (payload: string) => void, onReconnect?: () => void): Promise<() => Promise<void>>;
}

/** The tables `fledge store copy` moves, in a dependency-free order. */
export const COPIED_TABLES = [
  'requests',
  'deploys',
  'pending_deploys',
  'tasks',
  'hosts',
  'meta',
  'tokens',
  'audit',
  'webhooks',
  'webhook_deliveries',
] as const;
export type CopiedTable = (typeof COPIED_TABLES)[number];
export type Row = Record<string, string | number | null>;

/** Raw rows for `fledge store copy`: dialect-neutral values, in insertion order. */
export interface StoreRows {
  counts(): Promise<Record<CopiedTable, number>>;
  /** Every row of every copied table, read in one consistent snapshot. */
  exportAll(): Promise<Record<CopiedTable, Row[]>>;
  /** Insert rows in one transaction (into an empty store). */
  importAll(rows: Record<CopiedTable, Row[]>): Promise<void>;
}

export interface Store {
  /** `sqlite:<file>` or the PostgreSQL URL without its password */
  readonly description: string;
  migrate(): Promise<void>;
  /** Atomic: all of it or nothing. With `fence`, only while that lease is held (else FencedError). */
  apply(changes: ChangeSet, fence?: Fence): Promise<void>;
  /**
   * Run `fn` holding the lock of `key` (a request id): one writer at a time per request, across
   * every scheduler sharing the store. On PostgreSQL `fn`'s reads and writes through this store
   * are one transaction (committed when `fn` resolves, rolled back when it throws).
   */
  locked<T>(key: string, fn: () => Promise<T>): Promise<T>;

  getRequest(id: string): Promise<RequestRecord | undefined>;
  listRequests(): Promise<RequestRecord[]>;

  getDeploy(requestId: string, deployId: string): Promise<Deploy | undefined>;
  listDeployHistory(requestId: string): Promise<DeployHistoryEntry[]>;
  getDeployHistory(requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined>;
  /**
   * The entries of these deploys, in one query and without their progress (a list's chunk:
   * at most a few hundred keys); in no particular order, the unknown ones left out.
   */
  listDeployEntries(keys: readonly DeployKey[]): Promise<DeployEntry[]>;
  /** each of these requests' last ended deploy (the newest with a result); none for a request without */
  lastDeployResults(requestIds: readonly string[]): Promise<Map<string, LastDeployResult>>;

  getPending(requestId: string): Promise<PendingDeploy | undefined>;
  listPending(): Promise<PendingDeploy[]>;

  getTask(taskId: string): Promise<TaskRecord | undefined>;
  listTasks(query?: TaskQuery): Promise<TaskRecord[]>;

  /** The newest task of `requestId` started for run `runId`. */
  findTaskByRunId(requestId: string, runId: string): Promise<TaskRecord | undefined>;
  /**
   * Finished tasks that retention removes: done before `doneBefore` (all of them), or beyond the
   * newest `keepPerRequest` finished tasks of their request; at most `limit`, oldest first.
   */
  listExpiredTasks(q: ExpiredTaskQuery): Promise<TaskRecord[]>;
  deleteTasks(ids: string[]): Promise<void>;

  listWebhooks(): Promise<Webhook[]>;
  /** true when it was new (Singularity's CREATED), false when it replaced one (EXISTED) */
  saveWebhook(webhook: Webhook): Promise<boolean>;
  /** false when there was none; its queued deliveries go with it */
  deleteWebhook(id: string): Promise<boolean>;
  /** queued deliveries of one webhook, oldest first */
  listDeliveries(webhookId: string, limit: number): Promise<Delivery[]>;
  /** the oldest queued delivery of each webhook (the only one that may be sent) */
  headDeliveries(): Promise<Delivery[]>;
  countDeliveries(): Promise<Record<string, number>>;
  /** sent (or dropped): removed from the queue */
  removeDelivery(seq: number): Promise<void>;
  failDelivery(seq: number, nextAttemptAt: number, error: string): Promise<void>;
  /** Adds a token; a StoreConflictError when its name or hash is taken. */
  createToken(token: TokenRecord): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  /** Deletes the token called `name`; false when there is none. */
  revokeToken(name: string): Promise<boolean>;
  touchToken(id: string, at: number): Promise<void>;

  recordAudit(entry: AuditRecord): Promise<void>;
  listAudit(query: AuditQuery): Promise<StoredAudit[]>;
  /** Keeps the newest `keep` audit records; returns how many were deleted. */
  pruneAudit(keep: number): Promise<number>;

  /** Hosts' states, by id. */
  listHosts(): Promise<HostRecord[]>;
  putHost(host: HostRecord): Promise<void>;

  /** The value stored under `key`, storing `value` first when there is none (atomic). */
  ensureMeta(key: string, value: string): Promise<string>;

  readonly cluster: ClusterStore;
  readonly rows: StoreRows;

  close(): Promise<void>;
}

export class StoreConflictError extends Error {}

/**
 * The store cannot be reached right now (connection refused or lost, database restarting):
 * transient. The loop retries with back-off; the API answers 503 with Retry-After.
 */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** A fenced write refused: the lease it was made under is no longer held. */
export class FencedError extends Error {
  constructor(fence: Fence) {
    super(`Not the leader any more: the lease of epoch ${fence.epoch} held by ${fence.holder} was lost; the write was refused`);
    this.name = 'FencedError';
  }
}

/**
 * A store whose writes all carry `fence`; reads and everything else pass through. `valid`, the
 * leader's own view of its lease, refuses a write before the store is asked: no decision is
 * persisted once the lease may have run out, even while the store would still take it.
 */
export function fencedStore(store: Store, fence: Fence, onFenced?: (err: FencedError) => void, valid: () => boolean = () => true): Store {
  const apply = async (changes: ChangeSet) => {
    try {
      if (!valid()) throw new FencedError(fence);
      await store.apply(changes, fence);
    } catch (err) {
      if (err instanceof FencedError) onFenced?.(err);
      throw err;
    }
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'apply') return apply;
      const value = Reflect.get(target, prop, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
