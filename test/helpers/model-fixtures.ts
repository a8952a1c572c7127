// Normalised domain values for pure unit tests. core/ may not import the API's schemas, so the
// defaults (as the schemas apply them) are spelled out once here.
import type { CanaryDeploySettings, Deploy, HealthcheckOptions } from '../../src/core/model.ts';

export function testHealthcheck(overrides: Partial<HealthcheckOptions> = {}): HealthcheckOptions {
  return {
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
    ...overrides,
  };
}

export function testDeploy(overrides: Partial<Deploy> = {}, canary: Partial<CanaryDeploySettings> = {}): Deploy {
  return {
    requestId: 'svc',
    id: 'v2',
    command: 'node server.mjs',
    env: {},
    taskEnv: {},
    resources: { cpus: 0.1, memoryMb: 64, numPorts: 1, diskMb: 0 },
    healthcheck: testHealthcheck(),
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
      ...canary,
    },
    acceptanceChecks: [],
    acceptanceTimeoutSeconds: 3600,
    timestamp: 0,
    ...overrides,
  };
}
