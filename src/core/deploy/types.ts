// Persisted shape of a pending deploy and its progress (deploys.md §5), plus the engine's
// inputs (observations) and outputs (actions). Written by the reconciler loop only.
import type { AgentPlacement, CleanupReason, Deploy, FledgeRequest, LbOpState, TaskId, TaskRecord } from '../model.ts';
import type { HostSnapshot } from '../placement.ts';

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
  /** tasks in the LB already, applied again for their weight (traffic steps) */
  reweigh?: string[];
  startedAt: number;
  message?: string;
}

export type AcceptanceState = 'PENDING' | 'SUCCEEDED' | 'FAILED';

/** What a decision-log entry is about (the keys of DecisionDetail). */
export type DecisionKind = DecisionDetail['kind'];
export const DECISION_KINDS = [
  'PHASE_CHANGED',
  'TASKS_LAUNCHED',
  'TASK_FAILED',
  'TASK_LOST',
  'TASK_RETRIED',
  'LB_OPERATION',
  'ACCEPTANCE_RESULT',
  'INTENT',
  'ENDED',
] as const satisfies readonly DecisionKind[];

/** The step's numbers when the decision was taken. */
export interface DecisionCounts {
  /** new-deploy tasks wanted by the end of the step (targetActiveInstances) */
  wanted: number;
  /** new-deploy tasks accepted by completed steps (currentActiveInstances) */
  accepted: number;
  newHealthy: number;
  newInLb: number;
  /** tasks of the active (old) deploy */
  oldHealthy: number;
  oldInLb: number;
}

/**
 * One entry of a deploy's decision log, written by the deploy step (step.ts) only. The text
 * (observed, action, reason) is for people; programs read the fields. Entries stored before
 * the fields existed have the text alone (`kind` absent).
 */
export type Decision = DecisionText & (DecisionFields | { kind?: undefined });

interface DecisionText {
  at: number;
  /** the phase the deploy is in once the decision is taken; END for its end */
  phase: DeployPhase | 'END';
  step: number;
  /** what was seen */
  observed: string;
  /** what was done */
  action: string;
  /** why */
  reason: string;
}

/** The fields of an entry, keyed by kind (counts are stamped on every entry). */
export type DecisionFields = { counts: DecisionCounts } & DecisionDetail;

export type DecisionDetail =
  | { kind: 'PHASE_CHANGED'; from: DeployPhase; to: DeployPhase; operationId?: string; intent?: 'update' }
  | { kind: 'TASKS_LAUNCHED'; taskIds: string[] }
  | { kind: 'TASK_FAILED'; taskId: string; failure: FailureReason }
  /** a new task was lost with its host: replaced, not counted as a failure */
  | { kind: 'TASK_LOST'; taskId: string; host: string }
  /** a new task that died of something that is not its fault (a port taken), started again uncounted */
  | { kind: 'TASK_RETRIED'; taskId: string; why: 'PORT_IN_USE' }
  | { kind: 'LB_OPERATION'; operationId: string; adding: number; removing: number }
  | { kind: 'ACCEPTANCE_RESULT'; check: string; state: AcceptanceState }
  | { kind: 'INTENT'; intent: 'advance' }
  | { kind: 'ENDED'; from: DeployPhase; state: DeployResultState; intent?: 'cancel' | 'reject' };

export interface TrafficStepPlan {
  /** percent asked for (trafficSteps[i]) */
  percent: number;
  /** new tasks in the LB during the step */
  newTasks: number;
  /** the weight of each new task (old tasks: NORMAL_WEIGHT) */
  newWeight: number;
  /** the share (0..1) these weights give: what the counters are held to */
  share: number;
  /** one new task's load over one old task's */
  loadRatio: number;
}

export interface TrafficPlan {
  /** old tasks in the LB throughout the traffic steps */
  oldTasks: number;
  steps: TrafficStepPlan[];
}

/** Persisted with the deploy's progress: the plan, and which step's weights the LB has. */
export interface TrafficProgress {
  plan: TrafficPlan;
  /** the step whose weights the balancer confirmed (its LB operation succeeded) */
  appliedStep?: number;
  /** when it confirmed them: the counters are read from then on */
  since?: number;
  /** the step's last traffic-share verdict (logged when it changes) */
  verdict?: { state: AcceptanceState; message: string };
}

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
  /** new tasks lost with their host: replaced, not counted against allowedTasksFailuresPerGroup */
  lostDeployTasks?: TaskId[];
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
  /**
   * The step a POST /api/deploys/update approved in advance (Singularity's Advance button): its
   * MANUAL acceptance (or manual checks) passes without another call. Written by the deploy step.
   */
  approvedStep?: number;
  /** new tasks that died because a port was taken (EADDRINUSE), replaced without counting; absent: none */
  portInUseRetries?: { taskId: string; instanceNo: number }[];
  lbUpdates: LbUpdate[];
  pendingLbUpdate?: LbUpdate;
  /** a deploy with trafficSteps: its plan and which step's weights are in the LB (traffic.ts) */
  traffic?: TrafficProgress;
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
  /** a traffic step whose weights are applied: what the balancer counted since then */
  traffic?: ObservedTraffic;
  /** every host, as placement sees it (tasks of other requests placed but not started included) */
  hosts: readonly HostSnapshot[];
  /** server settings the engine needs */
  settings: EngineSettings;
}

export interface ObservedTraffic {
  deployId: string;
  /** the counters were summed from here (epoch ms) */
  from: number;
  /** requests the new deploy answered, of all the service's requests */
  newRequests: number;
  requests: number;
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
  /**
   * At most this many task records are created for one request in one pass; the rest follow
   * in the next pass, at once, so a large scale-up never holds the loop (or the API) long.
   */
  launchBatchSize: number;
  /** names of server-wide acceptance hooks that apply to every CHECKS deploy */
  serverChecks: string[];
  /** how often PENDING server hooks are asked again: the shortest of their intervals, at most 5 s */
  serverCheckIntervalSeconds: number;
  /** the zone SCHEDULED requests without scheduleTimeZone are read in (default UTC) */
  scheduleTimeZone?: string;
  /** how long an unwanted run may finish when its request does not say (default 24 h) */
  killOldNonLongRunningTasksAfterMillis?: number;
  /** agentPlacement of requests that do not say (--default-agent-placement) */
  defaultAgentPlacement: AgentPlacement;
}

export type Action =
  | { kind: 'startTask'; taskId: string }
  | { kind: 'stopTask'; taskId: string; reason: CleanupReason }
  /** reweigh: members applied again so they take the weight the persisted state gives them */
  | { kind: 'lbApply'; operationId: string; add: string[]; remove: string[]; reweigh?: string[] }
  | { kind: 'lbCancel'; operationId: string }
  /** ask the named checks (not yet final in this step) again */
  | { kind: 'runChecks'; deployId: string; step: number; names: string[] };
