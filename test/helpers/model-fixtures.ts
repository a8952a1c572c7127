// Normalised domain values for pure unit tests, built from the defaults the API's schemas apply
// (core/ itself may not import the schemas).
import { DEPLOY_DEFAULTS } from '../../src/api/schemas/index.ts';
import type { CanaryDeploySettings, Deploy, HealthcheckOptions } from '../../src/core/model.ts';

export function testHealthcheck(overrides: Partial<HealthcheckOptions> = {}): HealthcheckOptions {
  return { uri: '/health', ...DEPLOY_DEFAULTS.healthcheck, failureStatusCodes: [], ...overrides };
}

export function testDeploy(overrides: Partial<Deploy> = {}, canary: Partial<CanaryDeploySettings> = {}): Deploy {
  const { acceptanceCheck: _perCheck, healthcheck: _healthcheck, ...defaults } = DEPLOY_DEFAULTS;
  return {
    ...defaults,
    requestId: 'svc',
    id: 'v2',
    command: 'node server.mjs',
    env: {},
    taskEnv: {},
    resources: { ...DEPLOY_DEFAULTS.resources },
    healthcheck: testHealthcheck(),
    canaryDeploySettings: { ...DEPLOY_DEFAULTS.canaryDeploySettings, ...canary },
    acceptanceChecks: [],
    timestamp: 0,
    ...overrides,
  };
}
