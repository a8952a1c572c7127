// A field-by-field diff of two stored deploys (or requests), as `deploy plan` shows it against
// the active deploy, Nomad-style: + added, - removed, ~ changed. Values are compared after
// validation applied defaults, so only what really differs shows. Objects are walked to their
// leaves (`env.VERSION`, `healthcheck.uri`); arrays are one value each.

export interface FieldChange {
  /** dotted path, e.g. `env.VERSION` */
  field: string;
  kind: 'added' | 'removed' | 'changed';
  old?: unknown;
  new?: unknown;
}

/** Fields that always differ between two deploys and say nothing. */
const IGNORED = new Set(['id', 'timestamp']);

export function diffFields(before: object | undefined, after: object, ignored: ReadonlySet<string> = IGNORED): FieldChange[] {
  const out: FieldChange[] = [];
  walk('', before as Record<string, unknown> | undefined, after as Record<string, unknown>, ignored, out);
  return out.sort((a, b) => (a.field < b.field ? -1 : a.field > b.field ? 1 : 0));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function walk(
  prefix: string,
  a: Record<string, unknown> | undefined,
  b: Record<string, unknown>,
  ignored: ReadonlySet<string>,
  out: FieldChange[],
): void {
  const keys = new Set([...Object.keys(a ?? {}), ...Object.keys(b)]);
  for (const key of keys) {
    if (prefix === '' && ignored.has(key)) continue;
    const field = prefix === '' ? key : `${prefix}.${key}`;
    const x = a?.[key];
    const y = b[key];
    if (isObject(x) && isObject(y)) {
      walk(field, x, y, ignored, out);
      continue;
    }
    if (x === undefined && y === undefined) continue;
    if (x === undefined) {
      if (isObject(y)) walk(field, {}, y, ignored, out);
      else out.push({ field, kind: 'added', new: y });
    } else if (y === undefined) {
      if (isObject(x)) for (const c of diffFields(x, {}, new Set())) out.push({ ...c, field: `${field}.${c.field}` });
      else out.push({ field, kind: 'removed', old: x });
    } else if (JSON.stringify(x) !== JSON.stringify(y)) {
      out.push({ field, kind: 'changed', old: x, new: y });
    }
  }
}
