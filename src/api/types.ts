// The API's response types: one definition, which the server's view builders (views.ts and
// friends) are declared to return and the client, CLI and UI read. A field the server stops
// sending, or sends in another shape, is a type error on both sides.
import type { Decision, DeployFailure, DeployProgress, DeployResult, DeployResultState } from '../core/deploy/types.ts';
import type {
  Deploy,
  FledgeRequest,
  HealthResult,
  RequestState,
  TaskHealth,
  TaskId,
  TaskLbState,
  TaskRun,
  TaskState,
} from '../core/model.ts';
import type { StoredAudit } from '../store/types.ts';
import type { LogChunk as RuntimeLogChunk } from '../runtimes/types.ts';
import type { FledgeEvent } from '../core/events.ts';
import type { Role } from '../auth/roles.ts';
import type { FieldChange } from '../core/deploy/diff.ts';
import type { PreviewEstimate } from '../core/deploy/preview.ts';
import type { TrafficView, VersionTrafficView } from './traffic-view.ts';
import type { LeaderView, SchedulerEntry as SchedulerView } from '../core/leadership-view.ts';

export type { LeaderView, SchedulerView };
export type { Decision, DeployFailure, DeployProgress, DeployResult, DeployResultState, Role, TaskId, TaskState };
export type { FieldChange, PreviewEstimate, TrafficView, VersionTrafficView };

// ---- responses: the fields callers rely on ----

/**
 * A sub-document the server writes in Singularity's shape with Fledge's values alongside (a
 * request, a deploy, a deploy's progress and result: singularity-shapes.ts); the client reads it
 * back under Fledge's own type through fledgeFields(). `Wire<T, K>` is a view T as the server
 * builds it: every field checked as declared, the fields K in that shape.
 */
export type SingularityShaped = Record<string, unknown>;
export type Wire<T, K extends keyof T> = Omit<T, K> & { [P in keyof Pick<T, K>]: SingularityShaped };

export interface DeployMarker {
  requestId: string;
  deployId: string;
  timestamp: number;
  message?: string;
  /** the name of the token that started the deploy */
  user?: string;
}

/** Who did what to a deploy after it started (from the audit log). */
export interface DeployAction {
  action: 'advance' | 'reject' | 'cancel' | 'update';
  user?: string;
  at: number;
}

export interface TaskIdGroups {
  healthy: TaskId[];
  notYetHealthy: TaskId[];
  pending: TaskId[];
  cleaning: TaskId[];
  loadBalanced: TaskId[];
  killed: TaskId[];
}

export interface PendingDeployView {
  deployMarker: DeployMarker;
  currentDeployState: string;
  updatedRequest?: FledgeRequest;
  deployProgress: DeployProgress;
  intents?: unknown[];
}

export type PendingDeployWire = Wire<PendingDeployView, 'updatedRequest' | 'deployProgress'>;

export type RequestParentWire = Omit<
  Wire<RequestParent, 'request' | 'activeDeploy' | 'pendingDeploy'>,
  'pendingDeployState' | 'lastDeployResult'
> & {
  pendingDeployState?: PendingDeployWire;
  lastDeployResult?: Wire<LastDeployResultView, 'deployResult'>;
};

/** A request's last ended deploy (Fledge): kept after the deploy ended, whatever its result. */
export interface LastDeployResultView {
  deployId: string;
  deployResult: DeployResult;
}

export interface RequestParent {
  request: FledgeRequest;
  state: RequestState;
  requestDeployState?: { requestId: string; activeDeploy?: DeployMarker; pendingDeploy?: DeployMarker };
  activeDeploy?: Deploy;
  pendingDeploy?: Deploy;
  pendingDeployState?: PendingDeployView;
  /** the last deploy that ended (succeeded, failed or was cancelled), for lists to show */
  lastDeployResult?: LastDeployResultView;
  bounce?: { startedAt: number; message?: string };
  /** per instance number: crashes (and unhealthy tasks) in a row, and no new start before `until` */
  crashLoopBackoff?: Record<string, { failures: number; until: number; lastTaskId: string; portInUse?: number }>;
  taskIds: TaskIdGroups;
  instanceCounts?: { desired: number; healthy: number; total: number };
  timestamp?: number;
  /** run-to-completion requests: the next due time, runs waiting, due times skipped */
  nextRunAt?: number;
  pendingRequests?: PendingRunView[];
  skippedRuns?: { count: number; lastDueAt: number; runningTaskId: string };
  /** on writes: what the server accepted but ignored or changed */
  warnings?: string[];
}

/** SingularityPendingRequest of a queued run. */
export interface PendingRunView {
  requestId: string;
  deployId?: string;
  timestamp: number;
  pendingType: string;
  runId: string;
  cmdLineArgsList?: string[];
  message?: string;
  /** what the run asked for beyond its deploy's */
  resources?: RunNowBody['resources'];
  envOverrides: Record<string, string>;
  /** a run scheduled for later */
  runAt?: number;
  /** the name of the token that asked for it */
  user?: string;
}

/** SingularityTaskState: a run's task, or its place in the queue. */
export interface RunState {
  taskId?: TaskId;
  pendingTaskId?: { id: string; nextRunAt: number };
  runId: string;
  currentState?: TaskState;
  taskHistory: { timestamp: number; taskState: TaskState; statusMessage?: string }[];
  pending: boolean;
  queuePosition?: number;
  exitCode?: number | null;
  durationMillis?: number;
}

export interface RunNowBody {
  runId?: string;
  commandLineArgs?: string[];
  message?: string;
  envOverrides?: Record<string, string>;
  resources?: { cpus?: number; memoryMb?: number; numPorts?: number; diskMb?: number };
}

export interface TaskView {
  taskId: TaskId;
  state: TaskState;
  ports: number[];
  health: TaskHealth;
  lb: TaskLbState;
  loadBalancerState?: TaskLbState;
  healthcheckResults?: HealthResult[];
  taskUpdates?: { taskState: TaskState; timestamp: number; statusMessage?: string }[];
  exitCode?: number | null;
  signal?: string | null;
  /** it died at start because a port it needed was taken (EADDRINUSE); started again, uncounted */
  portInUse?: boolean;
  cleanup?: { reason: string; timestamp: number; message?: string };
  /** why it has not started: no host fits it yet (its taskId.host is `unplaced`), or its host waits */
  waitingReason?: string;
  /** lost because this host stopped answering */
  lostWithHost?: string;
  runningAt?: number;
  doneAt?: number;
  /** run-to-completion requests: why and how it runs */
  run?: TaskRun;
  /** the service's own process */
  pid?: number;
  /** the task's process group (its wrapper's pid): signal -pgid to reach all of it */
  pgid?: number;
  sandbox?: string;
  /** the host it runs on (`local` for processes), its address, and a container's name */
  host?: string;
  address?: string;
  container?: string;
  // Singularity's task history fields, beside Fledge's
  updatedAt?: number;
  lastTaskState?: string;
  loadBalancerUpdates?: SingularityShaped[];
  directory?: string;
  containerId?: string;
  shellCommandHistory?: unknown[];
  taskMetadata?: unknown[];
}

export type HostStateName = 'ACTIVE' | 'FROZEN' | 'DECOMMISSIONING' | 'DECOMMISSIONED' | 'UNREACHABLE';

export interface HostView {
  id: string;
  kind: 'process' | 'docker';
  runtimes: string[];
  address: string;
  endpoint?: string;
  state: HostStateName;
  adminState: { state: HostStateName; timestamp: number; user?: string; message?: string };
  firstSeenAt: number;
  reachability: { reachable: boolean; lastPingAt?: number; lastOkAt?: number; lastError?: string; failingSince?: number };
  capacity: { cpus: number; memoryMb: number; ports: { from: number; to: number; count: number } } | null;
  reserved: { cpus: number; memoryMb: number; ports: number };
  tasks: string[];
  attributes: Record<string, string>;
  /** attributes that reserve the host for the requests that require or allow them */
  reservedAttributes?: Record<string, string>;
  rackId: string;
  warnings?: string[];
}

export type DeployHistoryWire = Wire<DeployHistoryView, 'deploy' | 'deployResult' | 'deployProgress'>;

export interface DeployHistoryView {
  deployMarker: DeployMarker;
  deploy: Deploy;
  deployResult?: DeployResult;
  deployProgress?: DeployProgress;
  decisionLog?: Decision[];
  /** the result state, or WAITING while pending */
  deployState?: DeployResultState | 'WAITING';
  /** advance, reject, cancel and update calls on this deploy, oldest first */
  actions?: DeployAction[];
}

/** GET /api/auth/whoami */
export interface Whoami {
  /** absent with --no-auth, or for no valid token */
  name?: string;
  role?: Role;
  /** false when the server runs with --no-auth */
  auth: boolean;
}

export interface TokenView {
  id: string;
  name: string;
  role: Role;
  createdAt: number;
  createdBy?: string;
  lastUsedAt?: number;
}

/** POST /api/tokens: the token itself is in this answer and nowhere else. */
export interface CreatedToken extends TokenView {
  token: string;
}

/** GET /api/audit: the entries as stored. */
export type AuditEntry = StoredAudit;

export interface AuditFilter {
  requestId?: string;
  deployId?: string;
  tokenName?: string;
  /** epoch millis, inclusive */
  since?: number;
  /** epoch millis, exclusive */
  until?: number;
  limit?: number;
}

export interface PlanStep {
  step: number;
  targetActiveInstances: number;
  newInstances: number;
  oldInstances: number;
  loadBalanced: { new: number; old: number };
  /** the new deploy's share of the requests during the step's acceptance */
  trafficShare?: number | null;
  /** a traffic step (canaryDeploySettings.trafficSteps): its weights and the fewest requests it is judged on */
  traffic?: { percent: number; newWeight: number; oldWeight: number; loadRatio: number; minRequests: number };
  /** check names (or specs) */
  acceptance: { mode: string; waitMillis?: number; checks?: unknown[] };
  waitsFor?: 'nothing' | 'approval' | 'timer' | 'checks';
  /** what the step does, in words */
  description?: string;
}

export interface DeployPlan {
  steps: PlanStep[];
  etaSeconds: { min: number; max: number };
  /** machine time apart from waits for people and timers */
  estimate?: PreviewEstimate;
  /** the deploy it is compared with */
  activeDeployId?: string;
  /** field by field against the active deploy */
  diff?: FieldChange[];
  requestDiff?: FieldChange[];
  warnings: string[];
}

/** GET /api/sandbox/{taskId}/read: the runtime's chunk (with ?tail=N, `size` is the file's whole size). */
export type LogChunk = RuntimeLogChunk;

export interface StateCounts {
  activeRequests: number;
  pausedRequests: number;
  deletingRequests: number;
  pendingDeploys: number;
  activeTasks: number;
  healthyTasks: number;
  cleaningTasks: number;
  waitingTasks: number;
  /** the scheduler that leads (null while none does: an election is under way) */
  leader?: LeaderView | null;
  /** every scheduler sharing the store, with its last heartbeat */
  schedulers?: SchedulerView[];
}

/** One server-sent event; `data` is the parsed JSON (or the raw text if it is not JSON). */
export interface FledgeStreamEvent {
  event: string;
  data: unknown;
  id?: string;
}

/** `data` of `deploy` events: the engine's event as published. */
export type DeployEventData = Extract<FledgeEvent, { type: 'DEPLOY' }>;

/** `data` of `task` events. */
export interface TaskEventData {
  type: 'TASK';
  at: number;
  task: TaskView;
}

/** `data` of `request` events (the stored record, not the request parent). */
export interface RequestEventData {
  type: 'REQUEST';
  at: number;
  request: { request: FledgeRequest; state: RequestState; [key: string]: unknown };
}
