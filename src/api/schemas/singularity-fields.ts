// Singularity fields Fledge accepts but does not act on, in one place. They are stored in the
// entity's `extra` and named in `warnings`, so a Singularity user's JSON keeps working and
// they learn what it does not do here (deploys.md §1). Anything not listed here and not
// Fledge's own is an unknown field: a 400.

const MESOS_EXECUTOR = 'Mesos custom executor setting; Fledge runs tasks with its own runtime';
const MESOS_LABELS = 'Mesos labels; Fledge has no Mesos';
const OFFERS = 'Mesos offer setting; Fledge places tasks on hosts without offers';
const PERMISSIONS = 'Singularity group permissions; Fledge uses bearer tokens';
const NOTIFICATIONS = 'Singularity notification setting';

/** SingularityRequest fields that Fledge stores but ignores, with the reason. */
export const IGNORED_REQUEST_FIELDS: Readonly<Record<string, string>> = {
  hideEvenNumberAcrossRacksHint: "a hint for Singularity's UI",
  maxTasksPerOffer: OFFERS,
  allowBounceToSameHost: 'Fledge applies agentPlacement to bounce replacements like to any new task',
  requiredRole: 'Mesos role; Fledge has no Mesos',
  dataCenter: 'Singularity multi-datacenter setting',
  group: PERMISSIONS,
  readWriteGroups: PERMISSIONS,
  readOnlyGroups: PERMISSIONS,
  bounceAfterScale: 'Fledge never bounces on scale; use POST .../bounce',
  emailConfigurationOverrides: NOTIFICATIONS,
  taskLogErrorRegex: NOTIFICATIONS,
  taskLogErrorRegexCaseSensitive: NOTIFICATIONS,
  taskPriorityLevel: 'Singularity offer priority; Fledge does not rank tasks',
};

/** SingularityDeploy fields that Fledge stores but ignores, with the reason. */
export const IGNORED_DEPLOY_FIELDS: Readonly<Record<string, string>> = {
  executorData: MESOS_EXECUTOR,
  customExecutorCmd: MESOS_EXECUTOR,
  customExecutorId: MESOS_EXECUTOR,
  customExecutorSource: MESOS_EXECUTOR,
  customExecutorResources: MESOS_EXECUTOR,
  customExecutorUser: MESOS_EXECUTOR,
  user: 'tasks run as the Fledge server user',
  labels: MESOS_LABELS,
  mesosLabels: MESOS_LABELS,
  taskLabels: MESOS_LABELS,
  mesosTaskLabels: MESOS_LABELS,
  s3UploaderAdditionalFiles: 'Singularity S3 log uploader setting',
  loadBalancerTemplate: 'Baragon template name; Fledge load balancers have no templates',
  runImmediately: 'Singularity run-now on deploy; use POST /api/requests/request/{id}/run once the deploy is active',
  healthcheckMaxTotalTimeoutSeconds: 'Fledge derives the health-check window from the other healthcheck settings',
  timestamp: 'set by Fledge when the deploy is stored',
};

/** Deploy fields read into `healthcheck` (Singularity's pre-0.14 flat fields) → the object's key. */
export const LEGACY_HEALTHCHECK_FIELDS = {
  healthcheckUri: 'uri',
  healthcheckPortIndex: 'portIndex',
  healthcheckProtocol: 'protocol',
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

/** Fields of small action bodies (scale, pause, ...) that Singularity has and Fledge ignores. */
export const IGNORED_ACTION_FIELDS: Readonly<Record<string, string>> = {
  actionId: 'Singularity action ids are not tracked',
  durationMillis: 'Fledge has no expiring actions',
  skipEmailNotification: NOTIFICATIONS,
  skipHealthchecks: 'Fledge always health-checks replacement tasks',
  override: 'Fledge has no kill override',
  revertToState: 'Fledge has no expiring actions',
  killTasksOnDecommissionTimeout:
    'Fledge has no expiring actions; it moves the tasks off a decommissioning host itself, replacements first',
};
