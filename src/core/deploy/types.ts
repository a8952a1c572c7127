// Persisted shape of a pending deploy and its progress (deploys.md §5), plus the engine's
// inputs (observations) and outputs (actions). Written by the reconciler loop only.
import type { CleanupReason, Deploy, FledgeRequest, LbOpState, TaskId, TaskRecord } from '../model.ts';

export const DEPLOY_PHASES = ['LAUNCH', 'HEALTH', 'LB_UPDATE', 'ACCEPTANCE', 'ADVANCE'] as const;
export type DeployPhase = (typeof DEPLOY_PHASES)[number];

export const DEPLOY_RESULT_STATES = ['SUCCEEDED', 'FAILED', 'FAILED_INTERNAL_STATE', 'OVERDUE', 'CANCELED'] as const;
export type DeployResultState = (typeof DEPLOY_RESULT_STATES)[number];

export const FAILURE_REASONS = [
  'TASK_FAILED_ON_STARTUP',
  'TASK_FAILED_HEALTH_CHECKS',
  'TASK_COULD_NOT_BE_SCHEDULED',
  'TASK_NEVER_ENTERED_RUNNING',
  'TASK_EXPECTED_RUNNING_FINISHED',
  'LOAD_BALANCER_UPDATE_FAILED',
  'ACCEPTANCE_CHECK_FAILED',
  'ACCEPTANCE_TIMED_OUT',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

export interface DeployFailure {
  reason: FailureReason;
  taskId?: TaskId;
  message: string;
}

export interface DeployResult {
  deployState: DeployResultState;
  message: string;
  deployFailures: DeployFailure[];
  timestamp: number;
}

export interface LbUpdate {
  loadBalancerRequestId: string;
  state: LbOpState;
  add: string[];
  remove: string[];
  startedAt: number;
  message?: string;
}

export interface Decision {
  at: number;
  phase: DeployPhase | 'END';
  step: number;
  /** what was seen */
  observed: string;
  /** what was done */
  action: string;
  /** why */
  reason: string;
}

export type AcceptanceState = 'PENDING' | 'SUCCEEDED' | 'FAILED';

export interface DeployProgress {
  phase: DeployPhase;
  /** 1-based */
  step: number;
  totalSteps: number;
  /** new-deploy tasks wanted by the end of this step */
  targetActiveInstances: number;
  /** new-deploy tasks accepted so far (completed steps) */
  currentActiveInstances: number;
  stepLaunchComplete: boolean;
  failedDeployTasks: TaskId[];
  /** last change */
  timestamp: number;
  canary: boolean;
  stepStartedAt: number;
  /** when every task of the step was healthy (and in the LB) */
  stepReadyAt?: number;
  /** task deaths counted against allowedTasksFailuresPerGroup in this step */
  stepFailures: number;
  /** deadline of the current wait (OVERDUE, LB timeout, acceptance timeout) */
  deadline?: number;
  /** old instance numbers already shut down by canary advances */
  retiredOldInstances: number[];
  lbUpdates: LbUpdate[];
  pendingLbUpdate?: LbUpdate;
  stepAcceptanceResults: Record<string, AcceptanceState>;
  acceptanceResultMessageHistory: string[];
  decisionLog: Decision[];
}

/** Intent recorded by the API, consumed by the engine. */
export type DeployIntent =
  | { kind: 'cancel'; at: number; message?: string }
  | { kind: 'advance'; at: number; message?: string }
  | { kind: 'reject'; at: number; message?: string }
  | { kind: 'update'; at: number; targetActiveInstances: number };

export interface PendingDeploy {
  requestId: string;
  deployId: string;
  startedAt: number;
  message?: string;
  unpauseOnSuccessfulDeploy: boolean;
  /** replaces the request when the deploy succeeds */
  updatedRequest?: FledgeRequest;
  intents: DeployIntent[];
  progress: DeployProgress;
}

/** What the engine sees of the world for one request. */
export interface RequestObservation {
  request: FledgeRequest;
  requestState: string;
  activeDeploy?: Deploy;
  pendingDeploy?: Deploy;
  pending?: PendingDeploy;
  /** live tasks and tasks that ended recently (with their final state) */
  tasks: TaskRecord[];
  /** load balancer operation states by id, as last seen */
  lbOps: Record<string, { state: LbOpState; message?: string }>;
  /** results of ended deploys that still have tasks (why those tasks are being cleaned up) */
  endedDeploys: Record<string, DeployResultState>;
  /** latest acceptance-check answers for the pending deploy's current step */
  checkResults: CheckResult[];
  /** server settings the engine needs */
  settings: EngineSettings;
}

export interface CheckResult {
  deployId: string;
  step: number;
  name: string;
  state: AcceptanceState;
  message: string;
  at: number;
}

export interface EngineSettings {
  /** grace between SIGTERM and SIGKILL */
  killGraceMillis: number;
  /** crash-loop backoff bounds */
  backoffBaseMillis: number;
  backoffMaxMillis: number;
  /** how often to retry starting tasks that wait for capacity */
  capacityRetryMillis: number;
  decisionLogLimit: number;
  /** names of server-wide acceptance hooks that apply to every CHECKS deploy */
  serverChecks: string[];
  /** how often PENDING server hooks are asked again (the shortest of their intervals) */
  serverCheckIntervalSeconds: number;
}

export type Action =
  | { kind: 'startTask'; taskId: string }
  | { kind: 'stopTask'; taskId: string; reason: CleanupReason }
  | { kind: 'lbApply'; operationId: string; add: string[]; remove: string[] }
  | { kind: 'lbCancel'; operationId: string }
  /** ask the named checks (not yet final in this step) again */
  | { kind: 'runChecks'; deployId: string; step: number; names: string[] };
