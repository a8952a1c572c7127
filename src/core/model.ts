// Domain model: Singularity-shaped requests, deploys and tasks, after validation and
// normalisation (legacy fields mapped, defaults applied). Pure data, no behaviour.
import type { ContainerInfo } from './container.ts';

export const REQUEST_TYPES = ['SERVICE', 'WORKER', 'SCHEDULED', 'ON_DEMAND', 'RUN_ONCE'] as const;
export type RequestType = (typeof REQUEST_TYPES)[number];

/** Singularity's agentPlacement (SlavePlacement): how a request's tasks share hosts. */
export const AGENT_PLACEMENTS = [
  'SEPARATE',
  'OPTIMISTIC',
  'GREEDY',
  'SEPARATE_BY_DEPLOY',
  'SEPARATE_BY_REQUEST',
  'SPREAD_ALL_SLAVES',
  'SPREAD_ALL_AGENTS',
] as const;
export type AgentPlacement = (typeof AGENT_PLACEMENTS)[number];

export const REQUEST_STATES = ['ACTIVE', 'PAUSED', 'DEPLOYING_TO_UNPAUSE', 'DELETING', 'DELETED', 'FINISHED'] as const;
export type RequestState = (typeof REQUEST_STATES)[number];

export interface FledgeRequest {
  id: string;
  requestType: RequestType;
  instances: number;
  loadBalanced: boolean;
  owners?: string[];
  schedule?: string;
  /** SCHEDULED: a Quartz expression (seconds, ?, L, W, #); see core/jobs/cron.ts */
  quartzSchedule?: string;
  scheduleType?: 'CRON' | 'QUARTZ';
  /** SCHEDULED: IANA zone the schedule is read in (default: the server's) */
  scheduleTimeZone?: string;
  /** run-to-completion requests: a failed run is retried this many times in a row */
  numRetriesOnFailure?: number;
  /** run-to-completion requests: a run still going this long after it started is killed */
  taskExecutionTimeLimitMillis?: number;
  /** run-to-completion requests: a run a newer deploy or a pause no longer wants may finish within this */
  killOldNonLongRunningTasksAfterMillis?: number;
  /** SCHEDULED: a run going longer than this is reported overdue (default: until the next due time) */
  scheduledExpectedRuntimeMillis?: number;
  /** SCHEDULED: the next run starts no sooner than this after the last one ended */
  waitAtLeastMillisAfterTaskFinishesForReschedule?: number;
  skipHealthchecks?: boolean;
  /** the most instances a scale may set (Singularity's maxScale) */
  maxScale?: number;
  /** how instances share hosts (absent: the server's --default-agent-placement) */
  agentPlacement?: AgentPlacement;
  /** spread instances evenly over the racks of the hosts that take tasks */
  rackSensitive?: boolean;
  /** only hosts in these racks */
  rackAffinity?: string[];
  /** only hosts with every one of these attributes */
  requiredAgentAttributes?: Record<string, string>;
  /** hosts with one of these are preferred, and hosts reserved by them become usable */
  allowedAgentAttributes?: Record<string, string>;
  /** Accepted Singularity fields Fledge stores but does not act on. */
  extra?: Record<string, unknown>;
}

/** The requests whose tasks run until they exit (the rest are kept running). */
export function isRunToCompletion(type: RequestType): boolean {
  return type === 'SCHEDULED' || type === 'ON_DEMAND' || type === 'RUN_ONCE';
}

export interface HealthcheckOptions {
  uri: string;
  portIndex: number;
  portNumber?: number;
  protocol: 'HTTP' | 'HTTPS';
  method: 'GET' | 'POST';
  startupDelaySeconds: number;
  startupTimeoutSeconds: number;
  startupIntervalSeconds: number;
  intervalSeconds: number;
  responseTimeoutSeconds: number;
  maxRetries: number;
  failureStatusCodes: number[];
  /** Singularity's result-file health check: stored, not acted on */
  healthcheckResultFilePath?: string;
  /**
   * Fledge's own: keep probing every intervalSeconds once the task is healthy, for as long as it
   * runs (absent: true). false: the first verdict is final, as in Singularity.
   */
  checkWhileRunning?: boolean;
}

export const ACCEPTANCE_MODES = ['NONE', 'TIMED', 'CHECKS', 'MANUAL'] as const;
export type AcceptanceMode = (typeof ACCEPTANCE_MODES)[number];

export interface CanaryDeploySettings {
  enableCanaryDeploy: boolean;
  instanceGroupSize: number;
  acceptanceMode: AcceptanceMode;
  waitMillisBetweenGroups: number;
  allowedTasksFailuresPerGroup: number;
  canaryCycleCount: number;
  /** Fledge's own: testers and sticky cohorts sent to the new deploy while it is pending (docs/traffic.md) */
  routing?: RoutingRules;
  /** Fledge: percent of the requests to the new deploy, one deploy step each (core/deploy/traffic.ts) */
  trafficSteps?: number[];
  /** Fledge: most load one new task may carry, in old tasks' (default 2) */
  maxLoadPerTaskRatio?: number;
}

/** One routing rule: a request with this header (or cookie), with this value when given. */
export type RoutingMatch = { header: string; value?: string } | { cookie: string; value?: string };

/**
 * Which requests go to the pending deploy whatever the split: those matching any rule; and
 * sticky cohorts, each client kept on one version for the whole deploy, by a cookie Fledge sets
 * naming the version the client got first, or by a header (a user id) hashed into `percent`.
 */
export interface RoutingRules {
  match: RoutingMatch[];
  sticky?: {
    /** the cookie Fledge sets on a client's first answer, naming the deploy that served it */
    cookie?: string;
    /** a request header hashed (CRC-32 of its value, mod 100): below `percent` → the new deploy */
    header?: string;
    /** with `header`: the share of header values (0-100) that goes to the new deploy */
    percent?: number;
  };
}

export interface AcceptanceCheckSpec {
  name: string;
  type: 'http' | 'command' | 'manual' | 'prometheus' | 'lb';
  intervalSeconds: number;
  timeoutSeconds: number;
  failOnError: boolean;
  /** type-specific fields (url, method, expectStatus, jsonPath, equals, command, query, max...) */
  options: Record<string, unknown>;
}

export interface Resources {
  cpus: number;
  memoryMb: number;
  numPorts: number;
  diskMb: number;
}

/** Singularity's SingularityMesosArtifact after defaults: fetched into the sandbox before the task starts. */
export interface MesosArtifact {
  /** http(s) or file URL */
  uri: string;
  /** keep it in the server's artifact cache, keyed by URL, for the next task */
  cache: boolean;
  executable: boolean;
  /** unpack a recognised archive (.tar, .tar.gz, .tgz, .tar.bz2, .tbz2, .tar.xz, .txz, .zip, .gz) */
  extract: boolean;
  /** the file's name in the sandbox (default: the URL's last path segment) */
  outputFile?: string;
}

/** SingularityExecutor's ExternalArtifact (a URL) and EmbeddedArtifact (base64 content). */
export interface ExecutorArtifact {
  name: string;
  filename: string;
  /** sandbox-relative folder (default: the sandbox itself) */
  targetFolderRelativeToTask?: string;
  md5sum?: string;
  url?: string;
  filesize?: number;
  /** base64, embedded artifacts only */
  content?: string;
}

/** SingularityExecutor's ExecutorData: Fledge runs `cmd` itself when the deploy has no command. */
export interface ExecutorData {
  cmd: string;
  extraCmdLineArgs: string[];
  /** exit codes that count as success (empty: 0 only) */
  successfulExitCodes: number[];
  externalArtifacts: ExecutorArtifact[];
  embeddedArtifacts: ExecutorArtifact[];
  /** SIGTERM → SIGKILL grace for this deploy's tasks (default: the server's --kill-grace-seconds) */
  sigKillProcessesAfterMillis?: number;
  /** SingularityExecutor settings Fledge stores but does not act on */
  extra?: Record<string, unknown>;
}

export interface Deploy {
  requestId: string;
  id: string;
  command?: string;
  arguments?: string[];
  /** containers only (Singularity's rule): true runs `command` with /bin/sh -c, else as the executable */
  shell?: boolean;
  /** type DOCKER runs the task as a container on a Docker host; absent or MESOS: a process */
  containerInfo?: ContainerInfo;
  env: Record<string, string>;
  /** per instance number ("1", "2"...) */
  taskEnv: Record<string, Record<string, string>>;
  resources: Resources;
  metadata?: Record<string, string>;
  version?: string;
  healthcheck?: HealthcheckOptions;
  considerHealthyAfterRunningForSeconds: number;
  deployHealthTimeoutSeconds: number;
  skipHealthchecksOnDeploy: boolean;
  serviceBasePath?: string;
  loadBalancerGroups?: string[];
  loadBalancerPortIndex: number;
  loadBalancerOptions?: Record<string, unknown>;
  loadBalancerDomains?: string[];
  loadBalancerAdditionalRoutes?: string[];
  loadBalancerServiceIdOverride?: string;
  loadBalancerUpstreamGroup: string;
  loadBalancerTimeoutSeconds: number;
  canaryDeploySettings: CanaryDeploySettings;
  acceptanceChecks: AcceptanceCheckSpec[];
  acceptanceTimeoutSeconds: number;
  /** run-to-completion tasks: exit codes that count as success (default [0]) */
  successfulExitCodes?: number[];
  /** artifacts fetched into each task's sandbox before it starts */
  uris?: MesosArtifact[];
  /** SingularityExecutor's settings: `cmd` runs when there is no command */
  executorData?: ExecutorData;
  /** Accepted Singularity fields Fledge stores but does not act on. */
  extra?: Record<string, unknown>;
  timestamp: number;
}

export const LIVE_TASK_STATES = ['TASK_LAUNCHED', 'TASK_STARTING', 'TASK_RUNNING', 'TASK_CLEANING', 'TASK_KILLING'] as const;
export const DONE_TASK_STATES = ['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_LOST', 'TASK_ERROR'] as const;
export type LiveTaskState = (typeof LIVE_TASK_STATES)[number];
export type DoneTaskState = (typeof DONE_TASK_STATES)[number];
export type TaskState = LiveTaskState | DoneTaskState;

export function isLive(state: TaskState): state is LiveTaskState {
  return (LIVE_TASK_STATES as readonly string[]).includes(state);
}

/** Singularity's task id object. */
export interface TaskId {
  requestId: string;
  deployId: string;
  startedAt: number;
  instanceNo: number;
  host: string;
  sanitizedHost: string;
  rackId: string;
  sanitizedRackId: string;
  id: string;
}

export interface HealthResult {
  timestamp: number;
  statusCode?: number;
  durationMillis: number;
  /** first bytes of the body */
  responseBody?: string;
  errorMessage?: string;
  /** true while the port still refuses connections */
  startup: boolean;
  /** no response within responseTimeoutSeconds */
  timedOut?: boolean;
}

export type HealthState = 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY';

/** Written by the executor from every probe result (core/health.ts recordHealthResult). */
export interface TaskHealth {
  state: HealthState;
  /** why UNHEALTHY, in deploys.md words */
  message?: string;
  /** when the task became HEALTHY */
  healthyAt?: number;
  /** the latest results, oldest first (bounded: the counters below cover the rest) */
  results: HealthResult[];
  /** when the latest probe ended */
  lastCheckAt?: number;
  /** failed probes in a row while running (0 after a pass); the task is replaced past maxRetries */
  consecutiveFailures?: number;
  /** every probe of this task, and the failed ones among them */
  checks?: number;
  failedChecks?: number;
}

export type LbOpState = 'WAITING' | 'SUCCESS' | 'FAILED' | 'CANCELED';

/**
 * The latest ADD and REMOVE operation of one task, with the state each ended in (or WAITING).
 * Written by the engine when it issues an operation and when the operation settles, whoever
 * issued it (a deploy's, the request's own, or one a deploy handed over when it ended).
 */
export interface TaskLbState {
  add?: { operationId: string; state: LbOpState; timestamp: number };
  remove?: { operationId: string; state: LbOpState; timestamp: number };
}

/** An LB operation the request step owns until the balancer reports how it ended. */
export interface LbOperationRef {
  operationId: string;
  /** task ids it adds and removes */
  add: string[];
  remove: string[];
  startedAt: number;
  /**
   * A cancel was asked (it timed out, or the deploy that issued it ended with it in flight):
   * it is never re-applied, and one the balancer does not know (it restarted) counts as CANCELED.
   */
  canceling?: boolean;
}

export interface TaskUpdate {
  state: TaskState;
  timestamp: number;
  message?: string;
}

/** Why a live task is being stopped; set by the engine when it decides to stop it. */
export type CleanupReason =
  | 'SCALING_DOWN'
  | 'DEPLOY_REPLACED'
  | 'DEPLOY_FAILED'
  | 'DEPLOY_CANCELED'
  | 'BOUNCING'
  | 'PAUSING'
  | 'REQUEST_DELETING'
  | 'USER_REQUESTED'
  | 'UNHEALTHY'
  | 'DEPLOY_STEP_FAILED'
  | 'TASK_EXCEEDED_TIME_LIMIT'
  /** its host is being decommissioned: moved elsewhere (replacement first) */
  | 'DECOMMISSIONING'
  /** placed on a host that can no longer run it, before it started */
  | 'RESCHEDULED';

/** Why a run-to-completion task was started (Singularity's PendingType, plus SCHEDULED). */
export type RunTrigger = 'SCHEDULED' | 'IMMEDIATE' | 'ONEOFF' | 'RETRY' | 'NEW_DEPLOY';

/** What a run asks for beyond its deploy (SingularityRunNowRequest's fields Fledge acts on). */
export interface RunParameters {
  /** appended to the deploy's arguments (or, shell-quoted, to its command) */
  commandLineArgs?: string[];
  /** merged over the deploy's env */
  envOverrides?: Record<string, string>;
  /** replaces the deploy's resources field by field */
  resources?: Partial<Resources>;
  message?: string;
}

/** A run waiting in a request's queue (persisted in the request record). */
export interface QueuedRun extends RunParameters {
  runId: string;
  trigger: 'IMMEDIATE' | 'ONEOFF';
  queuedAt: number;
  /** not before this time */
  runAt?: number;
  user?: string;
}

/** Set on the task of a run-to-completion request when it is created; written by the engine. */
export interface TaskRun extends RunParameters {
  trigger: RunTrigger;
  runId?: string;
  /** exit codes that count as success, from the deploy */
  successfulExitCodes: number[];
  /** 0 for the first attempt, n for the nth retry */
  retry: number;
  /** the task this one retries */
  retryOf?: string;
  /** SCHEDULED: the due time this run was started for */
  dueAt?: number;
  /** a newer deploy or a pause no longer wants it: it may finish until then, then it is killed */
  killAfter?: { at: number; reason: CleanupReason };
  /** SCHEDULED: reported once when it ran longer than expected */
  overdue?: { at: number; expectedMillis: number };
  /** the engine has acted on its end (retry or not); set once it ended */
  settled?: boolean;
  /** times this run was started again because a port it needed was taken (not retries) */
  portRetries?: number;
}

export interface TaskRecord {
  taskId: TaskId;
  state: TaskState;
  /** runtime handle, opaque outside the runtime; absent until the runtime started it */
  handle?: Record<string, unknown>;
  ports: number[];
  health: TaskHealth;
  lb: TaskLbState;
  updates: TaskUpdate[];
  exitCode?: number | null;
  signal?: string | null;
  /** it exited at start because one of its ports was taken (EADDRINUSE): started again elsewhere, not counted as its failure */
  portInUse?: boolean;
  /** set when the engine decided to stop this task */
  cleanup?: { reason: CleanupReason; timestamp: number; message?: string };
  /** a user asked to replace this task: it is stopped once its replacement serves */
  replaceRequested?: { timestamp: number; message?: string };
  /** why it has not started yet: no host fits it (then taskId.host is UNPLACED), or its host's runtime waits */
  waitingReason?: string;
  /** it became TASK_LOST because its host stopped answering (not the deploy's fault; not a crash) */
  lostWithHost?: string;
  runningAt?: number;
  doneAt?: number;
  /** run-to-completion requests only */
  run?: TaskRun;
}

export interface RequestRecord {
  request: FledgeRequest;
  state: RequestState;
  activeDeployId?: string;
  pendingDeployId?: string;
  /** a bounce in progress: tasks started before this time are replaced */
  bounce?: { startedAt: number; message?: string };
  /**
   * crash-loop backoff per instance number: next start not before `until`; `portInUse`: exits
   * in a row because a port was taken, which start again at once (a few times) without counting
   */
  backoff?: Record<string, { failures: number; until: number; lastTaskId: string; portInUse?: number }>;
  /** the steady-state LB operation in flight (the pending deploy keeps its own) */
  lbOperation?: LbOperationRef;
  /**
   * Operations a deploy ended with in flight (cancel, reject, LB timeout, failure), handed over
   * to the request step: it cancels them and records their real outcome on every task they add
   * or remove before the LB membership changes again.
   */
  lbHandedOver?: LbOperationRef[];
  /** how many steady-state LB operations were issued; makes their ids unique */
  lbSeq?: number;
  /**
   * The pending deploy whose routing (canaryDeploySettings.routing) the LB may hold: once that
   * deploy is no longer pending, the next LB operation clears it — one with no membership
   * change when none is due (lb-membership.ts).
   */
  lbRouting?: string;
  /** run-to-completion requests: the schedule, the queue, what ran */
  jobs?: JobState;
  /** Singularity's expiring actions: each is undone at startMillis + durationMillis (core/request/expiring.ts) */
  expiring?: ExpiringActions;
  timestamp: number;
}

/** The run-to-completion state of a request, persisted with it (written by the engine and, for the queue, the API). */
export interface JobState {
  /** SCHEDULED: the next due time; a past one after a restart is the one catch-up run */
  nextRunAt?: number;
  /** SCHEDULED: the schedule and zone nextRunAt was computed from (a change recomputes it) */
  scheduleKey?: string;
  /** runs waiting to start, oldest first (bounded by the API) */
  queue?: QueuedRun[];
  /** RUN_ONCE: the deploy whose run was started */
  ranDeployId?: string;
  /** SCHEDULED: due times skipped because a run was still going */
  skipped?: { count: number; lastDueAt: number; runningTaskId: string };
}

export interface ExpiringAction {
  startMillis: number;
  durationMillis: number;
  user?: string;
  message?: string;
  actionId?: string;
}

export interface ExpiringActions {
  /** the instances come back to revertToInstances */
  scale?: ExpiringAction & { revertToInstances: number; bounce?: boolean };
  /** the request is unpaused */
  pause?: ExpiringAction;
  /** an unfinished bounce is given up (tasks not yet replaced stay) */
  bounce?: ExpiringAction;
  /** skipHealthchecks comes back to revertToSkipHealthchecks */
  skipHealthchecks?: ExpiringAction & { revertToSkipHealthchecks: boolean };
}

export const EXPIRING_KINDS = ['scale', 'pause', 'bounce', 'skipHealthchecks'] as const;
export type ExpiringKind = (typeof EXPIRING_KINDS)[number];
