// What each request and deploy field means, for the fields whose schema carries no
// description of its own: applied to the JSON Schemas (so /api/openapi.json has them) and
// thereby to docs/fields.md. Keyed by schema name and dotted path ([] for array items).
export const FIELD_MEANINGS: Readonly<Record<string, string>> = {
  'RequestInput.id': 'The request id, 1-100 characters of [A-Za-z0-9_-]',
  'RequestInput.instances': 'How many tasks of the active deploy run (at most --max-instances)',
  'RequestInput.loadBalanced': 'Serving tasks are put into the load balancer (SERVICE only)',
  'RequestInput.owners': "People or teams who own the request (kept, shown; Singularity's notification list)",
  'RequestInput.schedule': 'A 5-field cron expression (SCHEDULED requests)',
  'RequestInput.numRetriesOnFailure': 'Retries of a failed run-to-completion task',
  'RequestInput.skipHealthchecks': 'Tasks count as healthy once running, without health checks',
  'DeployInput.requestId': 'The request this deploy belongs to',
  'DeployInput.id': 'The deploy id, 1-50 characters of [A-Za-z0-9_.]',
  'DeployInput.command': 'The command, run through /bin/sh -c (with arguments: the executable); ${TASK_*} placeholders filled',
  'DeployInput.arguments': 'Arguments: the command runs without a shell, with these as its argv',
  'DeployInput.env': 'Environment variables of every task (${TASK_*} placeholders filled); read tokens see ***',
  'DeployInput.taskEnv': 'More variables per instance number ("1", "2"...), over env',
  'DeployInput.resources': "What each task may use (a container's limits; a process's cgroup when available)",
  'DeployInput.resources.cpus': 'CPUs per task',
  'DeployInput.resources.memoryMb': 'Memory per task, MiB',
  'DeployInput.resources.numPorts': 'Ports allocated to each task: PORT0..n (and PORT)',
  'DeployInput.resources.diskMb': 'Disk per task, MiB (stored; not enforced)',
  'DeployInput.metadata': 'Free-form strings kept with the deploy',
  'DeployInput.version': 'A version label kept with the deploy',
  'DeployInput.containerInfo.type': 'DOCKER runs the task as a container on a Docker host; MESOS (or absent) as a process',
  'DeployInput.containerInfo.docker': 'The container: image, network, port mappings, volumes',
  'DeployInput.containerInfo.docker.image': 'The image (must exist on the Docker host; nothing is pulled)',
  'DeployInput.containerInfo.docker.privileged': 'Run the container privileged',
  'DeployInput.containerInfo.docker.portMappings': 'Container ports published on the host',
  'DeployInput.containerInfo.docker.forcePullImage': 'Pull the image before each start',
  'DeployInput.containerInfo.docker.dockerParameters': 'Extra docker run parameters (a bounded allow-list)',
  'DeployInput.containerInfo.volumes': 'Volumes mounted into the container',
  'DeployInput.containerInfo.mesos': 'Mesos containerizer settings (stored; not acted on)',
  'DeployInput.containerInfo.networkInfos': 'Mesos network settings (stored; not acted on)',
  'DeployInput.containerInfo.mesos.image': 'A Mesos containerizer image (stored; not acted on)',
  'DeployInput.executorData.cmd': "SingularityExecutor's command: run when the deploy has no command",
  'DeployInput.executorData.extraCmdLineArgs': 'Appended to cmd',
  'DeployInput.executorData.successfulExitCodes': 'Exit codes that count as TASK_FINISHED (default 0)',
  'DeployInput.executorData.embeddedArtifacts': 'Files written into the sandbox from base64 content before the command starts',
  'DeployInput.executorData.externalArtifacts': 'Files downloaded into the sandbox before the command starts (md5sum checked when given)',
  'DeployInput.executorData.s3Artifacts': 'S3 objects fetched into the sandbox (over their https URL)',
  'DeployInput.executorData.s3ArtifactSignatures': 'Signatures of S3 artifacts (stored; not checked)',
  'DeployInput.executorData.sigKillProcessesAfterMillis': 'SIGTERM to SIGKILL grace for these tasks',
  'DeployInput.healthcheck': 'HTTP health check of each task',
  'DeployInput.healthcheck.uri': 'Path asked on the task (a 2xx is healthy)',
  'DeployInput.healthcheck.portIndex': 'Which of the task’s ports to ask (PORT<index>)',
  'DeployInput.healthcheck.portNumber': 'A fixed port to ask instead',
  'DeployInput.healthcheck.method': 'GET or POST',
  'DeployInput.healthcheck.startupDelaySeconds': 'Wait this long after start before the first check',
  'DeployInput.healthcheck.startupTimeoutSeconds': 'How long the port may refuse connections after start',
  'DeployInput.healthcheck.startupIntervalSeconds': 'Check interval while the port still refuses connections',
  'DeployInput.healthcheck.intervalSeconds': 'Check interval once the port answers',
  'DeployInput.healthcheck.responseTimeoutSeconds': 'Time one check may take',
  'DeployInput.healthcheck.maxRetries': 'Failed checks tolerated before the task is unhealthy',
  'DeployInput.healthcheck.failureStatusCodes': 'Status codes that fail the task at once',
  'DeployInput.healthcheckUri': 'Legacy: healthcheck.uri',
  'DeployInput.healthcheckPortIndex': 'Legacy: healthcheck.portIndex',
  'DeployInput.healthcheckProtocol': 'Legacy: healthcheck.protocol',
  'DeployInput.healthcheckIntervalSeconds': 'Legacy: healthcheck.intervalSeconds',
  'DeployInput.healthcheckTimeoutSeconds': 'Legacy: healthcheck.responseTimeoutSeconds',
  'DeployInput.healthcheckMaxRetries': 'Legacy: healthcheck.maxRetries',
  'DeployInput.considerHealthyAfterRunningForSeconds': 'Without a health check: healthy after running this long',
  'DeployInput.deployHealthTimeoutSeconds': 'A step whose tasks are not all healthy by then ends the deploy OVERDUE',
  'DeployInput.skipHealthchecksOnDeploy': 'New tasks count as healthy once running during this deploy',
  'DeployInput.serviceBasePath': 'The path prefix the load balancer routes to these tasks',
  'DeployInput.loadBalancerGroups': 'Load balancer groups (HAProxy backends) the tasks join',
  'DeployInput.loadBalancerPortIndex': 'Which of the task’s ports receives traffic',
  'DeployInput.loadBalancerOptions': 'Options for the load balancer (stored)',
  'DeployInput.loadBalancerDomains': 'Host names routed to these tasks',
  'DeployInput.loadBalancerAdditionalRoutes': 'More path prefixes routed to these tasks',
  'DeployInput.loadBalancerServiceIdOverride': 'The service id in the load balancer (default: the request id)',
  'DeployInput.loadBalancerUpstreamGroup': 'The upstream group the tasks are registered under',
  'DeployInput.loadBalancerTimeoutSeconds': 'An LB operation not done by then fails the deploy (LOAD_BALANCER_UPDATE_FAILED)',
  'DeployInput.canaryDeploySettings': 'How the deploy proceeds: one atomic step, or steps of groups with acceptance between them',
  'DeployInput.canaryDeploySettings.enableCanaryDeploy': 'false: one step of all instances; true: steps of instanceGroupSize',
  'DeployInput.canaryDeploySettings.instanceGroupSize': 'New instances added per step (at least 1)',
  'DeployInput.canaryDeploySettings.acceptanceMode':
    'What lets a step go on: NONE, TIMED (a wait), CHECKS (acceptance checks), MANUAL (an advance)',
  'DeployInput.canaryDeploySettings.waitMillisBetweenGroups': 'TIMED: the wait after a step is healthy and in the LB',
  'DeployInput.canaryDeploySettings.allowedTasksFailuresPerGroup': 'Task deaths tolerated (and replaced) per step',
  'DeployInput.canaryDeploySettings.canaryCycleCount': 'Steps of instanceGroupSize before the jump to all instances',
  'DeployInput.canaryDeploySettings.routing':
    'Fledge’s own: testers (by header or cookie) and sticky cohorts sent to the new deploy while it is pending',
  'DeployInput.canaryDeploySettings.routing.match': 'Rules: a request with any of these goes to the new deploy (at most 16)',
  'DeployInput.canaryDeploySettings.routing.match[].header': 'A request header (any case): present, or equal to value',
  'DeployInput.canaryDeploySettings.routing.match[].cookie': 'A request cookie: present, or equal to value',
  'DeployInput.canaryDeploySettings.routing.match[].value': 'The exact value (1-256 of letters, digits and ._~:@+=/*!^|-); absent: any',
  'DeployInput.canaryDeploySettings.routing.sticky': 'Sticky cohorts: each client stays on one version for the whole deploy',
  'DeployInput.canaryDeploySettings.routing.sticky.cookie': 'The cookie Fledge sets on a first answer, naming the version that served it',
  'DeployInput.canaryDeploySettings.routing.sticky.header': 'A header (a user id) whose value is hashed into a cohort',
  'DeployInput.canaryDeploySettings.routing.sticky.percent': 'With header: the share of its values (0-100) sent to the new deploy',
  'DeployInput.canaryDeploySettings.trafficSteps':
    "Fledge: percent of the requests to the new deploy per step, by LB weights, judged on the balancer's counters",
  'DeployInput.canaryDeploySettings.maxLoadPerTaskRatio': "Fledge: most load one new task may carry in a traffic step, in old tasks' loads",
  'DeployInput.acceptanceChecks':
    'Checks asked at each step with acceptanceMode CHECKS (http, command, manual, lb, prometheus; docs/checks.md)',
  'DeployInput.acceptanceTimeoutSeconds': 'CHECKS or MANUAL not passed by then fail the deploy (ACCEPTANCE_TIMED_OUT)',
};

const ARTIFACT: Record<string, string> = {
  name: 'The artifact’s name',
  filename: 'The file name in the sandbox',
  targetFolderRelativeToTask: 'The sandbox folder it goes in',
  md5sum: 'Checked after the download; a mismatch fails the task',
  url: 'Where it is downloaded from (http, https or file)',
  filesize: 'Expected size in bytes',
  content: 'base64 content (embedded artifacts)',
  s3Bucket: 'S3 bucket',
  s3ObjectKey: 'S3 object key',
  isArtifactList: 'The file lists more artifacts (not followed)',
};
const PORT_MAPPING: Record<string, string> = {
  containerPortType: 'LITERAL: containerPort is the port; FROM_OFFER: the task’s port of that index',
  containerPort: 'The container port (or the index of the task’s port)',
  hostPortType: 'LITERAL: hostPort is the port; FROM_OFFER: the task’s port of that index',
  hostPort: 'The host port (or the index of the task’s port)',
  protocol: 'tcp or udp',
};
const VOLUME: Record<string, string> = {
  containerPath: 'Where it is mounted in the container',
  hostPath: 'The host folder mounted',
  mode: 'RO or RW',
  source: 'A named Docker volume instead of a host folder',
  'source.type': 'DOCKER_VOLUME',
  'source.dockerVolume': 'The named volume and its driver',
};

/** The meaning of `path` in schema `schema`, when the table has one. */
export function meaningOf(schema: string, path: string): string | undefined {
  const direct =
    FIELD_MEANINGS[`${schema}.${path}`] ?? FIELD_MEANINGS[`${schema}.${path.replace(/^canarySettings\./, 'canaryDeploySettings.')}`];
  if (direct) return direct;
  const artifact = /^executorData\.(?:embedded|external|s3)Artifacts\[\]\.(.+)$/.exec(path);
  if (artifact) return ARTIFACT[artifact[1]!];
  const mapping = /^containerInfo\.docker\.portMappings\[\]\.(.+)$/.exec(path);
  if (mapping) return PORT_MAPPING[mapping[1]!];
  const volume = /^containerInfo\.(?:docker\.)?volumes\[\]\.(.+)$/.exec(path);
  if (volume) return VOLUME[volume[1]!];
  return undefined;
}
