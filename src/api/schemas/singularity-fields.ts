// Every property of Singularity's request, deploy and action bodies, in one place: what Fledge
// does with it. Acted-on properties are the schemas' own fields; read ones are mapped onto
// another field; ignored ones are accepted, stored (in the entity's `extra`, written back where
// Singularity puts them) and named in `warnings` with the reason here. A key that is neither
// Fledge's nor listed here is an unknown field: a 400 (deploys.md §1).
//
// The lists come from Singularity's model classes (the @JsonCreator parameters and getters,
// test/fixtures/singularity/properties.json, made by scripts/singularity-properties.ts) plus
// the keys its web UI's forms send that the classes do not have (Jackson drops those silently);
// a test keeps this table and that fixture equal.

export type Treatment =
  /** a field of Fledge's schema, acted on */
  | { use: 'acted' }
  /** read into another field (a legacy spelling or an alias) */
  | { use: 'read'; into: string }
  /** accepted, stored and warned about */
  | { use: 'ignored'; why: string };

const acted: Treatment = { use: 'acted' };
const read = (into: string): Treatment => ({ use: 'read', into });
const ignored = (why: string): Treatment => ({ use: 'ignored', why });

const MESOS_EXECUTOR = ignored('Mesos custom executor setting; Fledge runs tasks with its own runtime');
const MESOS_LABELS = ignored('Mesos labels; Fledge has no Mesos');
const OFFERS = ignored('Mesos offer setting; Fledge places tasks on hosts without offers');
const PERMISSIONS = ignored('Singularity group permissions; Fledge uses bearer tokens');
const NOTIFICATIONS = ignored('Singularity notification setting');
const RUN_PLACEMENT = ignored("per-run placement overrides are not read; a run is placed by its request's placement fields");
const ACTION_ID = ignored('Singularity action ids are not tracked');
const SHELL_COMMAND = ignored('Singularity shell commands are not run by Fledge');
const EXECUTOR_LOGGING = ignored("SingularityExecutor's log handling; Fledge writes stdout and stderr into the sandbox");
const ATTRIBUTE_MINIMUMS = ignored('Singularity spreads by attribute share; Fledge places by required/allowed attributes and racks only');
const UI_FORM = (what: string) => ignored(`sent by Singularity's web UI (${what}); not part of Singularity's model, which drops it`);

/** SingularityRequest (and the keys a request read back from Singularity carries). */
const REQUEST: Record<string, Treatment> = {
  id: acted,
  requestType: acted,
  instances: acted,
  loadBalanced: acted,
  owners: acted,
  schedule: acted,
  quartzSchedule: acted,
  scheduleType: acted,
  scheduleTimeZone: acted,
  numRetriesOnFailure: acted,
  killOldNonLongRunningTasksAfterMillis: acted,
  scheduledExpectedRuntimeMillis: acted,
  waitAtLeastMillisAfterTaskFinishesForReschedule: acted,
  taskExecutionTimeLimitMillis: acted,
  skipHealthchecks: acted,
  maxScale: acted,
  daemon: read('requestType (when requestType is absent, as Singularity derives it)'),
  rackSensitive: acted,
  rackAffinity: acted,
  agentPlacement: acted,
  requiredAgentAttributes: acted,
  allowedAgentAttributes: acted,
  slavePlacement: read('agentPlacement'),
  requiredSlaveAttributes: read('requiredAgentAttributes'),
  allowedSlaveAttributes: read('allowedAgentAttributes'),
  slaveAttributeMinimums: ATTRIBUTE_MINIMUMS,
  agentAttributeMinimums: ATTRIBUTE_MINIMUMS,
  maxTasksPerOffer: OFFERS,
  allowBounceToSameHost: ignored('Fledge applies agentPlacement to bounce replacements like to any new task'),
  hideEvenNumberAcrossRacks: ignored("a hint for Singularity's UI"),
  hideEvenNumberAcrossRacksHint: ignored("a hint for Singularity's UI"),
  requiredRole: ignored('Mesos role; Fledge has no Mesos'),
  dataCenter: ignored('Singularity multi-datacenter setting'),
  group: PERMISSIONS,
  readWriteGroups: PERMISSIONS,
  readOnlyGroups: PERMISSIONS,
  actionPermissions: PERMISSIONS,
  bounceAfterScale: ignored('Fledge never bounces on scale unless the scale body says bounce: true'),
  emailConfigurationOverrides: NOTIFICATIONS,
  taskLogErrorRegex: NOTIFICATIONS,
  taskLogErrorRegexCaseSensitive: NOTIFICATIONS,
  taskPriorityLevel: ignored('Singularity offer priority; Fledge does not rank tasks'),
};

/** SingularityDeploy, and the keys Singularity's new-deploy form adds. */
const DEPLOY: Record<string, Treatment> = {
  requestId: acted,
  id: acted,
  command: acted,
  arguments: acted,
  shell: acted,
  containerInfo: acted,
  resources: acted,
  env: acted,
  taskEnv: acted,
  uris: acted,
  metadata: acted,
  version: acted,
  executorData: acted,
  healthcheck: acted,
  considerHealthyAfterRunningForSeconds: acted,
  deployHealthTimeoutSeconds: acted,
  skipHealthchecksOnDeploy: acted,
  serviceBasePath: acted,
  loadBalancerGroups: acted,
  loadBalancerPortIndex: acted,
  loadBalancerOptions: acted,
  loadBalancerDomains: acted,
  loadBalancerAdditionalRoutes: acted,
  loadBalancerServiceIdOverride: acted,
  loadBalancerUpstreamGroup: acted,
  canaryDeploySettings: acted,
  healthcheckUri: read('healthcheck.uri'),
  healthcheckPortIndex: read('healthcheck.portIndex'),
  healthcheckProtocol: read('healthcheck.protocol'),
  // the @JsonCreator's spelling of the same field
  healthCheckProtocol: read('healthcheck.protocol'),
  healthcheckIntervalSeconds: read('healthcheck.intervalSeconds'),
  healthcheckTimeoutSeconds: read('healthcheck.responseTimeoutSeconds'),
  healthcheckMaxRetries: read('healthcheck.maxRetries'),
  deployInstanceCountPerStep: read('canaryDeploySettings (enableCanaryDeploy, instanceGroupSize)'),
  deployStepWaitTimeMs: read('canaryDeploySettings (acceptanceMode TIMED, waitMillisBetweenGroups)'),
  maxTaskRetries: read('canaryDeploySettings.allowedTasksFailuresPerGroup'),
  autoAdvanceDeploySteps: read('canaryDeploySettings.acceptanceMode (false: MANUAL)'),
  healthcheckMaxTotalTimeoutSeconds: ignored('Fledge derives the health-check window from the other healthcheck settings'),
  customExecutorCmd: MESOS_EXECUTOR,
  customExecutorId: MESOS_EXECUTOR,
  customExecutorSource: MESOS_EXECUTOR,
  customExecutorResources: MESOS_EXECUTOR,
  customExecutorUser: MESOS_EXECUTOR,
  user: ignored('tasks run as the Fledge server user'),
  labels: MESOS_LABELS,
  mesosLabels: MESOS_LABELS,
  taskLabels: MESOS_LABELS,
  mesosTaskLabels: MESOS_LABELS,
  s3UploaderAdditionalFiles: ignored('Singularity S3 log uploader setting'),
  loadBalancerTemplate: ignored('Baragon template name; Fledge load balancers have no templates'),
  runImmediately: ignored('Singularity run-now on deploy; use POST /api/requests/request/{id}/run once the deploy is active'),
  timestamp: ignored('set by Fledge when the deploy is stored'),
  executorType: UI_FORM('which executor the form shows'),
};

/** ExecutorData: what SingularityExecutor reads; Fledge runs `cmd` itself. */
const EXECUTOR_DATA: Record<string, Treatment> = {
  cmd: acted,
  extraCmdLineArgs: acted,
  successfulExitCodes: acted,
  embeddedArtifacts: acted,
  externalArtifacts: acted,
  s3Artifacts: acted,
  s3ArtifactSignatures: acted,
  sigKillProcessesAfterMillis: acted,
  user: ignored('tasks run as the Fledge server user'),
  maxTaskThreads: ignored('SingularityExecutor thread limit; Fledge limits tasks by cgroup only'),
  maxOpenFiles: ignored('SingularityExecutor ulimit; tasks inherit the server’s limit'),
  runningSentinel: ignored('SingularityExecutor sentinel file; Fledge judges a task by its health check'),
  preserveTaskSandboxAfterFinish: ignored('Fledge keeps every sandbox until the task history is pruned'),
  loggingTag: EXECUTOR_LOGGING,
  loggingExtraFields: EXECUTOR_LOGGING,
  logrotateFrequency: EXECUTOR_LOGGING,
  skipLogrotateAndCompress: EXECUTOR_LOGGING,
  loggingS3Bucket: UI_FORM('an S3 bucket for logs'),
};

/** ExternalArtifact, EmbeddedArtifact and S3Artifact share their keys. */
const ARTIFACT: Record<string, Treatment> = {
  name: acted,
  filename: acted,
  md5sum: acted,
  targetFolderRelativeToTask: acted,
  url: acted,
  filesize: acted,
  content: acted,
  s3Bucket: acted,
  s3ObjectKey: acted,
  isArtifactList: acted,
  md5Sum: read('md5sum (the spelling Singularity’s UI sends, which Singularity itself drops)'),
  type: UI_FORM('the artifact kind'),
};

const HEALTHCHECK: Record<string, Treatment> = {
  uri: acted,
  portIndex: acted,
  portNumber: acted,
  protocol: acted,
  method: acted,
  startupDelaySeconds: acted,
  startupTimeoutSeconds: acted,
  startupIntervalSeconds: acted,
  intervalSeconds: acted,
  responseTimeoutSeconds: acted,
  maxRetries: acted,
  failureStatusCodes: acted,
  healthcheckResultFilePath: ignored('Fledge checks health over HTTP only, not by a result file'),
};

const everything = (keys: string[]) => Object.fromEntries(keys.map((k) => [k, acted]));

/** Bodies of the action endpoints. */
const ACTIONS = {
  SingularityScaleRequest: {
    instances: acted,
    message: acted,
    durationMillis: acted,
    bounce: acted,
    actionId: ACTION_ID,
    incremental: ignored('a Fledge bounce always starts replacements before it stops old tasks'),
    skipHealthchecks: ignored('Fledge health-checks the new tasks of a scale-up; use PUT .../skip-healthchecks'),
    skipEmailNotification: NOTIFICATIONS,
  },
  SingularityPauseRequest: {
    killTasks: acted,
    message: acted,
    durationMillis: acted,
    actionId: ACTION_ID,
    runShellCommandBeforeKill: SHELL_COMMAND,
    runShellCommand: UI_FORM('whether to run a shell command first'),
  },
  SingularityUnpauseRequest: {
    message: acted,
    actionId: ACTION_ID,
    skipHealthchecks: ignored('Fledge health-checks the tasks an unpause starts; use PUT .../skip-healthchecks'),
  },
  SingularityBounceRequest: {
    incremental: acted,
    message: acted,
    durationMillis: acted,
    actionId: ACTION_ID,
    skipHealthchecks: ignored("Fledge health-checks a bounce's replacements: it stops an old task only once its replacement serves"),
    runShellCommandBeforeKill: SHELL_COMMAND,
    runShellCommand: UI_FORM('whether to run a shell command first'),
  },
  SingularityRunNowRequest: {
    commandLineArgs: acted,
    message: acted,
    runId: acted,
    runAt: acted,
    envOverrides: acted,
    resources: acted,
    skipHealthchecks: ignored('runs of run-to-completion requests are never health-checked'),
    runAsUserOverride: ignored('tasks run as the Fledge server user'),
    s3UploaderAdditionalFiles: ignored('Singularity S3 log uploader setting'),
    extraArtifacts: ignored('Singularity artifact setting; put uris in the deploy'),
    requiredSlaveAttributeOverrides: RUN_PLACEMENT,
    requiredAgentAttributeOverrides: RUN_PLACEMENT,
    allowedSlaveAttributeOverrides: RUN_PLACEMENT,
    allowedAgentAttributeOverrides: RUN_PLACEMENT,
  },
  SingularityExitCooldownRequest: {
    message: acted,
    actionId: ACTION_ID,
    skipHealthchecks: ignored('Fledge health-checks the tasks it restarts'),
  },
  SingularitySkipHealthchecksRequest: { skipHealthchecks: acted, message: acted, durationMillis: acted, actionId: ACTION_ID },
  SingularityDeleteRequestRequest: {
    message: acted,
    deleteFromLoadBalancer: acted,
    actionId: ACTION_ID,
  },
  SingularityKillTaskRequest: {
    message: acted,
    waitForReplacementTask: acted,
    actionId: ACTION_ID,
    override: ignored('Fledge has no kill override: a kill always goes through the load balancer removal first'),
    runShellCommandBeforeKill: SHELL_COMMAND,
  },
  SingularityMachineChangeRequest: {
    message: acted,
    actionId: ACTION_ID,
    durationMillis: ignored('host state changes do not expire in Fledge'),
    revertToState: ignored('host state changes do not expire in Fledge'),
    killTasksOnDecommissionTimeout: ignored('Fledge moves the tasks off a decommissioning host itself, replacements first'),
  },
  SingularityUpdatePendingDeployRequest: everything(['requestId', 'deployId', 'targetActiveInstances']),
  SingularityDeployRequest: everything(['deploy', 'message', 'unpauseOnSuccessfulDeploy', 'updatedRequest']),
} satisfies Record<string, Record<string, Treatment>>;

/** Every Singularity input class Fledge reads, by class name, property by property. */
export const SINGULARITY_PROPERTIES: Readonly<Record<string, Readonly<Record<string, Treatment>>>> = {
  SingularityRequest: REQUEST,
  SingularityDeploy: DEPLOY,
  ExecutorData: EXECUTOR_DATA,
  ExternalArtifact: ARTIFACT,
  EmbeddedArtifact: ARTIFACT,
  S3Artifact: ARTIFACT,
  HealthcheckOptions: HEALTHCHECK,
  ...ACTIONS,
};

export type ActionClass = keyof typeof ACTIONS;

/** The ignored properties of a class → their reason. */
export function ignoredOf(className: string): Record<string, string> {
  const table = SINGULARITY_PROPERTIES[className] ?? {};
  return Object.fromEntries(Object.entries(table).flatMap(([k, t]) => (t.use === 'ignored' ? [[k, t.why]] : [])));
}

/** SingularityRequest fields that Fledge stores but ignores, with the reason. */
export const IGNORED_REQUEST_FIELDS: Readonly<Record<string, string>> = ignoredOf('SingularityRequest');

/** SingularityDeploy fields that Fledge stores but ignores, with the reason. */
export const IGNORED_DEPLOY_FIELDS: Readonly<Record<string, string>> = ignoredOf('SingularityDeploy');

/** Deploy fields read into `healthcheck` (Singularity's pre-0.14 flat fields) → the object's key. */
export const LEGACY_HEALTHCHECK_FIELDS = {
  healthcheckUri: 'uri',
  healthcheckPortIndex: 'portIndex',
  healthcheckProtocol: 'protocol',
  healthCheckProtocol: 'protocol',
  healthcheckIntervalSeconds: 'intervalSeconds',
  healthcheckTimeoutSeconds: 'responseTimeoutSeconds',
  healthcheckMaxRetries: 'maxRetries',
} as const;

/** Singularity's incremental-deploy fields, read into canaryDeploySettings when it is absent. */
export const LEGACY_CANARY_FIELDS = [
  'deployInstanceCountPerStep',
  'deployStepWaitTimeMs',
  'maxTaskRetries',
  'autoAdvanceDeploySteps',
] as const;

/**
 * Settings of SingularityExecutor and of Singularity's custom-executor launch that mean nothing
 * when Fledge runs `executorData.cmd` itself: named in one warning when a deploy carries them.
 */
export const EXECUTOR_ONLY_FIELDS = Object.entries(EXECUTOR_DATA).flatMap(([k, t]) => (t.use === 'ignored' ? [k] : []));
