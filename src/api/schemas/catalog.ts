// Every input schema by endpoint (the names app.ts uses).
import {
  bounceSchema,
  createTokenSchema,
  deleteRequestSchema,
  deployBodySchema,
  deployDecisionSchema,
  exitCooldownSchema,
  hostChangeSchema,
  killTaskSchema,
  pauseSchema,
  rollbackSchema,
  scaleSchema,
  skipHealthchecksSchema,
  unpauseSchema,
  updateDeploySchema,
} from './bodies.ts';
import { deploySchema } from './deploy.ts';
import { runNowSchema, webhookSchema } from './jobs.ts';
import { requestSchema } from './request.ts';

export const schemas = {
  request: requestSchema,
  deploy: (containers: boolean) => deploySchema({ containers }),
  deployRequest: (containers: boolean) => deployBodySchema({ containers }),
  scale: scaleSchema,
  pause: pauseSchema,
  unpause: unpauseSchema,
  bounce: bounceSchema,
  deleteRequest: deleteRequestSchema,
  run: runNowSchema,
  webhook: webhookSchema,
  updateDeploy: updateDeploySchema,
  deployDecision: deployDecisionSchema,
  rollback: rollbackSchema,
  killTask: killTaskSchema,
  hostChange: hostChangeSchema,
  exitCooldown: exitCooldownSchema,
  skipHealthchecks: skipHealthchecksSchema,
  createToken: createTokenSchema,
} as const;
