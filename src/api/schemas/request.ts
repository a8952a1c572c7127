// Request (create/update) body → FledgeRequest.
import { z } from 'zod';
import { AGENT_PLACEMENTS, REQUEST_TYPES, type FledgeRequest, type RequestType } from '../../core/model.ts';
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

// Cron with 5 fields (Unix) or 6-7 (Quartz seconds/year); the scheduler parses it for real.
const CRON_FIELD = /^[0-9A-Za-z*?/,#LW-]+$/;
const cronSchema = z
  .string()
  .max(LIMITS.name)
  .refine(
    (s) => {
      const fields = s.trim().split(/\s+/);
      return fields.length >= 5 && fields.length <= 7 && fields.every((f) => CRON_FIELD.test(f));
    },
    { error: 'must be a cron expression of 5 fields (minute hour day-of-month month day-of-week)' },
  );

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
  numRetriesOnFailure: count().optional(),
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
function typeOf(r: { requestType?: RequestType; daemon?: boolean; schedule?: string; loadBalanced: boolean }): RequestType {
  if (r.requestType !== undefined) return r.requestType;
  if (r.schedule !== undefined) return 'SCHEDULED';
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
        if (requestType === 'SCHEDULED' && r.schedule === undefined) {
          const hint =
            (r as Record<string, unknown>).quartzSchedule !== undefined
              ? ' (quartzSchedule is not read; put a cron expression in schedule)'
              : '';
          ctx.addIssue({ code: 'custom', path: ['schedule'], message: `is required for SCHEDULED requests${hint}` });
        }
        if (r.schedule !== undefined && requestType !== 'SCHEDULED') {
          ctx.addIssue({ code: 'custom', path: ['schedule'], message: `is only for SCHEDULED requests (this is ${requestType})` });
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
          numRetriesOnFailure: r.numRetriesOnFailure,
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
