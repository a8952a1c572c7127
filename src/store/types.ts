// The state store, in domain words. One interface; sqlite/ (embedded default) and, later,
// postgres/ implement it; contract.case.ts runs against each.
import type { Deploy, RequestRecord, TaskRecord } from '../core/model.ts';
import type { DeployResult, PendingDeploy, DeployProgress } from '../core/deploy/types.ts';

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
}

/** Everything one decision writes, applied atomically. */
export interface ChangeSet {
  requests?: RequestRecord[];
  deleteRequests?: string[];
  deploys?: { deploy: Deploy; message?: string }[];
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
