// The state store, in domain words. One interface; sqlite/ (embedded default) and, later,
// postgres/ implement it; contract.case.ts runs against each.
import type { Deploy, RequestRecord, TaskRecord } from '../core/model.ts';
import type { DeployResult, PendingDeploy, DeployProgress } from '../core/deploy/types.ts';
import type { Webhook, WebhookEvent, WebhookType } from '../core/webhooks.ts';

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

  /** The newest task of `requestId` started for run `runId`. */
  findTaskByRunId(requestId: string, runId: string): Promise<TaskRecord | undefined>;
  /**
   * Finished tasks that retention removes: done before `doneBefore` (all of them), or beyond the
   * newest `keepPerRequest` finished tasks of their request; at most `limit`, oldest first.
   */
  listExpiredTasks(q: { doneBefore: number; keepPerRequest: number; minAgeBefore: number; limit: number }): Promise<TaskRecord[]>;
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

  close(): Promise<void>;
}

export class StoreConflictError extends Error {}
