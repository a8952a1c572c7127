// The state store, in domain words. One interface; sqlite/ (embedded default) and, later,
// postgres/ implement it; contract.case.ts runs against each.
import type { Deploy, RequestRecord, TaskRecord } from '../core/model.ts';
import type { DeployResult, PendingDeploy, DeployProgress } from '../core/deploy/types.ts';
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

/** Everything one decision writes, applied atomically. */
export interface ChangeSet {
  requests?: RequestRecord[];
  deleteRequests?: string[];
  deploys?: { deploy: Deploy; message?: string; user?: string }[];
  pending?: PendingDeploy[];
  deletePending?: string[];
  results?: { requestId: string; deployId: string; result: DeployResult; progress?: DeployProgress }[];
  tasks?: TaskRecord[];
}

export interface TaskQuery {
  requestId?: string;
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

export interface Store {
  migrate(): Promise<void>;
  apply(changes: ChangeSet): Promise<void>;

  getRequest(id: string): Promise<RequestRecord | undefined>;
  listRequests(): Promise<RequestRecord[]>;

  getDeploy(requestId: string, deployId: string): Promise<Deploy | undefined>;
  listDeployHistory(requestId: string): Promise<DeployHistoryEntry[]>;
  getDeployHistory(requestId: string, deployId: string): Promise<DeployHistoryEntry | undefined>;

  getPending(requestId: string): Promise<PendingDeploy | undefined>;
  listPending(): Promise<PendingDeploy[]>;

  getTask(taskId: string): Promise<TaskRecord | undefined>;
  listTasks(query?: TaskQuery): Promise<TaskRecord[]>;

  /** Adds a token; a StoreConflictError when its name or hash is taken. */
  createToken(token: TokenRecord): Promise<void>;
  findTokenByHash(hash: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;
  /** Deletes the token called `name`; false when there is none. */
  revokeToken(name: string): Promise<boolean>;
  touchToken(id: string, at: number): Promise<void>;

  recordAudit(entry: AuditRecord): Promise<void>;
  listAudit(query: AuditQuery): Promise<AuditRecord[]>;
  /** Keeps the newest `keep` audit records; returns how many were deleted. */
  pruneAudit(keep: number): Promise<number>;

  /** Hosts' states, by id. */
  listHosts(): Promise<HostRecord[]>;
  putHost(host: HostRecord): Promise<void>;

  /** The value stored under `key`, storing `value` first when there is none (atomic). */
  ensureMeta(key: string, value: string): Promise<string>;

  close(): Promise<void>;
}

export class StoreConflictError extends Error {}
