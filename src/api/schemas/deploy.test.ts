import { describe, expect, it } from 'vitest';
import type { Deploy, FledgeRequest } from '../../core/model.ts';
import { DEPLOY_DEFAULTS, parseInput, schemas, validateDeployForRequest } from './index.ts';

const base = { requestId: 'web', id: 'v1', command: './run.sh' };
const parse = (deploy: Record<string, unknown>, containers = false) => parseInput(schemas.deploy(containers), deploy);
const ok = (deploy: Record<string, unknown>, containers = false): { value: Deploy; warnings: string[] } => {
  const r = parse(deploy, containers);
  if (!r.ok) throw new Error(r.message);
  return r;
};

describe('deploy schema: defaults', () => {
  it('fills every default', () => {
    expect(ok(base).value).toEqual({
      ...base,
      env: {},
      taskEnv: {},
      resources: { cpus: 0.1, memoryMb: 64, numPorts: 1, diskMb: 0 },
      considerHealthyAfterRunningForSeconds: 5,
      deployHealthTimeoutSeconds: 120,
      skipHealthchecksOnDeploy: false,
      loadBalancerPortIndex: 0,
      loadBalancerUpstreamGroup: 'default',
      loadBalancerTimeoutSeconds: 300,
      canaryDeploySettings: {
        enableCanaryDeploy: false,
        instanceGroupSize: 1,
        acceptanceMode: 'NONE',
        waitMillisBetweenGroups: 0,
        allowedTasksFailuresPerGroup: 0,
        canaryCycleCount: 3,
      },
      acceptanceChecks: [],
      acceptanceTimeoutSeconds: 3600,
      timestamp: expect.any(Number),
    });
  });

  it.each([
    ['resources', { resources: { memoryMb: 256 } }, (d: Deploy) => d.resources, { cpus: 0.1, memoryMb: 256, numPorts: 1, diskMb: 0 }],
    [
      'healthcheck',
      { healthcheck: { uri: '/health' } },
      (d: Deploy) => d.healthcheck,
      {
        uri: '/health',
        portIndex: 0,
        protocol: 'HTTP',
        method: 'GET',
        startupDelaySeconds: 0,
        startupTimeoutSeconds: 45,
        startupIntervalSeconds: 2,
        intervalSeconds: 5,
        responseTimeoutSeconds: 5,
        maxRetries: 0,
        failureStatusCodes: [],
        checkWhileRunning: true,
      },
    ],
    [
      'canaryDeploySettings',
      { canaryDeploySettings: { enableCanaryDeploy: true } },
      (d: Deploy) => d.canaryDeploySettings,
      { ...DEPLOY_DEFAULTS.canaryDeploySettings, enableCanaryDeploy: true },
    ],
    [
      'acceptance checks',
      { acceptanceChecks: [{ name: 'owner', type: 'manual' }] },
      (d: Deploy) => d.acceptanceChecks,
      [{ name: 'owner', type: 'manual', intervalSeconds: 5, timeoutSeconds: 30, failOnError: true, options: {} }],
    ],
  ])('fills %s defaults inside a partial object', (_name, input, pick, expected) => {
    expect(pick(ok({ ...base, ...input }).value)).toEqual(expected);
  });
});

describe('deploy schema: 400s name the field and the rule', () => {
  it.each([
    ['id with -', { id: 'v-1' }, 'deploy.id', 'must be 1-50 characters of [A-Za-z0-9_.]'],
    ['id of 51 characters', { id: 'v'.repeat(51) }, 'deploy.id', 'must be 1-50 characters of [A-Za-z0-9_.]'],
    ['missing id', { id: undefined }, 'deploy.id', 'is required'],
    ['missing requestId', { requestId: undefined }, 'deploy.requestId', 'is required'],
    ['bad requestId', { requestId: 'a b' }, 'deploy.requestId', 'must be 1-100 characters of [A-Za-z0-9_-]'],
    ['negative numPorts', { resources: { numPorts: -1 } }, 'deploy.resources.numPorts', 'must be >= 0'],
    ['zero cpus', { resources: { cpus: 0 } }, 'deploy.resources.cpus', 'must be > 0'],
    ['unknown resource', { resources: { gpu: 1 } }, 'deploy.resources.gpu', 'unknown field'],
    [
      'instanceGroupSize 0',
      { canaryDeploySettings: { instanceGroupSize: 0 } },
      'deploy.canaryDeploySettings.instanceGroupSize',
      'must be >= 1',
    ],
    [
      'canaryCycleCount 0',
      { canaryDeploySettings: { canaryCycleCount: 0 } },
      'deploy.canaryDeploySettings.canaryCycleCount',
      'must be >= 1',
    ],
    [
      'alias with instanceGroupSize 0',
      { canarySettings: { instanceGroupSize: 0 } },
      'deploy.canarySettings.instanceGroupSize',
      'must be >= 1',
    ],
    [
      'bad acceptanceMode',
      { canaryDeploySettings: { acceptanceMode: 'AUTO' } },
      'deploy.canaryDeploySettings.acceptanceMode',
      'must be one of NONE, TIMED, CHECKS, MANUAL',
    ],
    [
      'negative wait',
      { canaryDeploySettings: { waitMillisBetweenGroups: -1 } },
      'deploy.canaryDeploySettings.waitMillisBetweenGroups',
      'must be >= 0',
    ],
    ['deployInstanceCountPerStep 0', { deployInstanceCountPerStep: 0 }, 'deploy.deployInstanceCountPerStep', 'must be >= 1'],
    [
      'canaryDeploySettings and canarySettings',
      { canaryDeploySettings: {}, canarySettings: {} },
      'deploy.canarySettings',
      'canarySettings is an alias of canaryDeploySettings; give one, not both',
    ],
    [
      'both spellings of the legacy protocol, disagreeing',
      { healthcheckUri: '/h', healthcheckProtocol: 'HTTP', healthCheckProtocol: 'HTTPS' },
      'deploy.healthCheckProtocol',
      'are two spellings of one field and disagree; give one',
    ],
    [
      'legacy healthcheck fields without a uri',
      { healthcheckIntervalSeconds: 3 },
      'deploy.healthcheckUri',
      'is required with healthcheckIntervalSeconds',
    ],
    ['healthcheck without uri', { healthcheck: { portIndex: 0 } }, 'deploy.healthcheck.uri', 'is required'],
    [
      'healthcheck.portIndex >= numPorts',
      { healthcheck: { uri: '/h', portIndex: 1 } },
      'deploy.healthcheck.portIndex',
      'must be < resources.numPorts (1)',
    ],
    [
      'healthcheck with no ports',
      { healthcheck: { uri: '/h' }, resources: { numPorts: 0 } },
      'deploy.healthcheck.portIndex',
      'must be < resources.numPorts (0)',
    ],
    [
      'healthcheckPortIndex >= numPorts',
      { healthcheckUri: '/h', healthcheckPortIndex: 2 },
      'deploy.healthcheckPortIndex',
      'must be < resources.numPorts (1)',
    ],
    [
      'healthcheck protocol SPDY',
      { healthcheck: { uri: '/h', protocol: 'SPDY' } },
      'deploy.healthcheck.protocol',
      'must be one of HTTP, HTTPS, HTTP2, HTTPS2',
    ],
    [
      'failure status 700',
      { healthcheck: { uri: '/h', failureStatusCodes: [700] } },
      'deploy.healthcheck.failureStatusCodes[0]',
      'must be <= 599',
    ],
    ['loadBalancerPortIndex >= numPorts', { loadBalancerPortIndex: 1 }, 'deploy.loadBalancerPortIndex', 'must be < resources.numPorts (1)'],
    ['serviceBasePath without /', { serviceBasePath: 'web' }, 'deploy.serviceBasePath', 'must start with /'],
    ['loadBalancerTimeoutSeconds 0', { loadBalancerTimeoutSeconds: 0 }, 'deploy.loadBalancerTimeoutSeconds', 'must be > 0'],
    ['acceptanceTimeoutSeconds 0', { acceptanceTimeoutSeconds: 0 }, 'deploy.acceptanceTimeoutSeconds', 'must be > 0'],
    ['deployHealthTimeoutSeconds 0', { deployHealthTimeoutSeconds: 0 }, 'deploy.deployHealthTimeoutSeconds', 'must be > 0'],
    [
      'containerInfo DOCKER on a server without Docker hosts',
      { containerInfo: { type: 'DOCKER', docker: { image: 'nginx' } } },
      'deploy.containerInfo.type',
      'DOCKER needs a Docker host and this server has none (start Fledge with --docker-host)',
    ],
    ['env value not a scalar', { env: { PORT_X: [1] } }, 'deploy.env.PORT_X', 'must be a string (got an array)'],
    [
      'env name with -',
      { env: { 'A-B': 'x' } },
      'deploy.env.A-B',
      'invalid key: environment variable names must match [A-Za-z_][A-Za-z0-9_]*',
    ],
    [
      'taskEnv key not an instance number',
      { taskEnv: { first: { A: 'b' } } },
      'deploy.taskEnv.first',
      'invalid key: taskEnv keys are instance numbers',
    ],
    ['arguments not scalars', { arguments: ['a', {}] }, 'deploy.arguments[1]', 'must be a string (got object)'],
    [
      'uris of another scheme',
      { uris: ['s3://bucket/app.tgz'] },
      'deploy.uris[0]',
      'must be an http://, https:// or file:// URL (Fledge fetches no other scheme)',
    ],
    [
      'an artifact outputFile outside the sandbox',
      { uris: [{ uri: 'http://x/a.tgz', outputFile: '../a.tgz' }] },
      'deploy.uris[0].outputFile',
      "must be a file name inside the task's sandbox (relative, without ..)",
    ],
    [
      'S3 artifacts',
      { executorData: { cmd: './run', s3Artifacts: [{ name: 'a', filename: 'a.tgz', s3Bucket: 'b', s3ObjectKey: 'k' }] } },
      'deploy.executorData.s3Artifacts',
      'S3 artifacts are not fetched by Fledge (it has no S3 credentials): give their URLs in externalArtifacts or uris',
    ],
    [
      'an external artifact without a url',
      { executorData: { cmd: './run', externalArtifacts: [{ name: 'a', filename: 'a.tgz' }] } },
      'deploy.executorData.externalArtifacts[0].url',
      'is required',
    ],
    ['uris with an unknown key', { uris: [{ uri: 'http://x/a.tgz', unpack: true }] }, 'deploy.uris[0].unpack', 'unknown field'],
    [
      'check of unknown type',
      { acceptanceChecks: [{ name: 'a', type: 'grpc' }] },
      'deploy.acceptanceChecks[0].type',
      'must be one of http, command, manual, lb, prometheus',
    ],
    [
      'check without type',
      { acceptanceChecks: [{ name: 'a' }] },
      'deploy.acceptanceChecks[0].type',
      'must be one of http, command, manual, lb, prometheus',
    ],
    ['check without name', { acceptanceChecks: [{ type: 'manual' }] }, 'deploy.acceptanceChecks[0].name', 'is required'],
    [
      'duplicate check names',
      {
        acceptanceChecks: [
          { name: 'a', type: 'manual' },
          { name: 'a', type: 'command', command: 'true' },
        ],
      },
      'deploy.acceptanceChecks[1].name',
      'must be unique (a is used twice)',
    ],
    ['http check without url', { acceptanceChecks: [{ name: 'a', type: 'http' }] }, 'deploy.acceptanceChecks[0].url', 'is required'],
    [
      'http check with a non-http url',
      { acceptanceChecks: [{ name: 'a', type: 'http', url: 'ftp://x' }] },
      'deploy.acceptanceChecks[0].url',
      'must be an http:// or https:// URL',
    ],
    [
      'http check with method PUT',
      { acceptanceChecks: [{ name: 'a', type: 'http', url: 'http://x', method: 'PUT' }] },
      'deploy.acceptanceChecks[0].method',
      'must be one of GET, POST',
    ],
    [
      'http check with expectStatus not a list',
      { acceptanceChecks: [{ name: 'a', type: 'http', url: 'http://x', expectStatus: 200 }] },
      'deploy.acceptanceChecks[0].expectStatus',
      'must be an array (got number)',
    ],
    [
      'http check jsonPath without equals',
      { acceptanceChecks: [{ name: 'a', type: 'http', url: 'http://x', jsonPath: 'ok' }] },
      'deploy.acceptanceChecks[0].equals',
      'is required with jsonPath',
    ],
    [
      'http check equals without jsonPath',
      { acceptanceChecks: [{ name: 'a', type: 'http', url: 'http://x', equals: true }] },
      'deploy.acceptanceChecks[0].jsonPath',
      'is required with equals',
    ],
    [
      'command check without command',
      { acceptanceChecks: [{ name: 'a', type: 'command' }] },
      'deploy.acceptanceChecks[0].command',
      'is required',
    ],
    [
      'manual check with a url',
      { acceptanceChecks: [{ name: 'a', type: 'manual', url: 'http://x' }] },
      'deploy.acceptanceChecks[0].url',
      'unknown field',
    ],
    [
      'prometheus check without query',
      { acceptanceChecks: [{ name: 'a', type: 'prometheus', url: 'http://p', max: 1 }] },
      'deploy.acceptanceChecks[0].query',
      'is required',
    ],
    [
      'prometheus check without a threshold',
      { acceptanceChecks: [{ name: 'a', type: 'prometheus', url: 'http://p', query: 'up' }] },
      'deploy.acceptanceChecks[0].max',
      'max, min or maxVsOld is required',
    ],
    [
      'prometheus compare without $TASK_IDS',
      { acceptanceChecks: [{ name: 'a', type: 'prometheus', query: 'sum(x{task=~"$NEW_TASK_IDS"})', maxVsOld: 2 }] },
      'deploy.acceptanceChecks[0].query',
      'must use $TASK_IDS with maxVsOld (it is run once for the new tasks, once for the old)',
    ],
    [
      'prometheus $TASK_IDS without maxVsOld',
      { acceptanceChecks: [{ name: 'a', type: 'prometheus', query: 'sum(x{task=~"$TASK_IDS"})', max: 2 }] },
      'deploy.acceptanceChecks[0].query',
      '$TASK_IDS is for compare mode (maxVsOld); use $NEW_TASK_IDS or $OLD_TASK_IDS',
    ],
    [
      'prometheus minSamples without samplesQuery',
      { acceptanceChecks: [{ name: 'a', type: 'prometheus', query: 'up', max: 1, minSamples: 10 }] },
      'deploy.acceptanceChecks[0].samplesQuery',
      'minSamples and samplesQuery go together',
    ],
    [
      'prometheus unknown field',
      { acceptanceChecks: [{ name: 'a', type: 'prometheus', query: 'up', max: 1, compare: 'old-deploy' }] },
      'deploy.acceptanceChecks[0].compare',
      'unknown field',
    ],
    [
      'lb check without a threshold',
      { acceptanceChecks: [{ name: 'a', type: 'lb', minRequests: 10 }] },
      'deploy.acceptanceChecks[0].maxErrorRate',
      'one of maxErrorRate, maxErrorRateVsOld, maxP50Ms, maxP99Ms, maxP99MsVsOld is required',
    ],
    [
      'lb check with an error rate above 1',
      { acceptanceChecks: [{ name: 'a', type: 'lb', maxErrorRate: 5 }] },
      'deploy.acceptanceChecks[0].maxErrorRate',
      'must be <= 1',
    ],
    [
      'lb check with a window over 600 s',
      { acceptanceChecks: [{ name: 'a', type: 'lb', maxErrorRate: 0.05, windowSeconds: 601 }] },
      'deploy.acceptanceChecks[0].windowSeconds',
      'must be <= 600',
    ],
    [
      'lb check with minRequests 0',
      { acceptanceChecks: [{ name: 'a', type: 'lb', maxErrorRate: 0.05, minRequests: 0 }] },
      'deploy.acceptanceChecks[0].minRequests',
      'must be >= 1',
    ],
    [
      'lb check with an unknown field',
      { acceptanceChecks: [{ name: 'a', type: 'lb', maxErrorRate: 0.05, maxErrors: 3 }] },
      'deploy.acceptanceChecks[0].maxErrors',
      'unknown field',
    ],
    [
      'check intervalSeconds 0',
      { acceptanceChecks: [{ name: 'a', type: 'manual', intervalSeconds: 0 }] },
      'deploy.acceptanceChecks[0].intervalSeconds',
      'must be > 0',
    ],
  ])('%s', (_name, patch, field, rule) => {
    const r = parse({ ...base, ...patch });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.details).toContainEqual({ field, rule });
    expect(r.message).toMatch(/^Invalid deploy: /);
    expect(r.message).toContain(field);
  });

  it('names both sides of a conflict in the message', () => {
    const r = parse({ ...base, canaryDeploySettings: {}, canarySettings: {} });
    expect(r).toMatchObject({
      ok: false,
      message:
        'Invalid deploy: deploy.canaryDeploySettings and deploy.canarySettings: canarySettings is an alias of canaryDeploySettings; give one, not both',
    });
    const h = parse({ ...base, healthcheckUri: '/h', healthcheckProtocol: 'HTTP', healthCheckProtocol: 'HTTPS' });
    expect(h.ok || h.details.map((d) => d.field)).toEqual(['deploy.healthcheckProtocol', 'deploy.healthCheckProtocol']);
  });

  it('lists unknown fields together after the other problems', () => {
    const r = parse({ ...base, id: 'v-1', foo: 1, bar: 2, canaryDeploySettings: { instanceGroupSize: 0 } });
    expect(r).toMatchObject({
      ok: false,
      message:
        'Invalid deploy: deploy.id: must be 1-50 characters of [A-Za-z0-9_.]; deploy.canaryDeploySettings.instanceGroupSize: must be >= 1; Unknown field(s): deploy.foo, deploy.bar',
    });
  });
});

describe('deploy schema: legacy fields and alias', () => {
  it.each([
    [
      'deployInstanceCountPerStep 1 + deployStepWaitTimeMs 60000',
      { deployInstanceCountPerStep: 1, deployStepWaitTimeMs: 60000 },
      { enableCanaryDeploy: true, instanceGroupSize: 1, acceptanceMode: 'TIMED', waitMillisBetweenGroups: 60000, canaryCycleCount: 3 },
    ],
    [
      'deployInstanceCountPerStep 2',
      { deployInstanceCountPerStep: 2 },
      { enableCanaryDeploy: true, instanceGroupSize: 2, acceptanceMode: 'NONE' },
    ],
    ['maxTaskRetries 2', { maxTaskRetries: 2 }, { enableCanaryDeploy: false, allowedTasksFailuresPerGroup: 2 }],
    ['autoAdvanceDeploySteps false', { autoAdvanceDeploySteps: false }, { acceptanceMode: 'MANUAL' }],
    [
      'autoAdvanceDeploySteps false with a step wait',
      { deployInstanceCountPerStep: 1, deployStepWaitTimeMs: 5000, autoAdvanceDeploySteps: false },
      { enableCanaryDeploy: true, acceptanceMode: 'MANUAL', waitMillisBetweenGroups: 5000 },
    ],
    ['autoAdvanceDeploySteps true', { autoAdvanceDeploySteps: true }, DEPLOY_DEFAULTS.canaryDeploySettings],
    [
      'canarySettings alias',
      { canarySettings: { enableCanaryDeploy: true, instanceGroupSize: 2, acceptanceMode: 'CHECKS' } },
      { enableCanaryDeploy: true, instanceGroupSize: 2, acceptanceMode: 'CHECKS', canaryCycleCount: 3 },
    ],
  ])('%s → canaryDeploySettings', (_name, patch, expected) => {
    expect(ok({ ...base, ...patch }).value.canaryDeploySettings).toMatchObject(expected);
  });

  it('warns that legacy canary fields were read', () => {
    const { warnings, value } = ok({ ...base, deployInstanceCountPerStep: 1, deployStepWaitTimeMs: 60000 });
    expect(value).not.toHaveProperty('deployInstanceCountPerStep');
    expect(warnings).toEqual([
      expect.stringMatching(
        /^deploy\.deployInstanceCountPerStep: legacy field\(s\) deployInstanceCountPerStep, deployStepWaitTimeMs read as canaryDeploySettings/,
      ),
    ]);
  });

  it('reads the legacy flat healthcheck fields into healthcheck', () => {
    const { value, warnings } = ok({
      ...base,
      resources: { numPorts: 2 },
      healthcheckUri: '/status',
      healthcheckPortIndex: 1,
      healthcheckProtocol: 'HTTPS',
      healthcheckIntervalSeconds: 10,
      healthcheckTimeoutSeconds: 3,
      healthcheckMaxRetries: 4,
    });
    expect(value.healthcheck).toEqual({
      ...DEPLOY_DEFAULTS.healthcheck,
      uri: '/status',
      portIndex: 1,
      protocol: 'HTTPS',
      intervalSeconds: 10,
      responseTimeoutSeconds: 3,
      maxRetries: 4,
    });
    expect(value).not.toHaveProperty('healthcheckUri');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^deploy\.healthcheckUri: legacy field\(s\) healthcheckUri, healthcheckPortIndex/);
  });
});

describe('deploy schema: Singularity fields Fledge does not act on', () => {
  it.each([
    ['customExecutorCmd', '/usr/bin/executor'],
    ['customExecutorId', 'exec'],
    ['customExecutorSource', 'src'],
    ['customExecutorResources', { cpus: 0.1, memoryMb: 32, numPorts: 0 }],
    ['customExecutorUser', 'root'],
    ['mesosLabels', [{ key: 'a', value: 'b' }]],
    ['mesosTaskLabels', { '1': [{ key: 'a' }] }],
    ['labels', { team: 'web' }],
    ['taskLabels', { '1': { a: 'b' } }],
    ['s3UploaderAdditionalFiles', [{ filename: 'gc.log' }]],
    ['user', 'www-data'],
    ['loadBalancerTemplate', 'custom'],
    ['healthcheckMaxTotalTimeoutSeconds', 120],
  ])('%s is stored in extra and named in warnings', (field, value) => {
    const r = ok({ ...base, [field]: value });
    expect(r.value.extra).toEqual({ [field]: value });
    expect(r.value).not.toHaveProperty(field);
    expect(r.warnings).toEqual([
      expect.stringMatching(new RegExp(`^deploy\\.${field}: accepted and stored, but Fledge does not act on it \\(.+\\)$`)),
    ]);
  });

  it("reads uris with Singularity's defaults (extract on), strings read as {uri}", () => {
    const r = ok({ ...base, uris: ['https://x/app.tgz', { uri: 'file:///opt/a.sh', executable: true, extract: false }] });
    expect(r.value.uris).toEqual([
      { uri: 'https://x/app.tgz', cache: false, executable: false, extract: true },
      { uri: 'file:///opt/a.sh', cache: false, executable: true, extract: false },
    ]);
    expect(r.value.extra).toBeUndefined();
    expect(r.warnings).toEqual([]);
  });

  it("accepts containerInfo DOCKER when the server has a Docker host, with Singularity's defaults", () => {
    const containerInfo = { type: 'DOCKER', docker: { image: 'nginx:1.27', network: 'BRIDGE' } };
    const r = ok({ ...base, command: undefined, containerInfo }, true);
    expect(r.value.containerInfo).toEqual({
      type: 'DOCKER',
      docker: { image: 'nginx:1.27', network: 'BRIDGE', privileged: false, forcePullImage: false, portMappings: [], dockerParameters: [] },
      volumes: [],
    });
    expect(r.value.extra).toBeUndefined();
    expect(r.warnings).toEqual([]);
  });

  it('warns when acceptance checks are declared but the mode is not CHECKS', () => {
    const r = ok({ ...base, acceptanceChecks: [{ name: 'owner', type: 'manual' }] });
    expect(r.warnings).toEqual([
      "deploy.acceptanceChecks: declared, but checks only run with acceptanceMode CHECKS (this deploy's is NONE)",
    ]);
  });
});

describe('deploy schema: acceptance checks', () => {
  it('reads the five check types, type-specific fields into options', () => {
    const { value, warnings } = ok({
      ...base,
      canaryDeploySettings: { acceptanceMode: 'CHECKS' },
      acceptanceChecks: [
        {
          name: 'smoke',
          type: 'http',
          url: 'http://127.0.0.1:9000/verify/$DEPLOY_ID',
          method: 'GET',
          expectStatus: [200],
          jsonPath: 'ok',
          equals: true,
        },
        { name: 'script', type: 'command', command: './verify.sh', timeoutSeconds: 60 },
        { name: 'owner', type: 'manual', failOnError: false },
        {
          name: 'errors',
          type: 'prometheus',
          url: 'http://127.0.0.1:9090',
          query: 'sum(rate(http_errors_total{deploy="$DEPLOY_ID"}[1m]))',
          max: 0.01,
        },
        { name: 'nulls', type: 'http', url: 'https://x/y', jsonPath: 'error', equals: null },
        { name: 'errors-lb', type: 'lb', maxErrorRate: 0.05, maxErrorRateVsOld: 2 },
      ],
    });
    expect(warnings).toEqual([]);
    const common = { intervalSeconds: 5, timeoutSeconds: 30, failOnError: true };
    expect(value.acceptanceChecks).toEqual([
      {
        name: 'smoke',
        type: 'http',
        ...common,
        options: { url: 'http://127.0.0.1:9000/verify/$DEPLOY_ID', method: 'GET', expectStatus: [200], jsonPath: 'ok', equals: true },
      },
      { name: 'script', type: 'command', ...common, timeoutSeconds: 60, options: { command: './verify.sh' } },
      { name: 'owner', type: 'manual', ...common, failOnError: false, options: {} },
      {
        name: 'errors',
        type: 'prometheus',
        ...common,
        options: {
          url: 'http://127.0.0.1:9090',
          query: 'sum(rate(http_errors_total{deploy="$DEPLOY_ID"}[1m]))',
          max: 0.01,
          oldFloor: 0,
        },
      },
      { name: 'nulls', type: 'http', ...common, options: { url: 'https://x/y', method: 'GET', jsonPath: 'error', equals: null } },
      {
        name: 'errors-lb',
        type: 'lb',
        ...common,
        options: { maxErrorRate: 0.05, maxErrorRateVsOld: 2, errorRateFloor: 0.001, minRequests: 100, windowSeconds: 60 },
      },
    ]);
  });
});

describe('deploy schema: a realistic Singularity deploy', () => {
  // Shaped like GET /api/history/request/{id}/deploy/{deployId} .deploy from Singularity 1.5.
  const singularity = {
    requestId: 'web-frontend',
    id: '20240601.1',
    version: '1.42.0',
    timestamp: 1717243200000,
    metadata: { gitSha: 'abc123' },
    command: '/srv/web/bin/start',
    arguments: ['--port', '$PORT0'],
    env: { JAVA_OPTS: '-Xmx512m', NODE_ENV: 'production' },
    taskEnv: { '1': { ROLE: 'leader' } },
    uris: [{ uri: 'https://artifacts.example.com/web-1.42.0.tgz', extract: true, executable: false, cache: false }],
    executorData: null,
    customExecutorCmd: null,
    labels: {},
    mesosLabels: [],
    taskLabels: {},
    mesosTaskLabels: {},
    resources: { cpus: 1, memoryMb: 1024, numPorts: 2, diskMb: 512 },
    healthcheck: {
      uri: '/healthcheck',
      portIndex: 0,
      protocol: 'HTTP',
      method: 'GET',
      startupTimeoutSeconds: 60,
      startupDelaySeconds: 5,
      startupIntervalSeconds: 2,
      intervalSeconds: 5,
      responseTimeoutSeconds: 5,
      maxRetries: 3,
      failureStatusCodes: [503],
    },
    skipHealthchecksOnDeploy: false,
    deployHealthTimeoutSeconds: 300,
    considerHealthyAfterRunningForSeconds: 5,
    serviceBasePath: '/web',
    loadBalancerGroups: ['internal'],
    loadBalancerPortIndex: 0,
    loadBalancerOptions: { sticky: false },
    loadBalancerDomains: ['web.example.com'],
    loadBalancerAdditionalRoutes: ['/web-legacy'],
    loadBalancerUpstreamGroup: 'default',
    loadBalancerServiceIdOverride: null,
    loadBalancerTemplate: null,
    canaryDeploySettings: {
      enableCanaryDeploy: true,
      instanceGroupSize: 2,
      acceptanceMode: 'TIMED',
      waitMillisBetweenGroups: 30000,
      allowedTasksFailuresPerGroup: 1,
      canaryCycleCount: 3,
    },
    s3UploaderAdditionalFiles: [{ filename: 'access.log', directory: 'logs' }],
    user: 'web',
  };

  it('is accepted, normalised, and tells what it ignores', () => {
    const r = ok(singularity);
    expect(r.value).toMatchObject({
      requestId: 'web-frontend',
      id: '20240601.1',
      arguments: ['--port', '$PORT0'],
      resources: { cpus: 1, memoryMb: 1024, numPorts: 2, diskMb: 512 },
      healthcheck: { uri: '/healthcheck', maxRetries: 3, failureStatusCodes: [503], startupTimeoutSeconds: 60 },
      canaryDeploySettings: singularity.canaryDeploySettings,
      loadBalancerGroups: ['internal'],
      deployHealthTimeoutSeconds: 300,
    });
    expect(r.value).not.toHaveProperty('loadBalancerServiceIdOverride');
    expect(Object.keys(r.value.extra ?? {}).sort()).toEqual(
      ['labels', 'mesosLabels', 'mesosTaskLabels', 's3UploaderAdditionalFiles', 'taskLabels', 'timestamp', 'user'].sort(),
    );
    expect(r.warnings.map((w) => w.split(':')[0]).sort()).toEqual(
      [
        'deploy.labels',
        'deploy.mesosLabels',
        'deploy.mesosTaskLabels',
        'deploy.s3UploaderAdditionalFiles',
        'deploy.taskLabels',
        'deploy.timestamp',
        'deploy.user',
      ].sort(),
    );
    const request: FledgeRequest = { id: 'web-frontend', requestType: 'SERVICE', instances: 4, loadBalanced: true };
    expect(validateDeployForRequest(r.value, request)).toEqual([]);
  });
});

describe('validateDeployForRequest', () => {
  const service: FledgeRequest = { id: 'web', requestType: 'SERVICE', instances: 2, loadBalanced: false };
  const lb: FledgeRequest = { ...service, loadBalanced: true };
  const lbDeploy = { ...base, serviceBasePath: '/web', loadBalancerGroups: ['g'] };

  it.each([
    ['a complete load-balanced deploy', lb, lbDeploy, []],
    ['a plain deploy for a plain request', service, base, []],
    [
      'a deploy for another request',
      service,
      { ...base, requestId: 'api' },
      [{ field: 'deploy.requestId', rule: 'must be the id of the request it deploys (web)' }],
    ],
    [
      'no serviceBasePath when load balanced',
      lb,
      { ...lbDeploy, serviceBasePath: undefined },
      [{ field: 'deploy.serviceBasePath', rule: 'is required because the request is load balanced' }],
    ],
    [
      'no loadBalancerGroups when load balanced',
      lb,
      { ...lbDeploy, loadBalancerGroups: [] },
      [{ field: 'deploy.loadBalancerGroups', rule: 'must have at least 1 group because the request is load balanced' }],
    ],
    [
      'no ports when load balanced',
      lb,
      { ...lbDeploy, resources: { numPorts: 0 } },
      [{ field: 'deploy.loadBalancerPortIndex', rule: 'must be < resources.numPorts (0) because the request is load balanced' }],
    ],
    [
      'no command for a SERVICE',
      service,
      { ...base, command: undefined },
      [{ field: 'deploy.command', rule: 'command, arguments or executorData.cmd is required for SERVICE requests' }],
    ],
    [
      'no command for a WORKER',
      { ...service, requestType: 'WORKER' },
      { ...base, command: undefined },
      [{ field: 'deploy.command', rule: 'command, arguments or executorData.cmd is required for WORKER requests' }],
    ],
    ['arguments only for a SERVICE', service, { ...base, command: undefined, arguments: ['/bin/app'] }, []],
    ['no command for an ON_DEMAND', { ...service, requestType: 'ON_DEMAND' }, { ...base, command: undefined }, []],
  ] as [string, FledgeRequest, Record<string, unknown>, unknown[]][])('%s', (_name, request, deploy, issues) => {
    expect(validateDeployForRequest(ok(deploy).value, request)).toEqual(issues);
  });
});
