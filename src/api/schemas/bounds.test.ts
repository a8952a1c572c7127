// Every string, array, record and duration of every input has a bound (common.ts LIMITS):
// one past it is a 400 naming the field; at it, the input is accepted. And the durations at
// their bounds still give finite deadlines, so nothing can overflow to Infinity.
import { describe, expect, it } from 'vitest';
import { stepDeadline } from '../../core/deploy/phase.ts';
import { previewDeploy } from '../../core/deploy/preview.ts';
import { LIMITS } from './common.ts';
import { MAX_ISSUES } from './parse.ts';
import { parseInput, schemas } from './index.ts';

const base = { requestId: 'web', id: 'v1', command: './run.sh' };
const long = (n: number) => 'a'.repeat(n);
const items = <T>(n: number, item: T) => Array.from({ length: n }, () => item);
const keys = (n: number, value: unknown) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`K${i}`, value]));
const nested = (depth: number): unknown => (depth === 0 ? 1 : { x: nested(depth - 1) });
const S = LIMITS.seconds;
const MS = LIMITS.millis;
const hc = { uri: '/health' };

type Case = [string, Record<string, unknown>, Record<string, unknown>, string];

// [what, within the bound, one past it, the field the 400 names]
const DEPLOY: Case[] = [
  ['command', { command: long(LIMITS.command) }, { command: long(LIMITS.command + 1) }, 'deploy.command'],
  ['arguments', { arguments: items(LIMITS.arguments, 'x') }, { arguments: items(LIMITS.arguments + 1, 'x') }, 'deploy.arguments'],
  ['an argument', { arguments: [long(LIMITS.command)] }, { arguments: [long(LIMITS.command + 1)] }, 'deploy.arguments[0]'],
  ['env keys', { env: keys(LIMITS.envKeys, 'v') }, { env: keys(LIMITS.envKeys + 1, 'v') }, 'deploy.env'],
  ['an env value', { env: { A: long(LIMITS.envValue) } }, { env: { A: long(LIMITS.envValue + 1) } }, 'deploy.env.A'],
  ['an env name', { env: { [long(LIMITS.envName)]: 'v' } }, { env: { [long(LIMITS.envName + 1)]: 'v' } }, 'deploy.env'],
  [
    'taskEnv instances',
    { taskEnv: keys(0, {}) },
    { taskEnv: Object.fromEntries(items(LIMITS.taskEnvInstances + 1, 0).map((_, i) => [String(i), {}])) },
    'deploy.taskEnv',
  ],
  ['a taskEnv value', { taskEnv: { '1': { A: 'v' } } }, { taskEnv: { '1': { A: long(LIMITS.envValue + 1) } } }, 'deploy.taskEnv.1.A'],
  ['metadata keys', { metadata: keys(LIMITS.metadataKeys, 'v') }, { metadata: keys(LIMITS.metadataKeys + 1, 'v') }, 'deploy.metadata'],
  [
    'a metadata value',
    { metadata: { a: long(LIMITS.metadataValue) } },
    { metadata: { a: long(LIMITS.metadataValue + 1) } },
    'deploy.metadata.a',
  ],
  ['version', { version: long(LIMITS.name) }, { version: long(LIMITS.name + 1) }, 'deploy.version'],
  [
    'resources.numPorts',
    { resources: { numPorts: LIMITS.ports } },
    { resources: { numPorts: LIMITS.ports + 1 } },
    'deploy.resources.numPorts',
  ],
  ['resources.cpus', { resources: { cpus: LIMITS.cpus } }, { resources: { cpus: LIMITS.cpus + 1 } }, 'deploy.resources.cpus'],
  ['resources.memoryMb', { resources: { memoryMb: LIMITS.megabytes } }, { resources: { memoryMb: 1e300 } }, 'deploy.resources.memoryMb'],
  [
    'healthcheck.uri',
    { healthcheck: { uri: `/${long(LIMITS.url - 1)}` } },
    { healthcheck: { uri: `/${long(LIMITS.url)}` } },
    'deploy.healthcheck.uri',
  ],
  [
    'healthcheck.intervalSeconds',
    { healthcheck: { ...hc, intervalSeconds: S } },
    { healthcheck: { ...hc, intervalSeconds: S + 1 } },
    'deploy.healthcheck.intervalSeconds',
  ],
  [
    'healthcheck.startupTimeoutSeconds',
    { healthcheck: { ...hc, startupTimeoutSeconds: S } },
    { healthcheck: { ...hc, startupTimeoutSeconds: 1e306 } },
    'deploy.healthcheck.startupTimeoutSeconds',
  ],
  [
    'healthcheck.startupDelaySeconds',
    { healthcheck: { ...hc, startupDelaySeconds: S } },
    { healthcheck: { ...hc, startupDelaySeconds: S + 1 } },
    'deploy.healthcheck.startupDelaySeconds',
  ],
  [
    'healthcheck.startupIntervalSeconds',
    { healthcheck: { ...hc, startupIntervalSeconds: S } },
    { healthcheck: { ...hc, startupIntervalSeconds: S + 1 } },
    'deploy.healthcheck.startupIntervalSeconds',
  ],
  [
    'healthcheck.responseTimeoutSeconds',
    { healthcheck: { ...hc, responseTimeoutSeconds: S } },
    { healthcheck: { ...hc, responseTimeoutSeconds: S + 1 } },
    'deploy.healthcheck.responseTimeoutSeconds',
  ],
  [
    'healthcheck.maxRetries',
    { healthcheck: { ...hc, maxRetries: LIMITS.count } },
    { healthcheck: { ...hc, maxRetries: 2147483648 } },
    'deploy.healthcheck.maxRetries',
  ],
  [
    'healthcheck.failureStatusCodes',
    { healthcheck: { ...hc, failureStatusCodes: items(LIMITS.list, 500) } },
    { healthcheck: { ...hc, failureStatusCodes: items(LIMITS.list + 1, 500) } },
    'deploy.healthcheck.failureStatusCodes',
  ],
  [
    'healthcheckIntervalSeconds (legacy)',
    { healthcheckUri: '/h', healthcheckIntervalSeconds: S },
    { healthcheckUri: '/h', healthcheckIntervalSeconds: S + 1 },
    'deploy.healthcheckIntervalSeconds',
  ],
  [
    'deployHealthTimeoutSeconds',
    { deployHealthTimeoutSeconds: S },
    { deployHealthTimeoutSeconds: 1e306 },
    'deploy.deployHealthTimeoutSeconds',
  ],
  [
    'considerHealthyAfterRunningForSeconds',
    { considerHealthyAfterRunningForSeconds: S },
    { considerHealthyAfterRunningForSeconds: S + 1 },
    'deploy.considerHealthyAfterRunningForSeconds',
  ],
  [
    'loadBalancerTimeoutSeconds',
    { loadBalancerTimeoutSeconds: S },
    { loadBalancerTimeoutSeconds: S + 1 },
    'deploy.loadBalancerTimeoutSeconds',
  ],
  ['acceptanceTimeoutSeconds', { acceptanceTimeoutSeconds: S }, { acceptanceTimeoutSeconds: S + 1 }, 'deploy.acceptanceTimeoutSeconds'],
  [
    'canaryDeploySettings.waitMillisBetweenGroups',
    { canaryDeploySettings: { waitMillisBetweenGroups: MS } },
    { canaryDeploySettings: { waitMillisBetweenGroups: MS + 1 } },
    'deploy.canaryDeploySettings.waitMillisBetweenGroups',
  ],
  [
    'canaryDeploySettings.instanceGroupSize',
    { canaryDeploySettings: { instanceGroupSize: LIMITS.instances } },
    { canaryDeploySettings: { instanceGroupSize: 2147483648 } },
    'deploy.canaryDeploySettings.instanceGroupSize',
  ],
  [
    'canaryDeploySettings.allowedTasksFailuresPerGroup',
    { canaryDeploySettings: { allowedTasksFailuresPerGroup: LIMITS.count } },
    { canaryDeploySettings: { allowedTasksFailuresPerGroup: LIMITS.count + 1 } },
    'deploy.canaryDeploySettings.allowedTasksFailuresPerGroup',
  ],
  ['deployStepWaitTimeMs (legacy)', { deployStepWaitTimeMs: MS }, { deployStepWaitTimeMs: MS + 1 }, 'deploy.deployStepWaitTimeMs'],
  [
    'deployInstanceCountPerStep (legacy)',
    { deployInstanceCountPerStep: LIMITS.instances },
    { deployInstanceCountPerStep: LIMITS.instances + 1 },
    'deploy.deployInstanceCountPerStep',
  ],
  ['maxTaskRetries (legacy)', { maxTaskRetries: LIMITS.count }, { maxTaskRetries: LIMITS.count + 1 }, 'deploy.maxTaskRetries'],
  [
    'acceptanceChecks',
    { acceptanceChecks: [] },
    { acceptanceChecks: items(LIMITS.acceptanceChecks + 1, 0).map((_, i) => ({ name: `m${i}`, type: 'manual' })) },
    'deploy.acceptanceChecks',
  ],
  [
    'an acceptance check interval',
    { acceptanceChecks: [{ name: 'm', type: 'manual', intervalSeconds: S }] },
    { acceptanceChecks: [{ name: 'm', type: 'manual', intervalSeconds: S + 1 }] },
    'deploy.acceptanceChecks[0].intervalSeconds',
  ],
  [
    'an acceptance check timeout',
    { acceptanceChecks: [{ name: 'm', type: 'manual', timeoutSeconds: S }] },
    { acceptanceChecks: [{ name: 'm', type: 'manual', timeoutSeconds: S + 1 }] },
    'deploy.acceptanceChecks[0].timeoutSeconds',
  ],
  [
    'a command check',
    { acceptanceChecks: [{ name: 'c', type: 'command', command: 'true' }] },
    { acceptanceChecks: [{ name: 'c', type: 'command', command: long(LIMITS.command + 1) }] },
    'deploy.acceptanceChecks[0].command',
  ],
  [
    'an http check url',
    { acceptanceChecks: [{ name: 'h', type: 'http', url: 'http://x/' }] },
    { acceptanceChecks: [{ name: 'h', type: 'http', url: `http://x/${long(LIMITS.url)}` }] },
    'deploy.acceptanceChecks[0].url',
  ],
  [
    'an http check equals',
    { acceptanceChecks: [{ name: 'h', type: 'http', url: 'http://x/', jsonPath: '$.a', equals: nested(LIMITS.json.depth - 1) }] },
    { acceptanceChecks: [{ name: 'h', type: 'http', url: 'http://x/', jsonPath: '$.a', equals: nested(LIMITS.json.depth + 1) }] },
    'deploy.acceptanceChecks[0].equals',
  ],
  [
    'serviceBasePath',
    { serviceBasePath: `/${long(LIMITS.path - 1)}` },
    { serviceBasePath: `/${long(LIMITS.path)}` },
    'deploy.serviceBasePath',
  ],
  [
    'loadBalancerGroups',
    { loadBalancerGroups: items(LIMITS.list, 'g') },
    { loadBalancerGroups: items(LIMITS.list + 1, 'g') },
    'deploy.loadBalancerGroups',
  ],
  [
    'a load balancer group',
    { loadBalancerGroups: [long(LIMITS.name)] },
    { loadBalancerGroups: [long(LIMITS.name + 1)] },
    'deploy.loadBalancerGroups[0]',
  ],
  [
    'loadBalancerDomains',
    { loadBalancerDomains: items(LIMITS.list, 'd') },
    { loadBalancerDomains: items(LIMITS.list + 1, 'd') },
    'deploy.loadBalancerDomains',
  ],
  [
    'loadBalancerAdditionalRoutes',
    { loadBalancerAdditionalRoutes: ['/r'] },
    { loadBalancerAdditionalRoutes: items(LIMITS.list + 1, '/r') },
    'deploy.loadBalancerAdditionalRoutes',
  ],
  [
    'loadBalancerPortIndex',
    { resources: { numPorts: LIMITS.ports }, loadBalancerPortIndex: LIMITS.ports - 1 },
    { loadBalancerPortIndex: 2147483648 },
    'deploy.loadBalancerPortIndex',
  ],
  [
    'loadBalancerOptions keys',
    { loadBalancerOptions: keys(LIMITS.list, 1) },
    { loadBalancerOptions: keys(LIMITS.list + 1, 1) },
    'deploy.loadBalancerOptions',
  ],
  [
    'a nested loadBalancerOptions value',
    { loadBalancerOptions: { x: nested(LIMITS.json.depth - 1) } },
    { loadBalancerOptions: { x: nested(LIMITS.json.depth + 1) } },
    'deploy.loadBalancerOptions.x',
  ],
  [
    'loadBalancerServiceIdOverride',
    { loadBalancerServiceIdOverride: long(LIMITS.name) },
    { loadBalancerServiceIdOverride: long(LIMITS.name + 1) },
    'deploy.loadBalancerServiceIdOverride',
  ],
  [
    'loadBalancerUpstreamGroup',
    { loadBalancerUpstreamGroup: long(LIMITS.name) },
    { loadBalancerUpstreamGroup: long(LIMITS.name + 1) },
    'deploy.loadBalancerUpstreamGroup',
  ],
  ['uris', { uris: items(LIMITS.list, 'http://x/a') }, { uris: items(LIMITS.list + 1, 'http://x/a') }, 'deploy.uris'],
  [
    'an ignored Singularity field (array)',
    { labels: items(LIMITS.json.items, 1) },
    { labels: items(LIMITS.json.items + 1, 1) },
    'deploy.labels',
  ],
  [
    'an ignored Singularity field (string)',
    { customExecutorCmd: long(LIMITS.json.string) },
    { customExecutorCmd: long(LIMITS.json.string + 1) },
    'deploy.customExecutorCmd',
  ],
];

const fieldsOf = (r: ReturnType<typeof parseInput>) => (r.ok ? [] : r.details.map((d) => d.field));

describe('input bounds: deploy', () => {
  it.each(DEPLOY)('%s: at the bound accepted, past it a 400 naming the field', (_what, within, past, field) => {
    const good = parseInput(schemas.deploy(false), { ...base, ...within });
    expect(good.ok ? '' : good.message).toBe('');
    const bad = parseInput(schemas.deploy(false), { ...base, ...past });
    expect(bad.ok).toBe(false);
    expect(fieldsOf(bad).some((f) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`))).toBe(true);
  });
});

const docker = (extra: Record<string, unknown>, info: Record<string, unknown> = {}) => ({
  containerInfo: { type: 'DOCKER', docker: { image: 'a', ...extra }, ...info },
});
const CONTAINER: Case[] = [
  ['docker parameters (map)', docker({}), docker({ parameters: keys(201, 'v') }), 'deploy.containerInfo.docker.parameters'],
  [
    'a docker volume driver option',
    docker(
      {},
      {
        volumes: [
          { containerPath: '/d', source: { type: 'DOCKER_VOLUME', dockerVolume: { name: 'v', driverOptions: keys(LIMITS.list, 'o') } } },
        ],
      },
    ),
    docker(
      {},
      {
        volumes: [
          {
            containerPath: '/d',
            source: { type: 'DOCKER_VOLUME', dockerVolume: { name: 'v', driverOptions: keys(LIMITS.list + 1, 'o') } },
          },
        ],
      },
    ),
    'deploy.containerInfo.volumes[0].source.dockerVolume.driverOptions',
  ],
  [
    'a port given as text',
    docker({ network: 'BRIDGE', portMappings: [{ containerPort: '80', hostPort: 0, hostPortType: 'FROM_OFFER' }] }),
    docker({ network: 'BRIDGE', portMappings: [{ containerPort: '8'.repeat(11), hostPort: 0 }] }),
    'deploy.containerInfo.docker.portMappings[0].containerPort',
  ],
  ['networkInfos', docker({}, {}), docker({}, { networkInfos: items(LIMITS.list + 1, {}) }), 'deploy.containerInfo.networkInfos'],
];

describe('input bounds: containerInfo', () => {
  it.each(CONTAINER)('%s: at the bound accepted, past it a 400 naming the field', (_what, within, past, field) => {
    const good = parseInput(schemas.deploy(true), { ...base, ...within });
    expect(good.ok ? '' : good.message).toBe('');
    const bad = parseInput(schemas.deploy(true), { ...base, ...past });
    expect(fieldsOf(bad).some((f) => f === field || f.startsWith(`${field}.`) || f.startsWith(`${field}[`))).toBe(true);
  });
});

const REQUEST: Case[] = [
  ['instances', { instances: LIMITS.instances }, { instances: 2147483648 }, 'instances'],
  ['owners', { owners: items(LIMITS.list, 'a@b') }, { owners: items(LIMITS.list + 1, 'a@b') }, 'owners'],
  ['an owner', { owners: [long(LIMITS.name)] }, { owners: [long(LIMITS.name + 1)] }, 'owners[0]'],
  [
    'numRetriesOnFailure',
    { requestType: 'ON_DEMAND', numRetriesOnFailure: LIMITS.count },
    { requestType: 'ON_DEMAND', numRetriesOnFailure: LIMITS.count + 1 },
    'numRetriesOnFailure',
  ],
  [
    'schedule',
    { requestType: 'SCHEDULED', schedule: '* * * * *' },
    { requestType: 'SCHEDULED', schedule: `* * * * ${long(LIMITS.name)}` },
    'schedule',
  ],
  [
    'an ignored Singularity field',
    { readWriteGroups: items(LIMITS.json.items, 'g') },
    { readWriteGroups: items(LIMITS.json.items + 1, 'g') },
    'readWriteGroups',
  ],
  ['rackAffinity', { rackAffinity: items(LIMITS.list, 'r') }, { rackAffinity: items(LIMITS.list + 1, 'r') }, 'rackAffinity'],
  ['a rack', { rackAffinity: [long(LIMITS.name)] }, { rackAffinity: [long(LIMITS.name + 1)] }, 'rackAffinity[0]'],
  [
    'requiredAgentAttributes',
    { requiredAgentAttributes: Object.fromEntries(items(LIMITS.metadataKeys, 'v').map((v, i) => [`k${i}`, v])) },
    { requiredAgentAttributes: Object.fromEntries(items(LIMITS.metadataKeys + 1, 'v').map((v, i) => [`k${i}`, v])) },
    'requiredAgentAttributes',
  ],
  [
    'an allowed attribute value',
    { allowedSlaveAttributes: { zone: long(LIMITS.name) } },
    { allowedSlaveAttributes: { zone: long(LIMITS.name + 1) } },
    'allowedSlaveAttributes.zone',
  ],
];

describe('input bounds: request', () => {
  it.each(REQUEST)('%s: at the bound accepted, past it a 400 naming the field', (_what, within, past, field) => {
    const request = { id: 'web', requestType: 'SERVICE' };
    expect(parseInput(schemas.request, { ...request, ...within }).ok).toBe(true);
    const bad = parseInput(schemas.request, { ...request, ...past });
    expect(fieldsOf(bad).some((f) => f === field || f.startsWith(`${field}[`))).toBe(true);
  });
});

describe('input bounds: action bodies', () => {
  it.each([
    ['scale instances', schemas.scale, { instances: 2147483648 }, 'instances'],
    ['scale message', schemas.scale, { instances: 2, message: long(LIMITS.message + 1) }, 'message'],
    [
      'update target',
      schemas.updateDeploy,
      { requestId: 'a', deployId: 'b', targetActiveInstances: LIMITS.instances + 1 },
      'targetActiveInstances',
    ],
    ['advance message', schemas.deployDecision, { requestId: 'a', deployId: 'b', message: long(LIMITS.message + 1) }, 'message'],
    ['kill message', schemas.killTask, { message: long(LIMITS.message + 1) }, 'message'],
    ['run arguments', schemas.run, { commandLineArgs: items(LIMITS.arguments + 1, 'x') }, 'commandLineArgs'],
    ['a run argument', schemas.run, { commandLineArgs: [long(LIMITS.command + 1)] }, 'commandLineArgs[0]'],
    ['run id', schemas.run, { runId: long(101) }, 'runId'],
    ['run message', schemas.run, { message: long(LIMITS.message + 1) }, 'message'],
    ['run envOverrides keys', schemas.run, { envOverrides: keys(LIMITS.envKeys + 1, 'v') }, 'envOverrides'],
    ['a run envOverrides value', schemas.run, { envOverrides: { A: long(LIMITS.envValue + 1) } }, 'envOverrides.A'],
    ['run resources.cpus', schemas.run, { resources: { cpus: LIMITS.cpus + 1 } }, 'resources.cpus'],
    ['run resources.memoryMb', schemas.run, { resources: { memoryMb: 1e300 } }, 'resources.memoryMb'],
    ['run resources.numPorts', schemas.run, { resources: { numPorts: LIMITS.ports + 1 } }, 'resources.numPorts'],
    ['webhook uri', schemas.webhook, { type: 'TASK', uri: `http://x/${long(LIMITS.url)}` }, 'uri'],
    ['webhook secret', schemas.webhook, { type: 'TASK', uri: 'http://x/', secret: long(513) }, 'secret'],
    ['webhook events', schemas.webhook, { type: 'TASK', uri: 'http://x/', events: items(51, 'TASK_FAILED') }, 'events'],
    ['a webhook event', schemas.webhook, { type: 'TASK', uri: 'http://x/', events: [long(LIMITS.name + 1)] }, 'events[0]'],
    ['an ignored action field', schemas.pause, { durationMillis: long(LIMITS.json.string + 1) }, 'durationMillis'],
    ['token name', schemas.createToken, { name: long(101), role: 'read' }, 'name'],
  ] as const)('%s past its bound is a 400 naming the field', (_what, schema, body, field) => {
    expect(fieldsOf(parseInput(schema, body))).toContain(field);
  });
});

describe('a 400 stays small', () => {
  it.each([
    ['100 invalid items', { ...base, loadBalancerGroups: items(LIMITS.list, {}) }],
    ['50,000 unknown keys', { ...base, ...keys(50_000, 1) }],
    ['an invalid 50,000-item array', { ...base, arguments: items(50_000, {}) }],
  ])(`names at most ${MAX_ISSUES} issues and says how many more there are: %s`, (_what, body) => {
    const r = parseInput(schemas.deploy(false), body);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.details.length).toBeLessThanOrEqual(MAX_ISSUES + 1);
    expect(JSON.stringify(r).length).toBeLessThan(10_000);
  });

  it('ends a long list of issues with how many were left out', () => {
    const r = parseInput(schemas.deploy(false), { ...base, loadBalancerGroups: items(LIMITS.list, {}) });
    if (r.ok) throw new Error('accepted');
    expect(r.details).toHaveLength(MAX_ISSUES + 1);
    expect(r.details.at(-1)?.rule).toBe(`and ${LIMITS.list - MAX_ISSUES} more issue(s)`);
    expect(r.message).toMatch(new RegExp(`; and ${LIMITS.list - MAX_ISSUES} more$`));
  });

  it('clips a huge unknown key in the answer', () => {
    const r = parseInput(schemas.request, { id: 'web', requestType: 'SERVICE', [long(500_000)]: 1 });
    expect(r.ok).toBe(false);
    expect(JSON.stringify(r).length).toBeLessThan(2_000);
  });
});

describe('durations at their bounds give finite deadlines', () => {
  it('the OVERDUE deadline and the plan ETA of a deploy with every duration at its maximum are finite', () => {
    const r = parseInput(schemas.deploy(false), {
      ...base,
      healthcheck: {
        uri: '/h',
        startupDelaySeconds: S,
        startupTimeoutSeconds: S,
        startupIntervalSeconds: S,
        intervalSeconds: S,
        responseTimeoutSeconds: S,
        maxRetries: LIMITS.count,
      },
      deployHealthTimeoutSeconds: S,
      considerHealthyAfterRunningForSeconds: S,
      loadBalancerTimeoutSeconds: S,
      acceptanceTimeoutSeconds: S,
      serviceBasePath: '/web',
      loadBalancerGroups: ['g'],
      canaryDeploySettings: {
        enableCanaryDeploy: true,
        instanceGroupSize: 1,
        acceptanceMode: 'TIMED',
        waitMillisBetweenGroups: MS,
        canaryCycleCount: 1000,
      },
    });
    if (!r.ok) throw new Error(r.message);
    const now = 1_700_000_000_000;
    const deadline = stepDeadline(r.value, now);
    expect(Number.isSafeInteger(Math.round(deadline))).toBe(true);
    const plan = previewDeploy(r.value, { id: 'web', requestType: 'SERVICE', instances: LIMITS.instances, loadBalanced: true }, undefined, {
      serverChecks: [],
    });
    expect(Number.isFinite(plan.etaSeconds.max)).toBe(true);
    expect(Number.isFinite(plan.etaSeconds.min)).toBe(true);
  });
});
