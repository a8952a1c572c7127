import { describe, expect, it } from 'vitest';
import { parseInput, schemas } from './index.ts';

const parse = (body: unknown) => parseInput(schemas.request, body);

describe('request schema', () => {
  it('applies defaults', () => {
    const r = parse({ id: 'web', requestType: 'SERVICE' });
    expect(r).toEqual({ ok: true, value: { id: 'web', requestType: 'SERVICE', instances: 1, loadBalanced: false }, warnings: [] });
  });

  it('keeps the fields Fledge acts on', () => {
    const body = {
      id: 'job_1',
      requestType: 'SCHEDULED',
      schedule: '*/5 * * * *',
      owners: ['a@b.c'],
      numRetriesOnFailure: 2,
      skipHealthchecks: true,
      instances: 1,
    };
    const r = parse(body);
    expect(r.ok && r.value).toEqual({ ...body, loadBalanced: false });
  });

  it('keeps the run-to-completion fields', () => {
    const body = {
      id: 'nightly',
      requestType: 'SCHEDULED',
      quartzSchedule: '0 30 2 ? * MON-FRI',
      scheduleType: 'QUARTZ',
      scheduleTimeZone: 'Europe/Berlin',
      numRetriesOnFailure: 1,
      taskExecutionTimeLimitMillis: 60_000,
      killOldNonLongRunningTasksAfterMillis: 1000,
      scheduledExpectedRuntimeMillis: 5000,
      waitAtLeastMillisAfterTaskFinishesForReschedule: 0,
    };
    const r = parse(body);
    expect(r.ok && r.value).toEqual({ ...body, instances: 1, loadBalanced: false });
  });

  it('treats null as absent (Singularity writes absent Optionals as null)', () => {
    const r = parse({ id: 'web', requestType: 'WORKER', schedule: null, owners: null });
    expect(r).toMatchObject({ ok: true, value: { id: 'web', instances: 1 } });
  });

  it.each([
    ['id with a dot', { id: 'a.b', requestType: 'SERVICE' }, 'id', 'must be 1-100 characters of [A-Za-z0-9_-]'],
    ['id of 101 characters', { id: 'a'.repeat(101), requestType: 'SERVICE' }, 'id', 'must be 1-100 characters of [A-Za-z0-9_-]'],
    ['empty id', { id: '', requestType: 'SERVICE' }, 'id', 'must be 1-100 characters of [A-Za-z0-9_-]'],
    ['missing id', { requestType: 'SERVICE' }, 'id', 'is required'],
    [
      'bad requestType',
      { id: 'a', requestType: 'DAEMON' },
      'requestType',
      'must be one of SERVICE, WORKER, SCHEDULED, ON_DEMAND, RUN_ONCE',
    ],
    ['instances 0', { id: 'a', requestType: 'SERVICE', instances: 0 }, 'instances', 'must be > 0'],
    ['instances 1.5', { id: 'a', requestType: 'SERVICE', instances: 1.5 }, 'instances', 'must be an integer'],
    ['instances as a word', { id: 'a', requestType: 'SERVICE', instances: 'two' }, 'instances', 'must be a number (got string)'],
    [
      'instances above maxScale',
      { id: 'a', requestType: 'SERVICE', instances: 3, maxScale: 2 },
      'instances',
      'must be at most maxScale (2)',
    ],
    [
      'loadBalanced WORKER',
      { id: 'a', requestType: 'WORKER', loadBalanced: true },
      'loadBalanced',
      'only SERVICE requests can be load balanced (this is WORKER)',
    ],
    [
      'SCHEDULED without schedule',
      { id: 'a', requestType: 'SCHEDULED' },
      'schedule',
      'is required for SCHEDULED requests (or quartzSchedule)',
    ],
    [
      'SCHEDULED with a bad quartzSchedule',
      { id: 'a', requestType: 'SCHEDULED', quartzSchedule: '0 0 * * * MON' },
      'quartzSchedule',
      'Quartz needs ? in day-of-month or in day-of-week (use ? in the one you do not restrict) (in "0 0 * * * MON")',
    ],
    [
      'SCHEDULED with 2 instances',
      { id: 'a', requestType: 'SCHEDULED', schedule: '* * * * *', instances: 2 },
      'instances',
      'must be 1 for SCHEDULED requests (runs never overlap)',
    ],
    [
      'a bad scheduleTimeZone',
      { id: 'a', requestType: 'SCHEDULED', schedule: '* * * * *', scheduleTimeZone: 'Mars/Olympus' },
      'scheduleTimeZone',
      '"Mars/Olympus" is not a time zone (IANA names such as Europe/Berlin, or UTC)',
    ],
    [
      'numRetriesOnFailure on a SERVICE',
      { id: 'a', requestType: 'SERVICE', numRetriesOnFailure: 1 },
      'numRetriesOnFailure',
      'is only for SCHEDULED, ON_DEMAND and RUN_ONCE requests (this is SERVICE)',
    ],
    [
      'taskExecutionTimeLimitMillis on a WORKER',
      { id: 'a', requestType: 'WORKER', taskExecutionTimeLimitMillis: 1 },
      'taskExecutionTimeLimitMillis',
      'is only for SCHEDULED, ON_DEMAND and RUN_ONCE requests (this is WORKER)',
    ],
    [
      'scheduledExpectedRuntimeMillis on an ON_DEMAND',
      { id: 'a', requestType: 'ON_DEMAND', scheduledExpectedRuntimeMillis: 1 },
      'scheduledExpectedRuntimeMillis',
      'is only for SCHEDULED requests (this is ON_DEMAND)',
    ],
    [
      'schedule on a SERVICE',
      { id: 'a', requestType: 'SERVICE', schedule: '* * * * *' },
      'schedule',
      'is only for SCHEDULED requests (this is SERVICE)',
    ],
    [
      'bad cron',
      { id: 'a', requestType: 'SCHEDULED', schedule: 'every day' },
      'schedule',
      'a cron schedule has 5 fields (minute hour day-of-month month day-of-week), this has 2 (in "every day")',
    ],
    ['negative numRetriesOnFailure', { id: 'a', requestType: 'SERVICE', numRetriesOnFailure: -1 }, 'numRetriesOnFailure', 'must be >= 0'],
    ['owners not an array', { id: 'a', requestType: 'SERVICE', owners: 'me' }, 'owners', 'must be an array (got string)'],
  ])('400 for %s, naming the field', (_name, body, field, rule) => {
    const r = parse(body);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.details).toContainEqual({ field, rule });
    expect(r.message).toContain(`Invalid request: `);
    expect(r.message).toContain(`${field}: ${rule}`);
  });

  it('rejects unknown fields, naming all of them', () => {
    const r = parse({ id: 'a', requestType: 'SERVICE', instanceCount: 2, foo: true });
    expect(r).toEqual({
      ok: false,
      message: 'Invalid request: Unknown field(s): instanceCount, foo',
      details: [
        { field: 'instanceCount', rule: 'unknown field' },
        { field: 'foo', rule: 'unknown field' },
      ],
    });
  });

  it.each([
    ['maxTasksPerOffer', 2],
    ['allowBounceToSameHost', true],
    ['hideEvenNumberAcrossRacksHint', true],
    ['group', 'ops'],
    ['readWriteGroups', ['ops']],
    ['bounceAfterScale', true],
    ['taskPriorityLevel', 0.5],
    ['dataCenter', 'us-east'],
  ])('accepts Singularity field %s into extra with a warning', (field, value) => {
    const r = parse({ id: 'a', requestType: 'SERVICE', [field]: value });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.extra).toEqual({ [field]: value });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(new RegExp(`^${field}: accepted and stored, but Fledge does not act on it \\(.+\\)$`));
  });

  it('acts on the placement fields, reading Singularity’s older slave spellings as the agent ones', () => {
    const r = parse({
      id: 'a',
      requestType: 'SERVICE',
      slavePlacement: 'SEPARATE_BY_REQUEST',
      rackSensitive: true,
      rackAffinity: ['r1', 'r2'],
      requiredSlaveAttributes: { zone: 'a' },
      allowedAgentAttributes: { gpu: 'yes' },
    });
    expect(r).toEqual({
      ok: true,
      value: {
        id: 'a',
        requestType: 'SERVICE',
        instances: 1,
        loadBalanced: false,
        agentPlacement: 'SEPARATE_BY_REQUEST',
        rackSensitive: true,
        rackAffinity: ['r1', 'r2'],
        requiredAgentAttributes: { zone: 'a' },
        allowedAgentAttributes: { gpu: 'yes' },
      },
      warnings: [],
    });
    // Singularity's own JSON carries both spellings, equal: fine.
    const both = parse({ id: 'a', requestType: 'SERVICE', agentPlacement: 'SEPARATE', slavePlacement: 'SEPARATE' });
    expect(both).toMatchObject({ ok: true, value: { agentPlacement: 'SEPARATE' }, warnings: [] });
  });

  it.each([
    [
      'an unknown placement',
      { agentPlacement: 'SPREAD' },
      'agentPlacement',
      'must be one of SEPARATE, OPTIMISTIC, GREEDY, SEPARATE_BY_DEPLOY, SEPARATE_BY_REQUEST, SPREAD_ALL_SLAVES, SPREAD_ALL_AGENTS',
    ],
    [
      'both spellings, disagreeing',
      { agentPlacement: 'SEPARATE', slavePlacement: 'GREEDY' },
      'slavePlacement',
      'slavePlacement is the older name of agentPlacement; they disagree',
    ],
    [
      'an attribute value that is not a scalar',
      { requiredAgentAttributes: { zone: ['a'] } },
      'requiredAgentAttributes.zone',
      'must be a string (got an array)',
    ],
    [
      'a bad attribute name',
      { allowedAgentAttributes: { 'a b': 'x' } },
      'allowedAgentAttributes.a b',
      'invalid key: attribute names are 1-100 characters of [A-Za-z0-9_.-]',
    ],
    ['rackAffinity not a list', { rackAffinity: 'r1' }, 'rackAffinity', 'must be an array (got string)'],
    ['rackSensitive not a boolean', { rackSensitive: 'yes' }, 'rackSensitive', 'must be a boolean (got string)'],
  ])('400 for %s in the placement fields, naming the field', (_name, fields, field, rule) => {
    const r = parse({ id: 'a', requestType: 'SERVICE', ...fields });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.details).toContainEqual({ field, rule });
  });

  it.each([
    ['a string', '{}', 'string'],
    ['null', null, 'null'],
    ['an array', [{ id: 'a' }], 'an array'],
    ['a number', 42, 'number'],
  ])('rejects %s as the body', (_name, body, got) => {
    expect(parse(body)).toEqual({
      ok: false,
      message: `Request body must be a JSON object (got ${got})`,
      details: [{ field: 'body', rule: 'must be a JSON object' }],
    });
  });
});
