import { describe, expect, it } from 'vitest';
import { nextRunAfter, parseCron, parseQuartz, ScheduleError, scheduleOf } from './cron.ts';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString().replace('.000Z', 'Z'));

/** The next `n` runs after `from`. */
function runs(s: ReturnType<typeof parseCron>, from: string, zone: string, n: number): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  let t: number | undefined = at(from);
  for (let i = 0; i < n && t !== undefined; i++) {
    t = nextRunAfter(s, t, zone);
    out.push(iso(t));
  }
  return out;
}

describe('next run of a cron schedule', () => {
  it.each([
    ['every minute', '* * * * *', 'UTC', '2024-01-01T00:00:30Z', ['2024-01-01T00:01:00Z', '2024-01-01T00:02:00Z']],
    ['strictly after an exact match', '0 12 * * *', 'UTC', '2024-01-01T12:00:00Z', ['2024-01-02T12:00:00Z']],
    ['steps and ranges', '*/20 9-10 * * *', 'UTC', '2024-01-01T10:30:00Z', ['2024-01-01T10:40:00Z', '2024-01-02T09:00:00Z']],
    ['day-of-week 7 is Sunday', '0 0 * * 7', 'UTC', '2024-01-01T00:00:00Z', ['2024-01-07T00:00:00Z']],
    ['day names', '0 6 * * MON-FRI', 'UTC', '2024-01-05T07:00:00Z', ['2024-01-08T06:00:00Z']],
    ['month names', '0 0 1 JUN *', 'UTC', '2024-01-01T00:00:00Z', ['2024-06-01T00:00:00Z']],
    ['both day fields: either matches', '0 0 1 * 1', 'UTC', '2024-01-29T00:00:00Z', ['2024-02-01T00:00:00Z', '2024-02-05T00:00:00Z']],
    ['a sixth leading field is seconds', '15 * * * * *', 'UTC', '2024-01-01T00:00:20Z', ['2024-01-01T00:01:15Z']],
    ['29 February waits for a leap year', '0 0 29 2 *', 'UTC', '2024-03-01T00:00:00Z', ['2028-02-29T00:00:00Z']],
    ['30 February never comes', '0 0 30 2 *', 'UTC', '2024-01-01T00:00:00Z', [undefined]],
    ['a fixed offset zone', '0 9 * * MON-FRI', 'Asia/Kolkata', '2024-01-06T00:00:00Z', ['2024-01-08T03:30:00Z']],
    // New York springs forward at 2024-03-10 07:00Z (02:00 EST → 03:00 EDT).
    [
      'a time in the spring gap runs at the end of the gap',
      '30 2 * * *',
      'America/New_York',
      '2024-03-09T12:00:00Z',
      ['2024-03-10T07:00:00Z', '2024-03-11T06:30:00Z'],
    ],
    [
      'hourly across the spring gap',
      '0 * * * *',
      'America/New_York',
      '2024-03-10T06:30:00Z',
      ['2024-03-10T07:00:00Z', '2024-03-10T08:00:00Z'],
    ],
    // It falls back at 2024-11-03 06:00Z (02:00 EDT → 01:00 EST): 01:00-01:59 happens twice.
    [
      'a fixed time in the fall overlap runs once, at its first occurrence',
      '30 1 * * *',
      'America/New_York',
      '2024-11-02T12:00:00Z',
      ['2024-11-03T05:30:00Z', '2024-11-04T06:30:00Z'],
    ],
    [
      'an every-hour schedule runs in both occurrences',
      '*/30 * * * *',
      'America/New_York',
      '2024-11-03T05:10:00Z',
      ['2024-11-03T05:30:00Z', '2024-11-03T06:00:00Z', '2024-11-03T06:30:00Z', '2024-11-03T07:00:00Z'],
    ],
    // London: 2024-03-31 01:00Z jumps to 02:00 BST; 2024-10-27 01:00Z back to 01:00 GMT.
    ['London spring gap', '30 1 * * *', 'Europe/London', '2024-03-30T12:00:00Z', ['2024-03-31T01:00:00Z', '2024-04-01T00:30:00Z']],
    ['London fall overlap', '30 1 * * *', 'Europe/London', '2024-10-26T12:00:00Z', ['2024-10-27T00:30:00Z', '2024-10-28T01:30:00Z']],
    // Lord Howe shifts by 30 minutes: 2024-10-06 02:00 local (+10:30, 15:30Z the day before) → 02:30.
    [
      'a half-hour DST shift',
      '15 2 * * *',
      'Australia/Lord_Howe',
      '2024-10-05T12:00:00Z',
      ['2024-10-05T15:30:00Z', '2024-10-06T15:15:00Z'],
    ],
  ])('%s: %s in %s', (_name, expr, zone, from, expected) => {
    expect(runs(parseCron(expr), from, zone, expected.length)).toEqual(expected);
  });
});

describe('next run of a Quartz schedule', () => {
  it.each([
    ['seconds field', '*/15 * * ? * *', '2024-01-01T00:00:01Z', ['2024-01-01T00:00:15Z', '2024-01-01T00:00:30Z']],
    ['1 is Sunday, 7 Saturday', '0 0 12 ? * 1,7', '2024-01-01T00:00:00Z', ['2024-01-06T12:00:00Z', '2024-01-07T12:00:00Z']],
    ['n#k: first Monday', '0 0 12 ? * 2#1', '2024-01-01T12:00:00Z', ['2024-02-05T12:00:00Z']],
    ['MON#3 by name', '0 0 8 ? * MON#3', '2024-01-01T00:00:00Z', ['2024-01-15T08:00:00Z']],
    ['L: last day of the month', '0 0 0 L * ?', '2024-02-10T00:00:00Z', ['2024-02-29T00:00:00Z', '2024-03-31T00:00:00Z']],
    ['L-2: two days before the last', '0 0 0 L-2 * ?', '2024-04-01T00:00:00Z', ['2024-04-28T00:00:00Z']],
    ['LW: last weekday', '0 0 0 LW * ?', '2024-08-01T00:00:00Z', ['2024-08-30T00:00:00Z']],
    ['15W: Saturday the 15th runs Friday', '0 0 0 15W * ?', '2024-06-01T00:00:00Z', ['2024-06-14T00:00:00Z']],
    ['1W: Saturday the 1st runs Monday the 3rd', '0 0 0 1W * ?', '2024-05-31T12:00:00Z', ['2024-06-03T00:00:00Z']],
    ['6L: last Friday', '0 0 0 ? * 6L', '2024-05-01T00:00:00Z', ['2024-05-31T00:00:00Z']],
    ['L in day-of-week: Saturday', '0 0 0 ? * L', '2024-01-01T00:00:00Z', ['2024-01-06T00:00:00Z']],
    ['year field', '0 0 0 1 1 ? 2030', '2024-01-01T00:00:00Z', ['2030-01-01T00:00:00Z', undefined]],
  ])('%s: %s', (_name, expr, from, expected) => {
    expect(runs(parseQuartz(expr), from, 'UTC', expected.length)).toEqual(expected);
  });
});

describe('schedules refused, with the reason', () => {
  const refuse = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      if (err instanceof ScheduleError) return { field: err.field, message: err.message };
      throw err;
    }
    throw new Error('accepted');
  };
  it.each([
    [{ schedule: '* * * *' }, 'schedule', 'a cron schedule has 5 fields'],
    [{ schedule: '60 * * * *' }, 'schedule', 'minute field: 60 is outside 0-59'],
    [{ schedule: '5-1 * * * *' }, 'schedule', 'minute field: range 5-1 runs backwards'],
    [{ schedule: '0 0 L * *' }, 'schedule', 'L, W and # are Quartz forms'],
    [{ schedule: '0 0 * * 1#2' }, 'schedule', 'L, W and # are Quartz forms'],
    [{ schedule: '@daily' }, 'schedule', 'macros such as @daily are not supported'],
    [{ schedule: '0 0 * * 8' }, 'schedule', 'day-of-week field: 8 is outside 0-7'],
    [{ schedule: '0 0 * * FOO' }, 'schedule', 'is not a number or name'],
    [{ quartzSchedule: '0 0 12 * * MON' }, 'quartzSchedule', 'Quartz needs ? in day-of-month or in day-of-week'],
    [{ quartzSchedule: '0 0 12 ? * ?' }, 'quartzSchedule', 'cannot both be ?'],
    [{ quartzSchedule: '0 0 12 1,LW * ?' }, 'quartzSchedule', 'L and W stand alone'],
    [{ quartzSchedule: '0 0 12 ? * 2#6' }, 'quartzSchedule', '#6 is not 1-5'],
    [{ quartzSchedule: '0 0 12 ? * 8' }, 'quartzSchedule', 'day-of-week field: 8 is outside 1-7'],
    [{ quartzSchedule: '0 0 12 ? * MON#1,FRI' }, 'quartzSchedule', 'nL and n#k stand alone'],
    [{ quartzSchedule: '0 0 12 ? * 1W' }, 'quartzSchedule', 'W belongs in day-of-month'],
    [{ quartzSchedule: '0 12 * * ?' }, 'quartzSchedule', 'a Quartz schedule has 6 or 7 fields'],
    [{ quartzSchedule: '0 0 0 1 1 ? 1900' }, 'quartzSchedule', 'year field: 1900 is outside 1970-2199'],
    [{ schedule: '0 * * * *', scheduleType: 'RFC5545' }, 'scheduleType', 'RFC5545 schedules are not supported'],
    [{ quartzSchedule: '0 0 * * * ?', scheduleType: 'CRON' }, 'scheduleType', 'must be QUARTZ or absent'],
    [{ schedule: '0 * * * *', quartzSchedule: '0 0 * * * ?' }, 'schedule', 'not two different schedules'],
  ])('%j → %s', (fields, field, message) => {
    const r = refuse(() => scheduleOf(fields));
    expect(r.field).toBe(field);
    expect(r.message).toContain(message);
  });

  it('reads schedule as Quartz with scheduleType QUARTZ, and quartzSchedule equal to schedule', () => {
    expect(scheduleOf({ schedule: '0 0 12 ? * 2', scheduleType: 'QUARTZ' })?.form).toBe('QUARTZ');
    expect(scheduleOf({ schedule: '0 0 12 ? * 2', quartzSchedule: '0 0 12 ? * 2' })?.form).toBe('QUARTZ');
    expect(scheduleOf({ schedule: '0 12 * * 1' })?.form).toBe('CRON');
  });
});
