// Request (create/update) body → FledgeRequest.
import { z } from 'zod';
import { isTimeZone, ScheduleError, scheduleOf } from '../../core/jobs/cron.ts';
import { AGENT_PLACEMENTS, isRunToCompletion, REQUEST_TYPES, type FledgeRequest, type RequestType } from '../../core/model.ts';
import {
  attachWarnings,
  boundedRecord,
  conflict,
  count,
  describeInput,
  compact,
  ignoredFields,
  LIMITS,
  list,
  millis,
  nonEmpty,
  nullsAsAbsent,
  splitIgnored,
  text,
} from './common.ts';
import { IGNORED_REQUEST_FIELDS } from './singularity-fields.ts';

export const REQUEST_DEFAULTS = { instances: 1, loadBalanced: false } as const;

export const requestIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]+$/, { error: 'must be 1-100 characters of [A-Za-z0-9_-]' })
  .max(100, { error: 'must be 1-100 characters of [A-Za-z0-9_-]' });

// Shape only here; scheduleOf (core/jobs/cron.ts) reads the expression and names what it refuses.
const cronSchema = z.string().min(1).max(LIMITS.name);

const attributeName = z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, { error: 'attribute names are 1-100 characters of [A-Za-z0-9_.-]' });
const attributes = boundedRecord(attributeName, text(), LIMITS.metadataKeys).describe(
  'host attributes (--docker-host attr.<k>=<v>), all of which a host must have (required) or one of which it is preferred for (allowed)',
);
const placement = z.enum(AGENT_PLACEMENTS).describe("how instances share hosts (Singularity's agentPlacement)");

// Singularity's older spellings, read as the new ones (its own JSON carries both, equal).
const ALIASES = [
  ['agentPlacement', 'slavePlacement'],
  ['requiredAgentAttributes', 'requiredSlaveAttributes'],
  ['allowedAgentAttributes', 'allowedSlaveAttributes'],
] as const;

const requestShape = z.strictObject({
  id: requestIdSchema,
  requestType: z
    .enum(REQUEST_TYPES)
    .optional()
    .describe(
      'Absent: derived as Singularity does (a schedule: SCHEDULED; daemon false: ON_DEMAND; loadBalanced: SERVICE; else WORKER), with a warning',
    ),
  daemon: z.boolean().optional().describe("Singularity's pre-requestType flag, read only when requestType is absent"),
  instances: z.int().gt(0).max(LIMITS.instances).default(REQUEST_DEFAULTS.instances),
  maxScale: z.int().gt(0).max(LIMITS.instances).optional().describe('The most instances a scale or an update of this request may set'),
  loadBalanced: z.boolean().default(REQUEST_DEFAULTS.loadBalanced),
  owners: list(nonEmpty()).optional(),
  schedule: cronSchema.optional(),
  quartzSchedule: cronSchema.optional(),
  scheduleType: z.enum(['CRON', 'QUARTZ', 'RFC5545']).optional(),
  scheduleTimeZone: nonEmpty(100).optional(),
  numRetriesOnFailure: count().optional(),
  taskExecutionTimeLimitMillis: millis().optional(),
  killOldNonLongRunningTasksAfterMillis: millis().optional(),
  scheduledExpectedRuntimeMillis: millis().optional(),
  waitAtLeastMillisAfterTaskFinishesForReschedule: millis().optional(),
  skipHealthchecks: z.boolean().optional(),
  agentPlacement: placement.optional(),
  slavePlacement: placement.optional(),
  rackSensitive: z.boolean().optional().describe('spread instances evenly over the racks of the hosts that take tasks'),
  rackAffinity: list(nonEmpty()).optional().describe('racks (a host’s rack= or attr.rack) the tasks may run in'),
  requiredAgentAttributes: attributes.optional(),
  requiredSlaveAttributes: attributes.optional(),
  allowedAgentAttributes: attributes.optional(),
  allowedSlaveAttributes: attributes.optional(),
  ...ignoredFields(IGNORED_REQUEST_FIELDS),
});

/** SingularityRequest's creator derives an absent requestType (RequestType.fromDaemonAndScheduleAndLoadBalanced). */
function typeOf(r: {
  requestType?: RequestType;
  daemon?: boolean;
  schedule?: string;
  quartzSchedule?: string;
  loadBalanced: boolean;
}): RequestType {
  if (r.requestType !== undefined) return r.requestType;
  if (r.schedule !== undefined || r.quartzSchedule !== undefined) return 'SCHEDULED';
  if (r.daemon === false) return 'ON_DEMAND';
  return r.loadBalanced ? 'SERVICE' : 'WORKER';
}

export const requestSchema = describeInput(
  nullsAsAbsent(
    requestShape
      .superRefine((r, ctx) => {
        const requestType = typeOf(r);
        if (r.maxScale !== undefined && r.instances > r.maxScale) {
          ctx.addIssue({ code: 'custom', path: ['instances'], message: `must be at most maxScale (${r.maxScale})` });
        }
        if (r.loadBalanced && requestType !== 'SERVICE') {
          ctx.addIssue({
            code: 'custom',
            path: ['loadBalanced'],
            message: `only SERVICE requests can be load balanced (this is ${requestType})`,
          });
        }
        const scheduled = requestType === 'SCHEDULED';
        if (scheduled) {
          if (r.schedule === undefined && r.quartzSchedule === undefined) {
            ctx.addIssue({ code: 'custom', path: ['schedule'], message: 'is required for SCHEDULED requests (or quartzSchedule)' });
          } else {
            try {
              scheduleOf(r);
            } catch (err) {
              if (!(err instanceof ScheduleError)) throw err;
              ctx.addIssue({ code: 'custom', path: [err.field], message: err.message });
            }
          }
          if (r.instances !== 1) {
            ctx.addIssue({ code: 'custom', path: ['instances'], message: 'must be 1 for SCHEDULED requests (runs never overlap)' });
          }
        } else {
          for (const field of ['schedule', 'quartzSchedule', 'scheduleType'] as const) {
            if (r[field] !== undefined) {
              ctx.addIssue({ code: 'custom', path: [field], message: `is only for SCHEDULED requests (this is ${requestType})` });
            }
          }
        }
        if (r.scheduleTimeZone !== undefined && !isTimeZone(r.scheduleTimeZone)) {
          ctx.addIssue({
            code: 'custom',
            path: ['scheduleTimeZone'],
            message: `${JSON.stringify(r.scheduleTimeZone)} is not a time zone (IANA names such as Europe/Berlin, or UTC)`,
          });
        }
        if (!isRunToCompletion(requestType)) {
          for (const field of ['numRetriesOnFailure', 'taskExecutionTimeLimitMillis', 'killOldNonLongRunningTasksAfterMillis'] as const) {
            if (r[field] !== undefined) {
              ctx.addIssue({
                code: 'custom',
                path: [field],
                message: `is only for SCHEDULED, ON_DEMAND and RUN_ONCE requests (this is ${requestType})`,
              });
            }
          }
        }
        if (!scheduled) {
          for (const field of ['scheduledExpectedRuntimeMillis', 'waitAtLeastMillisAfterTaskFinishesForReschedule'] as const) {
            if (r[field] !== undefined) {
              ctx.addIssue({ code: 'custom', path: [field], message: `is only for SCHEDULED requests (this is ${requestType})` });
            }
          }
        }
        for (const [name, old] of ALIASES) {
          if (r[name] !== undefined && r[old] !== undefined && JSON.stringify(r[name]) !== JSON.stringify(r[old])) {
            conflict(ctx, [name], [old], `${old} is the older name of ${name}; they disagree`);
          }
        }
      })
      .transform((r): FledgeRequest => {
        const { extra, warnings } = splitIgnored(r, IGNORED_REQUEST_FIELDS);
        const requestType = typeOf(r);
        if (r.requestType === undefined) {
          warnings.push({
            field: 'requestType',
            message: `absent: read as ${requestType} from daemon, schedule and loadBalanced (as Singularity does)`,
          });
        }
        const out: FledgeRequest = compact({
          id: r.id,
          requestType,
          instances: r.instances,
          loadBalanced: r.loadBalanced,
          owners: r.owners,
          schedule: r.schedule?.trim(),
          quartzSchedule: r.quartzSchedule?.trim(),
          scheduleType: r.scheduleType === 'RFC5545' ? undefined : r.scheduleType,
          scheduleTimeZone: r.scheduleTimeZone,
          numRetriesOnFailure: r.numRetriesOnFailure,
          taskExecutionTimeLimitMillis: r.taskExecutionTimeLimitMillis,
          killOldNonLongRunningTasksAfterMillis: r.killOldNonLongRunningTasksAfterMillis,
          scheduledExpectedRuntimeMillis: r.scheduledExpectedRuntimeMillis,
          waitAtLeastMillisAfterTaskFinishesForReschedule: r.waitAtLeastMillisAfterTaskFinishesForReschedule,
          skipHealthchecks: r.skipHealthchecks,
          maxScale: r.maxScale,
          agentPlacement: r.agentPlacement ?? r.slavePlacement,
          rackSensitive: r.rackSensitive,
          rackAffinity: r.rackAffinity,
          requiredAgentAttributes: r.requiredAgentAttributes ?? r.requiredSlaveAttributes,
          allowedAgentAttributes: r.allowedAgentAttributes ?? r.allowedSlaveAttributes,
          extra: Object.keys(extra).length > 0 ? extra : undefined,
        });
        return attachWarnings(out, warnings);
      }),
  ),
  { label: 'request' },
);
