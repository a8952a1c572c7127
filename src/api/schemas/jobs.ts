// Bodies of the run-now and webhook endpoints (Singularity's SingularityRunNowRequest and
// SingularityWebhook, plus Fledge's webhook secret and event filter).
import { z } from 'zod';
import {
  attachWarnings,
  boundedRecord,
  compact,
  describeInput,
  ignoredFields,
  LIMITS,
  list,
  nullsAsAbsent,
  splitIgnored,
  text,
} from './common.ts';
import { ignoredOf } from './singularity-fields.ts';

const envName = z
  .string()
  .max(LIMITS.envName)
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'environment variable names must match [A-Za-z_][A-Za-z0-9_]*' });

/** SingularityRunNowRequest fields Fledge accepts but does not act on (the one table in singularity-fields.ts). */
const IGNORED_RUN_FIELDS = ignoredOf('SingularityRunNowRequest');

export const RUN_ID = /^[A-Za-z0-9_.-]{1,100}$/;

export const runNowSchema = describeInput(
  nullsAsAbsent(
    z
      .strictObject({
        runId: z.string().regex(RUN_ID, { error: 'must be 1-100 characters of [A-Za-z0-9_.-]' }).optional(),
        commandLineArgs: list(text(LIMITS.command), LIMITS.arguments).optional(),
        message: text(LIMITS.message).optional(),
        resources: nullsAsAbsent(
          z.strictObject({
            cpus: z.number().gt(0).max(LIMITS.cpus).optional(),
            memoryMb: z.number().gt(0).max(LIMITS.megabytes).optional(),
            numPorts: z.int().min(0).max(LIMITS.ports).optional(),
            diskMb: z.number().min(0).max(LIMITS.megabytes).optional(),
          }),
        ).optional(),
        envOverrides: boundedRecord(envName, text(LIMITS.envValue), LIMITS.envKeys).optional(),
        runAt: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
        ...ignoredFields(IGNORED_RUN_FIELDS),
      })
      .transform((body) => {
        const { extra: _extra, warnings } = splitIgnored(body, IGNORED_RUN_FIELDS);
        return attachWarnings(
          compact({
            runId: body.runId,
            commandLineArgs: body.commandLineArgs,
            message: body.message,
            resources: body.resources ? compact({ ...body.resources }) : undefined,
            envOverrides: body.envOverrides,
            runAt: body.runAt,
          }),
          warnings,
        );
      }),
  ),
  { label: 'run body' },
);

export const WEBHOOK_TYPES = ['REQUEST', 'DEPLOY', 'TASK'] as const;

/** Event types a webhook may filter on, per webhook type. */
export const WEBHOOK_EVENTS = {
  REQUEST: ['CREATED', 'UPDATED', 'DELETING', 'DELETED', 'PAUSED', 'UNPAUSED', 'FINISHED', 'DEPLOYED_TO_UNPAUSE', 'BOUNCED', 'SCALED'],
  // STARTING and FINISHED are Singularity's; PROGRESS is Fledge's, one per phase or step change.
  DEPLOY: ['STARTING', 'FINISHED', 'PROGRESS'],
  TASK: [
    'TASK_LAUNCHED',
    'TASK_STARTING',
    'TASK_RUNNING',
    'TASK_CLEANING',
    'TASK_KILLING',
    'TASK_FINISHED',
    'TASK_FAILED',
    'TASK_KILLED',
    'TASK_LOST',
    'TASK_ERROR',
  ],
} as const;

const uri = z
  .string()
  .max(LIMITS.url)
  .refine((s) => URL.canParse(s) && ['http:', 'https:'].includes(new URL(s).protocol), { error: 'must be an http:// or https:// URL' })
  .refine((s) => !URL.canParse(s) || (new URL(s).username === '' && new URL(s).password === ''), {
    error: 'must not carry credentials (use secret; the signature authenticates Fledge)',
  });

export const webhookSchema = describeInput(
  nullsAsAbsent(
    z
      .strictObject({
        uri,
        type: z.enum(WEBHOOK_TYPES),
        secret: z.string().min(16, { error: 'must be at least 16 characters' }).max(512).optional(),
        events: list(text(), 50).min(1).optional(),
        // Singularity's: the id is derived from type and uri; timestamp and user are set by the server.
        id: text(LIMITS.url).optional(),
        timestamp: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
        user: text().optional(),
      })
      .superRefine((w, ctx) => {
        const allowed: readonly string[] = WEBHOOK_EVENTS[w.type];
        (w.events ?? []).forEach((e, i) => {
          if (!allowed.includes(e)) {
            ctx.addIssue({
              code: 'custom',
              path: ['events', i],
              message: `${JSON.stringify(e)} is not a ${w.type} event (${allowed.join(', ')})`,
            });
          }
        });
      })
      .transform((w) => compact({ uri: w.uri, type: w.type, secret: w.secret, events: w.events })),
  ),
  { label: 'webhook' },
);
