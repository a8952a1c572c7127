// Deploy body → Deploy: defaults applied, legacy Singularity fields mapped, cross-field rules.
import { z } from 'zod';
import { isDockerDeploy } from '../../core/container.ts';
import {
  ACCEPTANCE_MODES,
  type AcceptanceCheckSpec,
  type CanaryDeploySettings,
  type Deploy,
  type FledgeRequest,
  type HealthcheckOptions,
  type Resources,
} from '../../core/model.ts';
import {
  attachWarnings,
  boundedJson,
  boundedRecord,
  compact,
  conflict,
  count,
  describeInput,
  ignoredFields,
  LIMITS,
  list,
  millis,
  nonEmpty,
  nullsAsAbsent,
  seconds,
  splitIgnored,
  text,
  type Issue,
} from './common.ts';
import { containerInfoSchema, containerRules, normaliseContainer } from './container.ts';
import { requestIdSchema } from './request.ts';
import { IGNORED_DEPLOY_FIELDS, LEGACY_CANARY_FIELDS, LEGACY_HEALTHCHECK_FIELDS } from './singularity-fields.ts';

/** Every default the deploy schema applies, in one place (documented in the OpenAPI schema too). */
export const DEPLOY_DEFAULTS = {
  resources: { cpus: 0.1, memoryMb: 64, numPorts: 1, diskMb: 0 } satisfies Resources,
  healthcheck: {
    portIndex: 0,
    protocol: 'HTTP',
    method: 'GET',
    startupDelaySeconds: 0,
    startupTimeoutSeconds: 45,
    startupIntervalSeconds: 2,
    intervalSeconds: 5,
    responseTimeoutSeconds: 5,
    // 0 = the first failed response after startup makes the task unhealthy (deploys.md §3:
    // "more than maxRetries failed responses"); raise it for flaky endpoints.
    maxRetries: 0,
    failureStatusCodes: [] as number[],
    // Fledge's own: a task that hangs after it became healthy is noticed and replaced.
    checkWhileRunning: true,
  } satisfies Omit<HealthcheckOptions, 'uri'>,
  considerHealthyAfterRunningForSeconds: 5,
  deployHealthTimeoutSeconds: 120,
  skipHealthchecksOnDeploy: false,
  loadBalancerPortIndex: 0,
  loadBalancerUpstreamGroup: 'default',
  loadBalancerTimeoutSeconds: 300,
  // Bounds CHECKS and MANUAL acceptance (every wait is bounded): an hour lets a person
  // approve a MANUAL step without holding a deploy open indefinitely.
  acceptanceTimeoutSeconds: 3600,
  canaryDeploySettings: {
    enableCanaryDeploy: false,
    instanceGroupSize: 1,
    acceptanceMode: 'NONE',
    waitMillisBetweenGroups: 0,
    allowedTasksFailuresPerGroup: 0,
    canaryCycleCount: 3,
  } satisfies CanaryDeploySettings,
  acceptanceCheck: { intervalSeconds: 5, timeoutSeconds: 30, failOnError: true },
} as const;

const D = DEPLOY_DEFAULTS;
const LONG_RUNNING: ReadonlySet<string> = new Set(['SERVICE', 'WORKER']);

export const deployIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_.]+$/, { error: 'must be 1-50 characters of [A-Za-z0-9_.]' })
  .max(50, { error: 'must be 1-50 characters of [A-Za-z0-9_.]' });

const envName = z
  .string()
  .max(LIMITS.envName)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'environment variable names must match [A-Za-z_][A-Za-z0-9_]*' });
const envSchema = boundedRecord(envName, text(LIMITS.envValue), LIMITS.envKeys);
const httpUrl = z
  .string()
  .max(LIMITS.url)
  .refine((s) => /^https?:\/\//.test(s) && URL.canParse(s), { error: 'must be an http:// or https:// URL' });
const statusCode = z.int().min(100).max(599);
const portIndex = () => count(0, LIMITS.ports - 1);

const resourcesSchema = nullsAsAbsent(
  z.strictObject({
    cpus: z.number().gt(0).max(LIMITS.cpus).default(D.resources.cpus),
    memoryMb: z.number().gt(0).max(LIMITS.megabytes).default(D.resources.memoryMb),
    numPorts: count(0, LIMITS.ports).default(D.resources.numPorts),
    diskMb: z.number().min(0).max(LIMITS.megabytes).default(D.resources.diskMb),
  }),
);

const H = D.healthcheck;
const healthcheckSchema = nullsAsAbsent(
  z.strictObject({
    uri: nonEmpty(LIMITS.url),
    portIndex: portIndex().default(H.portIndex),
    portNumber: z.int().min(1).max(65535).optional(),
    protocol: z.enum(['HTTP', 'HTTPS']).default(H.protocol),
    method: z.enum(['GET', 'POST']).default(H.method),
    startupDelaySeconds: seconds(0).default(H.startupDelaySeconds),
    startupTimeoutSeconds: seconds(1).default(H.startupTimeoutSeconds),
    startupIntervalSeconds: seconds(1).default(H.startupIntervalSeconds),
    intervalSeconds: seconds(1).default(H.intervalSeconds),
    responseTimeoutSeconds: seconds(1).default(H.responseTimeoutSeconds),
    maxRetries: count().default(H.maxRetries),
    failureStatusCodes: list(statusCode).default(() => [...H.failureStatusCodes]),
    checkWhileRunning: z.boolean().default(H.checkWhileRunning),
  }),
);

const C = D.canaryDeploySettings;
const canarySchema = nullsAsAbsent(
  z.strictObject({
    enableCanaryDeploy: z.boolean().default(C.enableCanaryDeploy),
    instanceGroupSize: count(1, LIMITS.instances).default(C.instanceGroupSize),
    acceptanceMode: z.enum(ACCEPTANCE_MODES).default(C.acceptanceMode),
    waitMillisBetweenGroups: millis().default(C.waitMillisBetweenGroups),
    allowedTasksFailuresPerGroup: count().default(C.allowedTasksFailuresPerGroup),
    canaryCycleCount: count(1, 1000).default(C.canaryCycleCount),
  }),
);

const A = D.acceptanceCheck;
const checkCommon = {
  name: z.string().min(1).max(100),
  intervalSeconds: seconds(1).default(A.intervalSeconds),
  timeoutSeconds: seconds(1).default(A.timeoutSeconds),
  failOnError: z.boolean().default(A.failOnError),
};
const acceptanceCheckSchema = nullsAsAbsent(
  z.discriminatedUnion('type', [
    z
      .strictObject({
        ...checkCommon,
        type: z.literal('http'),
        url: httpUrl,
        method: z.enum(['GET', 'POST']).default('GET'),
        expectStatus: list(statusCode).min(1).optional(),
        jsonPath: nonEmpty(LIMITS.path).optional(),
        equals: boundedJson().optional(),
      })
      .superRefine((c, ctx) => {
        // `equals` may legitimately be null, so presence is checked with `in`.
        if (c.jsonPath !== undefined && !('equals' in c))
          ctx.addIssue({ code: 'custom', path: ['equals'], message: 'is required with jsonPath' });
        if (c.jsonPath === undefined && 'equals' in c)
          ctx.addIssue({ code: 'custom', path: ['jsonPath'], message: 'is required with equals' });
      }),
    z.strictObject({ ...checkCommon, type: z.literal('command'), command: nonEmpty(LIMITS.command) }),
    z.strictObject({ ...checkCommon, type: z.literal('manual') }),
    z
      .strictObject({
        ...checkCommon,
        type: z.literal('prometheus'),
        url: httpUrl,
        query: nonEmpty(LIMITS.message),
        max: z.number().optional(),
        min: z.number().optional(),
        // threshold: the query's value against max/min; old-deploy: the new deploy's value
        // relative to the same query for the old deploy's tasks.
        compare: z.enum(['threshold', 'old-deploy']).default('threshold'),
      })
      .superRefine((c, ctx) => {
        if (c.max === undefined && c.min === undefined) ctx.addIssue({ code: 'custom', path: ['max'], message: 'max or min is required' });
      }),
  ]),
  ['equals'],
);

// Singularity's artifact list (SingularityMesosArtifact); the process runtime fetches them.
const urisSchema = list(
  z.union([
    nonEmpty(LIMITS.url),
    nullsAsAbsent(
      z.strictObject({
        uri: nonEmpty(LIMITS.url),
        cache: z.boolean().optional(),
        executable: z.boolean().optional(),
        extract: z.boolean().optional(),
        outputFile: nonEmpty(LIMITS.path).optional(),
      }),
    ),
  ]),
);

const legacyHealthcheckShape = {
  healthcheckUri: nonEmpty(LIMITS.url).optional(),
  healthcheckPortIndex: portIndex().optional(),
  healthcheckProtocol: z.enum(['HTTP', 'HTTPS']).optional(),
  healthcheckIntervalSeconds: seconds(1).optional(),
  healthcheckTimeoutSeconds: seconds(1).optional(),
  healthcheckMaxRetries: count().optional(),
};

const deployShape = z.strictObject({
  requestId: requestIdSchema,
  id: deployIdSchema,
  command: nonEmpty(LIMITS.command).optional(),
  arguments: list(text(LIMITS.command), LIMITS.arguments).optional(),
  env: envSchema.default(() => ({})),
  taskEnv: boundedRecord(
    z.string().regex(/^[0-9]{1,7}$/, { error: 'taskEnv keys are instance numbers' }),
    envSchema,
    LIMITS.taskEnvInstances,
  ).default(() => ({})),
  resources: resourcesSchema.default(() => ({ ...D.resources })),
  metadata: boundedRecord(text(LIMITS.name), text(LIMITS.metadataValue), LIMITS.metadataKeys).optional(),
  version: text().optional(),
  shell: z
    .boolean()
    .optional()
    .describe('Containers: true runs command with /bin/sh -c (default false, as in Singularity). Processes: not read.'),
  containerInfo: containerInfoSchema
    .optional()
    .describe(
      'Singularity containerInfo. type DOCKER runs the task as a container on a Docker host (a 400 when the server has none); MESOS runs a process.',
    ),
  uris: urisSchema.optional().describe('Artifacts fetched into the task sandbox before it starts.'),

  healthcheck: healthcheckSchema.optional(),
  ...legacyHealthcheckShape,
  considerHealthyAfterRunningForSeconds: seconds(0).default(D.considerHealthyAfterRunningForSeconds),
  deployHealthTimeoutSeconds: seconds(1).default(D.deployHealthTimeoutSeconds),
  skipHealthchecksOnDeploy: z.boolean().default(D.skipHealthchecksOnDeploy),

  serviceBasePath: text(LIMITS.path).regex(/^\//, { error: 'must start with /' }).optional(),
  loadBalancerGroups: list(nonEmpty()).optional(),
  // Not defaulted here: whether it was given decides whether it is checked against numPorts.
  loadBalancerPortIndex: portIndex().optional().meta({ default: D.loadBalancerPortIndex }),
  loadBalancerOptions: boundedRecord(text(LIMITS.name), boundedJson(), LIMITS.list).optional(),
  loadBalancerDomains: list(nonEmpty()).optional(),
  loadBalancerAdditionalRoutes: list(nonEmpty(LIMITS.path)).optional(),
  loadBalancerServiceIdOverride: nonEmpty().optional(),
  loadBalancerUpstreamGroup: nonEmpty().default(D.loadBalancerUpstreamGroup),
  loadBalancerTimeoutSeconds: seconds(1).default(D.loadBalancerTimeoutSeconds),

  canaryDeploySettings: canarySchema.optional(),
  canarySettings: canarySchema.optional().describe('Alias of canaryDeploySettings (the key Singularity docs print).'),
  deployInstanceCountPerStep: count(1, LIMITS.instances).optional().describe('Legacy: canary on, instanceGroupSize.'),
  deployStepWaitTimeMs: millis().optional().describe('Legacy: acceptanceMode TIMED, waitMillisBetweenGroups.'),
  maxTaskRetries: count().optional().describe('Legacy: allowedTasksFailuresPerGroup.'),
  autoAdvanceDeploySteps: z.boolean().optional().describe('Legacy: false means acceptanceMode MANUAL.'),

  acceptanceChecks: list(acceptanceCheckSchema, LIMITS.acceptanceChecks).default(() => []),
  acceptanceTimeoutSeconds: seconds(1).default(D.acceptanceTimeoutSeconds),
  successfulExitCodes: z
    .array(z.int().min(0).max(255))
    .min(1)
    .max(256)
    .optional()
    .describe('Run-to-completion tasks: exit codes that count as success (default [0]).'),

  ...ignoredFields(IGNORED_DEPLOY_FIELDS),
});

type RawDeploy = z.output<typeof deployShape>;
const legacyHealthcheckKeys = Object.keys(LEGACY_HEALTHCHECK_FIELDS) as (keyof typeof LEGACY_HEALTHCHECK_FIELDS)[];
const present = (d: RawDeploy, keys: readonly string[]) => keys.filter((k) => (d as Record<string, unknown>)[k] !== undefined);

function deployRules(d: RawDeploy, ctx: z.RefinementCtx, containers: boolean): void {
  if (d.containerInfo !== undefined) {
    containerRules(
      d.containerInfo,
      {
        numPorts: d.resources.numPorts,
        memoryMb: d.resources.memoryMb,
        ...(d.command !== undefined ? { command: d.command } : {}),
        ...(d.shell !== undefined ? { shell: d.shell } : {}),
      },
      containers,
      ctx,
    );
  }
  const legacyHc = present(d, legacyHealthcheckKeys);
  if (d.healthcheck && legacyHc.length > 0) {
    conflict(ctx, ['healthcheck'], legacyHc, 'give either the healthcheck object or the legacy flat healthcheck fields, not both');
  } else if (legacyHc.length > 0 && d.healthcheckUri === undefined) {
    ctx.addIssue({ code: 'custom', path: ['healthcheckUri'], message: `is required with ${legacyHc.join(', ')}` });
  }
  if (d.canaryDeploySettings && d.canarySettings) {
    conflict(ctx, ['canaryDeploySettings'], ['canarySettings'], 'canarySettings is an alias of canaryDeploySettings; give one, not both');
  }
  const legacyCanary = present(d, LEGACY_CANARY_FIELDS);
  const canaryKey = d.canaryDeploySettings ? 'canaryDeploySettings' : d.canarySettings ? 'canarySettings' : undefined;
  if (canaryKey && legacyCanary.length > 0) {
    // Singularity silently ignores the legacy fields here; Fledge says so instead.
    conflict(ctx, [canaryKey], legacyCanary, `give either ${canaryKey} or the legacy incremental deploy fields, not both`);
  }

  const numPorts = d.resources.numPorts;
  const hcPort = d.healthcheck
    ? { path: ['healthcheck', 'portIndex'], index: d.healthcheck.portIndex, fixed: d.healthcheck.portNumber !== undefined }
    : d.healthcheckUri !== undefined
      ? { path: ['healthcheckPortIndex'], index: d.healthcheckPortIndex ?? H.portIndex, fixed: false }
      : undefined;
  if (hcPort && !hcPort.fixed && hcPort.index >= numPorts) {
    ctx.addIssue({ code: 'custom', path: hcPort.path, message: `must be < resources.numPorts (${numPorts})` });
  }
  if (d.loadBalancerPortIndex !== undefined && d.loadBalancerPortIndex >= numPorts) {
    ctx.addIssue({ code: 'custom', path: ['loadBalancerPortIndex'], message: `must be < resources.numPorts (${numPorts})` });
  }

  const seen = new Set<string>();
  d.acceptanceChecks.forEach((c, i) => {
    if (seen.has(c.name))
      ctx.addIssue({ code: 'custom', path: ['acceptanceChecks', i, 'name'], message: `must be unique (${c.name} is used twice)` });
    seen.add(c.name);
  });
}

function readHealthcheck(d: RawDeploy): HealthcheckOptions | undefined {
  if (d.healthcheck) return compact({ ...d.healthcheck, failureStatusCodes: [...d.healthcheck.failureStatusCodes] });
  if (d.healthcheckUri === undefined) return undefined;
  return {
    ...H,
    failureStatusCodes: [],
    uri: d.healthcheckUri,
    portIndex: d.healthcheckPortIndex ?? H.portIndex,
    protocol: d.healthcheckProtocol ?? H.protocol,
    intervalSeconds: d.healthcheckIntervalSeconds ?? H.intervalSeconds,
    responseTimeoutSeconds: d.healthcheckTimeoutSeconds ?? H.responseTimeoutSeconds,
    maxRetries: d.healthcheckMaxRetries ?? H.maxRetries,
  };
}

function readCanary(d: RawDeploy): CanaryDeploySettings {
  const given = d.canaryDeploySettings ?? d.canarySettings;
  if (given) return { ...given };
  const s: CanaryDeploySettings = { ...C };
  if (d.deployInstanceCountPerStep !== undefined) {
    s.enableCanaryDeploy = true;
    s.instanceGroupSize = d.deployInstanceCountPerStep;
  }
  if (d.deployStepWaitTimeMs !== undefined) {
    s.acceptanceMode = 'TIMED';
    s.waitMillisBetweenGroups = d.deployStepWaitTimeMs;
  }
  if (d.maxTaskRetries !== undefined) s.allowedTasksFailuresPerGroup = d.maxTaskRetries;
  // Singularity 1.5 dropped this; Fledge honours it again (deploys.md Fix).
  if (d.autoAdvanceDeploySteps === false) s.acceptanceMode = 'MANUAL';
  return s;
}

function readCheck(c: z.output<typeof acceptanceCheckSchema>): AcceptanceCheckSpec {
  const { name, type, intervalSeconds, timeoutSeconds, failOnError, ...options } = c;
  return { name, type, intervalSeconds, timeoutSeconds, failOnError, options };
}

function normalise(d: RawDeploy): Deploy {
  const { extra, warnings } = splitIgnored(d, IGNORED_DEPLOY_FIELDS);
  if (d.uris !== undefined) extra.uris = d.uris.map((u) => (typeof u === 'string' ? { uri: u } : u));
  const container = d.containerInfo !== undefined ? normaliseContainer(d.containerInfo) : undefined;
  if (container) warnings.push(...container.warnings);
  const docker = container?.value.type === 'DOCKER';
  if (d.shell !== undefined && !docker) {
    // Kept for a round trip; processes run `arguments` as argv, else `command` through /bin/sh -c.
    extra.shell = d.shell;
    warnings.push({
      field: 'shell',
      message: 'only read for Docker containers; processes run arguments without a shell, else command with /bin/sh -c',
    });
  }
  if (docker && !d.shell && d.command !== undefined && /\s/.test(d.command)) {
    warnings.push({
      field: 'command',
      message:
        "runs as the container's executable, without a shell (Singularity's rule for containers): set shell: true to run it with /bin/sh -c, or give the words as arguments",
    });
  }

  const legacyHc = present(d, legacyHealthcheckKeys);
  if (legacyHc.length > 0) {
    warnings.push({ field: legacyHc[0] ?? '', message: `legacy field(s) ${legacyHc.join(', ')} read into healthcheck` });
  }
  const legacyCanary = present(d, LEGACY_CANARY_FIELDS);
  const canary = readCanary(d);
  if (legacyCanary.length > 0) {
    warnings.push({
      field: legacyCanary[0] ?? '',
      message: `legacy field(s) ${legacyCanary.join(', ')} read as canaryDeploySettings ${JSON.stringify(canary)}`,
    });
  }
  if (d.acceptanceChecks.length > 0 && canary.acceptanceMode !== 'CHECKS') {
    warnings.push({
      field: 'acceptanceChecks',
      message: `declared, but checks only run with acceptanceMode CHECKS (this deploy's is ${canary.acceptanceMode})`,
    });
  }

  const out: Deploy = compact({
    requestId: d.requestId,
    id: d.id,
    command: d.command,
    arguments: d.arguments,
    shell: docker ? d.shell : undefined,
    containerInfo: container?.value,
    env: d.env,
    taskEnv: d.taskEnv,
    resources: { ...d.resources },
    metadata: d.metadata,
    version: d.version,
    healthcheck: readHealthcheck(d),
    considerHealthyAfterRunningForSeconds: d.considerHealthyAfterRunningForSeconds,
    deployHealthTimeoutSeconds: d.deployHealthTimeoutSeconds,
    skipHealthchecksOnDeploy: d.skipHealthchecksOnDeploy,
    serviceBasePath: d.serviceBasePath,
    loadBalancerGroups: d.loadBalancerGroups,
    loadBalancerPortIndex: d.loadBalancerPortIndex ?? D.loadBalancerPortIndex,
    loadBalancerOptions: d.loadBalancerOptions,
    loadBalancerDomains: d.loadBalancerDomains,
    loadBalancerAdditionalRoutes: d.loadBalancerAdditionalRoutes,
    loadBalancerServiceIdOverride: d.loadBalancerServiceIdOverride,
    loadBalancerUpstreamGroup: d.loadBalancerUpstreamGroup,
    loadBalancerTimeoutSeconds: d.loadBalancerTimeoutSeconds,
    canaryDeploySettings: canary,
    acceptanceChecks: d.acceptanceChecks.map(readCheck),
    acceptanceTimeoutSeconds: d.acceptanceTimeoutSeconds,
    successfulExitCodes: d.successfulExitCodes,
    extra: Object.keys(extra).length > 0 ? extra : undefined,
    // The service stamps the stored time; this is only "when it was parsed".
    timestamp: Date.now(),
  });
  return attachWarnings(out, warnings);
}

function buildDeploySchema(containers: boolean) {
  return describeInput(nullsAsAbsent(deployShape.superRefine((d, ctx) => deployRules(d, ctx, containers)).transform((d) => normalise(d))), {
    label: 'deploy',
    root: 'deploy',
  });
}

const bySupport = { true: buildDeploySchema(true), false: buildDeploySchema(false) };
export type DeploySchema = ReturnType<typeof buildDeploySchema>;

/** The deploy object; `containers` says whether the server has a Docker host for containerInfo DOCKER. */
export function deploySchema(options: { containers?: boolean } = {}): DeploySchema {
  return bySupport[options.containers ? 'true' : 'false'];
}

/**
 * Rules that need the request the deploy is for (the stored one, or the deploy body's
 * updatedRequest). Fields are named from the deploy body root (`deploy.serviceBasePath`).
 */
export function validateDeployForRequest(deploy: Deploy, request: FledgeRequest): Issue[] {
  const issues: Issue[] = [];
  if (deploy.requestId !== request.id) {
    issues.push({ field: 'deploy.requestId', rule: `must be the id of the request it deploys (${request.id})` });
  }
  // A Docker image has its own command (CMD); a process needs one.
  if (LONG_RUNNING.has(request.requestType) && !deploy.command && !deploy.arguments?.length && !isDockerDeploy(deploy)) {
    issues.push({ field: 'deploy.command', rule: `command or arguments is required for ${request.requestType} requests` });
  }
  if (request.loadBalanced) {
    if (!deploy.serviceBasePath) {
      issues.push({ field: 'deploy.serviceBasePath', rule: 'is required because the request is load balanced' });
    }
    if (!deploy.loadBalancerGroups?.length) {
      issues.push({ field: 'deploy.loadBalancerGroups', rule: 'must have at least 1 group because the request is load balanced' });
    }
    if (deploy.loadBalancerPortIndex >= deploy.resources.numPorts) {
      issues.push({
        field: 'deploy.loadBalancerPortIndex',
        rule: `must be < resources.numPorts (${deploy.resources.numPorts}) because the request is load balanced`,
      });
    }
  }
  return issues;
}
