/*
 * Schedules of SCHEDULED requests, pure: parsing (5-field cron, Quartz) into one model, and
 * the next run time after an instant, in an IANA time zone (through Intl, no library).
 *
 * Two input forms, as Singularity reads them:
 * - `schedule` (scheduleType CRON, the default): minute hour day-of-month month day-of-week,
 *   day-of-week 0-7 (0 and 7 are Sunday) or SUN-SAT; a sixth leading field is seconds (as
 *   Singularity's conversion reads it). When both day fields are restricted, a day matches
 *   either (cron's rule).
 * - `quartzSchedule` (or scheduleType QUARTZ): seconds minute hour day-of-month month
 *   day-of-week [year], day-of-week 1-7 with 1 = Sunday, one day field `?`. Specials: `L`,
 *   `L-n`, `LW`, `nW` in day-of-month; `L` (Saturday), `nL` (last n-day) and `n#k` (k-th
 *   n-day) in day-of-week. Anything else is refused with the reason (ScheduleError).
 *
 * Time zones (wall-clock times that do not exist or exist twice):
 * - A time inside a spring-forward gap runs once, at the end of the gap (02:30 on a night
 *   that jumps from 02:00 to 03:00 runs at 03:00).
 * - A time inside a fall-back overlap runs once, at its first occurrence, unless the hour
 *   field is a wildcard (every hour): such a schedule follows real time and runs in both.
 */

export class ScheduleError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** Which days of a month match: computed per (year, month). */
type DayRule =
  | { kind: 'any' }
  | { kind: 'set'; values: number[] }
  /** day-of-month: last day minus offset */
  | { kind: 'last'; offset: number }
  | { kind: 'lastWeekday' }
  | { kind: 'nearestWeekday'; day: number }
  /** day-of-week (0 = Sunday): the last such day of the month */
  | { kind: 'lastOf'; weekday: number }
  /** day-of-week: the nth such day of the month */
  | { kind: 'nth'; weekday: number; n: number };

export interface Schedule {
  /** the expression as given, and its form */
  source: string;
  form: 'CRON' | 'QUARTZ';
  seconds: number[];
  minutes: number[];
  hours: number[];
  months: number[];
  /** undefined: every year */
  years?: number[];
  dayOfMonth: DayRule;
  /** 0 = Sunday */
  dayOfWeek: DayRule;
  /** both day fields restricted (cron): a day matches either */
  daysEither: boolean;
  /** the hour field covers every hour: in a fall-back overlap the schedule runs in both */
  everyHour: boolean;
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const DAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** the value names[0] stands for */
  namesFrom?: number;
}

const SECOND: FieldSpec = { name: 'seconds', min: 0, max: 59 };
const MINUTE: FieldSpec = { name: 'minute', min: 0, max: 59 };
const HOUR: FieldSpec = { name: 'hour', min: 0, max: 23 };
const DOM: FieldSpec = { name: 'day-of-month', min: 1, max: 31 };
const MONTH: FieldSpec = { name: 'month', min: 1, max: 12, names: MONTHS, namesFrom: 1 };
const YEAR: FieldSpec = { name: 'year', min: 1970, max: 2199 };
/** cron: 0-7, 0 and 7 Sunday */
const CRON_DOW: FieldSpec = { name: 'day-of-week', min: 0, max: 7, names: DAYS, namesFrom: 0 };
/** Quartz: 1-7, 1 Sunday */
const QUARTZ_DOW: FieldSpec = { name: 'day-of-week', min: 1, max: 7, names: DAYS, namesFrom: 1 };

function fail(field: string, expression: string, why: string): never {
  throw new ScheduleError(field, `${why} (in ${JSON.stringify(expression)})`);
}

function value(token: string, spec: FieldSpec, field: string, expr: string): number {
  const upper = token.toUpperCase();
  const named = spec.names?.indexOf(upper) ?? -1;
  if (named >= 0) return named + (spec.namesFrom ?? 0);
  if (!/^\d+$/.test(token)) fail(field, expr, `${spec.name} field: ${JSON.stringify(token)} is not a number or name`);
  const n = Number(token);
  if (n < spec.min || n > spec.max) fail(field, expr, `${spec.name} field: ${n} is outside ${spec.min}-${spec.max}`);
  return n;
}

/** `*`, `a`, `a-b`, `*\/n`, `a/n`, `a-b/n`, lists of those → sorted distinct values. */
function parseSet(text: string, spec: FieldSpec, field: string, expr: string): number[] {
  const out = new Set<number>();
  for (const part of text.split(',')) {
    if (part === '') fail(field, expr, `${spec.name} field: empty list item`);
    const [range = '', stepText, ...rest] = part.split('/');
    if (rest.length > 0) fail(field, expr, `${spec.name} field: ${JSON.stringify(part)} has more than one /`);
    let lo: number;
    let hi: number;
    if (range === '*') {
      lo = spec.min;
      hi = spec.max;
    } else if (range.includes('-')) {
      const [a = '', b = '', ...more] = range.split('-');
      if (more.length > 0) fail(field, expr, `${spec.name} field: ${JSON.stringify(range)} is not a range`);
      lo = value(a, spec, field, expr);
      hi = value(b, spec, field, expr);
      if (hi < lo) fail(field, expr, `${spec.name} field: range ${range} runs backwards`);
    } else {
      lo = value(range, spec, field, expr);
      hi = stepText !== undefined ? spec.max : lo;
    }
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1)
        fail(field, expr, `${spec.name} field: step ${JSON.stringify(stepText)} is not a positive number`);
      step = Number(stepText);
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return [...out].sort((a, b) => a - b);
}

function split(expr: string): string[] {
  return expr.trim().split(/\s+/);
}

/** A 5-field cron (or 6 with leading seconds), as `schedule` with scheduleType CRON. */
export function parseCron(expr: string, field = 'schedule'): Schedule {
  const parts = split(expr);
  if (expr.trim().startsWith('@')) fail(field, expr, 'macros such as @daily are not supported; write the five fields');
  if (parts.length < 5 || parts.length > 6) {
    fail(field, expr, `a cron schedule has 5 fields (minute hour day-of-month month day-of-week), this has ${parts.length}`);
  }
  const withSeconds = parts.length === 6;
  const [sec, min, hour, dom, month, dow] = (withSeconds ? parts : ['0', ...parts]) as [string, string, string, string, string, string];
  for (const [name, text] of [
    ['day-of-month', dom],
    ['day-of-week', dow],
  ] as const) {
    if (/[LW#]/i.test(text.replace(/[A-Z]{3}/gi, (m) => (DAYS.includes(m.toUpperCase()) ? '0' : m)))) {
      fail(field, expr, `${name} field: L, W and # are Quartz forms; put them in quartzSchedule`);
    }
  }
  const domStar = dom === '*' || dom === '?';
  const dowStar = dow === '*' || dow === '?';
  const dowValues = dowStar ? undefined : parseSet(dow, CRON_DOW, field, expr).map((d) => d % 7);
  const hours = parseSet(hour, HOUR, field, expr);
  return {
    source: expr,
    form: 'CRON',
    seconds: parseSet(sec, SECOND, field, expr),
    minutes: parseSet(min, MINUTE, field, expr),
    hours,
    months: parseSet(month, MONTH, field, expr),
    dayOfMonth: domStar ? { kind: 'any' } : { kind: 'set', values: parseSet(dom, DOM, field, expr) },
    dayOfWeek: dowValues ? { kind: 'set', values: [...new Set(dowValues)].sort((a, b) => a - b) } : { kind: 'any' },
    daysEither: !domStar && !dowStar,
    everyHour: hours.length === 24,
  };
}

/** A Quartz expression: seconds minute hour day-of-month month day-of-week [year]. */
export function parseQuartz(expr: string, field = 'quartzSchedule'): Schedule {
  const parts = split(expr);
  if (parts.length < 6 || parts.length > 7) {
    fail(
      field,
      expr,
      `a Quartz schedule has 6 or 7 fields (seconds minute hour day-of-month month day-of-week [year]), this has ${parts.length}`,
    );
  }
  const [sec, min, hour, dom, month, dow, year] = parts as [string, string, string, string, string, string, string | undefined];
  if (dom === '?' && dow === '?') fail(field, expr, 'day-of-month and day-of-week cannot both be ?');
  if (dom !== '?' && dow !== '?') {
    fail(field, expr, 'Quartz needs ? in day-of-month or in day-of-week (use ? in the one you do not restrict)');
  }
  const hours = parseSet(hour, HOUR, field, expr);
  return {
    source: expr,
    form: 'QUARTZ',
    seconds: parseSet(sec, SECOND, field, expr),
    minutes: parseSet(min, MINUTE, field, expr),
    hours,
    months: parseSet(month, MONTH, field, expr),
    ...(year !== undefined && year !== '*' ? { years: parseSet(year, YEAR, field, expr) } : {}),
    dayOfMonth: dom === '?' ? { kind: 'any' } : quartzDayOfMonth(dom, field, expr),
    dayOfWeek: dow === '?' ? { kind: 'any' } : quartzDayOfWeek(dow, field, expr),
    daysEither: false,
    everyHour: hours.length === 24,
  };
}

function quartzDayOfMonth(text: string, field: string, expr: string): DayRule {
  const t = text.toUpperCase();
  if (t === '*') return { kind: 'any' };
  if (t === 'L') return { kind: 'last', offset: 0 };
  if (t === 'LW') return { kind: 'lastWeekday' };
  const lastMinus = /^L-(\d+)$/.exec(t);
  if (lastMinus) {
    const offset = Number(lastMinus[1]);
    if (offset > 30) fail(field, expr, `day-of-month field: L-${offset} is more than 30 days before the end of a month`);
    return { kind: 'last', offset };
  }
  const weekday = /^(\d+)W$/.exec(t);
  if (weekday) return { kind: 'nearestWeekday', day: value(weekday[1] as string, DOM, field, expr) };
  if (/[LW]/.test(t))
    fail(field, expr, `day-of-month field: ${JSON.stringify(text)}: L and W stand alone (L, L-n, LW, nW), not in lists or ranges`);
  if (t.includes('#')) fail(field, expr, 'day-of-month field: # belongs in day-of-week');
  return { kind: 'set', values: parseSet(text, DOM, field, expr) };
}

function quartzDayOfWeek(text: string, field: string, expr: string): DayRule {
  const t = text.toUpperCase();
  if (t === '*') return { kind: 'any' };
  // Quartz: 1 = Sunday … 7 = Saturday; the model counts 0 = Sunday.
  const day = (token: string) => value(token, QUARTZ_DOW, field, expr) - 1;
  if (t === 'L') return { kind: 'set', values: [6] };
  const last = /^([A-Z]{3}|\d+)L$/.exec(t);
  if (last) return { kind: 'lastOf', weekday: day(last[1] as string) };
  const nth = /^([A-Z]{3}|\d+)#(\d+)$/.exec(t);
  if (nth) {
    const n = Number(nth[2]);
    if (n < 1 || n > 5) fail(field, expr, `day-of-week field: #${n} is not 1-5 (the nth such day of a month)`);
    return { kind: 'nth', weekday: day(nth[1] as string), n };
  }
  if (/[L#]/.test(t)) fail(field, expr, `day-of-week field: ${JSON.stringify(text)}: nL and n#k stand alone, not in lists or ranges`);
  if (t.includes('W')) {
    if (!/^(?:[A-Z]{3}|[\d*,/-])+$/.test(t) || t.replace(/[A-Z]{3}/g, '').includes('W')) {
      fail(field, expr, 'day-of-week field: W belongs in day-of-month');
    }
  }
  return { kind: 'set', values: parseSet(text, QUARTZ_DOW, field, expr).map((d) => d - 1) };
}

/** The request's schedule fields → its Schedule; throws ScheduleError naming the field. */
export function scheduleOf(r: { schedule?: string; quartzSchedule?: string; scheduleType?: string }): Schedule | undefined {
  const type = r.scheduleType;
  if (type === 'RFC5545') throw new ScheduleError('scheduleType', 'RFC5545 schedules are not supported; use CRON or QUARTZ');
  if (r.quartzSchedule !== undefined) {
    if (type !== undefined && type !== 'QUARTZ') {
      throw new ScheduleError('scheduleType', 'with quartzSchedule, scheduleType must be QUARTZ or absent');
    }
    if (r.schedule !== undefined && r.schedule.trim() !== r.quartzSchedule.trim()) {
      throw new ScheduleError('schedule', 'give schedule or quartzSchedule, not two different schedules');
    }
    return parseQuartz(r.quartzSchedule, 'quartzSchedule');
  }
  if (r.schedule === undefined) return undefined;
  return type === 'QUARTZ' ? parseQuartz(r.schedule, 'schedule') : parseCron(r.schedule, 'schedule');
}

/** Whether Intl knows the zone (IANA names and aliases such as UTC or US/Eastern). */
export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

// ---- evaluation ----------------------------------------------------------------------

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/** DST shifts are at most 2 h (historic double summer time); scans keep this much slack. */
const SLACK_MS = 3 * HOUR_MS;
/** How far ahead a schedule is searched (a 29 February schedule runs within 8 years). */
const SEARCH_DAYS = 366 * 9;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** The wall-clock time at `instant` in `zone`, as milliseconds of a UTC calendar (whole seconds). */
export function wallClock(instant: number, zone: string): number {
  const parts: Record<string, number> = {};
  for (const p of formatter(zone).formatToParts(new Date(Math.floor(instant / 1000) * 1000))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  const { year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0 } = parts;
  return Date.UTC(year, month - 1, day, hour, minute, second);
}

/** `zone`'s offset from UTC at `instant`, in milliseconds. */
function offsetAt(instant: number, zone: string): number {
  return wallClock(instant, zone) - Math.floor(instant / 1000) * 1000;
}

/** The instants a wall-clock time names: one, two (an overlap, in order), or the end of a gap. */
function instantsOf(local: number, zone: string): { instants: number[]; gap: boolean } {
  const before = offsetAt(local - 12 * HOUR_MS, zone);
  const after = offsetAt(local + 12 * HOUR_MS, zone);
  const found = [...new Set([local - before, local - after])].filter((u) => wallClock(u, zone) === local).sort((a, b) => a - b);
  if (found.length > 0) return { instants: found, gap: false };
  // Neither offset gives this wall time: it is in a gap. The gap ends where the offset changes.
  let lo = local - after;
  let hi = local - before;
  if (lo > hi) [lo, hi] = [hi, lo];
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2000) * 1000;
    if (offsetAt(mid, zone) === before) lo = mid;
    else hi = mid;
  }
  return { instants: [hi], gap: true };
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function weekday(year: number, month: number, day: number): number {
  return new Date(Date.UTC(year, month - 1, day)).getUTCDay();
}

function dayMatches(rule: DayRule, year: number, month: number, day: number, isDow: boolean): boolean {
  const dim = daysInMonth(year, month);
  switch (rule.kind) {
    case 'any':
      return true;
    case 'set':
      return rule.values.includes(isDow ? weekday(year, month, day) : day);
    case 'last':
      return day === dim - rule.offset;
    case 'lastWeekday': {
      let d = dim;
      while (weekday(year, month, d) === 0 || weekday(year, month, d) === 6) d--;
      return day === d;
    }
    case 'nearestWeekday': {
      // Quartz: the weekday nearest the given day, never crossing into another month.
      let target = Math.min(rule.day, dim);
      const w = weekday(year, month, target);
      if (w === 6) target = target === 1 ? target + 2 : target - 1;
      else if (w === 0) target = target === dim ? target - 2 : target + 1;
      return day === target;
    }
    case 'lastOf':
      return weekday(year, month, day) === rule.weekday && day + 7 > dim;
    case 'nth':
      return weekday(year, month, day) === rule.weekday && Math.ceil(day / 7) === rule.n;
  }
}

function dayOk(s: Schedule, year: number, month: number, day: number): boolean {
  if (!s.months.includes(month)) return false;
  if (s.years && !s.years.includes(year)) return false;
  const dom = dayMatches(s.dayOfMonth, year, month, day, false);
  const dow = dayMatches(s.dayOfWeek, year, month, day, true);
  return s.daysEither ? dom || dow : dom && dow;
}

/**
 * The first run strictly after `after` in `zone`, or undefined when the schedule has none in
 * the next years (a year field in the past, 30 February).
 */
export function nextRunAfter(s: Schedule, after: number, zone: string): number | undefined {
  const start = wallClock(after, zone) - SLACK_MS;
  let best: number | undefined;
  let bestLocal = Infinity;
  for (let i = 0; i <= SEARCH_DAYS; i++) {
    const dayStart = Math.floor(start / DAY_MS) * DAY_MS + i * DAY_MS;
    if (dayStart > bestLocal + SLACK_MS) break;
    const date = new Date(dayStart);
    const year = date.getUTCFullYear();
    if (s.years && year > (s.years[s.years.length - 1] as number)) break;
    if (!dayOk(s, year, date.getUTCMonth() + 1, date.getUTCDate())) continue;
    for (const h of s.hours) {
      for (const m of s.minutes) {
        for (const sec of s.seconds) {
          const local = dayStart + h * HOUR_MS + m * 60_000 + sec * 1000;
          if (local < start) continue;
          if (local > bestLocal + SLACK_MS) return best;
          const { instants, gap } = instantsOf(local, zone);
          const usable = gap || s.everyHour ? instants : instants.slice(0, 1);
          for (const u of usable) {
            if (u > after && (best === undefined || u < best)) {
              best = u;
              bestLocal = local;
            }
          }
          // No transition within the slack: nothing later in wall time can come earlier.
          if (
            best !== undefined &&
            !gap &&
            offsetAt(best, zone) === offsetAt(best + SLACK_MS, zone) &&
            offsetAt(best, zone) === offsetAt(best - SLACK_MS, zone)
          ) {
            return best;
          }
        }
      }
    }
  }
  return best;
}
