// Deploy body → Deploy: defaults applied, legacy Singularity fields mapped, cross-field rules.
import { z } from 'zod';
import { isDockerDeploy } from '../../core/container.ts';
import {
  ACCEPTANCE_MODES,
  type AcceptanceCheckSpec,
  type CanaryDeploySettings,
  type Deploy,
  type ExecutorArtifact,
  type ExecutorData,
  type FledgeRequest,
  type HealthcheckOptions,
  type Resources,
  type RoutingMatch,
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
import { MAX_WINDOW_MS } from '../../balancers/traffic.ts';
import { LB_CHECK_DEFAULTS, LB_THRESHOLDS } from '../../checks/lb/evaluate.ts';
import { containerInfoSchema, containerRules, normaliseContainer } from './container.ts';
import { MAX_LOAD_PER_TASK_RATIO, MAX_TRAFFIC_STEPS } from '../../core/deploy/traffic.ts';
import { requestIdSchema } from './request.ts';
import {
  EXECUTOR_ONLY_FIELDS,
  IGNORED_DEPLOY_FIELDS,
  ignoredOf,
  LEGACY_CANARY_FIELDS,
  LEGACY_HEALTHCHECK_FIELDS,
} from './singularity-fields.ts';

const HEALTHCHECK_PROTOCOLS = ['HTTP', 'HTTPS', 'HTTP2', 'HTTPS2'] as const;
const ARTIFACT_SCHEMES: ReadonlySet<string> = new Set(['http:', 'https:', 'file:']);

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
    protocol: z
      .enum(HEALTHCHECK_PROTOCOLS)
      .default(H.protocol)
      .describe('HTTP or HTTPS; HTTP2 and HTTPS2 are read as HTTP and HTTPS (checks use HTTP/1.1), with a warning'),
    method: z.enum(['GET', 'POST']).default(H.method),
    startupDelaySeconds: seconds(0).default(H.startupDelaySeconds),
    startupTimeoutSeconds: seconds(1).default(H.startupTimeoutSeconds),
    startupIntervalSeconds: seconds(1).default(H.startupIntervalSeconds),
    intervalSeconds: seconds(1).default(H.intervalSeconds),
    responseTimeoutSeconds: seconds(1).default(H.responseTimeoutSeconds),
    maxRetries: count().default(H.maxRetries),
    failureStatusCodes: list(statusCode).default(() => [...H.failureStatusCodes]),
    healthcheckResultFilePath: text(LIMITS.path)
      .optional()
      .describe(`Singularity field, stored but not acted on: ${ignoredOf('HealthcheckOptions').healthcheckResultFilePath}.`),
    checkWhileRunning: z.boolean().default(H.checkWhileRunning),
  }),
);

/**
 * Routing names: an RFC 7230 token (header and cookie names alike) without ' $ %, which
 * HAProxy's configuration cannot carry as written (a quote, an environment variable, a log format).
 */
export const ROUTING_LIMITS = { rules: 16, name: 64, value: 256 } as const;
const routingName = z.string().regex(new RegExp(`^[!#&*+.^_\`|~0-9A-Za-z-]{1,${ROUTING_LIMITS.name}}$`), {
  error: `must be an RFC 7230 token of 1-${ROUTING_LIMITS.name} characters: letters, digits and !#&*+-.^_\`|~ (not ' $ %)`,
});
// A value both balancers compare byte for byte, written as is into HAProxy's configuration.
const routingValue = z.string().regex(new RegExp(`^[A-Za-z0-9._~:@+=/*!^|-]{1,${ROUTING_LIMITS.value}}$`), {
  error: `must be 1-${ROUTING_LIMITS.value} characters of letters, digits and ._~:@+=/*!^|-`,
});
const routingMatchSchema = z
  .strictObject({ header: routingName.optional(), cookie: routingName.optional(), value: routingValue.optional() })
  .superRefine((r, ctx) => {
    if ((r.header === undefined) === (r.cookie === undefined))
      ctx.addIssue({ code: 'custom', path: ['header'], message: 'give header or cookie (one of them) for each rule' });
  })
  .transform(({ header, cookie, value }): RoutingMatch => {
    const v = value !== undefined ? { value } : {};
    return header !== undefined ? { header, ...v } : { cookie: cookie ?? '', ...v };
  });
const routingSchema = nullsAsAbsent(
  z
    .strictObject({
      match: z
        .array(routingMatchSchema)
        .max(ROUTING_LIMITS.rules)
        .default(() => []),
      sticky: nullsAsAbsent(
        z
          .strictObject({
            cookie: routingName.optional(),
            header: routingName.optional(),
            percent: z.int().min(0).max(100).optional(),
          })
          .superRefine((s, ctx) => {
            if (s.cookie === undefined && s.header === undefined)
              ctx.addIssue({ code: 'custom', path: ['cookie'], message: 'cookie or header is required' });
            if (s.header !== undefined && s.percent === undefined)
              ctx.addIssue({
                code: 'custom',
                path: ['percent'],
                message: 'is required with header (the share of its values sent to the new deploy)',
              });
            if (s.header === undefined && s.percent !== undefined)
              ctx.addIssue({ code: 'custom', path: ['header'], message: 'is required with percent' });
          }),
      ).optional(),
    })
    .superRefine((r, ctx) => {
      if (r.match.length === 0 && r.sticky === undefined)
        ctx.addIssue({ code: 'custom', path: ['match'], message: 'at least one rule (or sticky) is required' });
    }),
);

const C = D.canaryDeploySettings;
const canarySchema = nullsAsAbsent(
  z.strictObject({
    routing: routingSchema
      .optional()
      .describe("Fledge's own: requests by header or cookie, and sticky cohorts, sent to the new deploy while it is pending"),
    enableCanaryDeploy: z.boolean().default(C.enableCanaryDeploy),
    instanceGroupSize: count(1, LIMITS.instances).default(C.instanceGroupSize),
    acceptanceMode: z.enum(ACCEPTANCE_MODES).default(C.acceptanceMode),
    waitMillisBetweenGroups: millis().default(C.waitMillisBetweenGroups),
    allowedTasksFailuresPerGroup: count().default(C.allowedTasksFailuresPerGroup),
    canaryCycleCount: count(1, 1000).default(C.canaryCycleCount),
    trafficSteps: z
      .array(z.number().gt(0).lt(100))
      .min(1)
      .max(MAX_TRAFFIC_STEPS)
      .refine((steps) => steps.every((x, i) => i === 0 || x > steps[i - 1]!), {
        message: 'must be in ascending order, each above the one before',
      })
      .optional()
      .describe(
        "Fledge: percent of the service's requests the new deploy gets at each step (e.g. [1, 5, 25, 50]), through load-balancer weights; then one step to every instance. With it, instanceGroupSize and canaryCycleCount are not read (docs/traffic.md).",
      ),
    maxLoadPerTaskRatio: z
      .number()
      .min(0.1)
      .max(MAX_LOAD_PER_TASK_RATIO)
      .optional()
      .describe("Fledge: the most load one new task may carry during a traffic step, in old tasks' loads (default 2)"),
    fledgeAcceptanceMode: z
      .enum(ACCEPTANCE_MODES)
      .optional()
      .describe(
        "Fledge's acceptance mode as a deploy read back from Fledge carries it (acceptanceMode holds Singularity's nearest value); wins over acceptanceMode",
      ),
  }),
);

const A = D.acceptanceCheck;
const ratio = () => z.number().min(0).max(1);
const factor = () => z.number().positive().max(1_000_000);
const latencyMs = () =>
  z
    .number()
    .positive()
    .max(LIMITS.seconds * 1000);
const promql = () => nonEmpty(LIMITS.message);
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
        type: z.literal('lb'),
        maxErrorRate: ratio()
          .optional()
          .describe('at most this share of the new deploy’s requests are errors (5xx, upstream errors), 0..1'),
        maxErrorRateVsOld: factor().optional().describe('the new error rate is at most this many times the old one'),
        errorRateFloor: ratio()
          .default(LB_CHECK_DEFAULTS.errorRateFloor)
          .describe('the old error rate maxErrorRateVsOld multiplies is at least this (so an old rate of 0 compares with it)'),
        maxP50Ms: latencyMs().optional(),
        maxP99Ms: latencyMs().optional(),
        maxP99MsVsOld: factor().optional().describe('the new p99 is at most this many times the old one'),
        minRequests: count(1, 1_000_000_000).default(LB_CHECK_DEFAULTS.minRequests).describe('requests each side needs before a verdict'),
        windowSeconds: z
          .int()
          .min(1)
          .max(MAX_WINDOW_MS / 1000)
          .default(LB_CHECK_DEFAULTS.windowSeconds),
      })
      .superRefine((c, ctx) => {
        if (LB_THRESHOLDS.every((k) => c[k] === undefined))
          ctx.addIssue({ code: 'custom', path: ['maxErrorRate'], message: `one of ${LB_THRESHOLDS.join(', ')} is required` });
      }),
    z
      .strictObject({
        ...checkCommon,
        type: z.literal('prometheus'),
        url: httpUrl
          .optional()
          .describe('the Prometheus server (default the server’s --prometheus-url; others must be in --prometheus-allow)'),
        query: promql(),
        max: z.number().optional(),
        min: z.number().optional(),
        maxVsOld: factor()
          .optional()
          .describe('compare mode: the query for the new tasks ($TASK_IDS) is at most this many times the same query for the old ones'),
        oldFloor: z.number().min(0).default(0).describe('compare mode: the old value maxVsOld multiplies is at least this'),
        samplesQuery: promql()
          .optional()
          .describe('a query whose value is the number of samples behind the answer (e.g. requests counted)'),
        minSamples: count(1, 1_000_000_000).optional().describe('samplesQuery must reach this (per side in compare mode) before a verdict'),
      })
      .superRefine((c, ctx) => {
        const compare = c.maxVsOld !== undefined;
        if (c.max === undefined && c.min === undefined && !compare)
          ctx.addIssue({ code: 'custom', path: ['max'], message: 'max, min or maxVsOld is required' });
        if ((c.minSamples === undefined) !== (c.samplesQuery === undefined))
          ctx.addIssue({
            code: 'custom',
            path: [c.minSamples === undefined ? 'minSamples' : 'samplesQuery'],
            message: 'minSamples and samplesQuery go together',
          });
        for (const field of ['query', 'samplesQuery'] as const) {
          const q = c[field];
          if (q === undefined) continue;
          if (compare && !q.includes('$TASK_IDS'))
            ctx.addIssue({
              code: 'custom',
              path: [field],
              message: 'must use $TASK_IDS with maxVsOld (it is run once for the new tasks, once for the old)',
            });
          if (!compare && q.includes('$TASK_IDS'))
            ctx.addIssue({
              code: 'custom',
              path: [field],
              message: '$TASK_IDS is for compare mode (maxVsOld); use $NEW_TASK_IDS or $OLD_TASK_IDS',
            });
        }
      }),
  ]),
  ['equals'],
);

/** A URL the artifact fetcher reads: http(s) or file. */
const artifactUrl = z
  .string()
  .min(1)
  .max(LIMITS.url)
  .refine((u) => URL.canParse(u) && ARTIFACT_SCHEMES.has(new URL(u).protocol), {
    error: 'must be an http://, https:// or file:// URL (Fledge fetches no other scheme)',
  });
/** A file or folder inside the sandbox: relative, no `..`, no NUL. */
const sandboxPath = (what: string) =>
  z
    .string()
    .min(1)
    .max(LIMITS.path)
    .refine((p) => !p.startsWith('/') && !p.includes('\0') && !p.split('/').includes('..'), {
      error: `must be a ${what} inside the task's sandbox (relative, without ..)`,
    });

// Singularity's artifact list (SingularityMesosArtifact, or a bare URL string as its
// @JsonCreator reads one); fetched into each task's sandbox before the task starts.
const urisSchema = list(
  z.union([
    artifactUrl,
    nullsAsAbsent(
      z.strictObject({
        uri: artifactUrl,
        cache: z.boolean().default(false),
        executable: z.boolean().default(false),
        extract: z
          .boolean()
          .default(true)
          .describe('unpack .tar, .tar.gz, .tgz, .tar.bz2, .tbz2, .tar.xz, .txz, .zip or .gz (default true)'),
        outputFile: sandboxPath('file name').optional(),
      }),
    ),
  ]),
);

// SingularityExecutor's artifacts; S3 ones need S3 credentials Fledge does not have.
const executorArtifactSchema = nullsAsAbsent(
  z
    .strictObject({
      name: text(),
      filename: sandboxPath('file name'),
      targetFolderRelativeToTask: sandboxPath('folder').optional(),
      md5sum: z
        .string()
        .regex(/^[0-9a-fA-F]{32}$/, { error: 'must be 32 hex digits' })
        .optional(),
      md5Sum: z
        .string()
        .regex(/^[0-9a-fA-F]{32}$/, { error: 'must be 32 hex digits' })
        .optional()
        .describe("The spelling Singularity's UI sends; read as md5sum"),
      url: artifactUrl.optional(),
      filesize: z.int().min(0).max(LIMITS.artifactBytes).optional(),
      content: z
        .string()
        .max(LIMITS.json.string)
        .regex(/^[A-Za-z0-9+/=\s]*$/, { error: 'must be base64' })
        .optional(),
      s3Bucket: text().optional(),
      s3ObjectKey: text(LIMITS.url).optional(),
      isArtifactList: z.boolean().optional(),
      type: text().optional().describe("Singularity's UI form field (embedded, external, s3); not read"),
    })
    .superRefine((a, ctx) => {
      if (a.md5sum !== undefined && a.md5Sum !== undefined)
        conflict(ctx, ['md5sum'], ['md5Sum'], 'md5Sum is the UI spelling of md5sum; give one');
      if (a.isArtifactList)
        ctx.addIssue({
          code: 'custom',
          path: ['isArtifactList'],
          message: 'artifact lists are not supported; list the artifacts themselves',
        });
    }),
);

const executorDataSchema = nullsAsAbsent(
  z
    .strictObject({
      cmd: text(LIMITS.command),
      extraCmdLineArgs: list(text(LIMITS.command), LIMITS.arguments).default(() => []),
      successfulExitCodes: list(z.int().min(0).max(255), 256).default(() => []),
      embeddedArtifacts: list(executorArtifactSchema).default(() => []),
      externalArtifacts: list(executorArtifactSchema).default(() => []),
      s3Artifacts: list(executorArtifactSchema)
        .max(0, {
          error: 'S3 artifacts are not fetched by Fledge (it has no S3 credentials): give their URLs in externalArtifacts or uris',
        })
        .optional(),
      s3ArtifactSignatures: list(boundedJson())
        .max(0, { error: 'S3 artifact signatures are not checked by Fledge: give md5sum on externalArtifacts' })
        .optional(),
      sigKillProcessesAfterMillis: millis().optional(),
      ...ignoredFields(ignoredOf('ExecutorData')),
    })
    .superRefine((e, ctx) => {
      e.externalArtifacts.forEach((a, i) => {
        if (a.url === undefined) ctx.addIssue({ code: 'custom', path: ['externalArtifacts', i, 'url'], message: 'is required' });
      });
      e.embeddedArtifacts.forEach((a, i) => {
        if (a.content === undefined) ctx.addIssue({ code: 'custom', path: ['embeddedArtifacts', i, 'content'], message: 'is required' });
      });
    }),
);

const legacyHealthcheckShape = {
  healthcheckUri: nonEmpty(LIMITS.url).optional(),
  healthcheckPortIndex: portIndex().optional(),
  healthcheckProtocol: z.enum(HEALTHCHECK_PROTOCOLS).optional(),
  healthCheckProtocol: z.enum(HEALTHCHECK_PROTOCOLS).optional().describe("Legacy: the @JsonCreator's spelling of healthcheckProtocol"),
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
  uris: urisSchema.optional().describe('Artifacts fetched into the task sandbox before it starts (http, https and file URLs).'),
  executorData: executorDataSchema
    .optional()
    .describe("SingularityExecutor's settings: without command, cmd runs with extraCmdLineArgs; its artifacts are fetched like uris"),

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
    .describe(
      'Exit codes that count as success (default [0]; executorData.successfulExitCodes is read here too); run-to-completion tasks are judged by them.',
    ),

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
  // With the healthcheck object (or canaryDeploySettings) given, the legacy flat fields are
  // not read, as in Singularity (a deploy read back from Singularity carries both): normalise warns.
  const legacyHc = present(d, legacyHealthcheckKeys);
  if (!d.healthcheck && legacyHc.length > 0 && d.healthcheckUri === undefined) {
    ctx.addIssue({ code: 'custom', path: ['healthcheckUri'], message: `is required with ${legacyHc.join(', ')}` });
  }
  if (d.healthcheckProtocol !== undefined && d.healthCheckProtocol !== undefined && d.healthcheckProtocol !== d.healthCheckProtocol) {
    conflict(ctx, ['healthcheckProtocol'], ['healthCheckProtocol'], 'are two spellings of one field and disagree; give one');
  }
  if (d.canaryDeploySettings && d.canarySettings) {
    conflict(ctx, ['canaryDeploySettings'], ['canarySettings'], 'canarySettings is an alias of canaryDeploySettings; give one, not both');
  }
  const routingOf = d.canaryDeploySettings ? 'canaryDeploySettings' : 'canarySettings';
  const routing = (d.canaryDeploySettings ?? d.canarySettings)?.routing;
  if (routing) {
    const canaryOn = (d.canaryDeploySettings ?? d.canarySettings)?.enableCanaryDeploy === true;
    if (!canaryOn)
      ctx.addIssue({
        code: 'custom',
        path: [routingOf, 'routing'],
        message: 'needs enableCanaryDeploy: true (an atomic swap has no moment where two versions serve)',
      });
    if (d.serviceBasePath === undefined)
      ctx.addIssue({
        code: 'custom',
        path: [routingOf, 'routing'],
        message: 'needs serviceBasePath (routing is done by the load balancer)',
      });
  }
  if (d.command === undefined && !d.arguments?.length && d.executorData !== undefined && d.executorData.cmd.trim() === '') {
    ctx.addIssue({ code: 'custom', path: ['executorData', 'cmd'], message: 'must not be empty when the deploy has no command' });
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

/** HTTP2 and HTTPS2 are checked over HTTP/1.1 (Node's HTTP client); said in a warning. */
const plainProtocol = (p: (typeof HEALTHCHECK_PROTOCOLS)[number]): 'HTTP' | 'HTTPS' =>
  p === 'HTTP2' ? 'HTTP' : p === 'HTTPS2' ? 'HTTPS' : p;

function readHealthcheck(d: RawDeploy): HealthcheckOptions | undefined {
  if (d.healthcheck) {
    const given = d.healthcheck as typeof d.healthcheck & { healthcheckResultFilePath?: string };
    return compact({ ...given, protocol: plainProtocol(given.protocol), failureStatusCodes: [...given.failureStatusCodes] });
  }
  if (d.healthcheckUri === undefined) return undefined;
  return {
    ...H,
    failureStatusCodes: [],
    uri: d.healthcheckUri,
    portIndex: d.healthcheckPortIndex ?? H.portIndex,
    protocol: plainProtocol(d.healthcheckProtocol ?? d.healthCheckProtocol ?? H.protocol),
    intervalSeconds: d.healthcheckIntervalSeconds ?? H.intervalSeconds,
    responseTimeoutSeconds: d.healthcheckTimeoutSeconds ?? H.responseTimeoutSeconds,
    maxRetries: d.healthcheckMaxRetries ?? H.maxRetries,
  };
}

function readCanary(d: RawDeploy): CanaryDeploySettings {
  const raw = d.canaryDeploySettings ?? d.canarySettings;
  const given =
    raw && (({ fledgeAcceptanceMode, ...rest }) => ({ ...rest, acceptanceMode: fledgeAcceptanceMode ?? rest.acceptanceMode }))(raw);
  if (given) {
    // A deploy read back from Singularity carries canaryDeploySettings (derived from the legacy
    // fields) and autoAdvanceDeploySteps: false still means each step waits for a user.
    if (d.autoAdvanceDeploySteps === false && given.acceptanceMode !== 'CHECKS') return { ...given, acceptanceMode: 'MANUAL' };
    return { ...given };
  }
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
  const executor = d.executorData !== undefined ? readExecutorData(d, warnings) : undefined;
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
    warnings.push({
      field: legacyHc[0] ?? '',
      message: d.healthcheck
        ? `legacy field(s) ${legacyHc.join(', ')} not read: the healthcheck object is given and wins (as in Singularity)`
        : `legacy field(s) ${legacyHc.join(', ')} read into healthcheck`,
    });
  }
  if (d.healthcheck?.healthcheckResultFilePath !== undefined) {
    warnings.push({
      field: 'healthcheck.healthcheckResultFilePath',
      message: `accepted and stored, but Fledge does not act on it (${ignoredOf('HealthcheckOptions').healthcheckResultFilePath})`,
    });
  }
  const protocols = [d.healthcheck?.protocol, d.healthcheck ? undefined : (d.healthcheckProtocol ?? d.healthCheckProtocol)];
  for (const p of protocols) {
    if (p === 'HTTP2' || p === 'HTTPS2') {
      warnings.push({
        field: d.healthcheck ? 'healthcheck.protocol' : 'healthcheckProtocol',
        message: `${p} is checked as ${plainProtocol(p)} (HTTP/1.1): Fledge's health checks do not speak HTTP/2`,
      });
    }
  }
  const legacyCanary = present(d, LEGACY_CANARY_FIELDS);
  const canary = readCanary(d);
  const canaryKey = d.canaryDeploySettings ? 'canaryDeploySettings' : d.canarySettings ? 'canarySettings' : undefined;
  if (legacyCanary.length > 0) {
    warnings.push({
      field: legacyCanary[0] ?? '',
      message: canaryKey
        ? `legacy field(s) ${legacyCanary.join(', ')} not read: ${canaryKey} is given and wins (as in Singularity)${d.autoAdvanceDeploySteps === false && canary.acceptanceMode === 'MANUAL' ? '; autoAdvanceDeploySteps false still makes each step wait for a user (MANUAL)' : ''}`
        : `legacy field(s) ${legacyCanary.join(', ')} read as canaryDeploySettings ${JSON.stringify(canary)}`,
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
    successfulExitCodes: d.successfulExitCodes ?? (executor?.successfulExitCodes.length ? [...executor.successfulExitCodes] : undefined),
    uris: d.uris?.map((u) => (typeof u === 'string' ? { uri: u, cache: false, executable: false, extract: true } : compact({ ...u }))),
    executorData: executor,
    extra: Object.keys(extra).length > 0 ? extra : undefined,
    // The service stamps the stored time; this is only "when it was parsed".
    timestamp: Date.now(),
  });
  return attachWarnings(out, warnings);
}

/** executorData → the stored shape; warns about what SingularityExecutor does that Fledge does not. */
function readExecutorData(d: RawDeploy, warnings: { field: string; message: string }[]): ExecutorData {
  const e = d.executorData as NonNullable<RawDeploy['executorData']>;
  const ignoredHere = ignoredOf('ExecutorData');
  const { extra } = splitIgnored(e, ignoredHere);
  const artifact = (a: z.output<typeof executorArtifactSchema>, field: string, i: number): ExecutorArtifact => {
    if (a.md5Sum !== undefined) warnings.push({ field: `executorData.${field}[${i}].md5Sum`, message: 'read as md5sum' });
    return compact({
      name: a.name,
      filename: a.filename,
      targetFolderRelativeToTask: a.targetFolderRelativeToTask,
      md5sum: (a.md5sum ?? a.md5Sum)?.toLowerCase(),
      url: a.url,
      filesize: a.filesize,
      content: a.content?.replace(/\s/g, ''),
    });
  };
  if (d.command !== undefined || d.arguments?.length) {
    warnings.push({
      field: 'executorData.cmd',
      message: "not run: the deploy has a command, which runs instead (as with Mesos' default executor)",
    });
  }
  // What only SingularityExecutor and Singularity's custom-executor launch did, in one warning.
  const meaningless = [
    ...EXECUTOR_ONLY_FIELDS.filter((k) => (e as Record<string, unknown>)[k] !== undefined).map((k) => `executorData.${k}`),
    ...['customExecutorCmd', 'customExecutorId', 'customExecutorSource', 'customExecutorResources', 'customExecutorUser'].filter(
      (k) => (d as Record<string, unknown>)[k] !== undefined,
    ),
  ];
  if (meaningless.length > 0) {
    warnings.push({
      field: 'executorData',
      message: `Fledge runs executorData.cmd itself, without SingularityExecutor: ${meaningless.join(', ')} mean nothing here (${meaningless
        .map((k) => ignoredHere[k.replace(/^executorData\./, '')] ?? 'custom executor launch')
        .filter((why, i, all) => all.indexOf(why) === i)
        .join('; ')})`,
    });
  }
  return compact({
    cmd: e.cmd,
    extraCmdLineArgs: [...e.extraCmdLineArgs],
    successfulExitCodes: [...e.successfulExitCodes],
    externalArtifacts: e.externalArtifacts.map((a, i) => artifact(a, 'externalArtifacts', i)),
    embeddedArtifacts: e.embeddedArtifacts.map((a, i) => artifact(a, 'embeddedArtifacts', i)),
    sigKillProcessesAfterMillis: e.sigKillProcessesAfterMillis,
    extra: Object.keys(extra).length > 0 ? extra : undefined,
  });
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
  if (
    LONG_RUNNING.has(request.requestType) &&
    !deploy.command &&
    !deploy.arguments?.length &&
    !deploy.executorData?.cmd.trim() &&
    !isDockerDeploy(deploy)
  ) {
    issues.push({
      field: 'deploy.command',
      rule: `command, arguments or executorData.cmd is required for ${request.requestType} requests`,
    });
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
