// Bodies of the action endpoints (api.md) and the POST /api/deploys body.
import { z } from 'zod';
import { ROLES } from '../../auth/roles.ts';
import { TOKEN_NAME, TOKEN_NAME_RULE } from '../../auth/tokens.ts';
import { attachWarnings, compact, describeInput, ignoredFields, LIMITS, nullsAsAbsent, splitIgnored, text } from './common.ts';
import { deployIdSchema, deploySchema, validateDeployForRequest } from './deploy.ts';
import { requestIdSchema, requestSchema } from './request.ts';
import { ignoredOf, type ActionClass } from './singularity-fields.ts';

const message = text(LIMITS.message).optional();

/**
 * A strict body whose Singularity-only fields (the ignored properties of `className` in
 * singularity-fields.ts, minus the ones `shape` reads) are accepted, moved to `extra` and warned about.
 */
function actionBody<S extends z.ZodRawShape>(label: string, shape: S, className?: ActionClass) {
  const fields = Object.fromEntries(Object.entries(className ? ignoredOf(className) : {}).filter(([k]) => !(k in shape)));
  const schema = nullsAsAbsent(
    z.strictObject({ ...shape, ...ignoredFields(fields) }).transform((body) => {
      const { extra, warnings } = splitIgnored(body, fields);
      const known = Object.fromEntries(Object.entries(body).filter(([k]) => !(k in fields))) as z.output<z.ZodObject<S>>;
      return attachWarnings(compact({ ...known, extra: Object.keys(extra).length > 0 ? extra : undefined }), warnings);
    }),
  );
  return describeInput(schema, { label });
}

/** Singularity's expiring actions: the change is undone after this long (30 days at most). */
const durationMillis = z
  .int()
  .min(1)
  .max(LIMITS.millis)
  .optional()
  .describe('Undo this change after this many milliseconds (a Singularity expiring action); absent: keep it');

export const scaleSchema = actionBody(
  'scale body',
  {
    instances: z.int().gt(0).max(LIMITS.instances),
    message,
    durationMillis,
    bounce: z.boolean().optional().describe('Also bounce the request (replace every task) after scaling'),
  },
  'SingularityScaleRequest',
);
export const pauseSchema = actionBody(
  'pause body',
  {
    killTasks: z.boolean().optional().describe("Read for Singularity's sake: a paused long-running request's tasks are always stopped"),
    message,
    durationMillis: durationMillis.describe('Unpause after this many milliseconds (a Singularity expiring pause)'),
  },
  'SingularityPauseRequest',
);
// Fledge's bounce always starts replacements before stopping old tasks; `incremental` is kept
// for Singularity clients. Unpause takes the same body (api.md groups them).
export const unpauseSchema = actionBody('unpause body', { incremental: z.boolean().optional(), message }, 'SingularityUnpauseRequest');
export const bounceSchema = actionBody(
  'bounce body',
  {
    incremental: z.boolean().optional(),
    message,
    durationMillis: durationMillis.describe('Give the bounce up after this many milliseconds (a Singularity expiring bounce)'),
  },
  'SingularityBounceRequest',
);
export const deleteRequestSchema = actionBody(
  'delete body',
  {
    message,
    deleteFromLoadBalancer: z
      .boolean()
      .optional()
      .describe("Read for Singularity's sake: a deleted request's tasks always leave the load balancer before they stop"),
  },
  'SingularityDeleteRequestRequest',
);
export const updateDeploySchema = actionBody(
  'deploy update body',
  {
    requestId: requestIdSchema,
    deployId: deployIdSchema,
    targetActiveInstances: z.int().gt(0).max(LIMITS.instances),
    message,
  },
  'SingularityUpdatePendingDeployRequest',
);
export const deployDecisionSchema = actionBody('deploy decision body', { requestId: requestIdSchema, deployId: deployIdSchema, message });
/** deployId: the deploy to go back to (default: the latest successful one before the active deploy) */
export const rollbackSchema = actionBody('rollback body', { message, deployId: deployIdSchema.optional() });
export const killTaskSchema = actionBody(
  'task kill body',
  { message, waitForReplacementTask: z.boolean().optional() },
  'SingularityKillTaskRequest',
);
export const createTokenSchema = actionBody('token body', {
  name: z
    .string()
    .max(100)
    .regex(TOKEN_NAME, { error: `must be ${TOKEN_NAME_RULE}` }),
  role: z.enum(ROLES),
});
// SingularityMachineChangeRequest: the body of a host (agent) state change.
export const hostChangeSchema = actionBody('host state change body', { message }, 'SingularityMachineChangeRequest');
export const exitCooldownSchema = actionBody('exit-cooldown body', { message }, 'SingularityExitCooldownRequest');
export const skipHealthchecksSchema = actionBody(
  'skip-healthchecks body',
  {
    skipHealthchecks: z.boolean().describe("The request's new skipHealthchecks"),
    message,
    durationMillis: durationMillis.describe('Put skipHealthchecks back after this many milliseconds (a Singularity expiring action)'),
  },
  'SingularitySkipHealthchecksRequest',
);

function buildDeployBodySchema(containers: boolean) {
  const schema = nullsAsAbsent(
    z
      .strictObject({
        deploy: deploySchema({ containers }),
        message,
        unpauseOnSuccessfulDeploy: z.boolean().optional(),
        updatedRequest: requestSchema.optional(),
      })
      .superRefine((body, ctx) => {
        const request = body.updatedRequest;
        if (!request) return;
        if (request.id !== body.deploy.requestId) {
          ctx.addIssue({
            code: 'custom',
            path: ['updatedRequest', 'id'],
            message: `must equal deploy.requestId (${body.deploy.requestId})`,
          });
          return;
        }
        // With updatedRequest in hand, the request-dependent rules can run here already.
        for (const issue of validateDeployForRequest(body.deploy, request)) {
          ctx.addIssue({ code: 'custom', path: issue.field.split('.'), message: issue.rule });
        }
      })
      .transform((body) => compact(body)),
  );
  return describeInput(schema, { label: 'deploy' });
}

const deployBodies = { true: buildDeployBodySchema(true), false: buildDeployBodySchema(false) };
export type DeployBodySchema = ReturnType<typeof buildDeployBodySchema>;
export type DeployBody = z.output<DeployBodySchema>;

/** POST /api/deploys (and /plan) body; `containers` as for deploySchema. */
export function deployBodySchema(options: { containers?: boolean } = {}): DeployBodySchema {
  return deployBodies[options.containers ? 'true' : 'false'];
}
