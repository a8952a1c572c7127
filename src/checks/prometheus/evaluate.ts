// The `prometheus` check, pure: PromQL answers in, a verdict with the numbers out; and the
// substitution of task ids into a query as a regex alternation escaped for a PromQL string.
import type { CheckAnswer } from '../types.ts';

export interface PrometheusCheckOptions {
  url?: string;
  query: string;
  max?: number;
  min?: number;
  /** compare mode: the query for the new tasks is at most this many times the same for the old */
  maxVsOld?: number;
  /** the old value maxVsOld multiplies is at least this */
  oldFloor: number;
  /** a query whose value is the number of samples behind the answer */
  samplesQuery?: string;
  minSamples?: number;
}

/** An instant query's value: one number, or nothing (no series, or NaN: nothing to divide). */
export type PromValue = { value: number } | { empty: string };

export interface PromSide {
  value: PromValue;
  /** the samplesQuery's value (0 when it returned nothing) */
  samples?: number;
}

/**
 * The `data` of an instant query answer → its value. A scalar, or a vector of one series; an
 * empty vector is no data. More than one series, or a range (matrix), is the query's fault.
 */
export function readValue(data: unknown): PromValue {
  const d = data as { resultType?: unknown; result?: unknown } | null;
  const number = (sample: unknown): PromValue => {
    const raw = Array.isArray(sample) ? sample[1] : undefined;
    const value = typeof raw === 'string' ? Number(raw) : NaN;
    if (typeof raw !== 'string') throw new Error('Prometheus answered a sample without a value');
    return Number.isNaN(value) ? { empty: 'NaN' } : { value };
  };
  if (d?.resultType === 'scalar') return number(d.result);
  if (d?.resultType === 'vector' && Array.isArray(d.result)) {
    if (d.result.length === 0) return { empty: 'no series' };
    if (d.result.length > 1) throw new Error(`the query returned ${d.result.length} series; aggregate it to one (sum, max, avg …)`);
    return number((d.result[0] as { value?: unknown }).value);
  }
  throw new Error(`the query returned a ${String(d?.resultType)}; it must give an instant vector of one series or a scalar`);
}

/** The PromQL double-quoted string's escapes. */
const promString = (value: string) => value.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
/** RE2 metacharacters escaped, then as a PromQL string. */
const promRegexLiteral = (value: string) => promString(value.replace(/[\\.+*?()|[\]{}^$]/g, '\\$&'));

/** Task ids as `a|b|c` for `label=~"…"`; none as a class that matches no value (not even ""). */
export function taskIdsAlternation(ids: readonly string[]): string {
  return ids.length === 0 ? '[^\\\\s\\\\S]' : ids.map(promRegexLiteral).join('|');
}

export interface QueryVars {
  requestId: string;
  deployId: string;
  step: number;
  newTaskIds: readonly string[];
  oldTaskIds: readonly string[];
  /** compare mode: this side's tasks */
  taskIds?: readonly string[];
}

/** `$TASK_IDS` never matches inside `$NEW_TASK_IDS` (the `_` before it), so order does not matter. */
export function substituteQuery(query: string, v: QueryVars): string {
  let out = query
    .replaceAll('$NEW_TASK_IDS', () => taskIdsAlternation(v.newTaskIds))
    .replaceAll('$OLD_TASK_IDS', () => taskIdsAlternation(v.oldTaskIds))
    .replaceAll('$REQUEST_ID', () => promString(v.requestId))
    .replaceAll('$DEPLOY_ID', () => promString(v.deployId))
    .replaceAll('$STEP', () => String(v.step));
  const side = v.taskIds;
  if (side) out = out.replaceAll('$TASK_IDS', () => taskIdsAlternation(side));
  return out;
}

const num = (n: number) => String(Number(n.toPrecision(4)));
const shown = (v: PromValue) => ('value' in v ? num(v.value) : `nothing (${v.empty})`);

/**
 * The verdict. `old` undefined in compare mode: no old deploy serves, so max/min alone apply
 * and the message says maxVsOld was not. Too few samples, or no data, is PENDING — never a pass.
 */
export function evaluatePrometheus(o: PrometheusCheckOptions, fresh: PromSide, old: PromSide | undefined): CheckAnswer {
  const compare = o.maxVsOld !== undefined;
  if (o.minSamples !== undefined) {
    const short = [
      (fresh.samples ?? 0) < o.minSamples ? `new ${num(fresh.samples ?? 0)}` : undefined,
      old && (old.samples ?? 0) < o.minSamples ? `old ${num(old.samples ?? 0)}` : undefined,
    ].filter(Boolean);
    if (short.length > 0) return { state: 'PENDING', message: `too few samples: ${short.join(', ')} (minSamples ${o.minSamples})` };
  }
  if (!('value' in fresh.value)) return { state: 'PENDING', message: `the query gave ${shown(fresh.value)} for the new deploy yet` };
  if (old && !('value' in old.value)) return { state: 'PENDING', message: `the query gave ${shown(old.value)} for the old deploy yet` };
  const value = fresh.value.value;
  const failures: string[] = [];
  if (o.max !== undefined && value > o.max) failures.push(`> max ${num(o.max)}`);
  if (o.min !== undefined && value < o.min) failures.push(`< min ${num(o.min)}`);
  let versus = '';
  let unapplied = '';
  if (compare && old && 'value' in old.value) {
    const base = Math.max(old.value.value, o.oldFloor);
    versus = ` vs old ${num(old.value.value)}`;
    if (value > o.maxVsOld! * base) failures.push(`> ${num(o.maxVsOld!)} × old ${num(base)}${base > old.value.value ? ' (floor)' : ''}`);
  } else if (compare) unapplied = '; maxVsOld not applied without an old deploy';
  const state = failures.length > 0 ? 'FAILED' : 'SUCCEEDED';
  const why = failures.length > 0 ? ` (${failures.join('; ')})` : '';
  return { state, message: `${compare ? 'new ' : ''}${num(value)}${versus}: ${state}${why}${unapplied}` };
}
